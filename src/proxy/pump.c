/*
 * pump.c: moving bytes between the client (TLS) and the backend (plaintext) once the
 * handshake is done. Both directions share side_send() and the same backpressure rule: when
 * the receiving side's write queue passes TF_WQ_HIGH, reading from the sending side stops
 * until the queue drains below TF_WQ_LOW, so a slow peer cannot grow memory. Half-close
 * travels each way on its own: client close_notify/FIN -> backend shutdown(SHUT_WR), backend
 * FIN -> close_notify then TCP FIN to the client. In mode=http the plaintext goes through
 * http_mode.c on its way in both directions; mode=tcp stays a straight copy. Never frees the
 * connection: errors go through tf_conn_close(), answers-then-close through tf_pump_finish().
 */
#include "backend_pool_int.h"
#include "conn_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/tls.h"

#include <openssl/err.h>
#include <stdlib.h>
#include <string.h>

/* A queued write. Owns its bytes; freed by on_write_done (or tf_pump_free_held). */
struct tf_wreq {
    uv_write_t req;
    struct tf_conn *c;
    struct tf_side *side;
    struct tf_wreq *next;
    size_t len;
    char data[];
};

void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static struct tf_side *other(struct tf_conn *c, struct tf_side *s)
{
    return s == &c->client ? &c->backend : &c->client;
}

static enum tf_conn_end write_error(const struct tf_conn *c, const struct tf_side *s)
{
    return s == &c->client ? TF_CONN_END_CLIENT_WRITE_ERROR : TF_CONN_END_BACKEND_WRITE_ERROR;
}

/* Data never outlives the read callback (OpenSSL consumes it, or what is left is kept by
 * tlsbio, or it is written at once), so one buffer per worker serves every read. */
void on_pump_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)size;
    struct tf_conn *c = h->data;
    buf->base = c->w->rx;
    buf->len = sizeof c->w->rx;
}

static int start_reading(struct tf_conn *c, struct tf_side *s)
{
    if (s->reading || s->eof || s->hold || c->closing || (c->finishing && s == &c->backend))
        return 0;
    int r = s == &c->client ? uv_read_start((uv_stream_t *)s->sock, on_pump_alloc, on_client_read)
                            : uv_read_start((uv_stream_t *)s->sock, tf_bconn_alloc, tf_bconn_read);
    if (r == 0)
        s->reading = true;
    return r;
}

static void stop_reading(struct tf_side *s)
{
    if (s->reading) {
        uv_read_stop((uv_stream_t *)s->sock);
        s->reading = false;
    }
}

static void pause_side(struct tf_side *s)
{
    s->paused = true;
    stop_reading(s);
}

static void resume_side(struct tf_conn *c, struct tf_side *s)
{
    s->paused = false;
    if (s->hold)
        return;
    if (s == &c->client)
        tf_pump_client_data(c); /* plaintext may already wait inside OpenSSL */
    if (!s->paused && !c->closing && start_reading(c, s) != 0)
        tf_conn_close(c, TF_CONN_END_READ_FAILED);
}

static void on_write_done(uv_write_t *req, int status)
{
    struct tf_wreq *w = (struct tf_wreq *)req;
    struct tf_conn *c = w->c;
    struct tf_side *s = w->side;
    s->wq -= w->len;
    free(w);
    if (c->closing)
        return;
    if (status != 0) {
        tf_conn_close(c, write_error(c, s));
        return;
    }
    struct tf_side *src = other(c, s);
    if (src->paused && s->wq <= TF_WQ_LOW)
        resume_side(c, src);
}

static void submit(struct tf_conn *c, struct tf_wreq *w)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
    int r = uv_write(&w->req, (uv_stream_t *)w->side->sock, &b, 1, on_write_done);
    if (r != 0) {
        w->side->wq -= w->len;
        free(w);
        tf_conn_close(c, TF_CONN_END_WRITE_FAILED);
    }
}

/* Send len bytes to side s: written at once when the socket takes them, else queued (or
 * held until the backend connects). Pauses the other side when s's queue is over the mark. */
static void side_send(struct tf_conn *c, struct tf_side *s, const char *data, size_t len)
{
    bool connected = s == &c->client || c->state == TF_CONN_PUMPING;
    if (connected && s->wq == 0) {
        uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
        int n = uv_try_write((uv_stream_t *)s->sock, &b, 1);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            tf_conn_close(c, write_error(c, s));
            return;
        }
    }
    if (len == 0)
        return;
    struct tf_wreq *w = tf_malloc(sizeof *w + len);
    w->c = c;
    w->side = s;
    w->next = NULL;
    w->len = len;
    memcpy(w->data, data, len);
    s->wq += len;
    if (connected) {
        submit(c, w);
    } else {
        if (s->held_tail)
            s->held_tail->next = w;
        else
            s->held = w;
        s->held_tail = w;
    }
    if (!c->closing && s->wq > TF_WQ_HIGH)
        pause_side(other(c, s));
}

