/* String slices: a pointer and a length into a buffer owned by someone else
 * (h2o's iovec).  Parsers hand these out instead of copying. */
#ifndef PTC_STR_H
#define PTC_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

typedef struct ptc_str {
    const char *p;
    size_t len;
} ptc_str;

#define PTC_STR_LIT(s) ((ptc_str){(s), sizeof(s) - 1})

static inline ptc_str ptc_str_make(const char *p, size_t len)
{
    return (ptc_str){p, len};
}

static inline bool ptc_str_eq(ptc_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && memcmp(a.p, lit, n) == 0;
}

/* Whether a[0..n) and b[0..n) are equal but for ASCII case.  Inline, not
 * strncasecmp(3): the data plane compares a few field names per header,
 * and the locale-aware library call cost 1% of a worker's time. */
static inline bool ptc_ascii_ieq(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];
        if (x == y)
            continue;
        x |= 0x20; /* 'A'..'Z' -> 'a'..'z'; a letter only then */
        if (x != (y | 0x20) || x < 'a' || x > 'z')
            return false;
    }
    return true;
}

/* ASCII case-insensitive comparison with a C string. */
static inline bool ptc_str_ieq(ptc_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && ptc_ascii_ieq(a.p, lit, n);
}

#endif
