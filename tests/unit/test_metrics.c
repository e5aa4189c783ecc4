/* A route's counters in one worker: the statuses counted in place, the
 * move to 64-bit counters when a fifth status comes or a 32-bit counter
 * would wrap (no count lost, none going back), the latency histogram, and
 * the counters carved for many routes, whose replaced tables are freed
 * unless a scrape is reading them. */
#include "proxy/worker.h"

#include <stdint.h>
#include <stdlib.h>

#include "testlib.h"

static ptc_route_sums sum(const ptc_route_stats *s)
{
    ptc_route_sums t = {0};
    ptc_metrics_sum(&t, s);
    return t;
}

static void test_statuses_in_place_then_wide(void)
{
    ptc_wmetrics m = {0};
    ptc_route_stats *s = &m.none;
    static const int statuses[] = {200, 404, 200, 502, 304, 200};
    for (size_t i = 0; i < sizeof(statuses) / sizeof(statuses[0]); i++)
        ptc_metrics_count(s, statuses[i]);
    ptc_route_sums t = sum(s);
    CHECK(t.any);
    CHECK_INT(t.codes[ptc_metrics_code_slot(200)], 3);
    CHECK_INT(t.codes[ptc_metrics_code_slot(404)], 1);
    CHECK_INT(t.codes[ptc_metrics_code_slot(502)], 1);
    CHECK_INT(t.codes[ptc_metrics_code_slot(304)], 1);
    CHECK(atomic_load(&s->wide) == NULL); /* four statuses fit in place */

    ptc_metrics_latency(s, 700);     /* <= 1 ms */
    ptc_metrics_latency(s, 3000000); /* <= 5 s */
    ptc_metrics_latency(s, 9000000); /* +Inf */
    ptc_metrics_count(s, 418);       /* a fifth status, counted as 4xx */
    CHECK(atomic_load(&s->wide) != NULL);
    t = sum(s);
    CHECK_INT(t.codes[ptc_metrics_code_slot(200)], 3);
    CHECK_INT(t.codes[ptc_metrics_code_slot(404)], 1);
    CHECK_INT(t.codes[ptc_metrics_code_slot(502)], 1);
    CHECK_INT(t.codes[ptc_metrics_code_slot(304)], 1);
    CHECK_INT(t.codes[ptc_metrics_code_slot(499)], 0);
    CHECK_INT(ptc_metrics_code_slot(418), ptc_metrics_code_slot(450));
    CHECK_INT(t.codes[ptc_metrics_code_slot(418)], 1);
    CHECK_INT(t.lat[0], 1);
    CHECK_INT(t.lat[PTC_N_LAT - 1], 1);
    CHECK_INT(t.lat[PTC_N_LAT], 1);
    CHECK_INT(t.lat_sum_us, 12000700);
    ptc_metrics_count(s, 200);
    ptc_metrics_latency(s, 700);
    t = sum(s);
    CHECK_INT(t.codes[ptc_metrics_code_slot(200)], 4);
    CHECK_INT(t.lat[0], 2);
    ptc_metrics_free(&m);
}

/* A count at the edge of 32 bits goes on in 64 bits. */
static void test_no_wrap(void)
{
    ptc_wmetrics m = {0};
    ptc_route_stats *s = &m.none;
    ptc_metrics_count(s, 200);
    ptc_metrics_latency(s, 10);
    atomic_store(&s->code_count[0], UINT32_MAX - 3);
    atomic_store(&s->lat[0], UINT32_MAX - 3);
    uint64_t prev = 0;
    for (int i = 0; i < 6; i++) {
        ptc_metrics_count(s, 200);
        ptc_metrics_latency(s, 10);
        ptc_route_sums t = sum(s);
        CHECK(t.codes[ptc_metrics_code_slot(200)] > prev); /* never back */
        prev = t.codes[ptc_metrics_code_slot(200)];
        CHECK_INT(t.lat[0], prev);
    }
    CHECK_INT(prev, (uint64_t)UINT32_MAX + 3);
    CHECK(atomic_load(&s->wide) != NULL);
    ptc_metrics_free(&m);
}

/* Counters for 1,000 routes, as a worker's first requests make them:
 * each its own, zeroed, kept across a growing route table. */
static void test_many_routes(void)
{
    ptc_worker *w = calloc(1, sizeof(*w));
    ptc_dp_snapshot snap = {.stat_limit = 10};
    ptc_snap_route routes[1000];
    ptc_route_stats *got[1000];
    pthread_mutex_init(&w->m.grow_lock, NULL);
    ptc_metrics_reserve(w, &snap);
    for (uint32_t i = 0; i < 1000; i++) {
        routes[i] = (ptc_snap_route){.stat_idx = i};
        if (i >= snap.stat_limit) {
            snap.stat_limit = i + 100;
            ptc_metrics_reserve(w, &snap);
        }
        got[i] = ptc_metrics_route(w, &routes[i]);
        CHECK(got[i] != NULL);
        CHECK_INT(sum(got[i]).codes[ptc_metrics_code_slot(200)], 0);
        for (uint32_t k = 0; k <= i % 3; k++)
            ptc_metrics_count(got[i], 200);
    }
    for (uint32_t i = 0; i < 1000; i++) {
        CHECK(ptc_metrics_route(w, &routes[i]) == got[i]);
        CHECK_INT(sum(got[i]).codes[ptc_metrics_code_slot(200)], i % 3 + 1);
    }
    /* No scrape was reading: the replaced tables are gone.  One that is
     * reading keeps the table it copied until a growth finds none. */
    CHECK_INT(w->m.n_old_tables, 0);
    atomic_fetch_add(&w->m.readers, 1);
    snap.stat_limit = 5000;
    ptc_metrics_reserve(w, &snap);
    CHECK_INT(w->m.n_old_tables, 1);
    atomic_fetch_sub(&w->m.readers, 1);
    snap.stat_limit = 20000;
    ptc_metrics_reserve(w, &snap);
    CHECK_INT(w->m.n_old_tables, 0);
    CHECK(ptc_metrics_route(w, &routes[999]) == got[999]);
    ptc_metrics_free(&w->m);
    pthread_mutex_destroy(&w->m.grow_lock);
    free(w);
}

int main(void)
{
    RUN(test_statuses_in_place_then_wide);
    RUN(test_no_wrap);
    RUN(test_many_routes);
    TEST_EXIT();
}
