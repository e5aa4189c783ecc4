/* Client subcommands over the admin API (see cli.h). */
#include "cli/cli.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_API 1
#define EXIT_USAGE 2
#define EXIT_UNREACHABLE 3
#define REPLY_MAX (64 << 20)

typedef struct cli {
    const char *url;
    const char *token;
    bool json;
} cli;

static size_t collect(char *p, size_t size, size_t n, void *arg)
{
    ptc_buf *b = arg;
    if (b->len + size * n > REPLY_MAX)
        return 0;
    ptc_buf_append(b, p, size * n);
    return size * n;
}

/* One API call.  Returns 0 with *status and *reply (JSON or NULL when the
 * body is not JSON, *text then holds it), or EXIT_UNREACHABLE. */
static int call(const cli *cl, const char *method, const char *path, const char *body, long *status,
                json_t **reply, char **text)
{
    int rc = 0;
    char *url = ptc_xasprintf("%s%s", cl->url, path);
    char *auth = cl->token ? ptc_xasprintf("Authorization: Bearer %s", cl->token) : NULL;
    struct curl_slist *h = NULL;
    ptc_buf out = PTC_BUF_INIT;
    CURL *c = curl_easy_init();

    h = curl_slist_append(h, "Accept: application/json");
    if (body)
        h = curl_slist_append(h, "Content-Type: application/json");
    if (auth)
        h = curl_slist_append(h, auth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    CURLcode cr = curl_easy_perform(c);
    if (cr != CURLE_OK) {
        fprintf(stderr, "portico: cannot reach %s: %s\n", cl->url, curl_easy_strerror(cr));
        rc = EXIT_UNREACHABLE;
        goto out;
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    *reply = json_loadb(ptc_buf_cstr(&out), out.len, 0, NULL);
    *text = ptc_buf_detach(&out);
out:
    ptc_buf_free(&out);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    free(auth);
    return rc;
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "-";
}

static void print_error(const json_t *reply, long status, const char *text)
{
    const json_t *err = json_object_get(reply, "error");
    if (err == NULL) {
        fprintf(stderr, "portico: HTTP %ld: %s\n", status, text);
        return;
    }
    fprintf(stderr, "portico: %s: %s\n", str(err, "code"), str(err, "message"));
    const json_t *details = json_object_get(err, "details");
    if (details) {
        char *d = json_dumps(details, JSON_INDENT(2) | JSON_SORT_KEYS);
        fprintf(stderr, "%s\n", d);
        free(d);
    }
}

static void print_json(const json_t *j, const char *text)
{
    if (j == NULL) {
        fputs(text, stdout);
        return;
    }
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_SORT_KEYS);
    puts(s);
    free(s);
}

typedef void (*printer)(const json_t *reply);

/* Calls the API and prints the answer with p (a table) or as JSON. */
static int run(const cli *cl, const char *method, const char *path, const char *body, printer p)
{
    long status = 0;
    json_t *reply = NULL;
    char *text = NULL;
    int rc = call(cl, method, path, body, &status, &reply, &text);
    if (rc != 0)
        goto out;
    if (status >= 400) {
        if (cl->json)
            print_json(reply, text);
        else
            print_error(reply, status, text);
        rc = EXIT_API;
    } else if (cl->json || p == NULL || reply == NULL) {
        print_json(reply, text);
    } else {
        p(reply);
    }
out:
    json_decref(reply);
    free(text);
    return rc;
}

static void print_proxies(const json_t *list)
{
    size_t i;
    const json_t *p;
    printf("%-24s %-32s %-12s %-24s %-4s %-10s %s\n", "NAME", "DOMAIN", "PATH", "UPSTREAM", "SSL", "HEALTH",
           "REV");
    json_array_foreach(list, i, p)
    {
        printf("%-24s %-32s %-12s %-24s %-4s %-10s %lld\n", str(p, "droplet_name"), str(p, "domain"),
               str(p, "path_prefix"), str(p, "upstream"),
               json_is_true(json_object_get(p, "ssl_enabled")) ? "yes" : "no", str(p, "last_health_status"),
               (long long)json_integer_value(json_object_get(p, "revision")));
    }
}

static void print_proxy(const json_t *p)
{
    const char *keys[] = {"droplet_name",       "domain",     "path_prefix", "upstream", "status", "source",
                          "last_health_status", "created_at", "updated_at"};
    for (size_t k = 0; k < PTC_ARRAY_LEN(keys); k++)
        printf("%-20s %s\n", keys[k], str(p, keys[k]));
    printf("%-20s %s\n", "ssl_enabled", json_is_true(json_object_get(p, "ssl_enabled")) ? "yes" : "no");
    printf("%-20s %lld\n", "revision", (long long)json_integer_value(json_object_get(p, "revision")));
    size_t i;
    const json_t *u;
    json_array_foreach(json_object_get(p, "upstreams"), i, u)
        printf("%-20s %s:%lld weight %lld\n", i ? "" : "upstreams", str(u, "host"),
               (long long)json_integer_value(json_object_get(u, "port")),
               (long long)json_integer_value(json_object_get(u, "weight")));
    const json_t *apply = json_object_get(p, "apply");
    if (apply) {
        char *a = json_dumps(apply, JSON_COMPACT | JSON_SORT_KEYS);
        printf("%-20s %s\n", "apply", a);
        free(a);
    }
}

static void print_deleted(const json_t *r)
{
    printf("deleted %s (%s)\n", str(r, "droplet_name"), str(r, "domain"));
}

static void print_audit(const json_t *list)
{
    size_t i;
    const json_t *e;
    printf("%-24s %-18s %-20s %-9s %-22s %-14s %s\n", "TIME", "ACTION", "NAME", "RESULT", "ERROR", "ACTOR",
           "CORRELATION_ID");
    json_array_foreach(list, i, e)
    {
        printf("%-24s %-18s %-20s %-9s %-22s %-14s %s\n", str(e, "time"), str(e, "action"),
               str(e, "droplet_name"), str(e, "result"), str(e, "error_code"), str(e, "actor"),
               str(e, "correlation_id"));
    }
}

static void print_revisions(const json_t *list)
{
    size_t i;
    const json_t *r;
    printf("%-8s %-24s %-18s %-8s %s\n", "REV", "TIME", "ACTION", "PROXIES", "SUMMARY");
    json_array_foreach(list, i, r)
    {
        printf("%-8lld %-24s %-18s %-8lld %s\n",
               (long long)json_integer_value(json_object_get(r, "revision")), str(r, "time"),
               str(r, "action"), (long long)json_integer_value(json_object_get(r, "proxies")),
               str(r, "summary"));
    }
}

static void print_certs(const json_t *list)
{
    size_t i;
    const json_t *c;
    printf("%-32s %-9s %-24s %s\n", "DOMAIN", "SOURCE", "NOT_AFTER", "ISSUER");
    json_array_foreach(list, i, c)
    {
        printf("%-32s %-9s %-24s %s\n", str(c, "domain"), str(c, "source"), str(c, "not_after"),
               str(c, "issuer"));
    }
}

static void print_ssl(const json_t *c)
{
    const char *keys[] = {"domain", "status", "source", "issuer", "issued_at", "expiry", "renew_at", "proxy"};
    for (size_t k = 0; k < PTC_ARRAY_LEN(keys); k++)
        if (json_object_get(c, keys[k]))
            printf("%-12s %s\n", keys[k], str(c, keys[k]));
    printf("%-12s %s\n", "issued",
           json_is_true(json_object_get(c, "issued")) ? "yes (new certificate)" : "no (kept)");
}

static void print_health(const json_t *h)
{
    char *engine = json_dumps(json_object_get(h, str(h, "engine")), JSON_COMPACT | JSON_SORT_KEYS);
    char *ssl = json_dumps(json_object_get(h, "ssl"), JSON_COMPACT | JSON_SORT_KEYS);
    printf("status    %s\nversion   %s\nengine    %s %s\nproxies   %lld\nrevision  %lld\nssl       %s\n",
           str(h, "status"), str(h, "version"), str(h, "engine"), engine ? engine : "{}",
           (long long)json_integer_value(json_object_get(h, "proxies")),
           (long long)json_integer_value(json_object_get(h, "revision")), ssl ? ssl : "{}");
    free(engine);
    free(ssl);
}

static void print_names(const char *label, const json_t *list)
{
    size_t i;
    const json_t *n;
    printf("%-10s %zu", label, json_array_size(list));
    json_array_foreach(list, i, n) printf("%s%s", i ? ", " : ": ", json_string_value(n));
    printf("\n");
}

static void print_sync(const json_t *r)
{
    const json_t *ch = json_object_get(r, "changes");
    printf("%-10s %s (revision %lld)\n", "changed",
           json_is_true(json_object_get(r, "changed")) ? "yes" : "no",
           (long long)json_integer_value(json_object_get(r, "revision")));
    print_names("created", json_object_get(ch, "created"));
    print_names("updated", json_object_get(ch, "updated"));
    print_names("unchanged", json_object_get(ch, "unchanged"));
    print_names("deleted", json_object_get(ch, "deleted"));
    printf("%-10s %lld\n", "skipped", (long long)json_integer_value(json_object_get(r, "skipped_count")));
    const char *name;
    const json_t *why;
    json_object_foreach((json_t *)json_object_get(r, "skipped_reasons"), name, why)
        printf("  %-24s %s\n", name, json_string_value(why));
}

static void print_ports(const json_t *r)
{
    size_t i;
    const json_t *a;
    printf("range %s: %lld allocated, %lld available\n", str(r, "port_range"),
           (long long)json_integer_value(json_object_get(r, "total_allocated")),
           (long long)json_integer_value(json_object_get(r, "total_available")));
    printf("%-8s %-28s %-9s %-9s %s\n", "PORT", "OWNER", "INTERNAL", "STATUS", "ALLOCATED_AT");
    json_array_foreach(json_object_get(r, "allocations"), i, a)
    {
        printf("%-8lld %-28s %-9lld %-9s %s\n", (long long)json_integer_value(json_object_get(a, "port")),
               str(a, "owner"), (long long)json_integer_value(json_object_get(a, "internal_port")),
               str(a, "status"), str(a, "allocated_at"));
    }
}

static void print_port_map(const json_t *r)
{
    const char *k;
    const json_t *v;
    const json_t *map = json_object_get(r, "allocated_ports");
    if (map == NULL)
        map = json_object_get(r, "released_ports");
    printf("%s%s\n", str(r, "owner"), json_object_get(r, "released_ports") ? " (released)" : "");
    json_object_foreach((json_t *)map, k, v) printf("  %s -> %lld\n", k, (long long)json_integer_value(v));
}

static void print_dns_records(const json_t *list)
{
    size_t i;
    const json_t *r;
    if (json_is_object(list))
        list = json_object_get(list, "records");
    printf("%-40s %-5s %-40s %-6s %s\n", "NAME", "TYPE", "VALUE", "TTL", "SOURCE");
    json_array_foreach(list, i, r)
    {
        printf("%-40s %-5s %-40s %-6lld %s\n", str(r, "name"), str(r, "type"), str(r, "value"),
               (long long)json_integer_value(json_object_get(r, "ttl")), str(r, "source"));
    }
}

static void print_dns_record(const json_t *r)
{
    printf("%s %s %s ttl %lld%s\n", str(r, "name"), str(r, "type"), str(r, "value"),
           (long long)json_integer_value(json_object_get(r, "ttl")),
           json_is_false(json_object_get(r, "changed")) ? " (unchanged)" : "");
}

static void usage(void)
{
    fputs("usage: portico <command> [options]\n"
          "  serve [--key=value ...]        run the daemon (see `portico settings`)\n"
          "  config [--json] [--key=value]  print the effective settings\n"
          "  settings                       list every setting with its default\n"
          "  proxies list|get NAME|delete NAME\n"
          "  proxies put NAME (--file=F | --file=- | --domain=D --upstream=HOST:PORT [--upstream=...]\n"
          "                   [--path-prefix=/p] [--strip-prefix] [--no-require-healthy] [--enable-ssl]\n"
          "                   [--no-websocket] [--no-security-headers] [--dns])\n"
          "  certs list|get DOMAIN|delete DOMAIN|put DOMAIN --cert=CHAIN.pem --key=KEY.pem\n"
          "  ssl issue NAME [--email=E] [--force-renew] | ssl list | ssl renew DOMAIN\n"
          "  health | audit [--since=T] [--limit=N] | revisions [--limit=N] | restore N\n"
          "  sync                           sync the proxies from the registry (registry_url)\n"
          "  ports list [--all] | get OWNER | allocate OWNER INTERNAL_PORT | release OWNER\n"
          "  dns list | get NAME | put NAME --type=A|AAAA --value=IP [--ttl=N] | delete NAME [--type=T] | "
          "zone\n"
          "client options: --json; environment: PORTICO_URL (default http://127.0.0.1:8100), PORTICO_TOKEN\n",
          stderr);
}

/* Builds a proxy body from --flags. */
static char *proxy_body_from_flags(int argc, char **argv)
{
    json_t *b = json_object(), *ups = json_array();
    char *out = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (ptc_str_has_prefix(a, "--domain="))
            json_object_set_new(b, "domain", json_string(a + 9));
        else if (ptc_str_has_prefix(a, "--path-prefix="))
            json_object_set_new(b, "path_prefix", json_string(a + 14));
        else if (strcmp(a, "--strip-prefix") == 0)
            json_object_set_new(b, "strip_prefix", json_true());
        else if (strcmp(a, "--no-require-healthy") == 0)
            json_object_set_new(b, "require_healthy", json_false());
        else if (strcmp(a, "--enable-ssl") == 0)
            json_object_set_new(b, "enable_ssl", json_true());
        else if (strcmp(a, "--no-websocket") == 0)
            json_object_set_new(b, "websocket", json_false());
        else if (strcmp(a, "--no-security-headers") == 0)
            json_object_set_new(b, "security_headers", json_false());
        else if (strcmp(a, "--dns") == 0)
            json_object_set_new(b, "dns", json_true());
        else if (ptc_str_has_prefix(a, "--upstream=")) {
            const char *hp = a + 11, *colon = strrchr(hp, ':');
            long long port;
            if (colon == NULL || ptc_parse_int(colon + 1, 1, 65535, &port) != 0) {
                fprintf(stderr, "portico: --upstream=%s: expected HOST:PORT\n", hp);
                goto out;
            }
            char *host = ptc_xstrndup(hp, (size_t)(colon - hp));
            json_array_append_new(ups, json_pack("{s:s, s:I}", "host", host, "port", (json_int_t)port));
            free(host);
        } else if (strcmp(a, "--json") != 0) {
            fprintf(stderr, "portico: unknown option %s\n", a);
            goto out;
        }
    }
    if (json_array_size(ups) > 0)
        json_object_set(b, "upstreams", ups);
    out = json_dumps(b, JSON_COMPACT);
out:
    json_decref(ups);
    json_decref(b);
    return out;
}

