/* The caddy engine: the desired state rendered as Caddy's JSON config
 * (caddy_render.h) and loaded whole through Caddy's admin API.
 *
 * Apply: render, POST /load (with Cache-Control: must-revalidate, or
 * Caddy skips a config equal to the running one), verify through Caddy's
 * listener.  Caddy refuses a config it cannot start and keeps the running
 * one; portico checks that what runs is its last good config, loads that
 * back when Caddy's own rollback went wrong, and answers 500
 * CADDY_LOAD_FAILED with Caddy's message.
 *
 * With caddy_managed, portico runs `caddy run --config {state_dir}/caddy/
 * config.json` itself, with HOME and XDG folders of its own under
 * {state_dir}/caddy, and a supervisor thread restarts it when it dies
 * (backoff from 200 ms to 10 s, reset after 30 s of life).  The config
 * file is rewritten (atomically, 0600: it holds keys) after every good
 * load, so a restarted Caddy comes back with the current routes.  A Caddy
 * left running by a portico that was killed is found by its pid file and
 * command line and stopped before a new one starts. */
#include "engine/engine.h"

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/util.h"
#include "engine/caddy_render.h"
#include "engine/verify.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ADMIN_REPLY_MAX (64 * 1024)
#define LOAD_TIMEOUT_MS 60000
#define READY_TIMEOUT_MS 15000
#define STOP_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 200
#define BACKOFF_MAX_MS 10000
#define STABLE_MS 30000
#define OUT_MAX (10 * 1024 * 1024)

extern char **environ;

typedef struct caddy {
    const ptc_settings *settings;
    ptc_caddy_render_opts opts;
    char *admin_base; /* "http://127.0.0.1:2019" */
    char *dir;        /* {state_dir}/caddy, absolute */
    char *config_path;
    char *pid_path;
    char *webroot;
    char *log_file; /* caddy.log, when managed */
    bool managed;
    char *loaded; /* the config Caddy runs, as last loaded by us */
    /* Held from a load to the config file's rewrite, and by a restart
     * reading that file, so that a Caddy restarted in between never comes
     * back with a config older than the one the store will commit. */
    pthread_mutex_t config_lock;

    pthread_mutex_t lock; /* everything below */
    char version[64];
    bool loaded_once, last_load_ok, in_sync;
    int64_t last_load_at, last_rollback_at;
    char last_error[512];
    unsigned long long loads_ok, loads_failed, restarts;
    /* the managed Caddy */
    pid_t pid; /* 0 when none runs (or it exited and is being reaped) */
    bool stopping, supervising;
    pthread_t supervisor;
    pthread_cond_t wake;
} caddy;

/* ---- Caddy's admin API ---------------------------------------------- */

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    ptc_buf *b = arg;
    size_t len = size * n;
    if (b->len < ADMIN_REPLY_MAX)
        ptc_buf_append(b, p, len < ADMIN_REPLY_MAX - b->len ? len : ADMIN_REPLY_MAX - b->len);
    return len;
}

/* Transport failures worth another try: Caddy replaces its admin server
 * on every load (the new one takes over the listener, the old one shuts
 * down), so a call right after a load can land on the server going away
 * and see its connection closed. */
static bool transient(CURLcode cr)
{
    return cr == CURLE_COULDNT_CONNECT || cr == CURLE_GOT_NOTHING || cr == CURLE_RECV_ERROR ||
           cr == CURLE_SEND_ERROR;
}

/* One admin call, tried again on a transient failure while time is left
 * (every call here is idempotent: a GET, or a /load of a whole config).
 * Returns 0 with *status and out, or -EIO when no answer came (why in
 * out).  Blocks at most about timeout_ms. */
