/* Zone snapshots: building one from entries (and from the store's
 * records plus the proxies with dns: true), lookups, names and the BIND
 * export (see dns.h). */
#include "dns/dns_impl.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SOA_REFRESH 3600
#define SOA_RETRY 600
#define SOA_EXPIRE 604800
#define SOA_MINIMUM 60

bool ptc_dns_in_zone(const char *zone, const char *fqdn)
{
    size_t zl = strlen(zone), fl = strlen(fqdn);
    if (fl == zl)
        return strcmp(zone, fqdn) == 0;
    return fl > zl && fqdn[fl - zl - 1] == '.' && strcmp(fqdn + fl - zl, zone) == 0;
}

const char *ptc_dns_name_qualify(const char *zone, const char *name, char *out, size_t outlen)
{
    char tmp[PTC_DOMAIN_MAX + 2];
    size_t n = strlen(name);
    bool absolute = false;
    const char *why;

    if (n == 0)
        return "is empty";
    if (n > PTC_DOMAIN_MAX + 1)
        return "is longer than 253 characters";
    memcpy(tmp, name, n + 1);
    ptc_str_lower(tmp);
    if (tmp[n - 1] == '.') {
        tmp[--n] = '\0';
        absolute = true;
    }
    if (strcmp(tmp, "@") == 0) {
        snprintf(tmp, sizeof(tmp), "%s", zone);
    } else if (!ptc_dns_in_zone(zone, tmp)) {
        if (absolute)
            return "is not inside the zone";
        if (n + 1 + strlen(zone) > PTC_DOMAIN_MAX)
            return "is longer than 253 characters with the zone";
        size_t k = strlen(tmp);
        snprintf(tmp + k, sizeof(tmp) - k, ".%s", zone);
    }
    if ((why = ptc_check_domain(tmp, false)) != NULL)
        return why;
    if (strlen(tmp) + 1 > outlen)
        return "is too long";
    memcpy(out, tmp, strlen(tmp) + 1);
    return NULL;
}

static int cmp_entry(const void *a, const void *b)
{
    const ptc_dns_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c == 0)
        c = strcmp(x->type, y->type);
    if (c == 0)
        c = strcmp(x->value, y->value);
    return c;
}

static int cmp_node(const void *a, const void *b)
{
    return strcmp(((const ptc_dns_node *)a)->name, ((const ptc_dns_node *)b)->name);
}

const ptc_dns_node *ptc_dns_zone_lookup(const ptc_dns_zone *z, const char *name)
{
    ptc_dns_node key = {.name = (char *)name};
    return bsearch(&key, z->nodes, z->n_nodes, sizeof(*z->nodes), cmp_node);
}

/* Adds name and every ancestor down to the apex as nodes (duplicates are
 * removed after sorting). */
static void add_nodes(ptc_dns_zone *z, size_t *cap, const char *name)
{
    size_t zl = strlen(z->name);
    const char *p = name;
    for (;;) {
        if (z->n_nodes == *cap) {
            *cap *= 2;
            z->nodes = ptc_xrealloc(z->nodes, *cap * sizeof(*z->nodes));
        }
        z->nodes[z->n_nodes++] = (ptc_dns_node){.name = ptc_xstrdup(p)};
        if (strlen(p) <= zl)
            break;
        p = strchr(p, '.') + 1;
    }
}

static char *soa_text(const char *zone, uint32_t serial)
{
    return ptc_xasprintf("%s. %u IN SOA ns.%s. hostmaster.%s. %u %u %u %u %u", zone, PTC_DNS_TTL_DEFAULT,
                         zone, zone, serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE, SOA_MINIMUM);
}

static ldns_rr *rr_from_text(const char *text)
{
    ldns_rr *rr = NULL;
    if (ldns_rr_new_frm_str(&rr, text, PTC_DNS_TTL_DEFAULT, NULL, NULL) != LDNS_STATUS_OK)
        return NULL;
    return rr;
}

