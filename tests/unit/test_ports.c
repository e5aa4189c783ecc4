/* The port allocator over a real SQLite store: lowest free port, reserved
 * and bound ports skipped, exhaustion, release and reuse, statistics, and
 * concurrent allocations from two store connections (two "nodes" sharing
 * one file) that must never hand out the same port. */
#include "core/mem.h"
#include "core/util.h"
#include "ports/ports.h"
#include "store/store.h"
#include "testlib.h"

#include <errno.h>
#include <ftw.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* A block of n consecutive ports that nothing holds right now, below the
 * ephemeral range so that other tests' client sockets do not wander in. */

/* Removes the test's temporary folder and everything in it. */
static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static unsigned free_block(unsigned n)
{
    for (unsigned lo = 21000; lo + n < 32000; lo += n) {
        unsigned k = 0;
        while (k < n && ptc_ports_bindable(lo + k))
            k++;
        if (k == n)
            return lo;
    }
    return 0;
}

static ptc_store *open_store(const char *dir)
{
    char err[256];
    ptc_store *st = ptc_store_open("", dir, err, sizeof(err));
    if (st == NULL)
        fprintf(stderr, "store: %s\n", err);
    return st;
}

static int listen_on(unsigned port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 1) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static void test_allocate_skip_exhaust_release(void)
{
    char dir[] = "/tmp/portico-ports-XXXXXX", range[32], reserved[16], err[256];
    CHECK(mkdtemp(dir) != NULL);
    ptc_store *st = open_store(dir);
    unsigned lo = free_block(5);
    CHECK(st != NULL && lo != 0);

    /* lo+1 reserved, lo+2 bound by "another process" (a listener here). */
    snprintf(range, sizeof(range), "%u-%u", lo, lo + 4);
    snprintf(reserved, sizeof(reserved), "%u", lo + 1);
    ptc_ports *p = ptc_ports_new(st, range, reserved, err, sizeof(err));
    CHECK(p != NULL);
    int busy = listen_on(lo + 2);
    CHECK(busy >= 0);
    CHECK(!ptc_ports_bindable(lo + 2));
    CHECK(ptc_ports_is_reserved(p, lo + 1));

    ptc_port_grant g;
    CHECK_INT(ptc_ports_allocate(p, "app-a", 8080, &g), 0);
    CHECK_INT(g.port, lo);
    CHECK(g.created);
    /* The same (owner, internal port) again: the same port, not a new one. */
    CHECK_INT(ptc_ports_allocate(p, "app-a", 8080, &g), 0);
    CHECK_INT(g.port, lo);
    CHECK(!g.created);
    CHECK_INT(ptc_ports_allocate(p, "app-a", 8081, &g), 0);
    CHECK_INT(g.port, lo + 3); /* lo+1 reserved, lo+2 bound */
    CHECK_INT(ptc_ports_allocate(p, "app-b", 8080, &g), 0);
    CHECK_INT(g.port, lo + 4);
    CHECK_INT(ptc_ports_allocate(p, "app-c", 8080, &g), -ENOSPC);

    ptc_port_list active;
    ptc_port_stats stats;
    CHECK_INT(ptc_store_ports_list(st, NULL, false, &active), 0);
    CHECK_INT(active.n, 3);
    ptc_ports_stats(p, &active, &stats);
    CHECK_INT(stats.range_size, 5);
    CHECK_INT(stats.reserved, 1);
    CHECK_INT(stats.allocated, 3);
    CHECK_INT(stats.available, 1); /* the bound port is not allocated: it still counts */
    ptc_port_list_free(&active);

    size_t n = 0;
    CHECK_INT(ptc_store_ports_release(st, "app-a", ptc_now_ms(), &n), 0);
    CHECK_INT(n, 2);
    CHECK_INT(ptc_store_ports_release(st, "app-a", ptc_now_ms(), &n), -ENOENT);
    CHECK_INT(ptc_store_ports_release(st, "nobody", ptc_now_ms(), &n), -ENOENT);
    /* Released ports are handed out again, lowest first. */
    CHECK_INT(ptc_ports_allocate(p, "app-c", 8080, &g), 0);
    CHECK_INT(g.port, lo);

    ptc_port_list all;
    CHECK_INT(ptc_store_ports_list(st, NULL, true, &all), 0);
    CHECK_INT(all.n, 4);
    size_t released = 0;
    for (size_t i = 0; i < all.n; i++)
        if (strcmp(all.items[i].status, "released") == 0) {
            released++;
            CHECK(all.items[i].released_at > 0);
            CHECK_STR(all.items[i].owner, "app-a");
        }
    CHECK_INT(released, 2);
    ptc_port_list_free(&all);

    close(busy);
    ptc_ports_free(p);
    ptc_store_close(st);
    rm_rf(dir);
}

