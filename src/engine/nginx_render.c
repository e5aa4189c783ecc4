/* Rendering of nginx configuration (see nginx_render.h).
 *
 * Route semantics match the builtin engine: a prefix /api matches /api and
 * /api/... but not /apix, hence an exact location and a ^~ location per
 * prefix (^~ so that no regex location could ever take over); nginx picks
 * the longest matching prefix, like the builtin router.  strip_prefix is
 * nginx's own URI replacement: proxy_pass with a "/" URI part replaces the
 * matched location name, so /api/x goes out as /x and /api as /. */
#include "engine/nginx_render.h"

#include "core/mem.h"
#include "core/settings.h"
#include "model/validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_COMMENT "# Managed by portico. Edits are undone at its next start: the store is the truth.\n"

char *ptc_nginx_file_name(const char *prefix, const char *domain)
{
    char *dir = ptc_nginx_cert_dir_name(domain);
    char *name = ptc_xasprintf("%s%s.conf", prefix, dir);
    free(dir);
    return name;
}

char *ptc_nginx_cert_dir_name(const char *domain)
{
    if (domain[0] == '*')
        return ptc_xasprintf("_%s", domain + 1);
    return ptc_xstrdup(domain);
}

int ptc_nginx_listen_form(const char *addr, char *out, size_t outlen, unsigned *port)
{
    char host[256];
    int n;
    if (ptc_parse_addr(addr, host, sizeof(host), port) != 0)
        return -EINVAL;
    if (host[0] == '\0')
        n = snprintf(out, outlen, "%u", *port);
    else if (strchr(host, ':'))
        n = snprintf(out, outlen, "[%s]:%u", host, *port);
    else
        n = snprintf(out, outlen, "%s:%u", host, *port);
    return n < 0 || (size_t)n >= outlen ? -EINVAL : 0;
}

