/* The router of the builtin data plane (DESIGN §5): Host first, exact name
 * then the most specific wildcard, then the longest path prefix on segment
 * boundaries.  Built once per snapshot on the control plane in O(n) (two
 * hash tables and a counting sort), read by every worker without locks.
 *
 * Host selection never falls through: when a host matches but none of its
 * prefixes does, there is no route (nginx picks a server block by name the
 * same way).  A wildcard "*.example.com" matches any name that ends in
 * ".example.com", however many labels come before it (nginx's rule), and
 * the longest such suffix wins. */
#ifndef PTC_PROXY_ROUTER_H
#define PTC_PROXY_ROUTER_H

#include "core/str.h"

#include <stddef.h>

typedef struct ptc_router ptc_router;

typedef struct ptc_router_entry {
    const char *domain;      /* lower-case host name, or "*.example.com" */
    const char *path_prefix; /* "/" or "/a/b" (no trailing slash) */
    int id;                  /* handed back by ptc_router_match */
} ptc_router_entry;

/* Builds a router over entries[0..n).  The strings are referenced, not
 * copied: they must outlive the router (the snapshot owns both).  A second
 * entry with the same domain and prefix never matches.  Never fails (out
 * of memory aborts). */
ptc_router *ptc_router_build(const ptc_router_entry *entries, size_t n);
/* Frees r; its memory is kept for the next build until ptc_router_trim. */
void ptc_router_free(ptc_router *r);
/* Gives back the memory kept by the last ptc_router_free (when changes
 * have stopped coming). */
void ptc_router_trim(void);

/* Finds the entry for a normalised host (lower-case, no port, no trailing
 * dot: what ptc_http_parse_host writes) and a normalised path (what
 * ptc_http_normalize_path writes, without the query).  Returns its id and
 * the length of its prefix in *prefix_len, or -1. */
int ptc_router_match(const ptc_router *r, ptc_str host, ptc_str path, size_t *prefix_len);

/* The path to forward when the route strips its prefix of prefix_len bytes
 * from the path it matched: "/api/x" -> "/x", "/api" -> "/", and a "/"
 * prefix strips nothing.  The result points into path or at a literal. */
ptc_str ptc_router_strip(ptc_str path, size_t prefix_len);

/* Lower-cases src into out (outlen >= 256) without a trailing dot, for
 * names coming from SNI; returns the length or -1 when it does not fit. */
long ptc_router_host_key(const char *src, size_t len, char *out, size_t outlen);

#endif
