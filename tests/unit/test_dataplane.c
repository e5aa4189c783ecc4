/* The data plane in this process, on loopback: snapshots (build errors,
 * certificate choice, stable metric indices), upstream health flipped
 * without a rebuild (503 NO_HEALTHY_UPSTREAM, balancing around unhealthy
 * upstreams), publication generations, metrics, session tickets that
 * survive key rotation, and stop. */
#include "proxy/dataplane.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/snapshot.h"
#include "proxy/worker.h"
#include "testlib.h"
#include "tls/tls.h"

/* ------------------------------------------------------------- helpers */

/* A tiny upstream: answers every request on every connection with its
 * name as the body. */
typedef struct upstream {
    int fd;
    unsigned port;
    char name[16];
    pthread_t th;
    atomic_int hits;
} upstream;

static void *upstream_conn(void *arg)
{
    void **a = arg;
    upstream *u = a[0];
    int fd = (int)(intptr_t)a[1];
    free(arg);
    char buf[4096], out[256];
    size_t have = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, sizeof(buf) - have - 1, 0);
        if (n <= 0)
            break;
        have += (size_t)n;
        buf[have] = '\0';
        char *end;
        while ((end = strstr(buf, "\r\n\r\n")) != NULL) {
            atomic_fetch_add(&u->hits, 1);
            int len = snprintf(out, sizeof(out), "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n%s",
                               strlen(u->name), u->name);
            send(fd, out, (size_t)len, MSG_NOSIGNAL);
            size_t used = (size_t)(end + 4 - buf);
            memmove(buf, buf + used, have - used + 1);
            have -= used;
        }
    }
    close(fd);
    return NULL;
}

static void *upstream_main(void *arg)
{
    upstream *u = arg;
    for (;;) {
        int c = accept(u->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        void **a = malloc(2 * sizeof(void *));
        a[0] = u;
        a[1] = (void *)(intptr_t)c;
        pthread_t t;
        pthread_create(&t, NULL, upstream_conn, a);
        pthread_detach(t);
    }
}

static void upstream_start(upstream *u, const char *name)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    u->fd = socket(AF_INET, SOCK_STREAM, 0);
    bind(u->fd, (struct sockaddr *)&a, sizeof(a));
    listen(u->fd, 64);
    getsockname(u->fd, (struct sockaddr *)&a, &len);
    u->port = ntohs(a.sin_port);
    snprintf(u->name, sizeof(u->name), "%s", name);
    atomic_init(&u->hits, 0);
    pthread_create(&u->th, NULL, upstream_main, u);
}

static void upstream_stop(upstream *u)
{
    shutdown(u->fd, SHUT_RDWR);
    close(u->fd);
    pthread_join(u->th, NULL);
}

/* One request on a fresh connection; returns the status, the body in
 * body (at most bodylen bytes). */
static int get(unsigned port, const char *host, char *body, size_t bodylen)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {.tv_sec = 10};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(s);
        return -1;
    }
    char req[256], buf[8192];
    int len = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host);
    send(s, req, (size_t)len, MSG_NOSIGNAL);
    size_t have = 0;
    ssize_t n;
    while (have < sizeof(buf) - 1 && (n = recv(s, buf + have, sizeof(buf) - 1 - have, 0)) > 0)
        have += (size_t)n;
    buf[have] = '\0';
    close(s);
    int status = -1;
    sscanf(buf, "HTTP/1.1 %d", &status);
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, bodylen, "%s", b ? b + 4 : "");
    return status;
}

/* A self-signed P-256 certificate for cn, as PEM strings (caller frees). */
static void make_cert(const char *cn, char **cert_pem, char **key_pem)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, k);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_sign(x, k, EVP_sha256());
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    *cert_pem = strndup(p, (size_t)n);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
    n = BIO_get_mem_data(b, &p);
    *key_pem = strndup(p, (size_t)n);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
}

/* --------------------------------------------------------------- tests */

