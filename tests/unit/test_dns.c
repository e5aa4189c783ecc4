/* The DNS module: names, zone snapshots, the BIND export, answers to
 * good and hostile queries (decoded with ldns), and the server over real
 * UDP and TCP sockets with a zone swapped while it runs. */
#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"
#include "dns/dns.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <ldns/ldns.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

static const ptc_dns_entry entries[] = {
    {"www.example.test", "A", "192.0.2.10", 300, "api", 1, 1},
    {"www.example.test", "AAAA", "2001:db8::10", 120, "api", 1, 1},
    {"a.b.c.example.test", "A", "192.0.2.11", 60, "api", 1, 1},
};

static ptc_dns_zone *test_zone(uint32_t serial)
{
    char err[256] = "";
    ptc_dns_zone *z =
        ptc_dns_zone_build("example.test", serial, entries, PTC_ARRAY_LEN(entries), err, sizeof(err));
    if (z == NULL)
        fprintf(stderr, "zone: %s\n", err);
    return z;
}

/* A query message built by hand, as a hostile peer would. */
typedef struct msg {
    uint8_t b[1024];
    size_t n;
} msg;

static void put16(msg *m, unsigned v)
{
    m->b[m->n++] = (uint8_t)(v >> 8);
    m->b[m->n++] = (uint8_t)v;
}

static void put_name(msg *m, const char *name)
{
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        m->b[m->n++] = (uint8_t)len;
        memcpy(m->b + m->n, p, len);
        m->n += len;
        p += len + (dot != NULL);
    }
    m->b[m->n++] = 0;
}

static msg query(uint16_t id, const char *name, unsigned type, unsigned klass, bool edns)
{
    msg m = {.n = 0};
    put16(&m, id);
    put16(&m, 0x0100); /* RD */
    put16(&m, 1);
    put16(&m, 0);
    put16(&m, 0);
    put16(&m, edns ? 1 : 0);
    put_name(&m, name);
    put16(&m, type);
    put16(&m, klass);
    if (edns) {
        m.b[m.n++] = 0;
        put16(&m, 41);
        put16(&m, 4096);
        put16(&m, 0);
        put16(&m, 0);
        put16(&m, 0);
    }
    return m;
}

/* Answers m over t and decodes the answer; NULL when dropped. */
static ldns_pkt *ask(const ptc_dns_zone *z, const msg *m, ptc_dns_transport t)
{
    uint8_t *out = NULL;
    size_t len = 0;
    ldns_pkt *p = NULL;
    if (!ptc_dns_respond(z, m->b, m->n, t, &out, &len))
        return NULL;
    CHECK(ldns_wire2pkt(&p, out, len) == LDNS_STATUS_OK);
    free(out);
    return p;
}

static char *rr_text(const ldns_rr *rr)
{
    char *s = ldns_rr2str(rr);
    s[strcspn(s, "\n")] = '\0';
    return s;
}

static void check_rr(const ldns_rr_list *l, size_t i, const char *want)
{
    if (i >= ldns_rr_list_rr_count(l)) {
        CHECK_STR("(missing)", want);
        return;
    }
    char *s = rr_text(ldns_rr_list_rr(l, i));
    CHECK_STR(s, want);
    free(s);
}

static void test_names(void)
{
    char out[256];
    CHECK(ptc_dns_name_qualify("example.test", "llm", out, sizeof(out)) == NULL);
    CHECK_STR(out, "llm.example.test");
    CHECK(ptc_dns_name_qualify("example.test", "LLM.Example.Test.", out, sizeof(out)) == NULL);
    CHECK_STR(out, "llm.example.test");
    CHECK(ptc_dns_name_qualify("example.test", "a.b", out, sizeof(out)) == NULL);
    CHECK_STR(out, "a.b.example.test");
    CHECK(ptc_dns_name_qualify("example.test", "@", out, sizeof(out)) == NULL);
    CHECK_STR(out, "example.test");
    CHECK(ptc_dns_name_qualify("example.test", "example.test", out, sizeof(out)) == NULL);
    CHECK_STR(out, "example.test");
    CHECK(ptc_dns_name_qualify("example.test", "www.example.org.", out, sizeof(out)) != NULL);
    CHECK(ptc_dns_name_qualify("example.test", "bad_name", out, sizeof(out)) != NULL);
    CHECK(ptc_dns_name_qualify("example.test", "a..b", out, sizeof(out)) != NULL);
    CHECK(ptc_dns_name_qualify("example.test", "*.x", out, sizeof(out)) != NULL);
    CHECK(ptc_dns_name_qualify("example.test", "", out, sizeof(out)) != NULL);
    CHECK(ptc_dns_in_zone("example.test", "example.test"));
    CHECK(ptc_dns_in_zone("example.test", "a.example.test"));
    CHECK(!ptc_dns_in_zone("example.test", "aexample.test"));
    CHECK(!ptc_dns_in_zone("example.test", "test"));
}

