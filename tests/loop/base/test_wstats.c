/*
 * test_wstats.c: the workers' own counters (stats.h) under real threads. Covered: each of W
 * threads counts into its own struct tf_wstats (TF_WSTAT_ADD, tf_histogram_observe_own)
 * while a reader folds them again and again, as the admin endpoint does; every fold is a
 * sum that only grows (no lost or torn count), the final fold equals the exact totals, the
 * histogram's buckets land where the values say, and each worker's counters start on a cache
 * line of their own. Runs in the TSan pass: the single-writer loads and stores race-free.
 */
#include "tf_test.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/stats.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#define W 4
#define N 20000

/* A worker stand-in: its counters and something it writes beside them. */
struct fake_worker {
    int id;
    struct tf_wstats ws;
};

static atomic_int running;
static atomic_int folds_done; /* by the reader; the writers wait for some mid-way */

static void count_thread(void *arg)
{
    struct fake_worker *w = arg;
    while (atomic_load(&folds_done) < 1)
        ;
    for (int i = 0; i < N; i++) {
        if (i == N / 2) /* half counted: a fold must happen while the others count */
            while (atomic_load(&folds_done) < 3)
                ;
        TF_WSTAT_ADD(&w->ws, conns_total, 1);
        TF_WSTAT_ADD(&w->ws, hs_ok, 1);
        TF_WSTAT_ADD(&w->ws, bytes_in, (unsigned long long)w->id + 1);
        TF_WSTAT_ADD(&w->ws, backend_errors_route[w->id], 1);
        /* 0.0005 s: first bucket (<= 1 ms); 0.003 s: the <= 5 ms bucket */
        tf_histogram_observe_own(&w->ws.hs_seconds, i % 2 ? 0.003 : 0.0005);
    }
    atomic_fetch_sub(&running, 1);
}

static void fold_all(struct fake_worker *ws, struct tf_wstats *sum)
{
    tf_wstats_init(sum);
    for (int i = 0; i < W; i++)
        tf_wstats_fold(sum, &ws[i].ws);
}

static unsigned long long hist_count(const struct tf_histogram *h)
{
    unsigned long long n = 0;
    for (int i = 0; i <= h->n_bounds; i++)
        n += atomic_load(&h->counts[i]);
    return n;
}

static void test_fold_while_counting(void)
{
    struct fake_worker *ws = tf_calloc_aligned(W, sizeof *ws, alignof(struct fake_worker));
    CHECK(((uintptr_t)ws % 64) == 0);
    for (int i = 0; i < W; i++) {
        ws[i].id = i;
        tf_wstats_init(&ws[i].ws);
        CHECK(((uintptr_t)&ws[i].ws % 64) == 0);
    }
    atomic_store(&running, W);
    atomic_store(&folds_done, 0);
    uv_thread_t t[W];
    for (int i = 0; i < W; i++)
        CHECK_EQ_INT(uv_thread_create(&t[i], count_thread, &ws[i]), 0);
    unsigned long long last = 0, folds = 0;
    bool grows = true, consistent = true;
    while (atomic_load(&running) > 0) {
        struct tf_wstats sum;
        fold_all(ws, &sum);
        unsigned long long n = atomic_load(&sum.conns_total);
        grows = grows && n >= last;
        last = n;
        /* a fold reads each counter once: bounded by what the writers can have done */
        consistent = consistent && n <= (unsigned long long)W * N &&
                     hist_count(&sum.hs_seconds) <= (unsigned long long)W * N;
        folds++;
        atomic_fetch_add(&folds_done, 1);
    }
    for (int i = 0; i < W; i++)
        uv_thread_join(&t[i]);
    CHECK(grows);
    CHECK(consistent);
    CHECK(folds >= 3);
    struct tf_wstats sum;
    fold_all(ws, &sum);
    CHECK_EQ_INT(atomic_load(&sum.conns_total), W * N);
    CHECK_EQ_INT(atomic_load(&sum.hs_ok), W * N);
    CHECK_EQ_INT(atomic_load(&sum.bytes_in), (long long)N * (1 + 2 + 3 + 4));
    for (int i = 0; i < W; i++)
        CHECK_EQ_INT(atomic_load(&sum.backend_errors_route[i]), N);
    CHECK_EQ_INT(atomic_load(&sum.backend_errors_route[W]), 0);
    CHECK_EQ_INT(hist_count(&sum.hs_seconds), W * N);
    CHECK_EQ_INT(atomic_load(&sum.hs_seconds.counts[0]), W * N / 2); /* <= 0.001 */
    CHECK_EQ_INT(atomic_load(&sum.hs_seconds.counts[1]), 0);         /* <= 0.0025 */
    CHECK_EQ_INT(atomic_load(&sum.hs_seconds.counts[2]), W * N / 2); /* <= 0.005 */
    double want = W * (N / 2) * (0.0005 + 0.003);
    double got = atomic_load(&sum.hs_seconds.sum);
    CHECK(got > want * 0.999999 && got < want * 1.000001);
    free(ws);
}

/* The histogram's own-thread observe and fold keep NaN out and the +Inf bucket in. */
static void test_histogram_edges(void)
{
    struct tf_wstats a, b;
    tf_wstats_init(&a);
    tf_wstats_init(&b);
    tf_histogram_observe_own(&a.hs_seconds, 0.0 / 0.0);
    tf_histogram_observe_own(&a.hs_seconds, 1e9);
    tf_histogram_observe_own(&b.hs_seconds, 10); /* == the last bound: its bucket, not +Inf */
    struct tf_wstats sum;
    tf_wstats_init(&sum);
    tf_wstats_fold(&sum, &a);
    tf_wstats_fold(&sum, &b);
    int last = sum.hs_seconds.n_bounds;
    CHECK_EQ_INT(atomic_load(&sum.hs_seconds.counts[last]), 1);
    CHECK_EQ_INT(atomic_load(&sum.hs_seconds.counts[last - 1]), 1);
    CHECK_EQ_INT(hist_count(&sum.hs_seconds), 2);
    CHECK(atomic_load(&sum.hs_seconds.sum) == 1e9 + 10);
}

int main(void)
{
    TF_TEST_RUN(test_fold_while_counting);
    TF_TEST_RUN(test_histogram_edges);
    return TF_TEST_DONE();
}
