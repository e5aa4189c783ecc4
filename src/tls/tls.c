/* TLS contexts, SNI switching, ticket keys and the certificate cache (see
 * tls.h). */
#include "tls/tls.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mem.h"

/* Mozilla's "intermediate" configuration (version 5.7). */
#define CIPHERS_TLS12                                                                                        \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"               \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                 \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define CIPHERS_TLS13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:prime256v1:secp384r1"

#define MAX_PEM (1u << 20)
#define TICKET_ROTATE_S 3600
#define TICKET_KEYS 3 /* the current one and the two before it */
/* Sessions carry this context and resume only where it matches; a fixed
 * value keeps them valid across snapshots and workers. */
static const unsigned char SID_CTX[] = "portico";

void ptc_tls_error(char *err, size_t errlen, const char *what)
{
    char buf[256] = "unknown error";
    unsigned long e = ERR_peek_error();
    if (e != 0)
        ERR_error_string_n(e, buf, sizeof(buf));
    ERR_clear_error();
    snprintf(err, errlen, "%s: %s", what, buf);
}

/* ------------------------------------------------------------ ticket keys */

typedef struct ticket_key {
    unsigned char name[16];
    unsigned char aes[32];
    unsigned char hmac[32];
} ticket_key;

static pthread_mutex_t g_ticket_lock = PTHREAD_MUTEX_INITIALIZER;
/* Fetched once: EVP_aes_256_cbc() would look the implementation up by
 * name on every ticket. */
static EVP_CIPHER *g_ticket_cipher;
static pthread_once_t g_cipher_once = PTHREAD_ONCE_INIT;

static void fetch_cipher(void)
{
    g_ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
}
static ticket_key g_keys[TICKET_KEYS];
static int g_n_keys;
static time_t g_key_made;

static time_t mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

/* Caller holds g_ticket_lock. */
static int rotate_locked(void)
{
    ticket_key k;
    if (RAND_bytes((unsigned char *)&k, sizeof(k)) != 1)
        return -1;
    memmove(&g_keys[1], &g_keys[0], sizeof(ticket_key) * (TICKET_KEYS - 1));
    g_keys[0] = k;
    if (g_n_keys < TICKET_KEYS)
        g_n_keys++;
    g_key_made = mono_s();
    return 0;
}

void ptc_tls_ticket_keys_rotate(void)
{
    pthread_mutex_lock(&g_ticket_lock);
    rotate_locked();
    pthread_mutex_unlock(&g_ticket_lock);
}

/* OpenSSL's ticket key callback: returns 1 (key found or made), 2 (found
 * but old, or TLS 1.3: issue a fresh ticket), 0 (unknown key: full
 * handshake), -1. */
static int ticket_cb(SSL *s, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    ticket_key k;
    int ret = -1, idx = -1;

    pthread_mutex_lock(&g_ticket_lock);
    if (g_n_keys == 0 || mono_s() - g_key_made >= TICKET_ROTATE_S)
        rotate_locked();
    if (enc) {
        idx = g_n_keys > 0 ? 0 : -1;
    } else {
        for (int i = 0; i < g_n_keys; i++)
            if (memcmp(g_keys[i].name, key_name, 16) == 0)
                idx = i;
    }
    if (idx >= 0)
        k = g_keys[idx];
    pthread_mutex_unlock(&g_ticket_lock);
    if (idx < 0)
        return enc ? -1 : 0;

    pthread_once(&g_cipher_once, fetch_cipher);
    if (g_ticket_cipher == NULL)
        goto out;
    if (enc) {
        memcpy(key_name, k.name, 16);
        if (RAND_bytes(iv, 16) != 1 || EVP_EncryptInit_ex2(cctx, g_ticket_cipher, k.aes, iv, NULL) != 1)
            goto out;
        ret = 1;
    } else {
        if (EVP_DecryptInit_ex2(cctx, g_ticket_cipher, k.aes, iv, NULL) != 1)
            goto out;
        /* TLS 1.3 clients use a ticket once (RFC 8446 §C.4), and OpenSSL
         * sends a resumed connection a new one only when asked to renew:
         * without it every other connection of a client would be a full
         * handshake. */
        ret = idx == 0 && SSL_version(s) != TLS1_3_VERSION ? 1 : 2;
    }
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    if (EVP_MAC_CTX_set_params(hctx, params) != 1)
        ret = -1;
out:
    OPENSSL_cleanse(&k, sizeof(k));
    return ret;
}

