/* tls/inspect.c: what an uploaded (or issued) chain and key must be, and
 * what is read from them. */
#include "core/mem.h"
#include "tls/inspect.h"

#include "testlib.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define PASSPHRASE "correct horse battery"

/* A self-signed P-256 certificate for san; cn NULL leaves the subject
 * empty (what a CA may issue: the name is in the SAN only).  With
 * passphrase, the key is written encrypted. */
static void make_cert(const char *cn, const char *san, const char *passphrase, char **cert_pem,
                      char **key_pem)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data, ext_value[300];
    long n;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    if (cn)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    snprintf(ext_value, sizeof(ext_value), "DNS:%s", san);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, ext_value);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, key, EVP_sha256());
    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &data);
    *cert_pem = ptc_xstrndup(data, (size_t)n);
    BIO_reset(b);
    if (passphrase)
        PEM_write_bio_PrivateKey(b, key, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)passphrase);
    else
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &data);
    *key_pem = ptc_xstrndup(data, (size_t)n);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
}

static void test_facts(void)
{
    char *cert, *key, err[256] = "";
    ptc_tls_facts f;
    make_cert("shop.example.com", "shop.example.com", NULL, &cert, &key);
    CHECK_INT(ptc_tls_inspect(cert, key, "shop.example.com", &f, err, sizeof(err)), 0);
    CHECK_STR(f.subject, "CN = shop.example.com");
    CHECK_INT(f.n_sans, 1);
    CHECK_STR(f.n_sans ? f.sans[0] : NULL, "shop.example.com");
    CHECK(f.fingerprint && strlen(f.fingerprint) == 64);
    ptc_tls_facts_free(&f);
    CHECK(ptc_tls_inspect(cert, key, "other.example.com", &f, err, sizeof(err)) != 0);
    free(cert);
    free(key);
}

/* A certificate whose subject is empty (the name only in the SAN) is
 * fine, and its subject reads as "". */
static void test_empty_subject(void)
{
    char *cert, *key, err[256] = "";
    ptc_tls_facts f;
    make_cert(NULL, "bare.example.com", NULL, &cert, &key);
    CHECK_INT(ptc_tls_inspect(cert, key, "bare.example.com", &f, err, sizeof(err)), 0);
    CHECK_STR(f.subject, "");
    CHECK_STR(f.issuer, "");
    ptc_tls_facts_free(&f);
    free(cert);
    free(key);
}

/* An encrypted key is refused, never decrypted with a passphrase read from
 * the terminal or stdin (OpenSSL's default callback prompts there, which
 * blocks an API thread, or reads whatever the daemon's stdin holds).  The
 * check runs in a child without a controlling terminal whose stdin holds
 * the right passphrase. */
static void test_encrypted_key_is_refused_without_a_prompt(void)
{
    char *cert, *key;
    int fds[2];
    make_cert("lock.example.com", "lock.example.com", PASSPHRASE, &cert, &key);
    CHECK(strstr(key, "ENCRYPTED") != NULL);
    CHECK_INT(pipe(fds), 0);
    CHECK(write(fds[1], PASSPHRASE "\n", strlen(PASSPHRASE) + 1) > 0);
    close(fds[1]);
    pid_t pid = fork();
    if (pid == 0) {
        char err[256] = "";
        ptc_tls_facts f;
        setsid();
        dup2(fds[0], 0);
        alarm(20); /* a prompt that waits is a failure too */
        int rc = ptc_tls_inspect(cert, key, "lock.example.com", &f, err, sizeof(err));
        if (rc == 0)
            ptc_tls_facts_free(&f);
        _exit(rc != 0 && strstr(err, "key") != NULL ? 0 : 1);
    }
    close(fds[0]);
    int status = 0;
    CHECK_INT(waitpid(pid, &status, 0), pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(cert);
    free(key);
}

int main(void)
{
    RUN(test_facts);
    RUN(test_empty_subject);
    RUN(test_encrypted_key_is_refused_without_a_prompt);
    TEST_EXIT();
}
