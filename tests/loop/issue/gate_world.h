/*
 * gate_world.h: the world of the gate's loop tests (tests/loop/issue/test_gate.c and
 * test_gate_ask.c include it): one loop, an in-process libuv HTTP server on 127.0.0.1 port 0
 * playing the --ask endpoint, the HTTP client the gate asks it with, and the helpers that
 * check a name and wait for its verdict. The server answers by the first label of the asked
 * domain: allow* 200, deny* 403, maxage* 200 + "max-age=1", denyage* 403 + "max-age=1",
 * nostore* 200 + "no-store", fail* 503, slow* never, hold* when the test releases it;
 * anything else 404. It counts requests and how many are open at once. Every verdict must
 * come from a loop callback, never from inside tf_gate_check(); world_close() checks that
 * and that uv_loop_close() succeeds.
 */
#ifndef TF_TEST_GATE_WORLD_H
#define TF_TEST_GATE_WORLD_H

#include "tf_test.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/issue/gate.h"
#include "tlsfront/net/http_client.h"

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
static struct tf_httpc *http;
static char url[128]; /* the endpoint's --ask URL */

static inline void on_written(uv_write_t *w, int status)
{
    (void)status;
    struct wreq *wr = (struct wreq *)w;
    free(wr->buf);
    free(wr);
}

static inline void respond(struct sconn *c, int status, const char *cache_control)
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

static inline bool prefixed(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

/* Answer (or hold) one request whose path is in srv.last_path. */
static inline void serve(struct sconn *c)
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

static inline void sconn_parse(struct sconn *c)
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

static inline void on_sconn_closed(uv_handle_t *h)
{
    free(h->data);
}

static inline void sconn_close(struct sconn *c)
{
    struct sconn **pp = &srv.conns;
    while (*pp != c)
        pp = &(*pp)->next;
    *pp = c->next;
    if (c->held)
        srv.open_now--;
    uv_close((uv_handle_t *)&c->tcp, on_sconn_closed);
}

static inline void on_salloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)sz;
    struct sconn *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof(c->buf) - c->len));
}

static inline void on_sread(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
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

static inline void on_sconn(uv_stream_t *server, int status)
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
static inline void srv_release(void)
{
    srv.release_holds = true;
    for (struct sconn *c = srv.conns; c; c = c->next) {
        if (c->held && !c->slow) {
            c->held = false;
            respond(c, 200, NULL);
        }
    }
}

static inline bool srv_start(void)
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

static inline void on_guard(uv_timer_t *t)
{
    *(bool *)t->data = true;
    uv_stop(loop);
}

/* Run the loop until *counter >= target or max_ms passed; true if the target was reached.
 * Every event that moves a counter calls uv_stop() so the loop does not sit in poll. */
static inline bool run_until(const int *counter, int target, uint64_t max_ms)
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
static inline void wait_ms(uint64_t ms)
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

static inline void on_verdict(int verdict, enum tf_outcome why, void *arg)
{
    struct result *r = arg;
    if (in_check)
        sync_callbacks++;
    r->calls++;
    r->verdict = verdict;
    r->why = tf_outcome_name(why);
    uv_stop(loop); /* let run_until() look at its counter now */
}

static inline struct tf_gate_req *check(struct tf_gate *g, const char *name, struct result *r)
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
static inline struct result ask(struct tf_gate *g, const char *name)
{
    struct result r = {0};
    check(g, name, &r);
    CHECK(run_until(&r.calls, 1, 5000));
    return r;
}

static inline struct tf_gate *gate(char **allow, int n, const char *ask_url, uint32_t timeout_ms,
                                   uint32_t cache_s, int inflight, int cache_max)
{
    struct tf_gate *g =
        tf_gate_new(loop, http, allow, n, ask_url, timeout_ms, cache_s, inflight, cache_max);
    CHECK(g != NULL);
    return g;
}

static inline void on_gate_closed(void *arg)
{
    (*(int *)arg)++;
    uv_stop(loop);
}

static inline void close_gate(struct tf_gate *g)
{
    int closed = 0;
    tf_gate_close(g, on_gate_closed, &closed);
    tf_gate_close(g, on_gate_closed, &closed); /* idempotent */
    CHECK_EQ_INT(closed, 0);                   /* never from inside the call */
    CHECK(run_until(&closed, 1, 5000));
    CHECK_EQ_INT(closed, 1);
}

/* ---- the world: one loop, the endpoint, the HTTP client ---- */

static inline void on_http_closed(void *arg)
{
    (*(int *)arg)++;
    uv_stop(loop);
}

static inline void on_srv_closed(uv_handle_t *h)
{
    (*(int *)h->data)++;
    uv_stop(loop);
}

/* Set up the loop, start the endpoint on port 0, make the HTTP client and url. */
static inline void world_open(void)
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
}

/* No callback ran inside tf_gate_check(); close everything and require uv_loop_close() to
 * succeed. */
static inline void world_close(void)
{
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
}

#endif
