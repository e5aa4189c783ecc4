/* GET /metrics (DESIGN §2.2): Prometheus text format.  portico's own
 * metrics (the desired state, the health checks, the registry sync), then
 * the engine's (the data plane's requests and latencies, for builtin). */
#include "api/api_internal.h"

#include "core/util.h"

#include <stdlib.h>

void ptc_api_metrics(ptc_call *c)
{
    ptc_api *api = c->api;
    const ptc_state *s = ptc_api_state(api);
    ptc_buf out = PTC_BUF_INIT;
    size_t upstreams = 0, registry = 0;

    for (size_t i = 0; i < s->n_proxies; i++) {
        upstreams += s->proxies[i]->n_upstreams;
        registry += s->proxies[i]->source == PTC_SOURCE_REGISTRY;
    }
    ptc_buf_appendf(&out,
                    "# HELP portico_build_info The running portico.\n"
                    "# TYPE portico_build_info gauge\n"
                    "portico_build_info{version=\"%s\",engine=\"%s\"} 1\n"
                    "# HELP portico_uptime_seconds Time since the API started.\n"
                    "# TYPE portico_uptime_seconds gauge\n"
                    "portico_uptime_seconds %lld\n"
                    "# HELP portico_proxies Proxies in the desired state, by source.\n"
                    "# TYPE portico_proxies gauge\n"
                    "portico_proxies{source=\"api\"} %zu\n"
                    "portico_proxies{source=\"registry\"} %zu\n"
                    "# HELP portico_upstreams Upstreams named by the proxies.\n"
                    "# TYPE portico_upstreams gauge\n"
                    "portico_upstreams %zu\n"
                    "# HELP portico_certificates Certificates in the desired state.\n"
                    "# TYPE portico_certificates gauge\n"
                    "portico_certificates %zu\n"
                    "# HELP portico_revision The committed revision of the desired state.\n"
                    "# TYPE portico_revision gauge\n"
                    "portico_revision %lld\n",
                    PTC_VERSION, api->engine->ops->name, (long long)((ptc_now_ms() - api->started_at) / 1000),
                    s->n_proxies - registry, registry, upstreams, s->n_certs, (long long)s->revision);
    ptc_api_checks_metrics(api, s, &out);
    ptc_api_sync_metrics(api, &out);
    if (api->engine->ops->metrics)
        api->engine->ops->metrics(api->engine, &out);
    ptc_state_release(s);
    c->status = 200;
    c->text = ptc_buf_detach(&out);
    c->content_type = "text/plain; version=0.0.4; charset=utf-8";
}
