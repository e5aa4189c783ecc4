/* HTTP/1.1 on both sides of the builtin proxy: one state machine per
 * client connection, driven by client_run() after every event on the
 * client or on its upstream connection.
 *
 * Flow control is by construction: each direction reads from its source
 * into the source's input buffer only when everything read before has been
 * written to the other side, so a connection never holds more than its
 * input buffer (16 KiB, or 36 KiB while a large head is read) however
 * large or slow the bodies are.  Bodies are forwarded from the buffer they
 * were read into (no copy), chunked ones are decoded in place and framed
 * anew by portico; framing headers are never copied through.
 *
 * Decisions (research/reliability.md §2):
 * - Expect: 100-continue is answered by portico once an upstream
 *   connection is ready, and never forwarded: a client that waits sends
 *   nothing to an upstream that cannot be reached, and an upstream's own
 *   interim responses (which it may send anyway) are dropped.
 * - Requests are answered one at a time, in order; pipelined bytes wait in
 *   the input buffer.
 * - Anything the parser refuses is answered with its status, and the
 *   connection is closed: nothing of it reaches an upstream.
 * - An upstream connection is reused only after a complete, well-framed
 *   response to a completely sent request; a response cut short is cut
 *   short to the client (no final chunk, connection closed). */
#include <errno.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "http/fields.h"
#include "http/uri.h"
#include "proxy/router.h"
#include "proxy/worker.h"

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

enum { STEP_WAIT, STEP_AGAIN };

static const char CONTINUE_100[] = "HTTP/1.1 100 Continue\r\n\r\n";
static const char CRLF[] = "\r\n";
static const char LAST_CHUNK[] = "0\r\n\r\n";

static void client_run(ptc_client *c);
static void connect_upstream(ptc_exchange *x, bool fresh);

static inline int64_t now_ms(const ptc_client *c)
{
    return ptc_loop_now(c->w->loop);
}

static ptc_str xid(const ptc_exchange *x)
{
    return ptc_str_make(x->id, x->id_len);
}

/* --------------------------------------------------------------- logging */

static bool access_log_on(const ptc_worker *w)
{
    return w->cfg->access_log != NULL && w->cfg->access_log[0] != '\0';
}

/* Counts the exchange in the metrics and writes its access-log line. */
static void log_exchange(ptc_client *c, ptc_exchange *x)
{
    ptc_worker *w = c->w;
    int status = x->status ? x->status : 499;
    ptc_metrics_count(x->stats, status);
    if (!access_log_on(w))
        return;
    char ts[40];
    ptc_time_format(ptc_now_ms(), ts, sizeof(ts));
    int64_t dur = ptc_now_us() - x->t_start_us;
    ptc_buf *b = &w->alog;
    ptc_buf_appendf(b, "{\"ts\":\"%s\",\"msg\":\"access\",\"request_id\":\"%.*s\",\"client\":\"%s\",", ts,
                    (int)x->id_len, x->id, c->peer);
    if (x->log.len > 0)
        ptc_buf_append(b, x->log.data, x->log.len);
    ptc_buf_appendf(b, "\"status\":%d,\"bytes\":%llu,\"duration_ms\":%.3f,\"tls\":%s,\"worker\":%u", status,
                    (unsigned long long)x->resp_body, (double)dur / 1000.0, c->tls ? "true" : "false", w->id);
    if (x->route != NULL) {
        ptc_buf_append_str(b, ",\"route\":");
        ptc_buf_append_json_str(b, x->route->name);
    }
    if (x->up != NULL) {
        ptc_buf_append_str(b, ",\"upstream\":");
        ptc_buf_append_json_str(b, x->up->label);
    }
    ptc_buf_append_str(b, "}\n");
}

/* Remembers what the access log shows of the request, escaped now because
 * the head's bytes will not stay. */
static void capture_log(ptc_worker *w, ptc_exchange *x, const ptc_http_request *req)
{
    if (!access_log_on(w))
        return;
    ptc_buf *b = &x->log;
    ptc_buf_reset(b);
    if (req == NULL) {
        ptc_buf_append_str(b, "\"method\":null,\"host\":null,\"target\":null,");
        return;
    }
    size_t tlen = req->target.len > 4096 ? 4096 : req->target.len;
    ptc_buf_append_str(b, "\"method\":\"");
    ptc_rewrite_json_escape(b, req->method_name.p, req->method_name.len);
    ptc_buf_append_str(b, "\",\"host\":\"");
    ptc_rewrite_json_escape(b, req->authority.p, req->authority.len);
    ptc_buf_append_str(b, "\",\"target\":\"");
    ptc_rewrite_json_escape(b, req->target.p, tlen);
    ptc_buf_append_str(b, "\",");
}

/* ------------------------------------------------------ ending exchanges */

/* Ends the exchange: logs it, releases its upstream connection (into the
 * pool when reusable), unpins its snapshot and frees it. */
static void end_exchange(ptc_client *c, bool pool_upstream)
{
    ptc_worker *w = c->w;
    ptc_exchange *x = c->x;
    if (x == NULL)
        return;
    log_exchange(c, x);
    if (x->uc != NULL) {
        if (pool_upstream)
            ptc_upconn_put(w, x->uc);
        else
            ptc_upconn_close(w, x->uc);
        x->uc = NULL;
    }
    if (x->held != NULL) {
        x->held->users--;
        ptc_worker_unpin(w, x->held);
    }
    c->x = NULL;
    ptc_exchange_free(w, x);
}

void ptc_client_close(ptc_client *c)
{
    ptc_worker *w = c->w;
    if (c->state == PTC_CS_CLOSED)
        return;
    end_exchange(c, false);
    ptc_timer_cancel(w->loop, &c->pc.timer);
    if (c->pc.ssl != NULL) {
        SSL_free(c->pc.ssl);
        c->pc.ssl = NULL;
    }
    close(c->pc.io.fd);
    c->pc.io.fd = -1;
    ptc_wbuf_release(w, &c->pc.in);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->n_clients--;
    ptc_counter_sub(&w->m.clients, 1);
    c->state = PTC_CS_CLOSED;
    c->prev = NULL;
    c->next = w->retired_clients;
    w->retired_clients = c;
}

/* Closes a client after a response.  When the client may still be sending
 * (unread bytes, a body cut off, readiness not yet used up), our side is
 * half-closed and what arrives is read and dropped for a while, so that
 * unread bytes do not make the kernel reset the connection before the
 * client has read our answer; otherwise it is closed at once. */
