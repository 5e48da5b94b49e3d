/*
 * http_client_conn.c: the HTTP client's connections (http_client_int.h): DNS through
 * uv_getaddrinfo, each resolved address tried in turn with uv_tcp, OpenSSL over memory BIOs
 * for https (hostname or IP address verified), an idle timer, and idle keep-alive
 * connections pooled per origin. A connection belongs to the client while on its list, then
 * to its own pending handle closes; it serves one request at a time and completes it through
 * tf_httpc_req_finish(), only ever from a loop callback. Never blocks the loop.
 */
#include "http_client_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_IDLE_MS 30000        /* a pooled connection is closed after this long unused */
#define HTTP_MAX_IDLE_PER_ORIGIN 4
#define HTTP_READ_SIZE 65536

/* A write request owns its buffer. */
struct conn_write {
    uv_write_t req;
    struct tf_http_conn *conn;
    char data[];
};

static void conn_fail(struct tf_http_conn *conn, int err);
static void conn_open(struct tf_httpc *c, struct tf_httpc_req *req);
static int conn_send(struct tf_http_conn *conn);
static void conn_connect_next(struct tf_http_conn *conn);

/* ---- binding requests, the pool ---- */

/* Unbinds conn from its request, which it returns (or NULL). */
static struct tf_httpc_req *conn_detach(struct tf_http_conn *conn)
{
    struct tf_httpc_req *req = conn->req;
    if (req)
        req->conn = NULL;
    conn->req = NULL;
    return req;
}

/* Origin (RFC 9110 §4.3.1): scheme, host and port. */
static bool same_origin(const struct tf_http_conn *conn, bool tls, const char *host,
                        uint16_t port)
{
    return conn->tls == tls && conn->port == port && strcmp(conn->host, host) == 0;
}

/* Binds req to conn with a fresh parser for this attempt. */
static void conn_attach(struct tf_http_conn *conn, struct tf_httpc_req *req)
{
    tf_http_parser_free(req->parser);
    req->parser = tf_http_parser_new(req->max_body, req->head);
    conn->req = req;
    req->conn = conn;
    conn->got_bytes = false;
}

static struct tf_http_conn *pool_take(struct tf_httpc *c, const struct tf_http_url *u)
{
    for (struct tf_http_conn *conn = c->conns; conn; conn = conn->next) {
        if (conn->req || conn->state != CONN_OPEN ||
            !same_origin(conn, u->tls, u->host, u->port))
            continue;
        uv_timer_stop(&conn->idle_timer);
        uv_ref((uv_handle_t *)&conn->tcp);
        return conn;
    }
    return NULL;
}

/* Gives req a connection: a pooled one to the same origin, or a new one. */
void tf_httpc_conn_start(struct tf_httpc_req *req)
{
    struct tf_httpc *c = req->client;
    struct tf_http_conn *conn = pool_take(c, &req->url);
    if (!conn) {
        conn_open(c, req);
        return;
    }
    TF_DEBUG("http", "conn=%llu reused for %s", (unsigned long long)conn->id, req->url.path);
    conn_attach(conn, req);
    int r = conn_send(conn);
    if (r < 0)
        conn_fail(conn, r);
}

/* ---- lifetime ---- */

static void conn_maybe_free(struct tf_http_conn *conn)
{
    if (!conn->closing || conn->holds > 0)
        return;
    struct tf_httpc *c = conn->client;
    SSL_free(conn->ssl);
    uv_freeaddrinfo(conn->addrs); /* accepts NULL */
    free(conn->host);
    free(conn);
    tf_httpc_release(c);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    struct tf_http_conn *conn = h->data;
    conn->holds--;
    conn_maybe_free(conn);
}

/* The TCP handle closes either for good or to try the next address. */
static void on_tcp_closed(uv_handle_t *h)
{
    struct tf_http_conn *conn = h->data;
    conn->holds--;
    if (conn->closing)
        conn_maybe_free(conn);
    else
        conn_connect_next(conn);
}

static void conn_tcp_close(struct tf_http_conn *conn)
{
    if (!conn->tcp_open)
        return;
    conn->tcp_open = false;
    uv_close((uv_handle_t *)&conn->tcp, on_tcp_closed);
}

/* Idempotent teardown. The idle timer is always open, so the memory outlives this call. */
void tf_httpc_conn_close(struct tf_http_conn *conn)
{
    if (conn->closing)
        return;
    struct tf_httpc *c = conn->client;
    conn->closing = true;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        c->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    conn_detach(conn);
    if (conn->resolving)
        uv_cancel((uv_req_t *)&conn->gai); /* its callback still runs and drops its hold */
    conn_tcp_close(conn);
    uv_close((uv_handle_t *)&conn->idle_timer, on_conn_handle_closed);
}

