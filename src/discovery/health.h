/* Active health checks (DESIGN §6, seed 002): every upstream of every
 * proxy is probed with GET http://host:port{health_check.path} at its
 * proxy's interval, and a threshold state machine turns the results into
 * a verdict (unknown -> healthy after healthy_threshold successes in a
 * row, -> unhealthy after unhealthy_threshold failures in a row; a 2xx or
 * 3xx answer within timeout_ms is a success).
 *
 * One thread runs every check on one libcurl multi handle: a timer heap
 * orders the checks by due time, at most max_in_flight transfers run at
 * once, and idle connections stay in curl's cache so that the next check
 * of the same upstream reuses them (within a budget of file descriptors).
 * Nothing here runs on the data plane's threads.
 *
 * A check target is (host, port, path): proxies that share an upstream and
 * its health path share one check.  The data plane (and nginx's `down`)
 * knows addresses, not paths, so an address is reported down while any of
 * its targets is unhealthy.
 *
 * The checker follows the desired state (ptc_health_follow after each
 * apply): targets of new upstreams start unknown (which carries traffic),
 * targets no proxy uses any more go, and the others keep their state. */
#ifndef PTC_DISCOVERY_HEALTH_H
#define PTC_DISCOVERY_HEALTH_H

#include "core/buf.h"
#include "model/state.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ptc_hstate { PTC_HSTATE_UNKNOWN, PTC_HSTATE_HEALTHY, PTC_HSTATE_UNHEALTHY } ptc_hstate;

/* "unknown", "healthy", "unhealthy". */
const char *ptc_hstate_name(ptc_hstate s);

/* ---- the threshold state machine (pure; one per target) ---- */

typedef struct ptc_hsm {
    ptc_hstate state;
    unsigned successes; /* in a row, since the last failure */
    unsigned failures;  /* in a row, since the last success */
} ptc_hsm;

/* Feeds one check result.  Returns true when the state changed: to healthy
 * once successes reach healthy_threshold, to unhealthy once failures reach
 * unhealthy_threshold (thresholds below 1 count as 1). */
bool ptc_hsm_feed(ptc_hsm *m, bool ok, unsigned healthy_threshold, unsigned unhealthy_threshold);
/* Passive ejection: unhealthy at once, counting again from zero, so that
 * healthy_threshold successes re-admit it.  Returns true when it changed. */
bool ptc_hsm_eject(ptc_hsm *m);
/* The length of the current run of equal results. */
unsigned ptc_hsm_consecutive(const ptc_hsm *m);

/* ---- the checker ---- */

typedef struct ptc_health ptc_health;

/* What is known about one target. */
typedef struct ptc_health_view {
    ptc_hstate state;
    int last_status;      /* HTTP status of the last check, 0 when none came */
    char last_error[192]; /* why the last check failed, or "" */
    int64_t checked_at;   /* ms since the epoch of the last result, 0: never */
    int64_t changed_at;   /* ms since the epoch of the last transition, 0: never */
    unsigned consecutive; /* equal results in a row */
    bool passive;         /* the last transition was a passive ejection */
} ptc_health_view;

/* A transition of one target, with the proxies that use it. */
typedef struct ptc_health_event {
    const char *host;
    unsigned port;
    const char *path;
    ptc_hstate from, to;
    const ptc_health_view *view;
    const char *const *proxies;
    size_t n_proxies;
} ptc_health_event;

/* Where verdicts go.  Both functions run on the checker's thread, one at a
 * time and in the order things happened, with no lock of the checker held;
 * they must return quickly (queue slow work elsewhere). */
typedef struct ptc_health_listener {
    void (*transition)(void *arg, const ptc_health_event *ev);
    /* The address host:port went down (one of its targets became
     * unhealthy) or up (none is unhealthy any more, or no proxy uses it). */
    void (*address)(void *arg, const char *host, unsigned port, bool healthy);
    void *arg;
} ptc_health_listener;

typedef struct ptc_health_config {
    unsigned max_in_flight;   /* checks running at once (>= 1) */
    unsigned max_connections; /* idle connections kept for reuse; 0: half the descriptor limit */
} ptc_health_config;

/* Counters since start, for metrics. */
typedef struct ptc_health_stats {
    uint64_t checks_success, checks_bad_status, checks_timeout, checks_error, passive_ejections, transitions;
    size_t targets, healthy, unhealthy, unknown, in_flight, reusable;
} ptc_health_stats;

/* A checker with no targets and no thread yet.  The listener is copied.
 * Caller frees with ptc_health_destroy. */
ptc_health *ptc_health_create(const ptc_health_config *cfg, const ptc_health_listener *listener);
/* Delivers what is pending (the saved verdicts of the first follow) on the
 * calling thread, then starts the checker's thread.  Returns 0 or
 * -errno. */
int ptc_health_start(ptc_health *h);
/* Stops the thread (checks in flight are abandoned) and frees everything.
 * Blocks until the thread has ended.  NULL is ignored. */
void ptc_health_destroy(ptc_health *h);

/* Makes the targets those of state: adds new ones, drops unused ones,
 * keeps the state of the others; unchanged proxies (the same object as in
 * the state followed before) cost nothing.  The state is retained until
 * the next call.  Thread-safe; takes the checker's lock for the diff and
 * never waits for checks. */
void ptc_health_follow(ptc_health *h, const ptc_state *state);

/* The view of target (host, port, path).  Returns 0, or -ENOENT when no
 * proxy of the followed state checks it.  Thread-safe, never blocks for
 * long. */
int ptc_health_get(ptc_health *h, const char *host, unsigned port, const char *path, ptc_health_view *out);

/* Passive ejection: the data plane stopped sending traffic to host:port
 * after consecutive connection failures.  Every target on that address
 * becomes unhealthy (a transition with passive set) until the active
 * checks re-admit it.  Safe to call from any thread, including the data
 * plane's workers: it only queues the report and wakes the checker. */
void ptc_health_report_down(ptc_health *h, const char *host, unsigned port, const char *reason);

void ptc_health_stats_get(ptc_health *h, ptc_health_stats *out);

/* Persistence: the known (not unknown) targets as a JSON array of
 * {host, port, path, state, last_status, last_error, checked_at,
 * changed_at, consecutive} (new reference), and the seeding of a checker
 * from such an array before its first ptc_health_follow: targets that
 * reappear start in their saved state (their address reported down when
 * unhealthy) and are checked again within a second.  Entries that do not
 * validate are ignored. */
json_t *ptc_health_export(ptc_health *h);
void ptc_health_import(ptc_health *h, const json_t *saved);

#endif
