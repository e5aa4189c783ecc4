/* The SQLite backend of the store: one file (0600) in WAL mode with a busy
 * timeout, the schema versioned by PRAGMA user_version and brought forward
 * by the migrations below, each in its own transaction. */
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Forward migrations: entry i brings the schema from version i to i + 1.
 * Never edit a shipped entry; append a new one. */
static const char *const migrations[] = {
    /* 1: proxies, their versions per revision, certificates, audit, kv */
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE proxies ("
    "  name TEXT PRIMARY KEY, domain TEXT NOT NULL, path_prefix TEXT NOT NULL,"
    "  spec TEXT NOT NULL, revision INTEGER NOT NULL, UNIQUE (domain, path_prefix));"
    "CREATE TABLE revisions ("
    "  number INTEGER PRIMARY KEY, ts INTEGER NOT NULL, actor TEXT, action TEXT,"
    "  correlation_id TEXT, summary TEXT, n_proxies INTEGER NOT NULL);"
    "CREATE TABLE proxy_versions ("
    "  name TEXT NOT NULL, revision INTEGER NOT NULL, spec TEXT," /* spec NULL: deleted */
    "  PRIMARY KEY (name, revision));"
    "CREATE INDEX proxy_versions_revision ON proxy_versions (revision);"
    "CREATE TABLE certificates (domain TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at INTEGER NOT NULL);"
    "CREATE TABLE audit ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, ts INTEGER NOT NULL, correlation_id TEXT, actor TEXT,"
    "  action TEXT NOT NULL, droplet_name TEXT, domain TEXT, result TEXT NOT NULL, error_code TEXT,"
    "  detail TEXT);"
    "CREATE INDEX audit_ts ON audit (ts);",
    /* 2: the port registry and DNS records.  The partial unique indexes
     * make an allocation atomic across processes sharing the file: an
     * active port, and an owner's active internal port, exist once. */
    "CREATE TABLE ports ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT, port INTEGER NOT NULL, owner TEXT NOT NULL,"
    "  internal_port INTEGER NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('active', 'released')),"
    "  allocated_at INTEGER NOT NULL, released_at INTEGER);"
    "CREATE UNIQUE INDEX ports_active_port ON ports (port) WHERE status = 'active';"
    "CREATE UNIQUE INDEX ports_active_owner ON ports (owner, internal_port) WHERE status = 'active';"
    "CREATE INDEX ports_owner ON ports (owner);"
    "CREATE TABLE dns_records ("
    "  name TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL, ttl INTEGER NOT NULL,"
    "  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (name, type));",
    /* 3: the desired state's write counter (ptc_store_generation), one row
     * that every commit, certificate write and DNS record write adds one to. */
    ("CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);"
     "INSERT INTO generation (id, value) VALUES (1, 0);"),
    /* 4: which portico wrote an audit row (nodes may share the store). */
    "ALTER TABLE audit ADD COLUMN node TEXT;",
};

/* The statements of a change's hot path, prepared once (parsing them on
 * every change cost more than running them). */
#define KEPT_MAX 12

typedef struct sqlite_store {
    sqlite3 *db;
    char *path;
    struct {
        const char *sql;
        sqlite3_stmt *st;
    } kept[KEPT_MAX];
    size_t n_kept;
} sqlite_store;

static int db_error(sqlite_store *s, const char *what)
{
    ptc_log_error("store error", PTC_LS("op", what), PTC_LS("error", sqlite3_errmsg(s->db)),
                  PTC_LS("path", s->path));
    return -EIO;
}

static int exec(sqlite_store *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        ptc_log_error("store error", PTC_LS("op", "exec"), PTC_LS("error", msg ? msg : sqlite3_errstr(rc)));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

static int prepare(sqlite_store *s, const char *sql, sqlite3_stmt **st)
{
    if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) != SQLITE_OK)
        return db_error(s, "prepare");
    return 0;
}

