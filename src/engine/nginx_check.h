/* Defence in depth against config injection (research/reliability.md §3):
 * a rendered file is tokenised with nginx's own lexical rules (quotes,
 * escapes, '#' comments, ';', '{', '}') and must have exactly the
 * structure of portico's templates: only the directives the templates
 * use, in the contexts they use them, with the argument counts and the
 * values the expectation derives from the proxies and settings, each user
 * value being exactly one token.  load_module, ssl_engine, include, perl,
 * js_*, *_by_lua*, root outside the ACME location and anything else are
 * refused.  Validation (model/validate.h) should make this check
 * redundant; it is what still stands if a value ever slips past it.
 *
 * Pure functions, no allocation visible to the caller. */
#ifndef PTC_ENGINE_NGINX_CHECK_H
#define PTC_ENGINE_NGINX_CHECK_H

#include "engine/nginx_render.h"

#include <stddef.h>

typedef struct ptc_nginx_expect {
    const ptc_nginx_conf *conf;
    const char *domain; /* the domain of a domain file; NULL: the catch-all file */
    const ptc_proxy *const *proxies;
    size_t n_proxies;
    const ptc_cert *cert; /* the certificate serving the domain, or NULL */
} ptc_nginx_expect;

/* Checks text (len bytes, NUL bytes inside count as an error) against the
 * template the expectation describes.  Returns 0, or -EINVAL with
 * "line N: reason" in err. */
int ptc_nginx_check(const char *text, size_t len, const ptc_nginx_expect *e, char *err, size_t errlen);

/* Finds the first argument of the first main-context directive called name
 * in an nginx main config (e.g. "pid"), tokenised with nginx's rules.
 * Returns 0, -ENOENT when absent, -EINVAL when text does not tokenise. */
int ptc_nginx_find_directive(const char *text, size_t len, const char *name, char *out, size_t outlen);

#endif
