/*
 * http_client_world.h: the world of tests/loop/net/test_http_client.c (included by it only):
 * self-signed certificates made with the OpenSSL API, an in-process scripted HTTP(S) server
 * on 127.0.0.1 port 0, and one test's loop, server, client and watchdog.
 */
#ifndef TF_TEST_HTTP_CLIENT_WORLD_H
#define TF_TEST_HTTP_CLIENT_WORLD_H

#include "tlsfront/base/common.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/base/log.h"
#include "tf_test.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <uv.h>

/* ---- certificates ---- */

struct pki {
    char dir[64];
    char good_pem[128], other_pem[128];  /* also the client's extra CA files */
    EVP_PKEY *good_key, *other_key;
    X509 *good_crt, *other_crt;
};

static bool add_ext(X509 *crt, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, crt, crt, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    bool ok = ext && X509_add_ext(crt, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok;
}

/* A self-signed P-256 certificate for san, written as PEM to path. */
static bool make_cert(const char *cn, const char *san, const char *path, EVP_PKEY **key,
                      X509 **crt)
{
    *key = EVP_EC_gen("P-256");
    *crt = X509_new();
    X509_NAME *name = X509_NAME_new();
    bool ok = *key && *crt && name && X509_set_version(*crt, 2) == 1 &&
              ASN1_INTEGER_set(X509_get_serialNumber(*crt), (long)getpid()) == 1 &&
              X509_gmtime_adj(X509_getm_notBefore(*crt), -3600) &&
              X509_gmtime_adj(X509_getm_notAfter(*crt), 86400) &&
              X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
                                         -1, -1, 0) == 1 &&
              X509_set_subject_name(*crt, name) == 1 && X509_set_issuer_name(*crt, name) == 1 &&
              X509_set_pubkey(*crt, *key) == 1 &&
              add_ext(*crt, NID_basic_constraints, "critical,CA:TRUE") &&
              add_ext(*crt, NID_subject_alt_name, san) &&
              X509_sign(*crt, *key, EVP_sha256()) > 0;
    X509_NAME_free(name);
    FILE *f = ok ? fopen(path, "w") : NULL;
    ok = f && PEM_write_X509(f, *crt) == 1;
    if (f)
        ok = fclose(f) == 0 && ok;
    return ok;
}

/* ---- the scripted server ---- */

enum mode {
    M_ECHO,          /* 200 with "echo:<method>:<path>" */
    M_SPLIT_CHUNKED, /* a chunked response in delayed pieces cut at odd places */
    M_SILENT,        /* never answers */
    M_CLOSE_SECOND,  /* answers a connection's first request, closes on the second */
    M_CLOSE_AFTER,   /* answers, then closes the connection */
    M_BIG,           /* 5000-byte body */
    M_CONN_CLOSE,    /* answers with Connection: close, leaves closing to the client */
    M_DROP,          /* closes the connection on every request */
};

struct srv;

struct sconn {
    struct srv *srv;
    struct sconn *next;
    uv_tcp_t tcp;
    uv_timer_t timer;      /* paces M_SPLIT_CHUNKED pieces */
    SSL *ssl;
    BIO *rbio, *wbio;
    char *in;
    size_t in_len;
    int nreq, writes, piece;
    bool close_after_write, closing;
    int handles;
};

struct srv {
    uv_loop_t *loop;
    uv_tcp_t listener;
    int port;
    SSL_CTX *ctx;          /* NULL: plaintext */
    enum mode mode;
    int accepted, requests;
    char method[16], path[256], host[256], ua[128], ctype[128], extra[64], sni[64];
    long clen;             /* -1: no Content-Length */
    char body[256];
    struct sconn *conns;
    void (*on_request)(struct srv *s); /* test hook, before the answer */
    void *test;
};

struct swrite {
    uv_write_t req;
    struct sconn *sc;
    char data[];
};

