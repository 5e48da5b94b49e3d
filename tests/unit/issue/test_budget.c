/*
 * test_budget.c: the issuance budget with an injected clock: token bucket refill and burst,
 * the concurrent-order cap and one order per name, the managed-names cap, exponential
 * backoff with bounded jitter (and its reset on success and after a quiet period), the CA
 * mirror windows (301st order in 3 h, 51st certificate per registered domain in a week, 6th
 * failed validation per name in an hour, 6th duplicate certificate), memory bounds under a
 * million random names, the remaining counts and pruning.
 */
#include "tlsfront/issue/budget.h"
#include "tlsfront/base/common.h"
#include "tf_test.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define T0 INT64_C(1700000000000) /* an arbitrary unix time in ms */
#define HOUR_MS INT64_C(3600000)
#define DAY_MS (24 * HOUR_MS)

/* Every limit off; each test turns on the one it is about. */
static struct tf_budget_limits limits_none(void)
{
    struct tf_budget_limits l;
    memset(&l, 0, sizeof(l));
    l.max_tracked = 1000;
    l.rng_seed = 42;
    return l;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* The retry_at_ms=<T> a refusal carries, or -1. */
static int64_t retry_at(const char *why)
{
    const char *p = strstr(why, "retry_at_ms=");
    long long v;
    return p && sscanf(p + 12, "%lld", &v) == 1 ? (int64_t)v : -1;
}

/* Admit, start and finish one order; returns admit's code. */
static int run_order(struct tf_budget *b, const char *name, const char *rd, int64_t now, bool ok,
                     bool vfail, char *why, size_t wl)
{
    int rc = tf_budget_admit(b, name, rd, now, 0, why, wl);
    if (rc != 0)
        return rc;
    CHECK_EQ_INT(tf_budget_order_started(b, name, rd, now), 0);
    tf_budget_order_done(b, name, rd, ok, vfail, now);
    return 0;
}

static void test_defaults(void)
{
    struct tf_budget_limits l = tf_budget_limits_default();
    CHECK_EQ_INT(l.issue_rate_per_min, 10);
    CHECK_EQ_INT(l.issue_burst, 20);
    CHECK_EQ_INT(l.max_orders, 4);
    CHECK_EQ_INT(l.max_names, 10000);
    CHECK_EQ_INT(l.backoff_base_s, 60);
    CHECK_EQ_INT(l.backoff_max_s, 86400);
    CHECK_EQ_INT(l.ca_orders_per_account, 300);
    CHECK_EQ_INT(l.ca_orders_window_s, 3 * 3600);
    CHECK_EQ_INT(l.ca_certs_per_domain, 50);
    CHECK_EQ_INT(l.ca_certs_window_s, 7 * 86400);
    CHECK_EQ_INT(l.ca_authz_failures, 5);
    CHECK_EQ_INT(l.ca_authz_window_s, 3600);
    CHECK_EQ_INT(l.dup_certs_per_name, 5);
    CHECK_EQ_INT(l.dup_certs_window_s, 7 * 86400);
}

static void test_token_bucket(void)
{
    struct tf_budget_limits l = limits_none();
    l.issue_rate_per_min = 10; /* one token per 6 s */
    l.issue_burst = 20;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160], name[64];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "n%d.example.com", i);
        CHECK_EQ_INT(run_order(b, name, "example.com", T0, true, false, why, sizeof(why)), 0);
    }
    CHECK_EQ_INT(tf_budget_admit(b, "x.example.com", "example.com", T0, 0, why, sizeof(why)),
                 TF_EBUSY);
    CHECK(starts_with(why, "rate "));
    CHECK_EQ_INT(retry_at(why), T0 + 6000);
    CHECK_EQ_INT(tf_budget_admit(b, "x.example.com", NULL, T0 + 5999, 0, why, sizeof(why)),
                 TF_EBUSY);
    CHECK_EQ_INT(run_order(b, "x.example.com", NULL, T0 + 6000, true, false, why, sizeof(why)),
                 0);
    /* The token was spent: the next one comes 6 s later. */
    CHECK_EQ_INT(tf_budget_admit(b, "y.example.com", NULL, T0 + 6000, 0, why, sizeof(why)),
                 TF_EBUSY);
    CHECK_EQ_INT(retry_at(why), T0 + 12000);
    /* A long pause refills only up to the burst. */
    int64_t later = T0 + DAY_MS;
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, NULL, NULL, later, &rem);
    CHECK_EQ_INT(rem.tokens, 20);
    int admitted = 0;
    for (int i = 0; i < 30; i++) {
        snprintf(name, sizeof(name), "late%d.example.com", i);
        if (run_order(b, name, NULL, later, true, false, why, sizeof(why)) == 0)
            admitted++;
    }
    CHECK_EQ_INT(admitted, 20);
    tf_budget_free(b);
}

