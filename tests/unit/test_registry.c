/* Registry sync: droplet parsing with every accepted field spelling and
 * hostile values, and the plan (create, update, unchanged, skip, prune,
 * conflicts with manual proxies and between droplets). */
#include "core/mem.h"
#include "core/util.h"
#include "discovery/registry.h"
#include "testlib.h"

#include <errno.h>
#include <stdlib.h>

static const ptc_proxy_defaults defs = {"/health", 1000, 5000};

static int parse(const char *body, const char *base_domain, ptc_droplet_list *out)
{
    char err[256];
    return ptc_registry_parse(body, strlen(body), base_domain, out, err, sizeof(err));
}

static const ptc_droplet *find(const ptc_droplet_list *l, const char *name)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].name, name) == 0)
            return &l->items[i];
    return NULL;
}

static const char *reason(const ptc_droplet_list *l, const char *key)
{
    return json_string_value(json_object_get(l->skipped, key));
}

static void test_parse_spellings(void)
{
    ptc_droplet_list l;
    const char *body =
        "[{\"name\": \"a\", \"domain\": \"A.Example.COM\", \"host\": \"10.0.0.5\", \"port\": 8001},"
        " {\"name\": \"b\", \"domain\": \"b.example.com\", \"upstream_host\": \"Svc.Internal\", "
        "\"upstream_port\": 8002},"
        " {\"name\": \"c\", \"domain\": \"c.example.com\", \"ip\": \"::1\", \"port\": \"8003\"},"
        " {\"name\": \"d\", \"domain\": \"d.example.com\", \"ip\": \"[fd00::5]\", \"upstream_port\": 8004,"
        "  \"health_path\": \"/ready\", \"enable_ssl\": true, \"status\": \"running\", \"version\": 3},"
        " {\"name\": \"e\", \"host\": \"10.0.0.6\", \"port\": 9000},"
        " {\"name\": \"f\", \"domain\": null, \"host\": \"10.0.0.7\", \"upstream_host\": \"10.0.0.7\", "
        "\"port\": 9001,"
        "  \"upstream_port\": 9001, \"health_path\": null, \"enable_ssl\": null, \"instances\": []},"
        " {\"name\": \"g\", \"domain\": \"g.example.com\", \"instances\": ["
        "   {\"host\": \"10.0.1.2\", \"port\": 80, \"healthy\": true}, {\"host\": \"10.0.1.1\", \"port\": "
        "\"81\"},"
        "   {\"host\": \"10.0.1.3\", \"port\": 82, \"healthy\": false}, {\"host\": \"10.0.1.1\", \"port\": "
        "81}]},"
        " {\"name\": \"h\", \"domain\": \"h.example.com\", \"instances\": ["
        "   {\"host\": \"10.0.2.1\", \"port\": 80, \"healthy\": false}, {\"host\": \"10.0.2.2\", \"port\": "
        "80,"
        "    \"healthy\": false}]}]";
    CHECK_INT(parse(body, "apps.example.com", &l), 0);
    CHECK_INT(l.n, 8);
    CHECK_INT(json_object_size(l.skipped), 0);
    CHECK_INT(l.n_listed, 8);

    const ptc_droplet *d = find(&l, "a");
    CHECK(d && strcmp(d->domain, "a.example.com") == 0 && d->n_upstreams == 1);
    CHECK(d && strcmp(d->upstreams[0].host, "10.0.0.5") == 0 && d->upstreams[0].port == 8001);
    CHECK(d && d->health_path == NULL && !d->enable_ssl);
    d = find(&l, "b");
    CHECK(d && strcmp(d->upstreams[0].host, "svc.internal") == 0 && d->upstreams[0].port == 8002);
    d = find(&l, "c");
    CHECK(d && strcmp(d->upstreams[0].host, "::1") == 0 && d->upstreams[0].port == 8003);
    d = find(&l, "d");
    CHECK(d && strcmp(d->upstreams[0].host, "fd00::5") == 0 && d->upstreams[0].port == 8004);
    CHECK(d && d->health_path && strcmp(d->health_path, "/ready") == 0 && d->enable_ssl);
    d = find(&l, "e");
    CHECK(d && strcmp(d->domain, "e.apps.example.com") == 0);
    d = find(&l, "f");
    CHECK(d && strcmp(d->domain, "f.apps.example.com") == 0 && d->upstreams[0].port == 9001);
    /* healthy instances only, duplicates merged, sorted */
    d = find(&l, "g");
    CHECK(d && d->n_upstreams == 2);
    CHECK(d && strcmp(d->upstreams[0].host, "10.0.1.1") == 0 && d->upstreams[0].port == 81);
    CHECK(d && strcmp(d->upstreams[1].host, "10.0.1.2") == 0 && d->upstreams[1].port == 80);
    /* none healthy: all kept, the active checks decide */
    d = find(&l, "h");
    CHECK(d && d->n_upstreams == 2);
    ptc_droplet_list_free(&l);

    /* {"droplets": [...]} is accepted too */
    CHECK_INT(parse("{\"droplets\": [{\"name\": \"x\", \"domain\": \"x.io\", \"host\": \"h\", \"port\": 1}]}",
                    "", &l),
              0);
    CHECK_INT(l.n, 1);
    ptc_droplet_list_free(&l);
}

