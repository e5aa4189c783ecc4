/* Automatic renewal: when a certificate is due (a third of its lifetime
 * left, minus a jitter fixed per certificate so that many certificates
 * issued together do not all renew in the same second), and a scheduler
 * thread that renews due ACME and certbot certificates one at a time,
 * retrying failures with exponential back-off (1 min doubling, at most a
 * day) while the old certificate keeps serving.
 *
 * The scheduler knows neither the API nor the engine: it reads the desired
 * state and asks for a renewal through the callbacks it is given. */
#ifndef PTC_ACME_RENEW_H
#define PTC_ACME_RENEW_H

#include "model/state.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define PTC_RENEW_BACKOFF_FIRST_MS (60LL * 1000)
#define PTC_RENEW_BACKOFF_MAX_MS (24LL * 3600 * 1000)
#define PTC_RENEW_JITTER_CAP_MS (24LL * 3600 * 1000)

/* The largest jitter for a lifetime: a twentieth of it, at most a day. */
int64_t ptc_renew_jitter_max(int64_t lifetime_ms);
/* When a certificate valid from not_before to not_after (ms) is due:
 * not_after - lifetime/3 - jitter, the jitter taken from seed modulo
 * (ptc_renew_jitter_max + 1). */
int64_t ptc_renew_due_at(int64_t not_before, int64_t not_after, uint64_t seed);
/* The same for a certificate, seeded by its fingerprint. */
int64_t ptc_renew_cert_due_at(const ptc_cert *c);
/* The wait after the n-th failure in a row (n >= 1): 1 min, 2, 4, ...,
 * at most a day. */
int64_t ptc_renew_backoff(unsigned failures);
/* True for a certificate portico renews by itself (source acme or certbot). */
bool ptc_renew_renewable(const ptc_cert *c);

typedef struct ptc_renewer_ops {
    /* The committed desired state, retained for the caller. */
    const ptc_state *(*state)(void *arg);
    /* Renews domain's certificate now (issue, apply, audit).  Returns 0 or
     * -errno with a reason in err.  Blocks. */
    int (*renew)(void *arg, const char *domain, char *err, size_t errlen);
    void *arg;
} ptc_renewer_ops;

typedef struct ptc_renewer ptc_renewer;

/* Starts the scheduler thread.  It renews a certificate when it is due
 * and at least one proxy serves its domain; ops is copied.  Returns NULL
 * when the thread cannot start. */
ptc_renewer *ptc_renewer_start(const ptc_renewer_ops *ops);
/* Makes the scheduler look at the state again now (after a change). */
void ptc_renewer_kick(ptc_renewer *r);
/* What the health endpoint shows: the next renewal, the certificates whose
 * renewal is failing (attempts, last error, next attempt) and the last
 * failure.  *failing is set when a renewal is failing.  New reference. */
json_t *ptc_renewer_status(ptc_renewer *r, bool *failing);
/* Stops the thread (the caller cancels a renewal in progress through its
 * own means first) and frees r.  NULL is ignored. */
void ptc_renewer_stop(ptc_renewer *r);

#endif
