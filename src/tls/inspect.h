/* Reading a PEM certificate chain and key before portico accepts them:
 * the key matches the leaf, the chain is in order (each certificate signed
 * by the next), the leaf covers the domain and is valid now; and the facts
 * shown by the API (issuer, validity, names, fingerprint). */
#ifndef PTC_TLS_INSPECT_H
#define PTC_TLS_INSPECT_H

#include <stddef.h>
#include <stdint.h>

#define PTC_TLS_CHAIN_MAX 10

typedef struct ptc_tls_facts {
    char *issuer; /* one-line distinguished names */
    char *subject;
    int64_t not_before; /* ms since the epoch */
    int64_t not_after;
    char **sans; /* DNS names and IP addresses of the leaf */
    size_t n_sans;
    char *fingerprint; /* SHA-256 of the leaf's DER, lower-case hex */
    size_t chain_len;
} ptc_tls_facts;

/* Inspects chain_pem (leaf first) and, when key_pem is not NULL, checks the
 * key against the leaf; when domain is not NULL, checks the leaf covers it
 * (a "*.x" domain needs a "*.x" name).  Fills out on success (free with
 * ptc_tls_facts_free).  Returns 0, or -EINVAL with a reason for the
 * client in err (never any key material). */
int ptc_tls_inspect(const char *chain_pem, const char *key_pem, const char *domain, ptc_tls_facts *out,
                    char *err, size_t errlen);
void ptc_tls_facts_free(ptc_tls_facts *f);

/* The passphrase callback for every PEM read of portico: none, so an
 * encrypted key is refused.  OpenSSL's default (a NULL callback) prompts
 * on the terminal, or reads stdin when there is none: that would block
 * the calling thread or feed it whatever the daemon's stdin holds. */
int ptc_tls_no_passphrase(char *buf, int size, int rwflag, void *arg);

#endif
