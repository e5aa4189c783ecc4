/* The nginx engine (DESIGN §3 steps 3-7, §9): renders one file per domain
 * from the desired state, checks every file before it is written and after
 * it is read back, tests with nginx -t, reloads, confirms the reload by
 * nginx's worker processes, verifies one route, and puts every file back
 * byte for byte when a step fails.  At start it makes the files match the
 * store (the store is the truth) and, with nginx_managed, runs its own
 * nginx under {state_dir}/nginx.
 *
 * Only the domains an apply touches are rendered: unchanged proxies keep
 * their pointer from one state to the next, so the diff is a merge of two
 * sorted arrays comparing pointers. */
#include "engine/engine.h"

#include "core/buf.h"
#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/settings.h"
#include "core/util.h"
#include "engine/nginx_check.h"
#include "engine/nginx_files.h"
#include "engine/nginx_proc.h"
#include "engine/nginx_render.h"
#include "engine/verify.h"
#include "model/validate.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_TIMEOUT_MS 120000
#define RELOAD_TIMEOUT_MS 60000
#define NGINX_WAIT_MIN_MS 15000
#define DEFAULT_RELOAD_CMD "{nginx_bin} -s reload"
#define VERIFY_TIMEOUT_MS 5000
#define OUTPUT_MAX 16384
#define ISOLATE_MAX 64
#define DAY_MS (24LL * 3600 * 1000)

typedef struct ngx {
    ptc_engine base;
    const ptc_settings *s;
    bool managed;
    char *webroot, *certs_dir, *avail, *enabled, *backup_dir, *conf_path;
    char *prefix, *pid_file, *error_log; /* prefix and error_log: managed only */
    char http_listen[300], https_listen[300];
    ptc_nginx_conf conf;
    char **nginx_argv; /* nginx and the -p/-e/-c options of every call */
    char version[64];
    ptc_nginx_proc *proc;
    pthread_mutex_t apply_mu;                    /* one apply or start at a time */
    pthread_mutex_t mu;                          /* the status fields below */
    int test_state;                              /* -1 not yet, 0 failed, 1 passed */
    long last_test_took_ms, last_reload_took_ms; /* written by the apply thread under mu */
    unsigned long long tests[2], reloads[2];     /* [failed, passed] */
    int reload_state;
    int64_t last_reload_at;
    char last_error[512];
    json_t *disabled; /* files start left out because nginx rejected them */
    /* Upstream health (issue 5): the addresses the checks hold down
     * ("host:port") and those whose verdict changed since the last render,
     * under health_mu; the view rendering reads, under apply_mu. */
    pthread_mutex_t health_mu;
    json_t *down, *changed, *down_view;
} ngx;

/* ---- small helpers ------------------------------------------------------ */

typedef struct strvec {
    const char **v;
    size_t n, cap;
} strvec;

static void sv_push(strvec *sv, const char *s)
{
    if (sv->n == sv->cap) {
        sv->cap = sv->cap ? sv->cap * 2 : 16;
        sv->v = ptc_xrealloc(sv->v, sv->cap * sizeof(char *));
    }
    sv->v[sv->n++] = s;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void sv_sort_unique(strvec *sv)
{
    size_t k = 0;
    if (sv->n == 0)
        return;
    qsort(sv->v, sv->n, sizeof(char *), cmp_str);
    for (size_t i = 1; i < sv->n; i++)
        if (strcmp(sv->v[i], sv->v[k]) != 0)
            sv->v[++k] = sv->v[i];
    sv->n = k + 1;
}

typedef struct plist {
    const ptc_proxy **v;
    size_t n, cap;
} plist;

/* The proxies of state serving domain (O(n): a domain's proxies are not
 * adjacent in the name-sorted array). */
static void proxies_of(const ptc_state *st, const char *domain, plist *out)
{
    out->n = 0;
    for (size_t i = 0; i < st->n_proxies; i++) {
        if (strcmp(st->proxies[i]->domain, domain) != 0)
            continue;
        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 8;
            out->v = ptc_xrealloc(out->v, out->cap * sizeof(ptc_proxy *));
        }
        out->v[out->n++] = st->proxies[i];
    }
}

/* Characters a path may have to be written into nginx config unquoted. */
static bool safe_path(const char *p)
{
    if (p[0] != '/')
        return false;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '/' ||
              *p == '.' || *p == '_' || *p == '-' || *p == '+' || *p == '@' || *p == ',' || *p == '~'))
            return false;
    return true;
}

/* path made absolute and canonical (created first when asked). */
static char *abs_dir(const char *path, bool create)
{
    char buf[PATH_MAX];
    if (create)
        ptc_mkdir_p(path, 0755);
    if (realpath(path, buf))
        return ptc_xstrdup(buf);
    if (path[0] == '/')
        return ptc_xstrdup(path);
    if (getcwd(buf, sizeof(buf)) == NULL)
        return ptc_xstrdup(path);
    return ptc_path_join(buf, path);
}

static char *avail_path(ngx *e, const char *file)
{
    return ptc_path_join(e->avail, file);
}

static char *enabled_path(ngx *e, const char *file)
{
    return ptc_path_join(e->enabled, file);
}

static void set_status(ngx *e, int test, int reload, const char *error)
{
    pthread_mutex_lock(&e->mu);
    if (test >= 0) {
        e->test_state = test;
        e->tests[test]++;
    }
    if (reload >= 0) {
        e->reload_state = reload;
        e->reloads[reload]++;
        if (reload == 1)
            e->last_reload_at = ptc_now_ms();
    }
    if (error)
        snprintf(e->last_error, sizeof(e->last_error), "%s", error);
    pthread_mutex_unlock(&e->mu);
}

/* ---- nginx -t and the reload -------------------------------------------- */

/* nginx -t; output into out.  Returns true when nginx accepts the config. */
static bool run_test(ngx *e, ptc_buf *out, long *ms)
{
    size_t n = 0;
    while (e->nginx_argv[n])
        n++;
    const char **argv = ptc_xcalloc(n + 2, sizeof(char *));
    memcpy(argv, e->nginx_argv, n * sizeof(char *));
    argv[n] = "-t";
    ptc_proc_result r;
    int64_t t0 = ptc_mono_ms();
    int rc = ptc_proc_run(argv, NULL, TEST_TIMEOUT_MS, OUTPUT_MAX, &r);
    *ms = (long)(ptc_mono_ms() - t0);
    bool ok = rc == 0 && r.exit_code == 0 && !r.timed_out && !r.cancelled;
    pthread_mutex_lock(&e->mu);
    e->last_test_took_ms = *ms;
    pthread_mutex_unlock(&e->mu);
    ptc_buf_reset(out);
    if (rc != 0)
        ptc_buf_appendf(out, "cannot run %s: %s", argv[0], strerror(-rc));
    else if (r.timed_out)
        ptc_buf_appendf(out, "nginx -t did not finish within %d ms", TEST_TIMEOUT_MS);
    else if (r.cancelled)
        ptc_buf_append_str(out, "nginx -t was stopped: portico is stopping");
    else
        ptc_buf_append(out, r.output.data ? r.output.data : "", r.output.len);
    ptc_proc_result_free(&r);
    free(argv);
    set_status(e, ok, -1, ok ? NULL : ptc_buf_cstr(out));
    return ok;
}

/* How long nginx may take to load the configuration (start, reload): it
 * parses what nginx -t parsed, and that grows with the number of domains
 * (nginx 1.22 looks upstreams up by a linear scan: quadratic). */
static int64_t nginx_wait_ms(const ngx *e, long test_ms)
{
    int64_t ms = 3 * (int64_t)(test_ms > e->last_test_took_ms ? test_ms : e->last_test_took_ms) + 5000;
    return ms > NGINX_WAIT_MIN_MS ? ms : NGINX_WAIT_MIN_MS;
}

