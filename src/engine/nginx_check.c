/* Structural check of rendered nginx files (see nginx_check.h).
 *
 * The lexer follows ngx_conf_read_token(): tokens are separated by white
 * space, ';' and '{'; '}' ends a block only at the start of a token; '#'
 * starts a comment only at the start of a token; a quote starts a quoted
 * token only at the start of a token and must be followed by white space,
 * ';' or '{'; a backslash escapes the next character; '{' right after '$'
 * belongs to a ${variable}.  Backslashes, control characters, NUL and
 * non-ASCII bytes are refused before lexing: the templates have none. */
#include "engine/nginx_check.h"

#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ARGS 8
#define MAX_DEPTH 3

typedef struct tok {
    const char *p;
    size_t len;
    bool quoted;
} tok;

typedef struct node {
    tok args[MAX_ARGS]; /* args[0] is the directive's name */
    size_t nargs;
    int line;
    bool block;
    struct node *kids;
    size_t nkids, cap;
} node;

typedef struct checker {
    const char *p, *end;
    int line;
    char *err;
    size_t errlen;
    const ptc_nginx_expect *e;
    bool tolerant; /* reading someone else's config: no limits on arguments or depth */
} checker;

enum { T_SEMI, T_OPEN, T_CLOSE, T_EOF, T_ERR };

