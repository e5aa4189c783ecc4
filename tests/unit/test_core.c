/* Core helpers: crash-safe writes, bounded reads, running programs with an
 * argument vector and a deadline, command templates, JSON escaping, times,
 * the spare block kept between builds. */
#include "core/buf.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/str.h"
#include "core/util.h"
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void test_atomic_write_and_read(void)
{
    char dir[] = "/tmp/portico-core-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char *path = ptc_path_join(dir, "f.conf");
    CHECK_INT(ptc_file_write_atomic(path, "one", 3, 0600), 0);
    CHECK_INT(ptc_file_write_atomic(path, "two!", 4, 0644), 0);
    struct stat st;
    CHECK_INT(stat(path, &st), 0);
    CHECK_INT(st.st_mode & 0777, 0644);
    char *data = NULL;
    size_t len = 0;
    CHECK_INT(ptc_file_read(path, 100, &data, &len), 0);
    CHECK_STR(data, "two!");
    CHECK_INT(len, 4);
    free(data);
    CHECK_INT(ptc_file_read(path, 3, &data, &len), -EFBIG);
    char *missing = ptc_path_join(dir, "nope");
    CHECK_INT(ptc_file_read(missing, 10, &data, &len), -ENOENT);
    char *deep = ptc_path_join(dir, "a/b/c");
    CHECK_INT(ptc_mkdir_p(deep, 0700), 0);
    CHECK_INT(ptc_mkdir_p(deep, 0700), 0);
    CHECK_INT(ptc_mkdir_p(path, 0700), -ENOTDIR);
    /* An empty path (a folder setting set to "") is no folder. */
    CHECK_INT(ptc_mkdir_p("", 0700), -ENOENT);
    /* A write into a folder that does not exist fails cleanly. */
    char *bad = ptc_path_join(missing, "x");
    CHECK_INT(ptc_file_write_atomic(bad, "x", 1, 0600), -ENOENT);
    unlink(path);
    char *b = ptc_path_join(dir, "a/b"), *a = ptc_path_join(dir, "a");
    rmdir(deep);
    rmdir(b);
    rmdir(a);
    rmdir(dir);
    free(a);
    free(b);
    free(bad);
    free(deep);
    free(missing);
    free(path);
}

