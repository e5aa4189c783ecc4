/* The caddy engine's operations driven directly against Debian's Caddy,
 * which the engine starts and supervises itself (caddy_managed): start on
 * an empty state, create, update and delete a route with traffic through
 * Caddy to an upstream served by this test, a configuration Caddy refuses
 * (a secp256k1 certificate: OpenSSL takes it, Go does not) rolled back
 * with the old route still serving, HTTP-01 challenge files, a restart
 * after Caddy is killed, and Caddy stopped with the engine. */
#include "core/buf.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/settings.h"
#include "core/util.h"
#include "engine/engine.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <sys/stat.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* Removes the test's temporary folder and everything in it. */
static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static const ptc_proxy_defaults defs = {"/health", 1000, 5000};

/* ---- an upstream: answers "<name> <path>" to everything ------------- */

typedef struct upstream {
    int fd;
    unsigned port;
    const char *name;
    atomic_bool stop;
    pthread_t thread;
} upstream;

static void *serve(void *arg)
{
    upstream *u = arg;
    while (!atomic_load(&u->stop)) {
        struct pollfd p = {.fd = u->fd, .events = POLLIN};
        if (poll(&p, 1, 100) != 1)
            continue;
        int c = accept(u->fd, NULL, NULL);
        if (c < 0)
            continue;
        /* Empty before the first read: the last request's bytes are still in
         * this stack frame, and finding its end would answer the old request
         * and close with the new one unread (a reset, which Caddy takes for
         * an unreachable upstream: 502). */
        char req[4096] = "";
        size_t n = 0;
        while (n < sizeof(req) - 1 && !strstr(req, "\r\n\r\n")) {
            struct pollfd q = {.fd = c, .events = POLLIN};
            if (poll(&q, 1, 2000) != 1)
                break;
            ssize_t r = recv(c, req + n, sizeof(req) - 1 - n, 0);
            if (r <= 0)
                break;
            n += (size_t)r;
            req[n] = '\0';
        }
        req[n] = '\0';
        char path[1024] = "?";
        sscanf(req, "%*s %1023s", path);
        char body[1200], resp[1400];
        int blen = snprintf(body, sizeof(body), "%s %s", u->name, path);
        int rlen =
            snprintf(resp, sizeof(resp),
                     "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", blen, body);
        send(c, resp, (size_t)rlen, MSG_NOSIGNAL);
        close(c);
    }
    return NULL;
}

static void upstream_start(upstream *u, const char *name)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    u->name = name;
    u->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bind(u->fd, (struct sockaddr *)&a, sizeof(a));
    listen(u->fd, 64);
    getsockname(u->fd, (struct sockaddr *)&a, &len);
    u->port = ntohs(a.sin_port);
    atomic_init(&u->stop, false);
    pthread_create(&u->thread, NULL, serve, u);
}

static void upstream_stop(upstream *u)
{
    atomic_store(&u->stop, true);
    pthread_join(u->thread, NULL);
    close(u->fd);
}

/* ---- helpers --------------------------------------------------------- */

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    ptc_buf_append(arg, p, size * n);
    return size * n;
}

