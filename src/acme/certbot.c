/* The certbot driver (see certbot.h). */
#include "acme/certbot.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/proc.h"
#include "core/util.h"
#include "model/validate.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define OUTPUT_MAX (256 * 1024)
#define OUTPUT_TAIL 4096
#define PEM_MAX (1024 * 1024)
#define LOG_MAX (8 * 1024 * 1024)
#define LOG_ERROR_MAX 1024
/* certbot 2.1 retries a badNonce refusal once, then gives up (and, on
 * Python 3.11, hides it behind "AttributeError: can't set attribute"); a
 * CA that refuses nonces at random (Pebble: 5%) fails a run that is
 * refused twice in a row, which a failed validation with its many polls
 * does often enough that three runs in all were seen to fail together.
 * Such a run is tried again, at most this many runs in all. */
#define RUNS_MAX 5

char **ptc_certbot_argv(const ptc_certbot_params *p, const char *domain)
{
    const char *v[40];
    size_t n = 0;
    v[n++] = p->bin;
    v[n++] = "certonly";
    v[n++] = "--webroot";
    v[n++] = "-w";
    v[n++] = p->webroot;
    v[n++] = "-d";
    v[n++] = domain;
    /* The lineage is named after the domain, so that live/{domain}/ is
     * where the result is whatever certbot held before. */
    v[n++] = "--cert-name";
    v[n++] = domain;
    if (p->email && p->email[0]) {
        v[n++] = "--email";
        v[n++] = p->email;
    } else {
        v[n++] = "--register-unsafely-without-email";
    }
    v[n++] = "--agree-tos";
    v[n++] = "--non-interactive";
    v[n++] = "--server";
    v[n++] = p->directory_url;
    v[n++] = "--config-dir";
    v[n++] = p->config_dir;
    v[n++] = "--work-dir";
    v[n++] = p->work_dir;
    v[n++] = "--logs-dir";
    v[n++] = p->logs_dir;
    v[n++] = "--key-type";
    if (strcmp(p->key_type, "rsa") == 0) {
        v[n++] = "rsa";
        v[n++] = "--rsa-key-size";
        v[n++] = "2048";
    } else {
        v[n++] = "ecdsa";
        v[n++] = "--elliptic-curve";
        v[n++] = "secp256r1";
    }
    if (p->force_renewal)
        v[n++] = "--force-renewal";
    char **argv = ptc_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        argv[i] = ptc_xstrdup(v[i]);
    return argv;
}

/* Our environment with REQUESTS_CA_BUNDLE (certbot's HTTP library reads
 * it) set to the CA bundle, or NULL to inherit ours unchanged. */