static void test_snapshot_build_errors_and_certs(void)
{
    char err[512];
    ptc_dp_upstream up = {"127.0.0.1", 9, 1}, bad_up = {"no-such-host.invalid", 80, 1};
    ptc_dp_route r = {
        .name = "r", .domain = "a.test", .path_prefix = "/", .upstreams = &up, .n_upstreams = 1};
    ptc_dp_route bad_domain = r, bad_prefix = r, unresolvable = r;
    bad_domain.domain = "A B";
    bad_prefix.path_prefix = "x";
    unresolvable.upstreams = &bad_up;
    CHECK(ptc_dp_snapshot_build(NULL, &bad_domain, 1, NULL, 0, err, sizeof(err)) == NULL);
    CHECK(ptc_dp_snapshot_build(NULL, &bad_prefix, 1, NULL, 0, err, sizeof(err)) == NULL);
    CHECK(ptc_dp_snapshot_build(NULL, &unresolvable, 1, NULL, 0, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "no-such-host.invalid") != NULL);

    char *ca, *ka, *cw, *kw, *cb, *kb;
    make_cert("a.test", &ca, &ka);
    make_cert("*.w.test", &cw, &kw);
    make_cert("b.test", &cb, &kb);
    ptc_dp_cert mismatched = {.domain = "a.test", .cert_pem = ca, .key_pem = kb};
    CHECK(ptc_dp_snapshot_build(NULL, &r, 1, &mismatched, 1, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "does not match") != NULL);
    ptc_dp_cert garbage = {.domain = "a.test", .cert_pem = "not a certificate", .key_pem = ka};
    CHECK(ptc_dp_snapshot_build(NULL, &r, 1, &garbage, 1, err, sizeof(err)) == NULL);

    ptc_dp_cert certs[] = {{.domain = "a.test", .cert_pem = ca, .key_pem = ka},
                           {.domain = "*.w.test", .cert_pem = cw, .key_pem = kw}};
    ptc_dp_snapshot *s = ptc_dp_snapshot_build(NULL, &r, 1, certs, 2, err, sizeof(err));
    CHECK(s != NULL);
    SSL_CTX *a = ptc_snap_cert_pick(s, "a.test");
    CHECK(a != NULL);
    CHECK(ptc_snap_cert_pick(s, "A.TEST.") == a);
    SSL_CTX *w = ptc_snap_cert_pick(s, "x.w.test");
    CHECK(w != NULL && w != a);
    CHECK(ptc_snap_cert_pick(s, "w.test") == NULL);     /* a wildcard needs a label */
    CHECK(ptc_snap_cert_pick(s, "y.x.w.test") == NULL); /* ...and only one */
    CHECK(ptc_snap_cert_pick(s, "b.test") == NULL);
    CHECK(ptc_snap_cert_pick(s, NULL) == NULL);

    /* The same PEMs in the next snapshot share the parsed context. */
    ptc_dp_snapshot *s2 = ptc_dp_snapshot_build(NULL, &r, 1, certs, 2, err, sizeof(err));
    CHECK(ptc_snap_cert_pick(s2, "a.test") == a);
    /* Route metric indices are stable across snapshots. */
    size_t plen;
    const ptc_str a_test = ptc_str_make("a.test", 6), slash = ptc_str_make("/", 1);
    CHECK_INT(ptc_snap_route_match(s, a_test, slash, &plen)->stat_idx,
              ptc_snap_route_match(s2, a_test, slash, &plen)->stat_idx);
    ptc_dp_snapshot_discard(s2);

    /* A snapshot built from the previous one shares what it keeps: the
     * compiled route and the context, which outlive the snapshot that made
     * them. */
    ptc_dp_route kept = {.keep = 1}, changed = r;
    changed.name = "c";
    changed.domain = "c.test";
    ptc_dp_route next[] = {kept, changed};
    ptc_dp_cert next_certs[] = {{.domain = "a.test", .keep = 1}};
    ptc_dp_snapshot *s3 = ptc_dp_snapshot_build(s, next, 2, next_certs, 1, err, sizeof(err));
    CHECK(s3 != NULL);
    CHECK(s3->cells[0] == s->cells[0] && s3->cells[1] != s->cells[0]);
    ptc_dp_snapshot_discard(s);
    const ptc_snap_route *hit =
        ptc_snap_route_match(s3, ptc_str_make("a.test", 6), ptc_str_make("/x", 2), &plen);
    CHECK(hit != NULL && strcmp(hit->name, "r") == 0 && strcmp(hit->upstreams[0].label, "127.0.0.1:9") == 0);
    hit = ptc_snap_route_match(s3, ptc_str_make("c.test", 6), ptc_str_make("/", 1), &plen);
    CHECK(hit != NULL && strcmp(hit->name, "c") == 0);
    CHECK(ptc_snap_cert_pick(s3, "a.test") == a);
    /* Keeping what no previous snapshot has is refused. */
    ptc_dp_route stray = {.keep = 3};
    CHECK(ptc_dp_snapshot_build(s3, &stray, 1, NULL, 0, err, sizeof(err)) == NULL);
    CHECK(ptc_dp_snapshot_build(NULL, &kept, 1, NULL, 0, err, sizeof(err)) == NULL);
    ptc_dp_snapshot_discard(s3);
    free(ca), free(ka), free(cw), free(kw), free(cb), free(kb);
}