static int admin_call(const caddy *c, const char *method, const char *path, const char *body, long timeout_ms,
                      long *status, ptc_buf *out)
{
    char *url = ptc_xasprintf("%s%s", c->admin_base, path);
    struct curl_slist *h = NULL;
    int64_t deadline = ptc_mono_ms() + timeout_ms;
    CURLcode cr = CURLE_OK;
    int rc = 0;

    *status = 0;
    /* Without must-revalidate Caddy ignores a /load equal to what runs;
     * a load after drift or a restart must happen regardless. */
    h = curl_slist_append(h, "Cache-Control: must-revalidate");
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    for (int attempt = 0;; attempt++) {
        CURL *cu = curl_easy_init();
        int64_t left = deadline - ptc_mono_ms();
        ptc_buf_reset(out);
        curl_easy_setopt(cu, CURLOPT_URL, url);
        curl_easy_setopt(cu, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(cu, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(cu, CURLOPT_TIMEOUT_MS, (long)(left > 1 ? left : 1));
        curl_easy_setopt(cu, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(cu, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(cu, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(cu, CURLOPT_WRITEDATA, out);
        if (body)
            curl_easy_setopt(cu, CURLOPT_POSTFIELDS, body);
        cr = curl_easy_perform(cu);
        if (cr == CURLE_OK)
            curl_easy_getinfo(cu, CURLINFO_RESPONSE_CODE, status);
        curl_easy_cleanup(cu);
        unsigned pause = 25u << (attempt < 5 ? attempt : 5);
        if (cr == CURLE_OK || !transient(cr) || ptc_mono_ms() + pause >= deadline)
            break;
        usleep(pause * 1000);
    }
    if (cr != CURLE_OK) {
        ptc_buf_reset(out);
        ptc_buf_appendf(out, "Caddy's admin API at %s did not answer: %s", c->admin_base,
                        curl_easy_strerror(cr));
        rc = -EIO;
    }
    curl_slist_free_all(h);
    free(url);
    return rc;
}

/* Cheap and lock-free on Caddy's side (unlike /config/, which waits for a
 * load in progress): answers as long as the admin server runs. */
static bool admin_reachable(const caddy *c, long timeout_ms)
{
    ptc_buf out = PTC_BUF_INIT;
    long status;
    bool ok = admin_call(c, "GET", "/reverse_proxy/upstreams", NULL, timeout_ms, &status, &out) == 0 &&
              status == 200;
    ptc_buf_free(&out);
    return ok;
}

/* Whether Caddy runs config: what its GET /config/ answers equals it.
 * Blocks (one admin call). */
static bool running_is(caddy *c, const char *config)
{
    ptc_buf out = PTC_BUF_INIT;
    long status = 0;
    bool same = false;
    if (admin_call(c, "GET", "/config/", NULL, LOAD_TIMEOUT_MS, &status, &out) == 0 && status == 200) {
        json_t *running = json_loads(ptc_buf_cstr(&out), 0, NULL), *want = json_loads(config, 0, NULL);
        same = running != NULL && want != NULL && json_equal(running, want);
        json_decref(running);
        json_decref(want);
    }
    ptc_buf_free(&out);
    return same;
}

/* Loads config; on refusal err holds Caddy's own message.  A rollback
 * (loading the last good config back) leaves the status of the load that
 * failed visible.  Returns 0 or -EIO.  Blocks. */
static int load(caddy *c, const char *config, bool rollback, char *err, size_t errlen)
{
    ptc_buf out = PTC_BUF_INIT;
    long status = 0;
    int rc = admin_call(c, "POST", "/load", config, LOAD_TIMEOUT_MS, &status, &out);

    if (rc == 0 && status != 200) {
        json_t *j = json_loads(ptc_buf_cstr(&out), 0, NULL);
        const char *msg = json_string_value(json_object_get(j, "error"));
        snprintf(err, errlen, "%s", msg ? msg : ptc_buf_cstr(&out));
        json_decref(j);
        rc = -EIO;
    } else if (rc != 0) {
        snprintf(err, errlen, "%s", ptc_buf_cstr(&out));
    }
    pthread_mutex_lock(&c->lock);
    if (rc == 0)
        c->loads_ok++;
    else
        c->loads_failed++;
    if (rollback) {
        c->last_rollback_at = ptc_now_ms();
    } else {
        c->loaded_once = true;
        c->last_load_ok = rc == 0;
        c->last_load_at = ptc_now_ms();
        snprintf(c->last_error, sizeof(c->last_error), "%s", rc == 0 ? "" : err);
    }
    pthread_mutex_unlock(&c->lock);
    ptc_buf_free(&out);
    return rc;
}

static char *render(const caddy *c, const ptc_state *st)
{
    json_t *j = ptc_caddy_render(st, &c->opts);
    char *text = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return text;
}

/* Remembers config as the one Caddy runs and, for a managed Caddy, writes
 * it where a restart reads it. */
static void remember(caddy *c, char *config)
{
    free(c->loaded);
    c->loaded = config;
    if (c->managed) {
        int rc = ptc_file_write_atomic(c->config_path, config, strlen(config), 0600);
        if (rc != 0)
            ptc_log_error("caddy: cannot write the config file; a restart would serve older routes",
                          PTC_LS("path", c->config_path), PTC_LS("error", strerror(-rc)));
    }
}

/* ---- the managed Caddy ---------------------------------------------- */

/* Our environment with HOME and the XDG folders moved under dir: Caddy
 * keeps its data (certificates, locks, autosave) there, not in the
 * operator's home. */
static char **caddy_env(const caddy *c)
{
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = ptc_xcalloc(n + 4, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!ptc_str_has_prefix(environ[i], "HOME=") && !ptc_str_has_prefix(environ[i], "XDG_CONFIG_HOME=") &&
            !ptc_str_has_prefix(environ[i], "XDG_DATA_HOME="))
            env[k++] = ptc_xstrdup(environ[i]);
    env[k++] = ptc_xasprintf("HOME=%s/home", c->dir);
    env[k++] = ptc_xasprintf("XDG_CONFIG_HOME=%s/config", c->dir);
    env[k++] = ptc_xasprintf("XDG_DATA_HOME=%s/data", c->dir);
    return env;
}

static int spawn_caddy(caddy *c, pid_t *pid)
{
    const char *argv[] = {ptc_settings_get(c->settings, PTC_SET_CADDY_BIN),
                          "run",
                          "--config",
                          c->config_path,
                          "--pidfile",
                          c->pid_path,
                          NULL};
    /* Caddy logs to caddy.log itself (rolled: see the render options);
     * what it prints before its config is loaded, and a crash, go to
     * caddy.out, which starts afresh once it passes 10 MB. */
    char *log_path = ptc_path_join(c->dir, "caddy.out");
    struct stat st;
    if (stat(log_path, &st) == 0 && st.st_size > OUT_MAX) {
        char *old = ptc_xasprintf("%s.1", log_path);
        rename(log_path, old);
        free(old);
    }
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    char **env = caddy_env(c);
    int rc = ptc_proc_spawn(argv, env, fd, pid);
    if (rc == 0)
        ptc_log_info("caddy started", PTC_LI("pid", *pid), PTC_LS("config", c->config_path),
                     PTC_LS("log", log_path));
    else
        ptc_log_error("caddy cannot be started", PTC_LS("bin", argv[0]), PTC_LS("error", strerror(-rc)));
    if (fd >= 0)
        close(fd);
    ptc_argv_free(env);
    free(log_path);
    return rc;
}

/* A Caddy a previous portico started from this folder (killed before it
 * could stop it) still holds the ports: found by the pid file and its
 * command line naming our config file, it is stopped. */
static void stop_leftover(caddy *c)
{
    char *text = NULL, *cmdline = NULL, proc[64];
    long long pid;
    size_t len = 0;

    if (ptc_file_read(c->pid_path, 64, &text, NULL) != 0)
        return;
    text[strcspn(text, "\r\n")] = '\0';
    if (ptc_parse_int(text, 2, INT_MAX, &pid) != 0)
        goto out;
    snprintf(proc, sizeof(proc), "/proc/%lld/cmdline", pid);
    if (ptc_file_read(proc, 8192, &cmdline, &len) != 0)
        goto out;
    bool ours = false;
    for (size_t i = 0; i < len; i += strlen(cmdline + i) + 1)
        ours = ours || strcmp(cmdline + i, c->config_path) == 0;
    if (!ours)
        goto out;
    ptc_log_warn("caddy: stopping a Caddy left running by an earlier portico", PTC_LI("pid", pid));
    kill((pid_t)pid, SIGTERM);
    for (int64_t deadline = ptc_mono_ms() + STOP_TIMEOUT_MS; ptc_mono_ms() < deadline; usleep(20000))
        if (kill((pid_t)pid, 0) != 0)
            goto out;
    kill((pid_t)pid, SIGKILL);
out:
    free(text);
    free(cmdline);
}

/* Waits until the admin API answers, or the child dies, or timeout. */
static bool wait_ready(caddy *c, pid_t pid, long timeout_ms)
{
    int64_t deadline = ptc_mono_ms() + timeout_ms;
    while (ptc_mono_ms() < deadline) {
        if (admin_reachable(c, 1000))
            return true;
        siginfo_t si = {0};
        if (pid > 0 && waitid(P_PID, pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid)
            return false;
        usleep(50000);
    }
    return false;
}

/* Sleeps ms unless stopping; returns false when stopping.  Lock held. */
static bool backoff_wait(caddy *c, unsigned ms)
{
    struct timespec until = ptc_deadline_ms(CLOCK_REALTIME, ms);
    while (!c->stopping && pthread_cond_timedwait(&c->wake, &c->lock, &until) == 0)
        ;
    return !c->stopping;
}

static void *supervise(void *arg)
{
    caddy *c = arg;
    unsigned backoff = BACKOFF_MIN_MS;
    int64_t started = ptc_mono_ms();

    for (;;) {
        pthread_mutex_lock(&c->lock);
        pid_t pid = c->pid;
        pthread_mutex_unlock(&c->lock);
        if (pid > 0) {
            /* Wait without reaping, so that the pid cannot be reused while
             * destroy() may still signal it; clear it, then reap. */
            siginfo_t si = {0};
            while (waitid(P_PID, pid, &si, WEXITED | WNOWAIT) != 0 && errno == EINTR)
                ;
            pthread_mutex_lock(&c->lock);
            c->pid = 0;
            pthread_mutex_unlock(&c->lock);
            int status = 0;
            waitpid(pid, &status, 0);
            pthread_mutex_lock(&c->lock);
            bool stopping = c->stopping;
            pthread_mutex_unlock(&c->lock);
            if (stopping)
                break;
            ptc_log_warn("caddy exited; restarting it", PTC_LI("pid", pid),
                         PTC_LI("exit_code", WIFEXITED(status) ? WEXITSTATUS(status) : -1),
                         PTC_LI("signal", WIFSIGNALED(status) ? WTERMSIG(status) : 0),
                         PTC_LI("backoff_ms", backoff));
            if (ptc_mono_ms() - started > STABLE_MS)
                backoff = BACKOFF_MIN_MS;
        }
        pthread_mutex_lock(&c->lock);
        bool go_on = backoff_wait(c, backoff);
        pthread_mutex_unlock(&c->lock);
        if (!go_on)
            break;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        pid_t fresh = 0;
        pthread_mutex_lock(&c->config_lock);
        int rc = spawn_caddy(c, &fresh);
        pthread_mutex_unlock(&c->config_lock);
        if (rc != 0)
            continue;
        started = ptc_mono_ms();
        pthread_mutex_lock(&c->lock);
        c->pid = fresh;
        c->restarts++;
        bool stopping = c->stopping;
        pthread_mutex_unlock(&c->lock);
        if (stopping)
            kill(-fresh, SIGTERM);
        else if (wait_ready(c, fresh, READY_TIMEOUT_MS)) {
            /* It read the config file: the last good config, which is
             * what the store holds, even after a failed rollback. */
            pthread_mutex_lock(&c->lock);
            c->in_sync = true;
            pthread_mutex_unlock(&c->lock);
            ptc_log_info("caddy restarted with the last loaded config", PTC_LI("pid", fresh));
        }
    }
    return NULL;
}

static int start_managed(caddy *c, char *err, size_t errlen)
{
    const char *sub[] = {"home", "config", "data"};
    int rc;

    for (size_t i = 0; i < PTC_ARRAY_LEN(sub); i++) {
        char *d = ptc_path_join(c->dir, sub[i]);
        rc = ptc_mkdir_p(d, 0700);
        free(d);
        if (rc != 0) {
            snprintf(err, errlen, "caddy: cannot create %s/%s: %s", c->dir, sub[i], strerror(-rc));
            return rc;
        }
    }
    if ((rc = ptc_file_write_atomic(c->config_path, c->loaded, strlen(c->loaded), 0600)) != 0) {
        snprintf(err, errlen, "caddy: cannot write %s: %s", c->config_path, strerror(-rc));
        return rc;
    }
    stop_leftover(c);
    pid_t pid = 0;
    if ((rc = spawn_caddy(c, &pid)) != 0) {
        snprintf(err, errlen, "caddy: cannot run %s: %s", ptc_settings_get(c->settings, PTC_SET_CADDY_BIN),
                 strerror(-rc));
        return rc;
    }
    c->pid = pid;
    if (!wait_ready(c, pid, READY_TIMEOUT_MS)) {
        snprintf(err, errlen,
                 "caddy: the managed Caddy did not come up (admin API %s); see caddy.out and caddy.log in %s"
                 " (a port in use?)",
                 c->opts.admin, c->dir);
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        c->pid = 0;
        return -EIO;
    }
    if ((rc = pthread_create(&c->supervisor, NULL, supervise, c)) != 0) {
        snprintf(err, errlen, "caddy: cannot start the supervisor thread: %s", strerror(rc));
        return -rc;
    }
    c->supervising = true;
    pthread_mutex_lock(&c->lock);
    c->loaded_once = c->last_load_ok = true;
    c->last_load_at = ptc_now_ms();
    c->loads_ok++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void read_version(caddy *c)
{
    const char *argv[] = {ptc_settings_get(c->settings, PTC_SET_CADDY_BIN), "version", NULL};
    ptc_proc_result res;
    if (ptc_proc_run(argv, NULL, 5000, 4096, &res) == 0 && res.exit_code == 0) {
        const char *out = ptc_buf_cstr(&res.output);
        pthread_mutex_lock(&c->lock);
        snprintf(c->version, sizeof(c->version), "%.*s", (int)strcspn(out, " \r\n"), out);
        pthread_mutex_unlock(&c->lock);
    }
    ptc_proc_result_free(&res);
}

/* ---- engine operations ---------------------------------------------- */

static int caddy_start(ptc_engine *e, const ptc_state *state, char *err, size_t errlen)
{
    caddy *c = e->impl;
    int rc;

    if ((rc = ptc_mkdir_p(c->webroot, 0755)) != 0) {
        snprintf(err, errlen, "acme_webroot %s: %s", c->webroot, strerror(-rc));
        return rc;
    }
    read_version(c);
    free(c->loaded);
    c->loaded = render(c, state);
    if (c->managed) {
        if ((rc = start_managed(c, err, errlen)) != 0)
            return rc;
    } else {
        if (!wait_ready(c, 0, READY_TIMEOUT_MS)) {
            snprintf(err, errlen,
                     "caddy: the admin API at %s does not answer; start Caddy or set caddy_managed",
                     c->opts.admin);
            return -EIO;
        }
        /* Reconciliation: what runs is compared with what the store says,
         * and replaced (with a log line) when they differ. */
        ptc_buf out = PTC_BUF_INIT;
        long status = 0;
        json_t *running = NULL, *want = json_loads(c->loaded, 0, NULL);
        if (admin_call(c, "GET", "/config/", NULL, 10000, &status, &out) == 0 && status == 200)
            running = json_loads(ptc_buf_cstr(&out), JSON_DECODE_ANY, NULL);
        bool same = running && json_equal(running, want);
        json_decref(running);
        json_decref(want);
        ptc_buf_free(&out);
        if (!same) {
            ptc_log_warn("caddy: the running config is not portico's; loading the stored state",
                         PTC_LS("admin", c->opts.admin));
            char why[512];
            if (load(c, c->loaded, false, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "caddy: the stored state cannot be loaded: %s", why);
                return -EIO;
            }
        }
    }
    pthread_mutex_lock(&c->lock);
    c->in_sync = true;
    pthread_mutex_unlock(&c->lock);
    ptc_log_info("caddy engine serving", PTC_LS("admin", c->opts.admin), PTC_LB("managed", c->managed),
                 PTC_LS("version", c->version[0] ? c->version : NULL), PTC_LI("routes", state->n_proxies),
                 PTC_LI("certificates", state->n_certs));
    return 0;
}

static void caddy_apply(ptc_engine *e, const ptc_apply_request *req, ptc_apply_result *res)
{
    caddy *c = e->impl;
    int64_t t0 = ptc_mono_ms();
    char *next = render(c, req->next);
    char why[512] = "", back[512] = "";

    pthread_mutex_lock(&c->config_lock);
    if (load(c, next, false, why, sizeof(why)) != 0) {
        free(next);
        /* Caddy keeps running the config it had when it refuses one: a
         * second reload of that (which restarts its servers, and can drop
         * a connection arriving meanwhile) only when what runs differs. */
        bool kept = c->loaded && running_is(c, c->loaded);
        bool restored = kept || (c->loaded && load(c, c->loaded, true, back, sizeof(back)) == 0);
        pthread_mutex_lock(&c->lock);
        c->in_sync = restored;
        if (kept)
            c->last_rollback_at = ptc_now_ms(); /* Caddy's own, checked */
        pthread_mutex_unlock(&c->lock);
        pthread_mutex_unlock(&c->config_lock);
        if (!restored)
            ptc_log_error("caddy: the previous config could not be loaded back", PTC_LS("error", back));
        res->code = "CADDY_LOAD_FAILED";
        snprintf(res->message, sizeof(res->message), "Caddy refused the new configuration; %s",
                 restored ? "the previous one was loaded back" : "loading the previous one back failed too");
        res->details = json_pack("{s:s, s:b}", "caddy", why, "rolled_back", restored);
        if (!restored)
            json_object_set_new(res->details, "rollback_error", json_string(back));
        res->report =
            json_pack("{s:s, s:I}", "engine", "caddy", "duration_ms", (json_int_t)(ptc_mono_ms() - t0));
        return;
    }
    int64_t loaded_at = ptc_mono_ms();
    size_t bytes = strlen(next);
    remember(c, next);
    pthread_mutex_unlock(&c->config_lock);
    pthread_mutex_lock(&c->lock);
    c->in_sync = true;
    pthread_mutex_unlock(&c->lock);
    res->report = json_pack("{s:s, s:I, s:I}", "engine", "caddy", "load_ms", (json_int_t)(loaded_at - t0),
                            "config_bytes", (json_int_t)bytes);
    if (req->verify_domain) {
        const ptc_proxy *p = NULL;
        for (size_t i = 0; i < req->next->n_proxies && p == NULL; i++)
            if (strcmp(req->next->proxies[i]->domain, req->verify_domain) == 0)
                p = req->next->proxies[i];
        bool tls = p && strcmp(ptc_caddy_scheme_for(req->next, p, &c->opts), "https") == 0;
        ptc_verify_result v;
        ptc_verify_route(tls ? c->opts.https_listen : c->opts.http_listen, tls, req->verify_domain,
                         req->verify_path, req->verify_gone, 5000, &v);
        json_object_set_new(res->report, "verify", ptc_verify_to_json(&v));
    }
    json_object_set_new(res->report, "duration_ms", json_integer(ptc_mono_ms() - t0));
}

static json_t *caddy_status(ptc_engine *e, ptc_health_level *level)
{
    caddy *c = e->impl;
    bool reachable = admin_reachable(c, 1000);
    char at[32] = "", back[32] = "";

    pthread_mutex_lock(&c->lock);
    if (c->last_load_at)
        ptc_time_format(c->last_load_at, at, sizeof(at));
    if (c->last_rollback_at)
        ptc_time_format(c->last_rollback_at, back, sizeof(back));
    json_t *j = json_pack(
        "{s:b, s:s?, s:b, s:s, s:b, s:o, s:I, s:b, s:o, s:o, s:s?, s:I, s:I}", "present",
        reachable || access(ptc_settings_get(c->settings, PTC_SET_CADDY_BIN), X_OK) == 0, "version",
        c->version[0] ? c->version : NULL, "managed", c->managed, "admin", c->opts.admin, "admin_reachable",
        reachable, "pid", c->pid > 0 ? json_integer(c->pid) : json_null(), "restarts",
        (json_int_t)c->restarts, "in_sync", c->in_sync, "last_load_ok",
        c->loaded_once ? json_boolean(c->last_load_ok) : json_null(), "last_load_at",
        at[0] ? json_string(at) : json_null(), "last_error", c->last_error[0] ? c->last_error : NULL,
        "loads_ok", (json_int_t)c->loads_ok, "loads_failed", (json_int_t)c->loads_failed);
    json_object_set_new(j, "last_rollback_at", back[0] ? json_string(back) : json_null());
    *level = !reachable ? PTC_UNHEALTHY : !c->in_sync ? PTC_DEGRADED : PTC_HEALTHY;
    pthread_mutex_unlock(&c->lock);
    return j;
}

/* ACME tokens are base64url (RFC 8555 §8.3): nothing else reaches a path. */
static char *challenge_path(const caddy *c, const char *token)
{
    return ptc_xasprintf("%s/.well-known/acme-challenge/%s", c->webroot, token);
}

static int caddy_set_challenge(ptc_engine *e, const char *token, const char *key_authorization)
{
    caddy *c = e->impl;
    if (!ptc_str_is_base64url(token, strlen(token), 256))
        return -EINVAL;
    char *dir = ptc_xasprintf("%s/.well-known/acme-challenge", c->webroot);
    char *path = challenge_path(c, token);
    int rc = ptc_mkdir_p(dir, 0755);
    if (rc == 0)
        rc = ptc_file_write_atomic(path, key_authorization, strlen(key_authorization), 0644);
    free(dir);
    free(path);
    return rc;
}

static void caddy_clear_challenge(ptc_engine *e, const char *token)
{
    caddy *c = e->impl;
    if (!ptc_str_is_base64url(token, strlen(token), 256))
        return;
    char *path = challenge_path(c, token);
    unlink(path);
    free(path);
}

static void caddy_metrics(ptc_engine *e, ptc_buf *out)
{
    caddy *c = e->impl;
    pthread_mutex_lock(&c->lock);
    ptc_buf_appendf(out,
                    "# HELP portico_caddy_loads_total Configurations loaded into Caddy, by result.\n"
                    "# TYPE portico_caddy_loads_total counter\n"
                    "portico_caddy_loads_total{result=\"ok\"} %llu\n"
                    "portico_caddy_loads_total{result=\"failed\"} %llu\n"
                    "# HELP portico_caddy_restarts_total Restarts of the managed Caddy after it died.\n"
                    "# TYPE portico_caddy_restarts_total counter\n"
                    "portico_caddy_restarts_total %llu\n",
                    c->loads_ok, c->loads_failed, c->restarts);
    pthread_mutex_unlock(&c->lock);
}

static void caddy_destroy(ptc_engine *e)
{
    caddy *c = e->impl;
    if (c->supervising) {
        pthread_mutex_lock(&c->lock);
        c->stopping = true;
        if (c->pid > 0)
            kill(-c->pid, SIGTERM);
        pthread_cond_broadcast(&c->wake);
        pthread_mutex_unlock(&c->lock);
        struct timespec until = ptc_deadline_ms(CLOCK_REALTIME, STOP_TIMEOUT_MS);
        if (pthread_timedjoin_np(c->supervisor, NULL, &until) != 0) {
            pthread_mutex_lock(&c->lock);
            if (c->pid > 0)
                kill(-c->pid, SIGKILL);
            pthread_mutex_unlock(&c->lock);
            pthread_join(c->supervisor, NULL);
        }
        ptc_log_info("caddy stopped");
    } else if (c->pid > 0) {
        kill(-c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
    }
    pthread_mutex_destroy(&c->lock);
    pthread_mutex_destroy(&c->config_lock);
    pthread_cond_destroy(&c->wake);
    free(c->loaded);
    free(c->admin_base);
    free(c->dir);
    free(c->config_path);
    free(c->pid_path);
    free(c->log_file);
    free(c->webroot);
    free((char *)c->opts.admin);
    free(c);
    free(e);
}

static const ptc_engine_ops caddy_ops = {
    .name = "caddy",
    .start = caddy_start,
    .apply = caddy_apply,
    .status = caddy_status,
    .set_challenge = caddy_set_challenge,
    .clear_challenge = caddy_clear_challenge,
    .metrics = caddy_metrics,
    .destroy = caddy_destroy,
};

/* An absolute form of path (created when missing), for what Caddy reads:
 * an unmanaged Caddy runs in another folder. */
static char *absolute_dir(const char *path, char *err, size_t errlen)
{
    char resolved[PATH_MAX];
    int rc = ptc_mkdir_p(path, 0700);
    if (rc != 0 || realpath(path, resolved) == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(rc ? -rc : errno));
        return NULL;
    }
    return ptc_xstrdup(resolved);
}

ptc_engine *ptc_engine_caddy_create(const ptc_settings *s, char *err, size_t errlen)
{
    char host[256];
    unsigned port;
    const char *admin = ptc_settings_get(s, PTC_SET_CADDY_ADMIN);
    caddy *c = ptc_xcalloc(1, sizeof(*c));
    char *state_caddy = ptc_path_join(ptc_settings_get(s, PTC_SET_STATE_DIR), "caddy");

    c->settings = s;
    pthread_mutex_init(&c->lock, NULL);
    pthread_mutex_init(&c->config_lock, NULL);
    pthread_cond_init(&c->wake, NULL);
    c->managed = ptc_settings_bool(s, PTC_SET_CADDY_MANAGED);
    if (ptc_parse_addr(admin, host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "caddy_admin: \"%s\" is not host:port", admin);
        goto fail;
    }
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    c->admin_base = ptc_xasprintf(strchr(host, ':') ? "http://[%s]:%u" : "http://%s:%u", host, port);
    if ((c->dir = absolute_dir(state_caddy, err, errlen)) == NULL ||
        (c->webroot = absolute_dir(ptc_settings_get(s, PTC_SET_ACME_WEBROOT), err, errlen)) == NULL)
        goto fail;
    c->config_path = ptc_path_join(c->dir, "config.json");
    c->pid_path = ptc_path_join(c->dir, "caddy.pid");
    c->opts = (ptc_caddy_render_opts){
        .admin = ptc_xstrdup(admin),
        .http_listen = ptc_settings_get(s, PTC_SET_HTTP_LISTEN),
        .https_listen = ptc_settings_get(s, PTC_SET_HTTPS_LISTEN),
        .acme_webroot = c->webroot,
        .max_body_size = (uint64_t)ptc_settings_int(s, PTC_SET_MAX_BODY_SIZE),
        .connect_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_UPSTREAM_CONNECT_TIMEOUT_MS),
        .upstream_timeout_ms = (unsigned)ptc_settings_int(s, PTC_SET_UPSTREAM_TIMEOUT_MS),
        .grace_ms = (unsigned)ptc_settings_int(s, PTC_SET_DRAIN_TIMEOUT_MS),
        .log_file = c->managed ? (c->log_file = ptc_path_join(c->dir, "caddy.log")) : NULL,
    };
    free(state_caddy);
    ptc_engine *e = ptc_xcalloc(1, sizeof(*e));
    e->ops = &caddy_ops;
    e->settings = s;
    e->impl = c;
    return e;
fail:
    free(state_caddy);
    ptc_engine tmp = {.ops = &caddy_ops, .settings = s, .impl = c};
    ptc_engine *heap = ptc_xmalloc(sizeof(*heap));
    *heap = tmp;
    caddy_destroy(heap);
    return NULL;
}