static bool nothing_to_read(ptc_client *c)
{
    int pending = 0;
    if (c->pc.in.start != c->pc.in.end || c->pc.rdhup)
        return false;
    if (!c->pc.rd_ready)
        return true; /* the last read found the socket empty */
    /* TLS reads stop at record boundaries, so readiness is rarely used up:
     * ask the kernel (one ioctl is cheaper than lingering). */
    if (c->pc.ssl != NULL && SSL_has_pending(c->pc.ssl))
        return false;
    return ioctl(c->pc.io.fd, FIONREAD, &pending) == 0 && pending == 0;
}

static void start_linger(ptc_client *c)
{
    bool quiet = c->x == NULL || c->x->req_read;
    end_exchange(c, false);
    if (quiet && nothing_to_read(c)) {
        if (c->pc.ssl != NULL)
            SSL_shutdown(c->pc.ssl);
        ptc_client_close(c);
        return;
    }
    if (c->pc.ssl != NULL)
        SSL_shutdown(c->pc.ssl);
    shutdown(c->pc.io.fd, SHUT_WR);
    c->state = PTC_CS_LINGER;
    c->since = now_ms(c);
    c->pc.rd_ready = true;
}

/* Back to reading the next request on a kept-alive connection, unless the
 * data plane is draining and nothing more has arrived. */
static void next_request(ptc_client *c)
{
    c->state = PTC_CS_HEAD;
    c->since = now_ms(c);
    c->scan = 0;
    if (c->pc.in.start == c->pc.in.end) {
        ptc_wbuf_release(c->w, &c->pc.in);
        if (c->closing)
            ptc_client_close(c);
    }
}

/* Queues one of portico's own answers; the exchange must exist. */
static void own_answer(ptc_client *c, int status, const char *code, const char *msg, bool close,
                       ptc_str location)
{
    ptc_worker *w = c->w;
    ptc_exchange *x = c->x;
    if (x->uc != NULL) {
        ptc_upconn_close(w, x->uc);
        x->uc = NULL;
    }
    x->status = status;
    x->close_client = close || !x->keep_alive || c->closing;
    x->uq.n = 0;
    ptc_buf_reset(&x->resp_head);
    const char *date = ptc_worker_date(w);
    ptc_rewrite_own(&x->resp_head, status, code, msg, xid(x), ptc_str_make(date, strlen(date)),
                    x->close_client, x->http10, location);
    /* After anything still queued (a 100 Continue being written). */
    ptc_outq_push(&x->cq, x->resp_head.data, x->resp_head.len);
    c->state = PTC_CS_OWN;
    c->last_write = now_ms(c);
}

/* The HTTP-01 answer for token, when the control plane set one: 200
 * text/plain.  Returns false (nothing queued) when there is none. */
static bool challenge_answer(ptc_client *c, ptc_str token, bool head, bool close)
{
    ptc_worker *w = c->w;
    ptc_exchange *x = c->x;
    ptc_buf answer = PTC_BUF_INIT;
    if (!ptc_dataplane_challenge(w->dp, token, &answer))
        return false;
    x->status = 200;
    x->close_client = close || !x->keep_alive || c->closing;
    x->uq.n = 0;
    ptc_buf_reset(&x->resp_head);
    ptc_buf_appendf(&x->resp_head,
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\nDate: %s\r\n"
                    "X-Request-ID: %.*s\r\nCache-Control: no-store\r\n%s\r\n",
                    answer.len, ptc_worker_date(w), (int)x->id_len, x->id,
                    x->close_client ? "Connection: close\r\n"
                    : x->http10     ? "Connection: keep-alive\r\n"
                                    : "");
    if (!head)
        ptc_buf_append(&x->resp_head, answer.data, answer.len);
    ptc_buf_free(&answer);
    ptc_outq_push(&x->cq, x->resp_head.data, x->resp_head.len);
    c->state = PTC_CS_OWN;
    c->last_write = now_ms(c);
    return true;
}

static const char *error_code(int status)
{
    switch (status) {
    case 400:
        return "BAD_REQUEST";
    case 405:
        return "METHOD_NOT_ALLOWED";
    case 408:
        return "REQUEST_TIMEOUT";
    case 413:
        return "PAYLOAD_TOO_LARGE";
    case 414:
        return "URI_TOO_LONG";
    case 417:
        return "EXPECTATION_FAILED";
    case 431:
        return "HEADERS_TOO_LARGE";
    case 501:
        return "NOT_IMPLEMENTED";
    case 505:
        return "HTTP_VERSION_NOT_SUPPORTED";
    default:
        return "BAD_REQUEST";
    }
}

/* The upstream failed (refused, reset, timed out, or sent garbage) before
 * or during the response.  Retries an idempotent request once on a fresh
 * connection when a pooled one turned out stale; otherwise answers 502 or
 * 504 if the client has seen nothing of a response, or cuts the response
 * short. */
static void upstream_failed(ptc_client *c, int err, bool timeout, const char *what)
{
    ptc_worker *w = c->w;
    ptc_exchange *x = c->x;
    /* A stale pooled connection retried below is not the upstream's fault. */
    bool retry = !timeout && x->phase < PTC_RP_BODY && !x->resp_started && x->reused && !x->retried &&
                 x->idempotent && !x->got_bytes;

    if (!retry && x->up != NULL && ptc_snap_upstream_failed(x->up))
        ptc_dataplane_passive_down(w->dp, x->up->label, what);
    if (x->phase >= PTC_RP_BODY || x->resp_started) {
        /* The head went out: what the client got stays visibly cut short.
         * The upstream connection is kept until the queued bytes (which
         * live in its buffer) are written, then both are closed. */
        x->up_reusable = false;
        x->close_client = true;
        x->phase = PTC_RP_DONE;
        x->req_failed = true;
        x->uq.n = 0;
        x->tunnel = false;
        if (x->status == 0)
            x->status = 502;
        return;
    }
    if (x->uc != NULL) {
        ptc_upconn_close(w, x->uc);
        x->uc = NULL;
    }
    if (retry) {
        x->retried = true;
        ptc_counter_add(&w->m.upstream_retries, 1);
        x->phase = PTC_RP_WAIT;
        x->uscan = 0;
        x->interim = 0;
        x->req_sent = x->req_failed = false;
        connect_upstream(x, true);
        return;
    }
    if (ptc_log_enabled(PTC_LOG_DEBUG))
        ptc_log_debug("upstream failed", PTC_LS("upstream", x->up ? x->up->label : ""), PTC_LS("what", what),
                      PTC_LS("error", err ? strerror(-err) : ""));
    if (timeout)
        own_answer(c, 504, "UPSTREAM_TIMEOUT", "the upstream did not answer in time", !x->req_read,
                   PTC_STR_LIT(""));
    else
        own_answer(c, 502, "UPSTREAM_UNAVAILABLE",
                   "the upstream could not be reached or sent an invalid response", !x->req_read,
                   PTC_STR_LIT(""));
}

