/* Header-field rules for forwarding (see fields.h). */
#include "http/fields.h"

#include <string.h>

static bool ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The next item of the comma-separated list v[0..n) from *i on, without
 * the white space around it (possibly empty); false at the end. */
static bool next_item(const char *v, size_t n, size_t *i, ptc_str *item)
{
    if (*i >= n)
        return false;
    size_t start = *i, e = start;
    while (e < n && v[e] != ',')
        e++;
    *i = e + 1;
    while (start < e && ows(v[start]))
        start++;
    while (e > start && ows(v[e - 1]))
        e--;
    *item = ptc_str_make(v + start, e - start);
    return true;
}

/* Whether the comma-separated list v[0..n) holds tok[0..toklen). */
static bool list_has(const char *v, size_t n, const char *tok, size_t toklen)
{
    size_t i = 0;
    ptc_str item;
    while (next_item(v, n, &i, &item))
        if (item.len == toklen && toklen > 0 && ptc_ascii_ieq(item.p, tok, toklen))
            return true;
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
        size_t j = 0;
        ptc_str tok;
        while (next_item(headers[i].value.p, headers[i].value.len, &j, &tok)) {
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
