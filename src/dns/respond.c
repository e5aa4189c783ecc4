/* One query in, one answer out (see dns.h).  The message is hostile: its
 * lengths, counts, labels and compression pointers are checked here before
 * ldns parses it, and every answer is built and encoded by ldns. */
#include "dns/dns_impl.h"

#include "core/mem.h"
#include "core/util.h"

#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 12
#define NAME_MAX_WIRE 255
#define MAX_POINTER_HOPS 128
#define TYPE_OPT 41
#define TYPE_IXFR 251
#define TYPE_AXFR 252
#define TYPE_ANY 255
#define CLASS_ANY 255
#define EXT_RCODE_BADVERS 1 /* BADVERS (16) >> 4, as carried in the OPT record */

typedef enum check { CHECK_OK, CHECK_FORMERR } check;

static unsigned get16(const uint8_t *p)
{
    return (unsigned)p[0] << 8 | p[1];
}

/* Walks the name at *off.  Labels of 1-63 octets, at most 255 octets in
 * all; a compression pointer (only where allow_ptr) must point before the
 * start of the name it continues and inside the message after the header,
 * so every jump goes strictly backwards and a loop cannot exist.  On
 * success *off is past the name as written at *off. */
static check walk_name(const uint8_t *m, size_t len, size_t *off, bool allow_ptr, bool *is_root)
{
    size_t pos = *off, limit = *off, total = 1;
    bool jumped = false;
    int hops = 0;

    *is_root = pos < len && m[pos] == 0;
    for (;;) {
        if (pos >= len)
            return CHECK_FORMERR;
        uint8_t b = m[pos];
        if (b == 0) {
            if (!jumped)
                *off = pos + 1;
            return CHECK_OK;
        }
        if ((b & 0xC0) == 0xC0) {
            if (!allow_ptr || pos + 1 >= len || ++hops > MAX_POINTER_HOPS)
                return CHECK_FORMERR;
            size_t target = (size_t)(b & 0x3F) << 8 | m[pos + 1];
            if (target >= limit || target < HEADER_LEN)
                return CHECK_FORMERR;
            if (!jumped)
                *off = pos + 2;
            jumped = true;
            limit = target;
            pos = target;
            continue;
        }
        if (b & 0xC0) /* the obsolete extended label types */
            return CHECK_FORMERR;
        total += (size_t)b + 1;
        if (total > NAME_MAX_WIRE || pos + 1 + b >= len)
            return CHECK_FORMERR;
        pos += 1 + (size_t)b;
    }
}

/* The structure of a query: one question with an uncompressed name, no
 * answer or authority records, additional records that fit exactly, at
 * most one OPT (owned by the root), nothing after them. */
static check check_query(const uint8_t *m, size_t len, int *n_opt)
{
    size_t off = HEADER_LEN;
    bool root;

    *n_opt = 0;
    if (get16(m + 4) != 1 || get16(m + 6) != 0 || get16(m + 8) != 0)
        return CHECK_FORMERR;
    if (walk_name(m, len, &off, false, &root) != CHECK_OK || off + 4 > len)
        return CHECK_FORMERR;
    off += 4;
    for (unsigned i = 0, ar = get16(m + 10); i < ar; i++) {
        if (walk_name(m, len, &off, true, &root) != CHECK_OK || off + 10 > len)
            return CHECK_FORMERR;
        unsigned type = get16(m + off), rdlen = get16(m + off + 8);
        off += 10;
        if (off + rdlen > len)
            return CHECK_FORMERR;
        off += rdlen;
        if (type == TYPE_OPT && (++*n_opt > 1 || !root))
            return CHECK_FORMERR;
    }
    return off == len ? CHECK_OK : CHECK_FORMERR;
}

/* An answer header for a message whose header was readable. */
static ldns_pkt *reply_new(uint16_t id, ldns_pkt_opcode opcode, bool rd, ldns_pkt_rcode rcode)
{
    ldns_pkt *r = ldns_pkt_new();
    ldns_pkt_set_id(r, id);
    ldns_pkt_set_qr(r, true);
    ldns_pkt_set_opcode(r, opcode);
    ldns_pkt_set_rd(r, rd);
    ldns_pkt_set_rcode(r, (uint8_t)rcode);
    return r;
}

