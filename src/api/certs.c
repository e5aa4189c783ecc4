/* /certificates (DESIGN §2.2): upload a PEM chain and key for a domain,
 * list, read and delete them.  Keys are checked and stored but never
 * answered.  A certificate change is applied to the engine like a route
 * change (the routes of its domain switch to HTTPS or back) but is not a
 * revision: revisions version the routes. */
#include "api/api_internal.h"

#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"
#include "tls/inspect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The API form with the proxies the certificate serves. */
static json_t *cert_json(const ptc_state *s, const ptc_cert *c)
{
    json_t *j = ptc_cert_to_api(c);
    json_t *used = json_array();
    for (size_t i = 0; i < s->n_proxies; i++)
        if (ptc_state_cert_for(s, s->proxies[i]->domain) == c)
            json_array_append_new(used, json_string(s->proxies[i]->name));
    json_object_set_new(j, "used_by", used);
    return j;
}

void ptc_api_certs_list(ptc_call *c)
{
    const ptc_state *s = ptc_api_state(c->api);
    json_t *out = json_array();
    for (size_t i = 0; i < s->n_certs; i++)
        json_array_append_new(out, cert_json(s, s->certs[i]));
    ptc_state_release(s);
    ptc_call_reply(c, 200, out);
}

/* Lower-cases and checks the {domain} of the path; answers 400 if bad. */
static char *domain_param(ptc_call *c)
{
    char *d = ptc_xstrdup(c->params[0]);
    ptc_str_lower(d);
    const char *why = ptc_check_domain(d, true);
    if (why) {
        ptc_call_error(c, 400, "INVALID_DOMAIN", "the domain is not valid",
                       json_pack("{s:{s:s}}", "fields", "domain", why));
        free(d);
        return NULL;
    }
    return d;
}

void ptc_api_cert_get(ptc_call *c)
{
    char *domain = domain_param(c);
    if (domain == NULL)
        return;
    const ptc_state *s = ptc_api_state(c->api);
    const ptc_cert *cert = ptc_state_cert(s, domain);
    if (cert)
        ptc_call_reply(c, 200, cert_json(s, cert));
    else
        ptc_call_error(c, 404, "CERTIFICATE_NOT_FOUND", "no certificate for this domain",
                       json_pack("{s:s}", "domain", domain));
    ptc_state_release(s);
    free(domain);
}

typedef struct cert_arg {
    ptc_cert *cert;     /* put: the new certificate */
    const char *domain; /* delete */
    bool created;
} cert_arg;

static const ptc_state *build_cert_put(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    cert_arg *a = arg;
    const ptc_cert *old = ptc_state_cert(cur, a->cert->domain);
    (void)c;
    (void)rev;
    if (old && strcmp(old->fingerprint, a->cert->fingerprint) == 0 &&
        strcmp(old->key_pem, a->cert->key_pem) == 0 && strcmp(old->cert_pem, a->cert->cert_pem) == 0)
        return ptc_state_retain(cur);
    a->created = old == NULL;
    return ptc_state_put_cert(cur, ptc_cert_retain(a->cert));
}

static int commit_cert_put(ptc_call *c, const ptc_state *cur, const ptc_state *next, int64_t rev, void *arg)
{
    cert_arg *a = arg;
    (void)cur;
    (void)next;
    (void)rev;
    return ptc_store_cert_put(c->api->store, a->cert);
}

/* Reads {"certificate", "key"} strictly; answers 400 and returns false. */
static bool read_upload(ptc_call *c, json_t *body, const char **chain, const char **key)
{
    json_t *fields = json_object();
    const char *k;
    json_t *v;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "certificate") != 0 && strcmp(k, "key") != 0)
            json_object_set_new(fields, k, json_string("is not a known field"));
    }
    *chain = json_string_value(json_object_get(body, "certificate"));
    *key = json_string_value(json_object_get(body, "key"));
    if (*chain == NULL)
        json_object_set_new(fields, "certificate", json_string("is required: a PEM chain, leaf first"));
    if (*key == NULL)
        json_object_set_new(fields, "key", json_string("is required: the PEM private key"));
    if (json_object_size(fields) > 0) {
        ptc_call_error(c, 400, "INVALID_CERTIFICATE", "the upload is not valid",
                       json_pack("{s:o}", "fields", fields));
        return false;
    }
    json_decref(fields);
    return true;
}

