/* Renewal timing and the scheduler thread (see renew.h). */
#include "acme/renew.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* With nothing due, the state is still looked at hourly: a certificate
 * changed behind the scheduler's back is noticed even without a kick. */
#define IDLE_WAKE_MS (3600LL * 1000)

int64_t ptc_renew_jitter_max(int64_t lifetime_ms)
{
    int64_t j = lifetime_ms > 0 ? lifetime_ms / 20 : 0;
    return j > PTC_RENEW_JITTER_CAP_MS ? PTC_RENEW_JITTER_CAP_MS : j;
}

int64_t ptc_renew_due_at(int64_t not_before, int64_t not_after, uint64_t seed)
{
    int64_t lifetime = not_after - not_before;
    if (lifetime <= 0)
        return not_before;
    return not_after - lifetime / 3 - (int64_t)(seed % (uint64_t)(ptc_renew_jitter_max(lifetime) + 1));
}

int64_t ptc_renew_cert_due_at(const ptc_cert *c)
{
    uint64_t seed = 0;
    /* The fingerprint's first 16 hex digits: a jitter that is random across
     * certificates but the same for one certificate at every look. */
    for (size_t i = 0; c->fingerprint && c->fingerprint[i] && i < 16; i++) {
        char ch = c->fingerprint[i];
        unsigned v = ch >= '0' && ch <= '9'   ? (unsigned)(ch - '0')
                     : ch >= 'a' && ch <= 'f' ? (unsigned)(ch - 'a' + 10)
                                              : 0;
        seed = seed << 4 | v;
    }
    return ptc_renew_due_at(c->not_before, c->not_after, seed);
}

int64_t ptc_renew_backoff(unsigned failures)
{
    int64_t wait = PTC_RENEW_BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < failures && wait < PTC_RENEW_BACKOFF_MAX_MS; i++)
        wait *= 2;
    return wait > PTC_RENEW_BACKOFF_MAX_MS ? PTC_RENEW_BACKOFF_MAX_MS : wait;
}

bool ptc_renew_renewable(const ptc_cert *c)
{
    return c->source && (strcmp(c->source, "acme") == 0 || strcmp(c->source, "certbot") == 0);
}

/* What the scheduler remembers of one domain. */
typedef struct entry {
    char *domain;
    char *fingerprint;    /* of the certificate the failures were about */
    unsigned failures;    /* in a row */
    int64_t next_attempt; /* wall ms; 0: when due */
    int64_t last_attempt;
    char last_error[512];
    bool seen; /* still in the state at the last look */
} entry;

struct ptc_renewer {
    ptc_renewer_ops ops;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    bool stop, kicked;
    entry *entries;
    size_t n, cap;
    /* the soonest planned renewal, for the status */
    char next_domain[256];
    int64_t next_at;
    /* the last failure, kept after a later success (for the status) */
    char last_fail_domain[256];
    char last_fail_error[512];
    int64_t last_fail_at;
};

static entry *find(ptc_renewer *r, const char *domain)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->entries[i].domain, domain) == 0)
            return &r->entries[i];
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 16;
        r->entries = ptc_xrealloc(r->entries, r->cap * sizeof(*r->entries));
    }
    entry *e = &r->entries[r->n++];
    memset(e, 0, sizeof(*e));
    e->domain = ptc_xstrdup(domain);
    return e;
}

static void drop_unseen(ptc_renewer *r)
{
    size_t k = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (r->entries[i].seen) {
            r->entries[k++] = r->entries[i];
        } else {
            free(r->entries[i].domain);
            free(r->entries[i].fingerprint);
        }
    }
    r->n = k;
}

static bool served(const ptc_state *s, const char *domain)
{
    for (size_t i = 0; i < s->n_proxies; i++)
        if (strcmp(s->proxies[i]->domain, domain) == 0)
            return true;
    return false;
}

/* Looks at the state (lock held): picks the domain to renew now into
 * domain (returns true), else sets *wake to when to look again. */
static bool plan(ptc_renewer *r, const ptc_state *s, char *domain, size_t len, int64_t *wake)
{
    int64_t now = ptc_now_ms(), best = INT64_MAX;
    const char *pick = NULL;

    for (size_t i = 0; i < r->n; i++)
        r->entries[i].seen = false;
    r->next_domain[0] = '\0';
    r->next_at = 0;
    for (size_t i = 0; i < s->n_certs; i++) {
        const ptc_cert *c = s->certs[i];
        if (!ptc_renew_renewable(c) || !served(s, c->domain))
            continue;
        entry *e = find(r, c->domain);
        e->seen = true;
        /* A new certificate (renewed, or issued again through the API)
         * starts with a clean record. */
        if (e->fingerprint == NULL || strcmp(e->fingerprint, c->fingerprint) != 0) {
            free(e->fingerprint);
            e->fingerprint = ptc_xstrdup(c->fingerprint);
            e->failures = 0;
            e->next_attempt = 0;
            e->last_error[0] = '\0';
        }
        int64_t at = ptc_renew_cert_due_at(c);
        if (e->next_attempt > at)
            at = e->next_attempt;
        if (at < best) {
            best = at;
            pick = c->domain;
        }
    }
    drop_unseen(r);
    if (pick) {
        snprintf(r->next_domain, sizeof(r->next_domain), "%s", pick);
        r->next_at = best;
    }
    if (pick && best <= now) {
        snprintf(domain, len, "%s", pick);
        return true;
    }
    *wake = pick && best - now < IDLE_WAKE_MS ? best - now : IDLE_WAKE_MS;
    return false;
}

