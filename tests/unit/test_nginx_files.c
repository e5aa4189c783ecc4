/* The nginx engine's file transactions: plan, commit, byte-for-byte
 * rollback (files, links, new and removed entries), backups and their
 * pruning by age. */
#define _XOPEN_SOURCE 700
#include "core/mem.h"
#include "core/util.h"
#include "engine/nginx_files.h"
#include "testlib.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[64];

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *at(const char *name)
{
    return ptc_path_join(root, name);
}

static void write_file(const char *name, const char *text, mode_t mode)
{
    char *p = at(name);
    CHECK_INT(ptc_file_write_atomic(p, text, strlen(text), mode), 0);
    free(p);
}

/* The content of name, or "(absent)". */
static char *content(const char *name)
{
    char *p = at(name), *text = NULL;
    if (ptc_file_read(p, 1 << 20, &text, NULL) != 0)
        text = ptc_xstrdup("(absent)");
    free(p);
    return text;
}

static mode_t mode_of(const char *name)
{
    struct stat st;
    char *p = at(name);
    int rc = stat(p, &st);
    free(p);
    return rc == 0 ? st.st_mode & 07777 : 0;
}

static void test_commit_rollback(void)
{
    ptc_nginx_txn *t = ptc_nginx_txn_new();
    char err[256];
    char *a = at("a.conf"), *b = at("b.conf"), *c = at("sub/c.conf"), *l = at("a.link"), *m = at("m.link");

    write_file("a.conf", "old a\n", 0644);
    write_file("b.conf", "old b\n", 0640);
    CHECK_INT(symlink(a, m), 0);
    /* Same bytes and mode: no change planned. */
    CHECK_INT(ptc_nginx_txn_file(t, a, "old a\n", 6, 0644, true), 0);
    CHECK_INT(ptc_nginx_txn_file(t, a, "new a\n", 6, 0644, true), 1);
    CHECK_INT(ptc_nginx_txn_file(t, b, NULL, 0, 0644, true), 1);
    CHECK_INT(ptc_nginx_txn_file(t, c, "new c\n", 6, 0600, false), 1);
    CHECK_INT(ptc_nginx_txn_link(t, l, a), 1);
    CHECK_INT(ptc_nginx_txn_link(t, m, a), 0);
    CHECK_INT(ptc_nginx_txn_link(t, m, NULL), 1);
    CHECK_INT(ptc_nginx_txn_count(t), 5);

    json_t *backups = json_array();
    char *bdir = at("backups");
    CHECK_INT(ptc_nginx_txn_backup(t, bdir, backups, err, sizeof(err)), 0);
    /* a and b existed and asked for a backup; c is new. */
    CHECK_INT(json_array_size(backups), 2);
    CHECK(strstr(json_string_value(json_array_get(backups, 0)), "/backups/a.conf-") != NULL);

    CHECK_INT(ptc_nginx_txn_commit(t, err, sizeof(err)), 0);
    char *s;
    CHECK_STR(s = content("a.conf"), "new a\n");
    free(s);
    CHECK_STR(s = content("b.conf"), "(absent)");
    free(s);
    CHECK_STR(s = content("sub/c.conf"), "new c\n");
    free(s);
    CHECK_INT(mode_of("sub/c.conf"), 0600);
    CHECK_STR(s = content("a.link"), "new a\n");
    free(s);
    CHECK(access(m, F_OK) != 0);

    CHECK_INT(ptc_nginx_txn_rollback(t), 0);
    CHECK_STR(s = content("a.conf"), "old a\n");
    free(s);
    CHECK_STR(s = content("b.conf"), "old b\n");
    free(s);
    CHECK_INT(mode_of("b.conf"), 0640);
    CHECK_STR(s = content("sub/c.conf"), "(absent)");
    free(s);
    CHECK_STR(s = content("a.link"), "(absent)");
    free(s);
    char target[256];
    ssize_t n = readlink(m, target, sizeof(target) - 1);
    CHECK(n > 0);
    if (n > 0) {
        target[n] = '\0';
        CHECK_STR(target, a);
    }
    json_t *paths = ptc_nginx_txn_paths(t);
    CHECK_INT(json_array_size(paths), 5);
    json_decref(paths);
    json_decref(backups);
    ptc_nginx_txn_free(t);
    free(a);
    free(b);
    free(c);
    free(l);
    free(m);
    free(bdir);
}

