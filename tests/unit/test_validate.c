/* The allow-list validators of model/validate.h against hostile values
 * (research/reliability.md §3), and the request parser's refusal of
 * strings with NUL bytes, which a C string would silently truncate. */
#include "core/mem.h"
#include "core/util.h"
#include "model/proxy.h"
#include "model/validate.h"
#include "testlib.h"

#include <stdlib.h>

/* Characters that must never appear in a domain, host or path. */
static const char *const hostile_chars[] = {
    ";", "{", "}", "\"", "'", "\n", "\r", "\t", " ",    "$",    "#",        "\\",           "`",   "(", ")",
    "<", ">", "|", "&",  "%", "?",  "=",  ",",  "\x7f", "\x01", "\xc3\xa9", "\xe2\x80\x8b", "\xff"};

static char *repeat(char ch, size_t n)
{
    char *s = ptc_xmalloc(n + 1);
    memset(s, ch, n);
    s[n] = '\0';
    return s;
}

static void test_name(void)
{
    char *n63 = repeat('a', 63), *n64 = repeat('a', 64);
    CHECK(ptc_valid_name("a"));
    CHECK(ptc_valid_name("orders-1_x"));
    CHECK(ptc_valid_name(n63));
    CHECK(!ptc_valid_name(n64));
    CHECK(!ptc_valid_name(""));
    CHECK(!ptc_valid_name("-a"));
    CHECK(!ptc_valid_name("_a"));
    CHECK(!ptc_valid_name("Orders"));
    CHECK(!ptc_valid_name("a.b"));
    CHECK(!ptc_valid_name("a/b"));
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile_chars); i++) {
        char *s = ptc_xasprintf("a%sb", hostile_chars[i]);
        CHECK(!ptc_valid_name(s));
        free(s);
    }
    free(n63);
    free(n64);
}

static void test_domain(void)
{
    char *l63 = repeat('a', 63), *l64 = repeat('a', 64);
    char *d63 = ptc_xasprintf("%s.example.com", l63), *d64 = ptc_xasprintf("%s.example.com", l64);
    /* 253 characters: three labels of 63 and one of 61, with 3 dots. */
    char *n253 = ptc_xasprintf("%s.%s.%s.%.61s", l63, l63, l63, l63);
    char *n254 = ptc_xasprintf("%s.%s.%s.%.62s", l63, l63, l63, l63);
    CHECK_INT(strlen(n253), 253);
    CHECK_INT(strlen(n254), 254);
    CHECK(ptc_check_domain("example.com", false) == NULL);
    CHECK(ptc_check_domain("a", false) == NULL);
    CHECK(ptc_check_domain("xn--caf-dma.example", false) == NULL);
    CHECK(ptc_check_domain("a-b.c0.example", false) == NULL);
    CHECK(ptc_check_domain(d63, false) == NULL);
    CHECK(ptc_check_domain(n253, false) == NULL);
    CHECK(ptc_check_domain("*.example.com", true) == NULL);
    CHECK(ptc_check_domain(d64, false) != NULL);
    CHECK(ptc_check_domain(n254, false) != NULL);
    CHECK(ptc_check_domain("*.example.com", false) != NULL);
    CHECK(ptc_check_domain("*.*.example.com", true) != NULL);
    CHECK(ptc_check_domain("a.*.example.com", true) != NULL);
    CHECK(ptc_check_domain("*example.com", true) != NULL);
    CHECK(ptc_check_domain("*.", true) != NULL);
    CHECK(ptc_check_domain("", true) != NULL);
    CHECK(ptc_check_domain(".", false) != NULL);
    CHECK(ptc_check_domain("..", false) != NULL);
    CHECK(ptc_check_domain("a..b", false) != NULL);
    CHECK(ptc_check_domain(".a", false) != NULL);
    CHECK(ptc_check_domain("example.com.", false) != NULL);
    CHECK(ptc_check_domain("-a.com", false) != NULL);
    CHECK(ptc_check_domain("a-.com", false) != NULL);
    CHECK(ptc_check_domain("a.com-", false) != NULL);
    CHECK(ptc_check_domain("a_b.com", false) != NULL);
    CHECK(ptc_check_domain("Example.com", false) != NULL);
    CHECK(ptc_check_domain("a//b", false) != NULL);
    CHECK(ptc_check_domain("a/b", false) != NULL);
    CHECK(ptc_check_domain("a:80", false) != NULL);
    /* IP literals are not domains, in any spelling. */
    CHECK(ptc_check_domain("10.0.0.1", false) != NULL);
    CHECK(ptc_check_domain("10.0.0.1", true) != NULL);
    CHECK(ptc_check_domain("::1", false) != NULL);
    CHECK(ptc_check_domain("[::1]", false) != NULL);
    CHECK(ptc_check_domain("2001:db8::1", false) != NULL);
    CHECK(ptc_check_domain("1.2.3.999", false) != NULL);
    CHECK(ptc_check_domain("999", false) != NULL);
    CHECK(ptc_check_domain("*.10.0.0.1", true) != NULL);
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile_chars); i++) {
        char *s = ptc_xasprintf("a%sb.example.com", hostile_chars[i]);
        char *t = ptc_xasprintf("example.com%s", hostile_chars[i]);
        CHECK(ptc_check_domain(s, true) != NULL);
        CHECK(ptc_check_domain(t, true) != NULL);
        free(s);
        free(t);
    }
    free(l63);
    free(l64);
    free(d63);
    free(d64);
    free(n253);
    free(n254);
}