static void test_health_balancing_metrics_and_stop(void)
{
    upstream u1, u2;
    upstream_start(&u1, "one");
    upstream_start(&u2, "two");
    unsigned port = t_free_port();
    char listen_on[64], err[512], body[256];
    snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%u", port);
    ptc_dp_config cfg = {.http_listen = listen_on, .https_listen = "", .workers = 2, .access_log = ""};
    ptc_dataplane *dp = ptc_dataplane_create(&cfg, err, sizeof(err));
    CHECK(dp != NULL);
    CHECK_INT(ptc_dataplane_start(dp), 0);
    /* Before the first publish: every Host is unknown. */
    CHECK_INT(get(port, "h.test", body, sizeof(body)), 404);
    CHECK(strstr(body, "ROUTE_NOT_FOUND") != NULL);

    ptc_dp_upstream ups[] = {{"127.0.0.1", u1.port, 1}, {"localhost", u2.port, 1}};
    ptc_dp_route r = {
        .name = "health", .domain = "h.test", .path_prefix = "/", .upstreams = ups, .n_upstreams = 2};
    ptc_dp_snapshot *s = ptc_dp_snapshot_build(NULL, &r, 1, NULL, 0, err, sizeof(err));
    CHECK(s != NULL);
    uint64_t g1 = ptc_dataplane_publish(dp, s);
    CHECK_INT(get(port, "h.test", body, sizeof(body)), 200);

    /* Unhealthy upstreams get no traffic; none left: 503. */
    CHECK_INT(ptc_dp_upstream_set_healthy("127.0.0.1", u1.port, false), 0);
    /* A verdict about an address no route names yet is kept for later. */
    CHECK_INT(ptc_dp_upstream_set_healthy("127.0.0.2", 9, false), 0);
    int before = atomic_load(&u1.hits);
    for (int i = 0; i < 6; i++) {
        CHECK_INT(get(port, "h.test", body, sizeof(body)), 200);
        CHECK_STR(body, "two");
    }
    CHECK_INT(atomic_load(&u1.hits), before);
    CHECK_INT(ptc_dp_upstream_set_healthy("localhost", u2.port, false), 0);
    CHECK_INT(get(port, "h.test", body, sizeof(body)), 503);
    CHECK(strstr(body, "NO_HEALTHY_UPSTREAM") != NULL);
    /* Back to healthy: both serve again. */
    ptc_dp_upstream_set_healthy("127.0.0.1", u1.port, true);
    ptc_dp_upstream_set_healthy("localhost", u2.port, true);
    int one = 0, two = 0;
    for (int i = 0; i < 8; i++) {
        CHECK_INT(get(port, "h.test", body, sizeof(body)), 200);
        one += strcmp(body, "one") == 0;
        two += strcmp(body, "two") == 0;
    }
    CHECK(one > 0 && two > 0);

    /* A republished snapshot keeps the verdicts of its upstreams' cells
     * and gets the next generation. */
    ptc_dp_upstream_set_healthy("127.0.0.1", u1.port, false);
    ptc_dp_snapshot *s2 = ptc_dp_snapshot_build(NULL, &r, 1, NULL, 0, err, sizeof(err));
    uint64_t g2 = ptc_dataplane_publish(dp, s2);
    CHECK_INT(g2, g1 + 1);
    for (int i = 0; i < 4; i++) {
        CHECK_INT(get(port, "h.test", body, sizeof(body)), 200);
        CHECK_STR(body, "two");
    }

    /* The address judged before any route named it: no traffic. */
    ptc_dp_upstream later = {"127.0.0.2", 9, 1};
    ptc_dp_route r2 = {
        .name = "later", .domain = "l.test", .path_prefix = "/", .upstreams = &later, .n_upstreams = 1};
    ptc_dp_route both[] = {r, r2};
    ptc_dp_snapshot *s3 = ptc_dp_snapshot_build(NULL, both, 2, NULL, 0, err, sizeof(err));
    uint64_t g3 = ptc_dataplane_publish(dp, s3);
    CHECK_INT(get(port, "l.test", body, sizeof(body)), 503);
    char longhost[300];
    memset(longhost, 'a', sizeof(longhost) - 1);
    longhost[sizeof(longhost) - 1] = '\0';
    CHECK_INT(ptc_dp_upstream_set_healthy(longhost, 1, false), -EINVAL);

    ptc_buf m = PTC_BUF_INIT;
    ptc_dataplane_metrics(dp, &m);
    const char *text = ptc_buf_cstr(&m);
    CHECK(strstr(text, "portico_requests_total{route=\"health\",code=\"200\"} 19") != NULL);
    CHECK(strstr(text, "portico_requests_total{route=\"health\",code=\"503\"} 1") != NULL);
    CHECK(strstr(text, "portico_requests_total{route=\"later\",code=\"503\"} 1") != NULL);
    CHECK(strstr(text, "portico_requests_total{route=\"\",code=\"404\"} 1") != NULL);
    CHECK(strstr(text, "portico_upstream_latency_seconds_count{route=\"health\"} 19") != NULL);
    char gen[64];
    snprintf(gen, sizeof(gen), "portico_snapshot_generation %llu\n", (unsigned long long)g3);
    CHECK(strstr(text, gen) != NULL);
    CHECK(strstr(text, "portico_workers 2\n") != NULL);
    ptc_buf_free(&m);

    ptc_dataplane_stop(dp, 1000);
    CHECK_INT(get(port, "h.test", body, sizeof(body)), -1); /* the listeners are gone */
    ptc_dataplane_destroy(dp);
    upstream_stop(&u1);
    upstream_stop(&u2);
}

