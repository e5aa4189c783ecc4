/* The router: exact and wildcard hosts, longest prefix on segment
 * boundaries, no fall-through, prefix stripping, and scale. */
#include "proxy/router.h"

#include "http/uri.h"

#include <stdio.h>
#include <stdlib.h>

#include "testlib.h"

static int match(const ptc_router *r, const char *host, const char *path, size_t *plen)
{
    size_t dummy;
    return ptc_router_match(r, ptc_str_make(host, strlen(host)), ptc_str_make(path, strlen(path)),
                            plen ? plen : &dummy);
}

static const ptc_router_entry entries[] = {
    {"example.com", "/", 1},    {"example.com", "/api", 2},  {"example.com", "/api/v2", 3},
    {"*.example.com", "/", 4},  {"*.b.example.com", "/", 5}, {"only.example.com", "/admin", 6},
    {"example.com", "/api", 7}, /* duplicate claim: never matches */
};

static void test_exact_and_prefix(void)
{
    ptc_router *r = ptc_router_build(entries, sizeof(entries) / sizeof(entries[0]));
    size_t plen = 0;
    CHECK_INT(match(r, "example.com", "/", &plen), 1);
    CHECK_INT(plen, 1);
    CHECK_INT(match(r, "example.com", "/index.html", NULL), 1);
    CHECK_INT(match(r, "example.com", "/api", &plen), 2);
    CHECK_INT(plen, 4);
    CHECK_INT(match(r, "example.com", "/api/", NULL), 2);
    CHECK_INT(match(r, "example.com", "/api/x/y", NULL), 2);
    CHECK_INT(match(r, "example.com", "/apix", NULL), 1); /* segment boundary */
    CHECK_INT(match(r, "example.com", "/api/v2", NULL), 3);
    CHECK_INT(match(r, "example.com", "/api/v2/z", NULL), 3);
    CHECK_INT(match(r, "example.com", "/api/v22", NULL), 2);
    ptc_router_free(r);
}

static void test_wildcard_and_unknown(void)
{
    ptc_router *r = ptc_router_build(entries, sizeof(entries) / sizeof(entries[0]));
    CHECK_INT(match(r, "www.example.com", "/", NULL), 4);
    CHECK_INT(match(r, "a.b.c.example.com", "/x", NULL), 4);
    CHECK_INT(match(r, "x.b.example.com", "/", NULL), 5); /* the longest suffix wins */
    CHECK_INT(match(r, "b.example.com", "/", NULL), 4);
    CHECK_INT(match(r, "example.org", "/", NULL), -1);
    CHECK_INT(match(r, "xexample.com", "/", NULL), -1);
    CHECK_INT(match(r, "com", "/", NULL), -1);
    CHECK_INT(match(r, "", "/", NULL), -1);
    /* The exact host is chosen and has no "/" route: no fall-through to the
     * wildcard. */
    CHECK_INT(match(r, "only.example.com", "/admin/x", NULL), 6);
    CHECK_INT(match(r, "only.example.com", "/", NULL), -1);
    ptc_router_free(r);

    ptc_router *empty = ptc_router_build(NULL, 0);
    CHECK_INT(match(empty, "example.com", "/", NULL), -1);
    ptc_router_free(empty);
}

static void check_strip(const char *path, size_t plen, const char *want)
{
    ptc_str s = ptc_router_strip(ptc_str_make(path, strlen(path)), plen);
    char buf[64];
    snprintf(buf, sizeof(buf), "%.*s", (int)s.len, s.p);
    CHECK_STR(buf, want);
}

static void test_strip(void)
{
    check_strip("/api/x", 4, "/x");
    check_strip("/api", 4, "/");
    check_strip("/api/", 4, "/");
    check_strip("/x/y", 1, "/x/y"); /* prefix "/" */
    check_strip("/a/b/c", 4, "/c");
}

static void test_host_key(void)
{
    char out[256];
    CHECK_INT(ptc_router_host_key("ExAmple.COM.", 12, out, sizeof(out)), 11);
    CHECK_STR(out, "example.com");
    CHECK_INT(ptc_router_host_key("a", 1, out, 1), -1);
}

/* What the data plane does with a request: the Host and the path are put
 * in normal form once, and that form is both matched and forwarded. */
static int route_raw(const ptc_router *r, const char *host, const char *path, char *fwd, bool strip)
{
    char h[256], p[256];
    unsigned port;
    if (ptc_http_parse_host(host, strlen(host), h, sizeof(h), &port) < 0)
        return -2;
    ssize_t n = ptc_http_normalize_path(path, strlen(path), p);
    if (n < 0)
        return -3;
    size_t plen = 0;
    int id = ptc_router_match(r, ptc_str_make(h, strlen(h)), ptc_str_make(p, (size_t)n), &plen);
    ptc_str out = strip ? ptc_router_strip(ptc_str_make(p, (size_t)n), plen) : ptc_str_make(p, (size_t)n);
    snprintf(fwd, 256, "%.*s", (int)out.len, out.p);
    return id;
}