static void test_upstream_host(void)
{
    char *l64 = repeat('a', 64);
    CHECK(ptc_check_upstream_host("10.0.0.5") == NULL);
    CHECK(ptc_check_upstream_host("::1") == NULL);
    CHECK(ptc_check_upstream_host("2001:db8::7") == NULL);
    CHECK(ptc_check_upstream_host("localhost") == NULL);
    CHECK(ptc_check_upstream_host("Backend.Internal") == NULL);
    CHECK(ptc_check_upstream_host(l64) != NULL);
    CHECK(ptc_check_upstream_host("") != NULL);
    CHECK(ptc_check_upstream_host("[::1]") != NULL);
    CHECK(ptc_check_upstream_host("10.0.0.5:80") != NULL);
    CHECK(ptc_check_upstream_host("unix:/run/app.sock") != NULL);
    CHECK(ptc_check_upstream_host("*.example.com") != NULL);
    CHECK(ptc_check_upstream_host("256.1.1.1") != NULL);
    CHECK(ptc_check_upstream_host("10.0.0.5 weight=100") != NULL);
    CHECK(ptc_check_upstream_host("http://backend") != NULL);
    CHECK(ptc_check_upstream_host("..") != NULL);
    CHECK(ptc_check_upstream_host("a..b") != NULL);
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile_chars); i++) {
        char *s = ptc_xasprintf("backend%s", hostile_chars[i]);
        CHECK(ptc_check_upstream_host(s) != NULL);
        free(s);
    }
    CHECK(ptc_is_ip_literal("127.0.0.1"));
    CHECK(ptc_is_ip_literal("fe80::1"));
    CHECK(!ptc_is_ip_literal("[::1]"));
    CHECK(!ptc_is_ip_literal("localhost"));
    free(l64);
}

static void test_path(void)
{
    char *p1024 = repeat('a', 1024), *p1025;
    p1024[0] = '/';
    p1025 = ptc_xasprintf("%sa", p1024);
    CHECK(ptc_check_path("/") == NULL);
    CHECK(ptc_check_path("/api") == NULL);
    CHECK(ptc_check_path("/api/") == NULL);
    CHECK(ptc_check_path("/a-b_c.d~e/F0") == NULL);
    CHECK(ptc_check_path(p1024) == NULL);
    CHECK(ptc_check_path(p1025) != NULL);
    CHECK(ptc_check_path("") != NULL);
    CHECK(ptc_check_path("api") != NULL);
    CHECK(ptc_check_path("..") != NULL);
    CHECK(ptc_check_path("/..") != NULL);
    CHECK(ptc_check_path("/a/../b") != NULL);
    CHECK(ptc_check_path("/a..b") != NULL);
    CHECK(ptc_check_path("//") != NULL);
    CHECK(ptc_check_path("//admin") != NULL);
    CHECK(ptc_check_path("/a//b") != NULL);
    CHECK(ptc_check_path("/%2e%2e/x") != NULL);
    CHECK(ptc_check_path("/a%2Fb") != NULL);
    CHECK(ptc_check_path("/a?b=1") != NULL);
    CHECK(ptc_check_path("~ ^/x") != NULL);
    for (size_t i = 0; i < PTC_ARRAY_LEN(hostile_chars); i++) {
        char *s = ptc_xasprintf("/api%s", hostile_chars[i]);
        char *t = ptc_xasprintf("/a%s/b", hostile_chars[i]);
        CHECK(ptc_check_path(s) != NULL);
        CHECK(ptc_check_path(t) != NULL);
        free(s);
        free(t);
    }
    free(p1024);
    free(p1025);
}