static char *read_body_file(const char *path)
{
    char *data = NULL;
    if (strcmp(path, "-") == 0) {
        ptc_buf b = PTC_BUF_INIT;
        char chunk[4096];
        size_t n;
        while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0 && b.len < (1 << 20))
            ptc_buf_append(&b, chunk, n);
        return ptc_buf_detach(&b);
    }
    int rc = ptc_file_read(path, 1 << 20, &data, NULL);
    if (rc != 0) {
        fprintf(stderr, "portico: %s: %s\n", path, strerror(-rc));
        return NULL;
    }
    return data;
}

static const char *flag_value(int argc, char **argv, const char *prefix)
{
    for (int i = 0; i < argc; i++)
        if (ptc_str_has_prefix(argv[i], prefix))
            return argv[i] + strlen(prefix);
    return NULL;
}

static int cmd_proxies(const cli *cl, int argc, char **argv)
{
    char path[512];
    if (argc < 1)
        goto usage;
    if (strcmp(argv[0], "list") == 0)
        return run(cl, "GET", "/proxies", NULL, print_proxies);
    if (argc < 2 || strlen(argv[1]) > 255)
        goto usage;
    snprintf(path, sizeof(path), "/proxies/%s", argv[1]);
    if (strcmp(argv[0], "get") == 0)
        return run(cl, "GET", path, NULL, print_proxy);
    if (strcmp(argv[0], "delete") == 0)
        return run(cl, "DELETE", path, NULL, print_deleted);
    if (strcmp(argv[0], "put") == 0) {
        const char *file = flag_value(argc - 2, argv + 2, "--file=");
        char *body = file ? read_body_file(file) : proxy_body_from_flags(argc - 2, argv + 2);
        if (body == NULL)
            return EXIT_USAGE;
        int rc = run(cl, "PUT", path, body, print_proxy);
        free(body);
        return rc;
    }
usage:
    usage();
    return EXIT_USAGE;
}