static void on_sconn_closed(uv_handle_t *h)
{
    struct sconn *sc = h->data;
    if (--sc->handles > 0)
        return;
    SSL_free(sc->ssl);
    free(sc->in);
    free(sc);
}

static void sconn_close(struct sconn *sc)
{
    if (sc->closing)
        return;
    sc->closing = true;
    for (struct sconn **pp = &sc->srv->conns; *pp; pp = &(*pp)->next) {
        if (*pp == sc) {
            *pp = sc->next;
            break;
        }
    }
    uv_close((uv_handle_t *)&sc->tcp, on_sconn_closed);
    uv_close((uv_handle_t *)&sc->timer, on_sconn_closed);
}

static void on_swrite(uv_write_t *w, int status)
{
    struct swrite *sw = (struct swrite *)w;
    struct sconn *sc = sw->sc;
    free(sw);
    sc->writes--;
    if ((status < 0 || (sc->close_after_write && sc->writes == 0)) && !sc->closing)
        sconn_close(sc);
}

static void sconn_write_raw(struct sconn *sc, const char *d, size_t n)
{
    struct swrite *sw = tf_malloc(sizeof *sw + n);
    memcpy(sw->data, d, n);
    sw->sc = sc;
    uv_buf_t b = uv_buf_init(sw->data, (unsigned)n);
    int r = uv_write(&sw->req, (uv_stream_t *)&sc->tcp, &b, 1, on_swrite);
    CHECK_EQ_INT(r, 0);
    if (r == 0)
        sc->writes++;
    else
        free(sw);
}

static void sconn_flush(struct sconn *sc)
{
    char buf[65536];
    int n;
    while ((n = BIO_read(sc->wbio, buf, sizeof buf)) > 0)
        sconn_write_raw(sc, buf, (size_t)n);
}

static void sconn_send(struct sconn *sc, const char *d, size_t n)
{
    if (!sc->ssl) {
        sconn_write_raw(sc, d, n);
        return;
    }
    CHECK_EQ_INT(SSL_write(sc->ssl, d, (int)n), (int)n);
    sconn_flush(sc);
}

static void sconn_respond(struct sconn *sc, const char *headers, const char *body, size_t len)
{
    char *msg = tf_asprintf("HTTP/1.1 200 OK\r\n%sContent-Length: %zu\r\n\r\n", headers, len);
    sconn_send(sc, msg, strlen(msg));
    sconn_send(sc, body, len);
    free(msg);
}

static const char *const chunked_pieces[] = {
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chu",
    "nked\r\nX-Test: split\r\n\r\n5\r",
    "\nhello\r\n6;ext=1\r\n wo",
    "rld\r\n0\r\nX-Trailer: t\r\n\r",
    "\n",
};

static void on_piece_timer(uv_timer_t *t)
{
    struct sconn *sc = t->data;
    const char *p = chunked_pieces[sc->piece++];
    sconn_send(sc, p, strlen(p));
    if (sc->piece < (int)TF_ARRAY_LEN(chunked_pieces))
        uv_timer_start(&sc->timer, on_piece_timer, 5, 0);
}

static void sconn_answer(struct sconn *sc)
{
    struct srv *s = sc->srv;
    char *body;
    switch (s->mode) {
    case M_ECHO:
    case M_CLOSE_AFTER:
        body = tf_asprintf("echo:%s:%s", s->method, s->path);
        sconn_respond(sc, "", body, strlen(body));
        free(body);
        sc->close_after_write = s->mode == M_CLOSE_AFTER;
        break;
    case M_SPLIT_CHUNKED:
        sc->piece = 0;
        uv_timer_start(&sc->timer, on_piece_timer, 5, 0);
        break;
    case M_SILENT:
        break;
    case M_CLOSE_SECOND:
        if (sc->nreq == 1)
            sconn_respond(sc, "", "first", 5);
        else
            sconn_close(sc);
        break;
    case M_BIG:
        body = tf_malloc(5000);
        memset(body, 'x', 5000);
        sconn_respond(sc, "", body, 5000);
        free(body);
        break;
    case M_CONN_CLOSE:
        sconn_respond(sc, "Connection: close\r\n", "bye", 3);
        break;
    case M_DROP:
        sconn_close(sc);
        break;
    }
}

