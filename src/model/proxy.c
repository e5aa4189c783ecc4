/* Proxies: lifetime, the three JSON forms and strict request parsing (see
 * proxy.h). */
#include "model/proxy.h"

#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY_SIZE_LIMIT (1ULL << 50)

ptc_proxy *ptc_proxy_new(void)
{
    ptc_proxy *p = ptc_xcalloc(1, sizeof(*p));
    atomic_init(&p->refs, 1);
    return p;
}

ptc_proxy *ptc_proxy_retain(const ptc_proxy *p)
{
    ptc_proxy *m = (ptc_proxy *)p;
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void ptc_proxy_release(const ptc_proxy *p)
{
    ptc_proxy *m = (ptc_proxy *)p;
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    if (m->packed) {
        free(m);
        return;
    }
    free(m->name);
    free(m->domain);
    free(m->path_prefix);
    for (size_t i = 0; i < m->n_upstreams; i++)
        free(m->upstreams[i].host);
    free(m->upstreams);
    free(m->health_check.path);
    free(m);
}

_Static_assert(sizeof(ptc_proxy) % _Alignof(ptc_upstream) == 0, "upstreams follow a packed proxy");

/* Copies s (NULL stays NULL) to *at and moves *at past it. */
static char *pack_str(char **at, const char *s)
{
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = memcpy(*at, s, n);
    *at += n;
    return d;
}

static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

ptc_proxy *ptc_proxy_clone(const ptc_proxy *p)
{
    size_t bytes = sizeof(ptc_proxy) + p->n_upstreams * sizeof(ptc_upstream) + str_size(p->name) +
                   str_size(p->domain) + str_size(p->path_prefix) + str_size(p->health_check.path);
    for (size_t i = 0; i < p->n_upstreams; i++)
        bytes += str_size(p->upstreams[i].host);
    ptc_proxy *c = ptc_xmalloc(bytes);
    memcpy(c, p, sizeof(*c));
    atomic_init(&c->refs, 1);
    c->packed = true;
    c->upstreams = (ptc_upstream *)(c + 1);
    char *at = (char *)(c->upstreams + p->n_upstreams);
    for (size_t i = 0; i < p->n_upstreams; i++) {
        c->upstreams[i] = p->upstreams[i];
        c->upstreams[i].host = pack_str(&at, p->upstreams[i].host);
    }
    c->name = pack_str(&at, p->name);
    c->domain = pack_str(&at, p->domain);
    c->path_prefix = pack_str(&at, p->path_prefix);
    c->health_check.path = pack_str(&at, p->health_check.path);
    return c;
}

const char *ptc_proxy_source_name(ptc_proxy_source s)
{
    return s == PTC_SOURCE_REGISTRY ? "registry" : "api";
}

/* ---- request parsing ---------------------------------------------------- */

typedef struct parse_ctx {
    json_t *errors;
} parse_ctx;

static void field_error(parse_ctx *c, const char *field, const char *reason)
{
    if (json_object_get(c->errors, field) == NULL)
        json_object_set_new(c->errors, field, json_string(reason));
}

/* A string field: NULL when absent; an error when present but not a string
 * without NUL bytes. */
static const char *get_string(parse_ctx *c, const json_t *obj, const char *key, const char *field)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        field_error(c, field, "must be a string");
        return NULL;
    }
    return json_string_value(v);
}

static bool get_bool(parse_ctx *c, const json_t *obj, const char *key, bool def)
{
    const json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return def;
    if (!json_is_boolean(v)) {
        field_error(c, key, "must be true or false");
        return def;
    }
    return json_is_true(v);
}

static bool get_uint(parse_ctx *c, const json_t *obj, const char *key, const char *field,
                     unsigned long long min, unsigned long long max, unsigned long long *out)
{
    const json_t *v = json_object_get(obj, key);
    char msg[96];
    if (v == NULL)
        return false;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (unsigned long long)json_integer_value(v) < min ||
        (unsigned long long)json_integer_value(v) > max) {
        snprintf(msg, sizeof(msg), "must be an integer from %llu to %llu", min, max);
        field_error(c, field, msg);
        return false;
    }
    *out = (unsigned long long)json_integer_value(v);
    return true;
}

