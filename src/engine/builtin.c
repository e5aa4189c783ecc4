/* The builtin engine: portico's own data plane in this process.  A change
 * is a new routing snapshot built on this (control-plane) thread and
 * published with one atomic swap: no reload, no dropped connection.
 * Validation already happened in the API; what can still fail here is
 * building the snapshot (an upstream name that does not resolve, a
 * certificate OpenSSL refuses), and then nothing is published. */
#include "engine/engine.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "engine/verify.h"
#include "proxy/dataplane.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct builtin {
    ptc_dataplane *dp;
    uint64_t generation;
    bool started;
    /* The state the live snapshot was built from, and that snapshot (the
     * data plane's reference): the next build shares what did not change. */
    const ptc_state *built;
    const ptc_dp_snapshot *live;
    /* Scratch for the route descriptions of a build, kept from one build
     * to the next: at 10,000 routes it is 720 KB, which a fresh block per
     * change would leave the heap full of holes for. */
    ptc_dp_route *routes;
    size_t routes_cap;
} builtin;

/* Whether two states hold the very same certificates. */
static bool same_certs(const ptc_state *a, const ptc_state *b)
{
    if (a->n_certs != b->n_certs)
        return false;
    for (size_t i = 0; i < a->n_certs; i++)
        if (a->certs[i] != b->certs[i])
            return false;
    return true;
}

static bool https_only(const ptc_state *st, const ptc_proxy *p)
{
    return p->enable_ssl && ptc_state_cert_for(st, p->domain) != NULL;
}

/* Translates the desired state into the data plane's route and
 * certificate descriptions (borrowing the state's strings) and builds a
 * snapshot.  Proxies are immutable and shared between states, so a proxy
 * that is the same object in the state the live snapshot was built from
 * keeps its compiled route: both lists are sorted by name, and one merge
 * walk pairs them.  Returns NULL with the reason in err. */
static ptc_dp_snapshot *build_snapshot(builtin *b, const ptc_state *st, char *err, size_t errlen)
{
    const ptc_state *old = b->built;
    bool certs_kept = old != NULL && same_certs(old, st);
    size_t n_up = 0, u = 0, k = 0;

    /* Kept between changes (builtin_trim frees it when they stop) and not
     * cleared: at 10,000 routes either would cost as much as the build. */
    if (b->routes_cap < st->n_proxies + 1) {
        free(b->routes);
        b->routes_cap = st->n_proxies + 1 + st->n_proxies / 4;
        b->routes = ptc_xmalloc(b->routes_cap * sizeof(*b->routes));
    }
    ptc_dp_route *routes = b->routes;
    /* Pass 1: which routes are kept (only keep is read of those). */
    for (size_t i = 0; i < st->n_proxies; i++) {
        const ptc_proxy *p = st->proxies[i];
        while (old != NULL && k < old->n_proxies && old->proxies[k] != p &&
               strcmp(old->proxies[k]->name, p->name) < 0)
            k++;
        if (old != NULL && k < old->n_proxies && old->proxies[k] == p &&
            (certs_kept || https_only(st, p) == https_only(old, p))) {
            routes[i].keep = (uint32_t)(++k);
            continue;
        }
        routes[i].keep = 0;
        n_up += p->n_upstreams;
    }
    /* Pass 2: the new ones. */
    ptc_dp_upstream *ups = ptc_xmalloc((n_up + 1) * sizeof(*ups));
    for (size_t i = 0; i < st->n_proxies; i++) {
        const ptc_proxy *p = st->proxies[i];
        if (routes[i].keep != 0)
            continue;
        routes[i] = (ptc_dp_route){
            .name = p->name,
            .domain = p->domain,
            .path_prefix = p->path_prefix,
            .strip_prefix = p->strip_prefix,
            .upstreams = &ups[u],
            .n_upstreams = p->n_upstreams,
            .websocket = p->websocket,
            .security_headers = p->security_headers,
            .https_only = https_only(st, p),
            .max_body_size = p->max_body_size,
        };
        for (size_t j = 0; j < p->n_upstreams; j++, u++)
            ups[u] = (ptc_dp_upstream){p->upstreams[j].host, p->upstreams[j].port, p->upstreams[j].weight};
    }
    ptc_dp_cert *certs = ptc_xcalloc(st->n_certs + 1, sizeof(*certs));
    for (size_t i = 0; i < st->n_certs; i++) {
        const ptc_cert *c = st->certs[i];
        certs[i] = (ptc_dp_cert){.domain = c->domain, .cert_pem = c->cert_pem, .key_pem = c->key_pem};
        if (certs_kept)
            certs[i].keep = (uint32_t)(i + 1);
    }
    ptc_dp_snapshot *snap =
        ptc_dp_snapshot_build(old ? b->live : NULL, routes, st->n_proxies, certs, st->n_certs, err, errlen);
    free(ups);
    free(certs);
    return snap;
}

