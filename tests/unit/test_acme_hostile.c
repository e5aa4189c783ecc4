/* The ACME client against a hostile CA: a TLS server of this test that
 * answers with an oversized body, endless headers, silence, a redirect,
 * garbage, badNonce forever, and a Retry-After far beyond the deadline.
 * Each time the issuance must end within its bounds with a failure that
 * says why, and nothing the CA sent is followed or kept. */
#include "acme/acme.h"
#include "acme/jose.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/util.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char dir[64], cert_file[128], key_file[128], base[64];
static SSL_CTX *ctx;
static int listen_fd;
static atomic_bool stopping;
static pthread_t acceptor;

/* What the CA does, set by each test; counters of what it saw. */
typedef enum mode {
    HUGE_BODY,
    HUGE_HEADERS,
    SILENT,
    REDIRECT,
    GARBAGE,
    BAD_NONCE,
    SLOW_ORDER,
    SLOW_ORDER_DATE
} mode;
static _Atomic mode current;
static atomic_int posts, order_reads, elsewhere_hits;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void send_all(SSL *ssl, const char *p, size_t n)
{
    while (n > 0) {
        int w = SSL_write(ssl, p, (int)(n > 65536 ? 65536 : n));
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

static void reply(SSL *ssl, const char *status, const char *headers, const char *body)
{
    char *r = ptc_xasprintf("HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: %zu\r\n%s\r\n%s", status,
                            strlen(body), headers, body);
    send_all(ssl, r, strlen(r));
    free(r);
}

/* Reads a request head and its Content-Length body; fills method/path. */
static bool read_request(SSL *ssl, char *method, char *path, size_t len)
{
    char buf[65536];
    size_t n = 0;
    char *end = NULL;
    while (n < sizeof(buf) - 1 && (end = strstr(buf, "\r\n\r\n")) == NULL) {
        int r = SSL_read(ssl, buf + n, (int)(sizeof(buf) - 1 - n));
        if (r <= 0)
            return false;
        n += (size_t)r;
        buf[n] = '\0';
    }
    if (end == NULL || sscanf(buf, "%15s %255s", method, path) != 2)
        return false;
    (void)len;
    const char *cl = strcasestr(buf, "\r\nContent-Length:");
    size_t want = cl ? strtoul(cl + 17, NULL, 10) : 0, have = n - (size_t)(end + 4 - buf);
    while (have < want) {
        int r = SSL_read(ssl, buf, (int)sizeof(buf));
        if (r <= 0)
            return false;
        have += (size_t)r;
    }
    return true;
}

static const char *directory(void)
{
    static char d[512];
    snprintf(d, sizeof(d),
             "{\"newNonce\":\"%s/nonce\",\"newAccount\":\"%s/account\",\"newOrder\":\"%s/order\"}", base,
             base, base);
    return d;
}

static void handle(SSL *ssl)
{
    char method[16], path[256];
    if (!read_request(ssl, method, path, sizeof(path)))
        return;
    mode m = atomic_load(&current);
    if (strcmp(path, "/elsewhere") == 0) {
        atomic_fetch_add(&elsewhere_hits, 1);
        reply(ssl, "200 OK", "", directory());
        return;
    }
    if (m == HUGE_BODY) {
        size_t n = 2 * 1024 * 1024;
        char *head = ptc_xasprintf("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n", n);
        char *junk = ptc_xmalloc(n);
        memset(junk, ' ', n);
        send_all(ssl, head, strlen(head));
        send_all(ssl, junk, n);
        free(junk);
        free(head);
    } else if (m == HUGE_HEADERS) {
        ptc_buf h = PTC_BUF_INIT;
        for (int i = 0; i < 2000; i++)
            ptc_buf_appendf(&h, "X-Filler-%d: %0100d\r\n", i, i);
        reply(ssl, "200 OK", h.data, directory());
        ptc_buf_free(&h);
    } else if (m == SILENT) {
        while (!atomic_load(&stopping))
            sleep_ms(20);
    } else if (m == REDIRECT) {
        char *loc = ptc_xasprintf("Location: %s/elsewhere\r\n", base);
        reply(ssl, "301 Moved Permanently", loc, "");
        free(loc);
    } else if (m == GARBAGE) {
        reply(ssl, "200 OK", "Content-Type: application/json\r\n",
              "{\"newNonce\": [\"not\", \"a\", \"url\"]}");
    } else if (strcmp(path, "/dir") == 0) {
        reply(ssl, "200 OK", "Content-Type: application/json\r\n", directory());
    } else if (strcmp(path, "/nonce") == 0) {
        reply(ssl, "200 OK", "Replay-Nonce: nonce-from-head\r\n", "");
    } else if (m == BAD_NONCE) {
        atomic_fetch_add(&posts, 1);
        reply(ssl, "400 Bad Request",
              "Content-Type: application/problem+json\r\nReplay-Nonce: fresh-nonce\r\n",
              "{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"JWS has an invalid anti-replay "
              "nonce\",\"status\":400}");
    } else if (m == SLOW_ORDER || m == SLOW_ORDER_DATE) {
        atomic_fetch_add(&posts, 1);
        char *hdr = NULL, *body = NULL;
        if (strcmp(path, "/account") == 0) {
            hdr = ptc_xasprintf("Replay-Nonce: n1\r\nLocation: %s/acct/1\r\n", base);
            reply(ssl, "201 Created", hdr, "{\"status\":\"valid\"}");
        } else if (strcmp(path, "/order") == 0 || strcmp(path, "/order/1") == 0) {
            if (strcmp(path, "/order/1") == 0)
                atomic_fetch_add(&order_reads, 1);
            hdr = ptc_xasprintf("Replay-Nonce: n2\r\nLocation: %s/order/1\r\nRetry-After: %s\r\n", base,
                                m == SLOW_ORDER ? "3600" : "Wed, 21 Oct 2099 07:28:00 GMT");
            body = ptc_xasprintf("{\"status\":\"pending\",\"authorizations\":[\"%s/authz/1\"],\"finalize\":"
                                 "\"%s/finalize/1\"}",
                                 base, base);
            reply(ssl, strcmp(path, "/order") == 0 ? "201 Created" : "200 OK", hdr, body);
        } else if (strcmp(path, "/authz/1") == 0) {
            /* Already valid: the client goes straight to waiting for the
             * order. */
            reply(ssl, "200 OK", "Replay-Nonce: n3\r\n",
                  "{\"status\":\"valid\",\"identifier\":{\"type\":\"dns\",\"value\":\"slow.example.com\"},"
                  "\"challenges\":[]}");
        } else {
            reply(ssl, "404 Not Found", "", "");
        }
        free(hdr);
        free(body);
    }
}

static void *conn_main(void *arg)
{
    int fd = (int)(intptr_t)arg;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_accept(ssl) == 1)
        handle(ssl);
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    ERR_clear_error();
    return NULL;
}

static void *accept_main(void *arg)
{
    (void)arg;
    while (!atomic_load(&stopping)) {
        struct pollfd p = {.fd = listen_fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_create(&t, NULL, conn_main, (void *)(intptr_t)fd);
        pthread_detach(t);
    }
    return NULL;
}

static void start_ca(void)
{
    snprintf(cert_file, sizeof(cert_file), "%s/cert.pem", dir);
    snprintf(key_file, sizeof(key_file), "%s/key.pem", dir);
    const char *req[] = {"openssl",
                         "req",
                         "-x509",
                         "-newkey",
                         "ec",
                         "-pkeyopt",
                         "ec_paramgen_curve:P-256",
                         "-nodes",
                         "-keyout",
                         key_file,
                         "-out",
                         cert_file,
                         "-days",
                         "2",
                         "-subj",
                         "/CN=localhost",
                         "-addext",
                         "subjectAltName=IP:127.0.0.1",
                         NULL};
    ptc_proc_result res;
    CHECK_INT(ptc_proc_run(req, NULL, 30000, 65536, &res), 0);
    CHECK_INT(res.exit_code, 0);
    ptc_proc_result_free(&res);
    ctx = SSL_CTX_new(TLS_server_method());
    CHECK(SSL_CTX_use_certificate_file(ctx, cert_file, SSL_FILETYPE_PEM) == 1);
    CHECK(SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) == 1);

    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK_INT(bind(listen_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_INT(listen(listen_fd, 64), 0);
    getsockname(listen_fd, (struct sockaddr *)&a, &len);
    snprintf(base, sizeof(base), "https://127.0.0.1:%u", ntohs(a.sin_port));
    pthread_create(&acceptor, NULL, accept_main, NULL);
}

static char *account_pem;
static char dir_url[96];

static int noop_set(void *arg, const char *token, const char *ka)
{
    (void)arg;
    (void)token;
    (void)ka;
    return 0;
}

static void noop_clear(void *arg, const char *token)
{
    (void)arg;
    (void)token;
}

/* One issuance against the CA in mode m with a timeout; returns rc. */
static int issue(mode m, unsigned timeout_ms, ptc_acme_failure *f)
{
    ptc_acme_params p = {
        .directory_url = dir_url,
        .ca_bundle = cert_file,
        .account_key_pem = account_pem,
        .key_type = "ecdsa",
        .timeout_ms = timeout_ms,
    };
    ptc_acme_responder r = {noop_set, noop_clear, NULL};
    ptc_cert *c = NULL;
    atomic_store(&current, m);
    int rc = ptc_acme_issue(&p, m >= SLOW_ORDER ? "slow.example.com" : "x.example.com", &r, &c, f);
    CHECK(c == NULL);
    return rc;
}

static void test_huge_body(void)
{
    ptc_acme_failure f;
    CHECK_INT(issue(HUGE_BODY, 20000, &f), -EPROTO);
    CHECK_STR(f.stage, "directory");
    CHECK(strstr(f.message, "larger than 1048576 bytes") != NULL);
    ptc_acme_failure_clear(&f);
}

static void test_huge_headers(void)
{
    ptc_acme_failure f;
    CHECK_INT(issue(HUGE_HEADERS, 20000, &f), -EPROTO);
    CHECK(strstr(f.message, "headers exceed") != NULL);
    ptc_acme_failure_clear(&f);
}

static void test_silent(void)
{
    ptc_acme_failure f;
    CHECK_INT(issue(SILENT, 1500, &f), -ETIMEDOUT);
    CHECK_STR(f.stage, "directory");
    CHECK(strstr(f.message, "did not answer in time") != NULL);
    ptc_acme_failure_clear(&f);
}

static void test_redirect_not_followed(void)
{
    ptc_acme_failure f;
    atomic_store(&elsewhere_hits, 0);
    CHECK_INT(issue(REDIRECT, 20000, &f), -EPROTO);
    CHECK_INT(json_integer_value(json_object_get(f.details, "http_status")), 301);
    CHECK_INT(atomic_load(&elsewhere_hits), 0);
    ptc_acme_failure_clear(&f);
}

static void test_garbage(void)
{
    ptc_acme_failure f;
    CHECK_INT(issue(GARBAGE, 20000, &f), -EPROTO);
    CHECK(strstr(f.message, "not valid") != NULL);
    CHECK(strstr(json_string_value(json_object_get(f.details, "reason")), "newNonce") != NULL);
    ptc_acme_failure_clear(&f);
}

static void test_bad_nonce_forever(void)
{
    ptc_acme_failure f;
    atomic_store(&posts, 0);
    CHECK_INT(issue(BAD_NONCE, 20000, &f), -EPROTO);
    CHECK_STR(f.stage, "account");
    /* The first try and ten retries, then the refusal is reported. */
    CHECK_INT(atomic_load(&posts), 11);
    CHECK_STR(json_string_value(json_object_get(json_object_get(f.details, "problem"), "type")),
              "urn:ietf:params:acme:error:badNonce");
    ptc_acme_failure_clear(&f);
}

static void test_retry_after_beyond_deadline(void)
{
    ptc_acme_failure f;
    atomic_store(&order_reads, 0);
    /* The order stays pending and asks for an hour between polls: the
     * client waits as told rather than polling, so it gives up at once. */
    CHECK_INT(issue(SLOW_ORDER, 5000, &f), -ETIMEDOUT);
    CHECK_STR(f.stage, "order");
    CHECK(strstr(f.message, "ran out of time") != NULL);
    CHECK_INT(atomic_load(&order_reads), 1);
    ptc_acme_failure_clear(&f);
    /* The same with Retry-After as an HTTP date. */
    atomic_store(&order_reads, 0);
    CHECK_INT(issue(SLOW_ORDER_DATE, 5000, &f), -ETIMEDOUT);
    CHECK(strstr(f.message, "ran out of time") != NULL);
    CHECK_INT(atomic_load(&order_reads), 1);
    ptc_acme_failure_clear(&f);
}

int main(void)
{
    /* The CA of this test writes to clients that gave up on purpose; as in
     * portico serve, EPIPE is handled, SIGPIPE ignored. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(dir, sizeof(dir), "/tmp/portico-hostile-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    start_ca();
    snprintf(dir_url, sizeof(dir_url), "%s/dir", base);
    EVP_PKEY *k = ptc_jose_key_generate();
    account_pem = ptc_jose_key_to_pem(k);
    EVP_PKEY_free(k);
    RUN(test_huge_body);
    RUN(test_huge_headers);
    RUN(test_silent);
    RUN(test_redirect_not_followed);
    RUN(test_garbage);
    RUN(test_bad_nonce_forever);
    RUN(test_retry_after_beyond_deadline);
    atomic_store(&stopping, true);
    pthread_join(acceptor, NULL);
    /* Let the silent connection's thread see the flag and finish. */
    sleep_ms(200);
    close(listen_fd);
    SSL_CTX_free(ctx);
    free(account_pem);
    unlink(cert_file);
    unlink(key_file);
    rmdir(dir);
    curl_global_cleanup();
    TEST_EXIT();
}
