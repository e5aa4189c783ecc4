/* What the API's handlers share: the API context, one call's context, and
 * the helpers that answer (NGINX Unit's controller pattern: parse, validate,
 * apply, answer with a status, a code, a message and details). */
#ifndef PTC_API_INTERNAL_H
#define PTC_API_INTERNAL_H

#include "api/api.h"
#include "core/buf.h"
#include "dns/dns.h"
#include "model/state.h"
#include "ports/ports.h"

#include <jansson.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define PTC_API_BODY_MAX (64 * 1024)

struct ptc_api {
    const ptc_settings *settings;
    ptc_store *store;
    ptc_engine *engine;
    struct MHD_Daemon *daemon;
    char *token; /* NULL: no authentication */
    int64_t started_at;
    pthread_mutex_t apply_lock;      /* one change at a time, held from reading the state to committing */
    pthread_mutex_t state_lock;      /* guards the state pointer only (held for a retain) */
    const ptc_state *state;          /* the committed desired state, as the engine serves it */
    int64_t generation;              /* the store generation state reflects (under apply_lock) */
    struct ptc_api_follower *follow; /* the look for other nodes' changes (follow.c) */
    atomic_uint_fast64_t activity;   /* see ptc_api_activity */
    struct ptc_api_ssl *ssl;         /* ACME issuances in progress and the renewal scheduler (ssl.c) */
    struct ptc_api_checks *checks;   /* active health checks and what follows them (checks.c) */
    struct ptc_api_sync *sync;       /* registry sync (sync.c) */
    ptc_ports *ports;                /* the port allocator (seed 003) */
    /* DNS (seed 004): the zone is rebuilt from the store's records and the
     * state's proxies after every change, under dns_lock so that the last
     * rebuild always sees the last change. */
    char *dns_zone_name;        /* NULL: dns_zone unset, no DNS */
    ptc_dns_server *dns_server; /* NULL: dns_listen unset */
    pthread_mutex_t dns_lock;
    ptc_dns_zone *dns_zone; /* what the responder answers from */
    uint32_t dns_serial;
};

/* An answer header of a handler's own (name and value: static strings). */
typedef struct ptc_header {
    const char *name, *value;
} ptc_header;

/* One call: what the handler reads and what it answers. */
typedef struct ptc_call {
    ptc_api *api;
    const char *method;
    const char *path;
    struct MHD_Connection *conn;
    char correlation_id[72];
    char actor[96];
    const char *body; /* NUL-terminated, may be empty */
    size_t body_len;
    const char *params[4]; /* path parameters, e.g. the {name} of /proxies/{name} */
    /* the answer */
    unsigned status;
    json_t *reply;             /* owned */
    char *text;                /* a non-JSON reply (metrics, zone files), owned */
    const unsigned char *data; /* a static reply of data_len bytes (the web page's files) */
    size_t data_len;
    const char *content_type;
    /* more answer headers, ended by {NULL}; a Cache-Control among them
     * replaces the default no-store */
    const ptc_header *headers;
} ptc_call;

/* Answers status with body (reference taken over). */
void ptc_call_reply(ptc_call *c, unsigned status, json_t *body);
/* Answers the error shape {"error": {code, message, details}}; details is
 * taken over (NULL for none) and gains the correlation id. */
void ptc_call_error(ptc_call *c, unsigned status, const char *code, const char *message, json_t *details);
/* Parses the body as a JSON object; on failure answers 400 INVALID_JSON
 * and returns NULL.  An empty body is {} when empty_ok. */
json_t *ptc_call_json_body(ptc_call *c, bool empty_ok);
/* A query argument, or NULL. */
const char *ptc_call_query(ptc_call *c, const char *name);

/* The committed state, retained for the caller (release it). */
const ptc_state *ptc_api_state(ptc_api *api);

/* An audit entry for this call (correlation id, actor and time filled in). */
void ptc_api_audit(ptc_call *c, const char *action, const char *droplet, const char *domain,
                   const char *result, const char *error_code, const char *detail);
/* An audit entry for a call already answered with an error: the result,
 * code and message are read from the answer. */
void ptc_api_audit_failure(ptc_call *c, const char *action, const char *droplet, const char *domain);
/* An attempt audited before the engine works on it, so that a crash
 * half-way leaves a row ("interrupted" at the next start): begin returns
 * the row's id (0 when it could not be written; end then appends). */
int64_t ptc_api_audit_begin(ptc_call *c, const char *action, const char *droplet, const char *domain,
                            const char *detail);
void ptc_api_audit_end(ptc_call *c, int64_t id, const char *action, const char *droplet, const char *domain,
                       const char *result, const char *error_code, const char *detail);
void ptc_api_audit_end_failure(ptc_call *c, int64_t id, const char *action, const char *droplet,
                               const char *domain);