/* GET http://127.0.0.1:port{path} with Host host; the status, body in out. */
static long get(unsigned port, const char *host, const char *path, ptc_buf *out)
{
    char url[512], hdr[300];
    long status = 0;
    CURL *c = curl_easy_init();
    struct curl_slist *h = NULL;
    snprintf(url, sizeof(url), "http://127.0.0.1:%u%s", port, path);
    snprintf(hdr, sizeof(hdr), "Host: %s", host);
    h = curl_slist_append(h, hdr);
    ptc_buf_reset(out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    CURLcode rc = curl_easy_perform(c);
    if (rc == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    else
        fprintf(stderr, "GET %s (Host %s): %s\n", url, host, curl_easy_strerror(rc));
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* POSTs config to Caddy's admin /load directly (not through portico);
 * the status. */
static long admin_load(unsigned admin_port, const char *config)
{
    char url[64];
    long status = 0;
    CURL *c = curl_easy_init();
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    h = curl_slist_append(h, "Cache-Control: must-revalidate");
    snprintf(url, sizeof(url), "http://127.0.0.1:%u/load", admin_port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, config);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return status;
}

/* The /api route of app.test, stripped, to 127.0.0.1:port. */
static ptc_proxy *api_route(unsigned port)
{
    json_t *j = json_pack("{s:s, s:s, s:b, s:s, s:i}", "domain", "app.test", "path_prefix", "/api",
                          "strip_prefix", 1, "upstream_host", "127.0.0.1", "upstream_port", (int)port);
    json_t *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, "api", &defs, errors);
    json_decref(j);
    json_decref(errors);
    return p;
}

/* Applies next over *cur; on success *cur becomes next. */
static void apply(ptc_engine *e, const ptc_state **cur, ptc_state *next, const char *domain, const char *path,
                  bool gone, ptc_apply_result *res)
{
    ptc_apply_request req = {*cur, next, domain, path, gone};
    memset(res, 0, sizeof(*res));
    e->ops->apply(e, &req, res);
    if (res->code == NULL) {
        ptc_state_release(*cur);
        *cur = next;
    } else {
        ptc_state_release(next);
    }
}

/* What ptc_apply_result_clear does; engine.c is left out of this test
 * so that it links without the other engines. */
static void clear(ptc_apply_result *res)
{
    json_decref(res->details);
    json_decref(res->report);
    res->details = res->report = NULL;
}

static bool verify_ok(const ptc_apply_result *res)
{
    const json_t *v = json_object_get(res->report, "verify");
    if (json_is_true(json_object_get(v, "ok")))
        return true;
    char *text = json_dumps(v, JSON_COMPACT);
    fprintf(stderr, "verify: %s\n", text ? text : "(none)");
    free(text);
    return false;
}

static pid_t caddy_pid(ptc_engine *e)
{
    ptc_health_level level;
    json_t *st = e->ops->status(e, &level);
    pid_t pid = (pid_t)json_integer_value(json_object_get(st, "pid"));
    json_decref(st);
    return pid;
}

static bool alive(pid_t pid)
{
    char path[64], *stat = NULL;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (ptc_file_read(path, 4096, &stat, NULL) != 0)
        return false;
    const char *end = strrchr(stat, ')');
    bool zombie = end && end[1] == ' ' && end[2] == 'Z';
    free(stat);
    return !zombie;
}

static void test_engine(void)
{
    char dir[] = "/tmp/portico-caddy-XXXXXX", err[512] = "";
    CHECK(mkdtemp(dir) != NULL);
    unsigned http_port = t_free_port(), admin_port = t_free_port();
    char *flags[] = {
        ptc_xasprintf("--state_dir=%s", dir),
        ptc_xasprintf("--http_listen=127.0.0.1:%u", http_port),
        ptc_xasprintf("--https_listen=127.0.0.1:%u", t_free_port()),
        ptc_xasprintf("--caddy_admin=127.0.0.1:%u", admin_port),
        ptc_xstrdup("--caddy_managed=true"),
        ptc_xstrdup("--engine=caddy"),
    };
    ptc_settings *s = ptc_settings_new();
    CHECK_INT(ptc_settings_load(s, (int)PTC_ARRAY_LEN(flags), flags, NULL, err, sizeof(err)), 0);
    upstream a = {0}, b = {0};
    upstream_start(&a, "a");
    upstream_start(&b, "b");
    ptc_buf body = PTC_BUF_INIT;
    ptc_apply_result res;
    ptc_health_level level;

    ptc_engine *e = ptc_engine_caddy_create(s, err, sizeof(err));
    CHECK(e != NULL);
    if (e == NULL) {
        fprintf(stderr, "engine: %s\n", err);
        goto out;
    }
    const ptc_state *cur = ptc_state_new();
    CHECK_INT(e->ops->start(e, cur, err, sizeof(err)), 0);
    json_t *st = e->ops->status(e, &level);
    CHECK_INT(level, PTC_HEALTHY);
    CHECK(json_is_true(json_object_get(st, "admin_reachable")));
    CHECK(json_string_value(json_object_get(st, "version")) != NULL);
    json_decref(st);
    CHECK_INT(get(http_port, "app.test", "/", &body), 404);
    CHECK(strstr(ptc_buf_cstr(&body), "ROUTE_NOT_FOUND") != NULL);

    /* Create. */
    apply(e, &cur, ptc_state_put_proxy(cur, api_route(a.port)), "app.test", "/api", false, &res);
    CHECK(res.code == NULL);
    CHECK(verify_ok(&res));
    CHECK_STR(json_string_value(json_object_get(res.report, "engine")), "caddy");
    clear(&res);
    CHECK_INT(get(http_port, "app.test", "/api/x", &body), 200);
    CHECK_STR(ptc_buf_cstr(&body), "a /x");
    CHECK_INT(get(http_port, "app.test", "/apix", &body), 404);

    /* Update. */
    apply(e, &cur, ptc_state_put_proxy(cur, api_route(b.port)), "app.test", "/api", false, &res);
    CHECK(res.code == NULL);
    clear(&res);
    CHECK_INT(get(http_port, "app.test", "/api/y", &body), 200);
    CHECK_STR(ptc_buf_cstr(&body), "b /y");

    /* Refused: the previous config is loaded back and still serves. */
    char *key = ptc_path_join(dir, "k1.key"), *crt = ptc_path_join(dir, "k1.crt");
    const char *argv[] = {"openssl",
                          "req",
                          "-x509",
                          "-newkey",
                          "ec",
                          "-pkeyopt",
                          "ec_paramgen_curve:secp256k1",
                          "-nodes",
                          "-keyout",
                          key,
                          "-out",
                          crt,
                          "-days",
                          "2",
                          "-subj",
                          "/CN=bad.test",
                          "-addext",
                          "subjectAltName=DNS:bad.test",
                          NULL};
    ptc_proc_result pr;
    CHECK_INT(ptc_proc_run(argv, NULL, 60000, 4096, &pr), 0);
    CHECK_INT(pr.exit_code, 0);
    ptc_proc_result_free(&pr);
    ptc_cert *bad = ptc_cert_new();
    bad->domain = ptc_xstrdup("bad.test");
    CHECK_INT(ptc_file_read(crt, 1 << 20, &bad->cert_pem, NULL), 0);
    CHECK_INT(ptc_file_read(key, 1 << 20, &bad->key_pem, NULL), 0);
    st = e->ops->status(e, &level);
    json_int_t loads_before = json_integer_value(json_object_get(st, "loads_ok"));
    json_decref(st);
    ptc_cert_retain(bad); /* refused twice below */
    apply(e, &cur, ptc_state_put_cert(cur, bad), NULL, NULL, false, &res);
    CHECK_STR(res.code, "CADDY_LOAD_FAILED");
    CHECK(strstr(json_string_value(json_object_get(res.details, "caddy")), "unsupported elliptic curve") !=
          NULL);
    CHECK(json_is_true(json_object_get(res.details, "rolled_back")));
    clear(&res);
    CHECK_INT(get(http_port, "app.test", "/api/z", &body), 200);
    CHECK_STR(ptc_buf_cstr(&body), "b /z");
    st = e->ops->status(e, &level);
    CHECK_INT(level, PTC_HEALTHY);
    /* Caddy kept the running config: nothing was reloaded on top of it. */
    CHECK_INT(json_integer_value(json_object_get(st, "loads_ok")), loads_before);
    CHECK(json_is_false(json_object_get(st, "last_load_ok")));
    json_decref(st);
    /* Someone else loaded another config behind portico's back: after the
     * next refused change, portico's last good config is loaded back. */
    char *foreign = ptc_xasprintf("{\"admin\": {\"listen\": \"127.0.0.1:%u\"}}", admin_port);
    CHECK_INT(admin_load(admin_port, foreign), 200);
    free(foreign);
    CHECK(get(http_port, "app.test", "/api/z", &body) != 200);
    apply(e, &cur, ptc_state_put_cert(cur, bad), NULL, NULL, false, &res);
    CHECK_STR(res.code, "CADDY_LOAD_FAILED");
    CHECK(json_is_true(json_object_get(res.details, "rolled_back")));
    clear(&res);
    CHECK_INT(get(http_port, "app.test", "/api/z", &body), 200);
    CHECK_STR(ptc_buf_cstr(&body), "b /z");
    st = e->ops->status(e, &level);
    CHECK_INT(json_integer_value(json_object_get(st, "loads_ok")), loads_before + 1);
    json_decref(st);
    free(key);
    free(crt);

    /* HTTP-01: the webroot is served on every host. */
    CHECK_INT(e->ops->set_challenge(e, "tok-EN_1", "tok-EN_1.thumb"), 0);
    CHECK_INT(get(http_port, "whatever.test", "/.well-known/acme-challenge/tok-EN_1", &body), 200);
    CHECK_STR(ptc_buf_cstr(&body), "tok-EN_1.thumb");
    e->ops->clear_challenge(e, "tok-EN_1");
    CHECK_INT(get(http_port, "whatever.test", "/.well-known/acme-challenge/tok-EN_1", &body), 404);
    CHECK(e->ops->set_challenge(e, "../escape", "x") != 0);

    /* Killed: the supervisor starts it again with the current routes. */
    pid_t pid = caddy_pid(e);
    CHECK(pid > 0);
    kill(pid, SIGKILL);
    long status = 0;
    for (int64_t deadline = ptc_mono_ms() + 30000; ptc_mono_ms() < deadline; usleep(100000))
        if (caddy_pid(e) > 0 && caddy_pid(e) != pid &&
            (status = get(http_port, "app.test", "/api/w", &body)) == 200)
            break;
    CHECK_INT(status, 200);
    CHECK_STR(ptc_buf_cstr(&body), "b /w");
    st = e->ops->status(e, &level);
    CHECK_INT(json_integer_value(json_object_get(st, "restarts")), 1);
    json_decref(st);

    /* Delete. */
    apply(e, &cur, ptc_state_delete_proxy(cur, "api"), "app.test", "/api", true, &res);
    CHECK(res.code == NULL);
    CHECK(verify_ok(&res));
    clear(&res);
    CHECK_INT(get(http_port, "app.test", "/api/x", &body), 404);

    ptc_buf metrics = PTC_BUF_INIT;
    e->ops->metrics(e, &metrics);
    CHECK(strstr(ptc_buf_cstr(&metrics), "portico_caddy_restarts_total 1\n") != NULL);
    CHECK(strstr(ptc_buf_cstr(&metrics), "portico_caddy_loads_total{result=\"failed\"} 2\n") != NULL);
    ptc_buf_free(&metrics);

    pid = caddy_pid(e);
    e->ops->destroy(e);
    CHECK(!alive(pid));
    ptc_state_release(cur);
out:
    ptc_buf_free(&body);
    upstream_stop(&a);
    upstream_stop(&b);
    ptc_settings_free(s);
    for (size_t i = 0; i < PTC_ARRAY_LEN(flags); i++)
        free(flags[i]);
    rm_rf(dir);
}

static void test_unreachable_admin(void)
{
    char dir[] = "/tmp/portico-caddy-XXXXXX", err[512] = "";
    CHECK(mkdtemp(dir) != NULL);
    char *flags[] = {
        ptc_xasprintf("--state_dir=%s", dir),
        ptc_xasprintf("--caddy_admin=127.0.0.1:%u", t_free_port()),
        ptc_xstrdup("--engine=caddy"),
    };
    ptc_settings *s = ptc_settings_new();
    CHECK_INT(ptc_settings_load(s, (int)PTC_ARRAY_LEN(flags), flags, NULL, err, sizeof(err)), 0);
    ptc_engine *e = ptc_engine_caddy_create(s, err, sizeof(err));
    CHECK(e != NULL);
    /* Nothing listens: an unmanaged Caddy that is not there is an error
     * at start (bounded wait), and the status says so. */
    const ptc_state *empty = ptc_state_new();
    CHECK(e->ops->start(e, empty, err, sizeof(err)) != 0);
    CHECK(strstr(err, "does not answer") != NULL);
    ptc_health_level level;
    json_t *st = e->ops->status(e, &level);
    CHECK_INT(level, PTC_UNHEALTHY);
    CHECK(json_is_false(json_object_get(st, "admin_reachable")));
    json_decref(st);
    e->ops->destroy(e);
    ptc_state_release(empty);
    ptc_settings_free(s);
    for (size_t i = 0; i < PTC_ARRAY_LEN(flags); i++)
        free(flags[i]);
    rm_rf(dir);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_engine);
    RUN(test_unreachable_admin);
    curl_global_cleanup();
    TEST_EXIT();
}
