/* The ACME CA's answers (RFC 8555 §7.1): directory, account, order,
 * authorization, challenge and problem documents, parsed strictly.  The CA
 * is treated as hostile: a body is at most PTC_ACME_BODY_MAX bytes, every
 * URL is an https URL of at most PTC_ACME_URL_MAX printable characters,
 * tokens are base64url, lists are bounded, statuses must be ones RFC 8555
 * names, and a missing or mistyped member is an error naming it.  Pure
 * functions; nothing blocks. */
#ifndef PTC_ACME_MSG_H
#define PTC_ACME_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define PTC_ACME_BODY_MAX (1024 * 1024)
#define PTC_ACME_URL_MAX 2048
#define PTC_ACME_TOKEN_MAX 256
#define PTC_ACME_AUTHZ_MAX 100
#define PTC_ACME_CHALLENGES_MAX 16

typedef enum ptc_acme_status {
    PTC_ACME_PENDING,
    PTC_ACME_READY,
    PTC_ACME_PROCESSING,
    PTC_ACME_VALID,
    PTC_ACME_INVALID,
    PTC_ACME_EXPIRED,
    PTC_ACME_DEACTIVATED,
    PTC_ACME_REVOKED,
} ptc_acme_status;

typedef struct ptc_acme_directory {
    char *new_nonce, *new_account, *new_order;
    char *terms_of_service; /* NULL when the CA names none */
} ptc_acme_directory;

typedef struct ptc_acme_order {
    ptc_acme_status status;
    char **authorizations;
    size_t n_authorizations;
    char *finalize;
    char *certificate; /* NULL until valid */
    json_t *error;     /* the order's problem (sanitised), or NULL */
} ptc_acme_order;

typedef struct ptc_acme_challenge {
    char *type; /* "http-01", "dns-01", ... (others are kept, not used) */
    char *url;
    char *token; /* NULL for a type without one */
    ptc_acme_status status;
    json_t *error; /* sanitised problem, or NULL */
} ptc_acme_challenge;

typedef struct ptc_acme_authz {
    ptc_acme_status status;
    char *identifier; /* the dns identifier's value */
    bool wildcard;
    ptc_acme_challenge *challenges;
    size_t n_challenges;
} ptc_acme_authz;

/* Each parser fills out and returns 0, or returns -EINVAL with the reason
 * in err (out is then empty: freeing it is still allowed). */
int ptc_acme_parse_directory(const char *body, size_t len, ptc_acme_directory *out, char *err, size_t errlen);
int ptc_acme_parse_account(const char *body, size_t len, ptc_acme_status *status, char *err, size_t errlen);
int ptc_acme_parse_order(const char *body, size_t len, ptc_acme_order *out, char *err, size_t errlen);
int ptc_acme_parse_authz(const char *body, size_t len, ptc_acme_authz *out, char *err, size_t errlen);
int ptc_acme_parse_challenge(const char *body, size_t len, ptc_acme_challenge *out, char *err, size_t errlen);

/* A problem document (RFC 7807, RFC 8555 §6.7) reduced to what is safe to
 * pass on in an API error: type, detail (cut at 1024 bytes), status and at
 * most 10 subproblems, all checked for type.  A new object, or NULL when
 * body is not a JSON object with a string "type". */
json_t *ptc_acme_parse_problem(const char *body, size_t len);
/* The same from an already parsed value (a challenge's "error"). */
json_t *ptc_acme_problem_sanitize(const json_t *doc);

/* True for an https URL of printable ASCII without spaces, at most
 * PTC_ACME_URL_MAX bytes (the rule for every URL the CA hands out). */
bool ptc_acme_url_ok(const char *s, size_t len);

const char *ptc_acme_status_name(ptc_acme_status s);

void ptc_acme_directory_free(ptc_acme_directory *d);
void ptc_acme_order_free(ptc_acme_order *o);
void ptc_acme_authz_free(ptc_acme_authz *a);
void ptc_acme_challenge_free(ptc_acme_challenge *c);

#endif
