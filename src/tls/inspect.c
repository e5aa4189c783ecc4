/* Certificate chain and key inspection with OpenSSL 3 (see inspect.h). */
#include "tls/inspect.h"

#include "core/mem.h"

#include <errno.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static char *name_line(const X509_NAME *n)
{
    char *s = NULL;
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *mem;
    X509_NAME_print_ex(b, n, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
    BIO_get_mem_ptr(b, &mem);
    /* An empty name (a certificate named by its SAN only) writes nothing,
     * and an empty memory BIO has no data pointer at all. */
    s = mem->length ? ptc_xstrndup(mem->data, mem->length) : ptc_xstrdup("");
    BIO_free(b);
    return s;
}

int ptc_tls_no_passphrase(char *buf, int size, int rwflag, void *arg)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)arg;
    return 0;
}

static int64_t asn1_time_ms(const ASN1_TIME *t)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm) * 1000;
}

/* Collects the leaf's DNS and IP subjectAltNames. */
static void read_sans(X509 *leaf, ptc_tls_facts *f)
{
    GENERAL_NAMES *names = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
    int n = names ? sk_GENERAL_NAME_num(names) : 0;
    f->sans = ptc_xcalloc((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        if (g->type == GEN_DNS) {
            const unsigned char *d = ASN1_STRING_get0_data(g->d.dNSName);
            f->sans[f->n_sans++] = ptc_xstrndup((const char *)d, (size_t)ASN1_STRING_length(g->d.dNSName));
        } else if (g->type == GEN_IPADD) {
            char buf[64] = "";
            int len = ASN1_STRING_length(g->d.iPAddress);
            const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
            if (len == 4)
                snprintf(buf, sizeof(buf), "%u.%u.%u.%u", d[0], d[1], d[2], d[3]);
            else if (len == 16)
                for (int k = 0; k < 16; k += 2)
                    snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%x", k ? ":" : "",
                             (unsigned)(d[k] << 8 | d[k + 1]));
            if (buf[0])
                f->sans[f->n_sans++] = ptc_xstrdup(buf);
        }
    }
    GENERAL_NAMES_free(names);
}

static bool covers(const ptc_tls_facts *f, X509 *leaf, const char *domain)
{
    if (strncmp(domain, "*.", 2) == 0) {
        for (size_t i = 0; i < f->n_sans; i++)
            if (strcasecmp(f->sans[i], domain) == 0)
                return true;
        return false;
    }
    return X509_check_host(leaf, domain, strlen(domain), 0, NULL) == 1;
}

int ptc_tls_inspect(const char *chain_pem, const char *key_pem, const char *domain, ptc_tls_facts *out,
                    char *err, size_t errlen)
{
    int rc = -EINVAL;
    X509 *chain[PTC_TLS_CHAIN_MAX] = {NULL};
    size_t n = 0;
    EVP_PKEY *key = NULL;
    BIO *b = NULL;
    ptc_tls_facts f = {0};
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    time_t now = time(NULL);

    memset(out, 0, sizeof(*out));
    b = BIO_new_mem_buf(chain_pem, -1);
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, ptc_tls_no_passphrase, NULL);
        if (x == NULL)
            break;
        if (n == PTC_TLS_CHAIN_MAX) {
            X509_free(x);
            snprintf(err, errlen, "certificate: more than %d certificates in the chain", PTC_TLS_CHAIN_MAX);
            goto out;
        }
        chain[n++] = x;
    }
    ERR_clear_error();
    BIO_free(b);
    b = NULL;
    if (n == 0) {
        snprintf(err, errlen, "certificate: no PEM certificate found");
        goto out;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        EVP_PKEY *issuer_key = X509_get0_pubkey(chain[i + 1]);
        if (X509_check_issued(chain[i + 1], chain[i]) != X509_V_OK || issuer_key == NULL ||
            X509_verify(chain[i], issuer_key) != 1) {
            ERR_clear_error();
            snprintf(
                err, errlen,
                "certificate: the chain is out of order: certificate %zu is not signed by certificate %zu "
                "(give the leaf first, then each issuer)",
                i + 1, i + 2);
            goto out;
        }
    }
    if (key_pem) {
        b = BIO_new_mem_buf(key_pem, -1);
        key = PEM_read_bio_PrivateKey(b, NULL, ptc_tls_no_passphrase, NULL);
        ERR_clear_error();
        if (key == NULL) {
            snprintf(err, errlen, "key: no unencrypted PEM private key found");
            goto out;
        }
        if (X509_check_private_key(chain[0], key) != 1) {
            ERR_clear_error();
            snprintf(err, errlen, "key: the key does not belong to the first certificate");
            goto out;
        }
    }
    f.not_before = asn1_time_ms(X509_get0_notBefore(chain[0]));
    f.not_after = asn1_time_ms(X509_get0_notAfter(chain[0]));
    if (f.not_after <= (int64_t)now * 1000) {
        snprintf(err, errlen, "certificate: it has expired");
        goto out;
    }
    f.issuer = name_line(X509_get_issuer_name(chain[0]));
    f.subject = name_line(X509_get_subject_name(chain[0]));
    read_sans(chain[0], &f);
    if (domain && !covers(&f, chain[0], domain)) {
        snprintf(err, errlen, "certificate: it does not cover %s", domain);
        goto out;
    }
    X509_digest(chain[0], EVP_sha256(), md, &mdlen);
    f.fingerprint = ptc_xcalloc(2 * mdlen + 1, 1);
    for (unsigned i = 0; i < mdlen; i++)
        snprintf(f.fingerprint + 2 * i, 3, "%02x", md[i]);
    f.chain_len = n;
    *out = f;
    memset(&f, 0, sizeof(f));
    rc = 0;
out:
    ptc_tls_facts_free(&f);
    for (size_t i = 0; i < n; i++)
        X509_free(chain[i]);
    EVP_PKEY_free(key);
    BIO_free(b);
    return rc;
}

void ptc_tls_facts_free(ptc_tls_facts *f)
{
    free(f->issuer);
    free(f->subject);
    for (size_t i = 0; i < f->n_sans; i++)
        free(f->sans[i]);
    free(f->sans);
    free(f->fingerprint);
    memset(f, 0, sizeof(*f));
}
