/* The structural checker of rendered nginx files: good files pass; files
 * rendered from hostile proxies (built in C, past validation) and
 * hand-made hostile files are refused. */
#include "core/buf.h"
#include "core/util.h"
#include "engine/nginx_check.h"
#include "engine/nginx_render.h"
#include "nginx_fixtures.h"
#include "testlib.h"

#include <errno.h>
#include <stdlib.h>

/* Renders the domain file of p (and its domain) and checks it. */
static int render_check(const ptc_nginx_conf *c, const ptc_proxy *p, const ptc_cert *cert, char *err,
                        size_t errlen)
{
    ptc_buf b = PTC_BUF_INIT;
    const ptc_proxy *const list[] = {p};
    ptc_nginx_render_domain(c, p->domain, list, 1, cert, &b);
    ptc_nginx_expect e = {c, p->domain, list, 1, cert};
    int rc = ptc_nginx_check(b.data, b.len, &e, err, errlen);
    ptc_buf_free(&b);
    return rc;
}

static int check_text(const char *text, const ptc_proxy *p, char *err, size_t errlen)
{
    ptc_nginx_conf c = fx_conf();
    const ptc_proxy *const list[] = {p};
    ptc_nginx_expect e = {&c, p ? p->domain : NULL, p ? list : NULL, p ? 1 : 0, NULL};
    return ptc_nginx_check(text, strlen(text), &e, err, errlen);
}

static const char *const hostile[] = {
    ";",
    "a;b",
    "x; include /etc/passwd",
    "x { }",
    "x}",
    "x{",
    "}",
    "a\"b",
    "\"quoted\"",
    "a'b",
    "'",
    "a\nb",
    "a\n}\nserver {",
    "$host",
    "a$x",
    "${x}",
    "#",
    "a #b",
    "a#b",
    "a b",
    " ",
    "\t",
    "a\\b",
    "a\\;b",
    "\r\n",
    "\xc3\xa9",
    "\x01",
};

/* Every hostile value in the domain is refused. */
static void test_hostile_domain(void)
{
    ptc_nginx_conf c = fx_conf();
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile); i++) {
        char err[256] = "";
        char *domain = ptc_xasprintf("ok.example.com%s", hostile[i]);
        ptc_proxy *p = fx_proxy("web", domain, "/", "10.0.0.1", 80);
        int rc = render_check(&c, p, NULL, err, sizeof(err));
        if (rc != -EINVAL)
            fprintf(stderr, "domain %zu accepted\n", i);
        CHECK_INT(rc, -EINVAL);
        ptc_proxy_release(p);
        free(domain);
    }
    /* Valid characters, invalid domains: upper case, IP literal, label rules. */
    static const char *const bad[] = {"Example.com", "10.0.0.1",        "-a.example.com",
                                      "a..b",        "*.*.example.com", "_"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        char err[256] = "";
        ptc_proxy *p = fx_proxy("web", bad[i], "/", "10.0.0.1", 80);
        CHECK_INT(render_check(&c, p, NULL, err, sizeof(err)), -EINVAL);
        ptc_proxy_release(p);
    }
}

static void test_hostile_upstream_host(void)
{
    ptc_nginx_conf c = fx_conf();
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile); i++) {
        char err[256] = "";
        char *host = ptc_xasprintf("backend%s", hostile[i]);
        ptc_proxy *p = fx_proxy("web", "ok.example.com", "/", host, 80);
        int rc = render_check(&c, p, NULL, err, sizeof(err));
        if (rc != -EINVAL)
            fprintf(stderr, "upstream host %zu accepted\n", i);
        CHECK_INT(rc, -EINVAL);
        ptc_proxy_release(p);
        free(host);
    }
    /* "host:port" smuggled into the host, a unix socket, a bad port. */
    static const char *const bad[] = {"10.0.0.1:81", "unix:/run/x.sock", "[::1]",
                                      "::1]:80 weight=9; server [::1",
                                      /* one token each; found by fuzz_nginx_render */
                                      "::1]:9999", "::1]:8---", "a:b"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        char err[256] = "";
        ptc_proxy *p = fx_proxy("web", "ok.example.com", "/", bad[i], 80);
        CHECK_INT(render_check(&c, p, NULL, err, sizeof(err)), -EINVAL);
        ptc_proxy_release(p);
    }
    char err[256] = "";
    ptc_proxy *p = fx_proxy("web", "ok.example.com", "/", "10.0.0.1", 0);
    CHECK_INT(render_check(&c, p, NULL, err, sizeof(err)), -EINVAL);
    p->upstreams[0].port = 70000;
    CHECK_INT(render_check(&c, p, NULL, err, sizeof(err)), -EINVAL);
    p->upstreams[0].port = 80;
    p->upstreams[0].weight = 0;
    CHECK_INT(render_check(&c, p, NULL, err, sizeof(err)), -EINVAL);
    ptc_proxy_release(p);
}

