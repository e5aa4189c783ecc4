/* Fuzzes the parsing of an ACME CA's JSON answers (directory, account,
 * order, authorization, challenge, problem document): every input goes
 * through every parser, which must refuse or accept it without a crash, a
 * leak or an out-of-bounds access, and whatever they accept must obey the
 * bounds msg.h promises. */
#include "acme/msg.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check(int cond)
{
    if (!cond)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    char err[256];
    ptc_acme_directory d;
    ptc_acme_order o;
    ptc_acme_authz a;
    ptc_acme_challenge c;
    ptc_acme_status st;

    if (ptc_acme_parse_directory(body, size, &d, err, sizeof(err)) == 0)
        check(ptc_acme_url_ok(d.new_order, strlen(d.new_order)) &&
              ptc_acme_url_ok(d.new_nonce, strlen(d.new_nonce)));
    ptc_acme_directory_free(&d);
    (void)ptc_acme_parse_account(body, size, &st, err, sizeof(err));
    if (ptc_acme_parse_order(body, size, &o, err, sizeof(err)) == 0) {
        check(o.n_authorizations >= 1 && o.n_authorizations <= PTC_ACME_AUTHZ_MAX);
        check(o.status != PTC_ACME_VALID || o.certificate != NULL);
    }
    ptc_acme_order_free(&o);
    if (ptc_acme_parse_authz(body, size, &a, err, sizeof(err)) == 0) {
        check(a.n_challenges <= PTC_ACME_CHALLENGES_MAX);
        for (size_t i = 0; i < a.n_challenges; i++)
            check(a.challenges[i].token == NULL || strlen(a.challenges[i].token) <= PTC_ACME_TOKEN_MAX);
    }
    ptc_acme_authz_free(&a);
    if (ptc_acme_parse_challenge(body, size, &c, err, sizeof(err)) == 0)
        check(ptc_acme_url_ok(c.url, strlen(c.url)));
    ptc_acme_challenge_free(&c);
    json_t *p = ptc_acme_parse_problem(body, size);
    if (p) {
        const char *detail = json_string_value(json_object_get(p, "detail"));
        check(detail == NULL || strlen(detail) <= 1024);
        check(json_array_size(json_object_get(p, "subproblems")) <= 10);
    }
    json_decref(p);
    return 0;
}