static void test_bad_settings(void)
{
    char err[256];
    ptc_ports *p = ptc_ports_new(NULL, "9000", "", err, sizeof(err));
    CHECK(p != NULL); /* a range of one port */
    ptc_ports_free(p);
    p = ptc_ports_new(NULL, "9000-8000", "", err, sizeof(err));
    CHECK(p == NULL);
    p = ptc_ports_new(NULL, "9000-9100", "9001,x", err, sizeof(err));
    CHECK(p == NULL);
    p = ptc_ports_new(NULL, "9000-9100", "9001, 9010-9019", err, sizeof(err));
    CHECK(p != NULL);
    CHECK(ptc_ports_is_reserved(p, 9001) && ptc_ports_is_reserved(p, 9015) &&
          !ptc_ports_is_reserved(p, 9020));
    ptc_port_list none = {0};
    ptc_port_stats stats;
    ptc_ports_stats(p, &none, &stats);
    CHECK_INT(stats.available, 101 - 11);
    ptc_ports_free(p);
}

#define NODES 2
#define THREADS 10
#define PER_THREAD 5

typedef struct worker {
    ptc_ports *ports;
    int index;
    unsigned got[PER_THREAD];
    int failures;
} worker;

static void *allocate_many(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        char owner[32];
        ptc_port_grant g;
        snprintf(owner, sizeof(owner), "owner-%d-%d", w->index, i);
        if (ptc_ports_allocate(w->ports, owner, 80, &g) != 0 || !g.created)
            w->failures++;
        else
            w->got[i] = g.port;
    }
    return NULL;
}

static void test_concurrent_two_nodes(void)
{
    char dir[] = "/tmp/portico-ports-XXXXXX", range[32], err[256];
    CHECK(mkdtemp(dir) != NULL);
    unsigned lo = free_block(THREADS * PER_THREAD + 10);
    CHECK(lo != 0);
    snprintf(range, sizeof(range), "%u-%u", lo, lo + THREADS * PER_THREAD + 9);
    ptc_store *stores[NODES];
    ptc_ports *ports[NODES];
    for (int i = 0; i < NODES; i++) {
        stores[i] = open_store(dir);
        ports[i] = ptc_ports_new(stores[i], range, "", err, sizeof(err));
    }
    worker w[THREADS];
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++) {
        w[i] = (worker){.ports = ports[i % NODES], .index = i};
        pthread_create(&th[i], NULL, allocate_many, &w[i]);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(th[i], NULL);

    uint8_t seen[65536] = {0};
    int dupes = 0, failures = 0;
    for (int i = 0; i < THREADS; i++) {
        failures += w[i].failures;
        for (int k = 0; k < PER_THREAD; k++) {
            unsigned port = w[i].got[k];
            CHECK(port >= lo && port < lo + THREADS * PER_THREAD + 10);
            dupes += seen[port]++ > 0;
        }
    }
    CHECK_INT(failures, 0);
    CHECK_INT(dupes, 0);
    ptc_port_list active;
    CHECK_INT(ptc_store_ports_list(stores[0], NULL, false, &active), 0);
    CHECK_INT(active.n, THREADS * PER_THREAD);
    ptc_port_list_free(&active);
    for (int i = 0; i < NODES; i++) {
        ptc_ports_free(ports[i]);
        ptc_store_close(stores[i]);
    }
    rm_rf(dir);
}

int main(void)
{
    RUN(test_allocate_skip_exhaust_release);
    RUN(test_bad_settings);
    RUN(test_concurrent_two_nodes);
    TEST_EXIT();
}