/* A statement prepared once for the life of the store, found by the
 * address of its SQL text (a literal).  Give it back with put_back. */
static int prepare_kept(sqlite_store *s, const char *sql, sqlite3_stmt **st)
{
    for (size_t i = 0; i < s->n_kept; i++) {
        if (s->kept[i].sql == sql) {
            *st = s->kept[i].st;
            return 0;
        }
    }
    int rc = prepare(s, sql, st);
    if (rc == 0 && s->n_kept < KEPT_MAX) {
        s->kept[s->n_kept].sql = sql;
        s->kept[s->n_kept++].st = *st;
    }
    return rc;
}

/* Resets a statement of prepare_kept for its next use (NULL is fine). */
static void put_back(sqlite_store *s, sqlite3_stmt *st)
{
    if (st == NULL)
        return;
    for (size_t i = 0; i < s->n_kept; i++) {
        if (s->kept[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            return;
        }
    }
    sqlite3_finalize(st);
}

/* Adds one to the generation, inside the caller's transaction. */
static int bump_generation(sqlite_store *s)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare_kept(s, "UPDATE generation SET value = value + 1 WHERE id = 1", &st);
    if (rc == 0 && sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, "bump generation");
    put_back(s, st);
    return rc;
}

/* Ends a write begun with BEGIN IMMEDIATE: on success (rc 0) the
 * generation moves and the transaction commits, else it rolls back.
 * Returns rc, or the failure of the bump or commit. */
static int end_write(sqlite_store *s, int rc)
{
    if (rc == 0 && (rc = bump_generation(s)) == 0)
        rc = exec(s, "COMMIT");
    if (rc != 0)
        exec(s, "ROLLBACK");
    return rc;
}

static int user_version(sqlite_store *s)
{
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (prepare(s, "PRAGMA user_version", &st) == 0 && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(sqlite_store *s, char *err, size_t errlen)
{
    int v = user_version(s);
    int target = (int)PTC_ARRAY_LEN(migrations);
    if (v < 0 || v > target) {
        snprintf(err, errlen, "store %s: schema version %d is newer than this portico knows (%d)", s->path, v,
                 target);
        return -EINVAL;
    }
    for (; v < target; v++) {
        char pragma[48];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d;", v + 1);
        if (exec(s, "BEGIN IMMEDIATE") != 0 || exec(s, migrations[v]) != 0 || exec(s, pragma) != 0 ||
            exec(s, "COMMIT") != 0) {
            exec(s, "ROLLBACK");
            snprintf(err, errlen, "store %s: migration to schema version %d failed", s->path, v + 1);
            return -EIO;
        }
        ptc_log_info("store migrated", PTC_LS("path", s->path), PTC_LI("schema_version", v + 1));
    }
    return 0;
}

static void sqlite_close(void *b)
{
    sqlite_store *s = b;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n_kept; i++)
        sqlite3_finalize(s->kept[i].st);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

void *ptc_store_sqlite_open(const char *path, char *err, size_t errlen)
{
    sqlite_store *s = ptc_xcalloc(1, sizeof(*s));
    int fd;

    s->path = ptc_xstrdup(path);
    /* Create the file 0600 ourselves: it holds private keys. */
    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "store %s: %s", path, strerror(errno));
        goto fail;
    }
    close(fd);
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        goto fail;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* A 512 KiB page cache, not the default 2 MiB: the store is read whole
     * once at start, then a change writes a few pages. */
    if (exec(s, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;"
                " PRAGMA cache_size = -128;") != 0) {
        snprintf(err, errlen, "store %s: cannot set WAL mode: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (migrate(s, err, errlen) != 0)
        goto fail;
    return s;
fail:
    sqlite_close(s);
    return NULL;
}

static const char *col_text(sqlite3_stmt *st, int i)
{
    return (const char *)sqlite3_column_text(st, i);
}

static char *col_dup(sqlite3_stmt *st, int i)
{
    const char *t = col_text(st, i);
    return t ? ptc_xstrdup(t) : NULL;
}

/* Parses the spec column of rows into proxies. */
static int read_proxies(sqlite_store *s, sqlite3_stmt *st, ptc_proxy ***out, size_t *n)
{
    size_t cap = 64, count = 0;
    ptc_proxy **list = ptc_xcalloc(cap, sizeof(*list));
    int rc = 0, step;

    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_error_t jerr;
        json_t *j = json_loads(col_text(st, 0), 0, &jerr);
        ptc_proxy *p = j ? ptc_proxy_from_stored(j) : NULL;
        json_decref(j);
        if (p == NULL) {
            ptc_log_error("store holds an invalid proxy; skipped", PTC_LS("path", s->path));
            continue;
        }
        if (count == cap) {
            cap *= 2;
            list = ptc_xrealloc(list, cap * sizeof(*list));
        }
        list[count++] = p;
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "read proxies");
        for (size_t i = 0; i < count; i++)
            ptc_proxy_release(list[i]);
        free(list);
        return rc;
    }
    *out = list;
    *n = count;
    return 0;
}

