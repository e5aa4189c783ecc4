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
    int64_t ts; /* ms since the epoch */
    const char *correlation_id;
    const char *actor;        /* token name or "local" */
    const char *action;       /* "proxy.put", "proxy.delete", "revision.restore", ... */
    const char *droplet_name; /* may be NULL */
    const char *domain;       /* may be NULL */
    const char *result;       /* "success" | "failure" | "unchanged" */
    const char *error_code;   /* NULL on success */
    const char *detail;       /* free text or JSON, may be NULL */
    const char *node;         /* the portico that wrote it (set by the store; NULL in rows older than
                                 schema 4) */
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
    /* On commit only: the audit row of the attempt (ptc_store_audit_begin)
     * that the same transaction finishes as a success with audit_detail,
     * so that the change and its record reach the disk together; 0: none. */
    int64_t audit_id;
    const char *audit_detail;
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
 * reason in err.  The node id (ptc_store_node) is read from
 * {state_dir}/node_id, which is made the first time. */
ptc_store *ptc_store_open(const char *spec, const char *state_dir, char *err, size_t errlen);
/* This portico's name in a store other nodes may share: 32 hex digits,
 * kept in its state_dir.  Every audit row it writes carries it. */
const char *ptc_store_node(const ptc_store *st);
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
/* Appends n entries in one transaction (a storm of health transitions
 * costs one disk sync, not n). */
int ptc_store_audit_append_many(ptc_store *st, const ptc_audit_entry *e, size_t n);
/* An attempt that may not finish (the process can die half-way): begin
 * writes e with result "in_progress" and sets *id; finish sets its result,
 * error code and detail.  At start, ptc_store_audit_interrupted marks
 * "interrupted" every row this node (or a portico before schema 4) left in
 * progress, and counts them in *n; another node's attempt on a shared store
 * may still be running, and is left alone. */
int ptc_store_audit_begin(ptc_store *st, const ptc_audit_entry *e, int64_t *id);
int ptc_store_audit_finish(ptc_store *st, int64_t id, const char *result, const char *error_code,
                           const char *detail);
int ptc_store_audit_interrupted(ptc_store *st, int64_t *n);
/* At most limit entries, oldest first: those with ts >= since (ms), or
 * with since < 0 the newest ones (what `portico audit --limit=20` wants). */
int ptc_store_audit_list(ptc_store *st, int64_t since, size_t limit, ptc_audit_list *out);
void ptc_audit_list_free(ptc_audit_list *l);

/* Small named values (*value is a new string). */
int ptc_store_kv_get(ptc_store *st, const char *key, char **value);
int ptc_store_kv_set(ptc_store *st, const char *key, const char *value);

/* ---- port allocations (DESIGN §2.2, §9) ---- */

/* One row of the port registry.  Rows are never deleted: a release turns
 * status to "released" and keeps the row for the record. */
typedef struct ptc_port_alloc {
    int64_t id;
    unsigned port;     /* the external port handed out */
    const char *owner; /* who asked (a module, a droplet) */
    unsigned internal_port;
    const char *status;   /* "active" | "released" */
    int64_t allocated_at; /* ms since the epoch */
    int64_t released_at;  /* 0 while active */
} ptc_port_alloc;

typedef struct ptc_port_list {
    ptc_port_alloc *items;
    size_t n;
} ptc_port_list;

/* Rows ordered by port then id: only active ones unless with_released;
 * only owner's when owner is not NULL. */
int ptc_store_ports_list(ptc_store *st, const char *owner, bool with_released, ptc_port_list *out);
void ptc_port_list_free(ptc_port_list *l);
/* Inserts an active allocation.  -EEXIST when port is already active
 * (for anyone) or owner already holds an active port for internal_port:
 * the store's unique indexes decide, so two nodes sharing the store never
 * both succeed. */
int ptc_store_port_insert(ptc_store *st, unsigned port, const char *owner, unsigned internal_port,
                          int64_t ts);
/* Marks every active allocation of owner released at ts; *n gets how many.
 * -ENOENT when owner holds none. */
int ptc_store_ports_release(ptc_store *st, const char *owner, int64_t ts, size_t *n);

/* ---- DNS records (DESIGN §6, §9) ---- */

/* A record managed through the API: one value per (name, type). */
typedef struct ptc_dns_record {
    const char *name;  /* fully qualified, lower-case, without the trailing dot */
    const char *type;  /* "A" | "AAAA" */
    const char *value; /* the address, as text */
    unsigned ttl;
    int64_t created_at;
    int64_t updated_at;
} ptc_dns_record;

typedef struct ptc_dns_record_list {
    ptc_dns_record *items;
    size_t n;
} ptc_dns_record_list;

/* Every record, ordered by name then type. */
int ptc_store_dns_list(ptc_store *st, ptc_dns_record_list *out);
void ptc_dns_record_list_free(ptc_dns_record_list *l);
/* Inserts or replaces the record of (r->name, r->type); a replacement
 * keeps the first created_at. */
int ptc_store_dns_put(ptc_store *st, const ptc_dns_record *r);
/* Deletes the record of (name, type), or every record of name when type
 * is NULL.  -ENOENT when nothing matched. */
int ptc_store_dns_delete(ptc_store *st, const char *name, const char *type);

/* The schema version the store is at (for the health endpoint and tests). */
int ptc_store_schema_version(ptc_store *st);

/* ---- nodes sharing one store ---- */

/* The desired state's write counter: every commit, certificate put or
 * delete and DNS record put or delete adds one to it, in the same
 * transaction, whichever portico node wrote.  A node whose state was read at generation g is current while
 * the store still says g. */
int ptc_store_generation(ptc_store *st, int64_t *gen);
/* How many of those writes this process made (succeeded) so far: a node
 * that saw the generation go from g0 to g1 while it made exactly g1 - g0
 * of them knows nobody else wrote in between.  Never blocks. */
uint64_t ptc_store_own_writes(ptc_store *st);

#endif