/* Copies the value of header `name` from the header block into out (or "" if absent). */
static void header_value(const char *block, const char *name, char *out, size_t cap)
{
    out[0] = '\0';
    size_t nl = strlen(name);
    for (const char *l = strstr(block, "\r\n"); l && l[2] != '\r'; l = strstr(l + 2, "\r\n")) {
        if (strncasecmp(l + 2, name, nl) == 0 && l[2 + nl] == ':') {
            const char *v = l + 3 + nl + strspn(l + 3 + nl, " ");
            snprintf(out, cap, "%.*s", (int)strcspn(v, "\r"), v);
            return;
        }
    }
}

/* Takes every complete request out of sc->in, records it and answers it. */
static void sconn_process(struct sconn *sc)
{
    struct srv *s = sc->srv;
    while (!sc->closing) {
        char *end = sc->in ? memmem(sc->in, sc->in_len, "\r\n\r\n", 4) : NULL;
        if (!end)
            return;
        *end = '\0';
        char cl[32];
        header_value(sc->in, "Content-Length", cl, sizeof cl);
        long clen = cl[0] ? atol(cl) : -1;
        size_t head_len = (size_t)(end - sc->in) + 4;
        if (sc->in_len < head_len + (size_t)(clen > 0 ? clen : 0)) {
            *end = '\r';
            return;
        }
        sscanf(sc->in, "%15s %255s", s->method, s->path);
        header_value(sc->in, "Host", s->host, sizeof s->host);
        header_value(sc->in, "User-Agent", s->ua, sizeof s->ua);
        header_value(sc->in, "Content-Type", s->ctype, sizeof s->ctype);
        header_value(sc->in, "X-Extra", s->extra, sizeof s->extra);
        s->clen = clen;
        const char *sni = sc->ssl ? SSL_get_servername(sc->ssl, TLSEXT_NAMETYPE_host_name) : NULL;
        snprintf(s->sni, sizeof s->sni, "%s", sni ? sni : "");
        size_t blen = clen > 0 ? (size_t)clen : 0;
        snprintf(s->body, sizeof s->body, "%.*s", (int)blen, sc->in + head_len);
        memmove(sc->in, sc->in + head_len + blen, sc->in_len - head_len - blen);
        sc->in_len -= head_len + blen;
        sc->nreq++;
        s->requests++;
        if (s->on_request)
            s->on_request(s);
        if (!sc->closing)
            sconn_answer(sc);
    }
}

static void sconn_take(struct sconn *sc, const char *d, size_t n)
{
    sc->in = tf_realloc(sc->in, sc->in_len + n);
    memcpy(sc->in + sc->in_len, d, n);
    sc->in_len += n;
}

/* Handshake and decrypt; false when the connection must go. */
static bool sconn_tls_in(struct sconn *sc, const char *d, size_t n)
{
    BIO_write(sc->rbio, d, (int)n);
    if (!SSL_is_init_finished(sc->ssl)) {
        int r = SSL_do_handshake(sc->ssl);
        sconn_flush(sc);
        if (r != 1) {
            bool again = SSL_get_error(sc->ssl, r) == SSL_ERROR_WANT_READ;
            ERR_clear_error();
            return again;
        }
    }
    char buf[16384];
    int k;
    while ((k = SSL_read(sc->ssl, buf, sizeof buf)) > 0)
        sconn_take(sc, buf, (size_t)k);
    bool ok = SSL_get_error(sc->ssl, k) == SSL_ERROR_WANT_READ;
    ERR_clear_error();
    sconn_flush(sc);
    return ok;
}

