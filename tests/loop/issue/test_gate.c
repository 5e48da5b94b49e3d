/*
 * test_gate.c: the issuance gate's decision table (gate_world.h: the loop, a scripted --ask
 * endpoint on 127.0.0.1 port 0): allow patterns alone (no request), both (pattern AND ask: a
 * name outside the patterns is never asked), neither, bad names refused, the workers' pure
 * local half (tf_name_may_issue), and the LRU map the gate caches its answers in. What the
 * endpoint itself does to a verdict (caching, timeouts, limits) is test_gate_ask.c's.
 */
#include "gate_world.h"
#include "tlsfront/base/lru.h"
#include "tlsfront/base/name.h"

/* --allow alone: a pattern decides, the endpoint is never asked. */
static void test_allow_only(void)
{
    char *allow[] = {"static.example.com", "*.wild.example.com"};
    int before = srv.requests;
    struct tf_gate *g = tf_gate_new(loop, NULL, allow, 2, NULL, 0, 0, 0, 0);
    CHECK(g != NULL);
    struct result r = ask(g, "static.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_ALLOW);
    CHECK_EQ_STR(r.why, "allow_pattern");
    r = ask(g, "x.wild.example.com");
    CHECK_EQ_STR(r.why, "allow_pattern");
    r = ask(g, "other.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "not_allowed");
    /* Two labels below the wildcard: not covered. */
    r = ask(g, "a.b.wild.example.com");
    CHECK_EQ_STR(r.why, "not_allowed");
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.pattern_allow, 2);
    CHECK_EQ_INT(st.not_allowed, 2);
    struct result bad = {0};
    CHECK_EQ_INT(tf_gate_check(g, "a.example.com&x=1", on_verdict, &bad, NULL), TF_EINVAL);
    CHECK_EQ_INT(tf_gate_check(g, "A.example.com", on_verdict, &bad, NULL), TF_EINVAL);
    close_gate(g);
    CHECK_EQ_INT(bad.calls, 0);
    CHECK_EQ_INT(srv.requests, before);
    CHECK(tf_gate_new(loop, NULL, allow, 2, url, 0, 0, 0, 0) == NULL); /* ask without client */
    CHECK(tf_gate_eager("static.example.com"));
    CHECK(!tf_gate_eager("*.wild.example.com"));
}

/* --allow and --ask together: a name must match a pattern AND the endpoint must say yes; a
 * name outside the patterns is refused without a request. */
static void test_allow_and_ask(void)
{
    char *allow[] = {"*.both.example.com", "exact.example.com"};
    struct tf_gate *g = gate(allow, 2, url, 0, 60, 0, 0);
    int before = srv.requests;
    struct result r = ask(g, "allow-x.both.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_ALLOW);
    CHECK_EQ_STR(r.why, "ask_allow");
    CHECK_EQ_INT(srv.requests, before + 1);
    r = ask(g, "deny-x.both.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "ask_deny");
    CHECK_EQ_INT(srv.requests, before + 2);
    /* An exact pattern is asked about too (the endpoint answers 404 to it: deny). */
    r = ask(g, "exact.example.com");
    CHECK_EQ_STR(r.why, "ask_deny");
    CHECK_EQ_INT(srv.requests, before + 3);
    /* The endpoint would allow these, but no pattern matches: never asked. */
    r = ask(g, "allow-y.other.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "not_allowed");
    r = ask(g, "allow.a.both.example.com");
    CHECK_EQ_STR(r.why, "not_allowed");
    CHECK_EQ_INT(srv.requests, before + 3);
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.pattern_allow, 0);
    CHECK_EQ_INT(st.not_allowed, 2);
    CHECK_EQ_INT(st.ask_requests, 3);
    CHECK_EQ_INT(st.ask_allow, 1);
    CHECK_EQ_INT(st.ask_deny, 2);
    close_gate(g);
}

/* Neither: on-demand is off, every name is refused without a request. */
static void test_neither(void)
{
    int before = srv.requests;
    struct tf_gate *g = tf_gate_new(loop, NULL, NULL, 0, NULL, 0, 0, 0, 0);
    CHECK(g != NULL);
    struct result r = ask(g, "allow1.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "not_allowed");
    CHECK_EQ_INT(srv.requests, before);
    close_gate(g);
}

/* The pure local half the workers use: the same truth table. */
static void test_may_allow(void)
{
    char *allow[] = {"*.a.example"};
    CHECK(tf_name_may_issue(allow, 1, false, "x.a.example"));
    CHECK(tf_name_may_issue(allow, 1, true, "x.a.example"));
    CHECK(!tf_name_may_issue(allow, 1, false, "x.b.example"));
    CHECK(!tf_name_may_issue(allow, 1, true, "x.b.example"));
    CHECK(tf_name_may_issue(NULL, 0, true, "x.b.example"));
    CHECK(!tf_name_may_issue(NULL, 0, false, "x.b.example"));
}

static void free_val(void *p)
{
    (*(int *)p)++;
}

static void test_lru_map(void)
{
    int freed[4] = {0, 0, 0, 0};
    struct tf_lru *l = tf_lru_new(3, free_val);
    tf_lru_put(l, "a", &freed[0], 100);
    tf_lru_put(l, "b", &freed[1], TF_LRU_NEVER);
    tf_lru_put(l, "c", &freed[2], 50);
    CHECK(tf_lru_full(l));
    CHECK(tf_lru_get(l, "a", 10) == &freed[0]); /* recency: b is now the oldest */
    tf_lru_put(l, "d", &freed[3], TF_LRU_NEVER);
    CHECK_EQ_INT(freed[1], 1);
    CHECK(tf_lru_peek(l, "b") == NULL);
    CHECK_EQ_INT(tf_lru_evictions(l), 1);
    CHECK(tf_lru_get(l, "c", 50) == NULL); /* expired at 50 */
    CHECK_EQ_INT(freed[2], 1);
    CHECK_EQ_INT(tf_lru_prune(l, 100), 1); /* a */
    CHECK_EQ_INT(freed[0], 1);
    CHECK(tf_lru_set_expiry(l, "d", 200));
    CHECK(!tf_lru_set_expiry(l, "zz", 200));
    CHECK_EQ_INT(tf_lru_size(l), 1);
    CHECK(tf_lru_del(l, "d"));
    CHECK(!tf_lru_del(l, "d"));
    CHECK_EQ_INT(freed[3], 1);
    /* Growth past the initial buckets keeps every key reachable. */
    static int vals[5000];
    char k[16];
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        tf_lru_put(l, k, &vals[i], TF_LRU_NEVER);
    }
    CHECK_EQ_INT(tf_lru_size(l), 3);
    CHECK(tf_lru_peek(l, "k4999") == &vals[4999]);
    tf_lru_free(l);
    struct tf_lru *big = tf_lru_new(0, NULL);
    int found = 0;
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        tf_lru_put(big, k, &vals[i], TF_LRU_NEVER);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(k, sizeof(k), "k%d", i);
        found += tf_lru_peek(big, k) == &vals[i];
    }
    CHECK_EQ_INT(found, 5000);
    tf_lru_free(big);
}

int main(void)
{
    world_open();
    TF_TEST_RUN(test_lru_map);
    TF_TEST_RUN(test_allow_only);
    TF_TEST_RUN(test_allow_and_ask);
    TF_TEST_RUN(test_neither);
    TF_TEST_RUN(test_may_allow);
    world_close();
    return TF_TEST_DONE();
}
