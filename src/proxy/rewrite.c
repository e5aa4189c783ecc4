/* Head rewriting (see rewrite.h).  Each function sizes the output once and
 * then copies without further checks: heads are bounded by the parser
 * (32 KiB), so the upper bound is cheap to compute. */
#include "proxy/rewrite.h"

#include <stdio.h>
#include <string.h>

#include "http/fields.h"

typedef struct out {
    char *p;
} out;

static inline void put(out *o, const char *s, size_t n)
{
    memcpy(o->p, s, n);
    o->p += n;
}
#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)
static inline void put_str(out *o, ptc_str s)
{
    put(o, s.p, s.len);
}
static inline void put_u64(out *o, uint64_t v)
{
    char tmp[24];
    int i = (int)sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put(o, tmp + i, sizeof(tmp) - (size_t)i);
}
static inline void put_header(out *o, ptc_str name, ptc_str value)
{
    put_str(o, name);
    PUT_LIT(o, ": ");
    put_str(o, value);
    PUT_LIT(o, "\r\n");
}

/* A field line as the parser found it: the name is followed by its colon
 * in the received head, and when the sender wrote "Name: value" (nearly
 * always) that span is copied whole. */
static inline void put_field(out *o, const ptc_http_header *h)
{
    const char *colon = h->name.p + h->name.len;
    if (h->value.p == colon + 2 && colon[0] == ':' && colon[1] == ' ') {
        put(o, h->name.p, h->name.len + 2 + h->value.len);
        PUT_LIT(o, "\r\n");
    } else {
        put_header(o, h->name, h->value);
    }
}

/* Reserves room for n more bytes and returns the writer; finish() fixes
 * the length. */
static out begin(ptc_buf *b, size_t n)
{
    ptc_buf_reserve(b, n);
    return (out){b->data + b->len};
}
static void finish(ptc_buf *b, out o)
{
    b->len = (size_t)(o.p - b->data);
    b->data[b->len] = '\0';
}

/* Header names the proxy looks at, matched by length first. */
enum hname {
    H_OTHER,
    H_CONTENT_LENGTH,
    H_HOST,
    H_EXPECT,
    H_REQUEST_ID,
    H_XFF,
    H_XF_PROTO,
    H_XF_HOST,
    H_XF_PORT,
    H_REAL_IP,
    H_DATE,
    H_XCTO,
    H_XFO,
    H_XXSS,
};

static enum hname classify(ptc_str n)
{
    switch (n.len) {
    case 4:
        if (PTC_HTTP_NAME_IS(n, "host"))
            return H_HOST;
        if (PTC_HTTP_NAME_IS(n, "date"))
            return H_DATE;
        break;
    case 6:
        if (PTC_HTTP_NAME_IS(n, "expect"))
            return H_EXPECT;
        break;
    case 9:
        if (PTC_HTTP_NAME_IS(n, "x-real-ip"))
            return H_REAL_IP;
        break;
    case 12:
        if (PTC_HTTP_NAME_IS(n, "x-request-id"))
            return H_REQUEST_ID;
        break;
    case 14:
        if (PTC_HTTP_NAME_IS(n, "content-length"))
            return H_CONTENT_LENGTH;
        break;
    case 15:
        if (PTC_HTTP_NAME_IS(n, "x-forwarded-for"))
            return H_XFF;
        if (PTC_HTTP_NAME_IS(n, "x-frame-options"))
            return H_XFO;
        break;
    case 16:
        if (PTC_HTTP_NAME_IS(n, "x-forwarded-host"))
            return H_XF_HOST;
        if (PTC_HTTP_NAME_IS(n, "x-forwarded-port"))
            return H_XF_PORT;
        if (PTC_HTTP_NAME_IS(n, "x-xss-protection"))
            return H_XXSS;
        break;
    case 17:
        if (PTC_HTTP_NAME_IS(n, "x-forwarded-proto"))
            return H_XF_PROTO;
        break;
    case 22:
        if (PTC_HTTP_NAME_IS(n, "x-content-type-options"))
            return H_XCTO;
        break;
    }
    return H_OTHER;
}

/* True for a header that must not cross the proxy as it is. */
static bool dropped(const ptc_http_header *all, size_t n, const ptc_http_conn_options *named,
                    const ptc_http_header *h)
{
    return ptc_http_is_hop_by_hop(h->name) ||
           ((named->n > 0 || named->many) && ptc_http_conn_options_name(named, all, n, h->name));
}

