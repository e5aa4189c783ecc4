/* Fuzzes the DNS query path: bytes from the network through
 * ptc_dns_respond over UDP and TCP against a small zone.  Besides memory
 * errors (ASan), it checks that every answer is a message ldns can read
 * back, with the query's id and QR set, within the transport's limit. */
#include "dns/dns.h"

#include <ldns/ldns.h>
#include <stdint.h>
#include <stdlib.h>

static ptc_dns_zone *zone(void)
{
    static ptc_dns_zone *z;
    if (z == NULL) {
        static const ptc_dns_entry entries[] = {
            {"www.example.test", "A", "192.0.2.10", 300, "api", 0, 0},
            {"www.example.test", "AAAA", "2001:db8::10", 300, "api", 0, 0},
            {"a.b.c.example.test", "A", "192.0.2.11", 60, "api", 0, 0},
            {"example.test", "A", "192.0.2.1", 300, "api", 0, 0},
        };
        char err[256];
        z = ptc_dns_zone_build("example.test", 2024010101, entries, sizeof(entries) / sizeof(entries[0]), err,
                               sizeof(err));
        if (z == NULL)
            abort();
    }
    return z;
}

static void one(const uint8_t *data, size_t size, ptc_dns_transport t)
{
    uint8_t *out = NULL;
    size_t len = 0;
    if (!ptc_dns_respond(zone(), data, size, t, &out, &len))
        return;
    ldns_pkt *p = NULL;
    if (len < 12 || len > (t == PTC_DNS_TCP ? 65535u : 1232u) ||
        ldns_wire2pkt(&p, out, len) != LDNS_STATUS_OK || !ldns_pkt_qr(p) ||
        ldns_pkt_id(p) != ((unsigned)data[0] << 8 | data[1]))
        abort();
    ldns_pkt_free(p);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size, PTC_DNS_UDP);
    one(data, size, PTC_DNS_TCP);
    return 0;
}
