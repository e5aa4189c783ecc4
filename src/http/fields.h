/* Header-field rules the proxy applies when it forwards a message. */
#ifndef PTC_HTTP_FIELDS_H
#define PTC_HTTP_FIELDS_H

#include "core/str.h"

#include <stdbool.h>

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
