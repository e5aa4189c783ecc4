/* Caddy's JSON config from the desired state (see caddy_render.h). */
#include "engine/caddy_render.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/settings.h"
#include "core/util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOT_FOUND_BODY                                                                                       \
    "{\"error\":{\"code\":\"ROUTE_NOT_FOUND\",\"message\":\"no route for this host and "                     \
    "path\",\"details\":{}}}"

static unsigned listen_port(const char *listen)
{
    char host[256];
    unsigned port = 0;
    if (listen == NULL || ptc_parse_addr(listen, host, sizeof(host), &port) != 0)
        return 0;
    return port;
}

static json_t *ms(unsigned v)
{
    char b[24];
    snprintf(b, sizeof(b), "%ums", v);
    return json_string(b);
}

static json_t *not_found_route(void)
{
    return json_pack("{s:[{s:s, s:i, s:{s:[s]}, s:s}]}", "handle", "handler", "static_response",
                     "status_code", 404, "headers", "Content-Type", "application/json", "body",
                     NOT_FOUND_BODY);
}

static bool is_wild(const ptc_proxy *p)
{
    return p->domain[0] == '*';
}

/* Exact hosts first, then wildcards with the longest suffix first; within
 * a host, the longest prefix first ("/" last). */
static int cmp_route(const void *a, const void *b)
{
    const ptc_proxy *x = *(const ptc_proxy *const *)a, *y = *(const ptc_proxy *const *)b;
    if (is_wild(x) != is_wild(y))
        return is_wild(x) ? 1 : -1;
    size_t dx = strlen(x->domain), dy = strlen(y->domain);
    if (is_wild(x) && dx != dy)
        return dx > dy ? -1 : 1;
    int c = strcmp(x->domain, y->domain);
    if (c)
        return c;
    size_t px = strlen(x->path_prefix), py = strlen(y->path_prefix);
    if (px != py)
        return px > py ? -1 : 1;
    return strcmp(x->path_prefix, y->path_prefix);
}

static json_t *host_matcher(const char *domain)
{
    if (domain[0] != '*')
        return json_pack("{s:[s]}", "host", domain);
    /* "*.example.com": one label or more before the suffix, any case, with
     * or without the port Caddy leaves in the Host header. */
    ptc_buf re = PTC_BUF_INIT;
    ptc_buf_append_str(&re, "(?i)^.+");
    for (const char *c = domain + 1; *c; c++) {
        if (*c == '.')
            ptc_buf_append_str(&re, "\\");
        ptc_buf_append(&re, c, 1);
    }
    ptc_buf_append_str(&re, "(:[0-9]+)?$");
    json_t *m = json_pack("{s:{s:{s:s}}}", "header_regexp", "Host", "pattern", ptc_buf_cstr(&re));
    ptc_buf_free(&re);
    return m;
}

/* The upstream list with weights: each upstream weight/g times (g the
 * common divisor), scaled down to at most PTC_CADDY_WEIGHT_SLOTS. */
static json_t *upstream_list(const ptc_proxy *p)
{
    unsigned g = 0, total = 0;
    json_t *list = json_array();
    for (size_t i = 0; i < p->n_upstreams; i++) {
        unsigned a = p->upstreams[i].weight ? p->upstreams[i].weight : 1, b = g;
        while (b) {
            unsigned t = a % b;
            a = b;
            b = t;
        }
        g = a;
    }
    for (size_t i = 0; i < p->n_upstreams; i++)
        total += (p->upstreams[i].weight ? p->upstreams[i].weight : 1) / g;
    for (size_t i = 0; i < p->n_upstreams; i++) {
        const ptc_upstream *u = &p->upstreams[i];
        unsigned n = (u->weight ? u->weight : 1) / g;
        if (total > PTC_CADDY_WEIGHT_SLOTS) {
            n = (unsigned)(((unsigned long long)n * PTC_CADDY_WEIGHT_SLOTS + total / 2) / total);
            n = n ? n : 1;
        }
        char dial[300];
        snprintf(dial, sizeof(dial), strchr(u->host, ':') ? "[%s]:%u" : "%s:%u", u->host, u->port);
        for (unsigned k = 0; k < n; k++)
            json_array_append_new(list, json_pack("{s:s}", "dial", dial));
    }
    return list;
}

