/* Active health checks: the threshold state machine, and the checker
 * against a small HTTP/1.1 server in this process whose health answer the
 * test flips (transitions, address verdicts, connection reuse, following
 * the desired state, passive ejection, saved state). */
#include "core/mem.h"
#include "core/util.h"
#include "discovery/health.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- the state machine ---- */

static void test_hsm_thresholds(void)
{
    ptc_hsm m = {0};
    CHECK(!ptc_hsm_feed(&m, true, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_UNKNOWN);
    CHECK_INT(ptc_hsm_consecutive(&m), 1);
    CHECK(ptc_hsm_feed(&m, true, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_HEALTHY);
    CHECK(!ptc_hsm_feed(&m, true, 2, 3));
    CHECK_INT(ptc_hsm_consecutive(&m), 3);

    /* Failures below the threshold, broken by a success, change nothing. */
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK_INT(ptc_hsm_consecutive(&m), 2);
    CHECK(!ptc_hsm_feed(&m, true, 2, 3));
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_HEALTHY);
    CHECK(ptc_hsm_feed(&m, false, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_UNHEALTHY);
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK_INT(ptc_hsm_consecutive(&m), 4);

    /* Recovery needs healthy_threshold successes in a row. */
    CHECK(!ptc_hsm_feed(&m, true, 2, 3));
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK(!ptc_hsm_feed(&m, true, 2, 3));
    CHECK(ptc_hsm_feed(&m, true, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_HEALTHY);
}

static void test_hsm_from_unknown(void)
{
    ptc_hsm m = {0};
    /* unknown becomes unhealthy only after unhealthy_threshold failures */
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK(!ptc_hsm_feed(&m, false, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_UNKNOWN);
    CHECK(ptc_hsm_feed(&m, false, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_UNHEALTHY);

    /* thresholds of 0 count as 1 */
    ptc_hsm z = {0};
    CHECK(ptc_hsm_feed(&z, true, 0, 0));
    CHECK_INT(z.state, PTC_HSTATE_HEALTHY);
    CHECK(ptc_hsm_feed(&z, false, 0, 0));
    CHECK_INT(z.state, PTC_HSTATE_UNHEALTHY);
    CHECK_STR(ptc_hstate_name(PTC_HSTATE_UNKNOWN), "unknown");
    CHECK_STR(ptc_hstate_name(PTC_HSTATE_HEALTHY), "healthy");
    CHECK_STR(ptc_hstate_name(PTC_HSTATE_UNHEALTHY), "unhealthy");
}

static void test_hsm_eject(void)
{
    ptc_hsm m = {0};
    ptc_hsm_feed(&m, true, 2, 3);
    ptc_hsm_feed(&m, true, 2, 3);
    CHECK(ptc_hsm_eject(&m));
    CHECK_INT(m.state, PTC_HSTATE_UNHEALTHY);
    CHECK_INT(ptc_hsm_consecutive(&m), 0);
    CHECK(!ptc_hsm_eject(&m));
    CHECK(!ptc_hsm_feed(&m, true, 2, 3));
    CHECK(ptc_hsm_feed(&m, true, 2, 3));
    CHECK_INT(m.state, PTC_HSTATE_HEALTHY);
    /* an unknown upstream can be ejected too */
    ptc_hsm u = {0};
    CHECK(ptc_hsm_eject(&u));
}

/* ---- a tiny HTTP/1.1 keep-alive server ---- */

typedef struct server {
    int fd;
    unsigned port;
    atomic_int status; /* answer to every request */
    atomic_int accepted;
    atomic_int requests;
    atomic_bool stop;
    pthread_t thread;
} server;

static void *serve_conn(void *arg)
{
    void **a = arg;
    server *s = a[0];
    int fd = (int)(intptr_t)a[1];
    char buf[4096];
    size_t have = 0;
    free(arg);
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + have, sizeof(buf) - have - 1);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *end;
        while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            char resp[128];
            int st = atomic_load(&s->status);
            int len = snprintf(resp, sizeof(resp), "HTTP/1.1 %d X\r\nContent-Length: 2\r\n\r\nok", st);
            atomic_fetch_add(&s->requests, 1);
            if (write(fd, resp, (size_t)len) != len)
                goto out;
            size_t used = (size_t)(end + 4 - buf);
            memmove(buf, buf + used, have - used + 1);
            have -= used;
        }
    }
out:
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    server *s = arg;
    while (!atomic_load(&s->stop)) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        atomic_fetch_add(&s->accepted, 1);
        void **a = ptc_xcalloc(2, sizeof(void *));
        a[0] = s;
        a[1] = (void *)(intptr_t)c;
        pthread_t t;
        pthread_create(&t, NULL, serve_conn, a);
        pthread_detach(t);
    }
    return NULL;
}

static void server_start(server *s)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    memset(s, 0, sizeof(*s));
    atomic_init(&s->status, 200);
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(s->fd, 64) == 0);
    getsockname(s->fd, (struct sockaddr *)&sa, &len);
    s->port = ntohs(sa.sin_port);
    pthread_create(&s->thread, NULL, serve, s);
}

