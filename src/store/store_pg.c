/* The PostgreSQL backend of the store: several portico nodes sharing one
 * database.  One connection (libpq) per store, the tables of the SQLite
 * backend, the schema versioned in schema_version and brought forward by
 * the migrations below, each in its own transaction under an advisory lock
 * so that nodes starting together migrate once.  Every value travels as a
 * parameter of a statement prepared once per connection. */
#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "store/store_impl.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Forward migrations: entry i brings the schema from version i to i + 1,
 * the SQLite backend's tables in PostgreSQL's types.  Never edit a shipped
 * entry; append a new one. */
static const char *const migrations[] = {
    /* 1: proxies, their versions per revision, certificates, audit, kv */
    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE proxies ("
    "  name TEXT PRIMARY KEY, domain TEXT NOT NULL, path_prefix TEXT NOT NULL,"
    "  spec TEXT NOT NULL, revision BIGINT NOT NULL, UNIQUE (domain, path_prefix));"
    "CREATE TABLE revisions ("
    "  number BIGINT PRIMARY KEY, ts BIGINT NOT NULL, actor TEXT, action TEXT,"
    "  correlation_id TEXT, summary TEXT, n_proxies BIGINT NOT NULL);"
    "CREATE TABLE proxy_versions ("
    "  name TEXT NOT NULL, revision BIGINT NOT NULL, spec TEXT," /* spec NULL: deleted */
    "  PRIMARY KEY (name, revision));"
    "CREATE INDEX proxy_versions_revision ON proxy_versions (revision);"
    "CREATE TABLE certificates (domain TEXT PRIMARY KEY, data TEXT NOT NULL, updated_at BIGINT NOT NULL);"
    "CREATE TABLE audit ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ts BIGINT NOT NULL, correlation_id TEXT,"
    "  actor TEXT, action TEXT NOT NULL, droplet_name TEXT, domain TEXT, result TEXT NOT NULL,"
    "  error_code TEXT, detail TEXT);"
    "CREATE INDEX audit_ts ON audit (ts);",
    /* 2: the port registry and DNS records.  The partial unique indexes
     * make an allocation atomic across nodes: an active port, and an
     * owner's active internal port, exist once. */
    "CREATE TABLE ports ("
    "  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, port BIGINT NOT NULL, owner TEXT NOT NULL,"
    "  internal_port BIGINT NOT NULL,"
    "  status TEXT NOT NULL CHECK (status IN ('active', 'released')),"
    "  allocated_at BIGINT NOT NULL, released_at BIGINT);"
    "CREATE UNIQUE INDEX ports_active_port ON ports (port) WHERE status = 'active';"
    "CREATE UNIQUE INDEX ports_active_owner ON ports (owner, internal_port) WHERE status = 'active';"
    "CREATE INDEX ports_owner ON ports (owner);"
    "CREATE TABLE dns_records ("
    "  name TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL, ttl BIGINT NOT NULL,"
    "  created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (name, type));",
    /* 3: the desired state's write counter (ptc_store_generation), one row
     * that every commit, certificate write and DNS record write adds one to. */
    ("CREATE TABLE generation (id INTEGER PRIMARY KEY CHECK (id = 1), value BIGINT NOT NULL);"
     "INSERT INTO generation (id, value) VALUES (1, 0);"),
    /* 4: which portico wrote an audit row (nodes may share the store). */
    "ALTER TABLE audit ADD COLUMN node TEXT;",
};

/* The key of the advisory lock migrations hold: "portico" in ASCII. */
#define MIGRATION_LOCK "31647734761612143"

/* The statements, each prepared on a connection at its first use there.
 * writes: it may change the store, so a call that failed after sending it
 * must not run again (see call_again). */
enum stmt {
    Q_HAS_SCHEMA_VERSION,
    Q_SCHEMA_VERSION,
    Q_SET_SCHEMA_VERSION,
    Q_NEWEST_REVISION,
    Q_PROXIES,
    Q_CERTS,
    Q_GENERATION,
    Q_BUMP_GENERATION,
    Q_INSERT_REVISION,
    Q_WRITE_PROXY,
    Q_DELETE_PROXY,
    Q_FINISH_AUDIT,
    Q_REVISION_EXISTS,
    Q_PROXIES_AT,
    Q_REVISIONS,
    Q_PUT_CERT,
    Q_DELETE_CERT,
    Q_INSERT_AUDIT,
    Q_BEGIN_AUDIT,
    Q_AUDIT_INTERRUPTED,
    Q_AUDIT_LIST,
    Q_AUDIT_TAIL,
    Q_KV_GET,
    Q_KV_SET,
    Q_PORTS_LIST,
    Q_PORT_INSERT,
    Q_PORTS_RELEASE,
    Q_DNS_LIST,
    Q_DNS_PUT,
    Q_DNS_DELETE,
    Q_COUNT
};

static const struct {
    const char *what; /* for the log */
    int nparams;
    bool writes;
    const char *sql;
} stmts[Q_COUNT] = {
    [Q_HAS_SCHEMA_VERSION] = {"read schema version", 0, false,
                              "SELECT to_regclass('schema_version') IS NOT NULL"},
    [Q_SCHEMA_VERSION] = {"read schema version", 0, false, "SELECT version FROM schema_version WHERE id = 1"},
    [Q_SET_SCHEMA_VERSION] = {"write schema version", 1, true,
                              "UPDATE schema_version SET version = $1 WHERE id = 1"},
    [Q_NEWEST_REVISION] = {"newest revision", 0, false, "SELECT COALESCE(MAX(number), 0) FROM revisions"},
    /* Byte order (COLLATE "C"), as in SQLite, whatever the database's
     * collation. */
    [Q_PROXIES] = {"read proxies", 0, false, "SELECT spec FROM proxies ORDER BY name COLLATE \"C\""},
    [Q_CERTS] = {"read certificates", 0, false,
                 "SELECT data FROM certificates ORDER BY domain COLLATE \"C\""},
    [Q_GENERATION] = {"read generation", 0, false, "SELECT value FROM generation WHERE id = 1"},
    [Q_BUMP_GENERATION] = {"bump generation", 0, true,
                           "UPDATE generation SET value = value + 1 WHERE id = 1"},
    [Q_INSERT_REVISION] =
        {"write revision", 7, true,
         "INSERT INTO revisions (number, ts, actor, action, correlation_id, summary, n_proxies)"
         " VALUES ($1, $2, $3, $4, $5, $6, $7)"},
    /* A change and its version in one statement: one round trip each. */
    [Q_WRITE_PROXY] =
        {"write proxy", 5, true,
         "WITH w AS (INSERT INTO proxies (name, domain, path_prefix, spec, revision)"
         "  VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET domain = excluded.domain,"
         "  path_prefix = excluded.path_prefix, spec = excluded.spec, revision = excluded.revision)"
         " INSERT INTO proxy_versions (name, revision, spec) VALUES ($1, $5, $4)"},
    [Q_DELETE_PROXY] = {"delete proxy", 2, true,
                        "WITH d AS (DELETE FROM proxies WHERE name = $1)"
                        " INSERT INTO proxy_versions (name, revision, spec) VALUES ($1, $2, NULL)"},
    [Q_FINISH_AUDIT] = {"finish audit", 4, true,
                        "UPDATE audit SET result = $1, error_code = $2, detail = $3 WHERE id = $4"},
    [Q_REVISION_EXISTS] = {"read revision", 1, false, "SELECT 1 FROM revisions WHERE number = $1"},
    /* Each name's newest version at or before $1; a NULL spec is a deletion. */
    [Q_PROXIES_AT] = {"read proxies at a revision", 1, false,
                      "SELECT spec FROM (SELECT DISTINCT ON (name) name, spec FROM proxy_versions"
                      "  WHERE revision <= $1 ORDER BY name, revision DESC) last"
                      " WHERE spec IS NOT NULL ORDER BY name COLLATE \"C\""},
    [Q_REVISIONS] = {"list revisions", 1, false,
                     "SELECT number, ts, actor, action, correlation_id, summary, n_proxies FROM revisions"
                     " ORDER BY number DESC LIMIT $1"},
    [Q_PUT_CERT] =
        {"write certificate", 3, true,
         "INSERT INTO certificates (domain, data, updated_at) VALUES ($1, $2, $3)"
         " ON CONFLICT (domain) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at"},
    [Q_DELETE_CERT] = {"delete certificate", 1, true, "DELETE FROM certificates WHERE domain = $1"},
    [Q_INSERT_AUDIT] = {"write audit", 10, true,
                        "INSERT INTO audit (ts, correlation_id, actor, action, droplet_name, domain, result,"
                        " error_code, detail, node) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"},
    /* The row of an attempt needs no WAL flush of its own: the commit that
     * ends the attempt (the change's, or the failure's finish) flushes
     * the WAL up to itself, this row included.  A server crash before
     * that can lose the row, never leave a change without it.
     * set_config(..., true) turns the flush off for this statement's own
     * transaction only. */
    [Q_BEGIN_AUDIT] =
        {"write audit", 10, true,
         "INSERT INTO audit (ts, correlation_id, actor, action, droplet_name, domain, result,"
         " error_code, detail, node) SELECT $1::bigint, $2::text, $3::text, $4::text, $5::text,"
         " $6::text, $7::text, $8::text, $9::text, $10::text"
         " FROM (SELECT set_config('synchronous_commit', 'off', true)) AS no_flush RETURNING id"},
    [Q_AUDIT_INTERRUPTED] =
        {"mark interrupted audit", 1, true,
         "UPDATE audit SET result = 'interrupted', error_code = 'INTERRUPTED',"
         " detail = COALESCE(detail, '') || ' (portico stopped before the change completed)'"
         " WHERE result = 'in_progress' AND (node IS NULL OR node = $1)"},
    [Q_AUDIT_LIST] =
        {"list audit", 2, false,
         "SELECT id, ts, correlation_id, actor, action, droplet_name, domain, result, error_code,"
         " detail, node FROM audit WHERE ts >= $1 ORDER BY id LIMIT $2"},
    [Q_AUDIT_TAIL] = {"list newest audit", 1, false,
                      "SELECT * FROM (SELECT id, ts, correlation_id, actor, action, droplet_name, domain,"
                      " result, error_code, detail, node FROM audit ORDER BY id DESC LIMIT $1) AS newest"
                      " ORDER BY id"},
    [Q_KV_GET] = {"read kv", 1, false, "SELECT value FROM kv WHERE key = $1"},
    [Q_KV_SET] = {"write kv", 2, true,
                  "INSERT INTO kv (key, value) VALUES ($1, $2)"
                  " ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
    [Q_PORTS_LIST] =
        {"list ports", 2, false,
         "SELECT id, port, owner, internal_port, status, allocated_at, COALESCE(released_at, 0)"
         " FROM ports WHERE ($1::text IS NULL OR owner = $1) AND ($2::boolean OR status = 'active')"
         " ORDER BY port, id"},
    [Q_PORT_INSERT] = {"insert port", 4, true,
                       "INSERT INTO ports (port, owner, internal_port, status, allocated_at)"
                       " VALUES ($1, $2, $3, 'active', $4)"},
    [Q_PORTS_RELEASE] = {"release ports", 2, true,
                         "UPDATE ports SET status = 'released', released_at = $1"
                         " WHERE owner = $2 AND status = 'active'"},
    [Q_DNS_LIST] = {"list dns records", 0, false,
                    "SELECT name, type, value, ttl, created_at, updated_at FROM dns_records"
                    " ORDER BY name COLLATE \"C\", type COLLATE \"C\""},
    [Q_DNS_PUT] = {"write dns record", 6, true,
                   "INSERT INTO dns_records (name, type, value, ttl, created_at, updated_at)"
                   " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name, type) DO UPDATE SET"
                   " value = excluded.value, ttl = excluded.ttl, updated_at = excluded.updated_at"},
    [Q_DNS_DELETE] = {"delete dns record", 2, true,
                      "DELETE FROM dns_records WHERE name = $1 AND ($2::text IS NULL OR type = $2)"},
};

typedef struct pg_store {
    PGconn *conn;
    char *where; /* host:port/database, for the log: never the password */
    bool prepared[Q_COUNT];
    /* Of the call running: it sent a statement that may change the
     * store; it replaced the connection already. */
    bool changed, reset;
    bool server_gone;     /* the server said it ends this session (FATAL) */
    char last_error[256]; /* the server's last message, for start-up errors */
} pg_store;

/* libpq's message on one line (it ends lines with \n and indents with \t),
 * in a new string. */
static char *one_line(const char *msg)
{
    char *out = ptc_xstrdup(msg ? msg : "");
    size_t k = 0;
    for (const char *p = out; *p; p++) {
        char c = *p == '\n' || *p == '\t' ? ' ' : *p;
        if (c != ' ' || (k > 0 && out[k - 1] != ' '))
            out[k++] = c;
    }
    while (k > 0 && out[k - 1] == ' ')
        k--;
    out[k] = '\0';
    return out;
}

/* A failed statement: -EEXIST for a uniqueness conflict (SQLSTATE 23505),
 * else -EIO, logged with the server's message (libpq's when the server
 * was not reached). */
static int failure(pg_store *s, const char *what, const PGresult *r)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *text = r ? PQresultErrorMessage(r) : "";
    char *msg;

    if (state && strcmp(state, "23505") == 0)
        return -EEXIST;
    msg = one_line(text[0] ? text : PQerrorMessage(s->conn));
    snprintf(s->last_error, sizeof(s->last_error), "%s", msg);
    ptc_log_error("store error", PTC_LS("op", what), PTC_LS("error", msg), PTC_LS("sqlstate", state),
                  PTC_LS("database", s->where));
    free(msg);
    return -EIO;
}

/* Runs SQL without parameters (transaction control, migrations). */
static int exec(pg_store *s, const char *sql, const char *what)
{
    PGresult *r = PQexec(s->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : failure(s, what, r);
    PQclear(r);
    return rc;
}

/* Ends the transaction a failed call left open, if any. */
static void rollback(pg_store *s)
{
    PGTransactionStatusType t = PQtransactionStatus(s->conn);
    if (t == PQTRANS_INTRANS || t == PQTRANS_INERROR)
        exec(s, "ROLLBACK", "rollback");
}

/* Runs statement q with its parameters (text; NULL is SQL NULL), preparing
 * it on this connection first when needed.  On success *res, when res is
 * not NULL, gets the result (PQclear it).  0, -EEXIST or -EIO. */
static int run(pg_store *s, enum stmt q, const char *const *params, PGresult **res)
{
    char name[16];
    PGresult *r = NULL;
    ExecStatusType st;
    int rc = 0;

    snprintf(name, sizeof(name), "ptc_%d", (int)q);
    if (!s->prepared[q]) {
        r = PQprepare(s->conn, name, stmts[q].sql, stmts[q].nparams, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            rc = failure(s, stmts[q].what, r);
            goto out;
        }
        PQclear(r);
        s->prepared[q] = true;
    }
    s->changed = s->changed || stmts[q].writes;
    r = PQexecPrepared(s->conn, name, stmts[q].nparams, params, NULL, NULL, 0);
    st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        rc = failure(s, stmts[q].what, r);
        goto out;
    }
    if (res) {
        *res = r;
        r = NULL;
    }
out:
    PQclear(r);
    return rc;
}

/* An integer parameter's text, in buf (24 bytes). */
static const char *i64(char *buf, int64_t v)
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

static int64_t col_i64(const PGresult *r, int row, int col)
{
    return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static char *col_dup(const PGresult *r, int row, int col)
{
    return PQgetisnull(r, row, col) ? NULL : ptc_xstrdup(PQgetvalue(r, row, col));
}

/* How many rows an INSERT, UPDATE or DELETE touched. */
static size_t changes(PGresult *r)
{
    return (size_t)strtoull(PQcmdTuples(r), NULL, 10);
}

/* ---- one connection, repaired between calls ---- */

/* Replaces the connection with a new one to the same server (PQreset);
 * statements are prepared again on it. */
static int reconnect(pg_store *s)
{
    int rc = 0;
    s->reset = true;
    s->server_gone = false;
    memset(s->prepared, 0, sizeof(s->prepared));
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        char *msg = one_line(PQerrorMessage(s->conn));
        ptc_log_error("store unreachable", PTC_LS("error", msg), PTC_LS("database", s->where));
        free(msg);
        rc = -EIO;
    } else {
        ptc_log_info("store reconnected", PTC_LS("database", s->where));
    }
    return rc;
}

/* Starts a call.  A connection the server ended while it sat idle (a
 * restart, an idle timeout, a terminated backend) shows here, before
 * anything is sent: libpq reads what arrived without blocking, the
 * server's goodbye (a FATAL notice) or the end of the stream. */
static int call_begin(pg_store *s)
{
    s->changed = false;
    s->reset = false;
    /* PQconsumeInput reads, PQisBusy parses (and runs on_notice). */
    if (PQstatus(s->conn) == CONNECTION_OK && PQconsumeInput(s->conn))
        PQisBusy(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK || s->server_gone || PQtransactionStatus(s->conn) != PQTRANS_IDLE)
        return reconnect(s);
    return 0;
}

/* After a call failed: whether to run it once more, on a new connection.
 * Only when the old one broke before the call sent anything that changes
 * the store (what was sent may have been done), and once per call. */
static bool call_again(pg_store *s, int rc)
{
    return rc == -EIO && !s->changed && !s->reset && PQstatus(s->conn) != CONNECTION_OK && reconnect(s) == 0;
}

/* An op's body: call (an expression, evaluated at most twice) between
 * call_begin and call_again. */
#define CALL(s, call)                                                                                        \
    do {                                                                                                     \
        int rc_ = call_begin(s);                                                                             \
        if (rc_ == 0 && (rc_ = (call)) != 0 && call_again((s), rc_))                                         \
            rc_ = (call);                                                                                    \
        return rc_;                                                                                          \
    } while (0)

/* ---- opening: connection and migrations ---- */

/* A server's notice or warning: to the log, not to stderr where libpq
 * would print it.  A FATAL one between calls is the server ending the
 * session (a shutdown's "terminating connection"). */
static void on_notice(void *arg, const PGresult *r)
{
    pg_store *s = arg;
    const char *severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    char *msg = one_line(PQresultErrorMessage(r));
    if (severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
        s->server_gone = true;
    ptc_log_warn("store notice", PTC_LS("severity", severity), PTC_LS("message", msg),
                 PTC_LS("database", s->where));
    free(msg);
}

/* Brings the schema to the newest version, one migration per transaction.
 * Each takes the advisory lock and reads the version under it: a node that
 * waited while another migrated finds the work done. */
static int migrate(pg_store *s, int *version, const char *shown, char *err, size_t errlen)
{
    int target = (int)PTC_ARRAY_LEN(migrations), v = 0, rc;
    PGresult *r = NULL;
    char num[24];

    for (;;) {
        if ((rc = exec(s, "BEGIN", "begin")) != 0 ||
            (rc = exec(s, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK ")", "lock schema")) != 0 ||
            (rc = run(s, Q_HAS_SCHEMA_VERSION, NULL, &r)) != 0)
            goto out;
        if (strcmp(PQgetvalue(r, 0, 0), "t") != 0 &&
            (rc = exec(s,
                       "CREATE TABLE schema_version ("
                       "  id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL);"
                       "INSERT INTO schema_version (id, version) VALUES (1, 0);",
                       "create schema_version")) != 0)
            goto out;
        PQclear(r);
        r = NULL;
        if ((rc = run(s, Q_SCHEMA_VERSION, NULL, &r)) != 0)
            goto out;
        v = (int)col_i64(r, 0, 0);
        if (v < 0 || v > target) {
            snprintf(err, errlen, "store %s: schema version %d is newer than this portico knows (%d)", shown,
                     v, target);
            rc = -EINVAL;
            goto out;
        }
        if (v == target)
            break;
        const char *params[] = {i64(num, v + 1)};
        if ((rc = exec(s, migrations[v], "migrate")) != 0 ||
            (rc = run(s, Q_SET_SCHEMA_VERSION, params, NULL)) != 0 || (rc = exec(s, "COMMIT", "commit")) != 0)
            goto out;
        ptc_log_info("store migrated", PTC_LS("database", s->where), PTC_LI("schema_version", v + 1));
        PQclear(r);
        r = NULL;
    }
    rc = exec(s, "COMMIT", "commit");
    *version = v;
out:
    PQclear(r);
    if (rc != 0) {
        rollback(s);
        if (rc != -EINVAL)
            snprintf(err, errlen, "store %s: cannot bring the schema to version %d: %s", shown, target,
                     s->last_error);
    }
    return rc;
}

static void pg_close(void *b)
{
    pg_store *s = b;
    if (s == NULL)
        return;
    PQfinish(s->conn);
    free(s->where);
    free(s);
}

void *ptc_store_pg_open(const char *conninfo, char *err, size_t errlen)
{
    /* Ours first: what the URI says replaces them (libpq keeps the last
     * value of a key).  A dead server must not hang start-up. */
    static const char *const keys[] = {"connect_timeout", "client_encoding", "fallback_application_name",
                                       "dbname", NULL};
    const char *values[] = {"5", "UTF8", "portico", conninfo, NULL};
    pg_store *s = ptc_xcalloc(1, sizeof(*s));
    char *shown = ptc_uri_mask_password(conninfo), *msg = NULL;
    PQconninfoOption *opts = NULL;
    size_t off, len;
    int version = 0;

    /* libpq ends the user info at the first '@' or '/': a password holding
     * one would be cut short, and its pieces would show in messages as a
     * host or port name. */
    if (ptc_uri_password(conninfo, &off, &len) &&
        (memchr(conninfo + off, '@', len) != NULL || memchr(conninfo + off, '/', len) != NULL)) {
        snprintf(err, errlen, "store %s: percent-encode '@' and '/' in the password (%%40, %%2F)", shown);
        goto fail;
    }
    /* libpq's parse errors quote pieces of the URI: not repeated. */
    if ((opts = PQconninfoParse(conninfo, NULL)) == NULL) {
        snprintf(err, errlen, "store %s: not a valid PostgreSQL connection URI", shown);
        goto fail;
    }
    s->conn = PQconnectdbParams(keys, values, 1);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        msg = one_line(PQerrorMessage(s->conn));
        snprintf(err, errlen, "store %s: %s", shown, msg);
        goto fail;
    }
    s->where = ptc_xasprintf("%s:%s/%s", PQhost(s->conn), PQport(s->conn), PQdb(s->conn));
    PQsetNoticeReceiver(s->conn, on_notice, s);
    if (migrate(s, &version, shown, err, errlen) != 0)
        goto fail;
    ptc_log_info("store opened", PTC_LS("backend", "postgresql"), PTC_LS("database", s->where),
                 PTC_LI("schema_version", version));
    goto out;
fail:
    pg_close(s);
    s = NULL;
out:
    PQconninfoFree(opts);
    free(shown);
    free(msg);
    return s;
}

/* ---- the desired state ---- */

/* Parses the spec column of r's rows into proxies (an array of n). */
static ptc_proxy **read_proxies(pg_store *s, const PGresult *r, size_t *n)
{
    int rows = PQntuples(r);
    ptc_proxy **list = ptc_xcalloc((size_t)rows + 1, sizeof(*list));
    size_t count = 0;

    for (int i = 0; i < rows; i++) {
        json_t *j = json_loads(PQgetvalue(r, i, 0), 0, NULL);
        ptc_proxy *p = j ? ptc_proxy_from_stored(j) : NULL;
        json_decref(j);
        if (p == NULL)
            ptc_log_error("store holds an invalid proxy; skipped", PTC_LS("database", s->where));
        else
            list[count++] = p;
    }
    *n = count;
    return list;
}

static ptc_cert **read_certs(pg_store *s, const PGresult *r, size_t *n)
{
    int rows = PQntuples(r);
    ptc_cert **list = ptc_xcalloc((size_t)rows + 1, sizeof(*list));
    size_t count = 0;

    for (int i = 0; i < rows; i++) {
        json_t *j = json_loads(PQgetvalue(r, i, 0), 0, NULL);
        ptc_cert *c = j ? ptc_cert_from_stored(j) : NULL;
        json_decref(j);
        if (c == NULL)
            ptc_log_error("store holds an invalid certificate; skipped", PTC_LS("database", s->where));
        else
            list[count++] = c;
    }
    *n = count;
    return list;
}

static int load_state(pg_store *s, ptc_state **out)
{
    PGresult *pr = NULL, *cr = NULL, *rr = NULL;
    ptc_proxy **proxies = NULL;
    ptc_cert **certs = NULL;
    size_t np = 0, nc = 0;
    int rc;

    /* One snapshot: another node's commit must not land between the reads. */
    if ((rc = exec(s, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "begin")) != 0 ||
        (rc = run(s, Q_PROXIES, NULL, &pr)) != 0 || (rc = run(s, Q_CERTS, NULL, &cr)) != 0 ||
        (rc = run(s, Q_NEWEST_REVISION, NULL, &rr)) != 0 || (rc = exec(s, "COMMIT", "commit")) != 0)
        goto out;
    proxies = read_proxies(s, pr, &np);
    certs = read_certs(s, cr, &nc);
    *out = ptc_state_from(proxies, np, certs, nc);
    (*out)->revision = col_i64(rr, 0, 0);
    np = nc = 0;
out:
    if (rc != 0)
        rollback(s);
    for (size_t i = 0; i < np; i++)
        ptc_proxy_release(proxies[i]);
    for (size_t i = 0; i < nc; i++)
        ptc_cert_release(certs[i]);
    free(proxies);
    free(certs);
    PQclear(pr);
    PQclear(cr);
    PQclear(rr);
    return rc;
}

static int next_revision(pg_store *s, int64_t *number)
{
    PGresult *r = NULL;
    int rc = run(s, Q_NEWEST_REVISION, NULL, &r);
    if (rc == 0)
        *number = col_i64(r, 0, 0) + 1;
    PQclear(r);
    return rc;
}

static int finish_audit(pg_store *s, int64_t id, const char *result, const char *error_code,
                        const char *detail)
{
    char num[24];
    const char *params[] = {result, error_code, detail, i64(num, id)};
    return run(s, Q_FINISH_AUDIT, params, NULL);
}

/* Writes one change (p NULL: name deleted) into proxies and proxy_versions. */
static int write_change(pg_store *s, const char *name, const ptc_proxy *p, const char *rev)
{
    int rc;
    if (p) {
        json_t *j = ptc_proxy_to_stored(p);
        char *spec = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        const char *params[] = {p->name, p->domain, p->path_prefix, spec, rev};
        rc = run(s, Q_WRITE_PROXY, params, NULL);
        free(spec);
        json_decref(j);
    } else {
        const char *params[] = {name, rev};
        rc = run(s, Q_DELETE_PROXY, params, NULL);
    }
    return rc;
}

typedef struct change_ctx {
    pg_store *s;
    const char *rev;
} change_ctx;

static int write_one(void *ctx, const char *name, const ptc_proxy *p)
{
    change_ctx *cc = ctx;
    return write_change(cc->s, name, p, cc->rev);
}

static int commit(pg_store *s, const ptc_state *prev, const ptc_state *next, const ptc_revision *meta)
{
    char number[24], ts[24], n_proxies[24];
    const char *rev[] = {i64(number, meta->number),
                         i64(ts, meta->ts),
                         meta->actor,
                         meta->action,
                         meta->correlation_id,
                         meta->summary,
                         i64(n_proxies, (int64_t)next->n_proxies)};
    int rc;

    /* The generation row first: its lock queues the other nodes' writers
     * of the desired state behind this one for the whole transaction (what
     * BEGIN IMMEDIATE does in SQLite), so that two commits never
     * interleave or deadlock.  A failure rolls the bump back. */
    if ((rc = exec(s, "BEGIN", "begin")) != 0 || (rc = run(s, Q_BUMP_GENERATION, NULL, NULL)) != 0 ||
        (rc = run(s, Q_INSERT_REVISION, rev, NULL)) != 0)
        goto out;
    change_ctx cc = {s, number};
    if ((rc = ptc_store_walk_changes(prev, next, write_one, &cc)) != 0)
        goto out;
    if (meta->audit_id != 0 &&
        (rc = finish_audit(s, meta->audit_id, "success", NULL, meta->audit_detail)) != 0)
        goto out;
    rc = exec(s, "COMMIT", "commit");
out:
    if (rc != 0)
        rollback(s);
    return rc;
}

static int state_at(pg_store *s, int64_t n, ptc_state **out)
{
    PGresult *r = NULL;
    ptc_proxy **proxies = NULL;
    size_t np = 0;
    char num[24];
    const char *params[] = {i64(num, n)};
    int rc;

    if ((rc = run(s, Q_REVISION_EXISTS, params, &r)) != 0)
        goto out;
    if (PQntuples(r) == 0) {
        rc = -ENOENT;
        goto out;
    }
    PQclear(r);
    r = NULL;
    if ((rc = run(s, Q_PROXIES_AT, params, &r)) != 0)
        goto out;
    proxies = read_proxies(s, r, &np);
    *out = ptc_state_from(proxies, np, NULL, 0);
    (*out)->revision = n;
    free(proxies);
out:
    PQclear(r);
    return rc;
}

static int revisions(pg_store *s, size_t limit, ptc_revision_list *out)
{
    PGresult *r = NULL;
    char num[24];
    const char *params[] = {i64(num, limit > INT64_MAX ? INT64_MAX : (int64_t)limit)};
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = run(s, Q_REVISIONS, params, &r)) != 0)
        goto out;
    out->n = (size_t)PQntuples(r);
    out->items = ptc_xcalloc(out->n + 1, sizeof(*out->items));
    for (int i = 0; i < PQntuples(r); i++) {
        ptc_revision *v = &out->items[i];
        v->number = col_i64(r, i, 0);
        v->ts = col_i64(r, i, 1);
        v->actor = col_dup(r, i, 2);
        v->action = col_dup(r, i, 3);
        v->correlation_id = col_dup(r, i, 4);
        v->summary = col_dup(r, i, 5);
        v->n_proxies = col_i64(r, i, 6);
    }
