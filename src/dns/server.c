/* The DNS server thread (see dns.h): one poll loop over a wake-up pipe,
 * the UDP socket, the TCP listener and at most PTC_DNS_TCP_MAX TCP
 * connections.  Answers come from ptc_dns_respond, which never blocks, so
 * one thread serves everything; every socket is non-blocking and every
 * TCP connection has a deadline. */
#include "dns/dns_impl.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/settings.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define UDP_BATCH 64      /* datagrams read per wake-up before looking at TCP again */
#define TCP_MSG_MAX 65535 /* what the 2-byte length prefix can say */

typedef struct conn {
    int fd; /* -1: free slot */
    uint8_t *in;
    size_t in_len;
    uint8_t *out; /* length-prefixed answers not yet written */
    size_t out_len, out_off;
    int64_t deadline;
} conn;

struct ptc_dns_server {
    int udp_fd, tcp_fd, wake[2];
    pthread_t thread;
    bool running;
    atomic_bool stop;
    /* A zone published but not yet taken by the thread.  Whoever takes
     * the pointer out of the slot (the thread, or a later publish
     * replacing it) owns that reference, so no lock is needed. */
    _Atomic(ptc_dns_zone *) pending;
    ptc_dns_zone *current; /* the thread's own */
    conn conns[PTC_DNS_TCP_MAX];
};

