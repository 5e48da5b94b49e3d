/*
 * http_client.c: the asynchronous HTTP/1.1 client behind tlsfront/net/http_client.h: the
 * client (its SSL_CTX and close), its requests (one uv_timer each: deferred start, timeout
 * and deferred completion) and the public API. Connections (DNS, TCP, TLS, the keep-alive
 * pool per origin) live in http_client_conn.c, response parsing in
 * src/proto/http_parse.c. It never blocks the loop, never calls a completion callback from
 * inside an API call, calls each callback exactly once and frees handle memory only after the
 * close callbacks ran.
 */
#include "http_client_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HTTP_DEFAULT_TIMEOUT_MS 30000
#define HTTP_DEFAULT_MAX_BODY (1024 * 1024)

/* Starting a timer only fails on a closing handle or NULL callback: a bug of ours. */
void tf_httpc_timer_arm(uv_timer_t *t, uv_timer_cb cb, uint64_t ms)
{
    int r = uv_timer_start(t, cb, ms, 0);
    if (r != 0) {
        TF_ERROR("http", "uv_timer_start: %s", uv_strerror(r));
        abort();
    }
}

void tf_httpc_release(struct tf_httpc *c)
{
    if (--c->pending > 0)
        return;
    if (c->done)
        c->done(c->done_arg);
    SSL_CTX_free(c->ssl_ctx);
    free(c);
}

/* ---- requests ---- */

static void req_unlink(struct tf_httpc_req *req)
{
    struct tf_httpc *c = req->client;
    if (req->prev)
        req->prev->next = req->next;
    else if (c->reqs == req)
        c->reqs = req->next;
    if (req->next)
        req->next->prev = req->prev;
    req->prev = req->next = NULL;
}

static void req_detach_conn(struct tf_httpc_req *req)
{
    if (req->conn)
        tf_httpc_conn_close(req->conn); /* mid-request: never reusable; the close unbinds */
}

static void on_req_closed(uv_handle_t *h)
{
    struct tf_httpc_req *req = h->data;
    struct tf_httpc *c = req->client;
    tf_http_url_clear(&req->url);
    tf_http_parser_free(req->parser);
    free(req->wire);
    free(req);
    tf_httpc_release(c);
}

/* Delivers the result. Only called from a loop callback; resp is borrowed from req->parser. */
void tf_httpc_req_finish(struct tf_httpc_req *req, int err, const struct tf_http_response *resp)
{
    req_unlink(req);
    req_detach_conn(req);
    req->state = REQ_DONE;
    uv_timer_stop(&req->timer);
    if (err)
        TF_DEBUG("http", "%s:%u%s failed: %s", req->url.host, req->url.port, req->url.path,
                 tf_strerror(err));
    req->cb(err, resp, req->arg);
    uv_close((uv_handle_t *)&req->timer, on_req_closed);
}

/* One timer per request: its meaning follows the request's state. */
static void on_req_timer(uv_timer_t *t)
{
    struct tf_httpc_req *req = t->data;
    switch (req->state) {
    case REQ_QUEUED:
        req->state = REQ_RUNNING;
        tf_httpc_timer_arm(&req->timer, on_req_timer, req->timeout_ms);
        tf_httpc_conn_start(req);
        break;
    case REQ_RUNNING:
        tf_httpc_req_finish(req, TF_ETIMEDOUT, NULL);
        break;
    case REQ_FAILING:
        tf_httpc_req_finish(req, req->err, NULL);
        break;
    case REQ_DONE:
        break;
    }
}

/* Fails req from a later loop iteration (for cancel and close, which callers may invoke
 * outside any loop callback). */
static void req_fail_later(struct tf_httpc_req *req, int err)
{
    if (req->state == REQ_FAILING || req->state == REQ_DONE)
        return;
    req_unlink(req);
    req_detach_conn(req);
    req->state = REQ_FAILING;
    req->err = err;
    tf_httpc_timer_arm(&req->timer, on_req_timer, 0);
}

void tf_httpc_cancel(struct tf_httpc_req *h)
{
    if (h)
        req_fail_later(h, UV_ECANCELED);
}

/* ---- the public API ---- */

struct tf_httpc *tf_httpc_new(uv_loop_t *loop, const char *extra_ca_file, char *err,
                                          size_t errlen)
{
    struct tf_httpc *c = tf_calloc(1, sizeof *c);
    c->loop = loop;
    ERR_clear_error();
    c->ssl_ctx = SSL_CTX_new(TLS_client_method());
    if (!c->ssl_ctx || SSL_CTX_set_min_proto_version(c->ssl_ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_default_verify_paths(c->ssl_ctx) != 1) {
        snprintf(err, errlen, "cannot set up the TLS client context");
        goto fail;
    }
    if (extra_ca_file &&
        SSL_CTX_load_verify_locations(c->ssl_ctx, extra_ca_file, NULL) != 1) {
        snprintf(err, errlen, "%s: cannot load CA certificates", extra_ca_file);
        goto fail;
    }
    SSL_CTX_set_verify(c->ssl_ctx, SSL_VERIFY_PEER, NULL);
    int r = uv_timer_init(loop, &c->anchor);
    if (r < 0) {
        snprintf(err, errlen, "uv_timer_init: %s", uv_strerror(r));
        goto fail;
    }
    c->anchor.data = c;
    c->pending = 1;
    return c;
fail:
    ERR_clear_error();
    SSL_CTX_free(c->ssl_ctx);
    free(c);
    return NULL;
}

int tf_httpc_request(struct tf_httpc *c, const struct tf_http_request *rq, tf_httpc_cb cb,
                    void *arg, struct tf_httpc_req **handle)
{
    if (c->closing)
        return TF_ECLOSED;
    if (!cb || !rq)
        return TF_EINVAL;
    struct tf_httpc_req *req = tf_calloc(1, sizeof *req);
    int r = tf_http_url_parse(rq->url, &req->url);
    if (r == 0)
        r = tf_http_request_serialize(rq, &req->url, &req->wire, &req->wire_len);
    if (r == 0)
        r = uv_timer_init(c->loop, &req->timer);
    if (r < 0) {
        tf_http_url_clear(&req->url);
        free(req->wire);
        free(req);
        return r;
    }
    req->client = c;
    req->timer.data = req;
    req->head = strcmp(rq->method, "HEAD") == 0;
    req->max_body = rq->max_body ? rq->max_body : HTTP_DEFAULT_MAX_BODY;
    req->timeout_ms = rq->timeout_ms ? rq->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
    req->cb = cb;
    req->arg = arg;
    req->next = c->reqs;
    if (c->reqs)
        c->reqs->prev = req;
    c->reqs = req;
    c->pending++;
    req->state = REQ_QUEUED;
    tf_httpc_timer_arm(&req->timer, on_req_timer, 0); /* starts from the loop, never from here */
    if (handle)
        *handle = req;
    return 0;
}

static void on_anchor_closed(uv_handle_t *h)
{
    tf_httpc_release(h->data);
}

void tf_httpc_close(struct tf_httpc *c, void (*done)(void *arg), void *arg)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    c->done = done;
    c->done_arg = arg;
    while (c->reqs)
        req_fail_later(c->reqs, UV_ECANCELED);
    while (c->conns)
        tf_httpc_conn_close(c->conns);
    uv_close((uv_handle_t *)&c->anchor, on_anchor_closed);
}
