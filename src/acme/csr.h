/* The certificate key and the certificate signing request (PKCS#10) sent
 * to an ACME CA's finalize URL: a fresh key per issuance (ECDSA P-256 by
 * default, RSA 2048 with acme_key_type = rsa) and a CSR naming the domain
 * as a subjectAltName.  Pure computation; never blocks. */
#ifndef PTC_ACME_CSR_H
#define PTC_ACME_CSR_H

#include <stddef.h>

typedef struct ptc_csr {
    char *key_pem;      /* the new private key, PKCS#8 PEM: key material, never log it */
    unsigned char *der; /* the CSR in DER */
    size_t der_len;
} ptc_csr;

/* Makes a new key of key_type ("ecdsa" or "rsa") and a CSR for domain
 * signed with it (SHA-256; subject CN=domain when it fits in 64 bytes; the
 * SAN extension with DNS:domain).  Returns 0, or -EINVAL for an unknown
 * key type or when OpenSSL fails.  Free with ptc_csr_free. */
int ptc_csr_create(const char *domain, const char *key_type, ptc_csr *out);
void ptc_csr_free(ptc_csr *c);

#endif
