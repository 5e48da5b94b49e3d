/*
 * http_mode.c: the mode=http glue between the pump and the request rewriter. It
 * owns, per connection, the tf_http_rw that rewrites the client's requests, a second llhttp
 * parser that follows the rewritten request stream only to learn each request's method (a
 * response to HEAD has no body, a 2xx to CONNECT opens a tunnel), and a response parser
 * that frames the backend's responses: it buffers each response head (capped) to add
 * Strict-Transport-Security when configured, counts responses so that an error page never
 * lands in the middle of an earlier response, and answers the rewriter's upgrade question
 * (101, or 2xx to CONNECT on a route with connect=on, switches both directions to plain
 * byte forwarding; elsewhere the rewriter answers CONNECT with 405). Bodies pass
 * through without buffering. Never writes to sockets itself: everything goes through
 * tf_pump_to_backend(), tf_pump_to_client() and tf_pump_finish().
 *
 * Keep-alive pool (--backend-keepalive): a backend connection goes back to the worker's pool
 * only when the client has finished (its EOF, or the response to its "Connection: close"
 * request, a close the rewriter keeps from the backend) and the exchange on it is clean: every
 * request forwarded whole and answered by a complete response, both sides allowing keep-alive, no
 * tunnel, nothing queued. A backend connection thus serves one client connection at a time,
 * so two clients' requests never share it. A connection taken from the pool may turn out to
 * have been closed by the backend meanwhile: the requests sent on it are kept (capped) until
 * the first response byte, and if it fails before that byte and they were all idempotent
 * (RFC 9110 section 9.2.2) they are sent once more on a fresh connection; otherwise the
 * client gets the 502 it would have got anyway.
 */
#include "conn_int.h"
#include "tlsfront/proto/http_rewrite.h"
#include "tlsfront/base/log.h"

#include <arpa/inet.h>
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Cap on one buffered response head; above it the backend gets the blame (502). */
#define RESP_HEAD_MAX (64 * 1024)
/* Request bytes kept for a replay after a stale pooled connection; beyond it, no replay. */
#define REPLAY_MAX (64 * 1024)
#define METHOD_UNKNOWN 0xff

struct tf_httpmode {
    struct tf_conn *c;            /* owner (the connection frees this) */
    struct tf_http_rw *rw;
    struct tf_buf_sink out;       /* rewriter output, reused for every feed */

    llhttp_t mirror;              /* follows the rewritten requests: methods only */
    bool mirror_ok;
    bool tunnel;                  /* the request side is a tunnel now */
    unsigned long forwarded;      /* request heads that went to the backend */
    unsigned char *methods;       /* ring of request methods awaiting a response */
    size_t m_head, m_len, m_cap;

    llhttp_t resp;                /* frames the backend's responses */
    bool resp_raw;                /* tunnel (or unexpected 101): bytes pass verbatim */
    bool in_head;                 /* buffering a response head */
    bool paused_msg;              /* resp paused at message complete */
    struct tf_buf_sink head;
    bool cur_final;               /* the current response is not 1xx interim */
    bool cur_tunnel;              /* ... and switches protocols */
    unsigned long heads;          /* final response heads seen */
    unsigned long done;           /* final responses complete */

    bool upgrade_wait;            /* the rewriter holds the client for an upgrade answer */
    unsigned long upgrade_idx;    /* which final response answers it */
    bool release;                 /* resume the client once the backend's bytes are out */
    int pending_status;           /* 400/431 to send once earlier responses are complete */
    enum tf_conn_end pending_end;

    bool req_keepalive;           /* the last forwarded request allows a next one */
    bool resp_keepalive;          /* ... and so does the last final response */
    bool eof_wait;                /* the client is done: pool (or close) once all answered */
    bool keep_backend;            /* pooling possible: the client's close is not forwarded */
    bool got_resp;                /* a byte came from this backend connection */
    bool replay_ok;               /* the requests in replay are idempotent and all there */
    struct tf_buf_sink replay;    /* sent on a pooled connection before its first answer */
};