/* The request body turned out bad (chunked framing, or over the limit)
 * while it was being forwarded: the upstream has a partial request, so its
 * connection goes, and the client gets the status unless a response is
 * already on its way, in which case it is cut off. */
static void body_refused(ptc_client *c, int status, const char *msg)
{
    ptc_exchange *x = c->x;
    if (x->phase >= PTC_RP_BODY || x->resp_started) {
        if (x->status == 0)
            x->status = status;
        ptc_client_close(c);
        return;
    }
    own_answer(c, status, error_code(status), msg, true, PTC_STR_LIT(""));
}

/* ------------------------------------------------------- starting a request */

static const ptc_snap_upstream *pick_upstream(ptc_exchange *x, const ptc_snap_route *r)
{
    if (r->n_upstreams == 0)
        return NULL;
    if (r->n_upstreams == 1)
        return ptc_snap_upstream_healthy(&r->upstreams[0]) ? &r->upstreams[0] : NULL;
    ptc_route_balance *b = x->stats->balance;
    if (b == NULL || b->route != r || b->n != r->n_upstreams) {
        free(b);
        b = ptc_xcalloc(1, sizeof(*b) + r->n_upstreams * sizeof(int64_t));
        b->route = r;
        b->n = r->n_upstreams;
        x->stats->balance = b;
    }
    int64_t total = 0;
    int best = -1;
    for (uint32_t i = 0; i < r->n_upstreams; i++) {
        if (!ptc_snap_upstream_healthy(&r->upstreams[i]))
            continue;
        b->current[i] += r->upstreams[i].weight;
        total += r->upstreams[i].weight;
        if (best < 0 || b->current[i] > b->current[best])
            best = (int)i;
    }
    if (best < 0)
        return NULL;
    b->current[best] -= total;
    return &r->upstreams[best];
}

static void on_connected(ptc_exchange *x)
{
    x->phase = PTC_RP_HEAD;
    if (x->send_continue) {
        ptc_outq_push(&x->cq, CONTINUE_100, sizeof(CONTINUE_100) - 1);
        x->send_continue = false;
    }
}

static void connect_upstream(ptc_exchange *x, bool fresh)
{
    ptc_client *c = x->c;
    ptc_worker *w = c->w;
    bool reused = false;
    ptc_upconn *uc = ptc_upconn_get(w, x->up, fresh, &reused);
    if (uc == NULL) {
        upstream_failed(c, -errno, false, "connect");
        return;
    }
    uc->x = x;
    uc->n_requests++;
    x->uc = uc;
    x->reused = reused;
    x->got_bytes = false;
    x->t_up_us = ptc_now_us();
    x->last_up_io = now_ms(c);
    x->uq.n = 0;
    ptc_outq_push(&x->uq, x->req_head.data, x->req_head.len);
    if (!uc->connecting)
        on_connected(x);
}

/* Routes a complete head of head_len bytes at the start of the client's
 * buffer and starts its exchange (or answers it). */
