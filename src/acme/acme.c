/* The ACME client on libcurl and OpenSSL 3 (see acme.h). */
#include "acme/acme.h"

#include "acme/csr.h"
#include "acme/jose.h"
#include "acme/msg.h"
#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "tls/inspect.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define EXCHANGE_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 10000
#define HEADERS_MAX (64 * 1024)
#define NONCE_MAX 256
/* Pebble refuses 5% of nonces by default; ten refusals in a row is
 * something else. */
#define BADNONCE_RETRIES 10
/* Polling without Retry-After: 250 ms, doubling, at most 2 s. */
#define POLL_FIRST_MS 250
#define POLL_MAX_MS 2000
#define ACCOUNT_KEY_KV "acme.account_key"
#define PROBLEM_TYPE_PREFIX "urn:ietf:params:acme:error:"

/* One HTTP exchange's answer. */
typedef struct exchange {
    long status;
    ptc_buf body;
    size_t header_bytes;
    bool too_large;
    char nonce[NONCE_MAX + 1];
    char location[PTC_ACME_URL_MAX + 1];
    char content_type[128];
    int64_t retry_after_ms; /* -1: none given */
} exchange;

typedef struct client {
    const ptc_acme_params *p;
    const char *domain;
    ptc_acme_failure *f;
    CURL *curl;
    EVP_PKEY *account;
    char *thumbprint;
    char *kid;
    char nonce[NONCE_MAX + 1]; /* "" when none is in hand */
    ptc_acme_directory dir;
    int64_t deadline; /* monotonic ms */
    char user_agent[64];
} client;

void ptc_acme_failure_clear(ptc_acme_failure *f)
{
    json_decref(f->details);
    memset(f, 0, sizeof(*f));
}

/* Records the failure (the first one wins: later steps such as clearing
 * challenges must not hide the cause) and returns rc. */
