/* DNS through the API (seed 004, DESIGN §2.2, §6, §9): the records of
 * dns_zone (/dns/records), the zone file (/dns/zone), POST /add-record
 * (a record and, with proxy_enabled, a proxy in one call), and keeping the
 * responder's zone in step with the store and the proxies.
 *
 * Record writes take the apply lock, like every change, so that a record
 * and a proxy written by /add-record are seen together or not at all, and
 * the zone is rebuilt after each of them. */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the zone ------------------------------------------------------- */

int ptc_api_dns_start(ptc_api *api, char *err, size_t errlen)
{
    const ptc_settings *s = api->settings;
    const char *zone = ptc_settings_get(s, PTC_SET_DNS_ZONE);
    const char *listen = ptc_settings_get(s, PTC_SET_DNS_LISTEN);
    const char *proxy_ip = ptc_settings_get(s, PTC_SET_DNS_PROXY_IP);

    if (zone[0] == '\0') {
        if (listen[0] != '\0') {
            snprintf(err, errlen, "dns_listen is set but dns_zone is not: set the zone to answer for");
            return -EINVAL;
        }
        return 0;
    }
    char *name = ptc_xstrdup(zone);
    ptc_str_lower(name);
    size_t n = strlen(name);
    if (n > 1 && name[n - 1] == '.')
        name[n - 1] = '\0';
    if (ptc_check_domain(name, false) != NULL) {
        snprintf(err, errlen, "dns_zone: \"%s\" is not a domain name", zone);
        free(name);
        return -EINVAL;
    }
    if (proxy_ip[0] != '\0' && !ptc_is_ip_literal(proxy_ip)) {
        snprintf(err, errlen, "dns_proxy_ip: \"%s\" is not an IP address", proxy_ip);
        free(name);
        return -EINVAL;
    }
    api->dns_zone_name = name;
    if (listen[0] != '\0' && (api->dns_server = ptc_dns_server_start(listen, err, errlen)) == NULL)
        return -EINVAL;
    ptc_api_dns_refresh(api);
    ptc_log_info("dns zone ready", PTC_LS("zone", name), PTC_LS("listen", listen[0] ? listen : NULL),
                 PTC_LS("proxy_ip", proxy_ip[0] ? proxy_ip : NULL));
    return 0;
}

void ptc_api_dns_stop(ptc_api *api)
{
    ptc_dns_server_stop(api->dns_server);
    api->dns_server = NULL;
    ptc_dns_zone_release(api->dns_zone);
    api->dns_zone = NULL;
    free(api->dns_zone_name);
    api->dns_zone_name = NULL;
}

void ptc_api_dns_refresh(ptc_api *api)
{
    ptc_dns_record_list recs = {0};
    char err[256];

    if (api->dns_zone_name == NULL)
        return;
    pthread_mutex_lock(&api->dns_lock);
    const ptc_state *s = ptc_api_state(api);
    if (ptc_store_dns_list(api->store, &recs) != 0) {
        ptc_log_error("dns: cannot read the records; the zone keeps its previous content");
        goto out;
    }
    /* Serials are seconds since the epoch, or one more than the last when
     * changes come faster than that: secondaries see every change. */
    uint32_t now = (uint32_t)(ptc_now_ms() / 1000);
    uint32_t serial = now > api->dns_serial ? now : api->dns_serial + 1;
    ptc_dns_zone *z =
        ptc_dns_zone_from(api->dns_zone_name, ptc_settings_get(api->settings, PTC_SET_DNS_PROXY_IP), serial,
                          &recs, s, err, sizeof(err));
    if (z == NULL) {
        ptc_log_error("dns: cannot build the zone; it keeps its previous content", PTC_LS("reason", err));
        goto out;
    }
    api->dns_serial = serial;
    ptc_dns_zone_release(api->dns_zone);
    api->dns_zone = z;
    if (api->dns_server)
        ptc_dns_server_publish(api->dns_server, ptc_dns_zone_retain(z));
out:
    pthread_mutex_unlock(&api->dns_lock);
    ptc_dns_record_list_free(&recs);
    ptc_state_release(s);
}

