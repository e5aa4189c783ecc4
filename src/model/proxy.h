/* A proxy: one route from (domain, path prefix) to upstreams, as the API
 * describes it (DESIGN §2.1, §9).  Once a proxy is part of a desired state
 * it is immutable and shared by reference count; a change makes a new one.
 *
 * Three JSON forms: the request body (strict: unknown fields and wrong
 * types are errors naming the field as the request spelled it), the stored
 * spec (what the store keeps), and the response (the spec plus derived
 * fields). */
#ifndef PTC_MODEL_PROXY_H
#define PTC_MODEL_PROXY_H

#include "core/buf.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PTC_UPSTREAMS_MAX 64

typedef struct ptc_upstream {
    char *host; /* host name (lower-case) or IP literal (IPv6 without brackets) */
    unsigned port;
    unsigned weight; /* 1..1000 */
} ptc_upstream;

typedef struct ptc_health_check {
    char *path;
    unsigned interval_ms;
    unsigned timeout_ms;
    unsigned healthy_threshold;   /* consecutive successes that mark an upstream up */
    unsigned unhealthy_threshold; /* consecutive failures that mark it down */
} ptc_health_check;

typedef enum ptc_proxy_source { PTC_SOURCE_API, PTC_SOURCE_REGISTRY } ptc_proxy_source;

typedef struct ptc_proxy {
    /* Fields ordered so that no padding is left: 10,000 proxies are held. */
    atomic_int refs;
    ptc_proxy_source source;
    char *name;
    char *domain;      /* lower-case; may start with "*." */
    char *path_prefix; /* "/" or without trailing slash */
    ptc_upstream *upstreams;
    size_t n_upstreams;
    bool strip_prefix;
    bool require_healthy;
    bool enable_ssl;
    bool websocket;
    bool security_headers;
    bool dns;
    bool packed;            /* strings and upstreams live in this proxy's own allocation (a clone) */
    uint64_t max_body_size; /* 0: the max_body_size setting */
    ptc_health_check health_check;
    int64_t created_at; /* ms since the epoch */
    int64_t updated_at;
    int64_t revision; /* revision that last changed it */
} ptc_proxy;

/* Defaults a request leaves unsaid, from the settings (DESIGN §9). */
typedef struct ptc_proxy_defaults {
    const char *health_check_path;
    unsigned health_check_timeout_ms;
    unsigned health_check_interval_ms;
} ptc_proxy_defaults;

/* A new, empty proxy with one reference. */
ptc_proxy *ptc_proxy_new(void);
ptc_proxy *ptc_proxy_retain(const ptc_proxy *p);
/* Drops a reference; frees on the last.  NULL is ignored. */
void ptc_proxy_release(const ptc_proxy *p);
/* A deep copy with one reference (for building a changed version), in a
 * single allocation: the state holds its proxies as clones, so 10,000 of
 * them cost one block each instead of seven.  Only scalar fields of a
 * clone may be changed. */
ptc_proxy *ptc_proxy_clone(const ptc_proxy *p);

/* Builds a proxy named name from a request body.  Every problem is added
 * to errors ({field: reason}, fields spelled as in the request); the proxy
 * is returned only when there is none (else NULL).  Applies the defaults,
 * lower-cases the domain, normalises the path prefix (no trailing slash). */
ptc_proxy *ptc_proxy_from_request(const json_t *body, const char *name, const ptc_proxy_defaults *defs,
                                  json_t *errors);

/* The stored form (every spec field plus source and times) and back.
 * from_stored returns NULL when the JSON is not a valid spec. */
json_t *ptc_proxy_to_stored(const ptc_proxy *p);
ptc_proxy *ptc_proxy_from_stored(const json_t *j);

/* Members an outer layer adds to the API form (the health checks' view):
 * upstream() appends to upstream i's object, proxy() to the proxy's, each
 * as ",\"key\":value" pairs.  Either may be NULL. */
typedef struct ptc_proxy_api_extras {
    void (*upstream)(ptc_buf *b, const ptc_proxy *p, size_t i, void *arg);
    void (*proxy)(ptc_buf *b, const ptc_proxy *p, void *arg);
    void *arg;
} ptc_proxy_api_extras;

/* Appends the API form as JSON text: the spec plus droplet_name, upstream,
 * upstream_host, upstream_port, ssl_enabled (enable_ssl and a certificate
 * present), status, source, created_at, updated_at, revision, and the
 * extras (x may be NULL).  Written as text rather than built with jansson:
 * listing 10,000 proxies would otherwise allocate half a million small
 * objects. */
void ptc_proxy_write_api(ptc_buf *b, const ptc_proxy *p, bool has_cert, const ptc_proxy_api_extras *x);

/* True when a and b describe the same route (times, revision and source
 * aside): a PUT of an equal spec changes nothing. */
bool ptc_proxy_spec_equal(const ptc_proxy *a, const ptc_proxy *b);

const char *ptc_proxy_source_name(ptc_proxy_source s);

#endif