static pid_t current_master(ngx *e)
{
    if (e->proc)
        return ptc_nginx_proc_master(e->proc);
    return ptc_nginx_pid_read(e->pid_file);
}

/* The reload command, then the wait until nginx's new workers run (the
 * command returns before they do).  Returns true when both succeeded;
 * what went wrong in out. */
static bool run_reload(ngx *e, ptc_buf *out, long *ms)
{
    char **argv = NULL;
    const ptc_cmd_subst subst = {"{nginx_bin}", (const char *const *)e->nginx_argv};
    pid_t before[256];
    ptc_nginx_worker w[256];
    size_t n = 0;
    bool ok = false;
    int64_t t0 = ptc_mono_ms();
    pid_t master = current_master(e);

    ptc_buf_reset(out);
    if (master > 0) {
        n = ptc_nginx_workers(master, w, PTC_ARRAY_LEN(w));
        for (size_t i = 0; i < n; i++)
            before[i] = w[i].pid;
    }
    const char *cmd_text = ptc_settings_get(e->s, PTC_SET_NGINX_RELOAD_CMD);
    if (master > 0 && strcmp(cmd_text, DEFAULT_RELOAD_CMD) == 0) {
        /* What `nginx -s reload` does, without its own parse of the whole
         * configuration first (half the reload time at 10,000 domains). */
        ok = kill(master, SIGHUP) == 0;
        if (!ok)
            ptc_buf_appendf(out, "cannot signal the nginx master %d: %s", (int)master, strerror(errno));
    } else if (ptc_cmd_split(cmd_text, &subst, 1, &argv) != 0) {
        ptc_buf_append_str(out, "nginx_reload_cmd is empty");
    } else {
        ptc_proc_result r;
        int rc = ptc_proc_run((const char *const *)argv, NULL, RELOAD_TIMEOUT_MS, OUTPUT_MAX, &r);
        char *cmd = ptc_argv_join((const char *const *)argv);
        if (rc != 0)
            ptc_buf_appendf(out, "cannot run %s: %s", argv[0], strerror(-rc));
        else if (r.timed_out)
            ptc_buf_appendf(out, "%s did not finish within %d ms", cmd, RELOAD_TIMEOUT_MS);
        else if (r.cancelled)
            ptc_buf_appendf(out, "%s was stopped: portico is stopping", cmd);
        else if (r.exit_code != 0)
            ptc_buf_appendf(out, "%s exited with %d%s%s", cmd, r.exit_code, r.output.len ? ": " : "",
                            ptc_buf_cstr(&r.output));
        else
            ok = true;
        ptc_proc_result_free(&r);
        free(cmd);
    }
    if (ok && master > 0) {
        int rc = ptc_nginx_wait_new_workers(master, before, n, nginx_wait_ms(e, 0));
        if (rc != 0) {
            char tail[700] = "";
            ok = false;
            if (e->error_log)
                ptc_nginx_log_tail(e->error_log, tail, sizeof(tail));
            ptc_buf_appendf(out, "nginx %s%s%s",
                            rc == -ESRCH ? "exited during the reload"
                                         : "did not start workers with the new configuration",
                            tail[0] ? "; its error log ends with: " : "", tail);
        }
    } else if (ok) {
        ptc_log_debug("no nginx master found to confirm the reload", PTC_LS("pid_file", e->pid_file));
    }
    *ms = (long)(ptc_mono_ms() - t0);
    pthread_mutex_lock(&e->mu);
    e->last_reload_took_ms = *ms;
    pthread_mutex_unlock(&e->mu);
    ptc_argv_free(argv);
    set_status(e, -1, ok, ok ? NULL : ptc_buf_cstr(out));
    return ok;
}

/* ---- rendering ---------------------------------------------------------- */

/* Renders and checks the file of domain from st into out; pl gets the
 * domain's proxies (none: the file must go).  Returns 0 or -EINVAL with
 * the checker's reason in err. */
static int render_domain(ngx *e, const ptc_state *st, const char *domain, plist *pl, ptc_buf *out, char *err,
                         size_t errlen)
{
    proxies_of(st, domain, pl);
    ptc_buf_reset(out);
    if (pl->n == 0)
        return 0;
    const ptc_cert *cert = ptc_state_cert_for(st, domain);
    ptc_nginx_render_domain(&e->conf, domain, pl->v, pl->n, cert, out);
    ptc_nginx_expect x = {&e->conf, domain, pl->v, pl->n, cert};
    char why[300];
    if (ptc_nginx_check(out->data, out->len, &x, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "the file rendered for %s failed the structure check: %s", domain, why);
        return -EINVAL;
    }
    return 0;
}

/* Reads path back and checks it is want and passes the checker. */
static int reread_check(const char *path, const ptc_buf *want, const ptc_nginx_expect *x, char *err,
                        size_t errlen)
{
    char *text = NULL, why[300];
    size_t len = 0;
    int rc = ptc_file_read(path, PTC_NGINX_FILE_MAX, &text, &len);
    if (rc != 0) {
        snprintf(err, errlen, "reading %s back: %s", path, strerror(-rc));
    } else if (len != want->len || memcmp(text, want->data, len) != 0) {
        rc = -EIO;
        snprintf(err, errlen, "%s does not hold what was written", path);
    } else if (ptc_nginx_check(text, len, x, why, sizeof(why)) != 0) {
        rc = -EINVAL;
        snprintf(err, errlen, "%s failed the structure check after writing: %s", path, why);
    }
    free(text);
    return rc;
}

/* ---- apply -------------------------------------------------------------- */

/* ---- upstream health (issue 5) ------------------------------------------ */

static void address_key(char *out, size_t len, const char *host, unsigned port)
{
    snprintf(out, len, "%s:%u", host, port);
}

static bool view_down(const void *arg, const char *host, unsigned port)
{
    const ngx *e = arg;
    char key[PTC_DOMAIN_MAX + 16];
    address_key(key, sizeof(key), host, port);
    return json_object_get(e->down_view, key) != NULL;
}

static void nginx_set_upstream_health(ptc_engine *base, const char *host, unsigned port, bool healthy)
{
    ngx *e = base->impl;
    char key[PTC_DOMAIN_MAX + 16];
    address_key(key, sizeof(key), host, port);
    pthread_mutex_lock(&e->health_mu);
    if (healthy)
        json_object_del(e->down, key);
    else
        json_object_set_new(e->down, key, json_true());
    json_object_set_new(e->changed, key, json_true());
    pthread_mutex_unlock(&e->health_mu);
}

/* Takes the verdicts for one render (caller holds apply_mu): the view the
 * renderer and the checker read, and the addresses changed since the last
 * render (new reference). */
static json_t *take_health(ngx *e)
{
    pthread_mutex_lock(&e->health_mu);
    json_decref(e->down_view);
    e->down_view = json_deep_copy(e->down);
    json_t *changed = e->changed;
    e->changed = json_object();
    pthread_mutex_unlock(&e->health_mu);
    return changed;
}

/* A render that did not go live: its changed addresses wait for the next. */
static void give_back_health(ngx *e, json_t *changed)
{
    pthread_mutex_lock(&e->health_mu);
    json_object_update(e->changed, changed);
    pthread_mutex_unlock(&e->health_mu);
}

