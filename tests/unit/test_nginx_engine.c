/* The nginx engine with a real nginx: a managed nginx on free loopback
 * ports, states applied through the engine's ops, upstreams served by
 * threads of this test.  Covers routing (prefixes, stripping, wildcard,
 * weights, TLS with the 301), a state nginx rejects and a failing reload
 * (rollback byte for byte, old routes still served), no reload when
 * nothing rendered changes, backups and their pruning by age, ACME
 * challenges, deletion, the supervisor restarting a killed master,
 * start-up reconciliation (edited, deleted and stale files; adopting a
 * running master; leaving out a domain nginx rejects), and driving an
 * nginx portico did not start. */
#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/settings.h"
#include "core/util.h"
#include "engine/engine.h"
#include "engine/nginx_render.h"
#include "engine/verify.h"
#include "model/state.h"
#include "nginx_fixtures.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[64];
static char log_path[128];
static unsigned http_port, https_port;

/* ---- a tiny upstream ------------------------------------------------------ */

typedef struct upstream {
    int fd;
    unsigned port;
    char name[8];
    pthread_t thread;
    atomic_bool stop;
} upstream;

/* Answers each request with "<name> <request target>\n" and closes. */
static void *serve(void *arg)
{
    upstream *u = arg;
    while (!atomic_load(&u->stop)) {
        struct pollfd p = {.fd = u->fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        int c = accept(u->fd, NULL, NULL);
        if (c < 0)
            continue;
        struct timeval tv = {2, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char req[8192];
        size_t len = 0;
        while (len < sizeof(req) - 1) {
            ssize_t r = read(c, req + len, sizeof(req) - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            req[len] = '\0';
            if (strstr(req, "\r\n\r\n"))
                break;
        }
        req[len] = '\0';
        char target[4096] = "?";
        sscanf(req, "%*s %4095s", target);
        char body[4200], resp[4400];
        int n = snprintf(body, sizeof(body), "%s %s\n", u->name, target);
        int m = snprintf(resp, sizeof(resp),
                         "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                         "Connection: close\r\n\r\n%s",
                         n, body);
        ssize_t w = write(c, resp, (size_t)m);
        (void)w;
        close(c);
    }
    return NULL;
}

static int listen_loopback(unsigned *port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) != 0) {
        close(fd);
        return -1;
    }
    *port = ntohs(a.sin_port);
    return fd;
}

static void upstream_start(upstream *u, const char *name)
{
    snprintf(u->name, sizeof(u->name), "%s", name);
    atomic_init(&u->stop, false);
    u->fd = listen_loopback(&u->port);
    pthread_create(&u->thread, NULL, serve, u);
}

static void upstream_stop(upstream *u)
{
    atomic_store(&u->stop, true);
    pthread_join(u->thread, NULL);
    close(u->fd);
}

/* ---- a tiny client -------------------------------------------------------- */

typedef struct response {
    int status;
    char head[4096];
    char body[4096];
} response;

static void http_get(const char *host, const char *target, response *out)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)http_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {5, 0};
    char buf[8192], req[1024];
    size_t len = 0;

    memset(out, 0, sizeof(*out));
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return;
    }
    int n =
        snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, host);
    if (write(fd, req, (size_t)n) != n) {
        close(fd);
        return;
    }
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        if (len == sizeof(buf) - 1)
            break;
    }
    close(fd);
    buf[len] = '\0';
    sscanf(buf, "HTTP/1.%*d %d", &out->status);
    char *sep = strstr(buf, "\r\n\r\n");
    if (sep) {
        snprintf(out->head, sizeof(out->head), "%.*s", (int)(sep - buf), buf);
        snprintf(out->body, sizeof(out->body), "%s", sep + 4);
    }
}

/* The body of GET host target, or "" when the status is not 200. */
static const char *body_of(const char *host, const char *target, response *r)
{
    http_get(host, target, r);
    return r->status == 200 ? r->body : "";
}

/* ---- files ---------------------------------------------------------------- */

static char *at(const char *rel)
{
    return ptc_path_join(root, rel);
}

static char *site(const char *domain)
{
    char *file = ptc_nginx_file_name("portico-", domain);
    char *p = ptc_xasprintf("%s/state/nginx/sites-available/%s", root, file);
    free(file);
    return p;
}

static char *link_of(const char *domain)
{
    char *file = ptc_nginx_file_name("portico-", domain);
    char *p = ptc_xasprintf("%s/state/nginx/sites-enabled/%s", root, file);
    free(file);
    return p;
}