static void drop_section(ldns_pkt *r, ldns_pkt_section s)
{
    switch (s) {
    case LDNS_SECTION_ANSWER:
        ldns_rr_list_deep_free(ldns_pkt_answer(r));
        ldns_pkt_set_answer(r, ldns_rr_list_new());
        ldns_pkt_set_ancount(r, 0);
        break;
    case LDNS_SECTION_AUTHORITY:
        ldns_rr_list_deep_free(ldns_pkt_authority(r));
        ldns_pkt_set_authority(r, ldns_rr_list_new());
        ldns_pkt_set_nscount(r, 0);
        break;
    default:
        ldns_rr_list_deep_free(ldns_pkt_additional(r));
        ldns_pkt_set_additional(r, ldns_rr_list_new());
        ldns_pkt_set_arcount(r, 0);
        break;
    }
}

/* Encodes r within limit bytes: an answer that does not fit is sent
 * with TC set and its record sections emptied (the client retries over
 * TCP).  Takes r over. */
static bool encode(ldns_pkt *r, size_t limit, uint8_t **out, size_t *out_len)
{
    uint8_t *wire = NULL;
    size_t size = 0;
    bool ok = false;

    if (ldns_pkt2wire(&wire, r, &size) != LDNS_STATUS_OK)
        goto out;
    if (size > limit) {
        free(wire);
        wire = NULL;
        ldns_pkt_set_tc(r, true);
        drop_section(r, LDNS_SECTION_ANSWER);
        drop_section(r, LDNS_SECTION_AUTHORITY);
        drop_section(r, LDNS_SECTION_ADDITIONAL);
        if (ldns_pkt2wire(&wire, r, &size) != LDNS_STATUS_OK || size > limit)
            goto out;
    }
    *out = wire;
    *out_len = size;
    wire = NULL;
    ok = true;
out:
    free(wire);
    ldns_pkt_free(r);
    return ok;
}

static ldns_rr *address_rr(const ldns_rdf *owner, const ptc_dns_zone *z, size_t i)
{
    const ptc_dns_entry *e = &z->entries[i];
    bool v4 = strcmp(e->type, "A") == 0;
    ldns_rr *rr = ldns_rr_new();
    ldns_rr_set_owner(rr, ldns_rdf_clone(owner));
    ldns_rr_set_type(rr, v4 ? LDNS_RR_TYPE_A : LDNS_RR_TYPE_AAAA);
    ldns_rr_set_class(rr, LDNS_RR_CLASS_IN);
    ldns_rr_set_ttl(rr, e->ttl);
    ldns_rr_push_rdf(
        rr, ldns_rdf_new_frm_data(v4 ? LDNS_RDF_TYPE_A : LDNS_RDF_TYPE_AAAA, v4 ? 4 : 16, z->rdata[i]));
    return rr;
}

/* A record of the apex (SOA, NS) owned by the question's name, so that
 * the case the client chose comes back. */
static ldns_rr *apex_rr(const ldns_rr *rr, const ldns_rdf *owner)
{
    ldns_rr *c = ldns_rr_clone(rr);
    ldns_rdf_deep_free(ldns_rr_owner(c));
    ldns_rr_set_owner(c, ldns_rdf_clone(owner));
    return c;
}

static ldns_rr *negative_soa(const ptc_dns_zone *z)
{
    ldns_rr *c = ldns_rr_clone(z->soa);
    ldns_rr_set_ttl(c, z->negative_ttl);
    return c;
}

/* The question's name, lower-cased, without the trailing dot (caller
 * frees).  Labels holding characters a host name cannot have come out
 * escaped by ldns and so match no record. */
static char *qname_text(const ldns_rdf *qname)
{
    char *s = ldns_rdf2str(qname);
    if (s == NULL)
        return NULL;
    ptc_str_lower(s);
    size_t n = strlen(s);
    if (n > 0 && s[n - 1] == '.')
        s[n - 1] = '\0';
    return s;
}

/* Fills r for a question inside the zone (authoritative data). */
static void answer_in_zone(const ptc_dns_zone *z, const char *name, const ldns_rdf *qname, ldns_rr_type qtype,
                           ldns_pkt *r)
{
    const ptc_dns_node *node = ptc_dns_zone_lookup(z, name);
    bool apex = strcmp(name, z->name) == 0;
    bool any = qtype == TYPE_ANY;

    ldns_pkt_set_aa(r, true);
    if (node == NULL) {
        ldns_pkt_set_rcode(r, LDNS_RCODE_NXDOMAIN);
        ldns_pkt_push_rr(r, LDNS_SECTION_AUTHORITY, negative_soa(z));
        return;
    }
    if (apex && (qtype == LDNS_RR_TYPE_SOA || any))
        ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, apex_rr(z->soa, qname));
    if (apex && (qtype == LDNS_RR_TYPE_NS || any))
        ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, apex_rr(z->ns, qname));
    for (size_t i = node->first; i < node->first + node->count; i++) {
        bool v4 = strcmp(z->entries[i].type, "A") == 0;
        if (any || (v4 && qtype == LDNS_RR_TYPE_A) || (!v4 && qtype == LDNS_RR_TYPE_AAAA))
            ldns_pkt_push_rr(r, LDNS_SECTION_ANSWER, address_rr(qname, z, i));
    }
    if (ldns_pkt_ancount(r) == 0)
        ldns_pkt_push_rr(r, LDNS_SECTION_AUTHORITY, negative_soa(z));
}