/* A commit that fails half-way is undone by the rollback. */
static void test_partial_failure(void)
{
    ptc_nginx_txn *t = ptc_nginx_txn_new();
    char err[256];
    char *x = at("x.conf"), *blocked = at("blocker/y.conf"), *blocker = at("blocker");
    write_file("x.conf", "old x\n", 0644);
    CHECK_INT(ptc_nginx_txn_file(t, x, "new x\n", 6, 0644, true), 1);
    CHECK_INT(ptc_nginx_txn_file(t, blocked, "y\n", 2, 0644, true), 1);
    /* Between plan and commit, a file takes the place of y's folder. */
    write_file("blocker", "a file where a folder should be\n", 0644);
    CHECK(ptc_nginx_txn_commit(t, err, sizeof(err)) != 0);
    CHECK(strstr(err, "blocker/y.conf") != NULL);
    char *s = content("x.conf");
    CHECK_STR(s, "new x\n");
    free(s);
    CHECK_INT(ptc_nginx_txn_rollback(t), 0);
    s = content("x.conf");
    CHECK_STR(s, "old x\n");
    free(s);
    ptc_nginx_txn_free(t);
    free(x);
    free(blocked);
    free(blocker);
}

/* Backups get unique names in one millisecond, and pruning goes by mtime,
 * by prefix, and spares the kept ones. */
static void test_backups(void)
{
    char *dir = at("bk"), *p1 = NULL, *p2 = NULL, *p3 = NULL, *other = at("bk/other-file");
    CHECK_INT(ptc_nginx_backup_write(dir, "portico-a.conf", "1", 1, &p1), 0);
    CHECK_INT(ptc_nginx_backup_write(dir, "portico-a.conf", "2", 1, &p2), 0);
    CHECK_INT(ptc_nginx_backup_write(dir, "portico-b.conf", "3", 1, &p3), 0);
    CHECK(p1 && p2 && strcmp(p1, p2) != 0);
    CHECK_INT(ptc_file_write_atomic(other, "x", 1, 0644), 0);

    /* Ten days old: p1 and the foreign file. */
    int64_t now = ptc_now_ms();
    struct timespec old[2] = {{(time_t)(now / 1000 - 10 * 86400), 0}, {(time_t)(now / 1000 - 10 * 86400), 0}};
    CHECK_INT(utimensat(AT_FDCWD, p1, old, 0), 0);
    CHECK_INT(utimensat(AT_FDCWD, p3, old, 0), 0);
    CHECK_INT(utimensat(AT_FDCWD, other, old, 0), 0);
    json_t *keep = json_pack("[s]", p3), *removed = json_array();
    CHECK_INT(ptc_nginx_backups_prune(dir, "portico-", now, 7 * 86400000LL, keep, removed), 1);
    CHECK_INT(json_array_size(removed), 1);
    CHECK_STR(json_string_value(json_array_get(removed, 0)), p1);
    CHECK(access(p1, F_OK) != 0);
    CHECK(access(p2, F_OK) == 0);
    CHECK(access(p3, F_OK) == 0);
    CHECK(access(other, F_OK) == 0);
    CHECK_INT(ptc_nginx_backups_prune(dir, "portico-", now, 7 * 86400000LL, NULL, NULL), 1);
    CHECK(access(p3, F_OK) != 0);
    char *missing = at("no-such-dir");
    CHECK_INT(ptc_nginx_backups_prune(missing, "portico-", now, 0, NULL, NULL), -ENOENT);
    free(missing);
    json_decref(keep);
    json_decref(removed);
    free(dir);
    free(p1);
    free(p2);
    free(p3);
    free(other);
}

int main(void)
{
    snprintf(root, sizeof(root), "/tmp/ptc-files-XXXXXX");
    if (mkdtemp(root) == NULL)
        return 1;
    RUN(test_commit_rollback);
    RUN(test_partial_failure);
    RUN(test_backups);
    nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    TEST_EXIT();
}
