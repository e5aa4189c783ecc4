/* Registry fetch, droplet parsing and the sync plan (see registry.h). */
#include "discovery/registry.h"

#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define URL_MAX 2048
/* Names quoted in reasons are cut to this many bytes. */
#define QUOTE_MAX 80

/* ---- fetch ------------------------------------------------------------------ */

typedef struct sink {
    ptc_buf *body;
    bool too_big;
} sink;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    sink *s = arg;
    if (s->body->len + size * n > PTC_REGISTRY_BODY_MAX) {
        s->too_big = true;
        return 0;
    }
    ptc_buf_append(s->body, p, size * n);
    return size * n;
}

static bool valid_base_url(const char *url)
{
    size_t n = strlen(url);
    if (n == 0 || n > URL_MAX || !(ptc_str_has_prefix(url, "http://") || ptc_str_has_prefix(url, "https://")))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)url[i] <= 0x20 || url[i] == 0x7f || url[i] == '#' || url[i] == '?')
            return false;
    return true;
}

/* Progress callback: a non-zero answer aborts the transfer. */
static int cancelled(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow)
{
    const atomic_bool *cancel = arg;
    (void)dltotal;
    (void)dlnow;
    (void)ultotal;
    (void)ulnow;
    return cancel && atomic_load(cancel) ? 1 : 0;
}

int ptc_registry_fetch(const char *base_url, long timeout_ms, const atomic_bool *cancel, ptc_buf *body,
                       char *err, size_t errlen)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    sink s = {body, false};
    struct curl_slist *hdrs = NULL;
    CURL *c = NULL;
    char *url = NULL;
    long status = 0;
    int rc = 0;

    if (!valid_base_url(base_url)) {
        snprintf(err, errlen,
                 "registry_url must be an http:// or https:// URL without spaces, query or fragment");
        return -EINVAL;
    }
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    url = ptc_xasprintf("%.*s/droplets", (int)n, base_url);
    c = curl_easy_init();
    hdrs = curl_slist_append(hdrs, "Accept: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    /* The registry is reached directly, whatever http_proxy says. */
    curl_easy_setopt(c, CURLOPT_PROXY, "");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "portico/" PTC_VERSION);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)PTC_REGISTRY_BODY_MAX);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    if (cancel) {
        curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, cancelled);
        curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)cancel);
        curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    }
    CURLcode cr = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (s.too_big || cr == CURLE_FILESIZE_EXCEEDED) {
        snprintf(err, errlen, "the answer is larger than %u bytes", PTC_REGISTRY_BODY_MAX);
        rc = -EFBIG;
    } else if (cr == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(err, errlen, "cancelled: portico is stopping");
        rc = -ECANCELED;
    } else if (cr == CURLE_OPERATION_TIMEDOUT) {
        snprintf(err, errlen, "no complete answer within %ld ms", timeout_ms);
        rc = -ETIMEDOUT;
    } else if (cr != CURLE_OK) {
        snprintf(err, errlen, "%s", errbuf[0] ? errbuf : curl_easy_strerror(cr));
        rc = -EIO;
    } else if (status != 200) {
        snprintf(err, errlen, "GET /droplets answered %ld", status);
        rc = -EPROTO;
    }
    curl_slist_free_all(hdrs);
    curl_easy_cleanup(c);
    free(url);
    return rc;
}

/* ---- parsing ------------------------------------------------------------------ */

/* A prefix of s of at most max bytes, cut on a UTF-8 boundary (jansson
 * keys and strings must stay valid UTF-8). */
static char *quote(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return ptc_xstrdup(s);
    while (n > max || (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80))
        n--;
    return ptc_xasprintf("%.*s...", (int)n, s);
}

/* A string member without NUL bytes, or NULL; *bad is set when the member
 * is present (and not null) but not such a string. */
static const char *opt_string(const json_t *o, const char *key, bool *bad)
{
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v))
        return NULL;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        *bad = true;
        return NULL;
    }
    return json_string_value(v);
}

/* A port: an integer 1-65535 or a string of 1-5 digits with that value.
 * Returns 0 when absent, -1 when bad. */
static long opt_port(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    long long n;
    if (v == NULL || json_is_null(v))
        return 0;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t len = json_string_length(v);
        if (len == 0 || len > 5 || strspn(s, "0123456789") != len || ptc_parse_int(s, 1, 65535, &n) != 0)
            return -1;
    } else {
        return -1;
    }
    return n >= 1 && n <= 65535 ? (long)n : -1;
}

