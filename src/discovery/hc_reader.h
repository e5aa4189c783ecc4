/* The response side of an active health check (internal to discovery/):
 * an incremental HTTP/1.1 response reader that finds the final status,
 * where the response ends, and whether its connection can carry the next
 * check.  It never needs a response body: a body is skipped when its
 * length is known and small, and otherwise the connection is given up.
 *
 * The upstream's answer is hostile input: the head is bounded, the status
 * line and the framing headers are parsed strictly, and anything odd only
 * ever costs the connection its reuse, never a wrong status.  Pure
 * functions, no I/O, no allocation. */
#ifndef PTC_DISCOVERY_HC_READER_H
#define PTC_DISCOVERY_HC_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PTC_HC_HEAD_MAX 8192
#define PTC_HC_BODY_MAX 65536
#define PTC_HC_INTERIM_MAX 4

typedef enum ptc_hc_step {
    PTC_HC_MORE, /* needs more bytes */
    PTC_HC_DONE, /* the response is complete (or its status is known and the rest is not wanted) */
    PTC_HC_BAD,  /* not a usable HTTP/1.x response; see error */
} ptc_hc_step;

typedef struct ptc_hc_reader {
    char head[PTC_HC_HEAD_MAX];
    size_t head_len;
    bool in_body;
    uint64_t body_left;
    unsigned interim; /* 1xx heads skipped */
    int status;       /* the final status, 0 until its head is read */
    bool keep_alive;  /* the connection may carry another request afterwards */
    char error[96];
} ptc_hc_reader;

void ptc_hc_reader_init(ptc_hc_reader *r);

/* Feeds the next n bytes the connection delivered.  Returns PTC_HC_MORE,
 * PTC_HC_DONE (status and keep_alive are final; bytes past the response
 * turn keep_alive off) or PTC_HC_BAD (error says why). */
ptc_hc_step ptc_hc_reader_feed(ptc_hc_reader *r, const char *p, size_t n);

#endif