json_t *ptc_api_dns_status(ptc_api *api)
{
    size_t n = 0;
    uint32_t serial = 0;
    if (api->dns_zone_name == NULL)
        return NULL;
    pthread_mutex_lock(&api->dns_lock);
    if (api->dns_zone) {
        ptc_dns_zone_entries(api->dns_zone, &n);
        serial = ptc_dns_zone_serial(api->dns_zone);
    }
    bool ok = api->dns_zone != NULL;
    pthread_mutex_unlock(&api->dns_lock);
    const char *listen = ptc_settings_get(api->settings, PTC_SET_DNS_LISTEN);
    return json_pack("{s:b, s:s, s:I, s:I, s:s?}", "ok", ok, "zone", api->dns_zone_name, "serial",
                     (json_int_t)serial, "records", (json_int_t)n, "listen", api->dns_server ? listen : NULL);
}

/* The zone answered now (retained), or NULL after answering 409. */
static ptc_dns_zone *zone_or_answer(ptc_call *c)
{
    ptc_api *api = c->api;
    ptc_dns_zone *z = NULL;
    if (api->dns_zone_name == NULL) {
        ptc_call_error(c, 409, "DNS_NOT_CONFIGURED", "portico manages no DNS zone: set dns_zone", NULL);
        return NULL;
    }
    pthread_mutex_lock(&api->dns_lock);
    if (api->dns_zone)
        z = ptc_dns_zone_retain(api->dns_zone);
    pthread_mutex_unlock(&api->dns_lock);
    if (z == NULL)
        ptc_call_error(c, 500, "DNS_ZONE_UNAVAILABLE", "the zone could not be built; see the log", NULL);
    return z;
}

static json_t *time_json(int64_t ms)
{
    char t[32];
    if (ms <= 0)
        return json_null();
    ptc_time_format(ms, t, sizeof(t));
    return json_string(t);
}

static json_t *entry_json(const ptc_dns_entry *e)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:o}", "name", e->name, "type", e->type, "value",
                     e->value, "ttl", (int)e->ttl, "source", e->source, "created_at",
                     time_json(e->created_at), "updated_at", time_json(e->updated_at));
}

static json_t *record_json(const ptc_dns_record *r)
{
    return json_pack("{s:s, s:s, s:s, s:i, s:s, s:o, s:o}", "name", r->name, "type", r->type, "value",
                     r->value, "ttl", (int)r->ttl, "source", "api", "created_at", time_json(r->created_at),
                     "updated_at", time_json(r->updated_at));
}

void ptc_api_dns_records_list(ptc_call *c)
{
    ptc_dns_zone *z = zone_or_answer(c);
    size_t n;
    if (z == NULL)
        return;
    const ptc_dns_entry *e = ptc_dns_zone_entries(z, &n);
    json_t *list = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(list, entry_json(&e[i]));
    ptc_call_reply(c, 200, list);
    ptc_dns_zone_release(z);
}

/* The fully qualified {name} of the path; answers 400 when it is not a
 * name inside the zone. */
static bool name_param(ptc_call *c, const char *zone, const char *field, const char *name, char *out,
                       size_t outlen)
{
    const char *why = ptc_dns_name_qualify(zone, name, out, outlen);
    if (why == NULL)
        return true;
    ptc_call_error(c, 400, "INVALID_CONFIG", "the record name is not valid",
                   json_pack("{s:{s:s}, s:s}", "fields", field, why, "zone", zone));
    return false;
}

void ptc_api_dns_record_get(ptc_call *c)
{
    ptc_dns_zone *z = zone_or_answer(c);
    char name[PTC_DOMAIN_MAX + 1];
    size_t n;
    if (z == NULL)
        return;
    if (name_param(c, ptc_dns_zone_name(z), "name", c->params[0], name, sizeof(name))) {
        const ptc_dns_entry *e = ptc_dns_zone_entries(z, &n);
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++)
            if (strcmp(e[i].name, name) == 0)
                json_array_append_new(list, entry_json(&e[i]));
        if (json_array_size(list) > 0)
            ptc_call_reply(c, 200, json_pack("{s:s, s:o}", "name", name, "records", list));
        else {
            json_decref(list);
            ptc_call_error(c, 404, "DNS_RECORD_NOT_FOUND", "the zone has no record of this name",
                           json_pack("{s:s}", "name", name));
        }
    }
    ptc_dns_zone_release(z);
}