static void on_salloc(uv_handle_t *h, size_t sz, uv_buf_t *b)
{
    (void)h;
    b->base = tf_malloc(sz);
    b->len = sz;
}

static void on_sread(uv_stream_t *st, ssize_t nread, const uv_buf_t *b)
{
    struct sconn *sc = st->data;
    bool ok = nread >= 0;
    if (nread > 0 && !sc->ssl)
        sconn_take(sc, b->base, (size_t)nread);
    else if (nread > 0)
        ok = sconn_tls_in(sc, b->base, (size_t)nread);
    free(b->base);
    if (!ok)
        sconn_close(sc);
    else
        sconn_process(sc);
}

static void on_sconnection(uv_stream_t *l, int status)
{
    struct srv *s = l->data;
    CHECK_EQ_INT(status, 0);
    struct sconn *sc = tf_calloc(1, sizeof *sc);
    sc->srv = s;
    uv_tcp_init(s->loop, &sc->tcp);
    uv_timer_init(s->loop, &sc->timer);
    sc->tcp.data = sc->timer.data = sc;
    sc->handles = 2;
    sc->next = s->conns;
    s->conns = sc;
    CHECK_EQ_INT(uv_accept(l, (uv_stream_t *)&sc->tcp), 0);
    uv_tcp_nodelay(&sc->tcp, 1);
    s->accepted++;
    if (s->ctx) {
        sc->ssl = SSL_new(s->ctx);
        sc->rbio = BIO_new(BIO_s_mem());
        sc->wbio = BIO_new(BIO_s_mem());
        SSL_set_bio(sc->ssl, sc->rbio, sc->wbio);
        SSL_set_accept_state(sc->ssl);
    }
    CHECK_EQ_INT(uv_read_start((uv_stream_t *)&sc->tcp, on_salloc, on_sread), 0);
}

static void srv_start(struct srv *s, uv_loop_t *loop, EVP_PKEY *key, X509 *crt, enum mode mode)
{
    memset(s, 0, sizeof *s);
    s->loop = loop;
    s->mode = mode;
    if (key) {
        s->ctx = SSL_CTX_new(TLS_server_method());
        CHECK(s->ctx && SSL_CTX_use_certificate(s->ctx, crt) == 1 &&
              SSL_CTX_use_PrivateKey(s->ctx, key) == 1);
    }
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    CHECK_EQ_INT(uv_tcp_init(loop, &s->listener), 0);
    s->listener.data = s;
    CHECK_EQ_INT(uv_tcp_bind(&s->listener, (struct sockaddr *)&sa, 0), 0);
    CHECK_EQ_INT(uv_listen((uv_stream_t *)&s->listener, 16, on_sconnection), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len), 0);
    s->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void srv_stop(struct srv *s)
{
    if (uv_is_closing((uv_handle_t *)&s->listener))
        return;
    uv_close((uv_handle_t *)&s->listener, NULL);
    while (s->conns)
        sconn_close(s->conns);
    SSL_CTX_free(s->ctx); /* live SSL objects keep their own reference */
}

/* ---- one test's world: a loop, a server, a client, a watchdog ---- */

#define MAX_CBS 8

struct t {
    uv_loop_t loop;
    struct srv srv;
    struct tf_httpc *client;
    uv_timer_t watchdog;
    bool torn_down, client_closed;
    int cbs, dones, cbs_at_done;
    int err[MAX_CBS], status[MAX_CBS];
    char body[MAX_CBS][64], xtest[MAX_CBS][16];
    size_t body_len[MAX_CBS];
    uint64_t started_ms, elapsed_ms[MAX_CBS];
    struct tf_httpc_req *h;
    void (*after)(struct t *t); /* runs after every completion callback */
};

static void on_done(void *arg)
{
    struct t *t = arg;
    t->dones++;
    t->cbs_at_done = t->cbs;
}

