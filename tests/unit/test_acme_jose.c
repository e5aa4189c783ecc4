/* JOSE for ACME: base64url, the RFC 7638 thumbprint (its §3.1 example),
 * the ES256 account key's JWK, and JWS signatures checked with OpenSSL's
 * verifier (raw r||s turned back into DER). */
#include "acme/jose.h"
#include "testlib.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <sys/wait.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

static void test_b64url(void)
{
    static const struct {
        const char *in, *out;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char *e = ptc_jose_b64url(v[i].in, strlen(v[i].in));
        CHECK_STR(e, v[i].out);
        unsigned char *d = NULL;
        size_t n = 0;
        CHECK_INT(ptc_jose_b64url_decode(e, strlen(e), &d, &n), 0);
        CHECK_INT(n, strlen(v[i].in));
        CHECK(d != NULL && memcmp(d, v[i].in, n) == 0);
        free(d);
        free(e);
    }
    unsigned char *d = NULL;
    size_t n;
    CHECK_INT(ptc_jose_b64url_decode("Zm9v+g", 6, &d, &n), -EINVAL); /* '+' is base64, not base64url */
    CHECK_INT(ptc_jose_b64url_decode("Zm9=", 4, &d, &n), -EINVAL);   /* no padding */
    CHECK_INT(ptc_jose_b64url_decode("Zm9vY", 5, &d, &n), -EINVAL);  /* 6 bits left over */
    CHECK(d == NULL);
}

/* An RSA public key from the base64url n and e of a JWK. */
static EVP_PKEY *rsa_from_jwk(const char *n64, const char *e64)
{
    unsigned char *n = NULL, *e = NULL;
    size_t nlen = 0, elen = 0;
    EVP_PKEY *key = NULL;
    CHECK_INT(ptc_jose_b64url_decode(n64, strlen(n64), &n, &nlen), 0);
    CHECK_INT(ptc_jose_b64url_decode(e64, strlen(e64), &e, &elen), 0);
    BIGNUM *bn_n = BN_bin2bn(n, (int)nlen, NULL), *bn_e = BN_bin2bn(e, (int)elen, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n);
    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e);
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    CHECK(EVP_PKEY_fromdata_init(ctx) == 1);
    CHECK(EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) == 1);
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn_n);
    BN_free(bn_e);
    free(n);
    free(e);
    return key;
}

static void test_thumbprint_rfc7638(void)
{
    /* RFC 7638 §3.1. */
    const char *n =
        "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXj"
        "BZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAta"
        "Sqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPks"
        "INHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    EVP_PKEY *key = rsa_from_jwk(n, "AQAB");
    CHECK(key != NULL);
    char *jwk = ptc_jose_jwk(key);
    char *want = NULL;
    want = malloc(strlen(n) + 64);
    sprintf(want, "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"%s\"}", n);
    CHECK_STR(jwk, want);
    char *tp = ptc_jose_thumbprint(key);
    CHECK_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    free(want);
    free(jwk);
    free(tp);
    EVP_PKEY_free(key);
}

static void test_ec_jwk(void)
{
    EVP_PKEY *key = ptc_jose_key_generate();
    CHECK(key != NULL);
    char *jwk = ptc_jose_jwk(key);
    json_t *j = json_loads(jwk, 0, NULL);
    CHECK(j != NULL);
    CHECK_INT(json_object_size(j), 4);
    CHECK_STR(json_string_value(json_object_get(j, "kty")), "EC");
    CHECK_STR(json_string_value(json_object_get(j, "crv")), "P-256");
    CHECK(strncmp(jwk, "{\"crv\":", 7) == 0); /* lexicographic member order */
    /* x and y are exactly 32 bytes, and they are the key's point. */
    unsigned char *x = NULL, *y = NULL, point[65];
    size_t xl = 0, yl = 0, pl = 0;
    const char *xs = json_string_value(json_object_get(j, "x")),
               *ys = json_string_value(json_object_get(j, "y"));
    CHECK_INT(ptc_jose_b64url_decode(xs, strlen(xs), &x, &xl), 0);
    CHECK_INT(ptc_jose_b64url_decode(ys, strlen(ys), &y, &yl), 0);
    CHECK_INT(xl, 32);
    CHECK_INT(yl, 32);
    CHECK(EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof(point), &pl) == 1);
    CHECK_INT(pl, 65);
    CHECK(point[0] == 4 && memcmp(point + 1, x, 32) == 0 && memcmp(point + 33, y, 32) == 0);
    /* The thumbprint: 32 bytes of SHA-256, 43 base64url characters, stable. */
    char *t1 = ptc_jose_thumbprint(key), *t2 = ptc_jose_thumbprint(key);
    CHECK(t1 && strlen(t1) == 43);
    CHECK_STR(t1, t2);
    /* The PEM round trip keeps the key. */
    char *pem = ptc_jose_key_to_pem(key);
    CHECK(pem && strstr(pem, "BEGIN PRIVATE KEY"));
    EVP_PKEY *back = ptc_jose_key_from_pem(pem);
    CHECK(back != NULL && EVP_PKEY_eq(back, key) == 1);
    /* Not a key, or not P-256: refused. */
    CHECK(ptc_jose_key_from_pem("not a key") == NULL);
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    char *p384pem = ptc_jose_key_to_pem(p384);
    CHECK(ptc_jose_key_from_pem(p384pem) == NULL);
    CHECK(ptc_jose_sign(p384, NULL, "n", "https://ca/x", "") == NULL);
    free(p384pem);
    EVP_PKEY_free(p384);
    EVP_PKEY_free(back);
    free(pem);
    free(t1);
    free(t2);
    free(x);
    free(y);
    json_decref(j);
    free(jwk);
    EVP_PKEY_free(key);
}