out:
    PQclear(r);
    return rc;
}

static int cert_put(pg_store *s, const ptc_cert *c)
{
    json_t *j = ptc_cert_to_stored(c);
    char *data = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    char ts[24];
    const char *params[] = {c->domain, data, i64(ts, c->updated_at)};
    int rc;

    /* The generation row first, as in commit. */
    if ((rc = exec(s, "BEGIN", "begin")) != 0 || (rc = run(s, Q_BUMP_GENERATION, NULL, NULL)) != 0 ||
        (rc = run(s, Q_PUT_CERT, params, NULL)) != 0)
        goto out;
    rc = exec(s, "COMMIT", "commit");
out:
    if (rc != 0)
        rollback(s);
    free(data);
    json_decref(j);
    return rc;
}

static int cert_delete(pg_store *s, const char *domain)
{
    PGresult *r = NULL;
    const char *params[] = {domain};
    int rc;

    if ((rc = exec(s, "BEGIN", "begin")) != 0 || (rc = run(s, Q_BUMP_GENERATION, NULL, NULL)) != 0 ||
        (rc = run(s, Q_DELETE_CERT, params, &r)) != 0)
        goto out;
    if (changes(r) == 0) {
        rc = -ENOENT;
        goto out;
    }
    rc = exec(s, "COMMIT", "commit");
out:
    if (rc != 0)
        rollback(s);
    PQclear(r);
    return rc;
}

