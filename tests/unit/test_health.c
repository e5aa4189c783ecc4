/* Active health checks: the threshold state machine, the response reader
 * against hostile answers, and the checker
 * against a small HTTP/1.1 server in this process whose health answer the
 * test flips (transitions, address verdicts, connection reuse, following
 * the desired state, passive ejection, saved state). */
#include "core/mem.h"
#include "core/util.h"
#include "discovery/hc_reader.h"
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

/* ---- the response reader ---- */

static ptc_hc_step feed_str(ptc_hc_reader *r, const char *text)
{
    ptc_hc_reader_init(r);
    return ptc_hc_reader_feed(r, text, strlen(text));
}

static void test_reader(void)
{
    static ptc_hc_reader r;
    const char *ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

    CHECK_INT(feed_str(&r, ok), PTC_HC_DONE);
    CHECK_INT(r.status, 200);
    CHECK(r.keep_alive);
    /* byte by byte */
    ptc_hc_reader_init(&r);
    ptc_hc_step st = PTC_HC_MORE;
    for (size_t i = 0; ok[i]; i++) {
        CHECK_INT(st, PTC_HC_MORE);
        st = ptc_hc_reader_feed(&r, &ok[i], 1);
    }
    CHECK_INT(st, PTC_HC_DONE);
    CHECK(r.keep_alive);
    /* interim responses are skipped, a bounded number of them */
    CHECK_INT(feed_str(&r, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Hints\r\nLink: x\r\n\r\n"
                           "HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"),
              PTC_HC_DONE);
    CHECK_INT(r.status, 503);
    CHECK(r.keep_alive);
    CHECK_INT(feed_str(&r, "HTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\n"
                           "HTTP/1.1 100 A\r\n\r\nHTTP/1.1 100 A\r\n\r\n"),
              PTC_HC_BAD);

    /* framing that keeps the status but not the connection */
    static const char *const no_reuse[] = {
        "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\nbody until close",
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2a\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: -2\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA",
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX-A: 1\nContent-Length: 0\r\n\r\n",
    };
    for (size_t i = 0; i < PTC_ARRAY_LEN(no_reuse); i++) {
        if (feed_str(&r, no_reuse[i]) != PTC_HC_DONE || r.status != 200 || r.keep_alive) {
            fprintf(stderr, "reader case %zu: status %d keep %d\n", i, r.status, r.keep_alive);
            t_failures++;
        }
    }
    /* the same length twice is fine; so are 204 and 304 without one */
    CHECK_INT(feed_str(&r, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\ncontent-length:  2 \r\n\r\nok"),
              PTC_HC_DONE);
    CHECK(r.keep_alive);
    CHECK_INT(feed_str(&r, "HTTP/1.1 204 No Content\r\n\r\n"), PTC_HC_DONE);
    CHECK(r.keep_alive && r.status == 204);
    CHECK_INT(feed_str(&r, "HTTP/1.1 301 Moved\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n"), PTC_HC_DONE);
    CHECK_INT(r.status, 301);
    /* a NUL in the head */
    static const char nul[] = "HTTP/1.1 200 OK\r\nX: a\0b\r\nContent-Length: 0\r\n\r\n";
    ptc_hc_reader_init(&r);
    CHECK_INT(ptc_hc_reader_feed(&r, nul, sizeof(nul) - 1), PTC_HC_DONE);
    CHECK(!r.keep_alive);

    /* not HTTP/1.x, or a head without end */
    static const char *const bad[] = {"SSH-2.0-OpenSSH_9.2\r\n\r\n",
                                      "HTTP/2 200\r\n\r\n",
                                      "HTTP/1.1 20 OK\r\n\r\n",
                                      "HTTP/1.1 2000 OK\r\n\r\n",
                                      "HTTP/1.1 099 Low\r\n\r\n",
                                      "HTTP/1.2 200 OK\r\n\r\n",
                                      "\r\n\r\n"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        if (feed_str(&r, bad[i]) != PTC_HC_BAD || r.error[0] == '\0') {
            fprintf(stderr, "reader bad case %zu accepted\n", i);
            t_failures++;
        }
    }
    char big[PTC_HC_HEAD_MAX + 100];
    memset(big, 'a', sizeof(big));
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 21);
    ptc_hc_reader_init(&r);
    CHECK_INT(ptc_hc_reader_feed(&r, big, sizeof(big)), PTC_HC_BAD);
    CHECK(strstr(r.error, "larger") != NULL);
    /* a bare-LF head never ends: it is cut off at the limit */
    ptc_hc_reader_init(&r);
    CHECK_INT(ptc_hc_reader_feed(&r, "HTTP/1.1 200 OK\nContent-Length: 0\n\n", 35), PTC_HC_MORE);
}

/* ---- a tiny HTTP/1.1 keep-alive server ---- */

