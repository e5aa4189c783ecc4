/* One request through an engine's listener (see verify.h), with libcurl
 * pointed at the listener whatever the domain resolves to. */
#include "engine/verify.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/settings.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BODY_MAX 4096

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    ptc_buf *b = arg;
    size_t len = size * n;
    if (b->len < BODY_MAX)
        ptc_buf_append(b, p, len < BODY_MAX - b->len ? len : BODY_MAX - b->len);
    return len;
}

void ptc_verify_route(const char *listen, bool tls, const char *domain, const char *path, bool expect_gone,
                      long timeout_ms, ptc_verify_result *out)
{
    char host[256], target[300], connect_to[600], url[1400];
    unsigned port;
    ptc_buf body = PTC_BUF_INIT;
    struct curl_slist *to = NULL;
    CURL *c = NULL;
    long status = 0;
    double secs = 0;
    const char *name = domain;
    char *wild = NULL;

    memset(out, 0, sizeof(*out));
    if (ptc_parse_addr(listen, host, sizeof(host), &port) != 0) {
        snprintf(out->detail, sizeof(out->detail), "bad listener address %s", listen);
        goto out;
    }
    if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    else if (strcmp(host, "::") == 0)
        snprintf(host, sizeof(host), "::1");
    if (strncmp(domain, "*.", 2) == 0)
        name = wild = ptc_xasprintf("verify%s", domain + 1);
    snprintf(target, sizeof(target), strchr(host, ':') ? "[%s]" : "%s", host);
    /* CONNECT_TO keeps the URL's host for Host and SNI but connects to us. */
    snprintf(connect_to, sizeof(connect_to), "%s:%u:%s:%u", name, port, target, port);
    snprintf(url, sizeof(url), "%s://%s:%u%s", tls ? "https" : "http", name, port, path);
    to = curl_slist_append(NULL, connect_to);
    c = curl_easy_init();
    if (c == NULL) {
        snprintf(out->detail, sizeof(out->detail), "curl_easy_init failed");
        goto out;
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CONNECT_TO, to);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "portico-verify");
    CURLcode rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_TOTAL_TIME, &secs);
    out->duration_ms = (long)(secs * 1000);
    if (rc != CURLE_OK) {
        snprintf(out->detail, sizeof(out->detail), "%s", curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    out->status = (int)status;
    bool not_found = status == 404 && strstr(ptc_buf_cstr(&body), "ROUTE_NOT_FOUND") != NULL;
    if (expect_gone) {
        out->ok = not_found;
        if (!out->ok)
            snprintf(out->detail, sizeof(out->detail), "the route still answers (status %ld)", status);
    } else if (not_found) {
        snprintf(out->detail, sizeof(out->detail), "the engine does not know the route yet (404)");
    } else if (status == 502 || status == 503 || status == 504) {
        snprintf(out->detail, sizeof(out->detail), "the route answers %ld: the upstream is not reachable",
                 status);
    } else {
        out->ok = true;
    }
out:
    if (c)
        curl_easy_cleanup(c);
    curl_slist_free_all(to);
    ptc_buf_free(&body);
    free(wild);
}

json_t *ptc_verify_to_json(const ptc_verify_result *v)
{
    json_t *j = json_pack("{s:b, s:i, s:I}", "ok", v->ok, "status", v->status, "duration_ms",
                          (json_int_t)v->duration_ms);
    if (v->detail[0])
        json_object_set_new(j, "detail", json_string(v->detail));
    return j;
}