/* Adds the domains of st's proxies that name a changed address. */
static void health_domains(const ptc_state *st, const json_t *changed, strvec *domains)
{
    char key[PTC_DOMAIN_MAX + 16];
    if (json_object_size(changed) == 0)
        return;
    for (size_t i = 0; i < st->n_proxies; i++) {
        const ptc_proxy *p = st->proxies[i];
        for (size_t k = 0; k < p->n_upstreams; k++) {
            address_key(key, sizeof(key), p->upstreams[k].host, p->upstreams[k].port);
            if (json_object_get(changed, key)) {
                sv_push(domains, p->domain);
                break;
            }
        }
    }
    sv_sort_unique(domains);
}

/* The domains whose file may differ between old and next, and the
 * certificates that changed (by domain). */
static void diff_states(const ptc_state *old, const ptc_state *next, strvec *domains, strvec *certs)
{
    size_t i = 0, j = 0;
    while (i < old->n_proxies || j < next->n_proxies) {
        int c = i == old->n_proxies    ? 1
                : j == next->n_proxies ? -1
                                       : strcmp(old->proxies[i]->name, next->proxies[j]->name);
        if (c < 0) {
            sv_push(domains, old->proxies[i++]->domain);
        } else if (c > 0) {
            sv_push(domains, next->proxies[j++]->domain);
        } else {
            if (old->proxies[i] != next->proxies[j]) {
                sv_push(domains, old->proxies[i]->domain);
                sv_push(domains, next->proxies[j]->domain);
            }
            i++;
            j++;
        }
    }
    i = j = 0;
    while (i < old->n_certs || j < next->n_certs) {
        int c = i == old->n_certs    ? 1
                : j == next->n_certs ? -1
                                     : strcmp(old->certs[i]->domain, next->certs[j]->domain);
        if (c < 0)
            sv_push(certs, old->certs[i++]->domain);
        else if (c > 0)
            sv_push(certs, next->certs[j++]->domain);
        else {
            if (old->certs[i] != next->certs[j])
                sv_push(certs, old->certs[i]->domain);
            i++;
            j++;
        }
    }
    /* A certificate serves its domain and, as a wildcard, the names one
     * level below it. */
    for (size_t k = 0; k < certs->n; k++) {
        const char *cd = certs->v[k];
        sv_push(domains, cd);
        if (strncmp(cd, "*.", 2) != 0)
            continue;
        const ptc_state *both[2] = {old, next};
        for (int s = 0; s < 2; s++)
            for (size_t p = 0; p < both[s]->n_proxies; p++) {
                const char *d = both[s]->proxies[p]->domain, *dot = strchr(d, '.');
                if (d[0] != '*' && dot && strcmp(dot, cd + 1) == 0)
                    sv_push(domains, d);
            }
    }
    sv_sort_unique(domains);
    sv_sort_unique(certs);
}

/* Plans the two files of a certificate (or their removal). */
static int plan_cert(ngx *e, ptc_nginx_txn *txn, const char *domain, const ptc_cert *c)
{
    char *dir_name = ptc_nginx_cert_dir_name(domain);
    char *dir = ptc_path_join(e->certs_dir, dir_name);
    char *chain = ptc_path_join(dir, "fullchain.pem"), *key = ptc_path_join(dir, "privkey.pem");
    int rc = ptc_nginx_txn_file(txn, chain, c ? c->cert_pem : NULL, c ? strlen(c->cert_pem) : 0, 0644, false);
    if (rc >= 0)
        rc = ptc_nginx_txn_file(txn, key, c ? c->key_pem : NULL, c ? strlen(c->key_pem) : 0, 0600, false);
    free(dir_name);
    free(dir);
    free(chain);
    free(key);
    return rc < 0 ? rc : 0;
}

typedef struct planned {
    char *path;
    ptc_buf text;
    plist pl;
    const char *domain;
    const ptc_cert *cert;
} planned;

static void fail_res(ptc_apply_result *res, const char *code, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail_res(ptc_apply_result *res, const char *code, json_t *details, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof(res->message), fmt, ap);
    va_end(ap);
    res->code = code;
    json_decref(res->details);
    res->details = details;
    ptc_log_error("nginx apply failed", PTC_LS("code", code), PTC_LS("message", res->message));
}

/* Puts every file back; a failure there is logged and reported. */
static void rollback(ngx *e, ptc_nginx_txn *txn, ptc_apply_result *res)
{
    int rc = ptc_nginx_txn_rollback(txn);
    if (rc != 0) {
        char msg[256];
        snprintf(msg, sizeof(msg), "restoring the previous files failed: %s", strerror(-rc));
        ptc_log_error("nginx rollback failed", PTC_LS("error", strerror(-rc)));
        set_status(e, -1, -1, msg);
        if (res->details)
            json_object_set_new(res->details, "rollback_error", json_string(msg));
    }
}

/* A file start left out (nginx rejected it) is back in once an apply has
 * rewritten its domain and nginx accepted the result. */
