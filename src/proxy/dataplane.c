/* The data plane's public face (see dataplane.h): listeners, workers,
 * snapshot publication, stop and metrics.
 *
 * Publication: the live snapshot is a counted reference behind a mutex
 * that is held for a pointer swap and a reference increment, nothing else,
 * and a generation number readable without the lock.  A worker compares
 * the generation (one relaxed load, on a cache line that changes only on a
 * publish) before routing each request, and takes the mutex only when it
 * changed.  This is RCU by reference counting: readers never block the
 * writer for longer than the swap, the writer never waits for readers, and
 * an old snapshot lives exactly as long as the requests that started on it
 * (each worker counts those locally, see worker.h).  Epoch-based
 * reclamation would avoid even the rare mutex, but would need every worker
 * to pass a quiescent point before anything is freed, which an idle or
 * busy worker delays; counting keeps reclamation local and prompt. */
#include "proxy/dataplane.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/mem.h"
#include "core/settings.h"
#include "core/util.h"
#include "proxy/worker.h"
#include "tls/tls.h"

#define LISTEN_BACKLOG 4096
#define MAX_CIDRS 256
#define CHALLENGES_MAX 64
#define CHALLENGE_TOKEN_MAX 256
#define CHALLENGE_ANSWER_MAX 1024

/* An HTTP-01 answer: a handful exist at a time, for the seconds an
 * issuance takes, so a locked array is all it needs; workers take the lock
 * only for requests under /.well-known/acme-challenge/ while one is set. */
typedef struct challenge {
    char *token, *answer;
} challenge;

typedef struct cidr {
    int family;
    unsigned char addr[16];
    unsigned bits;
} cidr;

struct ptc_dataplane {
    ptc_dp_config cfg;
    char *strings[4];
    unsigned n_workers;
    ptc_worker **workers;
    SSL_CTX *tls;

    pthread_mutex_t snap_lock;
    ptc_dp_snapshot *live;
    uint64_t next_gen;
    atomic_uint_least64_t gen;

    cidr cidrs[MAX_CIDRS];
    size_t n_cidrs;
    int log_fd;
    bool log_owned, log_is_file;

    atomic_bool stopping;
    atomic_uint drain_ms;
    bool started, stopped;

    /* Held while the passive listener is called or replaced. */
    pthread_mutex_t passive_lock;
    ptc_dp_passive_fn passive_fn;
    void *passive_arg;

    pthread_mutex_t challenge_lock;
    challenge challenges[CHALLENGES_MAX];
    atomic_uint n_challenges; /* read without the lock: 0 skips the lookup */
};

/* ------------------------------------------------------ for the workers */

ptc_dp_snapshot *ptc_dataplane_acquire(ptc_dataplane *dp, uint64_t *gen)
{
    pthread_mutex_lock(&dp->snap_lock);
    ptc_dp_snapshot *s = dp->live;
    ptc_snap_retain(s);
    *gen = atomic_load_explicit(&dp->gen, memory_order_relaxed);
    pthread_mutex_unlock(&dp->snap_lock);
    return s;
}

uint64_t ptc_dataplane_generation(ptc_dataplane *dp)
{
    return atomic_load_explicit(&dp->gen, memory_order_acquire);
}

bool ptc_dataplane_stopping(ptc_dataplane *dp)
{
    return atomic_load_explicit(&dp->stopping, memory_order_acquire);
}

SSL_CTX *ptc_dataplane_tls(ptc_dataplane *dp)
{
    return dp->tls;
}

unsigned ptc_dataplane_drain_ms(ptc_dataplane *dp)
{
    return atomic_load_explicit(&dp->drain_ms, memory_order_relaxed);
}

bool ptc_dataplane_trusted(ptc_dataplane *dp, const ptc_sockaddr *peer)
{
    const unsigned char *a;
    int family = peer->ss.ss_family;
    if (dp->n_cidrs == 0)
        return false;
    if (family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)&peer->ss)->sin_addr;
    else if (family == AF_INET6)
        a = (const unsigned char *)&((const struct sockaddr_in6 *)&peer->ss)->sin6_addr;
    else
        return false;
    for (size_t i = 0; i < dp->n_cidrs; i++) {
        const cidr *c = &dp->cidrs[i];
        if (c->family != family)
            continue;
        unsigned full = c->bits / 8, rest = c->bits % 8;
        if (memcmp(a, c->addr, full) != 0)
            continue;
        if (rest == 0 || ((a[full] ^ c->addr[full]) & (0xff << (8 - rest))) == 0)
            return true;
    }
    return false;
}