bool ptc_nginx_domain_tls(const ptc_nginx_conf *c, const ptc_proxy *const *proxies, size_t n,
                          const ptc_cert *cert)
{
    if (c->https_listen[0] == '\0' || cert == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (proxies[i]->enable_ssl)
            return true;
    return false;
}

static int cmp_prefix(const void *a, const void *b)
{
    const ptc_proxy *x = *(const ptc_proxy *const *)a, *y = *(const ptc_proxy *const *)b;
    int r = strcmp(x->path_prefix, y->path_prefix);
    return r ? r : strcmp(x->name, y->name);
}

bool ptc_nginx_upstream_down(const ptc_nginx_conf *c, const ptc_upstream *u)
{
    return c->upstream_down != NULL && c->upstream_down(c->upstream_down_arg, u->host, u->port);
}

bool ptc_nginx_all_down(const ptc_nginx_conf *c, const ptc_proxy *p)
{
    for (size_t i = 0; i < p->n_upstreams; i++)
        if (!ptc_nginx_upstream_down(c, &p->upstreams[i]))
            return false;
    return p->n_upstreams > 0;
}

static void render_upstream(const ptc_nginx_conf *c, const ptc_proxy *p, ptc_buf *out)
{
    ptc_buf_appendf(out, "upstream portico_%s {\n", p->name);
    for (size_t i = 0; i < p->n_upstreams; i++) {
        const ptc_upstream *u = &p->upstreams[i];
        bool v6 = strchr(u->host, ':') != NULL;
        ptc_buf_appendf(out, "    server %s%s%s:%u weight=%u%s;\n", v6 ? "[" : "", u->host, v6 ? "]" : "",
                        u->port, u->weight, ptc_nginx_upstream_down(c, u) ? " down" : "");
    }
    ptc_buf_append_str(out, "    keepalive 32;\n}\n\n");
}

static void render_acme_location(const ptc_nginx_conf *c, ptc_buf *out)
{
    ptc_buf_appendf(out,
                    "    location ^~ /.well-known/acme-challenge/ {\n"
                    "        root %s;\n"
                    "        default_type text/plain;\n"
                    "    }\n",
                    c->acme_webroot);
}

static void render_not_found(const char *body, ptc_buf *out)
{
    ptc_buf_appendf(out,
                    "\n    location / {\n"
                    "        default_type application/json;\n"
                    "        return 404 '%s';\n"
                    "    }\n",
                    body);
}

/* The body of a location whose upstreams are all down. */
static void render_no_healthy(ptc_buf *out)
{
    ptc_buf_append_str(out, "        default_type application/json;\n"
                            "        return 503 '" PTC_NGINX_NO_HEALTHY_UPSTREAM "';\n");
}

/* The location names of a prefix: "= /api" and "^~ /api/", or "/" alone. */
static size_t location_names(const ptc_proxy *p, char names[2][PTC_PATH_MAX + 8])
{
    if (strcmp(p->path_prefix, "/") == 0) {
        snprintf(names[0], sizeof(names[0]), "/");
        return 1;
    }
    snprintf(names[0], sizeof(names[0]), "= %s", p->path_prefix);
    snprintf(names[1], sizeof(names[1]), "^~ %s/", p->path_prefix);
    return 2;
}

static void render_proxy_body(const ptc_nginx_conf *c, const ptc_proxy *p, ptc_buf *out)
{
    bool strip = p->strip_prefix && strcmp(p->path_prefix, "/") != 0;
    unsigned long long body = p->max_body_size ? p->max_body_size : c->max_body_size;

    ptc_buf_appendf(out, "        proxy_pass http://portico_%s%s;\n", p->name, strip ? "/" : "");
    ptc_buf_append_str(out, "        proxy_http_version 1.1;\n"
                            "        proxy_set_header Host $host;\n"
                            "        proxy_set_header X-Real-IP $remote_addr;\n"
                            "        proxy_set_header X-Forwarded-For $portico_forwarded_for;\n"
                            "        proxy_set_header X-Forwarded-Proto $scheme;\n"
                            "        proxy_set_header X-Forwarded-Host $host;\n"
                            "        proxy_set_header X-Forwarded-Port $server_port;\n");
    /* Connection is "upgrade" only when the client asked for an upgrade,
     * and empty otherwise so that the upstream connection stays pooled. */
    if (p->websocket)
        ptc_buf_append_str(out, "        proxy_set_header Upgrade $http_upgrade;\n"
                                "        proxy_set_header Connection $portico_connection_upgrade;\n");
    else
        ptc_buf_append_str(out, "        proxy_set_header Connection \"\";\n");
    ptc_buf_appendf(out,
                    "        proxy_connect_timeout %lldms;\n"
                    "        proxy_send_timeout %lldms;\n"
                    "        proxy_read_timeout %lldms;\n"
                    "        client_max_body_size %llu;\n",
                    c->connect_timeout_ms, c->upstream_timeout_ms, c->upstream_timeout_ms, body);
    if (p->security_headers)
        ptc_buf_append_str(out, "        add_header X-Content-Type-Options \"nosniff\" always;\n"
                                "        add_header X-Frame-Options \"SAMEORIGIN\" always;\n"
                                "        add_header X-XSS-Protection \"1; mode=block\" always;\n");
}

static void render_locations(const ptc_nginx_conf *c, const ptc_proxy *p, bool redirect, ptc_buf *out)
{
    char names[2][PTC_PATH_MAX + 8];
    size_t n = location_names(p, names);
    for (size_t i = 0; i < n; i++) {
        ptc_buf_appendf(out, "\n    location %s {\n", names[i]);
        if (!redirect && ptc_nginx_all_down(c, p))
            render_no_healthy(out);
        else if (!redirect)
            render_proxy_body(c, p, out);
        else if (c->https_port == 443)
            ptc_buf_append_str(out, "        return 301 https://$host$request_uri;\n");
        else
            ptc_buf_appendf(out, "        return 301 https://$host:%u$request_uri;\n", c->https_port);
        ptc_buf_append_str(out, "    }\n");
    }
}

void ptc_nginx_render_domain(const ptc_nginx_conf *c, const char *domain, const ptc_proxy *const *proxies,
                             size_t n, const ptc_cert *cert, ptc_buf *out)
{
    const ptc_proxy **sorted = ptc_xcalloc(n, sizeof(*sorted));
    bool tls = ptc_nginx_domain_tls(c, proxies, n, cert);
    bool has_root = false;

    memcpy(sorted, proxies, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), cmp_prefix);
    for (size_t i = 0; i < n; i++)
        has_root = has_root || strcmp(sorted[i]->path_prefix, "/") == 0;

    ptc_buf_append_str(out, HEADER_COMMENT "\n");
    for (size_t i = 0; i < n; i++)
        render_upstream(c, sorted[i], out);

    ptc_buf_appendf(out, "server {\n    listen %s;\n    server_name %s;\n\n", c->http_listen, domain);
    render_acme_location(c, out);
    for (size_t i = 0; i < n; i++)
        render_locations(c, sorted[i], tls && sorted[i]->enable_ssl, out);
    if (!has_root)
        render_not_found(PTC_NGINX_NOT_FOUND_PATH, out);
    ptc_buf_append_str(out, "}\n");

    if (tls) {
        char *dir = ptc_nginx_cert_dir_name(cert->domain);
        ptc_buf_appendf(out,
                        "\nserver {\n    listen %s ssl;\n    server_name %s;\n"
                        "    ssl_certificate %s/%s/fullchain.pem;\n"
                        "    ssl_certificate_key %s/%s/privkey.pem;\n\n",
                        c->https_listen, domain, c->certs_dir, dir, c->certs_dir, dir);
        free(dir);
        render_acme_location(c, out);
        for (size_t i = 0; i < n; i++)
            render_locations(c, sorted[i], false, out);
        if (!has_root)
            render_not_found(PTC_NGINX_NOT_FOUND_PATH, out);
        ptc_buf_append_str(out, "}\n");
    }
    free(sorted);
}

