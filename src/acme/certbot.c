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
    rc = ptc_proc_run((const char *const *)argv, env, (int)p->timeout_ms, OUTPUT_MAX, &res);
    if (rc != 0) {
        rc = fail(f, rc, json_pack("{s:s}", "command", cmd), "cannot run %s: %s", p->bin, strerror(-rc));
        goto out;
    }
    if (res.timed_out || res.exit_code != 0) {
        json_t *d = json_pack("{s:s, s:i, s:b, s:o}", "command", cmd, "exit_code", res.exit_code, "timed_out",
                              res.timed_out, "output", output_tail(&res.output));
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
