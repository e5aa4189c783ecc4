/* Per-worker counters and their Prometheus rendering (see worker.h).
 *
 * Each worker counts into its own memory with plain loads and stores
 * (relaxed atomics that compile to ordinary moves), so the hot path has no
 * locked instruction and no cache line shared between workers; a scrape
 * sums the workers.  Route counters are allocated on a route's first
 * request, so 10,000 routes cost nothing until they see traffic, and
 * little after. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/mem.h"
#include "proxy/worker.h"

static const int codes[] = {101, 200, 201, 204, 206, 301, 302, 304, 307, 308, 400, 401, 403, 404,
                            405, 408, 413, 414, 417, 429, 431, 499, 500, 501, 502, 503, 504, 505};
#define N_EXACT (sizeof(codes) / sizeof(codes[0]))
_Static_assert(N_EXACT + 5 == PTC_N_CODES, "one slot per listed status and one per class");
_Static_assert(PTC_N_CODES < 255, "a slot number fits code_slot");

/* Upper bounds of the latency buckets, in microseconds. */
static const int64_t lat_us[PTC_N_LAT] = {1000,   2500,   5000,   10000,   25000,   50000,
                                          100000, 250000, 500000, 1000000, 2500000, 5000000};

_Static_assert(sizeof(ptc_route_stats) <= 96, "route counters stay small: one set per route and worker");

/* Every count of a route, 64 bits wide (see ptc_route_stats). */
struct ptc_route_wide {
    atomic_uint_least64_t codes[PTC_N_CODES];
    atomic_uint_least64_t lat[PTC_N_LAT + 1];
};

/* Route counters are carved from blocks of this many: no allocation
 * header each, and they live as long as the worker. */
#define STATS_SLAB 64

int ptc_metrics_code_slot(int status)
{
    for (size_t i = 0; i < N_EXACT; i++)
        if (codes[i] == status)
            return (int)i;
    int cls = status / 100;
    if (cls < 1 || cls > 5)
        cls = 5;
    return (int)N_EXACT + cls - 1;
}

/* Adds one to a narrow counter; false, with nothing done, when that would
 * take it to its limit (the caller then widens). */
static bool narrow_inc(atomic_uint_least32_t *c)
{
    uint32_t v = atomic_load_explicit(c, memory_order_relaxed);
    if (v >= UINT32_MAX - 1)
        return false;
    atomic_store_explicit(c, v + 1, memory_order_relaxed);
    return true;
}

/* Moves s's counts to 64-bit counters: copies them, then publishes the
 * copy (release: a scrape that sees it sees the copied counts). */
static ptc_route_wide *widen(ptc_route_stats *s)
{
    ptc_route_wide *w = ptc_xcalloc(1, sizeof(*w));
    for (int k = 0; k < PTC_CODES_INLINE; k++) {
        uint8_t slot = atomic_load_explicit(&s->code_slot[k], memory_order_relaxed);
        if (slot != 0)
            atomic_init(&w->codes[slot - 1], atomic_load_explicit(&s->code_count[k], memory_order_relaxed));
    }
    for (int i = 0; i <= PTC_N_LAT; i++)
        atomic_init(&w->lat[i], atomic_load_explicit(&s->lat[i], memory_order_relaxed));
    atomic_store_explicit(&s->wide, w, memory_order_release);
    return w;
}

void ptc_metrics_count(ptc_route_stats *s, int status)
{
    int slot = ptc_metrics_code_slot(status);
    ptc_route_wide *w = atomic_load_explicit(&s->wide, memory_order_relaxed);
    for (int k = 0; w == NULL && k < PTC_CODES_INLINE; k++) {
        uint8_t have = atomic_load_explicit(&s->code_slot[k], memory_order_relaxed);
        if (have == slot + 1) {
            if (narrow_inc(&s->code_count[k]))
                return;
            break;
        }
        if (have == 0) {
            /* The count first: a scrape that sees the slot sees its count. */
            atomic_store_explicit(&s->code_count[k], 1, memory_order_relaxed);
            atomic_store_explicit(&s->code_slot[k], (uint8_t)(slot + 1), memory_order_release);
            return;
        }
    }
    if (w == NULL)
        w = widen(s);
    ptc_counter_add(&w->codes[slot], 1);
}