void ptc_api_cert_put(ptc_call *c)
{
    char *domain = domain_param(c);
    json_t *body = NULL, *report = NULL;
    const char *chain, *key;
    ptc_tls_facts facts = {0};
    char why[256];
    cert_arg arg = {0};
    const ptc_state *next = NULL;

    if (domain == NULL || (body = ptc_call_json_body(c, false)) == NULL ||
        !read_upload(c, body, &chain, &key))
        goto fail;
    if (ptc_tls_inspect(chain, key, domain, &facts, why, sizeof(why)) != 0) {
        ptc_call_error(c, 400, "INVALID_CERTIFICATE", why, NULL);
        goto fail;
    }
    arg.cert = ptc_cert_new();
    arg.cert->domain = ptc_xstrdup(domain);
    arg.cert->cert_pem = ptc_xstrdup(chain);
    arg.cert->key_pem = ptc_xstrdup(key);
    arg.cert->source = ptc_xstrdup("uploaded");
    arg.cert->issuer = facts.issuer;
    arg.cert->subject = facts.subject;
    arg.cert->not_before = facts.not_before;
    arg.cert->not_after = facts.not_after;
    arg.cert->sans = facts.sans;
    arg.cert->n_sans = facts.n_sans;
    arg.cert->fingerprint = facts.fingerprint;
    arg.cert->updated_at = ptc_now_ms();
    memset(&facts, 0, sizeof(facts));

    ptc_change chg = {
        .action = "certificate.put",
        .domain = domain,
        .build = build_cert_put,
        .commit = commit_cert_put,
        .arg = &arg,
    };
    snprintf(chg.summary, sizeof(chg.summary), "certificate for %s", domain);
    switch (ptc_api_apply(c, &chg, &report, &next)) {
    case PTC_APPLY_DONE: {
        json_t *out = cert_json(next, ptc_state_cert(next, domain));
        json_object_set_new(report, "changed", json_true());
        json_object_set_new(out, "apply", report);
        report = NULL;
        ptc_call_reply(c, arg.created ? 201 : 200, out);
        break;
    }
    case PTC_APPLY_UNCHANGED: {
        json_t *out = cert_json(next, ptc_state_cert(next, domain));
        json_object_set_new(out, "apply", json_pack("{s:b}", "changed", 0));
        ptc_call_reply(c, 200, out);
        break;
    }
    case PTC_APPLY_ANSWERED:
        break;
    }
    goto out;
fail:
    ptc_api_audit_failure(c, "certificate.put", NULL, domain);
out:
    ptc_tls_facts_free(&facts);
    ptc_cert_release(arg.cert);
    ptc_state_release(next);
    json_decref(report);
    json_decref(body);
    free(domain);
}

static const ptc_state *build_cert_delete(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    cert_arg *a = arg;
    (void)rev;
    if (ptc_state_cert(cur, a->domain) == NULL) {
        ptc_call_error(c, 404, "CERTIFICATE_NOT_FOUND", "no certificate for this domain",
                       json_pack("{s:s}", "domain", a->domain));
        return NULL;
    }
    return ptc_state_delete_cert(cur, a->domain);
}

static int commit_cert_delete(ptc_call *c, const ptc_state *cur, const ptc_state *next, int64_t rev,
                              void *arg)
{
    cert_arg *a = arg;
    (void)cur;
    (void)next;
    (void)rev;
    return ptc_store_cert_delete(c->api->store, a->domain);
}

void ptc_api_cert_delete(ptc_call *c)
{
    char *domain = domain_param(c);
    json_t *report = NULL;
    const ptc_state *next = NULL;
    cert_arg arg = {.domain = domain};

    if (domain == NULL) {
        ptc_api_audit_failure(c, "certificate.delete", NULL, NULL);
        return;
    }
    ptc_change chg = {
        .action = "certificate.delete",
        .domain = domain,
        .build = build_cert_delete,
        .commit = commit_cert_delete,
        .arg = &arg,
    };
    snprintf(chg.summary, sizeof(chg.summary), "delete certificate for %s", domain);
    if (ptc_api_apply(c, &chg, &report, &next) == PTC_APPLY_DONE) {
        json_object_set_new(report, "changed", json_true());
        ptc_call_reply(c, 200, json_pack("{s:s, s:b, s:o}", "domain", domain, "deleted", 1, "apply", report));
        report = NULL;
    }
    json_decref(report);
    ptc_state_release(next);
    free(domain);
}
