/* GET /proxy-manager/sync-from-registry and the periodic sync of
 * registry_sync_interval (DESIGN §6, §9).
 *
 * The registry is fetched and parsed outside the apply lock (a slow or
 * dead registry holds only its own call: the API is thread-per-connection
 * and every other call goes on); then every change of the sync is planned
 * and applied as one change: one revision, one engine apply (one nginx
 * reload), one audit entry.  A sync that changes nothing makes no
 * revision.  The proxies it creates are not gated on upstream health (see
 * registry.h): the active checks take over at once. */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "discovery/registry.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ptc_api_sync ptc_api_sync;

struct ptc_api_sync {
    pthread_t thread;
    bool started;
    atomic_bool cancel; /* aborts a fetch in progress when stopping */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
    uint64_t changed, unchanged, failed;
    int64_t last_run, last_success; /* ms since the epoch */
};

/* registry_url without its user information, for answers and logs. */
static char *redacted(const char *url)
{
    const char *scheme = strstr(url, "://");
    const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
    const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    if (at == NULL || (slash && slash < at))
        return ptc_xstrdup(url);
    return ptc_xasprintf("%.*s***%s", (int)(scheme + 3 - url), url, at);
}

static const char *cause_of(int rc)
{
    switch (rc) {
    case -ETIMEDOUT:
        return "timeout";
    case -EFBIG:
        return "too_large";
    case -EPROTO:
        return "bad_status";
    case -EINVAL:
        return "bad_url";
    case -ECANCELED:
        return "cancelled";
    default:
        return "unreachable";
    }
}

static void count(ptc_api *api, int outcome /* 1 changed, 0 unchanged, -1 failed */)
{
    ptc_api_sync *s = api->sync;
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    s->last_run = ptc_now_ms();
    if (outcome < 0) {
        s->failed++;
    } else {
        s->last_success = s->last_run;
        if (outcome > 0)
            s->changed++;
        else
            s->unchanged++;
    }
    pthread_mutex_unlock(&s->lock);
}

static void unavailable(ptc_call *c, const char *url, const char *cause, const char *reason)
{
    char msg[600];
    snprintf(msg, sizeof(msg), "the registry cannot be used: %s", reason);
    ptc_call_error(c, 500, "REGISTRY_UNAVAILABLE", msg,
                   json_pack("{s:s, s:s, s:s}", "registry_url", url, "cause", cause, "reason", reason));
    ptc_api_audit_failure(c, "registry.sync", NULL, NULL);
    count(c->api, -1);
}

typedef struct sync_arg {
    const ptc_droplet_list *droplets;
    ptc_change *chg;
    ptc_sync_plan plan;
    bool planned;
} sync_arg;

static const ptc_state *build_sync(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    sync_arg *a = arg;
    ptc_proxy_defaults defs = {
        .health_check_path = ptc_settings_get(c->api->settings, PTC_SET_HEALTH_CHECK_PATH),
        .health_check_timeout_ms =
            (unsigned)ptc_settings_int(c->api->settings, PTC_SET_HEALTH_CHECK_TIMEOUT_MS),
        .health_check_interval_ms =
            (unsigned)ptc_settings_int(c->api->settings, PTC_SET_HEALTH_CHECK_INTERVAL_MS),
    };
    ptc_sync_options o = {
        .defaults = &defs,
        .prune = ptc_settings_bool(c->api->settings, PTC_SET_REGISTRY_PRUNE),
        .revision = rev,
        .now = ptc_now_ms(),
    };
    ptc_registry_plan(cur, a->droplets, &o, &a->plan);
    a->planned = true;
    snprintf(a->chg->summary, sizeof(a->chg->summary), "registry sync: %zu created, %zu updated, %zu deleted",
             json_array_size(a->plan.created), json_array_size(a->plan.updated),
             json_array_size(a->plan.deleted));
    return ptc_state_retain(a->plan.next);
}

