/* Fuzzes the request path of the data plane: ptc_http_scan_head fed whole
 * and in pieces, ptc_http_parse_request, then path and Host normalisation
 * of what parsed.  Checks the invariants the data plane relies on. */
#include "http/parser.h"
#include "http/uri.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                            \
    do {                                                                                                     \
        if (!(c))                                                                                            \
            abort();                                                                                         \
    } while (0)

static bool is_inside(ptc_str s, const char *buf, size_t size)
{
    uintptr_t p = (uintptr_t)s.p, b = (uintptr_t)buf;
    return s.p != NULL && p >= b && p + s.len <= b + size;
}

static void inside(ptc_str s, const char *buf, size_t size)
{
    ASSERT(is_inside(s, buf, size));
}

/* Feeds the scanner growing prefixes, steps taken from the input itself;
 * the answer must match a scan of everything at once. */
static void scan_in_pieces(const char *buf, size_t size, long whole, int whole_status, bool is_request)
{
    size_t scan = 0, n = 0, k = 0;
    ptc_http_error err;
    long h = 0;
    while (h == 0 && n < size) {
        n += 1 + (uint8_t)buf[k++ % size] % 13;
        if (n > size)
            n = size;
        h = ptc_http_scan_head(buf, n, &scan, is_request, &err);
    }
    ASSERT(h == whole);
    if (h < 0)
        ASSERT(err.status == whole_status);
}

static void check_request(const char *buf, size_t size, const ptc_http_request *r)
{
    static char path[PTC_HTTP_MAX_HEAD + 1], again[PTC_HTTP_MAX_HEAD + 1];
    char host[256], host2[256];
    unsigned port, port2;

    ASSERT(r->head_len > 0 && r->head_len <= size && r->head_len <= PTC_HTTP_MAX_HEAD);
    ASSERT(r->content_length >= -1);
    ASSERT(!(r->chunked && r->content_length >= 0));
    ASSERT(r->n_headers <= PTC_HTTP_MAX_HEADERS);
    ASSERT(r->minor_version == 0 || r->minor_version == 1);
    ASSERT(r->method != PTC_HTTP_CONNECT);
    ASSERT(!r->upgrade || r->minor_version == 1);
    inside(r->method_name, buf, r->head_len);
    inside(r->target, buf, r->head_len);
    /* The one slice that may lie elsewhere: absolute-form without a path. */
    if (!is_inside(r->path, buf, r->head_len))
        ASSERT(r->form == PTC_HTTP_FORM_ABSOLUTE && ptc_str_eq(r->path, "/"));
    inside(r->query, buf, r->head_len);
    inside(r->authority, buf, r->head_len);
    inside(r->upgrade_value, buf, r->head_len);
    for (size_t i = 0; i < r->n_headers; i++) {
        inside(r->headers[i].name, buf, r->head_len);
        inside(r->headers[i].value, buf, r->head_len);
        ASSERT(r->headers[i].name.len > 0);
    }
    ASSERT(r->minor_version == 0 || r->authority.len > 0);

    if (r->form != PTC_HTTP_FORM_ASTERISK) {
        ssize_t n = ptc_http_normalize_path(r->path.p, r->path.len, path);
        if (n >= 0) {
            ASSERT((size_t)n <= r->path.len && path[0] == '/' && path[n] == '\0');
            ASSERT(strstr(path, "//") == NULL && strstr(path, "/./") == NULL && strstr(path, "/../") == NULL);
            ssize_t m = ptc_http_normalize_path(path, (size_t)n, again);
            ASSERT(m == n && memcmp(path, again, (size_t)n) == 0);
        }
    }
    if (r->authority.len > 0) {
        /* The parser validated it: normalising cannot fail, and is stable. */
        ASSERT(ptc_http_parse_host(r->authority.p, r->authority.len, host, sizeof(host), &port) == 0);
        ASSERT(port <= 65535);
        size_t hl = strlen(host);
        ASSERT(hl > 0 && host[hl - 1] != '.');
        ASSERT(ptc_http_parse_host(host, hl, host2, sizeof(host2), &port2) == 0);
        ASSERT(strcmp(host, host2) == 0 && port2 == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    ptc_http_error err = {0, NULL};
    static ptc_http_request req;
    size_t scan = 0;

    long whole = ptc_http_scan_head(buf, size, &scan, true, &err);
    ASSERT(whole >= -1 && whole <= (long)size && whole <= PTC_HTTP_MAX_HEAD);
    if (whole < 0)
        ASSERT(err.status == 400 || err.status == 414 || err.status == 431);
    if (size > 0)
        scan_in_pieces(buf, size, whole, err.status, true);

    ptc_http_error perr = {0, NULL};
    int rc = ptc_http_parse_request(buf, size, &req, &perr);
    if (rc == 0) {
        /* Whatever the parser accepts, the scanner found the same head. */
        ASSERT(whole > 0 && req.head_len == (size_t)whole);
        check_request(buf, size, &req);
    } else {
        ASSERT(rc == -1 && perr.reason != NULL);
        ASSERT(perr.status == 400 || perr.status == 405 || perr.status == 414 || perr.status == 417 ||
               perr.status == 431 || perr.status == 501 || perr.status == 505);
    }
    return 0;
}
