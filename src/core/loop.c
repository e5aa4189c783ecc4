/* The event loop (see loop.h): epoll, edge-triggered, plus a hashed timer
 * wheel.
 *
 * The wheel has 4096 slots of one millisecond.  A timer sits in the slot of
 * its deadline (modulo the wheel); a deadline more than one lap away simply
 * stays in its slot and is looked at once per lap (every 4 s), which costs
 * little for the long idle timeouts and keeps arming O(1): unlink, link, set
 * one bit.  A bitmap of non-empty slots lets the loop find the next deadline
 * for epoll_wait's timeout without walking empty slots.  A slot is one
 * pointer (a NULL-terminated list whose members point back at the pointer
 * to them): 32 KB per loop, not the 160 KB that sentinel timers took. */
#include "core/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "core/mem.h"

#define WHEEL_SLOTS 4096u
#define WHEEL_MASK (WHEEL_SLOTS - 1)
#define MAX_EVENTS 256
#define EXPIRING UINT32_MAX /* the slot of a timer moved out of the wheel to fire */

struct ptc_loop {
    int epfd;
    int evfd;
    ptc_io wake_io;
    int64_t now;
    int64_t done; /* every slot up to this tick has been processed */
    size_t n_timers;
    ptc_loop_cb wake_cb, wait_cb;
    void *wake_arg, *wait_arg;
    bool stopping;
    uint64_t used[WHEEL_SLOTS / 64];
    ptc_timer *slots[WHEEL_SLOTS];
    struct epoll_event events[MAX_EVENTS];
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_wake_io(ptc_io *io, uint32_t events)
{
    ptc_loop *loop = (ptc_loop *)((char *)io - offsetof(ptc_loop, wake_io));
    uint64_t v;
    (void)events;
    /* Edge-triggered: drain the counter so that the next write is an edge. */
    while (read(io->fd, &v, sizeof(v)) == (ssize_t)sizeof(v))
        ;
    if (loop->wake_cb)
        loop->wake_cb(loop, loop->wake_arg);
}

ptc_loop *ptc_loop_create(int *err)
{
    ptc_loop *loop = ptc_xcalloc(1, sizeof(*loop));
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    loop->evfd = -1;
    if (loop->epfd < 0)
        goto fail;
    loop->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->evfd < 0)
        goto fail;
    loop->now = loop->done = mono_ms();
    if (ptc_loop_add(loop, &loop->wake_io, loop->evfd, on_wake_io) < 0)
        goto fail;
    return loop;
fail:
    *err = -errno;
    if (loop->evfd >= 0)
        close(loop->evfd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    free(loop);
    return NULL;
}

void ptc_loop_destroy(ptc_loop *loop)
{
    if (loop == NULL)
        return;
    close(loop->evfd);
    close(loop->epfd);
    free(loop);
}

int ptc_loop_add(ptc_loop *loop, ptc_io *io, int fd, ptc_io_cb cb)
{
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = io};
    io->fd = fd;
    io->cb = cb;
    if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
        return -errno;
    return 0;
}

int64_t ptc_loop_now(const ptc_loop *loop)
{
    return loop->now;
}

int64_t ptc_loop_update_time(ptc_loop *loop)
{
    loop->now = mono_ms();
    return loop->now;
}

void ptc_timer_init(ptc_timer *t, ptc_timer_cb cb)
{
    t->next = NULL;
    t->pprev = NULL;
    t->slot = 0;
    t->at = 0;
    t->cb = cb;
}

bool ptc_timer_active(const ptc_timer *t)
{
    return t->pprev != NULL;
}

static void list_push(ptc_timer **head, ptc_timer *t)
{
    t->next = *head;
    if (t->next != NULL)
        t->next->pprev = &t->next;
    t->pprev = head;
    *head = t;
}

static void list_remove(ptc_timer *t)
{
    *t->pprev = t->next;
    if (t->next != NULL)
        t->next->pprev = t->pprev;
    t->next = NULL;
    t->pprev = NULL;
}

/* Takes an armed timer off its list; one in the wheel also leaves the
 * count, and its slot's bit when it was the last. */
static void unlink_timer(ptc_loop *loop, ptc_timer *t)
{
    list_remove(t);
    if (t->slot == EXPIRING)
        return;
    if (loop->slots[t->slot] == NULL)
        loop->used[t->slot / 64] &= ~(UINT64_C(1) << (t->slot % 64));
    loop->n_timers--;
}