static void test_parse_hostile(void)
{
    ptc_droplet_list l;
    char long_name[300];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    char *body = ptc_xasprintf(
        "[1, \"str\", null, [],"
        " {\"domain\": \"x.example.com\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": 5, \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"Bad Name\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"%s\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"-x\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"nodomain\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"baddomain\", \"domain\": \"exa mple.com\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"ipdomain\", \"domain\": \"10.0.0.1\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"injdomain\", \"domain\": \"a.com;include /etc/passwd\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"numdomain\", \"domain\": 42, \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"nohost\", \"domain\": \"n.example.com\", \"port\": 1},"
        " {\"name\": \"noport\", \"domain\": \"n.example.com\", \"host\": \"h\"},"
        " {\"name\": \"port0\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 0},"
        " {\"name\": \"port-big\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 65536},"
        " {\"name\": \"port-neg\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": -1},"
        " {\"name\": \"port-float\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 80.5},"
        " {\"name\": \"port-bool\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": true},"
        " {\"name\": \"port-str\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": \"80a\"},"
        " {\"name\": \"port-str2\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": \" 80\"},"
        " {\"name\": \"port-clash\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 1, "
        "\"upstream_port\": 2},"
        " {\"name\": \"host-clash\", \"domain\": \"n.example.com\", \"host\": \"a\", \"ip\": \"10.0.0.1\", "
        "\"port\": 1},"
        " {\"name\": \"host-bad\", \"domain\": \"n.example.com\", \"host\": \"a b\", \"port\": 1},"
        " {\"name\": \"host-url\", \"domain\": \"n.example.com\", \"host\": \"http://a\", \"port\": 1},"
        " {\"name\": \"host-num\", \"domain\": \"n.example.com\", \"host\": 10, \"port\": 1},"
        " {\"name\": \"host-nul\", \"domain\": \"n.example.com\", \"host\": \"a\\u0000b\", \"port\": 1},"
        " {\"name\": \"host-v6\", \"domain\": \"n.example.com\", \"host\": \"[nothex]\", \"port\": 1},"
        " {\"name\": \"path-bad\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 1, "
        "\"health_path\": \"/a/../b\"},"
        " {\"name\": \"path-rel\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 1, "
        "\"health_path\": \"health\"},"
        " {\"name\": \"path-num\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 1, "
        "\"health_path\": 1},"
        " {\"name\": \"ssl-str\", \"domain\": \"n.example.com\", \"host\": \"h\", \"port\": 1, "
        "\"enable_ssl\": \"yes\"},"
        " {\"name\": \"inst-obj\", \"domain\": \"n.example.com\", \"instances\": {\"host\": \"h\"}},"
        " {\"name\": \"inst-item\", \"domain\": \"n.example.com\", \"instances\": [\"h:1\"]},"
        " {\"name\": \"inst-host\", \"domain\": \"n.example.com\", \"instances\": [{\"port\": 1}]},"
        " {\"name\": \"inst-port\", \"domain\": \"n.example.com\", \"instances\": [{\"host\": \"h\", "
        "\"port\": 99999}]},"
        " {\"name\": \"inst-healthy\", \"domain\": \"n.example.com\", \"instances\": [{\"host\": \"h\", "
        "\"port\": 1,"
        "  \"healthy\": \"no\"}]},"
        " {\"name\": \"dup\", \"domain\": \"d1.example.com\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"dup\", \"domain\": \"d2.example.com\", \"host\": \"h\", \"port\": 2},"
        " {\"name\": \"under_score\", \"host\": \"h\", \"port\": 1},"
        " {\"name\": \"good\", \"domain\": \"good.example.com\", \"host\": \"h\", \"port\": 1}]",
        long_name);
    CHECK_INT(parse(body, "", &l), 0);
    CHECK_INT(l.n, 1);
    CHECK(find(&l, "good") != NULL);
    CHECK_STR(reason(&l, "droplets[0]"), "not a JSON object");
    CHECK_STR(reason(&l, "droplets[1]"), "not a JSON object");
    CHECK_STR(reason(&l, "droplets[2]"), "not a JSON object");
    CHECK_STR(reason(&l, "droplets[3]"), "not a JSON object");
    CHECK_STR(reason(&l, "droplets[4]"), "no name");
    CHECK_STR(reason(&l, "droplets[5]"), "name must be a string");
    CHECK(reason(&l, "Bad Name") != NULL);
    CHECK(reason(&l, "-x") != NULL);
    /* a long name is quoted cut short */
    char cut[100];
    snprintf(cut, sizeof(cut), "%.80s...", long_name);
    CHECK(reason(&l, cut) != NULL);
    CHECK_STR(reason(&l, "nodomain"), "no domain, and base_domain is not set");
    static const char *const bad[] = {
        "baddomain",    "ipdomain", "injdomain",  "numdomain", "nohost",    "noport",    "port0",
        "port-big",     "port-neg", "port-float", "port-bool", "port-str",  "port-str2", "port-clash",
        "host-clash",   "host-bad", "host-url",   "host-num",  "host-nul",  "host-v6",   "path-bad",
        "path-rel",     "path-num", "ssl-str",    "inst-obj",  "inst-item", "inst-host", "inst-port",
        "inst-healthy", "dup",      "under_score"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        if (reason(&l, bad[i]) == NULL) {
            fprintf(stderr, "not skipped: %s\n", bad[i]);
            t_failures++;
        }
    }
    CHECK_STR(reason(&l, "dup"), "the registry lists this name 2 times");
    CHECK_STR(reason(&l, "port-clash"), "port and upstream_port disagree");
    CHECK_STR(reason(&l, "host-clash"), "host, upstream_host and ip disagree");
    CHECK_STR(reason(&l, "ssl-str"), "enable_ssl must be true or false");
    CHECK_STR(reason(&l, "inst-port"), "instances[0].port must be an integer from 1 to 65535");
    CHECK_STR(reason(&l, "inst-healthy"), "instances[0].healthy must be true or false");
    /* every valid name is listed (so that it is not pruned), once */
    size_t dups = 0;
    for (size_t i = 0; i < l.n_listed; i++)
        dups += strcmp(l.listed[i], "dup") == 0;
    CHECK_INT(dups, 1);
    ptc_droplet_list_free(&l);
    free(body);

    /* {name}.{base_domain} must itself be a valid host name */
    CHECK_INT(parse("[{\"name\": \"under_score\", \"host\": \"h\", \"port\": 1}]", "apps.example.com", &l),
              0);
    CHECK_INT(l.n, 0);
    CHECK(reason(&l, "under_score") != NULL);
    ptc_droplet_list_free(&l);

    /* more than 64 instances */
    ptc_buf b = PTC_BUF_INIT;
    ptc_buf_append_str(&b, "[{\"name\": \"many\", \"domain\": \"m.example.com\", \"instances\": [");
    for (int i = 0; i < 65; i++)
        ptc_buf_appendf(&b, "%s{\"host\": \"10.0.0.1\", \"port\": %d}", i ? "," : "", 1000 + i);
    ptc_buf_append_str(&b, "]}]");
    CHECK_INT(parse(ptc_buf_cstr(&b), "", &l), 0);
    CHECK_STR(reason(&l, "many"), "more than 64 instances");
    ptc_droplet_list_free(&l);
    ptc_buf_free(&b);
}

