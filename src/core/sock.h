/* TCP socket helpers in the manner of redis' anet.c: every descriptor made
 * here is non-blocking and close-on-exec, and every function returns a
 * descriptor or 0 on success and -errno on failure. */
#ifndef PTC_SOCK_H
#define PTC_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* An address that fits both families. */
typedef struct ptc_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
} ptc_sockaddr;

/* Parses a numeric address (IPv4 or IPv6 literal, "" or "*" for any IPv4
 * address) and a port.  Returns 0 or -EINVAL.  Never blocks. */
int ptc_sock_addr_from_ip(const char *ip, unsigned port, ptc_sockaddr *out);
/* Resolves host (a literal or a name) to one address: the first IPv4
 * answer, else the first IPv6 one, so that "localhost" means 127.0.0.1 like
 * the servers that listen there.  Returns 0, or -EINVAL/-ENOENT with the
 * resolver's message in err.  Blocks on DNS. */
int ptc_sock_resolve(const char *host, unsigned port, ptc_sockaddr *out, char *err, size_t errlen);

/* Binds and listens on "host:port" (host a literal; empty for all IPv4
 * addresses).  reuseport sets SO_REUSEPORT so that each worker may own a
 * listener on the same port (the kernel spreads connections between them).
 * Returns the descriptor or -errno with the reason in err. */
int ptc_sock_listen(const char *hostport, bool reuseport, int backlog, char *err, size_t errlen);
/* accept4() of one connection, non-blocking and close-on-exec.  Returns the
 * descriptor, or -errno (-EAGAIN when none is waiting). */
int ptc_sock_accept(int lfd, ptc_sockaddr *peer);
/* Starts a non-blocking connect.  Returns the descriptor (the connection
 * may still be in progress: wait for writability, then
 * ptc_sock_connect_result) or -errno. */
int ptc_sock_connect(const struct sockaddr *sa, socklen_t len);
/* The outcome of a non-blocking connect (SO_ERROR): 0 or -errno. */
int ptc_sock_connect_result(int fd);
/* Disables Nagle's algorithm: the proxy writes whole messages. */
int ptc_sock_nodelay(int fd);
/* Writes the address as text ("1.2.3.4" or "::1", no port) to out (at
 * least 46 bytes) and returns the port. */
unsigned ptc_sock_addr_text(const ptc_sockaddr *addr, char *out, size_t outlen);
/* The local port of a bound socket, or 0. */
unsigned ptc_sock_local_port(int fd);

#endif
