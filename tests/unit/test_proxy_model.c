/* The proxy model: request parsing (defaults, normalisation, every field's
 * error spelled as in the request), the stored form and the state. */
#include "model/state.h"
#include "testlib.h"

#include <stdlib.h>

static const ptc_proxy_defaults defs = {"/health", 1000, 5000};

static ptc_proxy *parse(const char *body, const char *name, json_t **errors)
{
    json_t *j = json_loads(body, 0, NULL);
    CHECK(j != NULL);
    *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, name, &defs, *errors);
    json_decref(j);
    return p;
}

/* Parses body and checks that it fails on field (and only reports fields). */
static void expect_field_error(const char *body, const char *field)
{
    json_t *errors;
    ptc_proxy *p = parse(body, "app", &errors);
    CHECK(p == NULL);
    if (json_object_get(errors, field) == NULL) {
        char *e = json_dumps(errors, 0);
        fprintf(stderr, "body %s: expected an error on %s, got %s\n", body, field, e);
        free(e);
        t_failures++;
    }
    json_decref(errors);
    ptc_proxy_release(p);
}

static void test_seed_body_and_defaults(void)
{
    json_t *errors;
    ptc_proxy *p = parse("{\"domain\": \"Orchestrator.FullPotential.AI\", \"upstream_host\": \"localhost\","
                         " \"upstream_port\": 8001, \"require_healthy\": true, \"enable_ssl\": false}",
                         "orchestrator", &errors);
    CHECK(p != NULL);
    if (p) {
        CHECK_STR(p->domain, "orchestrator.fullpotential.ai");
        CHECK_STR(p->path_prefix, "/");
        CHECK_INT(p->n_upstreams, 1);
        CHECK_STR(p->upstreams[0].host, "localhost");
        CHECK_INT(p->upstreams[0].port, 8001);
        CHECK_INT(p->upstreams[0].weight, 1);
        CHECK(p->require_healthy && !p->enable_ssl && p->websocket && p->security_headers && !p->dns);
        CHECK_STR(p->health_check.path, "/health");
        CHECK_INT(p->health_check.timeout_ms, 1000);
        CHECK_INT(p->health_check.interval_ms, 5000);
        CHECK_INT(p->health_check.healthy_threshold, 2);
        CHECK_INT(p->health_check.unhealthy_threshold, 3);
    }
    ptc_proxy_release(p);
    json_decref(errors);
}

static void test_upstreams_and_prefix(void)
{
    json_t *errors;
    ptc_proxy *p =
        parse("{\"domain\": \"*.example.com\", \"path_prefix\": \"/api/v1/\", \"strip_prefix\": true,"
              " \"upstreams\": [{\"host\": \"10.0.0.5\", \"port\": 8001, \"weight\": 3},"
              " {\"host\": \"[::1]\", \"port\": 8002}, {\"host\": \"App.Internal\", \"port\": 1}],"
              " \"health_check\": {\"path\": \"/ready\", \"interval_ms\": 250}}",
              "multi", &errors);
    CHECK(p != NULL);
    if (p) {
        CHECK_STR(p->domain, "*.example.com");
        CHECK_STR(p->path_prefix, "/api/v1");
        CHECK(p->strip_prefix);
        CHECK_INT(p->n_upstreams, 3);
        CHECK_INT(p->upstreams[0].weight, 3);
        CHECK_STR(p->upstreams[1].host, "::1");
        CHECK_STR(p->upstreams[2].host, "app.internal");
        CHECK_STR(p->health_check.path, "/ready");
        CHECK_INT(p->health_check.interval_ms, 250);
        ptc_buf b = PTC_BUF_INIT;
        ptc_proxy_write_api(&b, p, false, NULL);
        json_t *api = json_loadb(b.data, b.len, 0, NULL);
        CHECK(api != NULL);
        CHECK_STR(json_string_value(json_object_get(api, "upstream")), "http://10.0.0.5:8001");
        CHECK_STR(json_string_value(json_object_get(api, "droplet_name")), "multi");
        CHECK_STR(
            json_string_value(json_object_get(json_array_get(json_object_get(api, "upstreams"), 1), "host")),
            "::1");
        CHECK_INT(json_integer_value(json_object_get(json_object_get(api, "health_check"), "interval_ms")),
                  250);
        CHECK(json_is_false(json_object_get(api, "ssl_enabled")));
        json_decref(api);
        ptc_buf_free(&b);
    }
    ptc_proxy_release(p);
    json_decref(errors);
}