static int newest_revision(sqlite_store *s, int64_t *n)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare_kept(s, "SELECT COALESCE(MAX(number), 0) FROM revisions", &st);
    if (rc == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *n = sqlite3_column_int64(st, 0);
        else
            rc = db_error(s, "newest revision");
    }
    put_back(s, st);
    return rc;
}

static int sqlite_load_state(void *b, ptc_state **out)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    ptc_proxy **proxies = NULL;
    ptc_cert **certs = NULL;
    size_t np = 0, nc = 0, cap = 16;
    int rc, step;
    int64_t rev = 0;

    if ((rc = prepare(s, "SELECT spec FROM proxies ORDER BY name", &st)) != 0)
        goto out;
    if ((rc = read_proxies(s, st, &proxies, &np)) != 0)
        goto out;
    sqlite3_finalize(st);
    st = NULL;
    if ((rc = prepare(s, "SELECT data FROM certificates ORDER BY domain", &st)) != 0)
        goto out;
    certs = ptc_xcalloc(cap, sizeof(*certs));
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *j = json_loads(col_text(st, 0), 0, NULL);
        ptc_cert *c = j ? ptc_cert_from_stored(j) : NULL;
        json_decref(j);
        if (c == NULL) {
            ptc_log_error("store holds an invalid certificate; skipped", PTC_LS("path", s->path));
            continue;
        }
        if (nc == cap) {
            cap *= 2;
            certs = ptc_xrealloc(certs, cap * sizeof(*certs));
        }
        certs[nc++] = c;
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "read certificates");
        goto out;
    }
    if ((rc = newest_revision(s, &rev)) != 0)
        goto out;
    *out = ptc_state_from(proxies, np, certs, nc);
    (*out)->revision = rev;
    np = nc = 0;
    /* The rows live in the state now: give back the pages read to get
     * them (up to the cache's 512 KiB); changes bring back what they use. */
    sqlite3_db_release_memory(s->db);
out:
    for (size_t i = 0; i < np; i++)
        ptc_proxy_release(proxies[i]);
    for (size_t i = 0; i < nc; i++)
        ptc_cert_release(certs[i]);
    free(proxies);
    free(certs);
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_next_revision(void *b, int64_t *number)
{
    int64_t n = 0;
    int rc = newest_revision(b, &n);
    if (rc == 0)
        *number = n + 1;
    return rc;
}

static void bind_opt(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

static int finish_audit(sqlite_store *s, int64_t id, const char *result, const char *error_code,
                        const char *detail)
{
    sqlite3_stmt *st = NULL;
    int rc = prepare_kept(s, "UPDATE audit SET result = ?, error_code = ?, detail = ? WHERE id = ?", &st);
    if (rc == 0) {
        bind_opt(st, 1, result);
        bind_opt(st, 2, error_code);
        bind_opt(st, 3, detail);
        sqlite3_bind_int64(st, 4, id);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "finish audit");
    }
    put_back(s, st);
    return rc;
}

