/* Active health checks on one epoll thread (see health.h).
 *
 * The transport is a small HTTP/1.1 client of its own rather than libcurl:
 * curl's connection cache costs time in proportion to the connections it
 * holds on every transfer, which at 10,000 kept-alive upstreams is most of
 * a core; here a check on a kept-alive connection is one send and one or
 * two reads.  Each target keeps its own connection (within a descriptor
 * budget); the response is read by hc_reader.h.  Host names are resolved
 * by a resolver thread with a small cache, so that a slow DNS server never
 * holds up the checks of other targets.
 *
 * Ownership: targets, addresses, slots and the heap belong to the checker
 * and are guarded by h->lock; socket I/O happens on the checker's thread
 * only (under the lock: the API's readers wait at most for one batch of
 * events).  A target is always in exactly one of three places: the heap
 * (waiting for its next check), a slot (in flight), or the graveyard (no
 * proxy uses it; the checker's thread closes and frees it after handling
 * the current batch of events, so no event can name a freed target).
 * Events are queued under the lock and delivered by the checker's thread
 * only, so the listener sees them in order. */
#include "discovery/health.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "discovery/hc_reader.h"
#include "model/validate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define EVENTS_MAX 256
/* Checks start up to this early, so that a wake-up starts several. */
#define BATCH_MS 20
#define READ_CHUNK 16384
/* Resolved names are kept this long; failures for less. */
#define DNS_TTL_MS 30000
#define DNS_NEGATIVE_TTL_MS 5000
#define DNS_ADDRS_MAX 4
#define DNS_ENTRIES_MAX 10000
/* An idle checker still wakes now and then, in case a clock jumped. */
#define IDLE_WAIT_MS 60000
/* Saved targets are checked again soon after a restart. */
#define RESEED_SPREAD_MS 1000
#define COUNT_MAX 1000000000u

/* ---- the state machine ------------------------------------------------- */

const char *ptc_hstate_name(ptc_hstate s)
{
    switch (s) {
    case PTC_HSTATE_HEALTHY:
        return "healthy";
    case PTC_HSTATE_UNHEALTHY:
        return "unhealthy";
    default:
        return "unknown";
    }
}

bool ptc_hsm_feed(ptc_hsm *m, bool ok, unsigned healthy_threshold, unsigned unhealthy_threshold)
{
    ptc_hstate before = m->state;
    if (healthy_threshold < 1)
        healthy_threshold = 1;
    if (unhealthy_threshold < 1)
        unhealthy_threshold = 1;
    if (ok) {
        m->failures = 0;
        if (m->successes < COUNT_MAX)
            m->successes++;
        if (m->successes >= healthy_threshold)
            m->state = PTC_HSTATE_HEALTHY;
    } else {
        m->successes = 0;
        if (m->failures < COUNT_MAX)
            m->failures++;
        if (m->failures >= unhealthy_threshold)
            m->state = PTC_HSTATE_UNHEALTHY;
    }
    return m->state != before;
}

bool ptc_hsm_eject(ptc_hsm *m)
{
    ptc_hstate before = m->state;
    m->state = PTC_HSTATE_UNHEALTHY;
    m->successes = 0;
    m->failures = 0;
    return before != PTC_HSTATE_UNHEALTHY;
}

unsigned ptc_hsm_consecutive(const ptc_hsm *m)
{
    return m->successes > 0 ? m->successes : m->failures;
}

/* ---- data ---------------------------------------------------------------- */

/* 16 bytes: an upstream that 10,000 routes share has 10,000 members, and
 * every change scans them for the shortest interval (kept here, so that
 * the scan reads one array, not 10,000 proxies). */
typedef struct member {
    const ptc_proxy *proxy; /* borrowed from the followed state; its health_check applies */
    uint32_t index;         /* which upstream of that proxy */
    uint32_t interval_ms;   /* proxy->health_check.interval_ms */
} member;

typedef struct address address;

/* A target's ptc_health_view, kept small: the error text is allocated
 * only while the target has one (view_out makes the public view). */
typedef struct tview {
    ptc_hstate state;
    int last_status;
    char *last_error; /* NULL: none */
    int64_t checked_at, changed_at;
    unsigned consecutive;
    bool passive;
} tview;

typedef struct target {
    char *key; /* "host port path" */
    char *host;
    unsigned port;
    char *path;
    char *request; /* the GET, rendered once */
    size_t request_len;
    /* An IP literal host's address: the two families only, 100 bytes
     * less than a sockaddr_storage in each of 10,000 targets. */
    union {
        struct sockaddr any;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } sa;
    socklen_t sa_len;  /* 0: a host name, resolved */
    int fd;            /* the kept-alive connection, or -1 */
    struct slot *slot; /* the check in flight, or NULL */
    struct target *grave_next;
    address *addr;
    struct target *addr_next; /* the address's targets */
    struct target *map_next;  /* hash chain */
    member *members;
    size_t n_members, cap_members;
    unsigned interval_ms, timeout_ms, healthy_threshold, unhealthy_threshold;
    ptc_hsm sm;
    tview view;
    int64_t due; /* monotonic ms of the next check */
    size_t heap_idx;
    bool removed, reuse;
} target;

struct address {
    char *key; /* "host:port" */
    char *host;
    unsigned port;
    target *targets;
    size_t n_targets, n_unhealthy;
    address *map_next;
};

typedef struct map {
    void **buckets; /* target* or address* chains */
    size_t n_buckets, n;
} map;

typedef enum ev_kind { EV_TRANSITION, EV_ADDRESS } ev_kind;

typedef struct event {
    ev_kind kind;
    char *host;
    unsigned port;
    char *path;
    ptc_hstate from, to;
    ptc_health_view view;
    char **proxies;
    size_t n_proxies;
    bool healthy; /* EV_ADDRESS */
    struct event *next;
} event;

typedef struct report {
    char *host;
    unsigned port;
    char *reason;
    struct report *next;
} report;

typedef enum phase { P_RESOLVE, P_CONNECT, P_SEND, P_READ } phase;

/* One check in flight. */
typedef struct slot {
    target *t;
    phase ph;
    int64_t deadline; /* monotonic ms */
    size_t sent;
    unsigned addr_idx; /* which address of a resolved name is tried */
    bool reused;       /* on a kept-alive connection */
    bool retried;      /* once, when a kept-alive connection turned out closed */
    ptc_hc_reader rd;
    struct slot *prev, *next; /* the in-flight list, or the free list (next) */
} slot;

