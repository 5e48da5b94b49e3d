/*
 * storage_redis_tls.c: TLS to Redis (rediss://) for a hiredis that has none (Debian 12's
 * 0.14 has neither hiredis_ssl nor pluggable I/O in its async API). The Redis store owns a
 * relay on its loop: a unix socket in a private directory (storage_redis_relay_dir.c,
 * removed at close) that hiredis connects to with redisAsyncConnectUnix, for the command connection,
 * the subscriber and every reconnect. For each connection accepted there, the relay
 * resolves the Redis host (uv_getaddrinfo), connects over TCP, runs an OpenSSL client over
 * memory BIOs (the server certificate verified against --storage-ca, or the system store
 * without it; the host name or IP address checked; SNI for names) and then pumps bytes both
 * ways, reading a side only while the other side's write queue is under a cap. hiredis
 * reads nothing until the TLS session is open, so its first commands wait in the socket.
 * Any failure (resolution, connect, certificate, handshake time limit, Redis closing)
 * closes both sides: hiredis sees its connection end exactly as if Redis were unreachable
 * and the store's reconnect with backoff runs unchanged; the relay keeps the reason
 * (tf_rs_relay_why), which the store logs once. The relay never logs on its own, never
 * blocks the loop after it was created, and never logs what it relays.
 */
#include "storage_redis_int.h"

#include "tlsfront/base/common.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RELAY_QUEUE_CAP (256 * 1024) /* bytes queued on one side before the other pauses */
#define RELAY_READ_SIZE 65536
#define RELAY_SUN_MAX 100            /* sun_path is 108 bytes; hiredis copies at most 107 */

enum side { DOWN, UP }; /* DOWN: hiredis over the unix socket; UP: Redis over TCP */

struct rs_relay {
    uv_loop_t *loop;
    SSL_CTX *ctx;         /* owned */
    char *host;           /* owned: what the certificate must name */
    char port[8];
    bool host_is_ip;
    uint32_t timeout_ms;  /* resolve + connect + TLS handshake */
    char dir[RELAY_SUN_MAX], path[RELAY_SUN_MAX + 8], pid[RELAY_SUN_MAX + 8];
    uv_pipe_t listener;   /* listener.data == this */
    uv_fs_t fs;           /* the unlinks and rmdir at close */
    struct rs_tunnel *tunnels;
    int pending;          /* the listener, the cleanup and each live tunnel, at close */
    bool closing;
    char why[256];        /* why the last tunnel ended, "" when it opened since */
    void (*done)(void *arg);
    void *done_arg;
};

/* One hiredis connection relayed to Redis. Owned by the relay's list; freed when its three
 * handles are closed and its resolver request is over. */
struct rs_tunnel {
    struct rs_tunnel *next, *prev;
    struct rs_relay *relay;
    uv_pipe_t down; /* data == this */
    uv_tcp_t up;    /* data == this */
    uv_timer_t timer; /* the opening time limit */
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool open, closing, gai_pending;
    size_t queued[2];  /* bytes being written to each side */
    bool reading[2];
    int handles; /* still to close */
};

struct relay_write {
    uv_write_t req;
    struct rs_tunnel *t;
    enum side side;
    size_t len;
    char data[];
};

/* ---- closing ---- */

static void relay_step(struct rs_relay *r)
{
    if (--r->pending > 0)
        return;
    void (*done)(void *) = r->done;
    void *arg = r->done_arg;
    SSL_CTX_free(r->ctx);
    free(r->host);
    free(r);
    if (done)
        done(arg);
}

static void tunnel_free_maybe(struct rs_tunnel *t)
{
    if (t->handles > 0 || t->gai_pending)
        return;
    struct rs_relay *r = t->relay;
    if (t->prev)
        t->prev->next = t->next;
    else
        r->tunnels = t->next;
    if (t->next)
        t->next->prev = t->prev;
    SSL_free(t->ssl);
    free(t);
    if (r->closing)
        relay_step(r);
}

static void on_tunnel_handle_closed(uv_handle_t *h)
{
    struct rs_tunnel *t = h->data;
    t->handles--;
    tunnel_free_maybe(t);
}

/* End both sides; why (NULL: hiredis ended it, nothing to report) is kept for the store. */
static void tunnel_close(struct rs_tunnel *t, const char *why)
{
    if (t->closing)
        return;
    t->closing = true;
    if (why)
        snprintf(t->relay->why, sizeof(t->relay->why), "%s", why);
    if (t->gai_pending)
        uv_cancel((uv_req_t *)&t->gai); /* on_resolved still runs and frees nothing twice */
    uv_handle_t *hs[] = {(uv_handle_t *)&t->down, (uv_handle_t *)&t->up,
                         (uv_handle_t *)&t->timer};
    for (size_t i = 0; i < TF_ARRAY_LEN(hs); i++)
        uv_close(hs[i], on_tunnel_handle_closed);
}

