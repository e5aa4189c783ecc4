/* The admin API: an HTTP/JSON server (libmicrohttpd, a thread per
 * connection so that a slow call never holds up another) in front of the
 * store, the engine and the apply pipeline.  Only main.c uses this header;
 * the handlers share api_internal.h. */
#ifndef PTC_API_H
#define PTC_API_H

#include "core/settings.h"
#include "engine/engine.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ptc_api ptc_api;

/* Loads the desired state from the store, starts the engine on it
 * (reconciliation) and starts listening on api_listen.  Refuses a
 * non-loopback api_listen without a token.  The settings, store and engine
 * are borrowed and must outlive the API.  Returns NULL with the reason in
 * err.  Blocks until listening. */
ptc_api *ptc_api_start(const ptc_settings *s, ptc_store *store, ptc_engine *engine, char *err, size_t errlen);

/* Checks the API settings before anything starts: the token settings, and
 * that a non-loopback api_listen has a token.  Returns 0, or -EINVAL with
 * the reason in err. */
int ptc_api_preflight(const ptc_settings *s, char *err, size_t errlen);

/* A count that only grows with the work that frees memory in bulk: each
 * published change, and each batch of health transitions recorded (10,000
 * proxies behind one upstream make 10,000 audit entries).  Housekeeping
 * gives free pages back after it moves.  Thread-safe. */
uint64_t ptc_api_activity(ptc_api *api);
/* Housekeeping after activity: lets the engine give back its scratch
 * memory (between applies), then returns free heap pages to the system.
 * Blocks while a change is being applied.  Thread-safe. */
void ptc_api_trim(ptc_api *api);
/* Stops accepting calls, waits for calls in progress, frees the API. */
void ptc_api_stop(ptc_api *api);

#endif
