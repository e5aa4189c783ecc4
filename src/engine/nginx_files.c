/* File transactions of the nginx engine (see nginx_files.h). */
#include "engine/nginx_files.h"

#include "core/mem.h"
#include "core/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef enum change_kind { CHANGE_FILE, CHANGE_LINK } change_kind;

typedef struct change {
    change_kind kind;
    char *path;
    bool backup;
    /* before */
    bool old_exists;
    char *old; /* bytes, or the link target */
    size_t old_len;
    mode_t old_mode;
    /* after */
    bool new_exists;
    char *data; /* bytes, or the link target */
    size_t len;
    mode_t mode;
    bool done; /* commit changed the disk for this entry */
} change;

struct ptc_nginx_txn {
    change *v;
    size_t n, cap;
};

ptc_nginx_txn *ptc_nginx_txn_new(void)
{
    return ptc_xcalloc(1, sizeof(ptc_nginx_txn));
}

void ptc_nginx_txn_free(ptc_nginx_txn *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].path);
        free(t->v[i].old);
        free(t->v[i].data);
    }
    free(t->v);
    free(t);
}

size_t ptc_nginx_txn_count(const ptc_nginx_txn *t)
{
    return t->n;
}

static change *push(ptc_nginx_txn *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 8;
        t->v = ptc_xrealloc(t->v, t->cap * sizeof(change));
    }
    change *c = &t->v[t->n++];
    memset(c, 0, sizeof(*c));
    return c;
}

int ptc_nginx_txn_file(ptc_nginx_txn *t, const char *path, const char *data, size_t len, mode_t mode,
                       bool backup)
{
    struct stat st;
    char *old = NULL;
    size_t old_len = 0;
    bool exists = false;

    if (lstat(path, &st) == 0) {
        /* Only a regular file is ours to compare; anything else is replaced. */
        exists = true;
        if (S_ISREG(st.st_mode)) {
            int rc = ptc_file_read(path, PTC_NGINX_FILE_MAX, &old, &old_len);
            if (rc != 0)
                return rc;
        } else {
            return -EISDIR;
        }
    } else if (errno != ENOENT) {
        return -errno;
    }
    if (exists == (data != NULL) &&
        (data == NULL || (old_len == len && memcmp(old, data, len) == 0 && (st.st_mode & 07777) == mode))) {
        free(old);
        return 0;
    }
    change *c = push(t);
    c->kind = CHANGE_FILE;
    c->path = ptc_xstrdup(path);
    c->backup = backup;
    c->old_exists = exists;
    c->old = old;
    c->old_len = old_len;
    c->old_mode = exists ? st.st_mode & 07777 : 0;
    c->new_exists = data != NULL;
    if (data) {
        c->data = ptc_xmalloc(len + 1);
        memcpy(c->data, data, len);
        c->data[len] = '\0';
    }
    c->len = len;
    c->mode = mode;
    return 1;
}

/* The target of the symlink at path in a new string, NULL when path is
 * absent; -errno in *rc for other failures (a non-link is "" ). */
static char *read_link(const char *path, bool *exists, int *rc)
{
    char buf[PATH_MAX];
    struct stat st;
    *rc = 0;
    *exists = false;
    if (lstat(path, &st) != 0) {
        if (errno != ENOENT)
            *rc = -errno;
        return NULL;
    }
    *exists = true;
    if (!S_ISLNK(st.st_mode)) {
        *rc = -EEXIST;
        return NULL;
    }
    ssize_t n = readlink(path, buf, sizeof(buf) - 1);
    if (n < 0) {
        *rc = -errno;
        return NULL;
    }
    buf[n] = '\0';
    return ptc_xstrdup(buf);
}

int ptc_nginx_txn_link(ptc_nginx_txn *t, const char *path, const char *target)
{
    bool exists;
    int rc;
    char *old = read_link(path, &exists, &rc);
    if (rc != 0)
        return rc;
    if (exists == (target != NULL) && (target == NULL || strcmp(old, target) == 0)) {
        free(old);
        return 0;
    }
    change *c = push(t);
    c->kind = CHANGE_LINK;
    c->path = ptc_xstrdup(path);
    c->old_exists = exists;
    c->old = old;
    c->new_exists = target != NULL;
    c->data = target ? ptc_xstrdup(target) : NULL;
    return 1;
}

int ptc_nginx_symlink_replace(const char *path, const char *target, bool sync)
{
    char suffix[17];
    char *tmp, *dir;
    int rc = 0;
    ptc_random_hex(suffix, 8);
    tmp = ptc_xasprintf("%s.tmp-%s", path, suffix);
    if (symlink(target, tmp) != 0) {
        rc = -errno;
    } else if (rename(tmp, path) != 0) {
        rc = -errno;
        unlink(tmp);
    } else if (sync) {
        dir = ptc_path_dirname(path);
        rc = ptc_fsync_dir(dir);
        free(dir);
    }
    free(tmp);
    return rc;
}

int ptc_nginx_write_nosync(const char *path, const char *data, size_t len, mode_t mode)
{
    char suffix[17];
    char *tmp;
    int rc = 0, fd;
    ptc_random_hex(suffix, 8);
    tmp = ptc_xasprintf("%s.tmp-%s", path, suffix);
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    if (fchmod(fd, mode) != 0)
        rc = -errno;
    for (size_t off = 0; rc == 0 && off < len;) {
        ssize_t w = write(fd, data + off, len - off);
        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            off += (size_t)w;
    }
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc != 0)
        unlink(tmp);
