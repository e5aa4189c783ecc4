/* Renewal: the due time (a third of the lifetime left, minus a bounded
 * jitter fixed per certificate), the back-off sequence, and the scheduler
 * thread renewing only what is due and served, retrying a failure later
 * and reporting it. */
#include "acme/renew.h"
#include "core/mem.h"
#include "core/util.h"
#include "testlib.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DAY (24LL * 3600 * 1000)

static void test_due_arithmetic(void)
{
    int64_t nb = 1700000000000LL, na = nb + 90 * DAY;
    /* Seed 0: exactly when a third is left. */
    CHECK_INT(ptc_renew_due_at(nb, na, 0), na - 30 * DAY);
    /* Jitter: at most a twentieth of the lifetime, capped at a day. */
    CHECK_INT(ptc_renew_jitter_max(90 * DAY), DAY);
    CHECK_INT(ptc_renew_jitter_max(10 * DAY), DAY / 2);
    CHECK_INT(ptc_renew_jitter_max(90 * 1000), 4500);
    CHECK_INT(ptc_renew_jitter_max(0), 0);
    for (uint64_t seed = 0; seed < 5000; seed += 7) {
        uint64_t big = seed * 0x9e3779b97f4a7c15ULL;
        int64_t due = ptc_renew_due_at(nb, na, big);
        CHECK(due <= na - 30 * DAY && due >= na - 30 * DAY - DAY);
        int64_t short_due = ptc_renew_due_at(nb, nb + 90000, big);
        CHECK(short_due <= nb + 60000 && short_due >= nb + 60000 - 4500);
    }
    /* The largest seed reaches the bound, never beyond. */
    CHECK_INT(ptc_renew_due_at(nb, na, (uint64_t)DAY), na - 30 * DAY - DAY);
    /* Nonsense validity: due at once. */
    CHECK_INT(ptc_renew_due_at(na, nb, 3), na);

    /* Per certificate: seeded by the fingerprint, the same at every look. */
    ptc_cert *c = ptc_cert_new();
    c->not_before = nb;
    c->not_after = na;
    c->fingerprint = ptc_xstrdup("00000000000003e8ffff"); /* first 16 hex digits: 1000 */
    CHECK_INT(ptc_renew_cert_due_at(c), na - 30 * DAY - 1000);
    c->source = ptc_xstrdup("acme");
    CHECK(ptc_renew_renewable(c));
    free(c->source);
    c->source = ptc_xstrdup("certbot");
    CHECK(ptc_renew_renewable(c));
    free(c->source);
    c->source = ptc_xstrdup("uploaded");
    CHECK(!ptc_renew_renewable(c));
    ptc_cert_release(c);
}

static void test_backoff(void)
{
    int64_t want = 60000;
    CHECK_INT(ptc_renew_backoff(0), 60000);
    for (unsigned n = 1; n <= 40; n++) {
        CHECK_INT(ptc_renew_backoff(n), want);
        want = want * 2 > DAY ? DAY : want * 2;
    }
    CHECK_INT(ptc_renew_backoff(11), 1024LL * 60000);
    CHECK_INT(ptc_renew_backoff(12), DAY);
    CHECK_INT(ptc_renew_backoff(4000000000u), DAY);
}

/* ---- the scheduler, with a state and a renew callback of the test ---- */

typedef struct fake {
    pthread_mutex_t lock;
    ptc_state *state;
    int calls;
    char last_domain[64];
    int fail_first; /* how many calls fail before one succeeds */
} fake;

static const ptc_state *fake_state(void *arg)
{
    fake *f = arg;
    pthread_mutex_lock(&f->lock);
    const ptc_state *s = ptc_state_retain(f->state);
    pthread_mutex_unlock(&f->lock);
    return s;
}