static json_t *result_json(const sync_arg *a, bool changed, int64_t revision, const char *url, size_t listed,
                           int64_t fetch_ms)
{
    const ptc_sync_plan *p = &a->plan;
    json_t *r = json_object();
    /* seed 000's ProxySyncResult, then the detail */
    json_object_set(r, "synced", p->synced);
    json_object_set_new(r, "synced_count", json_integer((json_int_t)json_array_size(p->synced)));
    json_object_set(r, "skipped", p->skipped);
    json_object_set_new(r, "skipped_count", json_integer((json_int_t)json_array_size(p->skipped)));
    json_object_set(r, "skipped_reasons", p->skipped_reasons);
    json_object_set_new(r, "changes",
                        json_pack("{s:O, s:O, s:O, s:O}", "created", p->created, "updated", p->updated,
                                  "unchanged", p->unchanged, "deleted", p->deleted));
    json_object_set_new(r, "changed", json_boolean(changed));
    json_object_set_new(r, "revision", json_integer(revision));
    json_object_set_new(r, "registry",
                        json_pack("{s:s, s:I, s:I}", "url", url, "droplets", (json_int_t)listed, "fetch_ms",
                                  (json_int_t)fetch_ms));
    return r;
}

/* One sync, answering c (an API call, or the periodic thread's). */
static void run_sync(ptc_call *c)
{
    ptc_api *api = c->api;
    const ptc_settings *set = api->settings;
    const char *url = ptc_settings_get(set, PTC_SET_REGISTRY_URL);
    char *shown = redacted(url);
    char err[512] = "";
    ptc_buf body = PTC_BUF_INIT;
    ptc_droplet_list dl = {0};
    sync_arg a = {.droplets = &dl};
    json_t *report = NULL;
    const ptc_state *next = NULL;
    int rc;

    if (url[0] == '\0') {
        unavailable(c, shown, "not_configured", "registry_url is not set");
        goto out;
    }
    int64_t t0 = ptc_mono_ms();
    rc = ptc_registry_fetch(url, (long)ptc_settings_int(set, PTC_SET_REGISTRY_TIMEOUT_MS),
                            api->sync ? &api->sync->cancel : NULL, &body, err, sizeof(err));
    if (rc != 0) {
        unavailable(c, shown, cause_of(rc), err);
        goto out;
    }
    if (ptc_registry_parse(ptc_buf_cstr(&body), body.len, ptc_settings_get(set, PTC_SET_BASE_DOMAIN), &dl,
                           err, sizeof(err)) != 0) {
        unavailable(c, shown, "malformed", err);
        goto out;
    }
    int64_t fetch_ms = ptc_mono_ms() - t0;
    size_t listed = dl.n + json_object_size(dl.skipped);
    ptc_buf_free(&body);

    ptc_change chg = {.action = "registry.sync", .build = build_sync, .arg = &a};
    a.chg = &chg;
    snprintf(chg.summary, sizeof(chg.summary), "registry sync");
    switch (ptc_api_apply(c, &chg, &report, &next)) {
    case PTC_APPLY_DONE: {
        json_t *r = result_json(&a, true, next->revision, shown, listed, fetch_ms);
        json_object_set_new(report, "changed", json_true());
        json_object_set_new(r, "apply", report);
        report = NULL;
        ptc_call_reply(c, 200, r);
        count(api, 1);
        break;
    }
    case PTC_APPLY_UNCHANGED:
        ptc_call_reply(c, 200, result_json(&a, false, next->revision, shown, listed, fetch_ms));
        count(api, 0);
        break;
    case PTC_APPLY_ANSWERED:
        count(api, -1);
        break;
    }
out:
    if (a.planned)
        ptc_sync_plan_free(&a.plan);
    ptc_droplet_list_free(&dl);
    ptc_buf_free(&body);
    json_decref(report);
    ptc_state_release(next);
    free(shown);
}

void ptc_api_registry_sync(ptc_call *c)
{
    run_sync(c);
}

/* ---- the periodic sync --------------------------------------------------------------- */