/* An address record's value: sets type ("A"/"AAAA") and the canonical
 * text of the address.  False when value is not an IP literal. */
static bool parse_address(const char *value, const char **type, char *canon, size_t len)
{
    unsigned char buf[16];
    if (inet_pton(AF_INET, value, buf) == 1) {
        *type = "A";
        return inet_ntop(AF_INET, buf, canon, (socklen_t)len) != NULL;
    }
    if (inet_pton(AF_INET6, value, buf) == 1) {
        *type = "AAAA";
        return inet_ntop(AF_INET6, buf, canon, (socklen_t)len) != NULL;
    }
    return false;
}

/* The record of (name, type) in the store, copied into *out (strings
 * owned by the caller's list).  Returns 0 (found or not, see *found) or
 * -errno. */
static int stored_record(ptc_api *api, const char *name, const char *type, ptc_dns_record_list *list,
                         const ptc_dns_record **found)
{
    int rc = ptc_store_dns_list(api->store, list);
    *found = NULL;
    for (size_t i = 0; rc == 0 && i < list->n; i++)
        if (strcmp(list->items[i].name, name) == 0 && strcmp(list->items[i].type, type) == 0)
            *found = &list->items[i];
    return rc;
}

typedef enum put_outcome { PUT_CREATED, PUT_UPDATED, PUT_UNCHANGED } put_outcome;

/* Writes r (created_at and updated_at filled here) under the apply lock
 * the caller holds.  Returns 0 with *outcome, or -errno. */
static int write_record(ptc_api *api, ptc_dns_record *r, put_outcome *outcome)
{
    ptc_dns_record_list list = {0};
    const ptc_dns_record *old;
    int rc = stored_record(api, r->name, r->type, &list, &old);
    int64_t now = ptc_now_ms();

    if (rc != 0)
        goto out;
    if (old && strcmp(old->value, r->value) == 0 && old->ttl == r->ttl) {
        r->created_at = old->created_at;
        r->updated_at = old->updated_at;
        *outcome = PUT_UNCHANGED;
        goto out;
    }
    r->created_at = old ? old->created_at : now;
    r->updated_at = now;
    *outcome = old ? PUT_UPDATED : PUT_CREATED;
    rc = ptc_store_dns_put(api->store, r);
out:
    ptc_dns_record_list_free(&list);
    return rc;
}

/* Reads {type, value, ttl?} strictly into r (value written to canon). */
static bool read_record_body(ptc_call *c, json_t *body, ptc_dns_record *r, char *canon, size_t len)
{
    json_t *fields = json_object(), *v;
    const char *key, *type = NULL, *addr_type = NULL;

    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "type") != 0 && strcmp(key, "value") != 0 && strcmp(key, "ttl") != 0)
            json_object_set_new(fields, key, json_string("is not a known field"));
    }
    type = json_string_value(json_object_get(body, "type"));
    if (type == NULL || (strcmp(type, "A") != 0 && strcmp(type, "AAAA") != 0))
        json_object_set_new(fields, "type", json_string("is required: A or AAAA"));
    v = json_object_get(body, "value");
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !parse_address(json_string_value(v), &addr_type, canon, len))
        json_object_set_new(fields, "value", json_string("is required: an IPv4 (A) or IPv6 (AAAA) address"));
    else if (type && strcmp(addr_type, type) != 0)
        json_object_set_new(fields, "value",
                            json_string(strcmp(type, "A") == 0 ? "an A record holds an IPv4 address"
                                                               : "an AAAA record holds an IPv6 address"));
    v = json_object_get(body, "ttl");
    r->ttl = PTC_DNS_TTL_DEFAULT;
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > PTC_DNS_TTL_MAX))
        json_object_set_new(fields, "ttl", json_string("must be an integer from 1 to 604800 (seconds)"));
    else if (v)
        r->ttl = (unsigned)json_integer_value(v);
    if (json_object_size(fields) > 0) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the record is not valid",
                       json_pack("{s:o}", "fields", fields));
        return false;
    }
    json_decref(fields);
    r->type = type;
    r->value = canon;
    return true;
}