static char *read_all(const char *path)
{
    char *text = NULL;
    if (ptc_file_read(path, 1 << 22, &text, NULL) != 0)
        return NULL;
    return text;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every entry of the two site folders and the certificate folder: name,
 * then the bytes or the link target. */
static void snapshot_dir(ptc_buf *b, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    char *names[512];
    size_t n = 0;
    if (d == NULL)
        return;
    while ((ent = readdir(d)) != NULL && n < 512)
        if (ent->d_name[0] != '.')
            names[n++] = ptc_xstrdup(ent->d_name);
    closedir(d);
    qsort(names, n, sizeof(char *), cmp_names);
    for (size_t i = 0; i < n; i++) {
        char *p = ptc_path_join(dir, names[i]), target[1024];
        struct stat st;
        lstat(p, &st);
        ptc_buf_appendf(b, "== %s %o\n", p, st.st_mode);
        ssize_t k = readlink(p, target, sizeof(target) - 1);
        if (k >= 0) {
            target[k] = '\0';
            ptc_buf_appendf(b, "-> %s\n", target);
        } else if (S_ISDIR(st.st_mode)) {
            snapshot_dir(b, p);
        } else {
            char *text = read_all(p);
            ptc_buf_append_str(b, text ? text : "(unreadable)");
            free(text);
        }
        free(p);
        free(names[i]);
    }
}

static char *snapshot(void)
{
    ptc_buf b = PTC_BUF_INIT;
    char *a = at("state/nginx/sites-available"), *e = at("state/nginx/sites-enabled"), *c = at("state/certs");
    snapshot_dir(&b, a);
    snapshot_dir(&b, e);
    snapshot_dir(&b, c);
    free(a);
    free(e);
    free(c);
    return ptc_buf_detach(&b);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* ---- a self-signed certificate -------------------------------------------- */

static void make_cert(const char *cn, char **cert_pem, char **key_pem)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    BIO *b = BIO_new(BIO_s_mem());
    char *data;
    long n;

    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    char san[300];
    snprintf(san, sizeof(san), "DNS:%s", cn);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    X509_sign(x, key, EVP_sha256());
    PEM_write_bio_X509(b, x);
    n = BIO_get_mem_data(b, &data);
    *cert_pem = ptc_xstrndup(data, (size_t)n);
    BIO_reset(b);
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &data);
    *key_pem = ptc_xstrndup(data, (size_t)n);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(key);
}

/* ---- the engine ----------------------------------------------------------- */

static ptc_settings *settings;
static ptc_engine *engine;
static upstream u1, u2;

static ptc_settings *make_settings(void)
{
    ptc_settings *s = ptc_settings_new();
    char err[256];
    char *flags[] = {
        ptc_xasprintf("--state_dir=%s/state", root),
        ptc_xstrdup("--engine=nginx"),
        ptc_xstrdup("--nginx_managed=true"),
        ptc_xasprintf("--http_listen=127.0.0.1:%u", http_port),
        ptc_xasprintf("--https_listen=127.0.0.1:%u", https_port),
        ptc_xstrdup("--workers=1"),
        ptc_xstrdup("--drain_timeout_ms=2000"),
        ptc_xstrdup("--backup_retention_days=7"),
    };
    char *envp[] = {NULL};
    int rc = ptc_settings_load(s, (int)PTC_ARRAY_LEN(flags), flags, envp, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "settings: %s\n", err);
    CHECK_INT(rc, 0);
    for (size_t i = 0; i < PTC_ARRAY_LEN(flags); i++)
        free(flags[i]);
    return s;
}

/* A new state holding a reference to each proxy and certificate given. */
static ptc_state *state_of(const ptc_proxy *const *proxies, size_t n, const ptc_cert *const *certs, size_t nc)
{
    ptc_proxy **p = ptc_xcalloc(n + 1, sizeof(ptc_proxy *));
    ptc_cert **c = ptc_xcalloc(nc + 1, sizeof(ptc_cert *));
    for (size_t i = 0; i < n; i++)
        p[i] = ptc_proxy_retain(proxies[i]);
    for (size_t i = 0; i < nc; i++)
        c[i] = ptc_cert_retain(certs[i]);
    ptc_state *s = ptc_state_from(p, n, c, nc);
    free(p);
    free(c);
    return s;
}

static void clear_result(ptc_apply_result *res)
{
    json_decref(res->details);
    json_decref(res->report);
    res->details = res->report = NULL;
}

/* Applies old -> next, verifying (domain, path) when domain is set. */
static void apply(const ptc_state *old, const ptc_state *next, const char *domain, const char *path,
                  bool gone, ptc_apply_result *res)
{
    ptc_apply_request req = {old, next, domain, path, gone};
    engine->ops->apply(engine, &req, res);
    if (res->code)
        fprintf(stderr, "apply: %s: %s\n", res->code, res->message);
}

static json_t *status(ptc_health_level *level)
{
    return engine->ops->status(engine, level);
}

static pid_t master_pid(void)
{
    ptc_health_level level;
    json_t *j = status(&level);
    pid_t pid = (pid_t)json_integer_value(json_object_get(j, "master_pid"));
    json_decref(j);
    return pid;
}

