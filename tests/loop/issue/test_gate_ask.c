/*
 * test_gate_ask.c: the issuance gate asking its --ask endpoint (gate_world.h: the loop, a
 * scripted endpoint on 127.0.0.1 port 0): allow/deny answers, the query separator, timeout,
 * cache hits, max-age expiry, no-store, single flight (50 checks, 1 request), the in-flight
 * cap and "ask_busy", LRU eviction, cancel, a closed port and a 5xx ("ask_error", cached
 * briefly), close with a request pending; callbacks never synchronous, uv_loop_close() == 0.
 */
#include "gate_world.h"

static void test_ask_and_cache(void)
{
    char u2[160];
    snprintf(u2, sizeof(u2), "%s?token=abc", url);
    struct tf_gate *g = gate(NULL, 0, u2, 0, 3600, 0, 0);
    int before = srv.requests;
    struct result r = ask(g, "allow1.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_ALLOW);
    CHECK_EQ_STR(r.why, "ask_allow");
    CHECK_EQ_STR(srv.last_path, "/ask?token=abc&domain=allow1.example.com");
    r = ask(g, "deny1.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "ask_deny");
    CHECK_EQ_INT(srv.requests, before + 2);
    /* Both answers are cached: no further requests. */
    r = ask(g, "allow1.example.com");
    CHECK_EQ_STR(r.why, "ask_allow");
    r = ask(g, "deny1.example.com");
    CHECK_EQ_STR(r.why, "ask_deny");
    CHECK_EQ_INT(srv.requests, before + 2);
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.ask_requests, 2);
    CHECK_EQ_INT(st.cache_allow, 1);
    CHECK_EQ_INT(st.cache_deny, 1);
    CHECK_EQ_INT(st.cache_size, 2);
    close_gate(g);
    /* Separator '?' when the URL has no query. */
    g = gate(NULL, 0, url, 0, 0, 0, 0);
    r = ask(g, "allow2.example.com");
    CHECK_EQ_STR(srv.last_path, "/ask?domain=allow2.example.com");
    /* ask_cache_s 0: nothing is cached. */
    r = ask(g, "allow2.example.com");
    CHECK_EQ_STR(r.why, "ask_allow");
    CHECK_EQ_INT(srv.requests, before + 4);
    close_gate(g);
}

static void test_timeout(void)
{
    struct tf_gate *g = gate(NULL, 0, url, 200, 1, 0, 0);
    int before = srv.requests;
    uint64_t t0 = uv_now(loop);
    struct result r = ask(g, "slow1.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "ask_timeout");
    CHECK(uv_now(loop) - t0 >= 190);
    /* Cached briefly: the slow endpoint is not asked again at once. */
    r = ask(g, "slow1.example.com");
    CHECK_EQ_STR(r.why, "ask_timeout");
    CHECK_EQ_INT(srv.requests, before + 1);
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.ask_timeout, 1);
    CHECK_EQ_INT(st.cache_deny, 1);
    close_gate(g);
}

static void test_max_age_no_store(void)
{
    struct tf_gate *g = gate(NULL, 0, url, 0, 3600, 0, 0);
    int before = srv.requests;
    CHECK_EQ_STR(ask(g, "maxage1.example.com").why, "ask_allow");
    CHECK_EQ_STR(ask(g, "denyage1.example.com").why, "ask_deny");
    CHECK_EQ_STR(ask(g, "allow3.example.com").why, "ask_allow");
    CHECK_EQ_STR(ask(g, "maxage1.example.com").why, "ask_allow"); /* cached */
    CHECK_EQ_INT(srv.requests, before + 3);
    wait_ms(1100); /* max-age=1 runs out; the default 3600 s does not */
    CHECK_EQ_STR(ask(g, "maxage1.example.com").why, "ask_allow");
    CHECK_EQ_STR(ask(g, "denyage1.example.com").why, "ask_deny");
    CHECK_EQ_STR(ask(g, "allow3.example.com").why, "ask_allow");
    CHECK_EQ_INT(srv.requests, before + 5);
    /* no-store: asked every time. */
    CHECK_EQ_STR(ask(g, "nostore1.example.com").why, "ask_allow");
    CHECK_EQ_STR(ask(g, "nostore1.example.com").why, "ask_allow");
    CHECK_EQ_INT(srv.requests, before + 7);
    close_gate(g);
}

static void test_single_flight(void)
{
    srv.release_holds = false;
    struct tf_gate *g = gate(NULL, 0, url, 0, 60, 0, 0);
    int before = srv.requests;
    struct result r[50];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 50; i++)
        check(g, "hold-sf.example.com", &r[i]);
    int target = before + 1;
    CHECK(run_until(&srv.requests, target, 5000));
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.joined, 49);
    CHECK_EQ_INT(st.inflight, 1);
    srv_release();
    int total = 0;
    for (int i = 0; i < 50; i++) {
        CHECK(run_until(&r[i].calls, 1, 5000));
        total += r[i].calls;
        CHECK_EQ_INT(r[i].verdict, TF_GATE_ALLOW);
    }
    CHECK_EQ_INT(total, 50);
    CHECK_EQ_INT(srv.requests, before + 1);
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.ask_requests, 1);
    CHECK_EQ_INT(st.ask_allow, 50);
    close_gate(g);
}

