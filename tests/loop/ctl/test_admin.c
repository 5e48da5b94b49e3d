/*
 * test_admin.c: the admin endpoint on 127.0.0.1 port 0 with fake hooks, driven by real HTTP
 * over libuv TCP clients on the same loop: health and readiness states, /metrics and /certs
 * content, HEAD, 404, 405, 400, 414, 431, keep-alive and pipelining, HTTP/1.0, half-close,
 * idle timeout, the connection cap, 1,000 scrapes on one connection and 1,000 on fresh
 * connections, closing with clients attached, and a failed bind. Also the metrics writer on
 * its own (escaping, histogram buckets, number spelling) and a /metrics body checked by
 * `promtool check metrics` (skipped with a message only if promtool is not installed).
 * Every test waits for events (never sleeps) and the loop must close cleanly at the end.
 */
#include "tlsfront/ctl/admin.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/metrics.h"
#include "tf_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

/* ---- fake server state behind the hooks ---- */

struct fake {
    bool healthy, ready, storage_down;
    size_t pad; /* extra bytes of comment lines in /metrics */
    int metrics_calls, certs_calls;
    uint64_t handshakes_ok, handshakes_failed;
    struct tf_histogram latency[2];
};

static bool fake_healthy(void *arg)
{
    return ((struct fake *)arg)->healthy;
}
static bool fake_ready(void *arg)
{
    return ((struct fake *)arg)->ready;
}

static bool fake_storage_up(void *arg)
{
    return !((struct fake *)arg)->storage_down;
}

static void fake_metrics(void *arg, struct tf_metrics_buf *out)
{
    struct fake *f = arg;
    f->metrics_calls++;
    const char *hs = "tlsfront_test_handshakes_total";
    tf_metrics_counter(out, hs, "TLS handshakes by result.", "result=\"ok\"", f->handshakes_ok);
    tf_metrics_counter(out, hs, "TLS handshakes by result.", "result=\"failed\"",
                       f->handshakes_failed);
    tf_metrics_gauge(out, "tlsfront_test_connections_open", "Open client connections.", NULL, 3);
    struct tf_metrics_buf lb;
    tf_metrics_buf_init(&lb);
    tf_metrics_label(&lb, "name", "we\"ird\\name\n.test");
    tf_metrics_gauge(out, "tlsfront_test_cert_expiry_seconds", "Seconds until expiry.\nSecond",
                     lb.data, 86400.5);
    tf_metrics_buf_free(&lb);
    const char *lat = "tlsfront_test_handshake_seconds";
    tf_metrics_histogram(out, lat, "Handshake latency.", "version=\"TLSv1.2\"", &f->latency[0]);
    tf_metrics_histogram(out, lat, "Handshake latency.", "version=\"TLSv1.3\"", &f->latency[1]);
    tf_metrics_gauge(out, "tlsfront_test_build_info", "Build information.",
                     "version=\"" TLSFRONT_VERSION "\"", 1);
    for (size_t n = 0; n < f->pad; n += 64)
        tf_metrics_buf_puts(out, "# padding padding padding padding padding padding padding pad\n");
}

static void fake_certs(void *arg, struct tf_metrics_buf *out)
{
    ((struct fake *)arg)->certs_calls++;
    tf_metrics_buf_puts(out, "[{\"name\":\"");
    tf_metrics_buf_json_str(out, "example.test");
    tf_metrics_buf_puts(out, "\",\"source\":\"static\"}]");
}

/* ---- loop helpers ---- */

struct ctx {
    uv_loop_t loop;
    uv_timer_t deadline;
    bool timed_out;
    struct fake fake;
    struct tf_admin *admin;
    struct sockaddr_in addr;
    int done_calls;
};

static void on_deadline(uv_timer_t *t)
{
    ((struct ctx *)t->data)->timed_out = true;
}

