/* Certificates of the desired state (see cert.h). */
#include "model/cert.h"

#include "core/mem.h"
#include "core/util.h"

#include <stdlib.h>

ptc_cert *ptc_cert_new(void)
{
    ptc_cert *c = ptc_xcalloc(1, sizeof(*c));
    atomic_init(&c->refs, 1);
    return c;
}

ptc_cert *ptc_cert_retain(const ptc_cert *c)
{
    ptc_cert *m = (ptc_cert *)c;
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void ptc_cert_release(const ptc_cert *c)
{
    ptc_cert *m = (ptc_cert *)c;
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    free(m->domain);
    free(m->cert_pem);
    free(m->key_pem);
    free(m->source);
    free(m->issuer);
    free(m->subject);
    for (size_t i = 0; i < m->n_sans; i++)
        free(m->sans[i]);
    free(m->sans);
    free(m->fingerprint);
    free(m);
}

static json_t *sans_json(const ptc_cert *c)
{
    json_t *a = json_array();
    for (size_t i = 0; i < c->n_sans; i++)
        json_array_append_new(a, json_string(c->sans[i]));
    return a;
}

json_t *ptc_cert_to_stored(const ptc_cert *c)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:o, s:s, s:I}", "domain", c->domain,
                     "certificate", c->cert_pem, "key", c->key_pem, "source", c->source, "issuer", c->issuer,
                     "subject", c->subject, "not_before", (json_int_t)c->not_before, "not_after",
                     (json_int_t)c->not_after, "sans", sans_json(c), "fingerprint", c->fingerprint,
                     "updated_at", (json_int_t)c->updated_at);
}

ptc_cert *ptc_cert_from_stored(const json_t *j)
{
    const char *keys[] = {"domain", "certificate", "key", "source", "issuer", "subject", "fingerprint"};
    const json_t *sans = json_object_get(j, "sans");
    ptc_cert *c;

    for (size_t i = 0; i < PTC_ARRAY_LEN(keys); i++)
        if (!json_is_string(json_object_get(j, keys[i])))
            return NULL;
    if (!json_is_array(sans))
        return NULL;
    c = ptc_cert_new();
    c->domain = ptc_xstrdup(json_string_value(json_object_get(j, "domain")));
    c->cert_pem = ptc_xstrdup(json_string_value(json_object_get(j, "certificate")));
    c->key_pem = ptc_xstrdup(json_string_value(json_object_get(j, "key")));
    c->source = ptc_xstrdup(json_string_value(json_object_get(j, "source")));
    c->issuer = ptc_xstrdup(json_string_value(json_object_get(j, "issuer")));
    c->subject = ptc_xstrdup(json_string_value(json_object_get(j, "subject")));
    c->fingerprint = ptc_xstrdup(json_string_value(json_object_get(j, "fingerprint")));
    c->not_before = json_integer_value(json_object_get(j, "not_before"));
    c->not_after = json_integer_value(json_object_get(j, "not_after"));
    c->updated_at = json_integer_value(json_object_get(j, "updated_at"));
    c->n_sans = json_array_size(sans);
    c->sans = ptc_xcalloc(c->n_sans, sizeof(char *));
    for (size_t i = 0; i < c->n_sans; i++) {
        const char *s = json_string_value(json_array_get(sans, i));
        c->sans[i] = ptc_xstrdup(s ? s : "");
    }
    return c;
}

json_t *ptc_cert_to_api(const ptc_cert *c)
{
    char nb[32], na[32], up[32];
    ptc_time_format(c->not_before, nb, sizeof(nb));
    ptc_time_format(c->not_after, na, sizeof(na));
    ptc_time_format(c->updated_at, up, sizeof(up));
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o, s:s, s:s}", "domain", c->domain, "source",
                     c->source, "issuer", c->issuer, "subject", c->subject, "not_before", nb, "not_after", na,
                     "sans", sans_json(c), "fingerprint_sha256", c->fingerprint, "updated_at", up);
}
