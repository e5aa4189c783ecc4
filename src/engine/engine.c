/* Engine selection and shared result handling (see engine.h). */
#include "engine/engine.h"

#include <stdio.h>
#include <string.h>

ptc_engine *ptc_engine_create(const ptc_settings *s, char *err, size_t errlen)
{
    const char *name = ptc_settings_get(s, PTC_SET_ENGINE);
    if (strcmp(name, "builtin") == 0)
        return ptc_engine_builtin_create(s, err, errlen);
    if (strcmp(name, "nginx") == 0)
        return ptc_engine_nginx_create(s, err, errlen);
    if (strcmp(name, "caddy") == 0)
        return ptc_engine_caddy_create(s, err, errlen);
    snprintf(err, errlen, "engine: unknown engine %s", name);
    return NULL;
}

void ptc_apply_result_clear(ptc_apply_result *res)
{
    json_decref(res->details);
    json_decref(res->report);
    res->details = NULL;
    res->report = NULL;
}