static bool log_has(const char *a, const char *b)
{
    char *text = read_all(log_path);
    bool found = false;
    for (char *line = text; line && *line && !found;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        found = strstr(line, a) && strstr(line, b);
        line = nl ? nl + 1 : NULL;
    }
    free(text);
    return found;
}

static bool alive(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    char *text = read_all(path);
    bool up = text && !strstr(strrchr(text, ')'), ") Z");
    free(text);
    return up;
}

/* ---- the scenario ----------------------------------------------------------- */

static ptc_proxy *web, *api, *v2, *wild, *multi, *tls;
static ptc_cert *tls_cert;

static void test_start_empty(void)
{
    char err[512] = "";
    ptc_state *s0 = ptc_state_new();
    response r;
    engine = ptc_engine_nginx_create(settings, err, sizeof(err));
    CHECK(engine != NULL);
    if (engine == NULL) {
        fprintf(stderr, "create: %s\n", err);
        exit(1);
    }
    int rc = engine->ops->start(engine, s0, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "start: %s\n", err);
    CHECK_INT(rc, 0);
    http_get("unknown.test", "/", &r);
    CHECK_INT(r.status, 404);
    CHECK(strstr(r.body, "\"code\":\"ROUTE_NOT_FOUND\"") != NULL);
    CHECK(strstr(r.head, "Content-Type: application/json") != NULL);
    ptc_health_level level;
    json_t *j = status(&level);
    CHECK_INT(level, PTC_HEALTHY);
    CHECK(json_is_true(json_object_get(j, "present")));
    CHECK(json_is_true(json_object_get(j, "managed")));
    CHECK(json_is_true(json_object_get(j, "config_test_ok")));
    CHECK(json_integer_value(json_object_get(j, "master_pid")) > 0);
    CHECK(json_string_value(json_object_get(j, "version")) != NULL);
    json_decref(j);
    ptc_state_release(s0);
}

static ptc_state *s1, *s2, *s3, *s5, *s6, *s7;

static void test_first_route(void)
{
    ptc_state *s0 = ptc_state_new();
    ptc_apply_result res;
    response r;
    web = fx_proxy("web", "web.test", "/", "127.0.0.1", u1.port);
    s1 = state_of((const ptc_proxy *const[]){web}, 1, NULL, 0);
    apply(s0, s1, "web.test", "/", false, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_true(json_object_get(res.report, "reloaded")));
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    CHECK_STR(json_string_value(json_object_get(res.report, "engine")), "nginx");
    CHECK_INT(json_array_size(json_object_get(res.report, "backups")), 0);
    clear_result(&res);
    CHECK_STR(body_of("web.test", "/", &r), "u1 /\n");
    CHECK_STR(body_of("WEB.test", "/x?y=1", &r), "u1 /x?y=1\n");
    char *path = site("web.test"), *link = link_of("web.test"), target[512];
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    CHECK(n > 0);
    if (n > 0) {
        target[n] = '\0';
        CHECK_STR(target, path);
    }
    free(path);
    free(link);
    ptc_state_release(s0);
}

/* Prefixes with and without stripping, a wildcard domain, weights and an
 * IPv6 upstream; the replaced file is backed up. */
