/* Allocation helpers.  portico's policy (h2o's): running out of memory is
 * fatal, so callers never test for NULL; every size that comes from the
 * network or the API is bounded before it reaches an allocator. */
#ifndef PTC_MEM_H
#define PTC_MEM_H

#include <stddef.h>

/* Each aborts the process with a log line when the allocation fails. */
void *ptc_xmalloc(size_t size);
void *ptc_xcalloc(size_t n, size_t size);
void *ptc_xrealloc(void *p, size_t size);
char *ptc_xstrdup(const char *s);
char *ptc_xstrndup(const char *s, size_t n);
/* printf into a new string (caller frees). */
char *ptc_xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