static void test_zone_build(void)
{
    char err[256];
    ptc_dns_entry outside = {"www.example.org", "A", "192.0.2.1", 300, "api", 0, 0};
    ptc_dns_entry bad_value = {"x.example.test", "A", "2001:db8::1", 300, "api", 0, 0};
    ptc_dns_entry bad_type = {"x.example.test", "TXT", "hello", 300, "api", 0, 0};
    CHECK(ptc_dns_zone_build("example.test", 1, &outside, 1, err, sizeof(err)) == NULL);
    CHECK(ptc_dns_zone_build("example.test", 1, &bad_value, 1, err, sizeof(err)) == NULL);
    CHECK(ptc_dns_zone_build("example.test", 1, &bad_type, 1, err, sizeof(err)) == NULL);
    CHECK(ptc_dns_zone_build("not a zone", 1, NULL, 0, err, sizeof(err)) == NULL);

    ptc_dns_zone *z = test_zone(7);
    size_t n;
    const ptc_dns_entry *e = ptc_dns_zone_entries(z, &n);
    CHECK_INT(n, 3);
    CHECK_STR(e[0].name, "a.b.c.example.test");
    CHECK_STR(e[2].type, "AAAA");
    CHECK_INT(ptc_dns_zone_serial(z), 7);

    ptc_buf b = PTC_BUF_INIT;
    ptc_dns_zone_export(z, &b);
    const char *text = ptc_buf_cstr(&b);
    CHECK(strstr(text, "$ORIGIN example.test.\n") != NULL);
    CHECK(strstr(text, "@\t300\tIN\tSOA\tns.example.test. hostmaster.example.test. (") != NULL);
    CHECK(strstr(text, "\t\t\t7\t; serial") != NULL);
    CHECK(strstr(text, "@\t300\tIN\tNS\tns.example.test.\n") != NULL);
    CHECK(strstr(text, "www\t300\tIN\tA\t192.0.2.10\t; api\n") != NULL);
    CHECK(strstr(text, "www\t120\tIN\tAAAA\t2001:db8::10\t; api\n") != NULL);
    CHECK(strstr(text, "a.b.c\t60\tIN\tA\t192.0.2.11\t; api\n") != NULL);
    /* What we export, ldns reads back as a zone. */
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    ldns_zone *lz = NULL;
    CHECK(ldns_zone_new_frm_fp(&lz, f, NULL, 300, LDNS_RR_CLASS_IN) == LDNS_STATUS_OK);
    if (lz) {
        CHECK_INT(ldns_rr_list_rr_count(ldns_zone_rrs(lz)), 4); /* NS and the three entries; SOA apart */
        ldns_zone_deep_free(lz);
    }
    fclose(f);
    ptc_buf_free(&b);
    ptc_dns_zone_release(z);
}

static void test_zone_from_state(void)
{
    static const ptc_proxy_defaults defs = {"/health", 1000, 5000};
    const char *bodies[] = {
        "{\"domain\": \"app.example.test\", \"upstream_port\": 80, \"dns\": true}",
        "{\"domain\": \"app.example.test\", \"path_prefix\": \"/api\", \"upstream_port\": 81, \"dns\": true}",
        "{\"domain\": \"quiet.example.test\", \"upstream_port\": 80}",
        "{\"domain\": \"elsewhere.org\", \"upstream_port\": 80, \"dns\": true}",
        "{\"domain\": \"*.wild.example.test\", \"upstream_port\": 80, \"dns\": true}",
        "{\"domain\": \"www.example.test\", \"upstream_port\": 80, \"dns\": true}",
    };
    const char *names[] = {"app", "app-api", "quiet", "elsewhere", "wild", "www"};
    ptc_proxy *proxies[6];
    for (size_t i = 0; i < 6; i++) {
        json_t *j = json_loads(bodies[i], 0, NULL), *errors = json_object();
        proxies[i] = ptc_proxy_from_request(j, names[i], &defs, errors);
        CHECK(proxies[i] != NULL);
        json_decref(j);
        json_decref(errors);
    }
    ptc_state *st = ptc_state_from(proxies, 6, NULL, 0);
    ptc_dns_record recs[] = {{"www.example.test", "A", "192.0.2.99", 30, 5, 6}};
    ptc_dns_record_list list = {recs, 1};
    char err[256];
    ptc_dns_zone *z = ptc_dns_zone_from("example.test", "198.51.100.7", 3, &list, st, err, sizeof(err));
    CHECK(z != NULL);
    size_t n;
    const ptc_dns_entry *e = ptc_dns_zone_entries(z, &n);
    CHECK_INT(n, 2);
    CHECK_STR(e[0].name, "app.example.test");
    CHECK_STR(e[0].value, "198.51.100.7");
    CHECK_STR(e[0].source, "proxy:app");
    CHECK_STR(e[1].name, "www.example.test");
    CHECK_STR(e[1].value, "192.0.2.99"); /* the managed record wins */
    CHECK_STR(e[1].source, "api");
    ptc_dns_zone_release(z);

    z = ptc_dns_zone_from("example.test", "", 3, &list, st, err, sizeof(err));
    ptc_dns_zone_entries(z, &n);
    CHECK_INT(n, 1);
    ptc_dns_zone_release(z);
    ptc_state_release(st);
}