typedef struct heap_entry {
    int64_t due;
    target *t;
} heap_entry;

/* A resolved host name. */
typedef struct dns_entry {
    char *name;
    bool pending;
    int err; /* getaddrinfo's code, 0 when resolved */
    struct sockaddr_storage addrs[DNS_ADDRS_MAX];
    socklen_t lens[DNS_ADDRS_MAX];
    unsigned n;
    int64_t expires;
    struct dns_entry *map_next, *queue_next;
} dns_entry;

typedef struct saved {
    char *key;
    ptc_hstate state;
    ptc_health_view view;
    struct saved *map_next;
} saved;

struct ptc_health {
    pthread_mutex_t lock;
    pthread_t thread;
    bool started, stop;
    ptc_health_listener listener;
    unsigned max_in_flight;
    size_t reuse_budget, n_reusable;
    int ep, wake_fd;
    map targets, addresses;
    heap_entry *heap;
    size_t heap_n, heap_cap;
    size_t in_flight, resolving;
    slot *slots; /* max_in_flight of them */
    /* Slots never used yet follow the first slots_used: the free list
     * holds only returned ones, so the memory of a concurrency that is
     * never reached is never touched. */
    size_t slots_used;
    slot *free_slots, *flying;
    target *graveyard;
    char *rbuf; /* READ_CHUNK bytes, the checker thread's */
    pthread_t resolver;
    bool resolver_started;
    pthread_cond_t dns_cond;
    map dns;
    dns_entry *dns_queue;
    event *ev_head, *ev_tail;
    report *reports;
    const ptc_state *followed;
    map saved; /* saved states waiting for the first follow */
    ptc_health_stats stats;
};

/* ---- a small string-keyed hash map (chains through the *_next fields) ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

/* The two maps hold different types; these accessors keep one code path. */
typedef struct map_ops {
    const char *(*key)(const void *e);
    void **(*next)(void *e);
} map_ops;

static const char *target_key(const void *e)
{
    return ((const target *)e)->key;
}
static void **target_next(void *e)
{
    return (void **)&((target *)e)->map_next;
}
static const char *address_key(const void *e)
{
    return ((const address *)e)->key;
}
static void **address_next(void *e)
{
    return (void **)&((address *)e)->map_next;
}
static const char *saved_key(const void *e)
{
    return ((const saved *)e)->key;
}
static void **saved_next(void *e)
{
    return (void **)&((saved *)e)->map_next;
}
static const char *dns_key(const void *e)
{
    return ((const dns_entry *)e)->name;
}
static void **dns_next(void *e)
{
    return (void **)&((dns_entry *)e)->map_next;
}
static const map_ops dns_ops = {dns_key, dns_next};
static const map_ops target_ops = {target_key, target_next};
static const map_ops address_ops = {address_key, address_next};
static const map_ops saved_ops = {saved_key, saved_next};

static void *map_get(const map *m, const map_ops *ops, const char *key)
{
    if (m->n_buckets == 0)
        return NULL;
    for (void *e = m->buckets[hash_str(key) & (m->n_buckets - 1)]; e; e = *ops->next(e))
        if (strcmp(ops->key(e), key) == 0)
            return e;
    return NULL;
}

static void map_put(map *m, const map_ops *ops, void *e)
{
    if (m->n + 1 > m->n_buckets) {
        size_t nb = m->n_buckets ? m->n_buckets * 2 : 64;
        void **b = ptc_xcalloc(nb, sizeof(void *));
        for (size_t i = 0; i < m->n_buckets; i++) {
            void *cur = m->buckets[i];
            while (cur) {
                void *next = *ops->next(cur);
                size_t k = hash_str(ops->key(cur)) & (nb - 1);
                *ops->next(cur) = b[k];
                b[k] = cur;
                cur = next;
            }
        }
        free(m->buckets);
        m->buckets = b;
        m->n_buckets = nb;
    }
    size_t k = hash_str(ops->key(e)) & (m->n_buckets - 1);
    *ops->next(e) = m->buckets[k];
    m->buckets[k] = e;
    m->n++;
}

static void map_del(map *m, const map_ops *ops, void *e)
{
    void **pp = &m->buckets[hash_str(ops->key(e)) & (m->n_buckets - 1)];
    while (*pp && *pp != e)
        pp = ops->next(*pp);
    if (*pp) {
        *pp = *ops->next(e);
        m->n--;
    }
}

/* ---- the timer heap (min by due) ----------------------------------------
 * Entries carry the due time next to the target, so that sifting through
 * 10,000 of them compares in the array and touches no target. */

static void heap_set(ptc_health *h, size_t i, heap_entry e)
{
    h->heap[i] = e;
    e.t->heap_idx = i;
}

