/* A certificate in the desired state: a PEM chain and its key for one
 * domain, with the facts read from it when it was stored.  Immutable and
 * shared by reference count, like a proxy.  The key never leaves the
 * process through the API (ptc_cert_to_api has no key). */
#ifndef PTC_MODEL_CERT_H
#define PTC_MODEL_CERT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ptc_cert {
    atomic_int refs;
    char *domain;   /* lower-case; may start with "*." */
    char *cert_pem; /* leaf first, then intermediates */
    char *key_pem;
    char *source; /* "uploaded", "acme" or "certbot" */
    char *issuer; /* the issuer's distinguished name, one line */
    char *subject;
    int64_t not_before; /* ms since the epoch */
    int64_t not_after;
    char **sans; /* DNS names and IP addresses of the leaf */
    size_t n_sans;
    char *fingerprint; /* SHA-256 of the leaf, hex */
    int64_t updated_at;
} ptc_cert;

ptc_cert *ptc_cert_new(void);
ptc_cert *ptc_cert_retain(const ptc_cert *c);
void ptc_cert_release(const ptc_cert *c);

/* The stored form (with the PEMs) and back; NULL when malformed. */
json_t *ptc_cert_to_stored(const ptc_cert *c);
ptc_cert *ptc_cert_from_stored(const json_t *j);
/* The API form: everything but the PEMs. */
json_t *ptc_cert_to_api(const ptc_cert *c);

#endif