void ptc_dataplane_set_passive_listener(ptc_dataplane *dp, ptc_dp_passive_fn fn, void *arg)
{
    pthread_mutex_lock(&dp->passive_lock);
    dp->passive_fn = fn;
    dp->passive_arg = arg;
    pthread_mutex_unlock(&dp->passive_lock);
}

void ptc_dataplane_passive_down(ptc_dataplane *dp, const char *label, const char *reason)
{
    char host[300];
    const char *colon = strrchr(label, ':');
    if (colon == NULL || (size_t)(colon - label) >= sizeof(host))
        return;
    memcpy(host, label, (size_t)(colon - label));
    host[colon - label] = '\0';
    unsigned port = (unsigned)strtoul(colon + 1, NULL, 10);
    ptc_log_warn("data plane: upstream ejected after failures in a row", PTC_LS("upstream", label),
                 PTC_LS("reason", reason), PTC_LI("failures", PTC_DP_PASSIVE_FAILURES));
    /* Ejections are rare and the listener only queues: holding the lock
     * while it runs is what makes clearing it final. */
    pthread_mutex_lock(&dp->passive_lock);
    if (dp->passive_fn != NULL)
        dp->passive_fn(dp->passive_arg, host, port, reason);
    pthread_mutex_unlock(&dp->passive_lock);
}

bool ptc_dataplane_challenge(ptc_dataplane *dp, ptc_str token, ptc_buf *out)
{
    bool found = false;
    if (atomic_load_explicit(&dp->n_challenges, memory_order_acquire) == 0)
        return false;
    pthread_mutex_lock(&dp->challenge_lock);
    for (size_t i = 0; i < CHALLENGES_MAX && !found; i++) {
        const challenge *ch = &dp->challenges[i];
        if (ch->token && strlen(ch->token) == token.len && memcmp(ch->token, token.p, token.len) == 0) {
            ptc_buf_append_str(out, ch->answer);
            found = true;
        }
    }
    pthread_mutex_unlock(&dp->challenge_lock);
    return found;
}

/* 1 to max printable ASCII characters, no space. */
static bool printable_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

int ptc_dataplane_set_challenge(ptc_dataplane *dp, const char *token, const char *key_authorization)
{
    int rc = -ENOSPC;
    if (!ptc_str_is_base64url(token, strlen(token), CHALLENGE_TOKEN_MAX) ||
        !printable_ok(key_authorization, CHALLENGE_ANSWER_MAX))
        return -EINVAL;
    pthread_mutex_lock(&dp->challenge_lock);
    challenge *free_slot = NULL;
    for (size_t i = 0; i < CHALLENGES_MAX; i++) {
        challenge *ch = &dp->challenges[i];
        if (ch->token && strcmp(ch->token, token) == 0) {
            free(ch->answer);
            ch->answer = ptc_xstrdup(key_authorization);
            rc = 0;
            goto out;
        }
        if (ch->token == NULL && free_slot == NULL)
            free_slot = ch;
    }
    if (free_slot) {
        free_slot->token = ptc_xstrdup(token);
        free_slot->answer = ptc_xstrdup(key_authorization);
        atomic_fetch_add_explicit(&dp->n_challenges, 1, memory_order_release);
        rc = 0;
    }
out:
    pthread_mutex_unlock(&dp->challenge_lock);
    return rc;
}

void ptc_dataplane_clear_challenge(ptc_dataplane *dp, const char *token)
{
    pthread_mutex_lock(&dp->challenge_lock);
    for (size_t i = 0; i < CHALLENGES_MAX; i++) {
        challenge *ch = &dp->challenges[i];
        if (ch->token && strcmp(ch->token, token) == 0) {
            free(ch->token);
            free(ch->answer);
            ch->token = ch->answer = NULL;
            atomic_fetch_sub_explicit(&dp->n_challenges, 1, memory_order_release);
        }
    }
    pthread_mutex_unlock(&dp->challenge_lock);
}

void ptc_dataplane_log_write(ptc_dataplane *dp, ptc_buf *lines)
{
    if (dp->log_fd >= 0 && lines->len > 0) {
        /* One write per batch to a file (O_APPEND keeps batches whole);
         * to a pipe, pieces of at most PIPE_BUF cut at line ends, the size
         * a pipe writes without mixing in other writers' bytes. */
        size_t off = 0;
        while (off < lines->len) {
            size_t n = lines->len - off;
            if (!dp->log_is_file && n > PIPE_BUF) {
                n = PIPE_BUF;
                while (n > 0 && lines->data[off + n - 1] != '\n')
                    n--;
                if (n == 0)
                    n = PIPE_BUF;
            }
            ssize_t w = write(dp->log_fd, lines->data + off, n);
            if (w <= 0)
                break; /* a full disk or a closed pipe loses log lines, never requests */
            off += (size_t)w;
        }
    }
    ptc_buf_reset(lines);
}

