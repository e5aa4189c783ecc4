/* Socket helpers (see sock.h). */
#include "core/sock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/settings.h"

int ptc_sock_addr_from_ip(const char *ip, unsigned port, ptc_sockaddr *out)
{
    memset(out, 0, sizeof(*out));
    if (port > 65535)
        return -EINVAL;
    struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
    if (ip[0] == '\0' || strcmp(ip, "*") == 0) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_ANY);
        in4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        out->len = sizeof(*in4);
        return 0;
    }
    if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        out->len = sizeof(*in6);
        return 0;
    }
    return -EINVAL;
}

int ptc_sock_resolve(const char *host, unsigned port, ptc_sockaddr *out, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char portstr[8];
    int rc;

    if (port == 0 || port > 65535) {
        snprintf(err, errlen, "bad port %u", port);
        return -EINVAL;
    }
    if (ptc_sock_addr_from_ip(host, port, out) == 0 && host[0] != '\0' && strcmp(host, "*") != 0)
        return 0;
    snprintf(portstr, sizeof(portstr), "%u", port);
    rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        rc = -ENOENT;
        goto out;
    }
    const struct addrinfo *pick = NULL;
    for (const struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family == AF_INET) {
            pick = ai;
            break;
        }
        if (ai->ai_family == AF_INET6 && pick == NULL)
            pick = ai;
    }
    if (pick == NULL || pick->ai_addrlen > sizeof(out->ss)) {
        snprintf(err, errlen, "cannot resolve %s: no IPv4 or IPv6 address", host);
        rc = -ENOENT;
        goto out;
    }
    memset(out, 0, sizeof(*out));
    memcpy(&out->ss, pick->ai_addr, pick->ai_addrlen);
    out->len = pick->ai_addrlen;
    rc = 0;
out:
    if (res)
        freeaddrinfo(res);
    return rc;
}

int ptc_sock_listen(const char *hostport, bool reuseport, int backlog, char *err, size_t errlen)
{
    char host[256];
    unsigned port;
    ptc_sockaddr addr;
    int fd = -1, one = 1, rc;

    if (ptc_parse_addr(hostport, host, sizeof(host), &port) < 0 ||
        ptc_sock_addr_from_ip(host, port, &addr) < 0) {
        snprintf(err, errlen, "%s: not an IP address and port", hostport);
        return -EINVAL;
    }
    fd = socket(addr.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
        goto fail;
    if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
        goto fail;
    if (addr.ss.ss_family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0)
        goto fail;
    if (bind(fd, (struct sockaddr *)&addr.ss, addr.len) < 0)
        goto fail;
    if (listen(fd, backlog) < 0)
        goto fail;
    return fd;
fail:
    rc = -errno;
    snprintf(err, errlen, "cannot listen on %s: %s", hostport, strerror(errno));
    if (fd >= 0)
        close(fd);
    return rc;
}

int ptc_sock_accept(int lfd, ptc_sockaddr *peer)
{
    int fd;
    do {
        peer->len = sizeof(peer->ss);
        fd = accept4(lfd, (struct sockaddr *)&peer->ss, &peer->len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

int ptc_sock_connect(const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int ptc_sock_connect_result(int fd)
{
    int e = 0;
    socklen_t len = sizeof(e);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0)
        return -errno;
    return -e;
}

int ptc_sock_nodelay(int fd)
{
    int one = 1;
    return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ? -errno : 0;
}

unsigned ptc_sock_addr_text(const ptc_sockaddr *addr, char *out, size_t outlen)
{
    if (addr->ss.ss_family == AF_INET) {
        const struct sockaddr_in *in4 = (const struct sockaddr_in *)&addr->ss;
        inet_ntop(AF_INET, &in4->sin_addr, out, (socklen_t)outlen);
        return ntohs(in4->sin_port);
    }
    if (addr->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&addr->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, out, (socklen_t)outlen);
        return ntohs(in6->sin6_port);
    }
    snprintf(out, outlen, "unknown");
    return 0;
}

unsigned ptc_sock_local_port(int fd)
{
    ptc_sockaddr a;
    a.len = sizeof(a.ss);
    if (getsockname(fd, (struct sockaddr *)&a.ss, &a.len) < 0)
        return 0;
    char tmp[64];
    return ptc_sock_addr_text(&a, tmp, sizeof(tmp));
}