/* An upstream host: a host name (lower-cased), an IP literal, or a
 * bracketed IPv6 literal.  Returns a new string, or NULL with *why. */
static char *clean_host(const char *host, const char **why)
{
    size_t n = strlen(host);
    if (n > 2 && host[0] == '[' && host[n - 1] == ']') {
        char *h = ptc_xstrndup(host + 1, n - 2);
        if (strchr(h, ':') == NULL || !ptc_is_ip_literal(h)) {
            free(h);
            *why = "is not a valid IPv6 address";
            return NULL;
        }
        return h;
    }
    if ((*why = ptc_check_upstream_host(host)) != NULL)
        return NULL;
    char *h = ptc_xstrdup(host);
    if (!ptc_is_ip_literal(h))
        ptc_str_lower(h);
    return h;
}

static int cmp_upstream(const void *a, const void *b)
{
    const ptc_upstream *x = a, *y = b;
    int c = strcmp(x->host, y->host);
    return c ? c : (x->port > y->port) - (x->port < y->port);
}

static void droplet_clear(ptc_droplet *d)
{
    free(d->name);
    free(d->domain);
    for (size_t i = 0; i < d->n_upstreams; i++)
        free(d->upstreams[i].host);
    free(d->upstreams);
    free(d->health_path);
    memset(d, 0, sizeof(*d));
}

/* The upstreams of a droplet's instances.  Returns false with the reason
 * in why (a static or snprintf'd text in buf). */
static bool parse_instances(const json_t *list, ptc_droplet *d, char *why, size_t whylen)
{
    size_t n = json_array_size(list), kept = 0, i;
    bool *healthy = NULL;
    const json_t *inst;
    bool ok = false;

    if (!json_is_array(list)) {
        snprintf(why, whylen, "instances must be an array");
        return false;
    }
    if (n > PTC_UPSTREAMS_MAX) {
        snprintf(why, whylen, "more than %d instances", PTC_UPSTREAMS_MAX);
        return false;
    }
    d->upstreams = ptc_xcalloc(n + 1, sizeof(*d->upstreams));
    healthy = ptc_xcalloc(n + 1, sizeof(*healthy));
    json_array_foreach(list, i, inst)
    {
        bool bad = false;
        const char *host, *reason = NULL;
        const json_t *hv;
        if (!json_is_object(inst)) {
            snprintf(why, whylen, "instances[%zu] must be an object {host, port, healthy?}", i);
            goto out;
        }
        host = opt_string(inst, "host", &bad);
        if (bad || host == NULL) {
            snprintf(why, whylen, "instances[%zu].host %s", i, bad ? "must be a string" : "is required");
            goto out;
        }
        long port = opt_port(inst, "port");
        if (port <= 0) {
            snprintf(why, whylen, "instances[%zu].port %s", i,
                     port == 0 ? "is required" : "must be an integer from 1 to 65535");
            goto out;
        }
        hv = json_object_get(inst, "healthy");
        if (hv != NULL && !json_is_null(hv) && !json_is_boolean(hv)) {
            snprintf(why, whylen, "instances[%zu].healthy must be true or false", i);
            goto out;
        }
        char *h = clean_host(host, &reason);
        if (h == NULL) {
            snprintf(why, whylen, "instances[%zu].host %s", i, reason);
            goto out;
        }
        /* The same instance listed twice is one upstream, healthy when
         * either listing says so. */
        size_t k;
        for (k = 0; k < d->n_upstreams; k++)
            if (d->upstreams[k].port == (unsigned)port && strcmp(d->upstreams[k].host, h) == 0)
                break;
        if (k < d->n_upstreams) {
            free(h);
            healthy[k] = healthy[k] || !json_is_false(hv);
            continue;
        }
        d->upstreams[d->n_upstreams] = (ptc_upstream){h, (unsigned)port, 1};
        healthy[d->n_upstreams++] = !json_is_false(hv);
    }
    for (size_t k = 0; k < d->n_upstreams; k++)
        kept += healthy[k];
    /* Only healthy instances get traffic (seed 002); when the registry
     * calls none healthy, keep them all and let the active checks decide,
     * rather than drop the route. */
    if (kept > 0 && kept < d->n_upstreams) {
        size_t w = 0;
        for (size_t k = 0; k < d->n_upstreams; k++) {
            if (healthy[k])
                d->upstreams[w++] = d->upstreams[k];
            else
                free(d->upstreams[k].host);
        }
        d->n_upstreams = w;
    }
    ok = true;
out:
    free(healthy);
    return ok;
}