void tf_pump_flush_tls(struct tf_conn *c)
{
    tf_tlsbio_flush(&c->bio);
}

/* TLS records for the client, several coalesced per call. While closing only a direct write
 * is tried (an alert or close_notify on its way out); after our FIN nothing more goes. */
void tf_pump_tls_out(void *arg, const char *data, size_t len)
{
    struct tf_conn *c = arg;
    if (c->closing) {
        if (c->client.open && c->client.wq == 0) {
            uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
            (void)uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        }
        return;
    }
    if (!c->client.shut)
        side_send(c, &c->client, data, len);
}

/* The request is allocated per shutdown (a connection makes at most two, at its end) rather
 * than kept in every connection; libuv runs this callback in every case, also with
 * UV_ECANCELED when the socket is closed first, so it frees the request. */
static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status; /* a failed shutdown means the peer is gone: the close path follows */
    struct tf_conn *c = req->data;
    bool client = req->handle == (uv_stream_t *)&c->tcp;
    free(req);
    if (c->closing)
        return;
    struct tf_side *s = client ? &c->client : &c->backend;
    s->shut_done = true;
    if (c->finishing && c->client.eof && c->client.shut_done)
        tf_conn_close(c, c->end); /* the answer is out and the client has nothing more */
    else
        tf_conn_maybe_done(c);
}

static void shutdown_side(struct tf_conn *c, struct tf_side *s)
{
    if (s->shut || c->closing)
        return;
    s->shut = true;
    if (s->eof && s->wq == 0) { /* wq counts held and submitted writes until done */
        /* This peer is done sending too and nothing waits to go to it: both directions end
         * here, so the close that follows sends its FIN (and whatever the kernel holds) and
         * a shutdown() first would be a syscall for nothing. */
        s->shut_done = true;
        tf_conn_maybe_done(c);
        return;
    }
    uv_shutdown_t *req = tf_malloc(sizeof *req);
    req->data = c;
    /* libuv runs the shutdown after every queued write: the last bytes go out first. */
    int r = uv_shutdown(req, (uv_stream_t *)s->sock, on_shutdown);
    if (r != 0) {
        free(req);
        s->shut_done = true;
        tf_conn_maybe_done(c);
    }
}

void tf_pump_client_eof(struct tf_conn *c)
{
    if (c->client.eof)
        return;
    c->client.eof = true;
    stop_reading(&c->client);
    if (c->http && tf_httpmode_client_eof(c))
        return; /* the backend connection stays up for the responses owed, or the pool */
    if (c->state == TF_CONN_PUMPING)
        shutdown_side(c, &c->backend);
    tf_conn_maybe_done(c);
}

/* Hand plaintext from the client to the backend (or the HTTP rewriter). */
static void forward_client(struct tf_conn *c, size_t n)
{
    if (n == 0)
        return;
    c->bytes_in += (uint64_t)n;
    if (c->http)
        tf_httpmode_client_data(c, c->w->scratch, n);
    else
        side_send(c, &c->backend, c->w->scratch, n);
}

static bool can_read_client(const struct tf_conn *c)
{
    return !c->client.paused && !c->client.hold && !c->closing && !c->finishing &&
           !c->client.eof;
}

/* Decrypt what the TLS input holds. Several records are gathered into the scratch buffer
 * and forwarded with one write (fewer syscalls on uploads); data always goes before an EOF. */
void tf_pump_client_data(struct tf_conn *c)
{
    size_t got = 0;
    int e = SSL_ERROR_WANT_READ;
    while (can_read_client(c)) {
        tf_tls_clear_errors();
        int n = SSL_read(c->ssl, c->w->scratch + got, (int)(sizeof c->w->scratch - got));
        if (n <= 0) {
            e = SSL_get_error(c->ssl, n);
            break;
        }
        got += (size_t)n;
        if (got == sizeof c->w->scratch) {
            forward_client(c, got);
            got = 0;
        }
    }
    forward_client(c, got);
    if (c->closing)
        return;
    if (e == SSL_ERROR_ZERO_RETURN) {
        tf_pump_client_eof(c);
    } else if (e != SSL_ERROR_WANT_READ) {
        if (tf_log_enabled(TF_LOG_DEBUG))
            tf_log_ssl(TF_LOG_DEBUG, "pump", "SSL_read");
        tf_tls_clear_errors();
        tf_pump_flush_tls(c);
        tf_conn_close(c, TF_CONN_END_TLS_ERROR);
        return;
    }
    tf_pump_flush_tls(c);
}

