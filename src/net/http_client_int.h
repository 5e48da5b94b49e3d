/*
 * http_client_int.h: the HTTP client's insides, shared by http_client.c (the client, its
 * requests and the public API) and http_client_conn.c (its connections: DNS, TCP, TLS over
 * memory BIOs, the keep-alive pool) and by nobody else (tlsfront/net/http_client.h is the
 * outside view). Everything here lives on the client's loop thread.
 */
#ifndef TF_HTTP_CLIENT_INT_H
#define TF_HTTP_CLIENT_INT_H

#include "tlsfront/net/http_client.h"

#include <netdb.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tf_httpc {
    uv_loop_t *loop;
    SSL_CTX *ssl_ctx;
    uv_timer_t anchor;            /* never started; closing it makes done run from a callback */
    struct tf_http_conn *conns;   /* connections not yet closing, idle or busy */
    struct tf_httpc_req *reqs;     /* requests whose completion is not yet decided */
    int pending;                  /* anchor + requests + connections not yet freed */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
    uint64_t next_conn_id;
};

enum conn_state { CONN_RESOLVING, CONN_CONNECTING, CONN_HANDSHAKING, CONN_OPEN };

/* Owned by the client while on its list, then by its own pending handle closes. */
struct tf_http_conn {
    struct tf_httpc *client;
    struct tf_http_conn *prev, *next;
    uint64_t id;
    char *host;                   /* origin: tls, host, port */
    uint16_t port;
    bool tls, host_is_ip;
    enum conn_state state;
    uv_getaddrinfo_t gai;
    bool resolving;               /* gai in flight */
    struct addrinfo *addrs, *next_addr;
    int last_err;                 /* of the last address tried */
    uv_tcp_t tcp;
    bool tcp_open;                /* initialised and not yet being closed */
    uv_connect_t connect_req;
    uv_timer_t idle_timer;
    SSL *ssl;                     /* owns rbio and wbio */
    BIO *rbio, *wbio;
    struct tf_httpc_req *req;      /* borrowed: the request using the connection, or NULL */
    int writes;                   /* uv_write requests in flight */
    int holds;                    /* pending handle closes and DNS callbacks */
    /* reused: completed a response before (a stale-pool candidate); got_bytes: response
     * bytes arrived for the current request. */
    bool reused, got_bytes, peer_closed, closing;
};

enum req_state { REQ_QUEUED, REQ_RUNNING, REQ_FAILING, REQ_DONE };

/* Owned by the client until its timer's close callback frees it. */
struct tf_httpc_req {
    struct tf_httpc *client;
    struct tf_httpc_req *prev, *next;
    enum req_state state;
    struct tf_http_url url;
    char *wire;                   /* the serialised request */
    size_t wire_len;
    bool head, retried;
    size_t max_body;
    uint32_t timeout_ms;
    struct tf_http_parser *parser; /* of the current attempt */
    struct tf_http_conn *conn;    /* borrowed */
    int err;                      /* for REQ_FAILING */
    uv_timer_t timer;
    tf_httpc_cb cb;
    void *arg;
};

/* Starting a timer only fails on a closing handle or NULL callback: a bug of ours (aborts). */
void tf_httpc_timer_arm(uv_timer_t *t, uv_timer_cb cb, uint64_t ms);
/* Drops one of c's pending frees; the last one runs the close callback and frees c. */
void tf_httpc_release(struct tf_httpc *c);
/* Delivers req's result (resp borrowed from req->parser) and starts freeing req. Only called
 * from a loop callback. */
void tf_httpc_req_finish(struct tf_httpc_req *req, int err, const struct tf_http_response *resp);

/* Gives a running req a connection: an idle pooled one to the same origin, or a new one
 * (http_client_conn.c); failures complete req from a loop callback. */
void tf_httpc_conn_start(struct tf_httpc_req *req);
/* Idempotent teardown of conn: unbinds its request, closes its handles; freed (and the
 * client released) after the last close callback. */
void tf_httpc_conn_close(struct tf_http_conn *conn);

#endif
