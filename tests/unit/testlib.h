/* A tiny assertion helper for the unit tests (one executable per module):
 * CHECK* record a failure and go on, RUN prints one line per test, and
 * TEST_EXIT() makes the process exit non-zero when anything failed. */
#ifndef PTC_TESTLIB_H
#define PTC_TESTLIB_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int t_failures;

#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);                         \
            t_failures++;                                                                                    \
        }                                                                                                    \
    } while (0)

#define CHECK_INT(got, want)                                                                                 \
    do {                                                                                                     \
        long long g_ = (long long)(got), w_ = (long long)(want);                                             \
        if (g_ != w_) {                                                                                      \
            fprintf(stderr, "%s:%d: %s == %lld, want %lld\n", __FILE__, __LINE__, #got, g_, w_);             \
            t_failures++;                                                                                    \
        }                                                                                                    \
    } while (0)

#define CHECK_STR(got, want)                                                                                 \
    do {                                                                                                     \
        const char *g_ = (got), *w_ = (want);                                                                \
        if (g_ == NULL || w_ == NULL ? g_ != w_ : strcmp(g_, w_) != 0) {                                     \
            fprintf(stderr, "%s:%d: %s == \"%s\", want \"%s\"\n", __FILE__, __LINE__, #got,                  \
                    g_ ? g_ : "(null)", w_ ? w_ : "(null)");                                                 \
            t_failures++;                                                                                    \
        }                                                                                                    \
    } while (0)

#define RUN(fn)                                                                                              \
    do {                                                                                                     \
        int before_ = t_failures;                                                                            \
        fn();                                                                                                \
        printf("%s %s\n", t_failures == before_ ? "ok  " : "FAIL", #fn);                                     \
    } while (0)

#define TEST_EXIT() return t_failures ? 1 : 0

/* A free TCP port on 127.0.0.1 for a server the test starts, never one
 * this process was given before: the kernel may hand out again a port
 * that was just released, and two servers told the same port collide
 * (pebble's and its challenge server's management ports once did). */
static inline unsigned t_free_port(void)
{
    static unsigned given[256];
    static size_t n_given;
    for (;;) {
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(a);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return 0;
        int ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
                 getsockname(fd, (struct sockaddr *)&a, &len) == 0;
        close(fd);
        if (!ok)
            return 0;
        unsigned port = ntohs(a.sin_port);
        int seen = 0;
        for (size_t i = 0; i < n_given && !seen; i++)
            seen = given[i] == port;
        if (seen)
            continue;
        if (n_given < sizeof(given) / sizeof(given[0]))
            given[n_given++] = port;
        return port;
    }
}

#endif
