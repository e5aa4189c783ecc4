/* HTTP health probes: GET http://host:port/path, many at once, each
 * bounded in time and in the bytes read.  Used by the health gate before a
 * change and by the active health checks. */
#ifndef PTC_DISCOVERY_PROBE_H
#define PTC_DISCOVERY_PROBE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ptc_probe {
    const char *host; /* host name or IP literal (IPv6 without brackets) */
    unsigned port;
    const char *path;
    long timeout_ms;
    /* results */
    bool healthy; /* a 2xx or 3xx answer arrived in time */
    int status;   /* HTTP status, 0 when none */
    long duration_ms;
    char error[160]; /* why not healthy, or "" */
} ptc_probe;

/* Runs every probe concurrently and fills its results.  Blocks until all
 * have answered or timed out. */
void ptc_probe_run(ptc_probe *probes, size_t n);

#endif