static void heap_up(ptc_health *h, size_t i)
{
    heap_entry e = h->heap[i];
    while (i > 0 && h->heap[(i - 1) / 2].due > e.due) {
        heap_set(h, i, h->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(h, i, e);
}

static void heap_down(ptc_health *h, size_t i)
{
    heap_entry e = h->heap[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = l;
        if (l >= h->heap_n)
            break;
        if (r < h->heap_n && h->heap[r].due < h->heap[l].due)
            m = r;
        if (h->heap[m].due >= e.due)
            break;
        heap_set(h, i, h->heap[m]);
        i = m;
    }
    heap_set(h, i, e);
}

static void heap_push(ptc_health *h, target *t)
{
    if (h->heap_n == h->heap_cap) {
        h->heap_cap = h->heap_cap ? h->heap_cap * 2 : 256;
        h->heap = ptc_xrealloc(h->heap, h->heap_cap * sizeof(*h->heap));
    }
    h->heap[h->heap_n] = (heap_entry){t->due, t};
    t->heap_idx = h->heap_n++;
    heap_up(h, t->heap_idx);
}

static void heap_remove(ptc_health *h, target *t)
{
    size_t i = t->heap_idx;
    if (i == SIZE_MAX)
        return;
    h->heap_n--;
    if (i != h->heap_n) {
        heap_set(h, i, h->heap[h->heap_n]);
        heap_down(h, i);
        heap_up(h, i);
    }
    t->heap_idx = SIZE_MAX;
}

/* A target whose due time moved: restore the heap order. */
static void heap_fix(ptc_health *h, target *t)
{
    if (t->heap_idx == SIZE_MAX)
        return;
    h->heap[t->heap_idx].due = t->due;
    heap_down(h, t->heap_idx);
    heap_up(h, t->heap_idx);
}

/* ---- events (queued under the lock, delivered by the checker thread) --- */

static void queue_event(ptc_health *h, event *e)
{
    if (h->ev_tail)
        h->ev_tail->next = e;
    else
        h->ev_head = e;
    h->ev_tail = e;
}

static void queue_address(ptc_health *h, const address *a, bool healthy)
{
    event *e = ptc_xcalloc(1, sizeof(*e));
    e->kind = EV_ADDRESS;
    e->host = ptc_xstrdup(a->host);
    e->port = a->port;
    e->healthy = healthy;
    queue_event(h, e);
}

/* qsort's order of pointers (of proxies, for grouping). */
static int cmp_ptr(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const void *const *)a, y = (uintptr_t) * (const void *const *)b;
    return x < y ? -1 : x > y;
}

/* The error of t's last result; "" clears it. */
static void set_error(target *t, const char *msg)
{
    if (t->view.last_error != NULL && strcmp(t->view.last_error, msg) == 0)
        return;
    free(t->view.last_error);
    t->view.last_error = msg[0] ? ptc_xstrdup(msg) : NULL;
}

/* The public view of t, and back (a saved view seeding a new target). */
static void view_out(const target *t, ptc_health_view *out)
{
    *out = (ptc_health_view){.state = t->view.state,
                             .last_status = t->view.last_status,
                             .checked_at = t->view.checked_at,
                             .changed_at = t->view.changed_at,
                             .consecutive = t->view.consecutive,
                             .passive = t->view.passive};
    snprintf(out->last_error, sizeof(out->last_error), "%s", t->view.last_error ? t->view.last_error : "");
}

static void view_in(target *t, const ptc_health_view *v)
{
    free(t->view.last_error);
    t->view = (tview){.state = v->state,
                      .last_status = v->last_status,
                      .checked_at = v->checked_at,
                      .changed_at = v->changed_at,
                      .consecutive = v->consecutive,
                      .passive = v->passive};
    set_error(t, v->last_error);
}

static void queue_transition(ptc_health *h, const target *t, ptc_hstate from)
{
    event *e = ptc_xcalloc(1, sizeof(*e));
    e->kind = EV_TRANSITION;
    e->host = ptc_xstrdup(t->host);
    e->port = t->port;
    e->path = ptc_xstrdup(t->path);
    e->from = from;
    e->to = t->sm.state;
    view_out(t, &e->view);
    e->proxies = ptc_xcalloc(t->n_members + 1, sizeof(char *));
    /* A proxy listing the same upstream twice is named once: sorted by
     * proxy, its members are neighbours (10,000 routes on one upstream
     * cost a sort, not 50 million name comparisons under the lock). */
    const ptc_proxy **by = ptc_xmalloc((t->n_members + 1) * sizeof(*by));
    for (size_t i = 0; i < t->n_members; i++)
        by[i] = t->members[i].proxy;
    qsort(by, t->n_members, sizeof(*by), cmp_ptr);
    for (size_t i = 0; i < t->n_members; i++)
        if (i == 0 || by[i] != by[i - 1])
            e->proxies[e->n_proxies++] = ptc_xstrdup(by[i]->name);
    free(by);
    queue_event(h, e);
    h->stats.transitions++;
}

static void free_event(event *e)
{
    free(e->host);
    free(e->path);
    for (size_t i = 0; i < e->n_proxies; i++)
        free(e->proxies[i]);
    free(e->proxies);
    free(e);
}

/* Takes the queue under the lock; delivers it after unlocking. */
static event *take_events(ptc_health *h)
{
    event *e = h->ev_head;
    h->ev_head = h->ev_tail = NULL;
    return e;
}

static void deliver(ptc_health *h, event *e)
{
    while (e) {
        event *next = e->next;
        if (e->kind == EV_ADDRESS) {
            if (h->listener.address)
                h->listener.address(h->listener.arg, e->host, e->port, e->healthy);
        } else if (h->listener.transition) {
            ptc_health_event ev = {
                .host = e->host,
                .port = e->port,
                .path = e->path,
                .from = e->from,
                .to = e->to,
                .view = &e->view,
                .proxies = (const char *const *)e->proxies,
                .n_proxies = e->n_proxies,
            };
            h->listener.transition(h->listener.arg, &ev);
        }
        free_event(e);
        e = next;
    }
}

/* ---- state changes of a target ------------------------------------------ */

/* Keeps the address's count of unhealthy targets and reports its verdict
 * when that count leaves or reaches zero. */
static void note_state(ptc_health *h, target *t, ptc_hstate from)
{
    address *a = t->addr;
    if (from == t->sm.state)
        return;
    if (t->sm.state == PTC_HSTATE_UNHEALTHY && a->n_unhealthy++ == 0)
        queue_address(h, a, false);
    else if (from == PTC_HSTATE_UNHEALTHY && --a->n_unhealthy == 0)
        queue_address(h, a, true);
}

static void wake(ptc_health *h)
{
    uint64_t one = 1;
    if (write(h->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
        ptc_log_error("health checks: cannot wake the checker", PTC_LS("error", strerror(errno)));
}

/* ---- targets and members -------------------------------------------------- */

static void make_key(char *out, size_t len, const char *host, unsigned port, const char *path)
{
    snprintf(out, len, "%s %u %s", host, port, path);
}

static address *address_get(ptc_health *h, const char *host, unsigned port, bool create)
{
    char key[PTC_DOMAIN_MAX + 16];
    snprintf(key, sizeof(key), "%s:%u", host, port);
    address *a = map_get(&h->addresses, &address_ops, key);
    if (a == NULL && create) {
        a = ptc_xcalloc(1, sizeof(*a));
        a->key = ptc_xstrdup(key);
        a->host = ptc_xstrdup(host);
        a->port = port;
        map_put(&h->addresses, &address_ops, a);
    }
    return a;
}

static void free_saved(map *m)
{
    for (size_t b = 0; b < m->n_buckets; b++) {
        saved *sv = m->buckets[b];
        while (sv) {
            saved *next = sv->map_next;
            free(sv->key);
            free(sv);
            sv = next;
        }
    }
    free(m->buckets);
    memset(m, 0, sizeof(*m));
}

static target *target_new(ptc_health *h, const char *key, const char *host, unsigned port, const char *path,
                          unsigned interval_ms)
{
    target *t = ptc_xcalloc(1, sizeof(*t));
    bool v6 = strchr(host, ':') != NULL;
    int64_t now = ptc_mono_ms();
    t->key = ptc_xstrdup(key);
    t->host = ptc_xstrdup(host);
    t->port = port;
    t->path = ptc_xstrdup(path);
    t->fd = -1;
    t->heap_idx = SIZE_MAX;
    /* Only as many targets as the descriptor budget allows keep their
     * connection; the others open one per check and close it. */
    t->reuse = h->n_reusable < h->reuse_budget;
    if (t->reuse)
        h->n_reusable++;
    t->request = ptc_xasprintf("GET %s HTTP/1.1\r\nHost: %s%s%s:%u\r\nUser-Agent: portico-health/" PTC_VERSION
                               "\r\nAccept: */*\r\n%s\r\n",
                               path, v6 ? "[" : "", host, v6 ? "]" : "", port,
                               t->reuse ? "" : "Connection: close\r\n");
    t->request_len = strlen(t->request);
    struct sockaddr_in *a4 = &t->sa.in4;
    struct sockaddr_in6 *a6 = &t->sa.in6;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        t->sa_len = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        t->sa_len = sizeof(*a6);
    }
    t->addr = address_get(h, host, port, true);
    t->addr_next = t->addr->targets;
    t->addr->targets = t;
    t->addr->n_targets++;
    map_put(&h->targets, &target_ops, t);

    const saved *sv = map_get(&h->saved, &saved_ops, key);
    if (sv) {
        t->sm.state = sv->state;
        view_in(t, &sv->view);
        t->due = now + (int64_t)ptc_random_below(RESEED_SPREAD_MS);
        note_state(h, t, PTC_HSTATE_UNKNOWN);
    } else {
        /* Spread the first checks over one interval, so that a bulk change
         * (a registry sync of thousands) does not probe everything at once. */
        t->due = now + (int64_t)ptc_random_below(interval_ms ? interval_ms : 1);
    }
    heap_push(h, t);
    return t;
}

/* Closes the target's connection (epoll forgets it with the close). */
static void close_conn(target *t)
{
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

static void target_free(target *t)
{
    close_conn(t);
    free(t->key);
    free(t->host);
    free(t->path);
    free(t->request);
    free(t->view.last_error);
    free(t->members);
    free(t);
}

/* Unlinks t from the maps and its address and marks it removed; the
 * checker's thread frees it (after its check in flight, if any). */
static void target_drop(ptc_health *h, target *t)
{
    address *a = t->addr;
    map_del(&h->targets, &target_ops, t);
    heap_remove(h, t);
    if (t->reuse)
        h->n_reusable--;
    for (target **pp = &a->targets; *pp; pp = &(*pp)->addr_next)
        if (*pp == t) {
            *pp = t->addr_next;
            break;
        }
    a->n_targets--;
    if (t->sm.state == PTC_HSTATE_UNHEALTHY && --a->n_unhealthy == 0)
        queue_address(h, a, true);
    if (a->n_targets == 0) {
        map_del(&h->addresses, &address_ops, a);
        free(a->key);
        free(a->host);
        free(a);
    }
    t->addr = NULL;
    t->removed = true;
    if (t->slot == NULL) {
        t->grave_next = h->graveyard;
        h->graveyard = t;
    }
}

/* The target's schedule follows its most demanding member: the shortest
 * interval, and that member's timeout and thresholds. */
static void target_retune(ptc_health *h, target *t)
{
    const member *first = NULL;
    for (size_t i = 0; i < t->n_members; i++)
        if (first == NULL || t->members[i].interval_ms < first->interval_ms)
            first = &t->members[i];
    if (first == NULL)
        return;
    const ptc_health_check *best = &first->proxy->health_check;
    if (t->interval_ms != 0 && best->interval_ms < t->interval_ms) {
        int64_t soonest = ptc_mono_ms() + best->interval_ms;
        if (t->due > soonest) {
            t->due = soonest;
            heap_fix(h, t);
        }
    }
    t->interval_ms = best->interval_ms;
    t->timeout_ms = best->timeout_ms;
    t->healthy_threshold = best->healthy_threshold;
    t->unhealthy_threshold = best->unhealthy_threshold;
}

static void add_member(ptc_health *h, const ptc_proxy *p, size_t i)
{
    char key[PTC_DOMAIN_MAX + PTC_PATH_MAX + 32];
    const ptc_upstream *u = &p->upstreams[i];
    make_key(key, sizeof(key), u->host, u->port, p->health_check.path);
    target *t = map_get(&h->targets, &target_ops, key);
    if (t == NULL)
        t = target_new(h, key, u->host, u->port, p->health_check.path, p->health_check.interval_ms);
    if (t->n_members == t->cap_members) {
        t->cap_members = t->cap_members ? t->cap_members * 2 : 2;
        t->members = ptc_xrealloc(t->members, t->cap_members * sizeof(*t->members));
    }
    t->members[t->n_members++] =
        (member){.proxy = p, .index = (uint32_t)i, .interval_ms = p->health_check.interval_ms};
    target_retune(h, t);
}

/* Removes the member (p, i); a target left without members is returned
 * through *orphan for the caller to drop once every add is done. */
static void remove_member(ptc_health *h, const ptc_proxy *p, size_t i, target ***orphans, size_t *n_orphans,
                          size_t *cap_orphans)
{
    char key[PTC_DOMAIN_MAX + PTC_PATH_MAX + 32];
    const ptc_upstream *u = &p->upstreams[i];
    make_key(key, sizeof(key), u->host, u->port, p->health_check.path);
    target *t = map_get(&h->targets, &target_ops, key);
    bool found = false;
    if (t == NULL)
        return;
    for (size_t k = 0; k < t->n_members && !found; k++) {
        if (t->members[k].proxy == p && t->members[k].index == i) {
            t->members[k] = t->members[--t->n_members];
            found = true;
        }
    }
    if (!found)
        return;
    if (t->n_members == 0) {
        if (*n_orphans == *cap_orphans) {
            *cap_orphans = *cap_orphans ? *cap_orphans * 2 : 16;
            *orphans = ptc_xrealloc(*orphans, *cap_orphans * sizeof(**orphans));
        }
        (*orphans)[(*n_orphans)++] = t;
    } else {
        target_retune(h, t);
    }
}

void ptc_health_follow(ptc_health *h, const ptc_state *next)
{
    const ptc_state *prev;
    target **orphans = NULL;
    size_t n_orphans = 0, cap_orphans = 0;

    pthread_mutex_lock(&h->lock);
    prev = h->followed;
    /* Adds first, then removals: an upstream that moves from one proxy
     * version to the next never loses its target (and its state). */
    for (int pass = 0; pass < 2; pass++) {
        size_t i = 0, j = 0;
        size_t np = prev ? prev->n_proxies : 0;
        while (i < np || j < next->n_proxies) {
            const ptc_proxy *a = i < np ? prev->proxies[i] : NULL;
            const ptc_proxy *b = j < next->n_proxies ? next->proxies[j] : NULL;
            /* Most proxies are the very same object in both states. */
            if (a != NULL && a == b) {
                i++;
                j++;
                continue;
            }
            int cmp = a == NULL ? 1 : b == NULL ? -1 : strcmp(a->name, b->name);
            if (pass == 0 && cmp >= 0)
                for (size_t k = 0; k < b->n_upstreams; k++)
                    add_member(h, b, k);
            if (pass == 1 && cmp <= 0)
                for (size_t k = 0; k < a->n_upstreams; k++)
                    remove_member(h, a, k, &orphans, &n_orphans, &cap_orphans);
            if (cmp <= 0)
                i++;
            if (cmp >= 0)
                j++;
        }
    }
    /* Each orphan is listed once: it was listed when its last member
     * went, and pass 1 (the only one that adds) is over. */
    for (size_t k = 0; k < n_orphans; k++)
        target_drop(h, orphans[k]);
    h->followed = ptc_state_retain(next);
    /* Saved states seed the first state followed only. */
    free_saved(&h->saved);
    pthread_mutex_unlock(&h->lock);
    free(orphans);
    ptc_state_release(prev);
    wake(h);
}

/* ---- the resolver thread ------------------------------------------------------ */

/* The entry of name, asking the resolver for it when it is missing or old.
 * Returns NULL while an answer is pending.  Caller holds the lock. */
static dns_entry *dns_lookup(ptc_health *h, const char *name, int64_t now)
{
    dns_entry *d = map_get(&h->dns, &dns_ops, name);
    if (d && !d->pending && now < d->expires)
        return d;
    if (d && d->pending)
        return NULL;
    if (d == NULL) {
        if (h->dns.n >= DNS_ENTRIES_MAX) {
            /* Unbounded names (churning registries) must not grow the
             * cache for ever: start again. */
            for (size_t b = 0; b < h->dns.n_buckets; b++)
                for (dns_entry **pp = (dns_entry **)&h->dns.buckets[b]; *pp;) {
                    dns_entry *e = *pp;
                    if (e->pending) {
                        pp = &e->map_next;
                        continue;
                    }
                    *pp = e->map_next;
                    h->dns.n--;
                    free(e->name);
                    free(e);
                }
        }
        d = ptc_xcalloc(1, sizeof(*d));
        d->name = ptc_xstrdup(name);
        map_put(&h->dns, &dns_ops, d);
    }
    d->pending = true;
    d->queue_next = h->dns_queue;
    h->dns_queue = d;
    pthread_cond_signal(&h->dns_cond);
    return NULL;
}

static void *resolve_loop(void *arg)
{
    ptc_health *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->stop && h->dns_queue == NULL)
            pthread_cond_wait(&h->dns_cond, &h->lock);
        if (h->stop)
            break;
        dns_entry *d = h->dns_queue;
        h->dns_queue = d->queue_next;
        char *name = ptc_xstrdup(d->name);
        pthread_mutex_unlock(&h->lock);

        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
        struct sockaddr_storage addrs[DNS_ADDRS_MAX];
        socklen_t lens[DNS_ADDRS_MAX];
        unsigned n = 0;
        int err = getaddrinfo(name, NULL, &hints, &res);
        for (struct addrinfo *ai = res; ai && n < DNS_ADDRS_MAX; ai = ai->ai_next)
            if ((ai->ai_family == AF_INET || ai->ai_family == AF_INET6) &&
                ai->ai_addrlen <= sizeof(addrs[0])) {
                memcpy(&addrs[n], ai->ai_addr, ai->ai_addrlen);
                lens[n++] = ai->ai_addrlen;
            }
        if (res)
            freeaddrinfo(res);
        if (err == 0 && n == 0)
            err = EAI_NONAME;
        free(name);

        pthread_mutex_lock(&h->lock);
        d->pending = false;
        d->err = err;
        d->n = n;
        memcpy(d->addrs, addrs, sizeof(addrs));
        memcpy(d->lens, lens, sizeof(lens));
        d->expires = ptc_mono_ms() + (err ? DNS_NEGATIVE_TTL_MS : DNS_TTL_MS);
        wake(h);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* ---- checks (the checker's thread, under the lock) ------------------------------ */

static void fly_link(ptc_health *h, slot *s)
{
    s->prev = NULL;
    s->next = h->flying;
    if (h->flying)
        h->flying->prev = s;
    h->flying = s;
}

static void fly_unlink(ptc_health *h, slot *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else
        h->flying = s->next;
    if (s->next)
        s->next->prev = s->prev;
}

/* Ends the check of s: frees the slot, keeps or closes the connection,
 * feeds the state machine and schedules the next check. */
static void finish_check(ptc_health *h, slot *s, bool ok, int status, bool keep, const char *error,
                         int64_t now)
{
    target *t = s->t;

    fly_unlink(h, s);
    if (s->ph == P_RESOLVE)
        h->resolving--;
    s->t = NULL;
    s->next = h->free_slots;
    h->free_slots = s;
    h->in_flight--;
    t->slot = NULL;
    if (!keep || !t->reuse)
        close_conn(t);
    if (t->removed) {
        t->grave_next = h->graveyard;
        h->graveyard = t;
        return;
    }
    ptc_hstate from = t->sm.state;
    bool changed = ptc_hsm_feed(&t->sm, ok, t->healthy_threshold, t->unhealthy_threshold);
    t->view.state = t->sm.state;
    t->view.last_status = status;
    set_error(t, ok ? "" : error);
    t->view.checked_at = ptc_now_ms();
    t->view.consecutive = ptc_hsm_consecutive(&t->sm);
    if (changed) {
        t->view.changed_at = t->view.checked_at;
        t->view.passive = false;
        note_state(h, t, from);
        queue_transition(h, t, from);
    }
    /* The next check is due one interval after this one was due, not
     * after it ended, so that slow answers do not stretch the schedule; a
     * check that fell behind starts again from now. */
    t->due += t->interval_ms;
    if (t->due < now)
        t->due = now;
    heap_push(h, t);
}

static void fail_check(ptc_health *h, slot *s, uint64_t *counter, int64_t now, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void fail_check(ptc_health *h, slot *s, uint64_t *counter, int64_t now, const char *fmt, ...)
{
    char msg[sizeof(((ptc_health_view *)0)->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    (*counter)++;
    finish_check(h, s, false, s->rd.status, false, msg, now);
}

/* The outcome of a response read to its end (or to its status). */
static void answered(ptc_health *h, slot *s, int64_t now)
{
    int st = s->rd.status;
    if (st >= 200 && st < 400) {
        h->stats.checks_success++;
        finish_check(h, s, true, st, s->rd.keep_alive, "", now);
    } else {
        char msg[32];
        snprintf(msg, sizeof(msg), "answered %d", st);
        h->stats.checks_bad_status++;
        finish_check(h, s, false, st, s->rd.keep_alive, msg, now);
    }
}

static void step(ptc_health *h, slot *s, int64_t now);

/* Opens a connection to the slot's current address and goes on with the
 * check.  The address is the target's literal, or the addr_idx-th address
 * of its resolved name. */
static void connect_next(ptc_health *h, slot *s, int64_t now)
{
    target *t = s->t;
    const struct sockaddr *sa = &t->sa.any;
    socklen_t len = t->sa_len;
    struct sockaddr_storage named;

    if (len == 0) {
        dns_entry *d = dns_lookup(h, t->host, now);
        if (d == NULL) {
            if (s->ph != P_RESOLVE)
                h->resolving++;
            s->ph = P_RESOLVE;
            return;
        }
        if (s->ph == P_RESOLVE)
            h->resolving--;
        if (d->err) {
            s->ph = P_CONNECT;
            fail_check(h, s, &h->stats.checks_error, now, "cannot resolve %.100s: %s", t->host,
                       gai_strerror(d->err));
            return;
        }
        if (s->addr_idx >= d->n) {
            /* The name resolved again, to fewer addresses, while this check
             * went through the old ones. */
            s->ph = P_CONNECT;
            fail_check(h, s, &h->stats.checks_error, now, "no address of %.100s accepted a connection",
                       t->host);
            return;
        }
        memcpy(&named, &d->addrs[s->addr_idx], d->lens[s->addr_idx]);
        ((struct sockaddr_in *)&named)->sin_port = htons((uint16_t)t->port); /* same place for IPv6 */
        sa = (const struct sockaddr *)&named;
        len = d->lens[s->addr_idx];
    }
    s->ph = P_CONNECT;
    s->reused = false;
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail_check(h, s, &h->stats.checks_error, now, "socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    t->fd = fd;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = t};
    if (epoll_ctl(h->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
        close_conn(t);
        fail_check(h, s, &h->stats.checks_error, now, "epoll: %s", strerror(errno));
        return;
    }
    if (connect(fd, sa, len) == 0) {
        s->ph = P_SEND;
        step(h, s, now);
    } else if (errno != EINPROGRESS) {
        int err = errno;
        close_conn(t);
        fail_check(h, s, &h->stats.checks_error, now, "connect to %.100s port %u: %s", t->host, t->port,
                   strerror(err));
    }
}

/* A connection that failed before any byte of an answer: the next address
 * of a name, a fresh connection when a kept-alive one turned out closed,
 * or the end of the check. */
static void conn_failed(ptc_health *h, slot *s, int err, int64_t now)
{
    target *t = s->t;
    close_conn(t);
    if (s->reused && !s->retried) {
        s->retried = true;
        connect_next(h, s, now);
        return;
    }
    if (s->ph == P_CONNECT && t->sa_len == 0) {
        dns_entry *d = map_get(&h->dns, &dns_ops, t->host);
        if (d && !d->pending && s->addr_idx + 1 < d->n) {
            s->addr_idx++;
            connect_next(h, s, now);
            return;
        }
    }
    if (s->ph == P_CONNECT)
        fail_check(h, s, &h->stats.checks_error, now, "connect to %.100s port %u: %s", t->host, t->port,
                   strerror(err));
    else if (err)
        fail_check(h, s, &h->stats.checks_error, now, "connection lost: %s", strerror(err));
    else
        fail_check(h, s, &h->stats.checks_error, now, "the connection closed before an answer");
}

/* Moves the check of s as far as its socket allows. */
static void step(ptc_health *h, slot *s, int64_t now)
{
    target *t = s->t;
    if (s->ph == P_CONNECT) {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        if (err == EINPROGRESS || err == EALREADY)
            return;
        if (err) {
            conn_failed(h, s, err, now);
            return;
        }
        s->ph = P_SEND;
    }
    if (s->ph == P_SEND) {
        while (s->sent < t->request_len) {
            ssize_t n = send(t->fd, t->request + s->sent, t->request_len - s->sent, MSG_NOSIGNAL);
            if (n < 0 && errno == EAGAIN)
                return;
            if (n < 0) {
                conn_failed(h, s, errno, now);
                return;
            }
            s->sent += (size_t)n;
        }
        s->ph = P_READ;
    }
    for (;;) {
        ssize_t n = recv(t->fd, h->rbuf, READ_CHUNK, 0);
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            int err = n < 0 ? errno : 0;
            if (s->rd.status >= 200) {
                /* The status came; the rest (a body read to its end) did
                 * not: the answer stands, the connection goes. */
                s->rd.keep_alive = false;
                answered(h, s, now);
            } else if (s->rd.head_len == 0 && s->rd.interim == 0) {
                conn_failed(h, s, err, now);
            } else {
                fail_check(h, s, &h->stats.checks_error, now,
                           "the connection closed in the middle of an answer");
            }
            return;
        }
        switch (ptc_hc_reader_feed(&s->rd, h->rbuf, (size_t)n)) {
        case PTC_HC_MORE:
            break;
        case PTC_HC_DONE:
            answered(h, s, now);
            return;
        case PTC_HC_BAD:
            fail_check(h, s, &h->stats.checks_error, now, "%s", s->rd.error);
            return;
        }
    }
}

static void start_check(ptc_health *h, target *t, int64_t now)
{
    slot *s = h->free_slots;
    if (s != NULL)
        h->free_slots = s->next;
    else
        s = &h->slots[h->slots_used++]; /* in_flight < max_in_flight */
    fly_link(h, s);
    h->in_flight++;
    t->slot = s;
    s->t = t;
    s->ph = P_CONNECT;
    s->deadline = now + t->timeout_ms;
    s->sent = 0;
    s->addr_idx = 0;
    s->retried = false;
    ptc_hc_reader_init(&s->rd);
    if (t->fd >= 0) {
        s->reused = true;
        s->ph = P_SEND;
        step(h, s, now);
    } else {
        connect_next(h, s, now);
    }
}

static void handle_reports(ptc_health *h)
{
    report *r = h->reports;
    h->reports = NULL;
    while (r) {
        report *next = r->next;
        address *a = address_get(h, r->host, r->port, false);
        for (target *t = a ? a->targets : NULL; t; t = t->addr_next) {
            ptc_hstate from = t->sm.state;
            if (!ptc_hsm_eject(&t->sm))
                continue;
            h->stats.passive_ejections++;
            t->view.state = t->sm.state;
            t->view.changed_at = ptc_now_ms();
            t->view.consecutive = 0;
            t->view.passive = true;
            set_error(t, r->reason);
            note_state(h, t, from);
            queue_transition(h, t, from);
        }
        free(r->host);
        free(r->reason);
        free(r);
        r = next;
    }
}

/* Frees the removed targets that nothing refers to any more. */
static void bury(ptc_health *h)
{
    while (h->graveyard) {
        target *t = h->graveyard;
        h->graveyard = t->grave_next;
        target_free(t);
    }
}

static void *run(void *arg)
{
    ptc_health *h = arg;
    struct epoll_event evs[EVENTS_MAX];
    int n = 0;

    ptc_log_set_correlation_id("health-check");
    pthread_mutex_lock(&h->lock);
    for (;;) {
        int64_t now = ptc_mono_ms();
        for (int i = 0; i < n; i++) {
            target *t = evs[i].data.ptr;
            if (t == NULL) {
                uint64_t v;
                if (read(h->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    ptc_log_error("health checks: wake-up read failed", PTC_LS("error", strerror(errno)));
            } else if (t->slot != NULL) {
                step(h, t->slot, now);
            } else if (!t->removed && (evs[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))) {
                /* An idle kept-alive connection spoke: the upstream closed
                 * it (or sent what nobody asked for).  EPOLLOUT alone only
                 * says acknowledged bytes freed buffer space. */
                close_conn(t);
            }
        }
        bury(h);
        handle_reports(h);
        if (h->stop)
            break;
        /* Checks waiting for a name, and checks out of time. */
        int64_t next_deadline = INT64_MAX;
        for (slot *s = h->flying, *next; s; s = next) {
            next = s->next;
            if (s->ph == P_RESOLVE && h->resolving > 0)
                connect_next(h, s, now);
            if (s->t == NULL || s->t->slot != s)
                continue; /* that ended it */
            if (now >= s->deadline) {
                close_conn(s->t);
                fail_check(h, s, &h->stats.checks_timeout, now, "no answer within %u ms", s->t->timeout_ms);
            } else if (s->deadline < next_deadline) {
                next_deadline = s->deadline;
            }
        }
        /* Checks due within the next few milliseconds start now, with
         * those due now: one wake-up serves many of them. */
        while (h->in_flight < h->max_in_flight && h->heap_n > 0 && h->heap[0].due <= now + BATCH_MS) {
            target *t = h->heap[0].t;
            heap_remove(h, t);
            start_check(h, t, now);
            if (t->slot && t->slot->deadline < next_deadline)
                next_deadline = t->slot->deadline;
        }
        bury(h);
        int64_t wake_at = now + IDLE_WAIT_MS;
        if (h->heap_n > 0 && h->in_flight < h->max_in_flight && h->heap[0].due < wake_at)
            wake_at = h->heap[0].due;
        if (next_deadline < wake_at)
            wake_at = next_deadline;
        event *pending = take_events(h);
        pthread_mutex_unlock(&h->lock);

        deliver(h, pending);
        int64_t wait = wake_at - ptc_mono_ms();
        n = epoll_wait(h->ep, evs, EVENTS_MAX, wait > 0 ? (int)wait : 0);
        if (n < 0)
            n = 0;
        pthread_mutex_lock(&h->lock);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

/* ---- lifetime and queries -------------------------------------------------- */

ptc_health *ptc_health_create(const ptc_health_config *cfg, const ptc_health_listener *listener)
{
    ptc_health *h = ptc_xcalloc(1, sizeof(*h));
    struct rlimit rl;

    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->dns_cond, NULL);
    h->listener = *listener;
    h->max_in_flight = cfg->max_in_flight ? cfg->max_in_flight : 1;
    h->reuse_budget = cfg->max_connections;
    if (h->reuse_budget == 0) {
        /* Half the descriptors: the data plane and the API need the rest. */
        h->reuse_budget = 512;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
            h->reuse_budget = rl.rlim_cur / 2;
    }
    h->slots = ptc_xcalloc(h->max_in_flight, sizeof(*h->slots));
    h->rbuf = ptc_xmalloc(READ_CHUNK);
    h->ep = epoll_create1(EPOLL_CLOEXEC);
    h->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (h->ep < 0 || h->wake_fd < 0) {
        /* Only descriptor exhaustion gets here, at start-up. */
        ptc_log_error("health checks: no epoll or eventfd", PTC_LS("error", strerror(errno)));
        abort();
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(h->ep, EPOLL_CTL_ADD, h->wake_fd, &ev);
    return h;
}

int ptc_health_start(ptc_health *h)
{
    /* What the first follow found (saved unhealthy addresses) reaches the
     * listener before start returns: no thread can deliver out of order
     * yet, and the engine closes those addresses before serving a call. */
    pthread_mutex_lock(&h->lock);
    event *evs = take_events(h);
    pthread_mutex_unlock(&h->lock);
    deliver(h, evs);
    int rc = pthread_create(&h->resolver, NULL, resolve_loop, h);
    if (rc != 0)
        return -rc;
    h->resolver_started = true;
    rc = pthread_create(&h->thread, NULL, run, h);
    if (rc != 0)
        return -rc;
    h->started = true;
    ptc_log_info("health checks running", PTC_LI("max_in_flight", h->max_in_flight),
                 PTC_LI("reuse_budget", h->reuse_budget));
    return 0;
}

void ptc_health_destroy(ptc_health *h)
{
    if (h == NULL)
        return;
    pthread_mutex_lock(&h->lock);
    h->stop = true;
    pthread_cond_signal(&h->dns_cond);
    pthread_mutex_unlock(&h->lock);
    if (h->started) {
        wake(h);
        pthread_join(h->thread, NULL);
    }
    if (h->resolver_started)
        pthread_join(h->resolver, NULL);
    /* Checks in flight are abandoned; their targets go with the others. */
    for (slot *s = h->flying; s; s = s->next)
        if (s->t && s->t->removed)
            target_free(s->t);
        else if (s->t)
            s->t->slot = NULL;
    bury(h);
    for (size_t b = 0; b < h->targets.n_buckets; b++) {
        target *t = h->targets.buckets[b];
        while (t) {
            target *next = t->map_next;
            target_free(t);
            t = next;
        }
    }
    for (size_t b = 0; b < h->addresses.n_buckets; b++) {
        address *a = h->addresses.buckets[b];
        while (a) {
            address *next = a->map_next;
            free(a->key);
            free(a->host);
            free(a);
            a = next;
        }
    }
    for (size_t b = 0; b < h->dns.n_buckets; b++) {
        dns_entry *d = h->dns.buckets[b];
        while (d) {
            dns_entry *next = d->map_next;
            free(d->name);
            free(d);
            d = next;
        }
    }
    event *e = take_events(h);
    while (e) {
        event *next = e->next;
        free_event(e);
        e = next;
    }
    while (h->reports) {
        report *next = h->reports->next;
        free(h->reports->host);
        free(h->reports->reason);
        free(h->reports);
        h->reports = next;
    }
    free_saved(&h->saved);
    free(h->targets.buckets);
    free(h->addresses.buckets);
    free(h->dns.buckets);
    free(h->heap);
    free(h->slots);
    free(h->rbuf);
    close(h->ep);
    close(h->wake_fd);
    ptc_state_release(h->followed);
    pthread_cond_destroy(&h->dns_cond);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

int ptc_health_get(ptc_health *h, const char *host, unsigned port, const char *path, ptc_health_view *out)
{
    char key[PTC_DOMAIN_MAX + PTC_PATH_MAX + 32];
    int rc = -ENOENT;
    make_key(key, sizeof(key), host, port, path);
    pthread_mutex_lock(&h->lock);
    const target *t = map_get(&h->targets, &target_ops, key);
    if (t) {
        view_out(t, out);
        out->state = t->sm.state;
        rc = 0;
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

void ptc_health_report_down(ptc_health *h, const char *host, unsigned port, const char *reason)
{
    report *r = ptc_xcalloc(1, sizeof(*r));
    r->host = ptc_xstrdup(host);
    r->port = port;
    r->reason = ptc_xstrdup(reason ? reason : "connection failures in the data plane");
    pthread_mutex_lock(&h->lock);
    r->next = h->reports;
    h->reports = r;
    pthread_mutex_unlock(&h->lock);
    wake(h);
}

void ptc_health_stats_get(ptc_health *h, ptc_health_stats *out)
{
    pthread_mutex_lock(&h->lock);
    *out = h->stats;
    out->targets = h->targets.n;
    out->in_flight = h->in_flight;
    out->reusable = h->n_reusable;
    out->healthy = out->unhealthy = out->unknown = 0;
    for (size_t b = 0; b < h->targets.n_buckets; b++)
        for (const target *t = h->targets.buckets[b]; t; t = t->map_next) {
            if (t->sm.state == PTC_HSTATE_HEALTHY)
                out->healthy++;
            else if (t->sm.state == PTC_HSTATE_UNHEALTHY)
                out->unhealthy++;
            else
                out->unknown++;
        }
    pthread_mutex_unlock(&h->lock);
}

/* ---- persistence ------------------------------------------------------------- */

json_t *ptc_health_export(ptc_health *h)
{
    json_t *out = json_array();
    pthread_mutex_lock(&h->lock);
    for (size_t b = 0; b < h->targets.n_buckets; b++)
        for (const target *t = h->targets.buckets[b]; t; t = t->map_next) {
            if (t->sm.state == PTC_HSTATE_UNKNOWN)
                continue;
            json_array_append_new(
                out,
                json_pack("{s:s, s:I, s:s, s:s, s:I, s:s, s:I, s:I, s:I, s:b}", "host", t->host, "port",
                          (json_int_t)t->port, "path", t->path, "state", ptc_hstate_name(t->sm.state),
                          "last_status", (json_int_t)t->view.last_status, "last_error",
                          t->view.last_error ? t->view.last_error : "", "checked_at",
                          (json_int_t)t->view.checked_at, "changed_at", (json_int_t)t->view.changed_at,
                          "consecutive", (json_int_t)t->view.consecutive, "passive", (int)t->view.passive));
        }
    pthread_mutex_unlock(&h->lock);
    return out;
}

void ptc_health_import(ptc_health *h, const json_t *list)
{
    size_t i;
    const json_t *e;
    if (!json_is_array(list))
        return;
    pthread_mutex_lock(&h->lock);
    json_array_foreach(list, i, e)
    {
        const char *host = json_string_value(json_object_get(e, "host"));
        const char *path = json_string_value(json_object_get(e, "path"));
        const char *state = json_string_value(json_object_get(e, "state"));
        const char *err = json_string_value(json_object_get(e, "last_error"));
        json_int_t port = json_integer_value(json_object_get(e, "port"));
        char key[PTC_DOMAIN_MAX + PTC_PATH_MAX + 32];
        if (host == NULL || path == NULL || state == NULL || port < 1 || port > 65535 ||
            ptc_check_upstream_host(host) != NULL || ptc_check_path(path) != NULL)
            continue;
        ptc_hstate st;
        if (strcmp(state, "healthy") == 0)
            st = PTC_HSTATE_HEALTHY;
        else if (strcmp(state, "unhealthy") == 0)
            st = PTC_HSTATE_UNHEALTHY;
        else
            continue;
        make_key(key, sizeof(key), host, (unsigned)port, path);
        if (map_get(&h->saved, &saved_ops, key) != NULL)
            continue;
        saved *sv = ptc_xcalloc(1, sizeof(*sv));
        sv->key = ptc_xstrdup(key);
        sv->state = st;
        sv->view.state = sv->state;
        json_int_t status = json_integer_value(json_object_get(e, "last_status"));
        json_int_t run = json_integer_value(json_object_get(e, "consecutive"));
        sv->view.last_status = status >= 0 && status <= 999 ? (int)status : 0;
        snprintf(sv->view.last_error, sizeof(sv->view.last_error), "%s", err ? err : "");
        sv->view.checked_at = json_integer_value(json_object_get(e, "checked_at"));
        sv->view.changed_at = json_integer_value(json_object_get(e, "changed_at"));
        sv->view.consecutive = run >= 0 && run <= COUNT_MAX ? (unsigned)run : 0;
        sv->view.passive = json_is_true(json_object_get(e, "passive"));
        map_put(&h->saved, &saved_ops, sv);
    }
    pthread_mutex_unlock(&h->lock);
}
