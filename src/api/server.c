/* The admin API server: libmicrohttpd with a thread per connection, body
 * collection with the 64 KiB limit, correlation ids, authentication, the
 * table of calls and the JSON answers (see api.h, api_internal.h). */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <malloc.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct route {
    const char *method;
    const char *pattern; /* "{}" matches one path segment */
    void (*handler)(ptc_call *c);
    bool public; /* answered without a token (the health check, the web page's files) */
} route;

static const route routes[] = {
    {"GET", "/proxies", ptc_api_proxies_list, false},
    {"GET", "/proxies/{}", ptc_api_proxy_get, false},
    {"PUT", "/proxies/{}", ptc_api_proxy_put, false},
    {"DELETE", "/proxies/{}", ptc_api_proxy_delete, false},
    {"POST", "/proxies/{}/ssl", ptc_api_proxy_ssl, false},
    {"GET", "/proxy-manager/health", ptc_api_health, true},
    {"GET", "/audit", ptc_api_audit_list, false},
    {"GET", "/revisions", ptc_api_revisions_list, false},
    {"POST", "/revisions/{}/restore", ptc_api_revision_restore, false},
    {"GET", "/certificates", ptc_api_certs_list, false},
    {"GET", "/certificates/{}", ptc_api_cert_get, false},
    {"PUT", "/certificates/{}", ptc_api_cert_put, false},
    {"DELETE", "/certificates/{}", ptc_api_cert_delete, false},
    {"POST", "/certificates/{}/renew", ptc_api_cert_renew, false},
    {"GET", "/proxy-manager/sync-from-registry", ptc_api_registry_sync, false},
    {"GET", "/metrics", ptc_api_metrics, false},
    {"GET", "/ports", ptc_api_ports_list, false},
    {"POST", "/ports", ptc_api_ports_allocate, false},
    {"GET", "/ports/{}", ptc_api_ports_get, false},
    {"DELETE", "/ports/{}", ptc_api_ports_release, false},
    {"GET", "/dns/records", ptc_api_dns_records_list, false},
    {"GET", "/dns/records/{}", ptc_api_dns_record_get, false},
    {"PUT", "/dns/records/{}", ptc_api_dns_record_put, false},
    {"DELETE", "/dns/records/{}", ptc_api_dns_record_delete, false},
    {"GET", "/dns/zone", ptc_api_dns_zone, false},
    {"POST", "/add-record", ptc_api_add_record, false},
    /* The page holds no data (its every call carries the token), so a
     * browser loads it before the operator has typed one. */
    {"GET", "/", ptc_api_ui, true},
    {"HEAD", "/", ptc_api_ui, true},
    {"GET", "/ui/{}", ptc_api_ui, true},
    {"HEAD", "/ui/{}", ptc_api_ui, true},
};

/* Per-request state kept by libmicrohttpd between handler calls. */
typedef struct pending {
    ptc_buf body;
    bool too_large;
    bool answered;
    int64_t started;
} pending;

/* ---- answers -------------------------------------------------------- */

void ptc_call_reply(ptc_call *c, unsigned status, json_t *body)
{
    json_decref(c->reply);
    c->status = status;
    c->reply = body;
}

void ptc_call_error(ptc_call *c, unsigned status, const char *code, const char *message, json_t *details)
{
    /* A message may quote a peer (a CA's problem detail, nginx's output)
     * cut to a size: bytes that are not UTF-8 must not void the answer. */
    char *text = ptc_utf8_repair(message);
    if (details == NULL)
        details = json_object();
    json_object_set_new(details, "correlation_id", json_string(c->correlation_id));
    ptc_call_reply(
        c, status,
        json_pack("{s:{s:s, s:s, s:o}}", "error", "code", code, "message", text, "details", details));
    free(text);
}