static void test_normalised_forms(void)
{
    ptc_router *r = ptc_router_build(entries, sizeof(entries) / sizeof(entries[0]));
    char fwd[256];
    CHECK_INT(route_raw(r, "EXAMPLE.com.:443", "/api/x", fwd, true), 2);
    CHECK_STR(fwd, "/x");
    CHECK_INT(route_raw(r, "example.com", "/x/../api", fwd, true), 2);
    CHECK_STR(fwd, "/");
    CHECK_INT(route_raw(r, "example.com", "/%61pi/v2/%2e%2E/v2/y", fwd, false), 3); /* %61 is 'a' */
    CHECK_STR(fwd, "/api/v2/y");
    CHECK_INT(route_raw(r, "example.com", "//api//x", fwd, true), 2);
    CHECK_STR(fwd, "/x");
    /* %2F is never a slash: "/api%2Fx" is not under /api. */
    CHECK_INT(route_raw(r, "example.com", "/api%2fx", fwd, false), 1);
    CHECK_STR(fwd, "/api%2Fx");
    CHECK_INT(route_raw(r, "example.com", "/../api", fwd, false), -3);
    CHECK_INT(route_raw(r, "a@example.com", "/", fwd, false), -2);
    ptc_router_free(r);
}

/* 10,000 hosts plus 1,000 prefixes on one host: every one found. */
static void test_scale(void)
{
    size_t n = 11000;
    ptc_router_entry *e = calloc(n, sizeof(*e));
    char(*names)[64] = calloc(n, 64);
    for (size_t i = 0; i < n; i++) {
        if (i < 10000) {
            snprintf(names[i], 64, "r%zu.bench.local", i);
            e[i] = (ptc_router_entry){names[i], "/", (int)i};
        } else {
            snprintf(names[i], 64, "/p%zu", i);
            e[i] = (ptc_router_entry){"many.local", names[i], (int)i};
        }
    }
    ptc_router *r = ptc_router_build(e, n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char path[80];
        int got = i < 10000
                      ? match(r, names[i], "/x", NULL)
                      : (snprintf(path, sizeof(path), "%s/y", names[i]), match(r, "many.local", path, NULL));
        bad += got != (int)i;
    }
    CHECK_INT(bad, 0);
    ptc_router_free(r);
    free(e);
    free(names);
}

/* A router built in the block of the one freed before it (changes come in
 * runs) answers for its own entries only, tables and counts reset; one
 * that needs a bigger block, or a much smaller one, gets a new block. */
static void test_reused_block(void)
{
    const ptc_router_entry a[] = {{"a.example", "/", 1}, {"*.a.example", "/", 2}, {"b.example", "/x", 3}};
    const ptc_router_entry b[] = {{"c.example", "/", 4}, {"b.example", "/", 5}, {"*.c.example", "/y", 6}};
    ptc_router *r = ptc_router_build(a, 3);
    CHECK_INT(match(r, "b.example", "/x/1", NULL), 3);
    ptc_router_free(r);
    r = ptc_router_build(b, 3);
    CHECK_INT(match(r, "a.example", "/", NULL), -1);
    CHECK_INT(match(r, "z.a.example", "/", NULL), -1);
    CHECK_INT(match(r, "b.example", "/x/1", NULL), 5);
    CHECK_INT(match(r, "c.example", "/", NULL), 4);
    CHECK_INT(match(r, "q.c.example", "/y", NULL), 6);
    CHECK_INT(match(r, "q.c.example", "/", NULL), -1);
    ptc_router *r2 = ptc_router_build(b, 2); /* while r lives: a block of its own */
    CHECK_INT(match(r2, "q.c.example", "/y", NULL), -1);
    CHECK_INT(match(r2, "b.example", "/", NULL), 5);
    CHECK_INT(match(r, "q.c.example", "/y", NULL), 6);
    ptc_router_free(r2);
    ptc_router_free(r);
    ptc_router *empty = ptc_router_build(NULL, 0);
    CHECK_INT(match(empty, "b.example", "/", NULL), -1);
    ptc_router_free(empty);
    ptc_router_trim();
    ptc_router_trim();
}

int main(void)
{
    RUN(test_exact_and_prefix);
    RUN(test_wildcard_and_unknown);
    RUN(test_strip);
    RUN(test_host_key);
    RUN(test_normalised_forms);
    RUN(test_scale);
    RUN(test_reused_block);
    TEST_EXIT();
}
