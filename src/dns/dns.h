/* The authoritative DNS responder (seed 004, DESIGN §6): one zone
 * (dns_zone) answered over UDP and TCP on dns_listen.
 *
 * - A zone is an immutable snapshot (names, A/AAAA values, SOA, NS),
 *   shared by reference count.  The control plane builds a new one on
 *   every change and publishes it to the server with one atomic swap, so
 *   a change answers from the next query on, like the data plane's routes.
 * - ptc_dns_respond() turns one query message into one answer message.
 *   It is pure (no I/O), the only place that reads network bytes, and the
 *   fuzz target's entry point.  The bytes are checked first (lengths,
 *   counts, every name's labels and compression pointers, nothing after
 *   the last record) and only then parsed and answered with ldns.
 * - The server owns one thread with a poll loop over the UDP socket, the
 *   TCP listener and at most PTC_DNS_TCP_MAX connections (2-byte length
 *   framing, idle timeout), so a flood of connections cannot grow it.
 *
 * Answers: A, AAAA, SOA and NS at the apex; A/AAAA of managed records and
 * of proxies with dns: true; NOERROR with no answer (and the SOA in the
 * authority section) for other types of existing names, including names
 * that only exist because names below them do; NXDOMAIN with the SOA for
 * other names inside the zone; REFUSED outside it, for other classes and
 * for zone transfers.  No wildcards. */
#ifndef PTC_DNS_H
#define PTC_DNS_H

#include "core/buf.h"
#include "model/state.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PTC_DNS_TTL_DEFAULT 300
#define PTC_DNS_TTL_MAX 604800
#define PTC_DNS_TCP_MAX 64         /* open TCP connections */
#define PTC_DNS_TCP_IDLE_MS 10000  /* time to send a whole query */
#define PTC_DNS_UDP_QUERY_MAX 4096 /* longest query datagram read */
#define PTC_DNS_UDP_PLAIN_MAX 512  /* UDP message limit without EDNS */
#define PTC_DNS_EDNS_MAX 1232      /* our UDP answer limit with EDNS */

/* One address in a zone. */
typedef struct ptc_dns_entry {
    const char *name;  /* fully qualified, lower-case, no trailing dot */
    const char *type;  /* "A" | "AAAA" */
    const char *value; /* an IPv4 (A) or IPv6 (AAAA) literal */
    unsigned ttl;
    const char *source; /* "api", or "proxy:<name>" */
    int64_t created_at; /* ms since the epoch; 0 for proxies */
    int64_t updated_at;
} ptc_dns_entry;

typedef struct ptc_dns_zone ptc_dns_zone;

/* A zone named zone (lower-case, no trailing dot) with the given SOA
 * serial and entries (copied; every entry must lie inside the zone and
 * hold a literal of its type).  NULL with the reason in err otherwise. */
ptc_dns_zone *ptc_dns_zone_build(const char *zone, uint32_t serial, const ptc_dns_entry *entries, size_t n,
                                 char *err, size_t errlen);
/* The zone the control plane publishes: the managed records inside the
 * zone (others are logged and left out), then an A
 * (or AAAA) record pointing at proxy_ip for each proxy of state with dns:
 * true whose domain lies in the zone and has no managed record of that
 * type (wildcard domains are skipped; proxy_ip "" publishes none). */
ptc_dns_zone *ptc_dns_zone_from(const char *zone, const char *proxy_ip, uint32_t serial,
                                const ptc_dns_record_list *records, const ptc_state *state, char *err,
                                size_t errlen);
ptc_dns_zone *ptc_dns_zone_retain(const ptc_dns_zone *z);
void ptc_dns_zone_release(const ptc_dns_zone *z);

const char *ptc_dns_zone_name(const ptc_dns_zone *z);
uint32_t ptc_dns_zone_serial(const ptc_dns_zone *z);
/* The entries, sorted by name then type; borrowed from the zone. */
const ptc_dns_entry *ptc_dns_zone_entries(const ptc_dns_zone *z, size_t *n);
/* Appends the zone as a BIND zone file ($ORIGIN, $TTL, SOA, NS, then
 * every entry). */
void ptc_dns_zone_export(const ptc_dns_zone *z, ptc_buf *out);

/* The fully qualified form of a record name given relative to zone
 * ("llm", "@" for the apex) or fully qualified inside it ("llm.zone",
 * "llm.zone."), lower-cased, into out.  Returns NULL when valid, else a
 * static reason (not a host name, outside the zone, too long). */
const char *ptc_dns_name_qualify(const char *zone, const char *name, char *out, size_t outlen);
/* True when fqdn (lower-case, no trailing dot) is zone or lies below it. */
bool ptc_dns_in_zone(const char *zone, const char *fqdn);

typedef enum ptc_dns_transport { PTC_DNS_UDP, PTC_DNS_TCP } ptc_dns_transport;

/* Answers one query message of len bytes (the TCP length prefix already
 * removed) from zone z (NULL: REFUSED to everything).  Returns true with
 * *out (malloc'd, the caller frees) and *out_len when there is something
 * to send, false when the message is dropped: shorter than a header, a
 * response rather than a query, or longer than the transport allows.
 * Never blocks. */
bool ptc_dns_respond(const ptc_dns_zone *z, const uint8_t *msg, size_t len, ptc_dns_transport t,
                     uint8_t **out, size_t *out_len);

typedef struct ptc_dns_server ptc_dns_server;

/* Binds UDP and TCP on listen ("host:port", an IP literal host) and starts
 * the server thread, answering REFUSED until the first publish.  NULL with
 * the reason in err.  Blocks briefly. */
ptc_dns_server *ptc_dns_server_start(const char *listen, char *err, size_t errlen);
/* Makes z the zone answered from the next query on; takes over the
 * caller's reference.  Never blocks on the server thread. */
void ptc_dns_server_publish(ptc_dns_server *s, ptc_dns_zone *z);
/* Stops the thread, closes every socket and frees the server. */
void ptc_dns_server_stop(ptc_dns_server *s);

#endif