json_t *ptc_call_json_body(ptc_call *c, bool empty_ok)
{
    json_error_t jerr;
    json_t *j;
    if (c->body_len == 0 && empty_ok)
        return json_object();
    /* JSON_REJECT_DUPLICATES: {"domain": "a", "domain": "b"} is ambiguous. */
    j = json_loadb(c->body, c->body_len, JSON_REJECT_DUPLICATES, &jerr);
    if (j == NULL) {
        ptc_call_error(
            c, 400, "INVALID_JSON", "the body is not valid JSON",
            json_pack("{s:s, s:i, s:i}", "reason", jerr.text, "line", jerr.line, "column", jerr.column));
        return NULL;
    }
    if (!json_is_object(j)) {
        json_decref(j);
        ptc_call_error(c, 400, "INVALID_JSON", "the body must be a JSON object", NULL);
        return NULL;
    }
    return j;
}

const char *ptc_call_query(ptc_call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

uint64_t ptc_api_activity(ptc_api *api)
{
    return atomic_load(&api->activity);
}

void ptc_api_trim(ptc_api *api)
{
    if (api->engine->ops->trim != NULL) {
        pthread_mutex_lock(&api->apply_lock);
        api->engine->ops->trim(api->engine);
        pthread_mutex_unlock(&api->apply_lock);
    }
    malloc_trim(0);
}

const ptc_state *ptc_api_state(ptc_api *api)
{
    pthread_mutex_lock(&api->state_lock);
    const ptc_state *s = ptc_state_retain(api->state);
    pthread_mutex_unlock(&api->state_lock);
    return s;
}

/* The values of an audit entry that come from the request (a droplet name
 * from the path is whatever bytes the URL decoded to): made UTF-8, so that
 * the store keeps them (PostgreSQL refuses other bytes) and GET /audit can
 * answer them (jansson refuses them too).  Free with audit_text_free. */
typedef struct audit_text {
    char *droplet, *domain, *detail;
} audit_text;

static audit_text audit_text_of(const char *droplet, const char *domain, const char *detail)
{
    return (audit_text){
        droplet ? ptc_utf8_repair(droplet) : NULL,
        domain ? ptc_utf8_repair(domain) : NULL,
        detail ? ptc_utf8_repair(detail) : NULL,
    };
}

static void audit_text_free(audit_text *t)
{
    free(t->droplet);
    free(t->domain);
    free(t->detail);
}

void ptc_api_audit(ptc_call *c, const char *action, const char *droplet, const char *domain,
                   const char *result, const char *error_code, const char *detail)
{
    audit_text t = audit_text_of(droplet, domain, detail);
    ptc_audit_entry e = {
        .ts = ptc_now_ms(),
        .correlation_id = c->correlation_id,
        .actor = c->actor,
        .action = action,
        .droplet_name = t.droplet,
        .domain = t.domain,
        .result = result,
        .error_code = error_code,
        .detail = t.detail,
    };
    if (ptc_store_audit_append(c->api->store, &e) != 0)
        ptc_log_error("audit entry lost", PTC_LS("action", action), PTC_LS("result", result));
    ptc_log_info("audit", PTC_LS("action", action), PTC_LS("actor", c->actor),
                 PTC_LS("droplet_name", droplet), PTC_LS("domain", domain), PTC_LS("result", result),
                 PTC_LS("error_code", error_code));
    audit_text_free(&t);
}

/* ---- request plumbing ----------------------------------------------- */

/* A client's X-Request-ID / X-Correlation-ID is reused when it is a short
 * token of safe characters: it lands in logs and headers. */
static bool safe_id(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' ||
              ch == '_' || ch == '.' || ch == ':'))
            return false;
    }
    return true;
}

static const char *header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}

