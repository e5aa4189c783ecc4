/* The settings table: every setting portico reads, defined once with its
 * type, default and help.  The same table feeds the config file (`key =
 * value` lines), the PORTICO_<KEY> environment variables, the --key=value
 * flags (flag over env over file over default) and `portico config`. */
#ifndef PTC_SETTINGS_H
#define PTC_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

/* Types: STR free text; INT a decimal integer in the spec's "min:max";
 * BOOL true/false/yes/no/on/off/1/0; ENUM one of the spec's "a|b|c";
 * ADDR host:port (host may be empty, an IPv4, a [IPv6] or a name); ADDROPT
 * an ADDR or empty (off); SIZE bytes with an optional k/m/g suffix;
 * PORTRANGE "lo-hi"; PORTLIST ports and ranges separated by commas; CIDRS
 * IP addresses or CIDR blocks separated by commas.
 * Flags: SECRET values are redacted when printed; URI values are printed
 * with the password they may carry masked (ptc_uri_mask_password). */
#define PTC_SETTINGS_TABLE(X)                                                                                \
    X(API_LISTEN, api_listen, ADDR, "127.0.0.1:8100", "", 0, "address of the admin API")                     \
    X(API_TOKEN, api_token, STR, "", "", PTC_SETTING_SECRET,                                                 \
      "bearer token every API call but the health check must carry; empty: none (loopback only)")            \
    X(API_TOKEN_FILE, api_token_file, STR, "", "", 0, "file holding api_token (its first line)")             \
    X(ENGINE, engine, ENUM, "builtin", "builtin|nginx|caddy", 0, "what serves the traffic")                  \
    X(HTTP_LISTEN, http_listen, ADDR, "0.0.0.0:8080", "", 0, "plain HTTP listener of the data plane")        \
    X(HTTPS_LISTEN, https_listen, ADDROPT, "0.0.0.0:8443", "", 0,                                            \
      "HTTPS listener of the data plane; empty: none")                                                       \
    X(STATE_DIR, state_dir, STR, "./var", "", 0, "folder for the store, certificates and generated files")   \
    X(STORE, store, STR, "", "", PTC_SETTING_URI,                                                            \
      "store location: empty for {state_dir}/portico.db, sqlite:PATH, or postgres://...")                    \
    X(STORE_POLL_INTERVAL_MS, store_poll_interval_ms, INT, "2000", "0:3600000", 0,                           \
      "how often portico looks for changes other nodes committed to a shared store; 0: only before a "       \
      "change")                                                                                              \
    X(WORKERS, workers, INT, "0", "0:256", 0, "data-plane worker threads; 0: one per core")                  \
    X(TRUSTED_PROXIES, trusted_proxies, CIDRS, "", "", 0,                                                    \
      "peers whose X-Forwarded-* headers are kept and appended to")                                          \
    X(ACCESS_LOG, access_log, STR, "", "", 0, "access log: empty for none, - for stderr, or a file path")    \
    X(MAX_BODY_SIZE, max_body_size, SIZE, "1g", "", 0, "largest request body a route accepts (413 above)")   \
    X(HEADER_TIMEOUT_MS, header_timeout_ms, INT, "10000", "100:3600000", 0,                                  \
      "time a client has to send a whole request head")                                                      \
    X(IDLE_TIMEOUT_MS, idle_timeout_ms, INT, "60000", "100:86400000", 0,                                     \
      "idle keep-alive connection lifetime")                                                                 \
    X(BODY_MIN_RATE, body_min_rate, INT, "1024", "0:1073741824", 0,                                          \
      "slowest request body accepted, bytes per second averaged over 10 s; 0: no limit")                     \
    X(UPSTREAM_CONNECT_TIMEOUT_MS, upstream_connect_timeout_ms, INT, "5000", "100:600000", 0,                \
      "time to connect to an upstream (504 after)")                                                          \
    X(UPSTREAM_TIMEOUT_MS, upstream_timeout_ms, INT, "60000", "100:86400000", 0,                             \
      "time an upstream may stay silent while a response is due (504 before headers)")                       \
    X(DRAIN_TIMEOUT_MS, drain_timeout_ms, INT, "10000", "0:600000", 0,                                       \
      "how long SIGTERM waits for requests in flight")                                                       \
    X(NGINX_BIN, nginx_bin, STR, "/usr/sbin/nginx", "", 0, "the nginx executable")                           \
    X(NGINX_CONF, nginx_conf, STR, "/etc/nginx/nginx.conf", "", 0, "nginx's main config file (nginx -t -c)") \
    X(NGINX_SITES_AVAILABLE, nginx_sites_available, STR, "/etc/nginx/sites-available", "", 0,                \
      "where portico writes one file per domain")                                                            \
    X(NGINX_SITES_ENABLED, nginx_sites_enabled, STR, "/etc/nginx/sites-enabled", "", 0,                      \
      "where portico symlinks the files it manages")                                                         \
    X(NGINX_BACKUP_DIR, nginx_backup_dir, STR, "/etc/nginx/backups", "", 0, "backups of replaced files")     \
    X(NGINX_RELOAD_CMD, nginx_reload_cmd, STR, "{nginx_bin} -s reload", "", 0,                               \
      "reload command, split on white space (no shell); {nginx_bin} stands for nginx with the -p/-e/-c "     \
      "options portico also uses for nginx -t; left at this default, portico signals the master itself "     \
      "(what nginx -s reload does, without its second parse of the whole config)")                           \
    X(NGINX_FILE_PREFIX, nginx_file_prefix, STR, "portico-", "", 0, "prefix of the files portico manages")   \
    X(NGINX_MANAGED, nginx_managed, BOOL, "false", "", 0,                                                    \
      "start and supervise a private nginx under {state_dir}/nginx; nginx paths left at their defaults "     \
      "move there too")                                                                                      \
    X(CADDY_BIN, caddy_bin, STR, "/usr/bin/caddy", "", 0, "the caddy executable")                            \
    X(CADDY_ADMIN, caddy_admin, ADDR, "127.0.0.1:2019", "", 0, "Caddy's admin API address")                  \
    X(CADDY_MANAGED, caddy_managed, BOOL, "false", "", 0, "start and supervise a private Caddy")             \
    X(ACME_CLIENT, acme_client, ENUM, "builtin", "builtin|certbot", 0, "who talks to the ACME CA")           \
    X(ACME_DIRECTORY, acme_directory, STR, "https://acme-v02.api.letsencrypt.org/directory", "", 0,          \
      "ACME directory URL")                                                                                  \
    X(ACME_EMAIL, acme_email, STR, "", "", 0, "contact e-mail for the ACME account")                         \
    X(ACME_CA_BUNDLE, acme_ca_bundle, STR, "", "", 0, "PEM bundle trusted for the ACME server (tests)")      \
    X(ACME_WEBROOT, acme_webroot, STR, "", "", 0, "HTTP-01 webroot; empty: {state_dir}/acme-webroot")        \
    X(ACME_KEY_TYPE, acme_key_type, ENUM, "ecdsa", "ecdsa|rsa", 0,                                           \
      "certificate key: ECDSA P-256 or RSA 2048")                                                            \
    X(ACME_TIMEOUT_MS, acme_timeout_ms, INT, "120000", "1000:3600000", 0,                                    \
      "longest one issuance may take (the CA's answers, validation, polling, or certbot's run)")             \
    X(CERTBOT_BIN, certbot_bin, STR, "/usr/bin/certbot", "", 0, "the certbot executable")                    \
    X(CERTBOT_CONFIG_DIR, certbot_config_dir, STR, "", "", 0,                                                \
      "certbot --config-dir; empty: {state_dir}/certbot/config")                                             \
    X(CERTBOT_WORK_DIR, certbot_work_dir, STR, "", "", 0,                                                    \
      "certbot --work-dir; empty: {state_dir}/certbot/work")                                                 \
    X(CERTBOT_LOGS_DIR, certbot_logs_dir, STR, "", "", 0,                                                    \
      "certbot --logs-dir; empty: {state_dir}/certbot/logs")                                                 \
    X(REGISTRY_URL, registry_url, STR, "", "", PTC_SETTING_URI,                                              \
      "registry base URL (GET {registry_url}/droplets)")                                                     \
    X(REGISTRY_SYNC_INTERVAL, registry_sync_interval, INT, "0", "0:604800", 0,                               \
      "seconds between automatic registry syncs; 0: off")                                                    \
    X(REGISTRY_PRUNE, registry_prune, BOOL, "false", "", 0,                                                  \
      "delete registry proxies that left the registry")                                                      \
    X(REGISTRY_TIMEOUT_MS, registry_timeout_ms, INT, "5000", "100:600000", 0, "registry request timeout")    \
    X(BASE_DOMAIN, base_domain, STR, "", "", 0, "domain of droplets without one: {name}.{base_domain}")      \
    X(HEALTH_CHECK_PATH, health_check_path, STR, "/health", "", 0, "default health check path")              \
    X(HEALTH_CHECK_TIMEOUT_MS, health_check_timeout_ms, INT, "1000", "10:600000", 0,                         \
      "default health check timeout")                                                                        \
    X(HEALTH_CHECK_INTERVAL_MS, health_check_interval_ms, INT, "5000", "100:86400000", 0,                    \
      "default interval of active health checks")                                                            \
    X(HEALTH_CHECK_CONCURRENCY, health_check_concurrency, INT, "256", "1:10000", 0,                          \
      "active health checks running at once")                                                                \
    X(HEALTH_CHECK_CONNECTIONS, health_check_connections, INT, "0", "0:1000000", 0,                          \
      "idle upstream connections the health checks keep for reuse; 0: half the descriptor limit")            \
    X(HEALTH_CHECK_PASSIVE_FAILURES, health_check_passive_failures, INT, "3", "0:1000", 0,                   \
      "failed connection attempts in a row that take an upstream out of the builtin engine's rotation "      \
      "until "                                                                                               \
      "its health check passes; 0: off")                                                                     \
    X(PORT_RANGE, port_range, PORTRANGE, "9000-19999", "", 0, "range the port allocator hands out")          \
    X(RESERVED_PORTS, reserved_ports, PORTLIST, "", "", 0, "ports (and ranges) never handed out")            \
    X(DNS_LISTEN, dns_listen, ADDROPT, "", "", 0, "DNS responder address (UDP and TCP); empty: off")         \
    X(DNS_ZONE, dns_zone, STR, "", "", 0, "zone the DNS responder is authoritative for")                     \
    X(DNS_PROXY_IP, dns_proxy_ip, STR, "", "", 0, "address published for proxies with dns: true")            \
    X(BACKUP_RETENTION_DAYS, backup_retention_days, INT, "7", "0:36500", 0, "days backups are kept")         \
    X(LOG_FORMAT, log_format, ENUM, "json", "json|text", 0, "log lines as JSON or as text")                  \
    X(LOG_LEVEL, log_level, ENUM, "info", "debug|info|warn|error", 0, "lowest level logged")

