/* Growable byte buffer (see buf.h). */
#include "core/buf.h"

#include "core/mem.h"
#include "core/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ptc_buf_reserve(ptc_buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = ptc_xrealloc(b->data, cap);
    b->cap = cap;
}

void ptc_buf_append(ptc_buf *b, const void *p, size_t n)
{
    ptc_buf_reserve(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void ptc_buf_append_str(ptc_buf *b, const char *s)
{
    ptc_buf_append(b, s, strlen(s));
}

void ptc_buf_appendf(ptc_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    /* Format once into the room there is; a second time only when the
     * text did not fit. */
    ptc_buf_reserve(b, 64);
    size_t room = b->cap - b->len;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(b->data + b->len, room, fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n >= room) {
        ptc_buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    }
    va_end(ap2);
    if (n > 0)
        b->len += (size_t)n;
    b->data[b->len] = '\0';
}

void ptc_buf_append_u64(ptc_buf *b, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[sizeof(digits) - ++n] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    ptc_buf_append(b, digits + sizeof(digits) - n, n);
}

void ptc_buf_append_i64(ptc_buf *b, int64_t v)
{
    if (v < 0) {
        ptc_buf_append(b, "-", 1);
        ptc_buf_append_u64(b, (uint64_t)0 - (uint64_t)v);
        return;
    }
    ptc_buf_append_u64(b, (uint64_t)v);
}

void ptc_buf_append_json_str(ptc_buf *b, const char *s)
{
    static const char hex[] = "0123456789abcdef";
    ptc_buf_reserve(b, strlen(s) + 2);
    ptc_buf_append(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        /* Runs of plain printable ASCII go in one copy. */
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            ptc_buf_append(b, run, (size_t)(p - run));
        if (*p == '\0')
            break;
        char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
        switch (*p) {
        case '"':
            ptc_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            ptc_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            ptc_buf_append(b, "\\n", 2);
            break;
        case '\r':
            ptc_buf_append(b, "\\r", 2);
            break;
        case '\t':
            ptc_buf_append(b, "\\t", 2);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f) {
                ptc_buf_append(b, esc, sizeof(esc));
            } else if (*p < 0x80) {
                ptc_buf_append(b, p, 1);
            } else {
                /* JSON text is UTF-8: a byte that starts no valid sequence
                 * is written as U+FFFD. */
                size_t n = ptc_utf8_len((const char *)p);
                if (n == 0) {
                    ptc_buf_append(b, "\\ufffd", 6);
                } else {
                    ptc_buf_append(b, p, n);
                    p += n - 1;
                }
            }
        }
    }
    ptc_buf_append(b, "\"", 1);
}

const char *ptc_buf_cstr(const ptc_buf *b)
{
    return b->data ? b->data : "";
}

char *ptc_buf_detach(ptc_buf *b)
{
    char *p = b->data ? b->data : ptc_xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void ptc_buf_reset(ptc_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void ptc_buf_free(ptc_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