static void test_inflight_cap(void)
{
    srv.release_holds = false;
    srv.max_open = srv.open_now;
    struct tf_gate *g = gate(NULL, 0, url, 0, 60, 2, 0);
    int before = srv.requests;
    struct result r[5];
    memset(r, 0, sizeof(r));
    char name[64];
    for (int i = 0; i < 5; i++) {
        snprintf(name, sizeof(name), "hold-cap%d.example.com", i);
        check(g, name, &r[i]);
    }
    CHECK(run_until(&srv.requests, before + 2, 5000));
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.inflight, 2);
    CHECK_EQ_INT(st.queued, 3);
    srv_release();
    for (int i = 0; i < 5; i++) {
        CHECK(run_until(&r[i].calls, 1, 5000));
        CHECK_EQ_STR(r[i].why, "ask_allow");
    }
    CHECK_EQ_INT(srv.requests, before + 5);
    CHECK_EQ_INT(srv.max_open, 2);
    close_gate(g);

    /* One slot, a queue of 16: the 18th distinct name is refused, a joiner is not. */
    srv.release_holds = false;
    g = gate(NULL, 0, url, 0, 60, 1, 0);
    struct result q[18], joiner = {0};
    memset(q, 0, sizeof(q));
    for (int i = 0; i < 18; i++) {
        snprintf(name, sizeof(name), "hold-busy%d.example.com", i);
        check(g, name, &q[i]);
    }
    check(g, "hold-busy5.example.com", &joiner);
    CHECK(run_until(&q[17].calls, 1, 5000));
    CHECK_EQ_INT(q[17].verdict, TF_GATE_DENY);
    CHECK_EQ_STR(q[17].why, "ask_busy");
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.busy, 1);
    CHECK_EQ_INT(st.queued, 16);
    srv_release();
    for (int i = 0; i < 17; i++) {
        CHECK(run_until(&q[i].calls, 1, 5000));
        CHECK_EQ_STR(q[i].why, "ask_allow");
    }
    CHECK(run_until(&joiner.calls, 1, 5000));
    CHECK_EQ_STR(joiner.why, "ask_allow");
    close_gate(g);
}

static void test_lru_eviction(void)
{
    struct tf_gate *g = gate(NULL, 0, url, 0, 3600, 0, 2);
    int before = srv.requests;
    ask(g, "allow-a.example.com");
    ask(g, "allow-b.example.com");
    ask(g, "allow-a.example.com"); /* hit: a is now the most recent */
    CHECK_EQ_INT(srv.requests, before + 2);
    ask(g, "allow-c.example.com"); /* evicts b */
    ask(g, "allow-a.example.com"); /* still cached */
    CHECK_EQ_INT(srv.requests, before + 3);
    ask(g, "allow-b.example.com"); /* gone: asked again, evicts c */
    CHECK_EQ_INT(srv.requests, before + 4);
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.cache_size, 2);
    CHECK_EQ_INT(st.cache_evictions, 2);
    CHECK_EQ_INT(st.cache_allow, 2);
    close_gate(g);
}

static void test_cancel(void)
{
    srv.release_holds = false;
    char *allow[] = {"*.example.com"};
    struct tf_gate *g = gate(allow, 1, url, 0, 60, 1, 0);
    int before = srv.requests;
    struct result w[3], pat = {0}, queued = {0};
    memset(w, 0, sizeof(w));
    struct tf_gate_req *h[3];
    for (int i = 0; i < 3; i++)
        h[i] = check(g, "hold-cancel.example.com", &w[i]);
    tf_gate_cancel(h[1]);
    /* A ready answer withdrawn before delivery, and a queued ask nobody waits for. */
    tf_gate_cancel(check(g, "outside.example.org", &pat));
    tf_gate_cancel(check(g, "hold-queued.example.com", &queued));
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.queued, 0);
    CHECK(run_until(&srv.requests, before + 1, 5000));
    srv_release();
    CHECK(run_until(&w[0].calls, 1, 5000));
    CHECK(run_until(&w[2].calls, 1, 5000));
    wait_ms(50);
    CHECK_EQ_INT(w[1].calls, 0);
    CHECK_EQ_INT(pat.calls, 0);
    CHECK_EQ_INT(queued.calls, 0);
    CHECK_EQ_INT(srv.requests, before + 1);
    close_gate(g);
}