/* ---- the audit trail ---- */

static int audit_append_many(pg_store *s, const ptc_audit_entry *e, size_t n)
{
    int rc = 0;
    if (n > 1 && (rc = exec(s, "BEGIN", "begin")) != 0)
        goto out;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        char ts[24];
        const char *params[] = {
            i64(ts, e[i].ts), e[i].correlation_id, e[i].actor,      e[i].action, e[i].droplet_name,
            e[i].domain,      e[i].result,         e[i].error_code, e[i].detail, e[i].node};
        rc = run(s, Q_INSERT_AUDIT, params, NULL);
    }
    if (n > 1 && rc == 0)
        rc = exec(s, "COMMIT", "commit");
out:
    if (rc != 0)
        rollback(s);
    return rc;
}

static int audit_begin(pg_store *s, const ptc_audit_entry *e, int64_t *id)
{
    PGresult *r = NULL;
    char ts[24];
    const char *params[] = {i64(ts, e->ts), e->correlation_id, e->actor,      e->action, e->droplet_name,
                            e->domain,      "in_progress",     e->error_code, e->detail, e->node};
    int rc = run(s, Q_BEGIN_AUDIT, params, &r);
    if (rc == 0)
        *id = col_i64(r, 0, 0);
    PQclear(r);
    return rc;
}