static int ejected;
static char ejected_what[64];
static void on_ejected(void *arg, const char *host, unsigned port, const char *reason)
{
    (void)reason;
    ejected++;
    snprintf(ejected_what, sizeof(ejected_what), "%s %s:%u", (const char *)arg, host, port);
}

static void test_passive_ejection(void)
{
    upstream live;
    upstream_start(&live, "live");
    unsigned port = t_free_port(), dead = t_free_port();
    char listen_on[64], err[512], body[256], want[64];
    snprintf(listen_on, sizeof(listen_on), "127.0.0.1:%u", port);
    ptc_dp_config cfg = {.http_listen = listen_on, .https_listen = "", .workers = 2, .access_log = ""};
    ptc_dataplane *dp = ptc_dataplane_create(&cfg, err, sizeof(err));
    CHECK_INT(ptc_dataplane_start(dp), 0);
    ptc_dataplane_set_passive_listener(dp, on_ejected, "tag");
    ptc_dp_upstream ups[] = {{"127.0.0.1", live.port, 1}, {"127.0.0.1", dead, 1}};
    ptc_dp_route r = {
        .name = "passive", .domain = "p.test", .path_prefix = "/", .upstreams = ups, .n_upstreams = 2};
    ptc_dataplane_publish(dp, ptc_dp_snapshot_build(NULL, &r, 1, NULL, 0, err, sizeof(err)));
    /* Every other request goes to the refusing upstream until the third
     * failure in a row; then it gets none. */
    int bad = 0;
    for (int i = 0; i < 12; i++)
        bad += get(port, "p.test", body, sizeof(body)) == 502;
    CHECK_INT(bad, PTC_DP_PASSIVE_FAILURES);
    CHECK_INT(ejected, 1);
    snprintf(want, sizeof(want), "tag 127.0.0.1:%u", dead);
    CHECK_STR(ejected_what, want);
    /* Back only through the checks' verdict. */
    ptc_dp_upstream_set_healthy("127.0.0.1", dead, true);
    bad = 0;
    for (int i = 0; i < 8; i++)
        bad += get(port, "p.test", body, sizeof(body)) == 502;
    CHECK_INT(bad, PTC_DP_PASSIVE_FAILURES);
    CHECK_INT(ejected, 2);
    /* Cleared: no more calls. */
    ptc_dataplane_set_passive_listener(dp, NULL, NULL);
    ptc_dp_upstream_set_healthy("127.0.0.1", dead, true);
    for (int i = 0; i < 8; i++)
        get(port, "p.test", body, sizeof(body));
    CHECK_INT(ejected, 2);
    ptc_dataplane_stop(dp, 1000);
    ptc_dataplane_destroy(dp);
    upstream_stop(&live);
}

