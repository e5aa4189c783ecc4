/* The apply pipeline (DESIGN §3): one change at a time, from building the
 * next desired state to the engine's apply (back up, write, test, reload,
 * verify, roll back), the store commit, publishing the new state and the
 * audit entry.  The store is written last: if portico dies before, start-up
 * reconciliation puts the engine back on the stored state. */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/util.h"
#include "discovery/probe.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Commits next as revision rev, and finishes the attempt's audit row
 * (audit_id, 0 for none) as a success with detail in the same
 * transaction: one disk sync for the change and its record. */
static int commit_proxies(ptc_call *c, const ptc_state *cur, const ptc_state *next, int64_t rev,
                          const ptc_change *chg, int64_t audit_id, const char *detail)
{
    char *text = ptc_utf8_repair(detail);
    ptc_revision meta = {
        .number = rev,
        .ts = ptc_now_ms(),
        .actor = c->actor,
        .action = chg->action,
        .correlation_id = c->correlation_id,
        .summary = chg->summary,
        .audit_id = audit_id,
        .audit_detail = text,
    };
    int rc = ptc_store_commit(c->api->store, cur, next, &meta);
    free(text);
    return rc;
}

static void publish(ptc_api *api, const ptc_state *next)
{
    pthread_mutex_lock(&api->state_lock);
    const ptc_state *old = api->state;
    api->state = ptc_state_retain(next);
    pthread_mutex_unlock(&api->state_lock);
    atomic_fetch_add(&api->activity, 1);
    ptc_state_release(old);
    ptc_api_checks_follow(api, next);
    /* Proxies with dns: true are names in the zone. */
    ptc_api_dns_refresh(api);
}

static void engine_apply(ptc_api *api, const ptc_state *from, const ptc_state *to, const ptc_change *chg,
                         ptc_apply_result *res)
{
    ptc_apply_request req = {
        .old = from,
        .next = to,
        .verify_domain = chg ? chg->verify_domain : NULL,
        .verify_path = chg ? chg->verify_path : NULL,
        .verify_gone = chg ? chg->verify_gone : false,
    };
    memset(res, 0, sizeof(*res));
    api->engine->ops->apply(api->engine, &req, res);
}

