/* The HTTP/1.1 message-head parser (RFC 9110/9112): request heads from
 * clients and response heads from upstreams.  Strict by design: anything
 * that two parsers could read differently (the request-smuggling corpus of
 * research/reliability.md §2) is an error with the status to answer, never
 * a guess.  Zero-copy: every ptc_str points into the caller's buffer, which
 * must stay unchanged while the parsed message is used.  No allocation.
 *
 * Use: accumulate bytes; call ptc_http_scan_head() after each read (it
 * resumes where it stopped, so a slow client costs O(n) overall); once it
 * reports a complete head, call ptc_http_parse_request() (or _response())
 * once on those bytes. */
#ifndef PTC_HTTP_PARSER_H
#define PTC_HTTP_PARSER_H

#include "core/str.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PTC_HTTP_MAX_HEADERS 100       /* more: 431 */
#define PTC_HTTP_MAX_REQUEST_LINE 8192 /* longer: 414 */
#define PTC_HTTP_MAX_HEAD 32768        /* whole head larger: 431 */
#define PTC_HTTP_MAX_FIELD_LINE 8192   /* one header line longer: 431 */

typedef enum ptc_http_method {
    PTC_HTTP_OTHER = 0, /* a valid token we do not know: forwarded as is */
    PTC_HTTP_GET,
    PTC_HTTP_HEAD,
    PTC_HTTP_POST,
    PTC_HTTP_PUT,
    PTC_HTTP_DELETE,
    PTC_HTTP_OPTIONS,
    PTC_HTTP_PATCH,
    PTC_HTTP_TRACE,
    PTC_HTTP_CONNECT,
} ptc_http_method;

typedef enum ptc_http_target_form {
    PTC_HTTP_FORM_ORIGIN,    /* /path?query */
    PTC_HTTP_FORM_ABSOLUTE,  /* http://host/path?query */
    PTC_HTTP_FORM_AUTHORITY, /* host:port (CONNECT only; we answer 405) */
    PTC_HTTP_FORM_ASTERISK,  /* * (OPTIONS only) */
} ptc_http_target_form;

typedef struct ptc_http_header {
    ptc_str name;  /* as received (a token) */
    ptc_str value; /* leading and trailing white space removed */
} ptc_http_header;

/* Why a head was refused: the status to answer and a short reason for the
 * log and the JSON error body.  After an error the connection is closed. */
typedef struct ptc_http_error {
    int status;         /* requests: 400, 405, 414, 417, 431, 501, 505; responses: always 502 */
    const char *reason; /* static text, e.g. "both Content-Length and Transfer-Encoding" */
} ptc_http_error;

typedef struct ptc_http_request {
    ptc_http_method method;
    ptc_str method_name;
    ptc_str target; /* the request-target exactly as received */
    ptc_http_target_form form;
    ptc_str path;  /* the path part of target (absolute-form: after the authority, or a static "/"
                      when it has none; asterisk-form: "*"), not yet normalised */
    ptc_str query; /* after '?' (without it); empty when there is none */
    bool has_query;
    ptc_str authority; /* absolute-form: the target's authority, which wins over Host (RFC 9112 §3.2.2);
                          else the Host header's value; empty for HTTP/1.0 without Host.  Validated
                          with ptc_http_parse_host, but raw: host and port are its normalised form */
    char host[256];    /* authority's host as ptc_http_parse_host writes it (lower case, no port, no
                          trailing dot); "" when authority is empty */
    size_t host_len;
    unsigned port;     /* authority's port, 0 when it has none */
    int minor_version; /* HTTP/1.0 or HTTP/1.1 */
    ptc_http_header headers[PTC_HTTP_MAX_HEADERS];
    size_t n_headers;
    /* Message framing, decided here once so that nobody re-derives it. */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked (never with content_length >= 0) */
    bool keep_alive;        /* persistence after version default and Connection */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade;           /* HTTP/1.1 with Upgrade and "upgrade" in Connection */
    ptc_str upgrade_value;  /* the Upgrade header's value when upgrade is set */
    bool conn_options;      /* Connection lists more than keep-alive and upgrade (see fields.h) */
    size_t head_len;        /* bytes of the head, final CRLF CRLF included */
} ptc_http_request;

typedef struct ptc_http_response {
    int status;
    ptc_str reason;
    int minor_version;
    ptc_http_header headers[PTC_HTTP_MAX_HEADERS];
    size_t n_headers;
    int64_t content_length; /* -1 when absent; kept for HEAD and 304 (the length the body would have),
                               -1 for 1xx and 204, which may not carry one */
    bool chunked;           /* as content_length: kept for HEAD and 304, false for 1xx and 204 */
    bool close_delimited;   /* body runs to the upstream's EOF */
    bool bodyless;          /* HEAD, 1xx, 204, 304: no body whatever the headers say (check it first) */
    bool keep_alive;        /* the upstream connection may be reused after this response */
    bool conn_options;      /* Connection lists more than keep-alive and upgrade (see fields.h) */
    size_t head_len;
} ptc_http_response;