static int failure(client *cl, int rc, const char *stage, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int failure(client *cl, int rc, const char *stage, json_t *details, const char *fmt, ...)
{
    ptc_acme_failure *f = cl->f;
    va_list ap;
    if (f->stage != NULL) {
        json_decref(details);
        return rc;
    }
    f->stage = stage;
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    f->details = details ? details : json_object();
    json_object_set_new(f->details, "stage", json_string(stage));
    ptc_log_warn("acme issuance failed", PTC_LS("domain", cl->domain), PTC_LS("stage", stage),
                 PTC_LS("reason", f->message));
    return rc;
}

/* ---- transport ------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
    exchange *x = arg;
    size_t len = size * n;
    if (x->body.len + len > PTC_ACME_BODY_MAX) {
        x->too_large = true;
        return 0;
    }
    ptc_buf_append(&x->body, data, len);
    return len;
}

/* Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP-date. */
static int64_t parse_retry_after(const char *v, size_t len)
{
    char buf[64];
    long long secs;
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, v, len);
    buf[len] = '\0';
    if (ptc_parse_int(buf, 0, 86400, &secs) == 0)
        return secs * 1000;
    time_t when = curl_getdate(buf, NULL);
    if (when < 0)
        return -1;
    int64_t ms = (int64_t)when * 1000 - ptc_now_ms();
    return ms < 0 ? 0 : ms;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
    exchange *x = arg;
    size_t len = size * n;
    const char *colon;
    size_t nlen, vlen;
    const char *v;

    x->header_bytes += len;
    if (x->header_bytes > HEADERS_MAX)
        return 0;
    /* A new status line (after a 100 Continue): forget what came before. */
    if (len >= 5 && strncmp(data, "HTTP/", 5) == 0) {
        x->nonce[0] = x->location[0] = x->content_type[0] = '\0';
        x->retry_after_ms = -1;
        return len;
    }
    colon = memchr(data, ':', len);
    if (colon == NULL)
        return len;
    nlen = (size_t)(colon - data);
    v = colon + 1;
    vlen = len - nlen - 1;
    while (vlen > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        vlen--;
    }
    while (vlen > 0 &&
           (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
        vlen--;
    if (nlen == 12 && strncasecmp(data, "Replay-Nonce", 12) == 0) {
        /* A malformed nonce is dropped: the next request fetches a fresh
         * one instead of sending the CA's garbage back. */
        if (ptc_str_is_base64url(v, vlen, NONCE_MAX)) {
            memcpy(x->nonce, v, vlen);
            x->nonce[vlen] = '\0';
        }
    } else if (nlen == 8 && strncasecmp(data, "Location", 8) == 0) {
        if (ptc_acme_url_ok(v, vlen)) {
            memcpy(x->location, v, vlen);
            x->location[vlen] = '\0';
        }
    } else if (nlen == 12 && strncasecmp(data, "Content-Type", 12) == 0) {
        size_t k = vlen < sizeof(x->content_type) - 1 ? vlen : sizeof(x->content_type) - 1;
        memcpy(x->content_type, v, k);
        x->content_type[k] = '\0';
    } else if (nlen == 11 && strncasecmp(data, "Retry-After", 11) == 0) {
        x->retry_after_ms = parse_retry_after(v, vlen);
    }
    return len;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    const client *cl = arg;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return cl->p->cancel && atomic_load(cl->p->cancel) ? 1 : 0;
}

static void exchange_free(exchange *x)
{
    ptc_buf_free(&x->body);
    memset(x, 0, sizeof(*x));
}

static bool cancelled(const client *cl)
{
    return cl->p->cancel && atomic_load(cl->p->cancel);
}

/* One request.  method is "GET", "HEAD" or "POST" (with a JWS body).
 * Returns 0 with x filled (any status), or a -errno after recording the
 * failure under stage. */
static int http_do(client *cl, const char *stage, const char *method, const char *url, const char *jws,
                   const char *accept, exchange *x)
{
    CURL *c = cl->curl;
    struct curl_slist *h = NULL;
    int64_t left = cl->deadline - ptc_mono_ms();
    char *accept_h = NULL;
    CURLcode cr;
    int rc = 0;

    memset(x, 0, sizeof(*x));
    x->retry_after_ms = -1;
    if (cancelled(cl))
        return failure(cl, -ECANCELED, stage, NULL, "the issuance was cancelled");
    if (left <= 0)
        return failure(cl, -ETIMEDOUT, stage, NULL, "the issuance took longer than %u ms", cl->p->timeout_ms);
    /* reset keeps the connection cache: consecutive requests to the CA
     * reuse one TLS connection. */
    curl_easy_reset(c);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)(left < EXCHANGE_TIMEOUT_MS ? left : EXCHANGE_TIMEOUT_MS));
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_USERAGENT, cl->user_agent);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, cl);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    if (cl->p->ca_bundle && cl->p->ca_bundle[0])
        curl_easy_setopt(c, CURLOPT_CAINFO, cl->p->ca_bundle);
    if (accept) {
        accept_h = ptc_xasprintf("Accept: %s", accept);
        h = curl_slist_append(h, accept_h);
    }
    if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "POST") == 0) {
        h = curl_slist_append(h, "Content-Type: application/jose+json");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, jws);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(jws));
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    cr = curl_easy_perform(c);
    if (x->too_large) {
        rc = failure(cl, -EPROTO, stage, json_pack("{s:s}", "url", url),
                     "the CA's answer is larger than %d bytes", PTC_ACME_BODY_MAX);
    } else if (x->header_bytes > HEADERS_MAX) {
        rc = failure(cl, -EPROTO, stage, json_pack("{s:s}", "url", url), "the CA's headers exceed %d bytes",
                     HEADERS_MAX);
    } else if (cr == CURLE_ABORTED_BY_CALLBACK) {
        rc = failure(cl, -ECANCELED, stage, NULL, "the issuance was cancelled");
    } else if (cr == CURLE_OPERATION_TIMEDOUT) {
        rc = failure(cl, -ETIMEDOUT, stage, json_pack("{s:s}", "url", url),
                     "the CA did not answer in time (%s)", curl_easy_strerror(cr));
    } else if (cr != CURLE_OK) {
        rc = failure(cl, -EIO, stage, json_pack("{s:s, s:s}", "url", url, "reason", curl_easy_strerror(cr)),
                     "cannot reach the CA: %s", curl_easy_strerror(cr));
    } else {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &x->status);
        ptc_log_debug("acme exchange", PTC_LS("method", method), PTC_LS("url", url),
                      PTC_LI("status", x->status));
    }
    curl_slist_free_all(h);
    free(accept_h);
    return rc;
}

