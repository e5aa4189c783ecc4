/* The ACME client end to end against a real Pebble (Debian's pebble and
 * pebble-challtestsrv, started here on loopback ports picked here):
 * ECDSA and RSA certificates issued with HTTP-01 answered by a small
 * responder thread of this test, the chain checked against Pebble's root,
 * every challenge cleared afterwards; certbot driven the same way through
 * a webroot the responder serves; and the failures: a wrong answer to
 * the challenge (the CA's problem document comes back), an engine that
 * cannot serve the challenge, a cancelled issuance, and the CA gone.
 * For portico's client Pebble runs with 30% of nonces refused, so that
 * the badNonce retries are exercised on every issuance; certbot, which
 * retries only once, gets Pebble's default 5%. */
#include "acme/acme.h"
#include "acme/certbot.h"
#include "acme/jose.h"
#include "core/buf.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/util.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static char dir[64];
static char ca_file[128];
static char directory_url[128];
static unsigned mgmt_port;
static pid_t pebble_pid = -1, challtest_pid = -1;

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    ptc_buf_append(arg, p, size * n);
    return size * n;
}

/* GET url trusting ca_file; returns the status (0: no answer). */
static long https_get(const char *url, ptc_buf *body)
{
    long status = 0;
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, ca_file);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 2000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, body);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    return status;
}

static pid_t spawn_logged(const char *const argv[], char *const envp[], const char *log)
{
    char *path = ptc_path_join(dir, log);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    pid_t pid = -1;
    CHECK(fd >= 0);
    CHECK_INT(ptc_proc_spawn(argv, envp, fd, &pid), 0);
    close(fd);
    free(path);
    return pid;
}

static void stop_child(pid_t *pid)
{
    if (*pid <= 0)
        return;
    kill(*pid, SIGTERM);
    for (int i = 0; i < 500; i++) {
        if (waitpid(*pid, NULL, WNOHANG) == *pid) {
            *pid = -1;
            return;
        }
        sleep_ms(10);
    }
    kill(*pid, SIGKILL);
    waitpid(*pid, NULL, 0);
    *pid = -1;
}

/* Starts challtestsrv (DNS: every name is 127.0.0.1) and Pebble with
 * httpPort = http_port.  Returns false when Pebble does not come up. */
