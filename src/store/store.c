/* The store front: picks the backend from the spec and serialises calls
 * (see store.h). */
#include "store/store.h"

#include "core/mem.h"
#include "core/util.h"
#include "store/store_impl.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ptc_store {
    const ptc_store_ops *ops;
    void *backend;
    pthread_mutex_t lock;            /* one call at a time: backends keep one connection */
    atomic_uint_fast64_t own_writes; /* successful writes that move the generation */
    char node[33];                   /* ptc_store_node */
};

/* Reads {state_dir}/node_id into node (33 bytes), making it the first
 * time.  Returns 0 or -errno. */
static int node_id(const char *state_dir, char *node)
{
    char *path = ptc_path_join(state_dir, "node_id"), *text = NULL;
    size_t len = 0;
    int rc = ptc_file_read(path, 64, &text, &len);
    if (rc == 0) {
        /* Anything but what was written (hand edits included) is replaced. */
        bool ok = len >= 32;
        for (size_t i = 0; ok && i < 32; i++)
            ok = (text[i] >= '0' && text[i] <= '9') || (text[i] >= 'a' && text[i] <= 'f');
        if (ok && (len == 32 || (len == 33 && text[32] == '\n'))) {
            memcpy(node, text, 32);
            node[32] = '\0';
            goto out;
        }
    } else if (rc != -ENOENT) {
        goto out;
    }
    ptc_random_hex(node, 16);
    node[32] = '\n';
    if ((rc = ptc_mkdir_p(state_dir, 0700)) == 0)
        rc = ptc_file_write_atomic(path, node, 33, 0600);
    node[32] = '\0';
out:
    free(text);
    free(path);
    return rc;
}

ptc_store *ptc_store_open(const char *spec, const char *state_dir, char *err, size_t errlen)
{
    ptc_store *st = NULL;
    char *path = NULL;
    void *b = NULL;
    const ptc_store_ops *ops = &ptc_store_sqlite_ops;

    if (spec[0] == '\0') {
        int rc = ptc_mkdir_p(state_dir, 0700);
        if (rc != 0) {
            snprintf(err, errlen, "state_dir %s: %s", state_dir, strerror(-rc));
            goto out;
        }
        path = ptc_path_join(state_dir, "portico.db");
    } else if (ptc_str_has_prefix(spec, "sqlite:")) {
        path = ptc_xstrdup(spec + 7);
    } else if (ptc_str_has_prefix(spec, "postgres://") || ptc_str_has_prefix(spec, "postgresql://")) {
        ops = &ptc_store_pg_ops;
    } else {
        snprintf(err, errlen, "store: expected sqlite:PATH or postgres://..., got an unknown scheme");
        goto out;
    }
    b = path ? ptc_store_sqlite_open(path, err, errlen) : ptc_store_pg_open(spec, err, errlen);
    if (b == NULL)
        goto out;
    char node[33];
    int rc = node_id(state_dir, node);
    if (rc != 0) {
        snprintf(err, errlen, "state_dir %s: cannot keep node_id: %s", state_dir, strerror(-rc));
        ops->close(b);
        goto out;
    }
    st = ptc_xcalloc(1, sizeof(*st));
    memcpy(st->node, node, sizeof(node));
    st->ops = ops;
    st->backend = b;
    pthread_mutex_init(&st->lock, NULL);
out:
    free(path);
    return st;
}

void ptc_store_close(ptc_store *st)
{
    if (st == NULL)
        return;
    st->ops->close(st->backend);
    pthread_mutex_destroy(&st->lock);
    free(st);
}

/* Runs one backend call under the store's lock. */
#define LOCKED(st, call)                                                                                     \
    do {                                                                                                     \
        pthread_mutex_lock(&(st)->lock);                                                                     \
        int rc_ = (call);                                                                                    \
        pthread_mutex_unlock(&(st)->lock);                                                                   \
        return rc_;                                                                                          \
    } while (0)

int ptc_store_load_state(ptc_store *st, ptc_state **out)
{
    LOCKED(st, st->ops->load_state(st->backend, out));
}

int ptc_store_next_revision(ptc_store *st, int64_t *number)
{
    LOCKED(st, st->ops->next_revision(st->backend, number));
}

/* Runs one backend call that writes the desired state: a success counts
 * in own_writes. */
#define LOCKED_WRITE(st, call)                                                                               \
    do {                                                                                                     \
        pthread_mutex_lock(&(st)->lock);                                                                     \
        int rc_ = (call);                                                                                    \
        if (rc_ == 0)                                                                                        \
            atomic_fetch_add(&(st)->own_writes, 1);                                                          \
        pthread_mutex_unlock(&(st)->lock);                                                                   \
        return rc_;                                                                                          \
    } while (0)

int ptc_store_commit(ptc_store *st, const ptc_state *prev, const ptc_state *next, const ptc_revision *meta)
{
    LOCKED_WRITE(st, st->ops->commit(st->backend, prev, next, meta));
}

int ptc_store_state_at(ptc_store *st, int64_t n, ptc_state **out)
{
    LOCKED(st, st->ops->state_at(st->backend, n, out));
}

int ptc_store_revisions(ptc_store *st, size_t limit, ptc_revision_list *out)
{
    LOCKED(st, st->ops->revisions(st->backend, limit, out));
}

int ptc_store_cert_put(ptc_store *st, const ptc_cert *c)
{
    LOCKED_WRITE(st, st->ops->cert_put(st->backend, c));
}

int ptc_store_cert_delete(ptc_store *st, const char *domain)
{
    LOCKED_WRITE(st, st->ops->cert_delete(st->backend, domain));
}