/* An error answer: the CA's problem document in the details. */
static int refused(client *cl, const char *stage, const char *url, const exchange *x, const char *what)
{
    json_t *problem = ptc_acme_parse_problem(ptc_buf_cstr(&x->body), x->body.len);
    json_t *d = json_pack("{s:s, s:i}", "url", url, "http_status", (int)x->status);
    const char *detail = problem ? json_string_value(json_object_get(problem, "detail")) : NULL;
    if (problem)
        json_object_set_new(d, "problem", problem);
    return failure(cl, -EPROTO, stage, d, "%s: the CA answered %ld%s%.300s", what, x->status,
                   detail ? ": " : "", detail ? detail : "");
}

/* The answer's body did not parse: say so, naming the stage. */
static int malformed(client *cl, const char *stage, const char *url, const char *why)
{
    return failure(cl, -EPROTO, stage, json_pack("{s:s, s:s}", "url", url, "reason", why),
                   "the CA's answer is not valid: %s", why);
}

static int fetch_nonce(client *cl, const char *stage)
{
    exchange x;
    int rc = http_do(cl, stage, "HEAD", cl->dir.new_nonce, NULL, NULL, &x);
    if (rc == 0 && (x.status != 200 && x.status != 204))
        rc = refused(cl, stage, cl->dir.new_nonce, &x, "newNonce");
    else if (rc == 0 && x.nonce[0] == '\0')
        rc = malformed(cl, stage, cl->dir.new_nonce, "no valid Replay-Nonce header");
    if (rc == 0)
        snprintf(cl->nonce, sizeof(cl->nonce), "%s", x.nonce);
    exchange_free(&x);
    return rc;
}

static bool is_problem(const exchange *x, const char *type)
{
    json_t *p;
    bool yes;
    if (x->status < 400)
        return false;
    p = ptc_acme_parse_problem(ptc_buf_cstr(&x->body), x->body.len);
    yes = p && strcmp(json_string_value(json_object_get(p, "type")), type) == 0;
    json_decref(p);
    return yes;
}

/* A signed POST (payload "" is a POST-as-GET).  Every answer's nonce is
 * kept for the next request; a badNonce refusal is retried with the fresh
 * nonce that came with it (RFC 8555 §6.5). */
static int post(client *cl, const char *stage, const char *url, const char *payload, const char *accept,
                exchange *x)
{
    for (int attempt = 0;; attempt++) {
        char *jws;
        int rc;
        if (cl->nonce[0] == '\0' && (rc = fetch_nonce(cl, stage)) != 0)
            return rc;
        jws = ptc_jose_sign(cl->account, cl->kid, cl->nonce, url, payload);
        cl->nonce[0] = '\0'; /* a nonce is good for one request */
        if (jws == NULL)
            return failure(cl, -EINVAL, stage, NULL, "cannot sign the request with the account key");
        rc = http_do(cl, stage, "POST", url, jws, accept, x);
        free(jws);
        if (rc != 0)
            return rc;
        if (x->nonce[0])
            snprintf(cl->nonce, sizeof(cl->nonce), "%s", x->nonce);
        if (attempt < BADNONCE_RETRIES && is_problem(x, PROBLEM_TYPE_PREFIX "badNonce")) {
            ptc_log_debug("acme badNonce; retrying", PTC_LS("url", url), PTC_LI("attempt", attempt + 1));
            exchange_free(x);
            continue;
        }
        return 0;
    }
}