/* Rejects keys of obj outside allowed; prefix names nested fields. */
static void reject_unknown(parse_ctx *c, const json_t *obj, const char *const *allowed, const char *prefix)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        bool known = false;
        for (size_t i = 0; allowed[i]; i++)
            known = known || strcmp(key, allowed[i]) == 0;
        if (!known) {
            char field[160];
            snprintf(field, sizeof(field), "%s%.100s", prefix, key);
            field_error(c, field, "is not a known field");
        }
    }
}

static char *parse_upstream_host(parse_ctx *c, const char *host, const char *field)
{
    const char *why;
    char *h;
    size_t n;
    if (host == NULL)
        return NULL;
    n = strlen(host);
    /* "[::1]" is how people write IPv6 next to a port; keep the bare form. */
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        h = ptc_xstrndup(host + 1, n - 2);
        if (strchr(h, ':') == NULL || !ptc_is_ip_literal(h)) {
            free(h);
            field_error(c, field, "is not a valid IPv6 address");
            return NULL;
        }
        return h;
    }
    why = ptc_check_upstream_host(host);
    if (why) {
        char msg[128];
        snprintf(msg, sizeof(msg), "%s", why);
        field_error(c, field, msg);
        return NULL;
    }
    h = ptc_xstrdup(host);
    if (!ptc_is_ip_literal(h))
        ptc_str_lower(h);
    return h;
}

static void parse_upstreams(parse_ctx *c, const json_t *body, ptc_proxy *p)
{
    static const char *const allowed[] = {"host", "port", "weight", NULL};
    const json_t *list = json_object_get(body, "upstreams");
    bool single = json_object_get(body, "upstream_host") || json_object_get(body, "upstream_port");
    unsigned long long v;

    if (list && single) {
        field_error(c, "upstreams", "give either upstreams or upstream_host/upstream_port, not both");
        return;
    }
    if (list == NULL) {
        const char *host = get_string(c, body, "upstream_host", "upstream_host");
        bool host_bad = json_object_get(body, "upstream_host") && host == NULL;
        p->upstreams = ptc_xcalloc(1, sizeof(ptc_upstream));
        p->upstreams[0].weight = 1;
        p->upstreams[0].host =
            host_bad ? NULL : parse_upstream_host(c, host ? host : "localhost", "upstream_host");
        if (json_object_get(body, "upstream_port") == NULL)
            field_error(c, "upstream_port", "is required (or give upstreams)");
        else if (get_uint(c, body, "upstream_port", "upstream_port", 1, 65535, &v))
            p->upstreams[0].port = (unsigned)v;
        p->n_upstreams = 1;
        return;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 || json_array_size(list) > PTC_UPSTREAMS_MAX) {
        field_error(c, "upstreams", "must be an array of 1 to 64 upstreams");
        return;
    }
    p->n_upstreams = json_array_size(list);
    p->upstreams = ptc_xcalloc(p->n_upstreams, sizeof(ptc_upstream));
    for (size_t i = 0; i < p->n_upstreams; i++) {
        const json_t *u = json_array_get(list, i);
        char field[80], prefix[48];
        snprintf(prefix, sizeof(prefix), "upstreams[%zu].", i);
        if (!json_is_object(u)) {
            snprintf(field, sizeof(field), "upstreams[%zu]", i);
            field_error(c, field, "must be an object {host, port, weight}");
            continue;
        }
        reject_unknown(c, u, allowed, prefix);
        snprintf(field, sizeof(field), "upstreams[%zu].host", i);
        const char *host = get_string(c, u, "host", field);
        if (json_object_get(u, "host") == NULL)
            field_error(c, field, "is required");
        p->upstreams[i].host = parse_upstream_host(c, host, field);
        snprintf(field, sizeof(field), "upstreams[%zu].port", i);
        if (json_object_get(u, "port") == NULL)
            field_error(c, field, "is required");
        else if (get_uint(c, u, "port", field, 1, 65535, &v))
            p->upstreams[i].port = (unsigned)v;
        snprintf(field, sizeof(field), "upstreams[%zu].weight", i);
        p->upstreams[i].weight = get_uint(c, u, "weight", field, 1, 1000, &v) ? (unsigned)v : 1;
    }
}