static void *loop(void *arg)
{
    ptc_api *api = arg;
    ptc_api_sync *s = api->sync;
    int64_t every_ms = ptc_settings_int(api->settings, PTC_SET_REGISTRY_SYNC_INTERVAL) * 1000;

    pthread_mutex_lock(&s->lock);
    while (!s->stop) {
        pthread_mutex_unlock(&s->lock);
        ptc_call c;
        memset(&c, 0, sizeof(c));
        c.api = api;
        c.method = "GET";
        c.path = "/proxy-manager/sync-from-registry";
        ptc_random_hex(c.correlation_id, 16);
        snprintf(c.actor, sizeof(c.actor), "registry-sync");
        ptc_log_set_correlation_id(c.correlation_id);
        run_sync(&c);
        const char *code = json_string_value(json_object_get(json_object_get(c.reply, "error"), "code"));
        if (code)
            ptc_log_warn("periodic registry sync failed", PTC_LS("code", code),
                         PTC_LS("message", json_string_value(json_object_get(
                                               json_object_get(c.reply, "error"), "message"))));
        else
            ptc_log_info("periodic registry sync",
                         PTC_LB("changed", json_is_true(json_object_get(c.reply, "changed"))),
                         PTC_LI("synced", json_integer_value(json_object_get(c.reply, "synced_count"))),
                         PTC_LI("skipped", json_integer_value(json_object_get(c.reply, "skipped_count"))),
                         PTC_LI("revision", json_integer_value(json_object_get(c.reply, "revision"))));
        ptc_log_set_correlation_id(NULL);
        json_decref(c.reply);
        free(c.text);

        struct timespec ts = ptc_deadline_ms(CLOCK_MONOTONIC, every_ms);
        pthread_mutex_lock(&s->lock);
        while (!s->stop && pthread_cond_timedwait(&s->cond, &s->lock, &ts) == 0)
            ;
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int ptc_api_sync_start(ptc_api *api, char *err, size_t errlen)
{
    ptc_api_sync *s = ptc_xcalloc(1, sizeof(*s));
    pthread_condattr_t ca;
    int rc;

    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&s->cancel, false);
    api->sync = s;
    if (ptc_settings_int(api->settings, PTC_SET_REGISTRY_SYNC_INTERVAL) == 0)
        return 0;
    if ((rc = pthread_create(&s->thread, NULL, loop, api)) != 0) {
        snprintf(err, errlen, "registry sync: cannot start a thread (%s)", strerror(rc));
        return -rc;
    }
    s->started = true;
    return 0;
}

void ptc_api_sync_stop(ptc_api *api)
{
    ptc_api_sync *s = api->sync;
    if (s == NULL)
        return;
    atomic_store(&s->cancel, true);
    if (s->started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_signal(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        s->started = false;
    }
}

void ptc_api_sync_free(ptc_api *api)
{
    ptc_api_sync *s = api->sync;
    if (s == NULL)
        return;
    ptc_api_sync_stop(api);
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    free(s);
    api->sync = NULL;
}

void ptc_api_sync_metrics(ptc_api *api, ptc_buf *out)
{
    ptc_api_sync *s = api->sync;
    if (s == NULL)
        return;
    pthread_mutex_lock(&s->lock);
    ptc_buf_appendf(out,
                    "# HELP portico_registry_syncs_total Registry syncs, by outcome.\n"
                    "# TYPE portico_registry_syncs_total counter\n"
                    "portico_registry_syncs_total{result=\"changed\"} %llu\n"
                    "portico_registry_syncs_total{result=\"unchanged\"} %llu\n"
                    "portico_registry_syncs_total{result=\"failed\"} %llu\n"
                    "# HELP portico_registry_last_sync_timestamp_seconds When the last sync ran (0: never).\n"
                    "# TYPE portico_registry_last_sync_timestamp_seconds gauge\n"
                    "portico_registry_last_sync_timestamp_seconds %.3f\n"
                    "# HELP portico_registry_last_success_timestamp_seconds When a sync last succeeded (0: "
                    "never).\n"
                    "# TYPE portico_registry_last_success_timestamp_seconds gauge\n"
                    "portico_registry_last_success_timestamp_seconds %.3f\n",
                    (unsigned long long)s->changed, (unsigned long long)s->unchanged,
                    (unsigned long long)s->failed, (double)s->last_run / 1000.0,
                    (double)s->last_success / 1000.0);
    pthread_mutex_unlock(&s->lock);
}
