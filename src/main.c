/* portico's entry point: `portico serve` runs the daemon (store, engine,
 * admin API, signals); `portico config` and `portico settings` print the
 * settings; every other subcommand is a client of the admin API. */
#include "api/api.h"
#include "cli/cli.h"
#include "core/log.h"
#include "core/proc.h"
#include "core/settings.h"
#include "engine/engine.h"
#include "store/store.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* Loads the settings from flags, environment and file; prints why not. */
static ptc_settings *load_settings(int nflags, char **flags)
{
    char err[512];
    ptc_settings *s = ptc_settings_new();
    if (ptc_settings_load(s, nflags, flags, environ, err, sizeof(err)) != 0) {
        fprintf(stderr, "portico: %s\n", err);
        ptc_settings_free(s);
        return NULL;
    }
    return s;
}

static void setup_logging(const ptc_settings *s)
{
    ptc_log_setup((ptc_log_level)ptc_log_level_parse(ptc_settings_get(s, PTC_SET_LOG_LEVEL)),
                  strcmp(ptc_settings_get(s, PTC_SET_LOG_FORMAT), "json") == 0, STDERR_FILENO);
}

/* SIGHUP: re-read the config file.  What can change live (logging) does;
 * the rest is reported as needing a restart. */
static void reload_settings(const ptc_settings *live, int nflags, char **flags)
{
    ptc_settings *fresh = load_settings(nflags, flags);
    if (fresh == NULL) {
        ptc_log_error("SIGHUP: the new settings are not valid; keeping the running ones");
        return;
    }
    setup_logging(fresh);
    for (int id = 0; id < PTC_SETTINGS_COUNT; id++) {
        if (id == PTC_SET_LOG_LEVEL || id == PTC_SET_LOG_FORMAT)
            continue;
        if (strcmp(ptc_settings_get(live, (ptc_setting_id)id), ptc_settings_get(fresh, (ptc_setting_id)id)) !=
            0)
            ptc_log_warn("SIGHUP: setting changed; it takes effect at the next restart",
                         PTC_LS("setting", ptc_settings_name((ptc_setting_id)id)));
    }
    ptc_log_info("SIGHUP: settings re-read", PTC_LS("config", ptc_settings_config_path(fresh)));
    ptc_settings_free(fresh);
}

static int serve(int nflags, char **flags)
{
    int rc = 1;
    char err[512] = "";
    ptc_settings *s = NULL;
    ptc_store *store = NULL;
    ptc_engine *engine = NULL;
    ptc_api *api = NULL;
    sigset_t sigs;

    /* Every thread started from here on inherits the blocked set; this
     * thread takes the signals with sigwait. */
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    if ((s = load_settings(nflags, flags)) == NULL)
        return 2;
    setup_logging(s);
    /* A route change at 10,000 routes allocates a few tables of 100 to
     * 300 KB and frees the previous ones.  glibc raises its mmap threshold
     * past such sizes once one is freed, and they then come from the heap,
     * where the small objects that outlive them (a proxy, a compiled route)
     * land between them and keep their pages: a fixed threshold keeps them
     * mapped apart and given back whole (0.5 MB less after 10,000 PUTs). */
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    ptc_log_info("portico starting", PTC_LS("version", PTC_VERSION),
                 PTC_LS("engine", ptc_settings_get(s, PTC_SET_ENGINE)),
                 PTC_LS("state_dir", ptc_settings_get(s, PTC_SET_STATE_DIR)));
    if (ptc_api_preflight(s, err, sizeof(err)) != 0)
        goto out;
    store = ptc_store_open(ptc_settings_get(s, PTC_SET_STORE), ptc_settings_get(s, PTC_SET_STATE_DIR), err,
                           sizeof(err));
    if (store == NULL)
        goto out;
    engine = ptc_engine_create(s, err, sizeof(err));
    if (engine == NULL)
        goto out;
    api = ptc_api_start(s, store, engine, err, sizeof(err));
    if (api == NULL)
        goto out;
    ptc_log_info("portico ready");

    /* The start-up (reading the store, building the first snapshot) counts
     * too: its scratch memory goes back once the API has been quiet. */
    uint64_t trimmed_at = ptc_api_activity(api) - 1, seen = ptc_api_activity(api);
    for (;;) {
        const struct timespec housekeeping = {.tv_sec = 2};
        int sig = sigtimedwait(&sigs, NULL, &housekeeping);
        if (sig < 0) {
            /* Every change frees the arrays of the state and snapshot it
             * replaced (megabytes at 10,000 proxies), which malloc keeps
             * unless asked, and the engine keeps scratch memory for the next
             * change.  Both go back once a tick has passed without activity
             * (2 to 4 s after the last change): never in the middle of a run
             * of changes, where the arena locks malloc_trim holds for a
             * millisecond or two would delay one. */
            uint64_t activity = ptc_api_activity(api);
            if (activity != trimmed_at && activity == seen) {
                ptc_api_trim(api);
                trimmed_at = activity;
            }
            seen = activity;
            continue;
        }
        if (sig == SIGHUP) {
            reload_settings(s, nflags, flags);
            continue;
        }
        ptc_log_info("portico stopping", PTC_LS("signal", strsignal(sig)));
        break;
    }
    rc = 0;
out:
    if (rc != 0) {
        ptc_log_error("portico cannot start", PTC_LS("reason", err));
        fprintf(stderr, "portico: %s\n", err);
    }
    /* A certbot run must not hold up the calls the API waits for. */
    ptc_proc_stop_all();
    ptc_api_stop(api);
    if (engine)
        engine->ops->destroy(engine);
    ptc_store_close(store);
    curl_global_cleanup();
    ptc_settings_free(s);
    return rc;
}

static int config(int argc, char **argv)
{
    bool json = false;
    char **flags = calloc((size_t)argc + 1, sizeof(char *));
    int n = 0, rc = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            json = true;
        else
            flags[n++] = argv[i];
    }
    ptc_settings *s = load_settings(n, flags);
    if (s == NULL) {
        rc = 2;
    } else {
        ptc_settings_print(s, stdout, json);
        ptc_settings_free(s);
    }
    free(flags);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        ptc_cli_main(1, (char *[]){"help", NULL});
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "serve") == 0)
        return serve(argc - 2, argv + 2);
    if (strcmp(argv[1], "config") == 0)
        return config(argc - 2, argv + 2);
    if (strcmp(argv[1], "settings") == 0) {
        ptc_settings_print_help(stdout);
        return 0;
    }
    if (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("portico %s\n", PTC_VERSION);
        return 0;
    }
    return ptc_cli_main(argc - 1, argv + 1);
}
