/* Fuzzes the upstream-response path: ptc_http_scan_head (whole and in
 * pieces) and ptc_http_parse_response.  The first byte picks the request
 * method (HEAD or GET) the response answers. */
#include "http/parser.h"

#include <stdint.h>
#include <stdlib.h>

#define ASSERT(c)                                                                                            \
    do {                                                                                                     \
        if (!(c))                                                                                            \
            abort();                                                                                         \
    } while (0)

static void inside(ptc_str s, const char *buf, size_t size)
{
    uintptr_t p = (uintptr_t)s.p, b = (uintptr_t)buf;
    ASSERT(s.p != NULL && p >= b && p + s.len <= b + size);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static ptc_http_response res;
    ptc_http_error err = {0, NULL};
    size_t scan = 0;

    if (size < 1)
        return 0;
    ptc_http_method m = data[0] & 1 ? PTC_HTTP_HEAD : PTC_HTTP_GET;
    const char *buf = (const char *)data + 1;
    size--;

    long whole = ptc_http_scan_head(buf, size, &scan, false, &err);
    ASSERT(whole >= -1 && whole <= (long)size);
    if (whole < 0)
        ASSERT(err.status == 400 || err.status == 431);
    int whole_status = err.status;
    size_t n = 0, k = 0;
    long h = 0;
    scan = 0;
    while (h == 0 && n < size) {
        n += 1 + (uint8_t)buf[k++ % size] % 7;
        if (n > size)
            n = size;
        h = ptc_http_scan_head(buf, n, &scan, false, &err);
    }
    if (size > 0) {
        ASSERT(h == whole);
        if (h < 0)
            ASSERT(err.status == whole_status);
    }

    int rc = ptc_http_parse_response(buf, size, m, &res, &err);
    if (rc != 0) {
        ASSERT(rc == -1 && err.status == 502 && err.reason != NULL);
        return 0;
    }
    ASSERT(whole > 0 && res.head_len == (size_t)whole);
    ASSERT(res.status >= 100 && res.status <= 599);
    ASSERT(res.minor_version == 0 || res.minor_version == 1);
    ASSERT(res.content_length >= -1);
    ASSERT(!(res.chunked && res.content_length >= 0));
    ASSERT(res.n_headers <= PTC_HTTP_MAX_HEADERS);
    inside(res.reason, buf, res.head_len);
    for (size_t i = 0; i < res.n_headers; i++) {
        inside(res.headers[i].name, buf, res.head_len);
        inside(res.headers[i].value, buf, res.head_len);
    }
    bool must_be_bodyless = m == PTC_HTTP_HEAD || res.status < 200 || res.status == 204 || res.status == 304;
    ASSERT(res.bodyless == must_be_bodyless);
    /* Exactly one way to find the end of the body. */
    ASSERT((int)res.bodyless + (int)res.close_delimited +
               (int)(!res.bodyless && (res.chunked || res.content_length >= 0)) ==
           1);
    ASSERT(!res.close_delimited || !res.keep_alive);
    return 0;
}
