/*
 * admin.c: the admin HTTP endpoint on the control loop. Owns the listener and every admin
 * connection (accept, llhttp parsing in its default strict mode, routing, responses, idle
 * timeout, connection cap, teardown); the content of each page comes from the server's
 * hooks, so nothing here reads or changes proxy state. It must never run on a worker, never
 * block, and never let a slow or hostile client grow memory without bound: request heads
 * are capped (431/414), reading stops while responses queue up, and a connection whose
 * unsent output passes a hard cap is dropped.
 *
 * Lifetime: every connection embeds its TCP handle and idle timer and frees itself after
 * both close callbacks ran. The admin counts its listener plus its live connections and
 * frees itself (then calls the done callback) when tf_admin_close was called and the count
 * reaches zero.
 */
#include "tlsfront/ctl/admin.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADMIN_URL_MAX 1024
#define ADMIN_QUEUE_SOFT (256 * 1024)      /* stop reading above this many unsent bytes */
#define ADMIN_QUEUE_HARD (4 * 1024 * 1024) /* drop the connection above this */
#define ADMIN_LINGER_MS 2000               /* after our FIN, wait this long for the peer's */

struct tf_admin {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct tf_admin_hooks hooks;
    llhttp_settings_t settings;
    struct admin_conn *conns; /* live connections, owned by the admin */
    int n_conns, max_conns;
    uint64_t idle_ms;
    size_t max_header;
    uint64_t requests;
    int pending; /* listener + live connections; free at zero once closing */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct tf_admin *admin;
    struct admin_conn *prev, *next;
    llhttp_t parser;
    int pending_closes;
    size_t head_bytes; /* request line + headers of the current request */
    size_t url_len;
    int reject_status; /* 414/431 decided by a callback, sent after execute */
    llhttp_method_t method;
    bool keep_alive;
    bool closing, finishing, shut_done, peer_eof, read_paused, overloaded;
    char url[ADMIN_URL_MAX + 1];
    char rbuf[4096]; /* read buffer; reads are sequential so one suffices */
};

/* One queued response: the request and its bytes in one allocation, freed in on_write. */
struct admin_write {
    uv_write_t req;
    size_t len;
    char data[];
};

static void admin_maybe_done(struct tf_admin *a)
{
    if (!a->closing || a->pending > 0)
        return;
    void (*done)(void *) = a->done;
    void *arg = a->done_arg;
    free(a);
    if (done)
        done(arg);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct admin_conn *c = h->data;
    if (--c->pending_closes > 0)
        return;
    struct tf_admin *a = c->admin;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->n_conns--;
    a->pending--;
    free(c);
    admin_maybe_done(a);
}

/* Idempotent teardown: cancels queued writes (their callbacks run first) and frees the
 * connection from the last close callback. */
static void conn_close(struct admin_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    c->pending_closes = 2;
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void on_idle(uv_timer_t *t)
{
    struct admin_conn *c = t->data;
    if (c->closing)
        return;
    TF_DEBUG("admin", "connection idle for too long, closing");
    conn_close(c);
}

static void conn_touch(struct admin_conn *c, uint64_t ms)
{
    uv_timer_start(&c->timer, on_idle, ms, 0);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    struct admin_conn *c = req->data;
    if (c->closing)
        return;
    c->shut_done = true;
    if (status < 0 || c->peer_eof) {
        conn_close(c);
        return;
    }
    /* Our FIN is out; keep reading (and discarding) briefly so the peer sees the whole
     * response instead of a reset caused by its unread bytes. */
    conn_touch(c, TF_MIN(c->admin->idle_ms, (uint64_t)ADMIN_LINGER_MS));
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* No more requests on this connection: send FIN once the queued responses are written
 * (uv_shutdown waits for them), then close on the peer's EOF or the linger timer. */
static void conn_finish(struct admin_conn *c)
{
    if (c->finishing || c->closing)
        return;
    c->finishing = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
    }
    if (c->read_paused && !c->peer_eof &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->read_paused = false;
}

static void on_write(uv_write_t *req, int status)
{
    struct admin_conn *c = req->handle->data;
    free(req);
    if (c->closing)
        return;
    if (status < 0) {
        TF_DEBUG("admin", "write failed: %s", uv_strerror(status));
        conn_close(c);
        return;
    }
    if (!c->finishing)
        conn_touch(c, c->admin->idle_ms);
    if (c->read_paused && !c->finishing &&
        uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= ADMIN_QUEUE_SOFT) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
            conn_close(c);
            return;
        }
        c->read_paused = false;
    }
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* Queue one response. body is borrowed (copied); with head_only the Content-Length still
 * describes the body, which is not sent (RFC 9110 section 9.3.2). */
static void conn_respond(struct admin_conn *c, int status, const char *ctype, const char *body,
                         size_t body_len, bool head_only, bool close_after)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%s%s\r\n",
                     status, status_text(status), ctype, body_len,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "",
                     close_after ? "Connection: close\r\n" : "");
    size_t send_body = head_only ? 0 : body_len;
    struct admin_write *w = tf_malloc(sizeof *w + (size_t)n + send_body);
    memcpy(w->data, head, (size_t)n);
    if (send_body)
        memcpy(w->data + n, body, send_body);
    w->len = (size_t)n + send_body;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)w->len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write);
    if (rc != 0) {
        free(w);
        TF_DEBUG("admin", "write failed: %s", uv_strerror(rc));
        conn_close(c);
        return;
    }
    if (close_after)
        conn_finish(c);
}

