/* Request-target and Host normalisation.  One normal form is used both to
 * route and to forward, so that what portico matched is what the upstream
 * sees (research/reliability.md §2 rows 15-17). */
#ifndef PTC_HTTP_URI_H
#define PTC_HTTP_URI_H

#include <stddef.h>
#include <sys/types.h>

/* Normalises an origin-form path (without the query): percent-encoded
 * unreserved characters are decoded (%2E is a dot, %7E a tilde), other
 * escapes keep their encoding with upper-case hex (%2F never becomes a
 * slash), runs of slashes collapse to one, dot segments are removed (RFC
 * 3986 §5.2.4).  The result is its own normal form.  Writes at most
 * len + 1 bytes (NUL included) to out.  Returns the new length, or -1
 * (answer 400) for: not starting with '/', a malformed or NUL escape (%,
 * %z1, %00), a raw byte outside RFC 3986's pchar set and '/' ('#', '?',
 * space, CTL, DEL, non-ASCII, backslash, '"', '<', '>', '`', '{', '}'),
 * except '[', ']', '^' and '|', which browsers send unencoded; a dot
 * segment that climbs above the root; a dot segment with a ';' parameter
 * ("..;x", ".;x"), which Tomcat-style back ends resolve as a dot segment
 * after routing. */
ssize_t ptc_http_normalize_path(const char *path, size_t len, char *out);

/* Validates a Host header value or absolute-form authority (reg-name,
 * IPv4 or [IPv6], optional :port) and writes the lower-cased host without
 * port or trailing dot to out, NUL-terminated; an IPv6 literal keeps its
 * brackets ("[::1]").  outlen >= 256 is always enough: longer hosts are
 * refused.  *port is 0 without a port.  Returns 0, or -1 (answer 400):
 * empty, a byte outside ALPHA DIGIT '-' '.' '_' in a reg-name (so
 * userinfo a@b, a slash, a comma, white space, percent-escapes), an empty
 * label ("a..b", ".a"), a label over 63 or a name over 253 bytes, a bad
 * port (empty, 0, > 65535, not 1-5 digits), a bad IPv6 literal (zone
 * identifiers and IPvFuture included), or out too small. */
int ptc_http_parse_host(const char *p, size_t len, char *out, size_t outlen, unsigned *port);

#endif
