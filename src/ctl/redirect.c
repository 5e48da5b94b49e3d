/*
 * redirect.c: the HTTP-to-HTTPS redirect listener (--redirect-http). It owns its
 * listening socket and its connections, all on the control loop; requests are parsed with
 * llhttp in strict mode and answered with a 308 to https://HOST/PATH?QUERY and a close.
 * HOST comes from the Host header, normalised with tf_name_normalize() (so IP literals,
 * ports other than digits, "@", CR/LF and anything outside LDH are refused), and only names
 * tlsfront would serve a certificate for get a redirect: it must never become an open
 * redirect. One client address may hold at most --redirect-max-per-ip of the RD_MAX_CONNS
 * connections, and a request head must arrive within --handshake-timeout (the TLS
 * listeners' limit for the bytes before any request), so one client cannot keep every slot.
 * Also the ACME HTTP-01 responder (RFC 8555 §8.3): GET /.well-known/acme-challenge/TOKEN is
 * answered 200 with the key authorization of the pending challenge with that token (any
 * Host: the token is what the CA asks for), 404 when there is none or the token is
 * malformed; a token this node does not know is looked up in a store shared with other
 * nodes, for at most RD_LOOKUP_MS. It never touches worker state and reads the server's
 * snapshots only on the control loop, where they are replaced.
 */
#include "tlsfront/ctl/redirect.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/proto/http_challenge.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/proxy/conn.h"
#include "tlsfront/proxy/listener.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/name.h"
#include "tlsfront/ctl/server.h"

#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define RD_MAX_CONNS 1024
#define RD_MAX_HEAD (16 * 1024)
#define RD_MAX_TARGET 8192
#define RD_LINGER_MS 2000
#define RD_LOOKUP_MS 5000 /* an HTTP-01 token looked up in the shared store */

struct tf_redirect {
    struct tf_server *s;
    uv_tcp_t listener;
    bool stopping;
    int pending;                  /* handle closes outstanding (listener + connections) */
    struct rd_conn *conns;
};

/* One client connection; freed after both its handles closed. */
struct rd_conn {
    struct tf_redirect *rd;
    struct rd_conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    int closes;
    bool closing, answered;
    llhttp_t ll;
    size_t head_bytes;
    char target[RD_MAX_TARGET];
    size_t target_len;
    bool target_over;
    char field[32];               /* current header name (longer names are not Host) */
    size_t field_len;
    bool in_host;
    int n_host;
    char host[300];
    size_t host_len;
    bool host_over;
    struct tf_certmgr_h01_lookup *lookup; /* HTTP-01 token being looked up, or NULL */
    char token[TF_HTTP_TOKEN_MAX + 1];
    char peer[64];
    char ip[64];                  /* the peer's address alone: the per-address count's key */
    char resp[RD_MAX_TARGET + 512];
    char rbuf[4096];
};

static void maybe_free(struct tf_redirect *rd)
{
    if (rd->stopping && rd->pending == 0) {
        rd->s->redirect = NULL;
        free(rd);
    }
}

static void on_conn_closed(uv_handle_t *h)
{
    struct rd_conn *k = h->data;
    if (--k->closes > 0)
        return;
    struct tf_redirect *rd = k->rd;
    free(k);
    rd->pending--;
    maybe_free(rd);
}

static void conn_close(struct rd_conn *k)
{
    if (k->closing)
        return;
    k->closing = true;
    if (k->lookup)
        tf_certmgr_http01_cancel(k->lookup);
    struct tf_redirect *rd = k->rd;
    if (k->prev)
        k->prev->next = k->next;
    else
        rd->conns = k->next;
    if (k->next)
        k->next->prev = k->prev;
    uv_close((uv_handle_t *)&k->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&k->timer, on_conn_closed);
}

/* --- parsing ------------------------------------------------------------------------- */

static struct rd_conn *conn_of(llhttp_t *ll)
{
    return ll->data;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
    struct rd_conn *k = conn_of(ll);
    if (n > sizeof k->target - 1 - k->target_len) {
        k->target_over = true;
        return 0;
    }
    memcpy(k->target + k->target_len, at, n);
    k->target_len += n;
    return 0;
}