/* Run the loop until cond(arg) holds, or 10 s pass. The loop's clock is refreshed first:
 * a caller that consumed buffered responses without running the loop would otherwise start
 * the deadline from a stale time and could see it expire early. */
static bool run_until(struct ctx *x, bool (*cond)(void *), void *arg)
{
    x->timed_out = false;
    uv_update_time(&x->loop);
    uv_timer_start(&x->deadline, on_deadline, 10000, 0);
    while (!cond(arg) && !x->timed_out)
        uv_run(&x->loop, UV_RUN_ONCE);
    uv_timer_stop(&x->deadline);
    return cond(arg);
}

static void on_admin_done(void *arg)
{
    ((struct ctx *)arg)->done_calls++;
}

static bool admin_gone(void *arg)
{
    return ((struct ctx *)arg)->done_calls > 0;
}

static void admin_up(struct ctx *x)
{
    struct tf_admin_hooks hooks = {&x->fake, fake_healthy, fake_ready, fake_metrics, fake_certs,
                                   fake_storage_up, NULL};
    struct sockaddr_in any;
    char err[256] = "";
    uv_ip4_addr("127.0.0.1", 0, &any);
    x->admin = tf_admin_start(&x->loop, (struct sockaddr *)&any, &hooks, err, sizeof err);
    CHECK(x->admin != NULL);
    if (!x->admin) {
        fprintf(stderr, "admin start: %s\n", err);
        exit(1);
    }
    struct sockaddr_storage ss;
    CHECK_EQ_INT(tf_admin_address(x->admin, &ss), 0);
    memcpy(&x->addr, &ss, sizeof x->addr);
    x->done_calls = 0;
}

static void admin_down(struct ctx *x)
{
    tf_admin_close(x->admin, on_admin_done, x);
    CHECK(run_until(x, admin_gone, x));
    CHECK_EQ_INT(x->done_calls, 1);
    x->admin = NULL;
}

/* ---- a raw HTTP client on the same loop ---- */

struct client {
    uv_tcp_t tcp;
    uv_connect_t creq;
    int connect_status;
    bool connected, eof, closed;
    char *buf;     /* heap, cap + 1 bytes */
    char *in;      /* the unconsumed input: buf + off */
    size_t off, len, cap;
};

struct resp {
    int status;
    char head[2048];
    size_t clen;
    char *body; /* heap, NUL-terminated; free it */
};

static void on_c_connect(uv_connect_t *req, int status)
{
    struct client *c = req->data;
    c->connect_status = status;
    c->connected = true;
}

static void on_c_alloc(uv_handle_t *h, size_t sz, uv_buf_t *buf)
{
    struct client *c = h->data;
    if (c->cap - c->off - c->len < 65536 && c->off > 0) {
        /* Consumed responses are dropped here, once per refill, not once per response: moving
         * megabytes of buffered pipelined answers after each one kept this client (which runs
         * the loop only when it has no whole response left) off the loop for longer than the
         * server's 15 s idle timeout under TSan, and the server rightly closed the connection. */
        memmove(c->buf, c->in, c->len);
        c->off = 0;
        c->in = c->buf;
    }
    if (c->cap - c->off - c->len < 65536) {
        c->cap = c->cap + 65536 + c->cap / 2;
        c->buf = tf_realloc(c->buf, c->cap + 1);
        c->in = c->buf;
    }
    (void)sz;
    *buf = uv_buf_init(c->in + c->len, (unsigned)(c->cap - c->off - c->len));
}

static void on_c_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct client *c = s->data;
    (void)buf;
    if (n < 0) {
        c->eof = true;
        uv_read_stop(s);
    } else {
        c->len += (size_t)n;
    }
}

static bool c_connected(void *arg)
{
    return ((struct client *)arg)->connected;
}
static bool c_eof(void *arg)
{
    return ((struct client *)arg)->eof;
}
static bool c_closed(void *arg)
{
    return ((struct client *)arg)->closed;
}

