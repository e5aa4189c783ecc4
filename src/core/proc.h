/* Running other programs (nginx -t, the reload command, certbot, caddy)
 * with argument vectors, never through a shell.  Children get their own
 * process group, default signal dispositions and no descriptor of ours but
 * stdout/stderr. */
#ifndef PTC_PROC_H
#define PTC_PROC_H

#include "core/buf.h"

#include <stdbool.h>
#include <sys/types.h>

typedef struct ptc_proc_result {
    int exit_code;   /* the exit status, or -1 when killed by a signal */
    int term_signal; /* the signal that ended it, or 0 */
    bool timed_out;  /* killed by us at the deadline */
    bool cancelled;  /* stopped by us because portico is stopping (ptc_proc_stop_all) */
    ptc_buf output;  /* stdout and stderr interleaved, at most max_output bytes */
} ptc_proc_result;

/* Runs argv (argv[0] a path, or a name looked up in PATH), waits at most
 * timeout_ms, and collects its output.  envp NULL inherits our environment.
 * Returns 0 when the program ran (see res->exit_code), or -errno when it
 * could not be started.  Blocks the calling thread; call
 * ptc_proc_result_free() afterwards in every case. */
int ptc_proc_run(const char *const argv[], char *const envp[], int timeout_ms, size_t max_output,
                 ptc_proc_result *res);
void ptc_proc_result_free(ptc_proc_result *res);

/* portico is stopping: a program running under ptc_proc_run gets SIGTERM,
 * and SIGKILL a second later, and the call returns at once with
 * res->cancelled; later calls are cancelled before they start.  So that a
 * certbot run (minutes at worst) never holds up a shutdown.  Thread-safe;
 * there is no way back. */
void ptc_proc_stop_all(void);

/* Starts argv in the background with stdout and stderr on out_fd (or
 * /dev/null when out_fd < 0) in a new process group.  Returns 0 or -errno.
 * The caller reaps it with waitpid(*pid, ...). */
int ptc_proc_spawn(const char *const argv[], char *const envp[], int out_fd, pid_t *pid);

/* A placeholder of a command template: a token equal to name expands to
 * every string of values (NULL-terminated). */
typedef struct ptc_cmd_subst {
    const char *name;
    const char *const *values;
} ptc_cmd_subst;

/* Splits cmd on white space (no quoting, no shell) into a new
 * NULL-terminated argument vector, expanding whole-token placeholders.
 * Returns 0, or -EINVAL when cmd is empty.  Free with ptc_argv_free(). */
int ptc_cmd_split(const char *cmd, const ptc_cmd_subst *subst, size_t n_subst, char ***argv_out);
void ptc_argv_free(char **argv);
/* argv joined with spaces, for logs and error details (caller frees). */
char *ptc_argv_join(const char *const argv[]);

#endif
