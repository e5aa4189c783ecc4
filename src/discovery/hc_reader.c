/* The health check's response reader (see hc_reader.h). */
#include "discovery/hc_reader.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

void ptc_hc_reader_init(ptc_hc_reader *r)
{
    r->head_len = 0;
    r->in_body = false;
    r->body_left = 0;
    r->interim = 0;
    r->status = 0;
    r->keep_alive = false;
    r->error[0] = '\0';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Trims optional white space around [*s, *e). */
static void trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t'))
        (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t'))
        (*e)--;
}

/* True when the comma-separated list [s, e) holds the token tok. */
static bool list_has(const char *s, const char *e, const char *tok)
{
    size_t n = strlen(tok);
    while (s < e) {
        const char *comma = memchr(s, ',', (size_t)(e - s));
        const char *end = comma ? comma : e;
        const char *a = s, *b = end;
        trim(&a, &b);
        if ((size_t)(b - a) == n && strncasecmp(a, tok, n) == 0)
            return true;
        s = comma ? comma + 1 : e;
    }
    return false;
}

typedef struct head_info {
    bool chunked_or_other; /* any Transfer-Encoding */
    bool has_length, length_bad;
    uint64_t length;
} head_info;

/* Parses the head of len bytes (ending with CRLF CRLF): status, keep-alive
 * and framing.  Returns false with r->error set when it is no HTTP/1.x
 * response head. */
static bool parse_head(ptc_hc_reader *r, size_t len, head_info *hi)
{
    const char *h = r->head, *end = r->head + len - 2; /* the last CRLF ends the header section */
    memset(hi, 0, sizeof(*hi));
    if (len < 16 || memcmp(h, "HTTP/1.", 7) != 0 || (h[7] != '0' && h[7] != '1') || h[8] != ' ' ||
        !is_digit(h[9]) || !is_digit(h[10]) || !is_digit(h[11]) || (h[12] != ' ' && h[12] != '\r')) {
        snprintf(r->error, sizeof(r->error), "the answer is not an HTTP/1.x response");
        return false;
    }
    r->status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    if (r->status < 100) {
        snprintf(r->error, sizeof(r->error), "the answer has an invalid status %d", r->status);
        return false;
    }
    r->keep_alive = h[7] == '1';
    const char *line = memchr(h, '\n', len);
    /* Anything odd in the header section (NUL, bare LF, folded lines,
     * lines without a colon) leaves the status as it is but makes the
     * framing untrustworthy: the connection is not reused. */
    if (memchr(h, '\0', len) != NULL)
        r->keep_alive = false;
    while (line && line + 1 < end) {
        const char *s = line + 1;
        const char *nl = memchr(s, '\n', (size_t)(end + 2 - s));
        if (nl == NULL || nl == s || nl[-1] != '\r') {
            r->keep_alive = false;
            break;
        }
        const char *e = nl - 1;
        line = nl;
        if (*s == ' ' || *s == '\t') {
            r->keep_alive = false;
            continue;
        }
        const char *colon = memchr(s, ':', (size_t)(e - s));
        if (colon == NULL || colon == s) {
            r->keep_alive = false;
            continue;
        }
        size_t nlen = (size_t)(colon - s);
        const char *v = colon + 1, *ve = e;
        trim(&v, &ve);
        if (nlen == 14 && strncasecmp(s, "content-length", 14) == 0) {
            uint64_t n = 0;
            bool ok = v < ve && ve - v <= 18;
            for (const char *c = v; ok && c < ve; c++) {
                ok = is_digit(*c);
                n = n * 10 + (uint64_t)(*c - '0');
            }
            if (!ok || (hi->has_length && hi->length != n))
                hi->length_bad = true;
            hi->has_length = true;
            hi->length = n;
        } else if (nlen == 17 && strncasecmp(s, "transfer-encoding", 17) == 0) {
            hi->chunked_or_other = true;
        } else if (nlen == 10 && strncasecmp(s, "connection", 10) == 0) {
            if (list_has(v, ve, "close"))
                r->keep_alive = false;
        }
    }
    return true;
}

ptc_hc_step ptc_hc_reader_feed(ptc_hc_reader *r, const char *p, size_t n)
{
    while (n > 0) {
        if (r->in_body) {
            size_t take = n < r->body_left ? n : (size_t)r->body_left;
            r->body_left -= take;
            p += take;
            n -= take;
            if (r->body_left > 0)
                return PTC_HC_MORE;
            r->in_body = false;
            if (n > 0)
                r->keep_alive = false; /* bytes nobody asked for */
            return PTC_HC_DONE;
        }
        size_t room = PTC_HC_HEAD_MAX - r->head_len, copy = n < room ? n : room;
        size_t from = r->head_len > 3 ? r->head_len - 3 : 0, end = 0;
        memcpy(r->head + r->head_len, p, copy);
        for (size_t i = from; i + 4 <= r->head_len + copy; i++)
            if (r->head[i] == '\r' && r->head[i + 1] == '\n' && r->head[i + 2] == '\r' &&
                r->head[i + 3] == '\n') {
                end = i + 4;
                break;
            }
        if (end == 0) {
            r->head_len += copy;
            p += copy;
            n -= copy;
            if (r->head_len == PTC_HC_HEAD_MAX) {
                snprintf(r->error, sizeof(r->error), "the response head is larger than %d bytes",
                         PTC_HC_HEAD_MAX);
                return PTC_HC_BAD;
            }
            continue;
        }
        size_t used = end - r->head_len;
        p += used;
        n -= used;
        head_info hi;
        if (!parse_head(r, end, &hi))
            return PTC_HC_BAD;
        r->head_len = 0;
        if (r->status < 200) {
            /* 100 Continue, 103 Early Hints: another head follows. */
            if (++r->interim > PTC_HC_INTERIM_MAX) {
                snprintf(r->error, sizeof(r->error), "more than %d interim responses", PTC_HC_INTERIM_MAX);
                return PTC_HC_BAD;
            }
            r->status = 0;
            continue;
        }
        if (r->status == 204 || r->status == 304)
            hi.has_length = hi.length_bad = hi.chunked_or_other = false;
        else if (hi.chunked_or_other || hi.length_bad || !hi.has_length || hi.length > PTC_HC_BODY_MAX)
            r->keep_alive = false; /* the status is all we need; the rest is not read */
        if (r->keep_alive && hi.has_length && hi.length > 0) {
            r->in_body = true;
            r->body_left = hi.length;
            continue;
        }
        if (n > 0)
            r->keep_alive = false;
        return PTC_HC_DONE;
    }
    return PTC_HC_MORE;
}
