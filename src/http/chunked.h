/* The chunked transfer coding (RFC 9112 §7.1): an incremental decoder that
 * works in place and a tiny encoder.  The decoder is strict: chunk sizes
 * are bare hex (no sign, no 0x, no white space, at most 16 digits with no
 * overflow), every line ends in CRLF (bare LF or CR is an error),
 * extensions are bounded and dropped, trailer fields are bounded, checked
 * and dropped (never merged into the head). */
#ifndef PTC_HTTP_CHUNKED_H
#define PTC_HTTP_CHUNKED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PTC_HTTP_CHUNK_EXT_MAX 4096 /* bytes of extensions per chunk line, the first ';' included */
#define PTC_HTTP_TRAILER_MAX 16384  /* bytes of trailer fields */

typedef struct ptc_http_chunked {
    int state; /* private */
    uint64_t
        remaining; /* data bytes left in the current chunk (while a size line is read: the size so far) */
    size_t count;  /* private: bytes of the current size line, extension or trailer */
    bool done;     /* the last chunk and the trailer section were read */
} ptc_http_chunked;

void ptc_http_chunked_init(ptc_http_chunked *c);

/* Decodes buf[0..len) in place: the data bytes found are moved to the front
 * of buf.  Returns the number of data bytes (>= 0) and sets *consumed to
 * the input bytes used (less than len only when c->done became true: the
 * rest belongs to the next message), or returns -1 on a framing error
 * (answer 400, or drop the upstream connection).  Errors are sticky; once
 * done, further calls consume nothing.  Any split of the input gives the
 * same result, down to one byte per call. */
ssize_t ptc_http_chunked_decode(ptc_http_chunked *c, char *buf, size_t len, size_t *consumed);

/* Writes the size line for a chunk of n data bytes ("%zx\r\n") and a NUL
 * into out (at least 19 bytes) and returns its length (without the NUL).  The caller sends the data,
 * then "\r\n"; the last chunk is "0\r\n\r\n". */
size_t ptc_http_chunk_head(char *out, size_t n);

#endif
