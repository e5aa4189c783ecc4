/* The copy-on-write desired state (see state.h). */
#include "model/state.h"

#include "core/mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ptc_state *ptc_state_new(void)
{
    ptc_state *s = ptc_xcalloc(1, sizeof(*s));
    atomic_init(&s->refs, 1);
    return s;
}

ptc_state *ptc_state_retain(const ptc_state *s)
{
    ptc_state *m = (ptc_state *)s;
    atomic_fetch_add(&m->refs, 1);
    return m;
}

void ptc_state_release(const ptc_state *s)
{
    ptc_state *m = (ptc_state *)s;
    if (m == NULL || atomic_fetch_sub(&m->refs, 1) != 1)
        return;
    for (size_t i = 0; i < m->n_proxies; i++)
        ptc_proxy_release(m->proxies[i]);
    for (size_t i = 0; i < m->n_certs; i++)
        ptc_cert_release(m->certs[i]);
    free(m->proxies);
    free(m->by_route);
    free(m->certs);
    free(m);
}

/* Index of the first proxy whose name is >= name. */
static size_t proxy_lower_bound(const ptc_state *s, const char *name)
{
    size_t lo = 0, hi = s->n_proxies;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->proxies[mid]->name, name) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static size_t cert_lower_bound(const ptc_state *s, const char *domain)
{
    size_t lo = 0, hi = s->n_certs;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(s->certs[mid]->domain, domain) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ptc_proxy *ptc_state_proxy(const ptc_state *s, const char *name)
{
    size_t i = proxy_lower_bound(s, name);
    return i < s->n_proxies && strcmp(s->proxies[i]->name, name) == 0 ? s->proxies[i] : NULL;
}

const ptc_cert *ptc_state_cert(const ptc_state *s, const char *domain)
{
    size_t i = cert_lower_bound(s, domain);
    return i < s->n_certs && strcmp(s->certs[i]->domain, domain) == 0 ? s->certs[i] : NULL;
}

const ptc_cert *ptc_state_cert_for(const ptc_state *s, const char *host)
{
    const ptc_cert *c;
    const char *dot;
    char wild[256];

    if (s->n_certs == 0)
        return NULL;
    c = ptc_state_cert(s, host);
    dot = strchr(host, '.');
    if (c == NULL && dot != NULL && strncmp(host, "*.", 2) != 0 && strlen(dot) + 2 <= sizeof(wild)) {
        snprintf(wild, sizeof(wild), "*%s", dot);
        c = ptc_state_cert(s, wild);
    }
    return c;
}

/* Orders proxies by (domain, path_prefix); a NULL prefix sorts before
 * every prefix of its domain (for the first proxy of a domain). */
static int route_cmp(const char *domain, const char *prefix, const ptc_proxy *p)
{
    int c = strcmp(domain, p->domain);
    if (c != 0 || prefix == NULL)
        return c != 0 ? c : -1;
    return strcmp(prefix, p->path_prefix);
}

/* Index in by_route of the first proxy not ordered before (domain, prefix). */
static size_t route_lower_bound(const ptc_state *s, const char *domain, const char *prefix)
{
    size_t lo = 0, hi = s->n_proxies;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (route_cmp(domain, prefix, s->by_route[mid]) > 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const ptc_proxy *ptc_state_route_owner(const ptc_state *s, const char *domain, const char *path_prefix)
{
    size_t i = route_lower_bound(s, domain, path_prefix);
    return i < s->n_proxies && route_cmp(domain, path_prefix, s->by_route[i]) == 0 ? s->by_route[i] : NULL;
}

size_t ptc_state_domain_count(const ptc_state *s, const char *domain)
{
    size_t n = 0;
    for (size_t i = route_lower_bound(s, domain, NULL); i < s->n_proxies; i++, n++)
        if (strcmp(s->by_route[i]->domain, domain) != 0)
            break;
    return n;
}

static void route_insert(ptc_state *s, const ptc_proxy *p)
{
    size_t i = route_lower_bound(s, p->domain, p->path_prefix);
    memmove(&s->by_route[i + 1], &s->by_route[i], (s->n_proxies - i) * sizeof(*s->by_route));
    s->by_route[i] = p;
}

/* Removes p (by identity) from by_route; n_proxies still counts it. */
static void route_remove(ptc_state *s, const ptc_proxy *p)
{
    for (size_t i = route_lower_bound(s, p->domain, p->path_prefix); i < s->n_proxies; i++) {
        if (s->by_route[i] == p) {
            memmove(&s->by_route[i], &s->by_route[i + 1], (s->n_proxies - i - 1) * sizeof(*s->by_route));
            return;
        }
    }
}

/* A copy of base with every element retained, and room for one more. */
static ptc_state *copy_state(const ptc_state *base)
{
    ptc_state *s = ptc_state_new();
    s->proxies = ptc_xcalloc(base->n_proxies + 1, sizeof(*s->proxies));
    s->by_route = ptc_xmalloc((base->n_proxies + 1) * sizeof(*s->by_route));
    s->certs = ptc_xcalloc(base->n_certs + 1, sizeof(*s->certs));
    if (base->n_proxies)
        memcpy(s->by_route, base->by_route, base->n_proxies * sizeof(*s->by_route));
    for (size_t i = 0; i < base->n_proxies; i++)
        s->proxies[i] = ptc_proxy_retain(base->proxies[i]);
    for (size_t i = 0; i < base->n_certs; i++)
        s->certs[i] = ptc_cert_retain(base->certs[i]);
    s->n_proxies = base->n_proxies;
    s->n_certs = base->n_certs;
    s->revision = base->revision;
    return s;
}

ptc_state *ptc_state_put_proxy(const ptc_state *base, ptc_proxy *p)
{
    ptc_state *s = copy_state(base);
    size_t i = proxy_lower_bound(s, p->name);
    if (i < s->n_proxies && strcmp(s->proxies[i]->name, p->name) == 0) {
        route_remove(s, s->proxies[i]);
        s->n_proxies--;
        ptc_proxy_release(s->proxies[i]);
    } else {
        memmove(&s->proxies[i + 1], &s->proxies[i], (s->n_proxies - i) * sizeof(*s->proxies));
    }
    s->proxies[i] = p;
    route_insert(s, p);
    s->n_proxies++;
    return s;
}

ptc_state *ptc_state_delete_proxy(const ptc_state *base, const char *name)
{
    ptc_state *s = copy_state(base);
    size_t i = proxy_lower_bound(s, name);
    if (i < s->n_proxies && strcmp(s->proxies[i]->name, name) == 0) {
        route_remove(s, s->proxies[i]);
        ptc_proxy_release(s->proxies[i]);
        memmove(&s->proxies[i], &s->proxies[i + 1], (s->n_proxies - i - 1) * sizeof(*s->proxies));
        s->n_proxies--;
    }
    return s;
}

ptc_state *ptc_state_put_cert(const ptc_state *base, ptc_cert *c)
{
    ptc_state *s = copy_state(base);
    size_t i = cert_lower_bound(s, c->domain);
    if (i < s->n_certs && strcmp(s->certs[i]->domain, c->domain) == 0) {
        ptc_cert_release(s->certs[i]);
    } else {
        memmove(&s->certs[i + 1], &s->certs[i], (s->n_certs - i) * sizeof(*s->certs));
        s->n_certs++;
    }
    s->certs[i] = c;
    return s;
}

ptc_state *ptc_state_delete_cert(const ptc_state *base, const char *domain)
{
    ptc_state *s = copy_state(base);
    size_t i = cert_lower_bound(s, domain);
    if (i < s->n_certs && strcmp(s->certs[i]->domain, domain) == 0) {
        ptc_cert_release(s->certs[i]);
        memmove(&s->certs[i], &s->certs[i + 1], (s->n_certs - i - 1) * sizeof(*s->certs));
        s->n_certs--;
    }
    return s;
}

static int cmp_proxy(const void *a, const void *b)
{
    return strcmp((*(const ptc_proxy *const *)a)->name, (*(const ptc_proxy *const *)b)->name);
}

static int cmp_route(const void *a, const void *b)
{
    const ptc_proxy *p = *(const ptc_proxy *const *)a;
    return route_cmp(p->domain, p->path_prefix, *(const ptc_proxy *const *)b);
}

static int cmp_cert(const void *a, const void *b)
{
    return strcmp((*(const ptc_cert *const *)a)->domain, (*(const ptc_cert *const *)b)->domain);
}

ptc_state *ptc_state_from(ptc_proxy **proxies, size_t n_proxies, ptc_cert **certs, size_t n_certs)
{
    ptc_state *s = ptc_state_new();
    s->proxies = ptc_xcalloc(n_proxies + 1, sizeof(*s->proxies));
    s->certs = ptc_xcalloc(n_certs + 1, sizeof(*s->certs));
    if (n_proxies)
        memcpy(s->proxies, proxies, n_proxies * sizeof(*proxies));
    if (n_certs)
        memcpy(s->certs, certs, n_certs * sizeof(*certs));
    s->n_proxies = n_proxies;
    s->n_certs = n_certs;
    qsort(s->proxies, n_proxies, sizeof(*s->proxies), cmp_proxy);
    s->by_route = ptc_xmalloc((n_proxies + 1) * sizeof(*s->by_route));
    if (n_proxies)
        memcpy(s->by_route, s->proxies, n_proxies * sizeof(*s->proxies));
    qsort(s->by_route, n_proxies, sizeof(*s->by_route), cmp_route);
    qsort(s->certs, n_certs, sizeof(*s->certs), cmp_cert);
    return s;
}
