/* Message heads as the builtin proxy writes them: the request towards an
 * upstream, the response towards a client, and portico's own answers.
 * Pure functions over parsed heads, so that the header rules are tested
 * without sockets.
 *
 * Rules (DESIGN §5, research/reliability.md §2 row 18):
 * - framing (Content-Length, Transfer-Encoding), Host, Connection and
 *   Upgrade are always written anew, never copied;
 * - hop-by-hop headers and every header named in Connection are dropped,
 *   before portico adds its own;
 * - X-Forwarded-For, -Proto, -Host, -Port and X-Real-IP are set from the
 *   connection at the edge, whatever the client sent; when the peer is a
 *   trusted proxy, X-Forwarded-For is appended to and the others are kept
 *   when present;
 * - X-Request-ID is the request's id both ways (an upstream's own id is
 *   replaced, so that the client sees the one in the access log);
 * - Expect is answered by portico (see http1.c), never forwarded. */
#ifndef PTC_PROXY_REWRITE_H
#define PTC_PROXY_REWRITE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/str.h"
#include "http/parser.h"

typedef enum ptc_body_framing {
    PTC_BODY_NONE,    /* no body at all (bodyless response, or a request without one) */
    PTC_BODY_LENGTH,  /* Content-Length: length */
    PTC_BODY_CHUNKED, /* Transfer-Encoding: chunked */
    PTC_BODY_CLOSE,   /* the body runs to the connection's end (responses only) */
} ptc_body_framing;

typedef struct ptc_rewrite_req {
    ptc_str path; /* normalised, prefix stripped when the route says so */
    ptc_str query;
    bool has_query;
    ptc_str peer_ip;   /* the client's address as text */
    bool peer_trusted; /* the peer is in trusted_proxies */
    bool tls;          /* the client connection is HTTPS */
    unsigned local_port;
    ptc_str request_id;
    ptc_body_framing framing; /* NONE, LENGTH or CHUNKED */
    uint64_t length;
    bool websocket; /* ask the upstream to switch to WebSocket */
} ptc_rewrite_req;

/* Appends the head to send upstream for req (as parsed from the client)
 * to out: "METHOD path?query HTTP/1.1", the client's headers under the
 * rules above, then ours.  Never fails. */
void ptc_rewrite_request(ptc_buf *out, const ptc_http_request *req, const ptc_rewrite_req *info);

typedef struct ptc_rewrite_resp {
    ptc_str request_id;
    ptc_body_framing framing; /* towards the client */
    uint64_t length;          /* for PTC_BODY_LENGTH, and the Content-Length kept on HEAD/304 answers */
    bool keep_length;         /* a bodyless answer that still states its length (HEAD, 304) */
    bool close;               /* the client connection closes after this response */
    bool client_http10;       /* the client spoke HTTP/1.0: say keep-alive explicitly */
    bool security_headers;
    bool websocket; /* a 101 switching the client to WebSocket */
    ptc_str date;   /* value for Date when the upstream sent none */
} ptc_rewrite_resp;

/* Appends the head to send to the client for res (as parsed from the
 * upstream).  Never fails. */
void ptc_rewrite_response(ptc_buf *out, const ptc_http_response *res, const ptc_rewrite_resp *info);

/* Appends one of portico's own answers: the status, the JSON error body
 * {"error":{"code":…,"message":…,"details":{"request_id":…}}} (no body
 * when code is NULL), Content-Type, Content-Length, X-Request-ID, Date,
 * Connection, and location (for 301) when not NULL. */
void ptc_rewrite_own(ptc_buf *out, int status, const char *code, const char *message, ptc_str request_id,
                     ptc_str date, bool close, bool http10, ptc_str location);

/* The reason phrase portico writes for status. */
const char *ptc_rewrite_reason(int status);

/* Appends s[0..len) to out as the inside of a JSON string (no quotes). */
void ptc_rewrite_json_escape(ptc_buf *out, const char *s, size_t len);

/* True when v may be passed on as an X-Request-ID: 1 to 128 characters of
 * letters, digits and "-._:+/=". */
bool ptc_rewrite_request_id_ok(ptc_str v);

#endif