/* ---------------------------------------------------------------- setup */

static int parse_cidrs(ptc_dataplane *dp, const char *list, char *err, size_t errlen)
{
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *end = p;
        while (*end && *end != ',' && *end != ' ')
            end++;
        char item[64];
        size_t len = (size_t)(end - p);
        if (len >= sizeof(item) || dp->n_cidrs == MAX_CIDRS)
            goto bad;
        memcpy(item, p, len);
        item[len] = '\0';
        cidr *c = &dp->cidrs[dp->n_cidrs];
        char *slash = strchr(item, '/');
        long bits = -1;
        if (slash != NULL) {
            char *e;
            *slash = '\0';
            bits = strtol(slash + 1, &e, 10);
            if (*e != '\0' || e == slash + 1)
                goto bad;
        }
        if (inet_pton(AF_INET, item, c->addr) == 1) {
            c->family = AF_INET;
            if (bits < 0)
                bits = 32;
            if (bits > 32)
                goto bad;
        } else if (inet_pton(AF_INET6, item, c->addr) == 1) {
            c->family = AF_INET6;
            if (bits < 0)
                bits = 128;
            if (bits > 128)
                goto bad;
        } else {
            goto bad;
        }
        c->bits = (unsigned)bits;
        dp->n_cidrs++;
        p = end;
        continue;
    bad:
        snprintf(err, errlen, "trusted_proxies: bad address or block near \"%.*s\"", (int)(end - p), p);
        return -EINVAL;
    }
    return 0;
}

static unsigned cpu_count(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

static int listen_one(const char *addr, char *err, size_t errlen)
{
    int fd = ptc_sock_listen(addr, true, LISTEN_BACKLOG, err, errlen);
    if (fd >= 0) {
        /* Accept only once the client has sent something: the first read
         * then finds data instead of costing a wait. */
        int secs = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs));
        /* Accepted sockets inherit it: no setsockopt per connection. */
        ptc_sock_nodelay(fd);
    }
    return fd;
}

static void config_copy(ptc_dataplane *dp, const ptc_dp_config *cfg)
{
    dp->cfg = *cfg;
    const char *src[4] = {cfg->http_listen, cfg->https_listen, cfg->trusted_proxies, cfg->access_log};
    for (int i = 0; i < 4; i++)
        dp->strings[i] = ptc_xstrdup(src[i] ? src[i] : "");
    dp->cfg.http_listen = dp->strings[0];
    dp->cfg.https_listen = dp->strings[1];
    dp->cfg.trusted_proxies = dp->strings[2];
    dp->cfg.access_log = dp->strings[3];
    if (dp->cfg.max_body_size == 0)
        dp->cfg.max_body_size = 1ull << 30;
    if (dp->cfg.header_timeout_ms == 0)
        dp->cfg.header_timeout_ms = 10000;
    if (dp->cfg.idle_timeout_ms == 0)
        dp->cfg.idle_timeout_ms = 60000;
    if (dp->cfg.upstream_connect_timeout_ms == 0)
        dp->cfg.upstream_connect_timeout_ms = 5000;
    if (dp->cfg.upstream_timeout_ms == 0)
        dp->cfg.upstream_timeout_ms = 60000;
}

