/* The settings table and its loaders (see settings.h). */
#include "core/settings.h"

#include "core/buf.h"
#include "core/mem.h"
#include "core/util.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct setting_def {
    const char *name;
    ptc_setting_type type;
    const char *def;
    const char *spec;
    unsigned flags;
    const char *help;
} setting_def;

static const setting_def defs[PTC_SETTINGS_COUNT] = {
#define PTC_SETTING_DEF(ID, name, type, def, spec, flags, help)                                              \
    {#name, PTC_SETTING_##type, def, spec, flags, help},
    PTC_SETTINGS_TABLE(PTC_SETTING_DEF)
#undef PTC_SETTING_DEF
};

static const char *const type_names[] = {"string", "int",  "bool",      "enum",     "addr",
                                         "addr?",  "size", "portrange", "portlist", "cidrs"};
static const char *const source_names[] = {"default", "derived", "file", "env", "flag"};

struct ptc_settings {
    char *values[PTC_SETTINGS_COUNT];
    ptc_setting_source sources[PTC_SETTINGS_COUNT];
    long long ints[PTC_SETTINGS_COUNT]; /* INT, BOOL and SIZE values, parsed */
    char *config_path;
};

static void errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void errf(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int ptc_parse_size(const char *s, unsigned long long *out)
{
    char *end;
    unsigned long long v, mult = 1;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno)
        return -EINVAL;
    switch (tolower((unsigned char)*end)) {
    case '\0':
        break;
    case 'k':
        mult = 1ULL << 10;
        end++;
        break;
    case 'm':
        mult = 1ULL << 20;
        end++;
        break;
    case 'g':
        mult = 1ULL << 30;
        end++;
        break;
    default:
        return -EINVAL;
    }
    if (*end != '\0' || v > (1ULL << 50) / mult)
        return -EINVAL;
    *out = v * mult;
    return 0;
}

static int parse_port(const char *s, size_t len, unsigned *port)
{
    char tmp[8];
    long long v;
    if (len == 0 || len >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    if (ptc_parse_int(tmp, 1, 65535, &v) != 0 || tmp[0] == '-')
        return -EINVAL;
    *port = (unsigned)v;
    return 0;
}

int ptc_parse_port_range(const char *s, unsigned *lo, unsigned *hi)
{
    const char *dash = strchr(s, '-');
    if (dash == NULL) {
        if (parse_port(s, strlen(s), lo) != 0)
            return -EINVAL;
        *hi = *lo;
        return 0;
    }
    if (parse_port(s, (size_t)(dash - s), lo) != 0 || parse_port(dash + 1, strlen(dash + 1), hi) != 0 ||
        *lo > *hi)
        return -EINVAL;
    return 0;
}

int ptc_parse_addr(const char *s, char *host, size_t hostlen, unsigned *port)
{
    const char *colon;
    size_t hlen;
    const char *h = s;

    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (close == NULL || close[1] != ':')
            return -EINVAL;
        h = s + 1;
        hlen = (size_t)(close - h);
        colon = close + 1;
        struct in6_addr a6;
        char tmp[64];
        if (hlen == 0 || hlen >= sizeof(tmp))
            return -EINVAL;
        memcpy(tmp, h, hlen);
        tmp[hlen] = '\0';
        if (inet_pton(AF_INET6, tmp, &a6) != 1)
            return -EINVAL;
    } else {
        colon = strrchr(s, ':');
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - s);
        for (size_t i = 0; i < hlen; i++)
            if (!(isalnum((unsigned char)s[i]) || s[i] == '.' || s[i] == '-'))
                return -EINVAL;
    }
    if (hlen >= hostlen)
        return -EINVAL;
    if (parse_port(colon + 1, strlen(colon + 1), port) != 0)
        return -EINVAL;
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    return 0;
}

