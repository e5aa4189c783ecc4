/* The SQLite store: migrations, commits as revisions, the state at a
 * revision, certificates, the audit trail and small values, across a
 * reopen. */
#include "core/mem.h"
#include "core/util.h"
#include "store/store.h"
#include "testlib.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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
    char err[256];
    CHECK(mkdtemp(dir) != NULL);
    ptc_store *st = ptc_store_open("", dir, err, sizeof(err));
    CHECK(st != NULL);
    CHECK_INT(ptc_store_schema_version(st), 3);

    char *db = ptc_path_join(dir, "portico.db");
    struct stat sb;
    CHECK_INT(stat(db, &sb), 0);
    CHECK_INT(sb.st_mode & 0777, 0600);

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
    st = ptc_store_open("", dir, err, sizeof(err));
    CHECK(st != NULL);
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
    unlink(db);
    char *wal = ptc_xasprintf("%s-wal", db), *shm = ptc_xasprintf("%s-shm", db);
    unlink(wal);
    unlink(shm);
    free(wal);
    free(shm);
    rmdir(dir);
    free(db);
}

/* Two nodes on one store: the generation moves with every commit and
 * certificate write of either, and each counts only its own writes. */
static void test_generation(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    char err[256];
    int64_t g = -1, g2 = -1;
    CHECK(mkdtemp(dir) != NULL);
    ptc_store *a = ptc_store_open("", dir, err, sizeof(err));
    ptc_store *b = ptc_store_open("", dir, err, sizeof(err));
    CHECK(a != NULL && b != NULL);
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
    char *cmd[] = {"portico.db", "portico.db-wal", "portico.db-shm"};
    for (size_t i = 0; i < 3; i++) {
        char *f = ptc_path_join(dir, cmd[i]);
        unlink(f);
        free(f);
    }
    rmdir(dir);
}

/* Many audit entries in one transaction, in order, after single ones. */
static void test_audit_many(void)
{
    char dir[] = "/tmp/portico-store-XXXXXX";
    char err[256];
    CHECK(mkdtemp(dir) != NULL);
    ptc_store *st = ptc_store_open("", dir, err, sizeof(err));
    CHECK(st != NULL);
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
    char *db = ptc_path_join(dir, "portico.db");
    char *wal = ptc_xasprintf("%s-wal", db), *shm = ptc_xasprintf("%s-shm", db);
    unlink(db);
    unlink(wal);
    unlink(shm);
    rmdir(dir);
    free(db);
    free(wal);
    free(shm);
}

static void test_bad_specs(void)
{
    char err[256];
    CHECK(ptc_store_open("mysql://x", "/tmp", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "unknown scheme") != NULL);
    CHECK(ptc_store_open("sqlite:/nonexistent-dir/x.db", "/tmp", err, sizeof(err)) == NULL);
}

int main(void)
{
    RUN(test_store_lifecycle);
    RUN(test_audit_many);
    RUN(test_generation);
    RUN(test_bad_specs);
    TEST_EXIT();
}