/* The single host and port of a droplet without instances. */
static bool parse_host_port(const json_t *o, ptc_droplet *d, char *why, size_t whylen)
{
    static const char *const host_keys[] = {"upstream_host", "host", "ip"};
    static const char *const port_keys[] = {"upstream_port", "port"};
    const char *host = NULL, *reason = NULL;
    long port = 0;

    for (size_t i = 0; i < PTC_ARRAY_LEN(host_keys); i++) {
        bool bad = false;
        const char *h = opt_string(o, host_keys[i], &bad);
        if (bad) {
            snprintf(why, whylen, "%s must be a string", host_keys[i]);
            return false;
        }
        if (h && host && strcmp(h, host) != 0) {
            snprintf(why, whylen, "host, upstream_host and ip disagree");
            return false;
        }
        if (h)
            host = h;
    }
    for (size_t i = 0; i < PTC_ARRAY_LEN(port_keys); i++) {
        long p = opt_port(o, port_keys[i]);
        if (p < 0) {
            snprintf(why, whylen, "%s must be an integer from 1 to 65535", port_keys[i]);
            return false;
        }
        if (p > 0 && port > 0 && p != port) {
            snprintf(why, whylen, "port and upstream_port disagree");
            return false;
        }
        if (p > 0)
            port = p;
    }
    if (host == NULL) {
        snprintf(why, whylen, "no host (host, upstream_host, ip or instances)");
        return false;
    }
    if (port == 0) {
        snprintf(why, whylen, "no port (port or upstream_port)");
        return false;
    }
    char *h = clean_host(host, &reason);
    if (h == NULL) {
        snprintf(why, whylen, "host %s", reason);
        return false;
    }
    d->upstreams = ptc_xcalloc(1, sizeof(*d->upstreams));
    d->upstreams[0] = (ptc_upstream){h, (unsigned)port, 1};
    d->n_upstreams = 1;
    return true;
}

/* One droplet whose name is valid; false with the reason in why. */
static bool parse_droplet(const json_t *o, const char *name, const char *base_domain, ptc_droplet *d,
                          char *why, size_t whylen)
{
    bool bad = false;
    const char *domain = opt_string(o, "domain", &bad), *reason;
    const json_t *ssl = json_object_get(o, "enable_ssl");
    const json_t *instances = json_object_get(o, "instances");

    d->name = ptc_xstrdup(name);
    if (bad) {
        snprintf(why, whylen, "domain must be a string");
        return false;
    }
    if (domain == NULL || domain[0] == '\0') {
        if (base_domain == NULL || base_domain[0] == '\0') {
            snprintf(why, whylen, "no domain, and base_domain is not set");
            return false;
        }
        d->domain = ptc_xasprintf("%s.%s", name, base_domain);
        ptc_str_lower(d->domain);
        if ((reason = ptc_check_domain(d->domain, false)) != NULL) {
            snprintf(why, whylen, "no domain, and %s.%s is not a valid host name (%s)", name, base_domain,
                     reason);
            return false;
        }
    } else {
        char *q = quote(domain, QUOTE_MAX);
        d->domain = ptc_xstrdup(domain);
        ptc_str_lower(d->domain);
        reason = ptc_check_domain(d->domain, true);
        if (reason)
            snprintf(why, whylen, "domain \"%s\" %s", q, reason);
        free(q);
        if (reason)
            return false;
    }
    if (instances != NULL && !json_is_null(instances) &&
        !(json_is_array(instances) && json_array_size(instances) == 0)) {
        if (!parse_instances(instances, d, why, whylen))
            return false;
    } else if (!parse_host_port(o, d, why, whylen)) {
        return false;
    }
    qsort(d->upstreams, d->n_upstreams, sizeof(*d->upstreams), cmp_upstream);

    const char *hp = opt_string(o, "health_path", &bad);
    if (bad) {
        snprintf(why, whylen, "health_path must be a string");
        return false;
    }
    if (hp != NULL) {
        if ((reason = ptc_check_path(hp)) != NULL) {
            snprintf(why, whylen, "health_path %s", reason);
            return false;
        }
        d->health_path = ptc_xstrdup(hp);
    }
    if (ssl != NULL && !json_is_null(ssl) && !json_is_boolean(ssl)) {
        snprintf(why, whylen, "enable_ssl must be true or false");
        return false;
    }
    d->enable_ssl = json_is_true(ssl);
    return true;
}

