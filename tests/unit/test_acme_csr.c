/* CSRs for finalize: signed by the new key, the domain as the one
 * subjectAltName, the key type asked for, and the key handed back. */
#include "acme/csr.h"
#include "testlib.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

/* Parses c->der and checks what every CSR must be; returns the request. */
static X509_REQ *parse(const ptc_csr *c, const char *domain)
{
    const unsigned char *p = c->der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)c->der_len);
    CHECK(req != NULL);
    if (req == NULL)
        return NULL;
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    CHECK(X509_REQ_verify(req, pub) == 1);
    /* The key handed back is the CSR's key. */
    BIO *b = BIO_new_mem_buf(c->key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    CHECK(key != NULL && EVP_PKEY_eq(key, pub) == 1);
    EVP_PKEY_free(key);
    BIO_free(b);
    /* Exactly one SAN: DNS:domain. */
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *names = NULL;
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); i++) {
        X509_EXTENSION *e = sk_X509_EXTENSION_value(exts, i);
        if (OBJ_obj2nid(X509_EXTENSION_get_object(e)) == NID_subject_alt_name)
            names = X509V3_EXT_d2i(e);
    }
    CHECK(names != NULL && sk_GENERAL_NAME_num(names) == 1);
    if (names && sk_GENERAL_NAME_num(names) == 1) {
        GENERAL_NAME *g = sk_GENERAL_NAME_value(names, 0);
        CHECK_INT(g->type, GEN_DNS);
        CHECK_INT(ASN1_STRING_length(g->d.dNSName), (int)strlen(domain));
        CHECK(memcmp(ASN1_STRING_get0_data(g->d.dNSName), domain, strlen(domain)) == 0);
    }
    GENERAL_NAMES_free(names);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return req;
}

static void test_csr_ecdsa(void)
{
    ptc_csr c;
    CHECK_INT(ptc_csr_create("orders.example.com", "ecdsa", &c), 0);
    X509_REQ *req = parse(&c, "orders.example.com");
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    char group[32] = "";
    CHECK_INT(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    CHECK(EVP_PKEY_get_utf8_string_param(pub, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group), NULL) == 1);
    CHECK_STR(group, "prime256v1");
    char cn[128] = "";
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof(cn));
    CHECK_STR(cn, "orders.example.com");
    X509_REQ_free(req);
    ptc_csr_free(&c);
    CHECK(c.key_pem == NULL && c.der == NULL);
}

static void test_csr_rsa(void)
{
    ptc_csr c;
    CHECK_INT(ptc_csr_create("rsa.example.com", "rsa", &c), 0);
    X509_REQ *req = parse(&c, "rsa.example.com");
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    CHECK_INT(EVP_PKEY_get_base_id(pub), EVP_PKEY_RSA);
    CHECK_INT(EVP_PKEY_get_bits(pub), 2048);
    X509_REQ_free(req);
    ptc_csr_free(&c);
}

static void test_csr_long_name_and_errors(void)
{
    /* 70 characters: too long for a CN, fine as a SAN. */
    const char *longname = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com";
    ptc_csr c;
    CHECK_INT(ptc_csr_create(longname, "ecdsa", &c), 0);
    X509_REQ *req = parse(&c, longname);
    CHECK_INT(X509_NAME_entry_count(X509_REQ_get_subject_name(req)), 0);
    X509_REQ_free(req);
    ptc_csr_free(&c);
    CHECK_INT(ptc_csr_create("x.example.com", "dsa", &c), -EINVAL);
    CHECK(c.key_pem == NULL && c.der == NULL);
}

int main(void)
{
    RUN(test_csr_ecdsa);
    RUN(test_csr_rsa);
    RUN(test_csr_long_name_and_errors);
    TEST_EXIT();
}