static void server_stop(server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->fd);
    /* connection threads notice stop within 100 ms */
    usleep(250 * 1000);
}

/* A port nothing listens on: bound, never listened to, then closed. */
static unsigned dead_port(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    getsockname(fd, (struct sockaddr *)&sa, &len);
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- what the listener saw ---- */

typedef struct seen {
    pthread_mutex_t lock;
    char log[64][160]; /* "transition p1,p2 from->to passive" or "address host:port up|down" */
    int n;
} seen;

static void on_transition(void *arg, const ptc_health_event *ev)
{
    seen *s = arg;
    char names[96] = "";
    for (size_t i = 0; i < ev->n_proxies; i++)
        snprintf(names + strlen(names), sizeof(names) - strlen(names), "%s%s", i ? "," : "", ev->proxies[i]);
    pthread_mutex_lock(&s->lock);
    if (s->n < 64)
        snprintf(s->log[s->n++], 160, "transition %s %s->%s%s", names, ptc_hstate_name(ev->from),
                 ptc_hstate_name(ev->to), ev->view->passive ? " passive" : "");
    pthread_mutex_unlock(&s->lock);
}

static void on_address(void *arg, const char *host, unsigned port, bool healthy)
{
    seen *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->n < 64)
        snprintf(s->log[s->n++], 160, "address %s:%u %s", host, port, healthy ? "up" : "down");
    pthread_mutex_unlock(&s->lock);
}

static bool seen_has(seen *s, const char *line)
{
    bool found = false;
    pthread_mutex_lock(&s->lock);
    for (int i = 0; i < s->n && !found; i++)
        found = strcmp(s->log[i], line) == 0;
    pthread_mutex_unlock(&s->lock);
    return found;
}

static const ptc_proxy_defaults defs = {"/health", 1000, 5000};

static ptc_proxy *mk(const char *name, const char *domain, const char *upstreams, const char *hc)
{
    char body[512];
    snprintf(body, sizeof(body), "{\"domain\": \"%s\", \"upstreams\": %s, \"health_check\": %s}", domain,
             upstreams, hc);
    json_t *j = json_loads(body, 0, NULL), *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, name, &defs, errors);
    if (p == NULL) {
        char *e = json_dumps(errors, 0);
        fprintf(stderr, "bad proxy %s: %s\n", body, e);
        free(e);
    }
    json_decref(j);
    json_decref(errors);
    return p;
}

/* Polls the view of a target until it reaches want (at most 10 s). */
static bool wait_state(ptc_health *h, unsigned port, const char *path, ptc_hstate want)
{
    int64_t deadline = ptc_mono_ms() + 10000;
    while (ptc_mono_ms() < deadline) {
        ptc_health_view v;
        if (ptc_health_get(h, "127.0.0.1", port, path, &v) == 0 && v.state == want)
            return true;
        usleep(20 * 1000);
    }
    return false;
}

