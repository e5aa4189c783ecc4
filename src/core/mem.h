/* Allocation helpers.  portico's policy (h2o's): running out of memory is
 * fatal, so callers never test for NULL; every size that comes from the
 * network or the API is bounded before it reaches an allocator. */
#ifndef PTC_MEM_H
#define PTC_MEM_H

#include <pthread.h>
#include <stddef.h>

/* Each aborts the process with a log line when the allocation fails. */
void *ptc_xmalloc(size_t size);
void *ptc_xcalloc(size_t n, size_t size);
void *ptc_xrealloc(void *p, size_t size);
char *ptc_xstrdup(const char *s);
char *ptc_xstrndup(const char *s, size_t n);
/* printf into a new string (caller frees). */
char *ptc_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One freed block kept for the next user of a big, short-lived buffer
 * (a snapshot build's arrays at 10,000 routes): a run of changes reuses it
 * instead of mapping and faulting in fresh pages each time, and
 * ptc_spare_drop gives it back once changes stop.  Thread-safe; a static
 * ptc_spare starts as PTC_SPARE_INIT. */
typedef struct ptc_spare {
    pthread_mutex_t lock;
    void *block;
    size_t size;
} ptc_spare;
#define PTC_SPARE_INIT                                                                                       \
    {                                                                                                        \
        PTHREAD_MUTEX_INITIALIZER, NULL, 0                                                                   \
    }

/* A block of at least size bytes (caller owns it; *got is its real size):
 * the spare when it fits and is not more than twice as large, else a new
 * one with 1/8 room to grow (a run of changes that adds routes would
 * outgrow an exact fit every time). */
void *ptc_spare_take(ptc_spare *sp, size_t size, size_t *got);
/* Keeps block (of size bytes, from ptc_spare_take) as the spare, freeing
 * the one it replaces.  NULL is ignored. */
void ptc_spare_put(ptc_spare *sp, void *block, size_t size);
/* Frees the spare. */
void ptc_spare_drop(ptc_spare *sp);

#endif
