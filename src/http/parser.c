/* The HTTP/1.1 head parser: one forward pass over the bytes, character
 * classes from a table, word-at-a-time scans for line ends and control
 * bytes, and the framing decided once (see parser.h for the rules). */
#include "http/parser.h"

#include "http/chars.h"
#include "http/fields.h"
#include "http/uri.h"

#include <string.h>

/* ptc_http_scan_head's resumable state, packed into the caller's size_t:
 * the next byte to look at, the length of the current line so far, and
 * whether the first line (request or status line) is behind us. */
#define SCAN_POS_MASK 0xffffu
#define SCAN_LINE_SHIFT 16
#define SCAN_LINE_MASK 0x3fffu
#define SCAN_FIRST_DONE ((size_t)1 << 30)

_Static_assert(PTC_HTTP_MAX_HEAD <= SCAN_POS_MASK, "head offsets must fit the scan state");
_Static_assert(PTC_HTTP_MAX_REQUEST_LINE < SCAN_LINE_MASK && PTC_HTTP_MAX_FIELD_LINE < SCAN_LINE_MASK,
               "line lengths must fit the scan state");

static int fail(ptc_http_error *err, int status, const char *reason)
{
    err->status = status;
    err->reason = reason;
    return -1;
}

long ptc_http_scan_head(const char *buf, size_t len, size_t *scan, bool is_request, ptc_http_error *err)
{
    size_t st = *scan;
    size_t pos = st & SCAN_POS_MASK;
    size_t line = (st >> SCAN_LINE_SHIFT) & SCAN_LINE_MASK;
    bool first_done = (st & SCAN_FIRST_DONE) != 0;
    size_t line_max = is_request && !first_done ? PTC_HTTP_MAX_REQUEST_LINE : PTC_HTTP_MAX_FIELD_LINE;
    size_t limit = len < PTC_HTTP_MAX_HEAD ? len : PTC_HTTP_MAX_HEAD;

    while (pos < limit) {
        const char *q = ptc_http_find_crlf(buf + pos, buf + limit);
        size_t n = (size_t)(q - (buf + pos));
        line += n;
        pos += n;
        if (line > line_max) {
            if (is_request && !first_done)
                return fail(err, 414, "request line too long");
            return fail(err, 431, "header line too long");
        }
        if (pos == limit)
            break;
        if (buf[pos] == '\n')
            return fail(err, 400, "bare LF");
        if (pos + 1 == len)
            break; /* a CR as the last byte: wait for what follows */
        if (buf[pos + 1] != '\n')
            return fail(err, 400, "bare CR");
        if (pos + 2 > PTC_HTTP_MAX_HEAD)
            return fail(err, 431, "head too large");
        pos += 2;
        if (line == 0) {
            if (first_done)
                return (long)pos;
            /* RFC 9112 §2.2: empty lines before a request line are ignored. */
            if (!is_request)
                return fail(err, 400, "empty status line");
            continue;
        }
        first_done = true;
        line = 0;
        line_max = PTC_HTTP_MAX_FIELD_LINE;
    }
    if (pos >= PTC_HTTP_MAX_HEAD)
        return fail(err, 431, "head too large");
    *scan = pos | line << SCAN_LINE_SHIFT | (first_done ? SCAN_FIRST_DONE : 0);
    return 0;
}

/* What the field lines say about framing, gathered in the same pass. */
typedef struct fields_info {
    bool is_request; /* Host, Expect and Upgrade only mean something in requests */
    const ptc_http_header *host, *te, *upgrade;
    int64_t content_length; /* -1 when absent */
    bool conn_close, conn_keep_alive, conn_upgrade;
    bool conn_options; /* a Connection token other than keep-alive and upgrade (hop-by-hop anyway) */
    bool expect_continue, expect_other;
} fields_info;

/* How name (a token, so OR-ing 0x20 folds only letters) compares with the
 * lower-case literal lit of the same length: NAME_EXACT, NAME_LOOK_ALIKE
 * when it matches only with '_' for '-' (Content_Length,
 * Transfer_Encoding), else NAME_OTHER. */