static char **child_env(const char *ca_bundle)
{
    size_t n = 0, k = 0;
    char **env;
    if (ca_bundle == NULL || ca_bundle[0] == '\0')
        return NULL;
    while (environ[n])
        n++;
    env = ptc_xcalloc(n + 2, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        if (!ptc_str_has_prefix(environ[i], "REQUESTS_CA_BUNDLE="))
            env[k++] = ptc_xstrdup(environ[i]);
    env[k] = ptc_xasprintf("REQUESTS_CA_BUNDLE=%s", ca_bundle);
    return env;
}

/* The end of certbot's output: where it says what went wrong. */
static json_t *output_tail(const ptc_buf *out)
{
    size_t start = out->len > OUTPUT_TAIL ? out->len - OUTPUT_TAIL : 0;
    /* Keep the tail valid UTF-8 for JSON: skip continuation bytes at the
     * cut, and let jansson refuse anything else (then no output at all). */
    while (start < out->len && ((unsigned char)out->data[start] & 0xc0) == 0x80)
        start++;
    json_t *s = json_stringn(out->data ? out->data + start : "", out->len - start);
    return s ? s : json_string("(certbot's output is not UTF-8)");
}

/* What certbot's log of the last run says went wrong: the last ACME error
 * it recorded (certbot's own output may only show a Python traceback).
 * Sets *bad_nonce when the CA refused a nonce.  NULL when nothing is
 * found. */
static json_t *log_error(const char *logs_dir, bool *bad_nonce)
{
    char *path = ptc_path_join(logs_dir, "letsencrypt.log"), *text = NULL;
    json_t *out = NULL;
    *bad_nonce = false;
    if (ptc_file_read(path, LOG_MAX, &text, NULL) == 0) {
        const char *marker = "acme.messages.Error: ", *last = NULL, *at = text;
        while ((at = strstr(at, marker)) != NULL)
            last = at++;
        if (last) {
            last += strlen(marker);
            size_t n = strcspn(last, "\n");
            n = n > LOG_ERROR_MAX ? LOG_ERROR_MAX : n;
            while (n > 0 && ((unsigned char)last[n] & 0xc0) == 0x80)
                n--;
            out = json_stringn(last, n);
            *bad_nonce = strncmp(last, "urn:ietf:params:acme:error:badNonce", 35) == 0;
        }
    }
    free(text);
    free(path);
    return out;
}

static int fail(ptc_acme_failure *f, int rc, json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(ptc_acme_failure *f, int rc, json_t *details, const char *fmt, ...)
{
    va_list ap;
    f->stage = "certbot";
    va_start(ap, fmt);
    vsnprintf(f->message, sizeof(f->message), fmt, ap);
    va_end(ap);
    f->details = details ? details : json_object();
    json_object_set_new(f->details, "stage", json_string("certbot"));
    ptc_log_warn("certbot issuance failed", PTC_LS("reason", f->message));
    return rc;
}

int ptc_certbot_issue(const ptc_certbot_params *p, const char *domain, ptc_cert **out, ptc_acme_failure *f)
{
    char **argv = NULL, **env = NULL;
    char *live = NULL, *chain_path = NULL, *key_path = NULL, *chain = NULL, *key = NULL, *cmd = NULL;
    ptc_proc_result res = {0};
    char why[256];
    int64_t deadline = ptc_mono_ms() + p->timeout_ms;
    int rc;

    *out = NULL;
    memset(f, 0, sizeof(*f));
    /* The domain becomes a path under config_dir: it must be a plain host
     * name, whatever the caller checked. */
    if (ptc_check_domain(domain, false) != NULL)
        return fail(f, -EINVAL, NULL, "%s is not a host name certbot can issue for", domain);
    if ((rc = ptc_mkdir_p(p->webroot, 0755)) != 0 || (rc = ptc_mkdir_p(p->config_dir, 0700)) != 0 ||
        (rc = ptc_mkdir_p(p->work_dir, 0700)) != 0 || (rc = ptc_mkdir_p(p->logs_dir, 0700)) != 0)
        return fail(f, rc, NULL, "cannot create certbot's folders: %s", strerror(-rc));
    argv = ptc_certbot_argv(p, domain);
    env = child_env(p->ca_bundle);
    cmd = ptc_argv_join((const char *const *)argv);
    ptc_log_info("certbot started", PTC_LS("domain", domain), PTC_LS("command", cmd));
    for (int run = 1;; run++) {
        int64_t left = deadline - ptc_mono_ms();
        bool bad_nonce = false;
        json_t *logged;
        ptc_proc_result_free(&res);
        if (left <= 0) {
            rc = fail(f, -ETIMEDOUT, json_pack("{s:s}", "command", cmd),
                      "certbot did not finish within %u ms", p->timeout_ms);
            goto out;
        }
        rc = ptc_proc_run((const char *const *)argv, env, (int)left, OUTPUT_MAX, &res);
        if (rc != 0) {
            rc = fail(f, rc, json_pack("{s:s}", "command", cmd), "cannot run %s: %s", p->bin, strerror(-rc));
            goto out;
        }
        if (res.cancelled) {
            rc = fail(f, -ECANCELED,
                      json_pack("{s:s, s:o}", "command", cmd, "output", output_tail(&res.output)),
                      "certbot was stopped: portico is stopping");
            goto out;
        }
        if (!res.timed_out && res.exit_code == 0)
            break;
        logged = res.timed_out ? NULL : log_error(p->logs_dir, &bad_nonce);
        if (bad_nonce && run < RUNS_MAX) {
            ptc_log_warn("certbot gave up on a refused nonce; running it again", PTC_LS("domain", domain),
                         PTC_LI("run", run));
            json_decref(logged);
            continue;
        }
        json_t *d = json_pack("{s:s, s:i, s:b, s:o, s:i}", "command", cmd, "exit_code", res.exit_code,
                              "timed_out", res.timed_out, "output", output_tail(&res.output), "runs", run);
        if (logged)
            json_object_set_new(d, "ca_error", logged);
        rc = res.timed_out ? fail(f, -ETIMEDOUT, d, "certbot did not finish within %u ms", p->timeout_ms)
                           : fail(f, -EPROTO, d, "certbot failed with exit status %d", res.exit_code);
        goto out;
    }
    live = ptc_xasprintf("%s/live/%s", p->config_dir, domain);
    chain_path = ptc_path_join(live, "fullchain.pem");
    key_path = ptc_path_join(live, "privkey.pem");
    if ((rc = ptc_file_read(chain_path, PEM_MAX, &chain, NULL)) != 0 ||
        (rc = ptc_file_read(key_path, PEM_MAX, &key, NULL)) != 0) {
        rc = fail(f, rc, json_pack("{s:s, s:o}", "folder", live, "output", output_tail(&res.output)),
                  "certbot succeeded but its certificate cannot be read from %s: %s", live, strerror(-rc));
        goto out;
    }
    if ((*out = ptc_acme_cert_make(domain, chain, key, "certbot", why, sizeof(why))) == NULL) {
        rc = fail(f, -EPROTO, json_pack("{s:s, s:s}", "folder", live, "reason", why),
                  "certbot's certificate does not pass the checks: %s", why);
        goto out;
    }
    ptc_log_info("certbot certificate issued", PTC_LS("domain", domain), PTC_LS("issuer", (*out)->issuer),
                 PTC_LS("fingerprint", (*out)->fingerprint));
    rc = 0;
out:
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    free(chain);
    free(live);
    free(chain_path);
    free(key_path);
    free(cmd);
    ptc_proc_result_free(&res);
    ptc_argv_free(env);
    ptc_argv_free(argv);
    return rc;
}
