/* The store's contract, backend by backend: migrations, commits as
 * revisions, the state at a revision, certificates, the audit trail, small
 * values, ports and DNS records, across a reopen.  Against SQLite always;
 * with PTC_TEST_POSTGRES set to a postgres:// URI, the same cases run
 * against that database too (tests/integration/test_store_postgres.py
 * starts a server and runs this binary so). */
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"
#include "testlib.h"

#include <errno.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *pg; /* the PostgreSQL URI, or NULL */
static bool on_pg;     /* the backend the cases run against */

/* Runs SQL on the test's PostgreSQL database, besides the store. */
static void pg_exec(const char *sql)
{
    PGconn *c = PQconnectdb(pg);
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    CHECK(ok);
    PQclear(r);
    PQfinish(c);
}

/* A new, empty store location: dir (a mkdtemp template) is made for SQLite;
 * the PostgreSQL database loses every table of portico's. */
static void fresh(char *dir)
{
    CHECK(mkdtemp(dir) != NULL);
    if (on_pg)
        pg_exec("SET client_min_messages = warning;"
                "DROP TABLE IF EXISTS schema_version, generation, kv, proxies, revisions, proxy_versions,"
                " certificates, audit, ports, dns_records");
}

static ptc_store *open_store(const char *dir)
{
    char err[256];
    ptc_store *st = ptc_store_open(on_pg ? pg : "", dir, err, sizeof(err));
    if (st == NULL)
        fprintf(stderr, "open: %s\n", err);
    CHECK(st != NULL);
    return st;
}

/* Removes what fresh made. */
static void clean(const char *dir)
{
    static const char *const files[] = {"portico.db", "portico.db-wal", "portico.db-shm", "node_id"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(files); i++) {
        char *f = ptc_path_join(dir, files[i]);
        unlink(f);
        free(f);
    }
    rmdir(dir);
}

static const ptc_proxy_defaults defs = {"/health", 1000, 5000};

static ptc_proxy *mk(const char *name, const char *domain, unsigned port)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"domain\": \"%s\", \"upstream_port\": %u}", domain, port);
    json_t *j = json_loads(body, 0, NULL), *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, name, &defs, errors);
    json_decref(j);
    json_decref(errors);
    return p;
}

/* A certificate record as the store keeps it (not a real certificate). */
static ptc_cert *mk_cert(const char *domain)
{
    ptc_cert *c = ptc_cert_new();
    c->domain = strdup(domain);
    c->cert_pem = strdup("-----BEGIN CERTIFICATE-----\n");
    c->key_pem = strdup("-----BEGIN PRIVATE KEY-----\n");
    c->source = strdup("uploaded");
    c->issuer = strdup("CN=test");
    c->subject = ptc_xasprintf("CN=%s", domain);
    c->fingerprint = strdup("00");
    c->sans = calloc(1, sizeof(char *));
    c->sans[0] = strdup(domain);
    c->n_sans = 1;
    c->not_after = 123;
    return c;
}

static int64_t commit(ptc_store *st, const ptc_state *prev, const ptc_state *next, const char *summary)
{
    int64_t rev = 0;
    CHECK_INT(ptc_store_next_revision(st, &rev), 0);
    ptc_revision meta = {.number = rev,
                         .ts = ptc_now_ms(),
                         .actor = "test",
                         .action = "proxy.put",
                         .correlation_id = "c1",
                         .summary = summary};
    CHECK_INT(ptc_store_commit(st, prev, next, &meta), 0);
    return rev;
}