static int audit_interrupted(pg_store *s, const char *node, int64_t *n)
{
    PGresult *r = NULL;
    const char *params[] = {node};
    int rc = run(s, Q_AUDIT_INTERRUPTED, params, &r);
    *n = rc == 0 ? (int64_t)changes(r) : 0;
    PQclear(r);
    return rc;
}

static int audit_list(pg_store *s, int64_t since, size_t limit, ptc_audit_list *out)
{
    PGresult *r = NULL;
    char a[24], b[24];
    const char *n = i64(b, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    const char *list[] = {i64(a, since), n}, *tail[] = {n};
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = since < 0 ? run(s, Q_AUDIT_TAIL, tail, &r) : run(s, Q_AUDIT_LIST, list, &r)) != 0)
        goto out;
    out->n = (size_t)PQntuples(r);
    out->items = ptc_xcalloc(out->n + 1, sizeof(*out->items));
    for (int i = 0; i < PQntuples(r); i++) {
        ptc_audit_entry *e = &out->items[i];
        e->id = col_i64(r, i, 0);
        e->ts = col_i64(r, i, 1);
        e->correlation_id = col_dup(r, i, 2);
        e->actor = col_dup(r, i, 3);
        e->action = col_dup(r, i, 4);
        e->droplet_name = col_dup(r, i, 5);
        e->domain = col_dup(r, i, 6);
        e->result = col_dup(r, i, 7);
        e->error_code = col_dup(r, i, 8);
        e->detail = col_dup(r, i, 9);
        e->node = col_dup(r, i, 10);
    }
