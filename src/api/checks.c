/* The API's side of the active health checks (discovery/health.h): the
 * checker follows every published state; its verdicts go to the engine
 * (at once for the builtin data plane; coalesced to one safe apply every
 * 2 s at most for nginx), to the audit trail (action health.transition,
 * actor health-check) and to the store (saved verdicts, so that a restart
 * reports the last known state); and they show in the proxies' API form
 * and on /metrics.
 *
 * The checker's thread only queues: audit entries, saving and the
 * engine's apply_health are done by a recorder thread of their own, so
 * that a slow disk or a reload never delays a check. */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "discovery/health.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SAVED_KEY "health.targets"
#define SAVE_EVERY_MS 5000
/* nginx reloads for health at most this often, after gathering the
 * transitions of a short window. */
#define ENGINE_APPLY_EVERY_MS 2000
#define ENGINE_GATHER_MS 250
/* After a failed apply (the engine rolled back), the next try waits. */
#define ENGINE_RETRY_MS 30000
#define QUEUE_MAX 100000

typedef struct ptc_api_checks ptc_api_checks;

/* One transition of one upstream, for every proxy behind it: its audit
 * rows are made as they are written, so that 10,000 proxies behind one
 * upstream queue one entry and two arrays, not 60,000 small copies. */
typedef struct pending {
    int64_t ts;
    char correlation_id[33];
    bool unhealthy;
    char *detail;
    const ptc_state *state; /* a reference: it holds the names and domains */
    size_t n;
    const char **names, **domains; /* n each, one allocation */
    char *strays;                  /* the names of proxies gone from state, one after another */
    struct pending *next;
} pending;

struct ptc_api_checks {
    ptc_api *api;
    ptc_health *health;
    pthread_t recorder;
    bool recorder_started;
    pthread_mutex_t lock; /* guards what follows */
    pthread_cond_t cond;
    bool stop;
    pending *head, *tail;
    size_t n_pending;
    uint64_t dropped;
    bool save_dirty;
    int64_t last_save;
    bool engine_dirty;
    int64_t dirty_since, last_engine_apply;
    uint64_t engine_applies, engine_apply_failures;
};

/* ---- from the checker's thread ---------------------------------------------- */

static void free_pending(pending *p)
{
    while (p) {
        pending *next = p->next;
        free(p->detail);
        ptc_state_release(p->state);
        free(p->names);
        free(p->strays);
        free(p);
        p = next;
    }
}

static void enqueue(ptc_api_checks *c, pending *p)
{
    pthread_mutex_lock(&c->lock);
    if (c->n_pending > 0 && c->n_pending + p->n > QUEUE_MAX) {
        /* A storm the disk cannot keep up with: count what is lost rather
         * than grow without bound.  A transition is kept or dropped whole;
         * one with more proxies than the bound still goes into an empty
         * queue (it costs two pointers per proxy). */
        c->dropped += p->n;
        pthread_mutex_unlock(&c->lock);
        free_pending(p);
        return;
    }
    if (c->tail)
        c->tail->next = p;
    else
        c->head = p;
    c->tail = p;
    c->n_pending += p->n;
    c->save_dirty = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

static void on_transition(void *arg, const ptc_health_event *ev)
{
    ptc_api_checks *c = arg;
    char upstream[300];
    const ptc_state *s = ptc_api_state(c->api);
    bool v6 = strchr(ev->host, ':') != NULL;

    snprintf(upstream, sizeof(upstream), "%s%s%s:%u", v6 ? "[" : "", ev->host, v6 ? "]" : "", ev->port);
    json_t *d = json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:I, s:b}", "upstream", upstream, "path", ev->path,
                          "from", ptc_hstate_name(ev->from), "to", ptc_hstate_name(ev->to), "status",
                          (json_int_t)ev->view->last_status, "error", ev->view->last_error, "consecutive",
                          (json_int_t)ev->view->consecutive, "passive", (int)ev->view->passive);
    pending *q = ptc_xcalloc(1, sizeof(*q));
    q->ts = ptc_now_ms();
    ptc_random_hex(q->correlation_id, 16);
    q->unhealthy = ev->to == PTC_HSTATE_UNHEALTHY;
    q->detail = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    if (ev->to == PTC_HSTATE_UNHEALTHY)
        ptc_log_warn("upstream unhealthy", PTC_LS("upstream", upstream), PTC_LS("path", ev->path),
                     PTC_LS("from", ptc_hstate_name(ev->from)), PTC_LS("error", ev->view->last_error),
                     PTC_LB("passive", ev->view->passive), PTC_LI("proxies", ev->n_proxies));
    else
        ptc_log_info("upstream health changed", PTC_LS("upstream", upstream), PTC_LS("path", ev->path),
                     PTC_LS("from", ptc_hstate_name(ev->from)), PTC_LS("to", ptc_hstate_name(ev->to)),
                     PTC_LI("proxies", ev->n_proxies));
    /* The names are the checker's, valid during this call only: those of
     * proxies in the state are borrowed from it (q keeps a reference), the
     * others (a proxy deleted meanwhile) copied. */
    q->state = s;
    q->n = ev->n_proxies;
    q->names = ptc_xcalloc(2 * (q->n ? q->n : 1), sizeof(char *));
    q->domains = q->names + q->n;
    size_t stray_bytes = 0, at = 0;
    for (size_t i = 0; i < q->n; i++) {
        const ptc_proxy *p = ptc_state_proxy(s, ev->proxies[i]);
        if (p != NULL) {
            q->names[i] = p->name;
            q->domains[i] = p->domain;
        } else {
            stray_bytes += strlen(ev->proxies[i]) + 1;
        }
    }
    if (stray_bytes > 0) {
        q->strays = ptc_xmalloc(stray_bytes);
        for (size_t i = 0; i < q->n; i++) {
            if (q->names[i] != NULL)
                continue;
            size_t len = strlen(ev->proxies[i]) + 1;
            memcpy(q->strays + at, ev->proxies[i], len);
            q->names[i] = q->strays + at;
            at += len;
        }
    }
    enqueue(c, q);
}