static void test_store_lifecycle(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    fresh(dir);
    ptc_store *st = open_store(dir);
    CHECK_INT(ptc_store_schema_version(st), 4);

    if (!on_pg) {
        char *db = ptc_path_join(dir, "portico.db");
        struct stat sb;
        CHECK_INT(stat(db, &sb), 0);
        CHECK_INT(sb.st_mode & 0777, 0600);
        free(db);
    }

    ptc_state *s0 = NULL;
    CHECK_INT(ptc_store_load_state(st, &s0), 0);
    CHECK_INT(s0->n_proxies, 0);
    CHECK_INT(s0->revision, 0);

    ptc_state *s1 = ptc_state_put_proxy(s0, mk("a", "a.com", 1));
    CHECK_INT(commit(st, s0, s1, "put a"), 1);
    ptc_state *s2 = ptc_state_put_proxy(s1, mk("b", "b.com", 2));
    CHECK_INT(commit(st, s1, s2, "put b"), 2);
    ptc_state *s2b = ptc_state_delete_proxy(s2, "a");
    ptc_state *s3 = ptc_state_put_proxy(s2b, mk("b", "b.com", 3));
    ptc_state_release(s2b);
    CHECK_INT(commit(st, s2, s3, "delete a, change b"), 3);

    /* A taken revision number is a conflict, not an overwrite. */
    ptc_revision dup = {.number = 3, .ts = 1, .summary = "dup"};
    CHECK_INT(ptc_store_commit(st, s3, s1, &dup), -EEXIST);

    ptc_state *at1 = NULL, *at2 = NULL, *now = NULL;
    CHECK_INT(ptc_store_state_at(st, 1, &at1), 0);
    CHECK_INT(at1->n_proxies, 1);
    CHECK_STR(at1->proxies[0]->name, "a");
    CHECK_INT(ptc_store_state_at(st, 2, &at2), 0);
    CHECK_INT(at2->n_proxies, 2);
    CHECK_INT(ptc_state_proxy(at2, "b")->upstreams[0].port, 2);
    CHECK_INT(ptc_store_state_at(st, 99, &now), -ENOENT);

    ptc_revision_list revs;
    CHECK_INT(ptc_store_revisions(st, 10, &revs), 0);
    CHECK_INT(revs.n, 3);
    CHECK_INT(revs.items[0].number, 3);
    CHECK_STR(revs.items[0].summary, "delete a, change b");
    CHECK_INT(revs.items[0].n_proxies, 1);
    ptc_revision_list_free(&revs);

    ptc_audit_entry e = {.ts = 5000,
                         .correlation_id = "abc",
                         .actor = "local",
                         .action = "proxy.put",
                         .droplet_name = "a",
                         .domain = "a.com",
                         .result = "failure",
                         .error_code = "NGINX_TEST_FAILED",
                         .detail = "nginx said no"};
    CHECK_INT(ptc_store_audit_append(st, &e), 0);
    e.ts = 9000;
    e.result = "success";
    e.error_code = NULL;
    CHECK_INT(ptc_store_audit_append(st, &e), 0);
    ptc_audit_list al;
    CHECK_INT(ptc_store_audit_list(st, 6000, 10, &al), 0);
    CHECK_INT(al.n, 1);
    CHECK_STR(al.items[0].result, "success");
    CHECK(al.items[0].error_code == NULL);
    ptc_audit_list_free(&al);
    CHECK_INT(ptc_store_audit_list(st, 0, 10, &al), 0);
    CHECK_INT(al.n, 2);
    CHECK_STR(al.items[0].error_code, "NGINX_TEST_FAILED");
    ptc_audit_list_free(&al);
    /* Without since: the newest entries, still oldest first. */
    CHECK_INT(ptc_store_audit_list(st, -1, 1, &al), 0);
    CHECK_INT(al.n, 1);
    CHECK_STR(al.items[0].result, "success");
    ptc_audit_list_free(&al);
    CHECK_INT(ptc_store_audit_list(st, -1, 10, &al), 0);
    CHECK_INT(al.n, 2);
    CHECK(al.items[0].id < al.items[1].id);
    CHECK_STR(al.items[1].result, "success");
    ptc_audit_list_free(&al);

    /* An attempt's row finished by the commit of its change, in the same
     * transaction; a commit that fails leaves it in progress. */
    int64_t audit_id = 0;
    e.ts = 9500;
    CHECK_INT(ptc_store_audit_begin(st, &e, &audit_id), 0);
    CHECK(audit_id > 0);
    ptc_state *s4 = ptc_state_put_proxy(s3, mk("c", "c.com", 4));
    ptc_revision taken = {.number = 3, .ts = 1, .summary = "dup", .audit_id = audit_id, .audit_detail = "no"};
    CHECK_INT(ptc_store_commit(st, s3, s4, &taken), -EEXIST);
    CHECK_INT(ptc_store_audit_list(st, 9500, 10, &al), 0);
    CHECK_INT(al.n, 1);
    CHECK_STR(al.items[0].result, "in_progress");
    ptc_audit_list_free(&al);
    ptc_revision meta4 = {.number = 4,
                          .ts = 9600,
                          .actor = "test",
                          .action = "proxy.put",
                          .summary = "put c",
                          .audit_id = audit_id,
                          .audit_detail = "put c; revision 4"};
    CHECK_INT(ptc_store_commit(st, s3, s4, &meta4), 0);
    CHECK_INT(ptc_store_audit_list(st, 9500, 10, &al), 0);
    CHECK_INT(al.n, 1);
    CHECK_STR(al.items[0].result, "success");
    CHECK_STR(al.items[0].detail, "put c; revision 4");
    ptc_audit_list_free(&al);
    ptc_state_release(s4);

    ptc_cert *c = mk_cert("b.com");
    CHECK_INT(ptc_store_cert_put(st, c), 0);
    ptc_cert_release(c);

    char *v = NULL;
    CHECK_INT(ptc_store_kv_get(st, "acme.account", &v), -ENOENT);
    CHECK_INT(ptc_store_kv_set(st, "acme.account", "{}"), 0);
    ptc_store_close(st);

    /* Everything survives a reopen. */
    st = open_store(dir);
    CHECK_INT(ptc_store_load_state(st, &now), 0);
    CHECK_INT(now->revision, 4);
    CHECK_INT(now->n_proxies, 2);
    CHECK_INT(ptc_state_proxy(now, "b")->upstreams[0].port, 3);
    CHECK_INT(ptc_state_proxy(now, "b")->revision, 0); /* the spec keeps what the caller stored */
    CHECK_INT(now->n_certs, 1);
    CHECK_STR(now->certs[0]->sans[0], "b.com");
    CHECK_INT(ptc_store_kv_get(st, "acme.account", &v), 0);
    CHECK_STR(v, "{}");
    free(v);
    CHECK_INT(ptc_store_cert_delete(st, "b.com"), 0);
    CHECK_INT(ptc_store_cert_delete(st, "b.com"), -ENOENT);
    ptc_store_close(st);

    ptc_state_release(s0);
    ptc_state_release(s1);
    ptc_state_release(s2);
    ptc_state_release(s3);
    ptc_state_release(at1);
    ptc_state_release(at2);
    ptc_state_release(now);
    clean(dir);
}