static int fail(checker *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(checker *c, int line, const char *fmt, ...)
{
    char msg[384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(c->err, c->errlen, "line %d: %s", line, msg);
    return -EINVAL;
}

/* ---- lexing ------------------------------------------------------------- */

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

/* Reads one directive's tokens into n; returns what ended it. */
static int lex_directive(checker *c, node *n)
{
    n->nargs = 0;
    n->line = c->line;
    for (;;) {
        while (c->p < c->end && is_space(*c->p)) {
            if (*c->p == '\n')
                c->line++;
            c->p++;
        }
        if (c->p == c->end) {
            if (n->nargs) {
                fail(c, c->line, "unexpected end of file, expecting \";\" or \"}\"");
                return T_ERR;
            }
            return T_EOF;
        }
        char ch = *c->p;
        if (n->nargs == 0)
            n->line = c->line;
        if (ch == '#') {
            while (c->p < c->end && *c->p != '\n')
                c->p++;
            continue;
        }
        if (ch == ';' || ch == '{') {
            if (n->nargs == 0) {
                fail(c, c->line, "unexpected \"%c\"", ch);
                return T_ERR;
            }
            c->p++;
            return ch == ';' ? T_SEMI : T_OPEN;
        }
        if (ch == '}') {
            if (n->nargs != 0) {
                fail(c, c->line, "unexpected \"}\"");
                return T_ERR;
            }
            c->p++;
            return T_CLOSE;
        }
        tok spare, *t = &spare;
        if (n->nargs < MAX_ARGS)
            t = &n->args[n->nargs++];
        else if (!c->tolerant) {
            fail(c, c->line, "too many arguments");
            return T_ERR;
        }
        if (ch == '"' || ch == '\'') {
            const char *s = ++c->p;
            while (c->p < c->end && *c->p != ch) {
                if (*c->p == '\\' && c->p + 1 < c->end)
                    c->p++;
                if (*c->p == '\n')
                    c->line++;
                c->p++;
            }
            if (c->p == c->end) {
                fail(c, c->line, "unterminated quoted string");
                return T_ERR;
            }
            *t = (tok){s, (size_t)(c->p - s), true};
            c->p++;
            if (c->p < c->end && !is_space(*c->p) && *c->p != ';' && *c->p != '{') {
                fail(c, c->line, "unexpected \"%c\" after a quoted string", *c->p);
                return T_ERR;
            }
            continue;
        }
        const char *s = c->p;
        bool var = false;
        while (c->p < c->end) {
            char d = *c->p;
            if (d == '{' && var) {
                var = false;
                c->p++;
                continue;
            }
            var = false;
            if (d == '\\') {
                c->p += c->p + 1 < c->end ? 2 : 1;
                continue;
            }
            if (d == '$') {
                var = true;
                c->p++;
                continue;
            }
            if (is_space(d) || d == ';' || d == '{')
                break;
            c->p++;
        }
        *t = (tok){s, (size_t)(c->p - s), false};
    }
}

static void free_kids(node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        free_kids(&n->kids[i]);
    free(n->kids);
    n->kids = NULL;
    n->nkids = n->cap = 0;
}

/* Parses directives into parent->kids until the block's "}" (depth > 0)
 * or the end of the text (depth 0). */
static int parse_block(checker *c, node *parent, int depth)
{
    for (;;) {
        node n = {0};
        int t = lex_directive(c, &n);
        if (t == T_ERR)
            return -EINVAL;
        if (t == T_EOF)
            return depth > 0 ? fail(c, c->line, "unexpected end of file, expecting \"}\"") : 0;
        if (t == T_CLOSE)
            return depth == 0 ? fail(c, c->line, "unexpected \"}\"") : 0;
        if (t == T_OPEN) {
            if (depth + 1 > MAX_DEPTH && !c->tolerant)
                return fail(c, n.line, "blocks nested too deeply");
            n.block = true;
            if (parse_block(c, &n, depth + 1) != 0) {
                free_kids(&n);
                return -EINVAL;
            }
        }
        if (parent->nkids == parent->cap) {
            parent->cap = parent->cap ? parent->cap * 2 : 8;
            parent->kids = ptc_xrealloc(parent->kids, parent->cap * sizeof(node));
        }
        parent->kids[parent->nkids++] = n;
    }
}

/* ---- token rules -------------------------------------------------------- */

static bool tok_eq(const tok *t, const char *s)
{
    size_t n = strlen(s);
    return t->len == n && memcmp(t->p, s, n) == 0;
}

static bool name_is(const node *n, const char *s)
{
    return !n->args[0].quoted && tok_eq(&n->args[0], s);
}

/* A token as a C string, for validators and messages (empty if too long). */
static void tok_str(const tok *t, char *out, size_t outlen)
{
    if (t->len >= outlen) {
        out[0] = '\0';
        return;
    }
    memcpy(out, t->p, t->len);
    out[t->len] = '\0';
}

static const char *const variable_tokens[] = {
    "$host",
    "$remote_addr",
    "$portico_forwarded_for",
    "$scheme",
    "$server_port",
    "$http_upgrade",
    "$portico_connection_upgrade",
    "$proxy_add_x_forwarded_for",
    "$portico_trusted_peer",
};

static const char *const quoted_tokens[] = {
    "",
    "nosniff",
    "SAMEORIGIN",
    "1; mode=block",
    PTC_NGINX_NOT_FOUND_HOST,
    PTC_NGINX_NOT_FOUND_PATH,
    PTC_NGINX_NO_HEALTHY_UPSTREAM,
};

/* The redirect target of the HTTP servers. */
static void redirect_target(const ptc_nginx_conf *conf, char *out, size_t outlen)
{
    if (conf->https_port == 443)
        snprintf(out, outlen, "https://$host$request_uri");
    else
        snprintf(out, outlen, "https://$host:%u$request_uri", conf->https_port);
}

static bool word_char(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == ':' || ch == '/' || ch == '=' || ch == '^' || ch == '~' || ch == '*' ||
           ch == '[' || ch == ']' || ch == '-' || ch == '$';
}

/* Every token, wherever it stands: unquoted ones of plain characters, a
 * '$' only in the variables the templates use, quoted ones only the
 * templates' fixed strings. */
static int check_tokens(checker *c, const node *n)
{
    char target[64];
    redirect_target(c->e->conf, target, sizeof(target));
    for (size_t i = 0; i < n->nargs; i++) {
        const tok *t = &n->args[i];
        bool ok = false;
        if (t->quoted) {
            for (size_t k = 0; k < PTC_ARRAY_LEN(quoted_tokens) && !ok; k++)
                ok = tok_eq(t, quoted_tokens[k]);
            if (!ok)
                return fail(c, n->line, "unexpected quoted string \"%.*s\"", (int)(t->len > 60 ? 60 : t->len),
                            t->p);
            continue;
        }
        if (t->len == 0)
            return fail(c, n->line, "empty token");
        for (size_t k = 0; k < t->len; k++)
            if (!word_char(t->p[k]))
                return fail(c, n->line, "character '%c' not allowed in \"%.*s\"", t->p[k],
                            (int)(t->len > 60 ? 60 : t->len), t->p);
        if (memchr(t->p, '$', t->len) == NULL)
            continue;
        for (size_t k = 0; k < PTC_ARRAY_LEN(variable_tokens) && !ok; k++)
            ok = tok_eq(t, variable_tokens[k]);
        if (!ok && !tok_eq(t, target))
            return fail(c, n->line, "variable not allowed in \"%.*s\"", (int)(t->len > 60 ? 60 : t->len),
                        t->p);
    }
    for (size_t i = 0; i < n->nkids; i++)
        if (check_tokens(c, &n->kids[i]) != 0)
            return -EINVAL;
    return 0;
}

static bool forbidden_name(const tok *t)
{
    static const char *const exact[] = {"load_module", "ssl_engine",   "include",
                                        "perl",        "perl_modules", "perl_require",
                                        "perl_set",    "env",          "lua_package_path"};
    char name[64];
    tok_str(t, name, sizeof(name));
    for (size_t i = 0; i < PTC_ARRAY_LEN(exact); i++)
        if (strcmp(name, exact[i]) == 0)
            return true;
    return strncmp(name, "js_", 3) == 0 || strncmp(name, "lua_", 4) == 0 || strncmp(name, "perl_", 5) == 0 ||
           strstr(name, "_by_lua") != NULL;
}

/* The directives that load code or read other files, named as such. */
static int check_forbidden(checker *c, const node *n)
{
    for (size_t i = 0; i < n->nkids; i++) {
        const node *k = &n->kids[i];
        if (forbidden_name(&k->args[0]))
            return fail(c, k->line, "directive \"%.*s\" is forbidden",
                        (int)(k->args[0].len > 60 ? 60 : k->args[0].len), k->args[0].p);
        if (check_forbidden(c, k) != 0)
            return -EINVAL;
    }
    return 0;
}

/* ---- the templates' structure ------------------------------------------- */

static int expect_leaf(checker *c, const node *n, size_t nargs)
{
    if (n->block)
        return fail(c, n->line, "\"%.*s\" must not have a block", (int)n->args[0].len, n->args[0].p);
    if (n->nargs != nargs)
        return fail(c, n->line, "\"%.*s\" must have %zu argument(s)", (int)n->args[0].len, n->args[0].p,
                    nargs - 1);
    return 0;
}

static int expect_block(checker *c, const node *n, size_t nargs)
{
    if (!n->block)
        return fail(c, n->line, "\"%.*s\" must have a block", (int)n->args[0].len, n->args[0].p);
    if (n->nargs != nargs)
        return fail(c, n->line, "\"%.*s\" must have %zu argument(s)", (int)n->args[0].len, n->args[0].p,
                    nargs - 1);
    return 0;
}

/* A directive with fixed arguments: exactly the words of want. */
static int expect_fixed(checker *c, const node *n, const char *const *want, size_t nwant)
{
    if (expect_leaf(c, n, nwant) != 0)
        return -EINVAL;
    for (size_t i = 1; i < nwant; i++)
        if (!tok_eq(&n->args[i], want[i]))
            return fail(c, n->line, "\"%.*s\" must be \"%s\"", (int)n->args[0].len, n->args[0].p, want[i]);
    return 0;
}

static int check_acme_location(checker *c, const node *loc)
{
    const ptc_nginx_conf *conf = c->e->conf;
    bool root = false, type = false;
    for (size_t i = 0; i < loc->nkids; i++) {
        const node *k = &loc->kids[i];
        if (name_is(k, "root") && !root) {
            root = true;
            if (expect_fixed(c, k, (const char *[]){"root", conf->acme_webroot}, 2) != 0)
                return -EINVAL;
        } else if (name_is(k, "default_type") && !type) {
            type = true;
            if (expect_fixed(c, k, (const char *[]){"default_type", "text/plain"}, 2) != 0)
                return -EINVAL;
        } else {
            return fail(c, k->line, "unexpected \"%.*s\" in the ACME location", (int)k->args[0].len,
                        k->args[0].p);
        }
    }
    return root && type ? 0 : fail(c, loc->line, "incomplete ACME location");
}

/* A location answering status with body itself (404 ROUTE_NOT_FOUND,
 * 503 NO_HEALTHY_UPSTREAM). */
static int check_own_answer(checker *c, const node *loc, const char *status, const char *body)
{
    bool type = false, ret = false;
    for (size_t i = 0; i < loc->nkids; i++) {
        const node *k = &loc->kids[i];
        if (name_is(k, "default_type") && !type) {
            type = true;
            if (expect_fixed(c, k, (const char *[]){"default_type", "application/json"}, 2) != 0)
                return -EINVAL;
        } else if (name_is(k, "return") && !ret) {
            ret = true;
            if (expect_fixed(c, k, (const char *[]){"return", status, body}, 3) != 0 || !k->args[2].quoted)
                return fail(c, k->line, "unexpected return");
        } else {
            return fail(c, k->line, "unexpected \"%.*s\" in a %s location", (int)k->args[0].len, k->args[0].p,
                        status);
        }
    }
    return type && ret ? 0 : fail(c, loc->line, "incomplete %s location", status);
}

static const struct {
    const char *name, *value;
} proxy_headers[] = {
    {"Host", "$host"},
    {"X-Real-IP", "$remote_addr"},
    {"X-Forwarded-For", "$portico_forwarded_for"},
    {"X-Forwarded-Proto", "$scheme"},
    {"X-Forwarded-Host", "$host"},
    {"X-Forwarded-Port", "$server_port"},
    {"Upgrade", "$http_upgrade"},                  /* websocket only */
    {"Connection", "$portico_connection_upgrade"}, /* websocket only */
    {"Connection", ""},                            /* without websocket */
};

static const struct {
    const char *name, *value;
} security_headers[] = {
    {"X-Content-Type-Options", "nosniff"},
    {"X-Frame-Options", "SAMEORIGIN"},
    {"X-XSS-Protection", "1; mode=block"},
};

static int check_redirect_location(checker *c, const node *loc)
{
    char target[64];
    redirect_target(c->e->conf, target, sizeof(target));
    if (loc->nkids != 1 || !name_is(&loc->kids[0], "return"))
        return fail(c, loc->line, "a redirecting location holds one return");
    return expect_fixed(c, &loc->kids[0], (const char *[]){"return", "301", target}, 3);
}

static int check_proxy_location(checker *c, const node *loc, const ptc_proxy *p)
{
    const ptc_nginx_conf *conf = c->e->conf;
    bool strip = p->strip_prefix && strcmp(p->path_prefix, "/") != 0;
    unsigned long long body = p->max_body_size ? p->max_body_size : conf->max_body_size;
    char pass[PTC_NAME_MAX + 32], connect[32], timeout[32], size[32];
    bool seen_pass = false, seen_version = false, seen_connect = false, seen_send = false, seen_read = false,
         seen_size = false;
    bool seen_hdr[PTC_ARRAY_LEN(proxy_headers)] = {false},
         seen_sec[PTC_ARRAY_LEN(security_headers)] = {false};

    snprintf(pass, sizeof(pass), "http://portico_%s%s", p->name, strip ? "/" : "");
    snprintf(connect, sizeof(connect), "%lldms", conf->connect_timeout_ms);
    snprintf(timeout, sizeof(timeout), "%lldms", conf->upstream_timeout_ms);
    snprintf(size, sizeof(size), "%llu", body);
    for (size_t i = 0; i < loc->nkids; i++) {
        const node *k = &loc->kids[i];
        int rc = 0;
        if (name_is(k, "proxy_pass") && !seen_pass) {
            seen_pass = true;
            rc = expect_fixed(c, k, (const char *[]){"proxy_pass", pass}, 2);
        } else if (name_is(k, "proxy_http_version") && !seen_version) {
            seen_version = true;
            rc = expect_fixed(c, k, (const char *[]){"proxy_http_version", "1.1"}, 2);
        } else if (name_is(k, "proxy_connect_timeout") && !seen_connect) {
            seen_connect = true;
            rc = expect_fixed(c, k, (const char *[]){"proxy_connect_timeout", connect}, 2);
        } else if (name_is(k, "proxy_send_timeout") && !seen_send) {
            seen_send = true;
            rc = expect_fixed(c, k, (const char *[]){"proxy_send_timeout", timeout}, 2);
        } else if (name_is(k, "proxy_read_timeout") && !seen_read) {
            seen_read = true;
            rc = expect_fixed(c, k, (const char *[]){"proxy_read_timeout", timeout}, 2);
        } else if (name_is(k, "client_max_body_size") && !seen_size) {
            seen_size = true;
            rc = expect_fixed(c, k, (const char *[]){"client_max_body_size", size}, 2);
        } else if (name_is(k, "proxy_set_header")) {
            size_t h = PTC_ARRAY_LEN(proxy_headers);
            if (expect_leaf(c, k, 3) != 0)
                return -EINVAL;
            for (size_t j = 0; j < PTC_ARRAY_LEN(proxy_headers) && h == PTC_ARRAY_LEN(proxy_headers); j++)
                if (tok_eq(&k->args[1], proxy_headers[j].name) && tok_eq(&k->args[2], proxy_headers[j].value))
                    h = j;
            if (h == PTC_ARRAY_LEN(proxy_headers) || seen_hdr[h])
                return fail(c, k->line, "unexpected proxy_set_header %.*s",
                            (int)(k->args[1].len > 60 ? 60 : k->args[1].len), k->args[1].p);
            seen_hdr[h] = true;
        } else if (name_is(k, "add_header") && p->security_headers) {
            size_t h = PTC_ARRAY_LEN(security_headers);
            if (expect_leaf(c, k, 4) != 0 || !tok_eq(&k->args[3], "always"))
                return fail(c, k->line, "add_header must have a name, a value and \"always\"");
            for (size_t j = 0; j < PTC_ARRAY_LEN(security_headers) && h == PTC_ARRAY_LEN(security_headers);
                 j++)
                if (tok_eq(&k->args[1], security_headers[j].name) &&
                    tok_eq(&k->args[2], security_headers[j].value) && k->args[2].quoted)
                    h = j;
            if (h == PTC_ARRAY_LEN(security_headers) || seen_sec[h])
                return fail(c, k->line, "unexpected add_header");
            seen_sec[h] = true;
        } else {
            return fail(c, k->line, "unexpected \"%.*s\" in a proxy location",
                        (int)(k->args[0].len > 60 ? 60 : k->args[0].len), k->args[0].p);
        }
        if (rc != 0)
            return -EINVAL;
    }
    bool headers_ok = true;
    for (size_t j = 0; j < 6; j++)
        headers_ok = headers_ok && seen_hdr[j];
    if (p->websocket)
        headers_ok = headers_ok && seen_hdr[6] && seen_hdr[7] && !seen_hdr[8];
    else
        headers_ok = headers_ok && !seen_hdr[6] && !seen_hdr[7] && seen_hdr[8];
    for (size_t j = 0; j < PTC_ARRAY_LEN(security_headers); j++)
        headers_ok = headers_ok && seen_sec[j] == p->security_headers;
    if (!(seen_pass && seen_version && seen_connect && seen_send && seen_read && seen_size && headers_ok))
        return fail(c, loc->line, "incomplete proxy location");
    return 0;
}

/* The proxy of the expectation whose prefix is the len bytes at path. */
static size_t find_prefix(const ptc_nginx_expect *e, const char *path, size_t len)
{
    for (size_t i = 0; i < e->n_proxies; i++)
        if (strlen(e->proxies[i]->path_prefix) == len && memcmp(e->proxies[i]->path_prefix, path, len) == 0)
            return i;
    return e->n_proxies;
}

typedef struct server_seen {
    bool acme, fallback;
    bool *exact, *prefix; /* per proxy: its "= P" (or "/") and "^~ P/" locations */
} server_seen;

static int check_location(checker *c, const node *loc, bool https, bool tls, server_seen *seen)
{
    const ptc_nginx_expect *e = c->e;
    const tok *mod = NULL, *path;
    char p[PTC_PATH_MAX + 2];

    if (!loc->block || (loc->nargs != 2 && loc->nargs != 3))
        return fail(c, loc->line, "malformed location");
    if (loc->nargs == 3)
        mod = &loc->args[1];
    path = &loc->args[loc->nargs - 1];
    tok_str(path, p, sizeof(p));
    if (mod && tok_eq(mod, "^~") && strcmp(p, "/.well-known/acme-challenge/") == 0) {
        if (seen->acme)
            return fail(c, loc->line, "duplicate ACME location");
        seen->acme = true;
        return check_acme_location(c, loc);
    }
    if (mod && !tok_eq(mod, "=") && !tok_eq(mod, "^~"))
        return fail(c, loc->line, "location modifier must be \"=\" or \"^~\"");
    if (p[0] == '\0' || ptc_check_path(p) != NULL)
        return fail(c, loc->line, "invalid location path \"%.*s\"", (int)(path->len > 60 ? 60 : path->len),
                    path->p);
    size_t i;
    bool is_prefix = false;
    if (mod == NULL) {
        if (strcmp(p, "/") != 0)
            return fail(c, loc->line, "a location without modifier must be \"/\"");
        i = find_prefix(e, "/", 1);
        if (i == e->n_proxies) {
            if (seen->fallback)
                return fail(c, loc->line, "duplicate location /");
            seen->fallback = true;
            return check_own_answer(c, loc, "404", PTC_NGINX_NOT_FOUND_PATH);
        }
    } else if (tok_eq(mod, "=")) {
        i = strcmp(p, "/") == 0 ? e->n_proxies : find_prefix(e, p, strlen(p));
    } else {
        size_t n = strlen(p);
        is_prefix = true;
        i = n > 1 && p[n - 1] == '/' ? find_prefix(e, p, n - 1) : e->n_proxies;
    }
    if (i == e->n_proxies)
        return fail(c, loc->line, "location \"%s\" belongs to no proxy of this domain", p);
    bool *mark = is_prefix ? &seen->prefix[i] : &seen->exact[i];
    if (*mark)
        return fail(c, loc->line, "duplicate location \"%s\"", p);
    *mark = true;
    if (!https && tls && e->proxies[i]->enable_ssl)
        return check_redirect_location(c, loc);
    if (ptc_nginx_all_down(e->conf, e->proxies[i]))
        return check_own_answer(c, loc, "503", PTC_NGINX_NO_HEALTHY_UPSTREAM);
    return check_proxy_location(c, loc, e->proxies[i]);
}

/* One server block of a domain file (https: the TLS one). */
static int check_domain_server(checker *c, const node *srv, bool https, bool tls)
{
    const ptc_nginx_expect *e = c->e;
    const ptc_nginx_conf *conf = e->conf;
    server_seen seen = {0};
    bool listen = false, name = false, cert = false, key = false;
    char *dir = e->cert ? ptc_nginx_cert_dir_name(e->cert->domain) : ptc_xstrdup("");
    char *cert_path = ptc_xasprintf("%s/%s/fullchain.pem", conf->certs_dir, dir);
    char *key_path = ptc_xasprintf("%s/%s/privkey.pem", conf->certs_dir, dir);
    int rc = 0;

    seen.exact = ptc_xcalloc(e->n_proxies + 1, sizeof(bool));
    seen.prefix = ptc_xcalloc(e->n_proxies + 1, sizeof(bool));
    for (size_t i = 0; i < srv->nkids && rc == 0; i++) {
        const node *k = &srv->kids[i];
        if (name_is(k, "listen") && !listen) {
            listen = true;
            rc = https ? expect_fixed(c, k, (const char *[]){"listen", conf->https_listen, "ssl"}, 3)
                       : expect_fixed(c, k, (const char *[]){"listen", conf->http_listen}, 2);
        } else if (name_is(k, "server_name") && !name) {
            name = true;
            char d[PTC_DOMAIN_MAX + 4];
            rc = expect_fixed(c, k, (const char *[]){"server_name", e->domain}, 2);
            tok_str(&k->args[1], d, sizeof(d));
            if (rc == 0 && ptc_check_domain(d, true) != NULL)
                rc = fail(c, k->line, "server_name is not a valid domain");
        } else if (name_is(k, "ssl_certificate") && https && !cert) {
            cert = true;
            rc = expect_fixed(c, k, (const char *[]){"ssl_certificate", cert_path}, 2);
        } else if (name_is(k, "ssl_certificate_key") && https && !key) {
            key = true;
            rc = expect_fixed(c, k, (const char *[]){"ssl_certificate_key", key_path}, 2);
        } else if (name_is(k, "location")) {
            rc = check_location(c, k, https, tls, &seen);
        } else {
            rc = fail(c, k->line, "unexpected \"%.*s\" in a server block",
                      (int)(k->args[0].len > 60 ? 60 : k->args[0].len), k->args[0].p);
        }
    }
    if (rc == 0 && !(listen && name && seen.acme && (!https || (cert && key))))
        rc = fail(c, srv->line, "incomplete server block");
    bool has_root = find_prefix(e, "/", 1) < e->n_proxies;
    for (size_t i = 0; i < e->n_proxies && rc == 0; i++) {
        bool root = strcmp(e->proxies[i]->path_prefix, "/") == 0;
        if (!seen.exact[i] || seen.prefix[i] == root)
            rc = fail(c, srv->line, "the locations of proxy %s are missing", e->proxies[i]->name);
    }
    if (rc == 0 && seen.fallback == has_root)
        rc = fail(c, srv->line, "the 404 location is missing");
    free(seen.exact);
    free(seen.prefix);
    free(dir);
    free(cert_path);
    free(key_path);
    return rc;
}

static int check_upstream(checker *c, const node *up, bool *seen)
{
    const ptc_nginx_expect *e = c->e;
    char name[PTC_NAME_MAX + 16];
    size_t i, servers = 0;
    bool keepalive = false;

    if (expect_block(c, up, 2) != 0)
        return -EINVAL;
    tok_str(&up->args[1], name, sizeof(name));
    if (strncmp(name, "portico_", 8) != 0 || !ptc_valid_name(name + 8))
        return fail(c, up->line, "invalid upstream name");
    for (i = 0; i < e->n_proxies && strcmp(e->proxies[i]->name, name + 8) != 0; i++)
        ;
    if (i == e->n_proxies || seen[i])
        return fail(c, up->line, "upstream %s belongs to no proxy of this domain or comes twice", name);
    seen[i] = true;
    const ptc_proxy *p = e->proxies[i];
    for (size_t k = 0; k < up->nkids; k++) {
        const node *s = &up->kids[k];
        if (name_is(s, "keepalive") && !keepalive) {
            keepalive = true;
            if (expect_fixed(c, s, (const char *[]){"keepalive", "32"}, 2) != 0)
                return -EINVAL;
            continue;
        }
        if (!name_is(s, "server") || servers == p->n_upstreams)
            return fail(c, s->line, "unexpected \"%.*s\" in an upstream block",
                        (int)(s->args[0].len > 60 ? 60 : s->args[0].len), s->args[0].p);
        const ptc_upstream *u = &p->upstreams[servers++];
        bool v6 = strchr(u->host, ':') != NULL;
        char addr[300], weight[32], host[300];
        snprintf(addr, sizeof(addr), "%s%s%s:%u", v6 ? "[" : "", u->host, v6 ? "]" : "", u->port);
        snprintf(weight, sizeof(weight), "weight=%u", u->weight);
        bool down = ptc_nginx_upstream_down(e->conf, u);
        if (down ? expect_fixed(c, s, (const char *[]){"server", addr, weight, "down"}, 4) != 0
                 : expect_fixed(c, s, (const char *[]){"server", addr, weight}, 3) != 0)
            return -EINVAL;
        /* The address token, taken apart again: exactly "[v6]:port" or
         * "host:port", the host the one of the proxy and a valid one. */
        tok_str(&s->args[1], host, sizeof(host));
        char *colon = strrchr(host, ':');
        long long port;
        if (colon == NULL || ptc_parse_int(colon + 1, 1, 65535, &port) != 0 || colon[1] == '+' ||
            colon[1] == '-')
            return fail(c, s->line, "upstream address without a valid port");
        *colon = '\0';
        size_t hl = strlen(host);
        const char *h = host;
        if (host[0] == '[') {
            if (hl < 3 || host[hl - 1] != ']')
                return fail(c, s->line, "invalid upstream address");
            host[hl - 1] = '\0';
            h = host + 1;
        }
        bool ok = host[0] == '[' ? strchr(h, ':') && ptc_is_ip_literal(h)
                                 : !strchr(h, ':') && ptc_check_upstream_host(h) == NULL;
        if (!ok || strcmp(h, u->host) != 0 || u->weight < 1 || u->weight > 1000)
            return fail(c, s->line, "invalid upstream address");
    }
    if (servers != p->n_upstreams || !keepalive)
        return fail(c, up->line, "upstream %s is incomplete", name);
    return 0;
}

static int check_domain_file(checker *c, const node *root)
{
    const ptc_nginx_expect *e = c->e;
    bool tls = ptc_nginx_domain_tls(e->conf, e->proxies, e->n_proxies, e->cert);
    bool *seen = ptc_xcalloc(e->n_proxies + 1, sizeof(bool));
    size_t servers = 0;
    int rc = 0;

    if (e->n_proxies == 0 || ptc_check_domain(e->domain, true) != NULL)
        rc = fail(c, 1, "a domain file needs a valid domain and at least one proxy");
    for (size_t i = 0; i < root->nkids && rc == 0; i++) {
        const node *k = &root->kids[i];
        if (name_is(k, "upstream")) {
            rc = check_upstream(c, k, seen);
        } else if (name_is(k, "server")) {
            if (servers == (tls ? 2u : 1u))
                rc = fail(c, k->line, "unexpected server block");
            else if (expect_block(c, k, 1) == 0)
                rc = check_domain_server(c, k, servers++ == 1, tls);
            else
                rc = -EINVAL;
        } else {
            rc = fail(c, k->line, "unexpected \"%.*s\" at the top level",
                      (int)(k->args[0].len > 60 ? 60 : k->args[0].len), k->args[0].p);
        }
    }
    for (size_t i = 0; i < e->n_proxies && rc == 0; i++)
        if (!seen[i])
            rc = fail(c, 1, "the upstream of proxy %s is missing", e->proxies[i]->name);
    if (rc == 0 && servers != (tls ? 2u : 1u))
        rc = fail(c, 1, "server blocks are missing");
    free(seen);
    return rc;
}

/* ---- the catch-all file ------------------------------------------------- */

static int check_map(checker *c, const node *m, const char *from, const char *to, const char *const rows[][2],
                     size_t nrows)
{
    if (expect_block(c, m, 3) != 0 || !tok_eq(&m->args[1], from) || !tok_eq(&m->args[2], to) ||
        m->nkids != nrows)
        return fail(c, m->line, "unexpected map");
    for (size_t i = 0; i < nrows; i++)
        if (expect_fixed(c, &m->kids[i], (const char *[]){rows[i][0], rows[i][1]}, 2) != 0)
            return -EINVAL;
    return 0;
}

static bool valid_cidr(const char *s)
{
    char ip[64];
    unsigned char buf[16];
    const char *slash = strchr(s, '/');
    size_t n = slash ? (size_t)(slash - s) : strlen(s);
    long bits = -1;
    if (n == 0 || n >= sizeof(ip))
        return false;
    memcpy(ip, s, n);
    ip[n] = '\0';
    bool v4 = inet_pton(AF_INET, ip, buf) == 1;
    if (!v4 && inet_pton(AF_INET6, ip, buf) != 1)
        return false;
    if (slash) {
        char *end;
        if (slash[1] < '0' || slash[1] > '9')
            return false;
        bits = strtol(slash + 1, &end, 10);
        if (*end != '\0' || bits > (v4 ? 32 : 128))
            return false;
    }
    return true;
}

static int check_geo(checker *c, const node *g)
{
    const char *list = c->e->conf->trusted_proxies, *p = list;
    bool dflt = false;
    if (expect_block(c, g, 2) != 0 || !tok_eq(&g->args[1], "$portico_trusted_peer"))
        return fail(c, g->line, "unexpected geo");
    for (size_t i = 0; i < g->nkids; i++) {
        const node *k = &g->kids[i];
        char cidr[64];
        if (name_is(k, "default") && !dflt) {
            dflt = true;
            if (expect_fixed(c, k, (const char *[]){"default", "0"}, 2) != 0)
                return -EINVAL;
            continue;
        }
        /* The next block of the setting's list, in order. */
        while (*p == ' ' || *p == ',')
            p++;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        tok_str(&k->args[0], cidr, sizeof(cidr));
        if (expect_leaf(c, k, 2) != 0 || !tok_eq(&k->args[1], "1") || start == p ||
            strlen(cidr) != (size_t)(p - start) || memcmp(cidr, start, (size_t)(p - start)) != 0 ||
            !valid_cidr(cidr))
            return fail(c, k->line, "unexpected geo entry");
    }
    while (*p == ' ' || *p == ',')
        p++;
    return dflt && *p == '\0' ? 0 : fail(c, g->line, "incomplete geo");
}

static int check_default_server(checker *c, const node *srv, bool https)
{
    const ptc_nginx_conf *conf = c->e->conf;
    bool listen = false, name = false, reject = false, acme = false, fallback = false;
    for (size_t i = 0; i < srv->nkids; i++) {
        const node *k = &srv->kids[i];
        int rc;
        if (name_is(k, "listen") && !listen) {
            listen = true;
            rc = https
                     ? expect_fixed(
                           c, k, (const char *[]){"listen", conf->https_listen, "ssl", "default_server"}, 4)
                     : expect_fixed(c, k, (const char *[]){"listen", conf->http_listen, "default_server"}, 3);
        } else if (name_is(k, "server_name") && !name) {
            name = true;
            rc = expect_fixed(c, k, (const char *[]){"server_name", "_"}, 2);
        } else if (name_is(k, "ssl_reject_handshake") && https && !reject) {
            reject = true;
            rc = expect_fixed(c, k, (const char *[]){"ssl_reject_handshake", "on"}, 2);
        } else if (name_is(k, "location") && k->block && k->nargs == 3 && !https && !acme &&
                   tok_eq(&k->args[1], "^~") && tok_eq(&k->args[2], "/.well-known/acme-challenge/")) {
            acme = true;
            rc = check_acme_location(c, k);
        } else if (name_is(k, "location") && k->block && k->nargs == 2 && !fallback &&
                   tok_eq(&k->args[1], "/")) {
            fallback = true;
            rc = check_own_answer(c, k, "404", PTC_NGINX_NOT_FOUND_HOST);
        } else {
            rc = fail(c, k->line, "unexpected \"%.*s\" in a default server",
                      (int)(k->args[0].len > 60 ? 60 : k->args[0].len), k->args[0].p);
        }
        if (rc != 0)
            return -EINVAL;
    }
    if (!(listen && name && fallback && (https ? reject : acme)))
        return fail(c, srv->line, "incomplete default server");
    return 0;
}

static int check_default_file(checker *c, const node *root)
{
    static const char *const upgrade_rows[][2] = {{"default", "upgrade"}, {"", ""}};
    static const char *const forwarded_rows[][2] = {{"default", "$remote_addr"},
                                                    {"1", "$proxy_add_x_forwarded_for"}};
    bool https = c->e->conf->https_listen[0] != '\0';
    size_t maps = 0, geos = 0, servers = 0;
    for (size_t i = 0; i < root->nkids; i++) {
        const node *k = &root->kids[i];
        int rc;
        if (name_is(k, "map") && maps == 0) {
            maps++;
            rc = check_map(c, k, "$http_upgrade", "$portico_connection_upgrade", upgrade_rows, 2);
        } else if (name_is(k, "map") && maps == 1) {
            maps++;
            rc = check_map(c, k, "$portico_trusted_peer", "$portico_forwarded_for", forwarded_rows, 2);
        } else if (name_is(k, "geo") && geos == 0) {
            geos++;
            rc = check_geo(c, k);
        } else if (name_is(k, "server") && servers < (https ? 2u : 1u)) {
            rc = expect_block(c, k, 1) == 0 ? check_default_server(c, k, servers++ == 1) : -EINVAL;
        } else {
            rc = fail(c, k->line, "unexpected \"%.*s\" at the top level",
                      (int)(k->args[0].len > 60 ? 60 : k->args[0].len), k->args[0].p);
        }
        if (rc != 0)
            return -EINVAL;
    }
    if (maps != 2 || geos != 1 || servers != (https ? 2u : 1u))
        return fail(c, 1, "the catch-all file is incomplete");
    return 0;
}

/* ---- entry points ------------------------------------------------------- */

static int check_bytes(checker *c, const char *text, size_t len)
{
    int line = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)text[i];
        if (ch == '\n') {
            line++;
            continue;
        }
        if (ch == '\0')
            return fail(c, line, "NUL byte");
        if (ch < 0x20 || ch >= 0x7f)
            return fail(c, line, "control or non-ASCII byte 0x%02x", ch);
        if (ch == '\\')
            return fail(c, line, "backslash");
    }
    return 0;
}