static void start_request(ptc_client *c, size_t head_len)
{
    ptc_worker *w = c->w;
    const ptc_dp_config *cfg = w->cfg;
    ptc_exchange *x = ptc_exchange_new(w);
    ptc_http_request *req = &w->req;
    ptc_http_error perr;
    char *buf = c->pc.in.data + c->pc.in.start;

    c->x = x;
    x->c = c;
    /* Only the access log shows the duration (a clock read per request). */
    if (access_log_on(w))
        x->t_start_us = ptc_now_us();
    x->keep_alive = false;
    c->n_requests++;
    ptc_worker_refresh_snapshot(w);
    x->held = w->cur;
    x->held->users++;
    x->stats = &w->m.none;
    /* The head's bytes stay where they are until the buffer is read into
     * again, which this function never does. */
    c->pc.in.start += (uint32_t)head_len;
    c->scan = 0;

    if (ptc_http_parse_request(buf, head_len, req, &perr) < 0) {
        ptc_worker_request_id(w, x->id);
        x->id_len = 32;
        capture_log(w, x, NULL);
        own_answer(c, perr.status, error_code(perr.status), perr.reason, true, PTC_STR_LIT(""));
        return;
    }
    x->method = req->method;
    x->http10 = req->minor_version == 0;
    x->keep_alive = req->keep_alive && !c->closing;
    const ptc_http_header *rid = ptc_http_find_header(req->headers, req->n_headers, "x-request-id");
    if (rid != NULL && ptc_rewrite_request_id_ok(rid->value)) {
        memcpy(x->id, rid->value.p, rid->value.len);
        x->id_len = (uint8_t)rid->value.len;
    } else {
        ptc_worker_request_id(w, x->id);
        x->id_len = 32;
    }
    capture_log(w, x, req);

    /* An explicit "Content-Length: 0" is passed on (some upstreams answer a
     * POST without a length with 411). */
    if (req->chunked) {
        x->req_framing = PTC_BODY_CHUNKED;
        ptc_http_chunked_init(&x->req_chunked);
    } else if (req->content_length >= 0) {
        x->req_framing = PTC_BODY_LENGTH;
        x->req_left = (uint64_t)req->content_length;
    } else {
        x->req_framing = PTC_BODY_NONE;
    }
    bool has_body = req->chunked || req->content_length > 0;
    x->req_read = !has_body;

    ptc_str path = PTC_STR_LIT("/");
    if (req->form != PTC_HTTP_FORM_ASTERISK) {
        ssize_t n = ptc_http_normalize_path(req->path.p, req->path.len, w->path);
        if (n < 0) {
            own_answer(c, 400, "BAD_REQUEST", "invalid request path", true, PTC_STR_LIT(""));
            return;
        }
        path = ptc_str_make(w->path, (size_t)n);
    }
    /* HTTP-01 on the plain listener, for any Host, before routing and the
     * HTTPS redirect: the CA asks for it by name before any route exists. */
    static const char acme_prefix[] = "/.well-known/acme-challenge/";
    if (!c->tls && path.len > sizeof(acme_prefix) - 1 && path.p[1] == '.' &&
        memcmp(path.p, acme_prefix, sizeof(acme_prefix) - 1) == 0 &&
        (req->method == PTC_HTTP_GET || req->method == PTC_HTTP_HEAD) &&
        challenge_answer(c,
                         ptc_str_make(path.p + sizeof(acme_prefix) - 1, path.len - (sizeof(acme_prefix) - 1)),
                         req->method == PTC_HTTP_HEAD, has_body))
        return;
    size_t plen = 0;
    const ptc_snap_route *route =
        ptc_snap_route_match(x->held->snap, ptc_str_make(req->host, req->host_len), path, &plen);
    if (route == NULL) {
        own_answer(c, 404, "ROUTE_NOT_FOUND", "no route for this host and path", has_body, PTC_STR_LIT(""));
        return;
    }
    x->route = route;
    x->stats = ptc_metrics_route(w, route);
    if (route->https_only && !c->tls) {
        ptc_buf loc = PTC_BUF_INIT;
        unsigned hp = w->https_port ? w->https_port : 443;
        ptc_buf_appendf(&loc, "https://%s", req->host);
        if (hp != 443)
            ptc_buf_appendf(&loc, ":%u", hp);
        ptc_buf_append(&loc, path.p, path.len);
        if (req->has_query) {
            ptc_buf_append(&loc, "?", 1);
            ptc_buf_append(&loc, req->query.p, req->query.len);
        }
        own_answer(c, 301, NULL, NULL, has_body, ptc_str_make(loc.data, loc.len));
        ptc_buf_free(&loc);
        return;
    }
    x->max_body = route->max_body_size ? route->max_body_size : cfg->max_body_size;
    if (x->req_framing == PTC_BODY_LENGTH && x->req_left > x->max_body) {
        own_answer(c, 413, "PAYLOAD_TOO_LARGE", "the request body is larger than this route accepts", true,
                   PTC_STR_LIT(""));
        return;
    }
    x->websocket = req->upgrade && route->websocket && ptc_http_list_has(req->upgrade_value, "websocket");
    x->up = pick_upstream(x, route);
    if (x->up == NULL) {
        own_answer(c, 503, "NO_HEALTHY_UPSTREAM", "no healthy upstream for this route", has_body,
                   PTC_STR_LIT(""));
        return;
    }

    ptc_str fwd = route->strip_prefix ? ptc_router_strip(path, plen) : path;
    ptc_rewrite_req info = {
        .path = fwd,
        .query = req->query,
        .has_query = req->has_query,
        .peer_ip = ptc_str_make(c->peer, c->peer_len),
        .peer_trusted = c->peer_trusted,
        .tls = c->tls,
        .local_port = c->local_port,
        .request_id = xid(x),
        .framing = x->req_framing,
        .length = x->req_left,
        .websocket = x->websocket,
    };
    ptc_buf_reset(&x->req_head);
    ptc_rewrite_request(&x->req_head, req, &info);

    x->send_continue = req->expect_continue && has_body;
    x->idempotent = !has_body && (req->method == PTC_HTTP_GET || req->method == PTC_HTTP_HEAD ||
                                  req->method == PTC_HTTP_OPTIONS || req->method == PTC_HTTP_TRACE ||
                                  req->method == PTC_HTTP_PUT || req->method == PTC_HTTP_DELETE);
    x->phase = PTC_RP_WAIT;
    c->state = PTC_CS_PROXY;
    connect_upstream(x, false);
}

/* ------------------------------------------------------------- the steps */

static int step_handshake(ptc_client *c)
{
    ptc_worker *w = c->w;
    ERR_clear_error();
    int rc = SSL_do_handshake(c->pc.ssl);
    if (rc == 1) {
        ptc_counter_add(&w->m.handshakes, 1);
        if (SSL_session_reused(c->pc.ssl))
            ptc_counter_add(&w->m.resumed, 1);
        c->state = PTC_CS_HEAD;
        c->since = now_ms(c);
        /* The handshake reads whenever it is driven (an EPOLLOUT event
         * too), and reads ahead: the request may already sit in OpenSSL's
         * buffer, with no readiness edge left to announce it; or the
         * socket was found empty, and reading it again would only say
         * EAGAIN. */
        ptc_pconn_tls_readiness(&c->pc);
        return STEP_AGAIN;
    }
    if (ptc_pconn_tls_retry(&c->pc, rc))
        return STEP_WAIT;
    ptc_counter_add(&w->m.handshake_failures, 1);
    ptc_client_close(c);
    return STEP_AGAIN;
}

static int step_head(ptc_client *c)
{
    ptc_worker *w = c->w;
    ptc_wbuf *in = &c->pc.in;
    ptc_http_error err;

    for (;;) {
        if (in->data != NULL && in->end > in->start) {
            long n = ptc_http_scan_head(in->data + in->start, in->end - in->start, &c->scan, true, &err);
            if (n > 0) {
                start_request(c, (size_t)n);
                return STEP_AGAIN;
            }
            if (n < 0) {
                ptc_exchange *x = ptc_exchange_new(w);
                c->x = x;
                x->c = c;
                if (access_log_on(w))
                    x->t_start_us = ptc_now_us();
                x->stats = &w->m.none;
                ptc_worker_request_id(w, x->id);
                x->id_len = 32;
                capture_log(w, x, NULL);
                own_answer(c, err.status, error_code(err.status), err.reason, true, PTC_STR_LIT(""));
                return STEP_AGAIN;
            }
            if (in->end == in->cap && in->start == 0 && in->cap < PTC_WBUF_BIG)
                ptc_wbuf_grow(w, in);
        }
        if (!c->pc.rd_ready) {
            if (in->data != NULL && in->start == in->end)
                ptc_wbuf_release(w, in);
            return STEP_WAIT;
        }
        bool was_empty = in->data == NULL || in->start == in->end;
        ssize_t r = ptc_pconn_fill(w, &c->pc);
        if (r > 0) {
            if (was_empty)
                c->since = now_ms(c); /* the header timeout runs from the first byte */
            continue;
        }
        if (r == -EAGAIN)
            continue; /* rd_ready is now false */
        /* EOF, an error, or a full buffer the scanner did not refuse (it
         * refuses heads over the limit, so this is only defensive). */
        ptc_client_close(c);
        return STEP_AGAIN;
    }
}

/* Frames the request body bytes waiting in the client's buffer into the
 * upstream queue.  Returns -1 when the body is refused (answered). */
