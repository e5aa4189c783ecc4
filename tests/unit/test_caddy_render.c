/* The Caddy config renderer: the shape of the JSON (admin, servers, TLS),
 * route order (exact hosts, wildcards longest first, prefixes longest
 * first), path matchers on segment boundaries, strip, headers, weights,
 * redirects to HTTPS and the 404 catch-alls. */
#include "core/mem.h"
#include "core/util.h"
#include "engine/caddy_render.h"
#include "testlib.h"

#include <stdlib.h>

static const ptc_proxy_defaults defs = {"/health", 1000, 5000};

static ptc_proxy *mk(const char *name, const char *body)
{
    json_t *j = json_loads(body, 0, NULL), *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, name, &defs, errors);
    if (p == NULL) {
        char *e = json_dumps(errors, 0);
        fprintf(stderr, "proxy %s: %s\n", name, e);
        free(e);
    }
    json_decref(j);
    json_decref(errors);
    return p;
}

static ptc_cert *cert(const char *domain)
{
    ptc_cert *c = ptc_cert_new();
    c->domain = ptc_xstrdup(domain);
    c->cert_pem = ptc_xasprintf("CERT for %s", domain);
    c->key_pem = ptc_xasprintf("KEY for %s", domain);
    c->source = ptc_xstrdup("uploaded");
    c->issuer = ptc_xstrdup("CN=test");
    c->subject = ptc_xstrdup("CN=test");
    c->fingerprint = ptc_xstrdup("00");
    return c;
}

/* j at a dotted path: "apps.http.servers.portico_http.routes.0". */
static json_t *at(json_t *j, const char *path)
{
    char *copy = ptc_xstrdup(path), *save = NULL;
    for (char *k = strtok_r(copy, ".", &save); k && j; k = strtok_r(NULL, ".", &save)) {
        char *end;
        long i = strtol(k, &end, 10);
        j = json_is_array(j) && *end == '\0' ? json_array_get(j, (size_t)i) : json_object_get(j, k);
    }
    free(copy);
    return j;
}

static const char *str_at(json_t *j, const char *path)
{
    return json_string_value(at(j, path));
}

static const ptc_caddy_render_opts opts = {
    .admin = "127.0.0.1:2999",
    .http_listen = "127.0.0.1:8080",
    .https_listen = "127.0.0.1:8443",
    .acme_webroot = "/srv/acme",
    .max_body_size = 1 << 20,
    .connect_timeout_ms = 5000,
    .upstream_timeout_ms = 60000,
    .grace_ms = 10000,
};

static void test_empty(void)
{
    ptc_state *st = ptc_state_new();
    json_t *j = ptc_caddy_render(st, &opts);
    CHECK_STR(str_at(j, "admin.listen"), "127.0.0.1:2999");
    CHECK(json_is_false(at(j, "admin.config.persist")));
    CHECK_STR(str_at(j, "apps.http.servers.portico_http.listen.0"), "127.0.0.1:8080");
    CHECK(json_is_true(at(j, "apps.http.servers.portico_http.automatic_https.disable")));
    CHECK(at(j, "apps.http.servers.portico_https") == NULL); /* no certificate, no TLS server */
    CHECK(at(j, "apps.tls") == NULL);
    CHECK_STR(str_at(j, "apps.http.grace_period"), "10000ms");
    json_t *routes = at(j, "apps.http.servers.portico_http.routes");
    CHECK_INT(json_array_size(routes), 2);
    CHECK_STR(str_at(routes, "0.match.0.path.0"), "/.well-known/acme-challenge/*");
    CHECK_STR(str_at(routes, "0.handle.0.handler"), "file_server");
    CHECK_STR(str_at(routes, "0.handle.0.root"), "/srv/acme");
    CHECK(at(routes, "1.match") == NULL);
    CHECK_STR(str_at(routes, "1.handle.0.handler"), "static_response");
    CHECK_INT(json_integer_value(at(routes, "1.handle.0.status_code")), 404);
    CHECK(strstr(str_at(routes, "1.handle.0.body"), "\"ROUTE_NOT_FOUND\"") != NULL);
    CHECK_STR(str_at(routes, "1.handle.0.headers.Content-Type.0"), "application/json");
    CHECK(at(j, "logging") == NULL); /* an operator's Caddy logs as it did */
    json_decref(j);

    /* The Caddy portico runs logs to a file it rolls itself. */
    ptc_caddy_render_opts managed = opts;
    managed.log_file = "/var/lib/portico/caddy/caddy.log";
    j = ptc_caddy_render(st, &managed);
    CHECK_STR(str_at(j, "logging.logs.default.writer.output"), "file");
    CHECK_STR(str_at(j, "logging.logs.default.writer.filename"), "/var/lib/portico/caddy/caddy.log");
    CHECK_INT(json_integer_value(at(j, "logging.logs.default.writer.roll_size_mb")), 10);
    CHECK_INT(json_integer_value(at(j, "logging.logs.default.writer.roll_keep")), 3);
    json_decref(j);
    ptc_state_release(st);
}

