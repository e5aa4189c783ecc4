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
        return ptc_str_ieq(name, "te");
    case 7:
        return ptc_str_ieq(name, "trailer") || ptc_str_ieq(name, "upgrade");
    case 10:
        return ptc_str_ieq(name, "connection") || ptc_str_ieq(name, "keep-alive");
    case 16:
        return ptc_str_ieq(name, "proxy-connection");
    case 17:
        return ptc_str_ieq(name, "transfer-encoding");
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
