/* Small utilities shared by every layer: clocks and time stamps, random
 * identifiers, crash-safe file writes, and string helpers. */
#ifndef PTC_UTIL_H
#define PTC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define PTC_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Wall-clock milliseconds since the epoch. */
int64_t ptc_now_ms(void);
/* Monotonic milliseconds, for durations and timeouts. */
int64_t ptc_mono_ms(void);
/* The moment ms milliseconds from now on clock (CLOCK_MONOTONIC or
 * CLOCK_REALTIME, whichever the condition variable or call waits on), as
 * the absolute deadline pthread_cond_timedwait takes (a negative ms is
 * now). */
struct timespec ptc_deadline_ms(clockid_t clock, int64_t ms);
/* Formats ms-since-epoch as RFC 3339 UTC with milliseconds
 * ("2026-11-22T10:00:00.000Z"); out needs 25 bytes. */
void ptc_time_format(int64_t ms, char *out, size_t outlen);
/* Parses what ptc_time_format writes (and whole seconds without the
 * fraction); returns 0 or -EINVAL. */
int ptc_time_parse(const char *s, int64_t *ms);

/* Fills out with 2*nbytes random lower-case hex digits and a NUL. */
void ptc_random_hex(char *out, size_t nbytes);
/* A uniformly random integer in [0, bound). */
uint64_t ptc_random_below(uint64_t bound);

/* Writes data to path crash-safely: a temporary file in the same folder,
 * fsync, rename over path, fsync of the folder.  Either the old or the new
 * content survives a crash.  Returns 0 or -errno.  Blocks on disk I/O. */
int ptc_file_write_atomic(const char *path, const void *data, size_t len, mode_t mode);
/* Reads a whole file of at most max bytes into a new NUL-terminated buffer
 * (caller frees).  Returns 0, -ENOENT, -EFBIG when larger than max, or
 * -errno. */
int ptc_file_read(const char *path, size_t max, char **out, size_t *len);
/* mkdir -p with the given mode for created folders.  Returns 0 or -errno
 * (-ENOENT for an empty path). */
int ptc_mkdir_p(const char *path, mode_t mode);
/* fsync of a folder, so that renames and unlinks in it are durable. */
int ptc_fsync_dir(const char *path);
/* The folder part of path, in a new string. */
char *ptc_path_dirname(const char *path);
/* "a" + "/" + "b" in a new string. */
char *ptc_path_join(const char *a, const char *b);

/* Lower-cases ASCII letters in place. */
void ptc_str_lower(char *s);
bool ptc_str_has_prefix(const char *s, const char *prefix);
/* Compares two strings in time independent of where they differ (for
 * secrets); the lengths may leak. */
bool ptc_str_equal_ct(const char *a, const char *b);
/* Whether s[0..len) is 1 to max base64url characters (RFC 4648 §5, no
 * padding): ACME tokens and nonces, challenge file names. */
bool ptc_str_is_base64url(const char *s, size_t len, size_t max);
/* UTF-8 (RFC 3629: no overlong forms, no surrogates, nothing above
 * U+10FFFF).  ptc_utf8_len: the length (1-4) of the valid sequence that
 * starts at s, 0 when none does (or *s is NUL).  ptc_utf8_repair: s with
 * every byte that starts no valid sequence replaced by U+FFFD, in a new
 * string: what a value of unknown bytes (a decoded URL, a peer's message)
 * becomes before it goes into JSON, the audit trail or a log line. */
size_t ptc_utf8_len(const char *s);
bool ptc_utf8_valid(const char *s);
char *ptc_utf8_repair(const char *s);
/* A connection URI's password ("scheme://user:PASSWORD@host..."): its
 * offset and length in uri, or false when it has none.  The user info is
 * taken up to the last '@', so that a password holding a raw '@' or '/'
 * (which libpq would cut short) is found whole. */
bool ptc_uri_password(const char *uri, size_t *off, size_t *len);
/* uri with that password and the value of every password= parameter
 * replaced by ***, in a new string: what a log line or `portico config`
 * may show of a connection URI. */
char *ptc_uri_mask_password(const char *uri);
/* Parses a decimal integer in [min, max] with nothing else around it. */
int ptc_parse_int(const char *s, long long min, long long max, long long *out);

#endif