static void respond_text(struct admin_conn *c, int status, const char *text, bool head_only,
                         bool close_after)
{
    conn_respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only,
                 close_after);
}

/* A page whose body a hook writes into a fresh buffer. */
static void respond_hook(struct admin_conn *c, const char *ctype,
                         void (*hook)(void *, struct tf_metrics_buf *), bool head_only,
                         bool close_after)
{
    struct tf_admin *a = c->admin;
    struct tf_metrics_buf body;
    tf_metrics_buf_init(&body);
    hook(a->hooks.arg, &body);
    conn_respond(c, 200, ctype, body.data ? body.data : "", body.len, head_only, close_after);
    tf_metrics_buf_free(&body);
}

/* Route one complete request. Only GET and HEAD exist here; the query string is ignored. */
static void conn_route(struct admin_conn *c)
{
    struct tf_admin *a = c->admin;
    bool head = c->method == HTTP_HEAD;
    bool close_after = !c->keep_alive;
    size_t plen = strcspn(c->url, "?");
    c->url[plen] = '\0';
    if (c->method != HTTP_GET && !head) {
        respond_text(c, 405, "method not allowed\n", false, close_after);
    } else if (strcmp(c->url, "/healthz") == 0) {
        bool ok = a->hooks.healthy && a->hooks.healthy(a->hooks.arg);
        respond_text(c, ok ? 200 : 503, ok ? "ok\n" : "unhealthy\n", head, close_after);
    } else if (strcmp(c->url, "/readyz") == 0) {
        bool ok = a->hooks.ready && a->hooks.ready(a->hooks.arg);
        bool st = !a->hooks.storage_up || a->hooks.storage_up(a->hooks.arg);
        const char *body = ok ? (st ? "ready\n" : "ready; storage down\n")
                              : (st ? "not ready\n" : "not ready; storage down\n");
        respond_text(c, ok ? 200 : 503, body, head, close_after);
    } else if (strcmp(c->url, "/metrics") == 0 && a->hooks.metrics) {
        respond_hook(c, "text/plain; version=0.0.4; charset=utf-8", a->hooks.metrics, head,
                     close_after);
    } else if (strcmp(c->url, "/certs") == 0 && a->hooks.certs_json) {
        respond_hook(c, "application/json", a->hooks.certs_json, head, close_after);
    } else {
        respond_text(c, 404, "not found\n", head, close_after);
    }
}

/* Count request-head bytes; past the cap the request is refused with status. */
static int head_grow(struct admin_conn *c, size_t n, int status)
{
    c->head_bytes += n;
    if (c->head_bytes > c->admin->max_header) {
        c->reject_status = status;
        return HPE_USER;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->head_bytes = 0;
    c->url_len = 0;
    c->url[0] = '\0';
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    if (c->url_len + n > ADMIN_URL_MAX) {
        c->reject_status = 414;
        return HPE_USER;
    }
    memcpy(c->url + c->url_len, at, n);
    c->url_len += n;
    c->url[c->url_len] = '\0';
    return head_grow(c, n, 414);
}

static int on_header_data(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    return head_grow(p->data, n, 431);
}

static int on_headers_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->method = (llhttp_method_t)llhttp_get_method(p);
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    return 0;
}

/* A complete request. Reading stops above ADMIN_QUEUE_SOFT unsent bytes, but one read can
 * still hold a few hundred pipelined requests; a client that piles up more than
 * ADMIN_QUEUE_HARD unsent bytes that way is dropped before another response is built. One
 * large response alone (a big /metrics page) is always sent. */
static int on_message_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > ADMIN_QUEUE_HARD) {
        c->overloaded = true;
        return HPE_USER;
    }
    c->admin->requests++;
    conn_route(c);
    if (c->closing || c->finishing)
        return HPE_PAUSED; /* nothing more is read from this connection */
    return 0;
}

