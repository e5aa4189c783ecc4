/* The files of one nginx apply as a transaction (DESIGN §3 steps 3-5): each
 * planned change remembers what was there before (bytes and mode, or a
 * symlink's target, or nothing), so that a failed test or reload puts every
 * file back byte for byte and deletes the files that were new.  Backups of
 * replaced files go to the backup folder, named {file}-{UTC time stamp}.
 *
 * Not thread-safe: one transaction belongs to one apply.  Every function
 * blocks on disk I/O. */
#ifndef PTC_ENGINE_NGINX_FILES_H
#define PTC_ENGINE_NGINX_FILES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PTC_NGINX_FILE_MAX (16u << 20) /* largest file read back (a domain with many proxies) */

typedef struct ptc_nginx_txn ptc_nginx_txn;

ptc_nginx_txn *ptc_nginx_txn_new(void);
void ptc_nginx_txn_free(ptc_nginx_txn *t);

/* Plans path (absolute) to hold len bytes of data with mode, or to be
 * absent when data is NULL; backup asks for a copy of the current file in
 * ptc_nginx_txn_backup (never set for private keys).  Returns 1 when a
 * change is planned, 0 when the file already is so, -errno when its
 * current state cannot be read. */
int ptc_nginx_txn_file(ptc_nginx_txn *t, const char *path, const char *data, size_t len, mode_t mode,
                       bool backup);

/* Plans a symlink at path pointing to target, or no entry at all when
 * target is NULL.  Returns like ptc_nginx_txn_file. */
int ptc_nginx_txn_link(ptc_nginx_txn *t, const char *path, const char *target);

size_t ptc_nginx_txn_count(const ptc_nginx_txn *t);

/* Copies each planned file that exists and asked for a backup to
 * dir/{basename}-{YYYYmmddTHHMMSS.mmmZ}[-N] (unique, sortable); appends
 * the backup paths to backups.  Returns 0 or -errno (err names the path). */
int ptc_nginx_txn_backup(ptc_nginx_txn *t, const char *dir, json_t *backups, char *err, size_t errlen);

/* Applies the plan in order (atomic writes, atomic symlink replacement,
 * removals), creating missing parent folders (0755).  Stops at the first
 * failure: -errno, the path in err.  Call ptc_nginx_txn_rollback then. */
int ptc_nginx_txn_commit(ptc_nginx_txn *t, char *err, size_t errlen);

/* Undoes what commit did, in reverse order; goes on past failures and
 * returns the first -errno (0 when everything was restored). */
int ptc_nginx_txn_rollback(ptc_nginx_txn *t);

/* The planned paths as a new JSON array. */
json_t *ptc_nginx_txn_paths(const ptc_nginx_txn *t);

/* Deletes files of dir whose name starts with prefix and whose mtime is
 * older than max_age_ms before now_ms, except those in keep (paths);
 * appends the deleted paths to removed (may be NULL).  Returns how many
 * were deleted, or -errno when dir cannot be read. */
int ptc_nginx_backups_prune(const char *dir, const char *prefix, int64_t now_ms, int64_t max_age_ms,
                            const json_t *keep, json_t *removed);

/* Writes a copy of data as dir/{name}-{stamp} like ptc_nginx_txn_backup;
 * the new path in *out (caller frees).  Returns 0 or -errno. */
int ptc_nginx_backup_write(const char *dir, const char *name, const char *data, size_t len, char **out);

/* Replaces (or creates) the symlink path -> target atomically; with sync,
 * durably (fsync of the folder). */
int ptc_nginx_symlink_replace(const char *path, const char *target, bool sync);

/* Writes path atomically (temporary file, rename) but without fsync: for
 * start-up, which re-renders everything from the store anyway and ends
 * with one ptc_nginx_sync_fs() instead of three fsyncs per file. */
int ptc_nginx_write_nosync(const char *path, const char *data, size_t len, mode_t mode);

/* syncfs() of the file system holding dir.  Returns 0 or -errno. */
int ptc_nginx_sync_fs(const char *dir);

#endif