void ptc_rewrite_request(ptc_buf *b, const ptc_http_request *req, const ptc_rewrite_req *in)
{
    ptc_http_conn_options named = {.n = 0};
    if (req->conn_options)
        ptc_http_conn_options_collect(req->headers, req->n_headers, &named);
    size_t xff_len = 0;
    for (size_t i = 0; i < req->n_headers; i++)
        xff_len += req->headers[i].value.len + 2;
    out o = begin(b, req->head_len + in->path.len + in->query.len + req->authority.len * 2 + xff_len +
                         in->peer_ip.len * 2 + in->request_id.len + 512);

    put_str(&o, req->method_name);
    PUT_LIT(&o, " ");
    if (req->form == PTC_HTTP_FORM_ASTERISK)
        PUT_LIT(&o, "*");
    else
        put_str(&o, in->path);
    if (in->has_query) {
        PUT_LIT(&o, "?");
        put_str(&o, in->query);
    }
    PUT_LIT(&o, " HTTP/1.1\r\nHost: ");
    put_str(&o, req->authority);
    PUT_LIT(&o, "\r\n");

    /* The client's X-Forwarded-For values, kept only behind a trusted proxy. */
    const ptc_http_header *xff[PTC_HTTP_MAX_HEADERS];
    size_t n_xff = 0;
    bool kept[H_XXSS + 1] = {false};
    for (size_t i = 0; i < req->n_headers; i++) {
        const ptc_http_header *h = &req->headers[i];
        if (dropped(req->headers, req->n_headers, &named, h))
            continue;
        enum hname k = classify(h->name);
        switch (k) {
        case H_CONTENT_LENGTH:
        case H_HOST:
        case H_EXPECT:
        case H_REQUEST_ID:
            continue;
        case H_XFF:
            if (in->peer_trusted)
                xff[n_xff++] = h;
            continue;
        case H_XF_PROTO:
        case H_XF_HOST:
        case H_XF_PORT:
        case H_REAL_IP:
            if (!in->peer_trusted || kept[k])
                continue;
            kept[k] = true;
            break;
        default:
            break;
        }
        put_field(&o, h);
    }

    PUT_LIT(&o, "X-Forwarded-For: ");
    for (size_t i = 0; i < n_xff; i++) {
        put_str(&o, xff[i]->value);
        PUT_LIT(&o, ", ");
    }
    put_str(&o, in->peer_ip);
    PUT_LIT(&o, "\r\n");
    if (!kept[H_XF_PROTO]) {
        if (in->tls)
            PUT_LIT(&o, "X-Forwarded-Proto: https\r\n");
        else
            PUT_LIT(&o, "X-Forwarded-Proto: http\r\n");
    }
    if (!kept[H_XF_HOST])
        put_header(&o, PTC_STR_LIT("X-Forwarded-Host"), req->authority);
    if (!kept[H_XF_PORT]) {
        PUT_LIT(&o, "X-Forwarded-Port: ");
        put_u64(&o, in->local_port);
        PUT_LIT(&o, "\r\n");
    }
    if (!kept[H_REAL_IP])
        put_header(&o, PTC_STR_LIT("X-Real-IP"), in->peer_ip);
    put_header(&o, PTC_STR_LIT("X-Request-ID"), in->request_id);
    if (in->framing == PTC_BODY_LENGTH) {
        PUT_LIT(&o, "Content-Length: ");
        put_u64(&o, in->length);
        PUT_LIT(&o, "\r\n");
    } else if (in->framing == PTC_BODY_CHUNKED) {
        PUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    }
    if (in->websocket)
        PUT_LIT(&o, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    PUT_LIT(&o, "\r\n");
    finish(b, o);
}

void ptc_rewrite_response(ptc_buf *b, const ptc_http_response *res, const ptc_rewrite_resp *in)
{
    ptc_http_conn_options named = {.n = 0};
    if (res->conn_options)
        ptc_http_conn_options_collect(res->headers, res->n_headers, &named);
    out o = begin(b, res->head_len + in->request_id.len + in->date.len + 512);
    bool seen[H_XXSS + 1] = {false};

    PUT_LIT(&o, "HTTP/1.1 ");
    put_u64(&o, (uint64_t)res->status);
    PUT_LIT(&o, " ");
    if (res->reason.len > 0)
        put_str(&o, res->reason);
    else
        put(&o, ptc_rewrite_reason(res->status), strlen(ptc_rewrite_reason(res->status)));
    PUT_LIT(&o, "\r\n");
    for (size_t i = 0; i < res->n_headers; i++) {
        const ptc_http_header *h = &res->headers[i];
        if (dropped(res->headers, res->n_headers, &named, h))
            continue;
        enum hname k = classify(h->name);
        if (k == H_CONTENT_LENGTH || k == H_REQUEST_ID)
            continue;
        seen[k] = true;
        put_field(&o, h);
    }
    if (!seen[H_DATE])
        put_header(&o, PTC_STR_LIT("Date"), in->date);
    put_header(&o, PTC_STR_LIT("X-Request-ID"), in->request_id);
    if (in->security_headers) {
        if (!seen[H_XCTO])
            PUT_LIT(&o, "X-Content-Type-Options: nosniff\r\n");
        if (!seen[H_XFO])
            PUT_LIT(&o, "X-Frame-Options: SAMEORIGIN\r\n");
        if (!seen[H_XXSS])
            PUT_LIT(&o, "X-XSS-Protection: 1; mode=block\r\n");
    }
    if (in->framing == PTC_BODY_LENGTH || (in->framing == PTC_BODY_NONE && in->keep_length)) {
        PUT_LIT(&o, "Content-Length: ");
        put_u64(&o, in->length);
        PUT_LIT(&o, "\r\n");
    } else if (in->framing == PTC_BODY_CHUNKED) {
        PUT_LIT(&o, "Transfer-Encoding: chunked\r\n");
    }
    if (in->websocket)
        PUT_LIT(&o, "Connection: upgrade\r\nUpgrade: websocket\r\n");
    else if (in->close)
        PUT_LIT(&o, "Connection: close\r\n");
    else if (in->client_http10)
        PUT_LIT(&o, "Connection: keep-alive\r\n");
    PUT_LIT(&o, "\r\n");
    finish(b, o);
}

const char *ptc_rewrite_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 101:
        return "Switching Protocols";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 301:
        return "Moved Permanently";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 417:
        return "Expectation Failed";
    case 421:
        return "Misdirected Request";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return status < 200   ? "Informational"
               : status < 300 ? "OK"
               : status < 400 ? "Redirect"
               : status < 500 ? "Client Error"
                              : "Server Error";
    }
}

