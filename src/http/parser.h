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

#define PTC_HTTP_MAX_HEADERS 100         /* more: 431 */
#define PTC_HTTP_MAX_REQUEST_LINE 8192   /* longer: 414 */
#define PTC_HTTP_MAX_HEAD 32768          /* whole head larger: 431 */
#define PTC_HTTP_MAX_FIELD_LINE 8192     /* one header line longer: 431 */

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
    PTC_HTTP_FORM_ORIGIN,   /* /path?query */
    PTC_HTTP_FORM_ABSOLUTE, /* http://host/path?query */
    PTC_HTTP_FORM_AUTHORITY,/* host:port (CONNECT only; we answer 405) */
    PTC_HTTP_FORM_ASTERISK, /* * (OPTIONS only) */
} ptc_http_target_form;

typedef struct ptc_http_header {
    ptc_str name;  /* as received (a token) */
    ptc_str value; /* leading and trailing white space removed */
} ptc_http_header;

/* Why a head was refused: the status to answer and a short reason for the
 * log and the JSON error body.  After an error the connection is closed. */
typedef struct ptc_http_error {
    int status;         /* 400, 405, 414, 417, 431, 501, 505 */
    const char *reason; /* static text, e.g. "both Content-Length and Transfer-Encoding" */
} ptc_http_error;

typedef struct ptc_http_request {
    ptc_http_method method;
    ptc_str method_name;
    ptc_str target;    /* the request-target exactly as received */
    ptc_http_target_form form;
    ptc_str path;      /* the path part of target (absolute-form: after the authority; "/" if empty) */
    ptc_str query;     /* after '?' (without it) */
    bool has_query;
    ptc_str authority; /* absolute-form: the target's authority, which wins over Host (RFC 9112 §3.2.2);
                          else the Host header's value */
    int minor_version; /* HTTP/1.0 or HTTP/1.1 */
    ptc_http_header headers[PTC_HTTP_MAX_HEADERS];
    size_t n_headers;
    /* Message framing, decided here once so that nobody re-derives it. */
    int64_t content_length; /* -1 when absent */
    bool chunked;           /* Transfer-Encoding: chunked */
    bool keep_alive;        /* persistence after version default and Connection */
    bool expect_continue;   /* Expect: 100-continue */
    bool upgrade;           /* HTTP/1.1 with Upgrade and "upgrade" in Connection */
    ptc_str upgrade_value;  /* the Upgrade header's value when upgrade is set */
    size_t head_len;        /* bytes of the head, final CRLF CRLF included */
} ptc_http_request;

typedef struct ptc_http_response {
    int status;
    ptc_str reason;
    int minor_version;
    ptc_http_header headers[PTC_HTTP_MAX_HEADERS];
    size_t n_headers;
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool close_delimited;   /* body runs to the upstream's EOF */
    bool bodyless;          /* HEAD, 1xx, 204, 304: no body whatever the headers say */
    bool keep_alive;        /* the upstream connection may be reused after this response */
    size_t head_len;
} ptc_http_response;

/* Incremental search for the end of a head.  *scan holds where the previous
 * call stopped (start it at 0) and must be kept by the caller between calls
 * on the same, growing buffer.  Returns the head length (> 0) once CRLF CRLF
 * is found, 0 when more bytes are needed, or -1 with err set when the bytes
 * so far can never form a valid head: a bare LF or CR (400), a request line
 * over PTC_HTTP_MAX_REQUEST_LINE (414, only when is_request), a field line
 * over PTC_HTTP_MAX_FIELD_LINE or a head over PTC_HTTP_MAX_HEAD (431). */
long ptc_http_scan_head(const char *buf, size_t len, size_t *scan, bool is_request, ptc_http_error *err);

/* Parses a complete request head (buf[0..len) holds at least head_len
 * bytes as found by ptc_http_scan_head).  Returns 0, or -1 with err set.
 * Rejects (status in parentheses): unknown version (505), method not a
 * token (400), CONNECT (405), bad request-target (400), header syntax
 * (400: space before colon, obs-fold, CTL/NUL/bare CR in a value, empty
 * name), too many headers (431), missing/duplicate/invalid Host (400),
 * Content-Length and Transfer-Encoding together (400), invalid or
 * conflicting Content-Length (400; "5, 5" is read as 5), Transfer-Encoding
 * other than exactly "chunked" (501 for unknown codings like identity or
 * gzip alone, 400 for lists, duplicates or HTTP/1.0), Expect other than
 * 100-continue (417). */
int ptc_http_parse_request(const char *buf, size_t len, ptc_http_request *req, ptc_http_error *err);

/* Parses a complete response head from an upstream, given the method of
 * the request it answers (HEAD makes any response bodyless).  Returns 0, or
 * -1 (the proxy answers 502 and drops the upstream connection): bad status
 * line, header syntax as for requests, Content-Length with
 * Transfer-Encoding, invalid Content-Length, Transfer-Encoding whose last
 * coding is not chunked. */
int ptc_http_parse_response(const char *buf, size_t len, ptc_http_method req_method, ptc_http_response *res,
                            ptc_http_error *err);

/* The first header named name (case-insensitive), or NULL. */
const ptc_http_header *ptc_http_find_header(const ptc_http_header *h, size_t n, const char *name);

#endif