static void test_answers(void)
{
    ptc_dns_zone *z = test_zone(42);
    msg m;
    ldns_pkt *p;

    m = query(0x1111, "www.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);
    p = ask(z, &m, PTC_DNS_UDP);
    CHECK(p != NULL);
    CHECK_INT(ldns_pkt_id(p), 0x1111);
    CHECK(ldns_pkt_qr(p) && ldns_pkt_aa(p) && ldns_pkt_rd(p) && !ldns_pkt_ra(p));
    CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    check_rr(ldns_pkt_answer(p), 0, "www.example.test.\t300\tIN\tA\t192.0.2.10");
    CHECK_INT(ldns_pkt_ancount(p), 1);
    ldns_pkt_free(p);

    /* The question's case comes back (0x20 randomisation). */
    m = query(2, "WwW.Example.TEST", LDNS_RR_TYPE_AAAA, LDNS_RR_CLASS_IN, true);
    p = ask(z, &m, PTC_DNS_TCP);
    check_rr(ldns_pkt_answer(p), 0, "WwW.Example.TEST.\t120\tIN\tAAAA\t2001:db8::10");
    CHECK(ldns_pkt_edns(p));
    CHECK_INT(ldns_pkt_edns_udp_size(p), PTC_DNS_EDNS_MAX);
    ldns_pkt_free(p);

    m = query(3, "example.test", LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, false);
    p = ask(z, &m, PTC_DNS_UDP);
    check_rr(ldns_pkt_answer(p), 0,
             "example.test.\t300\tIN\tSOA\tns.example.test. hostmaster.example.test. 42 3600 600 604800 60");
    ldns_pkt_free(p);

    m = query(4, "example.test", LDNS_RR_TYPE_NS, LDNS_RR_CLASS_IN, false);
    p = ask(z, &m, PTC_DNS_UDP);
    check_rr(ldns_pkt_answer(p), 0, "example.test.\t300\tIN\tNS\tns.example.test.");
    ldns_pkt_free(p);

    m = query(5, "nope.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);
    p = ask(z, &m, PTC_DNS_UDP);
    CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_NXDOMAIN);
    CHECK(ldns_pkt_aa(p));
    CHECK_INT(ldns_pkt_ancount(p), 0);
    check_rr(ldns_pkt_authority(p), 0,
             "example.test.\t60\tIN\tSOA\tns.example.test. hostmaster.example.test. 42 3600 600 604800 60");
    ldns_pkt_free(p);

    /* NODATA: an existing name without the type, and an empty
     * non-terminal (b.c exists because a.b.c does). */
    const char *nodata[] = {"www.example.test", "b.c.example.test", "c.example.test"};
    for (size_t i = 0; i < 3; i++) {
        m = query(6, nodata[i], i == 0 ? LDNS_RR_TYPE_TXT : LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);
        p = ask(z, &m, PTC_DNS_UDP);
        CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
        CHECK_INT(ldns_pkt_ancount(p), 0);
        CHECK_INT(ldns_pkt_nscount(p), 1);
        ldns_pkt_free(p);
    }

    const char *refused[] = {"www.example.org", "test", "xexample.test"};
    for (size_t i = 0; i < 3; i++) {
        m = query(7, refused[i], LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);
        p = ask(z, &m, PTC_DNS_UDP);
        CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
        CHECK(!ldns_pkt_aa(p));
        CHECK_INT(ldns_pkt_ancount(p), 0);
        ldns_pkt_free(p);
    }
    m = query(8, "example.test", LDNS_RR_TYPE_AXFR, LDNS_RR_CLASS_IN, false);
    p = ask(z, &m, PTC_DNS_TCP);
    CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);
    m = query(9, "www.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_CH, false);
    p = ask(z, &m, PTC_DNS_UDP);
    CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);
    /* Before the first zone is published everything is refused. */
    m = query(10, "www.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);
    p = ask(NULL, &m, PTC_DNS_UDP);
    CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);

    m = query(11, "www.example.test", LDNS_RR_TYPE_ANY, LDNS_RR_CLASS_IN, false);
    p = ask(z, &m, PTC_DNS_UDP);
    CHECK_INT(ldns_pkt_ancount(p), 2);
    ldns_pkt_free(p);
    ptc_dns_zone_release(z);
}

