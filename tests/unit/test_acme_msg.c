/* Parsing a hostile CA's answers: well-formed ones read, and every
 * oversized, malformed, mistyped or missing part refused with a reason,
 * without a leak or a crash (ASan). */
#include "acme/msg.h"
#include "core/buf.h"
#include "testlib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define P(s) (s), strlen(s)

static void test_directory(void)
{
    ptc_acme_directory d;
    char err[256];
    const char *ok = "{\"newNonce\":\"https://ca.test/nonce\",\"newAccount\":\"https://ca.test/acct\","
                     "\"newOrder\":\"https://ca.test/order\",\"revokeCert\":\"https://ca.test/revoke\","
                     "\"meta\":{\"termsOfService\":\"https://ca.test/tos\",\"x\":[1,2]}}";
    CHECK_INT(ptc_acme_parse_directory(P(ok), &d, err, sizeof(err)), 0);
    CHECK_STR(d.new_nonce, "https://ca.test/nonce");
    CHECK_STR(d.new_account, "https://ca.test/acct");
    CHECK_STR(d.new_order, "https://ca.test/order");
    CHECK_STR(d.terms_of_service, "https://ca.test/tos");
    ptc_acme_directory_free(&d);

    static const struct {
        const char *body, *why;
    } bad[] = {
        {"{\"newNonce\":\"https://ca.test/n\",\"newAccount\":\"https://ca.test/a\"}",
         "\"newOrder\" is missing"},
        {"{\"newNonce\":\"http://ca.test/n\",\"newAccount\":\"https://ca.test/a\",\"newOrder\":\"https://"
         "ca.test/o\"}",
         "\"newNonce\" is not an https URL"},
        {"{\"newNonce\":\"https://ca.test/a "
         "b\",\"newAccount\":\"https://ca.test/a\",\"newOrder\":\"https://c/o\"}",
         "\"newNonce\" is not an https URL"},
        {"{\"newNonce\":7,\"newAccount\":\"https://ca.test/a\",\"newOrder\":\"https://ca.test/o\"}",
         "\"newNonce\" is not a string"},
        {"[1,2,3]", "the answer is not a JSON object"},
        {"{\"newNonce\":", "the answer is not JSON"},
        {"", "the answer is not JSON"},
        {"{\"newNonce\":\"https://a/\",\"newNonce\":\"https://b/\"}", "the answer is not JSON"},
        {"{\"newNonce\":\"https://ca.test/n\",\"newAccount\":\"https://ca.test/a\",\"newOrder\":\"https://"
         "ca.test/o\","
         "\"meta\":[]}",
         "\"meta\" is not an object"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK_INT(ptc_acme_parse_directory(P(bad[i].body), &d, err, sizeof(err)), -EINVAL);
        CHECK(strncmp(err, bad[i].why, strlen(bad[i].why)) == 0);
        CHECK(d.new_nonce == NULL && d.new_account == NULL);
    }

    /* A URL of PTC_ACME_URL_MAX + 1 characters, and a body over 1 MiB. */
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_str(&b, "{\"newNonce\":\"https://");
    for (int i = 0; i < PTC_ACME_URL_MAX; i++)
        ptc_buf_append_str(&b, "a");
    ptc_buf_append_str(&b, "\",\"newAccount\":\"https://ca.test/a\",\"newOrder\":\"https://ca.test/o\"}");
    CHECK_INT(ptc_acme_parse_directory(b.data, b.len, &d, err, sizeof(err)), -EINVAL);
    ptc_buf_reset(&b);
    ptc_buf_append_str(&b, "{\"newNonce\":\"https://ca.test/n\",\"newAccount\":\"https://ca.test/a\","
                           "\"newOrder\":\"https://ca.test/o\",\"pad\":\"");
    while (b.len <= PTC_ACME_BODY_MAX)
        ptc_buf_append_str(&b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    ptc_buf_append_str(&b, "\"}");
    CHECK_INT(ptc_acme_parse_directory(b.data, b.len, &d, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "larger than") != NULL);
    ptc_buf_free(&b);
}

static void test_order(void)
{
    ptc_acme_order o;
    char err[256];
    const char *pending =
        "{\"status\":\"pending\",\"expires\":\"2030-01-01T00:00:00Z\","
        "\"identifiers\":[{\"type\":\"dns\",\"value\":\"a.example.com\"}],"
        "\"authorizations\":[\"https://ca.test/authz/1\"],\"finalize\":\"https://ca.test/fin/1\"}";
    CHECK_INT(ptc_acme_parse_order(P(pending), &o, err, sizeof(err)), 0);
    CHECK_INT(o.status, PTC_ACME_PENDING);
    CHECK_INT(o.n_authorizations, 1);
    CHECK_STR(o.authorizations[0], "https://ca.test/authz/1");
    CHECK_STR(o.finalize, "https://ca.test/fin/1");
    CHECK(o.certificate == NULL && o.error == NULL);
    ptc_acme_order_free(&o);

    const char *valid = "{\"status\":\"valid\",\"authorizations\":[\"https://ca.test/authz/1\"],"
                        "\"finalize\":\"https://ca.test/fin/1\",\"certificate\":\"https://ca.test/cert/1\"}";
    CHECK_INT(ptc_acme_parse_order(P(valid), &o, err, sizeof(err)), 0);
    CHECK_STR(o.certificate, "https://ca.test/cert/1");
    ptc_acme_order_free(&o);

    const char *invalid =
        "{\"status\":\"invalid\",\"authorizations\":[\"https://ca.test/authz/1\"],"
        "\"finalize\":\"https://ca.test/fin/1\",\"error\":{\"type\":\"urn:ietf:params:acme:error:"
        "unauthorized\",\"detail\":\"no\",\"status\":403}}";
    CHECK_INT(ptc_acme_parse_order(P(invalid), &o, err, sizeof(err)), 0);
    CHECK_INT(o.status, PTC_ACME_INVALID);
    CHECK_STR(json_string_value(json_object_get(o.error, "detail")), "no");
    ptc_acme_order_free(&o);

    static const char *const bad[] = {
        /* valid without a certificate URL */
        "{\"status\":\"valid\",\"authorizations\":[\"https://ca.test/a\"],\"finalize\":\"https://ca.test/"
        "f\"}",
        /* a status RFC 8555 does not give orders */
        "{\"status\":\"deactivated\",\"authorizations\":[\"https://ca.test/a\"],\"finalize\":\"https://"
        "ca.test/f\"}",
        "{\"status\":\"weird\",\"authorizations\":[\"https://ca.test/a\"],\"finalize\":\"https://ca.test/"
        "f\"}",
        "{\"authorizations\":[\"https://ca.test/a\"],\"finalize\":\"https://ca.test/f\"}",
        "{\"status\":\"pending\",\"authorizations\":[],\"finalize\":\"https://ca.test/f\"}",
        "{\"status\":\"pending\",\"authorizations\":\"https://ca.test/a\",\"finalize\":\"https://ca.test/"
        "f\"}",
        "{\"status\":\"pending\",\"authorizations\":[\"https://ca.test/a\", "
        "5],\"finalize\":\"https://ca.test/f\"}",
        "{\"status\":\"pending\",\"authorizations\":[\"file:///etc/passwd\"],\"finalize\":\"https://ca.test/"
        "f\"}",
        "{\"status\":\"pending\",\"authorizations\":[\"https://ca.test/a\"]}",
        "{\"status\":\"pending\",\"authorizations\":[\"https://ca.test/a\"],\"finalize\":\"https://ca.test/"
        "\\u0001\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(ptc_acme_parse_order(P(bad[i]), &o, err, sizeof(err)), -EINVAL);
        CHECK(o.authorizations == NULL && o.finalize == NULL);
    }

    /* PTC_ACME_AUTHZ_MAX + 1 authorizations. */
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_str(&b, "{\"status\":\"pending\",\"finalize\":\"https://ca.test/f\",\"authorizations\":[");
    for (int i = 0; i <= PTC_ACME_AUTHZ_MAX; i++)
        ptc_buf_appendf(&b, "%s\"https://ca.test/a/%d\"", i ? "," : "", i);
    ptc_buf_append_str(&b, "]}");
    CHECK_INT(ptc_acme_parse_order(b.data, b.len, &o, err, sizeof(err)), -EINVAL);
    ptc_buf_free(&b);
}

static void test_authz(void)
{
    ptc_acme_authz a;
    char err[256];
    const char *ok =
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.example.com\"},"
        "\"challenges\":[{\"type\":\"dns-01\",\"url\":\"https://ca.test/c/1\",\"token\":\"t1\","
        "\"status\":\"pending\"},{\"type\":\"http-01\",\"url\":\"https://ca.test/c/2\",\"token\":"
        "\"abc-DEF_123\",\"status\":\"pending\"},{\"type\":\"future-01\",\"url\":\"https://ca.test/c/3\","
        "\"status\":\"pending\"}],\"expires\":\"2030-01-01T00:00:00Z\"}";
    CHECK_INT(ptc_acme_parse_authz(P(ok), &a, err, sizeof(err)), 0);
    CHECK_INT(a.status, PTC_ACME_PENDING);
    CHECK_STR(a.identifier, "a.example.com");
    CHECK(!a.wildcard);
    CHECK_INT(a.n_challenges, 3);
    CHECK_STR(a.challenges[1].type, "http-01");
    CHECK_STR(a.challenges[1].token, "abc-DEF_123");
    CHECK(a.challenges[2].token == NULL);
    ptc_acme_authz_free(&a);

    const char *failed =
        "{\"status\":\"invalid\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.example.com\"},"
        "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca.test/c/2\",\"token\":\"tok\","
        "\"status\":\"invalid\",\"error\":{\"type\":\"urn:ietf:params:acme:error:connection\","
        "\"detail\":\"refused\",\"status\":400}}]}";
    CHECK_INT(ptc_acme_parse_authz(P(failed), &a, err, sizeof(err)), 0);
    CHECK_INT(a.challenges[0].status, PTC_ACME_INVALID);
    CHECK_STR(json_string_value(json_object_get(a.challenges[0].error, "type")),
              "urn:ietf:params:acme:error:connection");
    ptc_acme_authz_free(&a);

    static const char *const bad[] = {
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"ip\",\"value\":\"1.2.3.4\"},\"challenges\":[]}",
        "{\"status\":\"pending\",\"identifier\":\"a.example.com\",\"challenges\":[]}",
        "{\"status\":\"ready\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":{}}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"wildcard\":\"yes\","
        "\"challenges\":[]}",
        /* a token with characters that are not base64url, one too long, none at all for http-01 */
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[{\"type\":"
        "\"http-01\",\"url\":\"https://ca.test/c\",\"token\":\"../../etc/passwd\",\"status\":\"pending\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[{\"type\":"
        "\"http-01\",\"url\":\"https://ca.test/c\",\"status\":\"pending\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[{\"type\":"
        "\"http-01\",\"url\":\"https://ca.test/c\",\"token\":\"t\",\"status\":\"ready\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[{\"type\":"
        "\"http-01\",\"token\":\"t\",\"status\":\"pending\"}]}",
        "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[7]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(ptc_acme_parse_authz(P(bad[i]), &a, err, sizeof(err)), -EINVAL);
        CHECK(a.challenges == NULL && a.identifier == NULL);
    }

    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_str(
        &b, "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},"
            "\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca.test/c\",\"status\":\"pending\","
            "\"token\":\"");
    for (int i = 0; i <= PTC_ACME_TOKEN_MAX; i++)
        ptc_buf_append_str(&b, "a");
    ptc_buf_append_str(&b, "\"}]}");
    CHECK_INT(ptc_acme_parse_authz(b.data, b.len, &a, err, sizeof(err)), -EINVAL);
    ptc_buf_reset(&b);
    ptc_buf_append_str(
        &b, "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"a\"},\"challenges\":[");
    for (int i = 0; i <= PTC_ACME_CHALLENGES_MAX; i++)
        ptc_buf_appendf(&b, "%s{\"type\":\"x\",\"url\":\"https://ca.test/c\",\"status\":\"pending\"}",
                        i ? "," : "");
    ptc_buf_append_str(&b, "]}");
    CHECK_INT(ptc_acme_parse_authz(b.data, b.len, &a, err, sizeof(err)), -EINVAL);
    ptc_buf_free(&b);
}

static void test_challenge_and_account(void)
{
    ptc_acme_challenge c;
    ptc_acme_status st;
    char err[256];
    CHECK_INT(
        ptc_acme_parse_challenge(P("{\"type\":\"http-01\",\"url\":\"https://ca.test/c\",\"token\":\"t\","
                                   "\"status\":\"processing\"}"),
                                 &c, err, sizeof(err)),
        0);
    CHECK_INT(c.status, PTC_ACME_PROCESSING);
    ptc_acme_challenge_free(&c);
    CHECK_INT(
        ptc_acme_parse_challenge(P("{\"type\":\"http-01\",\"url\":\"https://ca.test/c\",\"token\":\"t\"}"),
                                 &c, err, sizeof(err)),
        -EINVAL);
    CHECK_INT(
        ptc_acme_parse_challenge(P("{\"type\":\"\",\"url\":\"https://ca.test/c\",\"status\":\"valid\"}"), &c,
                                 err, sizeof(err)),
        -EINVAL);
    CHECK_INT(ptc_acme_parse_account(P("{\"status\":\"valid\",\"contact\":[\"mailto:a@b.c\"]}"), &st, err,
                                     sizeof(err)),
              0);
    CHECK_INT(st, PTC_ACME_VALID);
    CHECK_INT(ptc_acme_parse_account(P("{\"status\":\"revoked\"}"), &st, err, sizeof(err)), 0);
    CHECK_INT(st, PTC_ACME_REVOKED);
    CHECK_INT(ptc_acme_parse_account(P("{\"status\":\"pending\"}"), &st, err, sizeof(err)), -EINVAL);
    CHECK_INT(ptc_acme_parse_account(P("{}"), &st, err, sizeof(err)), -EINVAL);
}

static void test_problem(void)
{
    json_t *p = ptc_acme_parse_problem(
        P("{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\",\"detail\":\"no\",\"status\":400,"
          "\"instance\":\"https://"
          "x\",\"extra\":{\"deep\":[1,2,3]},\"subproblems\":[{\"type\":\"urn:x\",\"detail\":"
          "\"sub\",\"identifier\":{\"type\":\"dns\",\"value\":\"a.example.com\"}},{\"detail\":\"no type: "
          "dropped\"}]}"));
    CHECK(p != NULL);
    CHECK_STR(json_string_value(json_object_get(p, "type")), "urn:ietf:params:acme:error:rejectedIdentifier");
    CHECK_INT(json_integer_value(json_object_get(p, "status")), 400);
    CHECK(json_object_get(p, "extra") == NULL && json_object_get(p, "instance") == NULL);
    json_t *subs = json_object_get(p, "subproblems");
    CHECK_INT(json_array_size(subs), 1);
    CHECK_STR(
        json_string_value(json_object_get(json_object_get(json_array_get(subs, 0), "identifier"), "value")),
        "a.example.com");
    json_decref(p);

    CHECK(ptc_acme_parse_problem(P("{\"detail\":\"no type\"}")) == NULL);
    CHECK(ptc_acme_parse_problem(P("{\"type\":5}")) == NULL);
    CHECK(ptc_acme_parse_problem(P("<html>502 Bad Gateway</html>")) == NULL);
    p = ptc_acme_parse_problem(P("{\"type\":\"urn:x\",\"status\":99999,\"detail\":7}"));
    CHECK(p && json_object_get(p, "status") == NULL && json_object_get(p, "detail") == NULL);
    json_decref(p);

    /* A long detail is cut at 1024 bytes on a UTF-8 boundary; at most 10
     * subproblems are kept. */
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_str(&b, "{\"type\":\"urn:x\",\"detail\":\"a");
    for (int i = 0; i < 2000; i++)
        ptc_buf_append_str(&b, "\xc3\xa9"); /* é */
    ptc_buf_append_str(&b, "\",\"subproblems\":[");
    for (int i = 0; i < 50; i++)
        ptc_buf_appendf(&b, "%s{\"type\":\"urn:y\"}", i ? "," : "");
    ptc_buf_append_str(&b, "]}");
    p = ptc_acme_parse_problem(b.data, b.len);
    CHECK(p != NULL);
    const char *detail = json_string_value(json_object_get(p, "detail"));
    CHECK(detail != NULL && strlen(detail) == 1023);
    CHECK_INT(json_array_size(json_object_get(p, "subproblems")), 10);
    json_decref(p);
    ptc_buf_free(&b);
}

int main(void)
{
    RUN(test_directory);
    RUN(test_order);
    RUN(test_authz);
    RUN(test_challenge_and_account);
    RUN(test_problem);
    TEST_EXIT();
}