static void test_routes(void)
{
    ptc_proxy *ps[] = {
        mk("root", "{\"domain\": \"a.test\", \"upstream_port\": 1}"),
        mk("api",
           "{\"domain\": \"a.test\", \"path_prefix\": \"/api\", \"strip_prefix\": true, \"upstream_port\": 2,"
           " \"websocket\": false}"),
        mk("v2", "{\"domain\": \"a.test\", \"path_prefix\": \"/api/v2\", \"upstream_port\": 3,"
                 " \"security_headers\": false, \"max_body_size\": 1000}"),
        mk("wild", "{\"domain\": \"*.w.test\", \"upstream_port\": 4}"),
        mk("wilder", "{\"domain\": \"*.x.w.test\", \"upstream_port\": 5}"),
        mk("only",
           "{\"domain\": \"b.test\", \"path_prefix\": \"/x\", \"upstreams\": [{\"host\": \"::1\", \"port\": "
           "6, \"weight\": 2}, {\"host\": \"b.internal\", \"port\": 7, \"weight\": 6}]}"),
    };
    ptc_state *st = ptc_state_from(ps, PTC_ARRAY_LEN(ps), NULL, 0);
    json_t *j = ptc_caddy_render(st, &opts);
    json_t *routes = at(j, "apps.http.servers.portico_http.routes");

    /* acme, a.test, b.test, *.x.w.test, *.w.test, catch-all */
    CHECK_INT(json_array_size(routes), 6);
    CHECK_STR(str_at(routes, "1.match.0.host.0"), "a.test");
    CHECK_STR(str_at(routes, "2.match.0.host.0"), "b.test");
    CHECK_STR(str_at(routes, "3.match.0.header_regexp.Host.pattern"), "(?i)^.+\\.x\\.w\\.test(:[0-9]+)?$");
    CHECK_STR(str_at(routes, "4.match.0.header_regexp.Host.pattern"), "(?i)^.+\\.w\\.test(:[0-9]+)?$");
    CHECK(json_is_true(at(routes, "1.terminal")));
    CHECK_STR(str_at(routes, "1.handle.0.handler"), "subroute");

    /* a.test: /api/v2, /api, then / without a matcher (and no 404). */
    json_t *sub = at(routes, "1.handle.0.routes");
    CHECK_INT(json_array_size(sub), 3);
    CHECK_STR(str_at(sub, "0.match.0.path.0"), "/api/v2");
    CHECK_STR(str_at(sub, "0.match.0.path.1"), "/api/v2/*");
    CHECK_STR(str_at(sub, "1.match.0.path.0"), "/api");
    CHECK_STR(str_at(sub, "1.match.0.path.1"), "/api/*");
    CHECK(at(sub, "2.match") == NULL);
    CHECK(json_is_true(at(sub, "2.terminal")));

    /* /api: no websocket, body limit, strip, three security headers,
     * then the proxy. */
    json_t *h = at(sub, "1.handle");
    CHECK_INT(json_array_size(h), 7);
    CHECK_STR(str_at(h, "0.request.delete.0"), "Upgrade");
    CHECK_STR(str_at(h, "1.handler"), "request_body");
    CHECK_INT(json_integer_value(at(h, "1.max_size")), 1 << 20);
    CHECK_STR(str_at(h, "2.strip_path_prefix"), "/api");
    CHECK_STR(str_at(h, "3.response.set.X-Content-Type-Options.0"), "nosniff");
    CHECK(json_is_null(at(h, "3.response.require.headers.X-Content-Type-Options")));
    CHECK(json_is_true(at(h, "3.response.deferred")));
    CHECK_STR(str_at(h, "4.response.set.X-Frame-Options.0"), "SAMEORIGIN");
    CHECK_STR(str_at(h, "5.response.set.X-XSS-Protection.0"), "1; mode=block");
    CHECK_STR(str_at(h, "6.handler"), "reverse_proxy");
    CHECK_STR(str_at(h, "6.upstreams.0.dial"), "localhost:2");
    CHECK_STR(str_at(h, "6.headers.request.set.X-Real-IP.0"), "{http.request.remote.host}");
    CHECK_STR(str_at(h, "6.headers.request.set.X-Forwarded-Port.0"), "8080");
    CHECK_STR(str_at(h, "6.load_balancing.selection_policy.policy"), "round_robin");
    CHECK_STR(str_at(h, "6.transport.dial_timeout"), "5000ms");
    CHECK_STR(str_at(h, "6.transport.response_header_timeout"), "60000ms");
    CHECK_STR(str_at(h, "6.health_checks.active.path"), "/health");
    CHECK_STR(str_at(h, "6.health_checks.active.interval"), "5000ms");
    CHECK_STR(str_at(h, "6.health_checks.active.timeout"), "1000ms");

    /* /api/v2: no strip, no security headers, its own body limit. */
    h = at(sub, "0.handle");
    CHECK_INT(json_array_size(h), 2);
    CHECK_INT(json_integer_value(at(h, "0.max_size")), 1000);
    CHECK_STR(str_at(h, "1.handler"), "reverse_proxy");

    /* b.test: one prefix, then a 404 for the rest of the host; weights
     * 2:6 are 1:3 upstream entries; IPv6 in brackets. */
    sub = at(routes, "2.handle.0.routes");
    CHECK_INT(json_array_size(sub), 2);
    CHECK_INT(json_integer_value(at(sub, "1.handle.0.status_code")), 404);
    json_t *ups = at(sub, "0.handle.4.upstreams");
    CHECK_INT(json_array_size(ups), 4);
    CHECK_STR(str_at(ups, "0.dial"), "[::1]:6");
    CHECK_STR(str_at(ups, "1.dial"), "b.internal:7");
    CHECK_STR(str_at(ups, "3.dial"), "b.internal:7");

    CHECK(at(routes, "5.match") == NULL);
    CHECK_INT(json_integer_value(at(routes, "5.handle.0.status_code")), 404);
    json_decref(j);
    ptc_state_release(st);
}

