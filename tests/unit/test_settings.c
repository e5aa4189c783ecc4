/* Settings: defaults, the file/env/flag precedence, validation errors that
 * name the key, derived values and redaction. */
#include "core/settings.h"
#include "core/util.h"
#include "testlib.h"

#include <stdlib.h>
#include <unistd.h>

static char *write_config(const char *text)
{
    char *path = strdup("/tmp/portico-settings-XXXXXX");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_defaults(void)
{
    ptc_settings *s = ptc_settings_new();
    CHECK_STR(ptc_settings_get(s, PTC_SET_API_LISTEN), "127.0.0.1:8100");
    CHECK_STR(ptc_settings_get(s, PTC_SET_ENGINE), "builtin");
    CHECK_INT(ptc_settings_int(s, PTC_SET_BACKUP_RETENTION_DAYS), 7);
    CHECK_INT(ptc_settings_int(s, PTC_SET_MAX_BODY_SIZE), 1LL << 30);
    CHECK(!ptc_settings_bool(s, PTC_SET_NGINX_MANAGED));
    CHECK_INT(ptc_settings_source(s, PTC_SET_ENGINE), PTC_SRC_DEFAULT);
    ptc_settings_free(s);
}

static void test_precedence(void)
{
    char err[256];
    char *path = write_config("# a comment\n"
                              "api_listen = 127.0.0.1:9100\n"
                              "log_level = warn\n"
                              "state_dir = \"/tmp/from-file\"\n"
                              "backup_retention_days = 3\n");
    char *cfg = malloc(strlen(path) + 20);
    sprintf(cfg, "--config=%s", path);
    char *flags[] = {cfg, "--log-level=debug"};
    char *env[] = {"PORTICO_LOG_LEVEL=error", "PORTICO_BACKUP_RETENTION_DAYS=5", "HOME=/root",
                   "PORTICO_URL=http://x", NULL};
    ptc_settings *s = ptc_settings_new();
    CHECK_INT(ptc_settings_load(s, 2, flags, env, err, sizeof(err)), 0);
    CHECK_STR(ptc_settings_get(s, PTC_SET_API_LISTEN), "127.0.0.1:9100"); /* file over default */
    CHECK_INT(ptc_settings_source(s, PTC_SET_API_LISTEN), PTC_SRC_FILE);
    CHECK_INT(ptc_settings_int(s, PTC_SET_BACKUP_RETENTION_DAYS), 5); /* env over file */
    CHECK_INT(ptc_settings_source(s, PTC_SET_BACKUP_RETENTION_DAYS), PTC_SRC_ENV);
    CHECK_STR(ptc_settings_get(s, PTC_SET_LOG_LEVEL), "debug"); /* flag over env over file */
    CHECK_INT(ptc_settings_source(s, PTC_SET_LOG_LEVEL), PTC_SRC_FLAG);
    CHECK_STR(ptc_settings_get(s, PTC_SET_STATE_DIR), "/tmp/from-file");
    /* derived from state_dir */
    CHECK_STR(ptc_settings_get(s, PTC_SET_ACME_WEBROOT), "/tmp/from-file/acme-webroot");
    CHECK_INT(ptc_settings_source(s, PTC_SET_ACME_WEBROOT), PTC_SRC_DERIVED);
    CHECK_STR(ptc_settings_get(s, PTC_SET_NGINX_CONF), "/etc/nginx/nginx.conf");
    ptc_settings_free(s);
    unlink(path);
    free(path);
    free(cfg);
}

static void test_managed_nginx_paths(void)
{
    char err[256];
    char *flags[] = {"--nginx_managed=true", "--state_dir=/srv/p", "--nginx_sites_enabled=/x/enabled"};
    ptc_settings *s = ptc_settings_new();
    CHECK_INT(ptc_settings_load(s, 3, flags, NULL, err, sizeof(err)), 0);
    CHECK_STR(ptc_settings_get(s, PTC_SET_NGINX_CONF), "/srv/p/nginx/nginx.conf");
    CHECK_STR(ptc_settings_get(s, PTC_SET_NGINX_SITES_AVAILABLE), "/srv/p/nginx/sites-available");
    CHECK_STR(ptc_settings_get(s, PTC_SET_NGINX_SITES_ENABLED), "/x/enabled"); /* explicit wins */
    ptc_settings_free(s);
}

static void expect_error(char **flags, int n, char **env, const char *needle)
{
    char err[256] = "";
    ptc_settings *s = ptc_settings_new();
    CHECK(ptc_settings_load(s, n, flags, env, err, sizeof(err)) != 0);
    if (strstr(err, needle) == NULL) {
        fprintf(stderr, "error \"%s\" does not name \"%s\"\n", err, needle);
        t_failures++;
    }
    ptc_settings_free(s);
}

static void test_errors_name_the_key(void)
{
    expect_error((char *[]){"--no_such_setting=1"}, 1, NULL, "no_such_setting");
    expect_error((char *[]){"--workers=many"}, 1, NULL, "workers");
    expect_error((char *[]){"--workers=1000"}, 1, NULL, "workers");
    expect_error((char *[]){"--engine=apache"}, 1, NULL, "engine");
    expect_error((char *[]){"--api_listen=localhost"}, 1, NULL, "api_listen");
    expect_error((char *[]){"--api_listen=1.2.3.4:70000"}, 1, NULL, "api_listen");
    expect_error((char *[]){"--nginx_managed=maybe"}, 1, NULL, "nginx_managed");
    expect_error((char *[]){"--max_body_size=10x"}, 1, NULL, "max_body_size");
    expect_error((char *[]){"--port_range=20000-10000"}, 1, NULL, "port_range");
    expect_error((char *[]){"--reserved_ports=80,abc"}, 1, NULL, "reserved_ports");
    expect_error((char *[]){"--trusted_proxies=10.0.0.0/33"}, 1, NULL, "trusted_proxies");
    expect_error((char *[]){"--state_dir=/a\nb"}, 1, NULL, "state_dir");
    expect_error((char *[]){"positional"}, 1, NULL, "positional");
    expect_error(NULL, 0, (char *[]){"PORTICO_BOGUS=1", NULL}, "PORTICO_BOGUS");
    char *path = write_config("engine = builtin\nunknown_key = 1\n");
    char *cfg = malloc(strlen(path) + 20);
    sprintf(cfg, "--config=%s", path);
    expect_error((char *[]){cfg}, 1, NULL, "unknown_key");
    unlink(path);
    free(path);
    path = write_config("engine = builtin\nengine = nginx\n");
    sprintf(cfg, "--config=%s", path);
    expect_error((char *[]){cfg}, 1, NULL, "set twice");
    unlink(path);
    free(path);
    free(cfg);
}

static void test_parsers(void)
{
    char host[64];
    unsigned port, lo, hi;
    unsigned long long size;
    CHECK_INT(ptc_parse_addr("[::1]:8100", host, sizeof(host), &port), 0);
    CHECK_STR(host, "::1");
    CHECK_INT(port, 8100);
    CHECK_INT(ptc_parse_addr(":8080", host, sizeof(host), &port), 0);
    CHECK_STR(host, "");
    CHECK(ptc_parse_addr("[zz]:1", host, sizeof(host), &port) != 0);
    CHECK(ptc_parse_addr("a b:1", host, sizeof(host), &port) != 0);
    CHECK_INT(ptc_parse_port_range("9000-19999", &lo, &hi), 0);
    CHECK_INT(lo, 9000);
    CHECK_INT(hi, 19999);
    CHECK_INT(ptc_parse_size("64k", &size), 0);
    CHECK_INT(size, 65536);
    CHECK(ptc_parse_size("-1", &size) != 0);
    CHECK(ptc_cidrs_contain("10.0.0.0/8, 192.168.1.1", "10.2.3.4"));
    CHECK(ptc_cidrs_contain("10.0.0.0/8,192.168.1.1", "192.168.1.1"));
    CHECK(!ptc_cidrs_contain("10.0.0.0/8", "11.0.0.1"));
    CHECK(ptc_cidrs_contain("::1/128", "::1"));
    CHECK(!ptc_cidrs_contain("10.0.0.0/8", "::ffff:10.0.0.1"));
}

static void test_print_redacts_secrets(void)
{
    char err[256];
    char *flags[] = {"--api_token=supersecret-token-value"};
    ptc_settings *s = ptc_settings_new();
    CHECK_INT(ptc_settings_load(s, 1, flags, NULL, err, sizeof(err)), 0);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ptc_settings_print(s, f, true);
    ptc_settings_print(s, f, false);
    fclose(f);
    CHECK(strstr(out, "supersecret") == NULL);
    CHECK(strstr(out, "(redacted)") != NULL);
    free(out);
    ptc_settings_free(s);
}

/* A store or registry URI is printed (it says where the store or registry
 * is) without its password. */
static void test_print_masks_store_password(void)
{
    char err[256];
    char *flags[] = {"--store=postgres://portico:pg-Pass-42@db.internal:5432/portico?sslmode=require",
                     "--registry_url=https://sync:Reg-Pass-7@registry.internal/v2"};
    ptc_settings *s = ptc_settings_new();
    CHECK_INT(ptc_settings_load(s, 2, flags, NULL, err, sizeof(err)), 0);
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    ptc_settings_print(s, f, true);
    ptc_settings_print(s, f, false);
    fclose(f);
    CHECK(strstr(out, "pg-Pass-42") == NULL);
    CHECK(strstr(out, "postgres://portico:***@db.internal:5432/portico?sslmode=require") != NULL);
    CHECK(strstr(out, "Reg-Pass-7") == NULL);
    CHECK(strstr(out, "https://sync:***@registry.internal/v2") != NULL);
    free(out);
    ptc_settings_free(s);
}

int main(void)
{
    RUN(test_defaults);
    RUN(test_precedence);
    RUN(test_managed_nginx_paths);
    RUN(test_errors_name_the_key);
    RUN(test_parsers);
    RUN(test_print_redacts_secrets);
    RUN(test_print_masks_store_password);
    TEST_EXIT();
}
