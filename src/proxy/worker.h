/* The workers of the builtin data plane (internal to src/proxy): one
 * thread, one event loop, its own SO_REUSEPORT listeners, its own pools of
 * memory and of upstream connections.  Nothing here is shared between
 * workers but the snapshot (read-only), the TLS server context and the
 * health cells; the only locks a worker takes are a short one when it
 * adopts a new snapshot and one when its metrics table grows.
 *
 * Objects and their owners:
 * - ptc_client: one accepted connection (plain or TLS); it owns its input
 *   buffer and at most one ptc_exchange.
 * - ptc_exchange: one request and its response; it owns the rewritten
 *   heads, the output queues and, while it runs, one ptc_upconn.  It pins
 *   the snapshot that routed it (ptc_held).
 * - ptc_upconn: one connection to an upstream; idle ones sit in the
 *   worker's keep-alive pool for their address.
 * Closed clients and upstream connections are retired, not freed: events
 * already fetched in the same loop iteration may still name them, so they
 * go back to the free lists before the loop waits again (redis'
 * freeClientAsync). */
#ifndef PTC_PROXY_WORKER_H
#define PTC_PROXY_WORKER_H

#include <netinet/in.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "core/buf.h"
#include "core/loop.h"
#include "core/sock.h"
#include "http/chunked.h"
#include "http/parser.h"
#include "proxy/dataplane.h"
#include "proxy/rewrite.h"
#include "proxy/snapshot.h"

#define PTC_WBUF_SIZE 16384                     /* I/O buffer: one read, one TLS record */
#define PTC_WBUF_BIG (PTC_HTTP_MAX_HEAD + 4096) /* holds any head the parser accepts */
#define PTC_UP_IDLE_MAX 128                     /* idle upstream connections per address and worker */
#define PTC_UP_IDLE_MS 30000                    /* idle upstream connections are closed after this */
#define PTC_LINGER_MS 2000                      /* reading what a client still sends before closing */
#define PTC_RATE_WINDOW_MS 10000                /* body_min_rate is averaged over this */
#define PTC_MAX_INTERIM 16                      /* 1xx responses accepted before the final one */

/* ------------------------------------------------------------------ I/O */

/* A byte buffer whose memory comes from the worker's pool; unread bytes
 * are data[start, end). */
typedef struct ptc_wbuf {
    char *data;
    uint32_t cap, start, end;
} ptc_wbuf;

/* Bytes waiting to be written, as slices of memory that stays put until
 * written (heads, input buffers, chunk lines). */
typedef struct ptc_outq {
    struct iovec iov[8];
    int n;
} ptc_outq;

/* What clients and upstream connections share: the descriptor, TLS, the
 * edge-triggered readiness flags and the input buffer. */
typedef struct ptc_pconn {
    ptc_io io;
    SSL *ssl;
    ptc_wbuf in;
    ptc_timer timer;
    bool rd_ready, wr_ready;
    bool rdhup; /* the peer's FIN (or an error) was reported: reads must go on to EOF */
    bool ssl_read_wants_write, ssl_write_wants_read;
    /* TLS: the socket's last read came back short (it was empty then) and
     * no readiness edge has come since. */
    bool sock_drained;
} ptc_pconn;

/* ------------------------------------------------------------- metrics */

#define PTC_N_CODES 33
#define PTC_N_LAT 12

#define PTC_CODES_INLINE 4

/* One route's counters in one worker: written by that worker only (plain
 * loads and stores through relaxed atomics, no locked instructions), read
 * by the scraper.  They are kept small, since every route that saw a
 * request has them in every worker that served it (96 bytes, 1 MB at
 * 10,000 routes): a route answers with few distinct statuses, so the first
 * PTC_CODES_INLINE get a counter in place, and counters are 32 bits wide.
 * A route that answers a fifth status, or one of whose counters is about
 * to wrap, moves all its counts to 64-bit ones of every status (`wide`,
 * allocated then, published once with its copied counts; the narrow ones
 * stop moving, so a scrape reading either never sees a count go back). */
typedef struct ptc_route_wide ptc_route_wide;

/* Smooth weighted round-robin state (nginx's algorithm) of a route with
 * several upstreams in one worker (http1.c's pick_upstream). */
typedef struct ptc_route_balance {
    const ptc_snap_route *route; /* the snapshot's route it was made for */
    uint32_t n;
    int64_t current[];
} ptc_route_balance;

