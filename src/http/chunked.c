/* The chunked transfer coding (see chunked.h): a byte-level state machine
 * for the framing lines and one memmove per run of data bytes. */
#include "http/chunked.h"

#include "http/chars.h"

#include <string.h>

enum {
    S_SIZE_FIRST, /* the first hex digit of a size */
    S_SIZE,       /* more hex digits, ';' or CR */
    S_EXT,        /* extension bytes up to CR */
    S_SIZE_LF,    /* the LF ending a size line */
    S_DATA,       /* remaining data bytes */
    S_DATA_CR,    /* the CRLF after the data */
    S_DATA_LF,
    S_TRAILER, /* the start of a trailer line, or the final CRLF */
    S_TRAILER_NAME,
    S_TRAILER_VALUE,
    S_TRAILER_LF,
    S_END_LF, /* the LF of the final CRLF */
    S_DONE,
    S_ERROR,
};

void ptc_http_chunked_init(ptc_http_chunked *c)
{
    memset(c, 0, sizeof(*c));
    c->state = S_SIZE_FIRST;
}

ssize_t ptc_http_chunked_decode(ptc_http_chunked *c, char *buf, size_t len, size_t *consumed)
{
    size_t i = 0, out = 0;
    int st = c->state;

    while (i < len && st != S_DONE) {
        uint8_t ch = (uint8_t)buf[i];
        switch (st) {
        case S_DATA: {
            size_t n = len - i;
            if (n > c->remaining)
                n = (size_t)c->remaining;
            if (out != i)
                memmove(buf + out, buf + i, n);
            out += n;
            i += n;
            c->remaining -= n;
            if (c->remaining == 0)
                st = S_DATA_CR;
            continue;
        }
        case S_SIZE_FIRST:
            if (!PTC_HC(ch, PTC_HC_HEX))
                goto error;
            c->remaining = ptc_http_hexval(ch);
            c->count = 1;
            st = S_SIZE;
            break;
        case S_SIZE:
            if (PTC_HC(ch, PTC_HC_HEX)) {
                /* 16 digits hold any uint64_t: more is an overflow even
                 * when they are leading zeros. */
                if (c->count++ == 16)
                    goto error;
                c->remaining = c->remaining << 4 | ptc_http_hexval(ch);
            } else if (ch == ';') {
                c->count = 1; /* the bound covers the ';' too */
                st = S_EXT;
            } else if (ch == '\r') {
                st = S_SIZE_LF;
            } else {
                goto error;
            }
            break;
        case S_EXT:
            if (ch == '\r')
                st = S_SIZE_LF;
            else if (!PTC_HC(ch, PTC_HC_VALUE) || ++c->count > PTC_HTTP_CHUNK_EXT_MAX)
                goto error;
            break;
        case S_SIZE_LF:
            if (ch != '\n')
                goto error;
            if (c->remaining == 0) {
                c->count = 0;
                st = S_TRAILER;
            } else {
                st = S_DATA;
            }
            break;
        case S_DATA_CR:
            if (ch != '\r')
                goto error; /* a chunk longer than its size says */
            st = S_DATA_LF;
            break;
        case S_DATA_LF:
            if (ch != '\n')
                goto error;
            st = S_SIZE_FIRST;
            break;
        case S_TRAILER:
            if (ch == '\r')
                st = S_END_LF;
            else if (PTC_HC(ch, PTC_HC_TCHAR))
                st = S_TRAILER_NAME;
            else
                goto error; /* obs-fold, empty name */
            break;
        case S_TRAILER_NAME:
            if (ch == ':')
                st = S_TRAILER_VALUE;
            else if (!PTC_HC(ch, PTC_HC_TCHAR))
                goto error;
            break;
        case S_TRAILER_VALUE:
            if (ch == '\r')
                st = S_TRAILER_LF;
            else if (!PTC_HC(ch, PTC_HC_VALUE))
                goto error;
            break;
        case S_TRAILER_LF:
            if (ch != '\n')
                goto error;
            st = S_TRAILER;
            break;
        case S_END_LF:
            if (ch != '\n')
                goto error;
            st = S_DONE;
            c->done = true;
            break;
        default:
            goto error;
        }
        /* Every byte of the trailer section counts against its bound. */
        if (st >= S_TRAILER && st <= S_END_LF && ++c->count > PTC_HTTP_TRAILER_MAX)
            goto error;
        i++;
    }
    c->state = st;
    *consumed = i;
    return (ssize_t)out;
error:
    c->state = S_ERROR;
    *consumed = i;
    return -1;
}

size_t ptc_http_chunk_head(char *out, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t digits = 0, len = 0;

    do {
        tmp[digits++] = hex[n & 15];
        n >>= 4;
    } while (n != 0);
    while (digits > 0)
        out[len++] = tmp[--digits];
    out[len++] = '\r';
    out[len++] = '\n';
    out[len] = '\0';
    return len;
}