static void test_hostile_path(void)
{
    ptc_nginx_conf c = fx_conf();
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile); i++) {
        char err[256] = "";
        char *path = ptc_xasprintf("/api%s", hostile[i]);
        ptc_proxy *p = fx_proxy("web", "ok.example.com", path, "10.0.0.1", 80);
        int rc = render_check(&c, p, NULL, err, sizeof(err));
        if (rc != -EINVAL)
            fprintf(stderr, "path %zu accepted\n", i);
        CHECK_INT(rc, -EINVAL);
        ptc_proxy_release(p);
        free(path);
    }
    static const char *const bad[] = {
        "api", "/a/../b", "/a//b", "/a?b", "/a%2e", "~ ^/(.*)$", "/.well-known/acme-challenge"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        char err[256] = "";
        ptc_proxy *p = fx_proxy("web", "ok.example.com", bad[i], "10.0.0.1", 80);
        int rc = render_check(&c, p, NULL, err, sizeof(err));
        if (rc != -EINVAL)
            fprintf(stderr, "path %s accepted\n", bad[i]);
        CHECK_INT(rc, -EINVAL);
        ptc_proxy_release(p);
    }
}

static void test_hostile_name(void)
{
    ptc_nginx_conf c = fx_conf();
    static const char *const bad[] = {"a;b", "a b", "a{", "A", "a$b", "a/b", "-a"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        char err[256] = "";
        ptc_proxy *p = fx_proxy(bad[i], "ok.example.com", "/", "10.0.0.1", 80);
        CHECK_INT(render_check(&c, p, NULL, err, sizeof(err)), -EINVAL);
        ptc_proxy_release(p);
    }
}

/* A value cut short by a NUL byte inside the rendered text: the byte count
 * says more than the C string, and the checker reads bytes. */
static void test_nul_truncation(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("web", "ok.example.com", "/api", "10.0.0.1", 80);
    const ptc_proxy *const list[] = {p};
    ptc_nginx_expect e = {&c, p->domain, list, 1, NULL};
    static const char *const needles[] = {"server_name ok.example.com", "server 10.0.0.1", "location = /api"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(needles); i++) {
        ptc_buf b = PTC_BUF_INIT;
        char err[256] = "";
        ptc_nginx_render_domain(&c, p->domain, list, 1, NULL, &b);
        char *at = strstr(b.data, needles[i]);
        CHECK(at != NULL);
        if (at)
            at[strlen(needles[i]) - 2] = '\0';
        CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), -EINVAL);
        CHECK(strstr(err, "NUL") != NULL);
        ptc_buf_free(&b);
    }
    /* A domain whose C string ends early renders a file for the short name,
     * which does not match what the caller expects. */
    ptc_buf b = PTC_BUF_INIT;
    char err[256] = "";
    ptc_nginx_render_domain(&c, "ok.example.com\0.evil", list, 1, NULL, &b);
    ptc_nginx_expect e2 = {&c, "ok.example.co", list, 1, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e2, err, sizeof(err)), -EINVAL);
    ptc_buf_free(&b);
    ptc_proxy_release(p);
}

/* Good files pass, including after a round trip through every flag. */
static void test_good(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_cert *cert = fx_cert("ok.example.com", "C", "K");
    ptc_proxy *p = fx_proxy("web", "ok.example.com", "/api", "2001:db8::1", 443);
    for (unsigned bits = 0; bits < 32; bits++) {
        char err[256] = "";
        p->strip_prefix = bits & 1;
        p->websocket = bits & 2;
        p->security_headers = bits & 4;
        p->enable_ssl = bits & 8;
        c.https_port = bits & 16 ? 443 : 8443;
        c.https_listen = bits & 16 ? "0.0.0.0:443" : "[::]:8443";
        int rc = render_check(&c, p, bits & 8 ? cert : NULL, err, sizeof(err));
        if (rc != 0)
            fprintf(stderr, "bits %u: %s\n", bits, err);
        CHECK_INT(rc, 0);
    }
    ptc_proxy_release(p);
    ptc_cert_release(cert);
}

