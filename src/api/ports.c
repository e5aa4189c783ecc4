/* /ports (seed 003, DESIGN §2.2, §9): allocate the lowest free port of
 * port_range for an owner's internal port, list the allocations with the
 * seed's statistics, read and release an owner's ports.  A requested
 * external port (the seed's "9999:8080") is accepted and ignored: the
 * allocator alone picks ports, which is what keeps them unique. */
#include "api/api_internal.h"

#include "core/mem.h"
#include "core/util.h"
#include "model/validate.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static json_t *time_json(int64_t ms)
{
    char t[32];
    if (ms <= 0)
        return json_null();
    ptc_time_format(ms, t, sizeof(t));
    return json_string(t);
}

static json_t *alloc_json(const ptc_port_alloc *a)
{
    json_t *j =
        json_pack("{s:s, s:i, s:i, s:s, s:o}", "owner", a->owner, "port", (int)a->port, "internal_port",
                  (int)a->internal_port, "status", a->status, "allocated_at", time_json(a->allocated_at));
    if (strcmp(a->status, "released") == 0)
        json_object_set_new(j, "released_at", time_json(a->released_at));
    return j;
}

/* Seed 003's {internal_port: external_port} map. */
static json_t *port_map(const ptc_port_list *l)
{
    json_t *m = json_object();
    for (size_t i = 0; i < l->n; i++) {
        char key[8];
        snprintf(key, sizeof(key), "%u", l->items[i].internal_port);
        json_object_set_new(m, key, json_integer(l->items[i].port));
    }
    return m;
}

static void store_failed(ptc_call *c)
{
    ptc_call_error(c, 500, "STORE_FAILED", "the store cannot be read or written", NULL);
}

void ptc_api_ports_list(ptc_call *c)
{
    const char *status = ptc_call_query(c, "status");
    bool all = status && strcmp(status, "all") == 0;
    ptc_port_list rows = {0}, active = {0};
    ptc_port_stats st;

    if (status && !all && strcmp(status, "active") != 0) {
        ptc_call_error(c, 400, "INVALID_QUERY", "status must be active or all",
                       json_pack("{s:s}", "status", status));
        return;
    }
    if (ptc_store_ports_list(c->api->store, NULL, false, &active) != 0 ||
        (all && ptc_store_ports_list(c->api->store, NULL, true, &rows) != 0)) {
        store_failed(c);
        goto out;
    }
    ptc_ports_stats(c->api->ports, &active, &st);
    const ptc_port_list *shown = all ? &rows : &active;
    json_t *list = json_array();
    for (size_t i = 0; i < shown->n; i++)
        json_array_append_new(list, alloc_json(&shown->items[i]));
    char range[16];
    snprintf(range, sizeof(range), "%u-%u", st.lo, st.hi);
    ptc_call_reply(
        c, 200,
        json_pack("{s:I, s:I, s:s, s:I, s:I, s:s, s:o}", "total_allocated", (json_int_t)st.allocated,
                  "total_available", (json_int_t)st.available, "port_range", range, "range_size",
                  (json_int_t)st.range_size, "reserved", (json_int_t)st.reserved, "reserved_ports",
                  ptc_settings_get(c->api->settings, PTC_SET_RESERVED_PORTS), "allocations", list));
out:
    ptc_port_list_free(&rows);
    ptc_port_list_free(&active);
}

/* The {owner} of the path, checked like a proxy name; answers 400. */
static const char *owner_param(ptc_call *c)
{
    const char *owner = c->params[0];
    if (ptc_valid_name(owner))
        return owner;
    ptc_call_error(c, 400, "INVALID_CONFIG", "the owner name is not valid",
                   json_pack("{s:{s:s}}", "fields", "owner", "must match ^[a-z0-9][a-z0-9_-]{0,62}$"));
    return NULL;
}