/* Writes one change (p NULL: name deleted) into proxies and proxy_versions. */
static int write_change(sqlite_store *s, sqlite3_stmt *up, sqlite3_stmt *del, sqlite3_stmt *ver,
                        const char *name, const ptc_proxy *p, int64_t rev)
{
    int rc = 0;
    char *spec = NULL;

    if (p) {
        json_t *j = ptc_proxy_to_stored(p);
        spec = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        json_decref(j);
        sqlite3_bind_text(up, 1, p->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 2, p->domain, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 3, p->path_prefix, -1, SQLITE_STATIC);
        sqlite3_bind_text(up, 4, spec, -1, SQLITE_STATIC);
        sqlite3_bind_int64(up, 5, rev);
        int step = sqlite3_step(up);
        if (step == SQLITE_CONSTRAINT)
            rc = -EEXIST;
        else if (step != SQLITE_DONE)
            rc = db_error(s, "write proxy");
        sqlite3_reset(up);
    } else {
        sqlite3_bind_text(del, 1, name, -1, SQLITE_STATIC);
        if (sqlite3_step(del) != SQLITE_DONE)
            rc = db_error(s, "delete proxy");
        sqlite3_reset(del);
    }
    if (rc == 0) {
        sqlite3_bind_text(ver, 1, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ver, 2, rev);
        if (spec)
            sqlite3_bind_text(ver, 3, spec, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(ver, 3);
        if (sqlite3_step(ver) != SQLITE_DONE)
            rc = db_error(s, "write version");
        sqlite3_reset(ver);
    }
    sqlite3_clear_bindings(up);
    sqlite3_clear_bindings(del);
    sqlite3_clear_bindings(ver);
    free(spec);
    return rc;
}

typedef struct change_ctx {
    sqlite_store *s;
    sqlite3_stmt *up, *del, *ver;
    int64_t rev;
} change_ctx;

static int write_one(void *ctx, const char *name, const ptc_proxy *p)
{
    change_ctx *cc = ctx;
    return write_change(cc->s, cc->up, cc->del, cc->ver, name, p, cc->rev);
}

static int sqlite_commit(void *b, const ptc_state *prev, const ptc_state *next, const ptc_revision *meta)
{
    sqlite_store *s = b;
    sqlite3_stmt *up = NULL, *del = NULL, *ver = NULL, *rev = NULL;
    int rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) != 0)
        goto out;
    if ((rc = prepare_kept(
             s,
             "INSERT INTO revisions (number, ts, actor, action, correlation_id, summary, n_proxies) "
             "VALUES (?, ?, ?, ?, ?, ?, ?)",
             &rev)) != 0)
        goto out;
    sqlite3_bind_int64(rev, 1, meta->number);
    sqlite3_bind_int64(rev, 2, meta->ts);
    sqlite3_bind_text(rev, 3, meta->actor, -1, SQLITE_STATIC);
    sqlite3_bind_text(rev, 4, meta->action, -1, SQLITE_STATIC);
    sqlite3_bind_text(rev, 5, meta->correlation_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(rev, 6, meta->summary, -1, SQLITE_STATIC);
    sqlite3_bind_int64(rev, 7, (int64_t)next->n_proxies);
    int step = sqlite3_step(rev);
    if (step == SQLITE_CONSTRAINT) {
        rc = -EEXIST;
        goto out;
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "write revision");
        goto out;
    }
    if ((rc = prepare_kept(s,
                           "INSERT OR REPLACE INTO proxies (name, domain, path_prefix, spec, revision) "
                           "VALUES (?, ?, ?, ?, ?)",
                           &up)) != 0 ||
        (rc = prepare_kept(s, "DELETE FROM proxies WHERE name = ?", &del)) != 0 ||
        (rc = prepare_kept(s, "INSERT INTO proxy_versions (name, revision, spec) VALUES (?, ?, ?)", &ver)) !=
            0)
        goto out;
    change_ctx cc = {s, up, del, ver, meta->number};
    if ((rc = ptc_store_walk_changes(prev, next, write_one, &cc)) != 0)
        goto out;
    if (meta->audit_id != 0 &&
        (rc = finish_audit(s, meta->audit_id, "success", NULL, meta->audit_detail)) != 0)
        goto out;
    if ((rc = bump_generation(s)) != 0)
        goto out;
    rc = exec(s, "COMMIT");