static int cmd_certs(const cli *cl, int argc, char **argv)
{
    char path[512];
    if (argc < 1)
        goto usage;
    if (strcmp(argv[0], "list") == 0)
        return run(cl, "GET", "/certificates", NULL, print_certs);
    if (argc < 2 || strlen(argv[1]) > 255)
        goto usage;
    snprintf(path, sizeof(path), "/certificates/%s", argv[1]);
    if (strcmp(argv[0], "get") == 0)
        return run(cl, "GET", path, NULL, NULL);
    if (strcmp(argv[0], "delete") == 0)
        return run(cl, "DELETE", path, NULL, NULL);
    if (strcmp(argv[0], "put") == 0) {
        const char *cf = flag_value(argc - 2, argv + 2, "--cert="),
                   *kf = flag_value(argc - 2, argv + 2, "--key=");
        char *chain = NULL, *key = NULL, *body = NULL;
        int rc = EXIT_USAGE;
        if (cf == NULL || kf == NULL || (chain = read_body_file(cf)) == NULL ||
            (key = read_body_file(kf)) == NULL)
            goto put_out;
        json_t *b = json_pack("{s:s, s:s}", "certificate", chain, "key", key);
        body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        rc = run(cl, "PUT", path, body, NULL);
    put_out:
        free(chain);
        free(key);
        free(body);
        return rc;
    }
usage:
    usage();
    return EXIT_USAGE;
}

