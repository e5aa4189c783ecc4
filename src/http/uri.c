/* Path and Host normalisation (see uri.h): one pass each, no allocation. */
#include "http/uri.h"

#include "http/chars.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

/* The segment out[start..o) once it is complete: 1 for ".", 2 for "..",
 * 0 for a plain segment, -1 for a dot segment carrying a ';' parameter
 * ("..;x"), which some back ends (Tomcat) resolve as ".." after routing. */
static int dot_segment(const char *s, size_t n)
{
    if (n == 0 || s[0] != '.')
        return 0;
    if (n == 1)
        return 1;
    if (s[1] == '.')
        return n == 2 ? 2 : s[2] == ';' ? -1 : 0;
    return s[1] == ';' ? -1 : 0;
}

ssize_t ptc_http_normalize_path(const char *path, size_t len, char *out)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 1, seg = 1;

    if (len == 0 || path[0] != '/')
        return -1;
    out[0] = '/';
    for (size_t i = 1; i <= len; i++) {
        if (i == len || path[i] == '/') {
            int dots = dot_segment(out + seg, o - seg);
            if (dots < 0)
                return -1;
            if (dots == 1) {
                o = seg;
            } else if (dots == 2) {
                if (seg == 1)
                    return -1; /* above the root */
                o = seg - 1;
                while (out[o - 1] != '/')
                    o--;
            }
            if (i == len)
                break;
            if (out[o - 1] != '/')
                out[o++] = '/';
            seg = o;
            continue;
        }
        uint8_t c = (uint8_t)path[i];
        if (c == '%') {
            if (len - i < 3 || !PTC_HC(path[i + 1], PTC_HC_HEX) || !PTC_HC(path[i + 2], PTC_HC_HEX))
                return -1;
            uint8_t v =
                (uint8_t)(ptc_http_hexval((uint8_t)path[i + 1]) << 4 | ptc_http_hexval((uint8_t)path[i + 2]));
            if (v == 0)
                return -1;
            i += 2;
            if (PTC_HC(v, PTC_HC_UNRES)) {
                out[o++] = (char)v;
            } else {
                out[o++] = '%';
                out[o++] = hex[v >> 4];
                out[o++] = hex[v & 15];
            }
        } else if (PTC_HC(c, PTC_HC_PATH)) {
            out[o++] = (char)c;
        } else {
            return -1;
        }
    }
    out[o] = '\0';
    return (ssize_t)o;
}

static int parse_ipv6(const char *p, size_t n, char *out, size_t outlen)
{
    char tmp[INET6_ADDRSTRLEN];
    struct in6_addr addr;

    if (n == 0 || n >= sizeof(tmp) || outlen < n + 3)
        return -1;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!PTC_HC(c, PTC_HC_HEX) && c != ':' && c != '.')
            return -1; /* no zone identifiers, no IPvFuture */
        tmp[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    tmp[n] = '\0';
    if (inet_pton(AF_INET6, tmp, &addr) != 1)
        return -1;
    out[0] = '[';
    memcpy(out + 1, tmp, n);
    out[n + 1] = ']';
    out[n + 2] = '\0';
    return 0;
}

int ptc_http_parse_host(const char *p, size_t len, char *out, size_t outlen, unsigned *port)
{
    size_t i = 0, o = 0;

    *port = 0;
    if (len == 0 || outlen == 0)
        return -1;
    if (p[0] == '[') {
        const char *close = memchr(p, ']', len);
        if (close == NULL || parse_ipv6(p + 1, (size_t)(close - p - 1), out, outlen) != 0)
            return -1;
        i = (size_t)(close - p) + 1;
    } else {
        size_t label = 0;
        for (; i < len && p[i] != ':'; i++) {
            char c = p[i];
            if (c == '.') {
                if (label == 0)
                    return -1; /* empty label */
                label = 0;
            } else if (!PTC_HC(c, PTC_HC_HOST) || ++label > 63) {
                return -1;
            }
            if (o + 1 >= outlen)
                return -1;
            out[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        if (o > 0 && out[o - 1] == '.')
            o--; /* the root label: "example.com." is "example.com" */
        if (o == 0 || o > 253)
            return -1;
        out[o] = '\0';
    }
    if (i < len) {
        unsigned v = 0;
        if (p[i] != ':' || ++i == len || len - i > 5)
            return -1;
        for (; i < len; i++) {
            if (p[i] < '0' || p[i] > '9')
                return -1;
            v = v * 10 + (unsigned)(p[i] - '0');
        }
        if (v == 0 || v > 65535)
            return -1;
        *port = v;
    }
    return 0;
}