static int frame_request_body(ptc_client *c, ptc_exchange *x)
{
    ptc_wbuf *in = &c->pc.in;
    char *p = in->data + in->start;
    size_t avail = in->end - in->start;

    if (x->req_framing == PTC_BODY_LENGTH) {
        size_t k = avail < x->req_left ? avail : (size_t)x->req_left;
        ptc_outq_push(&x->uq, p, k);
        in->start += (uint32_t)k;
        x->req_left -= k;
        x->req_body += k;
        if (x->req_left == 0)
            x->req_read = true;
        return 0;
    }
    size_t consumed = 0;
    ssize_t n = ptc_http_chunked_decode(&x->req_chunked, p, avail, &consumed);
    if (n < 0) {
        body_refused(c, 400, "invalid chunked request body");
        return -1;
    }
    in->start += (uint32_t)consumed;
    x->req_body += (uint64_t)n;
    if (x->req_body > x->max_body) {
        body_refused(c, 413, "the request body is larger than this route accepts");
        return -1;
    }
    if (n > 0) {
        size_t hl = ptc_http_chunk_head(x->req_chunk, (size_t)n);
        ptc_outq_push(&x->uq, x->req_chunk, hl);
        ptc_outq_push(&x->uq, p, (size_t)n);
        ptc_outq_push(&x->uq, CRLF, 2);
    }
    if (x->req_chunked.done) {
        ptc_outq_push(&x->uq, LAST_CHUNK, sizeof(LAST_CHUNK) - 1);
        x->req_read = true;
    }
    return 0;
}

/* Client to upstream: the head, then the body as the client sends it.
 * Body bytes already buffered are framed before the queue is written, so
 * that a head and a small body leave in one write.  Returns 1 when
 * something moved, 0 when it waits, -1 when the exchange ended or changed
 * state (the caller must look again). */
static int pump_request(ptc_client *c, ptc_exchange *x)
{
    ptc_worker *w = c->w;
    int moved = 0;

    for (;;) {
        ptc_upconn *uc = x->uc;
        if (uc == NULL || uc->connecting || x->req_failed || x->req_sent)
            return moved;
        if (!x->req_read && c->pc.in.end > c->pc.in.start && x->uq.n <= 1) {
            if (frame_request_body(c, x) < 0)
                return -1;
            moved = 1;
        }
        if (!ptc_outq_empty(&x->uq)) {
            int r = ptc_pconn_flush(w, &uc->pc, &x->uq);
            if (r < 0) {
                /* The upstream may still answer (e.g. 413 and close):
                 * stop sending and let the response side decide. */
                x->req_failed = true;
                x->up_reusable = false;
                return 1;
            }
            if (r == 0)
                return moved;
            moved = 1;
            x->last_up_io = now_ms(c);
            continue;
        }
        if (x->req_read) {
            x->req_sent = true;
            return 1;
        }
        /* Nothing may point into the client's buffer when it is read into. */
        if (!c->pc.rd_ready)
            return moved;
        ssize_t n = ptc_pconn_fill(w, &c->pc);
        if (n > 0) {
            x->win_bytes += (uint64_t)n;
            moved = 1;
            continue;
        }
        if (n == -EAGAIN)
            return moved;
        /* The client went away in the middle of its body. */
        ptc_client_close(c);
        return -1;
    }
}

/* Parses the response head waiting in the upstream buffer and queues its
 * rewritten form for the client.  Returns 0, or -1 when the exchange
 * ended or changed state. */
static int response_head(ptc_client *c, ptc_exchange *x, size_t head_len)
{
    ptc_worker *w = c->w;
    ptc_upconn *uc = x->uc;
    ptc_http_response *res = &w->res;
    ptc_http_error err;
    ptc_wbuf *in = &uc->pc.in;

    if (ptc_http_parse_response(in->data + in->start, head_len, x->method, res, &err) < 0) {
        upstream_failed(c, 0, false, err.reason);
        return -1;
    }
    in->start += (uint32_t)head_len;
    x->uscan = 0;
    if (res->status < 200 && res->status != 101) {
        /* Interim responses are ours to give (see the top of the file). */
        if (++x->interim > PTC_MAX_INTERIM) {
            upstream_failed(c, 0, false, "too many interim responses");
            return -1;
        }
        return 0;
    }
    const char *date = ptc_worker_date(w);
    ptc_rewrite_resp info = {
        .request_id = xid(x),
        .client_http10 = x->http10,
        .security_headers = x->route->security_headers,
        .date = ptc_str_make(date, strlen(date)),
    };
    if (res->status == 101) {
        const ptc_http_header *up = ptc_http_find_header(res->headers, res->n_headers, "upgrade");
        if (!x->websocket || up == NULL || !ptc_http_list_has(up->value, "websocket")) {
            upstream_failed(c, 0, false, "101 without a WebSocket upgrade asked for");
            return -1;
        }
        info.websocket = true;
        x->tunnel = true;
        x->status = 101;
        ptc_snap_upstream_succeeded(x->up);
        x->phase = PTC_RP_DONE;
        ptc_metrics_latency(x->stats, ptc_now_us() - x->t_up_us);
        ptc_buf_reset(&x->resp_head);
        ptc_rewrite_response(&x->resp_head, res, &info);
        ptc_outq_push(&x->cq, x->resp_head.data, x->resp_head.len);
        return 0;
    }
    x->status = res->status;
    ptc_metrics_latency(x->stats, ptc_now_us() - x->t_up_us);
    ptc_snap_upstream_succeeded(x->up);
    x->up_reusable = res->keep_alive && !x->websocket;
    if (res->bodyless) {
        x->from_up = PTC_BODY_NONE;
        info.framing = PTC_BODY_NONE;
        info.keep_length = res->content_length >= 0;
        info.length = res->content_length >= 0 ? (uint64_t)res->content_length : 0;
    } else if (res->chunked) {
        x->from_up = PTC_BODY_CHUNKED;
        ptc_http_chunked_init(&x->resp_chunked);
    } else if (res->content_length >= 0) {
        x->from_up = PTC_BODY_LENGTH;
        x->resp_left = (uint64_t)res->content_length;
        info.length = x->resp_left;
    } else {
        x->from_up = PTC_BODY_CLOSE;
        x->up_reusable = false;
    }
    if (x->from_up == PTC_BODY_LENGTH)
        x->to_client = PTC_BODY_LENGTH;
    else if (x->from_up == PTC_BODY_NONE)
        x->to_client = PTC_BODY_NONE;
    else /* chunked or up to the upstream's EOF: chunked to 1.1 clients */
        x->to_client = x->http10 ? PTC_BODY_CLOSE : PTC_BODY_CHUNKED;
    info.framing = x->to_client;
    /* A request body still arriving cannot be skipped over: close after. */
    x->close_client = !x->keep_alive || c->closing || x->to_client == PTC_BODY_CLOSE || !x->req_read;
    info.close = x->close_client;
    ptc_buf_reset(&x->resp_head);
    ptc_rewrite_response(&x->resp_head, res, &info);
    ptc_outq_push(&x->cq, x->resp_head.data, x->resp_head.len);
    x->phase = PTC_RP_BODY;
    if (x->from_up == PTC_BODY_NONE || (x->from_up == PTC_BODY_LENGTH && x->resp_left == 0))
        x->phase = PTC_RP_DONE;
    return 0;
}

