/* The store: the single source of truth for the desired state (proxies,
 * certificates, revisions), the audit trail, port allocations, DNS records
 * and small named values (the ACME account key).  One interface, two
 * backends: SQLite (the default, a file in the state folder) and
 * PostgreSQL (several portico nodes sharing one state).  No SQL leaves
 * this folder.
 *
 * Every function is safe to call from several threads (calls are
 * serialised inside), blocks on disk or network I/O, and returns 0 or a
 * negative errno: -ENOENT for a missing row, -EEXIST for a uniqueness
 * conflict, -EIO for a backend failure (logged with the backend's
 * message). */
#ifndef PTC_STORE_H
#define PTC_STORE_H

#include "model/state.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ptc_store ptc_store;

/* One entry of the audit trail: every change attempt, good or bad. */
typedef struct ptc_audit_entry {
    int64_t id;
    int64_t ts;                 /* ms since the epoch */
    const char *correlation_id;
    const char *actor;          /* token name or "local" */
    const char *action;         /* "proxy.put", "proxy.delete", "revision.restore", ... */
    const char *droplet_name;   /* may be NULL */
    const char *domain;         /* may be NULL */
    const char *result;         /* "success" | "failure" | "unchanged" */
    const char *error_code;     /* NULL on success */
    const char *detail;         /* free text or JSON, may be NULL */
} ptc_audit_entry;

/* A committed revision of the desired state. */
typedef struct ptc_revision {
    int64_t number;
    int64_t ts;
    const char *actor;
    const char *action;
    const char *correlation_id;
    const char *summary; /* e.g. "put orchestrator" */
    int64_t n_proxies;   /* proxies in the state after it */
} ptc_revision;

/* A list of audit entries or revisions; strings are owned by the list. */
typedef struct ptc_audit_list {
    ptc_audit_entry *items;
    size_t n;
} ptc_audit_list;

typedef struct ptc_revision_list {
    ptc_revision *items;
    size_t n;
} ptc_revision_list;

/* Opens (creating when needed) the store named by spec: "" means
 * {state_dir}/portico.db, "sqlite:PATH" a SQLite file, "postgres://..." a
 * PostgreSQL database.  Runs the forward migrations.  Returns NULL with the
 * reason in err. */
ptc_store *ptc_store_open(const char *spec, const char *state_dir, char *err, size_t errlen);
void ptc_store_close(ptc_store *st);

/* The current desired state (proxies, certificates, revision).  *out is a
 * new state with one reference. */
int ptc_store_load_state(ptc_store *st, ptc_state **out);

/* The number the next commit will use (the newest revision + 1). */
int ptc_store_next_revision(ptc_store *st, int64_t *number);

/* Commits the proxies of next as revision meta->number, in one
 * transaction: proxies of next that are not the same object in prev are
 * written, proxies of prev missing from next are deleted, and each of
 * those changes is recorded as a version under that revision.  -EEXIST
 * when the number is taken (another writer got there first). */
int ptc_store_commit(ptc_store *st, const ptc_state *prev, const ptc_state *next, const ptc_revision *meta);

/* The proxies as they were right after revision n (for restoring it).
 * -ENOENT when there is no such revision. */
int ptc_store_state_at(ptc_store *st, int64_t n, ptc_state **out);
/* Newest first, at most limit. */
int ptc_store_revisions(ptc_store *st, size_t limit, ptc_revision_list *out);
void ptc_revision_list_free(ptc_revision_list *l);

/* Certificates: put replaces the domain's certificate. */
int ptc_store_cert_put(ptc_store *st, const ptc_cert *c);
int ptc_store_cert_delete(ptc_store *st, const char *domain);

int ptc_store_audit_append(ptc_store *st, const ptc_audit_entry *e);
/* Entries with ts >= since (ms), oldest first, at most limit. */
int ptc_store_audit_list(ptc_store *st, int64_t since, size_t limit, ptc_audit_list *out);
void ptc_audit_list_free(ptc_audit_list *l);

/* Small named values (*value is a new string). */
int ptc_store_kv_get(ptc_store *st, const char *key, char **value);
int ptc_store_kv_set(ptc_store *st, const char *key, const char *value);

/* The schema version the store is at (for the health endpoint and tests). */
int ptc_store_schema_version(ptc_store *st);

#endif
