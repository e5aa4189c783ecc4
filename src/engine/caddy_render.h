/* Rendering the desired state as Caddy's JSON config (Caddy 2.6), loaded
 * whole through its admin API by the caddy engine.  A pure function of
 * the state and a few settings, so that it is tested without a Caddy.
 *
 * Shape:
 *   admin.listen = caddy_admin (a loaded config replaces the admin settings
 *   too), config persistence off;
 *   apps.http.servers.portico_http on http_listen, and portico_https on
 *   https_listen when there is a certificate (TLS is per server in Caddy,
 *   so HTTP and HTTPS are two servers with the same routes); automatic
 *   HTTPS off on both: portico supplies the certificates;
 *   routes, in order: the ACME HTTP-01 webroot (file_server, HTTP only),
 *   one route per Host -- exact names, then wildcards longest suffix
 *   first -- holding a subroute of its path prefixes, longest first, and a
 *   404; last, the catch-all 404 ROUTE_NOT_FOUND;
 *   apps.tls.certificates.load_pem with every certificate.
 *
 * The builtin engine's routing is kept: Host picks the group and never
 * falls through to another; "/api" matches "/api" and "/api/..." but not
 * "/apix" (the path matchers "/api" and "/api/" with a star); a wildcard "*.example.com"
 * matches any number of labels (a Host header_regexp, since Caddy's host
 * matcher takes one label).  Differences that remain: Caddy matches paths
 * case-insensitively, and spreads weighted upstreams by listing each one
 * weight times (reduced by their common divisor, at most
 * PTC_CADDY_WEIGHT_SLOTS entries) under round_robin, because Caddy 2.6 has
 * no weighted_round_robin policy. */
#ifndef PTC_ENGINE_CADDY_RENDER_H
#define PTC_ENGINE_CADDY_RENDER_H

#include "model/state.h"

#include <jansson.h>
#include <stdint.h>

#define PTC_CADDY_WEIGHT_SLOTS 100

typedef struct ptc_caddy_render_opts {
    const char *admin;        /* caddy_admin, "host:port" */
    const char *http_listen;  /* "host:port" */
    const char *https_listen; /* "host:port", or "" for none */
    const char *acme_webroot; /* absolute folder served at /.well-known/acme-challenge/, or NULL */
    uint64_t max_body_size;   /* for routes without their own */
    unsigned connect_timeout_ms;
    unsigned upstream_timeout_ms;
    unsigned grace_ms; /* how long a replaced config may drain */
    /* A Caddy portico runs itself logs here, rolled by Caddy (10 MB, three
     * kept); NULL leaves an operator's Caddy logging as it was. */
    const char *log_file;
} ptc_caddy_render_opts;

/* The config for st (a new reference).  Never fails: every value was
 * validated before it reached the state. */
json_t *ptc_caddy_render(const ptc_state *st, const ptc_caddy_render_opts *o);

/* The listener that serves p: "https" when it has a certificate, wants
 * HTTPS and there is an HTTPS listener, else "http". */
const char *ptc_caddy_scheme_for(const ptc_state *st, const ptc_proxy *p, const ptc_caddy_render_opts *o);

#endif