out:
    put_back(s, up);
    put_back(s, del);
    put_back(s, ver);
    put_back(s, rev);
    if (rc != 0)
        exec(s, "ROLLBACK");
    return rc;
}

static int sqlite_state_at(void *b, int64_t n, ptc_state **out)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    ptc_proxy **proxies = NULL;
    size_t np = 0;
    int rc;

    if ((rc = prepare(s, "SELECT 1 FROM revisions WHERE number = ?", &st)) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, n);
    if (sqlite3_step(st) != SQLITE_ROW) {
        rc = -ENOENT;
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    /* Each name's newest version at or before n; a NULL spec is a deletion. */
    if ((rc = prepare(s,
                      "SELECT v.spec FROM proxy_versions v"
                      " JOIN (SELECT name, MAX(revision) AS r FROM proxy_versions WHERE revision <= ?1"
                      "       GROUP BY name) last ON last.name = v.name AND last.r = v.revision"
                      " WHERE v.spec IS NOT NULL ORDER BY v.name",
                      &st)) != 0)
        goto out;
    sqlite3_bind_int64(st, 1, n);
    if ((rc = read_proxies(s, st, &proxies, &np)) != 0)
        goto out;
    *out = ptc_state_from(proxies, np, NULL, 0);
    (*out)->revision = n;
    free(proxies);
out:
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_revisions(void *b, size_t limit, ptc_revision_list *out)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc, step;
    size_t cap = 16;

    memset(out, 0, sizeof(*out));
    if ((rc = prepare(s,
                      "SELECT number, ts, actor, action, correlation_id, summary, n_proxies FROM revisions"
                      " ORDER BY number DESC LIMIT ?",
                      &st)) != 0)
        return rc;
    sqlite3_bind_int64(st, 1, (int64_t)limit);
    out->items = ptc_xcalloc(cap, sizeof(*out->items));
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap *= 2;
            out->items = ptc_xrealloc(out->items, cap * sizeof(*out->items));
        }
        ptc_revision *r = &out->items[out->n++];
        r->number = sqlite3_column_int64(st, 0);
        r->ts = sqlite3_column_int64(st, 1);
        r->actor = col_dup(st, 2);
        r->action = col_dup(st, 3);
        r->correlation_id = col_dup(st, 4);
        r->summary = col_dup(st, 5);
        r->n_proxies = sqlite3_column_int64(st, 6);
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "list revisions");
        ptc_revision_list_free(out);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_cert_put(void *b, const ptc_cert *c)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    json_t *j = ptc_cert_to_stored(c);
    char *data = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    int rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) != 0)
        goto out;
    rc = prepare(s, "INSERT OR REPLACE INTO certificates (domain, data, updated_at) VALUES (?, ?, ?)", &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, c->domain, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, data, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, c->updated_at);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "write certificate");
    }
    rc = end_write(s, rc);
out:
    sqlite3_finalize(st);
    free(data);
    json_decref(j);
    return rc;
}

static int sqlite_cert_delete(void *b, const char *domain)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) != 0)
        goto out;
    rc = prepare(s, "DELETE FROM certificates WHERE domain = ?", &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, domain, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "delete certificate");
        else if (sqlite3_changes(s->db) == 0)
            rc = -ENOENT;
    }
    rc = end_write(s, rc);