static void test_parse_whole_body(void)
{
    ptc_droplet_list l;
    char err[256];
    static const char *const bad[] = {"",      "not json", "{\"a\": 1}",  "42",
                                      "\"x\"", "[1, 2",    "[] trailing", "{\"droplets\": {}}"};
    for (size_t i = 0; i < PTC_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_INT(ptc_registry_parse(bad[i], strlen(bad[i]), "", &l, err, sizeof(err)), -EINVAL);
        CHECK(err[0] != '\0');
    }
    /* deep nesting is refused by the parser, not by the stack */
    ptc_buf b = PTC_BUF_INIT;
    for (int i = 0; i < 100000; i++)
        ptc_buf_append_str(&b, "[");
    CHECK_INT(ptc_registry_parse(b.data, b.len, "", &l, err, sizeof(err)), -EINVAL);
    ptc_buf_reset(&b);
    /* too many droplets */
    ptc_buf_append_str(&b, "[");
    for (int i = 0; i <= PTC_REGISTRY_DROPLETS_MAX; i++)
        ptc_buf_append_str(&b, i ? ",{}" : "{}");
    ptc_buf_append_str(&b, "]");
    CHECK_INT(ptc_registry_parse(b.data, b.len, "", &l, err, sizeof(err)), -EINVAL);
    CHECK(strstr(err, "more than") != NULL);
    ptc_buf_free(&b);
    /* an empty array is a valid (empty) registry */
    CHECK_INT(parse("[]", "", &l), 0);
    CHECK_INT(l.n, 0);
    ptc_droplet_list_free(&l);
}