/* The log line of an audit row that the store finished itself, in the
 * transaction of the change (see ptc_revision.audit_id). */
void ptc_api_audit_logged(ptc_call *c, const char *action, const char *droplet, const char *domain,
                          const char *result, const char *error_code);

/* ---- the apply pipeline (apply.c) ---- */

/* A change to apply: how to build the next state from the current one.
 * build() runs under the apply lock with the committed state and the
 * number the revision will get; it returns the next state (new reference),
 * or NULL after answering the call itself (404, 409, ...), or cur retained
 * when nothing changes.  commit() writes the change to the store (NULL:
 * the proxies of next, as revision rev); it returns 0 or -errno. */
typedef struct ptc_change {
    const char *action;  /* audit action, e.g. "proxy.put" */
    const char *droplet; /* for the audit entry, may be NULL */
    const char *domain;
    char summary[160]; /* for the revision */
    const ptc_state *(*build)(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg);
    int (*commit)(ptc_call *c, const ptc_state *cur, const ptc_state *next, int64_t rev, void *arg);
    void *arg;
    /* set when commit() also writes the proxies of next as revision rev
     * (a change that is a revision and more, like POST /add-record) */
    bool commits_revision;
    /* what to verify through the engine afterwards (domain NULL: nothing) */
    const char *verify_domain;
    const char *verify_path;
    bool verify_gone;
} ptc_change;

typedef enum ptc_apply_status {
    PTC_APPLY_DONE,      /* applied and committed; *revision set */
    PTC_APPLY_UNCHANGED, /* build() returned the current state */
    PTC_APPLY_ANSWERED,  /* build() or a failed step answered the call already */
} ptc_apply_status;

/* Runs DESIGN §3 steps 3-8 for chg: build the next state, let the engine
 * apply it (backup, write, test, reload, verify, rollback), commit it as a
 * revision, publish it, audit it.  On success *report is the engine's
 * report (new reference) and *next the committed state (retained); when
 * nothing changes, *report is NULL and *next the state build() compared
 * with (retained: answer from it, not from a state read again, which
 * another change may have altered meanwhile).  On an engine or store
 * failure the call is answered with the error.  Blocks. */
ptc_apply_status ptc_api_apply(ptc_call *c, ptc_change *chg, json_t **report, const ptc_state **next);

/* Nodes sharing one store: when the store's generation moved past the
 * one api->state reflects (another node committed), reads the state
 * again and applies what differs to the engine, then publishes it (no
 * verify, no commit, no audit: the writing node did those).  Also run at
 * the start of every ptc_api_apply.  Returns 0 or -errno.  Blocks. */
int ptc_api_follow(ptc_api *api);
/* The bookkeeping of writes to the store made under the apply lock (a
 * change, a DNS record): begin looks at the generation and first follows
 * another node's change; end tells whether the generation moved by this
 * process's writes alone, and then api->state is still current (else the
 * next look reads the store again). */
typedef struct ptc_api_writes {
    int64_t gen0;
    uint64_t own0;
    bool known; /* gen0 could be read */
} ptc_api_writes;
void ptc_api_writes_begin(ptc_api *api, ptc_api_writes *w);
void ptc_api_writes_end(ptc_api *api, const ptc_api_writes *w);
/* The thread that calls ptc_api_follow every store_poll_interval_ms (none
 * when 0).  Returns 0 or -errno with the reason in err. */
int ptc_api_follow_start(ptc_api *api, char *err, size_t errlen);
/* Stops and frees it.  Blocks until a look in progress ends; NULL-safe. */
void ptc_api_follow_stop(ptc_api *api);

/* Health gating (DESIGN §2.1): when p->require_healthy, probes every
 * upstream's health path; answers 503 UPSTREAM_UNHEALTHY (with each
 * upstream's result in details) and returns false when none is healthy. */
bool ptc_api_gate(ptc_call *c, const ptc_proxy *p);

/* ---- health checks (checks.c) ---- */

/* Starts the active health checks on state (their saved verdicts loaded
 * from the store), the thread that records transitions (audit entries,
 * the saved verdicts) and, for engines that need it, applies verdicts at
 * most every 2 s.  Returns 0 or -errno with the reason in err. */
int ptc_api_checks_start(ptc_api *api, const ptc_state *state, char *err, size_t errlen);
/* Stops both threads, saving the verdicts.  Blocks; NULL checks ignored. */
void ptc_api_checks_stop(ptc_api *api);
/* Makes the checks follow a newly published state (never blocks long). */
void ptc_api_checks_follow(ptc_api *api, const ptc_state *next);
/* The health checks' members of a proxy's API form: last_health_status,
 * last_health_checked_at and upstreams[i].health. */