static bool wait_seen(seen *s, const char *line)
{
    int64_t deadline = ptc_mono_ms() + 10000;
    while (ptc_mono_ms() < deadline) {
        if (seen_has(s, line))
            return true;
        usleep(20 * 1000);
    }
    return false;
}

static const char *FAST = "{\"interval_ms\": 100, \"timeout_ms\": 500}";

static void test_checker_transitions(void)
{
    server srv;
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char ups[128], down_line[64], up_line[64];
    server_start(&srv);
    snprintf(ups, sizeof(ups), "[{\"host\": \"127.0.0.1\", \"port\": %u}]", srv.port);
    snprintf(down_line, sizeof(down_line), "address 127.0.0.1:%u down", srv.port);
    snprintf(up_line, sizeof(up_line), "address 127.0.0.1:%u up", srv.port);

    ptc_health_config cfg = {.max_in_flight = 8, .max_connections = 64};
    ptc_health_listener l = {on_transition, on_address, &s};
    ptc_health *h = ptc_health_create(&cfg, &l);
    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 = ptc_state_put_proxy(s0, mk("p", "p.example.com", ups, FAST));
    ptc_health_follow(h, s1);
    CHECK_INT(ptc_health_start(h), 0);

    ptc_health_view v;
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), 0);
    CHECK_INT(v.state, PTC_HSTATE_UNKNOWN);
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/other", &v), -ENOENT);
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_HEALTHY));
    CHECK(wait_seen(&s, "transition p unknown->healthy"));
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), 0);
    CHECK_INT(v.last_status, 200);
    CHECK_STR(v.last_error, "");
    CHECK(v.checked_at > 0);
    CHECK(v.consecutive >= 2);

    atomic_store(&srv.status, 503);
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_UNHEALTHY));
    CHECK(wait_seen(&s, "transition p healthy->unhealthy"));
    CHECK(wait_seen(&s, down_line));
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), 0);
    CHECK_INT(v.last_status, 503);
    CHECK_STR(v.last_error, "answered 503");

    atomic_store(&srv.status, 302); /* 3xx counts as healthy */
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_HEALTHY));
    CHECK(wait_seen(&s, up_line));
    /* every check went over one kept-alive connection */
    CHECK(atomic_load(&srv.requests) >= 7);
    CHECK_INT(atomic_load(&srv.accepted), 1);

    ptc_health_stats st;
    ptc_health_stats_get(h, &st);
    CHECK_INT(st.targets, 1);
    CHECK_INT(st.healthy, 1);
    CHECK(st.checks_success >= 4);
    CHECK(st.checks_bad_status >= 3);
    CHECK_INT(st.transitions, 3);

    ptc_health_destroy(h);
    ptc_state_release(s0);
    ptc_state_release(s1);
    server_stop(&srv);
}

