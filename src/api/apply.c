/* The apply pipeline (DESIGN §3): one change at a time, from building the
 * next desired state to the engine's apply (back up, write, test, reload,
 * verify, roll back), the store commit, publishing the new state and the
 * audit entry.  The store is written last: if portico dies before, start-up
 * reconciliation puts the engine back on the stored state. */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/mem.h"
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

/* ---- another node's changes ---------------------------------------------------------- */

/* Whether two stored forms say the same thing (created, updated and
 * source included: what the API shows must follow too). */
static bool proxy_same(const ptc_proxy *a, const ptc_proxy *b)
{
    json_t *ja = ptc_proxy_to_stored(a), *jb = ptc_proxy_to_stored(b);
    bool same = json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

static bool cert_same(const ptc_cert *a, const ptc_cert *b)
{
    json_t *ja = ptc_cert_to_stored(a), *jb = ptc_cert_to_stored(b);
    bool same = json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

/* stored, with every proxy and certificate that cur holds unchanged
 * replaced by cur's own object: engines see as changed only what another
 * node changed.  *changed tells whether anything differs from cur. */
static ptc_state *share_unchanged(const ptc_state *cur, const ptc_state *stored, bool *changed)
{
    ptc_proxy **proxies = ptc_xcalloc(stored->n_proxies + 1, sizeof(*proxies));
    ptc_cert **certs = ptc_xcalloc(stored->n_certs + 1, sizeof(*certs));
    size_t kept = 0;

    for (size_t i = 0; i < stored->n_proxies; i++) {
        const ptc_proxy *p = stored->proxies[i], *mine = ptc_state_proxy(cur, p->name);
        bool same = mine != NULL && proxy_same(mine, p);
        proxies[i] = ptc_proxy_retain(same ? mine : p);
        kept += same;
    }
    for (size_t i = 0; i < stored->n_certs; i++) {
        const ptc_cert *ct = stored->certs[i], *mine = ptc_state_cert(cur, ct->domain);
        bool same = mine != NULL && cert_same(mine, ct);
        certs[i] = ptc_cert_retain(same ? mine : ct);
        kept += same;
    }
    *changed = kept != cur->n_proxies + cur->n_certs || stored->n_proxies + stored->n_certs != kept;
    ptc_state *merged = ptc_state_from(proxies, stored->n_proxies, certs, stored->n_certs);
    merged->revision = stored->revision;
    free(proxies);
    free(certs);
    return merged;
}

/* Brings the engine and api->state to the store's state of generation
 * gen, read again: another node changed it.  Runs under the apply lock;
 * no verify and no commit (the writer did both).  Returns 0 or -errno. */
static int follow_locked(ptc_api *api, int64_t gen)
{
    const ptc_state *cur = ptc_api_state(api);
    ptc_state *stored = NULL, *merged = NULL;
    ptc_apply_result res = {0};
    bool changed = false;
    int rc;

    if ((rc = ptc_store_load_state(api->store, &stored)) != 0) {
        ptc_log_error("cannot read the state another node changed", PTC_LI("generation", gen));
        goto out;
    }
    merged = share_unchanged(cur, stored, &changed);
    if (!changed) {
        /* DNS records only (the zone is rebuilt from the store), or a
         * change undone since: no engine work. */
        if (merged->revision != cur->revision)
            publish(api, merged);
        else
            ptc_api_dns_refresh(api);
        api->generation = gen;
        goto out;
    }
    engine_apply(api, cur, merged, NULL, &res);
    if (res.code) {
        /* Tried again at the next look, and logged each time: the engine
         * serves this node's last state until then. */
        ptc_log_error("the engine refused the state another node committed", PTC_LS("code", res.code),
                      PTC_LS("message", res.message), PTC_LI("revision", merged->revision));
        rc = -EIO;
        goto out;
    }
    publish(api, merged);
    ptc_api_ssl_changed(api);
    api->generation = gen;
    ptc_log_info("applied the state another node committed", PTC_LI("revision", merged->revision),
                 PTC_LI("proxies", merged->n_proxies), PTC_LI("certificates", merged->n_certs));
out:
    ptc_apply_result_clear(&res);
    ptc_state_release(merged);
    ptc_state_release(stored);
    ptc_state_release(cur);
    return rc;
}

int ptc_api_follow(ptc_api *api)
{
    int64_t gen = 0;
    int rc;
    pthread_mutex_lock(&api->apply_lock);
    if ((rc = ptc_store_generation(api->store, &gen)) == 0 && gen != api->generation)
        rc = follow_locked(api, gen);
    pthread_mutex_unlock(&api->apply_lock);
    return rc;
}

void ptc_api_writes_begin(ptc_api *api, ptc_api_writes *w)
{
    w->own0 = ptc_store_own_writes(api->store);
    w->known = ptc_store_generation(api->store, &w->gen0) == 0;
    if (w->known && w->gen0 != api->generation)
        follow_locked(api, w->gen0);
}

void ptc_api_writes_end(ptc_api *api, const ptc_api_writes *w)
{
    int64_t gen1 = 0;
    uint64_t own = ptc_store_own_writes(api->store) - w->own0;
    if (!w->known || own == 0 || api->generation != w->gen0 || ptc_store_generation(api->store, &gen1) != 0)
        return;
    /* Moved by exactly our writes: nobody else wrote in between. */
    if ((uint64_t)(gen1 - w->gen0) == own)
        api->generation = gen1;
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
    /* A change starts from the store's newest state: another node's
     * change since the last look is applied first. */
    ptc_api_writes writes;
    ptc_api_writes_begin(api, &writes);
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
    ptc_api_writes_end(api, &writes);
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
