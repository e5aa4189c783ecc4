/* Certificate keys and CSRs with OpenSSL 3 (see csr.h). */
#include "acme/csr.h"

#include "acme/jose.h"
#include "core/mem.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

static EVP_PKEY *new_key(const char *key_type)
{
    if (strcmp(key_type, "ecdsa") == 0)
        return EVP_EC_gen("P-256");
    if (strcmp(key_type, "rsa") == 0)
        return EVP_RSA_gen(2048);
    return NULL;
}

int ptc_csr_create(const char *domain, const char *key_type, ptc_csr *out)
{
    int rc = -EINVAL;
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    X509_NAME *name = NULL;
    X509_EXTENSION *san = NULL;
    STACK_OF(X509_EXTENSION) *exts = NULL;
    unsigned char *der = NULL;
    int der_len;
    GENERAL_NAMES *names = NULL;
    GENERAL_NAME *gn = NULL;
    ASN1_IA5STRING *ia5 = NULL;

    memset(out, 0, sizeof(*out));
    if ((key = new_key(key_type)) == NULL || (req = X509_REQ_new()) == NULL)
        goto out;
    if (X509_REQ_set_version(req, 0) != 1 || X509_REQ_set_pubkey(req, key) != 1)
        goto out;
    /* The subject's CN is limited to 64 bytes (RFC 5280 ub-common-name);
     * CAs read the names from the SAN anyway, so longer names go without. */
    if (strlen(domain) <= 64) {
        name = X509_NAME_new();
        if (name == NULL ||
            X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)domain, -1, -1, 0) !=
                1 ||
            X509_REQ_set_subject_name(req, name) != 1)
            goto out;
    }
    /* The SAN is built as a GENERAL_NAME, not from a "DNS:..." config
     * string, so that no character of the name is ever parsed as syntax. */
    if ((names = GENERAL_NAMES_new()) == NULL || (gn = GENERAL_NAME_new()) == NULL ||
        (ia5 = ASN1_IA5STRING_new()) == NULL || ASN1_STRING_set(ia5, domain, (int)strlen(domain)) != 1)
        goto out;
    GENERAL_NAME_set0_value(gn, GEN_DNS, ia5);
    ia5 = NULL;
    if (sk_GENERAL_NAME_push(names, gn) == 0)
        goto out;
    gn = NULL;
    if ((san = X509V3_EXT_i2d(NID_subject_alt_name, 0, names)) == NULL ||
        (exts = sk_X509_EXTENSION_new_null()) == NULL || sk_X509_EXTENSION_push(exts, san) == 0)
        goto out;
    san = NULL; /* owned by exts now */
    if (X509_REQ_add_extensions(req, exts) != 1 || X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    if ((der_len = i2d_X509_REQ(req, &der)) <= 0)
        goto out;
    if ((out->key_pem = ptc_jose_key_to_pem(key)) == NULL)
        goto out;
    out->der = ptc_xmalloc((size_t)der_len);
    memcpy(out->der, der, (size_t)der_len);
    out->der_len = (size_t)der_len;
    rc = 0;
out:
    if (rc != 0)
        ptc_csr_free(out);
    ERR_clear_error();
    OPENSSL_free(der);
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gn);
    GENERAL_NAMES_free(names);
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    X509_NAME_free(name);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    return rc;
}

void ptc_csr_free(ptc_csr *c)
{
    if (c->key_pem) {
        OPENSSL_cleanse(c->key_pem, strlen(c->key_pem));
        free(c->key_pem);
    }
    free(c->der);
    memset(c, 0, sizeof(*c));
}