static void test_field_errors(void)
{
    expect_field_error("{\"upstream_port\": 1}", "domain");
    expect_field_error("{\"domain\": \"a.com\"}", "upstream_port");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": \"8001\"}", "upstream_port");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 0}", "upstream_port");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 65536}", "upstream_port");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 80.5}", "upstream_port");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 80, \"colour\": 1}", "colour");
    expect_field_error(
        "{\"domain\": \"a.com\", \"upstream_port\": 80, \"upstreams\": [{\"host\": \"b\", \"port\": 1}]}",
        "upstreams");
    expect_field_error("{\"domain\": \"a.com\", \"upstreams\": []}", "upstreams");
    expect_field_error("{\"domain\": \"a.com\", \"upstreams\": [{\"host\": \"b\", \"port\": 1},"
                       " {\"host\": \"c\", \"port\": 99999}]}",
                       "upstreams[1].port");
    expect_field_error("{\"domain\": \"a.com\", \"upstreams\": [{\"host\": \"b;c\", \"port\": 1}]}",
                       "upstreams[0].host");
    expect_field_error("{\"domain\": \"a.com\", \"upstreams\": [{\"port\": 1}]}", "upstreams[0].host");
    expect_field_error("{\"domain\": \"a.com\", \"upstreams\": [{\"host\": \"b\", \"port\": 1, \"x\": 1}]}",
                       "upstreams[0].x");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"upstream_host\": \"a b\"}",
                       "upstream_host");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"upstream_host\": \"x\\n y\"}",
                       "upstream_host");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"path_prefix\": \"/a/../b\"}",
                       "path_prefix");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"path_prefix\": \"/a;b\"}",
                       "path_prefix");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"health_check\": {\"path\": \"x\"}}",
                       "health_check.path");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"health_check\": {\"when\": 1}}",
                       "health_check.when");
    expect_field_error("{\"domain\": \"a.com\", \"upstream_port\": 1, \"enable_ssl\": \"yes\"}",
                       "enable_ssl");
    expect_field_error("{\"domain\": \"1.2.3.4\", \"upstream_port\": 1}", "domain");
    expect_field_error("{\"domain\": \"a.com.\", \"upstream_port\": 1}", "domain");
    expect_field_error("{\"domain\": \"b\\u00e9.com\", \"upstream_port\": 1}", "domain");
    expect_field_error("{\"domain\": 7, \"upstream_port\": 1}", "domain");
    json_t *errors;
    CHECK(parse("{\"domain\": \"a.com\", \"upstream_port\": 1}", "Bad Name", &errors) == NULL);
    CHECK(json_object_get(errors, "name") != NULL);
    json_decref(errors);
}

static void test_stored_round_trip_and_equality(void)
{
    json_t *errors;
    ptc_proxy *p = parse("{\"domain\": \"a.example.com\", \"upstreams\": [{\"host\": \"h1\", \"port\": 1}],"
                         " \"path_prefix\": \"/x\", \"dns\": true}",
                         "rt", &errors);
    CHECK(p != NULL);
    p->created_at = 1000;
    p->updated_at = 2000;
    p->revision = 7;
    p->source = PTC_SOURCE_REGISTRY;
    json_t *j = ptc_proxy_to_stored(p);
    ptc_proxy *q = ptc_proxy_from_stored(j);
    CHECK(q != NULL);
    if (q) {
        CHECK(ptc_proxy_spec_equal(p, q));
        CHECK_INT(q->created_at, 1000);
        CHECK_INT(q->revision, 7);
        CHECK_INT(q->source, PTC_SOURCE_REGISTRY);
        CHECK(q->packed); /* loaded proxies are one block each */
        ptc_proxy *r = ptc_proxy_clone(q);
        r->upstreams[0].port = 2;
        CHECK(!ptc_proxy_spec_equal(q, r));
        ptc_proxy_release(r);
    }
    /* A stored row that the API would refuse is refused here too. */
    json_object_set_new(j, "domain", json_string("evil.com; include /etc/passwd"));
    CHECK(ptc_proxy_from_stored(j) == NULL);
    json_decref(j);
    ptc_proxy_release(q);
    ptc_proxy_release(p);
    json_decref(errors);
}

/* A clone is one block: every string and the upstreams inside it, equal
 * to the original, independent of it, and freed with it (ASan checks). */
static void test_clone_is_one_block(void)
{
    json_t *errors;
    ptc_proxy *p =
        parse("{\"domain\": \"*.b.example\", \"path_prefix\": \"/api\", \"upstreams\":"
              " [{\"host\": \"10.0.0.5\", \"port\": 8001}, {\"host\": \"u2.internal\", \"port\": 8002,"
              " \"weight\": 3}], \"health_check\": {\"path\": \"/ready\"}}",
              "packed", &errors);
    CHECK(p != NULL);
    if (p == NULL)
        return;
    CHECK(!p->packed);
    ptc_proxy *c = ptc_proxy_clone(p);
    CHECK(c->packed);
    CHECK(ptc_proxy_spec_equal(p, c));
    const char *lo = (const char *)c, *hi = lo + sizeof(*c) + 2 * sizeof(ptc_upstream) + 64;
    const char *inside[] = {c->name,
                            c->domain,
                            c->path_prefix,
                            c->health_check.path,
                            c->upstreams[0].host,
                            c->upstreams[1].host,
                            (const char *)c->upstreams};
    for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++)
        CHECK(inside[i] > lo && inside[i] < hi);
    CHECK_STR(c->upstreams[1].host, "u2.internal");
    CHECK_INT(c->upstreams[1].weight, 3);
    CHECK_STR(c->health_check.path, "/ready");
    /* A clone of a clone, the original gone first. */
    ptc_proxy_release(p);
    ptc_proxy *cc = ptc_proxy_clone(c);
    ptc_proxy_release(c);
    CHECK_STR(cc->domain, "*.b.example");
    CHECK_STR(cc->path_prefix, "/api");
    ptc_proxy_release(cc);
    json_decref(errors);
}

