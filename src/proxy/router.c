/* The router (see router.h).
 *
 * Layout: one array of hosts (exact and wildcard alike), two open-addressing
 * tables of host indices keyed by name (a wildcard is stored under its
 * suffix, "*.example.com" under "example.com"), and one array of prefixes
 * grouped by host and sorted longest first within a group, all in one
 * block after the header; the strings are the caller's.
 *
 * Changes come in runs, and each builds a router while the previous one
 * still serves: the block of the last router freed is kept as a spare for
 * the next build (a ptc_spare; ptc_router_trim lets it go), so that a run of changes at
 * 10,000 routes does not map and fault in 0.5 MB of fresh pages each. */
#include "proxy/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

typedef struct host {
    const char *name; /* exact name, or the suffix of a wildcard */
    uint32_t len;
    uint32_t hash;         /* of the name: probes compare it before the name */
    uint32_t first, count; /* its prefixes in routes[] */
} host;

typedef struct prefix {
    const char *p;
    uint32_t len;
    int id;
} prefix;

struct ptc_router {
    size_t block_size; /* of the whole block, header included */
    host *hosts;
    uint32_t n_hosts;
    uint32_t *exact, *wild; /* host index + 1; 0 is an empty slot */
    uint32_t exact_mask, wild_mask;
    prefix *routes;
};

static ptc_spare g_spare = PTC_SPARE_INIT;

void ptc_router_trim(void)
{
    ptc_spare_drop(&g_spare);
}

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

/* A table of at least twice as many slots as names, a power of two. */
static uint32_t table_mask(size_t n)
{
    uint32_t cap = 16;
    while (cap < 2 * n + 2)
        cap *= 2;
    return cap - 1;
}

static uint32_t *find_slot(const ptc_router *r, uint32_t *tab, uint32_t mask, const char *name, size_t len,
                           uint64_t hash)
{
    for (uint64_t i = hash;; i++) {
        uint32_t *slot = &tab[i & mask];
        if (*slot == 0)
            return slot;
        const host *h = &r->hosts[*slot - 1];
        if (h->hash == (uint32_t)hash && h->len == len && memcmp(h->name, name, len) == 0)
            return slot;
    }
}

ptc_router *ptc_router_build(const ptc_router_entry *entries, size_t n)
{
    size_t n_wild = 0;
    for (size_t i = 0; i < n; i++)
        n_wild += entries[i].domain[0] == '*' && entries[i].domain[1] == '.';
    uint32_t exact_mask = table_mask(n - n_wild), wild_mask = table_mask(n_wild);
    /* header | hosts[n] | routes[n] | exact[] | wild[]: each part's
     * alignment divides the size of the parts before it. */
    size_t cap = n ? n : 1;
    size_t hosts_at = sizeof(ptc_router), routes_at = hosts_at + cap * sizeof(host);
    size_t exact_at = routes_at + cap * sizeof(prefix),
           wild_at = exact_at + (exact_mask + 1) * sizeof(uint32_t);
    size_t size = wild_at + (wild_mask + 1) * sizeof(uint32_t);
    _Static_assert(sizeof(ptc_router) % _Alignof(host) == 0 && sizeof(host) % _Alignof(prefix) == 0 &&
                       sizeof(prefix) % _Alignof(uint32_t) == 0,
                   "the parts of a router's block stay aligned");
    size_t block_size;
    ptc_router *r = ptc_spare_take(&g_spare, size, &block_size);
    char *base = (char *)r;
    memset(r, 0, routes_at); /* the header and the hosts; routes are all written */
    memset(base + exact_at, 0, size - exact_at);
    r->block_size = block_size;
    r->hosts = (host *)(base + hosts_at);
    r->routes = (prefix *)(base + routes_at);
    r->exact = (uint32_t *)(base + exact_at);
    r->wild = (uint32_t *)(base + wild_at);
    r->exact_mask = exact_mask;
    r->wild_mask = wild_mask;
    uint32_t *host_of = ptc_xcalloc(n ? n : 1, sizeof(uint32_t));

    /* Pass 1: intern host names and count each host's prefixes. */
    for (size_t i = 0; i < n; i++) {
        const char *d = entries[i].domain;
        bool wild = d[0] == '*' && d[1] == '.';
        const char *name = wild ? d + 2 : d;
        size_t len = strlen(name);
        uint64_t hash = hash_bytes(name, len);
        uint32_t *slot = wild ? find_slot(r, r->wild, r->wild_mask, name, len, hash)
                              : find_slot(r, r->exact, r->exact_mask, name, len, hash);
        if (*slot == 0) {
            r->hosts[r->n_hosts] = (host){.name = name, .len = (uint32_t)len, .hash = (uint32_t)hash};
            *slot = ++r->n_hosts;
        }
        host_of[i] = *slot - 1;
        r->hosts[*slot - 1].count++;
    }
    /* Pass 2: counting sort of the prefixes by host, in input order. */
    uint32_t at = 0;
    for (uint32_t h = 0; h < r->n_hosts; h++) {
        r->hosts[h].first = at;
        at += r->hosts[h].count;
        r->hosts[h].count = 0;
    }
    for (size_t i = 0; i < n; i++) {
        host *h = &r->hosts[host_of[i]];
        r->routes[h->first + h->count++] = (prefix){.p = entries[i].path_prefix,
                                                    .len = (uint32_t)strlen(entries[i].path_prefix),
                                                    .id = entries[i].id};
    }
    /* Pass 3: longest prefix first within each (small) group; an insertion
     * sort is stable, so of two equal prefixes the first entry wins. */
    for (uint32_t h = 0; h < r->n_hosts; h++) {
        prefix *g = &r->routes[r->hosts[h].first];
        for (uint32_t i = 1; i < r->hosts[h].count; i++) {
            prefix x = g[i];
            uint32_t j = i;
            for (; j > 0 && g[j - 1].len < x.len; j--)
                g[j] = g[j - 1];
            g[j] = x;
        }
    }
    free(host_of);
    return r;
}

