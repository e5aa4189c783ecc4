/* What a store backend provides: the functions of store.h, one table per
 * backend.  Only store.c and the backends include this. */
#ifndef PTC_STORE_IMPL_H
#define PTC_STORE_IMPL_H

#include "store/store.h"

typedef struct ptc_store_ops {
    void (*close)(void *b);
    int (*load_state)(void *b, ptc_state **out);
    int (*next_revision)(void *b, int64_t *number);
    int (*commit)(void *b, const ptc_state *prev, const ptc_state *next, const ptc_revision *meta);
    int (*state_at)(void *b, int64_t n, ptc_state **out);
    int (*revisions)(void *b, size_t limit, ptc_revision_list *out);
    int (*cert_put)(void *b, const ptc_cert *c);
    int (*cert_delete)(void *b, const char *domain);
    int (*audit_append)(void *b, const ptc_audit_entry *e);
    int (*audit_append_many)(void *b, const ptc_audit_entry *e, size_t n);
    int (*audit_begin)(void *b, const ptc_audit_entry *e, int64_t *id);
    int (*audit_finish)(void *b, int64_t id, const char *result, const char *error_code, const char *detail);
    /* Audit rows are written with e->node (store.c sets it); interrupted
     * marks those of node and those without one. */
    int (*audit_interrupted)(void *b, const char *node, int64_t *n);
    int (*audit_list)(void *b, int64_t since, size_t limit, ptc_audit_list *out);
    int (*kv_get)(void *b, const char *key, char **value);
    int (*kv_set)(void *b, const char *key, const char *value);
    int (*schema_version)(void *b);
    /* The desired state's write counter (see ptc_store_generation): commit,
     * cert_put, cert_delete, dns_put and dns_delete each add one to it in
     * their own transaction, on success only. */
    int (*generation)(void *b, int64_t *gen);
    int (*ports_list)(void *b, const char *owner, bool with_released, ptc_port_list *out);
    int (*port_insert)(void *b, unsigned port, const char *owner, unsigned internal_port, int64_t ts);
    int (*ports_release)(void *b, const char *owner, int64_t ts, size_t *n);
    int (*dns_list)(void *b, ptc_dns_record_list *out);
    int (*dns_put)(void *b, const ptc_dns_record *r);
    int (*dns_delete)(void *b, const char *name, const char *type);
} ptc_store_ops;

/* What a commit writes, for the backends: calls write(ctx, name, p) for
 * each proxy that differs between the name-sorted states prev and next (p
 * NULL: name is deleted), all deletes first, so that a proxy moved onto a
 * freed (domain, prefix) does not trip the uniqueness constraint.  Returns
 * 0, or the first non-zero code write returned (and stops there). */
typedef int (*ptc_store_change_fn)(void *ctx, const char *name, const ptc_proxy *p);
int ptc_store_walk_changes(const ptc_state *prev, const ptc_state *next, ptc_store_change_fn write,
                           void *ctx);

/* Backend constructors: NULL with the reason in err. */
void *ptc_store_sqlite_open(const char *path, char *err, size_t errlen);
extern const ptc_store_ops ptc_store_sqlite_ops;
/* conninfo: a postgres:// or postgresql:// URI (libpq's). */
void *ptc_store_pg_open(const char *conninfo, char *err, size_t errlen);
extern const ptc_store_ops ptc_store_pg_ops;

#endif