static void test_concurrency_cap(void)
{
    struct tf_budget_limits l = limits_none();
    l.max_orders = 4;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160], name[64];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof(name), "c%d.example.com", i);
        CHECK_EQ_INT(tf_budget_admit(b, name, "example.com", T0, 0, why, sizeof(why)), 0);
        CHECK_EQ_INT(tf_budget_order_started(b, name, "example.com", T0), 0);
    }
    CHECK_EQ_INT(tf_budget_admit(b, "c4.example.com", "example.com", T0, 0, why, sizeof(why)),
                 TF_EBUSY);
    CHECK(starts_with(why, "max_orders"));
    /* One order per name, whatever the global cap. */
    CHECK_EQ_INT(tf_budget_admit(b, "c0.example.com", "example.com", T0, 0, why, sizeof(why)),
                 TF_EBUSY);
    CHECK(starts_with(why, "order_in_flight"));
    tf_budget_order_done(b, "c1.example.com", "example.com", true, false, T0 + 1);
    CHECK_EQ_INT(tf_budget_admit(b, "c4.example.com", "example.com", T0 + 1, 0, why,
                                 sizeof(why)),
                 0);
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, NULL, NULL, T0 + 1, &rem);
    CHECK_EQ_INT(rem.orders_in_flight, 3);
    /* A done for a name never started changes no in-flight count. */
    tf_budget_order_done(b, "stranger.example.com", "example.com", false, false, T0 + 2);
    tf_budget_remaining(b, NULL, NULL, T0 + 2, &rem);
    CHECK_EQ_INT(rem.orders_in_flight, 3);
    tf_budget_free(b);
}

static void test_names_cap(void)
{
    struct tf_budget_limits l = limits_none();
    l.max_names = 10;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160];
    CHECK_EQ_INT(tf_budget_admit(b, "a.example.com", "example.com", T0, 9, why, sizeof(why)), 0);
    CHECK_EQ_INT(tf_budget_admit(b, "a.example.com", "example.com", T0, 10, why, sizeof(why)),
                 TF_EDENIED);
    CHECK(starts_with(why, "names_cap"));
    CHECK_EQ_INT(retry_at(why), -1);
    /* Admission alone records nothing. */
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, NULL, NULL, T0, &rem);
    CHECK_EQ_INT(rem.tracked_names, 0);
    CHECK_EQ_INT(rem.tracked_domains, 0);
    tf_budget_free(b);
}