/* Decodes a base64url member of o into a new NUL-terminated buffer. */
static unsigned char *member(json_t *o, const char *key, size_t *len)
{
    const char *s = json_string_value(json_object_get(o, key));
    unsigned char *d = NULL;
    CHECK(s != NULL);
    if (s == NULL || ptc_jose_b64url_decode(s, strlen(s), &d, len) != 0)
        return NULL;
    return d;
}

/* Verifies a flattened JWS with OpenSSL: the raw r||s back into DER. */
static int verify(EVP_PKEY *key, json_t *jws)
{
    const char *h = json_string_value(json_object_get(jws, "protected"));
    const char *p = json_string_value(json_object_get(jws, "payload"));
    size_t siglen = 0;
    unsigned char *sig = member(jws, "signature", &siglen);
    unsigned char *der = NULL;
    int ok = -1;
    if (sig == NULL || siglen != 64)
        goto out;
    ECDSA_SIG *es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(sig, 32, NULL), BN_bin2bn(sig + 32, 32, NULL));
    int derlen = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    size_t inlen = strlen(h) + strlen(p) + 2;
    char *input = malloc(inlen);
    snprintf(input, inlen, "%s.%s", h, p);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key);
    ok = EVP_DigestVerify(ctx, der, (size_t)derlen, (const unsigned char *)input, strlen(input));
    EVP_MD_CTX_free(ctx);
    free(input);
out:
    OPENSSL_free(der);
    free(sig);
    return ok;
}

static void test_jws(void)
{
    EVP_PKEY *key = ptc_jose_key_generate(), *other = ptc_jose_key_generate();
    const char *url = "https://ca.test/acme/new-order";

    /* With a kid: alg, kid, nonce, url and nothing else. */
    char *text = ptc_jose_sign(key, "https://ca.test/acme/acct/1", "nonce-1", url, "{\"a\":1}");
    json_t *jws = json_loads(text, 0, NULL);
    CHECK(jws != NULL);
    CHECK_INT(json_object_size(jws), 3);
    size_t len = 0;
    unsigned char *hdr = member(jws, "protected", &len);
    json_t *h = json_loads((const char *)hdr, 0, NULL);
    CHECK_STR(json_string_value(json_object_get(h, "alg")), "ES256");
    CHECK_STR(json_string_value(json_object_get(h, "nonce")), "nonce-1");
    CHECK_STR(json_string_value(json_object_get(h, "url")), url);
    CHECK_STR(json_string_value(json_object_get(h, "kid")), "https://ca.test/acme/acct/1");
    CHECK(json_object_get(h, "jwk") == NULL);
    unsigned char *payload = member(jws, "payload", &len);
    CHECK_STR((const char *)payload, "{\"a\":1}");
    CHECK_INT(verify(key, jws), 1);
    CHECK(verify(other, jws) != 1);
    /* A changed payload no longer verifies. */
    char *forged = ptc_jose_b64url("{\"a\":2}", 7);
    json_object_set_new(jws, "payload", json_string(forged));
    CHECK(verify(key, jws) != 1);
    free(forged);
    json_decref(h);
    json_decref(jws);
    free(hdr);
    free(payload);
    free(text);

    /* Without a kid the JWK is in the header (newAccount); a POST-as-GET
     * has an empty payload. */
    text = ptc_jose_sign(key, NULL, "nonce-2", url, "");
    jws = json_loads(text, 0, NULL);
    hdr = member(jws, "protected", &len);
    h = json_loads((const char *)hdr, 0, NULL);
    CHECK(json_object_get(h, "kid") == NULL);
    char *jwk = ptc_jose_jwk(key);
    json_t *want = json_loads(jwk, 0, NULL);
    CHECK(json_equal(json_object_get(h, "jwk"), want));
    CHECK_STR(json_string_value(json_object_get(jws, "payload")), "");
    CHECK_INT(verify(key, jws), 1);
    json_decref(want);
    free(jwk);
    json_decref(h);
    json_decref(jws);
    free(hdr);
    free(text);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
}

/* A stored account key that is encrypted is refused, never decrypted with
 * a passphrase read from the terminal or stdin (here: a child without a
 * controlling terminal whose stdin holds the right passphrase). */
static void test_encrypted_key_refused_without_a_prompt(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    BIO *b = BIO_new(BIO_s_mem());
    char *data, *pem;
    int fds[2];
    PEM_write_bio_PrivateKey(b, k, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)"sesame");
    long n = BIO_get_mem_data(b, &data);
    pem = strndup(data, (size_t)n);
    BIO_free(b);
    EVP_PKEY_free(k);
    CHECK_INT(pipe(fds), 0);
    CHECK_INT(write(fds[1], "sesame\n", 7), 7);
    close(fds[1]);
    pid_t pid = fork();
    if (pid == 0) {
        setsid();
        dup2(fds[0], 0);
        alarm(20);
        EVP_PKEY *got = ptc_jose_key_from_pem(pem);
        _exit(got == NULL ? 0 : 1);
    }
    close(fds[0]);
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(pem);
}

int main(void)
{
    RUN(test_b64url);
    RUN(test_thumbprint_rfc7638);
    RUN(test_ec_jwk);
    RUN(test_jws);
    RUN(test_encrypted_key_refused_without_a_prompt);
    TEST_EXIT();
}
