/* Certificates from an ACME CA (DESIGN §2.1, §4): POST /proxies/{name}/ssl
 * issues one for the proxy's domain and switches the route to HTTPS, POST
 * /certificates/{domain}/renew renews one now, and the renewal scheduler
 * renews them by itself.  All three go through issue_and_apply():
 *
 *   1. one issuance per domain at a time (a second caller waits, then
 *      finds the fresh certificate);
 *   2. talk to the CA (portico's client, or certbot) WITHOUT the apply
 *      lock: issuance takes seconds and must not stall other changes;
 *   3. apply the new certificate (and the proxy's enable_ssl) through the
 *      normal pipeline, which takes the lock, lets the engine swap it in
 *      (the builtin engine live, nginx by a reload), commits and audits.
 *
 * On any failure nothing changes: no certificate is stored, the route
 * stays as it was, and the challenge is gone. */
#include "api/api_internal.h"

#include "acme/acme.h"
#include "acme/certbot.h"
#include "acme/renew.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ptc_api_ssl ptc_api_ssl;

struct ptc_api_ssl {
    pthread_mutex_t lock;
    pthread_cond_t done; /* an issuance ended */
    char **issuing;      /* domains with an issuance in progress */
    size_t n_issuing, cap;
    atomic_bool stopping; /* shutdown: issuances in progress give up */
    ptc_renewer *renewer;
};

/* What one issuance is for. */
typedef struct issue_req {
    const char *domain;
    const char *proxy;  /* POST /proxies/{name}/ssl: the proxy to switch to HTTPS; else NULL */
    const char *email;  /* NULL: the acme_email setting */
    bool force;         /* a new certificate even when the current one is not due */
    bool renew;         /* a renewal: the domain must hold an ACME or certbot certificate */
    const char *action; /* for the audit trail */
} issue_req;

/* ---- one issuance per domain ---------------------------------------- */

static void begin_domain(ptc_api_ssl *ssl, const char *domain)
{
    pthread_mutex_lock(&ssl->lock);
    for (;;) {
        bool busy = false;
        for (size_t i = 0; i < ssl->n_issuing && !busy; i++)
            busy = strcmp(ssl->issuing[i], domain) == 0;
        if (!busy)
            break;
        /* Bounded: the issuance in progress ends within acme_timeout_ms. */
        pthread_cond_wait(&ssl->done, &ssl->lock);
    }
    if (ssl->n_issuing == ssl->cap) {
        ssl->cap = ssl->cap ? ssl->cap * 2 : 8;
        ssl->issuing = ptc_xrealloc(ssl->issuing, ssl->cap * sizeof(char *));
    }
    ssl->issuing[ssl->n_issuing++] = ptc_xstrdup(domain);
    pthread_mutex_unlock(&ssl->lock);
}

static void end_domain(ptc_api_ssl *ssl, const char *domain)
{
    pthread_mutex_lock(&ssl->lock);
    for (size_t i = 0; i < ssl->n_issuing; i++) {
        if (strcmp(ssl->issuing[i], domain) == 0) {
            free(ssl->issuing[i]);
            ssl->issuing[i] = ssl->issuing[--ssl->n_issuing];
            break;
        }
    }
    pthread_cond_broadcast(&ssl->done);
    pthread_mutex_unlock(&ssl->lock);
}

/* ---- talking to the CA ---------------------------------------------- */

static int engine_set(void *arg, const char *token, const char *key_authorization)
{
    ptc_engine *e = arg;
    return e->ops->set_challenge(e, token, key_authorization);
}

static void engine_clear(void *arg, const char *token)
{
    ptc_engine *e = arg;
    e->ops->clear_challenge(e, token);
}