out:
    PQclear(r);
    return rc;
}

/* ---- small values, generation, ports, DNS ---- */

static int kv_get(pg_store *s, const char *key, char **value)
{
    PGresult *r = NULL;
    const char *params[] = {key};
    int rc = run(s, Q_KV_GET, params, &r);
    if (rc == 0 && PQntuples(r) == 0)
        rc = -ENOENT;
    else if (rc == 0)
        *value = col_dup(r, 0, 0);
    PQclear(r);
    return rc;
}

static int kv_set(pg_store *s, const char *key, const char *value)
{
    const char *params[] = {key, value};
    return run(s, Q_KV_SET, params, NULL);
}

static int schema_version(pg_store *s)
{
    PGresult *r = NULL;
    int rc = run(s, Q_SCHEMA_VERSION, NULL, &r);
    if (rc == 0)
        rc = (int)col_i64(r, 0, 0);
    PQclear(r);
    return rc;
}

static int generation(pg_store *s, int64_t *gen)
{
    PGresult *r = NULL;
    int rc = run(s, Q_GENERATION, NULL, &r);
    if (rc == 0)
        *gen = col_i64(r, 0, 0);
    PQclear(r);
    return rc;
}

static int ports_list(pg_store *s, const char *owner, bool with_released, ptc_port_list *out)
{
    PGresult *r = NULL;
    const char *params[] = {owner, with_released ? "true" : "false"};
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = run(s, Q_PORTS_LIST, params, &r)) != 0)
        goto out;
    out->n = (size_t)PQntuples(r);
    out->items = ptc_xcalloc(out->n + 1, sizeof(*out->items));
    for (int i = 0; i < PQntuples(r); i++) {
        ptc_port_alloc *a = &out->items[i];
        a->id = col_i64(r, i, 0);
        a->port = (unsigned)col_i64(r, i, 1);
        a->owner = col_dup(r, i, 2);
        a->internal_port = (unsigned)col_i64(r, i, 3);
        a->status = col_dup(r, i, 4);
        a->allocated_at = col_i64(r, i, 5);
        a->released_at = col_i64(r, i, 6);
    }