static ptc_cert *mk_cert(const char *domain, const char *source, int64_t nb, int64_t na, const char *fp)
{
    ptc_cert *c = ptc_cert_new();
    c->domain = ptc_xstrdup(domain);
    c->source = ptc_xstrdup(source);
    c->fingerprint = ptc_xstrdup(fp);
    c->cert_pem = ptc_xstrdup("");
    c->key_pem = ptc_xstrdup("");
    c->issuer = ptc_xstrdup("CN=test");
    c->subject = ptc_xstrdup("CN=test");
    c->not_before = nb;
    c->not_after = na;
    return c;
}

static ptc_proxy *mk_proxy(const char *name, const char *domain)
{
    static const ptc_proxy_defaults defs = {"/health", 1000, 5000};
    char body[256];
    snprintf(body, sizeof(body), "{\"domain\": \"%s\", \"upstream_port\": 8001}", domain);
    json_t *j = json_loads(body, 0, NULL), *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, name, &defs, errors);
    json_decref(j);
    json_decref(errors);
    return p;
}

static int fake_renew(void *arg, const char *domain, char *err, size_t errlen)
{
    fake *f = arg;
    int rc = 0;
    pthread_mutex_lock(&f->lock);
    f->calls++;
    snprintf(f->last_domain, sizeof(f->last_domain), "%s", domain);
    if (f->fail_first > 0) {
        f->fail_first--;
        snprintf(err, errlen, "the CA is down");
        rc = -EIO;
    } else {
        /* A renewal puts a fresh certificate in the state. */
        int64_t now = ptc_now_ms();
        ptc_state *next =
            ptc_state_put_cert(f->state, mk_cert(domain, "acme", now, now + 90 * DAY, "feedface"));
        ptc_state_release(f->state);
        f->state = next;
    }
    pthread_mutex_unlock(&f->lock);
    return rc;
}

static int calls(fake *f)
{
    pthread_mutex_lock(&f->lock);
    int n = f->calls;
    pthread_mutex_unlock(&f->lock);
    return n;
}