/* Two nodes on one store: the generation moves with every commit and
 * certificate write of either, and each counts only its own writes. */
static void test_generation(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    int64_t g = -1, g2 = -1;
    fresh(dir);
    ptc_store *a = open_store(dir);
    ptc_store *b = open_store(dir);
    CHECK_INT(ptc_store_generation(a, &g), 0);
    CHECK_INT(g, 0);

    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 = ptc_state_put_proxy(s0, mk("a", "a.com", 1));
    commit(a, s0, s1, "put a");
    CHECK_INT(ptc_store_generation(b, &g), 0);
    CHECK_INT(g, 1);

    ptc_cert *c = mk_cert("a.com");
    CHECK_INT(ptc_store_cert_put(b, c), 0);
    ptc_cert_release(c);
    CHECK_INT(ptc_store_generation(a, &g), 0);
    CHECK_INT(g, 2);
    /* A failed write moves nothing. */
    CHECK_INT(ptc_store_cert_delete(a, "nope.com"), -ENOENT);
    ptc_revision taken = {.number = 1, .ts = 1, .summary = "dup"};
    CHECK_INT(ptc_store_commit(b, s0, s1, &taken), -EEXIST);
    CHECK_INT(ptc_store_cert_delete(a, "a.com"), 0);
    CHECK_INT(ptc_store_generation(b, &g2), 0);
    CHECK_INT(g2, 3);
    CHECK_INT(ptc_store_own_writes(a), 2);
    CHECK_INT(ptc_store_own_writes(b), 1);
    /* DNS records are part of what a node follows. */
    ptc_dns_record rec = {.name = "x.zone", .type = "A", .value = "10.0.0.1", .ttl = 60};
    CHECK_INT(ptc_store_dns_put(a, &rec), 0);
    CHECK_INT(ptc_store_dns_delete(b, "x.zone", NULL), 0);
    CHECK_INT(ptc_store_dns_delete(b, "x.zone", NULL), -ENOENT);
    CHECK_INT(ptc_store_generation(a, &g), 0);
    CHECK_INT(g, 5);

    ptc_state_release(s0);
    ptc_state_release(s1);
    ptc_store_close(a);
    ptc_store_close(b);
    clean(dir);
}

