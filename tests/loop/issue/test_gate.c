/*
 * test_gate.c: the issuance gate against an in-process libuv HTTP server on 127.0.0.1 port 0
 * playing the --ask endpoint. The server answers by the first label of the asked domain:
 * allow* 200, deny* 403, maxage* 200 + "max-age=1", denyage* 403 + "max-age=1", nostore* 200
 * + "no-store", fail* 503, slow* never, hold* when the test releases it; anything else 404. It counts
 * requests and how many are open at once. Covered: allow patterns alone (no request), ask
 * alone, both (pattern AND ask: a name outside the patterns is never asked), neither, ask
 * allow/deny, the query separator, timeout, cache hits, max-age expiry, no-store, single
 * flight (50 checks, 1 request), the in-flight cap and "ask_busy", LRU eviction, cancel,
 * a closed port ("ask_error", cached briefly), close with a request pending, callbacks never
 * synchronous, uv_loop_close() == 0. Also the LRU map on its own.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/issue/gate.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/lru.h"
#include "tlsfront/base/name.h"
#include "tf_test.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

/* ---- the scripted ask endpoint ---- */

struct sconn {
    uv_tcp_t tcp;
    struct srv *srv;
    char buf[4096];
    size_t len;
    bool held, slow;
    struct sconn *next;
};

struct srv {
    uv_tcp_t tcp;
    int port;
    int requests;
    int open_now, max_open; /* requests received and not yet answered */
    bool release_holds;     /* answer hold* at once from now on */
    char last_path[512];
    struct sconn *conns;
};

struct wreq {
    uv_write_t w;
    char *buf;
};

static uv_loop_t *loop;
static struct srv srv;
static uv_timer_t guard;
static bool in_check;      /* set while tf_gate_check() runs */
static int sync_callbacks; /* callbacks that ran inside tf_gate_check() */

static void on_written(uv_write_t *w, int status)
{
    (void)status;
    struct wreq *wr = (struct wreq *)w;
    free(wr->buf);
    free(wr);
}

static void respond(struct sconn *c, int status, const char *cache_control)
{
    struct wreq *wr = tf_calloc(1, sizeof(*wr));
    wr->buf = tf_asprintf("HTTP/1.1 %d X\r\n%s%s%sContent-Length: 2\r\n\r\nok", status,
                          cache_control ? "Cache-Control: " : "",
                          cache_control ? cache_control : "", cache_control ? "\r\n" : "");
    uv_buf_t b = uv_buf_init(wr->buf, (unsigned)strlen(wr->buf));
    srv.open_now--;
    if (uv_write(&wr->w, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        free(wr->buf);
        free(wr);
    }
}

static bool prefixed(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

/* Answer (or hold) one request whose path is in srv.last_path. */
static void serve(struct sconn *c)
{
    const char *d = strstr(srv.last_path, "domain=");
    const char *name = d ? d + 7 : "";
    if (prefixed(name, "allow"))
        respond(c, 200, NULL);
    else if (prefixed(name, "deny"))
        respond(c, 403, prefixed(name, "denyage") ? "max-age=1" : NULL);
    else if (prefixed(name, "maxage"))
        respond(c, 200, "public, max-age=1");
    else if (prefixed(name, "fail"))
        respond(c, 503, "max-age=3600");
    else if (prefixed(name, "nostore"))
        respond(c, 200, "private, no-store");
    else if (prefixed(name, "slow"))
        c->held = c->slow = true; /* never released */
    else if (prefixed(name, "hold") && !srv.release_holds)
        c->held = true;
    else if (prefixed(name, "hold"))
        respond(c, 200, NULL);
    else
        respond(c, 404, NULL);
}

static void sconn_parse(struct sconn *c)
{
    char *end;
    while (!c->held && (end = memmem(c->buf, c->len, "\r\n\r\n", 4)) != NULL) {
        size_t n = (size_t)(end - c->buf) + 4;
        char *sp1 = memchr(c->buf, ' ', n);
        char *sp2 = sp1 ? memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - c->buf)) : NULL;
        size_t plen = sp2 ? TF_MIN((size_t)(sp2 - sp1 - 1), sizeof(srv.last_path) - 1) : 0;
        memcpy(srv.last_path, sp1 ? sp1 + 1 : "", plen);
        srv.last_path[plen] = '\0';
        memmove(c->buf, c->buf + n, c->len - n);
        c->len -= n;
        srv.requests++;
        srv.open_now++;
        uv_stop(loop);
        srv.max_open = TF_MAX(srv.max_open, srv.open_now);
        serve(c);
    }
}

static void on_sconn_closed(uv_handle_t *h) { free(h->data); }

static void sconn_close(struct sconn *c)
{
    struct sconn **pp = &srv.conns;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    if (c->held)
        srv.open_now--;
    uv_close((uv_handle_t *)&c->tcp, on_sconn_closed);
}

static void on_salloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)sz;
    struct sconn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static void on_sread(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    (void)b;
    struct sconn *c = s->data;
    if (n < 0) {
        sconn_close(c);
        return;
    }
    c->len += (size_t)n;
    sconn_parse(c);
    if (c->len == sizeof(c->buf))
        sconn_close(c);
}

static void on_sconn(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct sconn *c = tf_calloc(1, sizeof(*c));
    c->srv = &srv;
    c->tcp.data = c;
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_sconn_closed);
        return;
    }
    c->next = srv.conns;
    srv.conns = c;
    uv_read_start((uv_stream_t *)&c->tcp, on_salloc, on_sread);
}