static int fail_early(ptc_acme_failure *f, int rc, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail_early(ptc_acme_failure *f, int rc, const char *stage, const char *fmt, ...)
{
    va_list ap;
    f->stage = stage;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    f->details = json_pack("{s:s}", "stage", stage);
    return rc;
}

/* Gets a certificate for domain from the CA with the client the settings
 * name.  renewing: a certificate exists (certbot must not keep its own). */
static int issue(ptc_api *api, const char *domain, const char *email, bool renewing, ptc_cert **out,
                 ptc_acme_failure *f)
{
    const ptc_settings *s = api->settings;
    const char *client = ptc_settings_get(s, PTC_SET_ACME_CLIENT);
    unsigned timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_ACME_TIMEOUT_MS);
    char *account = NULL;
    int rc;

    memset(f, 0, sizeof(*f));
    if (strcmp(client, "certbot") == 0) {
        /* certbot answers HTTP-01 by writing files under acme_webroot; the
         * builtin engine serves challenges from memory, not that folder. */
        if (strcmp(api->engine->ops->name, "builtin") == 0)
            return fail_early(
                f, -EOPNOTSUPP, "certbot",
                "acme_client = certbot needs an engine that serves acme_webroot (nginx); the %s engine "
                "answers challenges only for acme_client = builtin",
                api->engine->ops->name);
        ptc_certbot_params p = {
            .bin = ptc_settings_get(s, PTC_SET_CERTBOT_BIN),
            .directory_url = ptc_settings_get(s, PTC_SET_ACME_DIRECTORY),
            .ca_bundle = ptc_settings_get(s, PTC_SET_ACME_CA_BUNDLE),
            .email = email,
            .webroot = ptc_settings_get(s, PTC_SET_ACME_WEBROOT),
            .config_dir = ptc_settings_get(s, PTC_SET_CERTBOT_CONFIG_DIR),
            .work_dir = ptc_settings_get(s, PTC_SET_CERTBOT_WORK_DIR),
            .logs_dir = ptc_settings_get(s, PTC_SET_CERTBOT_LOGS_DIR),
            .key_type = ptc_settings_get(s, PTC_SET_ACME_KEY_TYPE),
            .force_renewal = renewing,
            .timeout_ms = timeout_ms,
        };
        return ptc_certbot_issue(&p, domain, out, f);
    }
    if (api->engine->ops->set_challenge == NULL || api->engine->ops->clear_challenge == NULL)
        return fail_early(f, -EOPNOTSUPP, "challenge", "the %s engine cannot answer HTTP-01 challenges",
                          api->engine->ops->name);
    if ((rc = ptc_acme_account_key(api->store, &account)) != 0)
        return fail_early(f, rc, "account", "the ACME account key cannot be read or stored: %s",
                          strerror(-rc));
    ptc_acme_params p = {
        .directory_url = ptc_settings_get(s, PTC_SET_ACME_DIRECTORY),
        .ca_bundle = ptc_settings_get(s, PTC_SET_ACME_CA_BUNDLE),
        .email = email,
        .account_key_pem = account,
        .key_type = ptc_settings_get(s, PTC_SET_ACME_KEY_TYPE),
        .timeout_ms = timeout_ms,
        .cancel = &api->ssl->stopping,
    };
    ptc_acme_responder r = {engine_set, engine_clear, api->engine};
    rc = ptc_acme_issue(&p, domain, &r, out, f);
    OPENSSL_cleanse(account, strlen(account));
    free(account);
    return rc;
}

/* ---- answers --------------------------------------------------------- */

/* Seed 000's SSLCertificate (domain, status, expiry, issuer, issued_at)
 * with the rest of the certificate's API form. */
static json_t *ssl_json(const ptc_cert *cert, bool issued)
{
    json_t *j = ptc_cert_to_api(cert);
    char t[32];
    json_object_set_new(j, "status", json_string(cert->not_after > ptc_now_ms() ? "active" : "expired"));
    ptc_time_format(cert->not_after, t, sizeof(t));
    json_object_set_new(j, "expiry", json_string(t));
    ptc_time_format(cert->not_before, t, sizeof(t));
    json_object_set_new(j, "issued_at", json_string(t));
    if (ptc_renew_renewable(cert)) {
        ptc_time_format(ptc_renew_cert_due_at(cert), t, sizeof(t));
        json_object_set_new(j, "renew_at", json_string(t));
    }
    json_object_set_new(j, "issued", json_boolean(issued));
    return j;
}