/* Connect; the client reads what arrives unless no_read. */
static bool client_connect(struct ctx *x, struct client *c, bool no_read)
{
    memset(c, 0, sizeof *c);
    uv_tcp_init(&x->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    CHECK_EQ_INT(uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&x->addr, on_c_connect), 0);
    CHECK(run_until(x, c_connected, c));
    CHECK_EQ_INT(c->connect_status, 0);
    return c->connect_status == 0 &&
           (no_read || uv_read_start((uv_stream_t *)&c->tcp, on_c_alloc, on_c_read) == 0);
}

static bool client_open(struct ctx *x, struct client *c)
{
    return client_connect(x, c, false);
}

static void on_c_write(uv_write_t *req, int status)
{
    (void)status;
    free(req);
}

static void client_send(struct client *c, const char *data, size_t n)
{
    uv_write_t *req = tf_malloc(sizeof *req + n);
    memcpy(req + 1, data, n);
    uv_buf_t buf = uv_buf_init((char *)(req + 1), (unsigned)n);
    CHECK_EQ_INT(uv_write(req, (uv_stream_t *)&c->tcp, &buf, 1, on_c_write), 0);
}

static void on_c_closed(uv_handle_t *h)
{
    ((struct client *)h->data)->closed = true;
}

static void client_close(struct ctx *x, struct client *c)
{
    uv_close((uv_handle_t *)&c->tcp, on_c_closed);
    CHECK(run_until(x, c_closed, c));
    free(c->buf);
    c->buf = c->in = NULL;
}

/* Size of the first complete response in c->in (0 if incomplete); head_only: no body. */
struct want {
    struct client *c;
    bool head_only;
    size_t total;
};

#define HEAD_MAX 4096

/* Length of the response head at c->in through its blank line, 0 while incomplete; copy
 * (HEAD_MAX + 1 bytes) receives the head, NUL-terminated. Only a bounded copy is searched:
 * the string functions, and TSan's checks of them (which measure the whole string), must
 * not walk megabytes of buffered pipelined responses once per response. */
static size_t head_len(const struct client *c, char *copy)
{
    size_t n = c->in ? TF_MIN(c->len, (size_t)HEAD_MAX) : 0;
    if (n)
        memcpy(copy, c->in, n);
    copy[n] = '\0';
    const char *end = strstr(copy, "\r\n\r\n");
    if (!end)
        return 0;
    copy[end - copy + 4] = '\0';
    return (size_t)(end - copy) + 4;
}

static size_t response_size(const struct client *c, bool head_only, size_t *clen)
{
    char head[HEAD_MAX + 1];
    size_t hlen = head_len(c, head);
    if (!hlen)
        return 0;
    const char *cl = strcasestr(head, "\r\nContent-Length:");
    *clen = cl ? strtoul(cl + 17, NULL, 10) : 0;
    size_t total = hlen + (head_only ? 0 : *clen);
    return c->len >= total ? total : 0;
}

static bool have_response(void *arg)
{
    struct want *w = arg;
    size_t clen;
    w->total = response_size(w->c, w->head_only, &clen);
    return w->total > 0 || w->c->eof;
}

/* Wait for one response and take it off the client's input. Returns false on EOF first. */
static bool client_response(struct ctx *x, struct client *c, bool head_only, struct resp *r)
{
    struct want w = {c, head_only, 0};
    memset(r, 0, sizeof *r);
    if (!run_until(x, have_response, &w) || w.total == 0)
        return false;
    size_t clen = 0;
    response_size(c, head_only, &clen);
    char head[HEAD_MAX + 1];
    size_t hlen = head_len(c, head);
    snprintf(r->head, sizeof r->head, "%.*s", (int)hlen, c->in);
    r->status = atoi(c->in + 9);
    r->clen = clen;
    r->body = tf_strndup(c->in + hlen, w.total - hlen);
    c->in += w.total;
    c->off += w.total;
    c->len -= w.total;
    return true;
}