void ptc_metrics_latency(ptc_route_stats *s, int64_t us)
{
    int i = 0;
    while (i < PTC_N_LAT && us > lat_us[i])
        i++;
    ptc_counter_add(&s->lat_sum_us, (uint64_t)(us > 0 ? us : 0));
    ptc_route_wide *w = atomic_load_explicit(&s->wide, memory_order_relaxed);
    if (w == NULL) {
        if (narrow_inc(&s->lat[i]))
            return;
        w = widen(s);
    }
    ptc_counter_add(&w->lat[i], 1);
}

void ptc_metrics_reserve(ptc_worker *w, const ptc_dp_snapshot *snap)
{
    ptc_wmetrics *m = &w->m;
    if (snap->stat_limit <= m->n_by_route)
        return;
    uint32_t n = m->n_by_route ? m->n_by_route : 64;
    while (n < snap->stat_limit)
        n *= 2;
    _Atomic(ptc_route_stats *) *grown = ptc_xcalloc(n, sizeof(*grown));
    for (uint32_t i = 0; i < m->n_by_route; i++)
        atomic_init(&grown[i], atomic_load_explicit(&m->by_route[i], memory_order_relaxed));
    for (uint32_t i = m->n_by_route; i < n; i++)
        atomic_init(&grown[i], NULL);
    pthread_mutex_lock(&m->grow_lock);
    _Atomic(ptc_route_stats *) *old = m->by_route;
    m->by_route = grown;
    m->n_by_route = n;
    if (old != NULL) {
        m->old_tables = ptc_xrealloc(m->old_tables, (m->n_old_tables + 1) * sizeof(void *));
        m->old_tables[m->n_old_tables++] = (void *)old;
    }
    /* A scrape copies the table and counts itself under the lock: with
     * none counted now, none holds any replaced table. */
    bool unread = atomic_load_explicit(&m->readers, memory_order_acquire) == 0;
    pthread_mutex_unlock(&m->grow_lock);
    if (unread) {
        for (size_t i = 0; i < m->n_old_tables; i++)
            free(m->old_tables[i]);
        m->n_old_tables = 0;
    }
}

ptc_route_stats *ptc_metrics_route(ptc_worker *w, const ptc_snap_route *r)
{
    ptc_wmetrics *m = &w->m;
    ptc_route_stats *s = atomic_load_explicit(&m->by_route[r->stat_idx], memory_order_relaxed);
    if (s == NULL) {
        if (m->slab_left == 0) {
            m->slab = ptc_xcalloc(STATS_SLAB, sizeof(*m->slab));
            m->slab_left = STATS_SLAB;
            m->slabs = ptc_xrealloc(m->slabs, (m->n_slabs + 1) * sizeof(void *));
            m->slabs[m->n_slabs++] = m->slab;
        }
        s = m->slab++;
        m->slab_left--;
        atomic_store_explicit(&m->by_route[r->stat_idx], s, memory_order_release);
    }
    return s;
}

static void stats_free_parts(ptc_route_stats *s)
{
    free(s->balance);
    free(atomic_load_explicit(&s->wide, memory_order_relaxed));
}

void ptc_metrics_free(ptc_wmetrics *m)
{
    for (uint32_t i = 0; i < m->n_by_route; i++) {
        ptc_route_stats *s = atomic_load_explicit(&m->by_route[i], memory_order_relaxed);
        if (s != NULL)
            stats_free_parts(s);
    }
    for (size_t i = 0; i < m->n_slabs; i++)
        free(m->slabs[i]);
    free(m->slabs);
    free((void *)m->by_route);
    for (size_t i = 0; i < m->n_old_tables; i++)
        free(m->old_tables[i]);
    free(m->old_tables);
    stats_free_parts(&m->none);
    m->by_route = NULL;
    m->n_by_route = 0;
    m->slabs = NULL;
    m->n_slabs = 0;
    m->slab_left = 0;
}