out:
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_audit_append_many(void *b, const ptc_audit_entry *e, size_t n)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc;
    if (n > 1 && (rc = exec(s, "BEGIN IMMEDIATE")) != 0)
        return rc;
    rc = prepare_kept(s,
                      "INSERT INTO audit (ts, correlation_id, actor, action, droplet_name, domain, result,"
                      " error_code, detail, node) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      &st);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        sqlite3_bind_int64(st, 1, e[i].ts);
        bind_opt(st, 2, e[i].correlation_id);
        bind_opt(st, 3, e[i].actor);
        bind_opt(st, 4, e[i].action);
        bind_opt(st, 5, e[i].droplet_name);
        bind_opt(st, 6, e[i].domain);
        bind_opt(st, 7, e[i].result);
        bind_opt(st, 8, e[i].error_code);
        bind_opt(st, 9, e[i].detail);
        bind_opt(st, 10, e[i].node);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "write audit");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    put_back(s, st);
    if (n > 1)
        rc = rc == 0 ? exec(s, "COMMIT") : (exec(s, "ROLLBACK"), rc);
    return rc;
}

static int sqlite_audit_append(void *b, const ptc_audit_entry *e)
{
    return sqlite_audit_append_many(b, e, 1);
}

/* The row of an attempt needs no disk sync of its own: the write that
 * ends the attempt (the commit, or the failure's finish) syncs the log
 * and every row before it, so the row is on disk no later than the change
 * it announces.  A crash loses nothing (the log is in the kernel's cache);
 * a power cut can lose the row with the attempt, never a row without its
 * change. */
static int sqlite_audit_begin(void *b, const ptc_audit_entry *e, int64_t *id)
{
    sqlite_store *s = b;
    ptc_audit_entry row = *e;
    row.result = "in_progress";
    int rc = exec(s, "PRAGMA synchronous = NORMAL");
    if (rc == 0)
        rc = sqlite_audit_append_many(b, &row, 1);
    if (rc == 0)
        *id = sqlite3_last_insert_rowid(s->db);
    if (exec(s, "PRAGMA synchronous = FULL") != 0 && rc == 0)
        rc = -EIO;
    return rc;
}

static int sqlite_audit_finish(void *b, int64_t id, const char *result, const char *error_code,
                               const char *detail)
{
    return finish_audit(b, id, result, error_code, detail);
}