/* Open, send one request, read one response, and close. */
static int one_shot(struct ctx *x, const char *req, bool head_only, struct resp *r)
{
    struct client c;
    int status = -1;
    if (client_open(x, &c)) {
        client_send(&c, req, strlen(req));
        if (client_response(x, &c, head_only, r))
            status = r->status;
    }
    client_close(x, &c);
    return status;
}

/* ---- the tests ---- */

static struct ctx X;

static void test_health_states(void)
{
    struct resp r;
    admin_up(&X);
    X.fake.healthy = true;
    X.fake.ready = false;
    CHECK_EQ_INT(one_shot(&X, "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", false, &r), 200);
    CHECK_EQ_STR(r.body, "ok\n");
    CHECK(strcasestr(r.head, "Content-Length: 3\r\n") != NULL);
    free(r.body);
    CHECK_EQ_INT(one_shot(&X, "GET /readyz HTTP/1.1\r\n\r\n", false, &r), 503);
    CHECK_EQ_STR(r.body, "not ready\n");
    free(r.body);
    X.fake.healthy = false;
    X.fake.ready = true;
    CHECK_EQ_INT(one_shot(&X, "GET /healthz?verbose=1 HTTP/1.1\r\n\r\n", false, &r), 503);
    free(r.body);
    CHECK_EQ_INT(one_shot(&X, "GET /readyz HTTP/1.1\r\n\r\n", false, &r), 200);
    CHECK_EQ_STR(r.body, "ready\n");
    free(r.body);
    /* Storage down: still ready (it serves what it holds), and says so. */
    X.fake.storage_down = true;
    CHECK_EQ_INT(one_shot(&X, "GET /readyz HTTP/1.1\r\n\r\n", false, &r), 200);
    CHECK_EQ_STR(r.body, "ready; storage down\n");
    free(r.body);
    X.fake.ready = false;
    CHECK_EQ_INT(one_shot(&X, "GET /readyz HTTP/1.1\r\n\r\n", false, &r), 503);
    CHECK_EQ_STR(r.body, "not ready; storage down\n");
    free(r.body);
    X.fake.storage_down = false;
    X.fake.healthy = true;
    admin_down(&X);
}

/* Run promtool on text; returns its exit status, or -1 if promtool is absent. */
static int promtool_check(const char *text, size_t len)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        return -1;
    char path[] = "/tmp/tf-admin-metrics-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return -2;
    CHECK_EQ_INT(write(fd, text, len), (long long)len);
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -2;
}

static void test_metrics_page(void)
{
    struct resp r;
    admin_up(&X);
    X.fake.handshakes_ok = 41;
    X.fake.handshakes_failed = 2;
    tf_histogram_observe(&X.fake.latency[1], 0.003);
    tf_histogram_observe(&X.fake.latency[1], 0.2);
    CHECK_EQ_INT(one_shot(&X, "GET /metrics HTTP/1.1\r\n\r\n", false, &r), 200);
    CHECK(strstr(r.head, "Content-Type: text/plain; version=0.0.4") != NULL);
    CHECK_EQ_INT(strlen(r.body), r.clen);
    CHECK(strstr(r.body, "\ntlsfront_test_handshakes_total{result=\"ok\"} 41\n") != NULL);
    CHECK(strstr(r.body, "\ntlsfront_test_handshakes_total{result=\"failed\"} 2\n") != NULL);
    const char *help = "# HELP tlsfront_test_handshakes_total ";
    char *first = strstr(r.body, help);
    CHECK(first != NULL && strstr(first + 1, help) == NULL);
    CHECK(strstr(r.body, "{name=\"we\\\"ird\\\\name\\n.test\"} 86400.5\n") != NULL);
    CHECK(strstr(r.body, "Seconds until expiry.\\nSecond\n") != NULL);
    CHECK(strstr(r.body, "_bucket{version=\"TLSv1.3\",le=\"0.005\"} 1\n") != NULL);
    CHECK(strstr(r.body, "_bucket{version=\"TLSv1.3\",le=\"+Inf\"} 2\n") != NULL);
    CHECK(strstr(r.body, "seconds_count{version=\"TLSv1.3\"} 2\n") != NULL);
    CHECK(strstr(r.body, "seconds_count{version=\"TLSv1.2\"} 0\n") != NULL);
    int rc = promtool_check(r.body, strlen(r.body));
    if (rc == -1)
        fprintf(stderr, "SKIP promtool check: promtool not installed (Debian package "
                        "'prometheus')\n");
    else
        CHECK_EQ_INT(rc, 0);
    free(r.body);

    CHECK_EQ_INT(one_shot(&X, "GET /certs HTTP/1.1\r\n\r\n", false, &r), 200);
    CHECK(strstr(r.head, "Content-Type: application/json\r\n") != NULL);
    CHECK_EQ_STR(r.body, "[{\"name\":\"example.test\",\"source\":\"static\"}]");
    free(r.body);
    admin_down(&X);
}