/* Many audit entries in one transaction, in order, after single ones. */
static void test_audit_many(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    fresh(dir);
    ptc_store *st = open_store(dir);
    ptc_audit_entry one = {.ts = 1, .actor = "local", .action = "proxy.put", .result = "success"};
    CHECK_INT(ptc_store_audit_append(st, &one), 0);
    ptc_audit_entry many[300];
    char names[300][16];
    for (int i = 0; i < 300; i++) {
        snprintf(names[i], sizeof(names[i]), "p%d", i);
        many[i] = (ptc_audit_entry){.ts = 2 + i,
                                    .correlation_id = "c",
                                    .actor = "health-check",
                                    .action = "health.transition",
                                    .droplet_name = names[i],
                                    .result = "success",
                                    .error_code = i % 2 ? "UPSTREAM_UNHEALTHY" : NULL,
                                    .detail = "{}"};
    }
    CHECK_INT(ptc_store_audit_append_many(st, many, 300), 0);
    CHECK_INT(ptc_store_audit_append_many(st, many, 0), 0);
    ptc_audit_list al;
    CHECK_INT(ptc_store_audit_list(st, 0, 1000, &al), 0);
    CHECK_INT(al.n, 301);
    CHECK_STR(al.items[0].action, "proxy.put");
    CHECK_STR(al.items[300].droplet_name, "p299");
    CHECK_STR(al.items[300].error_code, "UPSTREAM_UNHEALTHY");
    CHECK(al.items[1].error_code == NULL);
    ptc_audit_list_free(&al);
    ptc_store_close(st);
    clean(dir);
}

/* Ports: an active port and an owner's active internal port exist once;
 * a release keeps the rows.  DNS: one value per (name, type), a
 * replacement keeps created_at.  Attempts left in progress are marked
 * interrupted. */