/* HTTP-01 can prove control of one host name: not an IP address, not a
 * wildcard (that needs DNS-01), not a single label no public CA issues
 * for.  NULL when domain is fine, else why not. */
static const char *http01_problem(const char *domain)
{
    if (ptc_is_ip_literal(domain))
        return "an IP address: HTTP-01 issues for host names only";
    if (strncmp(domain, "*.", 2) == 0)
        return "a wildcard: that needs DNS-01, which portico does not do yet";
    if (strchr(domain, '.') == NULL)
        return "a single-label name: no ACME CA issues for it";
    return ptc_check_domain(domain, false);
}

static bool domain_ok_or_answer(ptc_call *c, const char *domain)
{
    const char *why = http01_problem(domain);
    if (why == NULL)
        return true;
    ptc_call_error(c, 400, "INVALID_DOMAIN", "no certificate can be issued for this domain",
                   json_pack("{s:s, s:{s:s}}", "domain", domain, "fields", "domain", why));
    return false;
}

/* ---- the apply ------------------------------------------------------- */

typedef struct ssl_change {
    const issue_req *req;
    ptc_change *chg;     /* build() says whether the commit makes a revision */
    ptc_cert *cert;      /* the new certificate, or NULL to only switch the proxy to HTTPS */
    const ptc_cert *old; /* build(): what it replaces (retained), for undoing a half commit */
    bool proxy_changed;  /* build(): the proxy gets enable_ssl */
} ssl_change;

static const ptc_state *build_ssl(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    ssl_change *a = arg;
    const issue_req *req = a->req;
    ptc_state *next = NULL;

    a->proxy_changed = false;
    ptc_cert_release(a->old);
    a->old = NULL;
    if (req->proxy) {
        const ptc_proxy *p = ptc_state_proxy(cur, req->proxy);
        /* The proxy may have gone or moved while the CA was at work. */
        if (p == NULL) {
            ptc_call_error(c, 404, "PROXY_NOT_FOUND", "no proxy has this name",
                           json_pack("{s:s}", "name", req->proxy));
            return NULL;
        }
        if (strcmp(p->domain, req->domain) != 0) {
            ptc_call_error(c, 409, "CONFLICT",
                           "the proxy's domain changed while the certificate was issued; retry",
                           json_pack("{s:s, s:s}", "domain", p->domain, "certificate_domain", req->domain));
            return NULL;
        }
        if (!p->enable_ssl) {
            ptc_proxy *np = ptc_proxy_clone(p);
            np->enable_ssl = true;
            np->updated_at = ptc_now_ms();
            np->revision = rev;
            next = ptc_state_put_proxy(cur, np);
            a->proxy_changed = true;
        }
    }
    /* Switching to HTTPS with the certificate found earlier: it may have
     * been deleted since. */
    if (a->cert == NULL && ptc_state_cert_for(cur, req->domain) == NULL) {
        ptc_state_release(next);
        ptc_call_error(c, 409, "CONFLICT", "the certificate was deleted meanwhile; retry",
                       json_pack("{s:s}", "domain", req->domain));
        return NULL;
    }
    /* Only a route change is a revision; a certificate alone is not (as
     * for uploads). */
    a->chg->commits_revision = a->proxy_changed;
    if (a->cert) {
        const ptc_cert *old = ptc_state_cert(cur, req->domain);
        a->old = old ? ptc_cert_retain(old) : NULL;
        ptc_state *with = ptc_state_put_cert(next ? next : cur, ptc_cert_retain(a->cert));
        ptc_state_release(next);
        next = with;
    }
    return next ? next : ptc_state_retain(cur);
}