ptc_dns_zone *ptc_dns_zone_build(const char *zone, uint32_t serial, const ptc_dns_entry *entries, size_t n,
                                 char *err, size_t errlen)
{
    ptc_dns_zone *z = ptc_xcalloc(1, sizeof(*z));
    size_t cap = 2 * n + 4;
    char *text = NULL;

    atomic_init(&z->refs, 1);
    z->name = ptc_xstrdup(zone);
    z->serial = serial;
    if (ptc_check_domain(zone, false) != NULL) {
        snprintf(err, errlen, "dns_zone: \"%s\" is not a domain name", zone);
        goto fail;
    }
    z->entries = ptc_xcalloc(n + 1, sizeof(*z->entries));
    for (size_t i = 0; i < n; i++) {
        const ptc_dns_entry *e = &entries[i];
        if (!ptc_dns_in_zone(zone, e->name) || ptc_check_domain(e->name, false) != NULL) {
            snprintf(err, errlen, "dns: %s is not a name inside %s", e->name, zone);
            goto fail;
        }
        if (e->ttl > PTC_DNS_TTL_MAX) {
            snprintf(err, errlen, "dns: %s has a TTL over %d", e->name, PTC_DNS_TTL_MAX);
            goto fail;
        }
        z->entries[i] = (ptc_dns_entry){
            .name = ptc_xstrdup(e->name),
            .type = ptc_xstrdup(e->type),
            .value = ptc_xstrdup(e->value),
            .ttl = e->ttl,
            .source = ptc_xstrdup(e->source ? e->source : "api"),
            .created_at = e->created_at,
            .updated_at = e->updated_at,
        };
        z->n_entries++;
    }
    qsort(z->entries, z->n_entries, sizeof(*z->entries), cmp_entry);
    z->rdata = ptc_xcalloc(n + 1, sizeof(*z->rdata));
    for (size_t i = 0; i < n; i++) {
        const ptc_dns_entry *e = &z->entries[i];
        int af = strcmp(e->type, "A") == 0 ? AF_INET : strcmp(e->type, "AAAA") == 0 ? AF_INET6 : -1;
        if (af < 0 || inet_pton(af, e->value, z->rdata[i]) != 1) {
            snprintf(err, errlen, "dns: %s %s %s is not a valid address record", e->name, e->type, e->value);
            goto fail;
        }
    }

    z->nodes = ptc_xcalloc(cap, sizeof(*z->nodes));
    add_nodes(z, &cap, zone);
    for (size_t i = 0; i < z->n_entries; i++)
        add_nodes(z, &cap, z->entries[i].name);
    qsort(z->nodes, z->n_nodes, sizeof(*z->nodes), cmp_node);
    size_t kept = 0;
    for (size_t i = 0; i < z->n_nodes; i++) {
        if (kept > 0 && strcmp(z->nodes[kept - 1].name, z->nodes[i].name) == 0) {
            free(z->nodes[i].name);
            continue;
        }
        z->nodes[kept++] = z->nodes[i];
    }
    z->n_nodes = kept;
    /* Entries and nodes are sorted the same way, so each node's entries
     * are one run. */
    for (size_t i = 0, k = 0; i < z->n_nodes; i++) {
        while (k < z->n_entries && strcmp(z->entries[k].name, z->nodes[i].name) < 0)
            k++;
        z->nodes[i].first = k;
        while (k < z->n_entries && strcmp(z->entries[k].name, z->nodes[i].name) == 0)
            k++;
        z->nodes[i].count = k - z->nodes[i].first;
    }

    text = soa_text(zone, serial);
    z->soa = rr_from_text(text);
    free(text);
    text = ptc_xasprintf("%s. %u IN NS ns.%s.", zone, PTC_DNS_TTL_DEFAULT, zone);
    z->ns = rr_from_text(text);
    free(text);
    if (z->soa == NULL || z->ns == NULL) {
        snprintf(err, errlen, "dns: cannot build the SOA and NS records of %s", zone);
        goto fail;
    }
    z->negative_ttl = SOA_MINIMUM < PTC_DNS_TTL_DEFAULT ? SOA_MINIMUM : PTC_DNS_TTL_DEFAULT;
    return z;
fail:
    ptc_dns_zone_release(z);
    return NULL;
}