static void init_call(ptc_call *c, ptc_api *api, struct MHD_Connection *conn, const char *method,
                      const char *url)
{
    const char *id = header(conn, "X-Request-ID");
    if (!safe_id(id))
        id = header(conn, "X-Correlation-ID");
    memset(c, 0, sizeof(*c));
    c->api = api;
    c->conn = conn;
    c->method = method;
    c->path = url;
    if (safe_id(id))
        snprintf(c->correlation_id, sizeof(c->correlation_id), "%s", id);
    else
        ptc_random_hex(c->correlation_id, 16);
    snprintf(c->actor, sizeof(c->actor), "%s", api->token ? "token" : "local");
    /* An optional name for who is behind the call (a CI job, a person),
     * recorded next to how they authenticated. */
    const char *who = header(conn, "X-Portico-Actor");
    if (safe_id(who))
        snprintf(c->actor, sizeof(c->actor), "%s:%s", api->token ? "token" : "local", who);
}

/* Matches path against pattern, filling params; segments are bounded. */
static bool match(const char *pattern, const char *path, const char *params[4], char store[4][256])
{
    size_t np = 0;
    const char *p = pattern, *s = path;
    while (*p && *s) {
        if (p[0] == '{' && p[1] == '}') {
            const char *end = strchr(s, '/');
            size_t len = end ? (size_t)(end - s) : strlen(s);
            if (len == 0 || len >= 256 || np == 4)
                return false;
            memcpy(store[np], s, len);
            store[np][len] = '\0';
            params[np] = store[np];
            np++;
            p += 2;
            s += len;
        } else if (*p++ != *s++) {
            return false;
        }
    }
    return *p == '\0' && *s == '\0';
}

static bool authorized(ptc_api *api, struct MHD_Connection *conn)
{
    const char *auth = header(conn, "Authorization");
    if (api->token == NULL)
        return true;
    if (auth == NULL || strncmp(auth, "Bearer ", 7) != 0)
        return false;
    return ptc_str_equal_ct(auth + 7, api->token);
}

/* Browsers send Origin on cross-site requests: a page elsewhere must not
 * drive a loopback API (the CSRF of Caddy's CVE-2026-27589). */
static bool origin_allowed(struct MHD_Connection *conn)
{
    const char *origin = header(conn, "Origin");
    const char *host = header(conn, "Host");
    if (origin == NULL)
        return true;
    if (host == NULL)
        return false;
    const char *sep = strstr(origin, "://");
    return sep != NULL && strcmp(sep + 3, host) == 0;
}

static bool json_content_type(struct MHD_Connection *conn)
{
    const char *ct = header(conn, "Content-Type");
    if (ct == NULL)
        return false;
    size_t n = strlen("application/json");
    return strncasecmp(ct, "application/json", n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ');
}

/* Finds the handler; answers 404/405/401/403/415 itself when there is none. */
static void dispatch(ptc_call *c)
{
    char store[4][256];
    const route *found = NULL;
    bool path_known = false;
    char allow[64] = "";

    for (size_t i = 0; i < PTC_ARRAY_LEN(routes); i++) {
        const char *params[4] = {NULL};
        if (!match(routes[i].pattern, c->path, params, store))
            continue;
        path_known = true;
        if (strlen(allow) + strlen(routes[i].method) + 3 < sizeof(allow))
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s", allow[0] ? ", " : "",
                     routes[i].method);
        if (strcmp(routes[i].method, c->method) == 0) {
            found = &routes[i];
            memcpy(c->params, params, sizeof(params));
            break;
        }
    }
    if (found == NULL) {
        if (path_known) {
            ptc_call_error(c, 405, "METHOD_NOT_ALLOWED", "this path does not take this method",
                           json_pack("{s:s}", "allow", allow));
        } else {
            ptc_call_error(c, 404, "NOT_FOUND", "no such API path", NULL);
        }
        return;
    }
    if (!found->public && !authorized(c->api, c->conn)) {
        ptc_call_error(c, 401, "UNAUTHORIZED", "a valid bearer token is required", NULL);
        char detail[300];
        snprintf(detail, sizeof(detail), "%s %s", c->method, c->path);
        snprintf(c->actor, sizeof(c->actor), "anonymous");
        ptc_api_audit(c, "auth", NULL, NULL, "failure", "UNAUTHORIZED", detail);
        return;
    }
    if (!origin_allowed(c->conn)) {
        ptc_call_error(c, 403, "FORBIDDEN_ORIGIN", "cross-origin calls are refused", NULL);
        return;
    }
    if (c->body_len > 0 && !json_content_type(c->conn)) {
        ptc_call_error(c, 415, "UNSUPPORTED_MEDIA_TYPE", "send the body as Content-Type: application/json",
                       NULL);
        return;
    }
    found->handler(c);
    if (c->reply == NULL && c->text == NULL && c->data == NULL)
        ptc_call_error(c, 500, "INTERNAL_ERROR", "the call produced no answer", NULL);
}