static int make_socket(int family, int type, const struct sockaddr *sa, socklen_t salen, char *err,
                       size_t errlen, const char *what)
{
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
    if (fd < 0) {
        snprintf(err, errlen, "dns_listen: %s socket: %s", what, strerror(errno));
        return -1;
    }
    if (type == SOCK_STREAM)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, sa, salen) != 0 || (type == SOCK_STREAM && listen(fd, 64) != 0)) {
        snprintf(err, errlen, "dns_listen: cannot bind %s: %s", what, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static void conn_close(conn *c)
{
    close(c->fd);
    free(c->in);
    free(c->out);
    *c = (conn){.fd = -1};
}

static void take_pending(ptc_dns_server *s)
{
    ptc_dns_zone *z = atomic_exchange(&s->pending, NULL);
    if (z) {
        ptc_dns_zone_release(s->current);
        s->current = z;
    }
}

static void serve_udp(ptc_dns_server *s)
{
    uint8_t buf[PTC_DNS_UDP_QUERY_MAX];
    for (int i = 0; i < UDP_BATCH; i++) {
        struct sockaddr_storage peer;
        socklen_t plen = sizeof(peer);
        /* MSG_TRUNC makes recvfrom report the datagram's real length, so
         * an oversized one is recognised and dropped, not half-read. */
        ssize_t n = recvfrom(s->udp_fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&peer, &plen);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                ptc_log_warn("dns: udp receive failed", PTC_LS("error", strerror(errno)));
            return;
        }
        uint8_t *ans = NULL;
        size_t alen = 0;
        /* Checked before every query: a zone published while this batch
         * runs must answer the queries that arrive after it. */
        take_pending(s);
        if ((size_t)n > sizeof(buf) || !ptc_dns_respond(s->current, buf, (size_t)n, PTC_DNS_UDP, &ans, &alen))
            continue;
        /* A full send buffer drops the answer, as UDP may. */
        sendto(s->udp_fd, ans, alen, MSG_DONTWAIT, (struct sockaddr *)&peer, plen);
        free(ans);
    }
}

static void accept_tcp(ptc_dns_server *s)
{
    for (;;) {
        int fd = accept4(s->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        conn *slot = NULL;
        for (size_t i = 0; i < PTC_DNS_TCP_MAX && slot == NULL; i++)
            if (s->conns[i].fd < 0)
                slot = &s->conns[i];
        if (slot == NULL) {
            /* Full: the newcomer is closed rather than an old one starved. */
            close(fd);
            continue;
        }
        *slot = (conn){.fd = fd, .deadline = ptc_mono_ms() + PTC_DNS_TCP_IDLE_MS};
    }
}

/* Answers every whole query in c->in (RFC 7766 pipelining), in order. */
static bool answer_tcp(ptc_dns_server *s, conn *c)
{
    while (c->in_len >= 2) {
        size_t mlen = (size_t)c->in[0] << 8 | c->in[1];
        if (mlen < 12)
            return false;
        if (c->in_len < 2 + mlen)
            return true;
        uint8_t *ans = NULL;
        size_t alen = 0;
        take_pending(s);
        if (ptc_dns_respond(s->current, c->in + 2, mlen, PTC_DNS_TCP, &ans, &alen)) {
            c->out = ptc_xrealloc(c->out, c->out_len + 2 + alen);
            c->out[c->out_len] = (uint8_t)(alen >> 8);
            c->out[c->out_len + 1] = (uint8_t)alen;
            memcpy(c->out + c->out_len + 2, ans, alen);
            c->out_len += 2 + alen;
            free(ans);
        }
        memmove(c->in, c->in + 2 + mlen, c->in_len - 2 - mlen);
        c->in_len -= 2 + mlen;
        c->deadline = ptc_mono_ms() + PTC_DNS_TCP_IDLE_MS;
    }
    return true;
}

/* Reads, answers and writes what it can; false when c must close. */
static bool serve_conn(ptc_dns_server *s, conn *c, short revents)
{
    if (revents & (POLLERR | POLLNVAL))
        return false;
    if (c->out_off < c->out_len) {
        ssize_t w = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (w < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        c->out_off += (size_t)w;
        if (c->out_off < c->out_len)
            return true;
        c->out_off = c->out_len = 0;
    }
    if (!(revents & (POLLIN | POLLHUP)))
        return true;
    if (c->in == NULL)
        c->in = ptc_xmalloc(2 + TCP_MSG_MAX);
    ssize_t n = recv(c->fd, c->in + c->in_len, 2 + TCP_MSG_MAX - c->in_len, 0);
    if (n == 0)
        return false;
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    c->in_len += (size_t)n;
    if (!answer_tcp(s, c))
        return false;
    if (c->out_len > 0) {
        ssize_t w = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            return false;
        c->out_off = w > 0 ? (size_t)w : 0;
        if (c->out_off == c->out_len)
            c->out_off = c->out_len = 0;
    }
    return true;
}

static void *server_main(void *arg)
{
    ptc_dns_server *s = arg;
    struct pollfd fds[3 + PTC_DNS_TCP_MAX];
    conn *owners[3 + PTC_DNS_TCP_MAX];

    while (!atomic_load(&s->stop)) {
        int64_t now = ptc_mono_ms(), wait = -1;
        nfds_t n = 0;
        fds[n++] = (struct pollfd){.fd = s->wake[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = s->udp_fd, .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = s->tcp_fd, .events = POLLIN};
        for (size_t i = 0; i < PTC_DNS_TCP_MAX; i++) {
            conn *c = &s->conns[i];
            if (c->fd < 0)
                continue;
            if (c->deadline <= now) {
                conn_close(c);
                continue;
            }
            if (wait < 0 || c->deadline - now < wait)
                wait = c->deadline - now;
            /* While answers wait to be written, stop reading: a client
             * that does not read cannot make us buffer without end. */
            owners[n] = c;
            fds[n++] = (struct pollfd){.fd = c->fd, .events = c->out_len > c->out_off ? POLLOUT : POLLIN};
        }
        int ready = poll(fds, n, (int)wait);
        if (ready < 0 && errno != EINTR) {
            ptc_log_error("dns: poll failed", PTC_LS("error", strerror(errno)));
            break;
        }
        if (fds[0].revents & POLLIN) {
            char drain[64];
            while (read(s->wake[0], drain, sizeof(drain)) > 0)
                ;
            take_pending(s);
        }
        if (ready <= 0)
            continue;
        if (fds[1].revents & POLLIN)
            serve_udp(s);
        if (fds[2].revents & POLLIN)
            accept_tcp(s);
        for (nfds_t i = 3; i < n; i++)
            if (fds[i].revents && !serve_conn(s, owners[i], fds[i].revents))
                conn_close(owners[i]);
    }
    return NULL;
}

ptc_dns_server *ptc_dns_server_start(const char *listen, char *err, size_t errlen)
{
    ptc_dns_server *s = ptc_xcalloc(1, sizeof(*s));
    char host[256];
    unsigned port;
    struct sockaddr_storage sa = {0};
    socklen_t salen;
    int family;

    s->udp_fd = s->tcp_fd = s->wake[0] = s->wake[1] = -1;
    for (size_t i = 0; i < PTC_DNS_TCP_MAX; i++)
        s->conns[i].fd = -1;
    atomic_init(&s->pending, NULL);
    atomic_init(&s->stop, false);
    if (ptc_parse_addr(listen, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "dns_listen: \"%s\" is not host:port", listen);
        goto fail;
    }
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    struct sockaddr_in *a4 = (struct sockaddr_in *)&sa;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&sa;
    if (host[0] == '\0' || inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        family = AF_INET;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        salen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        family = AF_INET6;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        salen = sizeof(*a6);
    } else {
        snprintf(err, errlen, "dns_listen: %s is not an IP address", host);
        goto fail;
    }
    if ((s->udp_fd = make_socket(family, SOCK_DGRAM, (struct sockaddr *)&sa, salen, err, errlen, "udp")) <
            0 ||
        (s->tcp_fd = make_socket(family, SOCK_STREAM, (struct sockaddr *)&sa, salen, err, errlen, "tcp")) < 0)
        goto fail;
    if (pipe2(s->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "dns: pipe: %s", strerror(errno));
        goto fail;
    }
    int rc = pthread_create(&s->thread, NULL, server_main, s);
    if (rc != 0) {
        snprintf(err, errlen, "dns: cannot start the server thread: %s", strerror(rc));
        goto fail;
    }
    s->running = true;
    ptc_log_info("dns responder listening", PTC_LS("address", listen));
    return s;
fail:
    ptc_dns_server_stop(s);
    return NULL;
}

void ptc_dns_server_publish(ptc_dns_server *s, ptc_dns_zone *z)
{
    ptc_dns_zone *old = atomic_exchange(&s->pending, z);
    ptc_dns_zone_release(old);
    if (write(s->wake[1], "z", 1) < 0 && errno != EAGAIN)
        ptc_log_warn("dns: cannot wake the server thread", PTC_LS("error", strerror(errno)));
}

void ptc_dns_server_stop(ptc_dns_server *s)
{
    if (s == NULL)
        return;
    if (s->running) {
        atomic_store(&s->stop, true);
        if (write(s->wake[1], "s", 1) < 0 && errno != EAGAIN)
            ptc_log_warn("dns: cannot wake the server thread", PTC_LS("error", strerror(errno)));
        pthread_join(s->thread, NULL);
    }
    for (size_t i = 0; i < PTC_DNS_TCP_MAX; i++)
        if (s->conns[i].fd >= 0)
            conn_close(&s->conns[i]);
    int fds[] = {s->udp_fd, s->tcp_fd, s->wake[0], s->wake[1]};
    for (size_t i = 0; i < PTC_ARRAY_LEN(fds); i++)
        if (fds[i] >= 0)
            close(fds[i]);
    ptc_dns_zone_release(atomic_exchange(&s->pending, NULL));
    ptc_dns_zone_release(s->current);
    free(s);
}