static int on_field(llhttp_t *ll, const char *at, size_t n)
{
    struct rd_conn *k = conn_of(ll);
    /* field_len keeps counting past the buffer (then the name is not "host"); only what
     * fits is copied, even when a long name arrives in several pieces. */
    size_t room = k->field_len < sizeof k->field - 1 ? sizeof k->field - 1 - k->field_len : 0;
    memcpy(k->field + k->field_len, at, TF_MIN(n, room));
    k->field_len += n;
    return 0;
}

static int on_field_done(llhttp_t *ll)
{
    struct rd_conn *k = conn_of(ll);
    k->in_host = k->field_len == 4 && strncasecmp(k->field, "host", 4) == 0;
    k->field_len = 0;
    if (k->in_host)
        k->n_host++;
    return 0;
}

static int on_value(llhttp_t *ll, const char *at, size_t n)
{
    struct rd_conn *k = conn_of(ll);
    if (!k->in_host)
        return 0;
    if (n > sizeof k->host - 1 - k->host_len) {
        k->host_over = true;
        return 0;
    }
    memcpy(k->host + k->host_len, at, n);
    k->host_len += n;
    return 0;
}

static int on_value_done(llhttp_t *ll)
{
    conn_of(ll)->in_host = false;
    return 0;
}

static int on_headers_done(llhttp_t *ll)
{
    (void)ll;
    return HPE_PAUSED;
}

static const llhttp_settings_t rd_settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_field_complete = on_field_done,
    .on_header_value = on_value,
    .on_header_value_complete = on_value_done,
    .on_headers_complete = on_headers_done,
};

/* --- answering ----------------------------------------------------------------------- */

/* Host header to a served name in out, or false. "name" or "name:digits"; brackets (IP
 * literals) and everything tf_name_normalize() refuses are refused. */
static bool host_ok(struct tf_redirect *rd, struct rd_conn *k, char *out)
{
    if (k->n_host != 1 || k->host_over || k->host_len == 0)
        return false;
    const char *h = k->host;
    size_t len = k->host_len;
    const char *colon = memchr(h, ':', len);
    if (colon) {
        size_t plen = len - (size_t)(colon - h) - 1;
        if (plen == 0 || plen > 5 || strspn(colon + 1, "0123456789") < plen)
            return false;
        len = (size_t)(colon - h);
    }
    if (tf_name_normalize(h, len, out) != 0)
        return false;
    const struct tf_server *s = rd->s;
    if (tf_certstore_lookup(s->certs, out))
        return true;
    for (int i = 0; i < s->cfg->n_allow; i++)
        if (tf_name_match(s->cfg->allow[i], out))
            return true;
    return false;
}

static void on_linger_timer(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct rd_conn *k = req->data;
    if (!k->closing) /* wait briefly for the client's EOF: closing on unread bytes resets */
        uv_timer_start(&k->timer, on_linger_timer, RD_LINGER_MS, 0);
}

static void on_written(uv_write_t *req, int status)
{
    struct rd_conn *k = req->data;
    if (k->closing)
        return;
    k->sreq.data = k;
    if (status != 0 || uv_shutdown(&k->sreq, (uv_stream_t *)&k->tcp, on_shutdown) != 0)
        conn_close(k);
}

static void access_log(struct rd_conn *k, int status, const char *host)
{
    char st[8];
    snprintf(st, sizeof st, "%d", status);
    struct tf_kv kv[] = {
        {"listener", "redirect", false},
        {"client", k->peer, false},
        {"host", host && host[0] ? host : "-", false},
        {"status", st, true},
    };
    tf_log_access(kv, (int)TF_ARRAY_LEN(kv));
}

/* Queue the response and close after it. 308: to https://name + target; 200: body (the
 * HTTP-01 key authorization); else the status with a short text body. */