static void test_weights_are_bounded(void)
{
    ptc_proxy *p = mk("lb", "{\"domain\": \"lb.test\", \"upstreams\": [{\"host\": \"10.0.0.1\", \"port\": 1, "
                            "\"weight\": 1}, {\"host\": \"10.0.0.2\", \"port\": 1, \"weight\": 1000}]}");
    ptc_state *st = ptc_state_from(&p, 1, NULL, 0);
    json_t *j = ptc_caddy_render(st, &opts);
    json_t *ups = at(j, "apps.http.servers.portico_http.routes.1.handle.0.routes.0.handle.4.upstreams");
    size_t first = 0;
    for (size_t i = 0; i < json_array_size(ups); i++)
        first += strcmp(str_at(ups, "0.dial"),
                        json_string_value(json_object_get(json_array_get(ups, i), "dial"))) == 0;
    CHECK_INT(first, 1); /* never dropped */
    CHECK(json_array_size(ups) <= PTC_CADDY_WEIGHT_SLOTS + 1);
    CHECK(json_array_size(ups) >= PTC_CADDY_WEIGHT_SLOTS - 1);
    json_decref(j);
    ptc_state_release(st);
}

static void test_tls_and_redirects(void)
{
    ptc_proxy *ps[] = {
        mk("secure", "{\"domain\": \"s.test\", \"upstream_port\": 1, \"enable_ssl\": true}"),
        mk("plain", "{\"domain\": \"p.test\", \"upstream_port\": 2}"),
        mk("nocert", "{\"domain\": \"n.test\", \"upstream_port\": 3, \"enable_ssl\": true}"),
        mk("wild", "{\"domain\": \"*.w.test\", \"upstream_port\": 4, \"enable_ssl\": true}"),
    };
    ptc_cert *certs[] = {cert("s.test"), cert("*.w.test")};
    ptc_state *st = ptc_state_from(ps, PTC_ARRAY_LEN(ps), certs, PTC_ARRAY_LEN(certs));
    json_t *j = ptc_caddy_render(st, &opts);

    CHECK_STR(str_at(j, "apps.http.servers.portico_https.listen.0"), "127.0.0.1:8443");
    CHECK(json_is_object(at(j, "apps.http.servers.portico_https.tls_connection_policies.0")));
    CHECK(json_is_true(at(j, "apps.http.servers.portico_https.automatic_https.disable")));
    CHECK_INT(json_array_size(at(j, "apps.tls.certificates.load_pem")), 2);
    CHECK_STR(str_at(j, "apps.tls.certificates.load_pem.0.certificate"), "CERT for *.w.test");
    CHECK_STR(str_at(j, "apps.tls.certificates.load_pem.0.key"), "KEY for *.w.test");

    /* HTTP: acme, n.test, p.test, s.test (301), *.w.test (301), 404. */
    json_t *http = at(j, "apps.http.servers.portico_http.routes");
    CHECK_INT(json_array_size(http), 6);
    CHECK_STR(str_at(http, "3.match.0.host.0"), "s.test");
    json_t *redirect = at(http, "3.handle.0.routes.0.handle.0");
    CHECK_INT(json_integer_value(json_object_get(redirect, "status_code")), 301);
    CHECK_STR(str_at(redirect, "headers.Location.0"), "https://{http.request.host}:8443{http.request.uri}");
    CHECK_INT(json_integer_value(at(http, "4.handle.0.routes.0.handle.0.status_code")), 301);
    CHECK_STR(str_at(http, "1.handle.0.routes.0.handle.4.handler"), "reverse_proxy"); /* no certificate */
    CHECK_STR(str_at(http, "2.handle.0.routes.0.handle.4.handler"), "reverse_proxy");

    /* HTTPS: the same hosts, proxied, no ACME route; the port written in
     * X-Forwarded-Port is the HTTPS listener's. */
    json_t *https = at(j, "apps.http.servers.portico_https.routes");
    CHECK_INT(json_array_size(https), 5);
    CHECK_STR(str_at(https, "0.match.0.host.0"), "n.test");
    json_t *rp = at(https, "2.handle.0.routes.0.handle.4");
    CHECK_STR(str_at(rp, "handler"), "reverse_proxy");
    CHECK_STR(str_at(rp, "headers.request.set.X-Forwarded-Port.0"), "8443");
    CHECK_STR(ptc_caddy_scheme_for(st, ps[0], &opts), "https");
    CHECK_STR(ptc_caddy_scheme_for(st, ps[2], &opts), "http");
    json_decref(j);

    /* Without an HTTPS listener: no TLS server and no redirect. */
    ptc_caddy_render_opts plain_only = opts;
    plain_only.https_listen = "";
    plain_only.acme_webroot = NULL;
    j = ptc_caddy_render(st, &plain_only);
    CHECK(at(j, "apps.http.servers.portico_https") == NULL);
    CHECK_STR(str_at(j, "apps.http.servers.portico_http.routes.2.match.0.host.0"), "s.test");
    CHECK_STR(str_at(j, "apps.http.servers.portico_http.routes.2.handle.0.routes.0.handle.4.handler"),
              "reverse_proxy");
    CHECK_STR(ptc_caddy_scheme_for(st, ps[0], &plain_only), "http");
    json_decref(j);

    /* On 443 the redirect carries no port. */
    ptc_caddy_render_opts std = opts;
    std.https_listen = "0.0.0.0:443";
    j = ptc_caddy_render(st, &std);
    CHECK_STR(
        str_at(j, "apps.http.servers.portico_http.routes.3.handle.0.routes.0.handle.0.headers.Location.0"),
        "https://{http.request.host}{http.request.uri}");
    json_decref(j);
    ptc_state_release(st);
}

int main(void)
{
    RUN(test_empty);
    RUN(test_routes);
    RUN(test_weights_are_bounded);
    RUN(test_tls_and_redirects);
    TEST_EXIT();
}
