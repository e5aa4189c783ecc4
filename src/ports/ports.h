/* The port allocator (seed 003, DESIGN §2.2, §9): hands out the lowest
 * port of port_range that is not reserved, not allocated in the store and
 * not bound on this host, and keeps every allocation in the store.
 *
 * Atomicity comes from the store, not from a lock here: the insert of an
 * allocation fails with -EEXIST when the port (or the owner's internal
 * port) is already active, whoever holds it, so two requests -- in this
 * process or on another node sharing the store -- never get the same port;
 * the loser moves on to the next candidate.
 *
 * "Bound on this host" is checked by binding the port: TCP on 0.0.0.0
 * and on [::] (IPV6_V6ONLY), without SO_REUSEADDR.  That catches a
 * listener on any local address of either family, and also a port still
 * in TIME_WAIT, which is as unusable for a new listener. */
#ifndef PTC_PORTS_H
#define PTC_PORTS_H

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct ptc_ports ptc_ports;

/* The allocator over st for range ("lo-hi") and reserved (ports and
 * ranges separated by commas or spaces, as the settings accept them).
 * The store is borrowed and must outlive it.  NULL with the reason in err
 * when a value does not parse. */
ptc_ports *ptc_ports_new(ptc_store *st, const char *range, const char *reserved, char *err, size_t errlen);
void ptc_ports_free(ptc_ports *p);

typedef struct ptc_port_grant {
    unsigned port;
    bool created; /* false: owner already held a port for this internal port */
} ptc_port_grant;

/* Allocates a port for (owner, internal_port), or answers the one owner
 * already holds for it.  Returns 0, -ENOSPC when every port of the range
 * is reserved, taken or bound, or -EIO on a store failure.  Blocks on the
 * store; safe from several threads. */
int ptc_ports_allocate(ptc_ports *p, const char *owner, unsigned internal_port, ptc_port_grant *out);

/* Seed 003's statistics over the active allocations in active. */
typedef struct ptc_port_stats {
    unsigned lo, hi;
    size_t range_size;
    size_t reserved;  /* reserved ports inside the range */
    size_t allocated; /* active allocations (all of them, even outside today's range) */
    size_t available; /* range size - reserved - active allocations inside the range */
} ptc_port_stats;

void ptc_ports_stats(const ptc_ports *p, const ptc_port_list *active, ptc_port_stats *out);

bool ptc_ports_is_reserved(const ptc_ports *p, unsigned port);

/* True when nothing on this host holds port (see above).  Blocks briefly. */
bool ptc_ports_bindable(unsigned port);

#endif
