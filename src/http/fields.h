/* Header-field rules the proxy applies when it forwards a message. */
#ifndef PTC_HTTP_FIELDS_H
#define PTC_HTTP_FIELDS_H

#include "core/str.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Whether s equals lower, a lower-case literal of the same length made of
 * letters, digits, '-' and '.', but for case: a word at a time.  s must
 * hold no control byte (what the parser hands out never does): OR-ing
 * 0x20 into a byte then matches a lower-case letter only from its two
 * cases, and '-', '.' or a digit only from itself. */
static inline bool ptc_http_name_is(ptc_str s, const char *lower, size_t n)
{
    const uint64_t fold = 0x2020202020202020ull;
    uint64_t a, b;
    uint32_t x, y;
    if (s.len != n)
        return false;
    if (n >= 8) {
        for (size_t i = 0; i + 8 < n; i += 8) {
            memcpy(&a, s.p + i, 8);
            memcpy(&b, lower + i, 8);
            if ((a | fold) != b)
                return false;
        }
        memcpy(&a, s.p + n - 8, 8);
        memcpy(&b, lower + n - 8, 8);
        return (a | fold) == b;
    }
    if (n >= 4) {
        memcpy(&x, s.p, 4);
        memcpy(&y, lower, 4);
        if ((x | (uint32_t)fold) != y)
            return false;
        memcpy(&x, s.p + n - 4, 4);
        memcpy(&y, lower + n - 4, 4);
        return (x | (uint32_t)fold) == y;
    }
    for (size_t i = 0; i < n; i++)
        if ((s.p[i] | 0x20) != lower[i])
            return false;
    return true;
}
#define PTC_HTTP_NAME_IS(s, lit) ptc_http_name_is((s), (lit), sizeof(lit) - 1)

/* True when the comma-separated list value holds token (case-insensitive,
 * optional white space around items; "a, b ,c"). */
bool ptc_http_list_has(ptc_str value, const char *token);

/* True for the connection-specific headers that never cross a proxy (RFC
 * 9110 §7.6.1): Connection, Keep-Alive, Proxy-Connection, TE, Trailer,
 * Transfer-Encoding and Upgrade.  Framing and upgrade headers are written
 * anew by the proxy, never copied. */
bool ptc_http_is_hop_by_hop(ptc_str name);

/* True when name is one of the tokens listed in any Connection header of
 * headers[0..n): such headers are dropped when forwarding. */
#include "http/parser.h"

bool ptc_http_named_by_connection(const ptc_http_header *headers, size_t n, ptc_str name);

/* The options of a message's Connection headers, gathered once so that
 * each header is checked against a short list instead of every Connection
 * header again.  Hop-by-hop names are left out (those headers go anyway):
 * for "Connection: keep-alive" the list is empty. */
#define PTC_HTTP_CONN_OPTIONS_MAX 16
typedef struct ptc_http_conn_options {
    ptc_str names[PTC_HTTP_CONN_OPTIONS_MAX];
    size_t n;
    bool many; /* more than fit: ptc_http_conn_options_name asks the headers */
} ptc_http_conn_options;

void ptc_http_conn_options_collect(const ptc_http_header *headers, size_t n, ptc_http_conn_options *out);
/* Whether name is one of the options (what ptc_http_named_by_connection
 * answers, for a name that is not hop-by-hop). */
bool ptc_http_conn_options_name(const ptc_http_conn_options *o, const ptc_http_header *headers, size_t n,
                                ptc_str name);

#endif