static void on_idle_timeout(uv_timer_t *t)
{
    struct tf_http_conn *conn = t->data;
    TF_DEBUG("http", "conn=%llu idle, closing", (unsigned long long)conn->id);
    tf_httpc_conn_close(conn);
}

/* Parks a connection after a complete response, or closes it if the origin has enough. */
static void pool_put(struct tf_http_conn *conn)
{
    int same = 0;
    for (struct tf_http_conn *o = conn->client->conns; o; o = o->next) {
        if (o != conn && !o->req && same_origin(o, conn->tls, conn->host, conn->port))
            same++;
    }
    if (same >= HTTP_MAX_IDLE_PER_ORIGIN) {
        tf_httpc_conn_close(conn);
        return;
    }
    /* An idle connection must not keep the loop alive on its own. */
    uv_unref((uv_handle_t *)&conn->tcp);
    tf_httpc_timer_arm(&conn->idle_timer, on_idle_timeout, HTTP_IDLE_MS);
}

/* Fails the current request (or retries it once on a fresh connection when a reused one
 * broke before any response byte: the server closed it while idle) and closes conn. */
static void conn_fail(struct tf_http_conn *conn, int err)
{
    struct tf_httpc_req *req = conn_detach(conn);
    bool retry = req && conn->reused && !conn->got_bytes && !req->retried;
    if (retry || !req)
        TF_DEBUG("http", "conn=%llu %s: %s", (unsigned long long)conn->id,
                 req ? "reused connection failed, retrying" : "idle connection closed",
                 tf_strerror(err));
    tf_httpc_conn_close(conn);
    if (!req)
        return;
    if (retry) {
        req->retried = true;
        conn_open(req->client, req);
    } else {
        tf_httpc_req_finish(req, err, NULL);
    }
}

/* ---- I/O ---- */

static void on_write(uv_write_t *w, int status)
{
    struct conn_write *cw = (struct conn_write *)w;
    struct tf_http_conn *conn = cw->conn;
    free(cw);
    conn->writes--;
    if (status < 0 && !conn->closing)
        conn_fail(conn, status);
}

/* Queues cw (n bytes); takes ownership of cw on every path. */
static int conn_write_raw(struct tf_http_conn *conn, struct conn_write *cw, size_t n)
{
    uv_buf_t b = uv_buf_init(cw->data, (unsigned)n);
    cw->conn = conn;
    int r = uv_write(&cw->req, (uv_stream_t *)&conn->tcp, &b, 1, on_write);
    if (r < 0) {
        free(cw);
        return r;
    }
    conn->writes++;
    return 0;
}

/* Sends whatever TLS records OpenSSL produced. */
static int conn_flush(struct tf_http_conn *conn)
{
    size_t n = BIO_ctrl_pending(conn->wbio);
    if (n == 0)
        return 0;
    struct conn_write *cw = tf_malloc(sizeof *cw + n);
    if (BIO_read(conn->wbio, cw->data, (int)n) != (int)n) {
        free(cw);
        return TF_ETLS;
    }
    return conn_write_raw(conn, cw, n);
}

static int conn_send(struct tf_http_conn *conn)
{
    struct tf_httpc_req *req = conn->req;
    if (!conn->tls) {
        struct conn_write *cw = tf_malloc(sizeof *cw + req->wire_len);
        memcpy(cw->data, req->wire, req->wire_len);
        return conn_write_raw(conn, cw, req->wire_len);
    }
    ERR_clear_error();
    int r = SSL_write(conn->ssl, req->wire, (int)req->wire_len);
    if (r <= 0) {
        tf_log_ssl(TF_LOG_INFO, "http", "SSL_write");
        return TF_ETLS;
    }
    return conn_flush(conn);
}

/* Response bytes (plaintext) for the current request; bytes on an idle connection mean the
 * server misbehaves and the connection is dropped. */
static int conn_deliver(struct tf_http_conn *conn, const char *data, size_t n)
{
    if (!conn->req)
        return TF_EPROTO;
    conn->got_bytes = true;
    return tf_http_parser_feed(conn->req->parser, data, n);
}

static int conn_on_eof(struct tf_http_conn *conn)
{
    if (conn->peer_closed)
        return 0;
    conn->peer_closed = true;
    if (!conn->req)
        return UV_EOF;
    int r = tf_http_parser_eof(conn->req->parser);
    return r == 0 || conn->got_bytes ? r : UV_EOF; /* nothing at all: report the EOF */
}