typedef struct server {
    int fd;
    unsigned port;
    atomic_int status; /* answer to every request */
    atomic_int accepted;
    atomic_int requests;
    atomic_int asked_close;  /* requests carrying Connection: close */
    atomic_bool close_after; /* close every connection after one answer */
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
            if (strstr(buf, "Connection: close\r\n") != NULL && strstr(buf, "Connection: close\r\n") < end)
                atomic_fetch_add(&s->asked_close, 1);
            if (write(fd, resp, (size_t)len) != len || atomic_load(&s->close_after))
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
    CHECK_INT(ptc_health_get(h, "127.0.0.1", srv.port, "/health", &v), 0);
    CHECK_INT(v.last_status, 302);
    CHECK_STR(v.last_error, ""); /* a success clears the error */
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
    char ups[128], ups2[256], line[64];
    unsigned dead = dead_port();
    server_start(&srv);
    snprintf(ups, sizeof(ups), "[{\"host\": \"127.0.0.1\", \"port\": %u}]", srv.port);
    /* b lists a's upstream twice: its transitions name b once */
    snprintf(ups2, sizeof(ups2),
             "[{\"host\": \"127.0.0.1\", \"port\": %u}, {\"host\": \"127.0.0.1\", \"port\": %u}, "
             "{\"host\": \"127.0.0.1\", \"port\": %u, \"weight\": 2}]",
             srv.port, dead, srv.port);

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
    CHECK_STR(v.last_error, "answered 503"); /* the saved error comes back */
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

/* Names are resolved (off the checker's thread), and every address of a
 * name is tried: "localhost" may give ::1 first, where nothing listens. */
static void test_checker_names_and_budget(void)
{
    server a, b;
    seen s = {.lock = PTHREAD_MUTEX_INITIALIZER};
    char ups[200];
    server_start(&a);
    server_start(&b);
    atomic_store(&b.close_after, true);
    snprintf(ups, sizeof(ups),
             "[{\"host\": \"localhost\", \"port\": %u}, {\"host\": \"127.0.0.1\", \"port\": %u}]", a.port,
             b.port);
    /* A budget of one kept connection: the first target created keeps
     * it, the other asks for Connection: close. */
    ptc_health_config cfg = {.max_in_flight = 4, .max_connections = 1};
    ptc_health_listener l = {on_transition, on_address, &s};
    ptc_health *h = ptc_health_create(&cfg, &l);
    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 = ptc_state_put_proxy(s0, mk("n", "n.example.com", ups, FAST));
    ptc_health_follow(h, s1);
    CHECK_INT(ptc_health_start(h), 0);
    int64_t deadline = ptc_mono_ms() + 10000;
    ptc_health_view va = {0}, vb = {0};
    while (ptc_mono_ms() < deadline) {
        ptc_health_get(h, "localhost", a.port, "/health", &va);
        ptc_health_get(h, "127.0.0.1", b.port, "/health", &vb);
        if (va.state == PTC_HSTATE_HEALTHY && vb.state == PTC_HSTATE_HEALTHY &&
            atomic_load(&b.requests) >= 4 && atomic_load(&a.requests) >= 4)
            break;
        usleep(20 * 1000);
    }
    CHECK_INT(va.state, PTC_HSTATE_HEALTHY);
    CHECK_INT(vb.state, PTC_HSTATE_HEALTHY);
    /* a keeps one connection; b (out of budget, or closed by its server)
     * gets a new one per check */
    CHECK_INT(atomic_load(&a.accepted), 1);
    CHECK_INT(atomic_load(&a.asked_close), 0);
    CHECK(atomic_load(&b.accepted) >= 4);
    CHECK_INT(atomic_load(&b.asked_close), atomic_load(&b.requests));
    ptc_health_stats st;
    ptc_health_stats_get(h, &st);
    CHECK_INT(st.reusable, 1);
    CHECK_INT(st.checks_error, 0);

    /* a name that does not resolve fails the check with the reason */
    ptc_state *s2 = ptc_state_put_proxy(
        s1, mk("x", "x.example.com", "[{\"host\": \"no-such-host.invalid\", \"port\": 80}]", FAST));
    ptc_health_follow(h, s2);
    deadline = ptc_mono_ms() + 20000;
    ptc_health_view vx = {0};
    while (ptc_mono_ms() < deadline && vx.state != PTC_HSTATE_UNHEALTHY) {
        ptc_health_get(h, "no-such-host.invalid", 80, "/health", &vx);
        usleep(20 * 1000);
    }
    CHECK_INT(vx.state, PTC_HSTATE_UNHEALTHY);
    CHECK(strstr(vx.last_error, "cannot resolve no-such-host.invalid") != NULL);
    ptc_health_destroy(h);
    ptc_state_release(s0);
    ptc_state_release(s1);
    ptc_state_release(s2);
    server_stop(&a);
    server_stop(&b);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    RUN(test_hsm_thresholds);
    RUN(test_hsm_from_unknown);
    RUN(test_hsm_eject);
    RUN(test_reader);
    RUN(test_checker_transitions);
    RUN(test_checker_follows_state);
    RUN(test_passive_and_saved);
    RUN(test_remove_in_flight);
    RUN(test_checker_names_and_budget);
    curl_global_cleanup();
    TEST_EXIT();
}