static bool has_header(const ptc_header *h, const char *name)
{
    for (; h && h->name; h++)
        if (strcasecmp(h->name, name) == 0)
            return true;
    return false;
}

static enum MHD_Result send_answer(ptc_call *c)
{
    char *data;
    size_t len;
    struct MHD_Response *resp;
    enum MHD_Result ret;

    if (c->data) {
        /* Embedded in the binary: lives as long as the process, and
         * libmicrohttpd only reads a persistent buffer. */
        resp = MHD_create_response_from_buffer(c->data_len, (void *)c->data, MHD_RESPMEM_PERSISTENT);
    } else {
        if (c->text) {
            data = c->text;
            c->text = NULL;
            len = strlen(data);
        } else {
            data = json_dumps(c->reply, JSON_COMPACT);
            len = strlen(data);
            data = ptc_xrealloc(data, len + 2);
            data[len++] = '\n';
            data[len] = '\0';
        }
        resp = MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
    }
    MHD_add_response_header(resp, "Content-Type", c->content_type ? c->content_type : "application/json");
    MHD_add_response_header(resp, "X-Correlation-ID", c->correlation_id);
    if (!has_header(c->headers, "Cache-Control"))
        MHD_add_response_header(resp, "Cache-Control", "no-store");
    for (const ptc_header *h = c->headers; h && h->name; h++)
        MHD_add_response_header(resp, h->name, h->value);
    if (c->status == 405 && c->reply) {
        const char *allow = json_string_value(
            json_object_get(json_object_get(json_object_get(c->reply, "error"), "details"), "allow"));
        if (allow)
            MHD_add_response_header(resp, "Allow", allow);
    }
    ret = MHD_queue_response(c->conn, c->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static void finish_call(ptc_call *c, int64_t started)
{
    ptc_log_info("api call", PTC_LS("method", c->method), PTC_LS("path", c->path),
                 PTC_LI("status", c->status), PTC_LI("ms", ptc_mono_ms() - started));
    ptc_log_set_correlation_id(NULL);
    json_decref(c->reply);
    free(c->text);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
    ptc_api *api = cls;
    pending *pd = *req_cls;
    ptc_call c;
    enum MHD_Result ret;
    (void)version;

    if (pd == NULL) {
        pd = ptc_xcalloc(1, sizeof(*pd));
        pd->started = ptc_mono_ms();
        *req_cls = pd;
        const char *cl = header(conn, "Content-Length");
        long long n;
        if (cl && ptc_parse_int(cl, 0, INT64_MAX, &n) == 0 && n > PTC_API_BODY_MAX)
            pd->too_large = true;
        if (!pd->too_large)
            return MHD_YES;
    }
    if (*upload_data_size > 0 && !pd->too_large) {
        if (pd->body.len + *upload_data_size > PTC_API_BODY_MAX)
            pd->too_large = true;
        else
            ptc_buf_append(&pd->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (!pd->too_large)
            return MHD_YES;
    }
    if (pd->answered) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    pd->answered = true;
    *upload_data_size = 0;
    init_call(&c, api, conn, method, url);
    ptc_log_set_correlation_id(c.correlation_id);
    if (pd->too_large) {
        ptc_call_error(&c, 413, "PAYLOAD_TOO_LARGE", "the body is larger than 64 KiB",
                       json_pack("{s:i}", "limit", PTC_API_BODY_MAX));
    } else {
        c.body = ptc_buf_cstr(&pd->body);
        c.body_len = pd->body.len;
        dispatch(&c);
    }
    ret = send_answer(&c);
    finish_call(&c, pd->started);
    return ret;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
                         enum MHD_RequestTerminationCode toe)
{
    pending *pd = *req_cls;
    (void)cls;
    (void)conn;
    (void)toe;
    if (pd) {
        ptc_buf_free(&pd->body);
        free(pd);
        *req_cls = NULL;
    }
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    (void)cls;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    ptc_log_warn("api server", PTC_LS("detail", msg));
}

/* ---- lifetime ------------------------------------------------------- */

static bool is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;
    if (strcmp(host, "localhost") == 0)
        return true;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&a6);
    return false;
}

static char *load_token(const ptc_settings *s, char *err, size_t errlen)
{
    const char *tok = ptc_settings_get(s, PTC_SET_API_TOKEN);
    const char *file = ptc_settings_get(s, PTC_SET_API_TOKEN_FILE);
    char *t = NULL;
    if (tok[0] && file[0]) {
        snprintf(err, errlen, "api_token and api_token_file: set one, not both");
        return (char *)-1;
    }
    if (tok[0])
        return ptc_xstrdup(tok);
    if (!file[0])
        return NULL;
    int rc = ptc_file_read(file, 4096, &t, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "api_token_file %s: %s", file, strerror(-rc));
        return (char *)-1;
    }
    t[strcspn(t, "\r\n")] = '\0';
    if (strlen(t) < 16) {
        free(t);
        snprintf(err, errlen, "api_token_file %s: the token must be at least 16 characters", file);
        return (char *)-1;
    }
    return t;
}

