/* Structured logging: one JSON object per line (or `key=value` text for a
 * terminal), written with a single write(2) so that lines from several
 * threads never interleave.  Every line carries the calling thread's
 * correlation id when one is set, which ties log lines to the API call and
 * audit entry that caused them.
 *
 *   ptc_log_info("proxy applied", PTC_LS("domain", d), PTC_LI("ms", ms));
 */
#ifndef PTC_LOG_H
#define PTC_LOG_H

#include <stdbool.h>

typedef enum ptc_log_level { PTC_LOG_DEBUG, PTC_LOG_INFO, PTC_LOG_WARN, PTC_LOG_ERROR } ptc_log_level;

typedef enum ptc_log_kv_type {
    PTC_LOG_KV_END,
    PTC_LOG_KV_STR,
    PTC_LOG_KV_INT,
    PTC_LOG_KV_BOOL
} ptc_log_kv_type;

typedef struct ptc_log_kv {
    const char *key;
    ptc_log_kv_type type;
    const char *s; /* NULL is written as null */
    long long i;
} ptc_log_kv;

#define PTC_LS(K, V) ((ptc_log_kv){.key = (K), .type = PTC_LOG_KV_STR, .s = (V)})
#define PTC_LI(K, V) ((ptc_log_kv){.key = (K), .type = PTC_LOG_KV_INT, .i = (long long)(V)})
#define PTC_LB(K, V) ((ptc_log_kv){.key = (K), .type = PTC_LOG_KV_BOOL, .i = !!(V)})

#define ptc_log_debug(msg, ...)                                                                              \
    ptc_log_emit(PTC_LOG_DEBUG, (msg), (const ptc_log_kv[]){__VA_ARGS__ __VA_OPT__(, ){0}})
#define ptc_log_info(msg, ...)                                                                               \
    ptc_log_emit(PTC_LOG_INFO, (msg), (const ptc_log_kv[]){__VA_ARGS__ __VA_OPT__(, ){0}})
#define ptc_log_warn(msg, ...)                                                                               \
    ptc_log_emit(PTC_LOG_WARN, (msg), (const ptc_log_kv[]){__VA_ARGS__ __VA_OPT__(, ){0}})
#define ptc_log_error(msg, ...)                                                                              \
    ptc_log_emit(PTC_LOG_ERROR, (msg), (const ptc_log_kv[]){__VA_ARGS__ __VA_OPT__(, ){0}})

/* Sets the minimum level, the format (json or text) and the descriptor lines
 * go to (stderr by default).  Call once at start-up, before threads. */
void ptc_log_setup(ptc_log_level min_level, bool json, int fd);
/* Parses "debug|info|warn|error"; returns -1 when unknown. */
int ptc_log_level_parse(const char *s);
bool ptc_log_enabled(ptc_log_level level);

/* Writes one line: time, level, msg, the thread's correlation id, then the
 * fields of kv up to its {0} terminator.  Never blocks on a lock. */
void ptc_log_emit(ptc_log_level level, const char *msg, const ptc_log_kv *kv);

/* The calling thread's correlation id (copied; NULL clears it). */
void ptc_log_set_correlation_id(const char *id);
const char *ptc_log_correlation_id(void);

#endif