out:
    free(tmp);
    return rc;
}

int ptc_nginx_sync_fs(const char *dir)
{
    int rc = 0, fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if (syncfs(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

static int remove_entry(const char *path)
{
    if (unlink(path) != 0)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    char *dir = ptc_path_dirname(path);
    int rc = ptc_fsync_dir(dir);
    free(dir);
    return rc;
}

static int ensure_parent(const char *path)
{
    char *dir = ptc_path_dirname(path);
    int rc = ptc_mkdir_p(dir, 0755);
    free(dir);
    return rc;
}

/* Makes path hold (exists, data/len, mode) of a file or link change. */
static int put(const change *c, bool exists, const char *data, size_t len, mode_t mode)
{
    int rc;
    if (!exists)
        return remove_entry(c->path);
    rc = ensure_parent(c->path);
    if (rc != 0)
        return rc;
    if (c->kind == CHANGE_LINK)
        return ptc_nginx_symlink_replace(c->path, data, true);
    return ptc_file_write_atomic(c->path, data, len, mode);
}

int ptc_nginx_txn_commit(ptc_nginx_txn *t, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        change *c = &t->v[i];
        int rc = put(c, c->new_exists, c->data, c->len, c->mode);
        /* A half-done write leaves the old file (atomic rename), but mark it
         * anyway: restoring the old bytes is always right. */
        c->done = true;
        if (rc != 0) {
            snprintf(err, errlen, "%s: %s", c->path, strerror(-rc));
            return rc;
        }
    }
    return 0;
}

int ptc_nginx_txn_rollback(ptc_nginx_txn *t)
{
    int first = 0;
    for (size_t i = t->n; i-- > 0;) {
        change *c = &t->v[i];
        if (!c->done)
            continue;
        int rc = put(c, c->old_exists, c->old, c->old_len, c->old_mode);
        if (rc == 0)
            c->done = false;
        else if (first == 0)
            first = rc;
    }
    return first;
}

json_t *ptc_nginx_txn_paths(const ptc_nginx_txn *t)
{
    json_t *a = json_array();
    for (size_t i = 0; i < t->n; i++)
        json_array_append_new(a, json_string(t->v[i].path));
    return a;
}

int ptc_nginx_backup_write(const char *dir, const char *name, const char *data, size_t len, char **out)
{
    int64_t now = ptc_now_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;
    char stamp[64];
    char *path = NULL;
    int rc;

    gmtime_r(&secs, &tm);
    snprintf(stamp, sizeof(stamp), "%04d%02d%02dT%02d%02d%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000));
    rc = ptc_mkdir_p(dir, 0755);
    if (rc != 0)
        return rc;
    for (int n = 0; n < 1000; n++) {
        char *dir_name = ptc_path_join(dir, name);
        path =
            n == 0 ? ptc_xasprintf("%s-%s", dir_name, stamp) : ptc_xasprintf("%s-%s-%d", dir_name, stamp, n);
        free(dir_name);
        if (access(path, F_OK) != 0 && errno == ENOENT)
            break;
        free(path);
        path = NULL;
    }
    if (path == NULL)
        return -EEXIST;
    rc = ptc_file_write_atomic(path, data, len, 0644);
    if (rc != 0) {
        free(path);
        return rc;
    }
    *out = path;
    return 0;
}

int ptc_nginx_txn_backup(ptc_nginx_txn *t, const char *dir, json_t *backups, char *err, size_t errlen)
{
    for (size_t i = 0; i < t->n; i++) {
        change *c = &t->v[i];
        char *out = NULL;
        if (c->kind != CHANGE_FILE || !c->backup || !c->old_exists)
            continue;
        const char *slash = strrchr(c->path, '/');
        int rc = ptc_nginx_backup_write(dir, slash ? slash + 1 : c->path, c->old, c->old_len, &out);
        if (rc != 0) {
            snprintf(err, errlen, "backup of %s in %s: %s", c->path, dir, strerror(-rc));
            return rc;
        }
        json_array_append_new(backups, json_string(out));
        free(out);
    }
    return 0;
}

static bool in_list(const json_t *list, const char *s)
{
    for (size_t i = 0; i < json_array_size(list); i++)
        if (strcmp(json_string_value(json_array_get(list, i)), s) == 0)
            return true;
    return false;
}

int ptc_nginx_backups_prune(const char *dir, const char *prefix, int64_t now_ms, int64_t max_age_ms,
                            const json_t *keep, json_t *removed)
{
    DIR *d = opendir(dir);
    struct dirent *ent;
    int count = 0;
    size_t plen = strlen(prefix);

    if (d == NULL)
        return -errno;
    while ((ent = readdir(d)) != NULL) {
        struct stat st;
        if (strncmp(ent->d_name, prefix, plen) != 0)
            continue;
        char *path = ptc_path_join(dir, ent->d_name);
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && (keep == NULL || !in_list(keep, path))) {
            int64_t mtime = (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
            if (now_ms - mtime > max_age_ms && unlink(path) == 0) {
                count++;
                if (removed)
                    json_array_append_new(removed, json_string(path));
            }
        }
        free(path);
    }
    closedir(d);
    return count;
}
