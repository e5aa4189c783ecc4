/* The head parser against research/reliability.md §2: one test per row
 * that concerns parsing (named rowNN_…), the upstream-response paragraph,
 * good paths, and ptc_http_scan_head's incremental behaviour and limits. */
#include "http/chars.h"
#include "http/chunked.h"
#include "http/parser.h"
#include "http/uri.h"

#include "testlib.h"

#include <stdlib.h>
#include <string.h>

static ptc_http_request req;
static ptc_http_response res;
static ptc_http_error err;

/* Scans then parses the request s[0..n) as the data plane would.  Returns
 * 0 when it parsed, the error status otherwise, or -1 when the scan wants
 * more bytes.  The parser alone must agree with the scanner's errors. */
static int request_n(const char *s, size_t n)
{
    size_t scan = 0;
    long h = ptc_http_scan_head(s, n, &scan, true, &err);
    if (h < 0) {
        int status = err.status;
        ptc_http_error err2;
        CHECK_INT(ptc_http_parse_request(s, n, &req, &err2), -1);
        CHECK_INT(err2.status, status);
        return status;
    }
    if (h == 0)
        return -1;
    if (ptc_http_parse_request(s, n, &req, &err) != 0)
        return err.status;
    CHECK_INT(req.head_len, h);
    return 0;
}

static int response_n(const char *s, size_t n, ptc_http_method m)
{
    size_t scan = 0;
    long h = ptc_http_scan_head(s, n, &scan, false, &err);
    if (h < 0)
        return err.status == 400 || err.status == 431 ? 502 : -2;
    if (h == 0)
        return -1;
    if (ptc_http_parse_response(s, n, m, &res, &err) != 0)
        return err.status;
    CHECK_INT(res.head_len, h);
    return 0;
}

#define REQ(lit) request_n((lit), sizeof(lit) - 1)
#define RES(lit) response_n((lit), sizeof(lit) - 1, PTC_HTTP_GET)
#define RES_TO(m, lit) response_n((lit), sizeof(lit) - 1, (m))
/* The default start of the table's requests. */
#define P "POST / HTTP/1.1\r\nHost: a\r\n"

static bool str_is(ptc_str s, const char *lit)
{
    return ptc_str_eq(s, lit);
}

/* Decodes the chunked body that follows the parsed request in s: the data,
 * or "ERR", or "MORE". */
static const char *body_after_head(const char *s, size_t n)
{
    static char buf[1 << 17];
    size_t used;
    ptc_http_chunked c;
    size_t len = n - req.head_len;
    memcpy(buf, s + req.head_len, len);
    ptc_http_chunked_init(&c);
    ssize_t got = ptc_http_chunked_decode(&c, buf, len, &used);
    if (got < 0)
        return "ERR";
    if (!c.done)
        return "MORE";
    buf[got] = '\0';
    return buf;
}

#define BODY(lit) body_after_head((lit), sizeof(lit) - 1)

/* ---- reliability.md §2, row by row ---- */