out:
    PQclear(r);
    return rc;
}

static int port_insert(pg_store *s, unsigned port, const char *owner, unsigned internal_port, int64_t ts)
{
    char a[24], b[24], c[24];
    const char *params[] = {i64(a, port), owner, i64(b, internal_port), i64(c, ts)};
    return run(s, Q_PORT_INSERT, params, NULL);
}

static int ports_release(pg_store *s, const char *owner, int64_t ts, size_t *n)
{
    PGresult *r = NULL;
    char num[24];
    const char *params[] = {i64(num, ts), owner};
    int rc = run(s, Q_PORTS_RELEASE, params, &r);
    *n = rc == 0 ? changes(r) : 0;
    if (rc == 0 && *n == 0)
        rc = -ENOENT;
    PQclear(r);
    return rc;
}

static int dns_list(pg_store *s, ptc_dns_record_list *out)
{
    PGresult *r = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    if ((rc = run(s, Q_DNS_LIST, NULL, &r)) != 0)
        goto out;
    out->n = (size_t)PQntuples(r);
    out->items = ptc_xcalloc(out->n + 1, sizeof(*out->items));
    for (int i = 0; i < PQntuples(r); i++) {
        ptc_dns_record *d = &out->items[i];
        d->name = col_dup(r, i, 0);
        d->type = col_dup(r, i, 1);
        d->value = col_dup(r, i, 2);
        d->ttl = (unsigned)col_i64(r, i, 3);
        d->created_at = col_i64(r, i, 4);
        d->updated_at = col_i64(r, i, 5);
    }
out:
    PQclear(r);
    return rc;
}