/* Makes snap, built from st, the live snapshot. */
static void publish(builtin *b, ptc_dp_snapshot *snap, const ptc_state *st)
{
    b->generation = ptc_dataplane_publish(b->dp, snap);
    b->live = snap;
    ptc_state_release(b->built);
    b->built = ptc_state_retain(st);
}

static int builtin_start(ptc_engine *e, const ptc_state *state, char *err, size_t errlen)
{
    builtin *b = e->impl;
    ptc_dp_snapshot *snap = build_snapshot(b, state, err, errlen);
    int rc;
    if (snap == NULL)
        return -EINVAL;
    publish(b, snap, state);
    rc = ptc_dataplane_start(b->dp);
    if (rc != 0) {
        snprintf(err, errlen, "data plane: cannot start the workers (%s)", strerror(-rc));
        return rc;
    }
    b->started = true;
    ptc_log_info("builtin engine serving",
                 PTC_LS("http_listen", ptc_settings_get(e->settings, PTC_SET_HTTP_LISTEN)),
                 PTC_LS("https_listen", ptc_settings_get(e->settings, PTC_SET_HTTPS_LISTEN)),
                 PTC_LI("routes", state->n_proxies), PTC_LI("certificates", state->n_certs));
    return 0;
}

static void builtin_apply(ptc_engine *e, const ptc_apply_request *req, ptc_apply_result *res)
{
    builtin *b = e->impl;
    int64_t t0 = ptc_mono_ms();
    char err[512] = "";
    ptc_dp_snapshot *snap = build_snapshot(b, req->next, err, sizeof(err));

    if (snap == NULL) {
        res->code = "ENGINE_APPLY_FAILED";
        snprintf(res->message, sizeof(res->message), "the data plane refused the change: %.400s", err);
        res->details = json_pack("{s:s}", "reason", err);
        res->report =
            json_pack("{s:s, s:I}", "engine", "builtin", "duration_ms", (json_int_t)(ptc_mono_ms() - t0));
        return;
    }
    publish(b, snap, req->next);
    int64_t swapped = ptc_mono_ms();
    res->report =
        json_pack("{s:s, s:I, s:I, s:I}", "engine", "builtin", "generation", (json_int_t)b->generation,
                  "swap_ms", (json_int_t)(swapped - t0), "routes", (json_int_t)req->next->n_proxies);
    if (req->verify_domain) {
        bool tls =
            ptc_dp_snapshot_https_only(snap, req->verify_domain, req->verify_path ? req->verify_path : "/");
        ptc_verify_result v;
        ptc_verify_route(ptc_settings_get(e->settings, tls ? PTC_SET_HTTPS_LISTEN : PTC_SET_HTTP_LISTEN), tls,
                         req->verify_domain, req->verify_path, req->verify_gone, 5000, &v);
        json_object_set_new(res->report, "verify", ptc_verify_to_json(&v));
        ptc_dataplane_collect(b->dp);
    }
    json_object_set_new(res->report, "duration_ms", json_integer(ptc_mono_ms() - t0));
}

static json_t *builtin_status(ptc_engine *e, ptc_health_level *level)
{
    builtin *b = e->impl;
    *level = b->started ? PTC_HEALTHY : PTC_UNHEALTHY;
    return json_pack("{s:b, s:I, s:s, s:s}", "serving", b->started, "generation", (json_int_t)b->generation,
                     "http_listen", ptc_settings_get(e->settings, PTC_SET_HTTP_LISTEN), "https_listen",
                     ptc_settings_get(e->settings, PTC_SET_HTTPS_LISTEN));
}