static int cmd_ssl(const cli *cl, int argc, char **argv)
{
    char path[512];
    if (argc < 1)
        goto usage;
    if (strcmp(argv[0], "list") == 0)
        return run(cl, "GET", "/certificates", NULL, print_certs);
    if (argc < 2 || strlen(argv[1]) > 255)
        goto usage;
    if (strcmp(argv[0], "renew") == 0) {
        snprintf(path, sizeof(path), "/certificates/%s/renew", argv[1]);
        return run(cl, "POST", path, "{}", print_ssl);
    }
    if (strcmp(argv[0], "issue") == 0) {
        json_t *b = json_object();
        for (int i = 2; i < argc; i++) {
            if (ptc_str_has_prefix(argv[i], "--email=")) {
                json_object_set_new(b, "email", json_string(argv[i] + 8));
            } else if (strcmp(argv[i], "--force-renew") == 0) {
                json_object_set_new(b, "force_renew", json_true());
            } else if (strcmp(argv[i], "--json") != 0) {
                fprintf(stderr, "portico: unknown option %s\n", argv[i]);
                json_decref(b);
                return EXIT_USAGE;
            }
        }
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        snprintf(path, sizeof(path), "/proxies/%s/ssl", argv[1]);
        int rc = run(cl, "POST", path, body, print_ssl);
        free(body);
        return rc;
    }
usage:
    usage();
    return EXIT_USAGE;
}