/* Parses "ip" or "ip/bits" into an address family, 16 bytes and a prefix. */
static int parse_cidr(const char *s, size_t len, int *af, unsigned char addr[16], unsigned *bits)
{
    char tmp[64];
    char *slash;
    long long b = -1;
    if (len == 0 || len >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    slash = strchr(tmp, '/');
    if (slash) {
        *slash = '\0';
        if (ptc_parse_int(slash + 1, 0, 128, &b) != 0)
            return -EINVAL;
    }
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, tmp, addr) == 1) {
        *af = AF_INET;
        if (b > 32)
            return -EINVAL;
        *bits = b < 0 ? 32 : (unsigned)b;
    } else if (inet_pton(AF_INET6, tmp, addr) == 1) {
        *af = AF_INET6;
        *bits = b < 0 ? 128 : (unsigned)b;
    } else {
        return -EINVAL;
    }
    return 0;
}

/* Calls fn for each comma-separated item of a list; stops at an error. */
static int for_each_item(const char *list, int (*fn)(const char *s, size_t len, void *arg), void *arg)
{
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        int rc = fn(start, (size_t)(p - start), arg);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int check_cidr_item(const char *s, size_t len, void *arg)
{
    int af;
    unsigned char a[16];
    unsigned bits;
    (void)arg;
    return parse_cidr(s, len, &af, a, &bits);
}

static int check_port_item(const char *s, size_t len, void *arg)
{
    char tmp[16];
    unsigned lo, hi;
    (void)arg;
    if (len >= sizeof(tmp))
        return -EINVAL;
    memcpy(tmp, s, len);
    tmp[len] = '\0';
    return ptc_parse_port_range(tmp, &lo, &hi);
}

typedef struct cidr_match {
    int af;
    unsigned char addr[16];
    bool found;
} cidr_match;

static int match_cidr_item(const char *s, size_t len, void *arg)
{
    cidr_match *m = arg;
    int af;
    unsigned char net[16];
    unsigned bits;
    if (parse_cidr(s, len, &af, net, &bits) != 0 || af != m->af)
        return 0;
    for (unsigned i = 0; i < bits; i++) {
        unsigned mask = 0x80u >> (i % 8);
        if ((net[i / 8] & mask) != (m->addr[i / 8] & mask))
            return 0;
    }
    m->found = true;
    return 1;
}

bool ptc_cidrs_contain(const char *cidrs, const char *ip)
{
    cidr_match m = {0};
    if (inet_pton(AF_INET, ip, m.addr) == 1)
        m.af = AF_INET;
    else if (inet_pton(AF_INET6, ip, m.addr) == 1)
        m.af = AF_INET6;
    else
        return false;
    for_each_item(cidrs, match_cidr_item, &m);
    return m.found;
}

static bool parse_bool(const char *v, bool *out)
{
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(v, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(v, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static bool enum_has(const char *spec, const char *v)
{
    size_t n = strlen(v);
    for (const char *p = spec; *p;) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0)
            return true;
        p += len + (bar ? 1 : 0);
    }
    return false;
}

/* Checks value against the setting's type and stores its parsed form. */
static int validate(ptc_settings *s, ptc_setting_id id, const char *v, char *err, size_t errlen)
{
    const setting_def *d = &defs[id];
    char host[256];
    unsigned port, lo, hi;
    unsigned long long size;
    long long i;
    bool b;

    for (const char *p = v; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f) {
            errf(err, errlen, "%s: control characters are not allowed", d->name);
            return -EINVAL;
        }
    switch (d->type) {
    case PTC_SETTING_STR:
        return 0;
    case PTC_SETTING_INT: {
        long long min, max;
        if (sscanf(d->spec, "%lld:%lld", &min, &max) != 2 || ptc_parse_int(v, min, max, &i) != 0) {
            errf(err, errlen, "%s: \"%s\" is not an integer in %s", d->name, v, d->spec);
            return -EINVAL;
        }
        s->ints[id] = i;
        return 0;
    }
    case PTC_SETTING_BOOL:
        if (!parse_bool(v, &b)) {
            errf(err, errlen, "%s: \"%s\" is not true or false", d->name, v);
            return -EINVAL;
        }
        s->ints[id] = b;
        return 0;
    case PTC_SETTING_ENUM:
        if (!enum_has(d->spec, v)) {
            errf(err, errlen, "%s: \"%s\" is not one of %s", d->name, v, d->spec);
            return -EINVAL;
        }
        return 0;
    case PTC_SETTING_ADDROPT:
        if (*v == '\0')
            return 0;
        /* fall through */
    case PTC_SETTING_ADDR:
        if (ptc_parse_addr(v, host, sizeof(host), &port) != 0) {
            errf(err, errlen, "%s: \"%s\" is not host:port", d->name, v);
            return -EINVAL;
        }
        return 0;
    case PTC_SETTING_SIZE:
        if (ptc_parse_size(v, &size) != 0) {
            errf(err, errlen, "%s: \"%s\" is not a size (bytes, or with k/m/g)", d->name, v);
            return -EINVAL;
        }
        s->ints[id] = (long long)size;
        return 0;
    case PTC_SETTING_PORTRANGE:
        if (ptc_parse_port_range(v, &lo, &hi) != 0) {
            errf(err, errlen, "%s: \"%s\" is not a port range lo-hi", d->name, v);
            return -EINVAL;
        }
        return 0;
    case PTC_SETTING_PORTLIST:
        if (for_each_item(v, check_port_item, NULL) != 0) {
            errf(err, errlen, "%s: \"%s\" is not a list of ports and port ranges", d->name, v);
            return -EINVAL;
        }
        return 0;
    case PTC_SETTING_CIDRS:
        if (for_each_item(v, check_cidr_item, NULL) != 0) {
            errf(err, errlen, "%s: \"%s\" is not a list of IP addresses or CIDR blocks", d->name, v);
            return -EINVAL;
        }
        return 0;
    }
    return -EINVAL;
}

static int find_setting(const char *name, size_t len)
{
    for (int id = 0; id < PTC_SETTINGS_COUNT; id++) {
        const char *n = defs[id].name;
        if (strlen(n) != len)
            continue;
        size_t k = 0;
        for (; k < len; k++) {
            char c = name[k] == '-' ? '_' : (char)tolower((unsigned char)name[k]);
            if (c != n[k])
                break;
        }
        if (k == len)
            return id;
    }
    return -1;
}

static int set_value(ptc_settings *s, int id, const char *value, ptc_setting_source src, char *err,
                     size_t errlen)
{
    int rc = validate(s, (ptc_setting_id)id, value, err, errlen);
    if (rc != 0)
        return rc;
    free(s->values[id]);
    s->values[id] = ptc_xstrdup(value);
    s->sources[id] = src;
    return 0;
}

ptc_settings *ptc_settings_new(void)
{
    ptc_settings *s = ptc_xcalloc(1, sizeof(*s));
    char err[256];
    for (int id = 0; id < PTC_SETTINGS_COUNT; id++)
        if (set_value(s, id, defs[id].def, PTC_SRC_DEFAULT, err, sizeof(err)) != 0)
            abort(); /* a default that fails its own type is a bug in the table */
    return s;
}

void ptc_settings_free(ptc_settings *s)
{
    if (s == NULL)
        return;
    for (int id = 0; id < PTC_SETTINGS_COUNT; id++)
        free(s->values[id]);
    free(s->config_path);
    free(s);
}

int ptc_settings_set(ptc_settings *s, const char *name, const char *value, ptc_setting_source src, char *err,
                     size_t errlen)
{
    int id = find_setting(name, strlen(name));
    if (id < 0) {
        errf(err, errlen, "%s: unknown setting", name);
        return -ENOENT;
    }
    return set_value(s, id, value, src, err, errlen);
}

static char *trim(char *p)
{
    char *end;
    while (*p == ' ' || *p == '\t')
        p++;
    end = p + strlen(p);
    while (end > p && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        *--end = '\0';
    return p;
}

static int load_file(ptc_settings *s, const char *path, char *err, size_t errlen)
{
    int rc = 0, lineno = 0;
    char *text = NULL;
    bool seen[PTC_SETTINGS_COUNT] = {false};

    rc = ptc_file_read(path, 1 << 20, &text, NULL);
    if (rc != 0) {
        errf(err, errlen, "config %s: %s", path, strerror(-rc));
        rc = -EINVAL;
        goto out;
    }
    for (char *line = text, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *p = trim(line);
        if (*p == '\0' || *p == '#')
            continue;
        char *eq = strchr(p, '=');
        if (eq == NULL) {
            errf(err, errlen, "config %s:%d: expected key = value", path, lineno);
            rc = -EINVAL;
            goto out;
        }
        *eq = '\0';
        char *key = trim(p), *val = trim(eq + 1);
        size_t vlen = strlen(val);
        if (vlen >= 2 && val[0] == '"' && val[vlen - 1] == '"') {
            val[vlen - 1] = '\0';
            val++;
        }
        int id = find_setting(key, strlen(key));
        if (id < 0) {
            errf(err, errlen, "config %s:%d: %s: unknown setting", path, lineno, key);
            rc = -EINVAL;
            goto out;
        }
        if (seen[id]) {
            errf(err, errlen, "config %s:%d: %s: set twice", path, lineno, key);
            rc = -EINVAL;
            goto out;
        }
        seen[id] = true;
        char msg[256];
        if (set_value(s, id, val, PTC_SRC_FILE, msg, sizeof(msg)) != 0) {
            errf(err, errlen, "config %s:%d: %s", path, lineno, msg);
            rc = -EINVAL;
            goto out;
        }
    }
out:
    free(text);
    return rc;
}

/* Fills settings whose default depends on another one. */
static void derive(ptc_settings *s)
{
    const char *state = s->values[PTC_SET_STATE_DIR];
    char err[256];
    struct {
        ptc_setting_id id;
        const char *sub;
        bool only_if_managed;
    } rules[] = {
        {PTC_SET_ACME_WEBROOT, "acme-webroot", false},
        {PTC_SET_CERTBOT_CONFIG_DIR, "certbot/config", false},
        {PTC_SET_CERTBOT_WORK_DIR, "certbot/work", false},
        {PTC_SET_CERTBOT_LOGS_DIR, "certbot/logs", false},
        {PTC_SET_NGINX_CONF, "nginx/nginx.conf", true},
        {PTC_SET_NGINX_SITES_AVAILABLE, "nginx/sites-available", true},
        {PTC_SET_NGINX_SITES_ENABLED, "nginx/sites-enabled", true},
        {PTC_SET_NGINX_BACKUP_DIR, "nginx/backups", true},
    };
    for (size_t i = 0; i < PTC_ARRAY_LEN(rules); i++) {
        ptc_setting_id id = rules[i].id;
        if (s->sources[id] != PTC_SRC_DEFAULT)
            continue;
        if (rules[i].only_if_managed ? !s->ints[PTC_SET_NGINX_MANAGED] : s->values[id][0] != '\0')
            continue;
        char *v = ptc_path_join(state, rules[i].sub);
        set_value(s, id, v, PTC_SRC_DERIVED, err, sizeof(err));
        free(v);
    }
}

int ptc_settings_load(ptc_settings *s, int nflags, char *const flags[], char *const envp[], char *err,
                      size_t errlen)
{
    const char *config = NULL;

    for (int i = 0; i < nflags; i++)
        if (strncmp(flags[i], "--config=", 9) == 0)
            config = flags[i] + 9;
    for (size_t i = 0; config == NULL && envp && envp[i]; i++)
        if (strncmp(envp[i], "PORTICO_CONFIG=", 15) == 0)
            config = envp[i] + 15;
    if (config && *config) {
        free(s->config_path);
        s->config_path = ptc_xstrdup(config);
        if (load_file(s, config, err, errlen) != 0)
            return -EINVAL;
    }
    for (size_t i = 0; envp && envp[i]; i++) {
        const char *e = envp[i];
        const char *eq = strchr(e, '=');
        if (strncmp(e, "PORTICO_", 8) != 0 || eq == NULL)
            continue;
        const char *key = e + 8;
        size_t klen = (size_t)(eq - key);
        /* Variables of the CLI client and the config path are not settings. */
        if ((klen == 3 && strncmp(key, "URL", 3) == 0) || (klen == 5 && strncmp(key, "TOKEN", 5) == 0) ||
            (klen == 6 && strncmp(key, "CONFIG", 6) == 0))
            continue;
        int id = find_setting(key, klen);
        if (id < 0) {
            errf(err, errlen, "environment: PORTICO_%.*s: unknown setting", (int)klen, key);
            return -EINVAL;
        }
        char msg[256];
        if (set_value(s, id, eq + 1, PTC_SRC_ENV, msg, sizeof(msg)) != 0) {
            errf(err, errlen, "environment: PORTICO_%.*s: %s", (int)klen, key, msg);
            return -EINVAL;
        }
    }
    for (int i = 0; i < nflags; i++) {
        const char *f = flags[i];
        const char *eq = strchr(f, '=');
        if (strncmp(f, "--config=", 9) == 0)
            continue;
        if (strncmp(f, "--", 2) != 0 || eq == NULL) {
            errf(err, errlen, "%s: expected --key=value", f);
            return -EINVAL;
        }
        int id = find_setting(f + 2, (size_t)(eq - f - 2));
        if (id < 0) {
            errf(err, errlen, "%.*s: unknown setting", (int)(eq - f), f);
            return -EINVAL;
        }
        if (set_value(s, id, eq + 1, PTC_SRC_FLAG, err, errlen) != 0)
            return -EINVAL;
    }
    derive(s);
    return 0;
}

const char *ptc_settings_get(const ptc_settings *s, ptc_setting_id id)
{
    return s->values[id];
}

long long ptc_settings_int(const ptc_settings *s, ptc_setting_id id)
{
    return s->ints[id];
}

bool ptc_settings_bool(const ptc_settings *s, ptc_setting_id id)
{
    return s->ints[id] != 0;
}

ptc_setting_source ptc_settings_source(const ptc_settings *s, ptc_setting_id id)
{
    return s->sources[id];
}

const char *ptc_settings_name(ptc_setting_id id)
{
    return defs[id].name;
}

const char *ptc_settings_config_path(const ptc_settings *s)
{
    return s->config_path;
}

/* A value as printed, in a new string: secrets redacted, passwords in
 * URIs masked (the rest of a store URI says where the store is). */
static char *shown(const ptc_settings *s, int id)
{
    if ((defs[id].flags & PTC_SETTING_SECRET) && s->values[id][0] != '\0')
        return ptc_xstrdup("(redacted)");
    if (defs[id].flags & PTC_SETTING_URI)
        return ptc_uri_mask_password(s->values[id]);
    return ptc_xstrdup(s->values[id]);
}

void ptc_settings_print(const ptc_settings *s, FILE *out, bool json)
{
    ptc_buf b = PTC_BUF_INIT;
    if (json)
        ptc_buf_append_str(&b, "{");
    else
        ptc_buf_appendf(&b, "%-28s %-8s %s\n", "SETTING", "SOURCE", "VALUE");
    for (int id = 0; id < PTC_SETTINGS_COUNT; id++) {
        char *v = shown(s, id);
        if (json) {
            ptc_buf_appendf(&b, "%s\"%s\":{\"value\":", id ? "," : "", defs[id].name);
            ptc_buf_append_json_str(&b, v);
            ptc_buf_appendf(&b, ",\"source\":\"%s\"}", source_names[s->sources[id]]);
        } else {
            ptc_buf_appendf(&b, "%-28s %-8s %s\n", defs[id].name, source_names[s->sources[id]], v);
        }
        free(v);
    }
    if (json)
        ptc_buf_append_str(&b, "}\n");
    fputs(ptc_buf_cstr(&b), out);
    ptc_buf_free(&b);
}

void ptc_settings_print_help(FILE *out)
{
    for (int id = 0; id < PTC_SETTINGS_COUNT; id++) {
        fprintf(out, "  --%s=<%s>  (default: \"%s\")\n      %s\n", defs[id].name, type_names[defs[id].type],
                defs[id].def, defs[id].help);
        if (defs[id].type == PTC_SETTING_ENUM)
            fprintf(out, "      one of: %s\n", defs[id].spec);
    }
}
