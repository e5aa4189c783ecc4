/* JOSE for ACME with OpenSSL 3 (see jose.h). */
#include "acme/jose.h"

#include "core/buf.h"
#include "core/mem.h"
#include "tls/inspect.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static const char b64url_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char *ptc_jose_b64url(const void *data, size_t len)
{
    const unsigned char *p = data;
    char *out = ptc_xmalloc(len / 3 * 4 + 5);
    size_t o = 0, i = 0;

    for (; i + 3 <= len; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
        out[o++] = b64url_alphabet[v & 63];
    }
    if (len - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
    } else if (len - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        out[o++] = b64url_alphabet[v >> 18 & 63];
        out[o++] = b64url_alphabet[v >> 12 & 63];
        out[o++] = b64url_alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
    return out;
}

static int b64url_value(char c)
{
    const char *at = c ? strchr(b64url_alphabet, c) : NULL;
    return at ? (int)(at - b64url_alphabet) : -1;
}

int ptc_jose_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *out_len)
{
    unsigned char *buf;
    size_t o = 0;
    unsigned acc = 0;
    int bits = 0;

    /* One leftover character carries 6 bits: never a whole byte. */
    if (len % 4 == 1)
        return -EINVAL;
    buf = ptc_xmalloc(len / 4 * 3 + 4);
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value(s[i]);
        if (v < 0) {
            free(buf);
            return -EINVAL;
        }
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[o++] = (unsigned char)(acc >> bits);
        }
    }
    buf[o] = '\0';
    *out = buf;
    *out_len = o;
    return 0;
}

EVP_PKEY *ptc_jose_key_generate(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (k == NULL)
        ERR_clear_error();
    return k;
}

char *ptc_jose_key_to_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *mem;
    char *pem = NULL;
    if (b && PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1) {
        BIO_get_mem_ptr(b, &mem);
        pem = ptc_xstrndup(mem->data, mem->length);
    }
    ERR_clear_error();
    BIO_free(b);
    return pem;
}

static bool is_p256(EVP_PKEY *key)
{
    char group[32];
    size_t len = 0;
    if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC)
        return false;
    if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), &len) != 1)
        return false;
    return strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0;
}

EVP_PKEY *ptc_jose_key_from_pem(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, ptc_tls_no_passphrase, NULL) : NULL;
    ERR_clear_error();
    BIO_free(b);
    if (k && !is_p256(k)) {
        EVP_PKEY_free(k);
        k = NULL;
    }
    return k;
}

/* A big-number parameter of key as base64url of its big-endian bytes,
 * left-padded to pad bytes (0: minimal, as RSA's n and e want). */
static char *bn_param_b64(EVP_PKEY *key, const char *name, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char buf[1024];
    char *out = NULL;
    int n;
    if (EVP_PKEY_get_bn_param(key, name, &bn) != 1)
        goto out;
    n = BN_num_bytes(bn);
    if (n > (int)sizeof(buf) || pad > (int)sizeof(buf) || (pad && n > pad))
        goto out;
    n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    if (n >= 0)
        out = ptc_jose_b64url(buf, (size_t)n);
out:
    ERR_clear_error();
    BN_free(bn);
    return out;
}

char *ptc_jose_jwk(EVP_PKEY *key)
{
    char *a = NULL, *b = NULL, *out = NULL;
    /* Written by hand, not by a JSON library: the thumbprint hashes these
     * exact bytes, so member order and the absence of white space are
     * part of the contract (RFC 7638 §3.3). */
    if (is_p256(key)) {
        a = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_X, 32);
        b = bn_param_b64(key, OSSL_PKEY_PARAM_EC_PUB_Y, 32);
        if (a && b)
            out = ptc_xasprintf("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", a, b);
    } else if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
        a = bn_param_b64(key, OSSL_PKEY_PARAM_RSA_E, 0);
        b = bn_param_b64(key, OSSL_PKEY_PARAM_RSA_N, 0);
        if (a && b)
            out = ptc_xasprintf("{\"e\":\"%s\",\"kty\":\"RSA\",\"n\":\"%s\"}", a, b);
    }
    free(a);
    free(b);
    return out;
}

char *ptc_jose_thumbprint(EVP_PKEY *key)
{
    unsigned char md[32];
    unsigned mdlen = 0;
    char *jwk = ptc_jose_jwk(key), *out = NULL;
    if (jwk && EVP_Digest(jwk, strlen(jwk), md, &mdlen, EVP_sha256(), NULL) == 1 && mdlen == sizeof(md))
        out = ptc_jose_b64url(md, mdlen);
    ERR_clear_error();
    free(jwk);
    return out;
}

/* ES256 (RFC 7518 §3.4): OpenSSL gives a DER ECDSA-Sig-Value; JWS wants
 * r and s as two 32-byte big-endian integers back to back. */
static char *es256_sign(EVP_PKEY *key, const char *input)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char der[128], raw[64];
    const unsigned char *p = der;
    size_t derlen = sizeof(der);
    ECDSA_SIG *sig = NULL;
    const BIGNUM *r, *s;
    char *out = NULL;

    if (ctx == NULL || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(ctx, der, &derlen, (const unsigned char *)input, strlen(input)) != 1)
        goto out;
    if ((sig = d2i_ECDSA_SIG(NULL, &p, (long)derlen)) == NULL)
        goto out;
    ECDSA_SIG_get0(sig, &r, &s);
    if (BN_bn2binpad(r, raw, 32) != 32 || BN_bn2binpad(s, raw + 32, 32) != 32)
        goto out;
    out = ptc_jose_b64url(raw, sizeof(raw));
out:
    ERR_clear_error();
    ECDSA_SIG_free(sig);
    EVP_MD_CTX_free(ctx);
    return out;
}

char *ptc_jose_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url, const char *payload)
{
    json_t *hdr = json_pack("{s:s, s:s, s:s}", "alg", "ES256", "nonce", nonce, "url", url);
    char *jwk = NULL, *hdr_text = NULL, *p64 = NULL, *h64 = NULL, *input = NULL, *sig = NULL, *out = NULL;

    if (hdr == NULL || !is_p256(key))
        goto out;
    if (kid) {
        json_object_set_new(hdr, "kid", json_string(kid));
    } else {
        json_t *j;
        if ((jwk = ptc_jose_jwk(key)) == NULL || (j = json_loads(jwk, 0, NULL)) == NULL)
            goto out;
        json_object_set_new(hdr, "jwk", j);
    }
    if ((hdr_text = json_dumps(hdr, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        goto out;
    h64 = ptc_jose_b64url(hdr_text, strlen(hdr_text));
    p64 = ptc_jose_b64url(payload, strlen(payload));
    input = ptc_xasprintf("%s.%s", h64, p64);
    if ((sig = es256_sign(key, input)) == NULL)
        goto out;
    out = ptc_xasprintf("{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", h64, p64, sig);
out:
    json_decref(hdr);
    free(jwk);
    free(hdr_text);
    free(h64);
    free(p64);
    free(input);
    free(sig);
    return out;
}