/* The TLS failure in words: the verification result when a certificate was refused, else
 * the first error in OpenSSL's queue. Clears the queue. */
static void tls_why(struct rs_tunnel *t, const char *what, char *out, size_t outlen)
{
    long v = SSL_get_verify_result(t->ssl);
    unsigned long e = ERR_peek_error();
    if (v != X509_V_OK) {
        snprintf(out, outlen, "TLS: certificate verification failed: %s",
                 X509_verify_cert_error_string(v));
    } else if (e) {
        char buf[200];
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(out, outlen, "TLS: %s: %s", what, buf);
    } else {
        snprintf(out, outlen, "TLS: %s failed", what);
    }
    ERR_clear_error();
}

/* ---- the pump ---- */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    buf->base = tf_malloc(RELAY_READ_SIZE);
    buf->len = RELAY_READ_SIZE;
}

static uv_stream_t *side_stream(struct rs_tunnel *t, enum side s)
{
    return s == DOWN ? (uv_stream_t *)&t->down : (uv_stream_t *)&t->up;
}

/* Read side s only while the other side's queue is under the cap (and, for hiredis's side,
 * once the session is open). */
static int side_update(struct rs_tunnel *t, enum side s)
{
    bool want = !t->closing && t->queued[!s] < RELAY_QUEUE_CAP && (s == UP || t->open);
    if (want == t->reading[s])
        return 0;
    t->reading[s] = want;
    if (!want)
        return uv_read_stop(side_stream(t, s));
    return uv_read_start(side_stream(t, s), on_alloc, on_read);
}

static void on_write(uv_write_t *req, int status)
{
    struct relay_write *w = (struct relay_write *)req;
    struct rs_tunnel *t = w->t;
    t->queued[w->side] -= w->len;
    enum side s = w->side;
    free(w);
    if (t->closing)
        return;
    if (status < 0) {
        tunnel_close(t, s == UP ? "connection to redis lost" : NULL);
        return;
    }
    if (side_update(t, !s) < 0)
        tunnel_close(t, NULL);
}

/* Queue w (len bytes filled) to side s; takes w on every path. */
static int side_write(struct rs_tunnel *t, enum side s, struct relay_write *w, size_t len)
{
    uv_buf_t b = uv_buf_init(w->data, (unsigned)len);
    w->t = t;
    w->side = s;
    w->len = len;
    int err = uv_write(&w->req, side_stream(t, s), &b, 1, on_write);
    if (err < 0) {
        free(w);
        return err;
    }
    t->queued[s] += len;
    return side_update(t, !s);
}

/* Send the TLS records OpenSSL produced to Redis. */
static int flush_up(struct rs_tunnel *t)
{
    size_t n = BIO_ctrl_pending(t->wbio);
    if (n == 0)
        return 0;
    struct relay_write *w = tf_malloc(sizeof(*w) + n);
    if (BIO_read(t->wbio, w->data, (int)n) != (int)n) {
        free(w);
        return TF_ETLS;
    }
    return side_write(t, UP, w, n);
}

/* Decrypt what Redis sent and hand it to hiredis. */
static int pump_down(struct rs_tunnel *t, char *why, size_t whylen)
{
    char buf[16384]; /* one TLS record's plaintext at most */
    for (;;) {
        ERR_clear_error();
        int k = SSL_read(t->ssl, buf, sizeof(buf));
        if (k > 0) {
            struct relay_write *w = tf_malloc(sizeof(*w) + (size_t)k);
            memcpy(w->data, buf, (size_t)k);
            int err = side_write(t, DOWN, w, (size_t)k);
            if (err < 0)
                return err;
            continue;
        }
        int e = SSL_get_error(t->ssl, k);
        if (e == SSL_ERROR_WANT_READ)
            return flush_up(t); /* e.g. the answer to a KeyUpdate */
        if (e == SSL_ERROR_ZERO_RETURN)
            snprintf(why, whylen, "redis closed the connection");
        else
            tls_why(t, "read", why, whylen);
        return TF_ETLS;
    }
}

/* Encrypt what hiredis sent and send it to Redis. */
static int pump_up(struct rs_tunnel *t, const char *data, size_t n, char *why, size_t whylen)
{
    ERR_clear_error();
    if (SSL_write(t->ssl, data, (int)n) != (int)n) { /* memory BIOs take everything */
        tls_why(t, "write", why, whylen);
        return TF_ETLS;
    }
    return flush_up(t);
}