/* The checker compares with the expectation: a proxy the caller did not
 * pass, or one missing, is refused. */
static void test_expectation(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *a = fx_proxy("a", "ok.example.com", "/a", "10.0.0.1", 80);
    ptc_proxy *b2 = fx_proxy("b", "ok.example.com", "/b", "10.0.0.2", 80);
    ptc_buf b = PTC_BUF_INIT;
    char err[256] = "";
    const ptc_proxy *const both[] = {a, b2};
    ptc_nginx_render_domain(&c, "ok.example.com", both, 2, NULL, &b);
    ptc_nginx_expect e = {&c, "ok.example.com", both, 1, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), -EINVAL);
    const ptc_proxy *const three[] = {a, b2, a};
    ptc_nginx_expect e3 = {&c, "ok.example.com", three, 3, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e3, err, sizeof(err)), -EINVAL);
    ptc_nginx_expect e2 = {&c, "other.example.com", both, 2, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e2, err, sizeof(err)), -EINVAL);
    ptc_nginx_expect ok = {&c, "ok.example.com", both, 2, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &ok, err, sizeof(err)), 0);
    ptc_buf_free(&b);
    ptc_proxy_release(a);
    ptc_proxy_release(b2);
}

/* Upstream health (issue 5): addresses the checks hold down are rendered
 * `down`; a proxy with every upstream down answers 503 itself; the
 * checker accepts exactly that and nothing else. */
static bool down_list(const void *arg, const char *host, unsigned port)
{
    (void)port;
    for (const char *const *h = arg; *h; h++)
        if (strcmp(*h, host) == 0)
            return true;
    return false;
}

static void test_upstream_down(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_nginx_conf up = fx_conf();
    ptc_proxy *p = fx_proxy("pool", "pool.example.com", "/", "10.0.0.1", 80);
    fx_add_upstream(p, "10.0.0.2", 80, 3);
    const ptc_proxy *const list[] = {p};
    static const char *const one[] = {"10.0.0.1", NULL};
    static const char *const both[] = {"10.0.0.1", "10.0.0.2", NULL};
    ptc_buf b = PTC_BUF_INIT;
    char err[256] = "";

    c.upstream_down = down_list;
    c.upstream_down_arg = one;
    ptc_nginx_render_domain(&c, p->domain, list, 1, NULL, &b);
    CHECK(strstr(b.data, "server 10.0.0.1:80 weight=1 down;") != NULL);
    CHECK(strstr(b.data, "server 10.0.0.2:80 weight=3;") != NULL);
    CHECK(strstr(b.data, "proxy_pass http://portico_pool;") != NULL);
    ptc_nginx_expect e = {&c, p->domain, list, 1, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), 0);
    /* the same file is wrong for a checker that thinks both are up */
    ptc_nginx_expect e_up = {&up, p->domain, list, 1, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e_up, err, sizeof(err)), -EINVAL);

    ptc_buf_reset(&b);
    c.upstream_down_arg = both;
    ptc_nginx_render_domain(&c, p->domain, list, 1, NULL, &b);
    CHECK(strstr(b.data, "server 10.0.0.2:80 weight=3 down;") != NULL);
    CHECK(strstr(b.data, "proxy_pass") == NULL);
    CHECK(strstr(b.data, "return 503 '" PTC_NGINX_NO_HEALTHY_UPSTREAM "';") != NULL);
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), 0);
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e_up, err, sizeof(err)), -EINVAL);
    /* an HTTPS-only proxy still redirects plain HTTP when all are down */
    ptc_cert *cert = fx_cert("pool.example.com", "C", "K");
    p->enable_ssl = true;
    ptc_buf_reset(&b);
    ptc_nginx_render_domain(&c, p->domain, list, 1, cert, &b);
    ptc_nginx_expect et = {&c, p->domain, list, 1, cert};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &et, err, sizeof(err)), 0);
    CHECK(strstr(b.data, "return 301") != NULL && strstr(b.data, "return 503") != NULL);
    ptc_cert_release(cert);
    ptc_buf_free(&b);
    ptc_proxy_release(p);
}

