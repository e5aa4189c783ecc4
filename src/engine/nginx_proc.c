/* nginx processes (see nginx_proc.h). */
#include "engine/nginx_proc.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/util.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 30000
#define STABLE_MS 60000
#define POLL_MS 200

/* State letter and parent of pid from /proc/pid/stat; 0 when gone. */
static char proc_stat(pid_t pid, pid_t *ppid)
{
    char path[64], *text = NULL, state = 0;
    size_t len;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (ptc_file_read(path, 4096, &text, &len) != 0)
        return 0;
    /* "pid (comm) S ppid ...": comm may hold spaces and parentheses. */
    char *close = strrchr(text, ')');
    int pp = 0;
    if (close && sscanf(close + 1, " %c %d", &state, &pp) == 2 && ppid)
        *ppid = (pid_t)pp;
    free(text);
    return state;
}

/* The command line of pid with NULs as spaces (nginx rewrites it into its
 * process title), in out; false when gone. */
static bool proc_cmdline(pid_t pid, char *out, size_t outlen)
{
    char path[64];
    char *text = NULL;
    size_t len;
    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    if (ptc_file_read(path, 65536, &text, &len) != 0)
        return false;
    while (len > 0 && text[len - 1] == '\0')
        len--;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\0')
            text[i] = ' ';
    snprintf(out, outlen, "%.*s", (int)len, text);
    free(text);
    return true;
}

static bool alive(pid_t pid)
{
    char st = proc_stat(pid, NULL);
    return st != 0 && st != 'Z' && st != 'X';
}

pid_t ptc_nginx_pid_read(const char *pid_file)
{
    char *text = NULL;
    long long v;
    pid_t pid = 0;
    if (ptc_file_read(pid_file, 64, &text, NULL) != 0)
        return 0;
    char *nl = strchr(text, '\n');
    if (nl)
        *nl = '\0';
    if (ptc_parse_int(text, 1, 4194304, &v) == 0 && alive((pid_t)v))
        pid = (pid_t)v;
    free(text);
    return pid;
}

bool ptc_nginx_is_master(pid_t pid, const char *conf_path)
{
    char cmd[4096];
    if (!alive(pid) || !proc_cmdline(pid, cmd, sizeof(cmd)) || strstr(cmd, "nginx: master process") == NULL)
        return false;
    if (conf_path == NULL)
        return true;
    size_t n = strlen(conf_path);
    for (const char *at = strstr(cmd, conf_path); at; at = strstr(at + 1, conf_path))
        if (at[n] == ' ' || at[n] == '\0')
            return true;
    return false;
}

size_t ptc_nginx_workers(pid_t master, ptc_nginx_worker *out, size_t max)
{
    DIR *d = opendir("/proc");
    struct dirent *ent;
    size_t n = 0;
    if (d == NULL)
        return 0;
    while ((ent = readdir(d)) != NULL && n < max) {
        char cmd[256];
        pid_t ppid = 0;
        if (!isdigit((unsigned char)ent->d_name[0]))
            continue;
        pid_t pid = (pid_t)atoi(ent->d_name);
        char st = proc_stat(pid, &ppid);
        if (ppid != master || st == 0 || st == 'Z' || !proc_cmdline(pid, cmd, sizeof(cmd)) ||
            strstr(cmd, "worker process") == NULL)
            continue;
        out[n].pid = pid;
        out[n].exiting = strstr(cmd, "shutting down") != NULL;
        n++;
    }
    closedir(d);
    return n;
}

int ptc_nginx_wait_new_workers(pid_t master, const pid_t *before, size_t n, int64_t timeout_ms)
{
    int64_t deadline = ptc_mono_ms() + timeout_ms;
    ptc_nginx_worker now[256];
    for (;;) {
        if (!alive(master))
            return -ESRCH;
        size_t m = ptc_nginx_workers(master, now, PTC_ARRAY_LEN(now));
        bool fresh = false, old_gone = true;
        for (size_t i = 0; i < m; i++) {
            bool was = false;
            for (size_t k = 0; k < n && !was; k++)
                was = before[k] == now[i].pid;
            if (!was && !now[i].exiting)
                fresh = true;
            if (was && !now[i].exiting)
                old_gone = false;
        }
        if (fresh && old_gone)
            return 0;
        if (ptc_mono_ms() >= deadline)
            return -ETIMEDOUT;
        usleep(5000);
    }
}