static void on_address(void *arg, const char *host, unsigned port, bool healthy)
{
    ptc_api_checks *c = arg;
    ptc_engine *e = c->api->engine;
    if (e->ops->set_upstream_health == NULL)
        return;
    e->ops->set_upstream_health(e, host, port, healthy);
    if (e->ops->apply_health == NULL)
        return;
    int64_t now = ptc_mono_ms();
    pthread_mutex_lock(&c->lock);
    if (!c->engine_dirty || c->dirty_since > now) {
        c->engine_dirty = true;
        c->dirty_since = now;
    }
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}

/* From the engine's threads (data-plane workers): only queues. */
static void on_passive(void *arg, const char *host, unsigned port, const char *reason)
{
    ptc_api_checks *c = arg;
    ptc_health_report_down(c->health, host, port, reason);
}

/* ---- the recorder thread ---------------------------------------------------------- */

/* Writes one row per proxy of each transition, in transactions of up to
 * 256 rows. */
static void write_audit(ptc_api_checks *c, pending *p)
{
    ptc_audit_entry batch[256];
    size_t n = 0, i = 0;
    while (p) {
        if (i < p->n) {
            batch[n++] = (ptc_audit_entry){
                .ts = p->ts,
                .correlation_id = p->correlation_id,
                .actor = "health-check",
                .action = "health.transition",
                .droplet_name = p->names[i],
                .domain = p->domains[i],
                .result = "success",
                .error_code = p->unhealthy ? "UPSTREAM_UNHEALTHY" : NULL,
                .detail = p->detail,
            };
            i++;
        } else {
            p = p->next;
            i = 0;
        }
        if (n > 0 && (n == PTC_ARRAY_LEN(batch) || p == NULL)) {
            if (ptc_store_audit_append_many(c->api->store, batch, n) != 0)
                ptc_log_error("audit entries lost", PTC_LS("action", "health.transition"),
                              PTC_LI("entries", n));
            n = 0;
        }
    }
}

static void save(ptc_api_checks *c)
{
    json_t *j = ptc_health_export(c->health);
    char *text = json_dumps(j, JSON_COMPACT);
    if (ptc_store_kv_set(c->api->store, SAVED_KEY, text) != 0)
        ptc_log_error("health verdicts not saved");
    free(text);
    json_decref(j);
}