typedef struct ptc_route_stats {
    _Atomic uint8_t code_slot[PTC_CODES_INLINE]; /* 1 + the status's slot, 0: unused */
    atomic_uint_least32_t code_count[PTC_CODES_INLINE];
    atomic_uint_least32_t lat[PTC_N_LAT + 1];
    atomic_uint_least64_t lat_sum_us;
    _Atomic(ptc_route_wide *) wide; /* NULL until needed */
    ptc_route_balance *balance;     /* NULL until a pick among several upstreams */
} ptc_route_stats;

/* A route's counts summed over workers, as a scrape reads them. */
typedef struct ptc_route_sums {
    uint64_t codes[PTC_N_CODES]; /* by ptc_metrics_code_slot */
    uint64_t lat[PTC_N_LAT + 1]; /* by latency bucket, the last one +Inf */
    uint64_t lat_sum_us;
    bool any;
} ptc_route_sums;

typedef struct ptc_wmetrics {
    /* Held only to swap or copy by_route and n_by_route: a grown table is
     * published under it.  A scrape counts itself in `readers` while it
     * reads a copied table, so the table a growth replaces is freed at
     * once when no scrape is reading, else kept (in old_tables) until a
     * later growth finds none, or the worker is destroyed. */
    pthread_mutex_t grow_lock;
    _Atomic(ptc_route_stats *) *by_route;
    uint32_t n_by_route;
    atomic_uint readers;
    void **old_tables;
    size_t n_old_tables;
    ptc_route_stats none;  /* requests that matched no route */
    ptc_route_stats *slab; /* route counters are carved from blocks (metrics.c) */
    uint32_t slab_left;
    void **slabs;
    size_t n_slabs;
    atomic_uint_least64_t clients, upstreams, upstreams_idle;
    atomic_uint_least64_t accepted, handshakes, resumed, handshake_failures;
    atomic_uint_least64_t upstream_connects, upstream_retries;
} ptc_wmetrics;

/* ---------------------------------------------------------- the objects */

typedef struct ptc_worker ptc_worker;
typedef struct ptc_client ptc_client;
typedef struct ptc_exchange ptc_exchange;
typedef struct ptc_upconn ptc_upconn;

/* A snapshot this worker uses, with the number of its exchanges that do. */
typedef struct ptc_held {
    struct ptc_held *next;
    ptc_dp_snapshot *snap;
    size_t users;
} ptc_held;

typedef struct ptc_pool {
    uint64_t hash; /* 0: an empty slot */
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } addr;
    socklen_t addr_len;
    ptc_upconn *idle; /* most recently used first */
    unsigned n_idle;
} ptc_pool;

enum ptc_client_state {
    PTC_CS_HANDSHAKE, /* TLS handshake */
    PTC_CS_HEAD,      /* waiting for or reading a request head */
    PTC_CS_PROXY,     /* an exchange with an upstream */
    PTC_CS_OWN,       /* writing one of portico's own answers */
    PTC_CS_TUNNEL,    /* a WebSocket after the upstream's 101 */
    PTC_CS_LINGER,    /* closing: our side shut, reading what is left */
    PTC_CS_CLOSED,
};

struct ptc_client {
    ptc_pconn pc;
    ptc_worker *w;
    ptc_client *prev, *next; /* the worker's clients, or the retired list */
    ptc_exchange *x;
    uint8_t state;
    bool tls;
    bool closing; /* close after the current response (drain) */
    bool peer_trusted;
    uint16_t local_port;
    uint8_t peer_len;
    char peer[INET6_ADDRSTRLEN];
    size_t scan;        /* ptc_http_scan_head state */
    int64_t since;      /* entering the state (or the head's first byte) */
    int64_t last_write; /* progress writing to the client */
    unsigned n_requests;
};

enum ptc_resp_phase {
    PTC_RP_WAIT, /* no upstream connection yet */
    PTC_RP_HEAD, /* reading the response head */
    PTC_RP_BODY, /* forwarding the body */
    PTC_RP_DONE, /* the whole response is queued for the client */
};

struct ptc_exchange {
    ptc_exchange *next_free;
    ptc_client *c;
    ptc_upconn *uc;
    ptc_held *held;
    const ptc_snap_route *route;
    const ptc_snap_upstream *up;
    ptc_route_stats *stats;

    /* The request. */
    ptc_http_method method;
    bool http10, keep_alive, websocket, send_continue, idempotent;
    ptc_body_framing req_framing;
    uint64_t req_left; /* Content-Length bytes not yet read from the client */
    uint64_t req_body, max_body;
    ptc_http_chunked req_chunked;
    bool req_read;   /* the whole request has been read from the client */
    bool req_queued; /* ... and queued for the upstream */
    bool req_sent;   /* ... and written */
    bool req_failed; /* writing to the upstream failed: only a response may still come */
    ptc_buf req_head;
    ptc_outq uq;
    char req_chunk[24];
    int64_t win_start; /* body_min_rate window, 0 when none runs */
    uint64_t win_bytes;