static int commit_ssl(ptc_call *c, const ptc_state *cur, const ptc_state *next, int64_t rev, void *arg)
{
    ssl_change *a = arg;
    int rc = 0;
    if (a->cert && (rc = ptc_store_cert_put(c->api->store, a->cert)) != 0)
        return rc;
    if (a->proxy_changed) {
        ptc_revision meta = {
            .number = rev,
            .ts = ptc_now_ms(),
            .actor = c->actor,
            .action = a->req->action,
            .correlation_id = c->correlation_id,
        };
        char summary[160];
        snprintf(summary, sizeof(summary), "ssl %s", a->req->proxy);
        meta.summary = summary;
        rc = ptc_store_commit(c->api->store, cur, next, &meta);
        /* The store has no transaction spanning both writes: put the old
         * certificate back, so that the store keeps the state before. */
        if (rc != 0 && a->cert) {
            int undo = a->old ? ptc_store_cert_put(c->api->store, a->old)
                              : ptc_store_cert_delete(c->api->store, a->req->domain);
            if (undo != 0)
                ptc_log_error(
                    "the certificate could not be taken back after a failed commit; restart repairs it",
                    PTC_LS("domain", a->req->domain));
        }
    }
    return rc;
}

/* Applies a (the certificate and/or the proxy switch); answers the call. */
static void apply(ptc_call *c, ssl_change *a, bool issued)
{
    json_t *report = NULL;
    const ptc_state *next = NULL;
    const issue_req *req = a->req;
    ptc_change chg = {
        .action = req->action,
        .droplet = req->proxy,
        .domain = req->domain,
        .build = build_ssl,
        .commit = commit_ssl,
        .arg = a,
    };
    a->chg = &chg;
    snprintf(chg.summary, sizeof(chg.summary), "%s %s", issued ? "certificate issued for" : "https for",
             req->domain);
    ptc_apply_status st = ptc_api_apply(c, &chg, &report, &next);
    switch (st) {
    case PTC_APPLY_DONE:
    case PTC_APPLY_UNCHANGED: {
        /* build() found the certificate in next (or brought a->cert). */
        const ptc_cert *cert = a->cert ? a->cert : ptc_state_cert_for(next, req->domain);
        json_t *out = ssl_json(cert, issued);
        if (req->proxy)
            json_object_set_new(out, "proxy", json_string(req->proxy));
        if (report == NULL)
            report = json_object();
        json_object_set_new(report, "changed", json_boolean(st == PTC_APPLY_DONE));
        json_object_set_new(out, "apply", report);
        report = NULL;
        ptc_call_reply(c, 200, out);
        break;
    }
    case PTC_APPLY_ANSWERED:
        break;
    }
    ptc_cert_release(a->old);
    a->old = NULL;
    json_decref(report);
    ptc_state_release(next);
}