static void t_teardown(struct t *t)
{
    if (t->torn_down)
        return;
    t->torn_down = true;
    if (!t->client_closed) {
        t->client_closed = true;
        tf_httpc_close(t->client, on_done, t);
    }
    srv_stop(&t->srv);
    uv_close((uv_handle_t *)&t->watchdog, NULL);
}

static void on_watchdog(uv_timer_t *w)
{
    struct t *t = w->data;
    fprintf(stderr, "watchdog fired after %d callbacks\n", t->cbs);
    CHECK(!"watchdog");
    t_teardown(t);
}

static void t_init(struct t *t, EVP_PKEY *key, X509 *crt, const char *ca, enum mode mode)
{
    char err[256] = "";
    memset(t, 0, sizeof *t);
    CHECK_EQ_INT(uv_loop_init(&t->loop), 0);
    srv_start(&t->srv, &t->loop, key, crt, mode);
    t->srv.test = t;
    t->client = tf_httpc_new(&t->loop, ca, err, sizeof err);
    CHECK(t->client != NULL);
    uv_timer_init(&t->loop, &t->watchdog);
    t->watchdog.data = t;
    uv_timer_start(&t->watchdog, on_watchdog, 10000, 0);
    t->started_ms = uv_now(&t->loop);
}

/* Runs until every handle is closed; the loop must then close cleanly. */
static void t_run(struct t *t)
{
    uv_run(&t->loop, UV_RUN_DEFAULT);
    CHECK(t->torn_down);
    CHECK_EQ_INT(t->dones, 1);
    CHECK_EQ_INT(t->cbs_at_done, t->cbs); /* no callback after done */
    CHECK_EQ_INT(uv_loop_close(&t->loop), 0);
}

static void on_resp(int err, const struct tf_http_response *r, void *arg)
{
    struct t *t = arg;
    CHECK(t->cbs < MAX_CBS);
    if (t->cbs >= MAX_CBS)
        return;
    int i = t->cbs++;
    CHECK(t->dones == 0);
    CHECK((err == 0) == (r != NULL));
    t->err[i] = err;
    t->elapsed_ms[i] = uv_now(&t->loop) - t->started_ms;
    if (r) {
        const char *x = tf_http_response_header(r, "X-Test");
        t->status[i] = r->status;
        t->body_len[i] = r->body_len;
        snprintf(t->body[i], sizeof t->body[i], "%s", r->body);
        snprintf(t->xtest[i], sizeof t->xtest[i], "%s", x ? x : "");
    }
    if (t->after)
        t->after(t);
}

struct opts {
    const char *method, *body, *ctype;
    size_t max_body;
    uint32_t timeout_ms;
    const struct tf_http_header *headers;
    int n_headers;
};

/* Starts a request to host:srv.port path (scheme by whether the server speaks TLS). */
static int t_req_to(struct t *t, const char *host, int port, const char *path,
                    const struct opts *o, struct tf_httpc_req **h)
{
    char url[256];
    snprintf(url, sizeof url, "%s://%s:%d%s", t->srv.ctx ? "https" : "http", host, port, path);
    struct tf_http_request rq = {
        .method = o && o->method ? o->method : "GET",
        .url = url,
        .content_type = o ? o->ctype : NULL,
        .body = o ? o->body : NULL,
        .body_len = o && o->body ? strlen(o->body) : 0,
        .headers = o ? o->headers : NULL,
        .n_headers = o ? o->n_headers : 0,
        .timeout_ms = o && o->timeout_ms ? o->timeout_ms : 5000,
        .max_body = o ? o->max_body : 0,
    };
    return tf_httpc_request(t->client, &rq, on_resp, t, h);
}

static void t_req(struct t *t, const char *path, const struct opts *o)
{
    CHECK_EQ_INT(t_req_to(t, "127.0.0.1", t->srv.port, path, o, NULL), 0);
}

#endif
