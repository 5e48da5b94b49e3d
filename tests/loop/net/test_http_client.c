/*
 * test_http_client.c: the HTTP client against an in-process libuv server on 127.0.0.1 port 0,
 * plaintext and TLS (self-signed certificates made here with the OpenSSL API and written to a
 * temp dir as the client's extra CA). The server parses requests, records what it got, counts
 * accepted connections and answers by a per-test script (echo, split chunked, silent, close,
 * big body, Connection: close). Every test asserts exact callback counts, closes everything
 * and requires uv_loop_close() to succeed.
 */
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
    struct tf_http_client *client;
    uv_timer_t watchdog;
    bool torn_down, client_closed;
    int cbs, dones, cbs_at_done;
    int err[MAX_CBS], status[MAX_CBS];
    char body[MAX_CBS][64], xtest[MAX_CBS][16];
    size_t body_len[MAX_CBS];
    uint64_t started_ms, elapsed_ms[MAX_CBS];
    struct tf_http_req *h;
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
        tf_http_client_close(t->client, on_done, t);
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
    t->client = tf_http_client_new(&t->loop, ca, err, sizeof err);
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
                    const struct opts *o, struct tf_http_req **h)
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
    return tf_http_request(t->client, &rq, on_resp, t, h);
}

static void t_req(struct t *t, const char *path, const struct opts *o)
{
    CHECK_EQ_INT(t_req_to(t, "127.0.0.1", t->srv.port, path, o, NULL), 0);
}

/* ---- the tests ---- */

static void get_post_after(struct t *t)
{
    struct srv *s = &t->srv;
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", s->port);
    if (t->cbs == 1) {
        CHECK_EQ_INT(t->err[0], 0);
        CHECK_EQ_INT(t->status[0], 200);
        CHECK_EQ_STR(t->body[0], "echo:GET:/get?x=1");
        CHECK_EQ_STR(s->method, "GET");
        CHECK_EQ_STR(s->path, "/get?x=1");
        CHECK_EQ_STR(s->host, host);
        CHECK_EQ_STR(s->ua, "tlsfront/" TLSFRONT_VERSION);
        CHECK_EQ_INT(s->clen, -1);
        static const struct tf_http_header extra[] = {{"X-Extra", "42"}};
        struct opts o = {.method = "POST", .body = "hello body",
                         .ctype = "application/jose+json", .headers = extra, .n_headers = 1};
        t_req(t, "/post", &o);
    } else {
        CHECK_EQ_INT(t->err[1], 0);
        CHECK_EQ_STR(t->body[1], "echo:POST:/post");
        CHECK_EQ_STR(s->method, "POST");
        CHECK_EQ_STR(s->path, "/post");
        CHECK_EQ_STR(s->host, host);
        CHECK_EQ_INT(s->clen, 10);
        CHECK_EQ_STR(s->body, "hello body");
        CHECK_EQ_STR(s->ctype, "application/jose+json");
        CHECK_EQ_STR(s->extra, "42");
        CHECK_EQ_INT(s->accepted, 1); /* the POST reused the GET's connection */
        t_teardown(t);                /* closing the client from inside a callback */
    }
}

static void test_plain_get_post(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_ECHO);
    t.after = get_post_after;
    t_req(&t, "/get?x=1#frag", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
}

static void tls_keepalive_after(struct t *t)
{
    struct srv *s = &t->srv;
    int i = t->cbs - 1;
    CHECK_EQ_INT(t->err[i], 0);
    CHECK_EQ_INT(t->status[i], 200);
    CHECK_EQ_STR(s->sni, "localhost");
    if (t->cbs < 3) {
        char path[16];
        snprintf(path, sizeof path, "/n%d", t->cbs + 1);
        char *big = NULL;
        struct opts o = {0};
        if (t->cbs == 2) { /* a large body crosses many TLS records and writes */
            big = tf_malloc(200001);
            memset(big, 'b', 200000);
            big[200000] = '\0';
            o = (struct opts){.method = "POST", .body = big, .ctype = "text/plain"};
        }
        CHECK_EQ_INT(t_req_to(t, "localhost", s->port, path, &o, NULL), 0);
        free(big);
        return;
    }
    CHECK_EQ_STR(t->body[0], "echo:GET:/n1");
    CHECK_EQ_STR(t->body[2], "echo:POST:/n3");
    CHECK_EQ_INT(s->clen, 200000);
    char host[64];
    snprintf(host, sizeof host, "localhost:%d", s->port);
    CHECK_EQ_STR(s->host, host);
    CHECK_EQ_INT(s->requests, 3);
    CHECK_EQ_INT(s->accepted, 1);
    t_teardown(t);
}

