/* The desired state: every proxy and certificate, as one immutable value.
 * A change builds a new state that shares the unchanged proxies and
 * certificates with the old one (copy-on-write, by reference count), so
 * engines can compare the state before and after an apply, and readers keep
 * a consistent view while a writer prepares the next one. */
#ifndef PTC_MODEL_STATE_H
#define PTC_MODEL_STATE_H

#include "model/cert.h"
#include "model/proxy.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ptc_state {
    atomic_int refs;
    const ptc_proxy **proxies; /* sorted by name */
    size_t n_proxies;
    /* The same proxies sorted by (domain, path_prefix), for the lookups by
     * route (not counted references: proxies holds those). */
    const ptc_proxy **by_route;
    const ptc_cert **certs; /* sorted by domain */
    size_t n_certs;
    int64_t revision; /* the store revision this state was committed as (0: none yet) */
} ptc_state;

/* An empty state with one reference. */
ptc_state *ptc_state_new(void);
ptc_state *ptc_state_retain(const ptc_state *s);
void ptc_state_release(const ptc_state *s);

/* Lookups, O(log n).  Results are borrowed from the state. */
const ptc_proxy *ptc_state_proxy(const ptc_state *s, const char *name);
const ptc_cert *ptc_state_cert(const ptc_state *s, const char *domain);
/* The certificate that serves host: exact domain, else a "*.parent"
 * wildcard one level up.  NULL when none. */
const ptc_cert *ptc_state_cert_for(const ptc_state *s, const char *host);
/* The proxy holding (domain, path_prefix), or NULL.  O(log n). */
const ptc_proxy *ptc_state_route_owner(const ptc_state *s, const char *domain, const char *path_prefix);
/* How many proxies serve domain (any path prefix).  O(log n). */
size_t ptc_state_domain_count(const ptc_state *s, const char *domain);

/* New states derived from base (which is left unchanged).  put_proxy takes
 * over the caller's reference to p and replaces any proxy of the same name;
 * the others return NULL-free results even when nothing matched. */
ptc_state *ptc_state_put_proxy(const ptc_state *base, ptc_proxy *p);
ptc_state *ptc_state_delete_proxy(const ptc_state *base, const char *name);
ptc_state *ptc_state_put_cert(const ptc_state *base, ptc_cert *c);
ptc_state *ptc_state_delete_cert(const ptc_state *base, const char *domain);

/* A state from arrays of proxies and certificates (references taken over;
 * the arrays themselves are copied), sorted here. */
ptc_state *ptc_state_from(ptc_proxy **proxies, size_t n_proxies, ptc_cert **certs, size_t n_certs);

#endif
