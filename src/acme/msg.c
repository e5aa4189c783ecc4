/* Strict parsing of an ACME CA's answers (see msg.h). */
#include "acme/msg.h"

#include "core/mem.h"
#include "core/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DETAIL_MAX 1024
#define TYPE_MAX 256
#define SUBPROBLEMS_MAX 10

static const char *const status_names[] = {"pending", "ready",   "processing",  "valid",
                                           "invalid", "expired", "deactivated", "revoked"};

#define BIT(s) (1u << (s))
/* The statuses RFC 8555 §7.1.6 allows for each kind of object. */
#define ACCOUNT_STATUSES (BIT(PTC_ACME_VALID) | BIT(PTC_ACME_DEACTIVATED) | BIT(PTC_ACME_REVOKED))
#define ORDER_STATUSES                                                                                       \
    (BIT(PTC_ACME_PENDING) | BIT(PTC_ACME_READY) | BIT(PTC_ACME_PROCESSING) | BIT(PTC_ACME_VALID) |          \
     BIT(PTC_ACME_INVALID))
#define AUTHZ_STATUSES                                                                                       \
    (BIT(PTC_ACME_PENDING) | BIT(PTC_ACME_VALID) | BIT(PTC_ACME_INVALID) | BIT(PTC_ACME_DEACTIVATED) |       \
     BIT(PTC_ACME_EXPIRED) | BIT(PTC_ACME_REVOKED))
#define CHALLENGE_STATUSES                                                                                   \
    (BIT(PTC_ACME_PENDING) | BIT(PTC_ACME_PROCESSING) | BIT(PTC_ACME_VALID) | BIT(PTC_ACME_INVALID))

const char *ptc_acme_status_name(ptc_acme_status s)
{
    return (unsigned)s < sizeof(status_names) / sizeof(status_names[0]) ? status_names[s] : "unknown";
}

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

/* The body as a JSON object; NULL with the reason in err. */
static json_t *load_object(const char *body, size_t len, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *j;
    if (len > PTC_ACME_BODY_MAX) {
        fail(err, errlen, "the answer is larger than %d bytes", PTC_ACME_BODY_MAX);
        return NULL;
    }
    j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        fail(err, errlen, "the answer is not JSON (%.100s)", jerr.text);
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        fail(err, errlen, "the answer is not a JSON object");
        return NULL;
    }
    return j;
}

/* An https URL of printable ASCII without spaces: it goes back to libcurl
 * and, in error details, to the API's callers. */
bool ptc_acme_url_ok(const char *s, size_t len)
{
    if (len < 9 || len > PTC_ACME_URL_MAX || strncmp(s, "https://", 8) != 0)
        return false;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

static int get_url(const json_t *o, const char *key, bool required, char **out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, key);
    *out = NULL;
    if (v == NULL && !required)
        return 0;
    if (!json_is_string(v))
        return fail(err, errlen, "\"%s\" is %s", key, v ? "not a string" : "missing");
    if (!ptc_acme_url_ok(json_string_value(v), json_string_length(v)))
        return fail(err, errlen, "\"%s\" is not an https URL of at most %d printable characters", key,
                    PTC_ACME_URL_MAX);
    *out = ptc_xstrdup(json_string_value(v));
    return 0;
}

static int get_status(const json_t *o, unsigned allowed, ptc_acme_status *out, char *err, size_t errlen)
{
    const json_t *v = json_object_get(o, "status");
    if (!json_is_string(v))
        return fail(err, errlen, "\"status\" is %s", v ? "not a string" : "missing");
    for (unsigned i = 0; i < sizeof(status_names) / sizeof(status_names[0]); i++) {
        if ((allowed & BIT(i)) && strcmp(json_string_value(v), status_names[i]) == 0) {
            *out = (ptc_acme_status)i;
            return 0;
        }
    }
    return fail(err, errlen, "\"status\" is not a status this object can have");
}

/* A string member cut at max bytes, or NULL when absent or not a string. */
static json_t *short_string(const json_t *o, const char *key, size_t max)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_string(v))
        return NULL;
    size_t n = json_string_length(v);
    if (n <= max)
        return json_stringn(json_string_value(v), n);
    /* Cut on a UTF-8 character boundary, so the result is still a string
     * jansson accepts. */
    const unsigned char *s = (const unsigned char *)json_string_value(v);
    while (max > 0 && (s[max] & 0xc0) == 0x80)
        max--;
    return json_stringn((const char *)s, max);
}

