/* Allocation helpers: abort on out-of-memory (see mem.h). */
#include "core/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void oom(size_t size)
{
    char msg[96];
    int n =
        snprintf(msg, sizeof(msg), "{\"level\":\"fatal\",\"msg\":\"out of memory\",\"size\":%zu}\n", size);
    if (n > 0 && write(STDERR_FILENO, msg, (size_t)n) < 0) {
        /* nothing left to do */
    }
    abort();
}

void *ptc_xmalloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

void *ptc_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        oom(n * size);
    return p;
}

void *ptc_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        oom(size);
    return q;
}

char *ptc_xstrdup(const char *s)
{
    return ptc_xstrndup(s, strlen(s));
}

char *ptc_xstrndup(const char *s, size_t n)
{
    char *p = ptc_xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *ptc_xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    return s;
}
