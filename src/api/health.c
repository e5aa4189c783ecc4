/* GET /proxy-manager/health (seed 001's rules): healthy, degraded or
 * unhealthy (500) from the store, the engine and the certificates. */
#include "api/api_internal.h"

#include "core/util.h"

#define EXPIRY_WARNING_MS (14LL * 24 * 3600 * 1000)

/* The "ssl" object: certificates in use (by source), the soonest expiry,
 * those expiring within 14 days, the renewal scheduler's view and its last
 * failure.  Sets *level to degraded when one has expired or a renewal is
 * failing (the old certificate still serves, but not for ever). */
static json_t *ssl_status(ptc_api *api, const ptc_state *s, ptc_health_level *level)
{
    int64_t now = ptc_now_ms(), soonest = 0;
    json_t *expiring = json_array();
    size_t expired = 0;
    for (size_t i = 0; i < s->n_certs; i++) {
        const ptc_cert *c = s->certs[i];
        if (soonest == 0 || c->not_after < soonest)
            soonest = c->not_after;
        if (c->not_after <= now)
            expired++;
        if (c->not_after - now <= EXPIRY_WARNING_MS) {
            char na[32];
            ptc_time_format(c->not_after, na, sizeof(na));
            json_array_append_new(expiring, json_pack("{s:s, s:s}", "domain", c->domain, "not_after", na));
        }
    }
    json_t *j = json_pack("{s:I, s:I, s:o}", "certificates", (json_int_t)s->n_certs, "expired",
                          (json_int_t)expired, "expiring_within_14_days", expiring);
    json_t *by_source = json_pack("{s:i, s:i, s:i}", "uploaded", 0, "acme", 0, "certbot", 0);
    for (size_t i = 0; i < s->n_certs; i++) {
        json_t *n = json_object_get(by_source, s->certs[i]->source);
        if (n)
            json_integer_set(n, json_integer_value(n) + 1);
    }
    json_object_set_new(j, "by_source", by_source);
    bool failing = false;
    json_t *renewal = ptc_api_ssl_status(api, &failing);
    json_t *last = json_object_get(renewal, "last_failure");
    json_object_set(j, "last_failure", last ? last : json_null());
    json_object_del(renewal, "last_failure");
    json_object_set_new(j, "renewal", renewal);
    if (failing && *level == PTC_HEALTHY)
        *level = PTC_DEGRADED;
    if (soonest) {
        char t[32];
        ptc_time_format(soonest, t, sizeof(t));
        json_object_set_new(j, "soonest_expiry", json_string(t));
    } else {
        json_object_set_new(j, "soonest_expiry", json_null());
    }
    if (expired > 0 && *level == PTC_HEALTHY)
        *level = PTC_DEGRADED;
    return j;
}

void ptc_api_health(ptc_call *c)
{
    static const char *const names[] = {"healthy", "degraded", "unhealthy"};
    ptc_api *api = c->api;
    ptc_health_level level = PTC_HEALTHY, engine_level = PTC_HEALTHY;
    const ptc_state *s = ptc_api_state(api);
    int schema = ptc_store_schema_version(api->store);
    json_t *engine = api->engine->ops->status(api->engine, &engine_level);
    json_t *checks = json_object();

    if (schema <= 0)
        level = PTC_UNHEALTHY;
    if (engine_level > level)
        level = engine_level;
    json_object_set_new(checks, "store", json_pack("{s:b, s:i}", "ok", schema > 0, "schema_version", schema));
    json_t *dns = ptc_api_dns_status(api);
    if (dns)
        json_object_set_new(checks, "dns", dns);
    json_t *ssl = ssl_status(api, s, &level);
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:O, s:o, s:o, s:I, s:I, s:I}", "status", names[level], "version",
                  PTC_VERSION, "engine", api->engine->ops->name, api->engine->ops->name, engine, "ssl", ssl,
                  "checks", checks, "proxies", (json_int_t)s->n_proxies, "revision", (json_int_t)s->revision,
                  "uptime_s", (json_int_t)((ptc_now_ms() - api->started_at) / 1000));
    json_decref(engine);
    ptc_state_release(s);
    ptc_call_reply(c, level == PTC_UNHEALTHY ? 500 : 200, body);
}