/* A short body that arrived with its response head is copied after the
 * head while the head is still the last thing queued: one buffer makes
 * one send(2) instead of a writev(2) of two, which costs the kernel less
 * than the copy does. */
#define COALESCE_MAX 1024
static bool coalesce_into_head(ptc_exchange *x, const char *p, size_t n)
{
    ptc_outq *q = &x->cq;
    if (n > COALESCE_MAX || q->n == 0 || q->iov[q->n - 1].iov_base != x->resp_head.data ||
        q->iov[q->n - 1].iov_len != x->resp_head.len)
        return false;
    ptc_buf_append(&x->resp_head, p, n);
    q->iov[q->n - 1] = (struct iovec){x->resp_head.data, x->resp_head.len};
    return true;
}

/* Frames the response body bytes waiting in the upstream buffer into the
 * client queue.  Returns -1 on a framing error (the response is cut). */
static int frame_response_body(ptc_client *c, ptc_exchange *x)
{
    ptc_wbuf *in = &x->uc->pc.in;
    char *p = in->data + in->start;
    size_t avail = in->end - in->start, n;

    switch (x->from_up) {
    case PTC_BODY_LENGTH:
        n = avail < x->resp_left ? avail : (size_t)x->resp_left;
        in->start += (uint32_t)n;
        x->resp_left -= n;
        if (x->resp_left == 0)
            x->phase = PTC_RP_DONE;
        break;
    case PTC_BODY_CHUNKED: {
        size_t consumed = 0;
        ssize_t d = ptc_http_chunked_decode(&x->resp_chunked, p, avail, &consumed);
        if (d < 0) {
            upstream_failed(c, 0, false, "invalid chunked response body");
            return -1;
        }
        n = (size_t)d;
        in->start += (uint32_t)consumed;
        if (x->resp_chunked.done)
            x->phase = PTC_RP_DONE;
        break;
    }
    default: /* up to EOF */
        n = avail;
        in->start += (uint32_t)n;
        break;
    }
    if (n > 0) {
        if (x->to_client == PTC_BODY_CHUNKED) {
            size_t hl = ptc_http_chunk_head(x->resp_chunk, n);
            ptc_outq_push(&x->cq, x->resp_chunk, hl);
            ptc_outq_push(&x->cq, p, n);
            ptc_outq_push(&x->cq, CRLF, 2);
        } else if (coalesce_into_head(x, p, n)) {
            /* the head and a short body go out in one send */
        } else {
            ptc_outq_push(&x->cq, p, n);
        }
        x->resp_body += n;
    }
    if (x->phase == PTC_RP_DONE && x->to_client == PTC_BODY_CHUNKED)
        ptc_outq_push(&x->cq, LAST_CHUNK, sizeof(LAST_CHUNK) - 1);
    return 0;
}

/* Upstream to client: what the upstream buffer holds is framed (head
 * and body together) before the client queue is written.  Returns as
 * pump_request. */
static int pump_response(ptc_client *c, ptc_exchange *x)
{
    ptc_worker *w = c->w;
    int moved = 0;

    for (;;) {
        ptc_upconn *uc = x->uc;
        bool live = uc != NULL && !uc->connecting && (x->phase == PTC_RP_HEAD || x->phase == PTC_RP_BODY);
        ptc_wbuf *in = live ? &uc->pc.in : NULL;
        if (live && in->data != NULL && in->end > in->start) {
            if (x->phase == PTC_RP_HEAD && x->cq.n <= 1) {
                ptc_http_error err;
                long n =
                    ptc_http_scan_head(in->data + in->start, in->end - in->start, &x->uscan, false, &err);
                if (n < 0) {
                    upstream_failed(c, 0, false, err.reason);
                    return -1;
                }
                if (n > 0) {
                    if (response_head(c, x, (size_t)n) < 0)
                        return -1;
                    moved = 1;
                    continue;
                }
                if (in->end == in->cap && in->start == 0 && in->cap < PTC_WBUF_BIG) {
                    ptc_wbuf_grow(w, in);
                    continue;
                }
            } else if (x->phase == PTC_RP_BODY && x->cq.n <= 2) {
                if (frame_response_body(c, x) < 0)
                    return -1;
                moved = 1;
                continue;
            }
        }
        if (!ptc_outq_empty(&x->cq)) {
            int r = ptc_pconn_flush(w, &c->pc, &x->cq);
            if (r < 0) {
                ptc_client_close(c);
                return -1;
            }
            if (r == 0)
                return moved;
            moved = 1;
            c->last_write = now_ms(c);
            if (x->phase >= PTC_RP_BODY || x->tunnel)
                x->resp_started = true;
            continue;
        }
        /* Nothing may point into the upstream's buffer when it is read into. */
        if (!live || !uc->pc.rd_ready)
            return moved;
        ssize_t n = ptc_pconn_fill(w, &uc->pc);
        if (n > 0) {
            x->got_bytes = true;
            x->last_up_io = now_ms(c);
            moved = 1;
            continue;
        }
        if (n == -EAGAIN)
            return moved;
        if (n == 0 && x->phase == PTC_RP_BODY && x->from_up == PTC_BODY_CLOSE) {
            x->phase = PTC_RP_DONE;
            if (x->to_client == PTC_BODY_CHUNKED)
                ptc_outq_push(&x->cq, LAST_CHUNK, sizeof(LAST_CHUNK) - 1);
            moved = 1;
            continue;
        }
        /* EOF or reset before the response was complete. */
        upstream_failed(c, n == 0 ? 0 : (int)n, false, n == 0 ? "upstream closed" : "upstream read error");
        return -1;
    }
}

