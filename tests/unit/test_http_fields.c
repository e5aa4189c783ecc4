/* Header-field rules for forwarding: list membership, hop-by-hop names and
 * the fields a Connection header names (reliability.md §2 row 18). */
#include "http/fields.h"

#include "testlib.h"

#include <string.h>

#define S(lit) PTC_STR_LIT(lit)

static void test_list_has(void)
{
    CHECK(ptc_http_list_has(S("close"), "close"));
    CHECK(ptc_http_list_has(S("Close"), "close"));
    CHECK(ptc_http_list_has(S("a, b ,c"), "b"));
    CHECK(ptc_http_list_has(S("a, b ,c"), "c"));
    CHECK(ptc_http_list_has(S("a,\tb\t"), "B"));
    CHECK(ptc_http_list_has(S(",,a,,"), "a"));
    CHECK(!ptc_http_list_has(S("closed"), "close"));
    CHECK(!ptc_http_list_has(S("a b"), "a"));
    CHECK(!ptc_http_list_has(S(""), "close"));
    CHECK(!ptc_http_list_has(S(", ,"), ""));
    CHECK(!ptc_http_list_has(S("keep-alive"), "keep"));
}

static void test_hop_by_hop(void)
{
    static const char *yes[] = {"Connection", "keep-alive",        "Proxy-Connection", "TE",
                                "Trailer",    "Transfer-Encoding", "UPGRADE"};
    static const char *no[] = {"Host",        "Content-Length",  "Trailers",          "T",
                               "Connections", "X-Forwarded-For", "Transfer_Encoding", ""};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        CHECK(ptc_http_is_hop_by_hop(ptc_str_make(yes[i], strlen(yes[i]))));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        CHECK(!ptc_http_is_hop_by_hop(ptc_str_make(no[i], strlen(no[i]))));
}

static void test_named_by_connection(void)
{
    /* Row 18: Connection: close, X-Forwarded-For, X-Real-IP. */
    ptc_http_header h[] = {
        {S("Host"), S("a")},
        {S("Connection"), S("close, X-Forwarded-For")},
        {S("X-Forwarded-For"), S("1.2.3.4")},
        {S("connection"), S(" x-real-ip ")},
        {S("X-Real-IP"), S("1.2.3.4")},
    };
    size_t n = sizeof(h) / sizeof(h[0]);
    CHECK(ptc_http_named_by_connection(h, n, S("X-Forwarded-For")));
    CHECK(ptc_http_named_by_connection(h, n, S("x-forwarded-for")));
    CHECK(ptc_http_named_by_connection(h, n, S("X-Real-IP")));
    CHECK(ptc_http_named_by_connection(h, n, S("close")));
    CHECK(!ptc_http_named_by_connection(h, n, S("Host")));
    CHECK(!ptc_http_named_by_connection(h, n, S("X-Forwarded")));
    CHECK(!ptc_http_named_by_connection(h, n, S("")));
    CHECK(!ptc_http_named_by_connection(h, 1, S("X-Forwarded-For")));
}

/* The options gathered once answer like ptc_http_named_by_connection for
 * every name that is not hop-by-hop, also past the list's capacity. */
static void test_conn_options(void)
{
    ptc_http_header h[] = {
        {S("Host"), S("a")},
        {S("Connection"), S("close, X-Forwarded-For, keep-alive,,Upgrade")},
        {S("X-Forwarded-For"), S("1.2.3.4")},
        {S("connection"), S(" x-real-ip ")},
        {S("X-Real-IP"), S("1.2.3.4")},
    };
    size_t n = sizeof(h) / sizeof(h[0]);
    ptc_http_conn_options o;
    ptc_http_conn_options_collect(h, n, &o);
    CHECK_INT(o.n, 3); /* close, X-Forwarded-For, x-real-ip */
    CHECK(!o.many);
    static const char *names[] = {
        "X-Forwarded-For", "x-forwarded-for", "X-Real-IP", "close", "Host", "X-Forwarded", "", "Closed"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        ptc_str name = ptc_str_make(names[i], strlen(names[i]));
        CHECK(ptc_http_conn_options_name(&o, h, n, name) == ptc_http_named_by_connection(h, n, name));
    }

    /* "Connection: keep-alive" names nothing that would be forwarded. */
    ptc_http_header ka[] = {{S("Connection"), S("keep-alive")}, {S("Server"), S("x")}};
    ptc_http_conn_options_collect(ka, 2, &o);
    CHECK_INT(o.n, 0);

    /* Seventeen options: past the list, the headers are asked. */
    ptc_http_header many[] = {{S("Connection"), S("a1,a2,a3,a4,a5,a6,a7,a8,a9,b1,b2,b3,b4,b5,b6,b7,b8")}};
    ptc_http_conn_options_collect(many, 1, &o);
    CHECK(o.many);
    CHECK(ptc_http_conn_options_name(&o, many, 1, S("B8")));
    CHECK(!ptc_http_conn_options_name(&o, many, 1, S("b9")));
}

/* The word-at-a-time compare agrees with ptc_ascii_ieq for every literal
 * length the proxy uses and every single-byte change a parsed name or
 * value can carry (anything but a control byte other than HTAB), in every
 * position, and for upper-case forms. */
static void test_name_is(void)
{
    static const char *lits[] = {"te",
                                 "date",
                                 "expect",
                                 "trailer",
                                 "x-real-ip",
                                 "connection",
                                 "x-request-id",
                                 "content-length",
                                 "x-frame-options",
                                 "x-forwarded-host",
                                 "transfer-encoding",
                                 "x-content-type-options"};
    char buf[32];
    for (size_t k = 0; k < sizeof(lits) / sizeof(lits[0]); k++) {
        const char *lit = lits[k];
        size_t n = strlen(lit);
        memcpy(buf, lit, n);
        CHECK(ptc_http_name_is(ptc_str_make(buf, n), lit, n));
        CHECK(!ptc_http_name_is(ptc_str_make(buf, n - 1), lit, n));
        for (size_t i = 0; i < n; i++)
            buf[i] = (char)(lit[i] >= 'a' && lit[i] <= 'z' ? lit[i] - 32 : lit[i]);
        CHECK(ptc_http_name_is(ptc_str_make(buf, n), lit, n));
        for (size_t i = 0; i < n; i++) {
            memcpy(buf, lit, n);
            for (unsigned v = 0; v < 256; v++) {
                if ((v < 0x20 && v != '\t') || v == 0x7f)
                    continue;
                buf[i] = (char)v;
                CHECK(ptc_http_name_is(ptc_str_make(buf, n), lit, n) == ptc_ascii_ieq(buf, lit, n));
            }
        }
    }
}

int main(void)
{
    RUN(test_list_has);
    RUN(test_hop_by_hop);
    RUN(test_named_by_connection);
    RUN(test_conn_options);
    RUN(test_name_is);
    TEST_EXIT();
}