static void engine_apply(ptc_api_checks *c)
{
    ptc_api *api = c->api;
    ptc_apply_result res = {0};
    int64_t t0 = ptc_mono_ms();

    pthread_mutex_lock(&api->apply_lock);
    const ptc_state *s = ptc_api_state(api);
    api->engine->ops->apply_health(api->engine, s, &res);
    pthread_mutex_unlock(&api->apply_lock);
    pthread_mutex_lock(&c->lock);
    c->engine_applies++;
    c->engine_apply_failures += res.code != NULL;
    if (res.code && !c->engine_dirty) {
        /* The engine rolled back and kept the verdicts for its next try:
         * traffic still reaches the upstreams it could not mark down.  Try
         * again later (sooner when another transition comes). */
        c->engine_dirty = true;
        c->dirty_since = ptc_mono_ms() + ENGINE_RETRY_MS;
    }
    pthread_mutex_unlock(&c->lock);
    if (res.code) {
        char id[33];
        ptc_random_hex(id, 16);
        ptc_audit_entry e = {
            .ts = ptc_now_ms(),
            .correlation_id = id,
            .actor = "health-check",
            .action = "health.apply",
            .result = "failure",
            .error_code = res.code,
            .detail = res.message,
        };
        ptc_store_audit_append(api->store, &e);
        ptc_log_error("engine could not apply health verdicts", PTC_LS("code", res.code),
                      PTC_LS("message", res.message));
    } else {
        ptc_log_info("health verdicts applied", PTC_LS("engine", api->engine->ops->name),
                     PTC_LI("ms", ptc_mono_ms() - t0));
    }
    ptc_apply_result_clear(&res);
    ptc_state_release(s);
}

