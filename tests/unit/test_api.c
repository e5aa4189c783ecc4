/* The API's apply pipeline (api/apply.c) and handlers, driven without the
 * HTTP server: a ptc_api with a SQLite store in a temporary folder and an
 * engine that records what it is asked to apply. */
#include "api/api_internal.h"
#include "core/mem.h"
#include "core/settings.h"
#include "core/util.h"
#include "engine/engine.h"
#include "store/store.h"

#include "testlib.h"

#include <ftw.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- a recording engine ------------------------------------------------- */

static int applies;
/* While hold is set, an apply waits (holding the apply lock) until it is
 * cleared; in_apply tells the test that it has started. */
static pthread_mutex_t hold_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static bool hold, in_apply;

static void fake_apply(ptc_engine *e, const ptc_apply_request *req, ptc_apply_result *res)
{
    (void)e;
    (void)req;
    pthread_mutex_lock(&hold_mu);
    applies++;
    in_apply = true;
    pthread_cond_broadcast(&hold_cond);
    while (hold)
        pthread_cond_wait(&hold_cond, &hold_mu);
    in_apply = false;
    pthread_mutex_unlock(&hold_mu);
    res->report = json_pack("{s:s}", "engine", "fake");
}

static json_t *fake_status(ptc_engine *e, ptc_health_level *level)
{
    (void)e;
    *level = PTC_HEALTHY;
    return json_object();
}

static const ptc_engine_ops fake_ops = {.name = "fake", .apply = fake_apply, .status = fake_status};

/* ---- the API without its server ----------------------------------------- */

static char dir[64];
static ptc_settings *settings;
static ptc_store *store;
static ptc_engine engine = {.ops = &fake_ops};
static ptc_api *api;

static void setup(void)
{
    char err[256];
    snprintf(dir, sizeof(dir), "/tmp/ptc-test-api-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    settings = ptc_settings_new();
    store = ptc_store_open("", dir, err, sizeof(err));
    CHECK(store != NULL);
    api = ptc_xcalloc(1, sizeof(*api));
    api->settings = settings;
    api->store = store;
    api->engine = &engine;
    engine.settings = settings;
    pthread_mutex_init(&api->apply_lock, NULL);
    pthread_mutex_init(&api->state_lock, NULL);
    pthread_mutex_init(&api->dns_lock, NULL);
    api->state = ptc_state_new();
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void teardown(void)
{
    ptc_state_release(api->state);
    pthread_mutex_destroy(&api->apply_lock);
    pthread_mutex_destroy(&api->state_lock);
    pthread_mutex_destroy(&api->dns_lock);
    free(api);
    ptc_store_close(store);
    ptc_settings_free(settings);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void call_init(ptc_call *c, const char *method, const char *path)
{
    memset(c, 0, sizeof(*c));
    c->api = api;
    c->method = method;
    c->path = path;
    snprintf(c->correlation_id, sizeof(c->correlation_id), "test");
    snprintf(c->actor, sizeof(c->actor), "local");
    c->body = "";
}

static void call_free(ptc_call *c)
{
    json_decref(c->reply);
    free(c->text);
}

/* ---- tests ---------------------------------------------------------------- */

/* Lets a held apply go on after a while (the caller meanwhile blocks on
 * the apply lock). */
static void *release_later(void *arg)
{
    (void)arg;
    usleep(200 * 1000);
    pthread_mutex_lock(&hold_mu);
    hold = false;
    pthread_cond_broadcast(&hold_cond);
    pthread_mutex_unlock(&hold_mu);
    return NULL;
}

static const ptc_state *build_same(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    (void)c;
    (void)rev;
    *(const ptc_state **)arg = cur;
    return ptc_state_retain(cur);
}

/* A change that turns out to change nothing hands back the state it was
 * compared with: the caller answers from it, not from a state read again
 * later that another change may have altered meanwhile (a proxy deleted
 * between the two reads was a NULL dereference in PUT /proxies and PUT
 * /certificates). */
static void test_unchanged_hands_back_the_state_compared(void)
{
    ptc_call c;
    const ptc_state *seen = NULL, *next = NULL;
    json_t *report = NULL;
    ptc_change chg = {.action = "test.same", .build = build_same, .arg = &seen};

    call_init(&c, "PUT", "/test");
    applies = 0;
    CHECK_INT(ptc_api_apply(&c, &chg, &report, &next), PTC_APPLY_UNCHANGED);
    CHECK(next != NULL);
    CHECK(next == seen);
    CHECK(report == NULL);
    CHECK_INT(applies, 0);
    /* The reference is the caller's: it outlives a later change. */
    pthread_mutex_lock(&api->state_lock);
    const ptc_state *old = api->state;
    api->state = ptc_state_new();
    pthread_mutex_unlock(&api->state_lock);
    ptc_state_release(old);
    CHECK_INT(next ? next->n_proxies : 99, 0);
    ptc_state_release(next);
    json_decref(report);
    call_free(&c);
}

static void put_proxy(const char *name, const char *body_text, unsigned want)
{
    ptc_call c;
    const char *params[4] = {name};
    call_init(&c, "PUT", "/proxies/{}");
    memcpy(c.params, params, sizeof(params));
    c.body = body_text;
    c.body_len = strlen(body_text);
    ptc_api_proxy_put(&c);
    CHECK_INT(c.status, want);
    call_free(&c);
}

static void *put_thread(void *arg)
{
    (void)arg;
    put_proxy("late", "{\"domain\": \"late.example.com\", \"upstream_port\": 9, \"require_healthy\": false}",
              201);
    return NULL;
}

/* DELETE of a proxy created while the call waited for the apply lock: the
 * proxy is deleted, and the answer (and the audit entry) name its domain;
 * the domain was read before the lock, as NULL, and json_pack of the
 * answer failed: a 500 for a delete that happened. */
static void test_delete_reads_the_proxy_under_the_lock(void)
{
    pthread_t t;
    ptc_call c;
    const char *params[4] = {"late"};

    pthread_mutex_lock(&hold_mu);
    hold = true;
    pthread_mutex_unlock(&hold_mu);
    CHECK_INT(pthread_create(&t, NULL, put_thread, NULL), 0);
    pthread_mutex_lock(&hold_mu);
    while (!in_apply)
        pthread_cond_wait(&hold_cond, &hold_mu);
    pthread_mutex_unlock(&hold_mu);
    /* The PUT holds the apply lock inside the engine; the DELETE reads the
     * state (no "late" yet) and waits for the lock. */
    call_init(&c, "DELETE", "/proxies/{}");
    memcpy(c.params, params, sizeof(params));
    pthread_t releaser;
    CHECK_INT(pthread_create(&releaser, NULL, release_later, NULL), 0);
    ptc_api_proxy_delete(&c);
    pthread_join(releaser, NULL);
    pthread_join(t, NULL);
    CHECK_INT(c.status, 200);
    CHECK_STR(json_string_value(json_object_get(c.reply, "domain")), "late.example.com");
    call_free(&c);
    const ptc_state *s = ptc_api_state(api);
    CHECK(ptc_state_proxy(s, "late") == NULL);
    ptc_state_release(s);
}

int main(void)
{
    setup();
    RUN(test_unchanged_hands_back_the_state_compared);
    RUN(test_delete_reads_the_proxy_under_the_lock);
    teardown();
    TEST_EXIT();
}