static void test_tls_keepalive(struct pki *pki)
{
    struct t t;
    t_init(&t, pki->good_key, pki->good_crt, pki->good_pem, M_ECHO);
    t.after = tls_keepalive_after;
    CHECK_EQ_INT(t_req_to(&t, "localhost", t.srv.port, "/n1", NULL, NULL), 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 3);
}

static void split_after(struct t *t)
{
    int i = t->cbs - 1;
    CHECK_EQ_INT(t->err[i], 0);
    CHECK_EQ_INT(t->status[i], 200);
    CHECK_EQ_STR(t->body[i], "hello world");
    CHECK_EQ_INT(t->body_len[i], 11);
    CHECK_EQ_STR(t->xtest[i], "split");
    if (t->cbs == 1) {
        t_req(t, "/again", NULL);
        return;
    }
    CHECK_EQ_INT(t->srv.accepted, 1);
    t_teardown(t);
}

static void test_split_chunked(struct pki *pki, bool tls)
{
    struct t t;
    t_init(&t, tls ? pki->good_key : NULL, tls ? pki->good_crt : NULL,
           tls ? pki->good_pem : NULL, M_SPLIT_CHUNKED);
    t.after = split_after;
    t_req(&t, "/split", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_STR(t.srv.sni, ""); /* no SNI for an IP literal */
}

static void test_split_chunked_plain(struct pki *pki) { test_split_chunked(pki, false); }
static void test_split_chunked_tls(struct pki *pki) { test_split_chunked(pki, true); }

static void stale_after(struct t *t)
{
    struct srv *s = &t->srv;
    if (t->cbs < 3) {
        CHECK_EQ_INT(t->err[t->cbs - 1], 0);
        CHECK_EQ_STR(t->body[t->cbs - 1], "first");
        if (t->cbs == 2) {
            /* Request 2 met a connection the server closed and went out again. */
            CHECK_EQ_INT(s->accepted, 2);
            CHECK_EQ_INT(s->requests, 3);
            s->mode = M_DROP;
        }
        t_req(t, "/r", NULL);
        return;
    }
    /* Retried once on a fresh connection, which failed too: no second retry. */
    CHECK_EQ_INT(t->err[2], UV_EOF);
    CHECK_EQ_INT(s->accepted, 3);
    CHECK_EQ_INT(s->requests, 5);
    t_teardown(t);
}

static void test_stale_pool_retry(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_CLOSE_SECOND);
    t.after = stale_after;
    t_req(&t, "/r", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 3);
}

static void reconnect_after(struct t *t)
{
    int i = t->cbs - 1;
    CHECK_EQ_INT(t->err[i], 0);
    CHECK_EQ_INT(t->status[i], 200);
    if (t->cbs < 2) {
        t_req(t, "/two", NULL);
        return;
    }
    CHECK_EQ_INT(t->srv.accepted, 2);
    CHECK_EQ_INT(t->srv.requests, 2);
    t_teardown(t);
}

/* The server closes after answering, or says Connection: close: no reuse either way. */
static void test_server_closes(void)
{
    static const enum mode modes[] = {M_CLOSE_AFTER, M_CONN_CLOSE};
    for (size_t m = 0; m < TF_ARRAY_LEN(modes); m++) {
        struct t t;
        t_init(&t, NULL, NULL, NULL, modes[m]);
        t.after = reconnect_after;
        t_req(&t, "/one", NULL);
        t_run(&t);
        CHECK_EQ_INT(t.cbs, 2);
        CHECK_EQ_STR(t.body[1], modes[m] == M_CONN_CLOSE ? "bye" : "echo:GET:/two");
    }
}

static void teardown_after(struct t *t)
{
    t_teardown(t);
}