/* The whole flow (see the top of this file).  Answers the call. */
static void issue_and_apply(ptc_call *c, const issue_req *req)
{
    ptc_api *api = c->api;
    const ptc_state *cur;
    const ptc_cert *existing;
    ssl_change change = {.req = req};
    ptc_acme_failure f = {0};
    const char *email = req->email ? req->email : ptc_settings_get(api->settings, PTC_SET_ACME_EMAIL);
    bool have;
    int rc;

    begin_domain(api->ssl, req->domain);
    cur = ptc_api_state(api);
    existing = ptc_state_cert_for(cur, req->domain);
    if (req->proxy && ptc_state_proxy(cur, req->proxy) == NULL) {
        ptc_call_error(c, 404, "PROXY_NOT_FOUND", "no proxy has this name",
                       json_pack("{s:s}", "name", req->proxy));
        goto fail;
    }
    if (req->renew) {
        existing = ptc_state_cert(cur, req->domain);
        if (existing == NULL) {
            ptc_call_error(c, 404, "CERTIFICATE_NOT_FOUND", "no certificate for this domain",
                           json_pack("{s:s}", "domain", req->domain));
            goto fail;
        }
        if (!ptc_renew_renewable(existing)) {
            ptc_call_error(c, 400, "INVALID_CERTIFICATE",
                           "this certificate was uploaded: renew it by uploading a new one",
                           json_pack("{s:s, s:s}", "domain", req->domain, "source", existing->source));
            goto fail;
        }
    }
    /* A valid certificate that is not due yet is kept unless asked. */
    if (existing && !req->force && existing->not_after > ptc_now_ms() &&
        ptc_now_ms() < ptc_renew_cert_due_at(existing)) {
        ptc_state_release(cur);
        cur = NULL;
        apply(c, &change, false);
        goto out;
    }
    have = existing != NULL;
    ptc_state_release(cur);
    cur = NULL;

    rc = issue(api, req->domain, email, have, &change.cert, &f);
    if (rc != 0) {
        json_t *d = f.details ? json_incref(f.details) : json_object();
        json_object_set_new(d, "domain", json_string(req->domain));
        json_object_set_new(d, "client", json_string(ptc_settings_get(api->settings, PTC_SET_ACME_CLIENT)));
        char msg[600];
        snprintf(msg, sizeof(msg), "the certificate could not be issued: %s", f.message);
        ptc_call_error(c, 500, "SSL_ISSUANCE_FAILED", msg, d);
        goto fail;
    }
    apply(c, &change, true);
    goto out;
fail:
    ptc_api_audit_failure(c, req->action, req->proxy, req->domain);
out:
    ptc_acme_failure_clear(&f);
    ptc_cert_release(change.cert);
    ptc_state_release(cur);
    end_domain(api->ssl, req->domain);
}

/* ---- handlers -------------------------------------------------------- */

/* Reads {"email"?, "force_renew"?} strictly (unknown fields refused);
 * answers 400 INVALID_CONFIG and returns false. */
static bool read_body(ptc_call *c, json_t *body, bool allow_force, const char **email, bool *force)
{
    json_t *fields = json_object(), *v;
    const char *k;
    *email = NULL;
    *force = false;
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, "email") == 0) {
            const char *why = json_is_string(v) ? ptc_check_email(json_string_value(v)) : "must be a string";
            if (why)
                json_object_set_new(fields, k, json_string(why));
            else
                *email = json_string_value(v);
        } else if (allow_force && strcmp(k, "force_renew") == 0) {
            if (json_is_boolean(v))
                *force = json_is_true(v);
            else
                json_object_set_new(fields, k, json_string("must be true or false"));
        } else {
            json_object_set_new(fields, k, json_string("is not a known field"));
        }
    }
    if (json_object_size(fields) > 0) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the request is not valid",
                       json_pack("{s:o}", "fields", fields));
        return false;
    }
    json_decref(fields);
    return true;
}

void ptc_api_proxy_ssl(ptc_call *c)
{
    const char *name = c->params[0];
    json_t *body = NULL;
    const ptc_state *s = NULL;
    char *domain = NULL;
    const char *email;
    bool force;

    if ((body = ptc_call_json_body(c, true)) == NULL || !read_body(c, body, true, &email, &force))
        goto fail;
    if (!ptc_valid_name(name)) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the proxy name is not valid",
                       json_pack("{s:{s:s}}", "fields", "name", "must match ^[a-z0-9][a-z0-9_-]{0,62}$"));
        goto fail;
    }
    s = ptc_api_state(c->api);
    const ptc_proxy *p = ptc_state_proxy(s, name);
    if (p == NULL) {
        ptc_call_error(c, 404, "PROXY_NOT_FOUND", "no proxy has this name", json_pack("{s:s}", "name", name));
        goto fail;
    }
    domain = ptc_xstrdup(p->domain);
    ptc_state_release(s);
    s = NULL;
    if (!domain_ok_or_answer(c, domain))
        goto fail;
    issue_req req = {
        .domain = domain,
        .proxy = name,
        .email = email,
        .force = force,
        .action = "proxy.ssl",
    };
    issue_and_apply(c, &req);
    goto out;
fail:
    ptc_api_audit_failure(c, "proxy.ssl", ptc_valid_name(name) ? name : NULL, domain);