ptc_dns_zone *ptc_dns_zone_from(const char *zone, const char *proxy_ip, uint32_t serial,
                                const ptc_dns_record_list *records, const ptc_state *state, char *err,
                                size_t errlen)
{
    size_t n_rec = records ? records->n : 0, n_prx = state ? state->n_proxies : 0, n = 0;
    ptc_dns_entry *entries = ptc_xcalloc(n_rec + n_prx + 1, sizeof(*entries));
    char **sources = ptc_xcalloc(n_prx + 1, sizeof(*sources));
    const char *proxy_type = NULL;
    unsigned char buf[16];

    if (proxy_ip && inet_pton(AF_INET, proxy_ip, buf) == 1)
        proxy_type = "A";
    else if (proxy_ip && inet_pton(AF_INET6, proxy_ip, buf) == 1)
        proxy_type = "AAAA";
    for (size_t i = 0; i < n_rec; i++) {
        const ptc_dns_record *r = &records->items[i];
        /* Records stored under an earlier dns_zone stay in the store but
         * are not part of this zone. */
        if (!ptc_dns_in_zone(zone, r->name)) {
            ptc_log_warn("dns: stored record outside the zone; not served", PTC_LS("name", r->name),
                         PTC_LS("zone", zone));
            continue;
        }
        entries[n++] =
            (ptc_dns_entry){r->name, r->type, r->value, r->ttl, "api", r->created_at, r->updated_at};
    }
    for (size_t i = 0; proxy_type && i < n_prx; i++) {
        const ptc_proxy *p = state->proxies[i];
        bool taken = false;
        if (!p->dns || p->domain[0] == '*' || !ptc_dns_in_zone(zone, p->domain))
            continue;
        /* A managed record of the same type wins; several proxies of one
         * domain (different paths) publish it once. */
        for (size_t k = 0; k < n && !taken; k++)
            taken = strcmp(entries[k].name, p->domain) == 0 && strcmp(entries[k].type, proxy_type) == 0;
        if (taken)
            continue;
        sources[i] = ptc_xasprintf("proxy:%s", p->name);
        entries[n++] =
            (ptc_dns_entry){p->domain, proxy_type, proxy_ip, PTC_DNS_TTL_DEFAULT, sources[i], 0, 0};
    }
    ptc_dns_zone *z = ptc_dns_zone_build(zone, serial, entries, n, err, errlen);
    for (size_t i = 0; i < n_prx; i++)
        free(sources[i]);
    free(sources);
    free(entries);
    return z;
}

ptc_dns_zone *ptc_dns_zone_retain(const ptc_dns_zone *z)
{
    ptc_dns_zone *m = (ptc_dns_zone *)z;
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void ptc_dns_zone_release(const ptc_dns_zone *z)
{
    ptc_dns_zone *m = (ptc_dns_zone *)z;
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    for (size_t i = 0; i < m->n_entries; i++) {
        free((char *)m->entries[i].name);
        free((char *)m->entries[i].type);
        free((char *)m->entries[i].value);
        free((char *)m->entries[i].source);
    }
    for (size_t i = 0; i < m->n_nodes; i++)
        free(m->nodes[i].name);
    if (m->soa)
        ldns_rr_free(m->soa);
    if (m->ns)
        ldns_rr_free(m->ns);
    free(m->entries);
    free(m->rdata);
    free(m->nodes);
    free(m->name);
    free(m);
}

const char *ptc_dns_zone_name(const ptc_dns_zone *z)
{
    return z->name;
}

uint32_t ptc_dns_zone_serial(const ptc_dns_zone *z)
{
    return z->serial;
}

const ptc_dns_entry *ptc_dns_zone_entries(const ptc_dns_zone *z, size_t *n)
{
    *n = z->n_entries;
    return z->entries;
}

void ptc_dns_zone_export(const ptc_dns_zone *z, ptc_buf *out)
{
    size_t zl = strlen(z->name);
    ptc_buf_appendf(out, "; zone %s, exported by portico\n$ORIGIN %s.\n$TTL %u\n", z->name, z->name,
                    PTC_DNS_TTL_DEFAULT);
    ptc_buf_appendf(out,
                    "@\t%u\tIN\tSOA\tns.%s. hostmaster.%s. (\n\t\t\t%u\t; serial\n\t\t\t%u\t; refresh\n"
                    "\t\t\t%u\t; retry\n\t\t\t%u\t; expire\n\t\t\t%u )\t; negative caching TTL\n",
                    PTC_DNS_TTL_DEFAULT, z->name, z->name, z->serial, SOA_REFRESH, SOA_RETRY, SOA_EXPIRE,
                    SOA_MINIMUM);
    ptc_buf_appendf(out, "@\t%u\tIN\tNS\tns.%s.\n", PTC_DNS_TTL_DEFAULT, z->name);
    for (size_t i = 0; i < z->n_entries; i++) {
        const ptc_dns_entry *e = &z->entries[i];
        size_t nl = strlen(e->name);
        if (nl == zl)
            ptc_buf_append_str(out, "@");
        else
            ptc_buf_append(out, e->name, nl - zl - 1);
        ptc_buf_appendf(out, "\t%u\tIN\t%s\t%s\t; %s\n", e->ttl, e->type, e->value, e->source);
    }
}