/* Incremental search for the end of a head.  *scan is opaque state saying
 * where the previous call stopped: set it to 0 before the first call for a
 * head and keep it between calls on the same, growing buffer (each byte is
 * looked at once, so feeding a byte at a time costs O(n) overall).  Returns
 * the head length (> 0) once CRLF CRLF is found, 0 when more bytes are
 * needed, or -1 with err set as soon as the bytes so far can never form a
 * valid head: a bare LF or CR (400), a request line over
 * PTC_HTTP_MAX_REQUEST_LINE (414, only when is_request), a status or field
 * line over PTC_HTTP_MAX_FIELD_LINE or a head over PTC_HTTP_MAX_HEAD (431),
 * an empty first line in a response (400).  Empty lines before a request
 * line are skipped (RFC 9112 §2.2) and counted in the head length.  Never
 * blocks, never allocates. */
long ptc_http_scan_head(const char *buf, size_t len, size_t *scan, bool is_request, ptc_http_error *err);

/* Parses a complete request head (buf[0..len) holds at least head_len
 * bytes as found by ptc_http_scan_head; the parser re-checks everything
 * itself, so any bytes are safe).  Returns 0, or -1 with err set.
 * Rejects (status in parentheses):
 * - version: "HTTP/1.0" and "HTTP/1.1" only; another HTTP/D.D (1.2, 2.0,
 *   0.9) is 505, anything else 400;
 * - request line: method not a token, not exactly one SP between the
 *   parts, a target byte outside VCHAR or a '#' (400); longer than
 *   PTC_HTTP_MAX_REQUEST_LINE (414); CONNECT (405);
 * - request-target: origin-form ("/..."), absolute-form with an http or
 *   https scheme and a valid authority, "*" for OPTIONS only; anything else,
 *   e.g. authority-form or "*" with GET, is 400;
 * - field syntax (400): space before the colon, obs-fold or white space
 *   before a name, empty name, a name not a token, CTL/NUL/DEL/bare CR or
 *   LF in a value (HTAB and obs-text are fine); too many fields, a field
 *   line or head over its limit (431);
 * - Host (400): missing in HTTP/1.1, duplicated, or invalid for
 *   ptc_http_parse_host ("a, b", "a@b", "a/b", "a:99999", empty) - checked
 *   even when an absolute-form target wins;
 * - Content-Length (400): invalid ("+5", "-1", "0x5", "5 5", empty, more
 *   than 18 digits), or on two lines even when equal; "5, 5" is read as 5;
 * - Transfer-Encoding: with Content-Length (400, whatever the coding), in
 *   HTTP/1.0 (400), on two lines or a list ("chunked, chunked", "gzip,
 *   chunked": 400), a registered coding that is not chunked (gzip, x-gzip,
 *   deflate, compress, x-compress: 400, the length cannot be known), any
 *   other token (identity, xchunked: 501), not a token (400); only a lone
 *   "chunked" (any case) is accepted;
 * - Content_Length or Transfer_Encoding fields (400): such names only ever
 *   serve to smuggle through back ends that read '_' as '-';
 * - Upgrade on two lines (400);
 * - Expect other than 100-continue (417); 100-continue is ignored in
 *   HTTP/1.0 (RFC 9110 §10.1.1). */
int ptc_http_parse_request(const char *buf, size_t len, ptc_http_request *req, ptc_http_error *err);

/* Parses a complete response head from an upstream, given the method of
 * the request it answers (HEAD makes any response bodyless).  Returns 0, or
 * -1 with err->status 502 (the proxy answers 502 and drops the upstream
 * connection): a status line other than "HTTP/1.0|1.1 SP DDD [SP reason]"
 * with DDD in 100-599, field syntax and limits as for requests (obs-fold
 * included), Content-Length with Transfer-Encoding, an invalid or repeated
 * Content-Length, Transfer-Encoding in HTTP/1.0, and any Transfer-Encoding
 * but a lone "chunked" (stricter than "the last coding is chunked": the
 * proxy re-writes framing headers, so it could not pass "gzip, chunked" on
 * faithfully).  Without Content-Length or chunked, a response that may
 * have a body is close-delimited (and never keep_alive). */
int ptc_http_parse_response(const char *buf, size_t len, ptc_http_method req_method, ptc_http_response *res,
                            ptc_http_error *err);

/* The first header named name (case-insensitive), or NULL. */
const ptc_http_header *ptc_http_find_header(const ptc_http_header *h, size_t n, const char *name);

#endif