/* Appends one geo entry per CIDR block of the trusted_proxies list. */
static void render_trusted(const char *list, ptc_buf *out)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        ptc_buf_appendf(out, "    %.*s 1;\n", (int)(p - start), start);
    }
}

void ptc_nginx_render_default(const ptc_nginx_conf *c, ptc_buf *out)
{
    ptc_buf_append_str(out, HEADER_COMMENT
                       "\n"
                       "# Connection for upstreams: \"upgrade\" only for upgrade requests, else empty\n"
                       "# (no header, so that upstream connections stay pooled).\n"
                       "map $http_upgrade $portico_connection_upgrade {\n"
                       "    default upgrade;\n"
                       "    \"\" \"\";\n"
                       "}\n"
                       "\n"
                       "# X-Forwarded-For is overwritten at the edge and appended to only behind\n"
                       "# the trusted_proxies.\n"
                       "geo $portico_trusted_peer {\n"
                       "    default 0;\n");
    render_trusted(c->trusted_proxies, out);
    ptc_buf_append_str(out, "}\n"
                            "\n"
                            "map $portico_trusted_peer $portico_forwarded_for {\n"
                            "    default $remote_addr;\n"
                            "    1 $proxy_add_x_forwarded_for;\n"
                            "}\n"
                            "\n"
                            "# Unknown Host names never reach a route.\n");
    ptc_buf_appendf(out, "server {\n    listen %s default_server;\n    server_name _;\n\n", c->http_listen);
    render_acme_location(c, out);
    render_not_found(PTC_NGINX_NOT_FOUND_HOST, out);
    ptc_buf_append_str(out, "}\n");
    if (c->https_listen[0] != '\0') {
        ptc_buf_appendf(out,
                        "\nserver {\n    listen %s ssl default_server;\n    server_name _;\n"
                        "    ssl_reject_handshake on;\n",
                        c->https_listen);
        render_not_found(PTC_NGINX_NOT_FOUND_HOST, out);
        ptc_buf_append_str(out, "}\n");
    }
}

void ptc_nginx_render_main(const ptc_nginx_main_conf *m, ptc_buf *out)
{
    ptc_buf_append_str(out, "# Managed by portico: rewritten at every start.\n");
    if (m->workers > 0)
        ptc_buf_appendf(out, "worker_processes %d;\n", m->workers);
    else
        ptc_buf_append_str(out, "worker_processes auto;\n");
    if (m->as_root)
        ptc_buf_append_str(out, "user root;\n");
    ptc_buf_appendf(out,
                    "pid %s;\n"
                    "error_log %s warn;\n"
                    "worker_shutdown_timeout %lldms;\n"
                    "worker_rlimit_nofile 16384;\n"
                    "\n"
                    "events {\n"
                    "    worker_connections 4096;\n"
                    "}\n"
                    "\n"
                    "http {\n"
                    "    default_type application/octet-stream;\n",
                    m->pid_file, m->error_log, m->drain_timeout_ms > 0 ? m->drain_timeout_ms : 1);
    if (m->access_log)
        ptc_buf_appendf(out, "    access_log %s;\n", m->access_log);
    else
        ptc_buf_append_str(out, "    access_log off;\n");
    ptc_buf_appendf(out,
                    "    server_tokens off;\n"
                    "    sendfile on;\n"
                    "    client_header_timeout %lldms;\n"
                    "    keepalive_timeout %lldms;\n"
                    "    client_body_temp_path %s/tmp/client_body;\n"
                    "    proxy_temp_path %s/tmp/proxy;\n"
                    "    fastcgi_temp_path %s/tmp/fastcgi;\n"
                    "    uwsgi_temp_path %s/tmp/uwsgi;\n"
                    "    scgi_temp_path %s/tmp/scgi;\n"
                    "    # Room for 10,000 names of up to 253 characters.\n"
                    "    server_names_hash_max_size 65536;\n"
                    "    server_names_hash_bucket_size 512;\n"
                    "    ssl_protocols TLSv1.2 TLSv1.3;\n"
                    "    ssl_session_cache shared:portico_tls:10m;\n"
                    "\n"
                    "    include %s/*.conf;\n"
                    "}\n",
                    m->header_timeout_ms, m->idle_timeout_ms, m->prefix, m->prefix, m->prefix, m->prefix,
                    m->prefix, m->sites_enabled);
}