static void test_ports_dns_and_interrupted(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    fresh(dir);
    ptc_store *st = open_store(dir);
    ptc_port_list pl;
    size_t n = 99;

    CHECK_INT(ptc_store_port_insert(st, 9000, "a", 80, 1), 0);
    CHECK_INT(ptc_store_port_insert(st, 9000, "b", 80, 2), -EEXIST);
    CHECK_INT(ptc_store_port_insert(st, 9001, "a", 80, 3), -EEXIST);
    CHECK_INT(ptc_store_port_insert(st, 9001, "a", 443, 4), 0);
    CHECK_INT(ptc_store_ports_list(st, "a", false, &pl), 0);
    CHECK_INT(pl.n, 2);
    CHECK_INT(pl.items[0].port, 9000);
    CHECK_INT(pl.items[0].internal_port, 80);
    CHECK_STR(pl.items[0].status, "active");
    CHECK_INT(pl.items[0].allocated_at, 1);
    CHECK_INT(pl.items[0].released_at, 0);
    ptc_port_list_free(&pl);
    CHECK_INT(ptc_store_ports_release(st, "a", 10, &n), 0);
    CHECK_INT(n, 2);
    CHECK_INT(ptc_store_ports_release(st, "a", 11, &n), -ENOENT);
    CHECK_INT(n, 0);
    CHECK_INT(ptc_store_port_insert(st, 9000, "b", 80, 12), 0);
    CHECK_INT(ptc_store_ports_list(st, NULL, true, &pl), 0);
    CHECK_INT(pl.n, 3);
    CHECK_STR(pl.items[0].owner, "a");
    CHECK_STR(pl.items[0].status, "released");
    CHECK_INT(pl.items[0].released_at, 10);
    CHECK_STR(pl.items[1].owner, "b");
    CHECK_INT(pl.items[2].port, 9001);
    ptc_port_list_free(&pl);
    CHECK_INT(ptc_store_ports_list(st, NULL, false, &pl), 0);
    CHECK_INT(pl.n, 1);
    ptc_port_list_free(&pl);

    ptc_dns_record r = {
        .name = "a.zone", .type = "A", .value = "192.0.2.1", .ttl = 300, .created_at = 1, .updated_at = 1};
    CHECK_INT(ptc_store_dns_put(st, &r), 0);
    r.type = "AAAA";
    r.value = "2001:db8::1";
    CHECK_INT(ptc_store_dns_put(st, &r), 0);
    r = (ptc_dns_record){
        .name = "a.zone", .type = "A", .value = "192.0.2.2", .ttl = 60, .created_at = 9, .updated_at = 9};
    CHECK_INT(ptc_store_dns_put(st, &r), 0);
    r.name = "B.zone";
    CHECK_INT(ptc_store_dns_put(st, &r), 0);
    ptc_dns_record_list dl;
    CHECK_INT(ptc_store_dns_list(st, &dl), 0);
    CHECK_INT(dl.n, 3);
    CHECK_STR(dl.items[0].name, "B.zone"); /* byte order, as SQLite's */
    CHECK_STR(dl.items[1].type, "A");
    CHECK_STR(dl.items[1].value, "192.0.2.2");
    CHECK_INT(dl.items[1].ttl, 60);
    CHECK_INT(dl.items[1].created_at, 1);
    CHECK_INT(dl.items[1].updated_at, 9);
    CHECK_STR(dl.items[2].type, "AAAA");
    ptc_dns_record_list_free(&dl);
    CHECK_INT(ptc_store_dns_delete(st, "a.zone", "AAAA"), 0);
    CHECK_INT(ptc_store_dns_delete(st, "a.zone", "AAAA"), -ENOENT);
    CHECK_INT(ptc_store_dns_delete(st, "a.zone", NULL), 0);
    CHECK_INT(ptc_store_dns_delete(st, "a.zone", NULL), -ENOENT);
    CHECK_INT(ptc_store_dns_list(st, &dl), 0);
    CHECK_INT(dl.n, 1);
    ptc_dns_record_list_free(&dl);

    char *v = NULL;
    CHECK_INT(ptc_store_kv_set(st, "k", "1"), 0);
    CHECK_INT(ptc_store_kv_set(st, "k", "2"), 0);
    CHECK_INT(ptc_store_kv_get(st, "k", &v), 0);
    CHECK_STR(v, "2");
    free(v);

    /* A second node on the same store, with a state_dir of its own. */
    char dir2[] = "/tmp/portico-store-XXXXXX", err[256] = "";
    CHECK(mkdtemp(dir2) != NULL);
    char *db = ptc_xasprintf("sqlite:%s/portico.db", dir);
    ptc_store *other = ptc_store_open(on_pg ? pg : db, dir2, err, sizeof(err));
    CHECK(other != NULL);
    CHECK(strlen(ptc_store_node(st)) == 32 && strcmp(ptc_store_node(st), ptc_store_node(other)) != 0);

    ptc_audit_entry e = {
        .ts = 1, .actor = "local", .action = "proxy.put", .result = "success", .detail = "put x"};
    int64_t id1 = 0, id2 = 0, id3 = 0, interrupted = -1;
    CHECK_INT(ptc_store_audit_begin(st, &e, &id1), 0);
    CHECK_INT(ptc_store_audit_begin(st, &e, &id2), 0);
    CHECK_INT(ptc_store_audit_begin(other, &e, &id3), 0);
    CHECK(id2 > id1 && id3 > id2);
    CHECK_INT(ptc_store_audit_finish(st, id1, "failure", "ENGINE_FAILED", "no"), 0);
    /* Only this node's attempt is marked: the other node's may be running. */
    CHECK_INT(ptc_store_audit_interrupted(st, &interrupted), 0);
    CHECK_INT(interrupted, 1);
    ptc_audit_list al;
    CHECK_INT(ptc_store_audit_list(st, 0, 10, &al), 0);
    CHECK_INT(al.n, 3);
    CHECK_STR(al.items[0].error_code, "ENGINE_FAILED");
    CHECK_STR(al.items[0].node, ptc_store_node(st));
    CHECK_STR(al.items[1].result, "interrupted");
    CHECK_STR(al.items[1].detail, "put x (portico stopped before the change completed)");
    CHECK_STR(al.items[2].result, "in_progress");
    CHECK_STR(al.items[2].node, ptc_store_node(other));
    ptc_audit_list_free(&al);
    CHECK_INT(ptc_store_audit_interrupted(other, &interrupted), 0);
    CHECK_INT(interrupted, 1);

    /* The node id stays with the state_dir across restarts. */
    char node[33];
    snprintf(node, sizeof(node), "%s", ptc_store_node(st));
    ptc_store_close(st);
    st = open_store(dir);
    CHECK_STR(ptc_store_node(st), node);
    ptc_store_close(st);
    ptc_store_close(other);
    free(db);
    clean(dir2);
    clean(dir);
}