#define PTC_SETTING_SECRET 1u
#define PTC_SETTING_URI 2u

typedef enum ptc_setting_type {
    PTC_SETTING_STR,
    PTC_SETTING_INT,
    PTC_SETTING_BOOL,
    PTC_SETTING_ENUM,
    PTC_SETTING_ADDR,
    PTC_SETTING_ADDROPT,
    PTC_SETTING_SIZE,
    PTC_SETTING_PORTRANGE,
    PTC_SETTING_PORTLIST,
    PTC_SETTING_CIDRS,
} ptc_setting_type;

typedef enum ptc_setting_id {
#define PTC_SETTING_ENUM_ID(ID, name, type, def, spec, flags, help) PTC_SET_##ID,
    PTC_SETTINGS_TABLE(PTC_SETTING_ENUM_ID)
#undef PTC_SETTING_ENUM_ID
        PTC_SETTINGS_COUNT
} ptc_setting_id;

/* Where a value came from, in rising precedence. */
typedef enum ptc_setting_source {
    PTC_SRC_DEFAULT,
    PTC_SRC_DERIVED, /* filled from another setting (e.g. under state_dir) */
    PTC_SRC_FILE,
    PTC_SRC_ENV,
    PTC_SRC_FLAG,
} ptc_setting_source;