static void test_truncation(void)
{
    /* 40 addresses for one name do not fit in 512 bytes of UDP. */
    ptc_dns_entry many[40];
    char values[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(values[i], sizeof(values[i]), "192.0.2.%d", i + 1);
        many[i] = (ptc_dns_entry){"big.example.test", "A", values[i], 300, "api", 0, 0};
    }
    char err[256];
    ptc_dns_zone *z = ptc_dns_zone_build("example.test", 1, many, 40, err, sizeof(err));
    msg m = query(1, "big.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);
    ldns_pkt *p = ask(z, &m, PTC_DNS_UDP);
    CHECK(ldns_pkt_tc(p));
    CHECK_INT(ldns_pkt_ancount(p), 0);
    CHECK_INT(ldns_pkt_qdcount(p), 1);
    ldns_pkt_free(p);
    p = ask(z, &m, PTC_DNS_TCP);
    CHECK(!ldns_pkt_tc(p));
    CHECK_INT(ldns_pkt_ancount(p), 40);
    ldns_pkt_free(p);
    /* With EDNS (4096 offered, 1232 used) they fit. */
    m = query(1, "big.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, true);
    p = ask(z, &m, PTC_DNS_UDP);
    CHECK(!ldns_pkt_tc(p));
    CHECK_INT(ldns_pkt_ancount(p), 40);
    ldns_pkt_free(p);
    ptc_dns_zone_release(z);
}

static void expect_rcode(const ptc_dns_zone *z, const msg *m, int rcode)
{
    ldns_pkt *p = ask(z, m, PTC_DNS_UDP);
    CHECK(p != NULL);
    if (p) {
        CHECK_INT(ldns_pkt_get_rcode(p), rcode);
        CHECK_INT(ldns_pkt_ancount(p), 0);
        ldns_pkt_free(p);
    }
}

static void test_hostile(void)
{
    ptc_dns_zone *z = test_zone(1);
    msg good = query(0x4242, "www.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false), m;
    uint8_t *out;
    size_t len;

    /* Too short for a header, or a response: dropped. */
    CHECK(!ptc_dns_respond(z, good.b, 11, PTC_DNS_UDP, &out, &len));
    m = good;
    m.b[2] |= 0x80;
    CHECK(!ptc_dns_respond(z, m.b, m.n, PTC_DNS_UDP, &out, &len));
    /* Longer than any UDP query we read: dropped. */
    uint8_t *huge = ptc_xcalloc(1, PTC_DNS_UDP_QUERY_MAX + 1);
    memcpy(huge, good.b, good.n);
    CHECK(!ptc_dns_respond(z, huge, PTC_DNS_UDP_QUERY_MAX + 1, PTC_DNS_UDP, &out, &len));
    free(huge);

    /* Readable headers with broken bodies: FORMERR. */
    for (size_t cut = 12; cut < good.n; cut++) {
        ldns_pkt *p = NULL;
        CHECK(ptc_dns_respond(z, good.b, cut, PTC_DNS_UDP, &out, &len));
        CHECK(ldns_wire2pkt(&p, out, len) == LDNS_STATUS_OK);
        CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_FORMERR);
        CHECK_INT(ldns_pkt_id(p), 0x4242);
        ldns_pkt_free(p);
        free(out);
    }
    m = good; /* trailing bytes */
    m.b[m.n++] = 0xff;
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);
    m = good; /* two questions announced, one present */
    m.b[5] = 2;
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);
    m = good; /* an answer record in a query */
    m.b[7] = 1;
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);

    /* A compression loop: an additional record whose owner points at
     * itself. */
    m = good;
    m.b[11] = 1;
    size_t at = m.n;
    m.b[m.n++] = 0xC0 | (uint8_t)(at >> 8);
    m.b[m.n++] = (uint8_t)at;
    put16(&m, 1);
    put16(&m, 1);
    put16(&m, 0);
    put16(&m, 0);
    put16(&m, 0);
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);
    /* ...and one pointing forwards. */
    m.b[at + 1] = (uint8_t)(at + 2);
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);
    /* A backwards pointer to the question's name is fine. */
    m.b[at] = 0xC0;
    m.b[at + 1] = 12;
    ldns_pkt *p = ask(z, &m, PTC_DNS_UDP);
    CHECK_INT(ldns_pkt_get_rcode(p), LDNS_RCODE_NOERROR);
    ldns_pkt_free(p);

    /* A compressed question name. */
    m = (msg){.n = 0};
    put16(&m, 1);
    put16(&m, 0);
    put16(&m, 1);
    put16(&m, 0);
    put16(&m, 0);
    put16(&m, 0);
    m.b[m.n++] = 0xC0;
    m.b[m.n++] = 12;
    put16(&m, 1);
    put16(&m, 1);
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);

    /* A label over 63 octets and a name over 255. */
    m = good;
    m.n = 12;
    m.b[m.n++] = 64;
    memset(m.b + m.n, 'a', 64);
    m.n += 64;
    m.b[m.n++] = 0;
    put16(&m, 1);
    put16(&m, 1);
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);
    m.n = 12;
    for (int i = 0; i < 5; i++) {
        m.b[m.n++] = 63;
        memset(m.b + m.n, 'a', 63);
        m.n += 63;
    }
    m.b[m.n++] = 0;
    put16(&m, 1);
    put16(&m, 1);
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);

    /* Two OPT records, and an EDNS version we do not speak. */
    m = query(3, "www.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, true);
    size_t opt_at = m.n - 11;
    msg twice = m;
    memcpy(twice.b + twice.n, m.b + opt_at, 11);
    twice.n += 11;
    twice.b[11] = 2;
    expect_rcode(z, &twice, LDNS_RCODE_FORMERR);
    m.b[opt_at + 6] = 1; /* version */
    p = ask(z, &m, PTC_DNS_UDP);
    CHECK_INT(ldns_pkt_get_rcode(p), 0);
    CHECK_INT(ldns_pkt_edns_extended_rcode(p), 1); /* BADVERS = 16 */
    CHECK_INT(ldns_pkt_ancount(p), 0);
    ldns_pkt_free(p);

    /* Over 512 bytes of UDP without EDNS. */
    m = good;
    m.b[11] = 1;
    m.b[m.n++] = 0;
    put16(&m, 16); /* TXT */
    put16(&m, 1);
    put16(&m, 0);
    put16(&m, 0);
    put16(&m, 500);
    memset(m.b + m.n, 'x', 500);
    m.b[m.n] = 0x7f;
    m.n += 500;
    expect_rcode(z, &m, LDNS_RCODE_FORMERR);

    /* Another opcode (NOTIFY): not implemented. */
    m = good;
    m.b[2] = (uint8_t)(4 << 3);
    expect_rcode(z, &m, LDNS_RCODE_NOTIMPL);

    /* After all that, a good query is answered. */
    p = ask(z, &good, PTC_DNS_UDP);
    check_rr(ldns_pkt_answer(p), 0, "www.example.test.\t300\tIN\tA\t192.0.2.10");
    ldns_pkt_free(p);
    ptc_dns_zone_release(z);
}

