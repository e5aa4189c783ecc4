/* The event loop: timer wheel ordering, re-arming, cancelling (also of a
 * timer already expiring), long deadlines that lap the wheel, file events
 * and cross-thread wake-ups. */
#include "core/loop.h"

#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "testlib.h"

static int fired[16];
static int n_fired;
static ptc_loop *g_loop;

typedef struct tagged {
    ptc_timer t;
    int id;
} tagged;

static void on_timer(ptc_timer *t)
{
    tagged *tg = (tagged *)t;
    fired[n_fired++] = tg->id;
    if (tg->id == 99)
        ptc_loop_stop(g_loop);
}

static void test_order_cancel_rearm(void)
{
    int err;
    g_loop = ptc_loop_create(&err);
    CHECK(g_loop != NULL);
    n_fired = 0;
    int64_t now = ptc_loop_now(g_loop);
    tagged a = {.id = 1}, b = {.id = 2}, c = {.id = 3}, d = {.id = 4}, stop = {.id = 99};
    ptc_timer_init(&a.t, on_timer);
    ptc_timer_init(&b.t, on_timer);
    ptc_timer_init(&c.t, on_timer);
    ptc_timer_init(&d.t, on_timer);
    ptc_timer_init(&stop.t, on_timer);
    ptc_timer_set(g_loop, &a.t, now + 30);
    ptc_timer_set(g_loop, &b.t, now + 10);
    ptc_timer_set(g_loop, &c.t, now + 20);
    ptc_timer_set(g_loop, &d.t, now + 5);
    ptc_timer_cancel(g_loop, &d.t);
    CHECK(!ptc_timer_active(&d.t));
    ptc_timer_set(g_loop, &b.t, now + 40); /* re-armed later: fires after a */
    ptc_timer_set(g_loop, &stop.t, now + 60);
    CHECK(ptc_loop_run(g_loop) == 0);
    CHECK_INT(n_fired, 4);
    CHECK_INT(fired[0], 3);
    CHECK_INT(fired[1], 1);
    CHECK_INT(fired[2], 2);
    CHECK_INT(fired[3], 99);
    CHECK(ptc_loop_now(g_loop) >= now + 60);
    ptc_loop_destroy(g_loop);
}

/* A deadline further away than one lap of the wheel (4096 ms) must not fire
 * on the first pass over its slot; the past deadline fires at once. */
static void test_lap_and_past(void)
{
    int err;
    g_loop = ptc_loop_create(&err);
    n_fired = 0;
    int64_t now = ptc_loop_now(g_loop);
    tagged far = {.id = 7}, past = {.id = 8}, stop = {.id = 99};
    ptc_timer_init(&far.t, on_timer);
    ptc_timer_init(&past.t, on_timer);
    ptc_timer_init(&stop.t, on_timer);
    ptc_timer_set(g_loop, &far.t, now + 4096 + 20);
    ptc_timer_set(g_loop, &past.t, now - 1000);
    ptc_timer_set(g_loop, &stop.t, now + 40);
    CHECK(ptc_loop_run(g_loop) == 0);
    CHECK_INT(n_fired, 2);
    CHECK_INT(fired[0], 8);
    CHECK_INT(fired[1], 99);
    CHECK(ptc_timer_active(&far.t));
    ptc_timer_cancel(g_loop, &far.t);
    ptc_loop_destroy(g_loop);
}

/* Two timers expire in the same tick and the first to fire cancels the
 * other, which has already left the wheel: it must not fire, and the
 * wheel's count must stay right, or the loop would stop looking at the
 * later timers (the stop timer below would never fire). */
static tagged pair[2];
static void on_pair(ptc_timer *t)
{
    tagged *tg = (tagged *)t;
    fired[n_fired++] = tg->id;
    ptc_timer_cancel(g_loop, &pair[tg == &pair[0]].t);
}

static void test_cancel_expiring(void)
{
    int err;
    g_loop = ptc_loop_create(&err);
    n_fired = 0;
    int64_t now = ptc_loop_now(g_loop);
    tagged mid = {.id = 5}, stop = {.id = 99};
    pair[0] = (tagged){.id = 1};
    pair[1] = (tagged){.id = 2};
    ptc_timer_init(&pair[0].t, on_pair);
    ptc_timer_init(&pair[1].t, on_pair);
    ptc_timer_init(&mid.t, on_timer);
    ptc_timer_init(&stop.t, on_timer);
    ptc_timer_set(g_loop, &pair[0].t, now + 5);
    ptc_timer_set(g_loop, &pair[1].t, now + 5);
    ptc_timer_set(g_loop, &mid.t, now + 15);
    ptc_timer_set(g_loop, &stop.t, now + 40);
    CHECK(ptc_loop_run(g_loop) == 0);
    CHECK_INT(n_fired, 3);
    CHECK(fired[0] == 1 || fired[0] == 2);
    CHECK_INT(fired[1], 5);
    CHECK_INT(fired[2], 99);
    CHECK(!ptc_timer_active(&pair[0].t) && !ptc_timer_active(&pair[1].t));
    ptc_loop_destroy(g_loop);
}

static int io_events;
static void on_io(ptc_io *io, uint32_t events)
{
    char buf[16];
    (void)events;
    if (read(io->fd, buf, sizeof(buf)) > 0) {
        io_events++;
        ptc_loop_stop(g_loop);
    }
}

static int woke;
static void on_wake(ptc_loop *loop, void *arg)
{
    (void)arg;
    woke++;
    ptc_loop_stop(loop);
}

static void *waker(void *arg)
{
    usleep(20000);
    ptc_loop_wake(arg);
    return NULL;
}

static void test_io_and_wake(void)
{
    int err, sv[2];
    g_loop = ptc_loop_create(&err);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
    ptc_io io;
    CHECK(ptc_loop_add(g_loop, &io, sv[0], on_io) == 0);
    CHECK(write(sv[1], "x", 1) == 1);
    CHECK(ptc_loop_run(g_loop) == 0);
    CHECK_INT(io_events, 1);

    pthread_t th;
    ptc_loop_on_wake(g_loop, on_wake, NULL);
    pthread_create(&th, NULL, waker, g_loop);
    CHECK(ptc_loop_run(g_loop) == 0);
    pthread_join(th, NULL);
    CHECK_INT(woke, 1);
    close(sv[0]);
    close(sv[1]);
    ptc_loop_destroy(g_loop);
}

int main(void)
{
    RUN(test_order_cancel_rearm);
    RUN(test_lap_and_past);
    RUN(test_cancel_expiring);
    RUN(test_io_and_wake);
    TEST_EXIT();
}