/* The response is complete and written: keep the connections or close
 * them. */
static void finish_exchange(ptc_client *c)
{
    ptc_exchange *x = c->x;
    ptc_upconn *uc = x->uc;
    bool reuse =
        uc != NULL && x->up_reusable && x->req_sent && !x->req_failed && uc->pc.in.start == uc->pc.in.end;
    /* A response that ends before its request does (an early 413 from the
     * upstream, say) leaves the rest of the body unread: close. */
    bool close = x->close_client || !x->req_read;
    end_exchange(c, reuse);
    if (close)
        start_linger(c);
    else
        next_request(c);
}

static int step_proxy(ptc_client *c)
{
    ptc_exchange *x = c->x;
    ptc_upconn *uc = x->uc;

    if (uc != NULL && uc->connecting) {
        if (!uc->pc.wr_ready)
            return STEP_WAIT;
        int rc = ptc_sock_connect_result(uc->pc.io.fd);
        if (rc < 0) {
            upstream_failed(c, rc, false, "connect");
            return STEP_AGAIN;
        }
        uc->connecting = false;
        x->last_up_io = now_ms(c);
        on_connected(x);
    }
    int a = pump_request(c, x);
    if (a < 0 || c->x != x || c->state != PTC_CS_PROXY)
        return STEP_AGAIN;
    int b = pump_response(c, x);
    if (b < 0 || c->x != x || c->state != PTC_CS_PROXY)
        return STEP_AGAIN;
    if (x->phase == PTC_RP_DONE && ptc_outq_empty(&x->cq)) {
        if (x->tunnel) {
            c->state = PTC_CS_TUNNEL;
            c->since = now_ms(c);
            x->uq.n = 0;
            return STEP_AGAIN;
        }
        finish_exchange(c);
        return STEP_AGAIN;
    }
    return (a || b) ? STEP_AGAIN : STEP_WAIT;
}

static int step_own(ptc_client *c)
{
    ptc_exchange *x = c->x;
    int r = ptc_pconn_flush(c->w, &c->pc, &x->cq);
    if (r < 0) {
        ptc_client_close(c);
        return STEP_AGAIN;
    }
    if (r == 0)
        return STEP_WAIT;
    bool close = x->close_client || !x->req_read;
    end_exchange(c, false);
    if (close)
        start_linger(c);
    else
        next_request(c);
    return STEP_AGAIN;
}

/* One direction of a tunnel: from's buffer to q, written to to.  Returns
 * 1 when something moved, 0 when waiting, -1 when the tunnel must close. */
static int tunnel_dir(ptc_worker *w, ptc_pconn *from, ptc_pconn *to, ptc_outq *q)
{
    int moved = 0;
    for (;;) {
        if (!ptc_outq_empty(q)) {
            int r = ptc_pconn_flush(w, to, q);
            if (r < 0)
                return -1;
            if (r == 0)
                return moved;
            moved = 1;
            continue;
        }
        if (from->in.data != NULL && from->in.end > from->in.start) {
            ptc_outq_push(q, from->in.data + from->in.start, from->in.end - from->in.start);
            from->in.start = from->in.end;
            continue;
        }
        if (!from->rd_ready)
            return moved;
        ssize_t n = ptc_pconn_fill(w, from);
        if (n > 0) {
            moved = 1;
            continue;
        }
        if (n == -EAGAIN)
            return moved;
        return -1; /* EOF or error: WebSocket peers close with a close frame first */
    }
}

static int step_tunnel(ptc_client *c)
{
    ptc_exchange *x = c->x;
    int a = tunnel_dir(c->w, &c->pc, &x->uc->pc, &x->uq);
    int b = a < 0 ? -1 : tunnel_dir(c->w, &x->uc->pc, &c->pc, &x->cq);
    if (a < 0 || b < 0) {
        ptc_client_close(c);
        return STEP_AGAIN;
    }
    if (a || b)
        c->since = now_ms(c);
    return STEP_WAIT;
}

static int step_linger(ptc_client *c)
{
    char sink[4096];
    for (;;) {
        if (!c->pc.rd_ready)
            return STEP_WAIT;
        ssize_t n = recv(c->pc.io.fd, sink, sizeof(sink), 0);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN) {
            c->pc.rd_ready = false;
            return STEP_WAIT;
        }
        ptc_client_close(c);
        return STEP_AGAIN;
    }
}

/* ------------------------------------------------------------- the driver */

/* Sets the client's timer for its state, and its upstream's. */
static void arm_timers(ptc_client *c)
{
    ptc_worker *w = c->w;
    const ptc_dp_config *cfg = w->cfg;
    ptc_exchange *x = c->x;
    int64_t now = now_ms(c), at = 0;

    switch (c->state) {
    case PTC_CS_HANDSHAKE:
        at = c->since + cfg->header_timeout_ms;
        break;
    case PTC_CS_HEAD:
        if ((c->pc.in.data != NULL && c->pc.in.end > c->pc.in.start) || c->n_requests == 0)
            at = c->since + cfg->header_timeout_ms;
        else
            at = c->since + cfg->idle_timeout_ms;
        break;
    case PTC_CS_PROXY:
        if (!ptc_outq_empty(&x->cq) && !c->pc.wr_ready) {
            at = c->last_write + cfg->idle_timeout_ms;
        } else if (!x->req_read && ptc_outq_empty(&x->uq) && x->uc != NULL && !x->uc->connecting &&
                   !x->req_failed) {
            /* Waiting for the client's body. */
            if (x->win_start == 0) {
                x->win_start = now;
                x->win_bytes = 0;
            }
            at = x->win_start + (cfg->body_min_rate ? PTC_RATE_WINDOW_MS : cfg->idle_timeout_ms);
        } else {
            x->win_start = 0;
        }
        break;
    case PTC_CS_OWN:
        at = c->last_write + cfg->idle_timeout_ms;
        break;
    case PTC_CS_TUNNEL:
        at = c->since + cfg->upstream_timeout_ms;
        break;
    case PTC_CS_LINGER:
        at = c->since + PTC_LINGER_MS;
        break;
    default:
        return;
    }
    if (at)
        ptc_timer_set(w->loop, &c->pc.timer, at);
    else
        ptc_timer_cancel(w->loop, &c->pc.timer);
    if (x != NULL && x->uc != NULL)
        ptc_upconn_arm(w, x->uc);
}