json_t *ptc_acme_problem_sanitize(const json_t *doc)
{
    json_t *out, *v;
    const json_t *subs, *sub;
    size_t i;

    if (!json_is_object(doc) || !json_is_string(json_object_get(doc, "type")) ||
        json_string_length(json_object_get(doc, "type")) > TYPE_MAX)
        return NULL;
    out = json_object();
    json_object_set_new(out, "type", short_string(doc, "type", TYPE_MAX));
    if ((v = short_string(doc, "detail", DETAIL_MAX)))
        json_object_set_new(out, "detail", v);
    v = json_object_get(doc, "status");
    if (json_is_integer(v) && json_integer_value(v) >= 100 && json_integer_value(v) <= 599)
        json_object_set_new(out, "status", json_integer(json_integer_value(v)));
    subs = json_object_get(doc, "subproblems");
    if (json_is_array(subs) && json_array_size(subs) > 0) {
        json_t *list = json_array();
        json_array_foreach(subs, i, sub)
        {
            if (i == SUBPROBLEMS_MAX)
                break;
            json_t *t = short_string(sub, "type", TYPE_MAX);
            if (t == NULL)
                continue;
            json_t *s = json_pack("{s:o}", "type", t);
            if ((v = short_string(sub, "detail", DETAIL_MAX)))
                json_object_set_new(s, "detail", v);
            const json_t *id = json_object_get(sub, "identifier");
            json_t *idt = short_string(id, "type", 16), *idv = short_string(id, "value", 253);
            if (idt && idv)
                json_object_set_new(s, "identifier", json_pack("{s:o, s:o}", "type", idt, "value", idv));
            else {
                json_decref(idt);
                json_decref(idv);
            }
            json_array_append_new(list, s);
        }
        json_object_set_new(out, "subproblems", list);
    }
    return out;
}

json_t *ptc_acme_parse_problem(const char *body, size_t len)
{
    char err[8];
    json_t *j = load_object(body, len, err, sizeof(err));
    json_t *out = ptc_acme_problem_sanitize(j);
    json_decref(j);
    return out;
}

int ptc_acme_parse_directory(const char *body, size_t len, ptc_acme_directory *out, char *err, size_t errlen)
{
    json_t *j = load_object(body, len, err, errlen);
    int rc = -EINVAL;
    memset(out, 0, sizeof(*out));
    if (j == NULL)
        return -EINVAL;
    if (get_url(j, "newNonce", true, &out->new_nonce, err, errlen) != 0 ||
        get_url(j, "newAccount", true, &out->new_account, err, errlen) != 0 ||
        get_url(j, "newOrder", true, &out->new_order, err, errlen) != 0)
        goto out;
    const json_t *meta = json_object_get(j, "meta");
    if (meta && !json_is_object(meta)) {
        fail(err, errlen, "\"meta\" is not an object");
        goto out;
    }
    /* termsOfService is informative only: a malformed one is ignored
     * rather than refused, it never reaches a request. */
    if (meta && get_url(meta, "termsOfService", false, &out->terms_of_service, err, errlen) != 0)
        out->terms_of_service = NULL;
    rc = 0;
out:
    if (rc != 0)
        ptc_acme_directory_free(out);
    json_decref(j);
    return rc;
}

int ptc_acme_parse_account(const char *body, size_t len, ptc_acme_status *status, char *err, size_t errlen)
{
    json_t *j = load_object(body, len, err, errlen);
    int rc;
    if (j == NULL)
        return -EINVAL;
    rc = get_status(j, ACCOUNT_STATUSES, status, err, errlen);
    json_decref(j);
    return rc;
}

int ptc_acme_parse_order(const char *body, size_t len, ptc_acme_order *out, char *err, size_t errlen)
{
    json_t *j = load_object(body, len, err, errlen);
    const json_t *authz, *v;
    size_t i;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (j == NULL)
        return -EINVAL;
    if (get_status(j, ORDER_STATUSES, &out->status, err, errlen) != 0)
        goto out;
    authz = json_object_get(j, "authorizations");
    if (!json_is_array(authz) || json_array_size(authz) == 0 || json_array_size(authz) > PTC_ACME_AUTHZ_MAX) {
        fail(err, errlen, "\"authorizations\" is not an array of 1 to %d URLs", PTC_ACME_AUTHZ_MAX);
        goto out;
    }
    out->authorizations = ptc_xcalloc(json_array_size(authz), sizeof(char *));
    json_array_foreach(authz, i, v)
    {
        if (!json_is_string(v) || !ptc_acme_url_ok(json_string_value(v), json_string_length(v))) {
            fail(err, errlen, "\"authorizations[%zu]\" is not an https URL", i);
            goto out;
        }
        out->authorizations[out->n_authorizations++] = ptc_xstrdup(json_string_value(v));
    }
    if (get_url(j, "finalize", true, &out->finalize, err, errlen) != 0)
        goto out;
    /* RFC 8555 §7.1.3: the certificate URL is there once the order is valid. */
    if (get_url(j, "certificate", out->status == PTC_ACME_VALID, &out->certificate, err, errlen) != 0)
        goto out;
    out->error = ptc_acme_problem_sanitize(json_object_get(j, "error"));
    rc = 0;
out:
    if (rc != 0)
        ptc_acme_order_free(out);
    json_decref(j);
    return rc;
}

