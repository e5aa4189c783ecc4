/* Registry sync (DESIGN §6, §9; seed 001's registry client): fetch
 * GET {registry_url}/droplets, turn each droplet into a proxy spec, and
 * plan the next desired state (creates, updates, deletes) in one step so
 * that the API applies a whole sync as one revision.
 *
 * The registry's answer is hostile input: its size and time are bounded,
 * and every field a droplet may carry is validated by the same rules as
 * the API's; a droplet that fails them is skipped with a reason, never
 * half-used.
 *
 * Accepted droplet fields (others are ignored: registries carry more):
 *   name                         ^[a-z0-9][a-z0-9_-]{0,62}$
 *   domain                       a host name (absent, null or "": {name}.{base_domain})
 *   host | upstream_host | ip    the upstream (a host name or an IP literal)
 *   port | upstream_port         1-65535 (an integer, or a string of digits)
 *   instances                    [{host, port, healthy?}]: the upstreams,
 *                                instead of host/port; instances with
 *                                healthy false are left out unless all are
 *   health_path                  the health check path (default: health_check_path)
 *   enable_ssl                   true or false (default false) */
#ifndef PTC_DISCOVERY_REGISTRY_H
#define PTC_DISCOVERY_REGISTRY_H

#include "core/buf.h"
#include "model/state.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PTC_REGISTRY_BODY_MAX (8u << 20)
#define PTC_REGISTRY_DROPLETS_MAX 100000

/* Fetches GET {base_url}/droplets (base_url http:// or https://, a
 * trailing slash ignored; no redirects, no proxy from the environment),
 * waiting at most timeout_ms in all and reading at most
 * PTC_REGISTRY_BODY_MAX bytes into body.  Returns 0 for a 200 answer, or
 * -EINVAL (bad URL), -ETIMEDOUT, -EFBIG, -EPROTO (another status), -EIO
 * (connection failed), -ECANCELED (*cancel became true; NULL: never),
 * with the cause in err.  Blocks. */
int ptc_registry_fetch(const char *base_url, long timeout_ms, const atomic_bool *cancel, ptc_buf *body,
                       char *err, size_t errlen);

/* A droplet that passed validation. */
typedef struct ptc_droplet {
    char *name;
    char *domain; /* lower-case */
    ptc_upstream *upstreams;
    size_t n_upstreams;
    char *health_path; /* NULL: the default */
    bool enable_ssl;
} ptc_droplet;

typedef struct ptc_droplet_list {
    ptc_droplet *items;
    size_t n;
    /* Every name the registry lists (valid or not), for pruning: a name
     * the registry still lists is never deleted, even when skipped. */
    char **listed;
    size_t n_listed;
    /* {name: reason} of the droplets skipped, in registry order; a droplet
     * without a usable name is keyed "droplets[i]". */
    json_t *skipped;
} ptc_droplet_list;

/* Parses a registry answer: a JSON array of droplets (or an object whose
 * "droplets" member is one).  Returns 0 with *out filled (free it with
 * ptc_droplet_list_free), or -EINVAL with the reason in err when the body
 * as a whole is unusable (not JSON, not an array, more than
 * PTC_REGISTRY_DROPLETS_MAX droplets).  base_domain may be "" or NULL. */
int ptc_registry_parse(const char *body, size_t len, const char *base_domain, ptc_droplet_list *out,
                       char *err, size_t errlen);
void ptc_droplet_list_free(ptc_droplet_list *l);

/* What one sync changes. */
typedef struct ptc_sync_plan {
    ptc_state *next;         /* new reference; the very cur (retained) when nothing changes */
    json_t *synced;          /* names matching the registry after the sync */
    json_t *skipped;         /* names */
    json_t *skipped_reasons; /* {name: reason} */
    json_t *created, *updated, *unchanged, *deleted; /* names */
} ptc_sync_plan;

typedef struct ptc_sync_options {
    const ptc_proxy_defaults *defaults;
    bool prune;       /* delete registry proxies the registry no longer lists */
    int64_t revision; /* the revision the changes will be committed as */
    int64_t now;      /* ms since the epoch, for created_at/updated_at */
} ptc_sync_options;

/* Plans the next state from cur and the droplets: a droplet becomes a
 * proxy {domain, path_prefix "/", upstreams, health_check.path, enable_ssl,
 * require_healthy false, source registry}.  Proxies made through the API
 * are never touched: a droplet whose name is one is skipped, and so is one
 * whose domain another proxy routes.  Droplets whose spec equals their
 * proxy keep the very object, so that the store and the engines see no
 * change.  Pure: no I/O.  Free the plan with ptc_sync_plan_free. */
void ptc_registry_plan(const ptc_state *cur, const ptc_droplet_list *droplets, const ptc_sync_options *opts,
                       ptc_sync_plan *out);
void ptc_sync_plan_free(ptc_sync_plan *p);

/* True when the plan changes anything. */
bool ptc_sync_plan_changes(const ptc_sync_plan *p);

#endif
