/* Character classes and word-at-a-time scanners shared by the HTTP code
 * (internal to src/http).  One 256-byte table answers every "may this byte
 * appear here" question with a load and a mask, so the hot loops make no
 * function calls per byte. */
#ifndef PTC_HTTP_CHARS_H
#define PTC_HTTP_CHARS_H

#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

enum {
    PTC_HC_TCHAR = 0x01,  /* token (RFC 9110 §5.6.2): field names, methods, codings */
    PTC_HC_VALUE = 0x02,  /* field-value byte: HTAB, SP, VCHAR, obs-text (0x80-0xff) */
    PTC_HC_TARGET = 0x04, /* request-target byte: VCHAR except '#' */
    PTC_HC_PATH = 0x08,   /* raw path byte kept by normalisation ('%' is handled apart) */
    PTC_HC_UNRES = 0x10,  /* RFC 3986 unreserved: decoded when percent-encoded */
    PTC_HC_HOST = 0x20,   /* reg-name byte accepted in Host: ALPHA DIGIT - . _ */
    PTC_HC_HEX = 0x40,
};

extern const uint8_t ptc_http_chars[256];

#define PTC_HC(c, cls) (ptc_http_chars[(uint8_t)(c)] & (cls))

static inline unsigned ptc_http_hexval(uint8_t c)
{
    return c <= '9' ? (unsigned)c - '0' : ((unsigned)c | 0x20u) - 'a' + 10;
}

#define PTC_HC_ONES 0x0101010101010101ull
#define PTC_HC_HIGHS 0x8080808080808080ull
/* Marks the zero bytes of v.  A borrow can only mark bytes above a real zero
 * byte, so the lowest marked byte is always a real one. */
#define PTC_HC_ZEROS(v) (((v)-PTC_HC_ONES) & ~(v)&PTC_HC_HIGHS)

/* The index, in memory order, of the first byte marked in a non-zero mask
 * computed on a word loaded with memcpy. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define PTC_HC_FIRST(mask) ((size_t)__builtin_clzll(mask) / 8)
#else
#define PTC_HC_FIRST(mask) ((size_t)__builtin_ctzll(mask) / 8)
#endif

/* The first CR or LF in [p, end), or end.  One subtraction finds every
 * byte below 0x0e (CR and LF are 0x0d and 0x0a); the rare others (HTAB in
 * a field value, or a control byte the parser will refuse) are stepped
 * over. */
static inline const char *ptc_http_find_crlf(const char *p, const char *end)
{
#if defined(__SSE2__)
    /* Sixteen bytes at a time where the ISA has it (every x86-64). */
    const __m128i cr = _mm_set1_epi8('\r'), lf = _mm_set1_epi8('\n');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr), _mm_cmpeq_epi8(v, lf)));
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    for (;;) {
        while (end - p >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t mask = (v - PTC_HC_ONES * 0x0e) & ~v & PTC_HC_HIGHS;
            if (mask) {
                p += PTC_HC_FIRST(mask);
                break;
            }
            p += 8;
        }
        while (p < end && (uint8_t)*p >= 0x0e)
            p++;
        if (p == end || *p == '\r' || *p == '\n')
            return p;
        p++;
    }
}

/* The first control byte (0x00-0x1f or DEL, HTAB included) in [p, end), or
 * end: what ends or breaks a field value. */
static inline const char *ptc_http_find_ctl(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i ctl_max = _mm_set1_epi8(0x1f), del_byte = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* min(v, 0x1f) == v exactly for the bytes up to 0x1f, unsigned. */
        __m128i ctl = _mm_or_si128(_mm_cmpeq_epi8(_mm_min_epu8(v, ctl_max), v), _mm_cmpeq_epi8(v, del_byte));
        unsigned m = (unsigned)_mm_movemask_epi8(ctl);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#endif
    while (end - p >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        /* Bytes below 0x20 (the same borrow argument holds), and DEL. */
        uint64_t low = (v - PTC_HC_ONES * 0x20) & ~v & PTC_HC_HIGHS;
        uint64_t del = v ^ (PTC_HC_ONES * 0x7f);
        uint64_t mask = low | PTC_HC_ZEROS(del);
        if (mask)
            return p + PTC_HC_FIRST(mask);
        p += 8;
    }
    while (p < end && (uint8_t)*p >= 0x20 && (uint8_t)*p != 0x7f)
        p++;
    return p;
}

/* Where the run of letters, digits and '-' starting at p ends (what field
 * names are nearly always made of), found sixteen bytes at a time where
 * the ISA allows; elsewhere, and in the last 15 bytes, p is returned as it
 * is.  The caller checks the rest of a token byte by byte. */
static inline const char *ptc_http_skip_alnum_dash(const char *p, const char *end)
{
#if defined(__SSE2__)
    const __m128i fold = _mm_set1_epi8(0x20), a_1 = _mm_set1_epi8('a' - 1), z1 = _mm_set1_epi8('z' + 1);
    const __m128i d0_1 = _mm_set1_epi8('0' - 1), d91 = _mm_set1_epi8('9' + 1), dash = _mm_set1_epi8('-');
    while (end - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* Signed compares: bytes from 0x80 are negative and match nothing;
         * OR-ing 0x20 maps only the two cases of a letter onto a-z. */
        __m128i l = _mm_or_si128(v, fold);
        __m128i letter = _mm_and_si128(_mm_cmpgt_epi8(l, a_1), _mm_cmpgt_epi8(z1, l));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(v, d0_1), _mm_cmpgt_epi8(d91, v));
        __m128i ok = _mm_or_si128(_mm_or_si128(letter, digit), _mm_cmpeq_epi8(v, dash));
        unsigned m = ~(unsigned)_mm_movemask_epi8(ok) & 0xffffu;
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#else
    (void)end;
#endif
    return p;
}

#endif
