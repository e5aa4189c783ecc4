/* The nginx renderer against golden files, byte for byte
 * (tests/golden/nginx/).  PTC_UPDATE_GOLDEN=1 rewrites the golden files
 * from the renderer instead (then review the diff). */
#include "core/buf.h"
#include "core/util.h"
#include "engine/nginx_check.h"
#include "engine/nginx_render.h"
#include "nginx_fixtures.h"
#include "testlib.h"

#include <stdlib.h>

#define GOLDEN_DIR "tests/golden/nginx/"

/* Compares text with the golden file name; reports the first differing
 * line. */
static void golden(const char *name, const ptc_buf *text)
{
    char *path = ptc_xasprintf(GOLDEN_DIR "%s", name);
    char *want = NULL;
    size_t len = 0;
    const char *update = getenv("PTC_UPDATE_GOLDEN");

    if (update && strcmp(update, "1") == 0) {
        CHECK_INT(ptc_file_write_atomic(path, text->data, text->len, 0644), 0);
        free(path);
        return;
    }
    int rc = ptc_file_read(path, 1 << 20, &want, &len);
    CHECK_INT(rc, 0);
    if (rc == 0 && (len != text->len || memcmp(want, text->data, len) != 0)) {
        size_t line = 1, i = 0;
        while (i < len && i < text->len && want[i] == text->data[i])
            line += want[i++] == '\n';
        fprintf(stderr, "%s differs from the renderer at line %zu\n", path, line);
        t_failures++;
    }
    free(want);
    free(path);
}

/* Renders the domain file of proxies, checks it and compares it. */
static void domain_case(const char *golden_name, const ptc_nginx_conf *c, const char *domain,
                        const ptc_proxy *const *proxies, size_t n, const ptc_cert *cert)
{
    ptc_buf b = PTC_BUF_INIT;
    char err[256] = "";
    ptc_nginx_render_domain(c, domain, proxies, n, cert, &b);
    ptc_nginx_expect e = {c, domain, proxies, n, cert};
    int rc = ptc_nginx_check(b.data, b.len, &e, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "%s: check: %s\n", golden_name, err);
    CHECK_INT(rc, 0);
    golden(golden_name, &b);
    ptc_buf_free(&b);
}

static void release_all(ptc_proxy **p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ptc_proxy_release(p[i]);
}

static void test_file_names(void)
{
    char *a = ptc_nginx_file_name("portico-", "orders.example.com");
    char *b = ptc_nginx_file_name("portico-", "*.example.com");
    char *c = ptc_nginx_cert_dir_name("*.example.com");
    CHECK_STR(a, "portico-orders.example.com.conf");
    CHECK_STR(b, "portico-_.example.com.conf");
    CHECK_STR(c, "_.example.com");
    free(a);
    free(b);
    free(c);
}

static void test_listen_form(void)
{
    char out[64];
    unsigned port = 0;
    CHECK_INT(ptc_nginx_listen_form("0.0.0.0:8080", out, sizeof(out), &port), 0);
    CHECK_STR(out, "0.0.0.0:8080");
    CHECK_INT(port, 8080);
    CHECK_INT(ptc_nginx_listen_form("[::]:8443", out, sizeof(out), &port), 0);
    CHECK_STR(out, "[::]:8443");
    CHECK_INT(ptc_nginx_listen_form(":80", out, sizeof(out), &port), 0);
    CHECK_STR(out, "80");
    CHECK(ptc_nginx_listen_form("nonsense", out, sizeof(out), &port) != 0);
}