static void test_routes(void)
{
    ptc_apply_result res;
    response r;
    api = fx_proxy("api", "web.test", "/api", "127.0.0.1", u2.port);
    api->strip_prefix = true;
    v2 = fx_proxy("v2", "web.test", "/api/v2", "127.0.0.1", u2.port);
    wild = fx_proxy("wild", "*.wild.test", "/", "127.0.0.1", u1.port);
    wild->websocket = false;
    wild->security_headers = false;
    multi = fx_proxy("multi", "multi.test", "/", "127.0.0.1", u1.port);
    fx_add_upstream(multi, "127.0.0.1", u2.port, 3);
    fx_add_upstream(multi, "::1", u1.port, 1);
    s2 = state_of((const ptc_proxy *const[]){web, api, v2, wild, multi}, 5, NULL, 0);
    apply(s1, s2, "web.test", "/api/x", false, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    json_t *backups = json_object_get(res.report, "backups");
    CHECK_INT(json_array_size(backups), 1);
    if (json_array_size(backups) == 1) {
        char *old = read_all(json_string_value(json_array_get(backups, 0)));
        CHECK(old && strstr(old, "portico_web") && !strstr(old, "portico_api"));
        free(old);
    }
    clear_result(&res);
    CHECK_STR(body_of("web.test", "/api/x", &r), "u2 /x\n");
    CHECK_STR(body_of("web.test", "/api", &r), "u2 /\n");
    CHECK_STR(body_of("web.test", "/api?q=1", &r), "u2 /?q=1\n");
    CHECK_STR(body_of("web.test", "/api/v2/y", &r), "u2 /api/v2/y\n");
    CHECK_STR(body_of("web.test", "/api/v2", &r), "u2 /api/v2\n");
    CHECK_STR(body_of("web.test", "/apix", &r), "u1 /apix\n");
    CHECK_STR(body_of("a.wild.test", "/w", &r), "u1 /w\n");
    CHECK(strstr(r.head, "X-Frame-Options") == NULL);
    http_get("web.test", "/", &r);
    CHECK(strstr(r.head, "X-Frame-Options: SAMEORIGIN") != NULL);
    http_get("multi.test", "/", &r);
    CHECK_INT(r.status, 200);
    /* The wildcard is one level deep, like nginx's and the builtin's. */
    http_get("wild.test", "/", &r);
    CHECK_INT(r.status, 404);
}

/* A change nginx does not render (a health-check interval) writes nothing
 * and does not reload. */
static void test_no_op(void)
{
    ptc_apply_result res;
    pid_t before = master_pid();
    ptc_proxy *web2 = ptc_proxy_clone(web);
    web2->health_check.interval_ms = 9999;
    s3 = ptc_state_put_proxy(s2, web2);
    apply(s2, s3, "web.test", "/", false, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_false(json_object_get(res.report, "reloaded")));
    CHECK_INT(json_array_size(json_object_get(res.report, "files")), 0);
    CHECK_INT(json_array_size(json_object_get(res.report, "backups")), 0);
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    CHECK_INT(master_pid(), before);
    clear_result(&res);
}

/* A state nginx rejects (an upstream that does not resolve), together with
 * a valid change: every file is restored and the old route still serves. */
static void test_nginx_rejects(void)
{
    ptc_apply_result res;
    response r;
    char *before = snapshot();
    ptc_proxy *bad = fx_proxy("bad", "bad.test", "/", "nonexistent.invalid", 80);
    ptc_proxy *web3 = ptc_proxy_clone(ptc_state_proxy(s3, "web"));
    web3->upstreams[0].port = u2.port;
    ptc_state *tmp = ptc_state_put_proxy(s3, bad);
    ptc_state *s4 = ptc_state_put_proxy(tmp, web3);
    apply(s3, s4, "web.test", "/", false, &res);
    CHECK_STR(res.code, "NGINX_TEST_FAILED");
    const char *out = json_string_value(json_object_get(res.details, "nginx_output"));
    CHECK(out && strstr(out, "host not found in upstream") && strstr(out, "nonexistent.invalid"));
    CHECK(json_is_false(json_object_get(res.report, "reloaded")));
    clear_result(&res);
    char *after = snapshot();
    CHECK_STR(after, before);
    CHECK_STR(body_of("web.test", "/", &r), "u1 /\n");
    http_get("bad.test", "/", &r);
    CHECK_INT(r.status, 404);
    ptc_health_level level;
    json_t *j = status(&level);
    CHECK_INT(level, PTC_DEGRADED);
    CHECK(json_is_false(json_object_get(j, "config_test_ok")));
    json_decref(j);
    free(before);
    free(after);
    ptc_state_release(tmp);
    ptc_state_release(s4);
}

/* A reload command that fails: rollback, and the old route still serves. */
static void test_reload_fails(void)
{
    ptc_apply_result res;
    response r;
    char err[256];
    char *before = snapshot();
    ptc_proxy *web3 = ptc_proxy_clone(ptc_state_proxy(s3, "web"));
    web3->upstreams[0].port = u2.port;
    s5 = ptc_state_put_proxy(s3, web3);
    CHECK_INT(ptc_settings_set(settings, "nginx_reload_cmd", "/bin/false", PTC_SRC_FLAG, err, sizeof(err)),
              0);
    apply(s3, s5, "web.test", "/", false, &res);
    CHECK_STR(res.code, "NGINX_RELOAD_FAILED");
    CHECK(
        strstr(json_string_value(json_object_get(res.details, "nginx_output")), "/bin/false exited with 1"));
    CHECK(json_string_value(json_object_get(res.details, "rollback_reload")) != NULL);
    CHECK(strcmp(json_string_value(json_object_get(res.details, "rollback_reload")), "ok") != 0);
    clear_result(&res);
    char *after = snapshot();
    CHECK_STR(after, before);
    CHECK_STR(body_of("web.test", "/", &r), "u1 /\n");
    CHECK_INT(ptc_settings_set(settings, "nginx_reload_cmd", "{nginx_bin} -s reload", PTC_SRC_FLAG, err,
                               sizeof(err)),
              0);
    free(before);
    free(after);
}

/* Backups older than backup_retention_days go at the next change. */
static void test_backup_pruning(void)
{
    ptc_apply_result res;
    response r;
    char *dir = at("state/nginx/backups");
    DIR *d = opendir(dir);
    struct dirent *ent;
    size_t old = 0;
    int64_t now = ptc_now_ms();
    struct timespec month_ago[2] = {{(time_t)(now / 1000 - 30 * 86400), 0},
                                    {(time_t)(now / 1000 - 30 * 86400), 0}};
    while (d && (ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        char *p = ptc_path_join(dir, ent->d_name);
        CHECK_INT(utimensat(AT_FDCWD, p, month_ago, 0), 0);
        old++;
        free(p);
    }
    if (d)
        closedir(d);
    CHECK(old >= 2); /* the change of test_routes and the rolled back ones */
    apply(s3, s5, "web.test", "/", false, &res);
    CHECK(res.code == NULL);
    CHECK_STR(body_of("web.test", "/", &r), "u2 /\n");
    json_t *backups = json_object_get(res.report, "backups");
    CHECK_INT(json_array_size(backups), 1);
    size_t left = 0;
    d = opendir(dir);
    while (d && (ent = readdir(d)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        char *p = ptc_path_join(dir, ent->d_name);
        CHECK_STR(p, json_string_value(json_array_get(backups, 0)));
        left++;
        free(p);
    }
    if (d)
        closedir(d);
    CHECK_INT(left, 1);
    clear_result(&res);
    free(dir);
}

/* enable_ssl with a certificate: HTTPS, 301 from HTTP, a 0600 key. */
static void test_tls(void)
{
    ptc_apply_result res;
    response r;
    char *cert_pem, *key_pem;
    make_cert("tls.test", &cert_pem, &key_pem);
    tls = fx_proxy("tls", "tls.test", "/", "127.0.0.1", u1.port);
    tls->enable_ssl = true;
    tls_cert = fx_cert("tls.test", cert_pem, key_pem);
    ptc_state *tmp = ptc_state_put_proxy(s5, ptc_proxy_retain(tls));
    s6 = ptc_state_put_cert(tmp, ptc_cert_retain(tls_cert));
    ptc_state_release(tmp);
    apply(s5, s6, "tls.test", "/", false, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    clear_result(&res);

    char *key = at("state/certs/tls.test/privkey.pem"), *chain = at("state/certs/tls.test/fullchain.pem");
    struct stat st;
    CHECK_INT(stat(key, &st), 0);
    CHECK_INT(st.st_mode & 07777, 0600);
    char *text = read_all(chain);
    CHECK_STR(text, cert_pem);
    free(text);

    http_get("tls.test", "/x?y=1", &r);
    CHECK_INT(r.status, 301);
    char want[128];
    snprintf(want, sizeof(want), "Location: https://tls.test:%u/x?y=1", https_port);
    CHECK(strstr(r.head, want) != NULL);
    /* ACME's HTTP-01 path is not redirected. */
    http_get("tls.test", "/.well-known/acme-challenge/none", &r);
    CHECK_INT(r.status, 404);

    char listen[64];
    ptc_verify_result v;
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", https_port);
    ptc_verify_route(listen, true, "tls.test", "/", false, 5000, &v);
    CHECK(v.ok);
    CHECK_INT(v.status, 200);
    /* An unknown name gets no handshake. */
    ptc_verify_route(listen, true, "unknown.test", "/", false, 5000, &v);
    CHECK(!v.ok);
    CHECK_INT(v.status, 0);
    free(key);
    free(chain);
    free(cert_pem);
    free(key_pem);
}

static void test_challenges(void)
{
    response r;
    CHECK_INT(engine->ops->set_challenge(engine, "Tok_en-1", "Tok_en-1.thumb_print-x"), 0);
    CHECK_STR(body_of("unknown.test", "/.well-known/acme-challenge/Tok_en-1", &r), "Tok_en-1.thumb_print-x");
    CHECK(strstr(r.head, "Content-Type: text/plain") != NULL);
    CHECK_STR(body_of("web.test", "/.well-known/acme-challenge/Tok_en-1", &r), "Tok_en-1.thumb_print-x");
    char *path = at("state/acme-webroot/.well-known/acme-challenge/Tok_en-1");
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0644);
    engine->ops->clear_challenge(engine, "Tok_en-1");
    http_get("unknown.test", "/.well-known/acme-challenge/Tok_en-1", &r);
    CHECK_INT(r.status, 404);
    CHECK_INT(engine->ops->set_challenge(engine, "../escape", "x"), -EINVAL);
    CHECK_INT(engine->ops->set_challenge(engine, "tok", "a b"), -EINVAL);
    CHECK_INT(engine->ops->set_challenge(engine, "", "x"), -EINVAL);
    free(path);
}

/* Deleting proxies: a domain's file goes with its last proxy. */
static void test_delete(void)
{
    ptc_apply_result res;
    response r;
    ptc_state *a = ptc_state_delete_proxy(s6, "api");
    ptc_state *b = ptc_state_delete_proxy(a, "v2");
    s7 = ptc_state_delete_proxy(b, "wild");
    ptc_state_release(a);
    ptc_state_release(b);
    apply(s6, s7, "a.wild.test", "/", true, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    clear_result(&res);
    char *path = site("*.wild.test"), *link = link_of("*.wild.test");
    CHECK(access(path, F_OK) != 0);
    CHECK(access(link, F_OK) != 0 && errno == ENOENT);
    free(path);
    free(link);
    CHECK_STR(body_of("web.test", "/api/x", &r), "u2 /api/x\n");
    http_get("a.wild.test", "/", &r);
    CHECK_INT(r.status, 404);
}

/* The supervisor restarts a master that dies. */
static void test_supervisor(void)
{
    response r;
    pid_t pid = master_pid();
    CHECK(pid > 0);
    kill(pid, SIGKILL);
    int64_t deadline = ptc_mono_ms() + 20000;
    pid_t now = 0;
    while (ptc_mono_ms() < deadline) {
        now = master_pid();
        if (now > 0 && now != pid && strcmp(body_of("web.test", "/", &r), "u2 /\n") == 0)
            break;
        usleep(50000);
    }
    CHECK(now > 0 && now != pid);
    CHECK_STR(body_of("web.test", "/", &r), "u2 /\n");
    ptc_health_level level;
    json_t *j = status(&level);
    CHECK_INT(json_integer_value(json_object_get(j, "restarts")), 1);
    json_decref(j);
    ptc_buf m = PTC_BUF_INIT;
    engine->ops->metrics(engine, &m);
    CHECK(strstr(ptc_buf_cstr(&m), "\nportico_nginx_restarts_total 1\n") != NULL);
    CHECK(strstr(ptc_buf_cstr(&m), "\nportico_nginx_up 1\n") != NULL);
    CHECK(strstr(ptc_buf_cstr(&m), "\nportico_nginx_tests_total{result=\"failed\"} 1\n") != NULL);
    CHECK(strstr(ptc_buf_cstr(&m), "\nportico_nginx_reloads_total{result=\"failed\"} 2\n") != NULL);
    ptc_buf_free(&m);
}

/* Start-up reconciliation: a master left running is adopted; edited,
 * deleted and stale files are repaired from the store. */
static void test_reconcile(void)
{
    char err[512] = "";
    response r;
    pid_t old_master = master_pid();
    engine->ops->destroy(engine);
    engine = NULL;
    CHECK(!alive(old_master));

    /* A master of ours that outlived portico (as after kill -9). */
    char *prefix = at("state/nginx"), *elog = at("state/nginx/logs/error.log"),
         *conf = at("state/nginx/nginx.conf");
    char *pidf = at("state/nginx/nginx.pid");
    const char *argv[] = {ptc_settings_get(settings, PTC_SET_NGINX_BIN),
                          "-p",
                          prefix,
                          "-e",
                          elog,
                          "-c",
                          conf,
                          "-g",
                          "daemon off;",
                          NULL};
    pid_t orphan;
    CHECK_INT(ptc_proc_spawn(argv, NULL, -1, &orphan), 0);
    int64_t deadline = ptc_mono_ms() + 10000;
    while (ptc_mono_ms() < deadline && strcmp(body_of("web.test", "/", &r), "u2 /\n") != 0)
        usleep(20000);
    CHECK_STR(body_of("web.test", "/", &r), "u2 /\n");

    /* Drift by hand. */
    char *web_path = site("web.test"), *tls_path = site("tls.test");
    char *web_bytes = read_all(web_path), *tls_bytes = read_all(tls_path);
    char *edited = ptc_xasprintf("%s# a hand edit\n", web_bytes);
    CHECK_INT(ptc_file_write_atomic(web_path, edited, strlen(edited), 0644), 0);
    CHECK_INT(unlink(tls_path), 0);
    char *stale = at("state/nginx/sites-available/portico-stale.test.conf");
    char *stale_link = at("state/nginx/sites-enabled/portico-stale.test.conf");
    char *dangling = at("state/nginx/sites-enabled/portico-dangling.test.conf");
    char *foreign = at("state/nginx/sites-available/someone-else.conf");
    CHECK_INT(ptc_file_write_atomic(stale, "# stale\n", 8, 0644), 0);
    CHECK_INT(symlink(stale, stale_link), 0);
    CHECK_INT(symlink("/nonexistent/portico-x.conf", dangling), 0);
    CHECK_INT(ptc_file_write_atomic(foreign, "# not ours\n", 11, 0644), 0);

    engine = ptc_engine_nginx_create(settings, err, sizeof(err));
    CHECK(engine != NULL);
    int rc = engine->ops->start(engine, s7, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "start: %s\n", err);
    CHECK_INT(rc, 0);
    CHECK_INT(master_pid(), orphan);

    char *now_web = read_all(web_path), *now_tls = read_all(tls_path);
    CHECK_STR(now_web, web_bytes);
    CHECK_STR(now_tls, tls_bytes);
    CHECK(access(stale, F_OK) != 0);
    CHECK(access(stale_link, F_OK) != 0 && errno == ENOENT);
    struct stat st;
    CHECK(lstat(dangling, &st) != 0);
    CHECK(access(foreign, F_OK) == 0);
    CHECK(log_has("\"repaired nginx file\"", "\"reason\":\"edited\""));
    CHECK(log_has("\"repaired nginx file\"", "\"reason\":\"deleted\""));
    CHECK(log_has("\"repaired nginx file\"", "\"reason\":\"stale\""));
    CHECK(log_has("portico-stale.test.conf", "\"reason\":\"stale\""));
    CHECK(log_has("portico-dangling.test.conf", "\"reason\":\"stale\""));
    /* The drifted bytes were kept before the repair. */
    char *bdir = at("state/nginx/backups");
    DIR *d = opendir(bdir);
    struct dirent *ent;
    bool kept = false;
    while (d && (ent = readdir(d)) != NULL) {
        if (strncmp(ent->d_name, "portico-web.test.conf-", 22) != 0)
            continue;
        char *p = ptc_path_join(bdir, ent->d_name), *t = read_all(p);
        kept = kept || (t && strstr(t, "# a hand edit"));
        free(t);
        free(p);
    }
    if (d)
        closedir(d);
    CHECK(kept);
    CHECK_STR(body_of("web.test", "/", &r), "u2 /\n");
    char listen[64];
    ptc_verify_result v;
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", https_port);
    ptc_verify_route(listen, true, "tls.test", "/", false, 5000, &v);
    CHECK(v.ok);

    /* destroy stops the adopted master too; it is our child: reap it. */
    engine->ops->destroy(engine);
    engine = NULL;
    int status;
    CHECK_INT(waitpid(orphan, &status, 0), orphan);
    free(prefix);
    free(elog);
    free(conf);
    free(pidf);
    free(web_path);
    free(tls_path);
    free(web_bytes);
    free(tls_bytes);
    free(edited);
    free(stale);
    free(stale_link);
    free(dangling);
    free(foreign);
    free(now_web);
    free(now_tls);
    free(bdir);
}

/* A stored route nginx rejects at start (its upstream stopped resolving)
 * is left out; every other route is served. */
static void test_isolation(void)
{
    char err[512] = "";
    response r;
    ptc_proxy *bad = fx_proxy("bad", "bad.test", "/", "nonexistent.invalid", 80);
    ptc_state *s8 = ptc_state_put_proxy(s7, bad);
    engine = ptc_engine_nginx_create(settings, err, sizeof(err));
    CHECK(engine != NULL);
    int rc = engine->ops->start(engine, s8, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "start: %s\n", err);
    CHECK_INT(rc, 0);
    ptc_health_level level;
    json_t *j = status(&level);
    CHECK_INT(level, PTC_DEGRADED);
    CHECK_STR(json_string_value(json_array_get(json_object_get(j, "disabled_files"), 0)),
              "portico-bad.test.conf");
    json_decref(j);
    CHECK_STR(body_of("web.test", "/", &r), "u2 /\n");
    http_get("bad.test", "/", &r);
    CHECK_INT(r.status, 404);
    CHECK(strstr(r.body, "ROUTE_NOT_FOUND") != NULL);
    pid_t pid = master_pid();
    engine->ops->destroy(engine);
    engine = NULL;
    CHECK(!alive(pid));
    ptc_state_release(s8);
}

/* Unmanaged: portico drives an nginx it did not start (found through the
 * pid directive of that nginx's main config) and leaves it running. */
static void test_unmanaged(void)
{
    char err[512] = "", buf[64];
    response r;
    ptc_apply_result res;
    char *sys = at("system"), *pidf = at("system/nginx.pid"), *elog = at("system/logs/error.log");
    char *conf = at("system/nginx.conf"), *avail = at("system/sites-available"),
         *enabled = at("system/sites-enabled");
    char *backups = at("system/backups"), *logs = at("system/logs"), *tmp = at("system/tmp");
    ptc_mkdir_p(logs, 0755);
    ptc_mkdir_p(tmp, 0755);
    ptc_mkdir_p(enabled, 0755);
    ptc_nginx_main_conf m = {sys, pidf, elog, NULL, enabled, geteuid() == 0, 1, 10000, 60000, 1000};
    ptc_buf text = PTC_BUF_INIT;
    ptc_nginx_render_main(&m, &text);
    CHECK_INT(ptc_file_write_atomic(conf, text.data, text.len, 0644), 0);
    ptc_buf_free(&text);
    const char *argv[] = {ptc_settings_get(settings, PTC_SET_NGINX_BIN),
                          "-p",
                          sys,
                          "-e",
                          elog,
                          "-c",
                          conf,
                          "-g",
                          "daemon off;",
                          NULL};
    pid_t sys_pid;
    CHECK_INT(ptc_proc_spawn(argv, NULL, -1, &sys_pid), 0);

    http_port = t_free_port();
    ptc_settings *s = ptc_settings_new();
    char *flags[] = {
        ptc_xasprintf("--state_dir=%s/state2", root),
        ptc_xstrdup("--nginx_managed=false"),
        ptc_xasprintf("--nginx_conf=%s", conf),
        ptc_xasprintf("--nginx_sites_available=%s", avail),
        ptc_xasprintf("--nginx_sites_enabled=%s", enabled),
        ptc_xasprintf("--nginx_backup_dir=%s", backups),
        ptc_xasprintf("--http_listen=127.0.0.1:%u", http_port),
        ptc_xstrdup("--https_listen="),
    };
    char *envp[] = {NULL};
    CHECK_INT(ptc_settings_load(s, (int)PTC_ARRAY_LEN(flags), flags, envp, err, sizeof(err)), 0);
    int64_t deadline = ptc_mono_ms() + 10000;
    while (ptc_mono_ms() < deadline && !alive(sys_pid))
        usleep(10000);
    snprintf(buf, sizeof(buf), "%d", (int)sys_pid);
    while (ptc_mono_ms() < deadline) {
        char *text_pid = read_all(pidf);
        bool up = text_pid && strncmp(text_pid, buf, strlen(buf)) == 0;
        free(text_pid);
        if (up)
            break;
        usleep(10000);
    }

    ptc_settings *saved = settings;
    settings = s;
    engine = ptc_engine_nginx_create(s, err, sizeof(err));
    CHECK(engine != NULL);
    ptc_proxy *p = fx_proxy("sys", "sys.test", "/", "127.0.0.1", u1.port);
    ptc_state *empty = ptc_state_new(), *one = state_of((const ptc_proxy *const[]){p}, 1, NULL, 0);
    CHECK_INT(engine->ops->start(engine, empty, err, sizeof(err)), 0);
    CHECK_INT(master_pid(), sys_pid);
    apply(empty, one, "sys.test", "/", false, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    clear_result(&res);
    CHECK_STR(body_of("sys.test", "/", &r), "u1 /\n");
    /* Not the default command: run as written, {nginx_bin} expanded. */
    CHECK_INT(
        ptc_settings_set(s, "nginx_reload_cmd", "{nginx_bin}  -s  reload", PTC_SRC_FLAG, err, sizeof(err)),
        0);
    apply(one, empty, "sys.test", "/", true, &res);
    CHECK(res.code == NULL);
    CHECK(json_is_true(json_object_get(json_object_get(res.report, "verify"), "ok")));
    clear_result(&res);
    ptc_health_level level;
    json_t *j = status(&level);
    CHECK_INT(level, PTC_HEALTHY);
    CHECK(json_is_false(json_object_get(j, "managed")));
    json_decref(j);
    engine->ops->destroy(engine);
    engine = NULL;
    CHECK(alive(sys_pid)); /* not ours to stop */
    kill(sys_pid, SIGQUIT);
    int st;
    CHECK_INT(waitpid(sys_pid, &st, 0), sys_pid);
    settings = saved;
    ptc_state_release(empty);
    ptc_state_release(one);
    ptc_proxy_release(p);
    ptc_settings_free(s);
    for (size_t i = 0; i < PTC_ARRAY_LEN(flags); i++)
        free(flags[i]);
    free(sys);
    free(pidf);
    free(elog);
    free(conf);
    free(avail);
    free(enabled);
    free(backups);
    free(logs);
    free(tmp);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/ptc-nginx-XXXXXX");
    if (mkdtemp(root) == NULL || access("/usr/sbin/nginx", X_OK) != 0) {
        fprintf(stderr, "needs a temporary folder and /usr/sbin/nginx (scripts/bootstrap test)\n");
        return 1;
    }
    snprintf(log_path, sizeof(log_path), "%s/portico.log", root);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ptc_log_setup(PTC_LOG_INFO, true, log_fd);
    signal(SIGPIPE, SIG_IGN);
    http_port = t_free_port();
    https_port = t_free_port();
    upstream_start(&u1, "u1");
    upstream_start(&u2, "u2");
    settings = make_settings();

    RUN(test_start_empty);
    RUN(test_first_route);
    RUN(test_routes);
    RUN(test_no_op);
    RUN(test_nginx_rejects);
    RUN(test_reload_fails);
    RUN(test_backup_pruning);
    RUN(test_tls);
    RUN(test_challenges);
    RUN(test_delete);
    RUN(test_supervisor);
    RUN(test_reconcile);
    RUN(test_isolation);
    RUN(test_unmanaged);

    if (engine)
        engine->ops->destroy(engine);
    upstream_stop(&u1);
    upstream_stop(&u2);
    ptc_state_release(s1);
    ptc_state_release(s2);
    ptc_state_release(s3);
    ptc_state_release(s5);
    ptc_state_release(s6);
    ptc_state_release(s7);
    ptc_proxy_release(web);
    ptc_proxy_release(api);
    ptc_proxy_release(v2);
    ptc_proxy_release(wild);
    ptc_proxy_release(multi);
    ptc_proxy_release(tls);
    ptc_cert_release(tls_cert);
    ptc_settings_free(settings);
    if (t_failures)
        fprintf(stderr, "log: %s\n", log_path);
    else
        nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    close(log_fd);
    TEST_EXIT();
}
