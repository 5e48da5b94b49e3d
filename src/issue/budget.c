/*
 * budget.c: the on-demand issuance budget of budget.h. Owns a token bucket, the in-flight
 * count, the account-wide window of new orders, and two bounded tables (lru.c, no eviction):
 * per-name state (backoff, authorization-failure and duplicate-certificate windows, in
 * flight) and per-registered-domain state (certificate window, in flight). An entry's expiry
 * is the moment it stops mattering, so lookups and tf_budget_prune() drop it then; entries
 * with an order in flight never expire. Admission only reads, so refused names cost nothing.
 * Never does I/O, never logs (the caller logs the decision with the reason we return), never
 * reads a clock.
 */
#include "tlsfront/issue/budget.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/lru.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define TOKEN_UNITS 60000 /* one token in bucket units: refill is rate_per_min units per ms */
#define PRUNE_EVERY_MS 1000

/* A sliding window: event times in arrival order, in a growing ring buffer. */
struct tswin {
    int64_t *ts;
    uint32_t head, n, cap;
};

struct name_state {
    bool in_flight;
    uint32_t failures;     /* consecutive failed orders */
    int64_t backoff_until; /* ms, 0 = none */
    int64_t last_delay;    /* ms of the last backoff; the failure count is kept as long again */
    struct tswin authz;    /* validation failures (CA: per identifier per account) */
    struct tswin dup;      /* certificates issued for this exact name */
};

struct domain_state {
    uint32_t in_flight;
    struct tswin certs; /* certificates issued under this registered domain */
};

struct tf_budget {
    struct tf_budget_limits lim;
    int64_t tokens;         /* bucket units */
    int64_t tokens_at;      /* ms of the last refill; INT64_MIN before the first */
    uint32_t in_flight;
    struct tswin ca_orders; /* account-wide new orders */
    struct tf_lru *names;   /* name -> struct name_state */
    struct tf_lru *domains; /* registered domain -> struct domain_state */
    int64_t last_prune;
    uint64_t rng;
};

/* ---- sliding windows ---- */

static void win_prune(struct tswin *w, int64_t now, int64_t window_ms)
{
    while (w->n > 0 && w->ts[w->head] <= now - window_ms) {
        w->head = (w->head + 1) % w->cap;
        w->n--;
    }
}

/* Append t. Times are expected in non-decreasing order; a clock step backwards only makes
 * the window keep an entry a little longer (conservative). */
static void win_push(struct tswin *w, int64_t t)
{
    if (w->n == w->cap) {
        uint32_t cap = w->cap ? w->cap * 2 : 4;
        int64_t *ts = tf_malloc(cap * sizeof(*ts));
        for (uint32_t i = 0; i < w->n; i++)
            ts[i] = w->ts[(w->head + i) % w->cap];
        free(w->ts);
        w->ts = ts;
        w->cap = cap;
        w->head = 0;
    }
    w->ts[(w->head + w->n) % w->cap] = t;
    w->n++;
}

static int64_t win_oldest(const struct tswin *w) { return w->ts[w->head]; }

static int64_t win_last(const struct tswin *w)
{
    return w->n ? w->ts[(w->head + w->n - 1) % w->cap] : INT64_MIN;
}

static int64_t ms_of(uint32_t s) { return (int64_t)s * 1000; }

/* Entries left before a limit of max per window_s is reached (prunes first). */
static uint32_t win_left(struct tswin *w, int64_t now, uint32_t max, uint32_t window_s,
                         uint32_t extra)
{
    win_prune(w, now, ms_of(window_s));
    uint64_t used = (uint64_t)w->n + extra;
    return used >= max ? 0 : (uint32_t)(max - used);
}

/* Like win_left(), but UINT32_MAX for a disabled limit (max 0). */
static uint32_t left_or_max(struct tswin *w, int64_t now, uint32_t max, uint32_t window_s,
                            uint32_t extra)
{
    return max ? win_left(w, now, max, window_s, extra) : UINT32_MAX;
}

/* ---- state entries ---- */

static void name_state_free(void *p)
{
    struct name_state *ns = p;
    free(ns->authz.ts);
    free(ns->dup.ts);
    free(ns);
}

static void domain_state_free(void *p)
{
    struct domain_state *ds = p;
    free(ds->certs.ts);
    free(ds);
}

/* The moment a name's state stops mattering: nothing in flight, backoff over and its failure
 * count aged out, both windows empty. */