static int pick_calls;
static SSL_CTX *g_cert_ctx;
static SSL_CTX *pick(SSL *ssl, const char *name, void *arg)
{
    (void)ssl;
    (void)arg;
    pick_calls++;
    return name && strcmp(name, "t.test") == 0 ? g_cert_ctx : NULL;
}

/* Handshakes over a memory BIO pair; returns 1 when it resumed, 0 when
 * not, -1 when it failed.  *out receives the client's session. */
static int handshake(SSL_CTX *server, SSL_CTX *client, const char *sni, SSL_SESSION *in, SSL_SESSION **out)
{
    SSL *s = SSL_new(server), *c = SSL_new(client);
    BIO *sb, *cb;
    BIO_new_bio_pair(&sb, 0, &cb, 0);
    SSL_set_bio(s, sb, sb);
    SSL_set_bio(c, cb, cb);
    SSL_set_accept_state(s);
    SSL_set_connect_state(c);
    if (sni)
        SSL_set_tlsext_host_name(c, sni);
    if (in)
        SSL_set_session(c, in);
    int done = 0, rc = -1;
    for (int i = 0; i < 100 && done != 3; i++) {
        if (!(done & 1) && SSL_do_handshake(c) == 1)
            done |= 1;
        if (!(done & 2) && SSL_do_handshake(s) == 1)
            done |= 2;
    }
    if (done == 3) {
        /* TLS 1.3 tickets arrive after the handshake: move them over. */
        char byte;
        SSL_write(s, "x", 1);
        SSL_read(c, &byte, 1);
        rc = SSL_session_reused(c) ? 1 : 0;
        if (out)
            *out = SSL_get1_session(c);
        /* A session that ends without close_notify is not resumable. */
        SSL_shutdown(c);
        SSL_shutdown(s);
    }
    SSL_free(s);
    SSL_free(c);
    return rc;
}