static void forget_disabled(ngx *e, const char *file)
{
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < json_array_size(e->disabled); i++) {
        if (strcmp(json_string_value(json_array_get(e->disabled, i)), file) == 0) {
            json_array_remove(e->disabled, i);
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
}

/* The verify step: HTTPS when the route answers there, else HTTP. */
static void verify(ngx *e, const ptc_apply_request *req, json_t *report)
{
    ptc_verify_result v;
    bool tls = false;
    if (req->verify_domain == NULL) {
        json_object_set_new(report, "verify", json_null());
        return;
    }
    const char *path = req->verify_path ? req->verify_path : "/";
    if (!req->verify_gone) {
        plist pl = {0};
        const ptc_proxy *best = NULL;
        proxies_of(req->next, req->verify_domain, &pl);
        for (size_t i = 0; i < pl.n; i++) {
            const char *pre = pl.v[i]->path_prefix;
            size_t n = strlen(pre);
            bool match = strcmp(pre, "/") == 0 || (strncmp(path, pre, n) == 0 &&
                                                   (path[n] == '\0' || path[n] == '/' || path[n] == '?'));
            if (match && (best == NULL || n > strlen(best->path_prefix)))
                best = pl.v[i];
        }
        tls = best && best->enable_ssl &&
              ptc_nginx_domain_tls(&e->conf, pl.v, pl.n, ptc_state_cert_for(req->next, req->verify_domain));
        free(pl.v);
    }
    const char *listen = ptc_settings_get(e->s, tls ? PTC_SET_HTTPS_LISTEN : PTC_SET_HTTP_LISTEN);
    ptc_verify_route(listen, tls, req->verify_domain, path, req->verify_gone, VERIFY_TIMEOUT_MS, &v);
    json_object_set_new(report, "verify", ptc_verify_to_json(&v));
}

static void nginx_apply(ptc_engine *base, const ptc_apply_request *req, ptc_apply_result *res)
{
    ngx *e = base->impl;
    int64_t t0 = ptc_mono_ms();
    strvec domains = {0}, certs = {0};
    ptc_nginx_txn *txn = ptc_nginx_txn_new();
    planned *plans = NULL;
    size_t n_plans = 0;
    json_t *backups = json_array();
    ptc_buf out = PTC_BUF_INIT;
    long test_ms = 0, reload_ms = 0;
    bool reloaded = false;
    char err[512];
    int rc;

    memset(res, 0, sizeof(*res));
    pthread_mutex_lock(&e->apply_mu);
    diff_states(req->old, req->next, &domains, &certs);
    json_t *health_changed = take_health(e);
    health_domains(req->next, health_changed, &domains);
    plans = ptc_xcalloc(domains.n + 1, sizeof(planned));

    for (size_t i = 0; i < certs.n; i++) {
        rc = plan_cert(e, txn, certs.v[i], ptc_state_cert(req->next, certs.v[i]));
        if (rc != 0) {
            fail_res(res, "CONFIG_WRITE_FAILED", json_pack("{s:s}", "error", strerror(-rc)),
                     "cannot read the certificate files of %s: %s", certs.v[i], strerror(-rc));
            goto done;
        }
    }
    for (size_t i = 0; i < domains.n; i++) {
        planned *p = &plans[n_plans++];
        char *file = ptc_nginx_file_name(e->conf.file_prefix, domains.v[i]);
        char *link = enabled_path(e, file);
        p->domain = domains.v[i];
        p->path = avail_path(e, file);
        if (render_domain(e, req->next, p->domain, &p->pl, &p->text, err, sizeof(err)) != 0) {
            fail_res(res, "CONFIG_WRITE_FAILED", json_pack("{s:s}", "check", err), "%s; nothing was written",
                     err);
            free(file);
            free(link);
            goto done;
        }
        p->cert = p->pl.n ? ptc_state_cert_for(req->next, p->domain) : NULL;
        rc = ptc_nginx_txn_file(txn, p->path, p->pl.n ? p->text.data : NULL, p->text.len, 0644, true);
        if (rc >= 0)
            rc = ptc_nginx_txn_link(txn, link, p->pl.n ? p->path : NULL);
        free(file);
        free(link);
        if (rc < 0) {
            fail_res(res, "CONFIG_WRITE_FAILED",
                     json_pack("{s:s, s:s}", "path", p->path, "error", strerror(-rc)), "cannot read %s: %s",
                     p->path, strerror(-rc));
            goto done;
        }
    }
    if (ptc_nginx_txn_count(txn) == 0)
        goto check_route; /* nothing nginx serves changed: no backup, no reload */

    if (ptc_nginx_txn_backup(txn, e->backup_dir, backups, err, sizeof(err)) != 0) {
        fail_res(res, "CONFIG_WRITE_FAILED", json_pack("{s:s}", "error", err), "%s; nothing was changed",
                 err);
        goto done;
    }
    ptc_nginx_backups_prune(e->backup_dir, e->conf.file_prefix, ptc_now_ms(),
                            ptc_settings_int(e->s, PTC_SET_BACKUP_RETENTION_DAYS) * DAY_MS, backups, NULL);
    if (ptc_nginx_txn_commit(txn, err, sizeof(err)) != 0) {
        fail_res(res, "CONFIG_WRITE_FAILED", json_pack("{s:s}", "error", err),
                 "writing the nginx files failed (%s); every file was restored", err);
        rollback(e, txn, res);
        goto done;
    }
    for (size_t i = 0; i < n_plans; i++) {
        planned *p = &plans[i];
        ptc_nginx_expect x = {&e->conf, p->domain, p->pl.v, p->pl.n, p->cert};
        if (p->pl.n && reread_check(p->path, &p->text, &x, err, sizeof(err)) != 0) {
            fail_res(res, "CONFIG_WRITE_FAILED", json_pack("{s:s}", "error", err),
                     "%s; every file was restored", err);
            rollback(e, txn, res);
            goto done;
        }
    }
    if (!run_test(e, &out, &test_ms)) {
        fail_res(
            res, "NGINX_TEST_FAILED",
            json_pack("{s:s, s:o}", "nginx_output", ptc_buf_cstr(&out), "files", ptc_nginx_txn_paths(txn)),
            "nginx -t rejected the new configuration; every file was restored");
        rollback(e, txn, res);
        goto done;
    }
    if (!run_reload(e, &out, &reload_ms)) {
        ptc_buf again = PTC_BUF_INIT;
        long again_ms;
        fail_res(
            res, "NGINX_RELOAD_FAILED",
            json_pack("{s:s, s:o}", "nginx_output", ptc_buf_cstr(&out), "files", ptc_nginx_txn_paths(txn)),
            "the nginx reload failed; every file was restored");
        rollback(e, txn, res);
        /* nginx may have read part of the new files: make it read the old. */
        bool ok = run_reload(e, &again, &again_ms);
        json_object_set_new(res->details, "rollback_reload", json_string(ok ? "ok" : ptc_buf_cstr(&again)));
        ptc_buf_free(&again);
        goto done;
    }
    reloaded = true;
    for (size_t i = 0; i < n_plans; i++) {
        const char *slash = strrchr(plans[i].path, '/');
        forget_disabled(e, slash + 1);
    }
    for (size_t i = 0; i < certs.n; i++)
        if (ptc_state_cert(req->next, certs.v[i]) == NULL) {
            char *dir_name = ptc_nginx_cert_dir_name(certs.v[i]);
            char *dir = ptc_path_join(e->certs_dir, dir_name);
            rmdir(dir);
            free(dir_name);
            free(dir);
        }
    ptc_log_info("nginx applied", PTC_LI("files", ptc_nginx_txn_count(txn)), PTC_LI("test_ms", test_ms),
                 PTC_LI("reload_ms", reload_ms));
check_route:
    res->report = json_object();
    verify(e, req, res->report);
done:
    if (res->report == NULL)
        res->report = json_object();
    json_object_set_new(res->report, "engine", json_string("nginx"));
    json_object_set_new(res->report, "files", ptc_nginx_txn_paths(txn));
    json_object_set_new(res->report, "backups", backups);
    json_object_set_new(res->report, "reloaded", json_boolean(reloaded));
    json_object_set_new(res->report, "test_ms", json_integer(test_ms));
    json_object_set_new(res->report, "reload_ms", json_integer(reload_ms));
    json_object_set_new(res->report, "duration_ms", json_integer(ptc_mono_ms() - t0));
    if (json_object_get(res->report, "verify") == NULL)
        json_object_set_new(res->report, "verify", json_null());
    if (res->code)
        give_back_health(e, health_changed);
    json_decref(health_changed);
    pthread_mutex_unlock(&e->apply_mu);
    for (size_t i = 0; i < n_plans; i++) {
        free(plans[i].path);
        ptc_buf_free(&plans[i].text);
        free(plans[i].pl.v);
    }
    free(plans);
    free(domains.v);
    free(certs.v);
    ptc_buf_free(&out);
    ptc_nginx_txn_free(txn);
}

/* The health verdicts recorded since the last render, made live: the
 * files of the domains they touch go through the same steps as an apply
 * (backup, write, check, test, reload, confirm, roll back). */
static void nginx_apply_health(ptc_engine *base, const ptc_state *state, ptc_apply_result *res)
{
    ptc_apply_request req = {.old = state, .next = state};
    nginx_apply(base, &req, res);
}

/* ---- start: make the files match the store ------------------------------ */

typedef struct reconcile {
    ngx *e;
    bool fresh; /* no managed file existed: a first start, nothing to report */
    size_t repairs;
    strvec desired;
} reconcile;

static void repaired(reconcile *r, const char *path, const char *reason)
{
    r->repairs++;
    if (r->fresh)
        ptc_log_info("rendered nginx file", PTC_LS("file", path));
    else
        ptc_log_warn("repaired nginx file", PTC_LS("file", path), PTC_LS("reason", reason));
}

/* Makes avail/file hold text (checked against x) and enabled/file link to
 * it; a drifted file is backed up first. */
static int repair_file(reconcile *r, const char *file, const ptc_buf *text, const ptc_nginx_expect *x,
                       char *err, size_t errlen)
{
    ngx *e = r->e;
    char *path = avail_path(e, file), *link = enabled_path(e, file), *old = NULL, *backup = NULL;
    size_t old_len = 0;
    const char *reason = NULL;
    struct stat st;
    char target[PATH_MAX];
    int rc = ptc_file_read(path, PTC_NGINX_FILE_MAX, &old, &old_len);

    if (rc == -ENOENT) {
        reason = "deleted";
    } else if (rc != 0) {
        snprintf(err, errlen, "reading %s: %s", path, strerror(-rc));
        goto out;
    } else if (old_len != text->len || memcmp(old, text->data, old_len) != 0 ||
               (stat(path, &st) == 0 && (st.st_mode & 07777) != 0644)) {
        reason = "edited";
        rc = ptc_nginx_backup_write(e->backup_dir, file, old, old_len, &backup);
        if (rc != 0) {
            snprintf(err, errlen, "backing up %s: %s", path, strerror(-rc));
            goto out;
        }
    }
    rc = 0;
    if (reason) {
        rc = ptc_nginx_write_nosync(path, text->data, text->len, 0644);
        if (rc == 0)
            rc = reread_check(path, text, x, err, errlen);
        else
            snprintf(err, errlen, "writing %s: %s", path, strerror(-rc));
        if (rc != 0)
            goto out;
        repaired(r, path, reason);
    }
    ssize_t n = readlink(link, target, sizeof(target) - 1);
    if (n >= 0)
        target[n] = '\0';
    if (n < 0 || strcmp(target, path) != 0) {
        if (n < 0 && lstat(link, &st) == 0)
            unlink(link); /* a file or folder where our link belongs */
        rc = ptc_nginx_symlink_replace(link, path, false);
        if (rc != 0) {
            snprintf(err, errlen, "linking %s: %s", link, strerror(-rc));
            goto out;
        }
        repaired(r, link, n < 0 ? "deleted" : "edited");
    }
out:
    free(path);
    free(link);
    free(old);
    free(backup);
    return rc;
}

static int cmp_proxy_domain(const void *a, const void *b)
{
    return strcmp((*(const ptc_proxy *const *)a)->domain, (*(const ptc_proxy *const *)b)->domain);
}

/* Every domain file and the catch-all file. */
static int reconcile_sites(reconcile *r, const ptc_state *st, char *err, size_t errlen)
{
    ngx *e = r->e;
    const ptc_proxy **sorted = ptc_xcalloc(st->n_proxies + 1, sizeof(ptc_proxy *));
    ptc_buf text = PTC_BUF_INIT;
    int rc = 0;

    if (st->n_proxies)
        memcpy(sorted, st->proxies, st->n_proxies * sizeof(ptc_proxy *));
    qsort(sorted, st->n_proxies, sizeof(ptc_proxy *), cmp_proxy_domain);
    for (size_t i = 0; i < st->n_proxies && rc == 0;) {
        size_t j = i;
        while (j < st->n_proxies && strcmp(sorted[j]->domain, sorted[i]->domain) == 0)
            j++;
        const char *domain = sorted[i]->domain;
        const ptc_cert *cert = ptc_state_cert_for(st, domain);
        ptc_nginx_expect x = {&e->conf, domain, sorted + i, j - i, cert};
        char why[300];
        char *file = ptc_nginx_file_name(e->conf.file_prefix, domain);
        ptc_buf_reset(&text);
        ptc_nginx_render_domain(&e->conf, domain, sorted + i, j - i, cert, &text);
        if (ptc_nginx_check(text.data, text.len, &x, why, sizeof(why)) != 0) {
            /* A stored proxy that renders badly is left out, not fatal. */
            ptc_log_error("nginx file left out: it failed the structure check", PTC_LS("domain", domain),
                          PTC_LS("reason", why));
            free(file);
            i = j;
            continue;
        }
        sv_push(&r->desired, file);
        rc = repair_file(r, file, &text, &x, err, errlen);
        i = j;
    }
    if (rc == 0) {
        ptc_nginx_expect x = {&e->conf, NULL, NULL, 0, NULL};
        char why[300];
        char *file = ptc_xasprintf("%s%s.conf", e->conf.file_prefix, PTC_NGINX_DEFAULT_NAME);
        sv_push(&r->desired, file);
        ptc_buf_reset(&text);
        ptc_nginx_render_default(&e->conf, &text);
        if (ptc_nginx_check(text.data, text.len, &x, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "the catch-all file failed the structure check: %s", why);
            rc = -EINVAL;
        } else {
            rc = repair_file(r, file, &text, &x, err, errlen);
        }
    }
    ptc_buf_free(&text);
    free(sorted);
    return rc;
}

static bool desired_has(const reconcile *r, const char *name)
{
    for (size_t i = 0; i < r->desired.n; i++)
        if (strcmp(r->desired.v[i], name) == 0)
            return true;
    return false;
}

/* Managed files (our prefix) that no domain needs any more, temporary
 * files of interrupted writes, and links that lead nowhere. */
static void remove_stale(reconcile *r)
{
    ngx *e = r->e;
    const char *prefix = e->conf.file_prefix;
    const char *dirs[2] = {e->avail, e->enabled};
    for (int k = 0; k < 2; k++) {
        DIR *d = opendir(dirs[k]);
        struct dirent *ent;
        if (d == NULL)
            continue;
        while ((ent = readdir(d)) != NULL) {
            if (strncmp(ent->d_name, prefix, strlen(prefix)) != 0 || desired_has(r, ent->d_name))
                continue;
            char *path = ptc_path_join(dirs[k], ent->d_name), *old = NULL, *backup = NULL;
            size_t len;
            size_t n = strlen(ent->d_name);
            bool conf = n > 5 && strcmp(ent->d_name + n - 5, ".conf") == 0;
            if (k == 0 && conf && ptc_file_read(path, PTC_NGINX_FILE_MAX, &old, &len) == 0)
                ptc_nginx_backup_write(e->backup_dir, ent->d_name, old, len, &backup);
            if (unlink(path) == 0)
                repaired(r, path, "stale");
            free(old);
            free(backup);
            free(path);
        }
        closedir(d);
    }
}

/* Certificate files: written when they differ, removed when stale. */
static int reconcile_certs(reconcile *r, const ptc_state *st, char *err, size_t errlen)
{
    ngx *e = r->e;
    ptc_nginx_txn *txn = ptc_nginx_txn_new();
    strvec dirs = {0};
    int rc = 0;
    for (size_t i = 0; i < st->n_certs && rc == 0; i++) {
        rc = plan_cert(e, txn, st->certs[i]->domain, st->certs[i]);
        sv_push(&dirs, ptc_nginx_cert_dir_name(st->certs[i]->domain));
    }
    DIR *d = opendir(e->certs_dir);
    struct dirent *ent;
    while (rc == 0 && d && (ent = readdir(d)) != NULL) {
        bool known = ent->d_name[0] == '.';
        for (size_t i = 0; i < dirs.n && !known; i++)
            known = strcmp(dirs.v[i], ent->d_name) == 0;
        if (!known) {
            char *dir = ptc_path_join(e->certs_dir, ent->d_name);
            char *chain = ptc_path_join(dir, "fullchain.pem"), *key = ptc_path_join(dir, "privkey.pem");
            bool gone = unlink(chain) == 0;
            gone = (unlink(key) == 0) || gone;
            if (rmdir(dir) == 0 || gone)
                repaired(r, dir, "stale");
            free(chain);
            free(key);
            free(dir);
        }
    }
    if (d)
        closedir(d);
    if (rc == 0 && ptc_nginx_txn_count(txn) > 0) {
        json_t *paths = ptc_nginx_txn_paths(txn);
        rc = ptc_nginx_txn_commit(txn, err, errlen);
        for (size_t i = 0; rc == 0 && i < json_array_size(paths); i++)
            repaired(r, json_string_value(json_array_get(paths, i)), "edited");
        json_decref(paths);
    } else if (rc != 0) {
        snprintf(err, errlen, "reading certificate files: %s", strerror(-rc));
    }
    for (size_t i = 0; i < dirs.n; i++)
        free((char *)dirs.v[i]);
    free(dirs.v);
    ptc_nginx_txn_free(txn);
    return rc;
}

/* The domain file nginx -t blames in its output, or NULL. */
static char *blamed_file(ngx *e, const char *output)
{
    const char *dirs[2] = {e->enabled, e->avail};
    char *def = ptc_xasprintf("%s%s.conf", e->conf.file_prefix, PTC_NGINX_DEFAULT_NAME);
    char *found = NULL;
    for (int k = 0; k < 2 && !found; k++) {
        char *pfx = ptc_xasprintf("%s/%s", dirs[k], e->conf.file_prefix);
        const char *at = strstr(output, pfx);
        if (at) {
            const char *name = at + strlen(dirs[k]) + 1, *end = name;
            while (*end && *end != ':' && *end != ' ' && *end != '\n' && *end != '"')
                end++;
            found = ptc_xstrndup(name, (size_t)(end - name));
            if (strcmp(found, def) == 0) {
                free(found);
                found = NULL;
            }
        }
        free(pfx);
    }
    free(def);
    return found;
}

/* nginx -t until it passes, leaving out each domain file it blames (one
 * broken domain must not keep every other one from being served). */
static int test_isolating(ngx *e, char *err, size_t errlen)
{
    ptc_buf out = PTC_BUF_INIT;
    long ms;
    int rc = 0;
    for (int attempt = 0;; attempt++) {
        if (run_test(e, &out, &ms))
            break;
        char *file = attempt < ISOLATE_MAX ? blamed_file(e, ptc_buf_cstr(&out)) : NULL;
        bool again = false;
        pthread_mutex_lock(&e->mu);
        for (size_t i = 0; file && i < json_array_size(e->disabled); i++)
            again = again || strcmp(json_string_value(json_array_get(e->disabled, i)), file) == 0;
        pthread_mutex_unlock(&e->mu);
        if (file == NULL || again) {
            free(file);
            snprintf(err, errlen, "nginx -t rejects the configuration: %s", ptc_buf_cstr(&out));
            rc = -EINVAL;
            break;
        }
        char *link = enabled_path(e, file);
        ptc_log_error("nginx file left out: nginx rejects it", PTC_LS("file", link),
                      PTC_LS("nginx_output", ptc_buf_cstr(&out)));
        unlink(link);
        pthread_mutex_lock(&e->mu);
        json_array_append_new(e->disabled, json_string(file));
        pthread_mutex_unlock(&e->mu);
        free(link);
        free(file);
    }
    ptc_buf_free(&out);
    return rc;
}

static int write_main_conf(ngx *e, char *err, size_t errlen)
{
    const char *access = ptc_settings_get(e->s, PTC_SET_ACCESS_LOG);
    char *logs = ptc_path_join(e->prefix, "logs"), *tmp = ptc_path_join(e->prefix, "tmp");
    ptc_nginx_main_conf m = {
        .prefix = e->prefix,
        .pid_file = e->pid_file,
        .error_log = e->error_log,
        .access_log = access[0] == '\0'          ? NULL
                      : strcmp(access, "-") == 0 ? "/dev/stderr"
                                                 : access,
        .sites_enabled = e->enabled,
        .as_root = geteuid() == 0,
        .workers = (int)ptc_settings_int(e->s, PTC_SET_WORKERS),
        .header_timeout_ms = ptc_settings_int(e->s, PTC_SET_HEADER_TIMEOUT_MS),
        .idle_timeout_ms = ptc_settings_int(e->s, PTC_SET_IDLE_TIMEOUT_MS),
        .drain_timeout_ms = ptc_settings_int(e->s, PTC_SET_DRAIN_TIMEOUT_MS),
    };
    ptc_buf text = PTC_BUF_INIT;
    ptc_nginx_txn *txn = ptc_nginx_txn_new();
    int rc = ptc_mkdir_p(logs, 0755);
    if (rc == 0)
        rc = ptc_mkdir_p(tmp, 0755);
    if (rc != 0) {
        snprintf(err, errlen, "creating %s: %s", e->prefix, strerror(-rc));
        goto out;
    }
    ptc_nginx_render_main(&m, &text);
    rc = ptc_nginx_txn_file(txn, e->conf_path, text.data, text.len, 0644, false);
    if (rc > 0)
        rc = ptc_nginx_txn_commit(txn, err, errlen);
    else if (rc < 0)
        snprintf(err, errlen, "reading %s: %s", e->conf_path, strerror(-rc));
out:
    free(logs);
    free(tmp);
    ptc_buf_free(&text);
    ptc_nginx_txn_free(txn);
    return rc < 0 ? rc : 0;
}

static int nginx_start(ptc_engine *base, const ptc_state *state, char *err, size_t errlen)
{
    ngx *e = base->impl;
    reconcile r = {.e = e};
    char *well_known = ptc_path_join(e->webroot, ".well-known/acme-challenge");
    int64_t t0 = ptc_mono_ms(), t_files, t_test;
    int rc = 0;
    DIR *d;

    pthread_mutex_lock(&e->apply_mu);
    const char *dirs[] = {e->avail, e->enabled, e->backup_dir, e->certs_dir, well_known};
    for (size_t i = 0; i < PTC_ARRAY_LEN(dirs) && rc == 0; i++) {
        rc = ptc_mkdir_p(dirs[i], 0755);
        if (rc != 0)
            snprintf(err, errlen, "creating %s: %s", dirs[i], strerror(-rc));
    }
    if (rc != 0)
        goto out;
    /* A first start has no managed file yet: render quietly. */
    r.fresh = true;
    if ((d = opendir(e->avail)) != NULL) {
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL && r.fresh)
            r.fresh = strncmp(ent->d_name, e->conf.file_prefix, strlen(e->conf.file_prefix)) != 0;
        closedir(d);
    }
    pthread_mutex_lock(&e->mu);
    json_array_clear(e->disabled);
    pthread_mutex_unlock(&e->mu);
    if (e->managed && (rc = write_main_conf(e, err, errlen)) != 0)
        goto out;
    if ((rc = reconcile_certs(&r, state, err, errlen)) != 0 ||
        (rc = reconcile_sites(&r, state, err, errlen)) != 0)
        goto out;
    remove_stale(&r);
    /* One flush for every file written above (see ptc_nginx_write_nosync). */
    for (size_t i = 0; i < 2; i++) /* the two site folders */
        if (r.repairs && (rc = ptc_nginx_sync_fs(dirs[i])) != 0) {
            snprintf(err, errlen, "syncing %s: %s", dirs[i], strerror(-rc));
            goto out;
        }
    t_files = ptc_mono_ms();
    if ((rc = test_isolating(e, err, errlen)) != 0)
        goto out;
    t_test = ptc_mono_ms();
    bool spawned = false;
    if (e->managed && e->proc == NULL) {
        bool adopted;
        e->proc = ptc_nginx_proc_new((const char *const *)e->nginx_argv, e->pid_file, e->conf_path,
                                     e->error_log, ptc_settings_int(e->s, PTC_SET_DRAIN_TIMEOUT_MS) + 1000);
        rc = ptc_nginx_proc_start(e->proc, nginx_wait_ms(e, t_test - t_files), &adopted, err, errlen);
        if (rc != 0) {
            ptc_nginx_proc_free(e->proc);
            e->proc = NULL;
            goto out;
        }
        spawned = !adopted;
        if (spawned)
            set_status(e, -1, 1, NULL);
    }
    if (!spawned) {
        /* nginx was running already: make it serve what is on disk now,
         * whatever an interrupted apply left it with.  A reload that fails
         * here is reported by the health endpoint; the API still comes up
         * so that it can be fixed. */
        ptc_buf out = PTC_BUF_INIT;
        long ms;
        if (!run_reload(e, &out, &ms))
            ptc_log_error("nginx reload at start failed", PTC_LS("error", ptc_buf_cstr(&out)));
        ptc_buf_free(&out);
    }
    ptc_log_info("nginx engine started", PTC_LI("files", r.desired.n), PTC_LI("repairs", r.repairs),
                 PTC_LI("files_ms", t_files - t0), PTC_LI("test_ms", t_test - t_files),
                 PTC_LI("nginx_ms", ptc_mono_ms() - t_test), PTC_LB("started_nginx", spawned));
out:
    pthread_mutex_unlock(&e->apply_mu);
    for (size_t i = 0; i < r.desired.n; i++)
        free((char *)r.desired.v[i]);
    free(r.desired.v);
    free(well_known);
    if (rc != 0) {
        set_status(e, -1, -1, err);
        ptc_log_error("nginx engine start failed", PTC_LS("error", err));
    }
    return rc;
}