static void test_email(void)
{
    CHECK(ptc_check_email("admin@fullpotential.ai") == NULL);
    CHECK(ptc_check_email("a+b@example.com") == NULL);
    CHECK(ptc_check_email("admin") != NULL);
    CHECK(ptc_check_email("@example.com") != NULL);
    CHECK(ptc_check_email("a@b@example.com") != NULL);
    CHECK(ptc_check_email("a@10.0.0.1") != NULL);
    CHECK(ptc_check_email("a b@example.com") != NULL);
    CHECK(ptc_check_email("a@example.com;rm") != NULL);
    CHECK(ptc_check_email("a'@example.com") != NULL);
}

/* JSON strings may hold NUL; a C string would end there.  The request
 * parser refuses them instead of validating the truncated prefix. */
static void test_nul_in_request(void)
{
    static const struct {
        const char *body, *field;
    } cases[] = {
        {"{\"domain\":\"a.example.com\\u0000;evil\",\"upstream_port\":80}", "domain"},
        {"{\"domain\":\"a.example.com\",\"upstream_host\":\"10.0.0.1\\u0000 weight=9\",\"upstream_port\":80}",
         "upstream_host"},
        {"{\"domain\":\"a.example.com\",\"path_prefix\":\"/api\\u0000{\",\"upstream_port\":80}",
         "path_prefix"},
        {"{\"domain\":\"a.example.com\",\"upstreams\":[{\"host\":\"h\\u0000x\",\"port\":80}]}",
         "upstreams[0].host"},
        {"{\"domain\":\"a.example.com\",\"upstream_port\":80,\"health_check\":{\"path\":\"/h\\u0000\"}}",
         "health_check.path"},
    };
    ptc_proxy_defaults defs = {"/health", 1000, 5000};
    for (size_t i = 0; i < PTC_ARRAY_LEN(cases); i++) {
        json_error_t jerr;
        json_t *body = json_loads(cases[i].body, JSON_ALLOW_NUL, &jerr);
        json_t *errors = json_object();
        CHECK(body != NULL);
        ptc_proxy *p = ptc_proxy_from_request(body, "web", &defs, errors);
        CHECK(p == NULL);
        if (json_object_get(errors, cases[i].field) == NULL)
            fprintf(stderr, "case %zu: no error for %s\n", i, cases[i].field);
        CHECK(json_object_get(errors, cases[i].field) != NULL);
        ptc_proxy_release(p);
        json_decref(errors);
        json_decref(body);
    }
    /* Hostile values through the request parser, one per field. */
    static const char *const fields[] = {"domain", "upstream_host", "path_prefix"};
    static const char *const values[] = {"x;y", "x{", "x}", "x\\\"y", "x\\ny", "$x", "x y", "x#y", "x/../y"};
    for (size_t f = 0; f < PTC_ARRAY_LEN(fields); f++)
        for (size_t v = 0; v < PTC_ARRAY_LEN(values); v++) {
            char *text = ptc_xasprintf("{\"domain\":\"ok.example.com\",\"upstream_port\":80,\"%s\":\"%s%s\"}",
                                       fields[f], f == 2 ? "/" : "", values[v]);
            json_t *body = json_loads(text, 0, NULL);
            json_t *errors = json_object();
            /* The domain key appears twice in the text: jansson keeps the last. */
            CHECK(body != NULL);
            ptc_proxy *p = ptc_proxy_from_request(body, "web", &defs, errors);
            CHECK(p == NULL);
            CHECK(json_object_get(errors, fields[f]) != NULL);
            ptc_proxy_release(p);
            json_decref(errors);
            json_decref(body);
            free(text);
        }
}

int main(void)
{
    RUN(test_name);
    RUN(test_domain);
    RUN(test_upstream_host);
    RUN(test_path);
    RUN(test_email);
    RUN(test_nul_in_request);
    TEST_EXIT();
}