static void answer_body(struct rd_conn *k, int status, const char *name, const char *body)
{
    int n;
    k->answered = true;
    if (status == 308)
        n = snprintf(k->resp, sizeof k->resp,
                     "HTTP/1.1 308 Permanent Redirect\r\nLocation: https://%s%.*s\r\n"
                     "Content-Length: 0\r\nConnection: close\r\n\r\n",
                     name, (int)k->target_len, k->target);
    else
        n = snprintf(k->resp, sizeof k->resp,
                     "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request",
                     strlen(body), body);
    if (k->rd->s->cfg->access_log)
        access_log(k, status, name);
    uv_buf_t b = uv_buf_init(k->resp, (unsigned)n);
    k->wreq.data = k;
    if (uv_write(&k->wreq, (uv_stream_t *)&k->tcp, &b, 1, on_written) != 0)
        conn_close(k);
}

static void answer(struct rd_conn *k, int status, const char *name)
{
    answer_body(k, status, name, status == 404 ? "not found\n" : "bad request\n");
}

/* The HTTP-01 answer: the key authorization (RFC 8555 §8.3: the body is exactly it), or
 * 404. The key authorization is public by design, but still never logged. */
static void answer_challenge(struct rd_conn *k, const char *ka)
{
    if (k->rd->s->certmgr)
        tf_certmgr_http01_answered(k->rd->s->certmgr, ka != NULL);
    if (ka)
        answer_body(k, 200, NULL, ka);
    else
        answer(k, 404, NULL);
}

static void on_lookup(const char *ka, void *arg)
{
    struct rd_conn *k = arg;
    k->lookup = NULL;
    uv_timer_stop(&k->timer);
    answer_challenge(k, ka);
}

static void on_lookup_timeout(uv_timer_t *t)
{
    struct rd_conn *k = t->data;
    tf_certmgr_http01_cancel(k->lookup);
    k->lookup = NULL;
    answer_challenge(k, NULL);
}

/* GET for a challenge path: answer from this node's pending challenges, else (a shared
 * store) look the token up there for at most RD_LOOKUP_MS, else 404. */
static void challenge(struct rd_conn *k, enum tf_http_challenge kind)
{
    struct tf_certmgr *cm = k->rd->s->certmgr;
    const char *ka = NULL;
    if (kind == TF_HTTP_CHALLENGE_TOKEN && cm)
        ka = tf_certmgr_http01_find(cm, k->token);
    if (ka || kind != TF_HTTP_CHALLENGE_TOKEN || !cm ||
        tf_certmgr_http01_lookup(cm, k->token, on_lookup, k, &k->lookup) != 0) {
        answer_challenge(k, ka);
        return;
    }
    uv_timer_start(&k->timer, on_lookup_timeout, RD_LOOKUP_MS, 0);
}

static void request_done(struct rd_conn *k)
{
    char name[TF_NAME_MAX + 1] = "";
    bool origin = k->target_len > 0 && k->target[0] == '/' && !k->target_over &&
                  k->ll.http_major == 1; /* no HTTP/0.9 "GET /path" lines */
    for (size_t i = 0; origin && i < k->target_len; i++)
        origin = k->target[i] > 0x20 && k->target[i] < 0x7f; /* nothing to inject */
    enum tf_http_challenge kind = TF_HTTP_CHALLENGE_NONE;
    if (origin && k->ll.method == HTTP_GET)
        kind = tf_http_challenge_token(k->target, k->target_len, k->token);
    if (kind != TF_HTTP_CHALLENGE_NONE)
        challenge(k, kind);
    else if (origin && host_ok(k->rd, k, name))
        answer(k, 308, name);
    else
        answer(k, 400, NULL);
}

/* --- connection I/O ------------------------------------------------------------------ */