void ptc_api_dns_record_put(ptc_call *c)
{
    ptc_api *api = c->api;
    ptc_dns_zone *z = zone_or_answer(c);
    json_t *body = NULL;
    char name[PTC_DOMAIN_MAX + 1] = "", canon[64];
    ptc_dns_record r = {.name = name};
    put_outcome outcome = PUT_UNCHANGED;
    int rc;

    if (z == NULL || !name_param(c, ptc_dns_zone_name(z), "name", c->params[0], name, sizeof(name)) ||
        (body = ptc_call_json_body(c, false)) == NULL || !read_record_body(c, body, &r, canon, sizeof(canon)))
        goto fail;
    ptc_api_writes writes;
    pthread_mutex_lock(&api->apply_lock);
    ptc_api_writes_begin(api, &writes);
    rc = write_record(api, &r, &outcome);
    if (rc == 0 && outcome != PUT_UNCHANGED)
        ptc_api_dns_refresh(api);
    ptc_api_writes_end(api, &writes);
    pthread_mutex_unlock(&api->apply_lock);
    if (rc != 0) {
        ptc_call_error(c, 500, "STORE_FAILED", "the record could not be written", NULL);
        goto fail;
    }
    json_t *out = record_json(&r);
    json_object_set_new(out, "changed", json_boolean(outcome != PUT_UNCHANGED));
    ptc_call_reply(c, outcome == PUT_CREATED ? 201 : 200, out);
    char detail[128];
    snprintf(detail, sizeof(detail), "%s %s ttl %u", r.type, r.value, r.ttl);
    ptc_api_audit(c, "dns.put", NULL, name, outcome == PUT_UNCHANGED ? "unchanged" : "success", NULL, detail);
    goto out;
fail:
    ptc_api_audit_failure(c, "dns.put", NULL, name[0] ? name : NULL);
out:
    json_decref(body);
    ptc_dns_zone_release(z);
}

void ptc_api_dns_record_delete(ptc_call *c)
{
    ptc_api *api = c->api;
    ptc_dns_zone *z = zone_or_answer(c);
    char name[PTC_DOMAIN_MAX + 1] = "";
    const char *type = ptc_call_query(c, "type");
    int rc;

    if (z == NULL || !name_param(c, ptc_dns_zone_name(z), "name", c->params[0], name, sizeof(name)))
        goto fail;
    if (type && strcmp(type, "A") != 0 && strcmp(type, "AAAA") != 0) {
        ptc_call_error(c, 400, "INVALID_QUERY", "type must be A or AAAA", json_pack("{s:s}", "type", type));
        goto fail;
    }
    json_t *deleted = json_array();
    size_t n;
    const ptc_dns_entry *e = ptc_dns_zone_entries(z, &n);
    for (size_t i = 0; i < n; i++)
        if (strcmp(e[i].name, name) == 0 && strcmp(e[i].source, "api") == 0 &&
            (!type || strcmp(type, e[i].type) == 0))
            json_array_append_new(deleted, json_string(e[i].type));
    ptc_api_writes writes;
    pthread_mutex_lock(&api->apply_lock);
    ptc_api_writes_begin(api, &writes);
    rc = ptc_store_dns_delete(api->store, name, type);
    if (rc == 0)
        ptc_api_dns_refresh(api);
    ptc_api_writes_end(api, &writes);
    pthread_mutex_unlock(&api->apply_lock);
    if (rc == -ENOENT) {
        json_t *details = json_pack("{s:s}", "name", name);
        /* A name a proxy publishes goes with the proxy's dns flag. */
        for (size_t i = 0; i < n; i++)
            if (strcmp(e[i].name, name) == 0 && strncmp(e[i].source, "proxy:", 6) == 0)
                json_object_set_new(details, "published_by", json_string(e[i].source));
        json_decref(deleted);
        ptc_call_error(c, 404, "DNS_RECORD_NOT_FOUND", "no managed record of this name", details);
        goto fail;
    }
    if (rc != 0) {
        json_decref(deleted);
        ptc_call_error(c, 500, "STORE_FAILED", "the record could not be deleted", NULL);
        goto fail;
    }
    ptc_call_reply(c, 200,
                   json_pack("{s:s, s:o, s:b}", "name", name, "deleted_types", deleted, "deleted", 1));
    ptc_api_audit(c, "dns.delete", NULL, name, "success", NULL, type ? type : "all types");
    goto out;
fail:
    ptc_api_audit_failure(c, "dns.delete", NULL, name[0] ? name : NULL);
out:
    ptc_dns_zone_release(z);
}