/* A store whose schema is newer than this build knows is refused. */
static void test_newer_schema_refused(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX", err[256] = "";
    fresh(dir);
    ptc_store_close(open_store(dir));
    if (on_pg) {
        pg_exec("UPDATE schema_version SET version = 99");
    } else {
        sqlite3 *db = NULL;
        char *path = ptc_path_join(dir, "portico.db");
        CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
        CHECK_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_close(db);
        free(path);
    }
    CHECK(ptc_store_open(on_pg ? pg : "", dir, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "schema version 99 is newer") != NULL);
    clean(dir);
}

/* PostgreSQL: sessions the server ends while the store sits idle (a
 * terminated backend, a restart) are replaced before the next call sends
 * anything, so that even a lone write goes through. */
static void test_session_ended_while_idle(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    fresh(dir);
    ptc_store *st = open_store(dir);
    ptc_audit_entry e = {.ts = 1, .actor = "local", .action = "proxy.put", .result = "success"};
    ptc_audit_list al;
    for (int i = 0; i < 2; i++) {
        pg_exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'portico' AND datname = current_database()");
        /* The server's goodbye is on its way once the backend is gone. */
        pg_exec("DO $$ BEGIN WHILE EXISTS (SELECT 1 FROM pg_stat_activity"
                " WHERE application_name = 'portico' AND datname = current_database())"
                " LOOP PERFORM pg_sleep(0.01); END LOOP; END $$");
        CHECK_INT(ptc_store_audit_append(st, &e), 0);
    }
    CHECK_INT(ptc_store_audit_list(st, 0, 10, &al), 0);
    CHECK_INT(al.n, 2);
    ptc_audit_list_free(&al);
    ptc_store_close(st);
    clean(dir);
}

static void test_bad_specs(void)
{
    char err[256];
    CHECK(ptc_store_open("mysql://x", "/tmp", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "unknown scheme") != NULL);
    CHECK(ptc_store_open("sqlite:/nonexistent-dir/x.db", "/tmp", err, sizeof(err)) == NULL);
    /* Nothing listens on port 1: the reason names the server, never the
     * password. */
    CHECK(ptc_store_open("postgres://portico:pw-Xyzzy@127.0.0.1:1/portico", "/tmp", err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "postgres://portico:***@127.0.0.1:1/portico") != NULL);
    CHECK(strstr(err, "127.0.0.1") != NULL && strstr(err, "Xyzzy") == NULL);
    CHECK(ptc_store_open("postgresql://127.0.0.1:1/portico?password=pw-Xyzzy&connect_timeout=2", "/tmp", err,
                         sizeof(err)) == NULL);
    CHECK(strstr(err, "Xyzzy") == NULL);
    /* libpq would cut the password at a raw '@' or '/' and show the rest
     * as a host name. */
    CHECK(ptc_store_open("postgres://portico:pw@Xyzzy@127.0.0.1:1/portico", "/tmp", err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "percent-encode") != NULL && strstr(err, "Xyzzy") == NULL);
    /* libpq's parse errors quote the piece they choke on. */
    CHECK(ptc_store_open("postgres://portico:pw%zzXyzzy@127.0.0.1:1/portico", "/tmp", err, sizeof(err)) ==
          NULL);
    CHECK(strstr(err, "not a valid") != NULL && strstr(err, "Xyzzy") == NULL);
}

static void run_cases(void)
{
    RUN(test_store_lifecycle);
    RUN(test_audit_many);
    RUN(test_generation);
    RUN(test_ports_dns_and_interrupted);
    RUN(test_newer_schema_refused);
    if (on_pg)
        RUN(test_session_ended_while_idle);
}

int main(void)
{
    pg = getenv("PTC_TEST_POSTGRES");
    printf("-- sqlite\n");
    run_cases();
    if (pg) {
        on_pg = true;
        printf("-- postgresql\n");
        run_cases();
    }
    RUN(test_bad_specs);
    TEST_EXIT();
}