static int64_t name_expiry(const struct tf_budget *b, const struct name_state *ns)
{
    if (ns->in_flight)
        return TF_LRU_NEVER;
    int64_t e = ns->failures ? ns->backoff_until + ns->last_delay : INT64_MIN;
    if (ns->authz.n)
        e = TF_MAX(e, win_last(&ns->authz) + ms_of(b->lim.ca_authz_window_s));
    if (ns->dup.n)
        e = TF_MAX(e, win_last(&ns->dup) + ms_of(b->lim.dup_certs_window_s));
    return e;
}

static int64_t domain_expiry(const struct tf_budget *b, const struct domain_state *ds)
{
    if (ds->in_flight)
        return TF_LRU_NEVER;
    return ds->certs.n ? win_last(&ds->certs) + ms_of(b->lim.ca_certs_window_s) : INT64_MIN;
}

/* Drop whatever expired, at most once per PRUNE_EVERY_MS (a full table scan). */
static void maybe_prune(struct tf_budget *b, int64_t now)
{
    if (b->last_prune != INT64_MIN && now - b->last_prune < PRUNE_EVERY_MS &&
        now >= b->last_prune)
        return;
    tf_budget_prune(b, now);
}

/* Is there room for a new entry in l (pruning if it looks full)? */
static bool has_room(struct tf_budget *b, struct tf_lru *l, int64_t now)
{
    if (!tf_lru_full(l))
        return true;
    maybe_prune(b, now);
    return !tf_lru_full(l);
}

/* ---- token bucket and jitter ---- */

static void bucket_refill(struct tf_budget *b, int64_t now)
{
    int64_t cap = (int64_t)b->lim.issue_burst * TOKEN_UNITS;
    if (b->tokens_at == INT64_MIN || now < b->tokens_at) {
        b->tokens_at = now;
        return;
    }
    int64_t elapsed = now - b->tokens_at;
    int64_t add = elapsed > cap ? cap : elapsed * (int64_t)b->lim.issue_rate_per_min;
    b->tokens = TF_MIN(cap, b->tokens + add);
    b->tokens_at = now;
}

/* xorshift64*: jitter only, not security. */
static uint64_t rng_next(struct tf_budget *b)
{
    b->rng ^= b->rng >> 12;
    b->rng ^= b->rng << 25;
    b->rng ^= b->rng >> 27;
    return b->rng * 0x2545F4914F6CDD1DULL;
}

