/*
 * admin.c: the admin HTTP endpoint on the control loop. Owns the listener and every admin
 * connection (accept, llhttp parsing in its default strict mode, responses, idle timeout,
 * connection cap, teardown); routing, the token and the actions are admin_action.c's, and
 * the content of each page comes from the server's hooks, so nothing here reads or changes
 * proxy state. While an action's answer is owed, the connection reads nothing more. It must never run on a worker, never
 * block, and never let a slow or hostile client grow memory without bound: request heads
 * are capped (431/414), reading stops while responses queue up, and a connection whose
 * unsent output passes a hard cap is dropped.
 *
 * Lifetime: every connection embeds its TCP handle and idle timer and frees itself after
 * both close callbacks ran. The admin counts its listener plus its live connections and
 * frees itself (then calls the done callback) when tf_admin_close was called and the count
 * reaches zero.
 */
#include "admin_int.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <llhttp.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void admin_maybe_done(struct tf_admin *a)
{
    if (!a->closing || a->pending > 0)
        return;
    void (*done)(void *) = a->done;
    void *arg = a->done_arg;
    if (a->token)
        OPENSSL_cleanse(a->token, strlen(a->token));
    free(a->token);
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
    free(c->body);
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
    if (c->reply)
        c->reply->conn = NULL; /* the hook's answer is dropped */
    c->reply = NULL;
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
    /* Not while an action's answer is owed: rbuf still holds the requests behind it. */
    if (c->read_paused && !c->finishing && !c->reply &&
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
    case 202:
        return "Accepted";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Error";
    }
}

/* Queue one response. body is borrowed (copied); with head_only the Content-Length still
 * describes the body, which is not sent (RFC 9110 section 9.3.2). extra: header lines
 * ("Allow: GET\r\n"), or NULL. */
void admin_respond(struct admin_conn *c, int status, const char *ctype, const char *body,
                           size_t body_len, bool head_only, bool close_after, const char *extra)
{
    char head[512];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\n%s%s\r\n",
                     status, status_text(status), ctype, body_len, extra ? extra : "",
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

static void conn_respond(struct admin_conn *c, int status, const char *ctype, const char *body,
                         size_t body_len, bool head_only, bool close_after)
{
    admin_respond(c, status, ctype, body, body_len, head_only, close_after, NULL);
}

/* A JSON error document {"error": msg}. */
void admin_respond_json_error(struct admin_conn *c, int status, const char *msg,
                               bool head_only, bool close_after, const char *extra)
{
    char *body = tf_admin_json_error(msg);
    admin_respond(c, status, "application/json", body, strlen(body), head_only, close_after,
                   extra);
    free(body);
}

void admin_respond_text(struct admin_conn *c, int status, const char *text, bool head_only,
                         bool close_after)
{
    conn_respond(c, status, "text/plain; charset=utf-8", text, strlen(text), head_only,
                 close_after);
}

/* A page whose body a hook writes into a fresh buffer. */
void admin_respond_hook(struct admin_conn *c, const char *ctype,
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

/* Count request-head bytes; past the cap the request is refused with status. */
int admin_head_grow(struct admin_conn *c, size_t n, int status)
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
    c->field_len = c->auth_len = c->body_len = 0;
    c->in_value = c->auth_field = c->auth_over = false;
    OPENSSL_cleanse(c->auth, sizeof c->auth);
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
    return admin_head_grow(c, n, 414);
}

static int on_headers_complete(llhttp_t *p)
{
    struct admin_conn *c = p->data;
    c->method = (llhttp_method_t)llhttp_get_method(p);
    c->keep_alive = llhttp_should_keep_alive(p) != 0;
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > ADMIN_BODY_MAX) {
        c->reject_status = 413;
        return HPE_USER;
    }
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
    admin_route(c);
    if (c->closing || c->finishing || c->reply)
        return HPE_PAUSED; /* nothing more is read from this connection (for now) */
    return 0;
}

/* Act on what llhttp_execute returned for data[0..len). */
static void conn_parse_result(struct admin_conn *c, llhttp_errno_t err, const char *data,
                              size_t len)
{
    if (err == HPE_PAUSED && c->reply && !c->closing) {
        /* An action answers later: read nothing more until then, and keep what follows the
         * request (pipelined requests) where it is, in rbuf. */
        const char *pos = llhttp_get_error_pos(&c->parser);
        c->rest_off = (size_t)(pos - c->rbuf);
        c->rest_len = (size_t)(data + len - pos);
        uv_read_stop((uv_stream_t *)&c->tcp);
        uv_timer_stop(&c->timer);
        return;
    }
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
    if (status == 413)
        admin_respond_json_error(c, 413, "the request body is too large", false, true, NULL);
    else
        admin_respond_text(c, status, status == 400 ? "bad request\n" : "request too large\n", false,
                     true);
}

/* An action was answered: go on with the bytes that followed it, then read again. */
void admin_resume(struct admin_conn *c)
{
    if (c->finishing || c->closing)
        return;
    llhttp_resume(&c->parser);
    conn_touch(c, c->admin->idle_ms);
    size_t len = c->rest_len;
    c->rest_len = 0;
    if (len > 0)
        conn_parse_result(c, llhttp_execute(&c->parser, c->rbuf + c->rest_off, len),
                          c->rbuf + c->rest_off, len);
    if (c->reply || c->finishing || c->closing || c->read_paused)
        return;
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
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
    conn_parse_result(c, llhttp_execute(&c->parser, buf->base, (size_t)nread), buf->base,
                      (size_t)nread);
}

/* The client's address as "ADDR:PORT" for the log ("?" when unknown). */
static void peer_name(struct admin_conn *c)
{
    struct sockaddr_storage ss;
    int len = (int)sizeof ss;
    char ip[INET6_ADDRSTRLEN] = "?";
    snprintf(c->peer, sizeof c->peer, "?");
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
    else
        uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
    snprintf(c->peer, sizeof c->peer, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip,
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
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
    peer_name(c);
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
    a->settings.on_header_field = admin_on_header_field;
    a->settings.on_header_value = admin_on_header_value;
    a->settings.on_body = admin_on_body;
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

void tf_admin_set_token(struct tf_admin *a, const char *token, bool reads)
{
    if (a->token)
        OPENSSL_cleanse(a->token, strlen(a->token));
    free(a->token);
    a->token = token ? tf_strdup(token) : NULL;
    a->token_reads = reads;
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
