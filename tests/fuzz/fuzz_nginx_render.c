/* Fuzzes the nginx renderer and its structural checker together
 * (research/reliability.md §3).  Two modes, by the first byte:
 *  - even: the rest is "name\ndomain\npath\nhost\nflags", a proxy built
 *    directly (no validation), rendered and checked.  Invariant: the
 *    checker accepts the file exactly when the model's validators accept
 *    the values (path prefixes as the model stores them: no trailing '/'),
 *    so nothing the validators refuse can reach nginx even if it got past
 *    them, and nothing they accept is refused.
 *  - odd: the rest is a config file for the checker (as a domain file and
 *    as the catch-all file) and the directive finder: bounded, no crash. */
#include "core/buf.h"
#include "core/mem.h"
#include "engine/nginx_check.h"
#include "engine/nginx_render.h"
#include "model/proxy.h"
#include "model/validate.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static ptc_nginx_conf conf(void)
{
    ptc_nginx_conf c = {
        .file_prefix = "portico-",
        .http_listen = "0.0.0.0:80",
        .https_listen = "0.0.0.0:443",
        .https_port = 443,
        .acme_webroot = "/var/lib/portico/acme-webroot",
        .certs_dir = "/var/lib/portico/certs",
        .trusted_proxies = "10.0.0.0/8",
        .max_body_size = 1024,
        .connect_timeout_ms = 5000,
        .upstream_timeout_ms = 60000,
    };
    return c;
}

static ptc_proxy *proxy(const char *name, const char *domain, const char *path, const char *host,
                        unsigned flags)
{
    ptc_proxy *p = ptc_proxy_new();
    p->name = ptc_xstrdup(name);
    p->domain = ptc_xstrdup(domain);
    p->path_prefix = ptc_xstrdup(path);
    p->n_upstreams = 1;
    p->upstreams = ptc_xcalloc(1, sizeof(ptc_upstream));
    p->upstreams[0].host = ptc_xstrdup(host);
    p->upstreams[0].port = 8080;
    p->upstreams[0].weight = 1 + (flags >> 4) % 1000;
    p->strip_prefix = flags & 1;
    p->websocket = flags & 2;
    p->security_headers = flags & 4;
    p->enable_ssl = flags & 8;
    p->health_check.path = ptc_xstrdup("/health");
    return p;
}

static void fields_mode(const char *data, size_t size)
{
    char *field[5] = {0};
    size_t start = 0, k = 0;
    for (size_t i = 0; i <= size && k < 5; i++)
        if (i == size || data[i] == '\n') {
            field[k++] = ptc_xstrndup(data + start, i - start);
            start = i + 1;
        }
    for (; k < 5; k++)
        field[k] = ptc_xstrdup("");
    unsigned flags = (unsigned)strtoul(field[4], NULL, 10);
    const char *path = field[2];
    size_t plen = strlen(path);
    bool valid = ptc_valid_name(field[0]) && ptc_check_domain(field[1], true) == NULL &&
                 ptc_check_path(path) == NULL && (plen == 1 || path[plen - 1] != '/') &&
                 ptc_check_upstream_host(field[3]) == NULL;

    ptc_nginx_conf c = conf();
    ptc_proxy *p = proxy(field[0], field[1], path, field[3], flags);
    ptc_cert cert = {.domain = field[1]};
    const ptc_cert *serving = flags & 8 ? &cert : NULL;
    const ptc_proxy *const list[] = {p};
    ptc_buf text = PTC_BUF_INIT;
    char err[512];
    ptc_nginx_render_domain(&c, field[1], list, 1, serving, &text);
    ptc_nginx_expect e = {&c, field[1], list, 1, serving};
    int rc = ptc_nginx_check(text.data, text.len, &e, err, sizeof(err));
    assert((rc == 0) == valid);
    ptc_buf_free(&text);
    ptc_proxy_release(p);
    for (k = 0; k < 5; k++)
        free(field[k]);
}

static void text_mode(const char *data, size_t size)
{
    ptc_nginx_conf c = conf();
    ptc_proxy *p = proxy("web", "web.example.com", "/api", "10.0.0.1", 7);
    const ptc_proxy *const list[] = {p};
    char err[512], out[256];
    ptc_nginx_expect domain = {&c, "web.example.com", list, 1, NULL};
    ptc_nginx_expect catch_all = {&c, NULL, NULL, 0, NULL};

    ptc_nginx_check(data, size, &domain, err, sizeof(err));
    ptc_nginx_check(data, size, &catch_all, err, sizeof(err));
    ptc_nginx_find_directive(data, size, "pid", out, sizeof(out));
    ptc_proxy_release(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 8192)
        return 0;
    if (data[0] % 2 == 0)
        fields_mode((const char *)data + 1, size - 1);
    else
        text_mode((const char *)data + 1, size - 1);
    return 0;
}
