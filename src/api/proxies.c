/* /proxies: list, get, put (create or update) and delete (DESIGN §2.1). */
#include "api/api_internal.h"

#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ptc_api_write_proxy(ptc_buf *b, ptc_api *api, const ptc_state *s, const ptc_proxy *p)
{
    ptc_proxy_api_extras x = ptc_api_checks_extras(api);
    ptc_proxy_write_api(b, p, ptc_state_cert_for(s, p->domain) != NULL, &x);
}

json_t *ptc_api_proxy_json(ptc_api *api, const ptc_state *s, const ptc_proxy *p)
{
    ptc_buf b = PTC_BUF_INIT;
    ptc_api_write_proxy(&b, api, s, p);
    json_t *j = json_loadb(b.data, b.len, 0, NULL);
    ptc_buf_free(&b);
    return j;
}

void ptc_api_proxies_list(ptc_call *c)
{
    const ptc_state *s = ptc_api_state(c->api);
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_reserve(&b, s->n_proxies * 1024 + 2);
    ptc_buf_append_str(&b, "[");
    for (size_t i = 0; i < s->n_proxies; i++) {
        if (i)
            ptc_buf_append_str(&b, ",");
        ptc_api_write_proxy(&b, c->api, s, s->proxies[i]);
    }
    ptc_buf_append_str(&b, "]\n");
    ptc_state_release(s);
    c->status = 200;
    c->text = ptc_buf_detach(&b);
    c->content_type = "application/json";
}

static bool valid_name_or_answer(ptc_call *c, const char *name)
{
    if (ptc_valid_name(name))
        return true;
    ptc_call_error(c, 400, "INVALID_CONFIG", "the proxy name is not valid",
                   json_pack("{s:{s:s}}", "fields", "name", "must match ^[a-z0-9][a-z0-9_-]{0,62}$"));
    return false;
}

void ptc_api_proxy_get(ptc_call *c)
{
    const char *name = c->params[0];
    const ptc_state *s = ptc_api_state(c->api);
    const ptc_proxy *p = ptc_state_proxy(s, name);
    if (p)
        ptc_call_reply(c, 200, ptc_api_proxy_json(c->api, s, p));
    else if (valid_name_or_answer(c, name))
        ptc_call_error(c, 404, "PROXY_NOT_FOUND", "no proxy has this name", json_pack("{s:s}", "name", name));
    ptc_state_release(s);
}

static ptc_proxy_defaults defaults_of(const ptc_settings *s)
{
    return (ptc_proxy_defaults){
        .health_check_path = ptc_settings_get(s, PTC_SET_HEALTH_CHECK_PATH),
        .health_check_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_HEALTH_CHECK_TIMEOUT_MS),
        .health_check_interval_ms = (unsigned)ptc_settings_int(s, PTC_SET_HEALTH_CHECK_INTERVAL_MS),
    };
}

typedef struct put_arg {
    ptc_proxy *proxy; /* the requested spec */
    bool created;
} put_arg;

const ptc_state *ptc_api_state_with_proxy(ptc_call *c, const ptc_state *cur, int64_t rev,
                                          const ptc_proxy *spec, bool *created)
{
    const ptc_proxy *old = ptc_state_proxy(cur, spec->name);
    const ptc_proxy *owner = ptc_state_route_owner(cur, spec->domain, spec->path_prefix);
    int64_t now = ptc_now_ms();

    if (owner && strcmp(owner->name, spec->name) != 0) {
        ptc_call_error(c, 409, "ROUTE_CONFLICT", "another proxy already routes this domain and path prefix",
                       json_pack("{s:s, s:s, s:s}", "domain", owner->domain, "path_prefix",
                                 owner->path_prefix, "owner", owner->name));
        return NULL;
    }
    if (old && ptc_proxy_spec_equal(old, spec))
        return ptc_state_retain(cur);
    ptc_proxy *p = ptc_proxy_clone(spec);
    p->created_at = old ? old->created_at : now;
    p->updated_at = now;
    p->revision = rev;
    *created = old == NULL;
    return ptc_state_put_proxy(cur, p);
}

static const ptc_state *build_put(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    put_arg *a = arg;
    return ptc_api_state_with_proxy(c, cur, rev, a->proxy, &a->created);
}