static struct tf_httpmode *http_of(llhttp_t *ll)
{
    return ll->data;
}

/* --- request methods (mirror parser) ------------------------------------------------- */

static void push_method(struct tf_httpmode *h, unsigned char m)
{
    if (h->m_len == h->m_cap) {
        size_t cap = h->m_cap ? h->m_cap * 2 : 16;
        unsigned char *n = tf_malloc(cap);
        for (size_t i = 0; i < h->m_len; i++)
            n[i] = h->methods[(h->m_head + i) % h->m_cap];
        free(h->methods);
        h->methods = n;
        h->m_cap = cap;
        h->m_head = 0;
    }
    h->methods[(h->m_head + h->m_len) % h->m_cap] = m;
    h->m_len++;
}

static int pop_method(struct tf_httpmode *h)
{
    if (h->m_len == 0)
        return METHOD_UNKNOWN;
    int m = h->methods[h->m_head];
    h->m_head = (h->m_head + 1) % h->m_cap;
    h->m_len--;
    return m;
}

/* RFC 9110 section 9.2.2: a request a client may send again without a second effect. */
static bool idempotent(int m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS || m == HTTP_TRACE ||
           m == HTTP_PUT || m == HTTP_DELETE;
}

static int on_mirror_headers(llhttp_t *ll)
{
    http_of(ll)->forwarded++;
    if (!idempotent(ll->method))
        http_of(ll)->replay_ok = false;
    push_method(http_of(ll), (unsigned char)ll->method);
    ll->upgrade = 0; /* keep parsing: whether it becomes a tunnel is the response's call */
    return 0;
}

static int on_mirror_complete(llhttp_t *ll)
{
    http_of(ll)->req_keepalive = llhttp_should_keep_alive(ll) != 0;
    return 0;
}

static const llhttp_settings_t mirror_settings = {
    .on_headers_complete = on_mirror_headers,
    .on_message_complete = on_mirror_complete,
};

/* --- response framing ---------------------------------------------------------------- */

static int on_resp_headers(llhttp_t *ll)
{
    struct tf_httpmode *h = http_of(ll);
    int st = ll->status_code;
    h->cur_final = st < 100 || st >= 200 || st == 101;
    h->cur_tunnel = false;
    if (h->cur_final) {
        h->heads++;
        int m = pop_method(h);
        h->cur_tunnel = st == 101 || (m == HTTP_CONNECT && st >= 200 && st < 300);
        if (h->cur_tunnel) {
            ll->upgrade = 1;
            ll->flags |= F_SKIPBODY;
        } else {
            ll->upgrade = 0;
            if (m == HTTP_HEAD)
                ll->flags |= F_SKIPBODY;
        }
    }
    return HPE_PAUSED;
}

static int on_resp_complete(llhttp_t *ll)
{
    if (http_of(ll)->cur_final)
        http_of(ll)->resp_keepalive = llhttp_should_keep_alive(ll) != 0;
    http_of(ll)->paused_msg = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t resp_settings = {
    .on_headers_complete = on_resp_headers,
    .on_message_complete = on_resp_complete,
};

/* --- object -------------------------------------------------------------------------- */

/* The client's address for X-Forwarded-For: IPv4-mapped IPv6 written as IPv4. */
static void xff_addr(const struct tf_conn *c, char *out, size_t cap)
{
    const struct sockaddr_in6 *a6 = &c->src_addr.in6;
    if (c->src_addr.sa.sa_family == AF_INET6 && IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr))
        inet_ntop(AF_INET, a6->sin6_addr.s6_addr + 12, out, (socklen_t)cap);
    else
        snprintf(out, cap, "%s", c->ip);
}

