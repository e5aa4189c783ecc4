/* nginx processes: finding a master and its workers through /proc (to
 * confirm that a reload took effect, since `nginx -s reload` returns
 * before the new workers serve), and a managed master that portico
 * starts, supervises from a thread (restarting it with backoff when it
 * dies) and stops. */
#ifndef PTC_ENGINE_NGINX_PROC_H
#define PTC_ENGINE_NGINX_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The live process named by a pid file, or 0 (absent, garbage, gone). */
pid_t ptc_nginx_pid_read(const char *pid_file);

/* True when pid is a live nginx master whose command line holds conf_path
 * (any master when conf_path is NULL). */
bool ptc_nginx_is_master(pid_t pid, const char *conf_path);

typedef struct ptc_nginx_worker {
    pid_t pid;
    bool exiting; /* "worker process is shutting down": no longer accepts */
} ptc_nginx_worker;

/* The worker processes of master (children titled "worker process"), at
 * most max of them into out.  Returns how many were found.  Reads /proc. */
size_t ptc_nginx_workers(pid_t master, ptc_nginx_worker *out, size_t max);

/* Waits at most timeout_ms until master has a worker not in before (n
 * pids) that accepts, and every worker of before is gone or exiting.
 * Returns 0, -ETIMEDOUT, or -ESRCH when master died. */
int ptc_nginx_wait_new_workers(pid_t master, const pid_t *before, size_t n, int64_t timeout_ms);

/* The end of a log file (at most outlen - 1 bytes, ~600), for messages. */
void ptc_nginx_log_tail(const char *path, char *out, size_t outlen);

/* A managed nginx master. */
typedef struct ptc_nginx_proc ptc_nginx_proc;

/* argv: nginx and its -p/-e/-c options (copied; "-g daemon off;" is
 * added).  pid_file and conf_path identify a master of ours; log_path
 * gets nginx's stderr; stop_timeout_ms bounds a graceful stop. */
ptc_nginx_proc *ptc_nginx_proc_new(const char *const *argv, const char *pid_file, const char *conf_path,
                                   const char *log_path, int64_t stop_timeout_ms);

/* Makes a master run: adopts one of ours left running (by the pid file:
 * e.g. after portico was killed), else starts one and waits at most
 * timeout_ms until it serves; then supervises it.  *adopted tells which.
 * Returns 0 or -errno with nginx's own words in err.  Blocks. */
int ptc_nginx_proc_start(ptc_nginx_proc *p, int64_t timeout_ms, bool *adopted, char *err, size_t errlen);

/* The running master's pid, or 0. */
pid_t ptc_nginx_proc_master(ptc_nginx_proc *p);

/* How many times the supervisor restarted nginx. */
unsigned ptc_nginx_proc_restarts(ptc_nginx_proc *p);

/* Stops supervising, stops nginx (SIGQUIT, then SIGTERM and SIGKILL past
 * the deadline) and frees p.  NULL is ignored.  Blocks (bounded). */
void ptc_nginx_proc_free(ptc_nginx_proc *p);

#endif