static int dns_put(pg_store *s, const ptc_dns_record *d)
{
    char ttl[24], created[24], updated[24];
    const char *params[] = {d->name,
                            d->type,
                            d->value,
                            i64(ttl, d->ttl),
                            i64(created, d->created_at),
                            i64(updated, d->updated_at)};
    int rc;

    /* The generation row first, as in commit: other nodes follow records. */
    if ((rc = exec(s, "BEGIN", "begin")) != 0 || (rc = run(s, Q_BUMP_GENERATION, NULL, NULL)) != 0 ||
        (rc = run(s, Q_DNS_PUT, params, NULL)) != 0)
        goto out;
    rc = exec(s, "COMMIT", "commit");
out:
    if (rc != 0)
        rollback(s);
    return rc;
}

static int dns_delete(pg_store *s, const char *name, const char *type)
{
    PGresult *r = NULL;
    const char *params[] = {name, type};
    int rc;

    if ((rc = exec(s, "BEGIN", "begin")) != 0 || (rc = run(s, Q_BUMP_GENERATION, NULL, NULL)) != 0 ||
        (rc = run(s, Q_DNS_DELETE, params, &r)) != 0)
        goto out;
    if (changes(r) == 0) {
        rc = -ENOENT;
        goto out;
    }
    rc = exec(s, "COMMIT", "commit");
out:
    if (rc != 0)
        rollback(s);
    PQclear(r);
    return rc;
}

