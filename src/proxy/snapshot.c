/* Snapshot building, lookup and lifetime; the health cells and the route
 * name registry (see snapshot.h). */
#include "proxy/snapshot.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "core/sock.h"
#include "tls/tls.h"

#define MAX_NAME 253

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}
#define FNV0 1469598103934665603ull

/* ------------------------------------------------------------ registries */

/* A string-keyed registry with stable indices; entries are never removed,
 * so a name keeps its index and its address for the life of the process.
 * Names are packed into blocks that never move (at 10,000 route names, one
 * allocation each would double what they take); values are kept only by
 * a registry that asks for them. */
#define REG_BLOCK 16384

typedef struct registry {
    pthread_mutex_t lock;
    bool with_values;
    const char **names;
    void **values;
    uint32_t n, cap;
    uint32_t *tab; /* index + 1 */
    uint32_t mask;
    char *block; /* where the next name goes, REG_BLOCK bytes at most */
    size_t block_left;
} registry;

static registry g_stats = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* Caller holds r->lock. */
static uint32_t *reg_slot(registry *r, const char *name, size_t len)
{
    for (uint64_t i = fnv(FNV0, name, len);; i++) {
        uint32_t *s = &r->tab[i & r->mask];
        if (*s == 0)
            return s;
        const char *have = r->names[*s - 1];
        if (strncmp(have, name, len) == 0 && have[len] == '\0')
            return s;
    }
}

/* A copy of name[0..len) in r's blocks.  Caller holds r->lock. */
static const char *reg_copy(registry *r, const char *name, size_t len)
{
    if (r->block_left < len + 1) {
        r->block = ptc_xmalloc(REG_BLOCK);
        r->block_left = REG_BLOCK;
    }
    char *copy = memcpy(r->block, name, len);
    copy[len] = '\0';
    r->block += len + 1;
    r->block_left -= len + 1;
    return copy;
}

/* Caller holds r->lock.  Returns the index of name (at most MAX_NAME + 16
 * bytes), adding it when new. */
static uint32_t reg_intern(registry *r, const char *name, size_t len, bool *added)
{
    if (r->tab == NULL || (r->n + 1) * 2 > r->mask + 1) {
        uint32_t cap = r->tab ? (r->mask + 1) * 2 : 1024;
        free(r->tab);
        r->tab = ptc_xcalloc(cap, sizeof(uint32_t));
        r->mask = cap - 1;
        for (uint32_t i = 0; i < r->n; i++)
            *reg_slot(r, r->names[i], strlen(r->names[i])) = i + 1;
    }
    uint32_t *s = reg_slot(r, name, len);
    *added = *s == 0;
    if (*s == 0) {
        if (r->n == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 256;
            r->names = ptc_xrealloc(r->names, r->cap * sizeof(char *));
            if (r->with_values)
                r->values = ptc_xrealloc(r->values, r->cap * sizeof(void *));
        }
        r->names[r->n] = reg_copy(r, name, len);
        if (r->with_values)
            r->values[r->n] = NULL;
        *s = ++r->n;
    }
    return *s - 1;
}

uint32_t ptc_snap_stat_count(void)
{
    pthread_mutex_lock(&g_stats.lock);
    uint32_t n = g_stats.n;
    pthread_mutex_unlock(&g_stats.lock);
    return n;
}

const char *ptc_snap_stat_name(uint32_t idx)
{
    pthread_mutex_lock(&g_stats.lock);
    const char *name = idx < g_stats.n ? g_stats.names[idx] : "";
    pthread_mutex_unlock(&g_stats.lock);
    return name;
}

/* Health cells live in a registry of "host:port" keys too, made by the
 * first snapshot that names the address or the first verdict about it,
 * whichever comes first, and never freed: a verdict outlives the
 * snapshots (the checker, not the routes, owns it), and workers read
 * cells without any lock. */
struct ptc_health_cell {
    atomic_bool healthy;
    atomic_uint failures; /* in a row, across workers */
};

static registry g_health = {.lock = PTHREAD_MUTEX_INITIALIZER, .with_values = true};

bool ptc_snap_upstream_healthy(const ptc_snap_upstream *u)
{
    return atomic_load_explicit(&u->health->healthy, memory_order_relaxed);
}

