/* A tiny assertion helper for the unit tests (one executable per module):
 * CHECK* record a failure and go on, RUN prints one line per test, and
 * TEST_EXIT() makes the process exit non-zero when anything failed. */
#ifndef PTC_TESTLIB_H
#define PTC_TESTLIB_H

#include <stdio.h>
#include <string.h>

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

#endif
