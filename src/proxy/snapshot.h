/* The routing snapshot of the builtin data plane: everything a worker needs
 * to route a request and pick a certificate, built on the control plane
 * (ptc_dp_snapshot_build in dataplane.h) and never changed afterwards, so
 * that workers read it without locks.
 *
 * Lifetime: a counted reference.  The data plane holds one for the live
 * snapshot, each worker one for every snapshot that its connections still
 * use (workers count their own requests without atomics and drop their
 * reference when the count falls to zero; see worker.h), so the atomic
 * count moves a few times per publish, never per request.
 *
 * Upstream health is not part of the immutable data: each upstream points
 * to a shared health cell, one per "host:port" for the whole process, that
 * the control plane flips atomically (ptc_dp_upstream_set_healthy) without
 * building a snapshot.  Cells outlive the snapshots that share them. */
#ifndef PTC_PROXY_SNAPSHOT_H
#define PTC_PROXY_SNAPSHOT_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/str.h"
#include "proxy/dataplane.h"
#include "proxy/router.h"

typedef struct ptc_health_cell ptc_health_cell;

typedef struct ptc_snap_upstream {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    uint16_t addr_len;
    uint16_t weight;    /* 1..PTC_DP_WEIGHT_MAX */
    uint64_t addr_hash; /* keys the workers' keep-alive pools */
    const char *label;  /* "host:port" as configured, for logs and metrics (interned for good) */
    ptc_health_cell *health;
} ptc_snap_upstream;

typedef struct ptc_snap_route {
    const char *name;
    const char *domain;
    const char *path_prefix;
    bool strip_prefix, websocket, security_headers, https_only;
    uint64_t max_body_size; /* 0: the data plane's default */
    const ptc_snap_upstream *upstreams;
    uint32_t n_upstreams;
    uint32_t stat_idx; /* stable per route name across snapshots (metrics, balancing state) */
} ptc_snap_route;

/* A compiled route with its upstreams and strings, in one allocation
 * shared (by reference count) by every snapshot that keeps the route
 * unchanged: a change compiles only the routes it touches. */
typedef struct ptc_snap_cell ptc_snap_cell;

struct ptc_dp_snapshot {
    atomic_long refs;
    uint64_t generation; /* set when published */
    ptc_router *router;
    ptc_snap_cell **cells; /* route i is cells[i] */
    size_t n_routes;
    uint32_t stat_limit; /* 1 + the largest stat_idx of its routes */
    /* Certificates: an open-addressing table of names (a wildcard under its
     * suffix) to indices into ctxs. */
    SSL_CTX **ctxs;
    size_t n_ctxs;
    struct snap_cert_slot *cert_tab;
    uint32_t cert_mask;
    char *strings;
    struct ptc_dp_snapshot *dead_next; /* in the queue of ptc_snap_release */
};

void ptc_snap_retain(ptc_dp_snapshot *snap);
/* Drops a reference.  The last one does not free the snapshot on the
 * calling thread, which is usually a worker (dropping the references of
 * 10,000 routes takes a fraction of a millisecond that requests would
 * wait for): the snapshot is queued, lock-free, for ptc_snap_reap. */
void ptc_snap_release(ptc_dp_snapshot *snap);
/* Frees the queued snapshots.  Control plane only: every publish calls it
 * (so at most the generations still in use when it ran wait for the
 * next), and so does the data plane's destruction. */
void ptc_snap_reap(void);

/* The route for a normalised host and path (see ptc_router_match), or
 * NULL.  *prefix_len is the matched prefix's length. */
const ptc_snap_route *ptc_snap_route_match(const ptc_dp_snapshot *snap, ptc_str host, ptc_str path,
                                           size_t *prefix_len);

/* The certificate context for an SNI name: the exact name, else the
 * wildcard of its parent ("a.example.com" -> "*.example.com": one label,
 * as certificates match), else NULL (the handshake fails: portico never
 * presents a certificate for another name). */
SSL_CTX *ptc_snap_cert_pick(const ptc_dp_snapshot *snap, const char *servername);

/* The upstream's shared health flag (ptc_dp_upstream_set_healthy). */
bool ptc_snap_upstream_healthy(const ptc_snap_upstream *u);
/* Passive health: a request to u failed (true is returned, once, when that
 * failure ejects u: PTC_DP_PASSIVE_FAILURES in a row), or got a valid
 * response (which ends the run).  Lock-free; the success path writes only
 * when a run of failures was under way, so that workers do not bounce the
 * cell's cache line between them on every request. */
bool ptc_snap_upstream_failed(const ptc_snap_upstream *u);
void ptc_snap_upstream_succeeded(const ptc_snap_upstream *u);

/* The route names seen so far, by stat_idx (for metrics).  The count only
 * grows; names stay valid for the life of the process. */
uint32_t ptc_snap_stat_count(void);
const char *ptc_snap_stat_name(uint32_t idx);

#endif