/* Fail name repeatedly, each time right when its backoff ends; check every delay. */
static void test_backoff(void)
{
    struct tf_budget_limits l = limits_none();
    l.backoff_base_s = 60;
    l.backoff_max_s = 3600;
    l.backoff_jitter_pct = 10;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160];
    int64_t now = T0, delays[10];
    for (int n = 1; n <= 10; n++) {
        CHECK_EQ_INT(run_order(b, "f.example.com", "example.com", now, false, false, why,
                               sizeof(why)),
                     0);
        int64_t until = tf_budget_backoff_until(b, "f.example.com");
        int64_t want = TF_MIN(INT64_C(60000) << (n - 1), INT64_C(3600000));
        delays[n - 1] = until - now;
        CHECK(delays[n - 1] >= want * 9 / 10 && delays[n - 1] <= want * 11 / 10);
        CHECK_EQ_INT(tf_budget_admit(b, "f.example.com", "example.com", until - 1, 0, why,
                                     sizeof(why)),
                     TF_EDENIED);
        CHECK(starts_with(why, "backoff"));
        CHECK_EQ_INT(retry_at(why), until);
        now = until;
    }
    /* Growth is exponential until the cap, and jitter makes equal steps differ. */
    CHECK(delays[1] > delays[0] * 3 / 2 && delays[4] > delays[3] * 3 / 2);
    CHECK(delays[8] != delays[9]);
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, "f.example.com", NULL, now, &rem);
    CHECK_EQ_INT(rem.name_failures, 10);
    /* Success resets: the next failure backs off by the base again. */
    CHECK_EQ_INT(run_order(b, "f.example.com", NULL, now, true, false, why, sizeof(why)), 0);
    CHECK_EQ_INT(tf_budget_backoff_until(b, "f.example.com"), 0);
    CHECK_EQ_INT(run_order(b, "f.example.com", NULL, now, false, false, why, sizeof(why)), 0);
    int64_t d = tf_budget_backoff_until(b, "f.example.com") - now;
    CHECK(d >= 54000 && d <= 66000);
    /* Left alone for as long again as its last delay, the name starts over. */
    now += 2 * d + 1;
    CHECK_EQ_INT(tf_budget_prune(b, now), 1);
    CHECK_EQ_INT(tf_budget_backoff_until(b, "f.example.com"), 0);
    tf_budget_free(b);
}

/* The operator's unpause: the backoff ends now and the failure count starts over. */
static void test_unpause(void)
{
    struct tf_budget_limits l = limits_none();
    l.backoff_base_s = 60;
    l.backoff_max_s = 3600;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160];
    CHECK(!tf_budget_unpause(b, "u.example.com", T0)); /* nothing known */
    for (int n = 0; n < 3; n++)
        run_order(b, "u.example.com", NULL, T0, false, false, why, sizeof(why));
    CHECK_EQ_INT(tf_budget_admit(b, "u.example.com", NULL, T0 + 1, 0, why, sizeof(why)),
                 TF_EDENIED);
    CHECK(tf_budget_unpause(b, "u.example.com", T0 + 1));
    CHECK_EQ_INT(tf_budget_backoff_until(b, "u.example.com"), 0);
    CHECK_EQ_INT(tf_budget_admit(b, "u.example.com", NULL, T0 + 1, 0, why, sizeof(why)), 0);
    CHECK(!tf_budget_unpause(b, "u.example.com", T0 + 1)); /* already clear */
    /* Starts over: the next failure backs off by the base, not by 2^3 times it. */
    run_order(b, "u.example.com", NULL, T0 + 2, false, false, why, sizeof(why));
    int64_t d = tf_budget_backoff_until(b, "u.example.com") - (T0 + 2);
    CHECK(d >= 54000 && d <= 66000);
    tf_budget_free(b);
}