enum { NAME_OTHER, NAME_EXACT, NAME_LOOK_ALIKE };
static int name_match(const char *name, const char *lit, size_t n)
{
    if (ptc_http_name_is(ptc_str_make(name, n), lit, n))
        return NAME_EXACT;
    if (memchr(name, '_', n) == NULL)
        return NAME_OTHER;
    int r = NAME_EXACT;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (c == '_' && lit[i] == '-')
            r = NAME_LOOK_ALIKE;
        else if ((char)(c | 0x20) != lit[i])
            return NAME_OTHER;
    }
    return r;
}

/* For the fields no look-alike can smuggle through: exact only. */
static bool name_is(const char *name, const char *lit, size_t n)
{
    return ptc_http_name_is(ptc_str_make(name, n), lit, n);
}

static bool value_ieq(const char *v, size_t n, const char *lit, size_t litlen)
{
    if (n != litlen)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != lit[i])
            return false;
    }
    return true;
}

#define VALUE_IS(v, n, lit) value_ieq((v), (n), lit, sizeof(lit) - 1)
/* A field value (no control byte but HTAB) against a literal of letters,
 * digits and '-': a word at a time (see ptc_http_name_is). */
#define TOKEN_IS(v, n, lit) PTC_HTTP_NAME_IS(ptc_str_make((v), (n)), lit)

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Content-Length: 1*DIGIT, or a list of identical such values ("5, 5").
 * At most 18 digits, so the value always fits int64_t.  -1 when invalid. */
static int64_t parse_content_length(const char *v, size_t n)
{
    int64_t result = -1;
    size_t i = 0;
    for (;;) {
        size_t start = i;
        int64_t x = 0;
        while (i < n && v[i] >= '0' && v[i] <= '9') {
            if (i - start == 18)
                return -1;
            x = x * 10 + (v[i] - '0');
            i++;
        }
        if (i == start || (result >= 0 && x != result))
            return -1;
        result = x;
        while (i < n && is_ows(v[i]))
            i++;
        if (i == n)
            return result;
        if (v[i] != ',')
            return -1;
        i++;
        while (i < n && is_ows(v[i]))
            i++;
    }
}

/* The Connection options portico acts on; others are left to
 * ptc_http_named_by_connection. */
static void scan_connection(const char *v, size_t n, fields_info *fi)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        const char *comma = memchr(v + i, ',', n - i);
        i = comma != NULL ? (size_t)(comma - v) : n;
        size_t e = i++;
        while (start < e && is_ows(v[start]))
            start++;
        while (e > start && is_ows(v[e - 1]))
            e--;
        if (TOKEN_IS(v + start, e - start, "keep-alive"))
            fi->conn_keep_alive = true;
        else if (TOKEN_IS(v + start, e - start, "upgrade"))
            fi->conn_upgrade = true;
        else if (e > start)
            fi->conn_options = true;
        if (TOKEN_IS(v + start, e - start, "close"))
            fi->conn_close = true;
    }
}

/* Records what one field line means for framing; refuses duplicates and
 * invalid values of the fields that decide it. */
