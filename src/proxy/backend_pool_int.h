/*
 * backend_pool.h: keep-alive connections to mode=http backends, kept per worker and per
 * backend address (host and port) so that a new client connection can reuse one instead of
 * connecting (--backend-keepalive). A backend connection (struct tf_bconn) is owned by
 * exactly one party at a time: the client connection using it, or the pool while it is idle.
 * The pool never hands one connection to two owners and never sends a byte on an idle one: it
 * reads it only to notice a close (any byte arriving on an idle connection is a protocol error
 * and closes it too). Worker-local: no locks. Deciding whether a connection may return to
 * the pool (a complete response that allows it) is the HTTP layer's job (http_mode.c).
 */
#ifndef TF_BACKEND_POOL_H
#define TF_BACKEND_POOL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tf_pool;
struct tf_pool_key;

/* One backend TCP connection. tcp comes first: the close callbacks free the handle pointer.
 * tcp.data is the owning struct tf_conn while a connection uses it, the tf_bconn itself while
 * it idles in the pool. */
struct tf_bconn {
    uv_tcp_t tcp;
    struct tf_pool_key *key;             /* while idle in the pool */
    struct tf_bconn *prev, *next;        /* the key's idle list, most recent first */
    uint64_t expires;                    /* uv_now() when an idle one is closed */
};

/* A fresh backend connection: tcp initialised on loop (the caller connects it). Returns NULL
 * after a failed uv_tcp_init, with *err set. */
struct tf_bconn *tf_bconn_new(uv_loop_t *loop, int *err);
/* The close callback for a tf_bconn's tcp that only frees it. */
void tf_bconn_on_closed(uv_handle_t *h);
/* The read callbacks of every backend connection (uv_read_start is called with these only):
 * an idle one's reads go to the pool, an owned one's to the pump (tf_pump_backend_read). A
 * connection handed over between the two keeps reading: libuv would otherwise forget its
 * epoll registration at the stop and pay a failing EPOLL_CTL_ADD and a MOD at the start. */
void tf_bconn_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);
void tf_bconn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

struct tf_wstats;
/* The worker's pool; stats (borrowed, the worker's own) counts its hits and misses. */
struct tf_pool *tf_pool_new(uv_loop_t *loop, struct tf_wstats *stats);
/* Close every idle connection and stop the sweep timer; the pool is freed by tf_pool_free
 * once the loop has run the close callbacks (safe to call twice). */
void tf_pool_close(struct tf_pool *p);
void tf_pool_free(struct tf_pool *p);

/* An idle connection to host:port, still reading (tf_bconn_read) with tcp.data unset, or NULL
 * (counted as a hit or a miss). The caller owns it from now on and sets tcp.data at once. */
struct tf_bconn *tf_pool_take(struct tf_pool *p, const char *host, uint16_t port);
/* Park bc (owned by the caller until now, no write or shutdown pending; reading: whether it
 * is reading with tf_bconn_read) as idle for host:port. When the key already holds cap idle
 * connections, the oldest is closed first; cap 0 or a closed pool closes bc. idle_ms: how long it
 * may idle before it is closed. */
void tf_pool_put(struct tf_pool *p, const char *host, uint16_t port, struct tf_bconn *bc,
                 bool reading, int cap, uint32_t idle_ms);
/* Idle connections held now (all keys). */
int tf_pool_idle(const struct tf_pool *p);

#endif
