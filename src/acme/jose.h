/* JOSE for ACME (RFC 7515, 7517, 7638, RFC 8555 §6.2): base64url, the
 * account key (ECDSA P-256), its JWK and thumbprint, and JWS signing with
 * ES256 in the flattened JSON serialization.  Pure computation: nothing
 * here blocks or touches the network or the disk. */
#ifndef PTC_ACME_JOSE_H
#define PTC_ACME_JOSE_H

#include <openssl/evp.h>
#include <stddef.h>

/* base64url without padding (RFC 7515 §2), in a new string. */
char *ptc_jose_b64url(const void *data, size_t len);
/* Decodes unpadded base64url into a new buffer (*out, *out_len; a NUL
 * follows the data).  Returns 0, or -EINVAL on any other character or a
 * length that cannot be base64url. */
int ptc_jose_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *out_len);

/* A new ECDSA P-256 key (the account key).  Free with EVP_PKEY_free. */
EVP_PKEY *ptc_jose_key_generate(void);
/* The private key as unencrypted PKCS#8 PEM, in a new string.  Key
 * material: never log it. */
char *ptc_jose_key_to_pem(EVP_PKEY *key);
/* Reads a PEM private key; NULL when it is not one, or not a P-256 key. */
EVP_PKEY *ptc_jose_key_from_pem(const char *pem);

/* The public JWK of an EC P-256 or RSA key, with its members in
 * lexicographic order and nothing else (RFC 7638 §3.2), as a new JSON text.
 * NULL for another key type. */
char *ptc_jose_jwk(EVP_PKEY *key);
/* The RFC 7638 thumbprint: base64url(SHA-256(ptc_jose_jwk(key))), in a new
 * string; NULL for another key type. */
char *ptc_jose_thumbprint(EVP_PKEY *key);

/* A JWS of payload (the empty string for a POST-as-GET) signed with the
 * ES256 key: the protected header carries alg, nonce and url, and kid when
 * kid is not NULL, else the jwk (RFC 8555 §6.2).  Returns the flattened
 * JSON serialization in a new string, or NULL when OpenSSL fails. */
char *ptc_jose_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url, const char *payload);

#endif