struct tf_httpmode *tf_httpmode_new(struct tf_conn *c)
{
    struct tf_httpmode *h = tf_calloc(1, sizeof *h);
    const struct tf_config *cfg = c->cfg;
    char addr[sizeof c->ip];
    xff_addr(c, addr, sizeof addr);
    struct tf_http_rw_opts o = {
        .client_addr = addr,
        .host = c->sni[0] ? c->sni : NULL,
        .trust_xff = cfg->n_trusted_xff > 0 &&
                     tf_cidr_match(cfg->trusted_xff, cfg->n_trusted_xff,
                                   &c->src_addr.sa),
        .add_forwarded = cfg->forwarded,
        .allow_connect = c->route.backend->connect,
    };
    o.keep_backend = h->keep_backend =
        cfg->backend_keepalive > 0 && c->route.backend->proxy == TF_PROXY_NONE;
    h->c = c;
    h->rw = tf_http_rw_new(&o);
    llhttp_init(&h->mirror, HTTP_REQUEST, &mirror_settings);
    h->mirror.data = h;
    h->mirror_ok = true;
    llhttp_init(&h->resp, HTTP_RESPONSE, &resp_settings);
    h->resp.data = h;
    h->in_head = true;
    h->req_keepalive = h->resp_keepalive = h->replay_ok = true;
    return h;
}

void tf_httpmode_free(struct tf_httpmode *h)
{
    if (!h)
        return;
    tf_http_rw_free(h->rw);
    tf_buf_sink_free(&h->out);
    tf_buf_sink_free(&h->head);
    tf_buf_sink_free(&h->replay);
    free(h->methods);
    free(h);
}

/* Requests forwarded: the rewriter counts heads it emitted, including one it withdrew
 * with the rest of a bad request; the mirror counts what really went out. */
unsigned long tf_httpmode_requests(const struct tf_httpmode *h)
{
    return h->mirror_ok ? h->forwarded : tf_http_rw_requests(h->rw);
}

/* --- answers of our own -------------------------------------------------------------- */

void tf_httpmode_fail(struct tf_conn *c, int status, enum tf_conn_end reason)
{
    char page[512];
    size_t n = tf_http_error_response(status, page, sizeof page);
    if (tf_pump_to_client(c, page, n))
        tf_pump_finish(c, reason);
}

/* The rewriter refused a request. The answer waits for the responses the backend still
 * owes for earlier requests; a request whose head already went out cannot be answered by
 * us at all (the backend may be answering it), so that connection just closes. */
static void bad_request(struct tf_conn *c, struct tf_httpmode *h)
{
    int status = tf_http_rw_status(h->rw);
    enum tf_conn_end end = status == 431   ? TF_CONN_END_HTTP_431
                           : status == 405 ? TF_CONN_END_HTTP_405
                                           : TF_CONN_END_HTTP_400;
    char peer[TF_CONN_PEER_MAX];
    TF_INFO("http", "conn=%llx %s name=%s: %d %s", (unsigned long long)c->id,
            tf_conn_peer(c, peer),
            c->sni[0] ? c->sni : "-", status, tf_http_rw_reason(h->rw));
    if (tf_http_rw_mid_request(h->rw)) {
        tf_conn_close(c, end);
        return;
    }
    if (h->done < tf_httpmode_requests(h) && !c->backend.eof) {
        h->pending_status = status;
        h->pending_end = end;
        tf_pump_hold_client(c, true);
        return;
    }
    tf_httpmode_fail(c, status, end);
}

/* --- request side -------------------------------------------------------------------- */

static void forward(struct tf_httpmode *h)
{
    if (h->out.len == 0)
        return;
    if (!h->tunnel && h->mirror_ok &&
        llhttp_execute(&h->mirror, h->out.data, h->out.len) != HPE_OK)
        h->mirror_ok = false; /* methods unknown from here: responses framed as to GET */
    if (h->c->backend_reused && !h->got_resp && h->replay_ok) {
        if (h->replay.len + h->out.len <= REPLAY_MAX)
            tf_buf_sink_append(&h->replay, h->out.data, h->out.len);
        else
            h->replay_ok = false;
    }
    tf_pump_to_backend(h->c, h->out.data, h->out.len);
    h->out.len = 0;
}