static void test_head_and_keepalive(void)
{
    struct client c;
    struct resp r1, r2, r3;
    admin_up(&X);
    CHECK(client_open(&X, &c));
    const char *reqs = "HEAD /metrics HTTP/1.1\r\nHost: a\r\n\r\n"
                       "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
    client_send(&c, reqs, strlen(reqs)); /* two pipelined requests in one segment */
    CHECK(client_response(&X, &c, true, &r1));
    CHECK(client_response(&X, &c, false, &r2));
    CHECK_EQ_INT(r1.status, 200);
    CHECK_EQ_INT(r2.status, 200);
    CHECK_EQ_STR(r1.body, "");
    CHECK(r1.clen > 100 && r1.clen == r2.clen && strlen(r2.body) == r2.clen);
    /* The same connection still serves a third request after both. */
    client_send(&c, "HEAD /nope HTTP/1.1\r\n\r\n", 23);
    CHECK(client_response(&X, &c, true, &r3));
    CHECK_EQ_INT(r3.status, 404);
    CHECK(strcasestr(r3.head, "Content-Length: 10\r\n") != NULL);
    CHECK_EQ_INT(c.len, 0);
    CHECK(!c.eof);
    free(r1.body);
    free(r2.body);
    free(r3.body);
    client_close(&X, &c);
    admin_down(&X);
}

/* The response has this status and "Connection: close", and the server then closes. */
static void expect_closing_error(const char *req, size_t len, int status)
{
    struct client c;
    struct resp r;
    CHECK(client_open(&X, &c));
    client_send(&c, req, len);
    CHECK(client_response(&X, &c, false, &r));
    CHECK_EQ_INT(r.status, status);
    CHECK(strstr(r.head, "Connection: close\r\n") != NULL);
    CHECK(run_until(&X, c_eof, &c));
    free(r.body);
    client_close(&X, &c);
}

