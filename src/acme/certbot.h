/* The certbot driver (acme_client = certbot, seed 000's way with the nginx
 * engine): `certbot certonly --webroot` run with an argument vector and a
 * time limit in private config, work and logs folders, the test CA trusted
 * through REQUESTS_CA_BUNDLE, and the result read back from
 * {config_dir}/live/{domain}/ and checked like any issued certificate.
 * certbot writes the HTTP-01 answer under the webroot itself; the engine
 * must serve {webroot}/.well-known/acme-challenge/ (nginx does). */
#ifndef PTC_ACME_CERTBOT_H
#define PTC_ACME_CERTBOT_H

#include "acme/acme.h"
#include "model/cert.h"

#include <stdbool.h>

typedef struct ptc_certbot_params {
    const char *bin;
    const char *directory_url;
    const char *ca_bundle; /* PEM file for REQUESTS_CA_BUNDLE, or NULL/"" */
    const char *email;     /* NULL/"": --register-unsafely-without-email */
    const char *webroot;
    const char *config_dir, *work_dir, *logs_dir;
    const char *key_type; /* "ecdsa" or "rsa" */
    bool force_renewal;   /* a new certificate even when certbot holds one it deems fresh */
    unsigned timeout_ms;
} ptc_certbot_params;

/* The argument vector for domain (free with ptc_argv_free). */
char **ptc_certbot_argv(const ptc_certbot_params *p, const char *domain);

/* Runs certbot for domain (again, up to three runs, when the CA refused a
 * nonce: certbot retries that only once itself).  On success *out is a new
 * certificate (source "certbot") and 0 is returned; otherwise -errno with
 * f filled (certbot's exit status, the tail of its output and the last
 * ACME error of its log in f->details).  Blocks for up to p->timeout_ms
 * in all. */
int ptc_certbot_issue(const ptc_certbot_params *p, const char *domain, ptc_cert **out, ptc_acme_failure *f);

#endif