void ptc_rewrite_json_escape(ptc_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    out o = begin(b, len * 6);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            put(&o, e, 2);
        } else if (c < 0x20 || c >= 0x7f) {
            /* Bytes outside printable ASCII are escaped one by one, so the
             * line stays valid JSON whatever the client sent. */
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(&o, e, 6);
        } else {
            *o.p++ = (char)c;
        }
    }
    finish(b, o);
}

void ptc_rewrite_own(ptc_buf *b, int status, const char *code, const char *message, ptc_str request_id,
                     ptc_str date, bool close, bool http10, ptc_str location)
{
    ptc_buf body = PTC_BUF_INIT;
    if (code != NULL) {
        ptc_buf_append_str(&body, "{\"error\":{\"code\":\"");
        ptc_buf_append_str(&body, code);
        ptc_buf_append_str(&body, "\",\"message\":\"");
        ptc_rewrite_json_escape(&body, message, strlen(message));
        ptc_buf_append_str(&body, "\",\"details\":{\"request_id\":\"");
        ptc_rewrite_json_escape(&body, request_id.p, request_id.len);
        ptc_buf_append_str(&body, "\"}}}\n");
    }
    const char *reason = ptc_rewrite_reason(status);
    out o = begin(b, strlen(reason) + request_id.len + date.len + location.len + body.len + 256);
    PUT_LIT(&o, "HTTP/1.1 ");
    put_u64(&o, (uint64_t)status);
    PUT_LIT(&o, " ");
    put(&o, reason, strlen(reason));
    PUT_LIT(&o, "\r\n");
    if (code != NULL)
        PUT_LIT(&o, "Content-Type: application/json\r\n");
    PUT_LIT(&o, "Content-Length: ");
    put_u64(&o, body.len);
    PUT_LIT(&o, "\r\n");
    if (location.len > 0)
        put_header(&o, PTC_STR_LIT("Location"), location);
    put_header(&o, PTC_STR_LIT("Date"), date);
    put_header(&o, PTC_STR_LIT("X-Request-ID"), request_id);
    if (close)
        PUT_LIT(&o, "Connection: close\r\n");
    else if (http10)
        PUT_LIT(&o, "Connection: keep-alive\r\n");
    PUT_LIT(&o, "\r\n");
    if (body.len)
        put(&o, body.data, body.len);
    finish(b, o);
    ptc_buf_free(&body);
}

bool ptc_rewrite_request_id_ok(ptc_str v)
{
    if (v.len == 0 || v.len > 128)
        return false;
    for (size_t i = 0; i < v.len; i++) {
        char c = v.p[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
              c == '.' || c == '_' || c == ':' || c == '+' || c == '/' || c == '='))
            return false;
    }
    return true;
}