const char *ptc_store_node(const ptc_store *st)
{
    return st->node;
}

int ptc_store_audit_append(ptc_store *st, const ptc_audit_entry *e)
{
    ptc_audit_entry row = *e;
    row.node = st->node;
    LOCKED(st, st->ops->audit_append(st->backend, &row));
}

int ptc_store_audit_append_many(ptc_store *st, const ptc_audit_entry *e, size_t n)
{
    ptc_audit_entry *rows = ptc_xmalloc((n ? n : 1) * sizeof(*rows));
    for (size_t i = 0; i < n; i++) {
        rows[i] = e[i];
        rows[i].node = st->node;
    }
    pthread_mutex_lock(&st->lock);
    int rc = st->ops->audit_append_many(st->backend, rows, n);
    pthread_mutex_unlock(&st->lock);
    free(rows);
    return rc;
}

int ptc_store_audit_begin(ptc_store *st, const ptc_audit_entry *e, int64_t *id)
{
    ptc_audit_entry row = *e;
    row.node = st->node;
    LOCKED(st, st->ops->audit_begin(st->backend, &row, id));
}

int ptc_store_audit_finish(ptc_store *st, int64_t id, const char *result, const char *error_code,
                           const char *detail)
{
    LOCKED(st, st->ops->audit_finish(st->backend, id, result, error_code, detail));
}

int ptc_store_audit_interrupted(ptc_store *st, int64_t *n)
{
    LOCKED(st, st->ops->audit_interrupted(st->backend, st->node, n));
}

int ptc_store_audit_list(ptc_store *st, int64_t since, size_t limit, ptc_audit_list *out)
{
    LOCKED(st, st->ops->audit_list(st->backend, since, limit, out));
}

int ptc_store_kv_get(ptc_store *st, const char *key, char **value)
{
    LOCKED(st, st->ops->kv_get(st->backend, key, value));
}

int ptc_store_kv_set(ptc_store *st, const char *key, const char *value)
{
    LOCKED(st, st->ops->kv_set(st->backend, key, value));
}

int ptc_store_schema_version(ptc_store *st)
{
    LOCKED(st, st->ops->schema_version(st->backend));
}

int ptc_store_generation(ptc_store *st, int64_t *gen)
{
    LOCKED(st, st->ops->generation(st->backend, gen));
}

uint64_t ptc_store_own_writes(ptc_store *st)
{
    return atomic_load(&st->own_writes);
}

int ptc_store_ports_list(ptc_store *st, const char *owner, bool with_released, ptc_port_list *out)
{
    LOCKED(st, st->ops->ports_list(st->backend, owner, with_released, out));
}

int ptc_store_port_insert(ptc_store *st, unsigned port, const char *owner, unsigned internal_port, int64_t ts)
{
    LOCKED(st, st->ops->port_insert(st->backend, port, owner, internal_port, ts));
}

int ptc_store_ports_release(ptc_store *st, const char *owner, int64_t ts, size_t *n)
{
    LOCKED(st, st->ops->ports_release(st->backend, owner, ts, n));
}

int ptc_store_dns_list(ptc_store *st, ptc_dns_record_list *out)
{
    LOCKED(st, st->ops->dns_list(st->backend, out));
}

int ptc_store_dns_put(ptc_store *st, const ptc_dns_record *r)
{
    LOCKED_WRITE(st, st->ops->dns_put(st->backend, r));
}

int ptc_store_dns_delete(ptc_store *st, const char *name, const char *type)
{
    LOCKED_WRITE(st, st->ops->dns_delete(st->backend, name, type));
}

void ptc_port_list_free(ptc_port_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->items[i].owner);
        free((char *)l->items[i].status);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void ptc_dns_record_list_free(ptc_dns_record_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->items[i].name);
        free((char *)l->items[i].type);
        free((char *)l->items[i].value);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void ptc_audit_list_free(ptc_audit_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        ptc_audit_entry *e = &l->items[i];
        free((char *)e->correlation_id);
        free((char *)e->actor);
        free((char *)e->action);
        free((char *)e->droplet_name);
        free((char *)e->domain);
        free((char *)e->result);
        free((char *)e->error_code);
        free((char *)e->detail);
        free((char *)e->node);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

void ptc_revision_list_free(ptc_revision_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        ptc_revision *r = &l->items[i];
        free((char *)r->actor);
        free((char *)r->action);
        free((char *)r->correlation_id);
        free((char *)r->summary);
    }
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int ptc_store_walk_changes(const ptc_state *prev, const ptc_state *next, ptc_store_change_fn write, void *ctx)
{
    int rc = 0;
    /* Two merge walks over both name-sorted lists.  Unchanged proxies are
     * the very same objects in both states: comparing pointers first skips
     * the string compare for all of them. */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (size_t i = 0, j = 0; rc == 0 && (i < prev->n_proxies || j < next->n_proxies);) {
            const ptc_proxy *o = i < prev->n_proxies ? prev->proxies[i] : NULL;
            const ptc_proxy *n = j < next->n_proxies ? next->proxies[j] : NULL;
            int cmp = o == n ? 0 : o == NULL ? 1 : n == NULL ? -1 : strcmp(o->name, n->name);
            if (pass == 0 && cmp < 0)
                rc = write(ctx, o->name, NULL);
            else if (pass == 1 && (cmp > 0 || (cmp == 0 && o != n)))
                rc = write(ctx, n->name, n);
            i += cmp <= 0;
            j += cmp >= 0;
        }
    }
    return rc;
}