static void backend_eof(struct tf_conn *c)
{
    c->backend.eof = true;
    stop_reading(&c->backend);
    if (c->http && tf_httpmode_backend_eof(c))
        return;
    tf_tls_clear_errors();
    if (SSL_shutdown(c->ssl) < 0)
        tf_tls_clear_errors(); /* the client may be gone already; FIN still tells it */
    tf_pump_flush_tls(c);
    shutdown_side(c, &c->client);
}

void tf_pump_backend_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tf_conn *c = s->data;
    if (c->closing || c->finishing || nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_EOF)
            backend_eof(c);
        else if (!(c->http && tf_httpmode_backend_stale(c)))
            tf_conn_close(c, TF_CONN_END_BACKEND_READ_ERROR);
        return;
    }
    tf_conn_touch(c);
    c->bytes_out += (uint64_t)nread;
    if (c->http)
        tf_httpmode_backend_data(c, buf->base, (size_t)nread);
    else if (!tf_pump_to_client(c, buf->base, (size_t)nread))
        return;
    tf_pump_flush_tls(c);
}

bool tf_pump_to_client(struct tf_conn *c, const char *data, size_t len)
{
    if (c->closing)
        return false;
    if (len == 0)
        return true;
    tf_tls_clear_errors();
    int r = SSL_write(c->ssl, data, (int)len);
    if (r != (int)len) {
        if (tf_log_enabled(TF_LOG_DEBUG))
            tf_log_ssl(TF_LOG_DEBUG, "pump", "SSL_write");
        tf_tls_clear_errors();
        tf_conn_close(c, TF_CONN_END_TLS_WRITE_ERROR);
        return false;
    }
    return true;
}

void tf_pump_to_backend(struct tf_conn *c, const char *data, size_t len)
{
    if (!c->closing && !c->finishing && len > 0)
        side_send(c, &c->backend, data, len);
}

void tf_pump_hold_client(struct tf_conn *c, bool hold)
{
    struct tf_side *s = &c->client;
    if (hold == s->hold || c->closing)
        return;
    s->hold = hold;
    if (hold) {
        stop_reading(s);
        return;
    }
    if (!s->paused)
        resume_side(c, s);
}

void tf_pump_finish(struct tf_conn *c, enum tf_conn_end reason)
{
    if (c->closing || c->finishing)
        return;
    c->finishing = true;
    if (!c->end)
        c->end = reason;
    stop_reading(&c->backend);
    tf_pump_free_held(c);
    tf_tls_clear_errors();
    if (SSL_shutdown(c->ssl) < 0)
        tf_tls_clear_errors();
    tf_pump_flush_tls(c);
    if (c->closing)
        return;
    shutdown_side(c, &c->client);
    if (c->closing)
        return;
    if (c->client.eof && c->client.shut_done) {
        tf_conn_close(c, c->end);
        return;
    }
    /* Keep draining the client (see on_client_read), but not for long. */
    c->client.hold = c->client.paused = false;
    if (start_reading(c, &c->client) != 0) {
        tf_conn_close(c, c->end);
        return;
    }
    tf_conn_touch(c);
    tf_conn_linger(c);
}

void tf_pump_read_connecting(struct tf_conn *c)
{
    (void)start_reading(c, &c->backend); /* failing, tf_pump_start_backend() tries again */
}

void tf_pump_start_backend(struct tf_conn *c)
{
    struct tf_side *b = &c->backend;
    struct tf_wreq *w = b->held;
    b->held = b->held_tail = NULL;
    while (w) {
        struct tf_wreq *next = w->next;
        if (c->closing) {
            b->wq -= w->len;
            free(w);
        } else {
            submit(c, w);
        }
        w = next;
    }
    if (c->closing)
        return;
    if (c->client.eof)
        shutdown_side(c, b);
    if (!b->paused && start_reading(c, b) != 0)
        tf_conn_close(c, TF_CONN_END_BACKEND_READ_FAILED);
}

void tf_pump_free_held(struct tf_conn *c)
{
    struct tf_wreq *w = c->backend.held;
    while (w) {
        struct tf_wreq *next = w->next;
        c->backend.wq -= w->len;
        free(w);
        w = next;
    }
    c->backend.held = c->backend.held_tail = NULL;
}