bool ptc_snap_upstream_failed(const ptc_snap_upstream *u)
{
    ptc_health_cell *c = u->health;
    unsigned n = atomic_fetch_add_explicit(&c->failures, 1, memory_order_relaxed) + 1;
    if (n < PTC_DP_PASSIVE_FAILURES)
        return false;
    /* Only the worker that turns it from healthy to not reports it. */
    bool was = true;
    return atomic_compare_exchange_strong(&c->healthy, &was, false);
}

void ptc_snap_upstream_succeeded(const ptc_snap_upstream *u)
{
    ptc_health_cell *c = u->health;
    if (atomic_load_explicit(&c->failures, memory_order_relaxed) != 0)
        atomic_store_explicit(&c->failures, 0, memory_order_relaxed);
}

/* The cell for key, made healthy when new; *interned (if not NULL) is the
 * registry's copy of key.  Caller holds g_health.lock. */
static ptc_health_cell *health_cell(const char *key, size_t len, const char **interned)
{
    bool added;
    uint32_t idx = reg_intern(&g_health, key, len, &added);
    if (interned != NULL)
        *interned = g_health.names[idx];
    ptc_health_cell *c = g_health.values[idx];
    if (c == NULL) {
        c = ptc_xcalloc(1, sizeof(*c));
        atomic_init(&c->healthy, true);
        atomic_init(&c->failures, 0);
        g_health.values[idx] = c;
    }
    return c;
}

int ptc_dp_upstream_set_healthy(const char *host, unsigned port, bool healthy)
{
    char key[MAX_NAME + 16];
    int len = snprintf(key, sizeof(key), "%s:%u", host, port);
    if (len < 0 || (size_t)len >= sizeof(key))
        return -EINVAL;
    pthread_mutex_lock(&g_health.lock);
    ptc_health_cell *c = health_cell(key, (size_t)len, NULL);
    atomic_store_explicit(&c->failures, 0, memory_order_relaxed);
    atomic_store_explicit(&c->healthy, healthy, memory_order_relaxed);
    pthread_mutex_unlock(&g_health.lock);
    return 0;
}

/* -------------------------------------------------------------- building */

typedef struct snap_cert_slot {
    const char *name; /* exact name, or a wildcard's suffix */
    uint32_t len;
    bool wildcard;
    uint32_t ctx; /* index into ctxs */
} snap_cert_slot;

static bool valid_domain_n(const char *d, size_t n)
{
    if (n == 0 || n > MAX_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
              (c == '*' && i == 0 && d[1] == '.')))
            return false;
    }
    return d[n - 1] != '.';
}

static bool valid_domain(const char *d)
{
    return valid_domain_n(d, strlen(d));
}

static snap_cert_slot *cert_slot(const ptc_dp_snapshot *s, const char *name, size_t len, bool wildcard)
{
    for (uint64_t i = fnv(FNV0 + wildcard, name, len);; i++) {
        snap_cert_slot *slot = &s->cert_tab[i & s->cert_mask];
        if (slot->name == NULL ||
            (slot->wildcard == wildcard && slot->len == len && memcmp(slot->name, name, len) == 0))
            return slot;
    }
}

_Static_assert(sizeof(ptc_snap_upstream) <= 56, "one per upstream of every route: 10,000 routes hold them");

struct ptc_snap_cell {
    atomic_long refs;
    ptc_snap_route route;
    ptc_snap_upstream ups[]; /* then the strings */
};

/* A per-build cache of resolved names, so that 10,000 routes to one
 * upstream host ask the resolver once. */
typedef struct resolved {
    const char *host;
    int rc;
    ptc_sockaddr addr;
    char err[160];
} resolved;

typedef struct resolver {
    resolved *cache;
    size_t n, cap;
    const char *prev_host; /* most routes share a few upstream hosts */
    ptc_sockaddr prev;
} resolver;

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 1;
}

static char *put_str(char **arena, const char *s)
{
    char *at = *arena;
    size_t n = str_size(s);
    memcpy(at, s ? s : "", n);
    *arena += n;
    return at;
}

/* s[0..len) and a NUL. */
static char *put_strn(char **arena, const char *s, size_t len)
{
    char *at = *arena;
    memcpy(at, s, len);
    at[len] = '\0';
    *arena += len + 1;
    return at;
}

static void cell_release(ptc_snap_cell *c)
{
    if (c != NULL && atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) == 1)
        free(c);
}