static void test_checker_follows_state(void)
{
    server srv;
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char ups[128], ups2[160], line[64];
    unsigned dead = dead_port();
    server_start(&srv);
    snprintf(ups, sizeof(ups), "[{\"host\": \"127.0.0.1\", \"port\": %u}]", srv.port);
    snprintf(ups2, sizeof(ups2),
             "[{\"host\": \"127.0.0.1\", \"port\": %u}, {\"host\": \"127.0.0.1\", \"port\": %u}]", srv.port,
             dead);

    ptc_health_config cfg = {.max_in_flight = 4, .max_connections = 64};
    ptc_health_listener l = {on_transition, on_address, &s};
    ptc_health *h = ptc_health_create(&cfg, &l);
    CHECK_INT(ptc_health_start(h), 0);
    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 = ptc_state_put_proxy(s0, mk("a", "a.example.com", ups, FAST));
    ptc_health_follow(h, s1);
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_HEALTHY));

    /* b shares a's upstream and path: one check, both named */
    ptc_state *s2 = ptc_state_put_proxy(s1, mk("b", "b.example.com", ups2, FAST));
    ptc_health_follow(h, s2);
    ptc_health_stats st;
    ptc_health_stats_get(h, &st);
    CHECK_INT(st.targets, 2);
    CHECK(wait_state(h, dead, "/health", PTC_HSTATE_UNHEALTHY));
    CHECK(wait_seen(&s, "transition b unknown->unhealthy"));
    snprintf(line, sizeof(line), "address 127.0.0.1:%u down", dead);
    CHECK(wait_seen(&s, line));
    ptc_health_view v;
    CHECK_INT(ptc_health_get(h, "127.0.0.1", dead, "/health", &v), 0);
    CHECK(strstr(v.last_error, "onnect") != NULL);
    CHECK_INT(v.last_status, 0);

    /* a changes (another domain) but keeps its upstream: state kept */
    ptc_state *s3 = ptc_state_put_proxy(s2, mk("a", "a2.example.com", ups, FAST));
    ptc_health_follow(h, s3);
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), 0);
    CHECK_INT(v.state, PTC_HSTATE_HEALTHY);

    atomic_store(&srv.status, 500);
    CHECK(wait_seen(&s, "transition a,b healthy->unhealthy") ||
          seen_has(&s, "transition b,a healthy->unhealthy"));

    /* b goes: its dead upstream's target goes, and that address is up
     * again (nothing is known against it any more) */
    ptc_state *s4 = ptc_state_delete_proxy(s3, "b");
    ptc_health_follow(h, s4);
    CHECK_INT(ptc_health_get(h, "127.0.0.1", dead, "/health", &v), -ENOENT);
    snprintf(line, sizeof(line), "address 127.0.0.1:%u up", dead);
    CHECK(wait_seen(&s, line));
    ptc_health_stats_get(h, &st);
    CHECK_INT(st.targets, 1);

    /* a changes its health path: a new target, starting unknown */
    ptc_state *s5 =
        ptc_state_put_proxy(s4, mk("a", "a2.example.com", ups,
                                   "{\"interval_ms\": 100, \"timeout_ms\": 500, \"path\": \"/ready\"}"));
    ptc_health_follow(h, s5);
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), -ENOENT);
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/ready", &v), 0);

    ptc_health_destroy(h);
    ptc_state_release(s0);
    ptc_state_release(s1);
    ptc_state_release(s2);
    ptc_state_release(s3);
    ptc_state_release(s4);
    ptc_state_release(s5);
    server_stop(&srv);
}