/* Drive the handshake with what arrived; once open, start reading hiredis's side. */
static int handshake(struct rs_tunnel *t, char *why, size_t whylen)
{
    ERR_clear_error();
    int k = SSL_do_handshake(t->ssl);
    int e = k == 1 ? SSL_ERROR_NONE : SSL_get_error(t->ssl, k);
    if (e != SSL_ERROR_NONE && e != SSL_ERROR_WANT_READ) {
        tls_why(t, "handshake", why, whylen);
        flush_up(t); /* the alert, if any; the tunnel closes anyway */
        return TF_ETLS;
    }
    int err = flush_up(t); /* the ClientHello, or the Finished */
    if (err < 0 || e != SSL_ERROR_NONE)
        return err;
    t->open = true;
    t->relay->why[0] = '\0';
    uv_timer_stop(&t->timer);
    return side_update(t, DOWN);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct rs_tunnel *t = s->data;
    bool from_up = s == (uv_stream_t *)&t->up;
    char why[300] = "";
    int err = 0;
    if (t->closing || nread == 0) {
        free(buf->base);
        return;
    }
    if (nread < 0) {
        err = (int)nread;
        if (from_up)
            snprintf(why, sizeof(why), "connection to redis lost (%s)", uv_strerror(err));
    } else if (!from_up) {
        err = pump_up(t, buf->base, (size_t)nread, why, sizeof(why));
    } else if (BIO_write(t->rbio, buf->base, (int)nread) != (int)nread) {
        err = TF_ETLS;
        snprintf(why, sizeof(why), "TLS: out of buffer");
    } else {
        err = t->open ? 0 : handshake(t, why, sizeof(why));
        if (err == 0 && t->open)
            err = pump_down(t, why, sizeof(why));
    }
    free(buf->base);
    if (err < 0)
        tunnel_close(t, why[0] ? why : NULL);
}

/* ---- opening ---- */

static int tls_start(struct rs_tunnel *t, char *why, size_t whylen)
{
    struct rs_relay *r = t->relay;
    ERR_clear_error();
    t->ssl = SSL_new(r->ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!t->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        tls_why(t, "setup", why, whylen);
        return TF_ETLS;
    }
    SSL_set_bio(t->ssl, rb, wb); /* the SSL owns both from here */
    t->rbio = rb;
    t->wbio = wb;
    SSL_set_connect_state(t->ssl);
    bool ok;
    if (r->host_is_ip) {
        /* RFC 6066 section 3: no SNI for address literals; the iPAddress SAN is checked. */
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), r->host) == 1;
    } else {
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        ok = SSL_set_tlsext_host_name(t->ssl, r->host) == 1 &&
             SSL_set1_host(t->ssl, r->host) == 1;
    }
    if (!ok) {
        tls_why(t, "setup", why, whylen);
        return TF_ETLS;
    }
    int err = side_update(t, UP);
    return err < 0 ? err : handshake(t, why, whylen);
}

static void on_connected(uv_connect_t *req, int status)
{
    struct rs_tunnel *t = req->data;
    char why[300] = "";
    if (t->closing)
        return;
    if (status < 0) {
        snprintf(why, sizeof(why), "connect: %s", uv_strerror(status));
        tunnel_close(t, why);
        return;
    }
    uv_tcp_nodelay(&t->up, 1);
    uv_tcp_keepalive(&t->up, 1, 60); /* a vanished Redis is noticed even with no traffic */
    if (tls_start(t, why, sizeof(why)) < 0)
        tunnel_close(t, why[0] ? why : "TLS: cannot start");
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rs_tunnel *t = req->data;
    t->gai_pending = false;
    if (t->closing) {
        uv_freeaddrinfo(res);
        tunnel_free_maybe(t);
        return;
    }
    if (status == 0 && res)
        status = uv_tcp_connect(&t->creq, &t->up, res->ai_addr, on_connected);
    uv_freeaddrinfo(res);
    if (status < 0)
        tunnel_close(t, uv_strerror(status));
}

static void on_open_timeout(uv_timer_t *h)
{
    tunnel_close(h->data, "TLS: no session within the time limit");
}