static void snapshot_free(ptc_dp_snapshot *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_ctxs; i++)
        ptc_tls_cert_ctx_release(s->ctxs[i]);
    for (size_t i = 0; i < s->n_routes; i++)
        cell_release(s->cells[i]);
    ptc_router_free(s->router);
    free(s->ctxs);
    free(s->cert_tab);
    free(s->cells);
    free(s->strings);
    free(s);
}

void ptc_dp_snapshot_discard(ptc_dp_snapshot *snap)
{
    snapshot_free(snap);
}

void ptc_snap_retain(ptc_dp_snapshot *snap)
{
    atomic_fetch_add_explicit(&snap->refs, 1, memory_order_relaxed);
}

static _Atomic(ptc_dp_snapshot *) g_dead;

void ptc_snap_release(ptc_dp_snapshot *snap)
{
    if (snap == NULL || atomic_fetch_sub_explicit(&snap->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* Push only, and the reaper takes the whole list at once: no ABA. */
    snap->dead_next = atomic_load_explicit(&g_dead, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&g_dead, &snap->dead_next, snap, memory_order_release,
                                                  memory_order_relaxed))
        ;
}

void ptc_snap_reap(void)
{
    ptc_dp_snapshot *s = atomic_exchange_explicit(&g_dead, NULL, memory_order_acquire);
    while (s != NULL) {
        ptc_dp_snapshot *next = s->dead_next;
        snapshot_free(s);
        s = next;
    }
}

static void set_port(ptc_sockaddr *a, unsigned port)
{
    if (a->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
}

/* Writes "host:port" and a NUL at out; returns the bytes used. */
static size_t put_label(char *out, const char *host, unsigned port)
{
    size_t n = strlen(host);
    char digits[8];
    int d = 0;
    memcpy(out, host, n);
    out[n++] = ':';
    do {
        digits[d++] = (char)('0' + port % 10);
        port /= 10;
    } while (port);
    while (d > 0)
        out[n++] = digits[--d];
    out[n++] = '\0';
    return n;
}

/* The address of an upstream, an IP literal at once, a name through the
 * build's cache.  Returns 0 or a negative errno with the reason in err. */
static int resolve_one(resolver *rv, const char *route, const ptc_dp_upstream *in, ptc_sockaddr *a, char *err,
                       size_t errlen)
{
    if (in->host == NULL || in->port == 0 || in->port > 65535) {
        snprintf(err, errlen, "route %s: bad upstream", route);
        return -EINVAL;
    }
    if (rv->prev_host != NULL && strcmp(rv->prev_host, in->host) == 0) {
        *a = rv->prev;
    } else if (ptc_sock_addr_from_ip(in->host, in->port, a) < 0 || in->host[0] == '\0') {
        resolved *r = NULL;
        for (size_t k = 0; k < rv->n && r == NULL; k++)
            if (strcmp(rv->cache[k].host, in->host) == 0)
                r = &rv->cache[k];
        if (r == NULL) {
            if (rv->n == rv->cap) {
                rv->cap = rv->cap ? rv->cap * 2 : 8;
                rv->cache = ptc_xrealloc(rv->cache, rv->cap * sizeof(*rv->cache));
            }
            r = &rv->cache[rv->n++];
            r->host = in->host;
            r->rc = ptc_sock_resolve(in->host, in->port, &r->addr, r->err, sizeof(r->err));
        }
        if (r->rc < 0) {
            snprintf(err, errlen, "route %s: %s", route, r->err);
            return r->rc;
        }
        *a = r->addr;
    }
    set_port(a, in->port);
    rv->prev_host = in->host;
    rv->prev = *a;
    return 0;
}

/* Compiles one route into a cell of its own (one reference).  Returns
 * NULL with the reason in err. */
static ptc_snap_cell *cell_build(const ptc_dp_route *in, size_t i, resolver *rv, char *err, size_t errlen)
{
    if (in->name == NULL || in->domain == NULL || in->path_prefix == NULL) {
        snprintf(err, errlen, "route %zu: no name, domain or path prefix", i);
        return NULL;
    }
    size_t name_len = strlen(in->name), domain_len = strlen(in->domain), prefix_len = strlen(in->path_prefix);
    if (name_len == 0 || name_len > MAX_NAME || !valid_domain_n(in->domain, domain_len) ||
        in->path_prefix[0] != '/' || (in->n_upstreams > 0 && in->upstreams == NULL)) {
        snprintf(err, errlen, "route %zu: bad name, domain or path prefix", i);
        return NULL;
    }
    /* The name and the upstreams' labels are the interned ones. */
    size_t bytes = domain_len + prefix_len + 2;
    for (size_t j = 0; j < in->n_upstreams; j++) {
        if (in->upstreams[j].host == NULL || strlen(in->upstreams[j].host) > MAX_NAME) {
            snprintf(err, errlen, "route %s: bad upstream", in->name);
            return NULL;
        }
    }
    ptc_snap_cell *c = ptc_xcalloc(1, sizeof(*c) + in->n_upstreams * sizeof(ptc_snap_upstream) + bytes);
    char *arena = (char *)&c->ups[in->n_upstreams];
    ptc_snap_route *out = &c->route;
    bool added;

    atomic_init(&c->refs, 1);
    for (size_t j = 0; j < in->n_upstreams; j++) {
        ptc_snap_upstream *u = &c->ups[j];
        ptc_sockaddr a;
        int rc = resolve_one(rv, in->name, &in->upstreams[j], &a, err, errlen);
        if (rc < 0) {
            free(c);
            return NULL;
        }
        memcpy(&u->addr, &a.ss, a.len);
        u->addr_len = (uint16_t)a.len;
        u->addr_hash = fnv(FNV0, &a.ss, a.len);
        unsigned weight = in->upstreams[j].weight ? in->upstreams[j].weight : 1;
        u->weight = (uint16_t)(weight < PTC_DP_WEIGHT_MAX ? weight : PTC_DP_WEIGHT_MAX);
    }
    out->domain = put_strn(&arena, in->domain, domain_len);
    out->path_prefix = put_strn(&arena, in->path_prefix, prefix_len);
    out->strip_prefix = in->strip_prefix;
    out->websocket = in->websocket;
    out->security_headers = in->security_headers;
    out->https_only = in->https_only;
    out->max_body_size = in->max_body_size;
    out->upstreams = c->ups;
    out->n_upstreams = (uint32_t)in->n_upstreams;
    pthread_mutex_lock(&g_stats.lock);
    out->stat_idx = reg_intern(&g_stats, in->name, name_len, &added);
    out->name = g_stats.names[out->stat_idx];
    pthread_mutex_unlock(&g_stats.lock);
    pthread_mutex_lock(&g_health.lock);
    for (size_t j = 0; j < in->n_upstreams; j++) {
        char label[MAX_NAME + 16];
        size_t n = put_label(label, in->upstreams[j].host, in->upstreams[j].port);
        c->ups[j].health = health_cell(label, n - 1, &c->ups[j].label);
    }
    pthread_mutex_unlock(&g_health.lock);
    return c;
}

static int add_certs(ptc_dp_snapshot *s, const ptc_dp_snapshot *prev, const ptc_dp_cert *certs,
                     size_t n_certs, char *err, size_t errlen)
{
    uint32_t cap = 16;
    size_t bytes = 0;
    while (cap < 2 * n_certs + 2)
        cap *= 2;
    for (size_t i = 0; i < n_certs; i++)
        bytes += str_size(certs[i].domain);
    s->strings = ptc_xmalloc(bytes + 1);
    char *arena = s->strings;
    s->cert_tab = ptc_xcalloc(cap, sizeof(snap_cert_slot));
    s->cert_mask = cap - 1;
    s->ctxs = ptc_xcalloc(n_certs ? n_certs : 1, sizeof(SSL_CTX *));
    for (size_t i = 0; i < n_certs; i++) {
        const char *d = certs[i].domain;
        char what[300] = "";
        SSL_CTX *ctx;
        if (d == NULL || !valid_domain(d) ||
            (certs[i].keep == 0 && (certs[i].cert_pem == NULL || certs[i].key_pem == NULL))) {
            snprintf(err, errlen, "certificate %zu: bad domain, certificate or key", i);
            return -EINVAL;
        }
        if (certs[i].keep != 0) {
            if (prev == NULL || certs[i].keep > prev->n_ctxs) {
                snprintf(err, errlen, "certificate %zu: kept from no previous snapshot", i);
                return -EINVAL;
            }
            ctx = ptc_tls_cert_ctx_retain(prev->ctxs[certs[i].keep - 1]);
        } else {
            ctx = ptc_tls_cert_ctx_get(certs[i].cert_pem, certs[i].key_pem, what, sizeof(what));
        }
        if (ctx == NULL) {
            snprintf(err, errlen, "certificate for %s: %s", d, what);
            return -EINVAL;
        }
        s->ctxs[s->n_ctxs++] = ctx;
        bool wildcard = d[0] == '*';
        const char *name = put_str(&arena, wildcard ? d + 2 : d);
        snap_cert_slot *slot = cert_slot(s, name, strlen(name), wildcard);
        if (slot->name == NULL) /* the first certificate named for a domain wins */
            *slot = (snap_cert_slot){name, (uint32_t)strlen(name), wildcard, (uint32_t)(s->n_ctxs - 1)};
    }
    return 0;
}

/* The router's input, kept from one build to the next like the router's
 * own block (see router.c), until ptc_dp_snapshot_trim. */
static ptc_spare g_entries = PTC_SPARE_INIT;

void ptc_dp_snapshot_trim(void)
{
    ptc_spare_drop(&g_entries);
    ptc_router_trim();
}

ptc_dp_snapshot *ptc_dp_snapshot_build(const ptc_dp_snapshot *prev, const ptc_dp_route *routes,
                                       size_t n_routes, const ptc_dp_cert *certs, size_t n_certs, char *err,
                                       size_t errlen)
{
    ptc_dp_snapshot *s = ptc_xcalloc(1, sizeof(*s));
    size_t entries_size;
    ptc_router_entry *entries =
        ptc_spare_take(&g_entries, (n_routes ? n_routes : 1) * sizeof(*entries), &entries_size);
    resolver rv = {0};
    atomic_init(&s->refs, 1);

    s->cells = ptc_xcalloc(n_routes ? n_routes : 1, sizeof(ptc_snap_cell *));
    for (size_t i = 0; i < n_routes; i++) {
        ptc_snap_cell *c;
        if (routes[i].keep != 0) {
            if (prev == NULL || routes[i].keep > prev->n_routes) {
                snprintf(err, errlen, "route %zu: kept from no previous snapshot", i);
                goto fail;
            }
            c = prev->cells[routes[i].keep - 1];
            atomic_fetch_add_explicit(&c->refs, 1, memory_order_relaxed);
        } else if ((c = cell_build(&routes[i], i, &rv, err, errlen)) == NULL) {
            goto fail;
        }
        s->cells[s->n_routes++] = c;
        entries[i] = (ptc_router_entry){c->route.domain, c->route.path_prefix, (int)i};
    }
    /* Route names are interned for good: their count bounds every index. */
    s->stat_limit = ptc_snap_stat_count();
    s->router = ptc_router_build(entries, n_routes);
    if (add_certs(s, prev, certs, n_certs, err, errlen) < 0)
        goto fail;
    ptc_spare_put(&g_entries, entries, entries_size);
    free(rv.cache);
    return s;
fail:
    ptc_spare_put(&g_entries, entries, entries_size);
    free(rv.cache);
    snapshot_free(s);
    return NULL;
}

const ptc_snap_route *ptc_snap_route_match(const ptc_dp_snapshot *snap, ptc_str host, ptc_str path,
                                           size_t *prefix_len)
{
    int id = ptc_router_match(snap->router, host, path, prefix_len);
    return id < 0 ? NULL : &snap->cells[id]->route;
}

bool ptc_dp_snapshot_https_only(const ptc_dp_snapshot *snap, const char *domain, const char *path_prefix)
{
    size_t plen;
    const ptc_snap_route *r = ptc_snap_route_match(snap, ptc_str_make(domain, strlen(domain)),
                                                   ptc_str_make(path_prefix, strlen(path_prefix)), &plen);
    return r != NULL && r->https_only;
}

SSL_CTX *ptc_snap_cert_pick(const ptc_dp_snapshot *snap, const char *servername)
{
    char key[MAX_NAME + 2];
    if (servername == NULL || snap->n_ctxs == 0)
        return NULL;
    long len = ptc_router_host_key(servername, strlen(servername), key, sizeof(key));
    if (len <= 0)
        return NULL;
    snap_cert_slot *slot = cert_slot(snap, key, (size_t)len, false);
    if (slot->name != NULL)
        return snap->ctxs[slot->ctx];
    const char *dot = memchr(key, '.', (size_t)len);
    if (dot == NULL || dot == key)
        return NULL;
    slot = cert_slot(snap, dot + 1, (size_t)(key + len - dot - 1), true);
    return slot->name != NULL ? snap->ctxs[slot->ctx] : NULL;
}
