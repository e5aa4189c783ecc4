/* Fuzzes the chunked decoder: the input decoded in one call must give the
 * same data, consumption, completion and errors as the same input cut into
 * pieces at points derived from the input; decoded data re-encoded with
 * ptc_http_chunk_head must decode back to itself. */
#include "http/chunked.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                            \
    do {                                                                                                     \
        if (!(c))                                                                                            \
            abort();                                                                                         \
    } while (0)

typedef struct outcome {
    char *data;
    size_t len, consumed;
    bool done, error;
} outcome;

/* Decodes in[0..size) in pieces of the lengths step() gives. */
static void decode(const uint8_t *in, size_t size, uint64_t seed, size_t max_piece, outcome *o)
{
    ptc_http_chunked c;
    char *piece = malloc(size ? size : 1);
    size_t at = 0;

    ptc_http_chunked_init(&c);
    o->data = malloc(size ? size : 1);
    o->len = o->consumed = 0;
    o->done = o->error = false;
    while (at < size && !o->done) {
        size_t n = size - at;
        if (max_piece) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            size_t cut = 1 + seed % max_piece;
            if (cut < n)
                n = cut;
        }
        memcpy(piece, in + at, n);
        size_t used = 0;
        ssize_t got = ptc_http_chunked_decode(&c, piece, n, &used);
        if (got < 0) {
            o->error = true;
            break;
        }
        ASSERT(used <= n && (size_t)got <= used);
        ASSERT(used == n || c.done);
        memcpy(o->data + o->len, piece, (size_t)got);
        o->len += (size_t)got;
        o->consumed += used;
        o->done = c.done;
        at += used;
    }
    free(piece);
}

static void same(const outcome *a, const outcome *b)
{
    ASSERT(a->error == b->error);
    if (a->error)
        return;
    ASSERT(a->done == b->done && a->consumed == b->consumed && a->len == b->len);
    ASSERT(memcmp(a->data, b->data, a->len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    outcome whole, cut, bytes;
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * 0x100000001b3ull;
    seed |= 1;

    decode(data, size, 0, 0, &whole);
    ASSERT(whole.len <= whole.consumed && whole.consumed <= size);
    decode(data, size, seed, 1 + seed % 64, &cut);
    same(&whole, &cut);
    if (size <= 4096) {
        decode(data, size, seed, 1, &bytes);
        same(&whole, &bytes);
        free(bytes.data);
    }

    if (!whole.error && whole.done) {
        /* Round trip: one chunk with all the data, then the last chunk. */
        char *enc = malloc(whole.len + 32);
        size_t n = ptc_http_chunk_head(enc, whole.len);
        if (whole.len == 0)
            n = 0;
        memcpy(enc + n, whole.data, whole.len);
        n += whole.len;
        if (whole.len) {
            memcpy(enc + n, "\r\n", 2);
            n += 2;
        }
        memcpy(enc + n, "0\r\n\r\n", 5);
        n += 5;
        outcome back;
        decode((const uint8_t *)enc, n, seed, 1 + seed % 17, &back);
        ASSERT(!back.error && back.done && back.consumed == n && back.len == whole.len);
        ASSERT(memcmp(back.data, whole.data, whole.len) == 0);
        free(back.data);
        free(enc);
    }
    free(whole.data);
    free(cut.data);
    return 0;
}