static void on_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf)
{
    (void)size;
    struct rd_conn *k = h->data;
    buf->base = k->rbuf;
    buf->len = sizeof k->rbuf;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct rd_conn *k = st->data;
    if (k->closing || nread == 0)
        return;
    if (nread < 0) {
        conn_close(k);
        return;
    }
    if (k->answered || k->lookup)
        return; /* draining what the client still sends before our close */
    size_t n = TF_MIN((size_t)nread, RD_MAX_HEAD - k->head_bytes);
    k->head_bytes += n;
    llhttp_errno_t e = llhttp_execute(&k->ll, buf->base, n);
    if (e == HPE_PAUSED)
        request_done(k);
    else if (e != HPE_OK || k->head_bytes >= RD_MAX_HEAD)
        answer(k, 400, NULL);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

/* Whether k's address already holds --redirect-max-per-ip other open connections (the
 * list holds open ones only; k is on it). A walk: at most RD_MAX_CONNS, on accept only. */
static bool over_address_cap(struct tf_redirect *rd, const struct rd_conn *k)
{
    const struct tf_config *cfg = rd->s->cfg;
    int n = 0;
    for (const struct rd_conn *o = rd->conns; o; o = o->next)
        n += o != k && strcmp(o->ip, k->ip) == 0;
    if (n < cfg->redirect_max_per_ip)
        return false;
    tf_log_limited(&rd->s->stats.log_redirect_cap, (int64_t)tf_mono_ms(), TF_LOG_INFO,
                   "redirect", "%s: --redirect-max-per-ip (%d) reached, closed", k->peer,
                   cfg->redirect_max_per_ip);
    return true;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct tf_redirect *rd = server->data;
    if (status != 0)
        return;
    struct rd_conn *k = tf_calloc(1, sizeof *k);
    k->rd = rd;
    uv_tcp_init(server->loop, &k->tcp);
    uv_timer_init(server->loop, &k->timer);
    k->tcp.data = k->timer.data = k;
    k->closes = 2;
    rd->pending++;
    k->next = rd->conns;
    if (rd->conns)
        rd->conns->prev = k;
    rd->conns = k;
    /* pending counts the listener and every connection not yet freed (closing ones too). */
    if (uv_accept(server, (uv_stream_t *)&k->tcp) != 0 || rd->pending - 1 > RD_MAX_CONNS) {
        conn_close(k);
        return;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    snprintf(k->ip, sizeof k->ip, "?");
    if (uv_tcp_getpeername(&k->tcp, (struct sockaddr *)&ss, &len) == 0)
        tf_conn_addr_text(&ss, k->peer, sizeof k->peer, k->ip, sizeof k->ip);
    if (over_address_cap(rd, k)) {
        conn_close(k);
        return;
    }
    llhttp_init(&k->ll, HTTP_REQUEST, &rd_settings);
    k->ll.data = k;
    uv_timer_start(&k->timer, on_timeout, rd->s->cfg->handshake_timeout_ms, 0);
    if (uv_read_start((uv_stream_t *)&k->tcp, on_alloc, on_read) != 0)
        conn_close(k);
}

/* --- listener ------------------------------------------------------------------------ */

static void on_listener_closed(uv_handle_t *h)
{
    struct tf_redirect *rd = h->data;
    rd->pending--;
    maybe_free(rd);
}

int tf_redirect_start(struct tf_server *s)
{
    const struct tf_config *cfg = s->cfg;
    if (!cfg->redirect_http)
        return 0;
    struct tf_redirect *rd = tf_calloc(1, sizeof *rd);
    rd->s = s;
    s->redirect = rd;
    uv_tcp_init(&s->loop, &rd->listener);
    rd->listener.data = rd;
    rd->pending = 1;
    int r = uv_tcp_bind(&rd->listener, (const struct sockaddr *)&cfg->redirect_http_addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&rd->listener, cfg->backlog, on_connection);
    if (r != 0) {
        TF_ERROR("redirect", "--redirect-http %s: %s%s", cfg->redirect_http, uv_strerror(r),
                 tf_listener_bind_hint(r, (const struct sockaddr *)&cfg->redirect_http_addr));
        return 1; /* tf_server_free() stops us */
    }
    char name[64] = "?";
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&rd->listener, &fd) == 0)
        tf_listener_name(fd, name, sizeof name);
    TF_INFO("server", "redirect-http on %s (308 to https)", name);
    return 0;
}

void tf_redirect_stop(struct tf_server *s)
{
    struct tf_redirect *rd = s->redirect;
    if (!rd || rd->stopping)
        return;
    rd->stopping = true;
    while (rd->conns)
        conn_close(rd->conns);
    uv_close((uv_handle_t *)&rd->listener, on_listener_closed);
}