int ptc_nginx_check(const char *text, size_t len, const ptc_nginx_expect *e, char *err, size_t errlen)
{
    checker c = {text, text + len, 1, err, errlen, e, false};
    node root = {0};
    int rc = check_bytes(&c, text, len);
    if (rc == 0)
        rc = parse_block(&c, &root, 0);
    if (rc == 0)
        rc = check_forbidden(&c, &root);
    if (rc == 0)
        rc = check_tokens(&c, &root);
    if (rc == 0)
        rc = e->domain ? check_domain_file(&c, &root) : check_default_file(&c, &root);
    free_kids(&root);
    return rc;
}

int ptc_nginx_find_directive(const char *text, size_t len, const char *name, char *out, size_t outlen)
{
    char err[128];
    checker c = {text, text + len, 1, err, sizeof(err), NULL, true};
    node root = {0};
    int rc = parse_block(&c, &root, 0);
    if (rc == 0) {
        rc = -ENOENT;
        for (size_t i = 0; i < root.nkids; i++) {
            const node *k = &root.kids[i];
            if (name_is(k, name) && k->nargs >= 2 && k->args[1].len < outlen) {
                tok_str(&k->args[1], out, outlen);
                rc = 0;
                break;
            }
        }
    }
    free_kids(&root);
    return rc;
}
