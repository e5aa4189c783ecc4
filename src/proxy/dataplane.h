/* The builtin data plane: portico's own HTTP/1.1 + TLS reverse proxy.
 * Worker threads, each with its own epoll loop, accept on SO_REUSEPORT
 * listeners and route by Host and path prefix to upstream pools.  Routes
 * and certificates arrive as an immutable snapshot that the control plane
 * builds off the hot path and publishes with one atomic swap: requests in
 * flight finish on the snapshot they started with, and no connection is
 * dropped by a change.
 *
 * Nothing here reads the store or the API: the engine layer translates the
 * desired state into the plain route and certificate descriptions below. */
#ifndef PTC_PROXY_DATAPLANE_H
#define PTC_PROXY_DATAPLANE_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ptc_dp_upstream {
    const char *host; /* an IP literal or a host name (resolved when the snapshot is built) */
    unsigned port;
    unsigned weight; /* 1..PTC_DP_WEIGHT_MAX */
} ptc_dp_upstream;

#define PTC_DP_WEIGHT_MAX 65535

typedef struct ptc_dp_route {
    const char *name;        /* the proxy's name, for logs and metrics */
    const char *domain;      /* lower-case host name, or "*.example.com" */
    const char *path_prefix; /* "/" or "/a/b" (normalised, no trailing slash) */
    bool strip_prefix;
    const ptc_dp_upstream *upstreams;
    size_t n_upstreams;
    bool websocket;         /* let Upgrade: websocket through */
    bool security_headers;  /* add seed 003's security headers to responses */
    bool https_only;        /* plain HTTP answers 301 to https:// (enable_ssl with a certificate) */
    uint64_t max_body_size; /* 0: the data plane's default */
    /* 1 + the index of the route of the previous snapshot (see
     * ptc_dp_snapshot_build) that this one is, unchanged: it is shared, not
     * compiled again, and the fields above are not read.  0: a new route. */
    uint32_t keep;
} ptc_dp_route;

typedef struct ptc_dp_cert {
    const char *domain;   /* the name it is served for (SNI), may be "*.example.com" */
    const char *cert_pem; /* leaf first, then the chain */
    const char *key_pem;
    uint32_t keep; /* 1 + the index of prev's certificate that this one is (then nothing above but domain is
                      read), or 0 */
} ptc_dp_cert;

typedef struct ptc_dp_config {
    const char *http_listen;     /* "host:port" */
    const char *https_listen;    /* "host:port" or "" for none */
    unsigned workers;            /* 0: one per core */
    const char *trusted_proxies; /* comma-separated CIDRs (see core/settings.h) */
    const char *access_log;      /* "" none, "-" stderr, else a file path */
    uint64_t max_body_size;
    unsigned header_timeout_ms, idle_timeout_ms, body_min_rate;
    unsigned upstream_connect_timeout_ms, upstream_timeout_ms;
} ptc_dp_config;

typedef struct ptc_dataplane ptc_dataplane;
typedef struct ptc_dp_snapshot ptc_dp_snapshot;

/* Binds the listeners (so that a busy port fails at start, with the reason
 * in err) without serving yet.  Returns NULL on failure.  Blocks briefly. */
ptc_dataplane *ptc_dataplane_create(const ptc_dp_config *cfg, char *err, size_t errlen);
/* Starts the worker threads; they serve an empty snapshot (every Host gets
 * 404 ROUTE_NOT_FOUND) until the first publish.  Returns 0 or -errno. */
int ptc_dataplane_start(ptc_dataplane *dp);

/* Builds a snapshot: the router, resolved upstream addresses and one
 * SSL_CTX per certificate.  Routes and certificates marked `keep` are
 * shared with prev, which must then be the live snapshot of the data plane
 * and stay so until this returns (the one publisher builds the next
 * snapshot from the last it published): a change to one route of 10,000
 * compiles one route.  Runs on the calling (control-plane) thread and may
 * block on name resolution.  The inputs are copied.  Returns NULL with the
 * reason in err on a bad certificate or an unresolvable upstream. */
