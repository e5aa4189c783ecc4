/* Head rewriting: forwarded headers at the edge and behind trusted
 * proxies, Connection-named and hop-by-hop removal, framing written anew,
 * security headers, own answers and request ids. */
#include "proxy/rewrite.h"

#include <stdio.h>
#include <string.h>

#include "http/parser.h"
#include "testlib.h"

static ptc_http_request req;
static ptc_http_response res;

static void parse_req(const char *head)
{
    ptc_http_error err;
    size_t scan = 0;
    long n = ptc_http_scan_head(head, strlen(head), &scan, true, &err);
    CHECK(n > 0);
    CHECK_INT(ptc_http_parse_request(head, (size_t)n, &req, &err), 0);
}

static void parse_res(const char *head, ptc_http_method m)
{
    ptc_http_error err;
    size_t scan = 0;
    long n = ptc_http_scan_head(head, strlen(head), &scan, false, &err);
    CHECK(n > 0);
    CHECK_INT(ptc_http_parse_response(head, (size_t)n, m, &res, &err), 0);
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

static ptc_rewrite_req edge(void)
{
    return (ptc_rewrite_req){
        .path = PTC_STR_LIT("/x"),
        .peer_ip = PTC_STR_LIT("192.0.2.7"),
        .local_port = 8080,
        .request_id = PTC_STR_LIT("rid-1"),
    };
}

static void test_edge_overwrites_forwarded_headers(void)
{
    parse_req("GET /a/../x?q=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Forwarded-For: 6.6.6.6\r\n"
              "X-Forwarded-For: 7.7.7.7\r\nX-Real-IP: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
              "X-Forwarded-Host: evil\r\nX-Forwarded-Port: 1\r\nX-Request-ID: old\r\nAccept: */*\r\n\r\n");
    ptc_rewrite_req in = edge();
    in.query = PTC_STR_LIT("q=1");
    in.has_query = true;
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    const char *s = ptc_buf_cstr(&b);
    CHECK(strncmp(s, "GET /x?q=1 HTTP/1.1\r\nHost: Example.com:8080\r\n", 45) == 0);
    CHECK(strstr(s, "X-Forwarded-For: 192.0.2.7\r\n") != NULL);
    CHECK_INT(count(s, "X-Forwarded-For"), 1);
    CHECK(strstr(s, "6.6.6.6") == NULL && strstr(s, "7.7.7.7") == NULL);
    CHECK(strstr(s, "X-Real-IP: 192.0.2.7\r\n") != NULL);
    CHECK(strstr(s, "X-Forwarded-Proto: http\r\n") != NULL);
    CHECK(strstr(s, "X-Forwarded-Host: Example.com:8080\r\n") != NULL);
    CHECK(strstr(s, "X-Forwarded-Port: 8080\r\n") != NULL);
    CHECK(strstr(s, "X-Request-ID: rid-1\r\n") != NULL && strstr(s, "old") == NULL);
    CHECK(strstr(s, "Accept: */*\r\n") != NULL);
    CHECK(strstr(s, "evil") == NULL);
    CHECK(strcmp(s + b.len - 4, "\r\n\r\n") == 0);
    ptc_buf_free(&b);
}

static void test_trusted_proxy_appends(void)
{
    parse_req("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2\r\nX-Forwarded-For: 3.3.3.3\r\n"
              "X-Forwarded-Proto: https\r\nX-Forwarded-Proto: http\r\nX-Real-IP: 1.1.1.1\r\n\r\n");
    ptc_rewrite_req in = edge();
    in.peer_trusted = true;
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    const char *s = ptc_buf_cstr(&b);
    CHECK(strstr(s, "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 192.0.2.7\r\n") != NULL);
    CHECK_INT(count(s, "X-Forwarded-Proto"), 1);
    CHECK(strstr(s, "X-Forwarded-Proto: https\r\n") != NULL); /* the first one is kept */
    CHECK(strstr(s, "X-Real-IP: 1.1.1.1\r\n") != NULL);
    CHECK(strstr(s, "X-Forwarded-Host: a\r\n") != NULL); /* absent: ours */
    ptc_buf_free(&b);
}

static void test_connection_named_and_hop_by_hop(void)
{
    parse_req("POST / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Secret, x-forwarded-for\r\n"
              "Connection: Foo\r\nX-Secret: s\r\nFoo: f\r\nKeep-Alive: timeout=1\r\nProxy-Connection: x\r\n"
              "TE: trailers\r\nTrailer: X\r\nUpgrade: h2c\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
              "X-Forwarded-For: 9.9.9.9\r\nX-Keep: k\r\n\r\n");
    ptc_rewrite_req in = edge();
    in.framing = PTC_BODY_LENGTH;
    in.length = 5;
    in.peer_trusted = true; /* a header named in Connection goes even from a trusted peer */
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    const char *s = ptc_buf_cstr(&b);
    const char *gone[] = {"Connection", "X-Secret", "Foo",     "Keep-Alive", "Proxy-Connection",
                          "TE:",        "Trailer",  "Upgrade", "Expect",     "9.9.9.9"};
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
        if (strstr(s, gone[i]) != NULL)
            fprintf(stderr, "still there: %s\n", gone[i]);
        CHECK(strstr(s, gone[i]) == NULL);
    }
    CHECK(strstr(s, "X-Keep: k\r\n") != NULL);
    CHECK(strstr(s, "Content-Length: 5\r\n") != NULL);
    CHECK_INT(count(s, "Content-Length"), 1);
    CHECK(strstr(s, "X-Forwarded-For: 192.0.2.7\r\n") != NULL);
    ptc_buf_free(&b);
}

