/* Fuzzes what an API body goes through before it can reach an engine:
 * JSON parsing, proxy validation, and the stored form's round trip.
 * Invariants: an accepted proxy only holds values the allow-lists accept,
 * and storing then loading it gives back an equal spec. */
#include "model/proxy.h"
#include "model/validate.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const ptc_proxy_defaults defs = {"/health", 1000, 5000};
    json_t *body = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    json_t *errors = json_object();
    if (body == NULL)
        goto out;
    ptc_proxy *p = ptc_proxy_from_request(body, "fuzz", &defs, errors);
    if (p == NULL) {
        assert(json_object_size(errors) > 0);
        goto out;
    }
    assert(ptc_check_domain(p->domain, true) == NULL);
    assert(ptc_check_path(p->path_prefix) == NULL);
    assert(ptc_check_path(p->health_check.path) == NULL);
    assert(p->n_upstreams >= 1 && p->n_upstreams <= PTC_UPSTREAMS_MAX);
    for (size_t i = 0; i < p->n_upstreams; i++) {
        assert(ptc_check_upstream_host(p->upstreams[i].host) == NULL);
        assert(p->upstreams[i].port >= 1 && p->upstreams[i].port <= 65535);
    }
    json_t *stored = ptc_proxy_to_stored(p);
    ptc_proxy *q = ptc_proxy_from_stored(stored);
    assert(q != NULL && ptc_proxy_spec_equal(p, q));
    /* The API form is written by hand: it must always be valid JSON that
     * says what the spec says. */
    ptc_buf b = PTC_BUF_INIT;
    ptc_proxy_write_api(&b, q, true, NULL);
    json_t *api = json_loadb(b.data, b.len, 0, NULL);
    assert(api != NULL);
    assert(strcmp(json_string_value(json_object_get(api, "domain")), q->domain) == 0);
    assert(strcmp(json_string_value(json_object_get(api, "path_prefix")), q->path_prefix) == 0);
    assert(json_array_size(json_object_get(api, "upstreams")) == q->n_upstreams);
    json_decref(api);
    ptc_buf_free(&b);
    json_decref(stored);
    ptc_proxy_release(q);
    ptc_proxy_release(p);
out:
    json_decref(errors);
    json_decref(body);
    return 0;
}