/* HTTP-01 from memory: the data plane answers the challenge itself. */
static int builtin_set_challenge(ptc_engine *e, const char *token, const char *key_authorization)
{
    builtin *b = e->impl;
    return ptc_dataplane_set_challenge(b->dp, token, key_authorization);
}

static void builtin_clear_challenge(ptc_engine *e, const char *token)
{
    builtin *b = e->impl;
    ptc_dataplane_clear_challenge(b->dp, token);
}

static void builtin_metrics(ptc_engine *e, ptc_buf *out)
{
    builtin *b = e->impl;
    ptc_dataplane_metrics(b->dp, out);
}

/* Health verdicts go straight to the data plane's per-address cells: live
 * at once, no snapshot rebuild. */
static void builtin_set_upstream_health(ptc_engine *e, const char *host, unsigned port, bool healthy)
{
    (void)e;
    ptc_dp_upstream_set_healthy(host, port, healthy);
}

static void builtin_set_passive_listener(ptc_engine *e, ptc_passive_down_fn fn, void *arg)
{
    builtin *b = e->impl;
    ptc_dataplane_set_passive_listener(b->dp, fn, arg);
}

static void builtin_destroy(ptc_engine *e)
{
    builtin *b = e->impl;
    if (b->started)
        ptc_dataplane_stop(b->dp, (unsigned)ptc_settings_int(e->settings, PTC_SET_DRAIN_TIMEOUT_MS));
    ptc_dataplane_destroy(b->dp);
    ptc_state_release(b->built);
    free(b->routes);
    free(b);
    free(e);
}

/* The route array build_snapshot reuses (0.75 MB at 10,000 routes), and
 * what the snapshot builds keep, are only worth keeping while changes come
 * in a run. */
static void builtin_trim(ptc_engine *e)
{
    builtin *b = e->impl;
    free(b->routes);
    b->routes = NULL;
    b->routes_cap = 0;
    ptc_dp_snapshot_trim();
}

static const ptc_engine_ops builtin_ops = {
    .name = "builtin",
    .start = builtin_start,
    .apply = builtin_apply,
    .status = builtin_status,
    .set_challenge = builtin_set_challenge,
    .clear_challenge = builtin_clear_challenge,
    .metrics = builtin_metrics,
    .trim = builtin_trim,
    .set_upstream_health = builtin_set_upstream_health,
    .set_passive_listener = builtin_set_passive_listener,
    .destroy = builtin_destroy,
};

ptc_engine *ptc_engine_builtin_create(const ptc_settings *s, char *err, size_t errlen)
{
    ptc_dp_config cfg = {
        .http_listen = ptc_settings_get(s, PTC_SET_HTTP_LISTEN),
        .https_listen = ptc_settings_get(s, PTC_SET_HTTPS_LISTEN),
        .workers = (unsigned)ptc_settings_int(s, PTC_SET_WORKERS),
        .trusted_proxies = ptc_settings_get(s, PTC_SET_TRUSTED_PROXIES),
        .access_log = ptc_settings_get(s, PTC_SET_ACCESS_LOG),
        .max_body_size = (uint64_t)ptc_settings_int(s, PTC_SET_MAX_BODY_SIZE),
        .header_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_HEADER_TIMEOUT_MS),
        .idle_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_IDLE_TIMEOUT_MS),
        .body_min_rate = (unsigned)ptc_settings_int(s, PTC_SET_BODY_MIN_RATE),
        .upstream_connect_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_UPSTREAM_CONNECT_TIMEOUT_MS),
        .upstream_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_UPSTREAM_TIMEOUT_MS),
    };
    ptc_dataplane *dp = ptc_dataplane_create(&cfg, err, errlen);
    if (dp == NULL)
        return NULL;
    ptc_engine *e = ptc_xcalloc(1, sizeof(*e));
    builtin *b = ptc_xcalloc(1, sizeof(*b));
    b->dp = dp;
    e->ops = &builtin_ops;
    e->settings = s;
    e->impl = b;
    return e;
}