/* Waits before the next poll: the CA's Retry-After when it gave one, else
 * the back-off in *interval.  Fails when that would pass the deadline. */
static int poll_wait(client *cl, const char *stage, const exchange *x, int64_t *interval)
{
    int64_t wait = x->retry_after_ms >= 0 ? x->retry_after_ms : *interval;
    int64_t until;
    if (wait < 100)
        wait = 100; /* a Retry-After of 0 must not turn into a busy loop */
    if (x->retry_after_ms < 0)
        *interval = *interval * 2 > POLL_MAX_MS ? POLL_MAX_MS : *interval * 2;
    until = ptc_mono_ms() + wait;
    if (until > cl->deadline)
        return failure(cl, -ETIMEDOUT, stage, NULL,
                       "the CA was still working when the issuance ran out of time (%u ms)",
                       cl->p->timeout_ms);
    while (ptc_mono_ms() < until) {
        if (cancelled(cl))
            return failure(cl, -ECANCELED, stage, NULL, "the issuance was cancelled");
        int64_t step = until - ptc_mono_ms();
        struct timespec ts = {0, (long)((step > 100 ? 100 : step) * 1000000)};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* ---- the protocol --------------------------------------------------- */

static int get_directory(client *cl)
{
    exchange x;
    char why[256];
    int rc = http_do(cl, "directory", "GET", cl->p->directory_url, NULL, "application/json", &x);
    if (rc == 0 && x.status != 200)
        rc = refused(cl, "directory", cl->p->directory_url, &x, "directory");
    else if (rc == 0 &&
             ptc_acme_parse_directory(ptc_buf_cstr(&x.body), x.body.len, &cl->dir, why, sizeof(why)) != 0)
        rc = malformed(cl, "directory", cl->p->directory_url, why);
    exchange_free(&x);
    return rc;
}

/* newAccount with the stored key: the CA answers 201 the first time and
 * 200 with the same account afterwards (RFC 8555 §7.3.1), so the key is
 * all portico keeps. */
static int get_account(client *cl)
{
    exchange x;
    char why[256];
    ptc_acme_status st;
    json_t *req = json_pack("{s:b}", "termsOfServiceAgreed", 1);
    char *payload;
    int rc;

    if (cl->p->email && cl->p->email[0]) {
        char *mailto = ptc_xasprintf("mailto:%s", cl->p->email);
        json_object_set_new(req, "contact", json_pack("[s]", mailto));
        free(mailto);
    }
    payload = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    rc = post(cl, "account", cl->dir.new_account, payload, NULL, &x);
    free(payload);
    if (rc != 0)
        goto out;
    if (x.status != 200 && x.status != 201) {
        rc = refused(cl, "account", cl->dir.new_account, &x, "newAccount");
    } else if (x.location[0] == '\0') {
        rc = malformed(cl, "account", cl->dir.new_account, "no valid Location header (the account URL)");
    } else if (ptc_acme_parse_account(ptc_buf_cstr(&x.body), x.body.len, &st, why, sizeof(why)) != 0) {
        rc = malformed(cl, "account", cl->dir.new_account, why);
    } else if (st != PTC_ACME_VALID) {
        rc = failure(cl, -EPROTO, "account", json_pack("{s:s}", "account", x.location),
                     "the ACME account is %s", ptc_acme_status_name(st));
    } else {
        cl->kid = ptc_xstrdup(x.location);
    }
out:
    exchange_free(&x);
    return rc;
}

static int new_order(client *cl, char **order_url, ptc_acme_order *order)
{
    exchange x;
    char why[256];
    json_t *req = json_pack("{s:[{s:s, s:s}]}", "identifiers", "type", "dns", "value", cl->domain);
    char *payload = json_dumps(req, JSON_COMPACT);
    int rc;

    json_decref(req);
    rc = post(cl, "order", cl->dir.new_order, payload, NULL, &x);
    free(payload);
    if (rc != 0)
        goto out;
    if (x.status != 201 && x.status != 200)
        rc = refused(cl, "order", cl->dir.new_order, &x, "newOrder");
    else if (x.location[0] == '\0')
        rc = malformed(cl, "order", cl->dir.new_order, "no valid Location header (the order URL)");
    else if (ptc_acme_parse_order(ptc_buf_cstr(&x.body), x.body.len, order, why, sizeof(why)) != 0)
        rc = malformed(cl, "order", cl->dir.new_order, why);
    else
        *order_url = ptc_xstrdup(x.location);
out:
    exchange_free(&x);
    return rc;
}

/* POST-as-GET of an order; x keeps the answer's Retry-After. */
static int read_order(client *cl, const char *stage, const char *url, ptc_acme_order *o, exchange *x)
{
    char why[256];
    int rc = post(cl, stage, url, "", NULL, x);
    if (rc == 0 && x->status != 200)
        rc = refused(cl, stage, url, x, "reading the order");
    else if (rc == 0 && ptc_acme_parse_order(ptc_buf_cstr(&x->body), x->body.len, o, why, sizeof(why)) != 0)
        rc = malformed(cl, stage, url, why);
    return rc;
}

static int read_authz(client *cl, const char *url, ptc_acme_authz *a, exchange *x)
{
    char why[256];
    int rc = post(cl, "authorization", url, "", NULL, x);
    if (rc == 0 && x->status != 200)
        rc = refused(cl, "authorization", url, x, "reading the authorization");
    else if (rc == 0 && ptc_acme_parse_authz(ptc_buf_cstr(&x->body), x->body.len, a, why, sizeof(why)) != 0)
        rc = malformed(cl, "authorization", url, why);
    return rc;
}

/* Why an authorization is not valid, from its challenges' errors. */
static int authz_failed(client *cl, const char *url, const ptc_acme_authz *a)
{
    json_t *d = json_pack("{s:s, s:s}", "url", url, "authorization_status", ptc_acme_status_name(a->status));
    const char *detail = NULL;
    for (size_t i = 0; i < a->n_challenges; i++) {
        if (a->challenges[i].error == NULL)
            continue;
        json_object_set(d, "problem", a->challenges[i].error);
        json_object_set_new(d, "challenge", json_string(a->challenges[i].type));
        detail = json_string_value(json_object_get(a->challenges[i].error, "detail"));
        break;
    }
    return failure(cl, -EPROTO, "challenge", d, "the CA could not validate %s: authorization %s%s%.300s",
                   cl->domain, ptc_acme_status_name(a->status), detail ? ": " : "", detail ? detail : "");
}

/* The tokens portico has set, to clear them afterwards whatever happens. */
typedef struct tokens {
    char *items[PTC_ACME_AUTHZ_MAX];
    size_t n;
} tokens;

/* Brings one authorization to valid: nothing to do when the CA already
 * holds a valid one for this account (Pebble reuses half of them), else
 * serve the http-01 key authorization, tell the CA, and poll. */
static int authorize(client *cl, const ptc_acme_responder *r, const char *url, tokens *set)
{
    ptc_acme_authz a = {0};
    exchange x = {0};
    ptc_acme_challenge ch = {0};
    const ptc_acme_challenge *http01 = NULL;
    char why[256], *key_auth = NULL;
    int64_t interval = POLL_FIRST_MS;
    int rc;

    if ((rc = read_authz(cl, url, &a, &x)) != 0)
        goto out;
    if (strcasecmp(a.identifier, cl->domain) != 0 || a.wildcard) {
        rc = malformed(cl, "authorization", url, "the authorization is for another identifier");
        goto out;
    }
    if (a.status == PTC_ACME_VALID)
        goto out;
    if (a.status != PTC_ACME_PENDING) {
        rc = authz_failed(cl, url, &a);
        goto out;
    }
    for (size_t i = 0; i < a.n_challenges && http01 == NULL; i++)
        if (strcmp(a.challenges[i].type, "http-01") == 0)
            http01 = &a.challenges[i];
    if (http01 == NULL) {
        rc = failure(cl, -EPROTO, "challenge", json_pack("{s:s}", "url", url),
                     "the CA offers no http-01 challenge for %s", cl->domain);
        goto out;
    }
    key_auth = ptc_xasprintf("%s.%s", http01->token, cl->thumbprint);
    if ((rc = r->set(r->arg, http01->token, key_auth)) != 0) {
        rc = failure(cl, rc, "challenge", NULL, "the engine cannot serve the HTTP-01 challenge: %s",
                     strerror(-rc));
        goto out;
    }
    set->items[set->n++] = ptc_xstrdup(http01->token);
    if (http01->status == PTC_ACME_PENDING) {
        /* "{}" (not "") asks the CA to validate now (RFC 8555 §7.5.1). */
        exchange_free(&x);
        if ((rc = post(cl, "challenge", http01->url, "{}", NULL, &x)) != 0)
            goto out;
        if (x.status != 200) {
            rc = refused(cl, "challenge", http01->url, &x, "responding to the challenge");
            goto out;
        }
        if (ptc_acme_parse_challenge(ptc_buf_cstr(&x.body), x.body.len, &ch, why, sizeof(why)) != 0) {
            rc = malformed(cl, "challenge", http01->url, why);
            goto out;
        }
    }
    for (;;) {
        if ((rc = poll_wait(cl, "authorization", &x, &interval)) != 0)
            goto out;
        ptc_acme_authz_free(&a);
        exchange_free(&x);
        if ((rc = read_authz(cl, url, &a, &x)) != 0)
            goto out;
        if (a.status == PTC_ACME_VALID)
            break;
        if (a.status != PTC_ACME_PENDING) {
            rc = authz_failed(cl, url, &a);
            goto out;
        }
    }
out:
    free(key_auth);
    ptc_acme_challenge_free(&ch);
    ptc_acme_authz_free(&a);
    exchange_free(&x);
    return rc;
}

static int order_failed(client *cl, const char *url, const ptc_acme_order *o, const char *stage)
{
    json_t *d = json_pack("{s:s, s:s}", "url", url, "order_status", ptc_acme_status_name(o->status));
    const char *detail = o->error ? json_string_value(json_object_get(o->error, "detail")) : NULL;
    if (o->error)
        json_object_set(d, "problem", o->error);
    return failure(cl, -EPROTO, stage, d, "the order for %s is %s%s%.300s", cl->domain,
                   ptc_acme_status_name(o->status), detail ? ": " : "", detail ? detail : "");
}

/* Polls the order while it is in one of the statuses of wait_mask; the
 * first wait is retry_after_ms when the last answer gave one (else -1). */
static int poll_order(client *cl, const char *stage, const char *url, unsigned wait_mask,
                      int64_t retry_after_ms, ptc_acme_order *o)
{
    exchange x = {0};
    int64_t interval = POLL_FIRST_MS;
    int rc = 0;
    x.retry_after_ms = retry_after_ms;
    while (wait_mask & (1u << o->status)) {
        if ((rc = poll_wait(cl, stage, &x, &interval)) != 0)
            break;
        ptc_acme_order_free(o);
        exchange_free(&x);
        if ((rc = read_order(cl, stage, url, o, &x)) != 0)
            break;
    }
    exchange_free(&x);
    return rc;
}

static int finalize(client *cl, const char *order_url, ptc_acme_order *o, ptc_csr *csr)
{
    exchange x;
    char why[256];
    char *csr64, *payload;
    int rc;

    if (ptc_csr_create(cl->domain, cl->p->key_type, csr) != 0)
        return failure(cl, -EINVAL, "finalize", NULL, "cannot make a %s key and CSR", cl->p->key_type);
    csr64 = ptc_jose_b64url(csr->der, csr->der_len);
    payload = ptc_xasprintf("{\"csr\":\"%s\"}", csr64);
    free(csr64);
    rc = post(cl, "finalize", o->finalize, payload, NULL, &x);
    free(payload);
    if (rc != 0)
        goto out;
    if (x.status != 200) {
        rc = refused(cl, "finalize", o->finalize, &x, "finalize");
        goto out;
    }
    ptc_acme_order_free(o);
    if (ptc_acme_parse_order(ptc_buf_cstr(&x.body), x.body.len, o, why, sizeof(why)) != 0) {
        rc = malformed(cl, "finalize", order_url, why);
        goto out;
    }
    rc = poll_order(cl, "finalize", order_url, 1u << PTC_ACME_PROCESSING | 1u << PTC_ACME_READY,
                    x.retry_after_ms, o);
    if (rc == 0 && o->status != PTC_ACME_VALID)
        rc = order_failed(cl, order_url, o, "finalize");
out:
    exchange_free(&x);
    return rc;
}

static int download(client *cl, const char *url, char **chain)
{
    exchange x;
    int rc = post(cl, "certificate", url, "", "application/pem-certificate-chain", &x);
    if (rc == 0 && x.status != 200)
        rc = refused(cl, "certificate", url, &x, "downloading the certificate");
    else if (rc == 0 && (x.body.len == 0 || strlen(ptc_buf_cstr(&x.body)) != x.body.len))
        rc = malformed(cl, "certificate", url, "the certificate chain is not PEM text");
    if (rc == 0)
        *chain = ptc_buf_detach(&x.body);
    exchange_free(&x);
    return rc;
}

int ptc_acme_issue(const ptc_acme_params *params, const char *domain, const ptc_acme_responder *r,
                   ptc_cert **out, ptc_acme_failure *f)
{
    client cl = {.p = params, .domain = domain, .f = f};
    ptc_acme_order order = {0};
    ptc_csr csr = {0};
    tokens set = {.n = 0};
    char *order_url = NULL, *chain = NULL;
    char why[256];
    int rc;

    *out = NULL;
    memset(f, 0, sizeof(*f));
    cl.deadline = ptc_mono_ms() + params->timeout_ms;
    snprintf(cl.user_agent, sizeof(cl.user_agent), "portico/%s", PTC_VERSION);
    if ((cl.account = ptc_jose_key_from_pem(params->account_key_pem)) == NULL ||
        (cl.thumbprint = ptc_jose_thumbprint(cl.account)) == NULL) {
        rc = failure(&cl, -EINVAL, "account", NULL, "the ACME account key is not a P-256 private key");
        goto out;
    }
    if ((cl.curl = curl_easy_init()) == NULL) {
        rc = failure(&cl, -ENOMEM, "directory", NULL, "cannot start an HTTP client");
        goto out;
    }
    ptc_log_info("acme issuance started", PTC_LS("domain", domain),
                 PTC_LS("directory", params->directory_url));
    if ((rc = get_directory(&cl)) != 0 || (rc = get_account(&cl)) != 0 ||
        (rc = new_order(&cl, &order_url, &order)) != 0)
        goto out;
    if (order.status == PTC_ACME_INVALID) {
        rc = order_failed(&cl, order_url, &order, "order");
        goto out;
    }
    if (order.status == PTC_ACME_PENDING) {
        for (size_t i = 0; i < order.n_authorizations; i++)
            if ((rc = authorize(&cl, r, order.authorizations[i], &set)) != 0)
                goto out;
        /* Every authorization is valid: the order turns ready. */
        if ((rc = poll_order(&cl, "order", order_url, 1u << PTC_ACME_PENDING, -1, &order)) != 0)
            goto out;
    }
    if (order.status == PTC_ACME_READY) {
        if ((rc = finalize(&cl, order_url, &order, &csr)) != 0)
            goto out;
    } else if (order.status == PTC_ACME_PROCESSING || order.status == PTC_ACME_VALID) {
        /* An order finalized before (by another portico node?) carries a
         * key this call does not have. */
        rc = failure(&cl, -EPROTO, "order", json_pack("{s:s}", "url", order_url),
                     "the CA answered with an order that is already %s", ptc_acme_status_name(order.status));
        goto out;
    } else {
        rc = order_failed(&cl, order_url, &order, "order");
        goto out;
    }
    if ((rc = download(&cl, order.certificate, &chain)) != 0)
        goto out;
    if ((*out = ptc_acme_cert_make(domain, chain, csr.key_pem, "acme", why, sizeof(why))) == NULL) {
        rc = failure(&cl, -EPROTO, "check", json_pack("{s:s}", "reason", why),
                     "the issued certificate does not pass the checks: %s", why);
        goto out;
    }
    ptc_log_info("acme certificate issued", PTC_LS("domain", domain), PTC_LS("issuer", (*out)->issuer),
                 PTC_LS("fingerprint", (*out)->fingerprint));
    rc = 0;
out:
    for (size_t i = 0; i < set.n; i++) {
        r->clear(r->arg, set.items[i]);
        free(set.items[i]);
    }
    free(chain);
    free(order_url);
    ptc_csr_free(&csr);
    ptc_acme_order_free(&order);
    ptc_acme_directory_free(&cl.dir);
    free(cl.kid);
    free(cl.thumbprint);
    EVP_PKEY_free(cl.account);
    if (cl.curl)
        curl_easy_cleanup(cl.curl);
    return rc;
}

/* ---- shared with certbot, and the account key ------------------------ */

ptc_cert *ptc_acme_cert_make(const char *domain, const char *chain_pem, const char *key_pem,
                             const char *source, char *err, size_t errlen)
{
    ptc_tls_facts facts;
    ptc_cert *c;
    if (ptc_tls_inspect(chain_pem, key_pem, domain, &facts, err, errlen) != 0)
        return NULL;
    c = ptc_cert_new();
    c->domain = ptc_xstrdup(domain);
    c->cert_pem = ptc_xstrdup(chain_pem);
    c->key_pem = ptc_xstrdup(key_pem);
    c->source = ptc_xstrdup(source);
    c->issuer = facts.issuer;
    c->subject = facts.subject;
    c->not_before = facts.not_before;
    c->not_after = facts.not_after;
    c->sans = facts.sans;
    c->n_sans = facts.n_sans;
    c->fingerprint = facts.fingerprint;
    c->updated_at = ptc_now_ms();
    return c;
}

/* Two first issuances at once must not make two account keys, the second
 * overwriting the first in the store. */
static pthread_mutex_t account_key_lock = PTHREAD_MUTEX_INITIALIZER;

int ptc_acme_account_key(ptc_store *st, char **pem)
{
    EVP_PKEY *k = NULL;
    int rc;

    *pem = NULL;
    pthread_mutex_lock(&account_key_lock);
    rc = ptc_store_kv_get(st, ACCOUNT_KEY_KV, pem);
    if (rc == 0) {
        /* A stored value that is not a P-256 key would fail every issuance
         * forever; say which and let the operator decide (never replace an
         * account key silently). */
        if ((k = ptc_jose_key_from_pem(*pem)) == NULL)
            ptc_log_error("the stored ACME account key is not a P-256 private key",
                          PTC_LS("kv", ACCOUNT_KEY_KV));
        goto out;
    }
    if (rc != -ENOENT)
        goto out;
    if ((k = ptc_jose_key_generate()) == NULL || (*pem = ptc_jose_key_to_pem(k)) == NULL) {
        rc = -ENOMEM;
        goto out;
    }
    if ((rc = ptc_store_kv_set(st, ACCOUNT_KEY_KV, *pem)) != 0)
        goto out;
    ptc_log_info("acme account key created", PTC_LS("kv", ACCOUNT_KEY_KV));
out:
    if (rc != 0 && *pem) {
        OPENSSL_cleanse(*pem, strlen(*pem));
        free(*pem);
        *pem = NULL;
    }
    EVP_PKEY_free(k);
    pthread_mutex_unlock(&account_key_lock);
    return rc;
}