    /* The response. */
    uint8_t phase;
    int status;
    unsigned interim;
    size_t uscan;
    ptc_body_framing from_up, to_client;
    uint64_t resp_left;
    ptc_http_chunked resp_chunked;
    bool up_reusable;
    bool close_client;
    bool resp_started; /* bytes of a final response reached the client */
    bool tunnel;       /* a 101 is queued: tunnel once it is written */
    uint64_t resp_body;
    ptc_buf resp_head;
    ptc_outq cq;
    char resp_chunk[24];

    /* Retry of an idempotent request on a stale pooled connection. */
    bool reused, retried, got_bytes;

    /* Timing and logging. */
    int64_t t_start_us, t_up_us;
    int64_t last_up_io; /* loop ms */
    uint8_t id_len;
    char id[129];
    ptc_buf log; /* method, host and target for the access log */
};

struct ptc_upconn {
    ptc_pconn pc;
    ptc_worker *w;
    ptc_exchange *x;         /* NULL while idle in the pool */
    ptc_upconn *prev, *next; /* the pool's idle list, or the retired list */
    ptc_pool *pool;
    bool connecting;
    int64_t since;
    unsigned n_requests;
};

struct ptc_worker {
    ptc_dataplane *dp;
    const ptc_dp_config *cfg;
    unsigned id;
    pthread_t thread;
    bool thread_started;
    ptc_loop *loop;
    ptc_io http_io, https_io;
    int http_fd, https_fd;
    uint16_t http_port, https_port;
    ptc_timer accept_timer; /* re-enables accept after EMFILE */
    bool accept_paused, emfile_warned;

    ptc_held *held, *cur;
    uint64_t gen;

    /* Free lists: buffers, clients, exchanges, upstream connections. */
    char *free_bufs;
    unsigned n_free_bufs;
    ptc_client *free_clients;
    ptc_exchange *free_x;
    ptc_upconn *free_up;
    unsigned n_free_clients, n_free_x, n_free_up;
    ptc_client *retired_clients;
    ptc_upconn *retired_up;

    ptc_client *clients;
    size_t n_clients;
    ptc_pool *pools;
    uint32_t pool_mask, n_pools;

    /* Per-request scratch, used only inside one call. */
    ptc_http_request req;
    ptc_http_response res;
    char path[PTC_HTTP_MAX_REQUEST_LINE + 1];
    char tls_out[PTC_WBUF_SIZE];

    char date[40]; /* "Sun, 06 Nov 1994 08:49:37 GMT" */
    int64_t date_sec;
    uint64_t rng[2];

    ptc_wmetrics m;
    ptc_buf alog;
    ptc_timer alog_timer;

    bool draining;
    ptc_timer drain_timer;
};

/* ------------------------------------------- worker.c: the worker itself */

/* Allocates a worker with its loop and listeners' registration pending;
 * returns NULL with the reason in err. */
ptc_worker *ptc_worker_create(ptc_dataplane *dp, const ptc_dp_config *cfg, unsigned id, int http_fd,
                              int https_fd, char *err, size_t errlen);
int ptc_worker_start(ptc_worker *w);
/* Asks the worker to drain (from any thread). */
void ptc_worker_wake(ptc_worker *w);
void ptc_worker_join(ptc_worker *w);
void ptc_worker_destroy(ptc_worker *w);

/* The snapshot for a new request: adopts a newer one first. */
void ptc_worker_refresh_snapshot(ptc_worker *w);
void ptc_worker_unpin(ptc_worker *w, ptc_held *h);

/* Memory. */
void ptc_wbuf_acquire(ptc_worker *w, ptc_wbuf *b);
void ptc_wbuf_release(ptc_worker *w, ptc_wbuf *b);
/* Replaces a full buffer with one that holds PTC_WBUF_BIG bytes. */
void ptc_wbuf_grow(ptc_worker *w, ptc_wbuf *b);
ptc_exchange *ptc_exchange_new(ptc_worker *w);
void ptc_exchange_free(ptc_worker *w, ptc_exchange *x);

/* I/O on either kind of connection: n > 0, 0 at EOF, -EAGAIN (the ready
 * flag is cleared), or -errno. */
ssize_t ptc_pconn_read(ptc_worker *w, ptc_pconn *pc, char *buf, size_t len);
/* Reads into pc->in (acquiring and compacting it; nothing may point into
 * it): as ptc_pconn_read, -ENOBUFS when it is full. */