/* ---- status, challenges, lifetime --------------------------------------- */

static json_t *nginx_status(ptc_engine *base, ptc_health_level *level)
{
    ngx *e = base->impl;
    bool present = access(e->nginx_argv[0], X_OK) == 0;
    bool writable =
        access(e->avail, W_OK) == 0 && access(e->enabled, W_OK) == 0 && access(e->backup_dir, W_OK) == 0;
    pid_t master = current_master(e);
    json_t *j = json_object();

    pthread_mutex_lock(&e->mu);
    json_object_set_new(j, "present", json_boolean(present));
    json_object_set_new(j, "config_test_ok", e->test_state < 0 ? json_null() : json_boolean(e->test_state));
    if (e->last_reload_at) {
        char stamp[32];
        ptc_time_format(e->last_reload_at, stamp, sizeof(stamp));
        json_object_set_new(j, "last_reload_timestamp", json_string(stamp));
    } else {
        json_object_set_new(j, "last_reload_timestamp", json_null());
    }
    json_object_set_new(j, "last_reload_ok",
                        e->reload_state < 0 ? json_null() : json_boolean(e->reload_state));
    json_object_set_new(j, "version", e->version[0] ? json_string(e->version) : json_null());
    json_object_set_new(j, "managed", json_boolean(e->managed));
    json_object_set_new(j, "master_pid", master > 0 ? json_integer(master) : json_null());
    json_object_set_new(j, "config_dirs_writable", json_boolean(writable));
    if (e->proc)
        json_object_set_new(j, "restarts", json_integer(ptc_nginx_proc_restarts(e->proc)));
    if (json_array_size(e->disabled))
        json_object_set_new(j, "disabled_files", json_deep_copy(e->disabled));
    if (e->last_error[0])
        json_object_set_new(j, "last_error", json_string(e->last_error));
    if (!present || !writable || (e->managed && master <= 0))
        *level = PTC_UNHEALTHY;
    else if (e->test_state == 0 || e->reload_state == 0 || json_array_size(e->disabled))
        *level = PTC_DEGRADED;
    else
        *level = PTC_HEALTHY;
    pthread_mutex_unlock(&e->mu);
    return j;
}