/* Answer every held hold* request now, and later ones at once. */
static void srv_release(void)
{
    srv.release_holds = true;
    for (struct sconn *c = srv.conns; c; c = c->next) {
        if (c->held && !c->slow) {
            c->held = false;
            respond(c, 200, NULL);
        }
    }
}

static bool srv_start(void)
{
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_init(loop, &srv.tcp) != 0 || uv_tcp_bind(&srv.tcp, (struct sockaddr *)&a, 0) != 0 ||
        uv_listen((uv_stream_t *)&srv.tcp, 128, on_sconn) != 0 ||
        uv_tcp_getsockname(&srv.tcp, (struct sockaddr *)&ss, &len) != 0)
        return false;
    srv.port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return true;
}

/* ---- waiting ---- */

static void on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
    uv_stop(loop);
}

/* Run the loop until *counter >= target or max_ms passed; true if the target was reached.
 * Every event that moves a counter calls uv_stop() so the loop does not sit in poll. */
static bool run_until(const int *counter, int target, uint64_t max_ms)
{
    bool expired = false;
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, max_ms, 0);
    while (*counter < target && !expired)
        uv_run(loop, UV_RUN_ONCE);
    uv_timer_stop(&guard);
    return *counter >= target;
}

/* Wait for a timer of ms to fire (an event, not a sleep). */
static void wait_ms(uint64_t ms)
{
    bool expired = false;
    guard.data = &expired;
    uv_timer_start(&guard, on_guard, ms, 0);
    while (!expired)
        uv_run(loop, UV_RUN_ONCE);
}

/* ---- checks ---- */

struct result {
    int calls;
    int verdict;
    const char *why;
};

static void on_verdict(int verdict, enum tf_outcome why, void *arg)
{
    struct result *r = arg;
    if (in_check)
        sync_callbacks++;
    r->calls++;
    r->verdict = verdict;
    r->why = tf_outcome_name(why);
    uv_stop(loop); /* let run_until() look at its counter now */
}

static struct tf_gate_req *check(struct tf_gate *g, const char *name, struct result *r)
{
    struct tf_gate_req *h = NULL;
    in_check = true;
    int rc = tf_gate_check(g, name, on_verdict, r, &h);
    in_check = false;
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(r->calls, 0);
    return h;
}

/* Check name and wait for its answer. */
static struct result ask(struct tf_gate *g, const char *name)
{
    struct result r = {0};
    check(g, name, &r);
    CHECK(run_until(&r.calls, 1, 5000));
    return r;
}

static struct tf_httpc *http;
static char url[128];

static struct tf_gate *gate(char **allow, int n, const char *ask_url, uint32_t timeout_ms,
                            uint32_t cache_s, int inflight, int cache_max)
{
    struct tf_gate *g =
        tf_gate_new(loop, http, allow, n, ask_url, timeout_ms, cache_s, inflight, cache_max);
    CHECK(g != NULL);
    return g;
}

static void on_gate_closed(void *arg)
{
    (*(int *)arg)++;
    uv_stop(loop);
}

static void close_gate(struct tf_gate *g)
{
    int closed = 0;
    tf_gate_close(g, on_gate_closed, &closed);
    tf_gate_close(g, on_gate_closed, &closed); /* idempotent */
    CHECK_EQ_INT(closed, 0);                    /* never from inside the call */
    CHECK(run_until(&closed, 1, 5000));
    CHECK_EQ_INT(closed, 1);
}

/* ---- tests ---- */

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

static void free_val(void *p) { (*(int *)p)++; }

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

static void on_http_closed(void *arg)
{
    (*(int *)arg)++;
    uv_stop(loop);
}

static void on_srv_closed(uv_handle_t *h)
{
    (*(int *)h->data)++;
    uv_stop(loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    tf_log_setup(TF_LOG_WARN, false);
    loop = tf_malloc(sizeof(*loop));
    CHECK_EQ_INT(uv_loop_init(loop), 0);
    uv_timer_init(loop, &guard);
    CHECK(srv_start());
    char err[128];
    http = tf_httpc_new(loop, NULL, err, sizeof(err));
    CHECK(http != NULL);
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/ask", srv.port);
    TF_TEST_RUN(test_lru_map);
    TF_TEST_RUN(test_allow_only);
    TF_TEST_RUN(test_allow_and_ask);
    TF_TEST_RUN(test_neither);
    TF_TEST_RUN(test_may_allow);
    TF_TEST_RUN(test_ask_and_cache);
    TF_TEST_RUN(test_timeout);
    TF_TEST_RUN(test_max_age_no_store);
    TF_TEST_RUN(test_single_flight);
    TF_TEST_RUN(test_inflight_cap);
    TF_TEST_RUN(test_lru_eviction);
    TF_TEST_RUN(test_cancel);
    TF_TEST_RUN(test_endpoint_down);
    TF_TEST_RUN(test_close_pending);
    CHECK_EQ_INT(sync_callbacks, 0);

    int closed = 0;
    tf_httpc_close(http, on_http_closed, &closed);
    while (srv.conns)
        sconn_close(srv.conns);
    srv.tcp.data = &closed;
    uv_close((uv_handle_t *)&srv.tcp, on_srv_closed);
    CHECK(run_until(&closed, 2, 5000));
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
    free(loop);
    return TF_TEST_DONE();
}