/* -------------------------------------------------------------- contexts */

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    (void)ssl;
    (void)arg;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* e.g. h2 only: go on without ALPN */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* The server context's settings; a certificate's context gets them too,
 * so that it could serve a handshake by itself. */
static int configure(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    SSL_CTX_clear_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    /* Partial writes let a large response go out record by record; release
     * buffers keeps an idle keep-alive connection's memory small. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    /* Read what the socket holds in one read, not a record's header and
     * then its body (nginx does the same).  Records read ahead stay in
     * OpenSSL's buffer with no readiness edge of their own: the workers
     * look at SSL_has_pending wherever OpenSSL may have read. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, CIPHERS_TLS12) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, CIPHERS_TLS13) != 1 || SSL_CTX_set1_groups_list(ctx, GROUPS) != 1 ||
        SSL_CTX_set_dh_auto(ctx, 1) != 1 ||
        SSL_CTX_set_session_id_context(ctx, SID_CTX, sizeof(SID_CTX) - 1) != 1)
        return -1;
    /* Resumption is by ticket only: no server-side cache to share or lock. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_timeout(ctx, TICKET_ROTATE_S * 2);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    return 0;
}

typedef struct pick_arg {
    ptc_tls_pick_cb pick;
    void *arg;
} pick_arg;

static int servername_cb(SSL *ssl, int *alert, void *arg)
{
    const pick_arg *pa = arg;
    SSL_CTX *ctx = pa->pick(ssl, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name), pa->arg);
    if (ctx == NULL) {
        *alert = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    STACK_OF(X509) *chain = NULL;
    SSL_CTX_get0_chain_certs(ctx, &chain);
    /* The connection takes references (override: replace anything set). */
    if (SSL_use_cert_and_key(ssl, SSL_CTX_get0_certificate(ctx), SSL_CTX_get0_privatekey(ctx), chain, 1) !=
        1) {
        *alert = SSL_AD_INTERNAL_ERROR;
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    }
    return SSL_TLSEXT_ERR_OK;
}

static int g_pick_idx = -1, g_entry_idx = -1;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void free_pick_arg(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void init_indices(void)
{
    g_pick_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, free_pick_arg);
    g_entry_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

SSL_CTX *ptc_tls_server_ctx_new(ptc_tls_pick_cb pick, void *arg, char *err, size_t errlen)
{
    pthread_once(&g_once, init_indices);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || configure(ctx) < 0)
        goto fail;
    pick_arg *pa = ptc_xmalloc(sizeof(*pa));
    *pa = (pick_arg){pick, arg};
    SSL_CTX_set_ex_data(ctx, g_pick_idx, pa);
    SSL_CTX_set_tlsext_servername_callback(ctx, servername_cb);
    SSL_CTX_set_tlsext_servername_arg(ctx, pa);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb) != 1)
        goto fail;
    return ctx;
fail:
    ptc_tls_error(err, errlen, "TLS server context");
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---------------------------------------------------- certificate cache */

typedef struct cert_entry {
    struct cert_entry *next;
    uint64_t hash;
    char *cert, *key;
    SSL_CTX *ctx;
    size_t refs;
} cert_entry;

#define CACHE_BUCKETS 1024
static pthread_mutex_t g_cache_lock = PTHREAD_MUTEX_INITIALIZER;
static cert_entry *g_cache[CACHE_BUCKETS];

static uint64_t hash_str(uint64_t h, const char *s)
{
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

/* Never prompts for a passphrase: an encrypted key is refused. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static SSL_CTX *load_cert_ctx(const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    BIO *cb = NULL, *kb = NULL;
    X509 *leaf = NULL, *x;
    EVP_PKEY *pkey = NULL;
    const char *what = "certificate";

    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL || configure(ctx) < 0)
        goto fail;
    cb = BIO_new_mem_buf(cert_pem, -1);
    kb = BIO_new_mem_buf(key_pem, -1);
    if (cb == NULL || kb == NULL)
        goto fail;
    leaf = PEM_read_bio_X509(cb, NULL, no_password, NULL);
    if (leaf == NULL || SSL_CTX_use_certificate(ctx, leaf) != 1)
        goto fail;
    what = "certificate chain";
    while ((x = PEM_read_bio_X509(cb, NULL, no_password, NULL)) != NULL) {
        if (SSL_CTX_add0_chain_cert(ctx, x) != 1) {
            X509_free(x);
            goto fail;
        }
    }
    /* The chain ends at the end of the text, which PEM reports as an error. */
    if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE)
        goto fail;
    ERR_clear_error();
    what = "private key";
    pkey = PEM_read_bio_PrivateKey(kb, NULL, no_password, NULL);
    if (pkey == NULL)
        goto fail;
    what = "private key does not match the certificate";
    if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1 || SSL_CTX_check_private_key(ctx) != 1)
        goto fail;
    goto out;
