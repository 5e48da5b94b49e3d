/*
 * stats.c: a worker's own counters (struct tf_wstats) and their sum over the workers, read
 * by the control loop. See stats.h for who writes what.
 */
#include "tlsfront/base/stats.h"

#include <string.h>

void tf_wstats_init(struct tf_wstats *ws)
{
    memset(ws, 0, sizeof *ws);
    tf_histogram_init(&ws->hs_seconds, tf_metrics_handshake_bounds, tf_metrics_handshake_nbounds);
}

static void add(atomic_ullong *dst, const atomic_ullong *src)
{
    atomic_store_explicit(dst,
                          atomic_load_explicit(dst, memory_order_relaxed) +
                              atomic_load_explicit(src, memory_order_relaxed),
                          memory_order_relaxed);
}

void tf_wstats_fold(struct tf_wstats *sum, const struct tf_wstats *ws)
{
#define TF_WSTATS_ADD_FIELD(f, what) add(&sum->f, &ws->f);
    TF_WSTATS_COUNTERS(TF_WSTATS_ADD_FIELD)
#undef TF_WSTATS_ADD_FIELD
    for (int i = 0; i <= TF_STATS_ROUTES; i++)
        add(&sum->backend_errors_route[i], &ws->backend_errors_route[i]);
    tf_histogram_fold(&sum->hs_seconds, &ws->hs_seconds);
}
