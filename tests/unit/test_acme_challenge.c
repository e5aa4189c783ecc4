/* The builtin data plane's HTTP-01 responder: a challenge set by the
 * control plane is answered on the plain-HTTP listener for any Host,
 * before routing and before a route's redirect to HTTPS, as text/plain;
 * HEAD gets the head only; a cleared or unknown token falls through to the
 * routes; and what may be set is bounded. */
#include "core/mem.h"
#include "proxy/dataplane.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One request on a fresh connection; the whole answer (the server closes
 * or the 5 s receive timeout ends it). */
static char *exchange(unsigned port, const char *request)
{
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {5, 0};
    char *out = ptc_xcalloc(1, 65536);
    size_t n = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 && write(fd, request, strlen(request)) > 0) {
        ssize_t r;
        while (n < 65535 && (r = read(fd, out + n, 65535 - n)) > 0)
            n += (size_t)r;
    }
    close(fd);
    return out;
}

static char *get(unsigned port, const char *method, const char *host, const char *path)
{
    char req[512];
    snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", method, path, host);
    return exchange(port, req);
}

static void test_challenge_responder(void)
{
    unsigned http = t_free_port();
    char listen[32], err[256] = "";
    snprintf(listen, sizeof(listen), "127.0.0.1:%u", http);
    ptc_dp_config cfg = {
        .http_listen = listen, .https_listen = "", .workers = 1, .trusted_proxies = "", .access_log = ""};
    ptc_dataplane *dp = ptc_dataplane_create(&cfg, err, sizeof(err));
    CHECK(dp != NULL);
    if (dp == NULL) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    /* A route for one host that redirects plain HTTP to HTTPS. */
    ptc_dp_upstream up = {"127.0.0.1", t_free_port(), 1};
    ptc_dp_route route = {.name = "orders",
                          .domain = "orders.example.com",
                          .path_prefix = "/",
                          .upstreams = &up,
                          .n_upstreams = 1,
                          .https_only = true};
    ptc_dp_snapshot *snap = ptc_dp_snapshot_build(NULL, &route, 1, NULL, 0, err, sizeof(err));
    CHECK(snap != NULL);
    ptc_dataplane_publish(dp, snap);
    CHECK_INT(ptc_dataplane_start(dp), 0);

    CHECK_INT(ptc_dataplane_set_challenge(dp, "tok-EN_1", "tok-EN_1.thumbprint"), 0);
    /* The routed host: the challenge wins over the redirect. */
    char *r = get(http, "GET", "orders.example.com", "/.well-known/acme-challenge/tok-EN_1");
    CHECK(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    CHECK(strstr(r, "Content-Type: text/plain\r\n") != NULL);
    CHECK(strstr(r, "\r\n\r\ntok-EN_1.thumbprint") != NULL);
    free(r);
    /* Any other host too. */
    r = get(http, "GET", "unrouted.example.org", "/.well-known/acme-challenge/tok-EN_1");
    CHECK(strncmp(r, "HTTP/1.1 200 ", 13) == 0);
    free(r);
    /* HEAD: the head, no body. */
    r = get(http, "HEAD", "orders.example.com", "/.well-known/acme-challenge/tok-EN_1");
    CHECK(strncmp(r, "HTTP/1.1 200 ", 13) == 0 && strstr(r, "Content-Length: 19\r\n") != NULL);
    CHECK(strstr(r, "thumbprint") == NULL);
    free(r);
    /* Another token, or a longer path: the routes decide (301 or 404). */
    r = get(http, "GET", "orders.example.com", "/.well-known/acme-challenge/other");
    CHECK(strncmp(r, "HTTP/1.1 301 ", 13) == 0);
    free(r);
    r = get(http, "GET", "unrouted.example.org", "/.well-known/acme-challenge/tok-EN_1/x");
    CHECK(strncmp(r, "HTTP/1.1 404 ", 13) == 0);
    free(r);
    /* Setting a token again replaces its answer. */
    CHECK_INT(ptc_dataplane_set_challenge(dp, "tok-EN_1", "second"), 0);
    r = get(http, "GET", "a.example.com", "/.well-known/acme-challenge/tok-EN_1");
    CHECK(strstr(r, "\r\n\r\nsecond") != NULL);
    free(r);
    /* Cleared: gone. */
    ptc_dataplane_clear_challenge(dp, "tok-EN_1");
    r = get(http, "GET", "orders.example.com", "/.well-known/acme-challenge/tok-EN_1");
    CHECK(strncmp(r, "HTTP/1.1 301 ", 13) == 0);
    free(r);

    /* Bounds: base64url tokens, printable answers, 64 at a time. */
    CHECK_INT(ptc_dataplane_set_challenge(dp, "../etc", "x"), -EINVAL);
    CHECK_INT(ptc_dataplane_set_challenge(dp, "", "x"), -EINVAL);
    CHECK_INT(ptc_dataplane_set_challenge(dp, "t", "a\r\nX-Injected: 1"), -EINVAL);
    CHECK_INT(ptc_dataplane_set_challenge(dp, "t", ""), -EINVAL);
    char tok[16];
    for (int i = 0; i < 64; i++) {
        snprintf(tok, sizeof(tok), "t%d", i);
        CHECK_INT(ptc_dataplane_set_challenge(dp, tok, "answer"), 0);
    }
    CHECK_INT(ptc_dataplane_set_challenge(dp, "one-too-many", "answer"), -ENOSPC);
    ptc_dataplane_clear_challenge(dp, "t7");
    CHECK_INT(ptc_dataplane_set_challenge(dp, "one-too-many", "answer"), 0);
    r = get(http, "GET", "x.example.com", "/.well-known/acme-challenge/one-too-many");
    CHECK(strstr(r, "\r\n\r\nanswer") != NULL);
    free(r);

    ptc_dataplane_stop(dp, 0);
    ptc_dataplane_destroy(dp);
}

int main(void)
{
    RUN(test_challenge_responder);
    TEST_EXIT();
}