void ptc_api_dns_zone(ptc_call *c)
{
    ptc_dns_zone *z = zone_or_answer(c);
    ptc_buf b = PTC_BUF_INIT;
    if (z == NULL)
        return;
    ptc_dns_zone_export(z, &b);
    c->status = 200;
    c->text = ptc_buf_detach(&b);
    c->content_type = "text/plain; charset=utf-8";
    ptc_dns_zone_release(z);
}

/* ---- POST /add-record ------------------------------------------------ */

typedef struct add_arg {
    ptc_proxy *proxy; /* NULL: a record only */
    ptc_dns_record rec;
    bool proxy_created;
    put_outcome outcome;
    const char *summary;
} add_arg;

static const ptc_state *build_add(ptc_call *c, const ptc_state *cur, int64_t rev, void *arg)
{
    add_arg *a = arg;
    return ptc_api_state_with_proxy(c, cur, rev, a->proxy, &a->proxy_created);
}

/* The record and the proxies, both or neither: the record is written
 * first and taken back if the revision cannot be committed (the apply
 * pipeline then rolls the engine back too). */
static int commit_add(ptc_call *c, const ptc_state *cur, const ptc_state *next, int64_t rev, void *arg)
{
    add_arg *a = arg;
    ptc_api *api = c->api;
    ptc_dns_record_list list = {0};
    const ptc_dns_record *old;
    int rc = stored_record(api, a->rec.name, a->rec.type, &list, &old);
    if (rc != 0)
        goto out;
    ptc_dns_record prev = old ? *old : (ptc_dns_record){0};
    if ((rc = write_record(api, &a->rec, &a->outcome)) != 0)
        goto out;
    ptc_revision meta = {
        .number = rev,
        .ts = ptc_now_ms(),
        .actor = c->actor,
        .action = "add-record",
        .correlation_id = c->correlation_id,
        .summary = a->summary,
    };
    if ((rc = ptc_store_commit(api->store, cur, next, &meta)) != 0 && a->outcome != PUT_UNCHANGED) {
        int undo = old ? ptc_store_dns_put(api->store, &prev)
                       : ptc_store_dns_delete(api->store, a->rec.name, a->rec.type);
        if (undo != 0)
            ptc_log_error("add-record: the record could not be taken back after a failed commit",
                          PTC_LS("name", a->rec.name), PTC_LS("type", a->rec.type));
    }
out:
    ptc_dns_record_list_free(&list);
    return rc;
}

