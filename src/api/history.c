/* The audit trail (GET /audit) and the revisions of the desired state
 * (GET /revisions, POST /revisions/{n}/restore). */
#include "api/api_internal.h"

#include "core/mem.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows written before their values were made UTF-8 (or by another node)
 * are listed too, their other bytes as U+FFFD. */
static json_t *opt_string(const char *s)
{
    if (s == NULL)
        return json_null();
    if (ptc_utf8_valid(s))
        return json_string(s);
    char *fixed = ptc_utf8_repair(s);
    json_t *j = json_string(fixed);
    free(fixed);
    return j;
}

/* limit=N in [1, max], default def; answers 400 and returns -1 when bad. */
static long long limit_param(ptc_call *c, long long def, long long max)
{
    const char *v = ptc_call_query(c, "limit");
    long long n = def;
    if (v && ptc_parse_int(v, 1, max, &n) != 0) {
        char msg[80];
        snprintf(msg, sizeof(msg), "must be an integer from 1 to %lld", max);
        ptc_call_error(c, 400, "INVALID_QUERY", "the query is not valid",
                       json_pack("{s:{s:s}}", "fields", "limit", msg));
        return -1;
    }
    return n;
}

void ptc_api_audit_list(ptc_call *c)
{
    const char *since_s = ptc_call_query(c, "since");
    long long since = -1, limit; /* without since: the newest entries */
    ptc_audit_list list;

    if ((limit = limit_param(c, 1000, 100000)) < 0)
        return;
    if (since_s && ptc_parse_int(since_s, 0, INT64_MAX, &since) != 0) {
        int64_t ms;
        if (ptc_time_parse(since_s, &ms) != 0) {
            ptc_call_error(
                c, 400, "INVALID_QUERY", "the query is not valid",
                json_pack("{s:{s:s}}", "fields", "since",
                          "must be a time like 2026-01-02T03:04:05Z or milliseconds since the epoch"));
            return;
        }
        since = ms;
    }
    if (ptc_store_audit_list(c->api->store, since, (size_t)limit, &list) != 0) {
        ptc_call_error(c, 500, "STORE_FAILED", "the audit trail cannot be read", NULL);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < list.n; i++) {
        const ptc_audit_entry *e = &list.items[i];
        char ts[32];
        ptc_time_format(e->ts, ts, sizeof(ts));
        json_array_append_new(
            out, json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "id", (json_int_t)e->id,
                           "time", ts, "correlation_id", opt_string(e->correlation_id), "actor",
                           opt_string(e->actor), "action", opt_string(e->action), "droplet_name",
                           opt_string(e->droplet_name), "domain", opt_string(e->domain), "result",
                           opt_string(e->result), "error_code", opt_string(e->error_code), "detail",
                           opt_string(e->detail), "node", opt_string(e->node)));
    }
    ptc_audit_list_free(&list);
    ptc_call_reply(c, 200, out);
}

void ptc_api_revisions_list(ptc_call *c)
{
    long long limit;
    ptc_revision_list list;

    if ((limit = limit_param(c, 100, 100000)) < 0)
        return;
    if (ptc_store_revisions(c->api->store, (size_t)limit, &list) != 0) {
        ptc_call_error(c, 500, "STORE_FAILED", "the revisions cannot be read", NULL);
        return;
    }
    json_t *out = json_array();
    for (size_t i = 0; i < list.n; i++) {
        const ptc_revision *r = &list.items[i];
        char ts[32];
        ptc_time_format(r->ts, ts, sizeof(ts));
        json_array_append_new(out, json_pack("{s:I, s:s, s:o, s:o, s:o, s:o, s:I}", "revision",
                                             (json_int_t)r->number, "time", ts, "actor", opt_string(r->actor),
                                             "action", opt_string(r->action), "correlation_id",
                                             opt_string(r->correlation_id), "summary", opt_string(r->summary),
                                             "proxies", (json_int_t)r->n_proxies));
    }
    ptc_revision_list_free(&list);
    ptc_call_reply(c, 200, out);
}

typedef struct restore_arg {
    long long number;
} restore_arg;

/* The proxies of revision n with today's certificates: certificates are
 * not versioned, and an old chain may have expired since. */
static const ptc_state *build_restore(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    restore_arg *a = arg;
    ptc_state *old = NULL, *next = NULL;
    bool same = true;
    (void)rev;

    int rc = ptc_store_state_at(c->api->store, a->number, &old);
    if (rc == -ENOENT) {
        ptc_call_error(c, 404, "REVISION_NOT_FOUND", "no revision has this number",
                       json_pack("{s:I}", "revision", (json_int_t)a->number));
        return NULL;
    }
    if (rc != 0) {
        ptc_call_error(c, 500, "STORE_FAILED", "the revision cannot be read", NULL);
        return NULL;
    }
    /* Keep the objects of cur where the spec is the same, so that only real
     * changes reach the engine and the store. */
    ptc_proxy **proxies = ptc_xcalloc(old->n_proxies + 1, sizeof(*proxies));
    for (size_t i = 0; i < old->n_proxies; i++) {
        const ptc_proxy *now = ptc_state_proxy(cur, old->proxies[i]->name);
        if (now && ptc_proxy_spec_equal(now, old->proxies[i]) && now->source == old->proxies[i]->source) {
            proxies[i] = ptc_proxy_retain(now);
        } else {
            ptc_proxy *p = ptc_proxy_clone(old->proxies[i]);
            p->updated_at = ptc_now_ms();
            p->revision = rev;
            proxies[i] = p;
            same = false;
        }
    }
    same = same && old->n_proxies == cur->n_proxies;
    ptc_cert **certs = ptc_xcalloc(cur->n_certs + 1, sizeof(*certs));
    for (size_t i = 0; i < cur->n_certs; i++)
        certs[i] = ptc_cert_retain(cur->certs[i]);
    next = ptc_state_from(proxies, old->n_proxies, certs, cur->n_certs);
    free(proxies);
    free(certs);
    ptc_state_release(old);
    if (same) {
        ptc_state_release(next);
        return ptc_state_retain(cur);
    }
    return next;
}

void ptc_api_revision_restore(ptc_call *c)
{
    restore_arg arg;
    json_t *report = NULL;
    const ptc_state *next = NULL;

    if (ptc_parse_int(c->params[0], 1, INT64_MAX, &arg.number) != 0) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the revision number is not valid",
                       json_pack("{s:{s:s}}", "fields", "revision", "must be a positive integer"));
        ptc_api_audit_failure(c, "revision.restore", NULL, NULL);
        return;
    }
    ptc_change chg = {.action = "revision.restore", .build = build_restore, .arg = &arg};
    snprintf(chg.summary, sizeof(chg.summary), "restore revision %lld", arg.number);
    switch (ptc_api_apply(c, &chg, &report, &next)) {
    case PTC_APPLY_DONE:
        json_object_set_new(report, "changed", json_true());
        ptc_call_reply(c, 200,
                       json_pack("{s:I, s:I, s:o}", "restored", (json_int_t)arg.number, "revision",
                                 (json_int_t)next->revision, "apply", report));
        report = NULL;
        break;
    case PTC_APPLY_UNCHANGED:
        ptc_call_reply(
            c, 200, json_pack("{s:I, s:{s:b}}", "restored", (json_int_t)arg.number, "apply", "changed", 0));
        break;
    case PTC_APPLY_ANSWERED:
        break;
    }
    json_decref(report);
    ptc_state_release(next);
}