void ptc_api_ports_allocate(ptc_call *c)
{
    json_t *body = ptc_call_json_body(c, false), *fields = json_object();
    const char *owner = NULL, *key;
    json_t *v;
    unsigned internal = 0;
    ptc_port_grant g;
    ptc_port_list mine = {0};

    if (body == NULL)
        goto fail;
    json_object_foreach(body, key, v)
    {
        if (strcmp(key, "owner") != 0 && strcmp(key, "internal_port") != 0 &&
            strcmp(key, "external_port") != 0)
            json_object_set_new(fields, key, json_string("is not a known field"));
    }
    v = json_object_get(body, "owner");
    owner = json_string_value(v);
    if (owner == NULL || strlen(owner) != json_string_length(v) || !ptc_valid_name(owner)) {
        json_object_set_new(fields, "owner",
                            json_string("is required and must match ^[a-z0-9][a-z0-9_-]{0,62}$"));
        owner = NULL;
    }
    v = json_object_get(body, "internal_port");
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
        json_object_set_new(fields, "internal_port", json_string("is required: an integer from 1 to 65535"));
    else
        internal = (unsigned)json_integer_value(v);
    v = json_object_get(body, "external_port");
    if (v && (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535))
        json_object_set_new(fields, "external_port", json_string("must be an integer from 1 to 65535"));
    if (json_object_size(fields) > 0) {
        ptc_call_error(c, 400, "INVALID_CONFIG", "the allocation request is not valid",
                       json_pack("{s:O}", "fields", fields));
        goto fail;
    }

    int rc = ptc_ports_allocate(c->api->ports, owner, internal, &g);
    if (rc == -ENOSPC) {
        ptc_call_error(
            c, 409, "PORT_RANGE_EXHAUSTED",
            "every port of the range is reserved, allocated or in use on this host",
            json_pack("{s:s}", "port_range", ptc_settings_get(c->api->settings, PTC_SET_PORT_RANGE)));
        goto fail;
    }
    if (rc != 0 || ptc_store_ports_list(c->api->store, owner, false, &mine) != 0) {
        store_failed(c);
        goto fail;
    }
    json_t *out = NULL;
    for (size_t i = 0; i < mine.n; i++)
        if (mine.items[i].port == g.port)
            out = alloc_json(&mine.items[i]);
    if (out == NULL) /* released by someone else in between */
        out = json_pack("{s:s, s:i, s:i, s:s}", "owner", owner, "port", (int)g.port, "internal_port",
                        (int)internal, "status", "released");
    json_object_set_new(out, "created", json_boolean(g.created));
    json_object_set_new(out, "allocated_ports", port_map(&mine));
    v = json_object_get(body, "external_port");
    if (v)
        json_object_set_new(
            out, "requested_external_port",
            json_pack("{s:O, s:b}", "port", v, "honoured", json_integer_value(v) == (json_int_t)g.port));
    ptc_call_reply(c, g.created ? 201 : 200, out);
    char detail[96];
    snprintf(detail, sizeof(detail), "port %u for internal port %u%s", g.port, internal,
             g.created ? "" : " (already held)");
    ptc_api_audit(c, "port.allocate", owner, NULL, g.created ? "success" : "unchanged", NULL, detail);
    goto out;
fail:
    ptc_api_audit_failure(c, "port.allocate", owner, NULL);
out:
    ptc_port_list_free(&mine);
    json_decref(fields);
    json_decref(body);
}

void ptc_api_ports_get(ptc_call *c)
{
    const char *owner = owner_param(c);
    ptc_port_list mine = {0};
    if (owner == NULL)
        return;
    if (ptc_store_ports_list(c->api->store, owner, false, &mine) != 0) {
        store_failed(c);
        return;
    }
    if (mine.n == 0) {
        ptc_call_error(c, 404, "PORT_OWNER_NOT_FOUND", "this owner holds no port",
                       json_pack("{s:s}", "owner", owner));
    } else {
        json_t *list = json_array();
        for (size_t i = 0; i < mine.n; i++)
            json_array_append_new(list, alloc_json(&mine.items[i]));
        ptc_call_reply(c, 200,
                       json_pack("{s:s, s:o, s:o}", "owner", owner, "allocated_ports", port_map(&mine),
                                 "allocations", list));
    }
    ptc_port_list_free(&mine);
}

void ptc_api_ports_release(ptc_call *c)
{
    const char *owner = owner_param(c);
    ptc_port_list mine = {0};
    size_t n = 0;
    int rc;

    if (owner == NULL) {
        ptc_api_audit_failure(c, "port.release", NULL, NULL);
        return;
    }
    if (ptc_store_ports_list(c->api->store, owner, false, &mine) != 0) {
        store_failed(c);
        goto fail;
    }
    rc = ptc_store_ports_release(c->api->store, owner, ptc_now_ms(), &n);
    if (rc == -ENOENT) {
        ptc_call_error(c, 404, "PORT_OWNER_NOT_FOUND", "this owner holds no port",
                       json_pack("{s:s}", "owner", owner));
        goto fail;
    }
    if (rc != 0) {
        store_failed(c);
        goto fail;
    }
    json_t *ports = json_array();
    for (size_t i = 0; i < mine.n; i++)
        json_array_append_new(ports, json_integer(mine.items[i].port));
    ptc_call_reply(c, 200,
                   json_pack("{s:s, s:o, s:o, s:I}", "owner", owner, "released_ports", port_map(&mine),
                             "released", ports, "count", (json_int_t)n));
    char detail[64];
    snprintf(detail, sizeof(detail), "%zu port(s) released", n);
    ptc_api_audit(c, "port.release", owner, NULL, "success", NULL, detail);
    goto out;
fail:
    ptc_api_audit_failure(c, "port.release", owner, NULL);
out:
    ptc_port_list_free(&mine);
}