/* Reads seed 004's body.  Every problem is added to fields. */
static void read_add_body(ptc_api *api, json_t *body, json_t *fields, add_arg *a, char *name, size_t namelen,
                          char *canon, size_t canonlen, const char **service, bool *proxy_enabled,
                          json_t **proxy_body)
{
    static const char *const known[] = {
        "service_name",    "name", "ip", "port", "forward_to_ip", "proxy_enabled", "ttl",
        "require_healthy", NULL};
    const char *key, *why;
    json_t *v;

    json_object_foreach(body, key, v)
    {
        bool ok = false;
        for (size_t i = 0; known[i]; i++)
            ok = ok || strcmp(key, known[i]) == 0;
        if (!ok)
            json_object_set_new(fields, key, json_string("is not a known field"));
    }
    v = json_object_get(body, "proxy_enabled");
    if (v && !json_is_boolean(v))
        json_object_set_new(fields, "proxy_enabled", json_string("must be true or false"));
    *proxy_enabled = json_is_true(v);

    v = json_object_get(body, "name");
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v))
        json_object_set_new(fields, "name", json_string("is required: a name inside the zone"));
    else if ((why = ptc_dns_name_qualify(api->dns_zone_name, json_string_value(v), name, namelen)) != NULL)
        json_object_set_new(fields, "name", json_string(why));

    const char *type = NULL;
    v = json_object_get(body, "ip");
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v) ||
        !parse_address(json_string_value(v), &type, canon, canonlen))
        json_object_set_new(fields, "ip",
                            json_string("is required: the IPv4 or IPv6 address the name resolves to"));
    a->rec = (ptc_dns_record){.name = name, .type = type, .value = canon, .ttl = PTC_DNS_TTL_DEFAULT};
    v = json_object_get(body, "ttl");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > PTC_DNS_TTL_MAX))
        json_object_set_new(fields, "ttl", json_string("must be an integer from 1 to 604800 (seconds)"));
    else if (v)
        a->rec.ttl = (unsigned)json_integer_value(v);

    v = json_object_get(body, "service_name");
    *service = json_string_value(v);
    if (v && (!json_is_string(v) || strlen(*service) != json_string_length(v) || !ptc_valid_name(*service))) {
        json_object_set_new(fields, "service_name", json_string("must match ^[a-z0-9][a-z0-9_-]{0,62}$"));
        *service = NULL;
    }
    v = json_object_get(body, "port");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535))
        json_object_set_new(fields, "port", json_string("must be an integer from 1 to 65535"));
    if (!*proxy_enabled)
        return;
    /* The proxy half: service_name -> name, upstream forward_to_ip (or
     * ip) : port, validated by the proxy model like a PUT body. */
    if (v == NULL)
        json_object_set_new(fields, "port", json_string("is required when proxy_enabled is true"));
    if (json_object_get(body, "service_name") == NULL)
        json_object_set_new(fields, "service_name", json_string("is required when proxy_enabled is true"));
    json_t *fwd = json_object_get(body, "forward_to_ip");
    if (fwd && !json_is_string(fwd))
        json_object_set_new(fields, "forward_to_ip", json_string("must be a string"));
    if (json_object_size(fields) > 0)
        return;
    *proxy_body = json_pack("{s:s, s:O, s:O}", "domain", name, "upstream_host",
                            fwd ? fwd : json_object_get(body, "ip"), "upstream_port", v);
    json_t *rh = json_object_get(body, "require_healthy");
    if (rh)
        json_object_set(*proxy_body, "require_healthy", rh);
}

/* The proxy model names fields as a PUT body does; the answer names them
 * as this call's body did. */
static void rename_proxy_fields(json_t *errors, json_t *fields, bool forwarded)
{
    const char *key;
    json_t *v;
    json_object_foreach(errors, key, v)
    {
        const char *as = key;
        if (strcmp(key, "domain") == 0)
            as = "name";
        else if (strcmp(key, "upstream_host") == 0 || strcmp(key, "upstreams[0].host") == 0)
            as = forwarded ? "forward_to_ip" : "ip";
        else if (strcmp(key, "upstream_port") == 0 || strcmp(key, "upstreams[0].port") == 0)
            as = "port";
        json_object_set(fields, as, v);
    }
}

