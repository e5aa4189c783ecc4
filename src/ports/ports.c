/* The port allocator (see ports.h). */
#include "ports/ports.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/settings.h"
#include "core/util.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PORT_BITS (65536 / 8)

struct ptc_ports {
    ptc_store *store;
    unsigned lo, hi;
    uint8_t reserved[PORT_BITS];
};

static bool bit(const uint8_t *map, unsigned port)
{
    return (map[port >> 3] >> (port & 7)) & 1;
}

static void set_bit(uint8_t *map, unsigned port)
{
    map[port >> 3] |= (uint8_t)(1u << (port & 7));
}

/* Reserved items are split like the settings split them: on commas and
 * spaces. */
static int parse_reserved(const char *list, uint8_t *map)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        char item[16];
        unsigned lo, hi;
        size_t len = (size_t)(p - start);
        if (len >= sizeof(item))
            return -EINVAL;
        memcpy(item, start, len);
        item[len] = '\0';
        if (ptc_parse_port_range(item, &lo, &hi) != 0)
            return -EINVAL;
        for (unsigned port = lo; port <= hi; port++)
            set_bit(map, port);
    }
    return 0;
}

ptc_ports *ptc_ports_new(ptc_store *st, const char *range, const char *reserved, char *err, size_t errlen)
{
    ptc_ports *p = ptc_xcalloc(1, sizeof(*p));
    p->store = st;
    if (ptc_parse_port_range(range, &p->lo, &p->hi) != 0) {
        snprintf(err, errlen, "port_range: \"%s\" is not lo-hi", range);
        goto fail;
    }
    if (parse_reserved(reserved, p->reserved) != 0) {
        snprintf(err, errlen, "reserved_ports: \"%s\" is not a list of ports and ranges", reserved);
        goto fail;
    }
    return p;
fail:
    free(p);
    return NULL;
}

void ptc_ports_free(ptc_ports *p)
{
    free(p);
}

bool ptc_ports_is_reserved(const ptc_ports *p, unsigned port)
{
    return port < 65536 && bit(p->reserved, port);
}

/* Binds port on the wildcard address of family; false when something
 * holds it.  A family the host lacks (no IPv6) cannot hold anything. */
static bool bind_free(int family, unsigned port)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool ok;
    if (fd < 0)
        return errno == EAFNOSUPPORT;
    if (family == AF_INET6) {
        int one = 1;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        struct sockaddr_in6 a = {
            .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = in6addr_any};
        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EADDRNOTAVAIL;
    } else {
        struct sockaddr_in a = {
            .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_ANY)};
        ok = bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    }
    close(fd);
    return ok;
}

bool ptc_ports_bindable(unsigned port)
{
    return bind_free(AF_INET, port) && bind_free(AF_INET6, port);
}

/* The port owner already holds for internal_port, or 0. */
static int held_port(ptc_ports *p, const char *owner, unsigned internal_port, unsigned *port)
{
    ptc_port_list mine;
    int rc = ptc_store_ports_list(p->store, owner, false, &mine);
    *port = 0;
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < mine.n; i++)
        if (mine.items[i].internal_port == internal_port)
            *port = mine.items[i].port;
    ptc_port_list_free(&mine);
    return 0;
}

int ptc_ports_allocate(ptc_ports *p, const char *owner, unsigned internal_port, ptc_port_grant *out)
{
    uint8_t *taken = NULL;
    ptc_port_list active = {0};
    unsigned held = 0;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = held_port(p, owner, internal_port, &held)) != 0)
        goto out;
    if (held) {
        out->port = held;
        goto out;
    }
    if ((rc = ptc_store_ports_list(p->store, NULL, false, &active)) != 0)
        goto out;
    taken = ptc_xcalloc(1, PORT_BITS);
    for (size_t i = 0; i < active.n; i++)
        set_bit(taken, active.items[i].port);

    rc = -ENOSPC;
    for (unsigned port = p->lo; port <= p->hi; port++) {
        if (bit(p->reserved, port) || bit(taken, port) || !ptc_ports_bindable(port))
            continue;
        int ins = ptc_store_port_insert(p->store, port, owner, internal_port, ptc_now_ms());
        if (ins == 0) {
            out->port = port;
            out->created = true;
            rc = 0;
            break;
        }
        if (ins != -EEXIST) {
            rc = -EIO;
            break;
        }
        /* Someone got there first: either the same (owner, internal
         * port) from a concurrent request, answered with its port, or
         * another owner on this port, so try the next one. */
        if ((rc = held_port(p, owner, internal_port, &held)) != 0)
            break;
        if (held) {
            out->port = held;
            break;
        }
        rc = -ENOSPC;
        set_bit(taken, port);
    }
out:
    if (rc == 0)
        ptc_log_debug("port allocation", PTC_LS("owner", owner), PTC_LI("internal_port", internal_port),
                      PTC_LI("port", out->port), PTC_LB("created", out->created));
    ptc_port_list_free(&active);
    free(taken);
    return rc;
}

void ptc_ports_stats(const ptc_ports *p, const ptc_port_list *active, ptc_port_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->lo = p->lo;
    out->hi = p->hi;
    out->range_size = p->hi - p->lo + 1;
    for (unsigned port = p->lo; port <= p->hi; port++)
        out->reserved += bit(p->reserved, port);
    size_t in_range = 0;
    for (size_t i = 0; i < active->n; i++) {
        unsigned port = active->items[i].port;
        if (strcmp(active->items[i].status, "active") != 0)
            continue;
        out->allocated++;
        if (port >= p->lo && port <= p->hi && !bit(p->reserved, port))
            in_range++;
    }
    out->available = out->range_size - out->reserved - in_range;
}
