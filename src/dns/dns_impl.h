/* What the DNS module's files share: the zone's layout and its lookup.
 * Only src/dns/ includes this. */
#ifndef PTC_DNS_IMPL_H
#define PTC_DNS_IMPL_H

#include "dns/dns.h"

#include <ldns/ldns.h>
#include <stdatomic.h>

/* A name that exists in the zone: the apex, a name with entries, or a
 * name with no entries of its own but names below it (an empty
 * non-terminal, which answers NODATA rather than NXDOMAIN). */
typedef struct ptc_dns_node {
    char *name;   /* fully qualified, lower-case, no trailing dot */
    size_t first; /* its entries: entries[first .. first + count) */
    size_t count;
} ptc_dns_node;

struct ptc_dns_zone {
    atomic_int refs;
    char *name;
    uint32_t serial;
    ptc_dns_entry *entries; /* sorted by name then type; strings owned */
    uint8_t (*rdata)[16];   /* each entry's address in network order */
    ptc_dns_node *nodes;    /* sorted by name (strcmp) */
    size_t n_entries, n_nodes;
    ldns_rr *soa; /* at the apex */
    ldns_rr *ns;
    uint32_t negative_ttl; /* min(SOA TTL, SOA minimum): RFC 2308 */
};

/* The node of name (lower-case, no trailing dot), or NULL. */
const ptc_dns_node *ptc_dns_zone_lookup(const ptc_dns_zone *z, const char *name);

#endif
