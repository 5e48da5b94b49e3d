/*
 * conn.h: one proxied connection, owned by the worker that accepted it. TLS is driven from
 * libuv reads and writes through memory BIOs. Lifecycle: HANDSHAKE -> CONNECTING (backend)
 * -> PUMPING -> closed by tf_conn_close(), which is idempotent; memory is freed after the
 * last libuv close callback.
 */
#ifndef TF_CONN_H
#define TF_CONN_H

#include "route.h"
#include "worker.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Stop reading from one side when the other side's write queue holds more than this; resume
 * below the low mark. Bounds per-connection memory with a slow peer. */
#define TF_WQ_HIGH (256 * 1024)
#define TF_WQ_LOW (64 * 1024)

enum tf_conn_state { TF_CONN_HANDSHAKE = 0, TF_CONN_CONNECTING, TF_CONN_PUMPING, TF_CONN_CLOSING };

/* One direction's socket state; the pump treats both sides alike. */
struct tf_side {
    uv_tcp_t tcp;
    bool open;        /* tcp initialised (needs uv_close) */
    bool reading;     /* uv_read_start active */
    bool paused;      /* reading stopped for backpressure */
    bool eof;         /* peer finished sending (FIN or close_notify) */
    bool shut;        /* we finished sending to this peer (shutdown queued) */
    bool shut_done;   /* shutdown completed */
    size_t wq;        /* bytes queued for write to this peer */
    struct tf_wreq *held, *held_tail; /* writes waiting for the socket to exist (backend) */
};

struct tf_conn {
    struct tf_conn *prev, *next;  /* worker's list */
    struct tf_worker *w;          /* owner */
    uint64_t id;
    enum tf_conn_state state;
    bool closing;
    int pending_closes;

    struct tf_side client, backend;
    uv_timer_t timer;             /* handshake, connect and idle timeouts */
    uv_getaddrinfo_t gai;
    uv_connect_t connect_req;
    uv_shutdown_t shut_req[2];
    bool gai_active;
    struct addrinfo *addrs, *next_addr; /* from uv_getaddrinfo, owned */

    SSL *ssl;
    BIO *rbio, *wbio;             /* owned by ssl */
    struct tf_config *cfg;        /* reference for the connection's life */
    struct tf_route_choice route; /* borrowed from cfg */

    /* On-demand: a handshake held while the control loop obtains a certificate (#4). */
    enum { TF_HOLD_NONE = 0, TF_HOLD_WAITING, TF_HOLD_READY, TF_HOLD_FAILED } hold;
    int hold_alert;               /* SSL_AD_* sent when the hold fails */
    struct tf_conn *held_prev, *held_next; /* worker's held list while WAITING */
    bool acme;                    /* a TLS-ALPN-01 validation connection (RFC 8737) */

    char sni[254];
    char ip[48];                  /* client address without port (per-address caps) */
    char peer[64];                /* client address as text */
    const char *alpn;             /* borrowed from cfg or static */
    const char *tls_version;
    bool resumed;
    uint64_t start_ms, last_ms;
    uint64_t start_ns;            /* uv_hrtime() at accept, for the handshake histogram */
    uint64_t bytes_in, bytes_out;
    const char *end;              /* why it ended, for the access log */
};

/* Accept one connection from listener; on any failure the connection is closed and logged. */
void tf_conn_accept(struct tf_worker *w, uv_stream_t *listener);
/* Begin teardown (idempotent). reason is a static string for the access log. */
void tf_conn_close(struct tf_conn *c, const char *reason);

/* Hold the handshake: park c on the worker's held list and ask the control loop for a
 * certificate for c->sni. Called from the ClientHello callback, which then returns "retry". */
void tf_conn_hold(struct tf_conn *c);
/* The control loop answered for a held connection: resume the handshake (ok), or fail it with
 * alert (an SSL_AD_* code) and reason (static string) for the access log. */
void tf_conn_unhold(struct tf_conn *c, bool ok, int alert, const char *reason);

/* pump.c: data in both directions. */
void tf_pump_client_data(struct tf_conn *c);   /* decrypt and forward what rbio holds */
void tf_pump_start_backend(struct tf_conn *c); /* backend connected: flush and start reading */
void tf_pump_flush_tls(struct tf_conn *c);     /* move ciphertext from wbio to the client */
void tf_pump_client_eof(struct tf_conn *c);    /* client finished sending */
void tf_pump_free_held(struct tf_conn *c);
void on_pump_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);

/* backend.c */
void tf_backend_connect(struct tf_conn *c);

/* conn.c helpers used by the pump and the backend connector */
void tf_conn_touch(struct tf_conn *c);
void tf_conn_maybe_done(struct tf_conn *c);
void tf_conn_connected(struct tf_conn *c);
/* Drop one pending-close reference (a handle or request that outlives tf_conn_close). */
void tf_conn_release(struct tf_conn *c);
void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

#endif
