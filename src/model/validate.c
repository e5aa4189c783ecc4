/* Allow-list validation of user values (see validate.h). */
#include "model/validate.h"

#include <arpa/inet.h>
#include <string.h>

bool ptc_valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > PTC_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
        if (!ok)
            return false;
    }
    return true;
}

bool ptc_is_ip_literal(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* Checks labels of a host name; with fold set, upper-case letters pass. */
static const char *check_host_name(const char *s, bool allow_wildcard, bool fold)
{
    size_t n = strlen(s), label = 0;
    bool all_digits = true;

    if (n == 0)
        return "is empty";
    if (allow_wildcard && n > 2 && s[0] == '*' && s[1] == '.') {
        s += 2;
        n -= 2;
    }
    if (n > PTC_DOMAIN_MAX)
        return "is longer than 253 characters";
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return "has an empty label";
            if (s[i - 1] == '-')
                return "has a label ending with '-'";
            label = 0;
            all_digits = true;
            continue;
        }
        if (fold && c >= 'A' && c <= 'Z')
            c = (char)(c - 'A' + 'a');
        bool digit = c >= '0' && c <= '9';
        if (!((c >= 'a' && c <= 'z') || digit || c == '-'))
            return "may only hold letters a-z, digits, '-' and '.'";
        if (label == 0 && c == '-')
            return "has a label starting with '-'";
        if (++label > 63)
            return "has a label longer than 63 characters";
        all_digits = all_digits && digit;
    }
    if (label == 0)
        return "ends with a dot";
    if (s[n - 1] == '-')
        return "has a label ending with '-'";
    if (all_digits)
        return "looks like an IP address, not a host name";
    return NULL;
}

const char *ptc_check_domain(const char *s, bool allow_wildcard)
{
    if (ptc_is_ip_literal(s))
        return "is an IP address, not a host name";
    return check_host_name(s, allow_wildcard, false);
}

const char *ptc_check_upstream_host(const char *s)
{
    if (ptc_is_ip_literal(s))
        return NULL;
    return check_host_name(s, false, true);
}

static bool unreserved(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

const char *ptc_check_path(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || s[0] != '/')
        return "must start with '/'";
    if (n > PTC_PATH_MAX)
        return "is longer than 1024 characters";
    for (size_t i = 0; i < n; i++)
        if (s[i] != '/' && !unreserved(s[i]))
            return "may only hold letters, digits, '-', '.', '_', '~' and '/'";
    if (strstr(s, "//"))
        return "must not contain '//'";
    /* ".." anywhere, not only as a whole segment: "/a..b" is legal in a URI
     * but buys nothing and is what traversal filters trip over. */
    if (strstr(s, ".."))
        return "must not contain '..'";
    return NULL;
}

const char *ptc_check_email(const char *s)
{
    const char *at = strchr(s, '@');
    size_t n = strlen(s);
    if (n == 0 || n > 254 || at == NULL || at == s || strchr(at + 1, '@'))
        return "is not an e-mail address";
    for (const char *p = s; p < at; p++)
        if (!(unreserved(*p) || *p == '+'))
            return "is not an e-mail address";
    if (check_host_name(at + 1, false, true) != NULL)
        return "has an invalid domain";
    return NULL;
}
