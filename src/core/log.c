/* Structured JSON-lines logging (see log.h). */
#include "core/log.h"

#include "core/buf.h"
#include "core/util.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static ptc_log_level g_min_level = PTC_LOG_INFO;
static bool g_json = true;
static int g_fd = STDERR_FILENO;
static _Thread_local char t_correlation_id[72];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void ptc_log_setup(ptc_log_level min_level, bool json, int fd)
{
    g_min_level = min_level;
    g_json = json;
    g_fd = fd;
}

int ptc_log_level_parse(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

bool ptc_log_enabled(ptc_log_level level)
{
    return level >= g_min_level;
}

void ptc_log_set_correlation_id(const char *id)
{
    if (id == NULL)
        t_correlation_id[0] = '\0';
    else
        snprintf(t_correlation_id, sizeof(t_correlation_id), "%s", id);
}

const char *ptc_log_correlation_id(void)
{
    return t_correlation_id[0] ? t_correlation_id : NULL;
}

static void append_text_value(ptc_buf *b, const char *s)
{
    bool plain = *s != '\0';
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p == '"' || *p == '=' || *p == 0x7f)
            plain = false;
    if (plain)
        ptc_buf_append_str(b, s);
    else
        ptc_buf_append_json_str(b, s);
}

void ptc_log_emit(ptc_log_level level, const char *msg, const ptc_log_kv *kv)
{
    char ts[40];
    ptc_buf b = PTC_BUF_INIT;

    if (level < g_min_level)
        return;
    ptc_time_format(ptc_now_ms(), ts, sizeof(ts));
    if (g_json) {
        ptc_buf_appendf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
        ptc_buf_append_json_str(&b, msg);
        if (t_correlation_id[0]) {
            ptc_buf_append_str(&b, ",\"correlation_id\":");
            ptc_buf_append_json_str(&b, t_correlation_id);
        }
        for (; kv && kv->key; kv++) {
            ptc_buf_append_str(&b, ",");
            ptc_buf_append_json_str(&b, kv->key);
            ptc_buf_append_str(&b, ":");
            if (kv->type == PTC_LOG_KV_STR)
                kv->s ? ptc_buf_append_json_str(&b, kv->s) : ptc_buf_append_str(&b, "null");
            else if (kv->type == PTC_LOG_KV_BOOL)
                ptc_buf_append_str(&b, kv->i ? "true" : "false");
            else
                ptc_buf_appendf(&b, "%lld", kv->i);
        }
        ptc_buf_append_str(&b, "}\n");
    } else {
        ptc_buf_appendf(&b, "%s %-5s %s", ts, level_names[level], msg);
        if (t_correlation_id[0])
            ptc_buf_appendf(&b, " correlation_id=%s", t_correlation_id);
        for (; kv && kv->key; kv++) {
            ptc_buf_appendf(&b, " %s=", kv->key);
            if (kv->type == PTC_LOG_KV_STR)
                append_text_value(&b, kv->s ? kv->s : "null");
            else if (kv->type == PTC_LOG_KV_BOOL)
                ptc_buf_append_str(&b, kv->i ? "true" : "false");
            else
                ptc_buf_appendf(&b, "%lld", kv->i);
        }
        ptc_buf_append_str(&b, "\n");
    }
    /* One write per line; a short write to a pipe or file is not retried
     * because a retry could split the line between other writers. */
    ssize_t w = write(g_fd, b.data, b.len);
    (void)w;
    ptc_buf_free(&b);
}
