/* A small per-thread event loop in the shape of redis' ae.c: file events on
 * epoll, a timer wheel, and a cross-thread wake-up.  One loop belongs to one
 * thread; only ptc_loop_wake() may be called from another thread.
 *
 * File events are edge-triggered, registered once with every interest
 * (EPOLLIN, EPOLLOUT, EPOLLRDHUP) and never modified: a proxy switches
 * between reading and writing on every message, and with level-triggered
 * epoll each switch would be an epoll_ctl(2) call.  The price is that an
 * owner which stops reading before EAGAIN (because its buffer is full) must
 * remember that the descriptor is still readable and come back to it
 * itself; the proxy keeps "ready" flags for that.
 *
 * Callers embed ptc_io and ptc_timer in their own structures so that no
 * allocation happens per connection or per re-arm. */
#ifndef PTC_LOOP_H
#define PTC_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct ptc_loop ptc_loop;
typedef struct ptc_io ptc_io;
typedef struct ptc_timer ptc_timer;

/* Called with the epoll event bits (EPOLLIN, EPOLLOUT, EPOLLRDHUP,
 * EPOLLHUP, EPOLLERR). */
typedef void (*ptc_io_cb)(ptc_io *io, uint32_t events);
typedef void (*ptc_timer_cb)(ptc_timer *t);
/* Runs on the loop's thread: after a ptc_loop_wake() (wake), or once per
 * iteration before the loop waits for events (before_wait). */
typedef void (*ptc_loop_cb)(ptc_loop *loop, void *arg);

struct ptc_io {
    int fd; /* -1 once closed: pending events for it are then ignored */
    ptc_io_cb cb;
};

struct ptc_timer {
    ptc_timer *next, **pprev; /* private: the list it is on (pprev NULL: not armed) */
    uint32_t slot;            /* private: its wheel slot, or none while it is expiring */
    int64_t at;               /* the deadline in ptc_loop_now() milliseconds */
    ptc_timer_cb cb;
};

/* A loop with no descriptors or timers.  Returns NULL with -errno in *err
 * when epoll or eventfd cannot be created. */
ptc_loop *ptc_loop_create(int *err);
/* Frees the loop; owners must have closed their descriptors and cancelled
 * their timers. */
void ptc_loop_destroy(ptc_loop *loop);

/* Registers fd (non-blocking, owned by the caller) edge-triggered for every
 * event; cb runs on each.  Returns 0 or -errno.  Closing the descriptor
 * unregisters it; set io->fd to -1 before or when doing so, and keep the
 * memory of io valid until the current iteration ends (events already
 * fetched may still name it; see ptc_loop_on_wait). */
int ptc_loop_add(ptc_loop *loop, ptc_io *io, int fd, ptc_io_cb cb);

/* The loop's clock: monotonic milliseconds, read once per iteration. */
int64_t ptc_loop_now(const ptc_loop *loop);
/* Reads the clock again (after work that may have taken a while). */
int64_t ptc_loop_update_time(ptc_loop *loop);

void ptc_timer_init(ptc_timer *t, ptc_timer_cb cb);
/* (Re)arms t for the deadline at (ptc_loop_now() milliseconds; a past
 * deadline fires on the next iteration).  O(1), no allocation. */
void ptc_timer_set(ptc_loop *loop, ptc_timer *t, int64_t at);
void ptc_timer_cancel(ptc_loop *loop, ptc_timer *t);
bool ptc_timer_active(const ptc_timer *t);

/* Sets the callback run on the loop's thread after ptc_loop_wake(). */
void ptc_loop_on_wake(ptc_loop *loop, ptc_loop_cb cb, void *arg);
/* Sets the callback run before each wait (redis' beforeSleep): a good place
 * to free what the iteration retired and to flush buffered output. */
void ptc_loop_on_wait(ptc_loop *loop, ptc_loop_cb cb, void *arg);
/* Wakes the loop from any thread; never blocks (an eventfd write). */
void ptc_loop_wake(ptc_loop *loop);

/* Runs until ptc_loop_stop(); returns 0 or the -errno of a failed wait. */
int ptc_loop_run(ptc_loop *loop);
/* Makes ptc_loop_run() return after the current iteration (loop thread). */
void ptc_loop_stop(ptc_loop *loop);

#endif
