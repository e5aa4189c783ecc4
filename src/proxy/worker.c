/* A worker: its thread and loop, accepting, memory, snapshot pinning,
 * socket and TLS I/O, and the keep-alive pools of upstream connections
 * (see worker.h).  The HTTP logic is in http1.c. */
#include "proxy/worker.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"

#define FREE_BUFS_MAX 256   /* idle 16 KiB buffers a worker keeps (4 MiB) */
#define FREE_OBJS_MAX 1024  /* idle clients, exchanges, upstream connections */
#define ACCEPT_BATCH 64     /* connections accepted per event before others get a turn */
#define ACCEPT_PAUSE_MS 100 /* out of descriptors: wait this long before accepting again */

#define container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* ---------------------------------------------------------------- time */

int64_t ptc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *ptc_worker_date(ptc_worker *w)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        snprintf(w->date, sizeof(w->date), "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday],
                 tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
        w->date_sec = now;
    }
    return w->date;
}

/* Eight nibbles, one per byte of n, as eight ASCII hex digits: n + '0',
 * plus 39 more where the nibble is 10 or above (adding 6 carries it into
 * bit 4).  No byte carries into the next. */
static uint64_t hex8(uint64_t n)
{
    uint64_t letter = ((n + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
    return n + 0x3030303030303030ull + letter * 0x27;
}

/* xorshift128+: request ids need to be unique and unguessable enough to
 * not collide, not secret; a syscall per request would cost more than the
 * rest of the id work together.  The 128 bits are written four words at a
 * time: which digit holds which nibble does not matter in a random id. */
void ptc_worker_request_id(ptc_worker *w, char out[33])
{
    for (int k = 0; k < 2; k++) {
        uint64_t s1 = w->rng[0], s0 = w->rng[1];
        w->rng[0] = s0;
        s1 ^= s1 << 23;
        w->rng[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
        uint64_t v = w->rng[1] + s0;
        uint64_t lo = hex8(v & 0x0f0f0f0f0f0f0f0full), hi = hex8((v >> 4) & 0x0f0f0f0f0f0f0f0full);
        memcpy(out + k * 16, &lo, 8);
        memcpy(out + k * 16 + 8, &hi, 8);
    }
    out[32] = '\0';
}

/* -------------------------------------------------------------- memory */

void ptc_wbuf_acquire(ptc_worker *w, ptc_wbuf *b)
{
    if (b->data != NULL)
        return;
    if (w->free_bufs != NULL) {
        b->data = w->free_bufs;
        memcpy(&w->free_bufs, b->data, sizeof(char *));
        w->n_free_bufs--;
    } else {
        b->data = ptc_xmalloc(PTC_WBUF_SIZE);
    }
    b->cap = PTC_WBUF_SIZE;
    b->start = b->end = 0;
}

void ptc_wbuf_release(ptc_worker *w, ptc_wbuf *b)
{
    if (b->data == NULL)
        return;
    if (b->cap == PTC_WBUF_SIZE && w->n_free_bufs < FREE_BUFS_MAX) {
        memcpy(b->data, &w->free_bufs, sizeof(char *));
        w->free_bufs = b->data;
        w->n_free_bufs++;
    } else {
        free(b->data);
    }
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

void ptc_wbuf_grow(ptc_worker *w, ptc_wbuf *b)
{
    char *big = ptc_xmalloc(PTC_WBUF_BIG);
    uint32_t n = b->end - b->start;
    memcpy(big, b->data + b->start, n);
    ptc_wbuf_release(w, b);
    *b = (ptc_wbuf){.data = big, .cap = PTC_WBUF_BIG, .start = 0, .end = n};
}

ptc_exchange *ptc_exchange_new(ptc_worker *w)
{
    ptc_exchange *x = w->free_x;
    if (x != NULL) {
        w->free_x = x->next_free;
        w->n_free_x--;
        /* Keep the heads' allocations: the next request reuses them. */
        ptc_buf rh = x->req_head, ph = x->resp_head, lg = x->log;
        memset(x, 0, sizeof(*x));
        x->req_head = rh;
        x->resp_head = ph;
        x->log = lg;
        ptc_buf_reset(&x->req_head);
        ptc_buf_reset(&x->resp_head);
        ptc_buf_reset(&x->log);
    } else {
        x = ptc_xcalloc(1, sizeof(*x));
    }
    return x;
}

void ptc_exchange_free(ptc_worker *w, ptc_exchange *x)
{
    if (w->n_free_x < FREE_OBJS_MAX && x->req_head.cap <= 65536 && x->resp_head.cap <= 65536) {
        x->next_free = w->free_x;
        w->free_x = x;
        w->n_free_x++;
        return;
    }
    ptc_buf_free(&x->req_head);
    ptc_buf_free(&x->resp_head);
    ptc_buf_free(&x->log);
    free(x);
}

static ptc_client *client_new(ptc_worker *w)
{
    ptc_client *c = w->free_clients;
    if (c != NULL) {
        w->free_clients = c->next;
        w->n_free_clients--;
        memset(c, 0, sizeof(*c));
    } else {
        c = ptc_xcalloc(1, sizeof(*c));
    }
    return c;
}

static ptc_upconn *upconn_new(ptc_worker *w)
{
    ptc_upconn *uc = w->free_up;
    if (uc != NULL) {
        w->free_up = uc->next;
        w->n_free_up--;
        memset(uc, 0, sizeof(*uc));
    } else {
        uc = ptc_xcalloc(1, sizeof(*uc));
    }
    return uc;
}

/* Retired objects become reusable once no fetched event can name them. */
static void free_retired(ptc_worker *w)
{
    while (w->retired_clients != NULL) {
        ptc_client *c = w->retired_clients;
        w->retired_clients = c->next;
        if (w->n_free_clients < FREE_OBJS_MAX) {
            c->next = w->free_clients;
            w->free_clients = c;
            w->n_free_clients++;
        } else {
            free(c);
        }
    }
    while (w->retired_up != NULL) {
        ptc_upconn *uc = w->retired_up;
        w->retired_up = uc->next;
        if (w->n_free_up < FREE_OBJS_MAX) {
            uc->next = w->free_up;
            w->free_up = uc;
            w->n_free_up++;
        } else {
            free(uc);
        }
    }
}

/* ----------------------------------------------------------- snapshots */

static void adopt(ptc_worker *w)
{
    uint64_t gen;
    ptc_dp_snapshot *s = ptc_dataplane_acquire(w->dp, &gen);
    ptc_held *h = ptc_xcalloc(1, sizeof(*h));
    h->snap = s;
    h->next = w->held;
    w->held = h;
    ptc_held *old = w->cur;
    w->cur = h;
    w->gen = gen;
    ptc_metrics_reserve(w, s);
    if (old != NULL && old->users == 0)
        ptc_worker_unpin(w, old);
}

void ptc_worker_refresh_snapshot(ptc_worker *w)
{
    if (ptc_dataplane_generation(w->dp) != w->gen)
        adopt(w);
}

/* Drops h when no exchange uses it and it is not the current one (the
 * caller has already decremented users, or h was never used). */
void ptc_worker_unpin(ptc_worker *w, ptc_held *h)
{
    if (h->users > 0 || h == w->cur)
        return;
    for (ptc_held **pp = &w->held; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    ptc_snap_release(h->snap);
    free(h);
}

/* ------------------------------------------------------------------ I/O */

static ssize_t ssl_result(ptc_pconn *pc, int ok, size_t n, bool reading)
{
    if (ok > 0)
        return (ssize_t)n;
    int e = SSL_get_error(pc->ssl, ok);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        if (reading) {
            pc->rd_ready = false;
        } else {
            pc->ssl_write_wants_read = true;
            pc->wr_ready = false;
        }
        return -EAGAIN;
    case SSL_ERROR_WANT_WRITE:
        if (reading) {
            pc->ssl_read_wants_write = true;
            pc->rd_ready = false;
        } else {
            pc->wr_ready = false;
        }
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        ERR_clear_error();
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        return errno ? -errno : -EIO;
    default:
        ERR_clear_error();
        return -EPROTO;
    }
}

bool ptc_pconn_tls_retry(ptc_pconn *pc, int rc)
{
    int e = SSL_get_error(pc->ssl, rc);
    if (e == SSL_ERROR_WANT_READ) {
        pc->rd_ready = false;
        return true;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
        pc->wr_ready = false;
        return true;
    }
    ERR_clear_error();
    return false;
}

/* OpenSSL says nothing of how much a socket read got; this callback on the
 * socket BIO does.  With read-ahead, a read shorter than asked for found
 * the socket empty, as in ptc_pconn_read's plain path. */
static long bio_cb(BIO *b, int oper, const char *argp, size_t len, int argi, long argl, int ret,
                   size_t *processed)
{
    (void)argp;
    (void)argi;
    (void)argl;
    if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
        ptc_pconn *pc = (ptc_pconn *)BIO_get_callback_arg(b);
        pc->sock_drained = ret > 0 && *processed < len;
    }
    return ret;
}

/* Watches the socket reads of a client's SSL (see sock_drained). */
static void tls_watch(ptc_pconn *pc)
{
    BIO *b = SSL_get_rbio(pc->ssl);
    BIO_set_callback_arg(b, (char *)pc);
    BIO_set_callback_ex(b, bio_cb);
}

void ptc_pconn_tls_readiness(ptc_pconn *pc)
{
    /* Records read ahead come with no edge of their own.  Without them, a
     * socket found empty needs no read to say EAGAIN: new data makes a new
     * edge (which clears sock_drained), unless the peer's FIN was already
     * reported, whose edge has passed. */
    if (SSL_has_pending(pc->ssl))
        pc->rd_ready = true;
    else if (pc->sock_drained && !pc->rdhup)
        pc->rd_ready = false;
}

/* recvfrom(2), sendto(2) and writev(2) by syscall(2): glibc's wrappers
 * are cancellation points, which in a threaded process means two atomic
 * read-modify-writes around every call (1.4% of a worker's time proxying
 * keep-alive requests), and workers are never cancelled.  The socket
 * calls, not read(2) and write(2): they skip the VFS layer (the file
 * position lock, the permission and notification hooks), and one buffer
 * needs no iovec copied in. */
static inline ssize_t sys_recv(int fd, void *buf, size_t len)
{
    return syscall(SYS_recvfrom, fd, buf, len, 0, NULL, NULL);
}

static inline ssize_t sys_send(int fd, const struct iovec *iov, int n)
{
    if (n == 1)
        return syscall(SYS_sendto, fd, iov[0].iov_base, iov[0].iov_len, 0, NULL, 0);
    return syscall(SYS_writev, fd, iov, n);
}

ssize_t ptc_pconn_read(ptc_worker *w, ptc_pconn *pc, char *buf, size_t len)
{
    (void)w;
    if (pc->ssl != NULL) {
        size_t n = 0;
        pc->ssl_read_wants_write = false;
        int ok = SSL_read_ex(pc->ssl, buf, len, &n);
        ssize_t r = ssl_result(pc, ok, n, true);
        if (r > 0)
            ptc_pconn_tls_readiness(pc);
        return r;
    }
    ssize_t n;
    do {
        n = sys_recv(pc->io.fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n >= 0) {
        /* A short read emptied the socket: the next read would only say
         * EAGAIN, and new data makes a new edge.  Not so once the peer's
         * FIN was reported, whose edge has passed: then read on to EOF. */
        if ((size_t)n < len && n > 0 && !pc->rdhup)
            pc->rd_ready = false;
        return n;
    }
    if (errno == EAGAIN) {
        pc->rd_ready = false;
        return -EAGAIN;
    }
    return -errno;
}

ssize_t ptc_pconn_fill(ptc_worker *w, ptc_pconn *pc)
{
    ptc_wbuf *b = &pc->in;
    ptc_wbuf_acquire(w, b);
    if (b->start == b->end) {
        b->start = b->end = 0;
    } else if (b->start > 0 && b->end == b->cap) {
        memmove(b->data, b->data + b->start, b->end - b->start);
        b->end -= b->start;
        b->start = 0;
    }
    if (b->end == b->cap)
        return -ENOBUFS;
    ssize_t n = ptc_pconn_read(w, pc, b->data + b->end, b->cap - b->end);
    if (n > 0)
        b->end += (uint32_t)n;
    return n;
}

static void outq_consume(ptc_outq *q, size_t n)
{
    int i = 0;
    while (i < q->n && n >= q->iov[i].iov_len)
        n -= q->iov[i++].iov_len;
    if (i < q->n && n > 0) {
        q->iov[i].iov_base = (char *)q->iov[i].iov_base + n;
        q->iov[i].iov_len -= n;
    }
    if (i > 0) {
        memmove(q->iov, q->iov + i, (size_t)(q->n - i) * sizeof(struct iovec));
        q->n -= i;
    }
}

/* Under TLS, small slices are gathered into one record: a response head
 * and a short body then go out in one write, as with writev. */
static ssize_t ssl_writev(ptc_worker *w, ptc_pconn *pc, const ptc_outq *q)
{
    const void *p = q->iov[0].iov_base;
    size_t len = q->iov[0].iov_len, n = 0;
    if (q->n > 1 && len < sizeof(w->tls_out)) {
        len = 0;
        for (int i = 0; i < q->n && len < sizeof(w->tls_out); i++) {
            size_t k = q->iov[i].iov_len;
            if (k > sizeof(w->tls_out) - len)
                k = sizeof(w->tls_out) - len;
            memcpy(w->tls_out + len, q->iov[i].iov_base, k);
            len += k;
        }
        p = w->tls_out;
    }
    pc->ssl_write_wants_read = false;
    int ok = SSL_write_ex(pc->ssl, p, len, &n);
    return ssl_result(pc, ok, n, false);
}

int ptc_pconn_flush(ptc_worker *w, ptc_pconn *pc, ptc_outq *q)
{
    while (q->n > 0) {
        if (!pc->wr_ready)
            return 0;
        ssize_t n;
        if (pc->ssl != NULL) {
            n = ssl_writev(w, pc, q);
        } else {
            /* No MSG_NOSIGNAL needed: SIGPIPE is ignored (dataplane.c)
             * and blocked here. */
            do {
                n = sys_send(pc->io.fd, q->iov, q->n);
            } while (n < 0 && errno == EINTR);
            if (n < 0)
                n = -errno;
            if (n == -EAGAIN)
                pc->wr_ready = false;
        }
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        outq_consume(q, (size_t)n);
    }
    return 1;
}

/* ------------------------------------------------ upstream connections */

static ptc_pool *pool_find(ptc_worker *w, const ptc_snap_upstream *up)
{
    if (w->pools == NULL || (w->n_pools + 1) * 2 > w->pool_mask + 1) {
        uint32_t cap = w->pools ? (w->pool_mask + 1) * 2 : 64;
        ptc_pool *old = w->pools;
        uint32_t old_cap = w->pools ? w->pool_mask + 1 : 0;
        w->pools = ptc_xcalloc(cap, sizeof(ptc_pool));
        w->pool_mask = cap - 1;
        for (uint32_t i = 0; i < old_cap; i++) {
            if (old[i].hash == 0)
                continue;
            uint64_t j = old[i].hash;
            while (w->pools[j & w->pool_mask].hash != 0)
                j++;
            ptc_pool *np = &w->pools[j & w->pool_mask];
            *np = old[i];
            for (ptc_upconn *uc = np->idle; uc; uc = uc->next)
                uc->pool = np;
        }
        free(old);
    }
    uint64_t h = up->addr_hash ? up->addr_hash : 1;
    for (uint64_t j = h;; j++) {
        ptc_pool *p = &w->pools[j & w->pool_mask];
        if (p->hash == 0) {
            p->hash = h;
            memcpy(&p->addr, &up->addr, up->addr_len);
            p->addr_len = up->addr_len;
            w->n_pools++;
            return p;
        }
        if (p->hash == h && p->addr_len == up->addr_len && memcmp(&p->addr, &up->addr, up->addr_len) == 0)
            return p;
    }
}

static void pool_unlink(ptc_upconn *uc)
{
    ptc_pool *p = uc->pool;
    if (uc->prev)
        uc->prev->next = uc->next;
    else
        p->idle = uc->next;
    if (uc->next)
        uc->next->prev = uc->prev;
    uc->prev = uc->next = NULL;
    p->n_idle--;
}

ptc_upconn *ptc_upconn_get(ptc_worker *w, const ptc_snap_upstream *up, bool fresh, bool *reused)
{
    ptc_pool *p = pool_find(w, up);
    ptc_upconn *uc = p->idle;
    if (uc != NULL && !fresh) {
        pool_unlink(uc);
        ptc_counter_sub(&w->m.upstreams_idle, 1);
        *reused = true;
        return uc;
    }
    *reused = false;
    int fd = ptc_sock_connect(&up->addr.sa, up->addr_len);
    if (fd < 0) {
        errno = -fd;
        return NULL;
    }
    ptc_sock_nodelay(fd);
    uc = upconn_new(w);
    uc->w = w;
    uc->pool = p;
    uc->connecting = true;
    uc->since = ptc_loop_now(w->loop);
    ptc_timer_init(&uc->pc.timer, ptc_upconn_on_timer);
    if (ptc_loop_add(w->loop, &uc->pc.io, fd, ptc_upconn_on_event) < 0) {
        int e = errno;
        close(fd);
        uc->next = w->retired_up;
        w->retired_up = uc;
        errno = e;
        return NULL;
    }
    ptc_counter_add(&w->m.upstreams, 1);
    ptc_counter_add(&w->m.upstream_connects, 1);
    return uc;
}

void ptc_upconn_close(ptc_worker *w, ptc_upconn *uc)
{
    if (uc->x == NULL && uc->pool != NULL && (uc->prev != NULL || uc->pool->idle == uc)) {
        pool_unlink(uc);
        ptc_counter_sub(&w->m.upstreams_idle, 1);
    }
    ptc_timer_cancel(w->loop, &uc->pc.timer);
    close(uc->pc.io.fd);
    uc->pc.io.fd = -1;
    ptc_wbuf_release(w, &uc->pc.in);
    uc->x = NULL;
    uc->next = w->retired_up;
    w->retired_up = uc;
    ptc_counter_sub(&w->m.upstreams, 1);
}

void ptc_upconn_put(ptc_worker *w, ptc_upconn *uc)
{
    ptc_pool *p = uc->pool;
    uc->x = NULL;
    ptc_wbuf_release(w, &uc->pc.in);
    if (w->draining || p->n_idle >= PTC_UP_IDLE_MAX) {
        ptc_upconn_close(w, uc);
        return;
    }
    uc->prev = NULL;
    uc->next = p->idle;
    if (p->idle)
        p->idle->prev = uc;
    p->idle = uc;
    p->n_idle++;
    uc->since = ptc_loop_now(w->loop);
    ptc_counter_add(&w->m.upstreams_idle, 1);
    ptc_timer_set(w->loop, &uc->pc.timer, uc->since + PTC_UP_IDLE_MS);
}

/* -------------------------------------------------------------- accept */

static void accept_on(ptc_worker *w, int lfd, bool tls);

static void on_accept_timer(ptc_timer *t)
{
    ptc_worker *w = container_of(t, ptc_worker, accept_timer);
    w->accept_paused = false;
    if (w->http_fd >= 0)
        accept_on(w, w->http_fd, false);
    if (w->https_fd >= 0)
        accept_on(w, w->https_fd, true);
}

static void accept_on(ptc_worker *w, int lfd, bool tls)
{
    for (int i = 0; i < ACCEPT_BATCH && !w->accept_paused; i++) {
        ptc_sockaddr peer;
        int fd = ptc_sock_accept(lfd, &peer);
        if (fd == -EAGAIN)
            return;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            /* The pending connection stays queued; accepting again right
             * away would spin, so pause (the listener stays readable, and
             * being edge-triggered it will not tell us again). */
            if (!w->emfile_warned)
                ptc_log_warn("data plane: out of descriptors, pausing accept", PTC_LI("worker", w->id),
                             PTC_LI("errno", -fd));
            w->emfile_warned = true; /* once per shortage, not every 100 ms */
            w->accept_paused = true;
            ptc_timer_set(w->loop, &w->accept_timer, ptc_loop_now(w->loop) + ACCEPT_PAUSE_MS);
            return;
        }
        if (fd < 0)
            continue; /* ECONNABORTED and the like concern that one connection */
        w->emfile_warned = false;
        ptc_client *c = client_new(w);
        c->w = w;
        c->tls = tls;
        c->local_port = tls ? w->https_port : w->http_port;
        ptc_sock_addr_text(&peer, c->peer, sizeof(c->peer));
        c->peer_len = (uint8_t)strlen(c->peer);
        c->peer_trusted = ptc_dataplane_trusted(w->dp, &peer);
        /* TCP_NODELAY comes from the listener (Linux copies it). */
        ptc_timer_init(&c->pc.timer, ptc_client_on_timer);
        if (ptc_loop_add(w->loop, &c->pc.io, fd, ptc_client_on_event) < 0) {
            close(fd);
            c->next = w->retired_clients;
            w->retired_clients = c;
            continue;
        }
        if (tls) {
            c->pc.ssl = SSL_new(ptc_dataplane_tls(w->dp));
            if (c->pc.ssl == NULL || SSL_set_fd(c->pc.ssl, fd) != 1) {
                ERR_clear_error();
                SSL_free(c->pc.ssl);
                c->pc.ssl = NULL;
                close(fd);
                c->pc.io.fd = -1;
                c->next = w->retired_clients;
                w->retired_clients = c;
                continue;
            }
            SSL_set_app_data(c->pc.ssl, c);
            SSL_set_accept_state(c->pc.ssl);
            tls_watch(&c->pc);
        }
        c->prev = NULL;
        c->next = w->clients;
        if (w->clients)
            w->clients->prev = c;
        w->clients = c;
        w->n_clients++;
        ptc_counter_add(&w->m.clients, 1);
        ptc_counter_add(&w->m.accepted, 1);
        ptc_client_begin(c);
    }
    /* More may be waiting: come back after the other events of this turn. */
    if (!w->accept_paused)
        ptc_timer_set(w->loop, &w->accept_timer, ptc_loop_now(w->loop));
}

static void on_http_accept(ptc_io *io, uint32_t events)
{
    ptc_worker *w = container_of(io, ptc_worker, http_io);
    (void)events;
    if (!w->accept_paused && !w->draining)
        accept_on(w, io->fd, false);
}

static void on_https_accept(ptc_io *io, uint32_t events)
{
    ptc_worker *w = container_of(io, ptc_worker, https_io);
    (void)events;
    if (!w->accept_paused && !w->draining)
        accept_on(w, io->fd, true);
}

/* -------------------------------------------------------------- draining */

static void close_listeners(ptc_worker *w)
{
    /* Take what the kernel already accepted for us first: closing a
     * listener resets the connections still in its queue. */
    w->accept_paused = false;
    if (w->http_fd >= 0) {
        accept_on(w, w->http_fd, false);
        close(w->http_fd);
        w->http_fd = w->http_io.fd = -1;
    }
    if (w->https_fd >= 0) {
        accept_on(w, w->https_fd, true);
        close(w->https_fd);
        w->https_fd = w->https_io.fd = -1;
    }
    ptc_timer_cancel(w->loop, &w->accept_timer);
}

static void on_drain_timer(ptc_timer *t)
{
    ptc_worker *w = container_of(t, ptc_worker, drain_timer);
    while (w->clients != NULL)
        ptc_client_close(w->clients);
    ptc_loop_stop(w->loop);
}

static void begin_drain(ptc_worker *w)
{
    if (w->draining)
        return;
    close_listeners(w);
    w->draining = true;
    for (ptc_client *c = w->clients, *next; c; c = next) {
        next = c->next;
        c->closing = true;
        /* Idle keep-alive connections have nothing to finish. */
        if ((c->state == PTC_CS_HEAD && c->pc.in.start == c->pc.in.end) || c->state == PTC_CS_HANDSHAKE)
            ptc_client_close(c);
    }
    ptc_timer_set(w->loop, &w->drain_timer, ptc_loop_now(w->loop) + ptc_dataplane_drain_ms(w->dp));
}

/* ---------------------------------------------------------------- loop */

static void on_alog_timer(ptc_timer *t)
{
    ptc_worker *w = container_of(t, ptc_worker, alog_timer);
    ptc_dataplane_log_write(w->dp, &w->alog);
}

static void on_wait(ptc_loop *loop, void *arg)
{
    ptc_worker *w = arg;
    free_retired(w);
    if (w->alog.len > 0) {
        if (w->alog.len >= 32768)
            ptc_dataplane_log_write(w->dp, &w->alog);
        else if (!ptc_timer_active(&w->alog_timer))
            ptc_timer_set(loop, &w->alog_timer, ptc_loop_now(loop) + 1000);
    }
    if (w->draining && w->n_clients == 0)
        ptc_loop_stop(loop);
}

static void on_wake(ptc_loop *loop, void *arg)
{
    ptc_worker *w = arg;
    (void)loop;
    ptc_worker_refresh_snapshot(w);
    if (ptc_dataplane_stopping(w->dp))
        begin_drain(w);
}

static void *worker_main(void *arg)
{
    ptc_worker *w = arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    char name[16];
    snprintf(name, sizeof(name), "portico-w%u", w->id);
    pthread_setname_np(pthread_self(), name);

    adopt(w);
    int rc = ptc_loop_run(w->loop);
    if (rc < 0)
        ptc_log_error("data plane: worker loop failed", PTC_LI("worker", w->id),
                      PTC_LS("error", strerror(-rc)));
    while (w->clients != NULL)
        ptc_client_close(w->clients);
    for (uint32_t i = 0; w->pools && i <= w->pool_mask; i++)
        while (w->pools[i].idle != NULL)
            ptc_upconn_close(w, w->pools[i].idle);
    free_retired(w);
    ptc_dataplane_log_write(w->dp, &w->alog);
    return NULL;
}

ptc_worker *ptc_worker_create(ptc_dataplane *dp, const ptc_dp_config *cfg, unsigned id, int http_fd,
                              int https_fd, char *err, size_t errlen)
{
    int e = 0;
    ptc_worker *w = ptc_xcalloc(1, sizeof(*w));
    w->dp = dp;
    w->cfg = cfg;
    w->id = id;
    w->http_fd = http_fd;
    w->https_fd = https_fd;
    w->http_io.fd = w->https_io.fd = -1;
    w->http_port = (uint16_t)(http_fd >= 0 ? ptc_sock_local_port(http_fd) : 0);
    w->https_port = (uint16_t)(https_fd >= 0 ? ptc_sock_local_port(https_fd) : 0);
    pthread_mutex_init(&w->m.grow_lock, NULL);
    ptc_timer_init(&w->accept_timer, on_accept_timer);
    ptc_timer_init(&w->alog_timer, on_alog_timer);
    ptc_timer_init(&w->drain_timer, on_drain_timer);
    if (getrandom(w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || (w->rng[0] | w->rng[1]) == 0)
        w->rng[0] = (uint64_t)ptc_now_us() | 1;
    w->loop = ptc_loop_create(&e);
    if (w->loop == NULL) {
        snprintf(err, errlen, "data plane: cannot create an event loop: %s", strerror(-e));
        goto fail;
    }
    ptc_loop_on_wait(w->loop, on_wait, w);
    ptc_loop_on_wake(w->loop, on_wake, w);
    if ((http_fd >= 0 && (e = ptc_loop_add(w->loop, &w->http_io, http_fd, on_http_accept)) < 0) ||
        (https_fd >= 0 && (e = ptc_loop_add(w->loop, &w->https_io, https_fd, on_https_accept)) < 0)) {
        snprintf(err, errlen, "data plane: cannot watch a listener: %s", strerror(-e));
        goto fail;
    }
    return w;
fail:
    ptc_loop_destroy(w->loop);
    pthread_mutex_destroy(&w->m.grow_lock);
    free(w);
    return NULL;
}

int ptc_worker_start(ptc_worker *w)
{
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0)
        return -rc;
    w->thread_started = true;
    return 0;
}

void ptc_worker_wake(ptc_worker *w)
{
    ptc_loop_wake(w->loop);
}

void ptc_worker_join(ptc_worker *w)
{
    if (w->thread_started) {
        pthread_join(w->thread, NULL);
        w->thread_started = false;
    }
}

void ptc_worker_destroy(ptc_worker *w)
{
    if (w == NULL)
        return;
    ptc_worker_join(w);
    if (w->http_fd >= 0)
        close(w->http_fd);
    if (w->https_fd >= 0)
        close(w->https_fd);
    while (w->held != NULL) {
        ptc_held *h = w->held;
        w->held = h->next;
        ptc_snap_release(h->snap);
        free(h);
    }
    while (w->free_bufs != NULL) {
        char *b = w->free_bufs;
        memcpy(&w->free_bufs, b, sizeof(char *));
        free(b);
    }
    while (w->free_clients != NULL) {
        ptc_client *c = w->free_clients;
        w->free_clients = c->next;
        free(c);
    }
    while (w->free_up != NULL) {
        ptc_upconn *uc = w->free_up;
        w->free_up = uc->next;
        free(uc);
    }
    while (w->free_x != NULL) {
        ptc_exchange *x = w->free_x;
        w->free_x = x->next_free;
        ptc_buf_free(&x->req_head);
        ptc_buf_free(&x->resp_head);
        ptc_buf_free(&x->log);
        free(x);
    }
    free(w->pools);
    ptc_buf_free(&w->alog);
    ptc_metrics_free(&w->m);
    pthread_mutex_destroy(&w->m.grow_lock);
    ptc_loop_destroy(w->loop);
    free(w);
}