/* Seed 000's usage example: one route, plain HTTP. */
static void test_http(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("orchestrator", "orchestrator.fullpotential.ai", "/", "localhost", 8001);
    domain_case("http.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, NULL);
    release_all(&p, 1);
}

/* enable_ssl with a certificate: HTTPS server and a 301 from HTTP, on 443
 * and on another port. */
static void test_https(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("orchestrator", "orchestrator.fullpotential.ai", "/", "localhost", 8001);
    ptc_cert *cert = fx_cert("orchestrator.fullpotential.ai", "C", "K");
    p->enable_ssl = true;
    domain_case("https.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, cert);
    c.https_listen = "0.0.0.0:8443";
    c.https_port = 8443;
    domain_case("https_port.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, cert);
    /* Without an HTTPS listener, or without a certificate, it stays HTTP. */
    c.https_listen = "";
    domain_case("http_ssl_no_listener.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, cert);
    release_all(&p, 1);
    ptc_cert_release(cert);
}

/* Several prefixes on one domain, with and without stripping, and no root
 * route (a JSON 404 answers the other paths); one proxy without TLS on a
 * TLS domain keeps plain HTTP for its paths. */
static void test_prefixes(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p[4] = {
        fx_proxy("api", "app.example.com", "/api", "10.0.0.5", 8001),
        fx_proxy("api-v2", "app.example.com", "/api/v2", "10.0.0.6", 8002),
        fx_proxy("static", "app.example.com", "/static", "10.0.0.7", 8003),
        fx_proxy("admin", "app.example.com", "/admin", "10.0.0.8", 8004),
    };
    p[0]->strip_prefix = true;
    p[1]->strip_prefix = true;
    domain_case("prefixes.conf", &c, "app.example.com", (const ptc_proxy *const *)p, 4, NULL);

    ptc_cert *cert = fx_cert("*.example.com", "C", "K");
    p[0]->enable_ssl = p[1]->enable_ssl = p[3]->enable_ssl = true;
    domain_case("mixed_tls.conf", &c, "app.example.com", (const ptc_proxy *const *)p, 4, cert);
    ptc_cert_release(cert);
    release_all(p, 4);
}

/* Several weighted upstreams, one of them IPv6. */
static void test_upstreams(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("orders", "orders.example.com", "/", "10.0.0.5", 8001);
    p->upstreams[0].weight = 5;
    fx_add_upstream(p, "10.0.0.6", 8001, 1);
    fx_add_upstream(p, "2001:db8::7", 8443, 1000);
    fx_add_upstream(p, "orders-backend.internal", 9000, 2);
    domain_case("upstreams.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, NULL);
    release_all(&p, 1);
}

static void test_wildcard(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("tenants", "*.example.com", "/", "10.0.0.9", 8080);
    ptc_cert *cert = fx_cert("*.example.com", "C", "K");
    p->enable_ssl = true;
    domain_case("wildcard.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, cert);
    ptc_cert_release(cert);
    release_all(&p, 1);
}

/* websocket and security headers off, a body limit of the proxy's own. */
static void test_plain(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("legacy", "legacy.example.com", "/old", "192.168.1.20", 80);
    p->websocket = false;
    p->security_headers = false;
    p->strip_prefix = true;
    p->max_body_size = 10485760;
    domain_case("plain.conf", &c, p->domain, (const ptc_proxy *const[]){p}, 1, NULL);
    release_all(&p, 1);
}

static void test_default(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_buf b = PTC_BUF_INIT;
    char err[256] = "";
    ptc_nginx_expect e = {&c, NULL, NULL, 0, NULL};

    c.trusted_proxies = "10.0.0.0/8, 2001:db8::/32,192.168.1.1";
    ptc_nginx_render_default(&c, &b);
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), 0);
    golden("default.conf", &b);

    ptc_buf_reset(&b);
    c.trusted_proxies = "";
    c.https_listen = "";
    ptc_nginx_render_default(&c, &b);
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), 0);
    golden("default_http.conf", &b);
    ptc_buf_free(&b);
}

static void test_main(void)
{
    ptc_nginx_main_conf m = {
        .prefix = "/var/lib/portico/nginx",
        .pid_file = "/var/lib/portico/nginx/nginx.pid",
        .error_log = "/var/lib/portico/nginx/logs/error.log",
        .access_log = NULL,
        .sites_enabled = "/var/lib/portico/nginx/sites-enabled",
        .as_root = true,
        .workers = 0,
        .header_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .drain_timeout_ms = 10000,
    };
    ptc_buf b = PTC_BUF_INIT;
    ptc_nginx_render_main(&m, &b);
    golden("main.conf", &b);
    ptc_buf_reset(&b);
    m.as_root = false;
    m.workers = 2;
    m.access_log = "/var/log/portico/access.log";
    ptc_nginx_render_main(&m, &b);
    golden("main_user.conf", &b);
    ptc_buf_free(&b);
}

int main(void)
{
    RUN(test_file_names);
    RUN(test_listen_form);
    RUN(test_http);
    RUN(test_https);
    RUN(test_prefixes);
    RUN(test_upstreams);
    RUN(test_wildcard);
    RUN(test_plain);
    RUN(test_default);
    RUN(test_main);
    TEST_EXIT();
}
