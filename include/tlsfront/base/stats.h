/*
 * stats.h: process-wide counters, updated with relaxed atomics from any worker and read by
 * the admin endpoint. Counters only ever grow, except gauges marked as such.
 */
#ifndef TF_STATS_H
#define TF_STATS_H

#include "tlsfront/base/log.h"
#include "tlsfront/base/metrics.h"

#include <stdatomic.h>
#include <stdint.h>

#define TF_STATS_ROUTES 64 /* per-route counters; later routes share the last slot */

struct tf_stats {
    atomic_int conns_open;              /* gauge: accepted and not yet closed */
    atomic_ullong conns_total;
    atomic_ullong conns_refused;        /* closed at accept: max_connections */
    atomic_ullong hs_ok, hs_failed, hs_timeout, hs_resumed;
    atomic_ullong hs_tls12, hs_tls13;
    atomic_ullong bytes_in, bytes_out;  /* plaintext client->backend, backend->client */
    atomic_ullong backend_errors;
    atomic_ullong pool_hits, pool_misses;   /* mode=http keep-alive pool (src/proxy/backend_pool_int.h) */
    atomic_ullong pool_stale_retries;       /* requests replayed after a stale pooled conn */
    atomic_int held_now;                /* gauge: handshakes held for a certificate */
    atomic_ullong held_total, held_refused;
    atomic_ullong malloc_trims;         /* free heap returned after a burst of holds (glibc) */
    atomic_ullong acme_challenges_served;
    atomic_llong refuse_logged_ms;      /* rate limit for the max_connections log line */
    atomic_ullong backend_errors_route[TF_STATS_ROUTES + 1]; /* [0] default, [i+1] route i */
    struct tf_histogram hs_seconds;     /* handshake latency, accept to finished */
    struct tf_histogram issue_seconds;  /* on-demand: first request to certificate */
    /* --cert-cache (tlsfront/tls/certcache.h): hits and misses counted by workers, the
     * rest by the control loop. */
    atomic_ullong cert_cache_hits, cert_cache_misses;
    atomic_ullong cert_cache_loads, cert_cache_load_failures, cert_cache_evictions;
    atomic_llong cert_cache_size;       /* gauge */
    struct tf_histogram cert_load_seconds; /* a stub's files read and decoded */
    /* Messages that a flood would repeat per connection or per name (rate-limited). */
    struct tf_log_limit log_order_refused; /* an order refused by the local budget */
    struct tf_log_limit log_not_allowed;   /* a name the gates denied */
    struct tf_log_limit log_redirect_cap;  /* --redirect-http per-address cap reached */
};

#define TF_STAT_ADD(s, field, v) atomic_fetch_add_explicit(&(s)->field, (v), memory_order_relaxed)

#endif
