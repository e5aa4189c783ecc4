/* Path normalisation and Host parsing (research/reliability.md §2 rows
 * 12 and 15-17), good and hostile inputs. */
#include "http/uri.h"

#include "testlib.h"

#include <stdio.h>
#include <string.h>

/* The normal form of path, or "ERR" when it is refused. */
static const char *norm(const char *path)
{
    static char out[4096];
    ssize_t n = ptc_http_normalize_path(path, strlen(path), out);
    if (n < 0)
        return "ERR";
    CHECK_INT(strlen(out), n);
    CHECK(n <= (ssize_t)strlen(path));
    return out;
}

/* "host port" as parsed, or "ERR". */
static const char *host(const char *h)
{
    static char res[300];
    char out[256];
    unsigned port = 12345;
    if (ptc_http_parse_host(h, strlen(h), out, sizeof(out), &port) != 0)
        return "ERR";
    snprintf(res, sizeof(res), "%s %u", out, port);
    return res;
}

static void test_path_plain(void)
{
    CHECK_STR(norm("/"), "/");
    CHECK_STR(norm("/a/b/c"), "/a/b/c");
    CHECK_STR(norm("/a/b/"), "/a/b/");
    CHECK_STR(norm("/a-b_c.d~e"), "/a-b_c.d~e");
    CHECK_STR(norm("/!$&'()*+,;=:@"), "/!$&'()*+,;=:@");
    CHECK_STR(norm("/a|b^c[d]"), "/a|b^c[d]");
    CHECK_STR(norm("/..."), "/...");
    CHECK_STR(norm("/a/.b/..c/c.."), "/a/.b/..c/c..");
}

static void test_path_dot_segments(void)
{
    CHECK_STR(norm("/a/../admin"), "/admin"); /* row 16 */
    CHECK_STR(norm("/a/%2e%2E/admin"), "/admin");
    CHECK_STR(norm("/a/%2E/admin"), "/a/admin");
    CHECK_STR(norm("/a/./b/../c"), "/a/c");
    CHECK_STR(norm("/a/b/.."), "/a/");
    CHECK_STR(norm("/a/b/."), "/a/b/");
    CHECK_STR(norm("/a/.."), "/");
    CHECK_STR(norm("/."), "/");
    CHECK_STR(norm("/./"), "/");
    CHECK_STR(norm("/a/b/c/../../d"), "/a/d");
    CHECK_STR(norm("/a/.%2e/b"), "/b");
    CHECK_STR(norm("/../x"), "ERR");
    CHECK_STR(norm("/.."), "ERR");
    CHECK_STR(norm("/a/../.."), "ERR");
    CHECK_STR(norm("/a/../../x"), "ERR");
    CHECK_STR(norm("/%2e%2e/x"), "ERR");
    CHECK_STR(norm("/a/b/../../../x"), "ERR");
}

static void test_path_slashes(void)
{
    CHECK_STR(norm("//admin"), "/admin"); /* row 17 */
    CHECK_STR(norm("/a//b///c"), "/a/b/c");
    CHECK_STR(norm("/a//..//b"), "/b");
    CHECK_STR(norm("///"), "/");
}

static void test_path_escapes(void)
{
    CHECK_STR(norm("/p%2F..%2Fadmin"), "/p%2F..%2Fadmin"); /* row 17: never a slash */
    CHECK_STR(norm("/a%2fb"), "/a%2Fb");
    CHECK_STR(norm("/%7e%41%7A%30%2D"), "/~Az0-");
    CHECK_STR(norm("/%20%23%3f%5c"), "/%20%23%3F%5C");
    CHECK_STR(norm("/%ff%C3%A9"), "/%FF%C3%A9");
    CHECK_STR(norm("/%25"), "/%25");
    CHECK_STR(norm("/%"), "ERR");
    CHECK_STR(norm("/%2"), "ERR");
    CHECK_STR(norm("/%zz"), "ERR");
    CHECK_STR(norm("/%z1"), "ERR");
    CHECK_STR(norm("/%1z"), "ERR");
    CHECK_STR(norm("/%00"), "ERR");
    CHECK_STR(norm("/a%00b"), "ERR");
}

static void test_path_hostile_bytes(void)
{
    CHECK_STR(norm(""), "ERR");
    CHECK_STR(norm("a/b"), "ERR");
    CHECK_STR(norm("*"), "ERR");
    CHECK_STR(norm("/a b"), "ERR");
    CHECK_STR(norm("/a#b"), "ERR");
    CHECK_STR(norm("/a\\b"), "ERR");
    CHECK_STR(norm("/a\\..\\b"), "ERR");
    CHECK_STR(norm("/a\tb"), "ERR");
    CHECK_STR(norm("/a\rb"), "ERR");
    CHECK_STR(norm("/a\x7f"), "ERR");
    CHECK_STR(norm("/caf\xc3\xa9"), "ERR");
    CHECK_STR(norm("/a?b"), "ERR");
    CHECK_STR(norm("/a\"b"), "ERR");
    CHECK_STR(norm("/<script>"), "ERR");
    CHECK_STR(norm("/{x}"), "ERR");
    CHECK_STR(norm("/`"), "ERR");
    /* A NUL inside the given length. */
    char out[16];
    CHECK_INT(ptc_http_normalize_path("/a\0b", 4, out), -1);
}

static void test_path_tomcat_dot_params(void)
{
    CHECK_STR(norm("/a/..;/admin"), "ERR");
    CHECK_STR(norm("/a/.;x/admin"), "ERR");
    CHECK_STR(norm("/a/%2e%2e;x/admin"), "ERR");
    CHECK_STR(norm("/a/b;x/c"), "/a/b;x/c");
    CHECK_STR(norm("/a/...;x"), "/a/...;x");
}

