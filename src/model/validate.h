/* Validation of every user value that can end up inside a web server's
 * configuration or on the wire (DESIGN §2.1).  Allow-lists only: a value is
 * accepted when every character is one the rule names, never because it
 * lacks a known-bad one.  Pure functions, no allocation. */
#ifndef PTC_MODEL_VALIDATE_H
#define PTC_MODEL_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>

#define PTC_NAME_MAX 63
#define PTC_DOMAIN_MAX 253
#define PTC_PATH_MAX 1024

/* ^[a-z0-9][a-z0-9_-]{0,62}$ */
bool ptc_valid_name(const char *s);

/* An RFC 1123 host name: labels of 1-63 [a-z0-9-] not starting or ending
 * with '-', at most 253 characters, no trailing dot, not an IP literal (a
 * last label of digits only is refused); with allow_wildcard, one leading
 * "*." is accepted.  The caller lower-cases first: upper case is refused
 * here.  Returns NULL when valid, else a static reason. */
const char *ptc_check_domain(const char *s, bool allow_wildcard);

/* True for an IPv4 or IPv6 literal (IPv6 without brackets). */
bool ptc_is_ip_literal(const char *s);

/* An upstream host: a host name by ptc_check_domain (no wildcard, either
 * case) or an IP literal.  Returns NULL when valid, else a static reason. */
const char *ptc_check_upstream_host(const char *s);

/* A path prefix or health-check path: starts with '/', only RFC 3986
 * unreserved characters and '/', no "..", no "//", at most PTC_PATH_MAX
 * bytes.  Returns NULL when valid, else a static reason. */
const char *ptc_check_path(const char *s);

/* A plausible e-mail for an ACME contact: local@domain with conservative
 * characters.  Returns NULL when valid, else a static reason. */
const char *ptc_check_email(const char *s);

#endif
