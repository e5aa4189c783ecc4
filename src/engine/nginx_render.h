/* Rendering of nginx configuration from the desired state (DESIGN §9, seed
 * 000's templates, seed 003's extras).  One file per domain holding an
 * upstream block per proxy and the domain's server blocks with a location
 * pair per proxy; a catch-all file with the default servers and the maps
 * the domain files use; and, for a managed nginx, the main nginx.conf.
 *
 * Every value rendered from a proxy has passed model/validate.h; the
 * output is still checked token by token (nginx_check.h) before it is
 * written.  Pure functions: no I/O, output appended to a ptc_buf. */
#ifndef PTC_ENGINE_NGINX_RENDER_H
#define PTC_ENGINE_NGINX_RENDER_H

#include "core/buf.h"
#include "model/cert.h"
#include "model/proxy.h"

#include <stdbool.h>
#include <stddef.h>

/* What the site files need from the settings, resolved once: listen
 * addresses as nginx spells them and absolute paths. */
typedef struct ptc_nginx_conf {
    const char *file_prefix;     /* "portico-" */
    const char *http_listen;     /* nginx form: "0.0.0.0:8080", "[::]:8080" or "8080" */
    const char *https_listen;    /* nginx form, or "" for no HTTPS listener */
    unsigned https_port;         /* port of https_listen (for redirects) */
    const char *acme_webroot;    /* absolute */
    const char *certs_dir;       /* absolute: {state_dir}/certs */
    const char *trusted_proxies; /* CIDR list (commas), or "" */
    unsigned long long max_body_size;
    long long connect_timeout_ms;
    long long upstream_timeout_ms;
    /* Upstream health (issue 5): true when the active checks hold the
     * address host:port down.  Its server lines are rendered `down`, and a
     * proxy whose upstreams are all down answers 503 NO_HEALTHY_UPSTREAM
     * itself, as the builtin engine does.  NULL: every address is up. */
    bool (*upstream_down)(const void *arg, const char *host, unsigned port);
    const void *upstream_down_arg;
} ptc_nginx_conf;

/* The main nginx.conf of a managed nginx (everything inside prefix). */
typedef struct ptc_nginx_main_conf {
    const char *prefix;        /* absolute, the -p folder */
    const char *pid_file;      /* absolute */
    const char *error_log;     /* absolute */
    const char *access_log;    /* absolute path, or NULL for none */
    const char *sites_enabled; /* absolute folder whose *.conf are included */
    bool as_root;              /* master runs as root: `user root;` */
    int workers;               /* 0: auto */
    long long header_timeout_ms;
    long long idle_timeout_ms;
    long long drain_timeout_ms;
} ptc_nginx_main_conf;

/* The JSON body of portico's own 404s (same as the builtin engine's). */
#define PTC_NGINX_NOT_FOUND_HOST                                                                             \
    "{\"error\":{\"code\":\"ROUTE_NOT_FOUND\",\"message\":\"no route for this host\"}}"
#define PTC_NGINX_NOT_FOUND_PATH                                                                             \
    "{\"error\":{\"code\":\"ROUTE_NOT_FOUND\",\"message\":\"no route for this path\"}}"
/* ... and of its 503 when no upstream of a route is healthy. */
#define PTC_NGINX_NO_HEALTHY_UPSTREAM                                                                        \
    "{\"error\":{\"code\":\"NO_HEALTHY_UPSTREAM\",\"message\":\"no healthy upstream for this route\"}}"

/* Name of the catch-all file, without the prefix ("_" cannot start a
 * domain, so no domain file can take it). */
#define PTC_NGINX_DEFAULT_NAME "_default"

/* "{prefix}{domain}.conf", with a wildcard's "*" spelled "_" (new string). */
char *ptc_nginx_file_name(const char *prefix, const char *domain);
/* The folder name of a certificate under certs_dir: the domain, "*" as "_"
 * (new string). */
char *ptc_nginx_cert_dir_name(const char *domain);

/* True when the domain file gets an HTTPS server: an HTTPS listener, a
 * certificate for the domain (cert non-NULL) and a proxy asking for it. */
bool ptc_nginx_domain_tls(const ptc_nginx_conf *c, const ptc_proxy *const *proxies, size_t n,
                          const ptc_cert *cert);

/* Appends the file of one domain: proxies (n >= 1, all of that domain, in
 * any order; rendered sorted by path prefix) and cert, the certificate that
 * serves the domain (exact or wildcard) or NULL. */
void ptc_nginx_render_domain(const ptc_nginx_conf *c, const char *domain, const ptc_proxy *const *proxies,
                             size_t n, const ptc_cert *cert, ptc_buf *out);

/* Whether the health checks hold u down, and whether they hold every
 * upstream of p down (see ptc_nginx_conf.upstream_down). */
bool ptc_nginx_upstream_down(const ptc_nginx_conf *c, const ptc_upstream *u);
bool ptc_nginx_all_down(const ptc_nginx_conf *c, const ptc_proxy *p);

/* Appends the catch-all file: the maps the domain files rely on and a
 * default_server on each listener answering 404 ROUTE_NOT_FOUND (HTTPS:
 * handshakes without a known name are refused). */
void ptc_nginx_render_default(const ptc_nginx_conf *c, ptc_buf *out);

/* Appends a managed nginx's main config. */
void ptc_nginx_render_main(const ptc_nginx_main_conf *m, ptc_buf *out);

/* Converts a settings address ("host:port", "[v6]:port", ":port") to
 * nginx's listen form into out; returns 0 or -EINVAL.  *port gets the
 * port. */
int ptc_nginx_listen_form(const char *addr, char *out, size_t outlen, unsigned *port);

#endif