/* Waits (bounded) until the renew callback has run n times. */
static bool wait_calls(fake *f, int n)
{
    for (int i = 0; i < 1000; i++) {
        if (calls(f) >= n)
            return true;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return false;
}

static void test_scheduler(void)
{
    int64_t now = ptc_now_ms();
    fake f = {.fail_first = 1};
    pthread_mutex_init(&f.lock, NULL);
    /* due.example.com: acme, served, past its due time; uploaded.example.com:
     * due but uploaded; orphan.example.com: due, acme, but no proxy serves
     * it; fresh.example.com: acme, served, not due. */
    ptc_proxy *proxies[] = {mk_proxy("due", "due.example.com"), mk_proxy("up", "uploaded.example.com"),
                            mk_proxy("fresh", "fresh.example.com")};
    ptc_cert *certs[] = {
        mk_cert("due.example.com", "acme", now - 80 * DAY, now + 10 * DAY, "aaaa"),
        mk_cert("uploaded.example.com", "uploaded", now - 80 * DAY, now + 10 * DAY, "bbbb"),
        mk_cert("orphan.example.com", "acme", now - 80 * DAY, now + 10 * DAY, "cccc"),
        mk_cert("fresh.example.com", "certbot", now, now + 90 * DAY, "dddd"),
    };
    f.state = ptc_state_from(proxies, 3, certs, 4);
    ptc_renewer_ops ops = {.state = fake_state, .renew = fake_renew, .arg = &f};
    ptc_renewer *r = ptc_renewer_start(&ops);
    CHECK(r != NULL);

    /* The first attempt fails: reported, retried only after the back-off. */
    CHECK(wait_calls(&f, 1));
    CHECK_STR(f.last_domain, "due.example.com");
    bool failing = false;
    json_t *st = NULL;
    for (int i = 0; i < 1000 && !failing; i++) {
        json_decref(st);
        st = ptc_renewer_status(r, &failing);
        if (!failing) {
            struct timespec ts = {0, 10 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    CHECK(failing);
    json_t *entry = json_array_get(json_object_get(st, "failing"), 0);
    CHECK_STR(json_string_value(json_object_get(entry, "domain")), "due.example.com");
    CHECK_INT(json_integer_value(json_object_get(entry, "failures")), 1);
    CHECK_STR(json_string_value(json_object_get(entry, "last_error")), "the CA is down");
    int64_t next = 0, last = 0;
    CHECK_INT(ptc_time_parse(json_string_value(json_object_get(entry, "next_attempt")), &next), 0);
    CHECK_INT(ptc_time_parse(json_string_value(json_object_get(entry, "last_attempt")), &last), 0);
    CHECK_INT(next - last, PTC_RENEW_BACKOFF_FIRST_MS);
    CHECK_STR(json_string_value(json_object_get(json_object_get(st, "last_failure"), "domain")),
              "due.example.com");
    /* Only the two served ACME/certbot certificates are scheduled. */
    CHECK_INT(json_integer_value(json_object_get(st, "scheduled")), 2);
    json_decref(st);

    /* A kick does not bypass the back-off. */
    ptc_renewer_kick(r);
    st = ptc_renewer_status(r, &failing);
    json_decref(st);
    CHECK(failing);
    CHECK_INT(calls(&f), 1);

    /* A new certificate (issued through the API, say) clears the record. */
    pthread_mutex_lock(&f.lock);
    ptc_state *next_state =
        ptc_state_put_cert(f.state, mk_cert("due.example.com", "acme", now, now + 90 * DAY, "eeee"));
    ptc_state_release(f.state);
    f.state = next_state;
    pthread_mutex_unlock(&f.lock);
    ptc_renewer_kick(r);
    for (int i = 0; i < 1000 && failing; i++) {
        st = ptc_renewer_status(r, &failing);
        json_decref(st);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(!failing);
    st = ptc_renewer_status(r, &failing);
    /* The last failure stays on record after recovery. */
    CHECK(json_object_get(st, "last_failure") != NULL && !json_is_null(json_object_get(st, "last_failure")));
    CHECK(!json_is_null(json_object_get(st, "next")));
    json_decref(st);
    CHECK_INT(calls(&f), 1);
    ptc_renewer_stop(r);
    ptc_state_release(f.state);
    pthread_mutex_destroy(&f.lock);
}

/* A due certificate renewed successfully is not renewed again. */
static void test_scheduler_success(void)
{
    int64_t now = ptc_now_ms();
    fake f = {.fail_first = 0};
    pthread_mutex_init(&f.lock, NULL);
    ptc_proxy *proxies[] = {mk_proxy("a", "a.example.com")};
    ptc_cert *certs[] = {mk_cert("a.example.com", "acme", now - 100000, now - 1000, "1234")};
    f.state = ptc_state_from(proxies, 1, certs, 1);
    ptc_renewer_ops ops = {.state = fake_state, .renew = fake_renew, .arg = &f};
    ptc_renewer *r = ptc_renewer_start(&ops);
    CHECK(wait_calls(&f, 1));
    ptc_renewer_kick(r);
    bool failing = true;
    json_t *st = NULL;
    /* Wait until the scheduler has planned the renewed certificate. */
    for (int i = 0; i < 1000; i++) {
        json_decref(st);
        st = ptc_renewer_status(r, &failing);
        int64_t at = 0;
        const char *s = json_string_value(json_object_get(json_object_get(st, "next"), "at"));
        if (s && ptc_time_parse(s, &at) == 0 && at > now + 50 * DAY)
            break;
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(!failing);
    CHECK(json_is_null(json_object_get(st, "last_failure")));
    json_decref(st);
    ptc_renewer_stop(r);
    CHECK_INT(calls(&f), 1);
    ptc_state_release(f.state);
    pthread_mutex_destroy(&f.lock);
}

int main(void)
{
    RUN(test_due_arithmetic);
    RUN(test_backoff);
    RUN(test_scheduler);
    RUN(test_scheduler_success);
    TEST_EXIT();
}