static void parse_health_check(parse_ctx *c, const json_t *body, ptc_proxy *p, const ptc_proxy_defaults *defs)
{
    static const char *const allowed[] = {
        "path", "interval_ms", "timeout_ms", "healthy_threshold", "unhealthy_threshold", NULL};
    const json_t *hc = json_object_get(body, "health_check");
    ptc_health_check *h = &p->health_check;
    unsigned long long v;

    h->interval_ms = defs->health_check_interval_ms;
    h->timeout_ms = defs->health_check_timeout_ms;
    h->healthy_threshold = 2;
    h->unhealthy_threshold = 3;
    if (hc != NULL && !json_is_object(hc)) {
        field_error(c, "health_check", "must be an object");
        hc = NULL;
    }
    const char *path = hc ? get_string(c, hc, "path", "health_check.path") : NULL;
    if (hc) {
        reject_unknown(c, hc, allowed, "health_check.");
        if (get_uint(c, hc, "interval_ms", "health_check.interval_ms", 100, 86400000, &v))
            h->interval_ms = (unsigned)v;
        if (get_uint(c, hc, "timeout_ms", "health_check.timeout_ms", 10, 600000, &v))
            h->timeout_ms = (unsigned)v;
        if (get_uint(c, hc, "healthy_threshold", "health_check.healthy_threshold", 1, 100, &v))
            h->healthy_threshold = (unsigned)v;
        if (get_uint(c, hc, "unhealthy_threshold", "health_check.unhealthy_threshold", 1, 100, &v))
            h->unhealthy_threshold = (unsigned)v;
    }
    if (path == NULL)
        path = defs->health_check_path;
    const char *why = ptc_check_path(path);
    if (why)
        field_error(c, "health_check.path", why);
    else
        h->path = ptc_xstrdup(path);
}

static void parse_domain(parse_ctx *c, const json_t *body, ptc_proxy *p)
{
    const char *d = get_string(c, body, "domain", "domain");
    if (json_object_get(body, "domain") == NULL) {
        field_error(c, "domain", "is required");
        return;
    }
    if (d == NULL)
        return;
    char *lower = ptc_xstrdup(d);
    ptc_str_lower(lower);
    const char *why = ptc_check_domain(lower, true);
    if (why) {
        field_error(c, "domain", why);
        free(lower);
        return;
    }
    p->domain = lower;
}

static void parse_path_prefix(parse_ctx *c, const json_t *body, ptc_proxy *p)
{
    const char *s = get_string(c, body, "path_prefix", "path_prefix");
    if (s == NULL) {
        if (json_object_get(body, "path_prefix") == NULL)
            p->path_prefix = ptc_xstrdup("/");
        return;
    }
    const char *why = ptc_check_path(s);
    if (why) {
        field_error(c, "path_prefix", why);
        return;
    }
    size_t n = strlen(s);
    /* "/api/" and "/api" are one route: keep one spelling. */
    while (n > 1 && s[n - 1] == '/')
        n--;
    p->path_prefix = ptc_xstrndup(s, n);
}

ptc_proxy *ptc_proxy_from_request(const json_t *body, const char *name, const ptc_proxy_defaults *defs,
                                  json_t *errors)
{
    static const char *const allowed[] = {"domain",        "path_prefix", "strip_prefix",     "upstream_host",
                                          "upstream_port", "upstreams",   "require_healthy",  "enable_ssl",
                                          "health_check",  "websocket",   "security_headers", "dns",
                                          "max_body_size", NULL};
    parse_ctx c = {errors};
    ptc_proxy *p = ptc_proxy_new();
    unsigned long long v;

    if (!ptc_valid_name(name))
        field_error(&c, "name", "must match ^[a-z0-9][a-z0-9_-]{0,62}$");
    p->name = ptc_xstrdup(name);
    if (!json_is_object(body)) {
        field_error(&c, "body", "must be a JSON object");
        goto out;
    }
    reject_unknown(&c, body, allowed, "");
    parse_domain(&c, body, p);
    parse_path_prefix(&c, body, p);
    p->strip_prefix = get_bool(&c, body, "strip_prefix", false);
    parse_upstreams(&c, body, p);
    p->require_healthy = get_bool(&c, body, "require_healthy", true);
    p->enable_ssl = get_bool(&c, body, "enable_ssl", false);
    p->websocket = get_bool(&c, body, "websocket", true);
    p->security_headers = get_bool(&c, body, "security_headers", true);
    p->dns = get_bool(&c, body, "dns", false);
    if (get_uint(&c, body, "max_body_size", "max_body_size", 0, MAX_BODY_SIZE_LIMIT, &v))
        p->max_body_size = v;
    parse_health_check(&c, body, p, defs);
    p->source = PTC_SOURCE_API;
out:
    if (json_object_size(errors) > 0) {
        ptc_proxy_release(p);
        return NULL;
    }
    return p;
}

