/* Nodes sharing one store (DESIGN §1): a thread that looks at the store's
 * generation every store_poll_interval_ms and, when another node moved
 * it, brings this node's engine to the stored state (ptc_api_follow, in
 * apply.c).  A change made here looks first anyway; this thread is what
 * carries another node's change to a node that makes none. */
#include "api/api_internal.h"

#include "core/log.h"
#include "core/mem.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct ptc_api_follower {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool stop;
} ptc_api_follower;

static void *loop(void *arg)
{
    ptc_api *api = arg;
    ptc_api_follower *f = api->follow;
    int64_t every_ms = ptc_settings_int(api->settings, PTC_SET_STORE_POLL_INTERVAL_MS);
    char correlation_id[40];

    pthread_mutex_lock(&f->lock);
    while (!f->stop) {
        struct timespec ts = ptc_deadline_ms(CLOCK_MONOTONIC, every_ms);
        while (!f->stop && pthread_cond_timedwait(&f->cond, &f->lock, &ts) == 0)
            ;
        if (f->stop)
            break;
        pthread_mutex_unlock(&f->lock);
        /* The log lines of one look share a correlation id. */
        ptc_random_hex(correlation_id, 16);
        ptc_log_set_correlation_id(correlation_id);
        ptc_api_follow(api);
        ptc_log_set_correlation_id(NULL);
        pthread_mutex_lock(&f->lock);
    }
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

int ptc_api_follow_start(ptc_api *api, char *err, size_t errlen)
{
    ptc_api_follower *f;
    pthread_condattr_t ca;
    int rc = 0;

    if (ptc_settings_int(api->settings, PTC_SET_STORE_POLL_INTERVAL_MS) == 0)
        goto out;
    f = ptc_xcalloc(1, sizeof(*f));
    pthread_mutex_init(&f->lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&f->cond, &ca);
    pthread_condattr_destroy(&ca);
    api->follow = f;
    if ((rc = pthread_create(&f->thread, NULL, loop, api)) != 0) {
        snprintf(err, errlen, "store follower: cannot start a thread (%s)", strerror(rc));
        pthread_cond_destroy(&f->cond);
        pthread_mutex_destroy(&f->lock);
        free(f);
        api->follow = NULL;
        rc = -rc;
    }
out:
    return rc;
}

void ptc_api_follow_stop(ptc_api *api)
{
    ptc_api_follower *f = api->follow;
    if (f == NULL)
        return;
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_signal(&f->cond);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    pthread_cond_destroy(&f->cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
    api->follow = NULL;
}