void ptc_router_free(ptc_router *r)
{
    if (r != NULL)
        ptc_spare_put(&g_spare, r, r->block_size);
}

static bool prefix_matches(const prefix *p, ptc_str path)
{
    if (p->len == 1) /* "/" */
        return true;
    if (path.len < p->len || memcmp(path.p, p->p, p->len) != 0)
        return false;
    return path.len == p->len || path.p[p->len] == '/';
}

static int match_host(const ptc_router *r, const host *h, ptc_str path, size_t *prefix_len)
{
    const prefix *g = &r->routes[h->first];
    for (uint32_t i = 0; i < h->count; i++) {
        if (prefix_matches(&g[i], path)) {
            *prefix_len = g[i].len;
            return g[i].id;
        }
    }
    return -1;
}

int ptc_router_match(const ptc_router *r, ptc_str host_name, ptc_str path, size_t *prefix_len)
{
    if (r->n_hosts == 0 || host_name.len == 0)
        return -1;
    uint32_t *slot = find_slot(r, r->exact, r->exact_mask, host_name.p, host_name.len,
                               hash_bytes(host_name.p, host_name.len));
    if (*slot != 0)
        return match_host(r, &r->hosts[*slot - 1], path, prefix_len);
    /* The longest wildcard suffix first: "a.b.c" tries "b.c", then "c". */
    for (size_t i = 0; i < host_name.len; i++) {
        if (host_name.p[i] != '.')
            continue;
        const char *suffix = host_name.p + i + 1;
        size_t suffix_len = host_name.len - i - 1;
        slot = find_slot(r, r->wild, r->wild_mask, suffix, suffix_len, hash_bytes(suffix, suffix_len));
        if (*slot != 0)
            return match_host(r, &r->hosts[*slot - 1], path, prefix_len);
    }
    return -1;
}

ptc_str ptc_router_strip(ptc_str path, size_t prefix_len)
{
    if (prefix_len <= 1 || prefix_len > path.len)
        return path;
    if (prefix_len == path.len)
        return PTC_STR_LIT("/");
    return ptc_str_make(path.p + prefix_len, path.len - prefix_len);
}

long ptc_router_host_key(const char *src, size_t len, char *out, size_t outlen)
{
    if (len > 0 && src[len - 1] == '.')
        len--;
    if (len + 1 > outlen)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = src[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    out[len] = '\0';
    return (long)len;
}