/* An owner or record name as one path segment: what the API accepts
 * there needs no escaping, anything else is refused here. */
static bool plain_segment(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] == '-' || s[i] == '_' || s[i] == '.' || s[i] == '@' || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    return true;
}

static int cmd_ports(const cli *cl, int argc, char **argv)
{
    char path[300];
    long long internal;
    if (argc < 1)
        goto usage;
    if (strcmp(argv[0], "list") == 0) {
        bool all = argc > 1 && strcmp(argv[1], "--all") == 0;
        return run(cl, "GET", all ? "/ports?status=all" : "/ports", NULL, print_ports);
    }
    if (argc < 2 || !plain_segment(argv[1]))
        goto usage;
    snprintf(path, sizeof(path), "/ports/%s", argv[1]);
    if (strcmp(argv[0], "get") == 0)
        return run(cl, "GET", path, NULL, print_port_map);
    if (strcmp(argv[0], "release") == 0)
        return run(cl, "DELETE", path, NULL, print_port_map);
    if (strcmp(argv[0], "allocate") == 0 && argc >= 3 && ptc_parse_int(argv[2], 1, 65535, &internal) == 0) {
        json_t *b = json_pack("{s:s, s:I}", "owner", argv[1], "internal_port", (json_int_t)internal);
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        int rc = run(cl, "POST", "/ports", body, print_port_map);
        free(body);
        return rc;
    }
usage:
    usage();
    return EXIT_USAGE;
}