/* ---- the ops ---- */

static int pg_load_state(void *b, ptc_state **out)
{
    CALL(b, load_state(b, out));
}

static int pg_next_revision(void *b, int64_t *number)
{
    CALL(b, next_revision(b, number));
}

static int pg_commit(void *b, const ptc_state *prev, const ptc_state *next, const ptc_revision *meta)
{
    CALL(b, commit(b, prev, next, meta));
}

static int pg_state_at(void *b, int64_t n, ptc_state **out)
{
    CALL(b, state_at(b, n, out));
}

static int pg_revisions(void *b, size_t limit, ptc_revision_list *out)
{
    CALL(b, revisions(b, limit, out));
}

static int pg_cert_put(void *b, const ptc_cert *c)
{
    CALL(b, cert_put(b, c));
}

static int pg_cert_delete(void *b, const char *domain)
{
    CALL(b, cert_delete(b, domain));
}

static int pg_audit_append_many(void *b, const ptc_audit_entry *e, size_t n)
{
    CALL(b, audit_append_many(b, e, n));
}

static int pg_audit_append(void *b, const ptc_audit_entry *e)
{
    CALL(b, audit_append_many(b, e, 1));
}

static int pg_audit_begin(void *b, const ptc_audit_entry *e, int64_t *id)
{
    CALL(b, audit_begin(b, e, id));
}

static int pg_audit_finish(void *b, int64_t id, const char *result, const char *error_code,
                           const char *detail)
{
    CALL(b, finish_audit(b, id, result, error_code, detail));
}

static int pg_audit_interrupted(void *b, const char *node, int64_t *n)
{
    CALL(b, audit_interrupted(b, node, n));
}

static int pg_audit_list(void *b, int64_t since, size_t limit, ptc_audit_list *out)
{
    CALL(b, audit_list(b, since, limit, out));
}

static int pg_kv_get(void *b, const char *key, char **value)
{
    CALL(b, kv_get(b, key, value));
}

static int pg_kv_set(void *b, const char *key, const char *value)
{
    CALL(b, kv_set(b, key, value));
}

static int pg_schema_version(void *b)
{
    CALL(b, schema_version(b));
}

static int pg_generation(void *b, int64_t *gen)
{
    CALL(b, generation(b, gen));
}

static int pg_ports_list(void *b, const char *owner, bool with_released, ptc_port_list *out)
{
    CALL(b, ports_list(b, owner, with_released, out));
}

static int pg_port_insert(void *b, unsigned port, const char *owner, unsigned internal_port, int64_t ts)
{
    CALL(b, port_insert(b, port, owner, internal_port, ts));
}

static int pg_ports_release(void *b, const char *owner, int64_t ts, size_t *n)
{
    CALL(b, ports_release(b, owner, ts, n));
}

static int pg_dns_list(void *b, ptc_dns_record_list *out)
{
    CALL(b, dns_list(b, out));
}

static int pg_dns_put(void *b, const ptc_dns_record *r)
{
    CALL(b, dns_put(b, r));
}

static int pg_dns_delete(void *b, const char *name, const char *type)
{
    CALL(b, dns_delete(b, name, type));
}

const ptc_store_ops ptc_store_pg_ops = {
    .close = pg_close,
    .load_state = pg_load_state,
    .next_revision = pg_next_revision,
    .commit = pg_commit,
    .state_at = pg_state_at,
    .revisions = pg_revisions,
    .cert_put = pg_cert_put,
    .cert_delete = pg_cert_delete,
    .audit_append = pg_audit_append,
    .audit_append_many = pg_audit_append_many,
    .audit_begin = pg_audit_begin,
    .audit_finish = pg_audit_finish,
    .audit_interrupted = pg_audit_interrupted,
    .audit_list = pg_audit_list,
    .kv_get = pg_kv_get,
    .kv_set = pg_kv_set,
    .schema_version = pg_schema_version,
    .generation = pg_generation,
    .ports_list = pg_ports_list,
    .port_insert = pg_port_insert,
    .ports_release = pg_ports_release,
    .dns_list = pg_dns_list,
    .dns_put = pg_dns_put,
    .dns_delete = pg_dns_delete,
};