static int tls_failed(struct tf_http_conn *conn, const char *what)
{
    long v = conn->ssl ? SSL_get_verify_result(conn->ssl) : X509_V_OK;
    if (v != X509_V_OK) {
        TF_INFO("http", "conn=%llu %s:%u certificate verification failed: %s",
                (unsigned long long)conn->id, conn->host, conn->port,
                X509_verify_cert_error_string(v));
        ERR_clear_error();
    } else {
        char ctx[300];
        snprintf(ctx, sizeof ctx, "conn=%llu %s:%u %s", (unsigned long long)conn->id,
                 conn->host, conn->port, what);
        tf_log_ssl(TF_LOG_INFO, "http", ctx);
    }
    return TF_ETLS;
}

/* Drives the handshake; once done, sends the request. */
static int conn_handshake(struct tf_http_conn *conn)
{
    ERR_clear_error();
    int r = SSL_do_handshake(conn->ssl);
    int e = r == 1 ? SSL_ERROR_NONE : SSL_get_error(conn->ssl, r);
    int fr = conn_flush(conn); /* the ClientHello, Finished, or an alert */
    if (e == SSL_ERROR_NONE) {
        if (fr < 0)
            return fr;
        conn->state = CONN_OPEN;
        return conn_send(conn);
    }
    if (e == SSL_ERROR_WANT_READ)
        return fr;
    return tls_failed(conn, "TLS handshake");
}

/* Decrypts everything buffered and hands it to the parser. */
static int conn_tls_read(struct tf_http_conn *conn)
{
    char buf[16384];
    for (;;) {
        ERR_clear_error();
        int k = SSL_read(conn->ssl, buf, sizeof buf);
        if (k > 0) {
            int r = conn_deliver(conn, buf, (size_t)k);
            if (r < 0)
                return r;
            continue;
        }
        int e = SSL_get_error(conn->ssl, k);
        if (e == SSL_ERROR_WANT_READ)
            return conn_flush(conn); /* e.g. a KeyUpdate answer */
        if (e == SSL_ERROR_ZERO_RETURN)
            return conn_on_eof(conn);
        return tls_failed(conn, "SSL_read");
    }
}

static int conn_on_bytes(struct tf_http_conn *conn, const char *data, size_t n)
{
    if (!conn->tls)
        return conn_deliver(conn, data, n);
    if (BIO_write(conn->rbio, data, (int)n) != (int)n)
        return TF_ETLS;
    if (conn->state == CONN_HANDSHAKING) {
        int r = conn_handshake(conn);
        if (r < 0 || conn->state != CONN_OPEN)
            return r;
    }
    return conn_tls_read(conn);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = tf_malloc(HTTP_READ_SIZE);
    buf->len = HTTP_READ_SIZE;
}

/* A whole response arrived: pool or close the connection, then complete the request. */
static void conn_check_done(struct tf_http_conn *conn)
{
    struct tf_httpc_req *req = conn->req;
    if (!req || !tf_http_parser_done(req->parser))
        return;
    bool keep_alive = false;
    const struct tf_http_response *resp = tf_http_parser_response(req->parser, &keep_alive);
    conn_detach(conn);
    conn->reused = true;
    /* Not reusable if the server answered before taking our whole request. */
    if (keep_alive && !conn->peer_closed && conn->writes == 0 && !conn->client->closing)
        pool_put(conn);
    else
        tf_httpc_conn_close(conn);
    tf_httpc_req_finish(req, 0, resp);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct tf_http_conn *conn = s->data;
    int r = 0; /* reads racing our own close are dropped */
    if (!conn->closing && nread > 0)
        r = conn_on_bytes(conn, buf->base, (size_t)nread);
    else if (!conn->closing && nread < 0)
        r = nread == UV_EOF ? conn_on_eof(conn) : (int)nread;
    free(buf->base);
    if (conn->closing)
        return;
    if (r < 0)
        conn_fail(conn, r);
    else
        conn_check_done(conn);
}

/* ---- establishment ---- */