void ptc_timer_cancel(ptc_loop *loop, ptc_timer *t)
{
    if (t->pprev != NULL)
        unlink_timer(loop, t);
}

void ptc_timer_set(ptc_loop *loop, ptc_timer *t, int64_t at)
{
    if (t->pprev != NULL)
        unlink_timer(loop, t);
    /* A deadline already passed goes to the next slot to be processed. */
    int64_t tick = at > loop->done ? at : loop->done + 1;
    uint32_t slot = (uint32_t)tick & WHEEL_MASK;
    t->at = at;
    t->slot = slot;
    list_push(&loop->slots[slot], t);
    loop->used[slot / 64] |= UINT64_C(1) << (slot % 64);
    loop->n_timers++;
}

/* Distance (0..WHEEL_SLOTS-1) from slot start to the next non-empty slot,
 * wrapping around; -1 when the wheel is empty. */
static long next_used(const ptc_loop *loop, uint32_t start)
{
    for (uint32_t d = 0; d <= WHEEL_SLOTS;) {
        uint32_t s = (start + d) & WHEEL_MASK;
        uint64_t word = loop->used[s / 64] >> (s % 64);
        if (word != 0)
            return (long)(d + (uint32_t)__builtin_ctzll(word));
        d += 64 - s % 64;
    }
    return -1;
}

static void run_timers(ptc_loop *loop)
{
    ptc_timer *expired = NULL, **tail = &expired;
    int64_t now = loop->now;

    if (now <= loop->done)
        return;
    if (loop->n_timers == 0) {
        loop->done = now;
        return;
    }
    int64_t from = loop->done + 1;
    if (now - from >= (int64_t)WHEEL_SLOTS)
        from = now - WHEEL_SLOTS + 1;
    for (int64_t tick = from; tick <= now;) {
        long d = next_used(loop, (uint32_t)tick & WHEEL_MASK);
        if (d < 0 || tick + d > now)
            break;
        tick += d;
        for (ptc_timer *t = loop->slots[(uint32_t)tick & WHEEL_MASK], *next; t != NULL; t = next) {
            next = t->next;
            if (t->at > now)
                continue; /* a later lap */
            unlink_timer(loop, t);
            /* Appended: timers fire in the order of their slots. */
            t->slot = EXPIRING;
            t->pprev = tail;
            *tail = t;
            tail = &t->next;
        }
        tick++;
    }
    loop->done = now;
    /* Callbacks may arm or cancel any timer, including other expired ones:
     * those are on a private list and unlink from it like from a slot. */
    while (expired != NULL) {
        ptc_timer *t = expired;
        list_remove(t);
        t->cb(t);
    }
}

/* Milliseconds until the next timer may be due, or -1 for none. */
static int wait_timeout(const ptc_loop *loop)
{
    if (loop->n_timers == 0)
        return -1;
    long d = next_used(loop, (uint32_t)(loop->done + 1) & WHEEL_MASK);
    int64_t due = loop->done + 1 + d;
    int64_t ms = due - loop->now;
    return ms < 0 ? 0 : (int)ms;
}

void ptc_loop_on_wake(ptc_loop *loop, ptc_loop_cb cb, void *arg)
{
    loop->wake_cb = cb;
    loop->wake_arg = arg;
}

void ptc_loop_on_wait(ptc_loop *loop, ptc_loop_cb cb, void *arg)
{
    loop->wait_cb = cb;
    loop->wait_arg = arg;
}

void ptc_loop_wake(ptc_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake. */
    ssize_t w = write(loop->evfd, &one, sizeof(one));
    (void)w;
}

void ptc_loop_stop(ptc_loop *loop)
{
    loop->stopping = true;
}

int ptc_loop_run(ptc_loop *loop)
{
    int rc = 0;
    loop->stopping = false;
    while (!loop->stopping) {
        if (loop->wait_cb)
            loop->wait_cb(loop, loop->wait_arg);
        if (loop->stopping)
            break;
        int n = epoll_wait(loop->epfd, loop->events, MAX_EVENTS, wait_timeout(loop));
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            goto out;
        }
        loop->now = mono_ms();
        for (int i = 0; i < n; i++) {
            ptc_io *io = loop->events[i].data.ptr;
            if (io->fd >= 0)
                io->cb(io, loop->events[i].events);
        }
        run_timers(loop);
    }
out:
    return rc;
}