/* One challenge object (in an authorization or on its own). */
static int read_challenge(const json_t *o, ptc_acme_challenge *c, char *err, size_t errlen)
{
    const json_t *type = json_object_get(o, "type"), *token = json_object_get(o, "token");
    memset(c, 0, sizeof(*c));
    if (!json_is_object(o))
        return fail(err, errlen, "a challenge is not an object");
    if (!json_is_string(type) || json_string_length(type) == 0 || json_string_length(type) > 32)
        return fail(err, errlen, "a challenge's \"type\" is not a short string");
    c->type = ptc_xstrdup(json_string_value(type));
    if (get_status(o, CHALLENGE_STATUSES, &c->status, err, errlen) != 0 ||
        get_url(o, "url", true, &c->url, err, errlen) != 0)
        return -EINVAL;
    if (token) {
        if (!json_is_string(token) ||
            !ptc_str_is_base64url(json_string_value(token), json_string_length(token), PTC_ACME_TOKEN_MAX))
            return fail(err, errlen, "a challenge's \"token\" is not base64url of at most %d characters",
                        PTC_ACME_TOKEN_MAX);
        c->token = ptc_xstrdup(json_string_value(token));
    } else if (strcmp(c->type, "http-01") == 0) {
        return fail(err, errlen, "an http-01 challenge has no \"token\"");
    }
    c->error = ptc_acme_problem_sanitize(json_object_get(o, "error"));
    return 0;
}

int ptc_acme_parse_challenge(const char *body, size_t len, ptc_acme_challenge *out, char *err, size_t errlen)
{
    json_t *j = load_object(body, len, err, errlen);
    int rc;
    memset(out, 0, sizeof(*out));
    if (j == NULL)
        return -EINVAL;
    rc = read_challenge(j, out, err, errlen);
    if (rc != 0)
        ptc_acme_challenge_free(out);
    json_decref(j);
    return rc;
}

int ptc_acme_parse_authz(const char *body, size_t len, ptc_acme_authz *out, char *err, size_t errlen)
{
    json_t *j = load_object(body, len, err, errlen);
    const json_t *id, *chs, *v;
    size_t i;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (j == NULL)
        return -EINVAL;
    if (get_status(j, AUTHZ_STATUSES, &out->status, err, errlen) != 0)
        goto out;
    id = json_object_get(j, "identifier");
    if (!json_is_object(id) || !json_is_string(json_object_get(id, "type")) ||
        strcmp(json_string_value(json_object_get(id, "type")), "dns") != 0 ||
        !json_is_string(json_object_get(id, "value")) ||
        json_string_length(json_object_get(id, "value")) == 0 ||
        json_string_length(json_object_get(id, "value")) > 253) {
        fail(err, errlen, "\"identifier\" is not a dns identifier");
        goto out;
    }
    out->identifier = ptc_xstrdup(json_string_value(json_object_get(id, "value")));
    v = json_object_get(j, "wildcard");
    if (v && !json_is_boolean(v)) {
        fail(err, errlen, "\"wildcard\" is not a boolean");
        goto out;
    }
    out->wildcard = json_is_true(v);
    chs = json_object_get(j, "challenges");
    if (!json_is_array(chs) || json_array_size(chs) > PTC_ACME_CHALLENGES_MAX) {
        fail(err, errlen, "\"challenges\" is not an array of at most %d challenges", PTC_ACME_CHALLENGES_MAX);
        goto out;
    }
    out->challenges = ptc_xcalloc(json_array_size(chs) + 1, sizeof(*out->challenges));
    json_array_foreach(chs, i, v)
    {
        if (read_challenge(v, &out->challenges[i], err, errlen) != 0) {
            out->n_challenges = i + 1; /* so that the partial one is freed */
            goto out;
        }
        out->n_challenges = i + 1;
    }
    rc = 0;
out:
    if (rc != 0)
        ptc_acme_authz_free(out);
    json_decref(j);
    return rc;
}

void ptc_acme_directory_free(ptc_acme_directory *d)
{
    free(d->new_nonce);
    free(d->new_account);
    free(d->new_order);
    free(d->terms_of_service);
    memset(d, 0, sizeof(*d));
}

void ptc_acme_order_free(ptc_acme_order *o)
{
    for (size_t i = 0; i < o->n_authorizations; i++)
        free(o->authorizations[i]);
    free(o->authorizations);
    free(o->finalize);
    free(o->certificate);
    json_decref(o->error);
    memset(o, 0, sizeof(*o));
}

void ptc_acme_challenge_free(ptc_acme_challenge *c)
{
    free(c->type);
    free(c->url);
    free(c->token);
    json_decref(c->error);
    memset(c, 0, sizeof(*c));
}

void ptc_acme_authz_free(ptc_acme_authz *a)
{
    for (size_t i = 0; i < a->n_challenges; i++)
        ptc_acme_challenge_free(&a->challenges[i]);
    free(a->challenges);
    free(a->identifier);
    memset(a, 0, sizeof(*a));
}