static int classify(const ptc_http_header *h, fields_info *fi, ptc_http_error *err)
{
    const char *name = h->name.p;
    const char *v = h->value.p;
    size_t n = h->value.len;
    int m;

    switch (h->name.len) {
    case 4:
        if (fi->is_request && name_is(name, "host", 4)) {
            if (fi->host)
                return fail(err, 400, "duplicate Host");
            fi->host = h;
        }
        break;
    case 6:
        if (fi->is_request && name_is(name, "expect", 6)) {
            if (TOKEN_IS(v, n, "100-continue"))
                fi->expect_continue = true;
            else
                fi->expect_other = true;
        }
        break;
    case 7:
        if (fi->is_request && name_is(name, "upgrade", 7)) {
            if (fi->upgrade)
                return fail(err, 400, "duplicate Upgrade");
            fi->upgrade = h;
        }
        break;
    case 10:
        if (name_is(name, "connection", 10))
            scan_connection(v, n, fi);
        break;
    case 14:
        if ((m = name_match(name, "content-length", 14)) != NAME_OTHER) {
            if (m == NAME_LOOK_ALIKE)
                return fail(err, 400, "Content_Length look-alike field");
            if (fi->content_length >= 0)
                return fail(err, 400, "duplicate Content-Length");
            fi->content_length = parse_content_length(v, n);
            if (fi->content_length < 0)
                return fail(err, 400, "invalid Content-Length");
        }
        break;
    case 17:
        if ((m = name_match(name, "transfer-encoding", 17)) != NAME_OTHER) {
            if (m == NAME_LOOK_ALIKE)
                return fail(err, 400, "Transfer_Encoding look-alike field");
            if (fi->te)
                return fail(err, 400, "duplicate Transfer-Encoding");
            fi->te = h;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Parses the field lines from p up to and including the empty line.
 * Returns the end of the head, or NULL with err set (400/431). */
static const char *parse_fields(const char *head, const char *p, const char *end, ptc_http_header *headers,
                                size_t *n_headers, fields_info *fi, ptc_http_error *err)
{
    size_t n = 0;

    for (;;) {
        const char *line = p;
        if (p >= end) {
            fail(err, 400, "incomplete head");
            return NULL;
        }
        if (*p == '\r') {
            if (end - p < 2 || p[1] != '\n') {
                fail(err, 400, "bare CR");
                return NULL;
            }
            p += 2;
            break;
        }
        if (n == PTC_HTTP_MAX_HEADERS) {
            fail(err, 431, "too many header fields");
            return NULL;
        }
        const char *name = p;
        p = ptc_http_skip_alnum_dash(p, end);
        /* Then four bytes per end check: names are mostly longer than that. */
        while (end - p >= 4 && PTC_HC(p[0], PTC_HC_TCHAR) && PTC_HC(p[1], PTC_HC_TCHAR) &&
               PTC_HC(p[2], PTC_HC_TCHAR) && PTC_HC(p[3], PTC_HC_TCHAR))
            p += 4;
        while (p < end && PTC_HC(*p, PTC_HC_TCHAR))
            p++;
        if (p >= end) {
            fail(err, 400, "incomplete head");
            return NULL;
        }
        if (*p != ':' || p == name) {
            const char *why = "invalid character in field name";
            if (p == name)
                why = is_ows(*p) ? "obs-fold or white space before a field name" : "empty field name";
            else if (is_ows(*p))
                why = "white space before colon";
            fail(err, 400, why);
            return NULL;
        }
        size_t name_len = (size_t)(p - name);
        p++;
        while (p < end && is_ows(*p))
            p++;
        const char *value = p;
        for (;;) {
            p = ptc_http_find_ctl(p, end);
            if (p < end && *p == '\t') {
                p++;
                continue;
            }
            break;
        }
        if (p >= end) {
            fail(err, 400, "incomplete head");
            return NULL;
        }
        if (*p != '\r') {
            fail(err, 400, *p == '\n' ? "bare LF" : "control character in field value");
            return NULL;
        }
        if (end - p < 2 || p[1] != '\n') {
            fail(err, 400, "bare CR");
            return NULL;
        }
        const char *vend = p;
        while (vend > value && is_ows(vend[-1]))
            vend--;
        if ((size_t)(p - line) > PTC_HTTP_MAX_FIELD_LINE) {
            fail(err, 431, "header line too long");
            return NULL;
        }
        p += 2;
        if ((size_t)(p - head) > PTC_HTTP_MAX_HEAD) {
            fail(err, 431, "head too large");
            return NULL;
        }
        ptc_http_header *h = &headers[n++];
        h->name = ptc_str_make(name, name_len);
        h->value = ptc_str_make(value, (size_t)(vend - value));
        if (classify(h, fi, err) != 0)
            return NULL;
    }
    if ((size_t)(p - head) > PTC_HTTP_MAX_HEAD) {
        fail(err, 431, "head too large");
        return NULL;
    }
    *n_headers = n;
    return p;
}

static void fields_info_init(fields_info *fi, bool is_request)
{
    memset(fi, 0, sizeof(*fi));
    fi->is_request = is_request;
    fi->content_length = -1;
}

/* "HTTP/1.0" or "HTTP/1.1" at p (8 bytes available): the minor version,
 * -505 for another well-formed version, -400 for anything else. */
static int parse_version(const char *p)
{
    if (memcmp(p, "HTTP/", 5) != 0 || p[5] < '0' || p[5] > '9' || p[6] != '.' || p[7] < '0' || p[7] > '9')
        return -400;
    if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
        return -505;
    return p[7] - '0';
}

static ptc_http_method method_of(const char *m, size_t n)
{
    switch (n) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return PTC_HTTP_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return PTC_HTTP_PUT;
        break;
    case 4:
        if (memcmp(m, "POST", 4) == 0)
            return PTC_HTTP_POST;
        if (memcmp(m, "HEAD", 4) == 0)
            return PTC_HTTP_HEAD;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return PTC_HTTP_PATCH;
        if (memcmp(m, "TRACE", 5) == 0)
            return PTC_HTTP_TRACE;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return PTC_HTTP_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return PTC_HTTP_OPTIONS;
        if (memcmp(m, "CONNECT", 7) == 0)
            return PTC_HTTP_CONNECT;
        break;
    default:
        break;
    }
    return PTC_HTTP_OTHER;
}

static bool valid_host(ptc_str s)
{
    char host[256];
    unsigned port;
    return ptc_http_parse_host(s.p, s.len, host, sizeof(host), &port) == 0;
}

/* Normalises s (the authority) into req->host and req->port: parsed once,
 * here, for both the check and the routing. */
static int set_host(ptc_http_request *req, ptc_str s)
{
    if (ptc_http_parse_host(s.p, s.len, req->host, sizeof(req->host), &req->port) != 0) {
        req->host[0] = '\0';
        req->host_len = 0;
        req->port = 0;
        return -1;
    }
    req->host_len = strlen(req->host);
    return 0;
}

/* Splits path?query starting at p (the path's first byte) up to end. */
static void split_query(ptc_http_request *req, const char *p, const char *end)
{
    const char *q = memchr(p, '?', (size_t)(end - p));
    if (q == NULL) {
        req->path = ptc_str_make(p, (size_t)(end - p));
        req->query = ptc_str_make(end, 0);
        req->has_query = false;
        return;
    }
    req->path = ptc_str_make(p, (size_t)(q - p));
    req->query = ptc_str_make(q + 1, (size_t)(end - q - 1));
    req->has_query = true;
}

/* Classifies the request-target (RFC 9112 §3.2) and splits it. */
static int parse_target(ptc_http_request *req, ptc_http_error *err)
{
    const char *t = req->target.p;
    size_t n = req->target.len;
    const char *end = t + n;

    if (t[0] == '/') {
        req->form = PTC_HTTP_FORM_ORIGIN;
        split_query(req, t, end);
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        if (req->method != PTC_HTTP_OPTIONS)
            return fail(err, 400, "asterisk-form is only for OPTIONS");
        req->form = PTC_HTTP_FORM_ASTERISK;
        req->path = req->target;
        req->query = ptc_str_make(end, 0);
        return 0;
    }
    size_t skip;
    if (n >= 7 && VALUE_IS(t, 7, "http://"))
        skip = 7;
    else if (n >= 8 && VALUE_IS(t, 8, "https://"))
        skip = 8;
    else
        return fail(err, 400, "invalid request-target");
    const char *a = t + skip, *ae = a;
    while (ae < end && *ae != '/' && *ae != '?')
        ae++;
    req->form = PTC_HTTP_FORM_ABSOLUTE;
    req->authority = ptc_str_make(a, (size_t)(ae - a));
    if (set_host(req, req->authority) != 0)
        return fail(err, 400, "invalid authority in request-target");
    if (ae < end && *ae == '/') {
        split_query(req, ae, end);
    } else {
        req->path = PTC_STR_LIT("/");
        req->query = ptc_str_make(ae < end ? ae + 1 : end, ae < end ? (size_t)(end - ae - 1) : 0);
        req->has_query = ae < end;
    }
    return 0;
}

/* Transfer-Encoding of a request: exactly "chunked", else the status. */
static int request_te(const fields_info *fi, int minor, ptc_http_error *err)
{
    const char *v = fi->te->value.p;
    size_t n = fi->te->value.len;

    if (fi->content_length >= 0)
        return fail(err, 400, "both Content-Length and Transfer-Encoding");
    if (minor == 0)
        return fail(err, 400, "Transfer-Encoding in HTTP/1.0");
    if (TOKEN_IS(v, n, "chunked"))
        return 0;
    if (n == 0)
        return fail(err, 400, "empty Transfer-Encoding");
    if (memchr(v, ',', n) != NULL)
        return fail(err, 400, "Transfer-Encoding other than chunked alone");
    for (size_t i = 0; i < n; i++)
        if (!PTC_HC(v[i], PTC_HC_TCHAR))
            return fail(err, 400, "invalid Transfer-Encoding");
    /* A coding we know but that leaves the length unknown (RFC 9112 §6.3
     * item 4) is a bad request; one we have never heard of is 501 (§6.1). */
    if (TOKEN_IS(v, n, "gzip") || TOKEN_IS(v, n, "x-gzip") || TOKEN_IS(v, n, "deflate") ||
        TOKEN_IS(v, n, "compress") || TOKEN_IS(v, n, "x-compress"))
        return fail(err, 400, "chunked is not the final transfer coding");
    return fail(err, 501, "unknown transfer coding");
}

int ptc_http_parse_request(const char *buf, size_t len, ptc_http_request *req, ptc_http_error *err)
{
    const char *p = buf, *end = buf + len;
    fields_info fi;

    req->method = PTC_HTTP_OTHER;
    req->method_name = req->target = req->path = req->query = req->authority = req->upgrade_value =
        ptc_str_make(buf, 0);
    req->form = PTC_HTTP_FORM_ORIGIN;
    req->has_query = false;
    req->minor_version = 1;
    req->n_headers = 0;
    req->content_length = -1;
    req->chunked = req->keep_alive = req->expect_continue = req->upgrade = false;
    req->head_len = 0;
    req->host[0] = '\0';
    req->host_len = 0;
    req->port = 0;

    while (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2;
    const char *line = p;

    const char *q = p;
    while (q < end && PTC_HC(*q, PTC_HC_TCHAR))
        q++;
    if (q == p || q >= end || *q != ' ')
        return fail(err, 400, "invalid method");
    req->method_name = ptc_str_make(p, (size_t)(q - p));
    req->method = method_of(p, (size_t)(q - p));

    p = q + 1;
    q = p;
    while (q < end && PTC_HC(*q, PTC_HC_TARGET))
        q++;
    if ((size_t)(q - line) > PTC_HTTP_MAX_REQUEST_LINE)
        return fail(err, 414, "request line too long");
    if (q == p || q >= end || *q != ' ')
        return fail(err, 400, "invalid request-target");
    req->target = ptc_str_make(p, (size_t)(q - p));

    p = q + 1;
    if (end - p < 10)
        return fail(err, 400, "invalid HTTP version");
    int minor = parse_version(p);
    if (minor == -400 || p[8] != '\r' || p[9] != '\n')
        return fail(err, 400, "invalid HTTP version");
    if (minor == -505)
        return fail(err, 505, "HTTP version not supported");
    if ((size_t)(p + 8 - line) > PTC_HTTP_MAX_REQUEST_LINE)
        return fail(err, 414, "request line too long");
    req->minor_version = minor;
    p += 10;

    if (req->method == PTC_HTTP_CONNECT)
        return fail(err, 405, "CONNECT is not supported");
    if (parse_target(req, err) != 0)
        return -1;

    fields_info_init(&fi, true);
    p = parse_fields(buf, p, end, req->headers, &req->n_headers, &fi, err);
    if (p == NULL)
        return -1;
    req->head_len = (size_t)(p - buf);

    if (fi.host == NULL && minor == 1)
        return fail(err, 400, "missing Host");
    if (req->form == PTC_HTTP_FORM_ABSOLUTE) {
        /* The target's authority wins; Host must still be valid. */
        if (fi.host && !valid_host(fi.host->value))
            return fail(err, 400, "invalid Host");
    } else if (fi.host) {
        req->authority = fi.host->value;
        if (set_host(req, req->authority) != 0)
            return fail(err, 400, "invalid Host");
    }

    if (fi.te) {
        if (request_te(&fi, minor, err) != 0)
            return -1;
        req->chunked = true;
    }
    req->content_length = fi.content_length;

    if (fi.expect_other)
        return fail(err, 417, "unsupported expectation");
    /* RFC 9110 §10.1.1: a 100-continue in HTTP/1.0 is ignored. */
    req->expect_continue = fi.expect_continue && minor == 1;

    req->keep_alive = !fi.conn_close && (minor == 1 || fi.conn_keep_alive);
    req->conn_options = fi.conn_options;
    if (minor == 1 && fi.upgrade && fi.conn_upgrade) {
        req->upgrade = true;
        req->upgrade_value = fi.upgrade->value;
    }
    return 0;
}

static int parse_response(const char *buf, size_t len, ptc_http_method req_method, ptc_http_response *res,
                          ptc_http_error *err)
{
    const char *p = buf, *end = buf + len;
    fields_info fi;

    if (len < 13)
        return fail(err, 502, "invalid status line");
    int minor = parse_version(p);
    if (minor < 0 || p[8] != ' ')
        return fail(err, 502, "invalid HTTP version in status line");
    res->minor_version = minor;
    p += 9;
    if (p[0] < '1' || p[0] > '5' || p[1] < '0' || p[1] > '9' || p[2] < '0' || p[2] > '9')
        return fail(err, 502, "invalid status code");
    res->status = (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
    p += 3;
    /* The SP before an empty reason phrase is often left out: accepted. */
    if (*p == ' ')
        p++;
    else if (*p != '\r')
        return fail(err, 502, "invalid status code");
    const char *reason = p;
    for (;;) {
        p = ptc_http_find_ctl(p, end);
        if (p < end && *p == '\t') {
            p++;
            continue;
        }
        break;
    }
    if (p >= end || *p != '\r' || end - p < 2 || p[1] != '\n')
        return fail(err, 502, "invalid status line");
    if ((size_t)(p - buf) > PTC_HTTP_MAX_FIELD_LINE)
        return fail(err, 502, "status line too long");
    res->reason = ptc_str_make(reason, (size_t)(p - reason));
    p += 2;

    fields_info_init(&fi, false);
    p = parse_fields(buf, p, end, res->headers, &res->n_headers, &fi, err);
    if (p == NULL)
        return -1;
    res->head_len = (size_t)(p - buf);

    if (fi.te) {
        if (fi.content_length >= 0)
            return fail(err, 502, "both Content-Length and Transfer-Encoding");
        if (minor == 0)
            return fail(err, 502, "Transfer-Encoding in HTTP/1.0");
        /* Only "chunked" alone: a coding under it would have to be passed
         * on, and the proxy re-writes framing headers. */
        if (!TOKEN_IS(fi.te->value.p, fi.te->value.len, "chunked"))
            return fail(err, 502, "Transfer-Encoding other than chunked");
        res->chunked = true;
    }
    res->content_length = fi.content_length;

    int s = res->status;
    if (req_method == PTC_HTTP_HEAD || s < 200 || s == 204 || s == 304) {
        res->bodyless = true;
        if (s < 200 || s == 204) {
            /* They may not carry these at all (RFC 9110 §8.6, §6.1). */
            res->content_length = -1;
            res->chunked = false;
        }
    } else if (!res->chunked && res->content_length < 0) {
        res->close_delimited = true;
    }
    res->keep_alive = !res->close_delimited && !fi.conn_close && (minor == 1 || fi.conn_keep_alive);
    res->conn_options = fi.conn_options;
    return 0;
}

int ptc_http_parse_response(const char *buf, size_t len, ptc_http_method req_method, ptc_http_response *res,
                            ptc_http_error *err)
{
    res->status = 0;
    res->reason = ptc_str_make(buf, 0);
    res->minor_version = 1;
    res->n_headers = 0;
    res->content_length = -1;
    res->chunked = res->close_delimited = res->bodyless = res->keep_alive = false;
    res->head_len = 0;
    if (parse_response(buf, len, req_method, res, err) != 0) {
        /* Whatever was wrong, the proxy answers 502 to its client. */
        err->status = 502;
        return -1;
    }
    return 0;
}

const ptc_http_header *ptc_http_find_header(const ptc_http_header *h, size_t n, const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; i < n; i++)
        if (h[i].name.len == len && ptc_ascii_ieq(h[i].name.p, name, len))
            return &h[i];
    return NULL;
}
