/* A growable byte buffer, always kept NUL-terminated so that text built in
 * it can be used as a C string. */
#ifndef PTC_BUF_H
#define PTC_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ptc_buf {
    char *data; /* NULL until the first append; then NUL-terminated */
    size_t len;
    size_t cap;
} ptc_buf;

#define PTC_BUF_INIT                                                                                         \
    {                                                                                                        \
        NULL, 0, 0                                                                                           \
    }

void ptc_buf_reserve(ptc_buf *b, size_t extra);
void ptc_buf_append(ptc_buf *b, const void *p, size_t n);
void ptc_buf_append_str(ptc_buf *b, const char *s);
void ptc_buf_appendf(ptc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Decimal digits, without printf. */
void ptc_buf_append_u64(ptc_buf *b, uint64_t v);
void ptc_buf_append_i64(ptc_buf *b, int64_t v);
/* Appends s as a JSON string literal, quotes included. */
void ptc_buf_append_json_str(ptc_buf *b, const char *s);
/* The contents as a C string ("" when empty); stays owned by the buffer. */
const char *ptc_buf_cstr(const ptc_buf *b);
/* Hands the contents to the caller (free() it) and empties the buffer. */
char *ptc_buf_detach(ptc_buf *b);
void ptc_buf_reset(ptc_buf *b);
void ptc_buf_free(ptc_buf *b);

#endif