/* ---- the managed master ------------------------------------------------- */

struct ptc_nginx_proc {
    char **argv;
    char *pid_file, *conf_path, *log_path;
    int64_t stop_timeout_ms;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    pthread_t thread;
    bool thread_started, stopping;
    pid_t pid;  /* the master, 0 when none */
    bool child; /* started by us (reaped with waitpid), else adopted */
    unsigned restarts;
    int64_t started_at, backoff_ms, next_try;
};

ptc_nginx_proc *ptc_nginx_proc_new(const char *const *argv, const char *pid_file, const char *conf_path,
                                   const char *log_path, int64_t stop_timeout_ms)
{
    ptc_nginx_proc *p = ptc_xcalloc(1, sizeof(*p));
    size_t n = 0;
    pthread_condattr_t attr;
    while (argv[n])
        n++;
    p->argv = ptc_xcalloc(n + 3, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        p->argv[i] = ptc_xstrdup(argv[i]);
    p->argv[n] = ptc_xstrdup("-g");
    p->argv[n + 1] = ptc_xstrdup("daemon off;");
    p->pid_file = ptc_xstrdup(pid_file);
    p->conf_path = ptc_xstrdup(conf_path);
    p->log_path = ptc_xstrdup(log_path);
    p->stop_timeout_ms = stop_timeout_ms;
    p->backoff_ms = BACKOFF_MIN_MS;
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &attr);
    pthread_condattr_destroy(&attr);
    return p;
}

