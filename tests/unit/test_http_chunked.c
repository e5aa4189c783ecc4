/* The chunked decoder and encoder (research/reliability.md §2 rows 7-8):
 * good streams fed whole, split at every byte boundary and one byte at a
 * time; every malformed framing; bounds; back-to-back messages. */
#include "http/chunked.h"

#include "testlib.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What decoding the whole of in[0..len) in one call gives. */
typedef struct result {
    char data[1 << 17];
    size_t data_len;
    size_t consumed;
    bool done;
    bool error;
} result;

static result r1, r2;

static void decode_pieces(const char *in, size_t len, const size_t *cuts, size_t n_cuts, result *r)
{
    ptc_http_chunked c;
    static char piece[1 << 17];
    size_t at = 0;

    ptc_http_chunked_init(&c);
    memset(r, 0, sizeof(*r));
    for (size_t k = 0; k <= n_cuts && !r->done && !r->error; k++) {
        size_t to = k < n_cuts ? cuts[k] : len;
        size_t n = to - at, used = 0;
        memcpy(piece, in + at, n);
        ssize_t got = ptc_http_chunked_decode(&c, piece, n, &used);
        if (got < 0) {
            r->error = true;
            break;
        }
        CHECK(used <= n);
        CHECK((size_t)got <= used);
        if (used < n)
            CHECK(c.done);
        memcpy(r->data + r->data_len, piece, (size_t)got);
        r->data_len += (size_t)got;
        r->consumed += used;
        r->done = c.done;
        at = to;
    }
}

static void decode_whole(const char *in, size_t len, result *r)
{
    decode_pieces(in, len, NULL, 0, r);
}

static bool same(const result *a, const result *b)
{
    if (a->error || b->error)
        return a->error == b->error;
    return a->done == b->done && a->consumed == b->consumed && a->data_len == b->data_len &&
           memcmp(a->data, b->data, a->data_len) == 0;
}

/* Decodes s whole, split in two at every boundary, and one byte at a time,
 * and checks that all agree.  Returns the data, "ERR" on an error or
 * "MORE" when the stream is unfinished. */
static const char *decode_all_ways(const char *s, size_t len)
{
    static char text[1 << 17];
    size_t *cuts = malloc((len + 1) * sizeof(size_t));

    decode_whole(s, len, &r1);
    for (size_t k = 0; k <= len; k++) {
        decode_pieces(s, len, &k, 1, &r2);
        if (!same(&r1, &r2)) {
            fprintf(stderr, "split at %zu differs\n", k);
            CHECK(false);
            break;
        }
    }
    for (size_t k = 0; k < len; k++)
        cuts[k] = k + 1;
    decode_pieces(s, len, cuts, len ? len - 1 : 0, &r2);
    CHECK(same(&r1, &r2));
    free(cuts);
    if (r1.error)
        return "ERR";
    if (!r1.done)
        return "MORE";
    memcpy(text, r1.data, r1.data_len);
    text[r1.data_len] = '\0';
    return text;
}

#define DECODE(lit) decode_all_ways((lit), sizeof(lit) - 1)

static void test_single_chunk(void)
{
    CHECK_STR(DECODE("5\r\nhello\r\n0\r\n\r\n"), "hello");
    CHECK_INT(r1.consumed, 15);
    CHECK_STR(DECODE("0\r\n\r\n"), "");
    CHECK_STR(DECODE("a\r\n0123456789\r\n0\r\n\r\n"), "0123456789");
    CHECK_STR(DECODE("A\r\n0123456789\r\n0\r\n\r\n"), "0123456789");
    CHECK_STR(DECODE("0005\r\nhello\r\n0000\r\n\r\n"), "hello");
    CHECK_STR(DECODE("0000000000000005\r\nhello\r\n0\r\n\r\n"), "hello");
    /* Data bytes are opaque: CR, LF, NUL inside are data. */
    CHECK_STR(DECODE("4\r\n\r\n\r\n\r\n0\r\n\r\n"), "\r\n\r\n");
}

static void test_multi_chunk(void)
{
    CHECK_STR(DECODE("5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n"), "hello world");
    CHECK_STR(DECODE("1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n"), "abc");
}

static void test_unfinished(void)
{
    CHECK_STR(DECODE(""), "MORE");
    CHECK_STR(DECODE("5\r\nhel"), "MORE");
    CHECK_STR(DECODE("5\r\nhello\r\n0\r\n"), "MORE");
    CHECK_STR(DECODE("FFFFFFFFFFFFFFFF\r\nabc"), "MORE"); /* the largest size is legal */
    CHECK_INT(r1.data_len, 3);
}