static json_t *security_header(const char *name, const char *value)
{
    /* Set only when the upstream did not: the builtin engine's rule. */
    return json_pack("{s:s, s:{s:{s:[s]}, s:{s:{s:n}}, s:b}}", "handler", "headers", "response", "set", name,
                     value, "require", "headers", name, "deferred", 1);
}

static json_t *proxy_handlers(const ptc_proxy *p, const ptc_caddy_render_opts *o, unsigned port)
{
    json_t *h = json_array();
    char port_s[8];

    if (!p->websocket)
        json_array_append_new(
            h, json_pack("{s:s, s:{s:[s]}}", "handler", "headers", "request", "delete", "Upgrade"));
    json_array_append_new(h, json_pack("{s:s, s:I}", "handler", "request_body", "max_size",
                                       (json_int_t)(p->max_body_size ? p->max_body_size : o->max_body_size)));
    if (p->strip_prefix && strcmp(p->path_prefix, "/") != 0)
        json_array_append_new(
            h, json_pack("{s:s, s:s}", "handler", "rewrite", "strip_path_prefix", p->path_prefix));
    if (p->security_headers) {
        json_array_append_new(h, security_header("X-Content-Type-Options", "nosniff"));
        json_array_append_new(h, security_header("X-Frame-Options", "SAMEORIGIN"));
        json_array_append_new(h, security_header("X-XSS-Protection", "1; mode=block"));
    }
    /* Caddy sets X-Forwarded-For, -Proto and -Host itself (and does not
     * trust a client's); X-Real-IP and X-Forwarded-Port are ours.  Caddy
     * 2.6 has no placeholder for the local port, so it is written in. */
    snprintf(port_s, sizeof(port_s), "%u", port);
    json_t *rp = json_pack("{s:s, s:o, s:{s:{s:{s:[s], s:[s]}}}, s:{s:{s:s}}, s:{s:s, s:o, s:o}}", "handler",
                           "reverse_proxy", "upstreams", upstream_list(p), "headers", "request", "set",
                           "X-Real-IP", "{http.request.remote.host}", "X-Forwarded-Port", port_s,
                           "load_balancing", "selection_policy", "policy", "round_robin", "transport",
                           "protocol", "http", "dial_timeout", ms(o->connect_timeout_ms),
                           "response_header_timeout", ms(o->upstream_timeout_ms));
    json_object_set_new(rp, "health_checks",
                        json_pack("{s:{s:s, s:o, s:o}}", "active", "path", p->health_check.path, "interval",
                                  ms(p->health_check.interval_ms), "timeout",
                                  ms(p->health_check.timeout_ms)));
    json_array_append_new(h, rp);
    return h;
}

static json_t *redirect_handlers(unsigned https_port)
{
    char location[96];
    if (https_port == 443)
        snprintf(location, sizeof(location), "https://{http.request.host}{http.request.uri}");
    else
        snprintf(location, sizeof(location), "https://{http.request.host}:%u{http.request.uri}", https_port);
    return json_pack("[{s:s, s:i, s:{s:[s]}}]", "handler", "static_response", "status_code", 301, "headers",
                     "Location", location);
}

static bool has_https(const ptc_state *st, const ptc_caddy_render_opts *o)
{
    return o->https_listen && o->https_listen[0] && st->n_certs > 0;
}

const char *ptc_caddy_scheme_for(const ptc_state *st, const ptc_proxy *p, const ptc_caddy_render_opts *o)
{
    return has_https(st, o) && p->enable_ssl && ptc_state_cert_for(st, p->domain) ? "https" : "http";
}

