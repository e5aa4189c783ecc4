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

void *ptc_spare_take(ptc_spare *sp, size_t size, size_t *got)
{
    pthread_mutex_lock(&sp->lock);
    void *block = sp->block;
    size_t have = sp->size;
    sp->block = NULL;
    sp->size = 0;
    pthread_mutex_unlock(&sp->lock);
    if (block != NULL && (have < size || have / 2 > size)) {
        free(block);
        block = NULL;
    }
    if (block == NULL) {
        have = size + size / 8;
        block = ptc_xmalloc(have);
    }
    *got = have;
    return block;
}

void ptc_spare_put(ptc_spare *sp, void *block, size_t size)
{
    if (block == NULL)
        return;
    pthread_mutex_lock(&sp->lock);
    void *old = sp->block;
    sp->block = block;
    sp->size = size;
    pthread_mutex_unlock(&sp->lock);
    free(old);
}

void ptc_spare_drop(ptc_spare *sp)
{
    pthread_mutex_lock(&sp->lock);
    void *block = sp->block;
    sp->block = NULL;
    sp->size = 0;
    pthread_mutex_unlock(&sp->lock);
    free(block);
}