ssize_t ptc_pconn_fill(ptc_worker *w, ptc_pconn *pc);
/* Writes as much of q as the socket takes: 1 when q is empty, 0 when it
 * would block, -errno on error. */
int ptc_pconn_flush(ptc_worker *w, ptc_pconn *pc, ptc_outq *q);
/* After an SSL call returned rc <= 0: true when it only has to wait for
 * the socket (the ready flag is cleared), false on a real error. */
bool ptc_pconn_tls_retry(ptc_pconn *pc, int rc);
/* After OpenSSL read from a client: whether there is more to read without
 * a new edge, from what OpenSSL holds and what its last socket read saw. */
void ptc_pconn_tls_readiness(ptc_pconn *pc);

static inline void ptc_outq_push(ptc_outq *q, const void *p, size_t len)
{
    if (len > 0)
        q->iov[q->n++] = (struct iovec){(void *)p, len};
}
static inline bool ptc_outq_empty(const ptc_outq *q)
{
    return q->n == 0;
}

/* Upstream connections. */
/* An idle pooled connection to up (unless fresh), else a new one still
 * connecting; NULL with errno set when the connect fails at once. */
ptc_upconn *ptc_upconn_get(ptc_worker *w, const ptc_snap_upstream *up, bool fresh, bool *reused);
void ptc_upconn_put(ptc_worker *w, ptc_upconn *uc);
void ptc_upconn_close(ptc_worker *w, ptc_upconn *uc);
void ptc_upconn_arm(ptc_worker *w, ptc_upconn *uc);

/* Clients. */
void ptc_client_close(ptc_client *c);

/* Time. */
const char *ptc_worker_date(ptc_worker *w);
int64_t ptc_now_us(void);
void ptc_worker_request_id(ptc_worker *w, char out[33]);

/* ------------------------------------------- http1.c: the HTTP/1.1 side */

void ptc_client_on_event(ptc_io *io, uint32_t events);
void ptc_client_on_timer(ptc_timer *t);
/* Starts serving an accepted connection. */
void ptc_client_begin(ptc_client *c);
/* An upstream connection's event or timer, routed to its exchange. */
void ptc_upconn_on_event(ptc_io *io, uint32_t events);
void ptc_upconn_on_timer(ptc_timer *t);
/* The TLS certificate choice for a handshake on this worker. */
SSL_CTX *ptc_client_pick_cert(SSL *ssl, const char *servername, void *arg);

/* -------------------------------------------- metrics.c and the access log */

ptc_route_stats *ptc_metrics_route(ptc_worker *w, const ptc_snap_route *r);
/* Makes room for the stat indices of snap (worker thread). */
void ptc_metrics_reserve(ptc_worker *w, const ptc_dp_snapshot *snap);
void ptc_metrics_count(ptc_route_stats *s, int status);
void ptc_metrics_latency(ptc_route_stats *s, int64_t us);
/* Adds s's counts into t (any thread; see ptc_route_stats). */
void ptc_metrics_sum(ptc_route_sums *t, const ptc_route_stats *s);
/* The counter slot of an HTTP status (an index of ptc_route_sums.codes). */
int ptc_metrics_code_slot(int status);
void ptc_metrics_free(ptc_wmetrics *m);
/* Sums every worker's counters into Prometheus text. */
void ptc_metrics_render(ptc_worker *const *workers, unsigned n, uint64_t generation, ptc_buf *out);

static inline void ptc_counter_add(atomic_uint_least64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}
static inline void ptc_counter_sub(atomic_uint_least64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) - n, memory_order_relaxed);
}

/* dataplane.c: what the workers need from the data plane. */
ptc_dp_snapshot *ptc_dataplane_acquire(ptc_dataplane *dp, uint64_t *gen);
uint64_t ptc_dataplane_generation(ptc_dataplane *dp);
bool ptc_dataplane_stopping(ptc_dataplane *dp);
SSL_CTX *ptc_dataplane_tls(ptc_dataplane *dp);
bool ptc_dataplane_trusted(ptc_dataplane *dp, const ptc_sockaddr *peer);
unsigned ptc_dataplane_drain_ms(ptc_dataplane *dp);
/* Reports an upstream that passive health just ejected (worker thread). */
void ptc_dataplane_passive_down(ptc_dataplane *dp, const char *label, const char *reason);
/* The HTTP-01 answer for token (appended to out), if one is set. */
bool ptc_dataplane_challenge(ptc_dataplane *dp, ptc_str token, ptc_buf *out);
/* Writes a worker's buffered access-log lines (one write). */
void ptc_dataplane_log_write(ptc_dataplane *dp, ptc_buf *lines);

#endif