static int sqlite_audit_interrupted(void *b, const char *node, int64_t *n)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc = prepare(s,
                     "UPDATE audit SET result = 'interrupted', error_code = 'INTERRUPTED',"
                     " detail = COALESCE(detail, '') || ' (portico stopped before the change completed)'"
                     " WHERE result = 'in_progress' AND (node IS NULL OR node = ?)",
                     &st);
    *n = 0;
    if (rc != 0)
        return rc;
    sqlite3_bind_text(st, 1, node, -1, SQLITE_STATIC);
    if (sqlite3_step(st) != SQLITE_DONE)
        rc = db_error(s, "mark interrupted audit");
    else
        *n = sqlite3_changes(s->db);
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_audit_list(void *b, int64_t since, size_t limit, ptc_audit_list *out)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc, step;
    size_t cap = 64;

    memset(out, 0, sizeof(*out));
    if (since < 0)
        rc = prepare(
            s,
            "SELECT * FROM (SELECT id, ts, correlation_id, actor, action, droplet_name, domain, result,"
            " error_code, detail, node FROM audit ORDER BY id DESC LIMIT ?2) ORDER BY id",
            &st);
    else
        rc = prepare(s,
                     "SELECT id, ts, correlation_id, actor, action, droplet_name, domain, result, error_code,"
                     " detail, node FROM audit WHERE ts >= ?1 ORDER BY id LIMIT ?2",
                     &st);
    if (rc != 0)
        return rc;
    if (since >= 0)
        sqlite3_bind_int64(st, 1, since);
    sqlite3_bind_int64(st, 2, (int64_t)limit);
    out->items = ptc_xcalloc(cap, sizeof(*out->items));
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap *= 2;
            out->items = ptc_xrealloc(out->items, cap * sizeof(*out->items));
        }
        ptc_audit_entry *e = &out->items[out->n++];
        e->id = sqlite3_column_int64(st, 0);
        e->ts = sqlite3_column_int64(st, 1);
        e->correlation_id = col_dup(st, 2);
        e->actor = col_dup(st, 3);
        e->action = col_dup(st, 4);
        e->droplet_name = col_dup(st, 5);
        e->domain = col_dup(st, 6);
        e->result = col_dup(st, 7);
        e->error_code = col_dup(st, 8);
        e->detail = col_dup(st, 9);
        e->node = col_dup(st, 10);
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "list audit");
        ptc_audit_list_free(out);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_kv_get(void *b, const char *key, char **value)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc = prepare(s, "SELECT value FROM kv WHERE key = ?", &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW)
            *value = col_dup(st, 0);
        else if (step == SQLITE_DONE)
            rc = -ENOENT;
        else
            rc = db_error(s, "read kv");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_kv_set(void *b, const char *key, const char *value)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc = prepare(s, "INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, value, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "write kv");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_schema_version(void *b)
{
    return user_version(b);
}

static int sqlite_generation(void *b, int64_t *gen)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc = prepare_kept(s, "SELECT value FROM generation WHERE id = 1", &st);
    if (rc == 0) {
        if (sqlite3_step(st) == SQLITE_ROW)
            *gen = sqlite3_column_int64(st, 0);
        else
            rc = db_error(s, "read generation");
    }
    put_back(s, st);
    return rc;
}

static int sqlite_ports_list(void *b, const char *owner, bool with_released, ptc_port_list *out)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc, step;
    size_t cap = 64;

    memset(out, 0, sizeof(*out));
    if ((rc = prepare(s,
                      "SELECT id, port, owner, internal_port, status, allocated_at, COALESCE(released_at, 0)"
                      " FROM ports WHERE (?1 IS NULL OR owner = ?1) AND (?2 OR status = 'active')"
                      " ORDER BY port, id",
                      &st)) != 0)
        return rc;
    bind_opt(st, 1, owner);
    sqlite3_bind_int(st, 2, with_released);
    out->items = ptc_xcalloc(cap, sizeof(*out->items));
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap *= 2;
            out->items = ptc_xrealloc(out->items, cap * sizeof(*out->items));
        }
        ptc_port_alloc *a = &out->items[out->n++];
        a->id = sqlite3_column_int64(st, 0);
        a->port = (unsigned)sqlite3_column_int(st, 1);
        a->owner = col_dup(st, 2);
        a->internal_port = (unsigned)sqlite3_column_int(st, 3);
        a->status = col_dup(st, 4);
        a->allocated_at = sqlite3_column_int64(st, 5);
        a->released_at = sqlite3_column_int64(st, 6);
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "list ports");
        ptc_port_list_free(out);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_port_insert(void *b, unsigned port, const char *owner, unsigned internal_port, int64_t ts)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc = prepare(s,
                     "INSERT INTO ports (port, owner, internal_port, status, allocated_at)"
                     " VALUES (?, ?, ?, 'active', ?)",
                     &st);
    if (rc == 0) {
        sqlite3_bind_int(st, 1, (int)port);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 3, (int)internal_port);
        sqlite3_bind_int64(st, 4, ts);
        int step = sqlite3_step(st);
        if (step == SQLITE_CONSTRAINT)
            rc = -EEXIST;
        else if (step != SQLITE_DONE)
            rc = db_error(s, "insert port");
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_ports_release(void *b, const char *owner, int64_t ts, size_t *n)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc = prepare(
        s, "UPDATE ports SET status = 'released', released_at = ? WHERE owner = ? AND status = 'active'",
        &st);
    *n = 0;
    if (rc == 0) {
        sqlite3_bind_int64(st, 1, ts);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "release ports");
        else if ((*n = (size_t)sqlite3_changes(s->db)) == 0)
            rc = -ENOENT;
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_dns_list(void *b, ptc_dns_record_list *out)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc, step;
    size_t cap = 64;

    memset(out, 0, sizeof(*out));
    if ((rc = prepare(
             s, "SELECT name, type, value, ttl, created_at, updated_at FROM dns_records ORDER BY name, type",
             &st)) != 0)
        return rc;
    out->items = ptc_xcalloc(cap, sizeof(*out->items));
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (out->n == cap) {
            cap *= 2;
            out->items = ptc_xrealloc(out->items, cap * sizeof(*out->items));
        }
        ptc_dns_record *r = &out->items[out->n++];
        r->name = col_dup(st, 0);
        r->type = col_dup(st, 1);
        r->value = col_dup(st, 2);
        r->ttl = (unsigned)sqlite3_column_int64(st, 3);
        r->created_at = sqlite3_column_int64(st, 4);
        r->updated_at = sqlite3_column_int64(st, 5);
    }
    if (step != SQLITE_DONE) {
        rc = db_error(s, "list dns records");
        ptc_dns_record_list_free(out);
    }
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_dns_put(void *b, const ptc_dns_record *r)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) != 0)
        goto out;
    rc = prepare(s,
                 "INSERT INTO dns_records (name, type, value, ttl, created_at, updated_at)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (name, type) DO UPDATE SET"
                 " value = excluded.value, ttl = excluded.ttl, updated_at = excluded.updated_at",
                 &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, r->name, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, r->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, r->ttl);
        sqlite3_bind_int64(st, 5, r->created_at);
        sqlite3_bind_int64(st, 6, r->updated_at);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "write dns record");
    }
    rc = end_write(s, rc);