void ptc_api_proxy_put(ptc_call *c)
{
    const char *name = c->params[0];
    json_t *body = NULL, *errors = json_object(), *report = NULL;
    ptc_proxy_defaults defs = defaults_of(c->api->settings);
    put_arg arg = {0};
    const ptc_state *next = NULL, *cur = NULL;
    const char *domain = NULL;

    body = ptc_call_json_body(c, false);
    if (body == NULL)
        goto fail;
    domain = json_string_value(json_object_get(body, "domain"));
    arg.proxy = ptc_proxy_from_request(body, name, &defs, errors);
    if (arg.proxy == NULL) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the proxy configuration is not valid",
                       json_pack("{s:O}", "fields", errors));
        goto fail;
    }
    domain = arg.proxy->domain;
    /* An equal spec answers at once: no gate, no revision, no reload. */
    cur = ptc_api_state(c->api);
    const ptc_proxy *old = ptc_state_proxy(cur, name);
    if (old && ptc_proxy_spec_equal(old, arg.proxy)) {
        json_t *out = ptc_api_proxy_json(c->api, cur, old);
        json_object_set_new(out, "apply", json_pack("{s:b}", "changed", 0));
        ptc_call_reply(c, 200, out);
        ptc_api_audit(c, "proxy.put", name, domain, "unchanged", NULL, "the spec is unchanged");
        goto out;
    }
    if (!ptc_api_gate(c, arg.proxy))
        goto fail;

    ptc_change chg = {
        .action = "proxy.put",
        .droplet = name,
        .domain = domain,
        .build = build_put,
        .arg = &arg,
        .verify_domain = arg.proxy->domain,
        .verify_path = arg.proxy->path_prefix,
    };
    snprintf(chg.summary, sizeof(chg.summary), "put %s", name);
    switch (ptc_api_apply(c, &chg, &report, &next)) {
    case PTC_APPLY_DONE: {
        json_t *out = ptc_api_proxy_json(c->api, next, ptc_state_proxy(next, name));
        json_object_set_new(report, "changed", json_true());
        json_object_set_new(out, "apply", report);
        report = NULL;
        ptc_call_reply(c, arg.created ? 201 : 200, out);
        break;
    }
    case PTC_APPLY_UNCHANGED: {
        json_t *out = ptc_api_proxy_json(c->api, next, ptc_state_proxy(next, name));
        json_object_set_new(out, "apply", json_pack("{s:b}", "changed", 0));
        ptc_call_reply(c, 200, out);
        break;
    }
    case PTC_APPLY_ANSWERED:
        break;
    }
    goto out;
fail:
    ptc_api_audit_failure(c, "proxy.put", name, domain);
out:
    json_decref(report);
    ptc_state_release(next);
    ptc_state_release(cur);
    ptc_proxy_release(arg.proxy);
    json_decref(errors);
    json_decref(body);
}

typedef struct delete_arg {
    const char *name;
    ptc_change *chg;
    char *domain, *prefix; /* of the proxy deleted, read under the apply lock */
} delete_arg;

static const ptc_state *build_delete(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    delete_arg *a = arg;
    const ptc_proxy *p = ptc_state_proxy(cur, a->name);
    (void)rev;
    if (p == NULL) {
        ptc_call_error(c, 404, "PROXY_NOT_FOUND", "no proxy has this name",
                       json_pack("{s:s}", "name", a->name));
        return NULL;
    }
    bool last_of_domain = ptc_state_domain_count(cur, p->domain) == 1;
    a->domain = ptc_xstrdup(p->domain);
    a->prefix = ptc_xstrdup(p->path_prefix);
    a->chg->domain = a->domain;
    /* Gone means the engine's own 404, which only holds once the domain's
     * last route is gone. */
    a->chg->verify_domain = last_of_domain ? a->domain : NULL;
    a->chg->verify_path = a->prefix;
    return ptc_state_delete_proxy(cur, a->name);
}

void ptc_api_proxy_delete(ptc_call *c)
{
    const char *name = c->params[0];
    const ptc_state *next = NULL;
    json_t *report = NULL;

    if (!valid_name_or_answer(c, name)) {
        ptc_api_audit_failure(c, "proxy.delete", NULL, NULL);
        return;
    }
    /* What the proxy was (its domain, for the answer, the audit entry and
     * the verify step) is read by build(), from the state it deletes from:
     * a read before the apply lock could see another proxy, or none. */
    ptc_change chg = {
        .action = "proxy.delete",
        .droplet = name,
        .build = build_delete,
        .verify_gone = true,
    };
    delete_arg arg = {.name = name, .chg = &chg};
    chg.arg = &arg;
    snprintf(chg.summary, sizeof(chg.summary), "delete %s", name);
    if (ptc_api_apply(c, &chg, &report, &next) == PTC_APPLY_DONE) {
        json_object_set_new(report, "changed", json_true());
        ptc_call_reply(c, 200,
                       json_pack("{s:s, s:s, s:b, s:o}", "droplet_name", name, "domain", arg.domain,
                                 "deleted", 1, "apply", report));
        report = NULL;
    }
    json_decref(report);
    ptc_state_release(next);
    free(arg.domain);
    free(arg.prefix);
}