out:
    ptc_state_release(s);
    free(domain);
    json_decref(body);
}

void ptc_api_cert_renew(ptc_call *c)
{
    char *domain = ptc_xstrdup(c->params[0]);
    json_t *body = NULL;
    const char *email;
    bool force;

    ptc_str_lower(domain);
    if ((body = ptc_call_json_body(c, true)) == NULL || !read_body(c, body, false, &email, &force) ||
        !domain_ok_or_answer(c, domain)) {
        ptc_api_audit_failure(c, "certificate.renew", NULL, ptc_check_domain(domain, true) ? NULL : domain);
        goto out;
    }
    issue_req req = {
        .domain = domain,
        .email = email,
        .force = true,
        .renew = true,
        .action = "certificate.renew",
    };
    issue_and_apply(c, &req);
out:
    json_decref(body);
    free(domain);
}

/* ---- the scheduler's side -------------------------------------------- */

static const ptc_state *sched_state(void *arg)
{
    return ptc_api_state(arg);
}

/* A renewal by the scheduler: the same flow as the API's renew call, with
 * a call of its own (actor "scheduler") so that it is audited alike. */
static int sched_renew(void *arg, const char *domain, char *err, size_t errlen)
{
    ptc_call c;
    int rc = 0;
    memset(&c, 0, sizeof(c));
    c.api = arg;
    c.method = "POST";
    c.path = "/certificates/{domain}/renew";
    ptc_random_hex(c.correlation_id, 16);
    snprintf(c.actor, sizeof(c.actor), "scheduler");
    ptc_log_set_correlation_id(c.correlation_id);
    issue_req req = {
        .domain = domain,
        .force = true,
        .renew = true,
        .action = "certificate.renew",
    };
    issue_and_apply(&c, &req);
    if (c.status != 200) {
        json_t *e = json_object_get(c.reply, "error");
        snprintf(err, errlen, "%s: %s", json_string_value(json_object_get(e, "code")),
                 json_string_value(json_object_get(e, "message")));
        rc = -EIO;
    } else {
        ptc_log_info("certificate renewed", PTC_LS("domain", domain),
                     PTC_LS("not_after", json_string_value(json_object_get(c.reply, "not_after"))));
    }
    json_decref(c.reply);
    ptc_log_set_correlation_id(NULL);
    return rc;
}

int ptc_api_ssl_start(ptc_api *api)
{
    ptc_api_ssl *ssl = ptc_xcalloc(1, sizeof(*ssl));
    pthread_mutex_init(&ssl->lock, NULL);
    pthread_cond_init(&ssl->done, NULL);
    atomic_init(&ssl->stopping, false);
    api->ssl = ssl;
    ptc_renewer_ops ops = {.state = sched_state, .renew = sched_renew, .arg = api};
    if ((ssl->renewer = ptc_renewer_start(&ops)) == NULL)
        return -EAGAIN;
    return 0;
}

void ptc_api_ssl_cancel(ptc_api *api)
{
    if (api->ssl)
        atomic_store(&api->ssl->stopping, true);
}

void ptc_api_ssl_stop(ptc_api *api)
{
    ptc_api_ssl *ssl = api->ssl;
    if (ssl == NULL)
        return;
    atomic_store(&ssl->stopping, true);
    ptc_renewer_stop(ssl->renewer);
    for (size_t i = 0; i < ssl->n_issuing; i++)
        free(ssl->issuing[i]);
    free(ssl->issuing);
    pthread_cond_destroy(&ssl->done);
    pthread_mutex_destroy(&ssl->lock);
    free(ssl);
    api->ssl = NULL;
}

void ptc_api_ssl_changed(ptc_api *api)
{
    if (api->ssl)
        ptc_renewer_kick(api->ssl->renewer);
}

json_t *ptc_api_ssl_status(ptc_api *api, bool *failing)
{
    *failing = false;
    if (api->ssl == NULL || api->ssl->renewer == NULL)
        return json_object();
    return ptc_renewer_status(api->ssl->renewer, failing);
}
