/* Header-field rules for forwarding (see fields.h). */
#include "http/fields.h"

#include <string.h>

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Whether the comma-separated list v[0..n) holds tok[0..toklen). */
static bool list_has(const char *v, size_t n, const char *tok, size_t toklen)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i++;
        while (start < e && ows(v[start]))
            start++;
        while (e > start && ows(v[e - 1]))
            e--;
        if (e - start == toklen && toklen > 0 && ptc_ascii_ieq(v + start, tok, toklen))
            return true;
    }
    return false;
}

bool ptc_http_list_has(ptc_str value, const char *token)
{
    return list_has(value.p, value.len, token, strlen(token));
}

bool ptc_http_is_hop_by_hop(ptc_str name)
{
    switch (name.len) {
    case 2:
        return PTC_HTTP_NAME_IS(name, "te");
    case 7:
        return PTC_HTTP_NAME_IS(name, "trailer") || PTC_HTTP_NAME_IS(name, "upgrade");
    case 10:
        return PTC_HTTP_NAME_IS(name, "connection") || PTC_HTTP_NAME_IS(name, "keep-alive");
    case 16:
        return PTC_HTTP_NAME_IS(name, "proxy-connection");
    case 17:
        return PTC_HTTP_NAME_IS(name, "transfer-encoding");
    default:
        return false;
    }
}

bool ptc_http_named_by_connection(const ptc_http_header *headers, size_t n, ptc_str name)
{
    for (size_t i = 0; i < n; i++)
        if (ptc_str_ieq(headers[i].name, "connection") &&
            list_has(headers[i].value.p, headers[i].value.len, name.p, name.len))
            return true;
    return false;
}

void ptc_http_conn_options_collect(const ptc_http_header *headers, size_t n, ptc_http_conn_options *out)
{
    out->n = 0;
    out->many = false;
    for (size_t i = 0; i < n; i++) {
        if (headers[i].name.len != 10 || !ptc_str_ieq(headers[i].name, "connection"))
            continue;
        const char *v = headers[i].value.p;
        size_t len = headers[i].value.len, j = 0;
        while (j < len) {
            size_t start = j;
            while (j < len && v[j] != ',')
                j++;
            size_t e = j++;
            while (start < e && ows(v[start]))
                start++;
            while (e > start && ows(v[e - 1]))
                e--;
            ptc_str tok = ptc_str_make(v + start, e - start);
            if (tok.len == 0 || ptc_http_is_hop_by_hop(tok))
                continue;
            if (out->n == PTC_HTTP_CONN_OPTIONS_MAX) {
                out->many = true;
                return;
            }
            out->names[out->n++] = tok;
        }
    }
}

bool ptc_http_conn_options_name(const ptc_http_conn_options *o, const ptc_http_header *headers, size_t n,
                                ptc_str name)
{
    if (o->many)
        return ptc_http_named_by_connection(headers, n, name);
    for (size_t i = 0; i < o->n; i++)
        if (o->names[i].len == name.len && ptc_ascii_ieq(o->names[i].p, name.p, name.len))
            return true;
    return false;
}