static void test_passive_and_saved(void)
{
    server srv;
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char ups[128], down_line[64], up_line[64];
    server_start(&srv);
    snprintf(ups, sizeof(ups), "[{\"host\": \"127.0.0.1\", \"port\": %u}]", srv.port);
    snprintf(down_line, sizeof(down_line), "address 127.0.0.1:%u down", srv.port);
    snprintf(up_line, sizeof(up_line), "address 127.0.0.1:%u up", srv.port);

    ptc_health_config cfg = {.max_in_flight = 4, .max_connections = 64};
    ptc_health_listener l = {on_transition, on_address, &s};
    ptc_health *h = ptc_health_create(&cfg, &l);
    CHECK_INT(ptc_health_start(h), 0);
    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 =
        ptc_state_put_proxy(s0, mk("p", "p.example.com", ups,
                                   "{\"interval_ms\": 400, \"timeout_ms\": 500, \"healthy_threshold\": 2}"));
    ptc_health_follow(h, s1);
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_HEALTHY));

    /* the data plane ejects it; the active checks re-admit it */
    ptc_health_report_down(h, "127.0.0.1", srv.port, "3 connection failures in a row");
    CHECK(wait_seen(&s, "transition p healthy->unhealthy passive"));
    CHECK(wait_seen(&s, down_line));
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_HEALTHY));
    CHECK(wait_seen(&s, "transition p unhealthy->healthy"));
    ptc_health_stats st;
    ptc_health_stats_get(h, &st);
    CHECK_INT(st.passive_ejections, 1);

    /* an address nobody uses is ignored */
    ptc_health_report_down(h, "10.9.9.9", 1, NULL);

    atomic_store(&srv.status, 503);
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_UNHEALTHY));
    json_t *saved = ptc_health_export(h);
    CHECK_INT(json_array_size(saved), 1);
    ptc_health_destroy(h);

    /* a new checker seeded with the export reports the saved state at
     * once, tells the address is down, and checks again soon */
    seen s2 = {.lock = PTHREAD_MUTEX_INITIALIZER};
    ptc_health_listener l2 = {on_transition, on_address, &s2};
    h = ptc_health_create(&cfg, &l2);
    json_array_append_new(saved, json_pack("{s:s, s:i, s:s, s:s}", "host", "bad host", "port", 1, "path",
                                           "/h", "state", "healthy"));
    json_array_append_new(saved, json_string("junk"));
    ptc_health_import(h, saved);
    ptc_health_follow(h, s1);
    ptc_health_view v;
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), 0);
    CHECK_INT(v.state, PTC_HSTATE_UNHEALTHY);
    CHECK_INT(v.last_status, 503);
    CHECK_INT(ptc_health_start(h), 0);
    CHECK(wait_seen(&s2, down_line));
    atomic_store(&srv.status, 200);
    CHECK(wait_state(h, srv.port, "/health", PTC_HSTATE_HEALTHY));
    CHECK(wait_seen(&s2, up_line));
    json_decref(saved);
    ptc_health_destroy(h);
    ptc_state_release(s0);
    ptc_state_release(s1);
    server_stop(&srv);
}

/* A target removed while its check is in flight is freed when the check
 * ends (ASan would see a leak or a use after free otherwise). */
static void test_remove_in_flight(void)
{
    /* a listener that never answers: checks stay in flight until timeout */
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    listen(fd, 16);
    getsockname(fd, (struct sockaddr *)&sa, &len);
    unsigned port = ntohs(sa.sin_port);
    char ups[128];
    snprintf(ups, sizeof(ups), "[{\"host\": \"127.0.0.1\", \"port\": %u}]", port);

    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    ptc_health_config cfg = {.max_in_flight = 2, .max_connections = 0};
    ptc_health_listener l = {on_transition, on_address, &s};
    ptc_health *h = ptc_health_create(&cfg, &l);
    CHECK_INT(ptc_health_start(h), 0);
    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 =
        ptc_state_put_proxy(s0, mk("p", "p.example.com", ups, "{\"interval_ms\": 100, \"timeout_ms\": 300}"));
    ptc_health_follow(h, s1);
    usleep(250 * 1000);
    ptc_health_follow(h, s0);
    ptc_health_view v;
    CHECK_INT(ptc_health_get(h, "127.0.0.1", port, "/health", &v), -ENOENT);
    ptc_health_stats st;
    int64_t deadline = ptc_mono_ms() + 10000;
    do {
        usleep(20 * 1000);
        ptc_health_stats_get(h, &st);
    } while (st.in_flight > 0 && ptc_mono_ms() < deadline);
    CHECK_INT(st.targets, 0);
    CHECK_INT(st.in_flight, 0);
    ptc_health_destroy(h);
    ptc_state_release(s0);
    ptc_state_release(s1);
    close(fd);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_hsm_thresholds);
    RUN(test_hsm_from_unknown);
    RUN(test_hsm_eject);
    RUN(test_checker_transitions);
    RUN(test_checker_follows_state);
    RUN(test_passive_and_saved);
    RUN(test_remove_in_flight);
    curl_global_cleanup();
    TEST_EXIT();
}