static void test_proc_run(void)
{
    ptc_proc_result r;
    const char *echo[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    CHECK_INT(ptc_proc_run(echo, NULL, 5000, 1024, &r), 0);
    CHECK_INT(r.exit_code, 3);
    CHECK(!r.timed_out);
    CHECK(strstr(ptc_buf_cstr(&r.output), "out") && strstr(ptc_buf_cstr(&r.output), "err"));
    ptc_proc_result_free(&r);

    const char *chatty[] = {"/bin/sh", "-c", "yes | head -c 100000", NULL};
    CHECK_INT(ptc_proc_run(chatty, NULL, 5000, 1000, &r), 0);
    CHECK_INT(r.output.len, 1000);
    ptc_proc_result_free(&r);

    const char *slow[] = {"/bin/sleep", "10", NULL};
    int64_t t0 = ptc_mono_ms();
    CHECK_INT(ptc_proc_run(slow, NULL, 200, 100, &r), 0);
    CHECK(r.timed_out);
    CHECK_INT(r.term_signal, 9);
    CHECK(ptc_mono_ms() - t0 < 5000);
    ptc_proc_result_free(&r);

    const char *missing[] = {"/nonexistent/program", NULL};
    CHECK(ptc_proc_run(missing, NULL, 1000, 100, &r) != 0);
    ptc_proc_result_free(&r);
}

typedef struct stopper {
    int delay_ms;
} stopper;

static void *stop_later(void *arg)
{
    usleep((useconds_t)((stopper *)arg)->delay_ms * 1000);
    ptc_proc_stop_all();
    return NULL;
}

/* Last: portico stopping cancels every program run from then on. */
static void test_proc_stop_all(void)
{
    ptc_proc_result r;
    /* A program that shrugs off SIGTERM gets SIGKILL a second later. */
    const char *stubborn[] = {"/bin/sh", "-c", "trap '' TERM; echo started; sleep 30", NULL};
    stopper st = {300};
    pthread_t t;
    pthread_create(&t, NULL, stop_later, &st);
    int64_t t0 = ptc_mono_ms();
    CHECK_INT(ptc_proc_run(stubborn, NULL, 60000, 1024, &r), 0);
    int64_t took = ptc_mono_ms() - t0;
    pthread_join(t, NULL);
    CHECK(r.cancelled && !r.timed_out);
    CHECK(took >= 300 && took < 5000);
    CHECK(strstr(ptc_buf_cstr(&r.output), "started") != NULL);
    ptc_proc_result_free(&r);
    /* Later runs do not start. */
    const char *echo[] = {"/bin/echo", "never", NULL};
    CHECK_INT(ptc_proc_run(echo, NULL, 5000, 1024, &r), 0);
    CHECK(r.cancelled && r.output.len == 0);
    ptc_proc_result_free(&r);
}

static void test_cmd_split(void)
{
    char **argv = NULL;
    const char *nginx[] = {"/usr/sbin/nginx", "-c", "/x/nginx.conf", NULL};
    ptc_cmd_subst subst[] = {{"{nginx_bin}", nginx}};
    CHECK_INT(ptc_cmd_split("  {nginx_bin}   -s\treload ", subst, 1, &argv), 0);
    char *joined = ptc_argv_join((const char *const *)argv);
    CHECK_STR(joined, "/usr/sbin/nginx -c /x/nginx.conf -s reload");
    free(joined);
    ptc_argv_free(argv);
    /* No shell: quotes and semicolons are plain characters. */
    CHECK_INT(ptc_cmd_split("systemctl reload 'nginx;rm'", subst, 1, &argv), 0);
    CHECK_STR(argv[2], "'nginx;rm'");
    CHECK(argv[3] == NULL);
    ptc_argv_free(argv);
    CHECK_INT(ptc_cmd_split("   ", subst, 1, &argv), -EINVAL);
}

static void test_json_escape_and_time(void)
{
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_json_str(&b, "a\"b\\c\n\x01");
    CHECK_STR(ptc_buf_cstr(&b), "\"a\\\"b\\\\c\\n\\u0001\"");
    ptc_buf_free(&b);
    char t[32];
    ptc_time_format(1700000000123LL, t, sizeof(t));
    CHECK_STR(t, "2023-11-14T22:13:20.123Z");
    int64_t ms;
    CHECK_INT(ptc_time_parse(t, &ms), 0);
    CHECK_INT(ms, 1700000000123LL);
    CHECK_INT(ptc_time_parse("2023-11-14T22:13:20Z", &ms), 0);
    CHECK_INT(ms, 1700000000000LL);
    CHECK(ptc_time_parse("yesterday", &ms) != 0);
    CHECK(ptc_str_equal_ct("secret", "secret"));
    CHECK(!ptc_str_equal_ct("secret", "secreT"));
    CHECK(!ptc_str_equal_ct("secret", "secret2"));
    char hex[33];
    ptc_random_hex(hex, 16);
    CHECK_INT(strlen(hex), 32);
}

/* The calendar arithmetic agrees with gmtime_r, and the number writers
 * with printf. */
static void test_time_and_numbers(void)
{
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int64_t ms = (int64_t)(x % 7258118400000ull); /* 1970 .. 2200 */
        if (i < 4)
            ms = (int64_t[]){0, 951782400000, 4107542399999, 1700000000123}[i]; /* leap day 2000, 2100 */
        char got[32], want[64];
        ptc_time_format(ms, got, sizeof(got));
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        snprintf(want, sizeof(want), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
        if (strcmp(got, want) != 0) {
            CHECK_STR(got, want);
            break;
        }
    }
    char small[5];
    ptc_time_format(0, small, sizeof(small));
    CHECK_STR(small, "1970");

    CHECK(ptc_str_is_base64url("aZ09-_", 6, 6));
    CHECK(!ptc_str_is_base64url("aZ09-_", 6, 5)); /* longer than max */
    CHECK(!ptc_str_is_base64url("", 0, 8));
    CHECK(!ptc_str_is_base64url("a=b", 3, 8));
    CHECK(!ptc_str_is_base64url("a/b", 3, 8));
    CHECK(!ptc_str_is_base64url("a.b", 3, 8));

    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_u64(&b, 0);
    ptc_buf_append(&b, " ", 1);
    ptc_buf_append_u64(&b, UINT64_MAX);
    ptc_buf_append(&b, " ", 1);
    ptc_buf_append_i64(&b, INT64_MIN);
    ptc_buf_append(&b, " ", 1);
    ptc_buf_append_i64(&b, -42);
    CHECK_STR(ptc_buf_cstr(&b), "0 18446744073709551615 -9223372036854775808 -42");
    ptc_buf_reset(&b);
    /* appendf: text that fits the room at hand, and text that does not. */
    ptc_buf_appendf(&b, "%s-%d", "a", 1);
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    ptc_buf_appendf(&b, "[%s]", big);
    CHECK_INT(b.len, 3 + 2 + 299);
    CHECK(b.data[3] == '[' && b.data[b.len - 1] == ']' && b.data[b.len] == '\0');
    ptc_buf_free(&b);
}

static void test_utf8(void)
{
    CHECK(ptc_utf8_valid("plain, caf\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80"));
    CHECK(!ptc_utf8_valid("\xff"));
    CHECK(!ptc_utf8_valid("\xc0\xaf"));         /* overlong '/' */
    CHECK(!ptc_utf8_valid("\xed\xa0\x80"));     /* a surrogate */
    CHECK(!ptc_utf8_valid("\xf4\x90\x80\x80")); /* above U+10FFFF */
    CHECK(!ptc_utf8_valid("\xe2\x82"));         /* cut short */
    char *r = ptc_utf8_repair("ab\xff"
                              "cd\xe2\x82");
    CHECK_STR(r, "ab\xef\xbf\xbd"
                 "cd\xef\xbf\xbd\xef\xbf\xbd");
    free(r);
    r = ptc_utf8_repair("caf\xc3\xa9");
    CHECK_STR(r, "caf\xc3\xa9");
    free(r);
    /* JSON text (log lines, the API's text forms) is UTF-8 whatever the
     * value held. */
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_json_str(&b, "/proxies/ab\xff"
                                "cd/\xc3\xa9");
    CHECK_STR(ptc_buf_cstr(&b), "\"/proxies/ab\\ufffdcd/\xc3\xa9\"");
    ptc_buf_free(&b);
}

/* ASCII case folding only: letters match across case, nothing else does
 * (bytes that differ only in bit 0x20 but are not letters stay apart). */
static void test_ascii_ieq(void)
{
    CHECK(ptc_ascii_ieq("Content-Length", "content-length", 14));
    CHECK(ptc_ascii_ieq("X-REQUEST-ID", "x-request-id", 12));
    CHECK(ptc_ascii_ieq("", "", 0));
    CHECK(!ptc_ascii_ieq("Host", "Hosz", 4));
    CHECK(!ptc_ascii_ieq("@", "`", 1));
    CHECK(!ptc_ascii_ieq("[", "{", 1));
    CHECK(!ptc_ascii_ieq("\r", "-", 1));
    CHECK(!ptc_ascii_ieq("\x10", "0", 1));
    CHECK(!ptc_ascii_ieq("\xc9", "\xe9", 1)); /* not ASCII: no folding */
    CHECK(ptc_str_ieq(PTC_STR_LIT("Connection"), "connection"));
    CHECK(!ptc_str_ieq(PTC_STR_LIT("Connectio"), "connection"));
    /* Every pair of bytes agrees with strncasecmp in the C locale. */
    for (int a = 0; a < 256; a++) {
        for (int b = 0; b < 256; b++) {
            char x = (char)a, y = (char)b;
            if (ptc_ascii_ieq(&x, &y, 1) != (strncasecmp(&x, &y, 1) == 0)) {
                CHECK(false);
                return;
            }
        }
    }
}

/* A connection URI made printable: the user info's password and every
 * password= parameter masked, found whole even when it holds characters
 * it should have percent-encoded; nothing else touched. */
/* Deadlines carry the milliseconds into seconds and never point back. */
static void test_deadline(void)
{
    const clockid_t clocks[] = {CLOCK_MONOTONIC, CLOCK_REALTIME};
    const int64_t delays[] = {0, 1, 999, 1000, 1999, 60000, -5};
    for (size_t c = 0; c < 2; c++) {
        for (size_t i = 0; i < sizeof(delays) / sizeof(delays[0]); i++) {
            struct timespec before, after;
            clock_gettime(clocks[c], &before);
            struct timespec d = ptc_deadline_ms(clocks[c], delays[i]);
            clock_gettime(clocks[c], &after);
            CHECK(d.tv_nsec >= 0 && d.tv_nsec < 1000000000L);
            int64_t want = delays[i] < 0 ? 0 : delays[i];
            int64_t lo = ((int64_t)(d.tv_sec - after.tv_sec)) * 1000 + (d.tv_nsec - after.tv_nsec) / 1000000;
            int64_t hi =
                ((int64_t)(d.tv_sec - before.tv_sec)) * 1000 + (d.tv_nsec - before.tv_nsec) / 1000000;
            CHECK(hi >= want && lo <= want);
        }
    }
}

static void test_uri_mask_password(void)
{
    static const char *const cases[][2] = {
        {"postgres://portico:s3cret@db.internal:5432/portico",
         "postgres://portico:***@db.internal:5432/portico"},
        {"postgresql://u:p@ss/w@rd@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"},
        {"postgres://u:pa?ss@h/db", "postgres://u:***@h/db"},
        {"postgres://u:@h/db", "postgres://u:***@h/db"},
        {"postgres://h/db?user=u&password=xyz&sslmode=disable",
         "postgres://h/db?user=u&password=***&sslmode=disable"},
        {"postgres://h/db?PASSWORD=xyz", "postgres://h/db?PASSWORD=***"},
        {"host=h password=pw dbname=d", "host=h password=*** dbname=d"},
        {"postgres://u@h:5432/db", "postgres://u@h:5432/db"},
        {"postgres://h:5432/db", "postgres://h:5432/db"},
        {"postgres://h/db?old_password_hint=1", "postgres://h/db?old_password_hint=1"},
        {"sqlite:/var/lib/portico/portico.db", "sqlite:/var/lib/portico/portico.db"},
        {"", ""},
    };
    for (size_t i = 0; i < PTC_ARRAY_LEN(cases); i++) {
        char *m = ptc_uri_mask_password(cases[i][0]);
        CHECK_STR(m, cases[i][1]);
        free(m);
    }
    size_t off = 0, len = 0;
    CHECK(ptc_uri_password("postgres://u:p@ss@h/db", &off, &len));
    CHECK_INT(off, 13);
    CHECK_INT(len, 4);
    CHECK(!ptc_uri_password("postgres://u@h/db", &off, &len));
    CHECK(!ptc_uri_password("sqlite:a@b:c", &off, &len));
}

/* The spare comes back when it fits and is not more than twice too big;
 * otherwise a new block with room to grow. */
static void test_spare(void)
{
    ptc_spare sp = PTC_SPARE_INIT;
    size_t got;
    char *a = ptc_spare_take(&sp, 800, &got);
    CHECK_INT(got, 900);
    memset(a, 'a', got);
    ptc_spare_put(&sp, a, got);
    char *b = ptc_spare_take(&sp, 850, &got); /* fits: the same block */
    CHECK(b == a);
    CHECK_INT(got, 900);
    ptc_spare_put(&sp, b, got);
    char *c = ptc_spare_take(&sp, 1000, &got); /* too small: a new one */
    CHECK_INT(got, 1125);
    char *d = ptc_spare_take(&sp, 100, &got); /* nothing kept: new */
    CHECK_INT(got, 112);
    ptc_spare_put(&sp, c, 1125);
    ptc_spare_put(&sp, d, 112);              /* replaces c, which is freed */
    char *e = ptc_spare_take(&sp, 40, &got); /* d is more than twice too big */
    CHECK_INT(got, 45);
    ptc_spare_put(&sp, e, got);
    ptc_spare_put(&sp, NULL, 0);
    ptc_spare_drop(&sp);
    ptc_spare_drop(&sp);
}

int main(void)
{
    RUN(test_atomic_write_and_read);
    RUN(test_proc_run);
    RUN(test_cmd_split);
    RUN(test_json_escape_and_time);
    RUN(test_utf8);
    RUN(test_ascii_ieq);
    RUN(test_uri_mask_password);
    RUN(test_deadline);
    RUN(test_time_and_numbers);
    RUN(test_proc_stop_all);
    RUN(test_spare);
    TEST_EXIT();
}