static void test_tls_sni_and_ticket_rotation(void)
{
    char err[256], *cert, *key;
    make_cert("t.test", &cert, &key);
    SSL_CTX *server = ptc_tls_server_ctx_new(pick, NULL, err, sizeof(err));
    g_cert_ctx = ptc_tls_cert_ctx_get(cert, key, err, sizeof(err));
    CHECK(server != NULL && g_cert_ctx != NULL);
    SSL_CTX *client = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_session_cache_mode(client, SSL_SESS_CACHE_CLIENT);

    CHECK_INT(handshake(server, client, "nope.test", NULL, NULL), -1); /* no certificate: refused */
    CHECK_INT(handshake(server, client, NULL, NULL, NULL), -1);
    SSL_SESSION *sess = NULL, *next = NULL, *copy;
    CHECK_INT(handshake(server, client, "t.test", NULL, &sess), 0);
    /* TLS 1.3 sessions are single-use on the client: each try gets a copy
     * of the first ticket. */
    copy = SSL_SESSION_dup(sess);
    CHECK_INT(handshake(server, client, "t.test", copy, &next), 1);
    SSL_SESSION_free(copy);
    /* A resumed TLS 1.3 connection gets a ticket of its own, so a client
     * goes on resuming rather than falling back to a full handshake. */
    const unsigned char *t1, *t2;
    size_t t1_len, t2_len;
    SSL_SESSION_get0_ticket(sess, &t1, &t1_len);
    SSL_SESSION_get0_ticket(next, &t2, &t2_len);
    CHECK(t2_len > 0 && (t1_len != t2_len || memcmp(t1, t2, t1_len) != 0));
    SSL_SESSION *after = NULL;
    CHECK_INT(handshake(server, client, "t.test", next, &after), 1);
    SSL_SESSION_free(after);
    SSL_SESSION_free(next);
    /* A ticket outlives two key rotations, not three. */
    ptc_tls_ticket_keys_rotate();
    ptc_tls_ticket_keys_rotate();
    copy = SSL_SESSION_dup(sess);
    CHECK_INT(handshake(server, client, "t.test", copy, &next), 1);
    SSL_SESSION_free(copy);
    SSL_SESSION_free(next);
    ptc_tls_ticket_keys_rotate();
    copy = SSL_SESSION_dup(sess);
    CHECK_INT(handshake(server, client, "t.test", copy, &next), 0);
    SSL_SESSION_free(copy);
    SSL_SESSION_free(next);
    CHECK(pick_calls >= 6);

    SSL_SESSION_free(sess);
    SSL_CTX_free(client);
    ptc_tls_cert_ctx_release(g_cert_ctx);
    SSL_CTX_free(server);
    free(cert);
    free(key);
}

/* Request ids: 32 lower-case hex digits, none repeated, every digit about
 * as often as the others (the 128 random bits all show). */
static int cmp_id(const void *a, const void *b)
{
    return memcmp(a, b, 33);
}

static void test_request_ids(void)
{
    enum { N = 4096 };
    static ptc_worker w;
    static char ids[N][33];
    size_t seen[16] = {0};
    w.rng[0] = 0x9e3779b97f4a7c15ull;
    w.rng[1] = 42;
    for (size_t i = 0; i < N; i++) {
        ptc_worker_request_id(&w, ids[i]);
        CHECK_INT(strlen(ids[i]), 32);
        for (size_t j = 0; j < 32; j++) {
            char c = ids[i][j];
            bool digit = c >= '0' && c <= '9', letter = c >= 'a' && c <= 'f';
            CHECK(digit || letter);
            if (digit || letter)
                seen[digit ? c - '0' : c - 'a' + 10]++;
        }
    }
    /* Expected N * 32 / 16 = 8192 each; a bias in the digit table would be
     * far outside 10%. */
    for (int d = 0; d < 16; d++)
        CHECK(seen[d] > 8192 * 9 / 10 && seen[d] < 8192 * 11 / 10);
    qsort(ids, N, sizeof(ids[0]), cmp_id);
    for (size_t i = 1; i < N; i++)
        CHECK(strcmp(ids[i - 1], ids[i]) != 0);
}

int main(void)
{
    RUN(test_request_ids);
    RUN(test_snapshot_build_errors_and_certs);
    RUN(test_health_balancing_metrics_and_stop);
    RUN(test_passive_ejection);
    RUN(test_tls_sni_and_ticket_rotation);
    TEST_EXIT();
}