static void test_ca_new_orders(void)
{
    struct tf_budget_limits l = limits_none();
    l.ca_orders_per_account = 300;
    l.ca_orders_window_s = 3 * 3600;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160], name[64];
    for (int i = 0; i < 300; i++) {
        snprintf(name, sizeof(name), "o%d.example%d.com", i, i);
        CHECK_EQ_INT(run_order(b, name, NULL, T0 + i * 1000, true, false, why, sizeof(why)), 0);
    }
    int64_t t = T0 + 300 * 1000;
    CHECK_EQ_INT(tf_budget_admit(b, "o300.example.com", NULL, t, 0, why, sizeof(why)), TF_EBUSY);
    CHECK(starts_with(why, "ca_new_orders"));
    CHECK_EQ_INT(retry_at(why), T0 + 3 * HOUR_MS);
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, NULL, NULL, t, &rem);
    CHECK_EQ_INT(rem.ca_orders, 0);
    CHECK_EQ_INT(tf_budget_admit(b, "o300.example.com", NULL, T0 + 3 * HOUR_MS - 1, 0, why,
                                 sizeof(why)),
                 TF_EBUSY);
    /* The window slides: the first order drops out and exactly one more fits. */
    t = T0 + 3 * HOUR_MS;
    CHECK_EQ_INT(run_order(b, "o300.example.com", NULL, t, true, false, why, sizeof(why)), 0);
    CHECK_EQ_INT(tf_budget_admit(b, "o301.example.com", NULL, t, 0, why, sizeof(why)), TF_EBUSY);
    CHECK_EQ_INT(retry_at(why), T0 + 1000 + 3 * HOUR_MS);
    tf_budget_free(b);
}

static void test_ca_certs_per_domain(void)
{
    struct tf_budget_limits l = limits_none();
    l.ca_certs_per_domain = 50;
    l.ca_certs_window_s = 7 * 86400;
    struct tf_budget *b = tf_budget_new(&l);
    char why[200], name[64];
    for (int i = 0; i < 49; i++) {
        snprintf(name, sizeof(name), "s%d.example.co.uk", i);
        CHECK_EQ_INT(run_order(b, name, "example.co.uk", T0 + i, true, false, why, sizeof(why)),
                     0);
    }
    /* The 50th is in flight: it counts, so a 51st may not start. */
    CHECK_EQ_INT(tf_budget_admit(b, "s49.example.co.uk", "example.co.uk", T0 + 100, 0, why,
                                 sizeof(why)),
                 0);
    CHECK_EQ_INT(tf_budget_order_started(b, "s49.example.co.uk", "example.co.uk", T0 + 100), 0);
    CHECK_EQ_INT(tf_budget_admit(b, "s50.example.co.uk", "example.co.uk", T0 + 101, 0, why,
                                 sizeof(why)),
                 TF_EBUSY);
    CHECK(starts_with(why, "ca_certs_per_domain"));
    tf_budget_order_done(b, "s49.example.co.uk", "example.co.uk", true, false, T0 + 102);
    CHECK_EQ_INT(tf_budget_admit(b, "s50.example.co.uk", "example.co.uk", T0 + 103, 0, why,
                                 sizeof(why)),
                 TF_EBUSY);
    CHECK(strstr(why, "domain=example.co.uk") != NULL);
    CHECK_EQ_INT(retry_at(why), T0 + 7 * DAY_MS);
    /* Another registered domain is unaffected. */
    CHECK_EQ_INT(tf_budget_admit(b, "s50.example.com", "example.com", T0 + 103, 0, why,
                                 sizeof(why)),
                 0);
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, NULL, "example.co.uk", T0 + 103, &rem);
    CHECK_EQ_INT(rem.ca_certs_domain, 0);
    CHECK_EQ_INT(tf_budget_admit(b, "s50.example.co.uk", "example.co.uk", T0 + 7 * DAY_MS, 0,
                                 why, sizeof(why)),
                 0);
    tf_budget_free(b);
}

