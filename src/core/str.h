/* String slices: a pointer and a length into a buffer owned by someone else
 * (h2o's iovec).  Parsers hand these out instead of copying. */
#ifndef PTC_STR_H
#define PTC_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

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

/* ASCII case-insensitive comparison with a C string. */
static inline bool ptc_str_ieq(ptc_str a, const char *lit)
{
    size_t n = strlen(lit);
    return a.len == n && strncasecmp(a.p, lit, n) == 0;
}

#endif