static void nginx_metrics(ptc_engine *base, ptc_buf *out)
{
    ngx *e = base->impl;
    pid_t master = current_master(e);
    pthread_mutex_lock(&e->mu);
    ptc_buf_appendf(
        out,
        "# HELP portico_nginx_up Whether an nginx master runs.\n"
        "# TYPE portico_nginx_up gauge\n"
        "portico_nginx_up %d\n"
        "# HELP portico_nginx_config_test_ok Whether the last nginx -t accepted the configuration.\n"
        "# TYPE portico_nginx_config_test_ok gauge\n"
        "portico_nginx_config_test_ok %d\n"
        "# HELP portico_nginx_tests_total Runs of nginx -t by result.\n"
        "# TYPE portico_nginx_tests_total counter\n"
        "portico_nginx_tests_total{result=\"ok\"} %llu\n"
        "portico_nginx_tests_total{result=\"failed\"} %llu\n"
        "# HELP portico_nginx_reloads_total Reloads (command and new workers confirmed) by result.\n"
        "# TYPE portico_nginx_reloads_total counter\n"
        "portico_nginx_reloads_total{result=\"ok\"} %llu\n"
        "portico_nginx_reloads_total{result=\"failed\"} %llu\n"
        "# HELP portico_nginx_last_test_seconds Duration of the last nginx -t.\n"
        "# TYPE portico_nginx_last_test_seconds gauge\n"
        "portico_nginx_last_test_seconds %.3f\n"
        "# HELP portico_nginx_last_reload_seconds Duration of the last reload until new workers ran.\n"
        "# TYPE portico_nginx_last_reload_seconds gauge\n"
        "portico_nginx_last_reload_seconds %.3f\n"
        "# HELP portico_nginx_disabled_files Domain files left out at start because nginx rejects them.\n"
        "# TYPE portico_nginx_disabled_files gauge\n"
        "portico_nginx_disabled_files %zu\n",
        master > 0, e->test_state == 1, e->tests[1], e->tests[0], e->reloads[1], e->reloads[0],
        e->last_test_took_ms / 1000.0, e->last_reload_took_ms / 1000.0, json_array_size(e->disabled));
    pthread_mutex_unlock(&e->mu);
    if (e->proc)
        ptc_buf_appendf(out,
                        "# HELP portico_nginx_restarts_total Restarts of the managed nginx after it died.\n"
                        "# TYPE portico_nginx_restarts_total counter\n"
                        "portico_nginx_restarts_total %u\n",
                        ptc_nginx_proc_restarts(e->proc));
}