ptc_dp_snapshot *ptc_dp_snapshot_build(const ptc_dp_snapshot *prev, const ptc_dp_route *routes,
                                       size_t n_routes, const ptc_dp_cert *certs, size_t n_certs, char *err,
                                       size_t errlen);
/* Gives back the scratch and spare memory that snapshot builds keep from
 * one to the next (0.75 MB at 10,000 routes), once changes have stopped
 * coming for a while.  Control plane. */
void ptc_dp_snapshot_trim(void);
/* Whether the route that serves domain and path_prefix in snap answers
 * plain HTTP with a redirect to HTTPS: what a check of the route must
 * speak. */
bool ptc_dp_snapshot_https_only(const ptc_dp_snapshot *snap, const char *domain, const char *path_prefix);
/* Frees a snapshot that was never published. */
void ptc_dp_snapshot_discard(ptc_dp_snapshot *snap);
/* Makes snap the live snapshot (ownership passes to the data plane) and
 * returns its generation number.  Workers see it on their next event; the
 * previous snapshot is freed when its last request ends.  Never blocks on
 * the workers. */
uint64_t ptc_dataplane_publish(ptc_dataplane *dp, ptc_dp_snapshot *snap);

/* Frees the snapshots whose last request has ended (the workers queue
 * them: see ptc_snap_release); every publish does it too.  Control plane
 * only; never blocks on the workers.  A caller that has waited a little
 * after a publish (a verify request) frees the replaced snapshot now
 * rather than at the next change: 0.7 MB at 10,000 routes. */
void ptc_dataplane_collect(ptc_dataplane *dp);

/* Health hook (issue 5): records the verdict on the upstream address
 * host:port (as the routes spell it) and makes it live at once, without a
 * rebuild, in every snapshot that names it, now or later: workers send
 * traffic only to healthy upstreams and answer 503 NO_HEALTHY_UPSTREAM
 * when a route has none.  Addresses start healthy.  Returns 0, or -EINVAL
 * for a host name too long to be one.  Thread-safe; never blocks on the
 * workers. */
int ptc_dp_upstream_set_healthy(const char *host, unsigned port, bool healthy);

/* Passive health: after PTC_DP_PASSIVE_FAILURES failures in a row of one
 * upstream address (refused, reset, timed out, or an invalid response),
 * workers stop sending it traffic, as if the checks had found it
 * unhealthy, and call fn(arg, host, port, reason) once, from the worker's
 * thread; fn must return at once.  The address comes back only through
 * ptc_dp_upstream_set_healthy.  fn NULL clears it; once a clearing call
 * returns, the previous fn is not called any more.  Thread-safe. */
#define PTC_DP_PASSIVE_FAILURES 3
typedef void (*ptc_dp_passive_fn)(void *arg, const char *host, unsigned port, const char *reason);
void ptc_dataplane_set_passive_listener(ptc_dataplane *dp, ptc_dp_passive_fn fn, void *arg);

/* HTTP-01 (RFC 8555 §8.3): until cleared, GET (or HEAD)
 * /.well-known/acme-challenge/<token> on the plain-HTTP listener answers
 * 200 text/plain key_authorization, for any Host, before routing and before
 * the HTTPS redirect.  Both copy what they need and are safe to call from
 * any thread while the workers serve.  Returns 0, -EINVAL for a token that
 * is not 1-256 base64url characters or an answer that is not 1-1024
 * printable characters, or -ENOSPC when 64 challenges are already set. */
int ptc_dataplane_set_challenge(ptc_dataplane *dp, const char *token, const char *key_authorization);
void ptc_dataplane_clear_challenge(ptc_dataplane *dp, const char *token);

/* Stops accepting, lets requests in flight finish for at most drain_ms,
 * then closes everything and joins the workers. */
void ptc_dataplane_stop(ptc_dataplane *dp, unsigned drain_ms);
void ptc_dataplane_destroy(ptc_dataplane *dp);

/* Appends the data plane's metrics in Prometheus text format: requests by
 * route and status, upstream latency histograms, open connections, the
 * live snapshot's generation. */
void ptc_dataplane_metrics(ptc_dataplane *dp, ptc_buf *out);

#endif
