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

#endif