static bool all_chars(const char *s, size_t max, const char *extra)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || (*s && strchr(extra, *s))))
            return false;
    return true;
}

static int nginx_set_challenge(ptc_engine *base, const char *token, const char *key_authorization)
{
    ngx *e = base->impl;
    /* The token is base64url (RFC 8555 §8.3); the key authorization is
     * the token, '.', and a base64url thumbprint. */
    if (!all_chars(token, 256, "") || !all_chars(key_authorization, 1024, "."))
        return -EINVAL;
    char *dir = ptc_path_join(e->webroot, ".well-known/acme-challenge");
    char *path = ptc_path_join(dir, token);
    int rc = ptc_mkdir_p(dir, 0755);
    if (rc == 0)
        rc = ptc_file_write_atomic(path, key_authorization, strlen(key_authorization), 0644);
    free(dir);
    free(path);
    return rc;
}

static void nginx_clear_challenge(ptc_engine *base, const char *token)
{
    ngx *e = base->impl;
    if (!all_chars(token, 256, ""))
        return;
    char *path = ptc_xasprintf("%s/.well-known/acme-challenge/%s", e->webroot, token);
    unlink(path);
    free(path);
}

static void nginx_destroy(ptc_engine *base)
{
    ngx *e = base->impl;
    ptc_nginx_proc_free(e->proc);
    ptc_argv_free(e->nginx_argv);
    free(e->webroot);
    free(e->certs_dir);
    free(e->avail);
    free(e->enabled);
    free(e->backup_dir);
    free(e->conf_path);
    free(e->prefix);
    free(e->pid_file);
    free(e->error_log);
    json_decref(e->disabled);
    json_decref(e->down);
    json_decref(e->changed);
    json_decref(e->down_view);
    pthread_mutex_destroy(&e->health_mu);
    pthread_mutex_destroy(&e->apply_mu);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

static const ptc_engine_ops nginx_ops = {
    .name = "nginx",
    .start = nginx_start,
    .apply = nginx_apply,
    .status = nginx_status,
    .set_challenge = nginx_set_challenge,
    .clear_challenge = nginx_clear_challenge,
    .metrics = nginx_metrics,
    .set_upstream_health = nginx_set_upstream_health,
    .apply_health = nginx_apply_health,
    .destroy = nginx_destroy,
};

/* "nginx version: nginx/1.22.1" -> "1.22.1". */
static void read_version(ngx *e)
{
    const char *argv[] = {e->nginx_argv[0], "-v", NULL};
    ptc_proc_result r;
    if (ptc_proc_run(argv, NULL, 5000, 1024, &r) == 0 && r.exit_code == 0) {
        const char *v = strstr(ptc_buf_cstr(&r.output), "nginx/");
        if (v) {
            v += 6;
            size_t n = strcspn(v, " \r\n");
            snprintf(e->version, sizeof(e->version), "%.*s", (int)n, v);
        }
    }
    ptc_proc_result_free(&r);
}

/* The pid file of a system nginx: its main config's pid directive, else
 * Debian's default. */
static char *system_pid_file(const char *conf)
{
    char *text = NULL, pid[PATH_MAX];
    size_t len;
    bool found = ptc_file_read(conf, 1 << 20, &text, &len) == 0 &&
                 ptc_nginx_find_directive(text, len, "pid", pid, sizeof(pid)) == 0 && pid[0] == '/';
    free(text);
    return ptc_xstrdup(found ? pid : "/run/nginx.pid");
}

ptc_engine *ptc_engine_nginx_create(const ptc_settings *s, char *err, size_t errlen)
{
    ngx *e = ptc_xcalloc(1, sizeof(*e));
    unsigned port;
    char *state_dir = abs_dir(ptc_settings_get(s, PTC_SET_STATE_DIR), true);
    const char *access_log = ptc_settings_get(s, PTC_SET_ACCESS_LOG);

    e->base.ops = &nginx_ops;
    e->base.settings = s;
    e->base.impl = e;
    e->s = s;
    e->managed = ptc_settings_bool(s, PTC_SET_NGINX_MANAGED);
    e->test_state = e->reload_state = -1;
    e->disabled = json_array();
    pthread_mutex_init(&e->apply_mu, NULL);
    pthread_mutex_init(&e->health_mu, NULL);
    e->down = json_object();
    e->changed = json_object();
    e->down_view = json_object();
    pthread_mutex_init(&e->mu, NULL);
    e->webroot = abs_dir(ptc_settings_get(s, PTC_SET_ACME_WEBROOT), true);
    e->certs_dir = ptc_path_join(state_dir, "certs");
    e->avail = abs_dir(ptc_settings_get(s, PTC_SET_NGINX_SITES_AVAILABLE), true);
    e->enabled = abs_dir(ptc_settings_get(s, PTC_SET_NGINX_SITES_ENABLED), true);
    e->backup_dir = abs_dir(ptc_settings_get(s, PTC_SET_NGINX_BACKUP_DIR), true);
    if (e->managed) {
        e->prefix = ptc_path_join(state_dir, "nginx");
        ptc_mkdir_p(e->prefix, 0755);
        char *conf_dir = ptc_path_dirname(ptc_settings_get(s, PTC_SET_NGINX_CONF));
        char *abs = abs_dir(conf_dir, true);
        const char *slash = strrchr(ptc_settings_get(s, PTC_SET_NGINX_CONF), '/');
        e->conf_path = ptc_path_join(abs, slash ? slash + 1 : ptc_settings_get(s, PTC_SET_NGINX_CONF));
        free(conf_dir);
        free(abs);
        e->pid_file = ptc_path_join(e->prefix, "nginx.pid");
        e->error_log = ptc_path_join(e->prefix, "logs/error.log");
        const char *argv[] = {ptc_settings_get(s, PTC_SET_NGINX_BIN),
                              "-p",
                              e->prefix,
                              "-e",
                              e->error_log,
                              "-c",
                              e->conf_path,
                              NULL};
        e->nginx_argv = ptc_xcalloc(PTC_ARRAY_LEN(argv), sizeof(char *));
        for (size_t i = 0; argv[i]; i++)
            e->nginx_argv[i] = ptc_xstrdup(argv[i]);
    } else {
        e->conf_path = ptc_xstrdup(ptc_settings_get(s, PTC_SET_NGINX_CONF));
        e->pid_file = system_pid_file(e->conf_path);
        e->nginx_argv = ptc_xcalloc(4, sizeof(char *));
        e->nginx_argv[0] = ptc_xstrdup(ptc_settings_get(s, PTC_SET_NGINX_BIN));
        e->nginx_argv[1] = ptc_xstrdup("-c");
        e->nginx_argv[2] = ptc_xstrdup(e->conf_path);
    }
    free(state_dir);

    e->conf.file_prefix = ptc_settings_get(s, PTC_SET_NGINX_FILE_PREFIX);
    e->conf.acme_webroot = e->webroot;
    e->conf.certs_dir = e->certs_dir;
    e->conf.trusted_proxies = ptc_settings_get(s, PTC_SET_TRUSTED_PROXIES);
    e->conf.max_body_size = (unsigned long long)ptc_settings_int(s, PTC_SET_MAX_BODY_SIZE);
    e->conf.connect_timeout_ms = ptc_settings_int(s, PTC_SET_UPSTREAM_CONNECT_TIMEOUT_MS);
    e->conf.upstream_timeout_ms = ptc_settings_int(s, PTC_SET_UPSTREAM_TIMEOUT_MS);
    e->conf.upstream_down = view_down;
    e->conf.upstream_down_arg = e;
    e->conf.http_listen = e->http_listen;
    e->conf.https_listen = e->https_listen;
    if (ptc_nginx_listen_form(ptc_settings_get(s, PTC_SET_HTTP_LISTEN), e->http_listen,
                              sizeof(e->http_listen), &port) != 0) {
        snprintf(err, errlen, "nginx: http_listen %s cannot be written as a listen address",
                 ptc_settings_get(s, PTC_SET_HTTP_LISTEN));
        goto fail;
    }
    if (ptc_settings_get(s, PTC_SET_HTTPS_LISTEN)[0] != '\0' &&
        ptc_nginx_listen_form(ptc_settings_get(s, PTC_SET_HTTPS_LISTEN), e->https_listen,
                              sizeof(e->https_listen), &e->conf.https_port) != 0) {
        snprintf(err, errlen, "nginx: https_listen %s cannot be written as a listen address",
                 ptc_settings_get(s, PTC_SET_HTTPS_LISTEN));
        goto fail;
    }
    /* The prefix is one token of every file name and of ssl/root paths. */
    for (const char *p = e->conf.file_prefix; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.')) {
            snprintf(err, errlen, "nginx: nginx_file_prefix may only hold a-z, 0-9, '-', '_' and '.'");
            goto fail;
        }
    if (e->conf.file_prefix[0] == '\0' || e->conf.file_prefix[0] == '.') {
        snprintf(err, errlen, "nginx: nginx_file_prefix must not be empty or start with '.'");
        goto fail;
    }
    const char *paths[] = {
        e->webroot, e->certs_dir, e->enabled, e->prefix ? e->prefix : "/", e->error_log ? e->error_log : "/",
        e->pid_file};
    for (size_t i = 0; i < PTC_ARRAY_LEN(paths); i++)
        if (!safe_path(paths[i])) {
            snprintf(err, errlen, "nginx: the path %s holds characters nginx config cannot hold safely",
                     paths[i]);
            goto fail;
        }
    if (e->managed && access_log[0] && strcmp(access_log, "-") != 0 && !safe_path(access_log)) {
        snprintf(err, errlen, "nginx: access_log %s must be an absolute path of plain characters",
                 access_log);
        goto fail;
    }
    read_version(e);
    return &e->base;
fail:
    nginx_destroy(&e->base);
    return NULL;
}