static void test_path_idempotent(void)
{
    static const char *paths[] = {"/a/%2e%2E/b//c/%7e%2f", "/x/./y/../z/", "/%41%62/%c3%a9"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        char once[256], twice[256];
        ssize_t n1 = ptc_http_normalize_path(paths[i], strlen(paths[i]), once);
        CHECK(n1 > 0);
        ssize_t n2 = ptc_http_normalize_path(once, (size_t)n1, twice);
        CHECK_INT(n2, n1);
        CHECK_STR(twice, once);
    }
}

static void test_host_good(void)
{
    CHECK_STR(host("a"), "a 0");
    CHECK_STR(host("example.com"), "example.com 0");
    CHECK_STR(host("EXAMPLE.com.:443"), "example.com 443"); /* row 15 */
    CHECK_STR(host("Example.COM:8080"), "example.com 8080");
    CHECK_STR(host("my_service-1.internal"), "my_service-1.internal 0");
    CHECK_STR(host("127.0.0.1:80"), "127.0.0.1 80");
    CHECK_STR(host("a:65535"), "a 65535");
    CHECK_STR(host("a:1"), "a 1");
    CHECK_STR(host("a:00080"), "a 80");
    CHECK_STR(host("[::1]:8080"), "[::1] 8080");
    CHECK_STR(host("[::1]"), "[::1] 0");
    CHECK_STR(host("[2001:DB8::1]"), "[2001:db8::1] 0");
    CHECK_STR(host("[::ffff:10.0.0.1]:1"), "[::ffff:10.0.0.1] 1");
}

static void test_host_hostile(void)
{
    CHECK_STR(host(""), "ERR");
    CHECK_STR(host("a, b"), "ERR"); /* row 12 */
    CHECK_STR(host("a,b"), "ERR");
    CHECK_STR(host("a@b"), "ERR");
    CHECK_STR(host("u:p@b"), "ERR");
    CHECK_STR(host("a/b"), "ERR");
    CHECK_STR(host("a:99999"), "ERR");
    CHECK_STR(host("a:65536"), "ERR");
    CHECK_STR(host("a:0"), "ERR");
    CHECK_STR(host("a:"), "ERR");
    CHECK_STR(host("a:80x"), "ERR");
    CHECK_STR(host("a:+80"), "ERR");
    CHECK_STR(host("a:1:2"), "ERR");
    CHECK_STR(host("a:000080"), "ERR");
    CHECK_STR(host(":80"), "ERR");
    CHECK_STR(host("a b"), "ERR");
    CHECK_STR(host(" a"), "ERR");
    CHECK_STR(host("a\t"), "ERR");
    CHECK_STR(host("."), "ERR");
    CHECK_STR(host(".a"), "ERR");
    CHECK_STR(host("a..b"), "ERR");
    CHECK_STR(host("a.."), "ERR");
    CHECK_STR(host("a%2eb"), "ERR");
    CHECK_STR(host("a\\b"), "ERR");
    CHECK_STR(host("a?b"), "ERR");
    CHECK_STR(host("a#b"), "ERR");
    CHECK_STR(host("caf\xc3\xa9"), "ERR");
    CHECK_STR(host("[::1"), "ERR");
    CHECK_STR(host("[]"), "ERR");
    CHECK_STR(host("[::1]x"), "ERR");
    CHECK_STR(host("[::1]:"), "ERR");
    CHECK_STR(host("[::g]"), "ERR");
    CHECK_STR(host("[1.2.3.4]"), "ERR");
    CHECK_STR(host("[fe80::1%25eth0]"), "ERR");
    CHECK_STR(host("[v1.x]"), "ERR");
    CHECK_STR(host("::1"), "ERR");
    char out[256];
    unsigned port;
    CHECK_INT(ptc_http_parse_host("a\0b", 3, out, sizeof(out), &port), -1);
}

static void test_host_lengths(void)
{
    char name[300], out[256];
    unsigned port;
    /* 63-character labels pass, 64 fail; the whole name is at most 253. */
    memset(name, 'a', 63);
    strcpy(name + 63, ".b");
    CHECK_INT(ptc_http_parse_host(name, 65, out, sizeof(out), &port), 0);
    CHECK_STR(out, name);
    memset(name, 'a', 64);
    name[64] = '\0';
    CHECK_STR(host(name), "ERR");
    for (int i = 0; i < 4; i++) {
        memset(name + i * 64, 'a', 63);
        name[i * 64 + 63] = '.';
    }
    name[253] = '\0'; /* 253 characters, no trailing dot */
    CHECK_INT(ptc_http_parse_host(name, 253, out, sizeof(out), &port), 0);
    CHECK_INT(strlen(out), 253);
    name[253] = '.';
    CHECK_INT(ptc_http_parse_host(name, 254, out, sizeof(out), &port), 0); /* root label dropped */
    name[253] = 'a';
    CHECK_INT(ptc_http_parse_host(name, 254, out, sizeof(out), &port), -1);
    /* A small output buffer is refused, never overrun. */
    char small[4];
    CHECK_INT(ptc_http_parse_host("abcd", 4, small, sizeof(small), &port), -1);
    CHECK_INT(ptc_http_parse_host("abc", 3, small, sizeof(small), &port), 0);
    CHECK_INT(ptc_http_parse_host("[::1]", 5, small, sizeof(small), &port), -1);
}

int main(void)
{
    RUN(test_path_plain);
    RUN(test_path_dot_segments);
    RUN(test_path_slashes);
    RUN(test_path_escapes);
    RUN(test_path_hostile_bytes);
    RUN(test_path_tomcat_dot_params);
    RUN(test_path_idempotent);
    RUN(test_host_good);
    RUN(test_host_hostile);
    RUN(test_host_lengths);
    TEST_EXIT();
}