void ptc_metrics_sum(ptc_route_sums *t, const ptc_route_stats *s)
{
    const ptc_route_wide *w = atomic_load_explicit(&s->wide, memory_order_acquire);
    if (w != NULL) {
        for (int i = 0; i < PTC_N_CODES; i++)
            t->codes[i] += atomic_load_explicit(&w->codes[i], memory_order_relaxed);
        for (int i = 0; i <= PTC_N_LAT; i++)
            t->lat[i] += atomic_load_explicit(&w->lat[i], memory_order_relaxed);
    } else {
        for (int k = 0; k < PTC_CODES_INLINE; k++) {
            uint8_t slot = atomic_load_explicit(&s->code_slot[k], memory_order_acquire);
            if (slot != 0)
                t->codes[slot - 1] += atomic_load_explicit(&s->code_count[k], memory_order_relaxed);
        }
        for (int i = 0; i <= PTC_N_LAT; i++)
            t->lat[i] += atomic_load_explicit(&s->lat[i], memory_order_relaxed);
    }
    t->lat_sum_us += atomic_load_explicit(&s->lat_sum_us, memory_order_relaxed);
    t->any = true;
}

static uint64_t ld(const atomic_uint_least64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static void code_label(int slot, char out[16])
{
    if (slot < (int)N_EXACT)
        snprintf(out, 16, "%d", codes[slot]);
    else
        snprintf(out, 16, "%cxx", (char)('1' + (slot - (int)N_EXACT) % 5));
}

static void render_route(ptc_buf *out, const char *name, const ptc_route_sums *t)
{
    char code[16];
    for (int i = 0; i < PTC_N_CODES; i++) {
        if (t->codes[i] == 0)
            continue;
        code_label(i, code);
        ptc_buf_appendf(out, "portico_requests_total{route=\"%s\",code=\"%s\"} %llu\n", name, code,
                        (unsigned long long)t->codes[i]);
    }
}

static void render_latency(ptc_buf *out, const char *name, const ptc_route_sums *t)
{
    uint64_t cum = 0;
    for (int i = 0; i <= PTC_N_LAT; i++) {
        cum += t->lat[i];
        if (i < PTC_N_LAT)
            ptc_buf_appendf(out, "portico_upstream_latency_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n",
                            name, (double)lat_us[i] / 1e6, (unsigned long long)cum);
        else
            ptc_buf_appendf(out, "portico_upstream_latency_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                            name, (unsigned long long)cum);
    }
    ptc_buf_appendf(out, "portico_upstream_latency_seconds_sum{route=\"%s\"} %.6f\n", name,
                    (double)t->lat_sum_us / 1e6);
    ptc_buf_appendf(out, "portico_upstream_latency_seconds_count{route=\"%s\"} %llu\n", name,
                    (unsigned long long)cum);
}

/* Route names are [a-z0-9_-] by validation; escape anyway, a label value
 * must never break the exposition format. */
static void label_escape(const char *in, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *in && o + 3 < outlen; in++) {
        if (*in == '"' || *in == '\\') {
            out[o++] = '\\';
            out[o++] = *in;
        } else if (*in == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *in;
        }
    }
    out[o] = '\0';
}

void ptc_metrics_render(ptc_worker *const *workers, unsigned n, uint64_t generation, ptc_buf *out)
{
    uint32_t n_names = ptc_snap_stat_count();
    ptc_route_sums *all = ptc_xcalloc((size_t)n_names + 1, sizeof(*all));
    uint64_t g[9] = {0};

    for (unsigned k = 0; k < n; k++) {
        ptc_wmetrics *m = &workers[k]->m;
        /* Copy the table's address under the lock, read it without: the
         * worker never waits for a scrape (see ptc_wmetrics.readers). */
        pthread_mutex_lock(&m->grow_lock);
        _Atomic(ptc_route_stats *) *table = m->by_route;
        uint32_t n_table = m->n_by_route;
        atomic_fetch_add_explicit(&m->readers, 1, memory_order_relaxed);
        pthread_mutex_unlock(&m->grow_lock);
        for (uint32_t i = 0; i < n_table && i < n_names; i++) {
            ptc_route_stats *s = atomic_load_explicit(&table[i], memory_order_acquire);
            if (s != NULL)
                ptc_metrics_sum(&all[i], s);
        }
        atomic_fetch_sub_explicit(&m->readers, 1, memory_order_release);
        ptc_metrics_sum(&all[n_names], &m->none);
        const atomic_uint_least64_t *gauges[9] = {
            &m->clients, &m->upstreams,          &m->upstreams_idle,    &m->accepted,        &m->handshakes,
            &m->resumed, &m->handshake_failures, &m->upstream_connects, &m->upstream_retries};
        for (int i = 0; i < 9; i++)
            g[i] += ld(gauges[i]);
    }

    ptc_buf_append_str(out, "# HELP portico_requests_total Requests answered by the builtin data plane.\n"
                            "# TYPE portico_requests_total counter\n");
    char name[512];
    for (uint32_t i = 0; i <= n_names; i++) {
        if (!all[i].any)
            continue;
        label_escape(i < n_names ? ptc_snap_stat_name(i) : "", name, sizeof(name));
        render_route(out, name, &all[i]);
    }
    ptc_buf_append_str(out, "# HELP portico_upstream_latency_seconds Time from sending a request upstream to "
                            "its response head.\n"
                            "# TYPE portico_upstream_latency_seconds histogram\n");
    for (uint32_t i = 0; i < n_names; i++) {
        uint64_t cnt = 0;
        for (int j = 0; j <= PTC_N_LAT; j++)
            cnt += all[i].lat[j];
        if (cnt == 0)
            continue;
        label_escape(ptc_snap_stat_name(i), name, sizeof(name));
        render_latency(out, name, &all[i]);
    }
    ptc_buf_appendf(
        out,
        "# HELP portico_connections Open connections of the builtin data plane.\n"
        "# TYPE portico_connections gauge\n"
        "portico_connections{side=\"client\"} %llu\n"
        "portico_connections{side=\"upstream\"} %llu\n"
        "portico_connections{side=\"upstream_idle\"} %llu\n"
        "# HELP portico_accepted_connections_total Client connections accepted.\n"
        "# TYPE portico_accepted_connections_total counter\n"
        "portico_accepted_connections_total %llu\n"
        "# HELP portico_tls_handshakes_total TLS handshakes completed (resumed: by session ticket).\n"
        "# TYPE portico_tls_handshakes_total counter\n"
        "portico_tls_handshakes_total{resumed=\"false\"} %llu\n"
        "portico_tls_handshakes_total{resumed=\"true\"} %llu\n"
        "# HELP portico_tls_handshake_failures_total TLS handshakes that failed.\n"
        "# TYPE portico_tls_handshake_failures_total counter\n"
        "portico_tls_handshake_failures_total %llu\n"
        "# HELP portico_upstream_connects_total Connections opened to upstreams.\n"
        "# TYPE portico_upstream_connects_total counter\n"
        "portico_upstream_connects_total %llu\n"
        "# HELP portico_upstream_retries_total Requests retried after a stale pooled connection.\n"
        "# TYPE portico_upstream_retries_total counter\n"
        "portico_upstream_retries_total %llu\n"
        "# HELP portico_snapshot_generation Generation of the live routing snapshot.\n"
        "# TYPE portico_snapshot_generation gauge\n"
        "portico_snapshot_generation %llu\n"
        "# HELP portico_workers Worker threads of the builtin data plane.\n"
        "# TYPE portico_workers gauge\n"
        "portico_workers %u\n",
        (unsigned long long)g[0], (unsigned long long)g[1], (unsigned long long)g[2],
        (unsigned long long)g[3], (unsigned long long)(g[4] - g[5]), (unsigned long long)g[5],
        (unsigned long long)g[6], (unsigned long long)g[7], (unsigned long long)g[8],
        (unsigned long long)generation, n);
    free(all);
}