void ptc_api_add_record(ptc_call *c)
{
    ptc_api *api = c->api;
    json_t *body = NULL, *fields = json_object(), *proxy_body = NULL, *errors = json_object(), *report = NULL;
    char name[PTC_DOMAIN_MAX + 1] = "", canon[64] = "", summary[400];
    const char *service = NULL;
    bool proxy_enabled = false;
    add_arg a = {0};
    const ptc_state *cur = NULL, *next = NULL;
    json_t *proxy_out = NULL, *rec = NULL;
    unsigned status = 200;
    int rc;

    if (api->dns_zone_name == NULL) {
        ptc_call_error(c, 409, "DNS_NOT_CONFIGURED", "portico manages no DNS zone: set dns_zone", NULL);
        goto fail;
    }
    if ((body = ptc_call_json_body(c, false)) == NULL)
        goto fail;
    read_add_body(api, body, fields, &a, name, sizeof(name), canon, sizeof(canon), &service, &proxy_enabled,
                  &proxy_body);
    if (proxy_body) {
        ptc_proxy_defaults defs = {
            .health_check_path = ptc_settings_get(api->settings, PTC_SET_HEALTH_CHECK_PATH),
            .health_check_timeout_ms =
                (unsigned)ptc_settings_int(api->settings, PTC_SET_HEALTH_CHECK_TIMEOUT_MS),
            .health_check_interval_ms =
                (unsigned)ptc_settings_int(api->settings, PTC_SET_HEALTH_CHECK_INTERVAL_MS),
        };
        a.proxy = ptc_proxy_from_request(proxy_body, service, &defs, errors);
        rename_proxy_fields(errors, fields, json_object_get(body, "forward_to_ip") != NULL);
    }
    if (json_object_size(fields) > 0) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the record request is not valid",
                       json_pack("{s:O}", "fields", fields));
        goto fail;
    }
    snprintf(summary, sizeof(summary), "add-record %s %s %s%s%s", name, a.rec.type, a.rec.value,
             a.proxy ? " proxy " : "", a.proxy ? service : "");
    a.summary = summary;

    cur = ptc_api_state(api);
    const ptc_proxy *old = a.proxy ? ptc_state_proxy(cur, service) : NULL;
    if (a.proxy && !(old && ptc_proxy_spec_equal(old, a.proxy))) {
        /* The proxy changes: gate first (nothing is written when no
         * upstream is healthy), then the record rides on its apply. */
        if (!ptc_api_gate(c, a.proxy))
            goto fail;
        ptc_change chg = {
            .action = "add-record",
            .droplet = service,
            .domain = name,
            .build = build_add,
            .commit = commit_add,
            .commits_revision = true,
            .arg = &a,
            .verify_domain = a.proxy->domain,
            .verify_path = a.proxy->path_prefix,
        };
        snprintf(chg.summary, sizeof(chg.summary), "%.159s", summary);
        switch (ptc_api_apply(c, &chg, &report, &next)) {
        case PTC_APPLY_DONE:
            proxy_out = ptc_api_proxy_json(api, next, ptc_state_proxy(next, service));
            json_object_set_new(report, "changed", json_true());
            json_object_set_new(proxy_out, "apply", report);
            report = NULL;
            status = a.proxy_created || a.outcome == PUT_CREATED ? 201 : 200;
            goto answer;
        case PTC_APPLY_ANSWERED:
            goto out; /* answered and audited by the pipeline */
        case PTC_APPLY_UNCHANGED:
            break; /* the proxy became equal meanwhile: write the record alone */
        }
    }
    /* A record alone (or with a proxy that is already as asked). */
    pthread_mutex_lock(&api->apply_lock);
    rc = write_record(api, &a.rec, &a.outcome);
    if (rc == 0 && a.outcome != PUT_UNCHANGED)
        ptc_api_dns_refresh(api);
    pthread_mutex_unlock(&api->apply_lock);
    if (rc != 0) {
        ptc_call_error(c, 500, "STORE_FAILED", "the record could not be written", NULL);
        goto fail;
    }
    if (a.proxy) {
        const ptc_state *s = ptc_api_state(api);
        const ptc_proxy *p = ptc_state_proxy(s, service);
        if (p) {
            proxy_out = ptc_api_proxy_json(api, s, p);
            json_object_set_new(proxy_out, "apply", json_pack("{s:b}", "changed", 0));
        }
        ptc_state_release(s);
    }
    status = a.outcome == PUT_CREATED ? 201 : 200;
    ptc_api_audit(c, "add-record", service, name,
                  a.outcome == PUT_UNCHANGED && a.proxy == NULL ? "unchanged" : "success", NULL, summary);
answer:
    rec = record_json(&a.rec);
    json_object_set_new(rec, "changed", json_boolean(a.outcome != PUT_UNCHANGED));
    ptc_call_reply(c, status,
                   json_pack("{s:s?, s:s, s:o, s:o, s:b}", "service_name", service, "name", name, "record",
                             rec, "proxy", proxy_out ? proxy_out : json_null(), "proxy_enabled",
                             a.proxy != NULL));
    goto out;
fail:
    ptc_api_audit_failure(c, "add-record", service, name[0] ? name : NULL);
out:
    json_decref(report);
    ptc_state_release(next);
    ptc_state_release(cur);
    ptc_proxy_release(a.proxy);
    json_decref(proxy_body);
    json_decref(errors);
    json_decref(fields);
    json_decref(body);
}