static void test_extensions_dropped(void)
{
    CHECK_STR(DECODE("5;a=b\r\nhello\r\n0\r\n\r\n"), "hello"); /* row 8 */
    CHECK_STR(DECODE("5;a=\"q s\";b\r\nhello\r\n0;last\r\n\r\n"), "hello");
    CHECK_STR(DECODE("5;\t\xff\r\nhello\r\n0\r\n\r\n"), "hello");
}

static void test_extension_bounds(void)
{
    static char s[PTC_HTTP_CHUNK_EXT_MAX + 64];
    size_t n = 0;
    s[n++] = '1';
    s[n++] = ';';
    memset(s + n, 'x', PTC_HTTP_CHUNK_EXT_MAX - 1); /* ';' plus this: exactly the bound */
    n += PTC_HTTP_CHUNK_EXT_MAX - 1;
    memcpy(s + n, "\r\nz\r\n0\r\n\r\n", 10);
    CHECK_STR(decode_all_ways(s, n + 10), "z");
    s[n] = 'x';
    memcpy(s + n + 1, "\r\nz\r\n0\r\n\r\n", 10);
    CHECK_STR(decode_all_ways(s, n + 11), "ERR");

    /* A 64 KiB extension (row 8) is cut off at the bound. */
    size_t big = 65536 + 16;
    char *b = malloc(big);
    memset(b, 'e', big);
    b[0] = '1';
    b[1] = ';';
    ptc_http_chunked c;
    size_t used;
    ptc_http_chunked_init(&c);
    CHECK_INT(ptc_http_chunked_decode(&c, b, big, &used), -1);
    CHECK(used <= PTC_HTTP_CHUNK_EXT_MAX + 2);
    free(b);
}

static void test_extension_bad_bytes(void)
{
    CHECK_STR(DECODE("5;a\rb\r\nhello\r\n0\r\n\r\n"), "ERR"); /* row 7: CR in an extension */
    CHECK_STR(DECODE("5;a\nb\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5;a\0b\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5;a\x7f\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5;a\x0b\r\nhello\r\n0\r\n\r\n"), "ERR");
}

static void test_trailers_dropped(void)
{
    /* Row 8: trailer fields are checked and dropped, never merged. */
    CHECK_STR(DECODE("5\r\nhello\r\n0\r\nContent-Length: 99\r\nHost: evil\r\n\r\n"), "hello");
    CHECK_INT(r1.consumed, sizeof("5\r\nhello\r\n0\r\nContent-Length: 99\r\nHost: evil\r\n\r\n") - 1);
    CHECK_STR(DECODE("0\r\nX-Sum: \t abc \xff\r\nY:\r\n\r\n"), "");
}

