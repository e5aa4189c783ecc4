/* Fuzzes path normalisation and Host parsing on arbitrary bytes (the
 * request fuzzer only reaches them with what the parser let through).
 * Checks that the normal forms are stable and hold only allowed bytes. */
#include "http/uri.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                            \
    do {                                                                                                     \
        if (!(c))                                                                                            \
            abort();                                                                                         \
    } while (0)

static void check_path(const char *p, size_t size)
{
    char *out = malloc(size + 1), *again = malloc(size + 1);
    ssize_t n = ptc_http_normalize_path(p, size, out);
    if (n >= 0) {
        ASSERT((size_t)n <= size && out[0] == '/' && out[n] == '\0' && strlen(out) == (size_t)n);
        ASSERT(strstr(out, "//") == NULL && strstr(out, "/./") == NULL && strstr(out, "/../") == NULL);
        ASSERT(!(n >= 2 && strcmp(out + n - 2, "/.") == 0) && !(n >= 3 && strcmp(out + n - 3, "/..") == 0));
        for (ssize_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)out[i];
            ASSERT(c > 0x20 && c < 0x7f && c != '#' && c != '?' && c != '\\');
            /* Escapes are upper-case and never of an unreserved byte. */
            if (c == '%') {
                ASSERT(i + 2 < n);
                char h[3] = {out[i + 1], out[i + 2], 0};
                ASSERT(strspn(h, "0123456789ABCDEF") == 2);
                long v = strtol(h, NULL, 16);
                ASSERT(v != 0 && !((v >= 'a' && v <= 'z') || (v >= 'A' && v <= 'Z') ||
                                   (v >= '0' && v <= '9') || v == '-' || v == '.' || v == '_' || v == '~'));
            }
        }
        ssize_t m = ptc_http_normalize_path(out, (size_t)n, again);
        ASSERT(m == n && memcmp(out, again, (size_t)n) == 0);
    }
    free(out);
    free(again);
}

static void check_host(const char *p, size_t size)
{
    char out[256], again[256];
    unsigned port = 99999, port2;
    if (ptc_http_parse_host(p, size, out, sizeof(out), &port) != 0)
        return;
    size_t n = strlen(out);
    ASSERT(n > 0 && n <= 253 && port <= 65535);
    if (out[0] == '[') {
        ASSERT(out[n - 1] == ']');
    } else {
        ASSERT(out[n - 1] != '.' && out[0] != '.');
        ASSERT(strspn(out, "abcdefghijklmnopqrstuvwxyz0123456789-._") == n);
    }
    ASSERT(ptc_http_parse_host(out, n, again, sizeof(again), &port2) == 0);
    ASSERT(strcmp(out, again) == 0 && port2 == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_path((const char *)data, size);
    check_host((const char *)data, size);
    return 0;
}
