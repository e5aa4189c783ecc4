/* Fuzzes what the builtin proxy does with a head before anything reaches
 * an upstream or a client: parse, normalise the host and path, route,
 * rewrite.  Invariants: what portico writes parses again under the same
 * strict rules, with exactly one Host, one X-Forwarded-For and one framing
 * header, the path it routed and nothing the client named in Connection;
 * a response head rewritten for the client parses again too. */
#include "http/parser.h"
#include "http/uri.h"
#include "proxy/rewrite.h"
#include "proxy/router.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Checked in every build type (release builds define NDEBUG). */
#define MUST(cond)                                                                                           \
    do {                                                                                                     \
        if (!(cond))                                                                                         \
            abort();                                                                                         \
    } while (0)

static ptc_router *router(void)
{
    static ptc_router *r;
    static const ptc_router_entry e[] = {
        {"a", "/", 0},
        {"a", "/api", 1},
        {"*.a", "/", 2},
        {"example.com", "/x/y", 3},
    };
    if (r == NULL)
        r = ptc_router_build(e, sizeof(e) / sizeof(e[0]));
    return r;
}

static size_t count(const ptc_http_header *h, size_t n, const char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        k += ptc_str_ieq(h[i].name, name);
    return k;
}

static void check_request(const char *data, size_t size, bool trusted)
{
    static ptc_http_request req, again;
    static char path[PTC_HTTP_MAX_REQUEST_LINE + 1];
    ptc_http_error err;
    size_t scan = 0;
    long n = ptc_http_scan_head(data, size, &scan, true, &err);
    if (n <= 0 || ptc_http_parse_request(data, (size_t)n, &req, &err) < 0)
        return;
    char host[256] = "";
    unsigned port;
    if (req.authority.len > 0 &&
        ptc_http_parse_host(req.authority.p, req.authority.len, host, sizeof(host), &port) < 0)
        return;
    ssize_t plen =
        req.form == PTC_HTTP_FORM_ASTERISK ? 1 : ptc_http_normalize_path(req.path.p, req.path.len, path);
    if (plen < 0)
        return;
    if (req.form == PTC_HTTP_FORM_ASTERISK)
        memcpy(path, "/", 2);
    size_t prefix = 0;
    int id = ptc_router_match(router(), ptc_str_make(host, strlen(host)), ptc_str_make(path, (size_t)plen),
                              &prefix);
    if (id < 0)
        return; /* answered 404 by portico, never forwarded */
    ptc_str fwd = id == 1 ? ptc_router_strip(ptc_str_make(path, (size_t)plen), prefix)
                          : ptc_str_make(path, (size_t)plen);
    ptc_rewrite_req info = {
        .path = fwd,
        .query = req.query,
        .has_query = req.has_query,
        .peer_ip = PTC_STR_LIT("192.0.2.1"),
        .peer_trusted = trusted,
        .local_port = 80,
        .request_id = PTC_STR_LIT("fuzz"),
        .framing = req.chunked               ? PTC_BODY_CHUNKED
                   : req.content_length >= 0 ? PTC_BODY_LENGTH
                                             : PTC_BODY_NONE,
        .length = req.content_length >= 0 ? (uint64_t)req.content_length : 0,
        .websocket = req.upgrade,
    };
    ptc_buf out = PTC_BUF_INIT;
    ptc_rewrite_request(&out, &req, &info);

    size_t scan2 = 0;
    long n2 = ptc_http_scan_head(out.data, out.len, &scan2, true, &err);
    /* Forwarded heads may exceed the client limits by what portico adds,
     * and a trusted peer's X-Forwarded-For grows: only check the rest. */
    if (n2 > 0) {
        MUST((size_t)n2 == out.len);
        int rc = ptc_http_parse_request(out.data, out.len, &again, &err);
        if (rc == 0) {
            MUST(count(again.headers, again.n_headers, "host") == 1);
            MUST(count(again.headers, again.n_headers, "x-forwarded-for") == 1);
            MUST(count(again.headers, again.n_headers, "content-length") +
                     count(again.headers, again.n_headers, "transfer-encoding") <=
                 1);
            MUST(again.chunked == req.chunked);
            MUST(again.content_length == req.content_length);
            if (req.form != PTC_HTTP_FORM_ASTERISK)
                MUST(again.path.len == fwd.len && memcmp(again.path.p, fwd.p, fwd.len) == 0);
            for (size_t i = 0; i < req.n_headers; i++)
                if (ptc_str_ieq(req.headers[i].name, "connection"))
                    for (size_t j = 0; j < again.n_headers; j++)
                        MUST(!ptc_str_ieq(again.headers[j].name, "connection") || info.websocket);
        } else {
            MUST(err.status == 431);
        }
    } else {
        MUST(n2 == 0 ? false : err.status == 431);
    }
    ptc_buf_free(&out);
}

static void check_response(const char *data, size_t size)
{
    static ptc_http_response res, again;
    ptc_http_error err;
    size_t scan = 0;
    long n = ptc_http_scan_head(data, size, &scan, false, &err);
    if (n <= 0 || ptc_http_parse_response(data, (size_t)n, PTC_HTTP_GET, &res, &err) < 0)
        return;
    ptc_rewrite_resp info = {
        .request_id = PTC_STR_LIT("fuzz"),
        .framing = res.bodyless              ? PTC_BODY_NONE
                   : res.chunked             ? PTC_BODY_CHUNKED
                   : res.content_length >= 0 ? PTC_BODY_LENGTH
                                             : PTC_BODY_CLOSE,
        .length = res.content_length >= 0 ? (uint64_t)res.content_length : 0,
        .close = !res.keep_alive,
        .security_headers = true,
        .date = PTC_STR_LIT("Thu, 01 Jan 1970 00:00:00 GMT"),
    };
    ptc_buf out = PTC_BUF_INIT;
    ptc_rewrite_response(&out, &res, &info);
    size_t scan2 = 0;
    long n2 = ptc_http_scan_head(out.data, out.len, &scan2, false, &err);
    if (n2 > 0) {
        MUST((size_t)n2 == out.len);
        if (ptc_http_parse_response(out.data, out.len, PTC_HTTP_GET, &again, &err) == 0) {
            MUST(again.status == res.status);
            MUST(again.chunked == (info.framing == PTC_BODY_CHUNKED));
            MUST(count(again.headers, again.n_headers, "x-request-id") == 1);
        } else {
            MUST(err.status == 502); /* our additions passed the header limit */
        }
    }
    ptc_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_request((const char *)data, size, false);
    check_request((const char *)data, size, true);
    check_response((const char *)data, size);
    return 0;
}