ptc_proxy_api_extras ptc_api_checks_extras(ptc_api *api);
/* The build step of a change that puts spec (PUT /proxies/{name},
 * POST /add-record): cur with spec as revision rev, keeping its creation
 * time; cur itself (retained) when the stored spec is the same; NULL
 * after answering 409 ROUTE_CONFLICT when another proxy holds the route.
 * *created tells whether the name is new.  Runs under the apply lock. */
const ptc_state *ptc_api_state_with_proxy(ptc_call *c, const ptc_state *cur, int64_t rev,
                                          const ptc_proxy *spec, bool *created);
/* A proxy's API form with what the state and the health checks know:
 * appended to b as text, or as a new JSON object. */
void ptc_api_write_proxy(ptc_buf *b, ptc_api *api, const ptc_state *s, const ptc_proxy *p);
json_t *ptc_api_proxy_json(ptc_api *api, const ptc_state *s, const ptc_proxy *p);
/* Appends the health metrics of state's upstreams (Prometheus text). */
void ptc_api_checks_metrics(ptc_api *api, const ptc_state *s, ptc_buf *out);

/* ---- registry sync (sync.c) ---- */

/* Starts the thread of registry_sync_interval (none when 0).  Returns 0
 * or -errno with the reason in err. */
int ptc_api_sync_start(ptc_api *api, char *err, size_t errlen);
/* Stops it and cancels every fetch in progress (the periodic one and API
 * calls'), but keeps what those calls use: free it with
 * ptc_api_sync_free() once no API call runs any more.  Blocks briefly. */
void ptc_api_sync_stop(ptc_api *api);
void ptc_api_sync_free(ptc_api *api);
/* Appends the sync metrics (Prometheus text). */
void ptc_api_sync_metrics(ptc_api *api, ptc_buf *out);
/* ---- DNS (dns.c) ---- */

/* Reads dns_zone, dns_proxy_ip and dns_listen, starts the responder when
 * dns_listen is set and publishes the first zone.  Returns 0 or -EINVAL
 * with the reason in err.  Blocks briefly. */
int ptc_api_dns_start(ptc_api *api, char *err, size_t errlen);
void ptc_api_dns_stop(ptc_api *api);
/* Rebuilds the zone from the store's records and the committed state and
 * publishes it; called after every change to either. */
void ptc_api_dns_refresh(ptc_api *api);
/* The "dns" check of the health endpoint (zone, serial, names, whether
 * the responder listens), or NULL when there is no zone. */
json_t *ptc_api_dns_status(ptc_api *api);

/* ---- handlers (one file per resource) ---- */
void ptc_api_proxies_list(ptc_call *c);
void ptc_api_proxy_get(ptc_call *c);
void ptc_api_proxy_put(ptc_call *c);
void ptc_api_proxy_delete(ptc_call *c);
void ptc_api_health(ptc_call *c);
void ptc_api_audit_list(ptc_call *c);
void ptc_api_revisions_list(ptc_call *c);
void ptc_api_revision_restore(ptc_call *c);
void ptc_api_certs_list(ptc_call *c);
void ptc_api_cert_get(ptc_call *c);
void ptc_api_cert_put(ptc_call *c);
void ptc_api_cert_delete(ptc_call *c);
void ptc_api_proxy_ssl(ptc_call *c);
void ptc_api_cert_renew(ptc_call *c);

/* ---- certificates from an ACME CA (ssl.c) ---- */

/* Starts the renewal scheduler (after the engine serves the state).
 * Returns 0 or -errno. */
int ptc_api_ssl_start(ptc_api *api);
/* Makes issuances in progress give up soon (at shutdown, before the
 * calls in flight are waited for). */
void ptc_api_ssl_cancel(ptc_api *api);
/* Stops the scheduler and frees what ssl.c keeps.  NULL-safe. */
void ptc_api_ssl_stop(ptc_api *api);
/* The desired state changed: the scheduler looks at it again. */
void ptc_api_ssl_changed(ptc_api *api);
/* The health endpoint's view of renewals (new reference); *failing is set
 * when a renewal is failing. */
json_t *ptc_api_ssl_status(ptc_api *api, bool *failing);
void ptc_api_registry_sync(ptc_call *c);
void ptc_api_metrics(ptc_call *c);
void ptc_api_ports_list(ptc_call *c);
void ptc_api_ports_allocate(ptc_call *c);
void ptc_api_ports_get(ptc_call *c);
void ptc_api_ports_release(ptc_call *c);
void ptc_api_dns_records_list(ptc_call *c);
void ptc_api_dns_record_get(ptc_call *c);
void ptc_api_dns_record_put(ptc_call *c);
void ptc_api_dns_record_delete(ptc_call *c);
void ptc_api_dns_zone(ptc_call *c);
void ptc_api_add_record(ptc_call *c);
/* GET / and GET /ui/{file}: the web page's files (ui.c). */
void ptc_api_ui(ptc_call *c);

#endif