/* ---- the server over real sockets ---------------------------------- */

static unsigned free_udp_tcp_port(void)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int u = socket(AF_INET, SOCK_DGRAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof(a);
        bind(u, (struct sockaddr *)&a, sizeof(a));
        getsockname(u, (struct sockaddr *)&a, &alen);
        int t = socket(AF_INET, SOCK_STREAM, 0);
        int ok = bind(t, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(u);
        close(t);
        if (ok)
            return ntohs(a.sin_port);
    }
    return 0;
}

static ldns_pkt *udp_ask(unsigned port, const msg *m)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    uint8_t buf[2048];
    ldns_pkt *p = NULL;
    sendto(fd, m->b, m->n, 0, (struct sockaddr *)&a, sizeof(a));
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 5000) == 1) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0 && ldns_wire2pkt(&p, buf, (size_t)n) != LDNS_STATUS_OK)
            p = NULL;
    }
    close(fd);
    return p;
}

static bool read_full(int fd, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1)
            return false;
        ssize_t r = recv(fd, buf + got, n - got, 0);
        if (r <= 0)
            return false;
        got += (size_t)r;
    }
    return true;
}

static void test_server(void)
{
    char listen[64], err[256];
    unsigned port = free_udp_tcp_port();
    CHECK(port != 0);
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", port);
    ptc_dns_server *s = ptc_dns_server_start(listen, err, sizeof(err));
    CHECK(s != NULL);
    if (s == NULL)
        return;
    msg m = query(77, "www.example.test", LDNS_RR_TYPE_A, LDNS_RR_CLASS_IN, false);

    ldns_pkt *p = udp_ask(port, &m);
    CHECK(p != NULL && ldns_pkt_get_rcode(p) == LDNS_RCODE_REFUSED);
    ldns_pkt_free(p);

    ptc_dns_server_publish(s, test_zone(1));
    p = udp_ask(port, &m);
    CHECK(p != NULL);
    if (p)
        check_rr(ldns_pkt_answer(p), 0, "www.example.test.\t300\tIN\tA\t192.0.2.10");
    ldns_pkt_free(p);

    /* A changed zone answers from the next query on. */
    ptc_dns_entry changed = {"www.example.test", "A", "203.0.113.5", 300, "api", 0, 0};
    ptc_dns_server_publish(s, ptc_dns_zone_build("example.test", 2, &changed, 1, err, sizeof(err)));
    p = udp_ask(port, &m);
    if (p)
        check_rr(ldns_pkt_answer(p), 0, "www.example.test.\t300\tIN\tA\t203.0.113.5");
    CHECK(p != NULL);
    ldns_pkt_free(p);

    /* TCP: two pipelined queries in one write, the second in two pieces. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK_INT(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    uint8_t framed[2048];
    size_t n = 0;
    for (int i = 0; i < 2; i++) {
        framed[n++] = (uint8_t)(m.n >> 8);
        framed[n++] = (uint8_t)m.n;
        memcpy(framed + n, m.b, m.n);
        n += m.n;
    }
    CHECK_INT(send(fd, framed, n - 5, 0), (ssize_t)(n - 5));
    usleep(20000);
    CHECK_INT(send(fd, framed + n - 5, 5, 0), 5);
    for (int i = 0; i < 2; i++) {
        uint8_t hdr[2], body[1024];
        CHECK(read_full(fd, hdr, 2));
        size_t len = (size_t)hdr[0] << 8 | hdr[1];
        CHECK(len <= sizeof(body) && read_full(fd, body, len));
        p = NULL;
        CHECK(ldns_wire2pkt(&p, body, len) == LDNS_STATUS_OK);
        if (p) {
            CHECK_INT(ldns_pkt_id(p), 77);
            check_rr(ldns_pkt_answer(p), 0, "www.example.test.\t300\tIN\tA\t203.0.113.5");
            ldns_pkt_free(p);
        }
    }
    /* A length prefix shorter than a header closes the connection. */
    uint8_t tiny[] = {0, 3, 1, 2, 3};
    send(fd, tiny, sizeof(tiny), 0);
    uint8_t byte;
    CHECK(!read_full(fd, &byte, 1));
    close(fd);

    /* Garbage over UDP gets no answer or FORMERR, then a good query is
     * answered. */
    uint8_t junk[3] = {1, 2, 3};
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    sendto(u, junk, sizeof(junk), 0, (struct sockaddr *)&a, sizeof(a));
    close(u);
    p = udp_ask(port, &m);
    CHECK(p != NULL && ldns_pkt_get_rcode(p) == LDNS_RCODE_NOERROR);
    ldns_pkt_free(p);

    ptc_dns_server_stop(s);
    /* Busy address: the reason comes back. */
    int hold = socket(AF_INET, SOCK_DGRAM, 0);
    bind(hold, (struct sockaddr *)&a, sizeof(a));
    CHECK(ptc_dns_server_start(listen, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "cannot bind") != NULL);
    close(hold);
    CHECK(ptc_dns_server_start("nonsense", err, sizeof(err)) == NULL);
}

int main(void)
{
    RUN(test_names);
    RUN(test_zone_build);
    RUN(test_zone_from_state);
    RUN(test_answers);
    RUN(test_truncation);
    RUN(test_hostile);
    RUN(test_server);
    TEST_EXIT();
}