static void skip(ptc_droplet_list *l, const char *key, const char *reason)
{
    char *k = quote(key, QUOTE_MAX);
    if (json_object_get(l->skipped, k) == NULL)
        json_object_set_new(l->skipped, k, json_string(reason));
    free(k);
}

int ptc_registry_parse(const char *body, size_t len, const char *base_domain, ptc_droplet_list *out,
                       char *err, size_t errlen)
{
    json_error_t jerr;
    /* NUL bytes inside strings parse, and fail the field that holds them:
     * one bad droplet must not void the others. */
    json_t *root = json_loadb(body, len, JSON_ALLOW_NUL, &jerr), *list = root, *counts = NULL;
    const json_t *o;
    size_t i;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (root == NULL) {
        snprintf(err, errlen, "the answer is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                 jerr.column);
        goto out;
    }
    if (json_is_object(root) && json_is_array(json_object_get(root, "droplets")))
        list = json_object_get(root, "droplets");
    if (!json_is_array(list)) {
        snprintf(err, errlen, "the answer is not a JSON array of droplets");
        goto out;
    }
    if (json_array_size(list) > PTC_REGISTRY_DROPLETS_MAX) {
        snprintf(err, errlen, "the answer lists more than %d droplets", PTC_REGISTRY_DROPLETS_MAX);
        goto out;
    }
    out->skipped = json_object();
    out->items = ptc_xcalloc(json_array_size(list) + 1, sizeof(*out->items));
    out->listed = ptc_xcalloc(json_array_size(list) + 1, sizeof(*out->listed));
    /* A name listed twice is ambiguous: every listing of it is skipped. */
    counts = json_object();
    json_array_foreach(list, i, o)
    {
        const json_t *nv = json_is_object(o) ? json_object_get(o, "name") : NULL;
        const char *name = json_string_value(nv);
        if (name && strlen(name) == json_string_length(nv) && ptc_valid_name(name)) {
            json_int_t c = json_integer_value(json_object_get(counts, name));
            json_object_set_new(counts, name, json_integer(c + 1));
            if (c == 0)
                out->listed[out->n_listed++] = ptc_xstrdup(name);
        }
    }
    json_array_foreach(list, i, o)
    {
        char key[32], why[400];
        bool bad = false;
        snprintf(key, sizeof(key), "droplets[%zu]", i);
        if (!json_is_object(o)) {
            skip(out, key, "not a JSON object");
            continue;
        }
        const char *name = opt_string(o, "name", &bad);
        if (bad || name == NULL) {
            skip(out, key, bad ? "name must be a string" : "no name");
            continue;
        }
        if (!ptc_valid_name(name)) {
            skip(out, name, "name must match ^[a-z0-9][a-z0-9_-]{0,62}$");
            continue;
        }
        json_int_t c = json_integer_value(json_object_get(counts, name));
        if (c > 1) {
            snprintf(why, sizeof(why), "the registry lists this name %lld times", (long long)c);
            skip(out, name, why);
            continue;
        }
        ptc_droplet *d = &out->items[out->n];
        if (parse_droplet(o, name, base_domain, d, why, sizeof(why))) {
            out->n++;
        } else {
            droplet_clear(d);
            skip(out, name, why);
        }
    }
    rc = 0;
out:
    json_decref(counts);
    json_decref(root);
    if (rc != 0)
        ptc_droplet_list_free(out);
    return rc;
}

void ptc_droplet_list_free(ptc_droplet_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        droplet_clear(&l->items[i]);
    for (size_t i = 0; i < l->n_listed; i++)
        free(l->listed[i]);
    free(l->items);
    free(l->listed);
    json_decref(l->skipped);
    memset(l, 0, sizeof(*l));
}

/* ---- the plan ----------------------------------------------------------------- */

/* The proxy a droplet describes. */
static ptc_proxy *droplet_proxy(const ptc_droplet *d, const ptc_proxy_defaults *defs)
{
    ptc_proxy *p = ptc_proxy_new();
    p->name = ptc_xstrdup(d->name);
    p->domain = ptc_xstrdup(d->domain);
    p->path_prefix = ptc_xstrdup("/");
    p->n_upstreams = d->n_upstreams;
    p->upstreams = ptc_xcalloc(d->n_upstreams, sizeof(*p->upstreams));
    for (size_t i = 0; i < d->n_upstreams; i++) {
        p->upstreams[i] = d->upstreams[i];
        p->upstreams[i].host = ptc_xstrdup(d->upstreams[i].host);
    }
    /* A sync is not gated: probing every upstream of a bulk sync before
     * anything changes would hold the sync for seconds; the active checks
     * take over right after it (unknown counts as healthy meanwhile). */
    p->require_healthy = false;
    p->enable_ssl = d->enable_ssl;
    p->websocket = true;
    p->security_headers = true;
    p->health_check.path = ptc_xstrdup(d->health_path ? d->health_path : defs->health_check_path);
    p->health_check.interval_ms = defs->health_check_interval_ms;
    p->health_check.timeout_ms = defs->health_check_timeout_ms;
    p->health_check.healthy_threshold = 2;
    p->health_check.unhealthy_threshold = 3;
    p->source = PTC_SOURCE_REGISTRY;
    return p;
}

typedef enum verdict { V_PENDING, V_SYNC, V_SKIP } verdict;

void ptc_registry_plan(const ptc_state *cur, const ptc_droplet_list *dl, const ptc_sync_options *opts,
                       ptc_sync_plan *out)
{
    ptc_proxy **spec = ptc_xcalloc(dl->n + 1, sizeof(*spec));
    verdict *v = ptc_xcalloc(dl->n + 1, sizeof(*v));
    json_t *names = json_object(), *reasons = json_object(), *claims = json_object();
    bool again = true;

    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < dl->n_listed; i++)
        json_object_set_new(names, dl->listed[i], json_true());

    for (size_t i = 0; i < dl->n; i++) {
        const ptc_droplet *d = &dl->items[i];
        const ptc_proxy *old = ptc_state_proxy(cur, d->name);
        if (old && old->source != PTC_SOURCE_REGISTRY) {
            v[i] = V_SKIP;
            json_object_set_new(reasons, d->name,
                                json_string("the name belongs to a proxy made through the API"));
            continue;
        }
        spec[i] = droplet_proxy(d, opts->defaults);
        /* Two droplets claiming one domain: neither wins. */
        json_t *c = json_object_get(claims, d->domain);
        if (c == NULL) {
            c = json_array();
            json_object_set_new(claims, d->domain, c);
        }
        json_array_append_new(c, json_integer((json_int_t)i));
    }
    {
        const char *domain;
        json_t *c;
        json_object_foreach(claims, domain, c)
        {
            if (json_array_size(c) < 2)
                continue;
            size_t k;
            json_t *idx;
            char why[300];
            snprintf(why, sizeof(why), "%zu droplets claim the domain %s", json_array_size(c), domain);
            json_array_foreach(c, k, idx)
            {
                size_t i = (size_t)json_integer_value(idx);
                v[i] = V_SKIP;
                json_object_set_new(reasons, dl->items[i].name, json_string(why));
            }
        }
    }
    /* The route (domain, "/") of each droplet must be free in the next
     * state.  Skipping one droplet keeps its old proxy, which may block
     * another: repeat until nothing more is skipped. */
    while (again) {
        json_t *owner = json_object(); /* domain -> name of who holds "/" in the next state */
        again = false;
        for (size_t i = 0; i < cur->n_proxies; i++) {
            const ptc_proxy *p = cur->proxies[i];
            if (strcmp(p->path_prefix, "/") != 0)
                continue;
            if (p->source == PTC_SOURCE_REGISTRY && opts->prune && json_object_get(names, p->name) == NULL)
                continue; /* pruned */
            json_object_set_new(owner, p->domain, json_string(p->name));
        }
        /* Droplets being synced replace their old versions. */
        for (size_t i = 0; i < dl->n; i++) {
            const ptc_proxy *old;
            if (v[i] == V_SKIP || (old = ptc_state_proxy(cur, dl->items[i].name)) == NULL)
                continue;
            const char *holder = json_string_value(json_object_get(owner, old->domain));
            if (holder && strcmp(holder, old->name) == 0 && strcmp(old->path_prefix, "/") == 0)
                json_object_del(owner, old->domain);
        }
        for (size_t i = 0; i < dl->n; i++) {
            if (v[i] == V_SKIP)
                continue;
            const ptc_droplet *d = &dl->items[i];
            const char *holder = json_string_value(json_object_get(owner, d->domain));
            if (holder && strcmp(holder, d->name) != 0) {
                char why[400];
                const ptc_proxy *hp = ptc_state_proxy(cur, holder);
                snprintf(why, sizeof(why), "the domain %s is routed by the %s proxy %s", d->domain,
                         hp && hp->source == PTC_SOURCE_REGISTRY ? "registry" : "manual", holder);
                v[i] = V_SKIP;
                json_object_set_new(reasons, d->name, json_string(why));
                again = true;
            }
        }
        if (!again)
            for (size_t i = 0; i < dl->n; i++)
                if (v[i] != V_SKIP)
                    v[i] = V_SYNC;
        json_decref(owner);
    }

    out->synced = json_array();
    out->created = json_array();
    out->updated = json_array();
    out->unchanged = json_array();
    out->deleted = json_array();
    out->skipped = json_array();
    out->skipped_reasons = json_object();
    {
        const char *k;
        json_t *r;
        json_object_foreach(dl->skipped, k, r)
        {
            json_array_append_new(out->skipped, json_string(k));
            json_object_set(out->skipped_reasons, k, r);
        }
    }

    size_t cap = cur->n_proxies + dl->n + 1, n = 0;
    ptc_proxy **proxies = ptc_xcalloc(cap, sizeof(*proxies));
    json_t *synced_names = json_object();
    for (size_t i = 0; i < dl->n; i++) {
        const ptc_droplet *d = &dl->items[i];
        const ptc_proxy *old = ptc_state_proxy(cur, d->name);
        if (v[i] == V_SKIP) {
            json_array_append_new(out->skipped, json_string(d->name));
            json_object_set(out->skipped_reasons, d->name, json_object_get(reasons, d->name));
            continue;
        }
        json_array_append_new(out->synced, json_string(d->name));
        json_object_set_new(synced_names, d->name, json_true());
        if (old && ptc_proxy_spec_equal(old, spec[i])) {
            json_array_append_new(out->unchanged, json_string(d->name));
            proxies[n++] = ptc_proxy_retain(old);
            continue;
        }
        ptc_proxy *p = spec[i];
        spec[i] = NULL;
        p->created_at = old ? old->created_at : opts->now;
        p->updated_at = opts->now;
        p->revision = opts->revision;
        json_array_append_new(old ? out->updated : out->created, json_string(d->name));
        proxies[n++] = p;
    }
    /* Everything else of cur stays, but pruned registry proxies. */
    for (size_t i = 0; i < cur->n_proxies; i++) {
        const ptc_proxy *p = cur->proxies[i];
        if (json_object_get(synced_names, p->name))
            continue;
        if (p->source == PTC_SOURCE_REGISTRY && opts->prune && json_object_get(names, p->name) == NULL) {
            json_array_append_new(out->deleted, json_string(p->name));
            continue;
        }
        proxies[n++] = ptc_proxy_retain(p);
    }
    if (ptc_sync_plan_changes(out)) {
        ptc_cert **certs = ptc_xcalloc(cur->n_certs + 1, sizeof(*certs));
        for (size_t i = 0; i < cur->n_certs; i++)
            certs[i] = ptc_cert_retain(cur->certs[i]);
        out->next = ptc_state_from(proxies, n, certs, cur->n_certs);
        out->next->revision = cur->revision;
        free(certs);
    } else {
        for (size_t i = 0; i < n; i++)
            ptc_proxy_release(proxies[i]);
        out->next = ptc_state_retain(cur);
    }
    free(proxies);
    for (size_t i = 0; i < dl->n; i++)
        ptc_proxy_release(spec[i]);
    free(spec);
    free(v);
    json_decref(synced_names);
    json_decref(names);
    json_decref(reasons);
    json_decref(claims);
}

bool ptc_sync_plan_changes(const ptc_sync_plan *p)
{
    return json_array_size(p->created) + json_array_size(p->updated) + json_array_size(p->deleted) > 0;
}

void ptc_sync_plan_free(ptc_sync_plan *p)
{
    ptc_state_release(p->next);
    json_decref(p->synced);
    json_decref(p->skipped);
    json_decref(p->skipped_reasons);
    json_decref(p->created);
    json_decref(p->updated);
    json_decref(p->unchanged);
    json_decref(p->deleted);
    memset(p, 0, sizeof(*p));
}