static void record(ptc_renewer *r, const char *domain, int rc, const char *err)
{
    int64_t now = ptc_now_ms();
    entry *e = NULL;
    for (size_t i = 0; i < r->n && e == NULL; i++)
        if (strcmp(r->entries[i].domain, domain) == 0)
            e = &r->entries[i];
    if (e == NULL)
        return;
    e->last_attempt = now;
    if (rc == 0) {
        e->failures = 0;
        e->last_error[0] = '\0';
        /* Success normally brings a new fingerprint and a far due date; if
         * the certificate did not change after all, this keeps the
         * scheduler from renewing it in a tight loop. */
        e->next_attempt = now + PTC_RENEW_BACKOFF_FIRST_MS;
        return;
    }
    e->failures++;
    e->next_attempt = now + ptc_renew_backoff(e->failures);
    snprintf(e->last_error, sizeof(e->last_error), "%s", err);
    snprintf(r->last_fail_domain, sizeof(r->last_fail_domain), "%s", domain);
    snprintf(r->last_fail_error, sizeof(r->last_fail_error), "%s", err);
    r->last_fail_at = now;
}

static void wait_ms(ptc_renewer *r, int64_t ms)
{
    struct timespec ts = ptc_deadline_ms(CLOCK_MONOTONIC, ms);
    while (!r->stop && !r->kicked)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT)
            break;
}

static void *run(void *arg)
{
    ptc_renewer *r = arg;
    char domain[256], err[512];

    ptc_log_set_correlation_id("renewal-scheduler");
    pthread_mutex_lock(&r->lock);
    while (!r->stop) {
        int64_t wake = IDLE_WAKE_MS;
        r->kicked = false;
        pthread_mutex_unlock(&r->lock);
        const ptc_state *s = r->ops.state(r->ops.arg);
        pthread_mutex_lock(&r->lock);
        bool due = plan(r, s, domain, sizeof(domain), &wake);
        pthread_mutex_unlock(&r->lock);
        ptc_state_release(s);
        if (due) {
            err[0] = '\0';
            ptc_log_info("certificate renewal due", PTC_LS("domain", domain));
            int rc = r->ops.renew(r->ops.arg, domain, err, sizeof(err));
            ptc_log_set_correlation_id("renewal-scheduler");
            pthread_mutex_lock(&r->lock);
            record(r, domain, rc, err[0] ? err : "renewal failed");
            if (rc != 0)
                ptc_log_warn("certificate renewal failed; retrying later", PTC_LS("domain", domain),
                             PTC_LS("reason", err),
                             PTC_LI("retry_in_ms", ptc_renew_backoff(find(r, domain)->failures)));
            continue;
        }
        pthread_mutex_lock(&r->lock);
        wait_ms(r, wake < 1 ? 1 : wake);
    }
    pthread_mutex_unlock(&r->lock);
    ptc_log_set_correlation_id(NULL);
    return NULL;
}

ptc_renewer *ptc_renewer_start(const ptc_renewer_ops *ops)
{
    ptc_renewer *r = ptc_xcalloc(1, sizeof(*r));
    pthread_condattr_t ca;
    r->ops = *ops;
    pthread_mutex_init(&r->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        pthread_cond_destroy(&r->cond);
        pthread_mutex_destroy(&r->lock);
        free(r);
        return NULL;
    }
    return r;
}

void ptc_renewer_kick(ptc_renewer *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->kicked = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static json_t *time_or_null(int64_t ms)
{
    char t[32];
    if (ms <= 0)
        return json_null();
    ptc_time_format(ms, t, sizeof(t));
    return json_string(t);
}

json_t *ptc_renewer_status(ptc_renewer *r, bool *failing)
{
    json_t *out = json_object(), *list = json_array();
    *failing = false;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->n; i++) {
        const entry *e = &r->entries[i];
        if (e->failures == 0)
            continue;
        json_array_append_new(list, json_pack("{s:s, s:i, s:s, s:o, s:o}", "domain", e->domain, "failures",
                                              (int)e->failures, "last_error", e->last_error, "last_attempt",
                                              time_or_null(e->last_attempt), "next_attempt",
                                              time_or_null(e->next_attempt)));
    }
    *failing = json_array_size(list) > 0;
    json_object_set_new(out, "scheduled", json_integer((json_int_t)r->n));
    json_object_set_new(
        out, "next",
        r->next_domain[0] ? json_pack("{s:s, s:o}", "domain", r->next_domain, "at", time_or_null(r->next_at))
                          : json_null());
    json_object_set_new(out, "failing", list);
    json_object_set_new(out, "last_failure",
                        r->last_fail_at ? json_pack("{s:s, s:s, s:o}", "domain", r->last_fail_domain, "error",
                                                    r->last_fail_error, "at", time_or_null(r->last_fail_at))
                                        : json_null());
    pthread_mutex_unlock(&r->lock);
    return out;
}

void ptc_renewer_stop(ptc_renewer *r)
{
    if (r == NULL)
        return;
    pthread_mutex_lock(&r->lock);
    r->stop = true;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
    pthread_join(r->thread, NULL);
    for (size_t i = 0; i < r->n; i++) {
        free(r->entries[i].domain);
        free(r->entries[i].fingerprint);
    }
    free(r->entries);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