static ptc_proxy *mk(const char *name, const char *domain, const char *prefix)
{
    json_t *errors;
    char body[256];
    snprintf(body, sizeof(body), "{\"domain\": \"%s\", \"path_prefix\": \"%s\", \"upstream_port\": 9}",
             domain, prefix);
    ptc_proxy *p = parse(body, name, &errors);
    json_decref(errors);
    return p;
}

static void test_state_copy_on_write(void)
{
    ptc_state *s0 = ptc_state_new();
    ptc_state *s1 = ptc_state_put_proxy(s0, mk("b", "b.com", "/"));
    ptc_state *s2 = ptc_state_put_proxy(s1, mk("a", "a.com", "/"));
    ptc_state *s3 = ptc_state_put_proxy(s2, mk("c", "a.com", "/api"));
    CHECK_INT(s0->n_proxies, 0);
    CHECK_INT(s1->n_proxies, 1);
    CHECK_INT(s3->n_proxies, 3);
    CHECK_STR(s3->proxies[0]->name, "a");
    CHECK(ptc_state_proxy(s3, "b") == ptc_state_proxy(s1, "b")); /* shared, not copied */
    CHECK(ptc_state_route_owner(s3, "a.com", "/api") == ptc_state_proxy(s3, "c"));
    CHECK(ptc_state_route_owner(s3, "a.com", "/x") == NULL);
    CHECK(ptc_state_route_owner(s3, "a.com", "/") == ptc_state_proxy(s3, "a"));
    CHECK(ptc_state_route_owner(s3, "b.com", "/") == ptc_state_proxy(s3, "b"));
    CHECK(ptc_state_route_owner(s3, "c.com", "/") == NULL);
    CHECK_INT(ptc_state_domain_count(s3, "a.com"), 2);
    CHECK_INT(ptc_state_domain_count(s3, "b.com"), 1);
    CHECK_INT(ptc_state_domain_count(s3, "a.co"), 0);
    ptc_state *s4 = ptc_state_delete_proxy(s3, "a");
    CHECK_INT(s4->n_proxies, 2);
    CHECK(ptc_state_proxy(s4, "a") == NULL);
    CHECK(ptc_state_proxy(s3, "a") != NULL);
    CHECK(ptc_state_route_owner(s4, "a.com", "/") == NULL);
    CHECK_INT(ptc_state_domain_count(s4, "a.com"), 1);
    /* A proxy that moves to another route leaves the old one free. */
    ptc_state *s4b = ptc_state_put_proxy(s4, mk("c", "d.com", "/api"));
    CHECK(ptc_state_route_owner(s4b, "a.com", "/api") == NULL);
    CHECK(ptc_state_route_owner(s4b, "d.com", "/api") == ptc_state_proxy(s4b, "c"));
    CHECK(ptc_state_route_owner(s4, "a.com", "/api") == ptc_state_proxy(s4, "c"));
    ptc_state_release(s4b);
    /* A state made from an unsorted list finds its routes too. */
    ptc_proxy *list[] = {mk("z", "z.com", "/"), mk("y", "a.com", "/b"), mk("x", "a.com", "/a")};
    ptc_state *from = ptc_state_from(list, 3, NULL, 0);
    CHECK(ptc_state_route_owner(from, "a.com", "/a") == list[2]);
    CHECK(ptc_state_route_owner(from, "a.com", "/b") == list[1]);
    CHECK(ptc_state_route_owner(from, "z.com", "/") == list[0]);
    ptc_state_release(from);
    ptc_cert *c = ptc_cert_new();
    c->domain = strdup("*.a.com");
    ptc_state *s5 = ptc_state_put_cert(s4, c);
    CHECK(ptc_state_cert_for(s5, "x.a.com") == c);
    CHECK(ptc_state_cert_for(s5, "a.com") == NULL);
    CHECK(ptc_state_cert_for(s5, "y.x.a.com") == NULL);
    ptc_state *s6 = ptc_state_delete_cert(s5, "*.a.com");
    CHECK_INT(s6->n_certs, 0);
    ptc_state_release(s0);
    ptc_state_release(s1);
    ptc_state_release(s2);
    ptc_state_release(s3);
    ptc_state_release(s4);
    ptc_state_release(s5);
    ptc_state_release(s6);
}

int main(void)
{
    RUN(test_seed_body_and_defaults);
    RUN(test_upstreams_and_prefix);
    RUN(test_field_errors);
    RUN(test_stored_round_trip_and_equality);
    RUN(test_clone_is_one_block);
    RUN(test_state_copy_on_write);
    TEST_EXIT();
}
