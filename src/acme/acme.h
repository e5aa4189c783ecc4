/* portico's ACME client (RFC 8555) for HTTP-01: directory, nonces with
 * badNonce retries, the account (an ES256 key kept in the store), an order
 * for one domain, its authorizations (those already valid are reused), the
 * challenge answered through a responder the caller supplies (the engine's
 * set_challenge), finalize with a fresh key's CSR, polling that honours
 * Retry-After, and the certificate chain checked against the key.
 *
 * Every exchange with the CA is bounded: PTC_ACME_BODY_MAX bytes, 64 KiB of
 * headers, 30 s each, and the whole issuance by params->timeout_ms.  The
 * CA is HTTPS only and never followed through a redirect.
 *
 * Also here: what certbot and the ACME client share (the failure report,
 * turning an issued PEM chain and key into a certificate of the model),
 * and the account key's storage. */
#ifndef PTC_ACME_ACME_H
#define PTC_ACME_ACME_H

#include "model/cert.h"
#include "store/store.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* How the challenge is served: set() makes key_authorization the answer
 * to GET /.well-known/acme-challenge/<token> on every host name of the
 * HTTP listener (returns 0 or -errno); clear() removes it.  Called from the
 * issuing thread. */
typedef struct ptc_acme_responder {
    int (*set)(void *arg, const char *token, const char *key_authorization);
    void (*clear)(void *arg, const char *token);
    void *arg;
} ptc_acme_responder;

typedef struct ptc_acme_params {
    const char *directory_url;
    const char *ca_bundle;       /* PEM file trusted for the CA, or NULL/"" for the system's */
    const char *email;           /* account contact, or NULL/"" for none */
    const char *account_key_pem; /* ES256 (P-256) private key */
    const char *key_type;        /* the certificate's key: "ecdsa" or "rsa" */
    unsigned timeout_ms;         /* the whole issuance */
    const atomic_bool *cancel;   /* when it becomes true the issuance stops soon (NULL: never) */
} ptc_acme_params;

/* Why an issuance failed: where, a sentence, and details for the API
 * error (the CA's problem document, certbot's output). */
typedef struct ptc_acme_failure {
    const char *stage; /* "directory", "account", "order", "authorization", "challenge", "finalize",
                          "certificate", "certbot", "check" */
    char message[512];
    json_t *details; /* owned; {"stage", "problem"?, "http_status"?, "url"?, ...} */
} ptc_acme_failure;

void ptc_acme_failure_clear(ptc_acme_failure *f);

/* Issues a certificate for domain.  On success *out is a new certificate
 * (source "acme", checked with ptc_tls_inspect: chain order, the key, the
 * domain) and 0 is returned; otherwise -EPROTO (the CA refused), -ETIMEDOUT,
 * -ECANCELED, -EIO (the CA unreachable) or -EINVAL, with f filled.  Every
 * challenge set through r is cleared before returning, in all cases.
 * Blocks for up to params->timeout_ms; safe to run in several threads. */
int ptc_acme_issue(const ptc_acme_params *params, const char *domain, const ptc_acme_responder *r,
                   ptc_cert **out, ptc_acme_failure *f);

/* The ACME account key: read from the store's kv, or made (P-256) and
 * stored there on first use.  The store is the one place that is already
 * 0600, backed up with the rest of the state and shared by every node of a
 * PostgreSQL store, so all nodes use one account.  *pem is a new string
 * (key material: never log it).  Returns 0 or the store's -errno.  Blocks
 * on the store. */
int ptc_acme_account_key(ptc_store *st, char **pem);

/* A certificate of the model from an issued PEM chain and key: checked
 * with ptc_tls_inspect against domain, with the facts filled in and
 * source set.  Returns NULL with the reason in err. */
ptc_cert *ptc_acme_cert_make(const char *domain, const char *chain_pem, const char *key_pem,
                             const char *source, char *err, size_t errlen);

#endif
