/* A farm of tiny HTTP/1.1 upstreams for the health-check benchmark: one
 * process listening on N ports of 127.0.0.1 (picked by the kernel),
 * answering every request "200 ok" on kept-alive connections, on one
 * epoll thread.
 *
 *   hcfarm N STATSFILE
 *
 * Prints the N ports on stdout (one a line, then "ready"), then serves
 * until SIGTERM or SIGINT; every second it rewrites STATSFILE with
 * "accepted <connections> requests <requests>". */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536

static volatile sig_atomic_t stop;
static char is_listener[MAX_FD];
static unsigned char tail[MAX_FD][3]; /* the last bytes seen, for heads split across reads */

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: hcfarm N STATSFILE\n");
        return 2;
    }
    int n = atoi(argv[1]);
    const char *stats = argv[2];
    int ep = epoll_create1(0);
    unsigned long long accepted = 0, requests = 0;
    time_t last = 0;

    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        if (fd < 0 || fd >= MAX_FD || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
            listen(fd, 128) != 0) {
            fprintf(stderr, "hcfarm: listener %d: %s\n", i, strerror(errno));
            return 1;
        }
        getsockname(fd, (struct sockaddr *)&sa, &len);
        is_listener[fd] = 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        printf("%u\n", ntohs(sa.sin_port));
    }
    printf("ready\n");
    fflush(stdout);

    struct epoll_event evs[256];
    char buf[8192];
    while (!stop) {
        int k = epoll_wait(ep, evs, 256, 200);
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (is_listener[fd]) {
                int c;
                while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    if (c >= MAX_FD) {
                        close(c);
                        continue;
                    }
                    accepted++;
                    memset(tail[c], 0, 3);
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            ssize_t got = read(fd, buf, sizeof(buf));
            if (got <= 0) {
                if (got < 0 && errno == EAGAIN)
                    continue;
                close(fd);
                continue;
            }
            /* Count request heads: every "\r\n\r\n", including one that
             * straddles two reads. */
            unsigned char w[3];
            memcpy(w, tail[fd], 3);
            int answers = 0;
            for (ssize_t b = 0; b < got; b++) {
                unsigned char ch = (unsigned char)buf[b];
                if (ch == '\n' && w[0] == '\r' && w[1] == '\n' && w[2] == '\r')
                    answers++;
                w[0] = w[1];
                w[1] = w[2];
                w[2] = ch;
            }
            memcpy(tail[fd], w, 3);
            for (int a = 0; a < answers; a++) {
                requests++;
                if (write(fd, RESPONSE, sizeof(RESPONSE) - 1) < 0)
                    break;
            }
        }
        time_t now = time(NULL);
        if (now != last) {
            last = now;
            FILE *f = fopen(stats, "w");
            if (f) {
                fprintf(f, "accepted %llu requests %llu\n", accepted, requests);
                fclose(f);
            }
        }
    }
    return 0;
}