/* Reads api_listen into a socket address; returns 0 or -EINVAL. */
static int listen_address(const ptc_settings *s, struct sockaddr_storage *sa, bool *loopback, char *err,
                          size_t errlen)
{
    char host[256];
    unsigned port;
    memset(sa, 0, sizeof(*sa));
    if (ptc_parse_addr(ptc_settings_get(s, PTC_SET_API_LISTEN), host, sizeof(host), &port) != 0) {
        snprintf(err, errlen, "api_listen: not host:port");
        return -EINVAL;
    }
    *loopback = is_loopback(host);
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof(host), "127.0.0.1");
    if (host[0] == '\0' || inet_pton(AF_INET, host, &((struct sockaddr_in *)sa)->sin_addr) == 1) {
        struct sockaddr_in *a = (struct sockaddr_in *)sa;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
    } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)sa)->sin6_addr) == 1) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)sa;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
    } else {
        snprintf(err, errlen, "api_listen: %s is not an IP address", host);
        return -EINVAL;
    }
    return 0;
}

int ptc_api_preflight(const ptc_settings *s, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    bool loopback;
    char *token = load_token(s, err, errlen);
    int rc = 0;
    if (token == (char *)-1)
        return -EINVAL;
    if (listen_address(s, &sa, &loopback, err, errlen) != 0) {
        rc = -EINVAL;
    } else if (!loopback && token == NULL) {
        snprintf(
            err, errlen,
            "api_listen %s is not a loopback address: set api_token (or api_token_file) to expose the API",
            ptc_settings_get(s, PTC_SET_API_LISTEN));
        rc = -EINVAL;
    }
    free(token);
    return rc;
}