void ptc_upconn_arm(ptc_worker *w, ptc_upconn *uc)
{
    ptc_exchange *x = uc->x;
    const ptc_dp_config *cfg = w->cfg;
    int64_t at = 0;
    if (x == NULL)
        return;
    if (uc->connecting)
        at = uc->since + cfg->upstream_connect_timeout_ms;
    else if (x->c->state == PTC_CS_PROXY && ((!ptc_outq_empty(&x->uq) && !uc->pc.wr_ready) ||
                                             ((x->phase == PTC_RP_HEAD || x->phase == PTC_RP_BODY) &&
                                              ptc_outq_empty(&x->cq) && (x->req_sent || x->req_failed))))
        at = x->last_up_io + cfg->upstream_timeout_ms;
    if (at)
        ptc_timer_set(w->loop, &uc->pc.timer, at);
    else
        ptc_timer_cancel(w->loop, &uc->pc.timer);
}

static void client_run(ptc_client *c)
{
    for (;;) {
        int r;
        switch (c->state) {
        case PTC_CS_HANDSHAKE:
            r = step_handshake(c);
            break;
        case PTC_CS_HEAD:
            r = step_head(c);
            break;
        case PTC_CS_PROXY:
            r = step_proxy(c);
            break;
        case PTC_CS_OWN:
            r = step_own(c);
            break;
        case PTC_CS_TUNNEL:
            r = step_tunnel(c);
            break;
        case PTC_CS_LINGER:
            r = step_linger(c);
            break;
        default:
            return;
        }
        if (r == STEP_WAIT)
            break;
    }
    arm_timers(c);
}

void ptc_client_begin(ptc_client *c)
{
    c->state = c->tls ? PTC_CS_HANDSHAKE : PTC_CS_HEAD;
    c->since = c->last_write = now_ms(c);
    /* The listeners defer accept until data arrives, so try at once... */
    c->pc.rd_ready = c->pc.wr_ready = true;
    if (!c->tls) {
        client_run(c);
        return;
    }
    /* ...except a handshake: a batch of them (a few hundred microseconds
     * of key exchange each) would hold up the responses already waiting
     * in this loop iteration.  The descriptor's first event, which the
     * registration has already queued, starts it. */
    arm_timers(c);
}

static void set_ready(ptc_pconn *pc, uint32_t ev)
{
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
        pc->rd_ready = true;
        pc->sock_drained = false;
    }
    if (ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        pc->rdhup = true;
    if (ev & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        pc->wr_ready = true;
    if ((ev & EPOLLOUT) && pc->ssl_read_wants_write)
        pc->rd_ready = true;
    if ((ev & EPOLLIN) && pc->ssl_write_wants_read)
        pc->wr_ready = true;
}

/* While an upstream works on a request that has been read whole, the
 * client is not read; its FIN or reset then means it gave up (nginx's
 * client abort, logged 499): the upstream request is dropped rather than
 * finished for nobody.  Pipelined bytes behind the request are not an
 * abort, hence the peek. */
static bool client_gone(ptc_client *c, uint32_t events)
{
    char b;
    if (events & (EPOLLHUP | EPOLLERR))
        return true;
    if (c->pc.ssl != NULL)
        return false;
    ssize_t n = recv(c->pc.io.fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

void ptc_client_on_event(ptc_io *io, uint32_t events)
{
    ptc_client *c = container_of(io, ptc_client, pc.io);
    set_ready(&c->pc, events);
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && c->state == PTC_CS_PROXY && c->x->req_read &&
        client_gone(c, events)) {
        ptc_client_close(c);
        return;
    }
    client_run(c);
}

void ptc_upconn_on_event(ptc_io *io, uint32_t events)
{
    ptc_upconn *uc = container_of(io, ptc_upconn, pc.io);
    set_ready(&uc->pc, events);
    if (uc->x == NULL) {
        /* Idle in the pool: the upstream closed it or sent something
         * unasked; either way it is no longer usable. */
        if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            ptc_upconn_close(uc->w, uc);
        return;
    }
    client_run(uc->x->c);
}

void ptc_client_on_timer(ptc_timer *t)
{
    ptc_client *c = container_of(t, ptc_client, pc.timer);
    ptc_exchange *x = c->x;
    int64_t now = now_ms(c);
    const ptc_dp_config *cfg = c->w->cfg;

    if (c->state == PTC_CS_PROXY) {
        if (!ptc_outq_empty(&x->cq) && !c->pc.wr_ready) {
            if (now < c->last_write + cfg->idle_timeout_ms)
                goto rearm;
            ptc_client_close(c); /* the client stopped reading */
            return;
        }
        if (x->win_start != 0) {
            uint64_t need =
                cfg->body_min_rate ? (uint64_t)cfg->body_min_rate * (PTC_RATE_WINDOW_MS / 1000) : 1;
            if (x->win_bytes >= need) {
                x->win_start = now;
                x->win_bytes = 0;
                goto rearm;
            }
            if (x->phase <= PTC_RP_HEAD && ptc_outq_empty(&x->cq) && !x->resp_started) {
                own_answer(c, 408, "REQUEST_TIMEOUT", "the request body arrives too slowly", true,
                           PTC_STR_LIT(""));
                client_run(c);
            } else {
                ptc_client_close(c);
            }
            return;
        }
        goto rearm;
    }
    /* Handshake, head, idle, own answer, tunnel and linger deadlines:
     * nothing useful can be said any more. */
    ptc_client_close(c);
    return;
rearm:
    arm_timers(c);
}

void ptc_upconn_on_timer(ptc_timer *t)
{
    ptc_upconn *uc = container_of(t, ptc_upconn, pc.timer);
    ptc_worker *w = uc->w;
    if (uc->x == NULL) {
        ptc_upconn_close(w, uc);
        return;
    }
    ptc_exchange *x = uc->x;
    ptc_client *c = x->c;
    if (uc->connecting || ptc_loop_now(w->loop) >= x->last_up_io + (int64_t)w->cfg->upstream_timeout_ms) {
        upstream_failed(c, -ETIMEDOUT, true, uc->connecting ? "connect timeout" : "read timeout");
        client_run(c);
        return;
    }
    ptc_upconn_arm(w, uc);
}

SSL_CTX *ptc_client_pick_cert(SSL *ssl, const char *servername, void *arg)
{
    ptc_client *c = SSL_get_app_data(ssl);
    (void)arg;
    if (c == NULL)
        return NULL;
    ptc_worker_refresh_snapshot(c->w);
    return ptc_snap_cert_pick(c->w->cur->snap, servername);
}