static bool start_pebble(unsigned http_port, const char *nonce_reject)
{
    unsigned acme = t_free_port(), tls = t_free_port(), dns = t_free_port(), ctmgmt = t_free_port();
    char dns_addr[32], ctmgmt_addr[32], err[8];
    mgmt_port = t_free_port();
    snprintf(dns_addr, sizeof(dns_addr), "127.0.0.1:%u", dns);
    snprintf(ctmgmt_addr, sizeof(ctmgmt_addr), "127.0.0.1:%u", ctmgmt);
    (void)err;

    char *key = ptc_path_join(dir, "pebble-key.pem");
    snprintf(ca_file, sizeof(ca_file), "%s/pebble-cert.pem", dir);
    const char *req[] = {"openssl",
                         "req",
                         "-x509",
                         "-newkey",
                         "ec",
                         "-pkeyopt",
                         "ec_paramgen_curve:P-256",
                         "-nodes",
                         "-keyout",
                         key,
                         "-out",
                         ca_file,
                         "-days",
                         "2",
                         "-subj",
                         "/CN=localhost",
                         "-addext",
                         "subjectAltName=DNS:localhost,IP:127.0.0.1",
                         NULL};
    ptc_proc_result res;
    CHECK_INT(ptc_proc_run(req, NULL, 30000, 65536, &res), 0);
    CHECK_INT(res.exit_code, 0);
    ptc_proc_result_free(&res);

    char *cfg_path = ptc_path_join(dir, "pebble.json");
    char *cfg = ptc_xasprintf(
        "{\"pebble\": {\"listenAddress\": \"127.0.0.1:%u\", \"managementListenAddress\": "
        "\"127.0.0.1:%u\", \"certificate\": \"%s\", \"privateKey\": \"%s\", \"httpPort\": %u, "
        "\"tlsPort\": %u, \"ocspResponderURL\": \"\", \"externalAccountBindingRequired\": false}}",
        acme, mgmt_port, ca_file, key, http_port, tls);
    CHECK_INT(ptc_file_write_atomic(cfg_path, cfg, strlen(cfg), 0600), 0);

    const char *ct[] = {"pebble-challtestsrv",
                        "-defaultIPv4",
                        "127.0.0.1",
                        "-defaultIPv6",
                        "",
                        "-http01",
                        "",
                        "-https01",
                        "",
                        "-tlsalpn01",
                        "",
                        "-dns01",
                        dns_addr,
                        "-management",
                        ctmgmt_addr,
                        NULL};
    challtest_pid = spawn_logged(ct, NULL, "challtestsrv.log");

    /* Our environment plus Pebble's knobs: no validation delay, and a
     * third of the nonces refused. */
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = ptc_xcalloc(n + 3, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        env[i] = environ[i];
    env[n] = "PEBBLE_VA_NOSLEEP=1";
    env[n + 1] = nonce_reject ? ptc_xasprintf("PEBBLE_WFE_NONCEREJECT=%s", nonce_reject) : NULL;
    const char *pb[] = {"pebble", "-config", cfg_path, "-dnsserver", dns_addr, NULL};
    pebble_pid = spawn_logged(pb, env, "pebble.log");
    free(env[n + 1]);
    free(env);

    snprintf(directory_url, sizeof(directory_url), "https://127.0.0.1:%u/dir", acme);
    bool up = false;
    for (int i = 0; i < 300 && !up; i++) {
        ptc_buf b = PTC_BUF_INIT;
        up = https_get(directory_url, &b) == 200;
        ptc_buf_free(&b);
        if (!up)
            sleep_ms(50);
    }
    free(cfg);
    free(cfg_path);
    free(key);
    return up;
}

/* ---- the HTTP-01 responder: a tiny HTTP server of this test ---------- */

#define TOKENS_MAX 16

typedef struct responder {
    int fd;
    unsigned port;
    pthread_t thread;
    pthread_mutex_t lock;
    bool stop;
    char *tokens[TOKENS_MAX], *answers[TOKENS_MAX];
    int sets, clears;
    char webroot[128]; /* also serve {webroot}/.well-known/acme-challenge/ (certbot's) */
    bool corrupt;      /* serve a wrong key authorization */
    int set_error;     /* set() fails with this */
} responder;

static void answer(responder *r, int fd)
{
    char req[4096];
    size_t len = 0;
    struct timeval tv = {2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    while (len < sizeof(req) - 1) {
        ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[len] = '\0';
    const char *prefix = "GET /.well-known/acme-challenge/";
    char *body = NULL;
    if (strncmp(req, prefix, strlen(prefix)) == 0) {
        const char *tok = req + strlen(prefix);
        size_t tlen = strcspn(tok, " ");
        pthread_mutex_lock(&r->lock);
        for (int i = 0; i < TOKENS_MAX; i++)
            if (r->tokens[i] && strlen(r->tokens[i]) == tlen && strncmp(r->tokens[i], tok, tlen) == 0)
                body = ptc_xstrdup(r->answers[i]);
        pthread_mutex_unlock(&r->lock);
        /* Tokens are base64url: no '/' or '.' can leave the folder. */
        if (body == NULL && tlen > 0 &&
            strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == tlen) {
            pthread_mutex_lock(&r->lock);
            char *path = ptc_xasprintf("%s/.well-known/acme-challenge/%.*s", r->webroot, (int)tlen, tok);
            pthread_mutex_unlock(&r->lock);
            if (ptc_file_read(path, 4096, &body, NULL) != 0)
                body = NULL;
            free(path);
        }
    }
    char *resp =
        body ? ptc_xasprintf("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                             "Connection: close\r\n\r\n%s",
                             strlen(body), body)
             : ptc_xstrdup("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    ssize_t w = write(fd, resp, strlen(resp));
    (void)w;
    free(resp);
    free(body);
}

static void *serve(void *arg)
{
    responder *r = arg;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        bool stop = r->stop;
        pthread_mutex_unlock(&r->lock);
        if (stop)
            break;
        struct pollfd p = {.fd = r->fd, .events = POLLIN};
        if (poll(&p, 1, 50) != 1)
            continue;
        int c = accept4(r->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        answer(r, c);
        close(c);
    }
    return NULL;
}

static void responder_start(responder *r)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    int one = 1;
    memset(r, 0, sizeof(*r));
    pthread_mutex_init(&r->lock, NULL);
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(r->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    CHECK_INT(bind(r->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    CHECK_INT(listen(r->fd, 64), 0);
    getsockname(r->fd, (struct sockaddr *)&a, &len);
    r->port = ntohs(a.sin_port);
    pthread_create(&r->thread, NULL, serve, r);
}

static void responder_stop(responder *r)
{
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    close(r->fd);
    for (int i = 0; i < TOKENS_MAX; i++) {
        free(r->tokens[i]);
        free(r->answers[i]);
    }
    pthread_mutex_destroy(&r->lock);
}

static int r_set(void *arg, const char *token, const char *key_auth)
{
    responder *r = arg;
    int rc = -ENOSPC;
    pthread_mutex_lock(&r->lock);
    r->sets++;
    if (r->set_error) {
        rc = r->set_error;
        goto out;
    }
    for (int i = 0; i < TOKENS_MAX; i++) {
        if (r->tokens[i] == NULL) {
            r->tokens[i] = ptc_xstrdup(token);
            r->answers[i] = r->corrupt ? ptc_xasprintf("%s.wrong", token) : ptc_xstrdup(key_auth);
            rc = 0;
            break;
        }
    }
out:
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static void r_clear(void *arg, const char *token)
{
    responder *r = arg;
    pthread_mutex_lock(&r->lock);
    r->clears++;
    for (int i = 0; i < TOKENS_MAX; i++) {
        if (r->tokens[i] && strcmp(r->tokens[i], token) == 0) {
            free(r->tokens[i]);
            free(r->answers[i]);
            r->tokens[i] = r->answers[i] = NULL;
        }
    }
    pthread_mutex_unlock(&r->lock);
}

static int live_tokens(responder *r)
{
    int n = 0;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < TOKENS_MAX; i++)
        n += r->tokens[i] != NULL;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* ---- checks on what was issued -------------------------------------- */

/* The chain verifies up to Pebble's root (fetched from its management
 * listener, as it changes at every start) for domain. */
static void check_chain(const ptc_cert *c, const char *domain)
{
    char url[96];
    ptc_buf root = PTC_BUF_INIT;
    snprintf(url, sizeof(url), "https://127.0.0.1:%u/roots/0", mgmt_port);
    CHECK_INT(https_get(url, &root), 200);
    X509_STORE *store = X509_STORE_new();
    BIO *b = BIO_new_mem_buf(root.data, (int)root.len);
    X509 *r = PEM_read_bio_X509(b, NULL, NULL, NULL);
    CHECK(r != NULL);
    X509_STORE_add_cert(store, r);
    BIO_free(b);
    b = BIO_new_mem_buf(c->cert_pem, -1);
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    STACK_OF(X509) *rest = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(rest, x);
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    X509_STORE_CTX_init(ctx, store, leaf, rest);
    X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), domain, 0);
    CHECK_INT(X509_verify_cert(ctx), 1);
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(rest, X509_free);
    X509_free(leaf);
    X509_free(r);
    BIO_free(b);
    X509_STORE_free(store);
    ptc_buf_free(&root);
}

static int leaf_key_type(const ptc_cert *c)
{
    BIO *b = BIO_new_mem_buf(c->cert_pem, -1);
    X509 *leaf = PEM_read_bio_X509(b, NULL, NULL, NULL);
    int t = leaf ? EVP_PKEY_get_base_id(X509_get0_pubkey(leaf)) : -1;
    X509_free(leaf);
    BIO_free(b);
    return t;
}

static char *account_pem;
static responder resp;

static ptc_acme_params params(const char *key_type)
{
    return (ptc_acme_params){
        .directory_url = directory_url,
        .ca_bundle = ca_file,
        .email = "ops@example.com",
        .account_key_pem = account_pem,
        .key_type = key_type,
        .timeout_ms = 60000,
    };
}

static void test_issue_ecdsa(void)
{
    ptc_acme_params p = params("ecdsa");
    ptc_acme_responder r = {r_set, r_clear, &resp};
    ptc_acme_failure f;
    ptc_cert *c = NULL;
    int rc = ptc_acme_issue(&p, "ecdsa.example.com", &r, &c, &f);
    CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "issuance failed at %s: %s\n", f.stage, f.message);
    CHECK(c != NULL);
    if (c) {
        CHECK_STR(c->source, "acme");
        CHECK_STR(c->domain, "ecdsa.example.com");
        CHECK(c->n_sans == 1 && strcmp(c->sans[0], "ecdsa.example.com") == 0);
        CHECK(strstr(c->issuer, "Pebble") != NULL);
        CHECK(c->not_after > ptc_now_ms());
        CHECK_INT(leaf_key_type(c), EVP_PKEY_EC);
        check_chain(c, "ecdsa.example.com");
    }
    CHECK_INT(live_tokens(&resp), 0);
    ptc_cert_release(c);
    ptc_acme_failure_clear(&f);
}

static void test_issue_rsa_same_account(void)
{
    ptc_acme_params p = params("rsa");
    ptc_acme_responder r = {r_set, r_clear, &resp};
    ptc_acme_failure f;
    ptc_cert *c = NULL;
    /* The same account key again (newAccount answers with the existing
     * account), a new domain, an RSA key. */
    CHECK_INT(ptc_acme_issue(&p, "rsa.example.com", &r, &c, &f), 0);
    if (c) {
        CHECK_INT(leaf_key_type(c), EVP_PKEY_RSA);
        check_chain(c, "rsa.example.com");
    }
    /* Once more for the first domain: Pebble may reuse the valid
     * authorization (no challenge then) or not; both must work. */
    ptc_cert *again = NULL;
    p.key_type = "ecdsa";
    CHECK_INT(ptc_acme_issue(&p, "ecdsa.example.com", &r, &again, &f), 0);
    CHECK(again != NULL && c != NULL && strcmp(again->fingerprint, c->fingerprint) != 0);
    CHECK_INT(live_tokens(&resp), 0);
    ptc_cert_release(again);
    ptc_cert_release(c);
    ptc_acme_failure_clear(&f);
}

static void test_wrong_answer(void)
{
    ptc_acme_params p = params("ecdsa");
    ptc_acme_responder r = {r_set, r_clear, &resp};
    ptc_acme_failure f;
    ptc_cert *c = NULL;
    resp.corrupt = true;
    int sets = resp.sets, clears = resp.clears;
    CHECK_INT(ptc_acme_issue(&p, "wrong.example.com", &r, &c, &f), -EPROTO);
    resp.corrupt = false;
    CHECK(c == NULL);
    CHECK_STR(f.stage, "challenge");
    json_t *problem = json_object_get(f.details, "problem");
    CHECK_STR(json_string_value(json_object_get(problem, "type")), "urn:ietf:params:acme:error:unauthorized");
    CHECK(json_string_value(json_object_get(problem, "detail")) != NULL);
    CHECK(strstr(f.message, "wrong.example.com") != NULL);
    /* What was set was cleared. */
    CHECK_INT(resp.sets - sets, 1);
    CHECK_INT(resp.clears - clears, 1);
    CHECK_INT(live_tokens(&resp), 0);
    ptc_acme_failure_clear(&f);
}

static void test_engine_cannot_serve(void)
{
    ptc_acme_params p = params("ecdsa");
    ptc_acme_responder r = {r_set, r_clear, &resp};
    ptc_acme_failure f;
    ptc_cert *c = NULL;
    resp.set_error = -EIO;
    CHECK_INT(ptc_acme_issue(&p, "noserve.example.com", &r, &c, &f), -EIO);
    resp.set_error = 0;
    CHECK_STR(f.stage, "challenge");
    CHECK(strstr(f.message, "cannot serve") != NULL);
    CHECK_INT(live_tokens(&resp), 0);
    ptc_acme_failure_clear(&f);
}

static void test_cancel_and_bad_key(void)
{
    ptc_acme_params p = params("ecdsa");
    ptc_acme_responder r = {r_set, r_clear, &resp};
    ptc_acme_failure f;
    ptc_cert *c = NULL;
    atomic_bool cancel = true;
    p.cancel = &cancel;
    CHECK_INT(ptc_acme_issue(&p, "cancel.example.com", &r, &c, &f), -ECANCELED);
    ptc_acme_failure_clear(&f);
    p.cancel = NULL;
    p.account_key_pem = "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n";
    CHECK_INT(ptc_acme_issue(&p, "badkey.example.com", &r, &c, &f), -EINVAL);
    CHECK_STR(f.stage, "account");
    ptc_acme_failure_clear(&f);
}

static void test_certbot(void)
{
    char *sub = ptc_path_join(dir, "certbot"), *webroot = ptc_xstrdup(resp.webroot);
    char *config = ptc_path_join(sub, "config"), *work = ptc_path_join(sub, "work"),
         *logs = ptc_path_join(sub, "logs");
    ptc_certbot_params p = {
        .bin = "certbot",
        .directory_url = directory_url,
        .ca_bundle = ca_file,
        .email = "ops@example.com",
        .webroot = webroot,
        .config_dir = config,
        .work_dir = work,
        .logs_dir = logs,
        .key_type = "ecdsa",
        .timeout_ms = 120000,
    };
    char **argv = ptc_certbot_argv(&p, "certbot.example.com");
    char *cmd = ptc_argv_join((const char *const *)argv);
    CHECK(strstr(cmd, "certbot certonly --webroot -w ") == cmd);
    CHECK(
        strstr(cmd,
               " -d certbot.example.com --cert-name certbot.example.com --email ops@example.com --agree-tos "
               "--non-interactive --server https://127.0.0.1:") != NULL);
    CHECK(strstr(cmd, "--key-type ecdsa --elliptic-curve secp256r1") != NULL);
    CHECK(strstr(cmd, "--force-renewal") == NULL);
    free(cmd);
    ptc_argv_free(argv);

    ptc_acme_failure f;
    ptc_cert *c = NULL;
    int rc = ptc_certbot_issue(&p, "certbot.example.com", &c, &f);
    CHECK_INT(rc, 0);
    if (rc != 0)
        fprintf(stderr, "certbot failed: %s\n%s\n", f.message,
                json_string_value(json_object_get(f.details, "output")));
    if (c) {
        CHECK_STR(c->source, "certbot");
        check_chain(c, "certbot.example.com");
    }
    ptc_acme_failure_clear(&f);

    /* Again with --force-renewal and RSA: a new certificate. */
    p.force_renewal = true;
    p.key_type = "rsa";
    ptc_cert *again = NULL;
    CHECK_INT(ptc_certbot_issue(&p, "certbot.example.com", &again, &f), 0);
    CHECK(again && c && strcmp(again->fingerprint, c->fingerprint) != 0);
    if (again)
        CHECK_INT(leaf_key_type(again), EVP_PKEY_RSA);
    ptc_acme_failure_clear(&f);

    /* The challenge not served (the responder looks in another folder):
     * certbot's exit status and output come back. */
    char saved[sizeof(resp.webroot)];
    memcpy(saved, resp.webroot, sizeof(saved));
    pthread_mutex_lock(&resp.lock);
    snprintf(resp.webroot, sizeof(resp.webroot), "%s/elsewhere", dir);
    pthread_mutex_unlock(&resp.lock);
    ptc_cert *refused = NULL;
    CHECK(ptc_certbot_issue(&p, "unserved.example.com", &refused, &f) != 0);
    pthread_mutex_lock(&resp.lock);
    memcpy(resp.webroot, saved, sizeof(saved));
    pthread_mutex_unlock(&resp.lock);
    CHECK(refused == NULL);
    ptc_cert_release(refused);
    CHECK_STR(f.stage, "certbot");
    CHECK(json_integer_value(json_object_get(f.details, "exit_code")) != 0);
    /* certbot's output carries the CA's verdict. */
    const char *output = json_string_value(json_object_get(f.details, "output"));
    CHECK(output && strstr(output, "unauthorized") != NULL && strstr(output, "unserved.example.com") != NULL);
    ptc_acme_failure_clear(&f);
    ptc_cert_release(again);
    ptc_cert_release(c);
    free(config);
    free(work);
    free(logs);
    free(sub);
    free(webroot);
}

static void test_ca_gone(void)
{
    ptc_acme_params p = params("ecdsa");
    ptc_acme_responder r = {r_set, r_clear, &resp};
    ptc_acme_failure f;
    ptc_cert *c = NULL;
    stop_child(&pebble_pid);
    CHECK_INT(ptc_acme_issue(&p, "gone.example.com", &r, &c, &f), -EIO);
    CHECK_STR(f.stage, "directory");
    CHECK(strstr(f.message, "cannot reach the CA") != NULL);
    CHECK_STR(json_string_value(json_object_get(f.details, "url")), directory_url);
    ptc_acme_failure_clear(&f);
}

int main(void)
{
    /* As in portico serve: a peer that hangs up is EPIPE, not a signal. */
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(dir, sizeof(dir), "/tmp/portico-pebble-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    responder_start(&resp);
    snprintf(resp.webroot, sizeof(resp.webroot), "%s/webroot", dir);
    bool up = start_pebble(resp.port, "30");
    CHECK(up);
    EVP_PKEY *k = ptc_jose_key_generate();
    account_pem = ptc_jose_key_to_pem(k);
    EVP_PKEY_free(k);
    if (up) {
        RUN(test_issue_ecdsa);
        RUN(test_issue_rsa_same_account);
        RUN(test_wrong_answer);
        RUN(test_engine_cannot_serve);
        RUN(test_cancel_and_bad_key);
    }
    stop_child(&pebble_pid);
    stop_child(&challtest_pid);
    if (up && (up = start_pebble(resp.port, NULL))) {
        RUN(test_certbot);
        RUN(test_ca_gone);
    }
    CHECK(up);
    stop_child(&pebble_pid);
    stop_child(&challtest_pid);
    responder_stop(&resp);
    free(account_pem);
    if (t_failures == 0) {
        const char *rm[] = {"rm", "-rf", dir, NULL};
        ptc_proc_result res;
        ptc_proc_run(rm, NULL, 10000, 1024, &res);
        ptc_proc_result_free(&res);
    } else {
        fprintf(stderr, "pebble logs kept in %s\n", dir);
    }
    curl_global_cleanup();
    TEST_EXIT();
}
