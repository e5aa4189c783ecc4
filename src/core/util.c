/* Small utilities (see util.h). */
#include "core/util.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/str.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t ptc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ptc_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec ptc_deadline_ms(clockid_t clock, int64_t ms)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static char *put_digits(char *at, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        at[i] = (char)('0' + v % 10);
    return at + width;
}

/* Every log line and every listed proxy formats times: the calendar is
 * computed here (days to civil date, proleptic Gregorian) rather than
 * through gmtime_r and snprintf, which cost more than the rest of a line. */
void ptc_time_format(int64_t ms, char *out, size_t outlen)
{
    int64_t secs = ms >= 0 ? ms / 1000 : -((999 - ms) / 1000);
    int64_t days = secs >= 0 ? secs / 86400 : -((86399 - secs) / 86400);
    unsigned msec = (unsigned)(ms - secs * 1000), sod = (unsigned)(secs - days * 86400);
    /* Shifted to 0000-03-01, so that the leap day ends a year. */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    int64_t year = (int64_t)yoe + era * 400 + (month <= 2);
    char text[32], *at = text;

    if (outlen == 0)
        return;
    if (year < 0 || year > 9999) {
        snprintf(out, outlen, "%s", year < 0 ? "0000-01-01T00:00:00.000Z" : "9999-12-31T23:59:59.999Z");
        return;
    }
    at = put_digits(at, (unsigned)year, 4);
    *at++ = '-';
    at = put_digits(at, month, 2);
    *at++ = '-';
    at = put_digits(at, day, 2);
    *at++ = 'T';
    at = put_digits(at, sod / 3600, 2);
    *at++ = ':';
    at = put_digits(at, sod / 60 % 60, 2);
    *at++ = ':';
    at = put_digits(at, sod % 60, 2);
    *at++ = '.';
    at = put_digits(at, msec, 3);
    *at++ = 'Z';
    size_t n = (size_t)(at - text) < outlen ? (size_t)(at - text) : outlen - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

int ptc_time_parse(const char *s, int64_t *ms)
{
    struct tm tm = {0};
    int frac = 0, consumed = 0;
    const char *rest = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (rest == NULL)
        return -EINVAL;
    if (*rest == '.') {
        if (sscanf(rest, ".%3d%n", &frac, &consumed) != 1 || consumed != 4)
            return -EINVAL;
        rest += consumed;
    }
    if (strcmp(rest, "Z") != 0)
        return -EINVAL;
    *ms = (int64_t)timegm(&tm) * 1000 + frac;
    return 0;
}

static void random_bytes(void *p, size_t n)
{
    unsigned char *b = p;
    while (n > 0) {
        ssize_t got = getrandom(b, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            abort(); /* the kernel's generator does not fail on Linux >= 3.17 */
        }
        b += got;
        n -= (size_t)got;
    }
}

void ptc_random_hex(char *out, size_t nbytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[64];
    size_t done = 0;
    while (done < nbytes) {
        size_t n = nbytes - done < sizeof(raw) ? nbytes - done : sizeof(raw);
        random_bytes(raw, n);
        for (size_t i = 0; i < n; i++) {
            out[2 * (done + i)] = hex[raw[i] >> 4];
            out[2 * (done + i) + 1] = hex[raw[i] & 15];
        }
        done += n;
    }
    out[2 * nbytes] = '\0';
}

uint64_t ptc_random_below(uint64_t bound)
{
    uint64_t r, limit;
    if (bound <= 1)
        return 0;
    limit = UINT64_MAX - UINT64_MAX % bound;
    do
        random_bytes(&r, sizeof(r));
    while (r >= limit);
    return r % bound;
}

int ptc_fsync_dir(const char *path)
{
    int rc = 0;
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (fsync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

char *ptc_path_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL)
        return ptc_xstrdup(".");
    if (slash == path)
        return ptc_xstrdup("/");
    return ptc_xstrndup(path, (size_t)(slash - path));
}

char *ptc_path_join(const char *a, const char *b)
{
    size_t la = strlen(a);
    return ptc_xasprintf("%s%s%s", a, la && a[la - 1] == '/' ? "" : "/", b);
}

int ptc_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    int rc = 0, fd = -1;
    char suffix[17];
    char *dir = ptc_path_dirname(path);
    char *tmp;

    ptc_random_hex(suffix, 8);
    tmp = ptc_xasprintf("%s.tmp-%s", path, suffix);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    /* open() applies the umask; the mode asked for is the mode wanted. */
    if (fchmod(fd, mode) != 0) {
        rc = -errno;
        goto out;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, (const char *)data + off, len - off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        rc = -errno;
        goto out;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = -errno;
        goto out;
    }
    rc = ptc_fsync_dir(dir);
out:
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        unlink(tmp);
    free(tmp);
    free(dir);
    return rc;
}