bool ptc_dns_respond(const ptc_dns_zone *z, const uint8_t *msg, size_t len, ptc_dns_transport t,
                     uint8_t **out, size_t *out_len)
{
    ldns_pkt *q = NULL, *r = NULL;
    char *name = NULL;
    bool sent = false;
    int n_opt = 0;
    size_t limit = t == PTC_DNS_TCP ? 65535 : PTC_DNS_UDP_PLAIN_MAX;

    *out = NULL;
    *out_len = 0;
    /* Without a whole header there is no id to answer to, and a response
     * (QR set) is never answered: that is how reflection loops start. */
    if (len < HEADER_LEN || (msg[2] & 0x80) || len > (t == PTC_DNS_TCP ? 65535 : PTC_DNS_UDP_QUERY_MAX))
        return false;
    uint16_t id = (uint16_t)get16(msg);
    ldns_pkt_opcode opcode = (ldns_pkt_opcode)((msg[2] >> 3) & 0x0F);
    bool rd = msg[2] & 0x01;

    if (opcode != LDNS_PACKET_QUERY) {
        r = reply_new(id, opcode, rd, LDNS_RCODE_NOTIMPL);
        goto send;
    }
    if (check_query(msg, len, &n_opt) != CHECK_OK || ldns_wire2pkt(&q, msg, len) != LDNS_STATUS_OK ||
        ldns_rr_list_rr_count(ldns_pkt_question(q)) != 1 ||
        (t == PTC_DNS_UDP && n_opt == 0 && len > PTC_DNS_UDP_PLAIN_MAX)) {
        r = reply_new(id, opcode, rd, LDNS_RCODE_FORMERR);
        goto send;
    }

    const ldns_rr *question = ldns_rr_list_rr(ldns_pkt_question(q), 0);
    const ldns_rdf *qname = ldns_rr_owner(question);
    ldns_rr_type qtype = ldns_rr_get_type(question);
    ldns_rr_class qclass = ldns_rr_get_class(question);

    r = reply_new(id, opcode, rd, LDNS_RCODE_NOERROR);
    ldns_pkt_set_cd(r, ldns_pkt_cd(q));
    ldns_pkt_push_rr(r, LDNS_SECTION_QUESTION, ldns_rr_clone(question));
    if (n_opt) {
        uint16_t udp = ldns_pkt_edns_udp_size(q);
        ldns_pkt_set_edns_udp_size(r, PTC_DNS_EDNS_MAX);
        if (t == PTC_DNS_UDP)
            limit = udp < PTC_DNS_UDP_PLAIN_MAX ? PTC_DNS_UDP_PLAIN_MAX
                    : udp > PTC_DNS_EDNS_MAX    ? PTC_DNS_EDNS_MAX
                                                : udp;
        if (ldns_pkt_edns_version(q) != 0) {
            /* RFC 6891 §6.1.3: BADVERS, with our version (0) in the OPT. */
            ldns_pkt_set_edns_extended_rcode(r, EXT_RCODE_BADVERS);
            goto send;
        }
    }
    if (qtype == TYPE_OPT) {
        ldns_pkt_set_rcode(r, LDNS_RCODE_FORMERR);
        goto send;
    }
    name = qname_text(qname);
    if (z == NULL || name == NULL || (qclass != LDNS_RR_CLASS_IN && qclass != CLASS_ANY) ||
        !ptc_dns_in_zone(z->name, name) || qtype == TYPE_AXFR || qtype == TYPE_IXFR) {
        ldns_pkt_set_rcode(r, LDNS_RCODE_REFUSED);
        goto send;
    }
    answer_in_zone(z, name, qname, qtype, r);
send:
    sent = encode(r, limit, out, out_len);
    if (q)
        ldns_pkt_free(q);
    free(name);
    return sent;
}
