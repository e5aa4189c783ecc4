/* Running programs with argument vectors (see proc.h). */
#include "core/proc.h"

#include "core/mem.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* posix_spawn with the child's stdout/stderr on out_fd, a process group of
 * its own, and signals back to their defaults (we ignore SIGPIPE, and an
 * ignored signal would otherwise stay ignored across exec). */
static int spawn(const char *const argv[], char *const envp[], int out_fd, pid_t *pid)
{
    int rc;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;

    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (out_fd >= 0) {
        posix_spawn_file_actions_adddup2(&fa, out_fd, 1);
        posix_spawn_file_actions_adddup2(&fa, out_fd, 2);
    } else {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    }
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    rc = -posix_spawnp(pid, argv[0], &fa, &attr, (char *const *)argv, envp ? envp : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc;
}

/* How often a running program is checked for ptc_proc_stop_all. */
#define STOP_POLL_MS 100
#define STOP_GRACE_MS 1000

static atomic_bool g_stopping;

void ptc_proc_stop_all(void)
{
    atomic_store(&g_stopping, true);
}

int ptc_proc_spawn(const char *const argv[], char *const envp[], int out_fd, pid_t *pid)
{
    return spawn(argv, envp, out_fd, pid);
}

int ptc_proc_run(const char *const argv[], char *const envp[], int timeout_ms, size_t max_output,
                 ptc_proc_result *res)
{
    int rc, fds[2] = {-1, -1}, status = 0;
    pid_t pid = -1;
    int64_t deadline = ptc_mono_ms() + timeout_ms;

    memset(res, 0, sizeof(*res));
    res->exit_code = -1;
    if (atomic_load(&g_stopping)) {
        res->cancelled = true;
        rc = 0;
        goto out;
    }
    if (pipe2(fds, O_CLOEXEC) != 0) {
        rc = -errno;
        goto out;
    }
    rc = spawn(argv, envp, fds[1], &pid);
    close(fds[1]);
    fds[1] = -1;
    if (rc != 0)
        goto out;

    for (;;) {
        int64_t left = deadline - ptc_mono_ms();
        if (left <= 0) {
            res->timed_out = true;
            break;
        }
        if (atomic_load(&g_stopping)) {
            res->cancelled = true;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int n = poll(&p, 1, (int)(left < STOP_POLL_MS ? left : STOP_POLL_MS));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            continue;
        char chunk[4096];
        ssize_t r = read(fds[0], chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        size_t room = res->output.len < max_output ? max_output - res->output.len : 0;
        ptc_buf_append(&res->output, chunk, (size_t)r < room ? (size_t)r : room);
    }
    if (res->timed_out) {
        kill(-pid, SIGKILL);
    } else if (res->cancelled) {
        kill(-pid, SIGTERM);
        int64_t grace = ptc_mono_ms() + STOP_GRACE_MS;
        deadline = deadline < grace ? deadline : grace;
    }
    /* The output pipe is closed; a child that closed it early but keeps
     * running is still bounded by the deadline, and by portico stopping. */
    for (;;) {
        pid_t w = waitpid(pid, &status, res->timed_out ? 0 : WNOHANG);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        if (w == 0) {
            if (ptc_mono_ms() >= deadline) {
                res->timed_out = !res->cancelled;
                kill(-pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            if (!res->cancelled && atomic_load(&g_stopping)) {
                res->cancelled = true;
                kill(-pid, SIGTERM);
                int64_t grace = ptc_mono_ms() + STOP_GRACE_MS;
                deadline = deadline < grace ? deadline : grace;
            }
            usleep(2000);
        }
    }
    if (WIFEXITED(status))
        res->exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status))
        res->term_signal = WTERMSIG(status);
out:
    if (fds[0] >= 0)
        close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    return rc;
}

void ptc_proc_result_free(ptc_proc_result *res)
{
    ptc_buf_free(&res->output);
}

int ptc_cmd_split(const char *cmd, const ptc_cmd_subst *subst, size_t n_subst, char ***argv_out)
{
    size_t n = 0, cap = 8;
    char **argv = ptc_xcalloc(cap, sizeof(char *));
    const char *p = cmd;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p && *p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            p++;
        char *tok = ptc_xstrndup(start, (size_t)(p - start));
        const ptc_cmd_subst *match = NULL;
        for (size_t i = 0; i < n_subst; i++)
            if (strcmp(tok, subst[i].name) == 0)
                match = &subst[i];
        for (size_t i = 0; match ? match->values[i] != NULL : i < 1; i++) {
            if (n + 2 > cap) {
                cap *= 2;
                argv = ptc_xrealloc(argv, cap * sizeof(char *));
            }
            argv[n++] = match ? ptc_xstrdup(match->values[i]) : ptc_xstrdup(tok);
        }
        free(tok);
    }
    argv[n] = NULL;
    if (n == 0) {
        free(argv);
        return -EINVAL;
    }
    *argv_out = argv;
    return 0;
}

void ptc_argv_free(char **argv)
{
    if (argv == NULL)
        return;
    for (char **a = argv; *a; a++)
        free(*a);
    free(argv);
}

char *ptc_argv_join(const char *const argv[])
{
    ptc_buf b = PTC_BUF_INIT;
    for (size_t i = 0; argv[i]; i++) {
        if (i)
            ptc_buf_append_str(&b, " ");
        ptc_buf_append_str(&b, argv[i]);
    }
    return ptc_buf_detach(&b);
}