out:
    sqlite3_finalize(st);
    return rc;
}

static int sqlite_dns_delete(void *b, const char *name, const char *type)
{
    sqlite_store *s = b;
    sqlite3_stmt *st = NULL;
    int rc;

    if ((rc = exec(s, "BEGIN IMMEDIATE")) != 0)
        goto out;
    rc = prepare(s, "DELETE FROM dns_records WHERE name = ?1 AND (?2 IS NULL OR type = ?2)", &st);
    if (rc == 0) {
        sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
        bind_opt(st, 2, type);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = db_error(s, "delete dns record");
        else if (sqlite3_changes(s->db) == 0)
            rc = -ENOENT;
    }
    rc = end_write(s, rc);
out:
    sqlite3_finalize(st);
    return rc;
}

const ptc_store_ops ptc_store_sqlite_ops = {
    .close = sqlite_close,
    .load_state = sqlite_load_state,
    .next_revision = sqlite_next_revision,
    .commit = sqlite_commit,
    .state_at = sqlite_state_at,
    .revisions = sqlite_revisions,
    .cert_put = sqlite_cert_put,
    .cert_delete = sqlite_cert_delete,
    .audit_append = sqlite_audit_append,
    .audit_append_many = sqlite_audit_append_many,
    .audit_begin = sqlite_audit_begin,
    .audit_finish = sqlite_audit_finish,
    .audit_interrupted = sqlite_audit_interrupted,
    .audit_list = sqlite_audit_list,
    .kv_get = sqlite_kv_get,
    .kv_set = sqlite_kv_set,
    .schema_version = sqlite_schema_version,
    .generation = sqlite_generation,
    .ports_list = sqlite_ports_list,
    .port_insert = sqlite_port_insert,
    .ports_release = sqlite_ports_release,
    .dns_list = sqlite_dns_list,
    .dns_put = sqlite_dns_put,
    .dns_delete = sqlite_dns_delete,
};