static int spawn(ptc_nginx_proc *p, pid_t *pid)
{
    int fd = open(p->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    int rc = ptc_proc_spawn((const char *const *)p->argv, NULL, fd, pid);
    if (fd >= 0)
        close(fd);
    return rc;
}

void ptc_nginx_log_tail(const char *path, char *out, size_t outlen)
{
    char *text = NULL;
    size_t len = 0;
    out[0] = '\0';
    if (ptc_file_read(path, 1 << 24, &text, &len) != 0)
        return;
    size_t from = len > 600 ? len - 600 : 0;
    while (len > from && (text[len - 1] == '\n' || text[len - 1] == ' '))
        len--;
    snprintf(out, outlen, "%.*s", (int)(len - from), text + from);
    free(text);
}

/* Whether the supervised master still runs; reaps it when it was ours.
 * Called with mu held. */
static bool master_alive(ptc_nginx_proc *p)
{
    if (p->pid <= 0)
        return false;
    if (p->child) {
        int status;
        pid_t w = waitpid(p->pid, &status, WNOHANG);
        if (w == p->pid) {
            if (WIFSIGNALED(status))
                ptc_log_error("managed nginx exited", PTC_LI("pid", p->pid),
                              PTC_LI("signal", WTERMSIG(status)));
            else
                ptc_log_error("managed nginx exited", PTC_LI("pid", p->pid),
                              PTC_LI("status", WEXITSTATUS(status)));
            return false;
        }
        return w == 0 || (w < 0 && errno == EINTR);
    }
    if (!ptc_nginx_is_master(p->pid, p->conf_path)) {
        ptc_log_error("managed nginx exited", PTC_LI("pid", p->pid));
        return false;
    }
    return true;
}

static void *supervise(void *arg)
{
    ptc_nginx_proc *p = arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stopping) {
        struct timespec ts = ptc_deadline_ms(CLOCK_MONOTONIC, POLL_MS);
        pthread_cond_timedwait(&p->cond, &p->mu, &ts);
        if (p->stopping)
            break;
        int64_t now = ptc_mono_ms();
        if (p->pid > 0 && !master_alive(p)) {
            /* Workers of a master that died keep the listening sockets and
             * would keep a new master from binding; they share its process
             * group, which cannot belong to anyone else while they live. */
            kill(-p->pid, SIGKILL);
            p->pid = 0;
            p->next_try = now + p->backoff_ms;
        }
        if (p->pid == 0 && now >= p->next_try) {
            pid_t pid;
            int rc = spawn(p, &pid);
            if (rc == 0) {
                p->pid = pid;
                p->child = true;
                p->started_at = now;
                p->restarts++;
                ptc_log_warn("managed nginx restarted", PTC_LI("pid", pid), PTC_LI("restarts", p->restarts),
                             PTC_LI("backoff_ms", p->backoff_ms));
            } else {
                ptc_log_error("managed nginx could not be started", PTC_LS("error", strerror(-rc)));
            }
            p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
            p->next_try = now + p->backoff_ms;
        }
        if (p->pid > 0 && now - p->started_at > STABLE_MS)
            p->backoff_ms = BACKOFF_MIN_MS;
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

int ptc_nginx_proc_start(ptc_nginx_proc *p, int64_t timeout_ms, bool *adopted, char *err, size_t errlen)
{
    pid_t pid = ptc_nginx_pid_read(p->pid_file);
    int rc = 0;

    *adopted = false;
    if (pid > 0 && ptc_nginx_is_master(pid, p->conf_path)) {
        *adopted = true;
        ptc_log_info("adopted a running managed nginx", PTC_LI("pid", pid));
    } else {
        int64_t deadline = ptc_mono_ms() + timeout_ms;
        rc = spawn(p, &pid);
        if (rc != 0) {
            snprintf(err, errlen, "cannot start %s: %s", p->argv[0], strerror(-rc));
            return rc;
        }
        for (;;) {
            int status;
            ptc_nginx_worker w;
            if (waitpid(pid, &status, WNOHANG) == pid) {
                char tail[700];
                ptc_nginx_log_tail(p->log_path, tail, sizeof(tail));
                snprintf(err, errlen, "nginx exited at start: %s", tail);
                return -ECHILD;
            }
            if (ptc_nginx_pid_read(p->pid_file) == pid && ptc_nginx_workers(pid, &w, 1) == 1)
                break;
            if (ptc_mono_ms() >= deadline) {
                kill(-pid, SIGKILL);
                waitpid(pid, &status, 0);
                snprintf(err, errlen, "nginx did not start serving within %lld ms", (long long)timeout_ms);
                return -ETIMEDOUT;
            }
            usleep(10000);
        }
        ptc_log_info("managed nginx started", PTC_LI("pid", pid));
    }
    pthread_mutex_lock(&p->mu);
    p->pid = pid;
    p->child = !*adopted;
    p->started_at = ptc_mono_ms();
    if (!p->thread_started && pthread_create(&p->thread, NULL, supervise, p) == 0)
        p->thread_started = true;
    pthread_mutex_unlock(&p->mu);
    return 0;
}

pid_t ptc_nginx_proc_master(ptc_nginx_proc *p)
{
    pthread_mutex_lock(&p->mu);
    pid_t pid = p->pid;
    pthread_mutex_unlock(&p->mu);
    return pid;
}

unsigned ptc_nginx_proc_restarts(ptc_nginx_proc *p)
{
    pthread_mutex_lock(&p->mu);
    unsigned n = p->restarts;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* Waits at most ms for the master to be gone (reaping a child). */
static bool wait_gone(ptc_nginx_proc *p, int64_t ms)
{
    int64_t deadline = ptc_mono_ms() + ms;
    for (;;) {
        if (p->child) {
            int status;
            pid_t w = waitpid(p->pid, &status, WNOHANG);
            if (w == p->pid || (w < 0 && errno == ECHILD))
                return true;
        } else if (!alive(p->pid)) {
            return true;
        }
        if (ptc_mono_ms() >= deadline)
            return false;
        usleep(10000);
    }
}

void ptc_nginx_proc_free(ptc_nginx_proc *p)
{
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
    if (p->thread_started)
        pthread_join(p->thread, NULL);
    if (p->pid > 0) {
        /* Graceful: workers finish what they serve; then harder. */
        kill(p->pid, SIGQUIT);
        if (!wait_gone(p, p->stop_timeout_ms)) {
            ptc_log_warn("managed nginx ignored SIGQUIT, terminating", PTC_LI("pid", p->pid));
            kill(p->pid, SIGTERM);
            if (!wait_gone(p, 3000)) {
                kill(-p->pid, SIGKILL);
                kill(p->pid, SIGKILL);
                wait_gone(p, 3000);
            }
        }
        ptc_log_info("managed nginx stopped", PTC_LI("pid", p->pid));
    }
    for (size_t i = 0; p->argv[i]; i++)
        free(p->argv[i]);
    free(p->argv);
    free(p->pid_file);
    free(p->conf_path);
    free(p->log_path);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p);
}