static void test_ca_failed_authz(void)
{
    struct tf_budget_limits l = limits_none();
    l.ca_authz_failures = 5;
    l.ca_authz_window_s = 3600;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160];
    /* Failures that were not validation failures do not count. */
    CHECK_EQ_INT(run_order(b, "v.example.com", NULL, T0, false, false, why, sizeof(why)), 0);
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(run_order(b, "v.example.com", NULL, T0 + (i + 1) * 60000, false, true, why,
                               sizeof(why)),
                     0);
    int64_t t = T0 + 10 * 60000;
    CHECK_EQ_INT(tf_budget_admit(b, "v.example.com", NULL, t, 0, why, sizeof(why)), TF_EBUSY);
    CHECK(starts_with(why, "ca_failed_authz"));
    CHECK_EQ_INT(retry_at(why), T0 + 60000 + HOUR_MS);
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, "v.example.com", NULL, t, &rem);
    CHECK_EQ_INT(rem.ca_authz_name, 0);
    /* Without backoff the first failure left nothing to remember; the five that count are
     * held by their window. */
    CHECK_EQ_INT(rem.name_failures, 5);
    /* Per identifier: another name is fine. */
    CHECK_EQ_INT(tf_budget_admit(b, "w.example.com", NULL, t, 0, why, sizeof(why)), 0);
    CHECK_EQ_INT(tf_budget_admit(b, "v.example.com", NULL, T0 + 60000 + HOUR_MS, 0, why,
                                 sizeof(why)),
                 0);
    tf_budget_free(b);
}

static void test_duplicates(void)
{
    struct tf_budget_limits l = limits_none();
    l.dup_certs_per_name = 5;
    l.dup_certs_window_s = 7 * 86400;
    struct tf_budget *b = tf_budget_new(&l);
    char why[160];
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(run_order(b, "d.example.com", NULL, T0 + i * DAY_MS, true, false, why,
                               sizeof(why)),
                     0);
    CHECK_EQ_INT(tf_budget_admit(b, "d.example.com", NULL, T0 + 5 * DAY_MS, 0, why, sizeof(why)),
                 TF_EBUSY);
    CHECK(starts_with(why, "ca_duplicate"));
    CHECK_EQ_INT(retry_at(why), T0 + 7 * DAY_MS);
    CHECK_EQ_INT(tf_budget_admit(b, "d.example.com", NULL, T0 + 7 * DAY_MS, 0, why, sizeof(why)),
                 0);
    tf_budget_free(b);
}

static uint64_t xs(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A million random names: admission records nothing, and with every order started and failed
 * the tables stay within max_tracked, refusing new names only until old state expires. */
static void test_memory_bound(void)
{
    struct tf_budget_limits d = tf_budget_limits_default();
    struct tf_budget *b = tf_budget_new(&d);
    uint64_t seed = 0x1234567;
    char name[64], rd[48];
    for (int i = 0; i < 1000000; i++) {
        uint64_t r = xs(&seed);
        snprintf(rd, sizeof(rd), "d%" PRIx64 ".com", r >> 40);
        snprintf(name, sizeof(name), "n%" PRIx64 ".%s", r & 0xffffff, rd);
        (void)tf_budget_admit(b, name, rd, T0 + i, 0, NULL, 0);
    }
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, NULL, NULL, T0 + 1000000, &rem);
    CHECK_EQ_INT(rem.tracked_names + rem.tracked_domains, 0);
    tf_budget_free(b);

    struct tf_budget_limits l = limits_none();
    l.max_tracked = 1000;
    l.backoff_base_s = 60;
    l.backoff_max_s = 600;
    l.ca_certs_per_domain = 50;
    l.ca_certs_window_s = 7 * 86400;
    b = tf_budget_new(&l);
    size_t max_names = 0, max_domains = 0;
    int admitted = 0, table_full = 0;
    char why[160];
    for (int i = 0; i < 1000000; i++) {
        uint64_t r = xs(&seed);
        snprintf(rd, sizeof(rd), "d%" PRIx64 ".com", r >> 40);
        snprintf(name, sizeof(name), "n%" PRIx64 ".%s", r & 0xffffff, rd);
        int rc = run_order(b, name, rd, T0 + i, false, false, why, sizeof(why));
        admitted += rc == 0;
        table_full += rc == TF_EBUSY && starts_with(why, "table_full");
        tf_budget_remaining(b, NULL, NULL, T0 + i, &rem);
        max_names = TF_MAX(max_names, rem.tracked_names);
        max_domains = TF_MAX(max_domains, rem.tracked_domains);
    }
    CHECK(max_names <= 1000);
    CHECK(max_domains <= 1000);
    CHECK(table_full > 0);
    CHECK(admitted > 5000); /* expired state made room again and again */
    fprintf(stderr, "  1M names: admitted %d, table_full %d, max tracked %zu/%zu\n", admitted,
            table_full, max_names, max_domains);
    tf_budget_free(b);
}