/* What tf_http_rw_feed() and tf_http_rw_upgrade_refused() return, acted upon. */
static void after_feed(struct tf_conn *c, struct tf_httpmode *h, int rc)
{
    forward(h);
    if (rc == TF_HTTP_RW_UPGRADE) {
        if (!h->upgrade_wait) {
            h->upgrade_wait = true;
            h->upgrade_idx = tf_httpmode_requests(h);
        }
        tf_pump_hold_client(c, true);
    } else if (rc < 0) {
        bad_request(c, h);
    }
}

static void end_exchange(struct tf_conn *c, struct tf_httpmode *h);

/* The client is done (its EOF, or its "Connection: close" request read whole, a close the
 * backend never saw) and every answer went out: nobody else would end the exchange. */
static bool client_done(const struct tf_conn *c, const struct tf_httpmode *h)
{
    return (h->eof_wait || (h->keep_backend && tf_http_rw_closed(h->rw))) &&
           h->done >= tf_httpmode_requests(h) && !c->closing && !c->finishing;
}

void tf_httpmode_client_data(struct tf_conn *c, const char *data, size_t len)
{
    struct tf_httpmode *h = c->http;
    h->out.len = 0;
    after_feed(c, h, tf_http_rw_feed(h->rw, data, len, &h->out));
    if (client_done(c, h)) /* the backend answered before the request's end */
        end_exchange(c, h);
}

/* The response to the held upgrade request is here: tunnel, or go on parsing requests. */
static void upgrade_answer(struct tf_conn *c, struct tf_httpmode *h)
{
    h->upgrade_wait = false;
    h->out.len = 0;
    if (h->cur_tunnel) {
        h->resp_raw = h->tunnel = true;
        tf_http_rw_set_tunnel(h->rw, &h->out);
        forward(h);
        h->release = true;
        return;
    }
    int rc = tf_http_rw_upgrade_refused(h->rw, &h->out);
    after_feed(c, h, rc);
    h->release = rc == 0;
}

/* --- response side ------------------------------------------------------------------- */

static bool has_field(const struct tf_buf_sink *head, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i + n + 1 < head->len; i++)
        if (head->data[i] == '\n' && strncasecmp(head->data + i + 1, name, n) == 0 &&
            head->data[i + 1 + n] == ':')
            return true;
    return false;
}

/* Send the buffered head, with Strict-Transport-Security before its empty line when
 * configured and absent (final, non-tunnel responses only); one SSL_write, one record. */
static bool emit_head(struct tf_conn *c, struct tf_httpmode *h)
{
    struct tf_buf_sink *hd = &h->head;
    const char *hsts = c->cfg->hsts;
    size_t at = hd->len;
    if (hsts && h->cur_final && !h->cur_tunnel && !has_field(hd, "strict-transport-security")) {
        if (hd->len >= 4 && memcmp(hd->data + hd->len - 4, "\r\n\r\n", 4) == 0)
            at = hd->len - 2;
        else if (hd->len >= 2 && memcmp(hd->data + hd->len - 2, "\n\n", 2) == 0)
            at = hd->len - 1;
    }
    if (at < hd->len) {
        struct tf_buf_sink *t = &h->out; /* free here: the request side is not running */
        t->len = 0;
        tf_buf_sink_append(t, hd->data, at);
        tf_buf_sink_append(t, "Strict-Transport-Security: ", 27);
        tf_buf_sink_append(t, hsts, strlen(hsts));
        tf_buf_sink_append(t, "\r\n", 2);
        tf_buf_sink_append(t, hd->data + at, hd->len - at);
        bool ok = tf_pump_to_client(c, t->data, t->len);
        t->len = 0;
        hd->len = 0;
        return ok;
    }
    bool ok = tf_pump_to_client(c, hd->data, hd->len);
    hd->len = 0;
    return ok;
}