static int conn_tls_start(struct tf_http_conn *conn)
{
    ERR_clear_error();
    conn->ssl = SSL_new(conn->client->ssl_ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!conn->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        return tls_failed(conn, "SSL_new");
    }
    SSL_set_bio(conn->ssl, rb, wb); /* the SSL owns both from here */
    conn->rbio = rb;
    conn->wbio = wb;
    SSL_set_connect_state(conn->ssl);
    bool ok;
    if (conn->host_is_ip) {
        /* RFC 6066 §3: no SNI for address literals; check the iPAddress SAN instead. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), conn->host) == 1;
    } else {
        SSL_set_hostflags(conn->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(conn->ssl, conn->host) == 1 &&
             SSL_set1_host(conn->ssl, conn->host) == 1;
    }
    if (!ok)
        return tls_failed(conn, "TLS client setup");
    conn->state = CONN_HANDSHAKING;
    return conn_handshake(conn);
}

static void on_connect(uv_connect_t *cr, int status)
{
    struct tf_http_conn *conn = cr->data;
    if (conn->closing)
        return; /* the TCP handle is being closed; its callback finishes the job */
    if (status < 0) {
        TF_DEBUG("http", "conn=%llu connect to %s:%u: %s", (unsigned long long)conn->id,
                 conn->host, conn->port, uv_strerror(status));
        conn->last_err = status;
        conn_tcp_close(conn); /* on_tcp_closed tries the next address */
        return;
    }
    uv_freeaddrinfo(conn->addrs);
    conn->addrs = conn->next_addr = NULL;
    /* A TLS flight can take several writes: keep Nagle from holding the last one back
     * (best effort, the request works either way). */
    (void)uv_tcp_nodelay(&conn->tcp, 1);
    int r = uv_read_start((uv_stream_t *)&conn->tcp, on_alloc, on_read);
    if (r == 0 && conn->tls) {
        r = conn_tls_start(conn);
    } else if (r == 0) {
        conn->state = CONN_OPEN;
        r = conn_send(conn);
    }
    if (r < 0)
        conn_fail(conn, r);
}

/* Tries the resolved addresses in order; fails with the last error when none is left. */
static void conn_connect_next(struct tf_http_conn *conn)
{
    struct addrinfo *ai = conn->next_addr;
    if (!ai) {
        conn_fail(conn, conn->last_err ? conn->last_err : UV_EAI_NONAME);
        return;
    }
    conn->next_addr = ai->ai_next;
    conn->state = CONN_CONNECTING;
    int r = uv_tcp_init(conn->client->loop, &conn->tcp);
    if (r < 0) {
        conn_fail(conn, r);
        return;
    }
    conn->tcp.data = conn;
    conn->tcp_open = true;
    conn->holds++;
    conn->connect_req.data = conn;
    r = uv_tcp_connect(&conn->connect_req, &conn->tcp, ai->ai_addr, on_connect);
    if (r < 0) {
        conn->last_err = r;
        conn_tcp_close(conn);
    }
}

static void on_resolved(uv_getaddrinfo_t *gai, int status, struct addrinfo *res)
{
    struct tf_http_conn *conn = gai->data;
    conn->resolving = false;
    conn->holds--;
    if (conn->closing) {
        uv_freeaddrinfo(res);
        conn_maybe_free(conn);
        return;
    }
    if (status < 0) {
        conn_fail(conn, status);
        return;
    }
    conn->addrs = conn->next_addr = res;
    conn_connect_next(conn);
}

/* Opens a new connection for req (from a loop callback); failures complete req. */
static void conn_open(struct tf_httpc *c, struct tf_httpc_req *req)
{
    struct tf_http_conn *conn = tf_calloc(1, sizeof *conn);
    conn->client = c;
    conn->id = ++c->next_conn_id;
    conn->host = tf_strdup(req->url.host);
    conn->port = req->url.port;
    conn->tls = req->url.tls;
    conn->host_is_ip = req->url.host_is_ip;
    int r = uv_timer_init(c->loop, &conn->idle_timer);
    if (r < 0) {
        free(conn->host);
        free(conn);
        tf_httpc_req_finish(req, r, NULL);
        return;
    }
    conn->idle_timer.data = conn;
    uv_unref((uv_handle_t *)&conn->idle_timer); /* it only ever runs for idle connections */
    conn->holds = 1;
    c->pending++;
    conn->next = c->conns;
    if (c->conns)
        c->conns->prev = conn;
    c->conns = conn;
    conn_attach(conn, req);
    conn->state = CONN_RESOLVING;
    conn->gai.data = conn;
    char port[8];
    snprintf(port, sizeof port, "%u", conn->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_protocol = IPPROTO_TCP,
                             .ai_flags = conn->host_is_ip ? AI_NUMERICHOST : AI_ADDRCONFIG};
    TF_DEBUG("http", "conn=%llu connecting to %s:%s", (unsigned long long)conn->id, conn->host,
             port);
    r = uv_getaddrinfo(c->loop, &conn->gai, on_resolved, conn->host, port, &hints);
    if (r < 0) {
        conn_fail(conn, r);
        return;
    }
    conn->resolving = true;
    conn->holds++;
}
