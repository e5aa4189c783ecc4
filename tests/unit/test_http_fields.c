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

int main(void)
{
    RUN(test_list_has);
    RUN(test_hop_by_hop);
    RUN(test_named_by_connection);
    TEST_EXIT();
}