static void test_timeout(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_SILENT);
    t.after = teardown_after;
    struct opts o = {.timeout_ms = 200};
    t_req(&t, "/slow", &o);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 1);
    CHECK_EQ_INT(t.err[0], TF_ETIMEDOUT);
    CHECK(t.elapsed_ms[0] >= 195 && t.elapsed_ms[0] < 2000);
    CHECK_EQ_INT(t.srv.requests, 1);
}

static void cap_after(struct t *t)
{
    if (t->cbs == 1) {
        CHECK_EQ_INT(t->err[0], TF_ETOOBIG);
        struct opts o = {.max_body = 5000};
        t_req(t, "/big", &o);
        return;
    }
    CHECK_EQ_INT(t->err[1], 0);
    CHECK_EQ_INT(t->body_len[1], 5000);
    t_teardown(t);
}

static void test_body_cap(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_BIG);
    t.after = cap_after;
    struct opts o = {.max_body = 1000};
    t_req(&t, "/big", &o);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
}

static void test_tls_untrusted(struct pki *pki)
{
    struct t t;
    t_init(&t, pki->good_key, pki->good_crt, NULL, M_ECHO);
    t.after = teardown_after;
    CHECK_EQ_INT(t_req_to(&t, "localhost", t.srv.port, "/", NULL, NULL), 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 1);
    CHECK_EQ_INT(t.err[0], TF_ETLS);
    CHECK_EQ_INT(t.srv.requests, 0);
}

static void names_after(struct t *t)
{
    if (t->cbs == 1)
        CHECK_EQ_INT(t_req_to(t, "localhost", t->srv.port, "/", NULL, NULL), 0);
    else
        t_teardown(t);
}

