/* TLS for the builtin data plane (OpenSSL 3).
 *
 * One server context per data plane runs every handshake: it carries
 * Mozilla's "intermediate" settings (TLS 1.2 and 1.3), ALPN (http/1.1) and
 * the session-ticket keys, shared by every worker, so a session resumes on
 * any worker.  Each certificate is parsed and checked once into a context
 * of its own; in OpenSSL's servername callback the one SNI names is
 * installed on the connection (SSL_use_cert_and_key: references, no copy
 * of the context's other settings, which SSL_set_SSL_CTX would make on
 * every handshake).
 *
 * Ticket keys are random, made in memory, replaced every hour; a ticket
 * made with one of the two previous keys still resumes (and is renewed),
 * anything older means a full handshake.
 *
 * Certificate contexts are shared by content: building a snapshot with the
 * same PEM chain and key as a live one reuses that SSL_CTX instead of
 * parsing the key again, so publishing 10,000 unchanged certificates is
 * cheap. */
#ifndef PTC_TLS_H
#define PTC_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

/* Chooses the certificate for a handshake from the SNI name (NULL when
 * the client sent none).  Returns the certificate's context (borrowed: it
 * must stay alive until the callback returns; the connection keeps its own
 * references to the certificate and key), or NULL to fail the handshake
 * with an unrecognized_name alert.  Runs on the handshaking thread. */
typedef SSL_CTX *(*ptc_tls_pick_cb)(SSL *ssl, const char *servername, void *arg);

/* The server context that handshakes start on; pick selects the
 * certificate.  Returns NULL with OpenSSL's reason in err.  Free with
 * SSL_CTX_free(). */
SSL_CTX *ptc_tls_server_ctx_new(ptc_tls_pick_cb pick, void *arg, char *err, size_t errlen);

/* The context holding one certificate: cert_pem holds the leaf then its
 * chain, key_pem the private key, which must match.  Returns a counted reference
 * (release it with ptc_tls_cert_ctx_release, never SSL_CTX_free), or NULL
 * with the reason in err.  Thread-safe; blocks only on parsing. */
SSL_CTX *ptc_tls_cert_ctx_get(const char *cert_pem, const char *key_pem, char *err, size_t errlen);
/* Another reference to a context from ptc_tls_cert_ctx_get, without
 * hashing its PEM again; returns ctx. */
SSL_CTX *ptc_tls_cert_ctx_retain(SSL_CTX *ctx);
void ptc_tls_cert_ctx_release(SSL_CTX *ctx);

/* Replaces the ticket encryption key now (the hourly rotation does this by
 * itself); tickets of the two previous keys still resume.  Thread-safe. */
void ptc_tls_ticket_keys_rotate(void);

/* Writes "what: <OpenSSL's first queued error>" to err and empties the
 * thread's error queue. */
void ptc_tls_error(char *err, size_t errlen, const char *what);

#endif