/* ---- stored and API forms ----------------------------------------------- */

static json_t *upstreams_json(const ptc_proxy *p)
{
    json_t *a = json_array();
    for (size_t i = 0; i < p->n_upstreams; i++)
        json_array_append_new(a, json_pack("{s:s, s:I, s:I}", "host", p->upstreams[i].host, "port",
                                           (json_int_t)p->upstreams[i].port, "weight",
                                           (json_int_t)p->upstreams[i].weight));
    return a;
}

static json_t *health_check_json(const ptc_health_check *h)
{
    return json_pack("{s:s, s:I, s:I, s:I, s:I}", "path", h->path, "interval_ms", (json_int_t)h->interval_ms,
                     "timeout_ms", (json_int_t)h->timeout_ms, "healthy_threshold",
                     (json_int_t)h->healthy_threshold, "unhealthy_threshold",
                     (json_int_t)h->unhealthy_threshold);
}

json_t *ptc_proxy_to_stored(const ptc_proxy *p)
{
    return json_pack("{s:s, s:s, s:s, s:b, s:o, s:b, s:b, s:b, s:b, s:b, s:I, s:o, s:s, s:I, s:I, s:I}",
                     "name", p->name, "domain", p->domain, "path_prefix", p->path_prefix, "strip_prefix",
                     p->strip_prefix, "upstreams", upstreams_json(p), "require_healthy", p->require_healthy,
                     "enable_ssl", p->enable_ssl, "websocket", p->websocket, "security_headers",
                     p->security_headers, "dns", p->dns, "max_body_size", (json_int_t)p->max_body_size,
                     "health_check", health_check_json(&p->health_check), "source",
                     ptc_proxy_source_name(p->source), "created_at", (json_int_t)p->created_at, "updated_at",
                     (json_int_t)p->updated_at, "revision", (json_int_t)p->revision);
}

ptc_proxy *ptc_proxy_from_stored(const json_t *j)
{
    const char *name = json_string_value(json_object_get(j, "name"));
    const char *source = json_string_value(json_object_get(j, "source"));
    json_t *req = NULL, *errors = json_object();
    ptc_proxy *p = NULL;
    ptc_proxy_defaults defs = {"/health", 1000, 5000};

    if (name == NULL || source == NULL)
        goto out;
    /* The stored spec is a valid request body plus bookkeeping: parse it
     * with the same rules, so that a hand-edited store cannot smuggle in
     * what the API would refuse. */
    req = json_deep_copy(j);
    json_object_del(req, "name");
    json_object_del(req, "source");
    json_object_del(req, "created_at");
    json_object_del(req, "updated_at");
    json_object_del(req, "revision");
    p = ptc_proxy_from_request(req, name, &defs, errors);
    if (p == NULL)
        goto out;
    p->source = strcmp(source, "registry") == 0 ? PTC_SOURCE_REGISTRY : PTC_SOURCE_API;
    p->created_at = json_integer_value(json_object_get(j, "created_at"));
    p->updated_at = json_integer_value(json_object_get(j, "updated_at"));
    p->revision = json_integer_value(json_object_get(j, "revision"));
    /* Loaded proxies stay for the life of the state: one block each. */
    ptc_proxy *packed = ptc_proxy_clone(p);
    ptc_proxy_release(p);
    p = packed;
out:
    json_decref(req);
    json_decref(errors);
    return p;
}