/* Trusted certificates for the wrong name fail, for an IP literal and for a DNS name. */
static void test_tls_hostname_mismatch(struct pki *pki)
{
    struct t t;
    t_init(&t, pki->other_key, pki->other_crt, pki->other_pem, M_ECHO);
    t.after = names_after;
    t_req(&t, "/", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_INT(t.err[0], TF_ETLS);
    CHECK_EQ_INT(t.err[1], TF_ETLS);
    CHECK_EQ_INT(t.srv.requests, 0);
    CHECK_EQ_INT(t.srv.accepted, 2);

    /* The same checks pass with the right names: IP SAN, then DNS SAN. */
    t_init(&t, pki->good_key, pki->good_crt, pki->good_pem, M_ECHO);
    t.after = names_after;
    t_req(&t, "/", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_INT(t.err[0], 0);
    CHECK_EQ_INT(t.err[1], 0);
}

static int free_port(uv_loop_t *loop)
{
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &tcp);
    CHECK_EQ_INT(uv_tcp_bind(&tcp, (struct sockaddr *)&sa, 0), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&tcp, (struct sockaddr *)&bound, &len), 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void test_refused(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_ECHO);
    t.after = teardown_after;
    int port = free_port(&t.loop);
    CHECK_EQ_INT(t_req_to(&t, "127.0.0.1", port, "/", NULL, NULL), 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 1);
    CHECK_EQ_INT(t.err[0], UV_ECONNREFUSED);
}

static void cancel_on_request(struct srv *s)
{
    struct t *t = s->test;
    tf_http_cancel(t->h);
    tf_http_cancel(t->h); /* twice: still one callback */
}

static void cancel_after(struct t *t)
{
    CHECK_EQ_INT(t->err[t->cbs - 1], UV_ECANCELED);
    if (t->cbs == 2)
        t_teardown(t);
}

static void test_cancel(void)
{
    struct t t;
    struct tf_http_req *queued = NULL;
    t_init(&t, NULL, NULL, NULL, M_SILENT);
    t.after = cancel_after;
    t.srv.on_request = cancel_on_request;
    CHECK_EQ_INT(t_req_to(&t, "127.0.0.1", t.srv.port, "/a", NULL, &t.h), 0);
    CHECK_EQ_INT(t_req_to(&t, "127.0.0.1", t.srv.port, "/b", NULL, &queued), 0);
    tf_http_cancel(queued); /* before the loop ever ran: no callback from inside here */
    CHECK_EQ_INT(t.cbs, 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_INT(t.srv.accepted, 1);
    CHECK_EQ_INT(t.srv.requests, 1);
    CHECK_EQ_STR(t.srv.path, "/a");
}

static void close_on_request(struct srv *s)
{
    struct t *t = s->test;
    if (s->requests < 2)
        return;
    t_req(t, "/queued", NULL); /* not started yet when the client closes */
    t->client_closed = true;
    tf_http_client_close(t->client, on_done, t);
    tf_http_client_close(t->client, on_done, t); /* idempotent */
    CHECK_EQ_INT(t->cbs, 0);
    CHECK_EQ_INT(t_req_to(t, "127.0.0.1", s->port, "/late", NULL, NULL), TF_ECLOSED);
}

static void close_after_cb(struct t *t)
{
    CHECK_EQ_INT(t->err[t->cbs - 1], UV_ECANCELED);
    if (t->cbs == 3)
        t_teardown(t);
}

static void test_close_in_flight(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_SILENT);
    t.after = close_after_cb;
    t.srv.on_request = close_on_request;
    t_req(&t, "/one", NULL);
    t_req(&t, "/two", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 3);
    CHECK_EQ_INT(t.cbs_at_done, 3);
    CHECK_EQ_INT(t.srv.accepted, 2);
}

static void test_bad_args_and_idle_close(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_ECHO);
    struct tf_http_request rq = {.method = "GET", .url = "ftp://127.0.0.1/"};
    CHECK_EQ_INT(tf_http_request(t.client, &rq, on_resp, &t, NULL), TF_EINVAL);
    rq.url = "http://127.0.0.1/";
    rq.method = "GE T";
    CHECK_EQ_INT(tf_http_request(t.client, &rq, on_resp, &t, NULL), TF_EINVAL);
    struct tf_http_header bad = {"X-A", "1\r\nHost: evil"};
    rq.method = "GET";
    rq.headers = &bad;
    rq.n_headers = 1;
    CHECK_EQ_INT(tf_http_request(t.client, &rq, on_resp, &t, NULL), TF_EINVAL);
    char err[256] = "";
    CHECK(tf_http_client_new(&t.loop, "/nonexistent/ca.pem", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
    t_teardown(&t);
    CHECK_EQ_INT(t.dones, 0); /* done runs from the loop, not from inside close */
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a write racing the server's close must fail, not kill us */
    if (getenv("TF_TEST_DEBUG"))
        tf_log_setup(TF_LOG_DEBUG, false);
    struct pki pki = {0};
    snprintf(pki.dir, sizeof pki.dir, "/tmp/tf_http_client_XXXXXX");
    CHECK(mkdtemp(pki.dir) != NULL);
    snprintf(pki.good_pem, sizeof pki.good_pem, "%s/good.pem", pki.dir);
    snprintf(pki.other_pem, sizeof pki.other_pem, "%s/other.pem", pki.dir);
    CHECK(make_cert("localhost", "DNS:localhost,IP:127.0.0.1", pki.good_pem, &pki.good_key,
                    &pki.good_crt));
    CHECK(make_cert("other.invalid", "DNS:other.invalid", pki.other_pem, &pki.other_key,
                    &pki.other_crt));

    TF_TEST_RUN(test_plain_get_post);
    TF_TEST_RUN(test_stale_pool_retry);
    TF_TEST_RUN(test_server_closes);
    TF_TEST_RUN(test_timeout);
    TF_TEST_RUN(test_body_cap);
    TF_TEST_RUN(test_refused);
    TF_TEST_RUN(test_cancel);
    TF_TEST_RUN(test_close_in_flight);
    TF_TEST_RUN(test_bad_args_and_idle_close);
#define RUN_PKI(fn)                                                                           \
    do {                                                                                      \
        int _f = tf_test_failed;                                                              \
        fn(&pki);                                                                             \
        fprintf(stderr, "%s %s\n", tf_test_failed == _f ? "ok  " : "FAIL", #fn);              \
    } while (0)
    RUN_PKI(test_tls_keepalive);
    RUN_PKI(test_split_chunked_plain);
    RUN_PKI(test_split_chunked_tls);
    RUN_PKI(test_tls_untrusted);
    RUN_PKI(test_tls_hostname_mismatch);

    unlink(pki.good_pem);
    unlink(pki.other_pem);
    rmdir(pki.dir);
    EVP_PKEY_free(pki.good_key);
    EVP_PKEY_free(pki.other_key);
    X509_free(pki.good_crt);
    X509_free(pki.other_crt);
    return TF_TEST_DONE();
}