/* The backend broke HTTP. Before any byte of the response went out: 502; else close. */
static void backend_broke(struct tf_conn *c, struct tf_httpmode *h, const char *what)
{
    TF_INFO("http", "conn=%llx name=%s backend %s:%u: %s", (unsigned long long)c->id,
            c->sni[0] ? c->sni : "-", c->route.backend->host, c->route.backend->port, what);
    if (h->in_head)
        tf_httpmode_fail(c, 502, TF_CONN_END_BACKEND_BAD_RESPONSE);
    else
        tf_conn_close(c, TF_CONN_END_BACKEND_BAD_RESPONSE);
}

/* A whole response went out: maybe the deferred error page may follow now. */
static void response_done(struct tf_conn *c, struct tf_httpmode *h)
{
    if (h->cur_final)
        h->done++;
    if (h->pending_status && h->done >= tf_httpmode_requests(h))
        tf_httpmode_fail(c, h->pending_status, h->pending_end);
}

static int resp_head(struct tf_conn *c, struct tf_httpmode *h, const char *data, size_t len)
{
    size_t n = TF_MIN(len, RESP_HEAD_MAX - h->head.len);
    if (n == 0) {
        backend_broke(c, h, "response head over 64 KiB");
        return -1;
    }
    llhttp_errno_t e = llhttp_execute(&h->resp, data, n);
    size_t used = e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&h->resp) - data) : n;
    if (e != HPE_OK && e != HPE_PAUSED) {
        backend_broke(c, h, llhttp_errno_name(e));
        return -1;
    }
    tf_buf_sink_append(&h->head, data, used);
    if (e == HPE_OK)
        return (int)used;
    llhttp_resume(&h->resp);
    h->in_head = false;
    if (!emit_head(c, h))
        return -1;
    if (h->cur_tunnel)
        h->resp_raw = true;
    if (h->cur_final && h->upgrade_wait && h->heads == h->upgrade_idx)
        upgrade_answer(c, h);
    return (int)used;
}

static int resp_body(struct tf_conn *c, struct tf_httpmode *h, const char *data, size_t len)
{
    h->paused_msg = false;
    llhttp_errno_t e = llhttp_execute(&h->resp, data, len);
    size_t used = e == HPE_PAUSED ? (size_t)(llhttp_get_error_pos(&h->resp) - data) : len;
    if (e != HPE_OK && !(e == HPE_PAUSED && h->paused_msg)) {
        backend_broke(c, h, llhttp_errno_name(e));
        return -1;
    }
    if (!tf_pump_to_client(c, data, used))
        return -1;
    if (e == HPE_PAUSED) {
        llhttp_resume(&h->resp);
        h->in_head = true;
        response_done(c, h);
    }
    return (int)used;
}

void tf_httpmode_backend_data(struct tf_conn *c, const char *data, size_t len)
{
    struct tf_httpmode *h = c->http;
    if (!h->got_resp && len > 0) {
        h->got_resp = true; /* the connection works: nothing to replay from here */
        tf_buf_sink_free(&h->replay);
    }
    while (len > 0 && !c->closing && !c->finishing) {
        if (h->resp_raw) {
            tf_pump_to_client(c, data, len);
            break;
        }
        int used = h->in_head ? resp_head(c, h, data, len) : resp_body(c, h, data, len);
        if (used < 0)
            return;
        data += used;
        len -= (size_t)used;
    }
    /* A bodiless response completes only when llhttp sees the next byte: run it now so
     * that a deferred error page does not wait for bytes that never come. */
    if (!c->closing && !c->finishing && !h->resp_raw && !h->in_head)
        resp_body(c, h, data, 0);
    if (client_done(c, h))
        end_exchange(c, h);
    /* Only now, with every byte of this read handled: releasing the client runs its buffered
     * requests through the rewriter and h->out, which must not interleave with the
     * response parsing above. */
    if (h->release && !c->closing && !c->finishing) {
        h->release = false;
        tf_pump_hold_client(c, false);
    }
}