/* base * 2^(failures-1), capped at max, then +- jitter percent. */
static int64_t backoff_delay(struct tf_budget *b, uint32_t failures)
{
    int64_t cap = ms_of(b->lim.backoff_max_s), d = ms_of(b->lim.backoff_base_s);
    for (uint32_t i = 1; i < failures && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    int64_t span = d * (int64_t)b->lim.backoff_jitter_pct / 100;
    if (span > 0)
        d += (int64_t)(rng_next(b) % (uint64_t)(2 * span + 1)) - span;
    return d;
}

/* ---- public API ---- */

const struct tf_budget_limits *tf_budget_limits_of(const struct tf_budget *b)
{
    return &b->lim;
}

struct tf_budget_limits tf_budget_limits_default(void)
{
    struct tf_budget_limits l = {
        .issue_rate_per_min = 10,
        .issue_burst = 20,
        .max_orders = 4,
        .max_names = 10000,
        .backoff_base_s = 60,
        .backoff_max_s = 86400,
        .backoff_jitter_pct = 10,
        .max_tracked = 100000,
        .ca_orders_per_account = 300,
        .ca_orders_window_s = 3 * 3600,
        .ca_certs_per_domain = 50,
        .ca_certs_window_s = 7 * 86400,
        .ca_authz_failures = 5,
        .ca_authz_window_s = 3600,
        .dup_certs_per_name = 5,
        .dup_certs_window_s = 7 * 86400,
    };
    return l;
}

struct tf_budget *tf_budget_new(const struct tf_budget_limits *limits)
{
    struct tf_budget *b = tf_calloc(1, sizeof(*b));
    b->lim = *limits;
    if (b->lim.max_tracked == 0)
        b->lim.max_tracked = 100000;
    if (b->lim.issue_rate_per_min && b->lim.issue_burst == 0)
        b->lim.issue_burst = 1;
    if (b->lim.backoff_jitter_pct > 100)
        b->lim.backoff_jitter_pct = 100;
    b->tokens = (int64_t)b->lim.issue_burst * TOKEN_UNITS;
    b->tokens_at = INT64_MIN;
    b->last_prune = INT64_MIN;
    b->names = tf_lru_new(b->lim.max_tracked, name_state_free);
    b->domains = tf_lru_new(b->lim.max_tracked, domain_state_free);
    b->rng = b->lim.rng_seed;
    if (b->rng == 0 && getrandom(&b->rng, sizeof(b->rng), GRND_NONBLOCK) != sizeof(b->rng))
        b->rng = tf_mono_ms();
    b->rng |= 1; /* xorshift state must be non-zero */
    return b;
}

void tf_budget_free(struct tf_budget *b)
{
    if (!b)
        return;
    tf_lru_free(b->names);
    tf_lru_free(b->domains);
    free(b->ca_orders.ts);
    free(b);
}

static int refuse(int code, char *why, size_t whylen, int64_t retry_at, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* Fill why with the formatted reason plus " retry_at_ms=<T>" when retry_at > 0. */
static int refuse(int code, char *why, size_t whylen, int64_t retry_at, const char *fmt, ...)
{
    if (!why || whylen == 0)
        return code;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    if (retry_at > 0 && n >= 0 && (size_t)n < whylen)
        snprintf(why + n, whylen - (size_t)n, " retry_at_ms=%" PRId64, retry_at);
    return code;
}

/* The checks that need no per-name or per-domain state. */
static int admit_global(struct tf_budget *b, int64_t now, int n_managed, char *why, size_t wl)
{
    const struct tf_budget_limits *l = &b->lim;
    if (l->max_names && n_managed >= 0 && (uint32_t)n_managed >= l->max_names)
        return refuse(TF_EDENIED, why, wl, 0, "names_cap managed=%d max=%u", n_managed,
                      l->max_names);
    if (l->max_orders && b->in_flight >= l->max_orders)
        return refuse(TF_EBUSY, why, wl, 0, "max_orders in_flight=%u", b->in_flight);
    if (l->issue_rate_per_min) {
        bucket_refill(b, now);
        if (b->tokens < TOKEN_UNITS) {
            int64_t need = TOKEN_UNITS - b->tokens, rate = l->issue_rate_per_min;
            return refuse(TF_EBUSY, why, wl, now + (need + rate - 1) / rate,
                          "rate limit=%u/min burst=%u", l->issue_rate_per_min, l->issue_burst);
        }
    }
    if (l->ca_orders_per_account &&
        win_left(&b->ca_orders, now, l->ca_orders_per_account, l->ca_orders_window_s, 0) == 0)
        return refuse(TF_EBUSY, why, wl,
                      win_oldest(&b->ca_orders) + ms_of(l->ca_orders_window_s),
                      "ca_new_orders %u per %us", l->ca_orders_per_account,
                      l->ca_orders_window_s);
    return 0;
}

/* The per-name windows. ns may be NULL. */
static int admit_name(struct tf_budget *b, struct name_state *ns, int64_t now, char *why,
                      size_t wl)
{
    const struct tf_budget_limits *l = &b->lim;
    if (!ns)
        return 0;
    if (l->ca_authz_failures &&
        win_left(&ns->authz, now, l->ca_authz_failures, l->ca_authz_window_s, 0) == 0)
        return refuse(TF_EBUSY, why, wl, win_oldest(&ns->authz) + ms_of(l->ca_authz_window_s),
                      "ca_failed_authz %u per %us", l->ca_authz_failures, l->ca_authz_window_s);
    if (l->dup_certs_per_name &&
        win_left(&ns->dup, now, l->dup_certs_per_name, l->dup_certs_window_s, 0) == 0)
        return refuse(TF_EBUSY, why, wl, win_oldest(&ns->dup) + ms_of(l->dup_certs_window_s),
                      "ca_duplicate %u per %us", l->dup_certs_per_name, l->dup_certs_window_s);
    return 0;
}

static int admit_domain(struct tf_budget *b, const char *rd, int64_t now, char *why, size_t wl)
{
    const struct tf_budget_limits *l = &b->lim;
    if (!rd || !l->ca_certs_per_domain)
        return 0;
    struct domain_state *ds = tf_lru_get(b->domains, rd, now);
    if (ds && win_left(&ds->certs, now, l->ca_certs_per_domain, l->ca_certs_window_s,
                       ds->in_flight) == 0) {
        int64_t at = ds->certs.n ? win_oldest(&ds->certs) + ms_of(l->ca_certs_window_s) : 0;
        return refuse(TF_EBUSY, why, wl, at, "ca_certs_per_domain %u per %us domain=%s",
                      l->ca_certs_per_domain, l->ca_certs_window_s, rd);
    }
    if (!ds && !has_room(b, b->domains, now))
        return refuse(TF_EBUSY, why, wl, 0, "table_full domains=%zu", tf_lru_size(b->domains));
    return 0;
}

int tf_budget_admit(struct tf_budget *b, const char *name, const char *registered_domain,
                    int64_t now_ms, int n_managed_names, char *why, size_t whylen)
{
    if (why && whylen)
        why[0] = '\0';
    struct name_state *ns = tf_lru_get(b->names, name, now_ms);
    if (ns && ns->backoff_until > now_ms)
        return refuse(TF_EDENIED, why, whylen, ns->backoff_until, "backoff failures=%u",
                      ns->failures);
    if (ns && ns->in_flight)
        return refuse(TF_EBUSY, why, whylen, 0, "order_in_flight");
    int rc = admit_global(b, now_ms, n_managed_names, why, whylen);
    if (rc == 0)
        rc = admit_name(b, ns, now_ms, why, whylen);
    if (rc == 0)
        rc = admit_domain(b, registered_domain, now_ms, why, whylen);
    if (rc == 0 && !ns && !has_room(b, b->names, now_ms))
        rc = refuse(TF_EBUSY, why, whylen, 0, "table_full names=%zu", tf_lru_size(b->names));
    return rc;
}

int tf_budget_order_started(struct tf_budget *b, const char *name, const char *registered_domain,
                            int64_t now_ms)
{
    struct name_state *ns = tf_lru_get(b->names, name, now_ms);
    struct domain_state *ds =
        registered_domain ? tf_lru_get(b->domains, registered_domain, now_ms) : NULL;
    if ((!ns && !has_room(b, b->names, now_ms)) ||
        (registered_domain && !ds && !has_room(b, b->domains, now_ms)))
        return TF_EBUSY;
    if (!ns) {
        ns = tf_calloc(1, sizeof(*ns));
        tf_lru_put(b->names, name, ns, TF_LRU_NEVER);
    }
    if (registered_domain && !ds) {
        ds = tf_calloc(1, sizeof(*ds));
        tf_lru_put(b->domains, registered_domain, ds, TF_LRU_NEVER);
    }
    if (b->lim.issue_rate_per_min) {
        bucket_refill(b, now_ms);
        b->tokens = TF_MAX(0, b->tokens - TOKEN_UNITS);
    }
    if (b->lim.ca_orders_per_account) {
        win_prune(&b->ca_orders, now_ms, ms_of(b->lim.ca_orders_window_s));
        win_push(&b->ca_orders, now_ms);
    }
    if (!ns->in_flight) {
        ns->in_flight = true;
        b->in_flight++;
        if (ds)
            ds->in_flight++;
    }
    tf_lru_set_expiry(b->names, name, TF_LRU_NEVER);
    if (ds)
        tf_lru_set_expiry(b->domains, registered_domain, TF_LRU_NEVER);
    return 0;
}

bool tf_budget_unpause(struct tf_budget *b, const char *name, int64_t now_ms)
{
    struct name_state *ns = tf_lru_get(b->names, name, now_ms);
    if (!ns || (!ns->failures && !ns->backoff_until))
        return false;
    bool was = ns->backoff_until > now_ms;
    ns->failures = 0;
    ns->backoff_until = 0;
    ns->last_delay = 0;
    return was;
}

/* Record the outcome on the name's state. */
static void name_done(struct tf_budget *b, struct name_state *ns, bool ok, bool vfail,
                      int64_t now)
{
    const struct tf_budget_limits *l = &b->lim;
    if (ok) {
        ns->failures = 0;
        ns->backoff_until = 0;
        ns->last_delay = 0;
        if (l->dup_certs_per_name) {
            win_prune(&ns->dup, now, ms_of(l->dup_certs_window_s));
            win_push(&ns->dup, now);
        }
        return;
    }
    if (ns->failures < UINT32_MAX)
        ns->failures++;
    ns->last_delay = l->backoff_base_s ? backoff_delay(b, ns->failures) : 0;
    ns->backoff_until = ns->last_delay ? now + ns->last_delay : 0;
    if (vfail && l->ca_authz_failures) {
        win_prune(&ns->authz, now, ms_of(l->ca_authz_window_s));
        win_push(&ns->authz, now);
    }
}

void tf_budget_order_done(struct tf_budget *b, const char *name, const char *registered_domain,
                          bool ok, bool validation_failed, int64_t now_ms)
{
    struct name_state *ns = tf_lru_get(b->names, name, now_ms);
    struct domain_state *ds =
        registered_domain ? tf_lru_get(b->domains, registered_domain, now_ms) : NULL;
    if (ns && ns->in_flight) {
        ns->in_flight = false;
        if (b->in_flight)
            b->in_flight--;
        if (ds && ds->in_flight)
            ds->in_flight--;
    }
    if (!ns && has_room(b, b->names, now_ms)) {
        ns = tf_calloc(1, sizeof(*ns));
        tf_lru_put(b->names, name, ns, TF_LRU_NEVER);
    }
    if (ns) {
        name_done(b, ns, ok, validation_failed, now_ms);
        int64_t e = name_expiry(b, ns);
        if (e <= now_ms)
            tf_lru_del(b->names, name);
        else
            tf_lru_set_expiry(b->names, name, e);
    }
    if (ok && registered_domain && b->lim.ca_certs_per_domain && !ds &&
        has_room(b, b->domains, now_ms)) {
        ds = tf_calloc(1, sizeof(*ds));
        tf_lru_put(b->domains, registered_domain, ds, TF_LRU_NEVER);
    }
    if (ds) {
        if (ok && b->lim.ca_certs_per_domain) {
            win_prune(&ds->certs, now_ms, ms_of(b->lim.ca_certs_window_s));
            win_push(&ds->certs, now_ms);
        }
        int64_t e = domain_expiry(b, ds);
        if (e <= now_ms)
            tf_lru_del(b->domains, registered_domain);
        else
            tf_lru_set_expiry(b->domains, registered_domain, e);
    }
}

int64_t tf_budget_backoff_until(struct tf_budget *b, const char *name)
{
    struct name_state *ns = tf_lru_peek(b->names, name);
    return ns ? ns->backoff_until : 0;
}

void tf_budget_remaining(struct tf_budget *b, const char *name, const char *registered_domain,
                         int64_t now_ms, struct tf_budget_remaining *out)
{
    const struct tf_budget_limits *l = &b->lim;
    memset(out, 0, sizeof(*out));
    if (l->issue_rate_per_min) {
        bucket_refill(b, now_ms);
        out->tokens = (uint32_t)(b->tokens / TOKEN_UNITS);
    } else {
        out->tokens = UINT32_MAX;
    }
    out->orders_in_flight = b->in_flight;
    out->ca_orders =
        left_or_max(&b->ca_orders, now_ms, l->ca_orders_per_account, l->ca_orders_window_s, 0);
    struct name_state *ns = name ? tf_lru_get(b->names, name, now_ms) : NULL;
    struct domain_state *ds =
        registered_domain ? tf_lru_get(b->domains, registered_domain, now_ms) : NULL;
    struct tswin none = {0};
    out->ca_authz_name = left_or_max(ns ? &ns->authz : &none, now_ms, l->ca_authz_failures,
                                     l->ca_authz_window_s, 0);
    out->dup_certs_name = left_or_max(ns ? &ns->dup : &none, now_ms, l->dup_certs_per_name,
                                      l->dup_certs_window_s, 0);
    out->name_failures = ns ? ns->failures : 0;
    out->ca_certs_domain = left_or_max(ds ? &ds->certs : &none, now_ms, l->ca_certs_per_domain,
                                       l->ca_certs_window_s, ds ? ds->in_flight : 0);
    out->tracked_names = tf_lru_size(b->names);
    out->tracked_domains = tf_lru_size(b->domains);
}

size_t tf_budget_prune(struct tf_budget *b, int64_t now_ms)
{
    b->last_prune = now_ms;
    if (b->lim.ca_orders_per_account)
        win_prune(&b->ca_orders, now_ms, ms_of(b->lim.ca_orders_window_s));
    return tf_lru_prune(b->names, now_ms) + tf_lru_prune(b->domains, now_ms);
}