static void row01_content_length_and_transfer_encoding(void)
{
    CHECK_INT(REQ(P "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"), 400);
    CHECK_STR(err.reason, "both Content-Length and Transfer-Encoding");
    CHECK_INT(REQ(P "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"),
              400);
    CHECK_INT(REQ(P "Content-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    /* Both present is refused before the coding is even looked at. */
    CHECK_INT(REQ(P "Transfer-Encoding: identity\r\nContent-Length: 3\r\n\r\n"), 400);
}

static void row02_content_length_values(void)
{
    CHECK_INT(REQ(P "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 5\r\nContent-Length: 5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: +5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: -1\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 0x5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 5 5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length:\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length:   \r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 12345678901234567890\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 00000000000000000005\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 1234567890123456789\r\n\r\n"), 400); /* 19 digits */
    CHECK_INT(REQ(P "Content-Length: 5,6\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 5,\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: ,5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 5.0\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content_Length: 5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Content-Length: 5, 5\r\n\r\nhello"), 0);
    CHECK_INT(req.content_length, 5);
    CHECK_INT(REQ(P "Content-Length: 5 ,5,\t5\r\n\r\nhello"), 0);
    CHECK_INT(req.content_length, 5);
    CHECK_INT(REQ(P "content-length: \t123456789012345678\t\r\n\r\n"), 0);
    CHECK_INT(req.content_length, 123456789012345678LL);
    CHECK_INT(REQ(P "Content-Length: 0\r\n\r\n"), 0);
    CHECK_INT(req.content_length, 0);
    CHECK(!req.chunked);
}

static void row03_transfer_encoding_lists(void)
{
    CHECK_INT(REQ(P "Transfer-Encoding: chunked, gzip\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: gzip\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: x-gzip\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: deflate\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: chunked, chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: gzip, chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: chunked;q=1\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: \"chunked\"\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding:\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding:  CHUNKED \r\n\r\n0\r\n\r\n"), 0);
    CHECK(req.chunked);
    CHECK_INT(req.content_length, -1);
}

static void row04_transfer_encoding_unknown(void)
{
    CHECK_INT(REQ(P "Transfer-Encoding: identity\r\n\r\n"), 501);
    CHECK_INT(REQ(P "Transfer-Encoding: xchunked\r\n\r\n"), 501);
    CHECK_INT(REQ(P "Transfer-Encoding: chunkedx\r\n\r\n"), 501);
    CHECK_INT(REQ(P "Transfer-Encoding: trailers\r\n\r\n"), 501);
}

static void row05_transfer_encoding_obfuscation(void)
{
    CHECK_INT(REQ(P "Transfer-Encoding : chunked\r\n\r\n"), 400);
    CHECK_STR(err.reason, "white space before colon");
    CHECK_INT(REQ(P "Transfer-Encoding\t: chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding:\r\n chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X: y\r\n\tTransfer-Encoding: chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: \x0b"
                    "chunked\r\n\r\n"),
              400);
    CHECK_INT(REQ(P "Transfer-Encoding: chunked\0\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer_Encoding: chunked\r\n\r\n"), 400);
    CHECK_INT(REQ(P "transfer_encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: chunked\r\r\n\r\n"), 400);
    CHECK_INT(REQ(P "Transfer-Encoding: chunked\n\r\n"), 400);
    /* Look-alikes that are other fields are not Transfer-Encoding. */
    CHECK_INT(REQ(P "Transfer-Encodings: chunked\r\nXTransfer-Encoding: chunked\r\n\r\n"), 0);
    CHECK(!req.chunked);
}

static void row06_http10_with_transfer_encoding(void)
{
    CHECK_INT(REQ("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    CHECK_STR(err.reason, "Transfer-Encoding in HTTP/1.0");
    CHECK_INT(REQ("POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n"), 400);
}

static void row07_chunk_framing(void)
{
#define CH P "Transfer-Encoding: chunked\r\n\r\n"
    CHECK_INT(REQ(CH), 0);
    CHECK_STR(BODY(CH "FFFFFFFFFFFFFFFFF1\r\n"), "ERR");
    CHECK_STR(BODY(CH "0x5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH "+5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH " 5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH "4\r\nSEE-THIS\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH "5\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH "5\r\nhello\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH "5\r\nhello\r\n0\n\n"), "ERR");
    CHECK_STR(BODY(CH "5;a\rb\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(BODY(CH "5\r\nhello\r\n0\r\n\r\n"), "hello");
#undef CH
}

static void row08_extensions_and_trailers(void)
{
#define CH P "Transfer-Encoding: chunked\r\n\r\n"
    const char s[] = CH "5;a=b\r\nhello\r\n0\r\nContent-Length: 5\r\nHost: evil\r\n\r\n";
    CHECK_INT(request_n(s, sizeof(s) - 1), 0);
    CHECK_STR(body_after_head(s, sizeof(s) - 1), "hello");
    /* The trailer never reaches the head. */
    CHECK_INT(req.n_headers, 2);
    CHECK_INT(req.content_length, -1);
    CHECK(str_is(req.authority, "a"));

    size_t n = sizeof(CH) - 1, big = n + 65536 + 64;
    char *b = malloc(big);
    memcpy(b, CH, n);
    memcpy(b + n, "1;", 2);
    memset(b + n + 2, 'e', big - n - 2);
    CHECK_INT(request_n(b, big), 0);
    CHECK_STR(body_after_head(b, big), "ERR");
    free(b);
#undef CH
}

static void row09_pipelined_requests(void)
{
    const char s[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n";
    size_t n = sizeof(s) - 1;
    CHECK_INT(request_n(s, n), 0);
    CHECK(str_is(req.path, "/1"));
    size_t first = req.head_len;
    CHECK_INT(first, 28);
    CHECK_INT(request_n(s + first, n - first), 0);
    CHECK(str_is(req.path, "/2"));
    CHECK(str_is(req.authority, "b"));
    CHECK_INT(first + req.head_len, n);

    /* A body between them: the next head starts after content_length bytes. */
    const char t[] =
        "POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    n = sizeof(t) - 1;
    CHECK_INT(request_n(t, n), 0);
    size_t next = req.head_len + (size_t)req.content_length;
    CHECK(memcmp(t + req.head_len, "hello", 5) == 0);
    CHECK_INT(request_n(t + next, n - next), 0);
    CHECK_INT(req.method, PTC_HTTP_GET);
    CHECK(str_is(req.path, "/2"));
}

static void row10_field_syntax(void)
{
    CHECK_INT(REQ(P "X: a\rb\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X: a\0b\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X: a\x01"
                    "b\r\n\r\n"),
              400);
    CHECK_INT(REQ(P "X: a\x1f\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X: a\x7f\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X: a\nb\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X Y: 1\r\n\r\n"), 400);
    CHECK_INT(REQ(P ": x\r\n\r\n"), 400);
    CHECK_STR(err.reason, "empty field name");
    CHECK_INT(REQ(P "X(: 1\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X@Y: 1\r\n\r\n"), 400);
    CHECK_INT(REQ(P "X\r\n\r\n"), 400);
    CHECK_INT(REQ(P "\xc3\xa9: 1\r\n\r\n"), 400);
    CHECK_INT(REQ("POST / HTTP/1.1\r\n Host: a\r\n\r\n"), 400);
    CHECK_INT(REQ("POST / HTTP/1.1\r\n\tHost: a\r\n\r\n"), 400);
    /* What values may hold: HTAB inside, obs-text, nothing at all. */
    CHECK_INT(REQ(P "X: a\tb \t\r\nY: caf\xc3\xa9\xff\r\nZ:\r\nW: \r\n\r\n"), 0);
    CHECK_INT(req.n_headers, 5);
    CHECK(str_is(req.headers[1].value, "a\tb"));
    CHECK(str_is(req.headers[2].value, "caf\xc3\xa9\xff"));
    CHECK(str_is(req.headers[3].value, ""));
    CHECK(str_is(req.headers[4].value, ""));
    CHECK_INT(REQ(P "!#$%&'*+-.^_`|~09azAZ: 1\r\n\r\n"), 0);
}

static void row11_limits(void)
{
    size_t big = 64 * 1024;
    char *s = malloc(big);

    /* A request line of 8192 bytes passes, one more is 414. */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t line = PTC_HTTP_MAX_REQUEST_LINE + extra;
        size_t n = 0;
        memcpy(s, "GET /", 5);
        n = 5;
        size_t fill = line - 5 - 9;
        memset(s + n, 'a', fill);
        n += fill;
        memcpy(s + n, " HTTP/1.1\r\nHost: a\r\n\r\n", 22);
        n += 22;
        CHECK_INT(request_n(s, n), extra ? 414 : 0);
    }

    /* A field line of 8192 bytes passes, one more is 431. */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t n = sizeof(P) - 1;
        memcpy(s, P, n);
        memcpy(s + n, "X: ", 3);
        memset(s + n + 3, 'v', PTC_HTTP_MAX_FIELD_LINE - 3 + extra);
        n += PTC_HTTP_MAX_FIELD_LINE + extra;
        memcpy(s + n, "\r\n\r\n", 4);
        n += 4;
        CHECK_INT(request_n(s, n), extra ? 431 : 0);
    }

    /* 100 fields pass, 101 are 431. */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t n = sizeof(P) - 1;
        memcpy(s, P, n);
        for (size_t i = 1; i < PTC_HTTP_MAX_HEADERS + extra; i++)
            n += (size_t)sprintf(s + n, "X-%zu: v\r\n", i);
        memcpy(s + n, "\r\n", 2);
        n += 2;
        CHECK_INT(request_n(s, n), extra ? 431 : 0);
        if (!extra)
            CHECK_INT(req.n_headers, PTC_HTTP_MAX_HEADERS);
    }

    /* A head of exactly 32 KiB passes, one byte more is 431. */
    for (size_t extra = 0; extra < 2; extra++) {
        size_t n = sizeof(P) - 1;
        memcpy(s, P, n);
        size_t left = PTC_HTTP_MAX_HEAD + extra - n - 2;
        while (left > 0) {
            size_t line = left > 4000 ? 4000 : left;
            if (left - line < 8 && left != line)
                line = left - 8;
            memcpy(s + n, "X: ", 3);
            memset(s + n + 3, 'v', line - 5);
            memcpy(s + n + line - 2, "\r\n", 2);
            n += line;
            left -= line;
        }
        memcpy(s + n, "\r\n", 2);
        n += 2;
        CHECK_INT(n, PTC_HTTP_MAX_HEAD + extra);
        CHECK_INT(request_n(s, n), extra ? 431 : 0);
    }
    free(s);
}

static void row12_host(void)
{
    CHECK_INT(REQ("GET / HTTP/1.1\r\n\r\n"), 400);
    CHECK_STR(err.reason, "missing Host");
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a, b\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a@b\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a:99999\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost:\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nhOST: a:8080\r\n\r\n"), 0);
    CHECK(str_is(req.authority, "a:8080"));
    /* HTTP/1.0 may leave Host out. */
    CHECK_INT(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK_INT(req.authority.len, 0);
}

static void row13_absolute_form_wins(void)
{
    CHECK_INT(REQ("GET http://b.ex/ HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 0);
    CHECK_INT(req.form, PTC_HTTP_FORM_ABSOLUTE);
    CHECK(str_is(req.authority, "b.ex"));
    CHECK(str_is(req.path, "/"));
    CHECK(str_is(req.target, "http://b.ex/"));
    CHECK_INT(REQ("GET HTTPS://B.ex:8443/x/y?q=1 HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 0);
    CHECK(str_is(req.authority, "B.ex:8443"));
    CHECK(str_is(req.path, "/x/y"));
    CHECK(str_is(req.query, "q=1"));
    CHECK(req.has_query);
    CHECK_INT(REQ("GET http://b.ex HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 0);
    CHECK(str_is(req.path, "/"));
    CHECK(!req.has_query);
    CHECK_INT(REQ("GET http://b.ex?x HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 0);
    CHECK(str_is(req.path, "/"));
    CHECK(str_is(req.query, "x"));
    CHECK(req.has_query);
    CHECK_INT(REQ("GET http://b.ex/ HTTP/1.0\r\n\r\n"), 0);
    CHECK(str_is(req.authority, "b.ex"));
    /* The authority is checked like Host; Host is still required and checked. */
    CHECK_INT(REQ("GET http://u@b.ex/ HTTP/1.1\r\nHost: b.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET http:///x HTTP/1.1\r\nHost: b.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET http://b.ex:0/ HTTP/1.1\r\nHost: b.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET ftp://b.ex/ HTTP/1.1\r\nHost: b.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET http:/b.ex/ HTTP/1.1\r\nHost: b.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET http://b.ex/ HTTP/1.1\r\n\r\n"), 400);
    CHECK_INT(REQ("GET http://b.ex/ HTTP/1.1\r\nHost: a, b\r\n\r\n"), 400);
}

static void row14_request_target_forms(void)
{
    CHECK_INT(REQ("GET a.ex:80 HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET * HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("CONNECT a.ex:443 HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 405);
    CHECK_INT(REQ("OPTIONS * HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 0);
    CHECK_INT(req.form, PTC_HTTP_FORM_ASTERISK);
    CHECK(str_is(req.path, "*"));
    CHECK_INT(REQ("OPTIONS *x HTTP/1.1\r\nHost: a.ex\r\n\r\n"), 400);
    CHECK_INT(REQ("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /#f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /\x80 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /\t HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void row15_host_normalised(void)
{
    /* The parser hands over the normal form it checked: routing uses it. */
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: EXAMPLE.com.:443\r\n\r\n"), 0);
    CHECK_STR(req.host, "example.com");
    CHECK_INT(req.host_len, 11);
    CHECK_INT(req.port, 443);
    CHECK_INT(REQ("GET http://[::1]:8080/ HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
    CHECK_STR(req.host, "[::1]");
    CHECK_INT(req.port, 8080);
    /* The target's authority wins over Host, which is checked all the same. */
    CHECK_INT(REQ("GET http://B.ex/ HTTP/1.1\r\nHost: a.ex:81\r\n\r\n"), 0);
    CHECK_STR(req.host, "b.ex");
    CHECK_INT(req.port, 0);
    CHECK_INT(REQ("GET http://b.ex/ HTTP/1.1\r\nHost: a..ex\r\n\r\n"), 400);
    /* No Host in HTTP/1.0: no host, and nothing left from the last request. */
    CHECK_INT(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK_STR(req.host, "");
    CHECK_INT(req.host_len, 0);
    CHECK_INT(req.port, 0);
}

/* The normal form of the parsed request's path, or "ERR". */
static const char *normal_path(void)
{
    static char out[1024];
    if (ptc_http_normalize_path(req.path.p, req.path.len, out) < 0)
        return "ERR";
    return out;
}

static void row16_dot_segments(void)
{
    CHECK_INT(REQ("GET /a/../admin HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "/admin");
    CHECK_INT(REQ("GET /a/%2e%2E/admin?x=/../ HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "/admin");
    CHECK(str_is(req.query, "x=/../"));
    CHECK_INT(REQ("GET /../x HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "ERR");
    CHECK_INT(REQ("GET http://a/b/../../x HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "ERR");
}

static void row17_escapes_and_raw_bytes(void)
{
    CHECK_INT(REQ("GET /p%2F..%2Fadmin HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "/p%2F..%2Fadmin");
    CHECK_INT(REQ("GET //admin HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "/admin");
    CHECK_INT(REQ("GET /% HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "ERR");
    CHECK_INT(REQ("GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "ERR");
    CHECK_INT(REQ("GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "ERR");
    CHECK_INT(REQ("GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK_STR(normal_path(), "ERR");
    /* Raw SP, CTL and '#' never get past the request line. */
    CHECK_INT(REQ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /a\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET /a\0 HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void row19_upgrade_needs_connection_upgrade(void)
{
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n"), 0);
    CHECK(!req.upgrade);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"), 0);
    CHECK(req.upgrade);
    CHECK(str_is(req.upgrade_value, "websocket"));
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: x, upgrade\r\n"
                  "Upgrade: websocket\r\n\r\n"),
              0);
    CHECK(req.upgrade);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgraded\r\nUpgrade: websocket\r\n\r\n"), 0);
    CHECK(!req.upgrade);
    CHECK_INT(REQ("GET / HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"), 0);
    CHECK(!req.upgrade);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\n\r\n"), 0);
    CHECK(!req.upgrade);
    CHECK_INT(
        REQ("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nUpgrade: h2c\r\nConnection: upgrade\r\n\r\n"),
        400);
}

static void row21_expect(void)
{
    CHECK_INT(REQ(P "Expect: foo\r\n\r\n"), 417);
    CHECK_INT(REQ(P "Expect:\r\n\r\n"), 417);
    CHECK_INT(REQ(P "Expect: 100-continue, foo\r\n\r\n"), 417);
    CHECK_INT(REQ(P "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"), 0);
    CHECK(req.expect_continue);
    CHECK_INT(REQ(P "Expect: 100-Continue\r\n\r\n"), 0);
    CHECK(req.expect_continue);
    CHECK_INT(REQ(P "\r\n"), 0);
    CHECK(!req.expect_continue);
    /* RFC 9110 §10.1.1: ignored in HTTP/1.0. */
    CHECK_INT(REQ("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"), 0);
    CHECK(!req.expect_continue);
}

static void upstream_responses(void)
{
    /* reliability.md §2 "Upstream responses": 502 and close. */
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
              502);
    CHECK_INT(RES("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nTransfer_Encoding: chunked\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nX : y\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 OK\nX: y\r\n\r\n"), 502);
    /* Status lines. */
    CHECK_INT(RES("HTTP/1.1 20 OK\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 2000 OK\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 600 X\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 099 X\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200OK\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/2 200 OK\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/2.0 200 OK\r\n\r\n"), 502);
    CHECK_INT(RES("http/1.1 200 OK\r\n\r\n"), 502);
    CHECK_INT(RES("ICY 200 OK\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1 200 O\x01K\r\n\r\n"), 502);
    CHECK_INT(RES("\r\nHTTP/1.1 200 OK\r\n\r\n"), 502);
    CHECK_INT(RES("HTTP/1.1  200 OK\r\n\r\n"), 502);
}

/* ---- good paths ---- */

static void good_simple_get(void)
{
    const char s[] = "GET /index.html?a=1&b=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t/1\r\n"
                     "Accept: */*\r\n\r\n";
    CHECK_INT(request_n(s, sizeof(s) - 1), 0);
    CHECK_INT(req.method, PTC_HTTP_GET);
    CHECK(str_is(req.method_name, "GET"));
    CHECK(str_is(req.target, "/index.html?a=1&b=%20"));
    CHECK_INT(req.form, PTC_HTTP_FORM_ORIGIN);
    CHECK(str_is(req.path, "/index.html"));
    CHECK(str_is(req.query, "a=1&b=%20"));
    CHECK(req.has_query);
    CHECK(str_is(req.authority, "example.com"));
    CHECK_INT(req.minor_version, 1);
    CHECK_INT(req.n_headers, 3);
    CHECK(str_is(req.headers[1].name, "User-Agent"));
    CHECK(str_is(req.headers[1].value, "t/1"));
    CHECK_INT(req.content_length, -1);
    CHECK(!req.chunked);
    CHECK(req.keep_alive);
    CHECK(!req.expect_continue);
    CHECK(!req.upgrade);
    CHECK_INT(req.head_len, sizeof(s) - 1);
    CHECK(ptc_http_find_header(req.headers, req.n_headers, "user-agent") == &req.headers[1]);
    CHECK(ptc_http_find_header(req.headers, req.n_headers, "User-Agen") == NULL);
    CHECK_INT(REQ("GET /? HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK(req.has_query);
    CHECK_INT(req.query.len, 0);
}

static void good_post_content_length(void)
{
    const char s[] = "POST /api HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world";
    CHECK_INT(request_n(s, sizeof(s) - 1), 0);
    CHECK_INT(req.method, PTC_HTTP_POST);
    CHECK_INT(req.content_length, 11);
    CHECK(memcmp(s + req.head_len, "hello world", 11) == 0);
}

static void good_chunked_post(void)
{
    const char s[] = P "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    CHECK_INT(request_n(s, sizeof(s) - 1), 0);
    CHECK(req.chunked);
    CHECK_INT(req.content_length, -1);
    CHECK_STR(body_after_head(s, sizeof(s) - 1), "hello world");
}

static void good_methods(void)
{
    static const struct {
        const char *name;
        ptc_http_method m;
    } cases[] = {{"GET", PTC_HTTP_GET},        {"HEAD", PTC_HTTP_HEAD},
                 {"POST", PTC_HTTP_POST},      {"PUT", PTC_HTTP_PUT},
                 {"DELETE", PTC_HTTP_DELETE},  {"OPTIONS", PTC_HTTP_OPTIONS},
                 {"PATCH", PTC_HTTP_PATCH},    {"TRACE", PTC_HTTP_TRACE},
                 {"PURGE", PTC_HTTP_OTHER},    {"get", PTC_HTTP_OTHER},
                 {"M-SEARCH", PTC_HTTP_OTHER}, {"GETS", PTC_HTTP_OTHER},
                 {"PROPFIND", PTC_HTTP_OTHER}, {"X!#$%&'*+.^_`|~", PTC_HTTP_OTHER}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char s[128];
        int n = snprintf(s, sizeof(s), "%s / HTTP/1.1\r\nHost: a\r\n\r\n", cases[i].name);
        CHECK_INT(request_n(s, (size_t)n), 0);
        CHECK_INT(req.method, cases[i].m);
        CHECK(str_is(req.method_name, cases[i].name));
    }
    CHECK_INT(REQ("GE(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("/ HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void good_versions(void)
{
    CHECK_INT(REQ("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    CHECK_INT(REQ("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    CHECK_INT(REQ("GET / HTTP/0.9\r\nHost: a\r\n\r\n"), 505);
    CHECK_INT(REQ("GET / HTTP/9.9\r\nHost: a\r\n\r\n"), 505);
    CHECK_INT(REQ("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/2.0x\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/11\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/2\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.a\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / FOO\r\nHost: a\r\n\r\n"), 400);
    CHECK_INT(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK_INT(req.minor_version, 0);
}

static void good_keep_alive_rules(void)
{
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK(req.keep_alive);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    CHECK(!req.keep_alive);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo, Close\r\n\r\n"), 0);
    CHECK(!req.keep_alive);
    CHECK_INT(REQ("GET / HTTP/1.0\r\n\r\n"), 0);
    CHECK(!req.keep_alive);
    CHECK_INT(REQ("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"), 0);
    CHECK(req.keep_alive);
    CHECK_INT(REQ("GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n"), 0);
    CHECK(!req.keep_alive);
    CHECK_INT(REQ("GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n"), 0);
    CHECK(!req.keep_alive);
}

/* conn_options: whether Connection names anything beyond keep-alive and
 * upgrade ("close" counts: a field named Close would have to go). */
static void good_connection_options(void)
{
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0);
    CHECK(!req.conn_options);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, ,upgrade\r\n\r\n"), 0);
    CHECK(!req.conn_options);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"), 0);
    CHECK(req.conn_options);
    CHECK_INT(REQ("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: X-Foo\r\n\r\n"), 0);
    CHECK(req.conn_options);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n"), 0);
    CHECK(!res.conn_options);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: X-Trace\r\n\r\n"), 0);
    CHECK(res.conn_options);
}

static void good_leading_empty_lines(void)
{
    const char s[] = "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n";
    CHECK_INT(request_n(s, sizeof(s) - 1), 0);
    CHECK_INT(req.head_len, sizeof(s) - 1);
    CHECK(str_is(req.method_name, "GET"));
    CHECK_INT(REQ("\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
}

static void good_response_framing(void)
{
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"), 0);
    CHECK_INT(res.status, 200);
    CHECK(str_is(res.reason, "OK"));
    CHECK_INT(res.minor_version, 1);
    CHECK_INT(res.content_length, 5);
    CHECK(!res.chunked && !res.close_delimited && !res.bodyless && res.keep_alive);
    CHECK_INT(res.n_headers, 1);

    CHECK_INT(RES("HTTP/1.1 404 Not  Found \xff\r\nTransfer-Encoding: Chunked\r\n\r\n"), 0);
    CHECK(str_is(res.reason, "Not  Found \xff"));
    CHECK(res.chunked && res.keep_alive && !res.close_delimited);
    CHECK_INT(res.content_length, -1);

    CHECK_INT(RES("HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"), 0);
    CHECK_INT(res.reason.len, 0);
    CHECK_INT(RES("HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"), 0);
    CHECK_INT(res.reason.len, 0);

    /* Request-only fields mean nothing here, repeated or not. */
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nHost: a\r\nHost: b\r\nUpgrade: x\r\nUpgrade: y\r\nExpect: z\r\n"
                  "Content-Length: 0\r\n\r\n"),
              0);
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"), 0);
    CHECK(!res.keep_alive);
    CHECK_INT(RES("HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\n"), 0);
    CHECK(!res.keep_alive);
    CHECK_INT(res.minor_version, 0);
    CHECK_INT(RES("HTTP/1.0 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\n"), 0);
    CHECK(res.keep_alive);
}

static void good_response_close_delimited(void)
{
    CHECK_INT(RES("HTTP/1.1 200 OK\r\nServer: x\r\n\r\nbody until EOF"), 0);
    CHECK(res.close_delimited);
    CHECK(!res.keep_alive && !res.bodyless && !res.chunked);
    CHECK_INT(res.content_length, -1);
    CHECK_INT(RES("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"), 0);
    CHECK(res.close_delimited);
    CHECK(!res.keep_alive);
}

static void good_response_bodyless(void)
{
    /* HEAD: bodyless whatever the headers say; the length stays known. */
    CHECK_INT(RES_TO(PTC_HTTP_HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"), 0);
    CHECK(res.bodyless && res.keep_alive && !res.close_delimited);
    CHECK_INT(res.content_length, 1234);
    CHECK_INT(RES_TO(PTC_HTTP_HEAD, "HTTP/1.1 200 OK\r\n\r\n"), 0);
    CHECK(res.bodyless && !res.close_delimited && res.keep_alive);
    CHECK_INT(RES_TO(PTC_HTTP_HEAD, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    CHECK(res.bodyless && res.chunked);

    CHECK_INT(RES("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), 0);
    CHECK(res.bodyless && res.keep_alive && !res.close_delimited);
    CHECK_INT(res.content_length, -1);
    CHECK_INT(RES("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"), 0);
    CHECK(res.bodyless && res.keep_alive);
    CHECK_INT(res.content_length, 7);
    CHECK_INT(RES("HTTP/1.1 304 Not Modified\r\n\r\n"), 0);
    CHECK(res.bodyless && !res.close_delimited);
    CHECK_INT(RES("HTTP/1.1 100 Continue\r\n\r\n"), 0);
    CHECK(res.bodyless);
    CHECK_INT(res.status, 100);
    CHECK_INT(RES("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
              0);
    CHECK(res.bodyless);
    CHECK_INT(RES("HTTP/1.1 103 Early Hints\r\nTransfer-Encoding: chunked\r\n\r\n"), 0);
    CHECK(res.bodyless && !res.chunked);
}

/* ---- ptc_http_scan_head ---- */

static void scan_byte_at_a_time(void)
{
    const char s[] = "\r\nGET /x HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\nNEXT";
    size_t head = sizeof(s) - 1 - 4;
    size_t scan = 0;
    for (size_t n = 1; n <= sizeof(s) - 1; n++) {
        long h = ptc_http_scan_head(s, n, &scan, true, &err);
        if (n < head) {
            CHECK_INT(h, 0);
        } else {
            CHECK_INT(h, head);
            break;
        }
    }
    /* A response, fed in uneven pieces. */
    const char r[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    scan = 0;
    long h = 0;
    for (size_t n = 3; h == 0 && n < sizeof(r) + 3; n += 3)
        h = ptc_http_scan_head(r, n < sizeof(r) - 1 ? n : sizeof(r) - 1, &scan, false, &err);
    CHECK_INT(h, sizeof(r) - 1);
}

static void scan_bare_line_ends(void)
{
    size_t scan = 0;
    CHECK_INT(ptc_http_scan_head("GET / HTTP/1.1\n", 15, &scan, true, &err), -1);
    CHECK_INT(err.status, 400);
    CHECK_STR(err.reason, "bare LF");
    scan = 0;
    CHECK_INT(ptc_http_scan_head("GET / HTTP/1.1\rX", 16, &scan, true, &err), -1);
    CHECK_STR(err.reason, "bare CR");
    scan = 0;
    CHECK_INT(ptc_http_scan_head("\n", 1, &scan, true, &err), -1);
    scan = 0;
    CHECK_INT(ptc_http_scan_head("GET / HTTP/1.1\r\nHost: a\n\r\n", 26, &scan, true, &err), -1);
    scan = 0;
    CHECK_INT(ptc_http_scan_head("GET / HTTP/1.1\r\nHost: a\r\n\n", 26, &scan, true, &err), -1);
    /* A CR at the end waits for the next byte, and is judged then. */
    scan = 0;
    CHECK_INT(ptc_http_scan_head("GET / HTTP/1.1\r", 15, &scan, true, &err), 0);
    CHECK_INT(ptc_http_scan_head("GET / HTTP/1.1\rx", 16, &scan, true, &err), -1);
    CHECK_STR(err.reason, "bare CR");
    scan = 0;
    CHECK_INT(ptc_http_scan_head("\r\nHTTP/1.1 200 OK\r\n\r\n", 21, &scan, false, &err), -1);
}

/* The word-at-a-time searches (line ends, control bytes, name runs)
 * against byte loops, at every length and offset up to 40 bytes. */
static void scan_find_crlf_every_offset(void)
{
    static const char fill[] = {'a', '\t', '\x01', '\x0b', '\x0c', '\x0e', '\x80', '\xff', ' ', '\0'};
    static const char fill_ctl[] = {'a', '~', ' ', '\x1f', '\x20', '\x7f', '\x80', '\xff', '\xe0', '\x9f'};
    char buf[40];
    unsigned seed = 7;
    for (int round = 0; round < 4000; round++) {
        size_t len = 1 + (size_t)(round % (int)sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = fill[(seed >> 16) % sizeof(fill)];
        }
        seed = seed * 1103515245u + 12345u;
        if (seed % 3 != 0)
            buf[(seed >> 8) % len] = (seed & 1) ? '\r' : '\n';
        size_t want = 0;
        while (want < len && buf[want] != '\r' && buf[want] != '\n')
            want++;
        CHECK_INT(ptc_http_find_crlf(buf, buf + len) - buf, (long)want);
        /* The control-byte search: below 0x20 and DEL, not obs-text. */
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (seed >> 16) % 4 != 0 ? 'x' : fill_ctl[(seed >> 8) % sizeof(fill_ctl)];
        }
        want = 0;
        while (want < len && (uint8_t)buf[want] >= 0x20 && (uint8_t)buf[want] != 0x7f)
            want++;
        CHECK_INT(ptc_http_find_ctl(buf, buf + len) - buf, (long)want);
        /* The name-run skip: it stops inside the run only in the last 15
         * bytes (where the byte loop takes over), never past it. */
        static const char fill_name[] = {'a', 'Z', 'q', '7', '-', '_', ':',    '@',    '[',    '`',
                                         '{', '/', '0', '9', 'A', 'z', '\x80', '\xc1', '\xda', '\xfa'};
        for (size_t i = 0; i < len; i++) {
            seed = seed * 1103515245u + 12345u;
            buf[i] = (seed >> 16) % 3 != 0 ? 'k' : fill_name[(seed >> 8) % sizeof(fill_name)];
        }
        size_t run = 0;
        while (run < len && ((buf[run] >= 'a' && buf[run] <= 'z') || (buf[run] >= 'A' && buf[run] <= 'Z') ||
                             (buf[run] >= '0' && buf[run] <= '9') || buf[run] == '-'))
            run++;
        size_t got = (size_t)(ptc_http_skip_alnum_dash(buf, buf + len) - buf);
        CHECK(got <= run);
        CHECK(got == run || len - got < 16);
    }
    /* A value with HTAB and a stray control byte: the head still ends at
     * the first empty line (the parser refuses the control byte later). */
    static const char head[] = "GET / HTTP/1.1\r\nHost: a\r\nX: \t1\x0b2\t\r\n\r\nnext";
    size_t scan = 0;
    CHECK_INT(ptc_http_scan_head(head, sizeof(head) - 1, &scan, true, &err), (long)sizeof(head) - 1 - 4);
}

static void scan_limits_incremental(void)
{
    size_t big = 40 * 1024;
    char *s = malloc(big);

    /* 414 as soon as 8 KiB of request line have arrived with no end. */
    memcpy(s, "GET /", 5);
    memset(s + 5, 'a', big - 5);
    size_t scan = 0;
    long h = 0;
    size_t n;
    for (n = 1; n <= big && h == 0; n++)
        h = ptc_http_scan_head(s, n, &scan, true, &err);
    CHECK_INT(h, -1);
    CHECK_INT(err.status, 414);
    CHECK_INT(n - 1, PTC_HTTP_MAX_REQUEST_LINE + 1);

    /* 431 for a field line, fed in 1000-byte steps. */
    n = (size_t)sprintf(s, "GET / HTTP/1.1\r\nX: ");
    memset(s + n, 'v', big - n);
    scan = 0;
    h = 0;
    for (n = 1000; n <= big && h == 0; n += 1000)
        h = ptc_http_scan_head(s, n, &scan, true, &err);
    CHECK_INT(h, -1);
    CHECK_INT(err.status, 431);
    CHECK_INT(n - 1000, 9000);

    /* 431 once the head passes 32 KiB, whatever the lines. */
    n = (size_t)sprintf(s, "GET / HTTP/1.1\r\n");
    while (n + 10 < big) {
        memcpy(s + n, "X: 123\r\n", 8);
        n += 8;
    }
    scan = 0;
    h = 0;
    for (n = 7; n <= big && h == 0; n += 7)
        h = ptc_http_scan_head(s, n, &scan, true, &err);
    CHECK_INT(h, -1);
    CHECK_INT(err.status, 431);
    CHECK(n - 7 >= PTC_HTTP_MAX_HEAD && n - 7 < PTC_HTTP_MAX_HEAD + 7);

    /* Responses: an over-long status line is 431, not 414. */
    memcpy(s, "HTTP/1.1 200 ", 13);
    memset(s + 13, 'r', big - 13);
    scan = 0;
    CHECK_INT(ptc_http_scan_head(s, big, &scan, false, &err), -1);
    CHECK_INT(err.status, 431);
    free(s);
}

static void scan_pipelined_stops_at_first_head(void)
{
    const char s[] = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t scan = 0;
    CHECK_INT(ptc_http_scan_head(s, sizeof(s) - 1, &scan, true, &err), 28);
    scan = 0;
    CHECK_INT(ptc_http_scan_head(s + 28, sizeof(s) - 1 - 28, &scan, true, &err), sizeof(s) - 1 - 28);
}

static void parse_without_scan_is_safe(void)
{
    /* The parser checks everything itself when handed a truncated head. */
    ptc_http_error e;
    CHECK_INT(ptc_http_parse_request("GET / HTTP/1.1\r\nHost: a\r\n", 25, &req, &e), -1);
    CHECK_INT(e.status, 400);
    CHECK_INT(ptc_http_parse_request("GET / HTTP/1.1\r\nHost: a\r\n\r", 26, &req, &e), -1);
    CHECK_INT(ptc_http_parse_request("GET / HTTP/1.1\r\nHost", 20, &req, &e), -1);
    CHECK_INT(ptc_http_parse_request("GET / HTTP/1.1\r", 15, &req, &e), -1);
    CHECK_INT(ptc_http_parse_request("", 0, &req, &e), -1);
    CHECK_INT(ptc_http_parse_response("HTTP/1.1 200 OK\r\n", 17, PTC_HTTP_GET, &res, &e), -1);
    CHECK_INT(e.status, 502);
    CHECK_INT(ptc_http_parse_response("HTTP/1.1 200", 12, PTC_HTTP_GET, &res, &e), -1);
    CHECK_INT(ptc_http_parse_response("", 0, PTC_HTTP_GET, &res, &e), -1);
}

int main(void)
{
    RUN(row01_content_length_and_transfer_encoding);
    RUN(row02_content_length_values);
    RUN(row03_transfer_encoding_lists);
    RUN(row04_transfer_encoding_unknown);
    RUN(row05_transfer_encoding_obfuscation);
    RUN(row06_http10_with_transfer_encoding);
    RUN(row07_chunk_framing);
    RUN(row08_extensions_and_trailers);
    RUN(row09_pipelined_requests);
    RUN(row10_field_syntax);
    RUN(row11_limits);
    RUN(row12_host);
    RUN(row13_absolute_form_wins);
    RUN(row14_request_target_forms);
    RUN(row15_host_normalised);
    RUN(row16_dot_segments);
    RUN(row17_escapes_and_raw_bytes);
    RUN(row19_upgrade_needs_connection_upgrade);
    RUN(row21_expect);
    RUN(upstream_responses);
    RUN(good_simple_get);
    RUN(good_post_content_length);
    RUN(good_chunked_post);
    RUN(good_methods);
    RUN(good_versions);
    RUN(good_keep_alive_rules);
    RUN(good_connection_options);
    RUN(good_leading_empty_lines);
    RUN(good_response_framing);
    RUN(good_response_close_delimited);
    RUN(good_response_bodyless);
    RUN(scan_byte_at_a_time);
    RUN(scan_bare_line_ends);
    RUN(scan_find_crlf_every_offset);
    RUN(scan_limits_incremental);
    RUN(scan_pipelined_stops_at_first_head);
    RUN(parse_without_scan_is_safe);
    TEST_EXIT();
}