static void format_upstream_url(const ptc_upstream *u, char *out, size_t outlen)
{
    bool v6 = strchr(u->host, ':') != NULL;
    snprintf(out, outlen, "http://%s%s%s:%u", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
}

/* The writers of the API form: 10,000 proxies make 10 MB of JSON, so
 * no printf per field. */

/* ,"key": */
static void put_key(ptc_buf *b, const char *key)
{
    ptc_buf_append(b, ",\"", 2);
    ptc_buf_append_str(b, key);
    ptc_buf_append(b, "\":", 2);
}

/* ,"key":"value" with value escaped. */
static void put_str(ptc_buf *b, const char *key, const char *value)
{
    put_key(b, key);
    ptc_buf_append_json_str(b, value);
}

static void put_uint(ptc_buf *b, const char *key, uint64_t v)
{
    put_key(b, key);
    ptc_buf_append_u64(b, v);
}

static void put_bool(ptc_buf *b, const char *key, bool v)
{
    put_key(b, key);
    ptc_buf_append_str(b, v ? "true" : "false");
}

static void put_time(ptc_buf *b, const char *key, int64_t ms)
{
    char t[32];
    ptc_time_format(ms, t, sizeof(t));
    put_str(b, key, t);
}

void ptc_proxy_write_api(ptc_buf *b, const ptc_proxy *p, bool has_cert, const ptc_proxy_api_extras *x)
{
    const ptc_health_check *h = &p->health_check;
    char url[300];

    format_upstream_url(&p->upstreams[0], url, sizeof(url));
    ptc_buf_append_str(b, "{\"droplet_name\":");
    ptc_buf_append_json_str(b, p->name);
    put_str(b, "domain", p->domain);
    put_str(b, "path_prefix", p->path_prefix);
    put_bool(b, "strip_prefix", p->strip_prefix);
    put_str(b, "upstream_host", p->upstreams[0].host);
    put_uint(b, "upstream_port", p->upstreams[0].port);
    put_str(b, "upstream", url);
    ptc_buf_append_str(b, ",\"upstreams\":[");
    for (size_t i = 0; i < p->n_upstreams; i++) {
        ptc_buf_append_str(b, i ? ",{\"host\":" : "{\"host\":");
        ptc_buf_append_json_str(b, p->upstreams[i].host);
        put_uint(b, "port", p->upstreams[i].port);
        put_uint(b, "weight", p->upstreams[i].weight);
        if (x && x->upstream)
            x->upstream(b, p, i, x->arg);
        ptc_buf_append_str(b, "}");
    }
    ptc_buf_append_str(b, "]");
    put_bool(b, "require_healthy", p->require_healthy);
    put_bool(b, "enable_ssl", p->enable_ssl);
    put_bool(b, "ssl_enabled", p->enable_ssl && has_cert);
    put_bool(b, "websocket", p->websocket);
    put_bool(b, "security_headers", p->security_headers);
    put_bool(b, "dns", p->dns);
    put_uint(b, "max_body_size", p->max_body_size);
    ptc_buf_append_str(b, ",\"health_check\":{\"path\":");
    ptc_buf_append_json_str(b, h->path);
    put_uint(b, "interval_ms", h->interval_ms);
    put_uint(b, "timeout_ms", h->timeout_ms);
    put_uint(b, "healthy_threshold", h->healthy_threshold);
    put_uint(b, "unhealthy_threshold", h->unhealthy_threshold);
    ptc_buf_append_str(b, "},\"status\":\"active\"");
    put_str(b, "source", ptc_proxy_source_name(p->source));
    put_time(b, "created_at", p->created_at);
    put_time(b, "updated_at", p->updated_at);
    put_key(b, "revision");
    ptc_buf_append_i64(b, p->revision);
    if (x && x->proxy)
        x->proxy(b, p, x->arg);
    ptc_buf_append_str(b, "}");
}

bool ptc_proxy_spec_equal(const ptc_proxy *a, const ptc_proxy *b)
{
    const ptc_health_check *ha = &a->health_check, *hb = &b->health_check;
    if (strcmp(a->name, b->name) || strcmp(a->domain, b->domain) || strcmp(a->path_prefix, b->path_prefix) ||
        a->strip_prefix != b->strip_prefix || a->require_healthy != b->require_healthy ||
        a->enable_ssl != b->enable_ssl || a->websocket != b->websocket ||
        a->security_headers != b->security_headers || a->dns != b->dns ||
        a->max_body_size != b->max_body_size || a->n_upstreams != b->n_upstreams)
        return false;
    if (strcmp(ha->path, hb->path) || ha->interval_ms != hb->interval_ms ||
        ha->timeout_ms != hb->timeout_ms || ha->healthy_threshold != hb->healthy_threshold ||
        ha->unhealthy_threshold != hb->unhealthy_threshold)
        return false;
    for (size_t i = 0; i < a->n_upstreams; i++)
        if (strcmp(a->upstreams[i].host, b->upstreams[i].host) ||
            a->upstreams[i].port != b->upstreams[i].port || a->upstreams[i].weight != b->upstreams[i].weight)
            return false;
    return true;
}