static void on_port_closed(uv_handle_t *h)
{
    (*(int *)h->data)++;
    uv_stop(loop);
}

static void test_endpoint_down(void)
{
    /* A port that was just free: bind it, note it, close it. */
    uv_tcp_t t;
    struct sockaddr_in a;
    struct sockaddr_storage ss;
    int len = sizeof(ss), closed = 0;
    uv_ip4_addr("127.0.0.1", 0, &a);
    CHECK_EQ_INT(uv_tcp_init(loop, &t), 0);
    CHECK_EQ_INT(uv_tcp_bind(&t, (struct sockaddr *)&a, 0), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&t, (struct sockaddr *)&ss, &len), 0);
    t.data = &closed;
    uv_close((uv_handle_t *)&t, on_port_closed);
    CHECK(run_until(&closed, 1, 1000));
    char down[96];
    snprintf(down, sizeof(down), "http://127.0.0.1:%d/ask",
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    struct tf_gate *g = gate(NULL, 0, down, 0, 1, 0, 0);
    struct result r = ask(g, "allow9.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "ask_error");
    r = ask(g, "allow9.example.com");
    CHECK_EQ_STR(r.why, "ask_error");
    struct tf_gate_stats st;
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.ask_requests, 1);
    CHECK_EQ_INT(st.ask_error, 1);
    CHECK_EQ_INT(st.cache_deny, 1);
    wait_ms(1100); /* the error is kept min(5 s, ask_cache_s = 1 s) */
    r = ask(g, "allow9.example.com");
    CHECK_EQ_STR(r.why, "ask_error");
    tf_gate_stats(g, &st);
    CHECK_EQ_INT(st.ask_requests, 2);
    close_gate(g);

    /* A 5xx is the endpoint failing too: deny, and keep it briefly despite its max-age. */
    g = gate(NULL, 0, url, 0, 3600, 0, 0);
    int before = srv.requests;
    r = ask(g, "fail1.example.com");
    CHECK_EQ_INT(r.verdict, TF_GATE_DENY);
    CHECK_EQ_STR(r.why, "ask_error");
    CHECK_EQ_STR(ask(g, "fail1.example.com").why, "ask_error");
    CHECK_EQ_INT(srv.requests, before + 1);
    wait_ms(5100); /* the 5 s error lifetime, not the hour */
    CHECK_EQ_STR(ask(g, "fail1.example.com").why, "ask_error");
    CHECK_EQ_INT(srv.requests, before + 2);
    close_gate(g);
}

static void test_close_pending(void)
{
    srv.release_holds = false;
    struct tf_gate *g = gate(NULL, 0, url, 0, 60, 1, 0);
    int before = srv.requests;
    struct result running = {0}, waiting = {0}, late = {0};
    check(g, "hold-close1.example.com", &running);
    check(g, "hold-close2.example.com", &waiting);
    CHECK(run_until(&srv.requests, before + 1, 5000));
    int closed = 0;
    tf_gate_close(g, on_gate_closed, &closed);
    CHECK_EQ_INT(tf_gate_check(g, "allow.example.com", on_verdict, &late, NULL), TF_ECLOSED);
    CHECK_EQ_INT(running.calls + waiting.calls, 0);
    CHECK(run_until(&closed, 1, 5000));
    CHECK_EQ_INT(running.calls, 1);
    CHECK_EQ_STR(running.why, "ask_error");
    CHECK_EQ_INT(waiting.calls, 1);
    CHECK_EQ_INT(waiting.verdict, TF_GATE_DENY);
    CHECK_EQ_INT(late.calls, 0);
    CHECK_EQ_INT(srv.requests, before + 1);
}

int main(void)
{
    world_open();
    TF_TEST_RUN(test_ask_and_cache);
    TF_TEST_RUN(test_timeout);
    TF_TEST_RUN(test_max_age_no_store);
    TF_TEST_RUN(test_single_flight);
    TF_TEST_RUN(test_inflight_cap);
    TF_TEST_RUN(test_lru_eviction);
    TF_TEST_RUN(test_cancel);
    TF_TEST_RUN(test_endpoint_down);
    TF_TEST_RUN(test_close_pending);
    world_close();
    return TF_TEST_DONE();
}