/* "Connection: close" names a field too; a response whose Connection only
 * says keep-alive keeps every other field. */
static void test_connection_close_names_a_field(void)
{
    parse_req("GET / HTTP/1.1\r\nHost: a\r\nClose: c\r\nConnection: close\r\nX-Keep: k\r\n\r\n");
    ptc_rewrite_req in = edge();
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    CHECK(strstr(ptc_buf_cstr(&b), "Close") == NULL);
    CHECK(strstr(ptc_buf_cstr(&b), "X-Keep: k\r\n") != NULL);
    ptc_buf_free(&b);

    parse_res("HTTP/1.1 200 OK\r\nServer: s\r\nKeep-Alive: timeout=5\r\nConnection: keep-alive\r\n"
              "Content-Length: 0\r\n\r\n",
              PTC_HTTP_GET);
    ptc_rewrite_resp out = {.request_id = PTC_STR_LIT("r"), .date = PTC_STR_LIT("d")};
    ptc_rewrite_response(&b, &res, &out);
    CHECK(strstr(ptc_buf_cstr(&b), "Server: s\r\n") != NULL);
    CHECK(strstr(ptc_buf_cstr(&b), "Keep-Alive") == NULL && strstr(ptc_buf_cstr(&b), "keep-alive") == NULL);
    ptc_buf_free(&b);
}