static void test_remaining_and_prune(void)
{
    struct tf_budget_limits l = tf_budget_limits_default();
    l.rng_seed = 7;
    struct tf_budget *b = tf_budget_new(&l);
    struct tf_budget_remaining rem;
    tf_budget_remaining(b, "r.example.com", "example.com", T0, &rem);
    CHECK_EQ_INT(rem.tokens, 20);
    CHECK_EQ_INT(rem.ca_orders, 300);
    CHECK_EQ_INT(rem.ca_certs_domain, 50);
    CHECK_EQ_INT(rem.ca_authz_name, 5);
    CHECK_EQ_INT(rem.dup_certs_name, 5);
    CHECK_EQ_INT(tf_budget_order_started(b, "r.example.com", "example.com", T0), 0);
    tf_budget_remaining(b, "r.example.com", "example.com", T0, &rem);
    CHECK_EQ_INT(rem.tokens, 19);
    CHECK_EQ_INT(rem.orders_in_flight, 1);
    CHECK_EQ_INT(rem.ca_orders, 299);
    CHECK_EQ_INT(rem.ca_certs_domain, 49);
    tf_budget_order_done(b, "r.example.com", "example.com", false, true, T0);
    tf_budget_remaining(b, "r.example.com", "example.com", T0, &rem);
    CHECK_EQ_INT(rem.orders_in_flight, 0);
    CHECK_EQ_INT(rem.ca_certs_domain, 50);
    CHECK_EQ_INT(rem.ca_authz_name, 4);
    CHECK_EQ_INT(rem.name_failures, 1);
    CHECK_EQ_INT(tf_budget_order_started(b, "s.example.com", "example.com", T0), 0);
    tf_budget_order_done(b, "s.example.com", "example.com", true, false, T0);
    tf_budget_remaining(b, "s.example.com", "example.com", T0 + 6000, &rem);
    CHECK_EQ_INT(rem.tokens, 19);
    CHECK_EQ_INT(rem.ca_orders, 298);
    CHECK_EQ_INT(rem.ca_certs_domain, 49);
    CHECK_EQ_INT(rem.dup_certs_name, 4);
    CHECK_EQ_INT(rem.tracked_names, 2);
    CHECK_EQ_INT(rem.tracked_domains, 1);
    /* After a day the failure (window 1 h, backoff ~1 min) is forgotten; the certificate
     * (7-day windows) is not. After a week nothing is left. */
    CHECK_EQ_INT(tf_budget_prune(b, T0 + DAY_MS), 1);
    CHECK_EQ_INT(tf_budget_prune(b, T0 + 7 * DAY_MS), 2);
    tf_budget_remaining(b, NULL, NULL, T0 + 7 * DAY_MS, &rem);
    CHECK_EQ_INT(rem.tracked_names + rem.tracked_domains, 0);
    CHECK_EQ_INT(rem.ca_orders, 300);
    tf_budget_free(b);
    tf_budget_free(NULL);
}

int main(void)
{
    TF_TEST_RUN(test_defaults);
    TF_TEST_RUN(test_token_bucket);
    TF_TEST_RUN(test_concurrency_cap);
    TF_TEST_RUN(test_names_cap);
    TF_TEST_RUN(test_backoff);
    TF_TEST_RUN(test_unpause);
    TF_TEST_RUN(test_ca_new_orders);
    TF_TEST_RUN(test_ca_certs_per_domain);
    TF_TEST_RUN(test_ca_failed_authz);
    TF_TEST_RUN(test_duplicates);
    TF_TEST_RUN(test_memory_bound);
    TF_TEST_RUN(test_remaining_and_prune);
    return TF_TEST_DONE();
}