typedef struct ptc_settings ptc_settings;

/* A settings set holding every default.  Caller frees with ptc_settings_free. */
ptc_settings *ptc_settings_new(void);
void ptc_settings_free(ptc_settings *s);

/* Loads, in order, the config file (path from --config=PATH among flags, else
 * PORTICO_CONFIG in envp, else none), the PORTICO_<KEY> variables of envp and
 * the --key=value flags (dashes or underscores), then fills derived
 * defaults.  Any unknown key or bad value fails, naming the key, with the
 * message in err.  Returns 0 or -EINVAL. */
int ptc_settings_load(ptc_settings *s, int nflags, char *const flags[], char *const envp[], char *err,
                      size_t errlen);

/* Sets one value by name from a given source, validated.  Returns 0,
 * -ENOENT for an unknown name, or -EINVAL (message in err). */
int ptc_settings_set(ptc_settings *s, const char *name, const char *value, ptc_setting_source src, char *err,
                     size_t errlen);

const char *ptc_settings_get(const ptc_settings *s, ptc_setting_id id);
long long ptc_settings_int(const ptc_settings *s, ptc_setting_id id);
bool ptc_settings_bool(const ptc_settings *s, ptc_setting_id id);
ptc_setting_source ptc_settings_source(const ptc_settings *s, ptc_setting_id id);
const char *ptc_settings_name(ptc_setting_id id);
const char *ptc_settings_config_path(const ptc_settings *s);

/* Prints every effective value with its source, secrets redacted; as a
 * table, or as one JSON object when json is set. */
void ptc_settings_print(const ptc_settings *s, FILE *out, bool json);
/* Prints the table of settings (name, type, default, help). */
void ptc_settings_print_help(FILE *out);

/* Parsers shared with the modules that use these values.  Each returns 0
 * or -EINVAL. */
int ptc_parse_size(const char *s, unsigned long long *out);
int ptc_parse_port_range(const char *s, unsigned *lo, unsigned *hi);
/* Splits "host:port", "[v6]:port" or ":port" into host (brackets removed,
 * "" when absent) and port. */
int ptc_parse_addr(const char *s, char *host, size_t hostlen, unsigned *port);
/* True when ip (a literal) lies in one of the comma-separated CIDR blocks. */
bool ptc_cidrs_contain(const char *cidrs, const char *ip);

#endif