ptc_api *ptc_api_start(const ptc_settings *s, ptc_store *store, ptc_engine *engine, char *err, size_t errlen)
{
    ptc_api *api = ptc_xcalloc(1, sizeof(*api));
    struct sockaddr_storage sa;
    bool loopback;
    ptc_state *state = NULL;
    int rc;

    api->settings = s;
    api->store = store;
    api->engine = engine;
    api->started_at = ptc_now_ms();
    pthread_mutex_init(&api->apply_lock, NULL);
    pthread_mutex_init(&api->state_lock, NULL);
    pthread_mutex_init(&api->dns_lock, NULL);
    api->token = load_token(s, err, errlen);
    if (api->token == (char *)-1) {
        api->token = NULL;
        goto fail;
    }
    if (ptc_api_preflight(s, err, errlen) != 0 || listen_address(s, &sa, &loopback, err, errlen) != 0)
        goto fail;

    int64_t interrupted = 0;
    if (ptc_store_audit_interrupted(store, &interrupted) == 0 && interrupted > 0)
        ptc_log_warn("changes interrupted by the last stop are marked in the audit trail; the engine is "
                     "reconciled to the store",
                     PTC_LI("interrupted", interrupted));
    /* Read before the state: a change another node makes in between is
     * then seen as new at the first look, never missed. */
    if ((rc = ptc_store_generation(store, &api->generation)) != 0) {
        snprintf(err, errlen, "store: cannot read the state's generation (%s)", strerror(-rc));
        goto fail;
    }
    if ((rc = ptc_store_load_state(store, &state)) != 0) {
        snprintf(err, errlen, "store: cannot load the desired state (%s)", strerror(-rc));
        goto fail;
    }
    if ((rc = engine->ops->start(engine, state, err, errlen)) != 0)
        goto fail;
    api->state = state;
    state = NULL;
    api->ports = ptc_ports_new(store, ptc_settings_get(s, PTC_SET_PORT_RANGE),
                               ptc_settings_get(s, PTC_SET_RESERVED_PORTS), err, errlen);
    if (api->ports == NULL || ptc_api_dns_start(api, err, errlen) != 0)
        goto fail;
    if ((rc = ptc_api_checks_start(api, api->state, err, errlen)) != 0 ||
        (rc = ptc_api_sync_start(api, err, errlen)) != 0)
        goto fail;
    /* Last before listening: a renewal due now applies at once, and an
     * apply needs everything above. */
    if ((rc = ptc_api_ssl_start(api)) != 0) {
        snprintf(err, errlen, "cannot start the certificate renewal scheduler (%s)", strerror(-rc));
        goto fail;
    }
    /* After everything a followed change touches (checks, DNS, renewals). */
    if ((rc = ptc_api_follow_start(api, err, errlen)) != 0)
        goto fail;

    /* poll(), not select(): the data plane and the health checks hold
     * thousands of descriptors, and select() refuses any above 1023. */
    api->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ERROR_LOG |
            (sa.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0),
        0, NULL, NULL, on_request, api, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_SOCK_ADDR,
        (struct sockaddr *)&sa, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned)256,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(128 * 1024), MHD_OPTION_LISTENING_ADDRESS_REUSE,
        (unsigned)1, MHD_OPTION_END);
    if (api->daemon == NULL) {
        snprintf(err, errlen, "api_listen %s: cannot listen (%s)", ptc_settings_get(s, PTC_SET_API_LISTEN),
                 strerror(errno));
        goto fail;
    }
    ptc_log_info("api listening", PTC_LS("address", ptc_settings_get(s, PTC_SET_API_LISTEN)),
                 PTC_LB("token", api->token != NULL), PTC_LI("revision", api->state->revision),
                 PTC_LI("proxies", api->state->n_proxies));
    return api;
fail:
    ptc_state_release(state);
    ptc_api_stop(api);
    return NULL;
}