static int cmd_dns(const cli *cl, int argc, char **argv)
{
    char path[300];
    if (argc < 1)
        goto usage;
    if (strcmp(argv[0], "list") == 0)
        return run(cl, "GET", "/dns/records", NULL, print_dns_records);
    if (strcmp(argv[0], "zone") == 0)
        return run(cl, "GET", "/dns/zone", NULL, NULL);
    if (argc < 2 || !plain_segment(argv[1]))
        goto usage;
    snprintf(path, sizeof(path), "/dns/records/%s", argv[1]);
    const char *type = flag_value(argc - 2, argv + 2, "--type=");
    if (strcmp(argv[0], "get") == 0)
        return run(cl, "GET", path, NULL, print_dns_records);
    if (strcmp(argv[0], "delete") == 0) {
        if (type && strcmp(type, "A") != 0 && strcmp(type, "AAAA") != 0)
            goto usage;
        if (type)
            snprintf(path + strlen(path), sizeof(path) - strlen(path), "?type=%s", type);
        return run(cl, "DELETE", path, NULL, NULL);
    }
    if (strcmp(argv[0], "put") == 0) {
        const char *value = flag_value(argc - 2, argv + 2, "--value=");
        const char *ttl = flag_value(argc - 2, argv + 2, "--ttl=");
        long long t = 0;
        if (type == NULL || value == NULL || (ttl && ptc_parse_int(ttl, 1, 604800, &t) != 0))
            goto usage;
        json_t *b = json_pack("{s:s, s:s}", "type", type, "value", value);
        if (ttl)
            json_object_set_new(b, "ttl", json_integer(t));
        char *body = json_dumps(b, JSON_COMPACT);
        json_decref(b);
        int rc = run(cl, "PUT", path, body, print_dns_record);
        free(body);
        return rc;
    }
usage:
    usage();
    return EXIT_USAGE;
}