int ptc_file_read(const char *path, size_t max, char **out, size_t *len)
{
    int rc = 0;
    char *buf = NULL;
    size_t used = 0, cap = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    for (;;) {
        if (cap - used < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = ptc_xrealloc(buf, cap + 1);
        }
        ssize_t r = read(fd, buf + used, cap - used);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            rc = -errno;
            goto out;
        }
        if (r == 0)
            break;
        used += (size_t)r;
        if (used > max) {
            rc = -EFBIG;
            goto out;
        }
    }
    if (buf == NULL)
        buf = ptc_xmalloc(1);
    buf[used] = '\0';
    *out = buf;
    if (len)
        *len = used;
    buf = NULL;
out:
    free(buf);
    close(fd);
    return rc;
}

int ptc_mkdir_p(const char *path, mode_t mode)
{
    int rc = 0;
    if (path[0] == '\0')
        return -ENOENT; /* what mkdir("") says; the walk below starts at path[1] */
    char *p = ptc_xstrdup(path);
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, mode) != 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    free(p);
    return rc;
}

void ptc_str_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

bool ptc_str_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool ptc_str_equal_ct(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    size_t n = la > lb ? la : lb;
    for (size_t i = 0; i < n; i++) {
        unsigned char ca = i < la ? (unsigned char)a[i] : 0;
        unsigned char cb = i < lb ? (unsigned char)b[i] : 0;
        diff |= (unsigned char)(ca ^ cb);
    }
    return diff == 0;
}

bool ptc_str_is_base64url(const char *s, size_t len, size_t max)
{
    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '_'))
            return false;
    }
    return true;
}

size_t ptc_utf8_len(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n;
    unsigned min;
    uint32_t cp;

    if (p[0] < 0x80)
        return p[0] ? 1 : 0;
    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
        min = 0x80;
        cp = p[0] & 0x1f;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
        min = 0x800;
        cp = p[0] & 0x0f;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
        min = 0x10000;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    /* A NUL stops the walk here: it is no continuation byte. */
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

bool ptc_utf8_valid(const char *s)
{
    while (*s) {
        size_t n = ptc_utf8_len(s);
        if (n == 0)
            return false;
        s += n;
    }
    return true;
}

char *ptc_utf8_repair(const char *s)
{
    size_t len = strlen(s), k = 0;
    /* Every byte may become the three of U+FFFD. */
    char *out = ptc_xmalloc(3 * len + 1);
    while (*s) {
        size_t n = ptc_utf8_len(s);
        if (n == 0) {
            memcpy(out + k, "\xef\xbf\xbd", 3);
            k += 3;
            s++;
        } else {
            memcpy(out + k, s, n);
            k += n;
            s += n;
        }
    }
    out[k] = '\0';
    return out;
}

bool ptc_uri_password(const char *uri, size_t *off, size_t *len)
{
    const char *auth = strstr(uri, "://");
    const char *at = strrchr(uri, '@');
    const char *colon = NULL;

    if (auth != NULL && at != NULL && at > auth + 3)
        colon = memchr(auth + 3, ':', (size_t)(at - auth - 3));
    if (colon == NULL)
        return false;
    *off = (size_t)(colon + 1 - uri);
    *len = (size_t)(at - colon - 1);
    return true;
}

char *ptc_uri_mask_password(const char *uri)
{
    ptc_buf b = PTC_BUF_INIT;
    const char *p = uri;
    size_t off, len;

    if (ptc_uri_password(uri, &off, &len)) {
        ptc_buf_append(&b, uri, off);
        ptc_buf_append_str(&b, "***");
        p = uri + off + len;
    }
    /* password= as a query parameter (libpq takes any keyword there) or as
     * a key=value word: masked up to the next separator. */
    while (*p) {
        bool key_start = p == uri || p[-1] == '?' || p[-1] == '&' || p[-1] == ' ' || p[-1] == '\t';
        if (key_start && ptc_ascii_ieq(p, "password=", 9)) {
            ptc_buf_append(&b, p, 9);
            ptc_buf_append_str(&b, "***");
            p += 9;
            p += strcspn(p, "&# \t");
        } else {
            ptc_buf_append(&b, p++, 1);
        }
    }
    return ptc_buf_detach(&b);
}

int ptc_parse_int(const char *s, long long min, long long max, long long *out)
{
    char *end;
    long long v;
    if (s == NULL || *s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
        return -EINVAL;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}
