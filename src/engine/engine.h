/* The engine interface: what turns the desired state into live traffic
 * handling.  Three engines implement it (builtin, nginx, caddy).  The API's
 * apply pipeline calls them with the state before and after a change; an
 * engine does its part of DESIGN §3 (back up, write, test, reload, verify,
 * roll back) and answers with a result the API can return as is.
 *
 * Calls are serialised by the caller (one apply at a time); status() may
 * run concurrently with an apply and must not block on it for long. */
#ifndef PTC_ENGINE_H
#define PTC_ENGINE_H

#include "core/buf.h"
#include "core/settings.h"
#include "model/state.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ptc_engine ptc_engine;

typedef struct ptc_apply_request {
    const ptc_state *old;  /* what is live now */
    const ptc_state *next; /* what must be live afterwards */
    /* The route to verify with one request through the engine's listener
     * (DESIGN §3 step 7), or verify_domain NULL for none. */
    const char *verify_domain;
    const char *verify_path;
    bool verify_gone; /* a deletion: the route should no longer answer */
} ptc_apply_request;

typedef struct ptc_apply_result {
    /* NULL on success, else the API error code ("NGINX_TEST_FAILED",
     * "NGINX_RELOAD_FAILED", "CONFIG_WRITE_FAILED", "CADDY_LOAD_FAILED",
     * "ENGINE_APPLY_FAILED"); on failure the engine has rolled back. */
    const char *code;
    char message[512];
    json_t *details; /* owned; what the engine said (nginx's own message), or NULL */
    /* owned; the response's `apply` object: {"engine", "files", "duration_ms",
     * "verify": {"ok", "status", "detail"}} and engine-specific extras */
    json_t *report;
} ptc_apply_result;

typedef enum ptc_health_level { PTC_HEALTHY, PTC_DEGRADED, PTC_UNHEALTHY } ptc_health_level;

/* Passive health: what an engine calls, from any of its threads, when it
 * stops sending traffic to the address host:port by itself (consecutive
 * connection failures); reason says why.  Must return at once. */
typedef void (*ptc_passive_down_fn)(void *arg, const char *host, unsigned port, const char *reason);

typedef struct ptc_engine_ops {
    const char *name;
    /* Makes the engine serve state at start-up: renders it, repairs drift
     * (files edited or deleted by hand) and logs each repair.  Returns 0, or
     * -errno with the reason in err.  Blocks. */
    int (*start)(ptc_engine *e, const ptc_state *state, char *err, size_t errlen);
    /* Applies req; fills res (always, success or not).  Blocks. */
    void (*apply)(ptc_engine *e, const ptc_apply_request *req, ptc_apply_result *res);
    /* The engine's part of the health endpoint (e.g. the "nginx" object of
     * seed 001: present, config_test_ok, last_reload_timestamp, version)
     * and its verdict in *level.  Returns a new reference. */
    json_t *(*status)(ptc_engine *e, ptc_health_level *level);
    /* HTTP-01: serve key_authorization at /.well-known/acme-challenge/token
     * on every domain until cleared.  Returns 0 or -errno.  NULL when the
     * engine cannot answer challenges.  Called from the issuing thread
     * without the apply lock (issuance takes seconds), so they may run
     * concurrently with apply() and with each other. */
    int (*set_challenge)(ptc_engine *e, const char *token, const char *key_authorization);
    void (*clear_challenge)(ptc_engine *e, const char *token);
    /* Upstream health (issue 5): the active checks' verdict on the address
     * host:port, for every proxy whose upstreams name it.  Called from the
     * checker's thread, concurrently with apply; records the verdict and
     * returns at once.  Engines that serve traffic themselves make it live
     * here (only healthy upstreams get traffic; none healthy: 503
     * NO_HEALTHY_UPSTREAM); engines that render files render the address
     * down from their next apply or apply_health on.  Addresses start
     * healthy.  NULL when the engine ignores health. */
    void (*set_upstream_health)(ptc_engine *e, const char *host, unsigned port, bool healthy);
    /* Makes the recorded verdicts live for state (the committed desired
     * state) through the engine's safe path (nginx: render the files whose
     * upstreams changed, back up, test, reload, roll back on failure); res
     * as for apply.  The caller serialises it with apply and calls it at
     * most every 2 s.  NULL when set_upstream_health is live at once. */
    void (*apply_health)(ptc_engine *e, const ptc_state *state, ptc_apply_result *res);
    /* Sets (fn NULL: clears) the function the engine calls when it ejects an
     * address on its own.  Once a clearing call returns, the previous
     * function is not called any more.  NULL when the engine has no
     * passive checks. */
    void (*set_passive_listener)(ptc_engine *e, ptc_passive_down_fn fn, void *arg);
    /* Appends the engine's metrics in Prometheus text format (NULL when the
     * engine has none of its own). */
    void (*metrics)(ptc_engine *e, ptc_buf *out);
    /* Gives back scratch memory the engine keeps between applies to make a
     * run of them cheap.  Called with applies serialised, when the API has
     * been idle for a while.  NULL when the engine keeps none. */
    void (*trim)(ptc_engine *e);
    /* Stops what the engine started (a managed nginx, the data plane
     * workers after draining) and frees it. */
    void (*destroy)(ptc_engine *e);
} ptc_engine_ops;

struct ptc_engine {
    const ptc_engine_ops *ops;
    const ptc_settings *settings; /* borrowed; outlives the engine */
    void *impl;                   /* the engine's own state */
};

/* Creates the engine the `engine` setting names.  Returns NULL with the
 * reason in err.  Does not start serving (see ops->start). */
ptc_engine *ptc_engine_create(const ptc_settings *s, char *err, size_t errlen);

/* Constructors of each engine, used by ptc_engine_create. */
ptc_engine *ptc_engine_builtin_create(const ptc_settings *s, char *err, size_t errlen);
ptc_engine *ptc_engine_nginx_create(const ptc_settings *s, char *err, size_t errlen);
ptc_engine *ptc_engine_caddy_create(const ptc_settings *s, char *err, size_t errlen);

/* Frees what a result owns (not the struct itself). */
void ptc_apply_result_clear(ptc_apply_result *res);

#endif