/* Hand-made files: the template with one line changed. */
static void test_hostile_files(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_proxy *p = fx_proxy("web", "ok.example.com", "/", "10.0.0.1", 80);
    const ptc_proxy *const list[] = {p};
    ptc_buf good = PTC_BUF_INIT;
    ptc_nginx_render_domain(&c, p->domain, list, 1, NULL, &good);
    static const struct {
        const char *find, *replace, *why;
    } edits[] = {
        /* why: a word of the error, or "" for an edit that must pass */
        {"upstream portico_web {", "load_module /tmp/evil.so;\nupstream portico_web {", "forbidden"},
        {"upstream portico_web {", "ssl_engine evil;\nupstream portico_web {", "forbidden"},
        {"upstream portico_web {", "include /etc/nginx/evil.conf;\nupstream portico_web {", "forbidden"},
        {"proxy_http_version 1.1;", "proxy_http_version 1.1;\n        content_by_lua_file /tmp/evil.lua;",
         "forbidden"},
        {"proxy_http_version 1.1;", "proxy_http_version 1.1;\n        perl Evil::handler;", "forbidden"},
        {"proxy_http_version 1.1;", "proxy_http_version 1.1;\n        js_content evil.run;", "forbidden"},
        {"proxy_http_version 1.1;", "proxy_http_version 1.1;\n        root /;", "unexpected"},
        {"proxy_http_version 1.1;", "proxy_http_version 1.1;\n        alias /etc/;", "unexpected"},
        {"proxy_http_version 1.1;", "proxy_http_version 1.0;", "must be"},
        {"proxy_http_version 1.1;", "", "incomplete"},
        {"server_name ok.example.com;", "server_name ok.example.com evil.example.com;", "argument"},
        {"server_name ok.example.com;", "server_name \"ok.example.com\";", "quoted"},
        {"listen 0.0.0.0:80;", "listen 0.0.0.0:80 default_server;", "argument"},
        {"proxy_set_header Host $host;", "proxy_set_header Host $http_x_evil;", "variable"},
        {"proxy_set_header Host $host;", "proxy_set_header Host ${host};", "not allowed"},
        {"proxy_set_header Host $host;", "proxy_set_header Host $uri;", "variable"},
        {"proxy_set_header Host $host;", "proxy_set_header Host $host;\n        proxy_set_header Host $host;",
         "unexpected"},
        {"add_header X-Frame-Options \"SAMEORIGIN\" always;", "add_header X-Frame-Options \"ALLOW\" always;",
         "quoted"},
        {"root /var/lib/portico/acme-webroot;", "root /;", "must be"},
        {"location / {", "location ~ .* {", "modifier"},
        {"location / {", "location = / {", "no proxy"},
        {"location / {", "location /x {", "without modifier"},
        {"location / {", "location / { }\n    location /y {", "incomplete"},
        {"keepalive 32;", "keepalive 32;\n    server 10.6.6.6:80 weight=1;", "unexpected"},
        {"proxy_pass http://portico_web;", "proxy_pass http://10.6.6.6;", "must be"},
        {"proxy_pass http://portico_web;", "proxy_pass   http://portico_web ;", ""},
        {"# Managed", "\\# Managed", "backslash"},
        {"# Managed", "\"unterminated", "quoted"},
        {"server {", "server \"x\"y {", "after a quoted"},
        {"    keepalive 32;\n}", "    keepalive 32;\n", "end of file"},
        {"    keepalive 32;\n}", "    keepalive 32;\n}\n}", "unexpected"},
        {"    keepalive 32;\n}", "    keepalive 32;\n}\nserver { location / { if ($x) { return 200; } } }",
         "not allowed"},
    };
    for (size_t i = 0; i < PTC_ARRAY_LEN(edits); i++) {
        char err[256] = "";
        const char *at = strstr(good.data, edits[i].find);
        CHECK(at != NULL);
        if (at == NULL)
            continue;
        char *text = ptc_xasprintf("%.*s%s%s", (int)(at - good.data), good.data, edits[i].replace,
                                   at + strlen(edits[i].find));
        int rc = check_text(text, p, err, sizeof(err));
        if (edits[i].why[0] == '\0') {
            /* An equivalent spelling: nginx reads the same tokens. */
            CHECK_INT(rc, 0);
        } else {
            CHECK_INT(rc, -EINVAL);
            if (strstr(err, edits[i].why) == NULL)
                fprintf(stderr, "edit %zu: \"%s\" lacks \"%s\"\n", i, err, edits[i].why);
            CHECK(strstr(err, edits[i].why) != NULL);
        }
        free(text);
    }
    ptc_buf_free(&good);
    ptc_proxy_release(p);
}

