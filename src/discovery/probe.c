/* Concurrent HTTP health probes on libcurl's multi interface (see probe.h). */
#include "discovery/probe.h"

#include "core/mem.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROBE_BODY_MAX 65536

typedef struct probe_ctx {
    ptc_probe *probe;
    size_t body_bytes;
} probe_ctx;

/* Health answers are read and dropped; a huge one is cut off. */
static size_t discard(char *p, size_t size, size_t n, void *arg)
{
    probe_ctx *ctx = arg;
    (void)p;
    ctx->body_bytes += size * n;
    return ctx->body_bytes > PROBE_BODY_MAX ? 0 : size * n;
}

void ptc_probe_run(ptc_probe *probes, size_t n)
{
    CURLM *multi = curl_multi_init();
    CURL **easy = ptc_xcalloc(n, sizeof(CURL *));
    probe_ctx *ctx = ptc_xcalloc(n, sizeof(probe_ctx));
    int running = 0;

    for (size_t i = 0; i < n; i++) {
        ptc_probe *p = &probes[i];
        char url[1400];
        bool v6 = strchr(p->host, ':') != NULL;
        p->healthy = false;
        p->status = 0;
        p->error[0] = '\0';
        snprintf(url, sizeof(url), "http://%s%s%s:%u%s", v6 ? "[" : "", p->host, v6 ? "]" : "", p->port,
                 p->path);
        ctx[i].probe = p;
        easy[i] = curl_easy_init();
        curl_easy_setopt(easy[i], CURLOPT_URL, url);
        curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, p->timeout_ms);
        curl_easy_setopt(easy[i], CURLOPT_NOSIGNAL, 1L);
        /* Upstreams are reached directly, never through an http_proxy of the environment. */
        curl_easy_setopt(easy[i], CURLOPT_NOPROXY, "*");
        curl_easy_setopt(easy[i], CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(easy[i], CURLOPT_WRITEDATA, &ctx[i]);
        curl_easy_setopt(easy[i], CURLOPT_PRIVATE, &ctx[i]);
        curl_easy_setopt(easy[i], CURLOPT_USERAGENT, "portico-health");
        curl_easy_setopt(easy[i], CURLOPT_PROTOCOLS_STR, "http");
        curl_easy_setopt(easy[i], CURLOPT_FOLLOWLOCATION, 0L);
        curl_multi_add_handle(multi, easy[i]);
    }
    do {
        curl_multi_perform(multi, &running);
        if (running)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    } while (running);

    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
        probe_ctx *c = NULL;
        long status = 0;
        double secs = 0;
        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(msg->easy_handle, CURLINFO_TOTAL_TIME, &secs);
        ptc_probe *p = c->probe;
        p->status = (int)status;
        p->duration_ms = (long)(secs * 1000);
        if (msg->data.result != CURLE_OK && !(msg->data.result == CURLE_WRITE_ERROR && status > 0))
            snprintf(p->error, sizeof(p->error), "%s", curl_easy_strerror(msg->data.result));
        else if (status < 200 || status >= 400)
            snprintf(p->error, sizeof(p->error), "answered %ld", status);
        else
            p->healthy = true;
    }
    for (size_t i = 0; i < n; i++) {
        curl_multi_remove_handle(multi, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(multi);
    free(easy);
    free(ctx);
}