/* The routes of one server; tls: the HTTPS one. */
static json_t *server_routes(const ptc_proxy **sorted, size_t n, const ptc_state *st,
                             const ptc_caddy_render_opts *o, bool tls)
{
    json_t *routes = json_array();
    unsigned port = listen_port(tls ? o->https_listen : o->http_listen);
    unsigned https_port = listen_port(o->https_listen);

    if (!tls && o->acme_webroot)
        json_array_append_new(routes, json_pack("{s:[{s:[s]}], s:[{s:s, s:s}], s:b}", "match", "path",
                                                "/.well-known/acme-challenge/*", "handle", "handler",
                                                "file_server", "root", o->acme_webroot, "terminal", 1));
    for (size_t i = 0; i < n;) {
        const char *domain = sorted[i]->domain;
        json_t *sub = json_array();
        bool has_root = false;
        for (; i < n && strcmp(sorted[i]->domain, domain) == 0; i++) {
            const ptc_proxy *p = sorted[i];
            bool redirect = !tls && strcmp(ptc_caddy_scheme_for(st, p, o), "https") == 0;
            json_t *handle = redirect ? redirect_handlers(https_port) : proxy_handlers(p, o, port);
            json_t *r = json_pack("{s:o, s:b}", "handle", handle, "terminal", 1);
            if (strcmp(p->path_prefix, "/") == 0) {
                has_root = true;
            } else {
                char *deeper = ptc_xasprintf("%s/*", p->path_prefix);
                json_object_set_new(r, "match", json_pack("[{s:[s, s]}]", "path", p->path_prefix, deeper));
                free(deeper);
            }
            json_array_append_new(sub, r);
        }
        if (!has_root)
            json_array_append_new(sub, not_found_route());
        json_array_append_new(routes,
                              json_pack("{s:[o], s:[{s:s, s:o}], s:b}", "match", host_matcher(domain),
                                        "handle", "handler", "subroute", "routes", sub, "terminal", 1));
    }
    json_array_append_new(routes, not_found_route());
    return routes;
}

static json_t *server(const char *listen, json_t *routes, bool tls)
{
    json_t *s = json_pack("{s:[s], s:o, s:{s:b}}", "listen", listen, "routes", routes, "automatic_https",
                          "disable", 1);
    if (tls)
        json_object_set_new(s, "tls_connection_policies", json_pack("[{}]"));
    return s;
}

json_t *ptc_caddy_render(const ptc_state *st, const ptc_caddy_render_opts *o)
{
    const ptc_proxy **sorted = ptc_xcalloc(st->n_proxies + 1, sizeof(*sorted));
    for (size_t i = 0; i < st->n_proxies; i++)
        sorted[i] = st->proxies[i];
    qsort(sorted, st->n_proxies, sizeof(*sorted), cmp_route);

    json_t *servers = json_object();
    json_object_set_new(servers, "portico_http",
                        server(o->http_listen, server_routes(sorted, st->n_proxies, st, o, false), false));
    if (has_https(st, o))
        json_object_set_new(servers, "portico_https",
                            server(o->https_listen, server_routes(sorted, st->n_proxies, st, o, true), true));
    json_t *apps = json_pack("{s:{s:o, s:o}}", "http", "grace_period", ms(o->grace_ms), "servers", servers);
    if (st->n_certs > 0) {
        json_t *pems = json_array();
        for (size_t i = 0; i < st->n_certs; i++) {
            const ptc_cert *c = st->certs[i];
            char *tag = ptc_xasprintf("portico:%s", c->domain);
            json_array_append_new(pems, json_pack("{s:s, s:s, s:[s]}", "certificate", c->cert_pem, "key",
                                                  c->key_pem, "tags", tag));
            free(tag);
        }
        json_object_set_new(apps, "tls", json_pack("{s:{s:o}}", "certificates", "load_pem", pems));
    }
    free(sorted);
    json_t *config = json_pack("{s:{s:s, s:{s:b}}, s:o}", "admin", "listen", o->admin, "config", "persist", 0,
                               "apps", apps);
    if (o->log_file)
        json_object_set_new(config, "logging",
                            json_pack("{s:{s:{s:{s:s, s:s, s:i, s:i}}}}", "logs", "default", "writer",
                                      "output", "file", "filename", o->log_file, "roll_size_mb", 10,
                                      "roll_keep", 3));
    return config;
}