static void on_accept(uv_stream_t *server, int status)
{
    struct rs_relay *r = server->data;
    if (status < 0 || r->closing)
        return;
    struct rs_tunnel *t = tf_calloc(1, sizeof(*t));
    t->relay = r;
    uv_pipe_init(r->loop, &t->down, 0);
    uv_tcp_init(r->loop, &t->up);
    uv_timer_init(r->loop, &t->timer);
    t->down.data = t->up.data = t->timer.data = t->gai.data = t->creq.data = t;
    t->handles = 3;
    /* As hiredis's own poll handle: an idle connection must not keep a loop alive (the
     * store's watchdog does while operations are live). */
    uv_unref((uv_handle_t *)&t->down);
    uv_unref((uv_handle_t *)&t->up);
    uv_unref((uv_handle_t *)&t->timer);
    t->next = r->tunnels;
    if (r->tunnels)
        r->tunnels->prev = t;
    r->tunnels = t;
    if (uv_accept(server, (uv_stream_t *)&t->down) != 0) {
        tunnel_close(t, NULL);
        return;
    }
    uv_timer_start(&t->timer, on_open_timeout, r->timeout_ms, 0);
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int err = uv_getaddrinfo(r->loop, &t->gai, on_resolved, r->host, r->port, &hints);
    if (err < 0) {
        char why[200];
        snprintf(why, sizeof(why), "%s", uv_strerror(err));
        tunnel_close(t, why);
        return;
    }
    t->gai_pending = true;
}

/* ---- the relay ---- */

static SSL_CTX *client_ctx(const char *ca_file, char *err, size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        snprintf(err, errlen, "--storage: cannot set up the TLS client context");
        goto fail;
    }
    if (ca_file ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1
                : SSL_CTX_set_default_verify_paths(ctx) != 1) {
        snprintf(err, errlen, "--storage-ca: %s: cannot load CA certificates",
                 ca_file ? ca_file : "(system store)");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

struct rs_relay *tf_rs_relay_new(uv_loop_t *loop, const char *host, int port,
                                 const char *ca_file, uint32_t timeout_ms, char *err,
                                 size_t errlen)
{
    struct rs_relay *r = tf_calloc(1, sizeof(*r));
    r->loop = loop;
    r->host = tf_strdup(host);
    snprintf(r->port, sizeof(r->port), "%d", port);
    unsigned char addr[16];
    r->host_is_ip = uv_inet_pton(AF_INET, host, addr) == 0 ||
                    uv_inet_pton(AF_INET6, host, addr) == 0;
    r->timeout_ms = timeout_ms;
    r->ctx = client_ctx(ca_file, err, errlen);
    if (!r->ctx)
        goto fail;
    if (tf_rs_relay_dir_make(r->dir, sizeof(r->dir), RELAY_SUN_MAX) != 0) {
        snprintf(err, errlen, "--storage: cannot create a private directory for the TLS relay "
                              "under $TMPDIR or /tmp");
        goto fail;
    }
    snprintf(r->path, sizeof(r->path), "%s/s", r->dir);
    snprintf(r->pid, sizeof(r->pid), "%s/pid", r->dir);
    uv_pipe_init(loop, &r->listener, 0); /* cannot fail on Unix */
    r->listener.data = r;
    int e = uv_pipe_bind(&r->listener, r->path);
    if (e == 0)
        e = uv_listen((uv_stream_t *)&r->listener, 16, on_accept);
    if (e != 0) {
        snprintf(err, errlen, "--storage: TLS relay socket %s: %s", r->path, uv_strerror(e));
        tf_rs_relay_close(r, NULL, NULL); /* the loop frees it and removes the directory */
        return NULL;
    }
    uv_unref((uv_handle_t *)&r->listener);
    return r;
fail:
    SSL_CTX_free(r->ctx);
    free(r->host);
    free(r);
    return NULL;
}

const char *tf_rs_relay_path(const struct rs_relay *r)
{
    return r->path;
}

const char *tf_rs_relay_why(const struct rs_relay *r)
{
    return r->why[0] ? r->why : NULL;
}

static void on_rmdir(uv_fs_t *req)
{
    struct rs_relay *r = req->data;
    uv_fs_req_cleanup(req);
    relay_step(r);
}

static void on_unlink_pid(uv_fs_t *req)
{
    struct rs_relay *r = req->data;
    uv_fs_req_cleanup(req);
    if (uv_fs_rmdir(r->loop, &r->fs, r->dir, on_rmdir) != 0)
        relay_step(r);
}

static void on_unlink(uv_fs_t *req)
{
    struct rs_relay *r = req->data;
    uv_fs_req_cleanup(req);
    if (uv_fs_unlink(r->loop, &r->fs, r->pid, on_unlink_pid) != 0)
        relay_step(r);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct rs_relay *r = h->data;
    r->fs.data = r;
    if (uv_fs_unlink(r->loop, &r->fs, r->path, on_unlink) != 0)
        relay_step(r);
}

void tf_rs_relay_close(struct rs_relay *r, void (*done)(void *arg), void *arg)
{
    r->closing = true;
    r->done = done;
    r->done_arg = arg;
    r->pending = 1; /* the listener, then the unlink and rmdir */
    for (struct rs_tunnel *t = r->tunnels; t; t = t->next) {
        r->pending++;
        tunnel_close(t, NULL);
    }
    uv_close((uv_handle_t *)&r->listener, on_listener_closed);
}