static void test_framing_written_anew(void)
{
    parse_req("POST /u HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n");
    ptc_rewrite_req in = edge();
    in.framing = PTC_BODY_CHUNKED;
    in.websocket = false;
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    CHECK_INT(count(ptc_buf_cstr(&b), "Transfer-Encoding: chunked\r\n"), 1);
    ptc_buf_free(&b);

    parse_req("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              "Sec-WebSocket-Key: k\r\n\r\n");
    in = edge();
    in.websocket = true;
    b = (ptc_buf)PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    const char *s = ptc_buf_cstr(&b);
    CHECK(strstr(s, "Connection: upgrade\r\nUpgrade: websocket\r\n") != NULL);
    CHECK_INT(count(s, "Upgrade"), 1);
    CHECK(strstr(s, "Sec-WebSocket-Key: k\r\n") != NULL);
    ptc_buf_free(&b);
}

static ptc_rewrite_resp resp_info(void)
{
    return (ptc_rewrite_resp){
        .request_id = PTC_STR_LIT("rid-2"),
        .date = PTC_STR_LIT("Sun, 06 Nov 1994 08:49:37 GMT"),
    };
}

/* Field lines go out as "Name: value" whatever white space the sender
 * put around the value; those already written so are copied whole. */
static void test_field_lines_normalised(void)
{
    parse_req("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB:2\r\nC:\t 3 \t\r\nD:  4\r\nE:\r\nF: \r\n\r\n");
    ptc_rewrite_req in = edge();
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_request(&b, &req, &in);
    const char *s = ptc_buf_cstr(&b);
    CHECK(strstr(s, "\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: \r\nF: \r\n") != NULL);
    ptc_buf_free(&b);
    parse_res("HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-A:a\r\nX-B: b \r\nX-C: c\r\n\r\n", PTC_HTTP_GET);
    ptc_rewrite_resp rin = resp_info();
    rin.framing = PTC_BODY_LENGTH;
    b = (ptc_buf)PTC_BUF_INIT;
    ptc_rewrite_response(&b, &res, &rin);
    s = ptc_buf_cstr(&b);
    CHECK(strstr(s, "\r\nX-A: a\r\nX-B: b\r\nX-C: c\r\n") != NULL);
    ptc_buf_free(&b);
}

static void test_response_rules(void)
{
    parse_res("HTTP/1.1 200 Fine\r\nContent-Length: 3\r\nConnection: X-Up\r\nX-Up: 1\r\nKeep-Alive: t=1\r\n"
              "X-Frame-Options: DENY\r\nX-Request-ID: theirs\r\nSet-Cookie: a=b\r\n\r\n",
              PTC_HTTP_GET);
    ptc_rewrite_resp in = resp_info();
    in.framing = PTC_BODY_LENGTH;
    in.length = 3;
    in.security_headers = true;
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_response(&b, &res, &in);
    const char *s = ptc_buf_cstr(&b);
    CHECK(strncmp(s, "HTTP/1.1 200 Fine\r\n", 19) == 0);
    CHECK(strstr(s, "X-Up") == NULL && strstr(s, "Keep-Alive") == NULL && strstr(s, "theirs") == NULL);
    CHECK(strstr(s, "X-Request-ID: rid-2\r\n") != NULL);
    CHECK(strstr(s, "Set-Cookie: a=b\r\n") != NULL);
    CHECK_INT(count(s, "X-Frame-Options"), 1);
    CHECK(strstr(s, "X-Frame-Options: DENY\r\n") != NULL);
    CHECK(strstr(s, "X-Content-Type-Options: nosniff\r\n") != NULL);
    CHECK(strstr(s, "X-XSS-Protection: 1; mode=block\r\n") != NULL);
    CHECK(strstr(s, "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n") != NULL);
    CHECK_INT(count(s, "Content-Length: 3\r\n"), 1);
    CHECK(strstr(s, "Connection") == NULL);
    ptc_buf_free(&b);

    /* Chunked from the upstream, close-delimited towards an HTTP/1.0 client. */
    parse_res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nDate: x\r\n\r\n", PTC_HTTP_GET);
    in = resp_info();
    in.framing = PTC_BODY_CLOSE;
    in.close = true;
    in.client_http10 = true;
    b = (ptc_buf)PTC_BUF_INIT;
    ptc_rewrite_response(&b, &res, &in);
    s = ptc_buf_cstr(&b);
    CHECK(strstr(s, "Transfer-Encoding") == NULL && strstr(s, "Content-Length") == NULL);
    CHECK(strstr(s, "Connection: close\r\n") != NULL);
    CHECK_INT(count(s, "Date:"), 1);
    CHECK(strstr(s, "X-Content-Type-Options") == NULL);
    ptc_buf_free(&b);

    /* A HEAD answer keeps its length and sends no body; 1.0 keep-alive. */
    parse_res("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", PTC_HTTP_HEAD);
    in = resp_info();
    in.framing = PTC_BODY_NONE;
    in.keep_length = true;
    in.length = 1234;
    in.client_http10 = true;
    b = (ptc_buf)PTC_BUF_INIT;
    ptc_rewrite_response(&b, &res, &in);
    s = ptc_buf_cstr(&b);
    CHECK(strstr(s, "Content-Length: 1234\r\n") != NULL);
    CHECK(strstr(s, "Connection: keep-alive\r\n") != NULL);
    ptc_buf_free(&b);
}

static void test_own_answers(void)
{
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_own(&b, 502, "UPSTREAM_UNAVAILABLE", "say \"no\"", PTC_STR_LIT("r-1"), PTC_STR_LIT("D"), true,
                    false, PTC_STR_LIT(""));
    const char *s = ptc_buf_cstr(&b);
    const char *body =
        "{\"error\":{\"code\":\"UPSTREAM_UNAVAILABLE\",\"message\":\"say \\\"no\\\"\",\"details\":{"
        "\"request_id\":\"r-1\"}}}\n";
    CHECK(strncmp(s, "HTTP/1.1 502 Bad Gateway\r\n", 26) == 0);
    CHECK(strstr(s, "Content-Type: application/json\r\n") != NULL);
    CHECK(strstr(s, "Connection: close\r\n") != NULL);
    CHECK(strstr(s, "X-Request-ID: r-1\r\n") != NULL);
    char cl[64];
    snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", strlen(body));
    CHECK(strstr(s, cl) != NULL);
    CHECK(strcmp(strstr(s, "\r\n\r\n") + 4, body) == 0);
    ptc_buf_free(&b);

    b = (ptc_buf)PTC_BUF_INIT;
    ptc_rewrite_own(&b, 301, NULL, NULL, PTC_STR_LIT("r-2"), PTC_STR_LIT("D"), false, false,
                    PTC_STR_LIT("https://a.test/x?y"));
    s = ptc_buf_cstr(&b);
    CHECK(strncmp(s, "HTTP/1.1 301 Moved Permanently\r\n", 32) == 0);
    CHECK(strstr(s, "Location: https://a.test/x?y\r\n") != NULL);
    CHECK(strstr(s, "Content-Length: 0\r\n") != NULL);
    CHECK(strstr(s, "Content-Type") == NULL && strstr(s, "Connection") == NULL);
    ptc_buf_free(&b);
}

static void test_request_ids_and_escaping(void)
{
    CHECK(ptc_rewrite_request_id_ok(PTC_STR_LIT("abc-123_x.y:z+/=")));
    CHECK(!ptc_rewrite_request_id_ok(PTC_STR_LIT("")));
    CHECK(!ptc_rewrite_request_id_ok(PTC_STR_LIT("a b")));
    CHECK(!ptc_rewrite_request_id_ok(PTC_STR_LIT("a\"b")));
    char long_id[130];
    memset(long_id, 'a', sizeof(long_id));
    CHECK(!ptc_rewrite_request_id_ok(ptc_str_make(long_id, 129)));
    CHECK(ptc_rewrite_request_id_ok(ptc_str_make(long_id, 128)));
    ptc_buf b = PTC_BUF_INIT;
    ptc_rewrite_json_escape(&b, "a\"\\\x01\xff", 5);
    CHECK_STR(ptc_buf_cstr(&b), "a\\\"\\\\\\u0001\\u00ff");
    ptc_buf_free(&b);
}

int main(void)
{
    RUN(test_edge_overwrites_forwarded_headers);
    RUN(test_trusted_proxy_appends);
    RUN(test_connection_named_and_hop_by_hop);
    RUN(test_connection_close_names_a_field);
    RUN(test_framing_written_anew);
    RUN(test_field_lines_normalised);
    RUN(test_response_rules);
    RUN(test_own_answers);
    RUN(test_request_ids_and_escaping);
    TEST_EXIT();
}