/* Act on what llhttp_execute returned for one read. */
static void conn_parse_result(struct admin_conn *c, llhttp_errno_t err)
{
    if (err == HPE_OK) {
        if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > ADMIN_QUEUE_SOFT) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->read_paused = true;
        }
        return;
    }
    if (err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE) {
        /* Connection: close was answered, or the client asked to switch protocols (after
         * its request was answered): either way this connection carries no more HTTP. */
        conn_finish(c);
        return;
    }
    if (c->overloaded) {
        TF_INFO("admin", "client does not read its responses; dropping the connection");
        conn_close(c);
        return;
    }
    int status = c->reject_status ? c->reject_status : 400;
    TF_DEBUG("admin", "bad request (%d): %s", status, llhttp_get_error_reason(&c->parser));
    respond_text(c, status, status == 400 ? "bad request\n" : "request too large\n", false, true);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct admin_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->rbuf, sizeof c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct admin_conn *c = s->data;
    if (c->closing || nread == 0)
        return;
    if (nread < 0) {
        c->peer_eof = true;
        uv_read_stop(s);
        /* A reset, or EOF once our FIN is out: done. A plain EOF otherwise is a half-close:
         * answer what was asked, then close (on_shutdown sees peer_eof). */
        if (nread != UV_EOF || c->shut_done)
            conn_close(c);
        else
            conn_finish(c);
        return;
    }
    if (c->finishing)
        return; /* draining after our FIN: the bytes are discarded */
    conn_touch(c, c->admin->idle_ms);
    conn_parse_result(c, llhttp_execute(&c->parser, buf->base, (size_t)nread));
}

/* Accept one connection. Over the cap it is accepted and closed at once, so the listen
 * queue does not stall; it still costs one small allocation until its close callbacks. */
static void on_connection(uv_stream_t *server, int status)
{
    struct tf_admin *a = server->data;
    if (a->closing)
        return;
    if (status < 0) {
        TF_WARN("admin", "accept failed: %s", uv_strerror(status));
        return;
    }
    struct admin_conn *c = tf_calloc(1, sizeof *c);
    c->admin = a;
    int rc = uv_tcp_init(a->loop, &c->tcp);
    if (rc != 0) {
        TF_WARN("admin", "cannot accept: %s", uv_strerror(rc));
        free(c);
        return;
    }
    uv_timer_init(a->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->n_conns++;
    a->pending++;
    llhttp_init(&c->parser, HTTP_REQUEST, &a->settings);
    c->parser.data = c;
    rc = uv_accept(server, (uv_stream_t *)&c->tcp);
    if (rc == 0 && a->n_conns > a->max_conns) {
        TF_DEBUG("admin", "connection cap (%d) reached, refusing", a->max_conns);
        rc = UV_EBUSY;
    }
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (rc != 0) {
        conn_close(c);
        return;
    }
    conn_touch(c, a->idle_ms);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct tf_admin *a = h->data;
    a->pending--;
    admin_maybe_done(a);
}

struct tf_admin *tf_admin_start(uv_loop_t *loop, const struct sockaddr *addr,
                                const struct tf_admin_hooks *hooks, char *err, size_t errlen)
{
    struct tf_admin *a = tf_calloc(1, sizeof *a);
    a->loop = loop;
    a->hooks = *hooks;
    a->max_conns = TF_ADMIN_MAX_CONNS;
    a->idle_ms = TF_ADMIN_IDLE_MS;
    a->max_header = TF_ADMIN_MAX_HEADER;
    llhttp_settings_init(&a->settings);
    a->settings.on_message_begin = on_message_begin;
    a->settings.on_url = on_url;
    a->settings.on_header_field = on_header_data;
    a->settings.on_header_value = on_header_data;
    a->settings.on_headers_complete = on_headers_complete;
    a->settings.on_message_complete = on_message_complete;
    int rc = uv_tcp_init(loop, &a->listener);
    if (rc != 0) {
        snprintf(err, errlen, "admin listener: %s", uv_strerror(rc));
        free(a);
        return NULL;
    }
    a->listener.data = a;
    a->pending = 1;
    const char *what = "bind";
    rc = uv_tcp_bind(&a->listener, addr, 0);
    if (rc == 0) {
        what = "listen";
        rc = uv_listen((uv_stream_t *)&a->listener, 64, on_connection);
    }
    if (rc != 0) {
        snprintf(err, errlen, "admin endpoint: cannot %s: %s", what, uv_strerror(rc));
        a->closing = true; /* freed by on_listener_closed when the loop runs */
        uv_close((uv_handle_t *)&a->listener, on_listener_closed);
        return NULL;
    }
    return a;
}

int tf_admin_address(const struct tf_admin *a, struct sockaddr_storage *out)
{
    int len = (int)sizeof *out;
    return uv_tcp_getsockname(&a->listener, (struct sockaddr *)out, &len);
}

void tf_admin_set_limits(struct tf_admin *a, int max_conns, uint64_t idle_ms, size_t max_header)
{
    if (max_conns > 0)
        a->max_conns = max_conns;
    if (idle_ms > 0)
        a->idle_ms = idle_ms;
    if (max_header > 0)
        a->max_header = max_header;
}

uint64_t tf_admin_requests(const struct tf_admin *a)
{
    return a->requests;
}

int tf_admin_connections(const struct tf_admin *a)
{
    return a->n_conns;
}

void tf_admin_close(struct tf_admin *a, void (*done)(void *arg), void *arg)
{
    if (!a || a->closing)
        return;
    a->closing = true;
    a->done = done;
    a->done_arg = arg;
    for (struct admin_conn *c = a->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&a->listener, on_listener_closed);
}
