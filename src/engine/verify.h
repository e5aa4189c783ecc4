/* The verify step of the apply pipeline (DESIGN §3 step 7): one request
 * through an engine's listener for a route's Host and path. */
#ifndef PTC_ENGINE_VERIFY_H
#define PTC_ENGINE_VERIFY_H

#include <jansson.h>
#include <stdbool.h>

typedef struct ptc_verify_result {
    bool ok;          /* the route answered as expected */
    int status;       /* HTTP status, 0 when no response came */
    char detail[256]; /* why not ok, or "" */
    long duration_ms;
} ptc_verify_result;

/* Sends GET path with Host domain (a wildcard domain is asked for as
 * "verify.<parent>") to listen ("host:port"; an unspecified address means
 * loopback), over TLS with SNI when tls is set (the chain is not checked:
 * this tests the route, not the CA).  With expect_gone, ok means the
 * engine's own ROUTE_NOT_FOUND answered; otherwise ok means anything else
 * answered that is not a 502/504 of the proxy.  Waits at most timeout_ms.
 * Blocks. */
void ptc_verify_route(const char *listen, bool tls, const char *domain, const char *path, bool expect_gone,
                      long timeout_ms, ptc_verify_result *out);

/* The result as the `verify` object of an apply report (new reference). */
json_t *ptc_verify_to_json(const ptc_verify_result *v);

#endif
