/* Proxies and settings for the nginx engine's tests, built directly in C
 * (no validation on the way: the tests decide what is valid). */
#ifndef PTC_TEST_NGINX_FIXTURES_H
#define PTC_TEST_NGINX_FIXTURES_H

#include "core/mem.h"
#include "engine/nginx_render.h"
#include "model/cert.h"
#include "model/proxy.h"

#include <stdarg.h>
#include <string.h>

/* A proxy with seed 000's defaults (websocket and security headers on)
 * and one upstream host:port of weight 1. */
static inline ptc_proxy *fx_proxy(const char *name, const char *domain, const char *prefix, const char *host,
                                  unsigned port)
{
    ptc_proxy *p = ptc_proxy_new();
    p->name = ptc_xstrdup(name);
    p->domain = ptc_xstrdup(domain);
    p->path_prefix = ptc_xstrdup(prefix);
    p->n_upstreams = 1;
    p->upstreams = ptc_xcalloc(1, sizeof(ptc_upstream));
    p->upstreams[0].host = ptc_xstrdup(host);
    p->upstreams[0].port = port;
    p->upstreams[0].weight = 1;
    p->require_healthy = false;
    p->websocket = true;
    p->security_headers = true;
    p->health_check.path = ptc_xstrdup("/health");
    p->health_check.interval_ms = 5000;
    p->health_check.timeout_ms = 1000;
    return p;
}

/* Adds an upstream to p. */
static inline void fx_add_upstream(ptc_proxy *p, const char *host, unsigned port, unsigned weight)
{
    p->upstreams = ptc_xrealloc(p->upstreams, (p->n_upstreams + 1) * sizeof(ptc_upstream));
    p->upstreams[p->n_upstreams].host = ptc_xstrdup(host);
    p->upstreams[p->n_upstreams].port = port;
    p->upstreams[p->n_upstreams].weight = weight;
    p->n_upstreams++;
}

/* A certificate record for domain with the given PEMs (not parsed). */
static inline ptc_cert *fx_cert(const char *domain, const char *cert_pem, const char *key_pem)
{
    ptc_cert *c = ptc_cert_new();
    c->domain = ptc_xstrdup(domain);
    c->cert_pem = ptc_xstrdup(cert_pem);
    c->key_pem = ptc_xstrdup(key_pem);
    c->source = ptc_xstrdup("uploaded");
    c->issuer = ptc_xstrdup("CN=test");
    c->subject = ptc_xstrdup("CN=test");
    c->fingerprint = ptc_xstrdup("00");
    return c;
}

/* The settings of the golden files: fixed absolute paths. */
static inline ptc_nginx_conf fx_conf(void)
{
    ptc_nginx_conf c = {
        .file_prefix = "portico-",
        .http_listen = "0.0.0.0:80",
        .https_listen = "0.0.0.0:443",
        .https_port = 443,
        .acme_webroot = "/var/lib/portico/acme-webroot",
        .certs_dir = "/var/lib/portico/certs",
        .trusted_proxies = "",
        .max_body_size = 1073741824ULL,
        .connect_timeout_ms = 5000,
        .upstream_timeout_ms = 60000,
    };
    return c;
}

#endif