static void test_errors(void)
{
    struct resp r;
    admin_up(&X);
    CHECK_EQ_INT(one_shot(&X, "GET /nope HTTP/1.1\r\n\r\n", false, &r), 404);
    free(r.body);
    CHECK_EQ_INT(one_shot(&X, "POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nx=1", false, &r),
                 405);
    CHECK(strstr(r.head, "\r\nAllow: GET, HEAD\r\n") != NULL);
    free(r.body);
    expect_closing_error("GARBAGE\r\n\r\n", strlen("GARBAGE\r\n\r\n"), 400);
    expect_closing_error("GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", 37, 400);
    expect_closing_error("GET /healthz HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                         63, 400);
    size_t n = 20000;
    char *big = tf_malloc(n + 64);
    int k = snprintf(big, 64, "GET /healthz HTTP/1.1\r\nX-Big: ");
    memset(big + k, 'a', n);
    memcpy(big + k + n, "\r\n\r\n", 4);
    expect_closing_error(big, (size_t)k + n + 4, 431);
    k = snprintf(big, 64, "GET /");
    memset(big + k, 'b', n);
    memcpy(big + k + n, " HTTP/1.1\r\n\r\n", 13);
    expect_closing_error(big, (size_t)k + n + 13, 414);
    free(big);
    /* HTTP/1.0 without keep-alive is answered and closed. */
    expect_closing_error("GET /healthz HTTP/1.0\r\n\r\n", 25, 200);
    admin_down(&X);
}

/* A client that half-closes right after its request still gets the whole answer. */
static void on_c_shutdown(uv_shutdown_t *req, int status)
{
    CHECK_EQ_INT(status, 0);
    free(req);
}

static void test_half_close(void)
{
    struct client c;
    struct resp r;
    admin_up(&X);
    CHECK(client_open(&X, &c));
    client_send(&c, "GET /metrics HTTP/1.1\r\n\r\n", 25);
    uv_shutdown_t *sreq = tf_malloc(sizeof *sreq);
    CHECK_EQ_INT(uv_shutdown(sreq, (uv_stream_t *)&c.tcp, on_c_shutdown), 0);
    CHECK(client_response(&X, &c, false, &r));
    CHECK_EQ_INT(r.status, 200);
    CHECK(run_until(&X, c_eof, &c));
    free(r.body);
    client_close(&X, &c);
    admin_down(&X);
}

static void test_idle_and_cap(void)
{
    struct client a, b, over;
    struct resp r;
    admin_up(&X);
    tf_admin_set_limits(X.admin, 2, 150, 0);
    uint64_t t0 = tf_mono_ms();
    CHECK(client_open(&X, &a));
    CHECK(run_until(&X, c_eof, &a)); /* idle: closed by the server */
    CHECK(tf_mono_ms() - t0 >= 140);
    client_close(&X, &a);

    tf_admin_set_limits(X.admin, 0, 5000, 0);
    CHECK(client_open(&X, &a));
    CHECK(client_open(&X, &b));
    client_send(&a, "GET /healthz HTTP/1.1\r\n\r\n", 25);
    CHECK(client_response(&X, &a, false, &r));
    free(r.body);
    CHECK(client_open(&X, &over)); /* accepted by the kernel, then closed by the cap */
    client_send(&over, "GET /healthz HTTP/1.1\r\n\r\n", 25);
    CHECK(run_until(&X, c_eof, &over));
    CHECK_EQ_INT(over.len, 0);
    client_send(&b, "GET /healthz HTTP/1.1\r\n\r\n", 25);
    CHECK(client_response(&X, &b, false, &r));
    CHECK_EQ_INT(r.status, 200);
    free(r.body);
    client_close(&X, &over);
    /* Closing the admin with clients attached closes them and reports done once. */
    admin_down(&X);
    CHECK(run_until(&X, c_eof, &a));
    CHECK(run_until(&X, c_eof, &b));
    client_close(&X, &a);
    client_close(&X, &b);
}

static void test_many_scrapes(void)
{
    struct client c;
    struct resp r;
    int ok_keepalive = 0, ok_fresh = 0;
    admin_up(&X);
    int calls0 = X.fake.metrics_calls;
    CHECK(client_open(&X, &c));
    for (int i = 0; i < 1000; i++) {
        X.fake.handshakes_ok = (uint64_t)i;
        client_send(&c, "GET /metrics HTTP/1.1\r\n\r\n", 25);
        char want[64];
        snprintf(want, sizeof want, "{result=\"ok\"} %d\n", i);
        if (client_response(&X, &c, false, &r) && r.status == 200 && strstr(r.body, want))
            ok_keepalive++;
        free(r.body);
    }
    client_close(&X, &c);
    for (int i = 0; i < 1000; i++) {
        if (one_shot(&X, "GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", false, &r) == 200)
            ok_fresh++;
        free(r.body);
    }
    CHECK_EQ_INT(ok_keepalive, 1000);
    CHECK_EQ_INT(ok_fresh, 1000);
    CHECK_EQ_INT(X.fake.metrics_calls - calls0, 2000);
    CHECK_EQ_INT(tf_admin_requests(X.admin), 2000);
    admin_down(&X);
}

/* 2,000 pipelined scrapes in one write: the server stops reading while its output queues up
 * and resumes as the client drains it; every request is answered, in order. */
static void test_pipelined_flood(void)
{
    struct client c;
    struct resp r;
    int ok = 0;
    admin_up(&X);
    const char *one = "GET /metrics HTTP/1.1\r\n\r\n";
    size_t n = strlen(one);
    char *all = tf_malloc(2000 * n);
    for (int i = 0; i < 2000; i++)
        memcpy(all + (size_t)i * n, one, n);
    CHECK(client_open(&X, &c));
    client_send(&c, all, 2000 * n);
    for (int i = 0; i < 2000; i++) {
        if (client_response(&X, &c, false, &r) && r.status == 200 && strlen(r.body) == r.clen)
            ok++;
        free(r.body);
    }
    CHECK_EQ_INT(ok, 2000);
    free(all);
    client_close(&X, &c);
    admin_down(&X);
}

static bool no_admin_conns(void *arg)
{
    return tf_admin_connections(arg) == 0;
}

/* A client that pipelines requests for a 1 MiB page and never reads is dropped once more
 * than the hard cap of output is waiting; it gets fewer answers than it asked for. */
static void test_non_reader_dropped(void)
{
    struct client c;
    admin_up(&X);
    X.fake.pad = 1 << 20;
    const char *one = "GET /metrics HTTP/1.1\r\n\r\n";
    size_t n = strlen(one);
    char all[100 * 32];
    for (int i = 0; i < 100; i++)
        memcpy(all + (size_t)i * n, one, n);
    CHECK(client_connect(&X, &c, true));
    client_send(&c, all, 100 * n);
    CHECK(run_until(&X, no_admin_conns, X.admin));
    uint64_t served = tf_admin_requests(X.admin);
    CHECK(served >= 1 && served < 100);
    CHECK_EQ_INT(uv_read_start((uv_stream_t *)&c.tcp, on_c_alloc, on_c_read), 0);
    CHECK(run_until(&X, c_eof, &c));
    CHECK(c.len >= (1u << 20) && c.len < 100u * (1u << 20));
    X.fake.pad = 0;
    client_close(&X, &c);
    admin_down(&X);
}

static void test_null_hooks_and_bind_failure(void)
{
    struct resp r;
    admin_up(&X);
    struct tf_admin_hooks none = {0};
    char err[256] = "";
    struct tf_admin *dup =
        tf_admin_start(&X.loop, (struct sockaddr *)&X.addr, &none, err, sizeof err);
    CHECK(dup == NULL);
    CHECK(strstr(err, "address already in use") != NULL);
    admin_down(&X);

    struct sockaddr_in any;
    uv_ip4_addr("127.0.0.1", 0, &any);
    X.admin = tf_admin_start(&X.loop, (struct sockaddr *)&any, &none, err, sizeof err);
    CHECK(X.admin != NULL);
    struct sockaddr_storage ss;
    tf_admin_address(X.admin, &ss);
    memcpy(&X.addr, &ss, sizeof X.addr);
    X.done_calls = 0;
    CHECK_EQ_INT(one_shot(&X, "GET /healthz HTTP/1.1\r\n\r\n", false, &r), 503);
    free(r.body);
    CHECK_EQ_INT(one_shot(&X, "GET /metrics HTTP/1.1\r\n\r\n", false, &r), 404);
    free(r.body);
    admin_down(&X);
}

static void test_writer(void)
{
    struct tf_histogram h;
    double bad[] = {1, 1};
    CHECK_EQ_INT(tf_histogram_init(&h, bad, 2), TF_EINVAL);
    CHECK_EQ_INT(tf_histogram_init(&h, bad, 0), TF_EINVAL);
    double nan_bound[] = {NAN};
    CHECK_EQ_INT(tf_histogram_init(&h, nan_bound, 1), TF_EINVAL);
    double b[] = {0.1, 1};
    CHECK_EQ_INT(tf_histogram_init(&h, b, 2), 0);
    tf_histogram_observe(&h, 0.1); /* le is inclusive */
    tf_histogram_observe(&h, 0.5);
    tf_histogram_observe(&h, 7);
    tf_histogram_observe(&h, NAN);
    struct tf_metrics_buf out;
    tf_metrics_buf_init(&out);
    tf_metrics_histogram(&out, "x_seconds", "X.", NULL, &h);
    tf_metrics_gauge(&out, "g", "G.", "a=\"1\"", INFINITY);
    tf_metrics_gauge(&out, "g", "G.", "a=\"2\"", -INFINITY);
    tf_metrics_gauge(&out, "g", "G.", "a=\"3\"", NAN);
    tf_metrics_gauge(&out, "g", "G.", "a=\"4\"", 0.1);
    tf_metrics_gauge(&out, "g", "G.", "a=\"5\"", 1e300);
    CHECK_EQ_STR(out.data, "# HELP x_seconds X.\n# TYPE x_seconds histogram\n"
                           "x_seconds_bucket{le=\"0.1\"} 1\nx_seconds_bucket{le=\"1\"} 2\n"
                           "x_seconds_bucket{le=\"+Inf\"} 3\nx_seconds_sum 7.6\n"
                           "x_seconds_count 3\n# HELP g G.\n# TYPE g gauge\ng{a=\"1\"} +Inf\n"
                           "g{a=\"2\"} -Inf\ng{a=\"3\"} NaN\ng{a=\"4\"} 0.1\ng{a=\"5\"} 1e+300\n");
    tf_metrics_buf_reset(&out);
    CHECK_EQ_INT(out.len, 0);
    tf_metrics_buf_json_str(&out, "a\"b\\c\n\x01");
    CHECK_EQ_STR(out.data, "a\\\"b\\\\c\\u000a\\u0001");
    tf_metrics_buf_reset(&out);
    char longer[600];
    memset(longer, 'z', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    tf_metrics_buf_printf(&out, "<%s>", longer);
    CHECK_EQ_INT(out.len, 601);
    tf_metrics_buf_free(&out);
}

int main(void)
{
    tf_log_setup(TF_LOG_WARN, false);
    CHECK_EQ_INT(uv_loop_init(&X.loop), 0);
    uv_timer_init(&X.loop, &X.deadline);
    X.deadline.data = &X;
    X.fake.healthy = true;
    X.fake.ready = true;
    tf_histogram_init(&X.fake.latency[0], tf_metrics_handshake_bounds,
                      tf_metrics_handshake_nbounds);
    tf_histogram_init(&X.fake.latency[1], tf_metrics_handshake_bounds,
                      tf_metrics_handshake_nbounds);

    TF_TEST_RUN(test_writer);
    TF_TEST_RUN(test_health_states);
    TF_TEST_RUN(test_metrics_page);
    TF_TEST_RUN(test_head_and_keepalive);
    TF_TEST_RUN(test_errors);
    TF_TEST_RUN(test_half_close);
    TF_TEST_RUN(test_idle_and_cap);
    TF_TEST_RUN(test_many_scrapes);
    TF_TEST_RUN(test_pipelined_flood);
    TF_TEST_RUN(test_non_reader_dropped);
    TF_TEST_RUN(test_null_hooks_and_bind_failure);

    uv_close((uv_handle_t *)&X.deadline, NULL);
    uv_run(&X.loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&X.loop), 0);
    return TF_TEST_DONE();
}
