/*
 * stats.h: the counters the admin endpoint serves. Two kinds:
 *  - struct tf_stats: process-wide, updated with relaxed atomics from any thread: the gauges
 *    that enforce process-wide limits (open connections, held handshakes), what the control
 *    loop counts, and rare events;
 *  - struct tf_wstats: one per worker, written by that worker's thread only (TF_WSTAT_ADD: a
 *    relaxed load and store, no locked instruction) on cache lines no other worker writes,
 *    and summed by the control loop when it is read (tf_wstats_fold). What a connection
 *    counts on the handshake and data paths lives here, so that W workers do not bounce one
 *    cache line between their cores on every connection.
 * Counters only ever grow, except gauges marked as such.
 */
#ifndef TF_STATS_H
#define TF_STATS_H

#include "tlsfront/base/log.h"
#include "tlsfront/base/metrics.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#define TF_STATS_ROUTES 64 /* per-route counters; later routes share the last slot */

struct tf_stats {
    atomic_int conns_open;              /* gauge: accepted and not yet closed */
    atomic_ullong conns_refused;        /* closed at accept: max_connections */
    atomic_int held_now;                /* gauge: handshakes held for a certificate */
    atomic_ullong held_refused;
    atomic_llong refuse_logged_ms;      /* rate limit for the max_connections log line */
    struct tf_histogram issue_seconds;  /* on-demand: first request to certificate */
    /* --cert-cache (tlsfront/tls/certcache.h), counted by the control loop; the workers count
     * hits and misses in their struct tf_wstats. */
    atomic_ullong cert_cache_loads, cert_cache_load_failures, cert_cache_evictions;
    atomic_llong cert_cache_size;       /* gauge */
    struct tf_histogram cert_load_seconds; /* a stub's files read and decoded */
    /* Messages that a flood would repeat per connection or per name (rate-limited). */
    struct tf_log_limit log_order_refused; /* an order refused by the local budget */
    struct tf_log_limit log_not_allowed;   /* a name the gates denied */
    struct tf_log_limit log_redirect_cap;  /* --redirect-http per-address cap reached */
};

#define TF_STAT_ADD(s, field, v) atomic_fetch_add_explicit(&(s)->field, (v), memory_order_relaxed)

/* The counters of struct tf_wstats, X(field, what). */
#define TF_WSTATS_COUNTERS(X)                                                                     \
    X(conns_total, "connections accepted")                                                      \
    X(hs_ok, "handshakes completed")                                                            \
    X(hs_failed, "handshakes failed")                                                           \
    X(hs_timeout, "handshakes timed out")                                                       \
    X(hs_resumed, "completed handshakes that resumed a session")                                \
    X(hs_tls12, "completed TLS 1.2 handshakes")                                                 \
    X(hs_tls13, "completed TLS 1.3 handshakes")                                                 \
    X(bytes_in, "plaintext bytes client -> backend (closed connections)")                       \
    X(bytes_out, "plaintext bytes backend -> client (closed connections)")                      \
    X(backend_errors, "backend connections that failed")                                        \
    X(pool_hits, "mode=http backend connections taken from the keep-alive pool")                \
    X(pool_misses, "mode=http backend connections newly connected")                             \
    X(pool_stale_retries, "requests sent again after a stale pooled connection")                \
    X(held_total, "handshakes held for a certificate")                                          \
    X(malloc_trims, "free heap returned after a burst of holds (glibc)")                        \
    X(acme_challenges_served, "TLS-ALPN-01 validation handshakes answered")                     \
    X(cert_cache_hits, "handshakes for an indexed name whose certificate was loaded")           \
    X(cert_cache_misses, "handshakes held because their name's certificate was not loaded")

/* One worker's counters. Aligned so that no other worker's data shares its cache lines. */
struct tf_wstats {
#define TF_WSTATS_FIELD(f, what) atomic_ullong f;
    alignas(64) TF_WSTATS_COUNTERS(TF_WSTATS_FIELD)
#undef TF_WSTATS_FIELD
    atomic_ullong backend_errors_route[TF_STATS_ROUTES + 1]; /* [0] default, [i+1] route i */
    struct tf_histogram hs_seconds;     /* handshake latency, accept to finished */
};

/* Zero ws and set its histogram's bounds. */
void tf_wstats_init(struct tf_wstats *ws);
/* Add ws's counts into sum (tf_wstats_init'ed, the caller's own): on the reading thread,
 * while the owner may be counting; each counter is read once, so a fold is as consistent as
 * the single-counter reads it is made of. */
void tf_wstats_fold(struct tf_wstats *sum, const struct tf_wstats *ws);

/* Count on the owner's thread only: a plain load and store, not a read-modify-write, so that
 * the handshake path takes no locked instruction. */
#define TF_WSTAT_ADD(ws, field, v)                                                                \
    atomic_store_explicit(&(ws)->field,                                                           \
                          atomic_load_explicit(&(ws)->field, memory_order_relaxed) + (v),         \
                          memory_order_relaxed)

#endif