static void *record(void *arg)
{
    ptc_api_checks *c = arg;

    ptc_log_set_correlation_id("health-recorder");
    pthread_mutex_lock(&c->lock);
    for (;;) {
        int64_t now = ptc_mono_ms();
        int64_t save_at = c->last_save + SAVE_EVERY_MS;
        int64_t engine_at = c->last_engine_apply + ENGINE_APPLY_EVERY_MS;
        if (c->dirty_since + ENGINE_GATHER_MS > engine_at)
            engine_at = c->dirty_since + ENGINE_GATHER_MS;
        bool save_due = c->save_dirty && (now >= save_at || c->stop);
        bool engine_due = c->engine_dirty && now >= engine_at && !c->stop;
        if (c->head == NULL && !save_due && !engine_due) {
            if (c->stop)
                break;
            int64_t wake = now + 60000;
            if (c->save_dirty && save_at < wake)
                wake = save_at;
            if (c->engine_dirty && engine_at < wake)
                wake = engine_at;
            struct timespec ts = ptc_deadline_ms(CLOCK_MONOTONIC, wake - now);
            pthread_cond_timedwait(&c->cond, &c->lock, &ts);
            continue;
        }
        pending *batch = c->head;
        c->head = c->tail = NULL;
        c->n_pending = 0;
        if (save_due) {
            c->save_dirty = false;
            c->last_save = now;
        }
        if (engine_due) {
            c->engine_dirty = false;
            c->last_engine_apply = now;
        }
        pthread_mutex_unlock(&c->lock);
        write_audit(c, batch);
        free_pending(batch);
        if (save_due)
            save(c);
        if (engine_due)
            engine_apply(c);
        atomic_fetch_add(&c->api->activity, 1);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- lifetime --------------------------------------------------------------------- */

int ptc_api_checks_start(ptc_api *api, const ptc_state *state, char *err, size_t errlen)
{
    ptc_api_checks *c = ptc_xcalloc(1, sizeof(*c));
    pthread_condattr_t ca;
    char *saved = NULL;
    int rc;

    c->api = api;
    pthread_mutex_init(&c->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->cond, &ca);
    pthread_condattr_destroy(&ca);
    c->last_save = ptc_mono_ms();
    api->checks = c;

    ptc_health_config cfg = {
        .max_in_flight = (unsigned)ptc_settings_int(api->settings, PTC_SET_HEALTH_CHECK_CONCURRENCY),
        .max_connections = (unsigned)ptc_settings_int(api->settings, PTC_SET_HEALTH_CHECK_CONNECTIONS),
    };
    ptc_health_listener l = {on_transition, on_address, c};
    c->health = ptc_health_create(&cfg, &l);
    if (ptc_store_kv_get(api->store, SAVED_KEY, &saved) == 0) {
        json_t *j = json_loads(saved, 0, NULL);
        ptc_health_import(c->health, j);
        json_decref(j);
        free(saved);
    }
    ptc_health_follow(c->health, state);
    if ((rc = pthread_create(&c->recorder, NULL, record, c)) != 0) {
        snprintf(err, errlen, "health checks: cannot start a thread (%s)", strerror(rc));
        return -rc;
    }
    c->recorder_started = true;
    if ((rc = ptc_health_start(c->health)) != 0) {
        snprintf(err, errlen, "health checks: cannot start a thread (%s)", strerror(-rc));
        return rc;
    }
    if (api->engine->ops->set_passive_listener)
        api->engine->ops->set_passive_listener(api->engine, on_passive, c);
    return 0;
}

void ptc_api_checks_stop(ptc_api *api)
{
    ptc_api_checks *c = api->checks;
    if (c == NULL)
        return;
    if (api->engine->ops->set_passive_listener)
        api->engine->ops->set_passive_listener(api->engine, NULL, NULL);
    if (c->recorder_started) {
        pthread_mutex_lock(&c->lock);
        c->stop = true;
        pthread_cond_signal(&c->cond);
        pthread_mutex_unlock(&c->lock);
        pthread_join(c->recorder, NULL);
    }
    /* No transition can be recorded any more: what the checker's thread
     * still queues before it ends is dropped with the queue. */
    ptc_health_destroy(c->health);
    free_pending(c->head);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
    api->checks = NULL;
}

void ptc_api_checks_follow(ptc_api *api, const ptc_state *next)
{
    if (api->checks)
        ptc_health_follow(api->checks->health, next);
}

/* ---- what the API shows --------------------------------------------------------- */

/* ,"key": (these writers run for every upstream of GET /proxies: no
 * printf) */
static void put_key(ptc_buf *b, const char *key)
{
    ptc_buf_append(b, ",\"", 2);
    ptc_buf_append_str(b, key);
    ptc_buf_append(b, "\":", 2);
}

static void put_time_or_null(ptc_buf *b, const char *key, int64_t ms)
{
    char t[32];
    put_key(b, key);
    if (ms <= 0) {
        ptc_buf_append_str(b, "null");
        return;
    }
    ptc_time_format(ms, t, sizeof(t));
    ptc_buf_append_json_str(b, t);
}

static void view_of(ptc_api *api, const ptc_proxy *p, size_t i, ptc_health_view *v)
{
    if (api->checks == NULL || ptc_health_get(api->checks->health, p->upstreams[i].host, p->upstreams[i].port,
                                              p->health_check.path, v) != 0)
        memset(v, 0, sizeof(*v));
}

/* ,"health":{...} of upstream i. */
static void write_upstream_health(ptc_buf *b, const ptc_proxy *p, size_t i, void *arg)
{
    ptc_health_view v;
    view_of(arg, p, i, &v);
    ptc_buf_append_str(b, ",\"health\":{\"state\":");
    ptc_buf_append_json_str(b, ptc_hstate_name(v.state));
    put_key(b, "last_status");
    if (v.last_status)
        ptc_buf_append_i64(b, v.last_status);
    else
        ptc_buf_append_str(b, "null");
    ptc_buf_append_str(b, ",\"last_error\":");
    if (v.last_error[0])
        ptc_buf_append_json_str(b, v.last_error);
    else
        ptc_buf_append_str(b, "null");
    put_time_or_null(b, "checked_at", v.checked_at);
    put_time_or_null(b, "changed_at", v.changed_at);
    put_key(b, "consecutive");
    ptc_buf_append_u64(b, v.consecutive);
    put_key(b, "passive");
    ptc_buf_append_str(b, v.passive ? "true}" : "false}");
}

/* The proxy's last_health_status and last_health_checked_at.  A proxy is
 * healthy when one of its upstreams is: that one gets the traffic. */
static void write_proxy_health(ptc_buf *b, const ptc_proxy *p, void *arg)
{
    bool any_healthy = false, any_unknown = false;
    int64_t checked = 0;
    for (size_t i = 0; i < p->n_upstreams; i++) {
        ptc_health_view v;
        view_of(arg, p, i, &v);
        any_healthy = any_healthy || v.state == PTC_HSTATE_HEALTHY;
        any_unknown = any_unknown || v.state == PTC_HSTATE_UNKNOWN;
        if (v.checked_at > checked)
            checked = v.checked_at;
    }
    put_key(b, "last_health_status");
    ptc_buf_append_json_str(b, any_healthy ? "healthy" : any_unknown ? "unknown" : "unhealthy");
    put_time_or_null(b, "last_health_checked_at", checked);
}

ptc_proxy_api_extras ptc_api_checks_extras(ptc_api *api)
{
    return (ptc_proxy_api_extras){write_upstream_health, write_proxy_health, api};
}

/* Prometheus label values: backslash, quote and newline escaped. */
static void label(ptc_buf *b, const char *s)
{
    for (; *s; s++) {
        if (*s == '\\' || *s == '"')
            ptc_buf_appendf(b, "\\%c", *s);
        else if (*s == '\n')
            ptc_buf_append_str(b, "\\n");
        else
            ptc_buf_append(b, s, 1);
    }
}

void ptc_api_checks_metrics(ptc_api *api, const ptc_state *s, ptc_buf *out)
{
    ptc_api_checks *c = api->checks;
    ptc_health_stats st = {0};
    uint64_t applies = 0, failures = 0, dropped = 0;

    if (c == NULL)
        return;
    ptc_health_stats_get(c->health, &st);
    pthread_mutex_lock(&c->lock);
    applies = c->engine_applies;
    failures = c->engine_apply_failures;
    dropped = c->dropped;
    pthread_mutex_unlock(&c->lock);

    ptc_buf_appendf(out,
                    "# HELP portico_health_checks_total Active health checks done, by result.\n"
                    "# TYPE portico_health_checks_total counter\n"
                    "portico_health_checks_total{result=\"success\"} %llu\n"
                    "portico_health_checks_total{result=\"bad_status\"} %llu\n"
                    "portico_health_checks_total{result=\"timeout\"} %llu\n"
                    "portico_health_checks_total{result=\"error\"} %llu\n",
                    (unsigned long long)st.checks_success, (unsigned long long)st.checks_bad_status,
                    (unsigned long long)st.checks_timeout, (unsigned long long)st.checks_error);
    ptc_buf_appendf(
        out,
        "# HELP portico_health_transitions_total Changes of an upstream's health state.\n"
        "# TYPE portico_health_transitions_total counter\n"
        "portico_health_transitions_total %llu\n"
        "# HELP portico_health_passive_ejections_total Upstreams the data plane ejected after "
        "connection failures.\n"
        "# TYPE portico_health_passive_ejections_total counter\n"
        "portico_health_passive_ejections_total %llu\n"
        "# HELP portico_health_engine_applies_total Applies of health verdicts by the engine, and "
        "failed ones.\n"
        "# TYPE portico_health_engine_applies_total counter\n"
        "portico_health_engine_applies_total{result=\"success\"} %llu\n"
        "portico_health_engine_applies_total{result=\"failure\"} %llu\n"
        "# HELP portico_health_audit_dropped_total Health audit entries dropped under overload.\n"
        "# TYPE portico_health_audit_dropped_total counter\n"
        "portico_health_audit_dropped_total %llu\n",
        (unsigned long long)st.transitions, (unsigned long long)st.passive_ejections,
        (unsigned long long)(applies - failures), (unsigned long long)failures, (unsigned long long)dropped);
    ptc_buf_appendf(out,
                    "# HELP portico_health_targets Distinct checks (host, port, path), by state.\n"
                    "# TYPE portico_health_targets gauge\n"
                    "portico_health_targets{state=\"healthy\"} %zu\n"
                    "portico_health_targets{state=\"unhealthy\"} %zu\n"
                    "portico_health_targets{state=\"unknown\"} %zu\n"
                    "# HELP portico_health_checks_in_flight Health checks running now.\n"
                    "# TYPE portico_health_checks_in_flight gauge\n"
                    "portico_health_checks_in_flight %zu\n",
                    st.healthy, st.unhealthy, st.unknown, st.in_flight);
    ptc_buf_append_str(out,
                       "# HELP portico_upstream_healthy Health of each upstream of each proxy: 1 healthy, 0 "
                       "unhealthy, -1 not known yet.\n"
                       "# TYPE portico_upstream_healthy gauge\n");
    for (size_t i = 0; i < s->n_proxies; i++) {
        const ptc_proxy *p = s->proxies[i];
        for (size_t k = 0; k < p->n_upstreams; k++) {
            const ptc_upstream *u = &p->upstreams[k];
            ptc_health_view v = {0};
            if (ptc_health_get(c->health, u->host, u->port, p->health_check.path, &v) != 0)
                v.state = PTC_HSTATE_UNKNOWN;
            bool v6 = strchr(u->host, ':') != NULL;
            ptc_buf_append_str(out, "portico_upstream_healthy{proxy=\"");
            label(out, p->name);
            ptc_buf_append_str(out, "\",upstream=\"");
            if (v6)
                ptc_buf_append_str(out, "[");
            label(out, u->host);
            ptc_buf_appendf(out, "%s:%u\"} %d\n", v6 ? "]" : "", u->port,
                            v.state == PTC_HSTATE_HEALTHY     ? 1
                            : v.state == PTC_HSTATE_UNHEALTHY ? 0
                                                              : -1);
        }
    }
}