/* ---- the plan ---- */

static ptc_proxy *manual(const char *name, const char *domain, const char *prefix)
{
    char body[256];
    snprintf(body, sizeof(body), "{\"domain\": \"%s\", \"path_prefix\": \"%s\", \"upstream_port\": 9}",
             domain, prefix);
    json_t *j = json_loads(body, 0, NULL), *errors = json_object();
    ptc_proxy *p = ptc_proxy_from_request(j, name, &defs, errors);
    json_decref(j);
    json_decref(errors);
    return p;
}

static bool has(const json_t *list, const char *name)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v) if (strcmp(json_string_value(v), name) == 0) return true;
    return false;
}

/* Plans body against cur; returns the plan (caller frees). */
static void plan(const ptc_state *cur, const char *body, bool prune, int64_t rev, ptc_sync_plan *out)
{
    ptc_droplet_list l;
    CHECK_INT(parse(body, "apps.example.com", &l), 0);
    ptc_sync_options o = {.defaults = &defs, .prune = prune, .revision = rev, .now = 1000 * rev};
    ptc_registry_plan(cur, &l, &o, out);
    ptc_droplet_list_free(&l);
}

static void test_plan(void)
{
    ptc_state *s0 = ptc_state_new();
    ptc_state *cur = ptc_state_put_proxy(s0, manual("manual", "m.example.com", "/"));
    ptc_state *tmp = ptc_state_put_proxy(cur, manual("api-side", "shared.example.com", "/api"));
    ptc_state_release(cur);
    cur = tmp;
    ptc_sync_plan p;

    /* first sync: creates */
    const char *reg1 =
        "[{\"name\": \"a\", \"host\": \"10.0.0.1\", \"port\": 80},"
        " {\"name\": \"b\", \"domain\": \"b.example.com\", \"host\": \"10.0.0.2\", \"port\": 80},"
        " {\"name\": \"manual\", \"host\": \"10.0.0.3\", \"port\": 80},"
        " {\"name\": \"steal\", \"domain\": \"m.example.com\", \"host\": \"10.0.0.4\", \"port\": 80},"
        " {\"name\": \"shared\", \"domain\": \"shared.example.com\", \"host\": \"10.0.0.5\", \"port\": 80},"
        " {\"name\": \"bad\", \"host\": \"10.0.0.6\"}]";
    plan(cur, reg1, false, 2, &p);
    CHECK(ptc_sync_plan_changes(&p));
    CHECK_INT(json_array_size(p.created), 3);
    CHECK(has(p.created, "a") && has(p.created, "b") && has(p.created, "shared"));
    CHECK_INT(json_array_size(p.synced), 3);
    CHECK_INT(json_array_size(p.skipped), 3);
    CHECK(has(p.skipped, "manual") && has(p.skipped, "steal") && has(p.skipped, "bad"));
    CHECK_STR(json_string_value(json_object_get(p.skipped_reasons, "manual")),
              "the name belongs to a proxy made through the API");
    CHECK_STR(json_string_value(json_object_get(p.skipped_reasons, "steal")),
              "the domain m.example.com is routed by the manual proxy manual");
    CHECK_INT(p.next->n_proxies, 5);
    const ptc_proxy *a = ptc_state_proxy(p.next, "a");
    CHECK(a && a->source == PTC_SOURCE_REGISTRY && !a->require_healthy && a->revision == 2 &&
          a->created_at == 2000);
    CHECK(a && strcmp(a->domain, "a.apps.example.com") == 0 && strcmp(a->path_prefix, "/") == 0);
    CHECK(a && strcmp(a->health_check.path, "/health") == 0 && a->health_check.interval_ms == 5000);
    /* manual proxies are the very same objects */
    CHECK(ptc_state_proxy(p.next, "manual") == ptc_state_proxy(cur, "manual"));
    ptc_state *s1 = ptc_state_retain(p.next);
    ptc_sync_plan_free(&p);

    /* the same registry again: nothing changes, the very state comes back */
    plan(s1, reg1, false, 3, &p);
    CHECK(!ptc_sync_plan_changes(&p));
    CHECK(p.next == s1);
    CHECK_INT(json_array_size(p.unchanged), 3);
    CHECK_INT(json_array_size(p.synced), 3);
    ptc_sync_plan_free(&p);

    /* an update, a droplet gone (kept without prune), one more skipped */
    const char *reg2 =
        "[{\"name\": \"a\", \"host\": \"10.0.0.1\", \"port\": 81},"
        " {\"name\": \"shared\", \"domain\": \"shared.example.com\", \"host\": \"10.0.0.5\", \"port\": 80}]";
    plan(s1, reg2, false, 4, &p);
    CHECK_INT(json_array_size(p.updated), 1);
    CHECK(has(p.updated, "a"));
    CHECK(has(p.unchanged, "shared"));
    CHECK_INT(json_array_size(p.deleted), 0);
    CHECK(ptc_state_proxy(p.next, "b") != NULL);
    a = ptc_state_proxy(p.next, "a");
    CHECK(a && a->upstreams[0].port == 81 && a->created_at == 2000 && a->updated_at == 4000 &&
          a->revision == 4);
    ptc_sync_plan_free(&p);

    /* with prune: b goes; manual proxies never do */
    plan(s1, reg2, true, 4, &p);
    CHECK_INT(json_array_size(p.deleted), 1);
    CHECK(has(p.deleted, "b"));
    CHECK(ptc_state_proxy(p.next, "b") == NULL);
    CHECK(ptc_state_proxy(p.next, "manual") != NULL);
    CHECK(ptc_state_proxy(p.next, "api-side") != NULL);
    ptc_sync_plan_free(&p);

    /* a skipped droplet is still listed: prune keeps its proxy */
    plan(s1, "[{\"name\": \"b\", \"domain\": \"b.example.com\", \"port\": 80}]", true, 4, &p);
    CHECK(has(p.skipped, "b"));
    CHECK(ptc_state_proxy(p.next, "b") != NULL);
    CHECK(has(p.deleted, "a") && has(p.deleted, "shared"));
    ptc_sync_plan_free(&p);

    /* two droplets claiming one domain: neither is synced */
    plan(s1,
         "[{\"name\": \"x\", \"domain\": \"same.example.com\", \"host\": \"h\", \"port\": 1},"
         " {\"name\": \"y\", \"domain\": \"same.example.com\", \"host\": \"h\", \"port\": 2}]",
         false, 4, &p);
    CHECK(has(p.skipped, "x") && has(p.skipped, "y"));
    CHECK_STR(json_string_value(json_object_get(p.skipped_reasons, "x")),
              "2 droplets claim the domain same.example.com");
    ptc_sync_plan_free(&p);

    /* a droplet takes over the domain of a registry proxy that is pruned
     * in the same sync; without prune it cannot */
    plan(s1, "[{\"name\": \"c\", \"domain\": \"b.example.com\", \"host\": \"h\", \"port\": 1}]", true, 4, &p);
    CHECK(has(p.created, "c") && has(p.deleted, "b"));
    ptc_sync_plan_free(&p);
    plan(s1, "[{\"name\": \"c\", \"domain\": \"b.example.com\", \"host\": \"h\", \"port\": 1}]", false, 4,
         &p);
    CHECK(has(p.skipped, "c"));
    CHECK_STR(json_string_value(json_object_get(p.skipped_reasons, "c")),
              "the domain b.example.com is routed by the registry proxy b");
    ptc_sync_plan_free(&p);

    /* a and b swap domains in one sync */
    plan(s1,
         "[{\"name\": \"a\", \"domain\": \"b.example.com\", \"host\": \"10.0.0.1\", \"port\": 80},"
         " {\"name\": \"b\", \"domain\": \"a.apps.example.com\", \"host\": \"10.0.0.2\", \"port\": 80}]",
         false, 4, &p);
    CHECK(has(p.updated, "a") && has(p.updated, "b"));
    CHECK_INT(json_array_size(p.skipped), 0);
    ptc_sync_plan_free(&p);

    /* a skip that blocks another: b cannot move to the manual proxy's
     * domain, so it keeps its old one, which e wanted */
    plan(s1,
         "[{\"name\": \"b\", \"domain\": \"m.example.com\", \"host\": \"10.0.0.2\", \"port\": 80},"
         " {\"name\": \"e\", \"domain\": \"b.example.com\", \"host\": \"10.0.0.9\", \"port\": 80}]",
         false, 4, &p);
    CHECK(has(p.skipped, "b") && has(p.skipped, "e"));
    CHECK_STR(json_string_value(json_object_get(p.skipped_reasons, "e")),
              "the domain b.example.com is routed by the registry proxy b");
    CHECK(!ptc_sync_plan_changes(&p));
    ptc_sync_plan_free(&p);

    ptc_state_release(s1);
    ptc_state_release(cur);
    ptc_state_release(s0);
}

int main(void)
{
    RUN(test_parse_spellings);
    RUN(test_parse_hostile);
    RUN(test_parse_whole_body);
    RUN(test_plan);
    TEST_EXIT();
}