bool tf_httpmode_backend_eof(struct tf_conn *c)
{
    struct tf_httpmode *h = c->http;
    if (tf_httpmode_backend_stale(c))
        return true;
    if (!h->resp_raw && h->in_head && h->head.len > 0) {
        backend_broke(c, h, "closed inside a response head");
        return true;
    }
    if (h->pending_status) {
        tf_httpmode_fail(c, h->pending_status, h->pending_end);
        return true;
    }
    if (h->upgrade_wait && h->in_head) {
        /* The client is held for the upgrade's answer, which will never come: without a
         * reply it would wait, unread, until the idle timeout. */
        tf_httpmode_fail(c, 502, TF_CONN_END_BACKEND_CLOSED);
        return true;
    }
    if (!h->resp_raw && h->in_head && h->done < tf_httpmode_requests(h)) {
        /* Requests left unanswered, and no byte of their answers went out yet. */
        tf_httpmode_fail(c, 502, TF_CONN_END_BACKEND_CLOSED);
        return true;
    }
    if (h->eof_wait) {
        /* The client is done and the backend too: nothing was shut down on either side. */
        tf_pump_finish(c, TF_CONN_END_DONE);
        return true;
    }
    return false;
}

/* --- keep-alive pool ----------------------------------------------------------------- */

/* Whether the backend connection may serve another client as things stand, answers aside:
 * pooling on, no PROXY header (it names this client), connected and open both ways, every
 * forwarded request whole, keep-alive allowed by both sides so far, no tunnel. */
static bool poolable(const struct tf_conn *c, const struct tf_httpmode *h)
{
    return c->cfg->backend_keepalive > 0 && c->route.backend->proxy == TF_PROXY_NONE &&
           c->state == TF_CONN_PUMPING && c->bconn && c->backend.open && !c->backend.eof &&
           !c->backend.shut && !c->w->draining && !h->tunnel && !h->resp_raw &&
           !h->upgrade_wait && h->mirror_ok && !h->pending_status &&
           !tf_http_rw_mid_request(h->rw) && h->req_keepalive && h->resp_keepalive;
}

/* ... and right now: every request answered completely, no response begun, nothing queued. */
static bool idle_now(const struct tf_conn *c, const struct tf_httpmode *h)
{
    return h->in_head && h->head.len == 0 && h->done == h->forwarded &&
           c->backend.wq == 0 && !c->backend.held;
}

/* The client finished and every response went out (client_done()): the backend connection
 * goes to the pool when it can, and the client gets close_notify and FIN. */
static void end_exchange(struct tf_conn *c, struct tf_httpmode *h)
{
    h->eof_wait = false;
    if (poolable(c, h) && idle_now(c, h))
        tf_backend_release(c);
    tf_pump_finish(c, TF_CONN_END_DONE);
}

bool tf_httpmode_client_eof(struct tf_conn *c)
{
    struct tf_httpmode *h = c->http;
    if (!poolable(c, h))
        return false;
    if (h->done < tf_httpmode_requests(h)) {
        h->eof_wait = true; /* tf_http_backend_data ends it when the answers are out */
        return true;
    }
    end_exchange(c, h);
    return true;
}

bool tf_httpmode_backend_stale(struct tf_conn *c)
{
    struct tf_httpmode *h = c->http;
    if (!c->backend_reused || h->got_resp || !h->replay_ok || c->backend.wq != 0 ||
        c->closing || c->finishing)
        return false;
    TF_INFO("http", "conn=%llx name=%s backend %s:%u: pooled connection closed, %s",
            (unsigned long long)c->id, c->sni[0] ? c->sni : "-", c->route.backend->host,
            c->route.backend->port, h->replay.len ? "retrying on a new one" : "reconnecting");
    struct tf_buf_sink again = h->replay;
    memset(&h->replay, 0, sizeof h->replay);
    tf_backend_reconnect(c);
    tf_pump_to_backend(c, again.data, again.len); /* held until it connects */
    tf_buf_sink_free(&again);
    return true;
}
