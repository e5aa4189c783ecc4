/* Active health checks on one curl multi handle (see health.h).
 *
 * Ownership: targets, addresses and the heap belong to the checker and are
 * guarded by h->lock; the curl handles belong to the checker's thread
 * alone.  A target is always in exactly one of three places: the heap
 * (waiting for its next check), in flight (a transfer carries it), or
 * freed.  A target removed while in flight is unlinked at once and freed
 * when its transfer ends.  Events are queued under the lock and delivered
 * by the checker's thread only, so the listener sees them in order. */
#include "discovery/health.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define BODY_MAX 65536
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

typedef struct member {
    const char *proxy; /* borrowed from the followed state */
    size_t index;      /* which upstream of that proxy */
    unsigned interval_ms, timeout_ms, healthy_threshold, unhealthy_threshold;
} member;

typedef struct address address;

typedef struct target {
    char *key; /* "host port path" */
    char *host;
    unsigned port;
    char *path;
    char *url;
    address *addr;
    struct target *addr_next; /* the address's targets */
    struct target *map_next;  /* hash chain */
    member *members;
    size_t n_members, cap_members;
    unsigned interval_ms, timeout_ms, healthy_threshold, unhealthy_threshold;
    ptc_hsm sm;
    ptc_health_view view;
    int64_t due; /* monotonic ms of the next check */
    size_t heap_idx;
    bool in_flight, removed, reuse;
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

/* One transfer slot: a reusable easy handle. */
typedef struct slot {
    CURL *easy;
    target *t;
    size_t body;
    char errbuf[CURL_ERROR_SIZE];
    struct slot *next_free;
} slot;

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
    CURLM *multi;
    map targets, addresses;
    target **heap;
    size_t heap_n, heap_cap;
    size_t in_flight;
    slot *slots; /* max_in_flight of them */
    slot *free_slots;
    event *ev_head, *ev_tail;
    report *reports;
    const ptc_state *followed;
    map saved; /* saved states waiting for the first follow */
    bool maxconnects_dirty;
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

/* ---- the timer heap (min by due) ---------------------------------------- */

static void heap_swap(ptc_health *h, size_t a, size_t b)
{
    target *t = h->heap[a];
    h->heap[a] = h->heap[b];
    h->heap[b] = t;
    h->heap[a]->heap_idx = a;
    h->heap[b]->heap_idx = b;
}

static void heap_up(ptc_health *h, size_t i)
{
    while (i > 0 && h->heap[(i - 1) / 2]->due > h->heap[i]->due) {
        heap_swap(h, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(ptc_health *h, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < h->heap_n && h->heap[l]->due < h->heap[m]->due)
            m = l;
        if (r < h->heap_n && h->heap[r]->due < h->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(h, i, m);
        i = m;
    }
}

static void heap_push(ptc_health *h, target *t)
{
    if (h->heap_n == h->heap_cap) {
        h->heap_cap = h->heap_cap ? h->heap_cap * 2 : 256;
        h->heap = ptc_xrealloc(h->heap, h->heap_cap * sizeof(*h->heap));
    }
    t->heap_idx = h->heap_n;
    h->heap[h->heap_n++] = t;
    heap_up(h, t->heap_idx);
}

static void heap_remove(ptc_health *h, target *t)
{
    size_t i = t->heap_idx;
    if (i == SIZE_MAX)
        return;
    h->heap_n--;
    if (i != h->heap_n) {
        h->heap[i] = h->heap[h->heap_n];
        h->heap[i]->heap_idx = i;
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

static void queue_transition(ptc_health *h, const target *t, ptc_hstate from)
{
    event *e = ptc_xcalloc(1, sizeof(*e));
    e->kind = EV_TRANSITION;
    e->host = ptc_xstrdup(t->host);
    e->port = t->port;
    e->path = ptc_xstrdup(t->path);
    e->from = from;
    e->to = t->sm.state;
    e->view = t->view;
    e->proxies = ptc_xcalloc(t->n_members + 1, sizeof(char *));
    /* A proxy listing the same upstream twice is named once. */
    for (size_t i = 0; i < t->n_members; i++) {
        bool dup = false;
        for (size_t k = 0; k < e->n_proxies && !dup; k++)
            dup = strcmp(e->proxies[k], t->members[i].proxy) == 0;
        if (!dup)
            e->proxies[e->n_proxies++] = ptc_xstrdup(t->members[i].proxy);
    }
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

static void set_error(target *t, const char *msg)
{
    snprintf(t->view.last_error, sizeof(t->view.last_error), "%s", msg);
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
    t->url = ptc_xasprintf("http://%s%s%s:%u%s", v6 ? "[" : "", host, v6 ? "]" : "", port, path);
    t->heap_idx = SIZE_MAX;
    /* Only as many targets as the descriptor budget allows keep their
     * connection: curl's cache evicts the least recently used one, which
     * for a round of checks longer than the cache is every one of them. */
    t->reuse = h->n_reusable < h->reuse_budget;
    if (t->reuse)
        h->n_reusable++;
    h->maxconnects_dirty = true;
    t->addr = address_get(h, host, port, true);
    t->addr_next = t->addr->targets;
    t->addr->targets = t;
    t->addr->n_targets++;
    map_put(&h->targets, &target_ops, t);

    const saved *sv = map_get(&h->saved, &saved_ops, key);
    if (sv) {
        t->sm.state = sv->state;
        t->view = sv->view;
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

static void target_free(target *t)
{
    free(t->key);
    free(t->host);
    free(t->path);
    free(t->url);
    free(t->members);
    free(t);
}

/* Unlinks t from the maps and its address; frees it unless a transfer
 * still carries it (then the transfer's end frees it). */
static void target_drop(ptc_health *h, target *t)
{
    address *a = t->addr;
    map_del(&h->targets, &target_ops, t);
    heap_remove(h, t);
    if (t->reuse)
        h->n_reusable--;
    h->maxconnects_dirty = true;
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
    if (t->in_flight)
        t->removed = true;
    else
        target_free(t);
}

/* The target's schedule follows its most demanding member: the shortest
 * interval, and that member's timeout and thresholds. */
static void target_retune(ptc_health *h, target *t)
{
    const member *best = NULL;
    for (size_t i = 0; i < t->n_members; i++)
        if (best == NULL || t->members[i].interval_ms < best->interval_ms)
            best = &t->members[i];
    if (best == NULL)
        return;
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
    t->members[t->n_members++] = (member){
        .proxy = p->name,
        .index = i,
        .interval_ms = p->health_check.interval_ms,
        .timeout_ms = p->health_check.timeout_ms,
        .healthy_threshold = p->health_check.healthy_threshold,
        .unhealthy_threshold = p->health_check.unhealthy_threshold,
    };
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
        if (t->members[k].proxy == p->name && t->members[k].index == i) {
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
            int cmp = a == NULL ? 1 : b == NULL ? -1 : strcmp(a->name, b->name);
            if (cmp == 0 && a == b) {
                i++;
                j++;
                continue;
            }
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
    if (h->multi)
        curl_multi_wakeup(h->multi);
}

/* ---- checks ----------------------------------------------------------------- */

static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    slot *s = arg;
    (void)p;
    s->body += size * n;
    /* Health answers are read and dropped; a huge one is cut off (the
     * status already decided the result). */
    return s->body > BODY_MAX ? 0 : size * n;
}

static slot *slot_take(ptc_health *h)
{
    slot *s = h->free_slots;
    if (s == NULL)
        return NULL;
    h->free_slots = s->next_free;
    if (s->easy == NULL) {
        s->easy = curl_easy_init();
        curl_easy_setopt(s->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(s->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(s->easy, CURLOPT_WRITEDATA, s);
        curl_easy_setopt(s->easy, CURLOPT_PRIVATE, s);
        curl_easy_setopt(s->easy, CURLOPT_ERRORBUFFER, s->errbuf);
        curl_easy_setopt(s->easy, CURLOPT_USERAGENT, "portico-health/" PTC_VERSION);
        curl_easy_setopt(s->easy, CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(s->easy, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(s->easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        /* Upstreams are reached directly, whatever http_proxy says. */
        curl_easy_setopt(s->easy, CURLOPT_PROXY, "");
        /* Health answers are small: a 4 KiB buffer instead of 16 keeps a
         * few thousand handles cheap. */
        curl_easy_setopt(s->easy, CURLOPT_BUFFERSIZE, 4096L);
    }
    return s;
}

static void start_check(ptc_health *h, target *t)
{
    slot *s = slot_take(h);
    s->t = t;
    s->body = 0;
    s->errbuf[0] = '\0';
    curl_easy_setopt(s->easy, CURLOPT_URL, t->url);
    curl_easy_setopt(s->easy, CURLOPT_TIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(s->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)t->timeout_ms);
    curl_easy_setopt(s->easy, CURLOPT_FORBID_REUSE, t->reuse ? 0L : 1L);
    t->in_flight = true;
    h->in_flight++;
    curl_multi_add_handle(h->multi, s->easy);
}

typedef struct result {
    slot *s;
    CURLcode code;
    long status;
} result;

/* Applies a finished check to its target and schedules the next one. */
static void finish_check(ptc_health *h, slot *s, CURLcode code, long status, int64_t now_mono)
{
    target *t = s->t;
    bool ok = false;
    char msg[sizeof(t->view.last_error)];

    t->in_flight = false;
    h->in_flight--;
    s->t = NULL;
    s->next_free = h->free_slots;
    h->free_slots = s;
    if (t->removed) {
        target_free(t);
        return;
    }
    if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf(msg, sizeof(msg), "no answer within %u ms", t->timeout_ms);
        h->stats.checks_timeout++;
    } else if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && status > 0)) {
        snprintf(msg, sizeof(msg), "%.180s", s->errbuf[0] ? s->errbuf : curl_easy_strerror(code));
        h->stats.checks_error++;
    } else if (status < 200 || status >= 400) {
        snprintf(msg, sizeof(msg), "answered %ld", status);
        h->stats.checks_bad_status++;
    } else {
        msg[0] = '\0';
        ok = true;
        h->stats.checks_success++;
    }
    ptc_hstate from = t->sm.state;
    bool changed = ptc_hsm_feed(&t->sm, ok, t->healthy_threshold, t->unhealthy_threshold);
    t->view.state = t->sm.state;
    t->view.last_status = (int)status;
    set_error(t, msg);
    t->view.checked_at = ptc_now_ms();
    t->view.consecutive = ptc_hsm_consecutive(&t->sm);
    if (changed) {
        t->view.changed_at = t->view.checked_at;
        t->view.passive = false;
        note_state(h, t, from);
        queue_transition(h, t, from);
    }
    /* The next check is due one interval after this one was due, not
     * after it ended, so slow answers do not stretch the schedule; one
     * that fell behind starts again from now. */
    t->due += t->interval_ms;
    if (t->due < now_mono)
        t->due = now_mono;
    heap_push(h, t);
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

/* Sizes curl's connection cache to the targets that keep a connection. */
static void tune_cache(ptc_health *h)
{
    long n = (long)h->n_reusable + 16;
    curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, n);
}

static void *run(void *arg)
{
    ptc_health *h = arg;
    result *done = ptc_xcalloc(h->max_in_flight, sizeof(*done));

    ptc_log_set_correlation_id("health-check");
    for (;;) {
        int running = 0, left = 0;
        size_t n_done = 0;
        CURLMsg *msg;
        event *evs;
        long wait;

        curl_multi_perform(h->multi, &running);
        while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
            slot *s = NULL;
            if (msg->msg != CURLMSG_DONE)
                continue;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&s);
            done[n_done].s = s;
            done[n_done].code = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &done[n_done].status);
            n_done++;
            curl_multi_remove_handle(h->multi, msg->easy_handle);
        }

        pthread_mutex_lock(&h->lock);
        int64_t now = ptc_mono_ms();
        for (size_t i = 0; i < n_done; i++)
            finish_check(h, done[i].s, done[i].code, done[i].status, now);
        handle_reports(h);
        if (h->stop) {
            pthread_mutex_unlock(&h->lock);
            break;
        }
        if (h->maxconnects_dirty) {
            h->maxconnects_dirty = false;
            tune_cache(h);
        }
        while (h->in_flight < h->max_in_flight && h->heap_n > 0 && h->heap[0]->due <= now) {
            target *t = h->heap[0];
            heap_remove(h, t);
            start_check(h, t);
        }
        if (h->heap_n > 0 && h->in_flight < h->max_in_flight)
            wait = (long)(h->heap[0]->due - now);
        else
            wait = h->in_flight > 0 ? 1000 : IDLE_WAIT_MS;
        if (wait > IDLE_WAIT_MS)
            wait = IDLE_WAIT_MS;
        evs = take_events(h);
        pthread_mutex_unlock(&h->lock);

        deliver(h, evs);
        if (wait > 0)
            curl_multi_poll(h->multi, NULL, 0, (int)wait, NULL);
    }
    free(done);
    return NULL;
}

/* ---- lifetime and queries -------------------------------------------------- */

ptc_health *ptc_health_create(const ptc_health_config *cfg, const ptc_health_listener *listener)
{
    ptc_health *h = ptc_xcalloc(1, sizeof(*h));
    struct rlimit rl;

    pthread_mutex_init(&h->lock, NULL);
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
    for (size_t i = h->max_in_flight; i-- > 0;) {
        h->slots[i].next_free = h->free_slots;
        h->free_slots = &h->slots[i];
    }
    h->multi = curl_multi_init();
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
    int rc = pthread_create(&h->thread, NULL, run, h);
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
    if (h->started) {
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_mutex_unlock(&h->lock);
        curl_multi_wakeup(h->multi);
        pthread_join(h->thread, NULL);
    }
    /* Transfers still running are abandoned with their handles. */
    for (size_t i = 0; i < h->max_in_flight; i++) {
        slot *s = &h->slots[i];
        if (s->easy == NULL)
            continue;
        if (s->t) {
            curl_multi_remove_handle(h->multi, s->easy);
            if (s->t->removed)
                target_free(s->t);
            else
                s->t->in_flight = false;
        }
        curl_easy_cleanup(s->easy);
    }
    curl_multi_cleanup(h->multi);
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
    free(h->heap);
    free(h->slots);
    ptc_state_release(h->followed);
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
        *out = t->view;
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
    curl_multi_wakeup(h->multi);
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
                out, json_pack("{s:s, s:i, s:s, s:s, s:i, s:s, s:I, s:I, s:i, s:b}", "host", t->host, "port",
                               (json_int_t)t->port, "path", t->path, "state", ptc_hstate_name(t->sm.state),
                               "last_status", (json_int_t)t->view.last_status, "last_error",
                               t->view.last_error, "checked_at", (json_int_t)t->view.checked_at, "changed_at",
                               (json_int_t)t->view.changed_at, "consecutive", (json_int_t)t->view.consecutive,
                               "passive", t->view.passive));
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