static int cmd_query_list(const cli *cl, const char *base, int argc, char **argv, printer p)
{
    ptc_buf path = PTC_BUF_INIT;
    char sep = '?';
    int rc;
    ptc_buf_append_str(&path, base);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        if ((v = flag_value(1, &argv[i], "--since=")) || (v = flag_value(1, &argv[i], "--limit="))) {
            char *esc = curl_easy_escape(NULL, v, 0);
            ptc_buf_appendf(&path, "%c%.*s=%s", sep, (int)(strchr(a, '=') - a - 2), a + 2, esc);
            curl_free(esc);
            sep = '&';
        } else if (strcmp(a, "--json") != 0) {
            fprintf(stderr, "portico: unknown option %s\n", a);
            ptc_buf_free(&path);
            return EXIT_USAGE;
        }
    }
    rc = run(cl, "GET", ptc_buf_cstr(&path), NULL, p);
    ptc_buf_free(&path);
    return rc;
}

static int cmd_health(const cli *cl)
{
    return run(cl, "GET", "/proxy-manager/health", NULL, print_health);
}

static int cmd_restore(const cli *cl, int argc, char **argv)
{
    long long n;
    char path[64];
    if (argc < 1 || ptc_parse_int(argv[0], 1, INT64_MAX, &n) != 0) {
        usage();
        return EXIT_USAGE;
    }
    snprintf(path, sizeof(path), "/revisions/%lld/restore", n);
    return run(cl, "POST", path, "{}", NULL);
}

static const char *const commands[] = {"proxies",   "certs",   "ssl",   "health", "audit",
                                       "revisions", "restore", "ports", "dns",    "sync"};

int ptc_cli_knows(const char *name)
{
    for (size_t i = 0; i < PTC_ARRAY_LEN(commands); i++)
        if (strcmp(name, commands[i]) == 0)
            return 1;
    return 0;
}

int ptc_cli_main(int argc, char **argv)
{
    cli cl = {
        .url = getenv("PORTICO_URL") ? getenv("PORTICO_URL") : "http://127.0.0.1:8100",
        .token = getenv("PORTICO_TOKEN"),
    };
    const char *cmd = argv[0];
    int rc;

    if (cl.token && cl.token[0] == '\0')
        cl.token = NULL;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--json") == 0)
            cl.json = true;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (strcmp(cmd, "proxies") == 0)
        rc = cmd_proxies(&cl, argc - 1, argv + 1);
    else if (strcmp(cmd, "certs") == 0)
        rc = cmd_certs(&cl, argc - 1, argv + 1);
    else if (strcmp(cmd, "ssl") == 0)
        rc = cmd_ssl(&cl, argc - 1, argv + 1);
    else if (strcmp(cmd, "health") == 0)
        rc = cmd_health(&cl);
    else if (strcmp(cmd, "audit") == 0)
        rc = cmd_query_list(&cl, "/audit", argc - 1, argv + 1, print_audit);
    else if (strcmp(cmd, "revisions") == 0)
        rc = cmd_query_list(&cl, "/revisions", argc - 1, argv + 1, print_revisions);
    else if (strcmp(cmd, "restore") == 0)
        rc = cmd_restore(&cl, argc - 1, argv + 1);
    else if (strcmp(cmd, "sync") == 0)
        rc = run(&cl, "GET", "/proxy-manager/sync-from-registry", NULL, print_sync);
    else if (strcmp(cmd, "ports") == 0)
        rc = cmd_ports(&cl, argc - 1, argv + 1);
    else if (strcmp(cmd, "dns") == 0)
        rc = cmd_dns(&cl, argc - 1, argv + 1);
    else {
        usage();
        rc = EXIT_USAGE;
    }
    curl_global_cleanup();
    return rc;
}