ptc_dataplane *ptc_dataplane_create(const ptc_dp_config *cfg, char *err, size_t errlen)
{
    ptc_dataplane *dp = ptc_xcalloc(1, sizeof(*dp));
    pthread_mutex_init(&dp->snap_lock, NULL);
    pthread_mutex_init(&dp->passive_lock, NULL);
    pthread_mutex_init(&dp->challenge_lock, NULL);
    dp->log_fd = -1;
    config_copy(dp, cfg);
    /* A peer that vanishes makes write() raise SIGPIPE; the data plane
     * handles EPIPE instead (OpenSSL writes with write(2)). */
    signal(SIGPIPE, SIG_IGN);

    if (parse_cidrs(dp, dp->cfg.trusted_proxies, err, errlen) < 0)
        goto fail;
    const char *alog = dp->cfg.access_log;
    if (strcmp(alog, "-") == 0) {
        dp->log_fd = STDERR_FILENO;
    } else if (alog[0] != '\0') {
        dp->log_fd = open(alog, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (dp->log_fd < 0) {
            snprintf(err, errlen, "access_log %s: %s", alog, strerror(errno));
            goto fail;
        }
        dp->log_owned = true;
    }
    struct stat st;
    dp->log_is_file = dp->log_fd >= 0 && fstat(dp->log_fd, &st) == 0 && S_ISREG(st.st_mode);

    bool https = dp->cfg.https_listen[0] != '\0';
    if (https) {
        dp->tls = ptc_tls_server_ctx_new(ptc_client_pick_cert, dp, err, errlen);
        if (dp->tls == NULL)
            goto fail;
    }
    dp->live = ptc_dp_snapshot_build(NULL, NULL, 0, NULL, 0, err, errlen);
    dp->n_workers = dp->cfg.workers ? dp->cfg.workers : cpu_count();
    dp->workers = ptc_xcalloc(dp->n_workers, sizeof(ptc_worker *));
    for (unsigned i = 0; i < dp->n_workers; i++) {
        int hfd = listen_one(dp->cfg.http_listen, err, errlen), sfd = -1;
        if (hfd < 0)
            goto fail;
        if (https) {
            sfd = listen_one(dp->cfg.https_listen, err, errlen);
            if (sfd < 0) {
                close(hfd);
                goto fail;
            }
        }
        dp->workers[i] = ptc_worker_create(dp, &dp->cfg, i, hfd, sfd, err, errlen);
        if (dp->workers[i] == NULL) {
            close(hfd);
            if (sfd >= 0)
                close(sfd);
            goto fail;
        }
    }
    return dp;
fail:
    ptc_dataplane_destroy(dp);
    return NULL;
}

int ptc_dataplane_start(ptc_dataplane *dp)
{
    for (unsigned i = 0; i < dp->n_workers; i++) {
        int rc = ptc_worker_start(dp->workers[i]);
        if (rc < 0) {
            dp->started = true;
            ptc_dataplane_stop(dp, 0);
            return rc;
        }
    }
    dp->started = true;
    return 0;
}

uint64_t ptc_dataplane_publish(ptc_dataplane *dp, ptc_dp_snapshot *snap)
{
    pthread_mutex_lock(&dp->snap_lock);
    ptc_dp_snapshot *old = dp->live;
    uint64_t gen = ++dp->next_gen;
    snap->generation = gen;
    dp->live = snap;
    atomic_store_explicit(&dp->gen, gen, memory_order_release);
    pthread_mutex_unlock(&dp->snap_lock);
    ptc_snap_release(old);
    ptc_snap_reap();
    /* Idle workers adopt it now, so the old snapshot goes soon. */
    for (unsigned i = 0; i < dp->n_workers; i++)
        ptc_worker_wake(dp->workers[i]);
    return gen;
}

void ptc_dataplane_collect(ptc_dataplane *dp)
{
    (void)dp;
    ptc_snap_reap();
}

void ptc_dataplane_stop(ptc_dataplane *dp, unsigned drain_ms)
{
    if (!dp->started || dp->stopped)
        return;
    atomic_store_explicit(&dp->drain_ms, drain_ms, memory_order_relaxed);
    atomic_store_explicit(&dp->stopping, true, memory_order_release);
    for (unsigned i = 0; i < dp->n_workers; i++)
        if (dp->workers[i] != NULL)
            ptc_worker_wake(dp->workers[i]);
    for (unsigned i = 0; i < dp->n_workers; i++)
        if (dp->workers[i] != NULL)
            ptc_worker_join(dp->workers[i]);
    dp->stopped = true;
}

void ptc_dataplane_destroy(ptc_dataplane *dp)
{
    if (dp == NULL)
        return;
    ptc_dataplane_stop(dp, 0);
    for (unsigned i = 0; dp->workers && i < dp->n_workers; i++)
        ptc_worker_destroy(dp->workers[i]);
    free(dp->workers);
    ptc_snap_release(dp->live);
    ptc_snap_reap();
    for (size_t i = 0; i < CHALLENGES_MAX; i++) {
        free(dp->challenges[i].token);
        free(dp->challenges[i].answer);
    }
    SSL_CTX_free(dp->tls);
    if (dp->log_owned)
        close(dp->log_fd);
    for (int i = 0; i < 4; i++)
        free(dp->strings[i]);
    pthread_mutex_destroy(&dp->snap_lock);
    pthread_mutex_destroy(&dp->passive_lock);
    pthread_mutex_destroy(&dp->challenge_lock);
    free(dp);
}

void ptc_dataplane_metrics(ptc_dataplane *dp, ptc_buf *out)
{
    ptc_metrics_render(dp->workers, dp->n_workers, ptc_dataplane_generation(dp), out);
}