ptc_apply_status ptc_api_apply(ptc_call *c, ptc_change *chg, json_t **report, const ptc_state **next_out)
{
    ptc_api *api = c->api;
    ptc_apply_status status = PTC_APPLY_ANSWERED;
    const ptc_state *cur = NULL, *next = NULL;
    ptc_apply_result res = {0};
    int64_t rev = 0, audit_id = 0;
    int rc;

    *report = NULL;
    *next_out = NULL;
    pthread_mutex_lock(&api->apply_lock);
    cur = ptc_api_state(api);
    if ((rc = ptc_store_next_revision(api->store, &rev)) != 0) {
        ptc_call_error(c, 500, "STORE_FAILED", "the store cannot be read", NULL);
        ptc_api_audit_failure(c, chg->action, chg->droplet, chg->domain);
        goto out;
    }
    next = chg->build(c, cur, rev, chg->arg);
    if (next == NULL) {
        ptc_api_audit_failure(c, chg->action, chg->droplet, chg->domain);
        goto out;
    }
    if (next == cur) {
        status = PTC_APPLY_UNCHANGED;
        ptc_api_audit(c, chg->action, chg->droplet, chg->domain, "unchanged", NULL, "nothing to change");
        *next_out = ptc_state_retain(cur);
        goto out;
    }

    audit_id = ptc_api_audit_begin(c, chg->action, chg->droplet, chg->domain, chg->summary);
    engine_apply(api, cur, next, chg, &res);
    if (res.code) {
        json_t *details = res.details ? json_incref(res.details) : json_object();
        if (res.report)
            json_object_set(details, "apply", res.report);
        ptc_call_error(c, 500, res.code, res.message, details);
        ptc_api_audit_end_failure(c, audit_id, chg->action, chg->droplet, chg->domain);
        goto out;
    }

    bool revisioned = chg->commit == NULL || chg->commits_revision;
    char detail[200];
    if (revisioned)
        snprintf(detail, sizeof(detail), "%s; revision %lld", chg->summary, (long long)rev);
    else
        snprintf(detail, sizeof(detail), "%s", chg->summary);
    rc = chg->commit ? chg->commit(c, cur, next, rev, chg->arg)
                     : commit_proxies(c, cur, next, rev, chg, audit_id, detail);
    if (rc != 0) {
        /* The engine serves next but the store still says cur: put the
         * engine back, so that the two never disagree. */
        ptc_apply_result undo;
        engine_apply(api, next, cur, NULL, &undo);
        if (undo.code)
            ptc_log_error("engine rollback after a failed commit failed; restart repairs it",
                          PTC_LS("code", undo.code), PTC_LS("message", undo.message));
        ptc_apply_result_clear(&undo);
        ptc_call_error(c, 500, rc == -EEXIST ? "CONFLICT" : "STORE_FAILED",
                       rc == -EEXIST ? "another change was committed at the same time; retry"
                                     : "the change could not be committed; it was rolled back",
                       NULL);
        ptc_api_audit_end_failure(c, audit_id, chg->action, chg->droplet, chg->domain);
        goto out;
    }
    if (revisioned)
        ((ptc_state *)next)->revision = rev;
    else
        ((ptc_state *)next)->revision = cur->revision;
    publish(api, next);
    ptc_api_ssl_changed(api);

    *report = res.report ? json_incref(res.report) : json_object();
    if (revisioned)
        json_object_set_new(*report, "revision", json_integer(rev));
    *next_out = ptc_state_retain(next);
    status = PTC_APPLY_DONE;
    if (chg->commit == NULL && audit_id != 0)
        ptc_api_audit_logged(c, chg->action, chg->droplet, chg->domain, "success", NULL);
    else
        ptc_api_audit_end(c, audit_id, chg->action, chg->droplet, chg->domain, "success", NULL, detail);
out:
    pthread_mutex_unlock(&api->apply_lock);
    ptc_apply_result_clear(&res);
    /* build() returned a reference of its own, also when it is cur. */
    ptc_state_release(next);
    ptc_state_release(cur);
    return status;
}

bool ptc_api_gate(ptc_call *c, const ptc_proxy *p)
{
    ptc_probe probes[PTC_UPSTREAMS_MAX];
    bool healthy = false;
    json_t *results;

    if (!p->require_healthy)
        return true;
    for (size_t i = 0; i < p->n_upstreams; i++)
        probes[i] = (ptc_probe){
            .host = p->upstreams[i].host,
            .port = p->upstreams[i].port,
            .path = p->health_check.path,
            .timeout_ms = p->health_check.timeout_ms,
        };
    ptc_probe_run(probes, p->n_upstreams);
    results = json_array();
    for (size_t i = 0; i < p->n_upstreams; i++) {
        /* The gate wants a 2xx (DESIGN §2.1); a redirect is not "healthy". */
        bool ok = probes[i].status >= 200 && probes[i].status < 300;
        healthy = healthy || ok;
        json_t *r =
            json_pack("{s:s, s:i, s:s, s:b, s:i}", "host", probes[i].host, "port", (int)probes[i].port,
                      "path", probes[i].path, "healthy", ok, "status", probes[i].status);
        if (!ok)
            json_object_set_new(r, "error", json_string(probes[i].error[0] ? probes[i].error : "not a 2xx"));
        json_array_append_new(results, r);
    }
    if (!healthy) {
        ptc_call_error(c, 503, "UPSTREAM_UNHEALTHY", "no upstream answered its health check with a 2xx",
                       json_pack("{s:o}", "upstreams", results));
        return false;
    }
    json_decref(results);
    return true;
}