/* nginx's lexical rules as the checker applies them. */
static void test_lexer(void)
{
    char err[256], out[64];
    /* '}' inside a word, '#' inside a word, quoted ';'. */
    const char *t1 = "pid /run/a}b#c.pid;\nerror_log \"x; y\" warn;\n";
    CHECK_INT(ptc_nginx_find_directive(t1, strlen(t1), "pid", out, sizeof(out)), 0);
    CHECK_STR(out, "/run/a}b#c.pid");
    CHECK_INT(ptc_nginx_find_directive(t1, strlen(t1), "error_log", out, sizeof(out)), 0);
    CHECK_STR(out, "x; y");
    /* '#' at a token's start is a comment; main context only. */
    const char *t2 = "# pid /nope;\nhttp { pid /inner; }\nuser www-data;\npid /run/nginx.pid;";
    CHECK_INT(ptc_nginx_find_directive(t2, strlen(t2), "pid", out, sizeof(out)), 0);
    CHECK_STR(out, "/run/nginx.pid");
    CHECK_INT(ptc_nginx_find_directive(t2, strlen(t2), "worker_processes", out, sizeof(out)), -ENOENT);
    /* Someone else's config may nest deeply and have many arguments. */
    const char *t3 =
        "http { log_format main a b c d e f g h i j; server { location / { if ($x) { return 200; } } } }\n"
        "pid 'quoted';";
    CHECK_INT(ptc_nginx_find_directive(t3, strlen(t3), "pid", out, sizeof(out)), 0);
    CHECK_STR(out, "quoted");
    const char *t4 = "pid \"unterminated;";
    CHECK_INT(ptc_nginx_find_directive(t4, strlen(t4), "pid", out, sizeof(out)), -EINVAL);
    /* The checker: an empty file is no valid catch-all file. */
    CHECK_INT(check_text("", NULL, err, sizeof(err)), -EINVAL);
    CHECK_INT(check_text(";", NULL, err, sizeof(err)), -EINVAL);
    CHECK_INT(check_text("{", NULL, err, sizeof(err)), -EINVAL);
    CHECK_INT(check_text("}", NULL, err, sizeof(err)), -EINVAL);
    CHECK_INT(check_text("map \"open", NULL, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "unterminated") != NULL);
}

/* The catch-all file: tampering is refused. */
static void test_default_file(void)
{
    ptc_nginx_conf c = fx_conf();
    ptc_buf b = PTC_BUF_INIT;
    char err[256] = "";
    c.trusted_proxies = "10.0.0.0/8";
    ptc_nginx_render_default(&c, &b);
    ptc_nginx_expect e = {&c, NULL, NULL, 0, NULL};
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), 0);
    c.trusted_proxies = "10.0.0.0/8, 0.0.0.0/0";
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), -EINVAL);
    c.trusted_proxies = "10.0.0.0/8";
    c.https_listen = "";
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), -EINVAL);
    ptc_buf_free(&b);
    /* A trusted_proxies value that is no CIDR never becomes a geo entry. */
    ptc_buf_reset(&b);
    c.trusted_proxies = "10.0.0.0/8;evil";
    ptc_nginx_render_default(&c, &b);
    CHECK_INT(ptc_nginx_check(b.data, b.len, &e, err, sizeof(err)), -EINVAL);
    ptc_buf_free(&b);
}

int main(void)
{
    RUN(test_good);
    RUN(test_hostile_domain);
    RUN(test_hostile_upstream_host);
    RUN(test_hostile_path);
    RUN(test_hostile_name);
    RUN(test_nul_truncation);
    RUN(test_expectation);
    RUN(test_hostile_files);
    RUN(test_lexer);
    RUN(test_default_file);
    RUN(test_upstream_down);
    TEST_EXIT();
}