void ptc_api_stop(ptc_api *api)
{
    if (api == NULL)
        return;
    /* Issuances in progress (API calls, the scheduler) give up first, so
     * that waiting for the calls in flight takes seconds, not minutes. */
    ptc_api_ssl_cancel(api);
    ptc_api_follow_stop(api);
    /* The periodic sync may be applying: it ends before the checks it
     * feeds, and both before the state goes.  A sync called through the
     * API is cancelled here too, but what it uses is freed only once the
     * daemon has joined the calls in flight. */
    ptc_api_sync_stop(api);
    if (api->daemon)
        MHD_stop_daemon(api->daemon);
    ptc_api_sync_free(api);
    ptc_api_ssl_stop(api);
    ptc_api_checks_stop(api);
    ptc_api_dns_stop(api);
    ptc_ports_free(api->ports);
    ptc_state_release(api->state);
    free(api->token);
    pthread_mutex_destroy(&api->apply_lock);
    pthread_mutex_destroy(&api->state_lock);
    pthread_mutex_destroy(&api->dns_lock);
    free(api);
}

/* The error code and a detail line (new string) of an error answer. */
static char *failure_of(ptc_call *c, const char **code)
{
    json_t *err = json_object_get(c->reply, "error");
    const char *msg = json_string_value(json_object_get(err, "message"));
    json_t *fields = json_object_get(json_object_get(err, "details"), "fields");
    char *detail;
    *code = json_string_value(json_object_get(err, "code"));
    if (*code == NULL)
        *code = "UNKNOWN";
    if (fields) {
        char *f = json_dumps(fields, JSON_COMPACT | JSON_SORT_KEYS);
        detail = ptc_xasprintf("%s: %s", msg ? msg : "", f);
        free(f);
    } else {
        detail = ptc_xstrdup(msg ? msg : "");
    }
    return detail;
}

void ptc_api_audit_failure(ptc_call *c, const char *action, const char *droplet, const char *domain)
{
    const char *code;
    char *detail = failure_of(c, &code);
    ptc_api_audit(c, action, droplet, domain, "failure", code, detail);
    free(detail);
}

int64_t ptc_api_audit_begin(ptc_call *c, const char *action, const char *droplet, const char *domain,
                            const char *detail)
{
    int64_t id = 0;
    audit_text t = audit_text_of(droplet, domain, detail);
    ptc_audit_entry e = {
        .ts = ptc_now_ms(),
        .correlation_id = c->correlation_id,
        .actor = c->actor,
        .action = action,
        .droplet_name = t.droplet,
        .domain = t.domain,
        .detail = t.detail,
    };
    if (ptc_store_audit_begin(c->api->store, &e, &id) != 0)
        ptc_log_error("audit entry could not be begun", PTC_LS("action", action));
    audit_text_free(&t);
    return id;
}

void ptc_api_audit_end(ptc_call *c, int64_t id, const char *action, const char *droplet, const char *domain,
                       const char *result, const char *error_code, const char *detail)
{
    audit_text t = audit_text_of(NULL, NULL, detail);
    int rc = id == 0 ? -ENOENT : ptc_store_audit_finish(c->api->store, id, result, error_code, t.detail);
    audit_text_free(&t);
    if (rc != 0) {
        ptc_api_audit(c, action, droplet, domain, result, error_code, detail);
        return;
    }
    ptc_api_audit_logged(c, action, droplet, domain, result, error_code);
}

void ptc_api_audit_logged(ptc_call *c, const char *action, const char *droplet, const char *domain,
                          const char *result, const char *error_code)
{
    ptc_log_info("audit", PTC_LS("action", action), PTC_LS("actor", c->actor),
                 PTC_LS("droplet_name", droplet), PTC_LS("domain", domain), PTC_LS("result", result),
                 PTC_LS("error_code", error_code));
}

void ptc_api_audit_end_failure(ptc_call *c, int64_t id, const char *action, const char *droplet,
                               const char *domain)
{
    const char *code;
    char *detail = failure_of(c, &code);
    ptc_api_audit_end(c, id, action, droplet, domain, "failure", code, detail);
    free(detail);
}
