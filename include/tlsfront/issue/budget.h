/*
 * budget.h: the abuse budget for on-demand issuance. Before the control loop spends an ACME
 * order on a name it asks tf_budget_admit(); the budget combines a local token bucket, a
 * concurrent-order cap, a cap on managed names, per-name exponential backoff after failures,
 * and a mirror of the CA's published rate limits (Let's Encrypt) so that we stop before the CA
 * refuses us. Pure logic: every time is passed in (unix milliseconds, or any monotonic
 * millisecond clock used consistently), no I/O, no logging, one thread.
 *
 * CA mirror (https://letsencrypt.org/docs/rate-limits/, checked 2025): New Orders per Account
 * 300 per 3 hours; Certificates per Registered Domain 50 per 7 days; Authorization Failures
 * per Identifier per Account 5 per hour; Certificates per Exact Set of Identifiers 5 per 7
 * days (we issue one name per certificate, so this is per name). The CA meters these with
 * token buckets refilling at count/period; we keep exact sliding windows of timestamps
 * instead: "at most N in any window W" never admits more than the CA's bucket of capacity N
 * refilling N per W would, so our own traffic cannot trip the CA limit, and the window gives
 * an exact "frees at" time for logs. Timestamps are stored only for events in the window, so
 * memory follows the (rate-limited) number of orders, not the number of names asked for.
 */
#ifndef TF_BUDGET_H
#define TF_BUDGET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tf_budget_limits {
    /* Local policy. A 0 disables the limit (no bucket, no cap, no backoff) except where
     * noted. */
    uint32_t issue_rate_per_min; /* token bucket refill */
    uint32_t issue_burst;        /* bucket capacity, starts full (at least 1 with a rate) */
    uint32_t max_orders;         /* orders in flight at once */
    uint32_t max_names;          /* managed names (certificates we keep) */
    uint32_t backoff_base_s;     /* first backoff after a failure */
    uint32_t backoff_max_s;      /* cap of base * 2^(n-1) */
    uint32_t backoff_jitter_pct; /* +- percent applied to each backoff (default 10) */
    uint32_t max_tracked;        /* per-name and per-domain state entries, each; 0 = 100000 */
    uint64_t rng_seed;           /* jitter PRNG seed; 0 = random */
    /* CA mirror: count per window (seconds); a count of 0 disables that limit. */
    uint32_t ca_orders_per_account;  /* 300 */
    uint32_t ca_orders_window_s;     /* 3 h */
    uint32_t ca_certs_per_domain;    /* 50 */
    uint32_t ca_certs_window_s;      /* 7 days */
    uint32_t ca_authz_failures;      /* 5 */
    uint32_t ca_authz_window_s;      /* 1 h */
    uint32_t dup_certs_per_name;     /* 5: local hard cap on certificates for one exact name */
    uint32_t dup_certs_window_s;     /* 7 days */
};

/* The defaults listed above (10/min, burst 20, 4 orders, 10000 names, backoff 60 s..1 day
 * +-10 %, 100000 tracked, Let's Encrypt's limits). */
struct tf_budget_limits tf_budget_limits_default(void);

struct tf_budget;

/* Copies *limits. Never fails (aborts on OOM). */
struct tf_budget *tf_budget_new(const struct tf_budget_limits *limits);
void tf_budget_free(struct tf_budget *b);
/* The limits b was made with (borrowed, valid until tf_budget_free). */
const struct tf_budget_limits *tf_budget_limits_of(const struct tf_budget *b);

/*
 * May an order for name (normalised) start now? registered_domain comes from
 * tf_psl_registered_domain(). n_managed_names is the number of names we already hold
 * certificates for (pass 0 for a renewal, which adds no name). Checks only, records nothing
 * and allocates nothing, so a flood of refused names costs no memory. Returns:
 *   0           an order may start: call tf_budget_order_started() right away;
 *   TF_EBUSY    not now: "order_in_flight", "max_orders", "rate", "ca_new_orders",
 *               "ca_failed_authz", "ca_duplicate", "ca_certs_per_domain", "table_full";
 *   TF_EDENIED  "backoff" (until a time) or "names_cap".
 * why (may be NULL) receives "<reason> <details>", ending in " retry_at_ms=<T>" when the
 * time the limit frees is computable.
 */
int tf_budget_admit(struct tf_budget *b, const char *name, const char *registered_domain,
                    int64_t now_ms, int n_managed_names, char *why, size_t whylen);

/* Record the start of an admitted order: takes a token, counts it against the CA's order
 * window and the concurrency caps. Returns 0, or TF_EBUSY when the state tables are full (only
 * possible without a preceding successful admit); nothing is recorded then. */
int tf_budget_order_started(struct tf_budget *b, const char *name, const char *registered_domain,
                            int64_t now_ms);

/* Record the end of a started order. ok: a certificate was issued (counts against the
 * per-domain and duplicate windows, resets the name's backoff). !ok: the backoff grows to
 * base * 2^(n-1) capped at max, +- jitter; validation_failed also counts an authorization
 * failure against the CA's per-identifier window. The failure count outlives the backoff by
 * as long again as the last delay: a name that fails again soon backs off longer, one left
 * alone that long starts over. An order not known as started is still recorded (best effort)
 * but does not change the in-flight counts. */
void tf_budget_order_done(struct tf_budget *b, const char *name, const char *registered_domain,
                          bool ok, bool validation_failed, int64_t now_ms);

/* The operator cleared name's backoff: its failure count starts over. The CA-mirror
 * windows are kept (the CA still counts those orders). Returns true when name was backed
 * off at now_ms. */
bool tf_budget_unpause(struct tf_budget *b, const char *name, int64_t now_ms);

/* Unix ms until which name is backed off, or 0 when it is not. */
int64_t tf_budget_backoff_until(struct tf_budget *b, const char *name);

/* Remaining budget for logs and metrics. name and registered_domain may be NULL (their fields
 * then report the full allowance). A disabled limit reports UINT32_MAX. */
struct tf_budget_remaining {
    uint32_t tokens;          /* whole tokens in the local bucket */
    uint32_t orders_in_flight;
    uint32_t ca_orders;       /* new orders left in the CA's 3-hour window */
    uint32_t ca_certs_domain; /* certificates left for the registered domain this week */
    uint32_t ca_authz_name;   /* authorization failures left for the name this hour */
    uint32_t dup_certs_name;  /* certificates left for the exact name this week */
    uint32_t name_failures;   /* consecutive failures of the name (backoff exponent) */
    size_t tracked_names, tracked_domains;
};
void tf_budget_remaining(struct tf_budget *b, const char *name, const char *registered_domain,
                         int64_t now_ms, struct tf_budget_remaining *out);

/* Forget per-name and per-domain state that no longer matters (backoff over, windows empty,
 * nothing in flight). Also done on access and when a table fills. Returns entries removed. */
size_t tf_budget_prune(struct tf_budget *b, int64_t now_ms);

#endif