fail:
    ptc_tls_error(err, errlen, what);
    SSL_CTX_free(ctx);
    ctx = NULL;
out:
    X509_free(leaf);
    EVP_PKEY_free(pkey);
    BIO_free(cb);
    BIO_free(kb);
    return ctx;
}

/* Caller holds g_cache_lock. */
static cert_entry *cache_find(uint64_t h, const char *cert_pem, const char *key_pem)
{
    for (cert_entry *e = g_cache[h % CACHE_BUCKETS]; e; e = e->next)
        if (e->hash == h && strcmp(e->cert, cert_pem) == 0 && strcmp(e->key, key_pem) == 0)
            return e;
    return NULL;
}

SSL_CTX *ptc_tls_cert_ctx_get(const char *cert_pem, const char *key_pem, char *err, size_t errlen)
{
    SSL_CTX *ctx = NULL;
    cert_entry *e;

    pthread_once(&g_once, init_indices);
    if (strlen(cert_pem) > MAX_PEM || strlen(key_pem) > MAX_PEM) {
        snprintf(err, errlen, "certificate or key larger than %u bytes", MAX_PEM);
        return NULL;
    }
    uint64_t h = hash_str(hash_str(1469598103934665603ull, cert_pem), key_pem);
    pthread_mutex_lock(&g_cache_lock);
    e = cache_find(h, cert_pem, key_pem);
    if (e != NULL) {
        e->refs++;
        ctx = e->ctx;
    }
    pthread_mutex_unlock(&g_cache_lock);
    if (ctx != NULL)
        return ctx;

    /* Parse without the lock: releases from workers must not wait on it. */
    SSL_CTX *fresh = load_cert_ctx(cert_pem, key_pem, err, errlen);
    if (fresh == NULL)
        return NULL;
    pthread_mutex_lock(&g_cache_lock);
    e = cache_find(h, cert_pem, key_pem);
    if (e == NULL) {
        e = ptc_xcalloc(1, sizeof(*e));
        e->hash = h;
        e->cert = ptc_xstrdup(cert_pem);
        e->key = ptc_xstrdup(key_pem);
        e->ctx = fresh;
        SSL_CTX_set_ex_data(fresh, g_entry_idx, e);
        e->next = g_cache[h % CACHE_BUCKETS];
        g_cache[h % CACHE_BUCKETS] = e;
        fresh = NULL;
    }
    e->refs++;
    ctx = e->ctx;
    pthread_mutex_unlock(&g_cache_lock);
    SSL_CTX_free(fresh); /* another thread made the same one meanwhile */
    return ctx;
}

SSL_CTX *ptc_tls_cert_ctx_retain(SSL_CTX *ctx)
{
    cert_entry *e = SSL_CTX_get_ex_data(ctx, g_entry_idx);
    pthread_mutex_lock(&g_cache_lock);
    e->refs++;
    pthread_mutex_unlock(&g_cache_lock);
    return ctx;
}

void ptc_tls_cert_ctx_release(SSL_CTX *ctx)
{
    if (ctx == NULL)
        return;
    cert_entry *e = SSL_CTX_get_ex_data(ctx, g_entry_idx);
    pthread_mutex_lock(&g_cache_lock);
    if (--e->refs == 0) {
        for (cert_entry **pp = &g_cache[e->hash % CACHE_BUCKETS]; *pp; pp = &(*pp)->next) {
            if (*pp == e) {
                *pp = e->next;
                break;
            }
        }
    } else {
        e = NULL;
    }
    pthread_mutex_unlock(&g_cache_lock);
    if (e == NULL)
        return;
    /* Connections that chose this certificate hold their own reference. */
    SSL_CTX_free(e->ctx);
    OPENSSL_cleanse(e->key, strlen(e->key));
    free(e->cert);
    free(e->key);
    free(e);
}