static void test_trailer_bad_syntax(void)
{
    CHECK_STR(DECODE("0\r\nA: 1\r\n b\r\n\r\n"), "ERR"); /* obs-fold */
    CHECK_STR(DECODE("0\r\n A: 1\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\n: x\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nA B: 1\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nA : 1\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nABC\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nA: 1\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nA: 1\rx\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nA: \x01\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\nA: \0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("0\r\n\r\r"), "ERR");
    CHECK_STR(DECODE("0\r\n\n"), "ERR");
}

static void test_trailer_bound(void)
{
    size_t n = PTC_HTTP_TRAILER_MAX + 64;
    char *s = malloc(n);
    memcpy(s, "0\r\nX: ", 6);
    memset(s + 6, 'v', n - 6);
    ptc_http_chunked c;
    size_t used;
    ptc_http_chunked_init(&c);
    CHECK_INT(ptc_http_chunked_decode(&c, s, n, &used), -1);
    CHECK(used <= PTC_HTTP_TRAILER_MAX + 3);
    free(s);
}

static void test_size_syntax(void)
{
    /* Row 7. */
    CHECK_STR(DECODE("FFFFFFFFFFFFFFFFF1\r\n"), "ERR");
    CHECK_STR(DECODE("00000000000000005\r\nhello\r\n0\r\n\r\n"), "ERR"); /* 17 digits */
    CHECK_STR(DECODE("0x5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("+5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("-5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE(" 5\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5 \r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\t\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5 ;a\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE(";a\r\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("g\r\n"), "ERR");
    CHECK_STR(DECODE("5g\r\n"), "ERR");
}

static void test_bare_line_ends(void)
{
    CHECK_STR(DECODE("5\nhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\rhello\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhello\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhello\r0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhello\r\n0\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhello\r\n0\r\n\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhello\r\n0\r\n\r\r"), "ERR");
}

static void test_runaway_chunk(void)
{
    /* nginx body_chunked.t: the data is longer than its size line says. */
    CHECK_STR(DECODE("4\r\nSEE-THIS\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhelloX\r\n0\r\n\r\n"), "ERR");
    CHECK_STR(DECODE("5\r\nhello0\r\n\r\n"), "ERR");
}

static void test_back_to_back(void)
{
    const char s[] = "5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    CHECK_STR(DECODE(s), "hello");
    CHECK(r1.done);
    CHECK_INT(r1.consumed, 15);

    /* Two chunked bodies in one buffer, decoded one after the other. */
    char buf[] = "3\r\nabc\r\n0\r\n\r\n2\r\nde\r\n0\r\nT: 1\r\n\r\nrest";
    size_t len = sizeof(buf) - 1, used;
    ptc_http_chunked c;
    ptc_http_chunked_init(&c);
    ssize_t n = ptc_http_chunked_decode(&c, buf, len, &used);
    CHECK_INT(n, 3);
    CHECK(memcmp(buf, "abc", 3) == 0);
    CHECK(c.done);
    CHECK_INT(used, 13);
    /* Once done, the decoder takes nothing more. */
    size_t used2 = 99;
    CHECK_INT(ptc_http_chunked_decode(&c, buf + used, len - used, &used2), 0);
    CHECK_INT(used2, 0);

    char *next = buf + used;
    size_t left = len - used;
    ptc_http_chunked_init(&c);
    n = ptc_http_chunked_decode(&c, next, left, &used);
    CHECK_INT(n, 2);
    CHECK(memcmp(next, "de", 2) == 0);
    CHECK(c.done);
    CHECK_INT(left - used, 4);
    CHECK(memcmp(next + used, "rest", 4) == 0);
}

static void test_error_is_sticky(void)
{
    char buf[] = "z\r\n5\r\nhello\r\n0\r\n\r\n";
    size_t used;
    ptc_http_chunked c;
    ptc_http_chunked_init(&c);
    CHECK_INT(ptc_http_chunked_decode(&c, buf, sizeof(buf) - 1, &used), -1);
    CHECK_INT(ptc_http_chunked_decode(&c, buf + 3, sizeof(buf) - 4, &used), -1);
    CHECK(!c.done);
}

static void test_remaining_reported(void)
{
    char buf[] = "10\r\n0123";
    size_t used;
    ptc_http_chunked c;
    ptc_http_chunked_init(&c);
    CHECK_INT(ptc_http_chunked_decode(&c, buf, sizeof(buf) - 1, &used), 4);
    CHECK_INT(c.remaining, 12);
    CHECK_INT(used, 8);
}

static void test_large_stream_every_split(void)
{
    /* Many chunks of assorted sizes with extensions and a trailer. */
    static char s[1 << 16], want[1 << 15];
    size_t n = 0, w = 0;
    for (unsigned k = 1; k < 40; k++) {
        size_t sz = (k * 37) % 300 + 1;
        n += ptc_http_chunk_head(s + n, sz) - 2;
        if (k % 3 == 0) {
            memcpy(s + n, ";k=v", 4);
            n += 4;
        }
        memcpy(s + n, "\r\n", 2);
        n += 2;
        for (size_t i = 0; i < sz; i++)
            s[n++] = want[w++] = (char)('a' + (k + i) % 26);
        memcpy(s + n, "\r\n", 2);
        n += 2;
    }
    memcpy(s + n, "0\r\nT: x\r\n\r\n", 11);
    n += 11;
    want[w] = '\0';
    CHECK_STR(decode_all_ways(s, n), want);
}

static void test_encoder(void)
{
    char out[24];
    CHECK_INT(ptc_http_chunk_head(out, 0), 3);
    CHECK_STR(out, "0\r\n");
    CHECK_INT(ptc_http_chunk_head(out, 255), 4);
    CHECK_STR(out, "ff\r\n");
    CHECK_INT(ptc_http_chunk_head(out, 4096), 6);
    CHECK_STR(out, "1000\r\n");
    CHECK_INT(ptc_http_chunk_head(out, SIZE_MAX), 18);
    CHECK_STR(out, "ffffffffffffffff\r\n");

    /* What the encoder writes, the decoder reads. */
    char s[64];
    size_t n = ptc_http_chunk_head(s, 11);
    memcpy(s + n, "hello world\r\n0\r\n\r\n", 18);
    CHECK_STR(decode_all_ways(s, n + 18), "hello world");
}

int main(void)
{
    RUN(test_single_chunk);
    RUN(test_multi_chunk);
    RUN(test_unfinished);
    RUN(test_extensions_dropped);
    RUN(test_extension_bounds);
    RUN(test_extension_bad_bytes);
    RUN(test_trailers_dropped);
    RUN(test_trailer_bad_syntax);
    RUN(test_trailer_bound);
    RUN(test_size_syntax);
    RUN(test_bare_line_ends);
    RUN(test_runaway_chunk);
    RUN(test_back_to_back);
    RUN(test_error_is_sticky);
    RUN(test_remaining_reported);
    RUN(test_large_stream_every_split);
    RUN(test_encoder);
    TEST_EXIT();
}
