/*
 * conn_int.h: the data path's insides, shared by conn.c, conn_proxy.c, pump.c, backend.c,
 * handshake.c and http_mode.c and by nobody else (tlsfront/proxy/conn.h is the outside view).
 * One proxied connection, owned by the worker that accepted it. TLS is driven from libuv
 * reads and writes through the worker's buffers (tlsbio.h); the SSL is created only once the
 * first TLS record has arrived, so a connection that sends nothing (or dribbles) costs this
 * struct and the bytes it sent. Lifecycle: [PROXY_IN, on ",proxy" listeners]
 * -> HANDSHAKE -> CONNECTING (backend) -> PUMPING -> closed by tf_conn_close(), which is
 * idempotent; memory is freed after the last libuv close callback. tf_pump_finish() is the
 * gentle variant: the client gets what is queued (an error page), then a FIN, then the close.
 */
#ifndef TF_CONN_INT_H
#define TF_CONN_INT_H

#include "tlsfront/config/route.h"
#include "tlsfront/proxy/conn.h"
#include "tlsfront/proxy/worker.h"
#include "tlsfront/tls/tls.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

/* Stop reading from one side when the other side's write queue holds more than this; resume
 * below the low mark. Bounds per-connection memory with a slow peer. */
#define TF_WQ_HIGH (256 * 1024)
#define TF_WQ_LOW (64 * 1024)

/* Bytes a held handshake (waiting for a certificate) keeps after its ClientHello: one full
 * record and then some. A legitimate client sends nothing more before our ServerHello; one
 * that sends more than this while held is closed (it is still read, so that a client that
 * leaves frees its hold at once). */
#define TF_HOLD_SLACK (TF_TLSBIO_MAX_RECORD + 512)

enum tf_conn_state {
    TF_CONN_HANDSHAKE = 0,
    TF_CONN_CONNECTING,
    TF_CONN_PUMPING,
    TF_CONN_CLOSING,
    TF_CONN_PROXY_IN, /* reading a load balancer's PROXY header, before TLS */
};

struct tf_httpmode;

/* One direction's socket state; the pump treats both sides alike. */
struct tf_side {
    uv_tcp_t *sock;   /* the socket: the conn's tcp, or the backend's tf_bconn's tcp */
    bool open;        /* tcp initialised (needs uv_close) */
    bool reading;     /* uv_read_start active */
    bool paused;      /* reading stopped for backpressure */
    bool hold;        /* reading stopped until an HTTP upgrade is answered (client) */
    bool eof;         /* peer finished sending (FIN or close_notify) */
    bool shut;        /* we finished sending to this peer (shutdown queued) */
    bool shut_done;   /* shutdown completed */
    size_t wq;        /* bytes queued for write to this peer */
    struct tf_wreq *held, *held_tail; /* writes waiting for the socket to exist (backend) */
};

/* An IPv4 or IPv6 socket address: 28 bytes where a sockaddr_storage takes 128, and every
 * connection keeps one. */
union tf_conn_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
};

/* Connecting to the backend: name resolution and the connect request, allocated when a
 * connection starts connecting and freed once it is connected (or with the connection), so
 * that an established connection does not carry them. Owned by the conn. */
struct tf_dial {
    uv_getaddrinfo_t gai;
    uv_connect_t req;
    bool gai_active;
    struct addrinfo *addrs, *next_addr; /* from uv_getaddrinfo, owned */
};

/* Every idle connection pays for each byte here (docs/benchmarks.md, figure 5): what only a
 * phase needs is allocated for that phase (tf_dial, the shutdown requests, PROXY state), the
 * SNI is kept at its length, and the fields are grouped by size so that there are no holes. */
struct tf_conn {
    struct tf_tls_alpn alpn_sel;  /* first: the ALPN callback reads it (tf_tlsbio_arg) */
    struct tf_conn *prev, *next;  /* worker's list */
    struct tf_worker *w;          /* owner */
    uint64_t id;

    uv_tcp_t tcp;                 /* the client's socket */
    struct tf_side client, backend;
    struct tf_bconn *bconn;       /* the backend connection (backend.sock), owned; NULL
                                   * before connecting and once closed or pooled */
    /* The one deadline (handshake, connect, hold, idle, linger) on the worker's lists
     * (conn_timer.c): list tq - 1, 0 when none. */
    struct tf_conn *tq_prev, *tq_next;
    uint64_t deadline;            /* uv_now() time */
    struct tf_dial *dial;         /* while connecting to the backend, owned */

    SSL *ssl;
    struct tf_tlsbio bio;         /* state of the BIO owned by ssl (tlsbio.h) */
    struct tf_config *cfg;        /* reference for the connection's life */
    struct tf_route_choice route; /* borrowed from cfg */
    struct tf_conn *held_prev, *held_next; /* worker's held list while WAITING */

    /* "" until the ClientHello names a server (then owned, on the heap: tf_conn_set_sni). */
    const char *sni;
    /* PROXY in: the addresses are the header's; lb_peer (owned, NULL unless proxied) is the
     * socket's peer as text. */
    char *lb_peer;
    unsigned char *pin;           /* PROXY header bytes so far (PROXY_IN state only), owned */
    size_t pin_len;
    struct tf_httpmode *http;     /* mode=http state, owned; NULL in mode=tcp */
    const char *alpn;             /* borrowed from cfg or static */
    const char *tls_version;
    uint64_t last_ms;             /* uv_now() of the last read (idle timeout) */
    uint64_t start_ns;            /* uv_hrtime() at accept: duration, handshake histogram */
    uint64_t bytes_in, bytes_out;
    union tf_conn_addr src_addr;  /* the client (from the header when proxied) */
    union tf_conn_addr dst_addr;  /* the address the client connected to */

    enum tf_conn_state state;
    enum tf_conn_end end;         /* why it ended, for the access log (NONE: not yet) */
    int pending_closes;
    /* On-demand: a handshake held while the control loop obtains a certificate. */
    enum { TF_HOLD_NONE = 0, TF_HOLD_WAITING, TF_HOLD_READY, TF_HOLD_FAILED } hold;
    int hold_alert;               /* SSL_AD_* sent when the hold fails */
    int tq;
    bool closing;
    bool finishing;               /* tf_pump_finish(): last bytes to the client, then close */
    bool backend_reused;          /* bconn came from the keep-alive pool */
    bool backend_retried;         /* ... and went stale: this is the fresh one (no pool) */
    bool hold_challenge;          /* held for a challenge another node published (cluster) */
    bool hold_load;               /* held while the control loop loads a --certs stub */
    unsigned char load_holds;     /* how often held for stubs (a few at most) */
    bool resumed;
    char ip[INET6_ADDRSTRLEN];    /* client address without port (per-address caps) */
};

/* The client's address as text, "ip:port" or "[ip]:port" (for logs), in buf. Returns buf. */
#define TF_CONN_PEER_MAX (INET6_ADDRSTRLEN + 8)
const char *tf_conn_peer(const struct tf_conn *c, char buf[TF_CONN_PEER_MAX]);
/* Set c->ip from c->src_addr. */
void tf_conn_set_ip(struct tf_conn *c);
/* The normalised SNI (copied; replaces an earlier one). */
void tf_conn_set_sni(struct tf_conn *c, const char *name);

/* conn_timer.c: the worker's connection deadlines (one libuv timer per worker). */
struct tf_deadlines *tf_deadlines_new(uv_loop_t *loop);
void tf_deadlines_close(struct tf_deadlines *d); /* uv_close its timer (stopping) */
void tf_deadlines_free(struct tf_deadlines *d);  /* after the loop ended; NULL is fine */
/* c's deadline, len_ms from now (replaces the one set before). */
void tf_deadline_set(struct tf_conn *c, uint64_t len_ms);
/* A deadline at most left_ms from now: the largest power of two of ms not above it (at least
 * 1), so that arbitrary lengths share few lists. The expiry checks again and sets the next. */
void tf_deadline_within(struct tf_conn *c, uint64_t left_ms);
void tf_deadline_clear(struct tf_conn *c);
/* conn.c: c's deadline passed (it is already cleared). */
void tf_conn_on_timeout(struct tf_conn *c);

/* conn_proxy.c: the PROXY protocol at both ends. */
/* Bytes received on a ",proxy" listener before the header is complete. Returns 1 when the
 * header is done (the connection moved to HANDSHAKE and the bytes after the header are the
 * TLS input), 0 when more bytes are needed, or -1 after closing the connection. */
int tf_conn_proxy_in(struct tf_conn *c, const char *data, size_t len);
/* Queue the route's PROXY v1/v2 header as the first bytes for the backend. */
void tf_conn_proxy_out(struct tf_conn *c);
/* http_mode.c: mode=http glue between the pump and the request rewriter. */
struct tf_httpmode *tf_httpmode_new(struct tf_conn *c);
void tf_httpmode_free(struct tf_httpmode *h);
/* Plaintext from the client: rewrite and forward to the backend, or answer 400/431. */
void tf_httpmode_client_data(struct tf_conn *c, const char *data, size_t len);
/* Bytes from the backend: responses to the client (HSTS added), upgrade decisions. */
void tf_httpmode_backend_data(struct tf_conn *c, const char *data, size_t len);
/* The backend sent FIN: a deferred error page can go out now. Returns true if it took over
 * (the connection is finishing). */
bool tf_httpmode_backend_eof(struct tf_conn *c);
/* The backend could not be reached: answer status (502) and finish with reason. */
void tf_httpmode_fail(struct tf_conn *c, int status, enum tf_conn_end reason);
unsigned long tf_httpmode_requests(const struct tf_httpmode *h);
/* Keep-alive pool hooks (http_mode.c). The client sent its EOF: returns true if the HTTP
 * layer took over (the backend connection stays open for the pool or the responses owed). */
bool tf_httpmode_client_eof(struct tf_conn *c);
/* The backend connection failed (EOF or error) before any response byte: returns true if
 * the HTTP layer reconnected to replay idempotent requests (a stale pooled connection). */
bool tf_httpmode_backend_stale(struct tf_conn *c);

/* pump.c: data in both directions. */
void tf_pump_client_data(struct tf_conn *c);   /* decrypt and forward the TLS input */
void tf_pump_start_backend(struct tf_conn *c); /* backend connected: flush and start reading */
/* The backend socket is connecting: read it from now on (libuv calls the read callback only
 * after the connect callback), so that its registration with epoll covers both directions
 * from the first: one epoll_ctl saved per backend connection. */
void tf_pump_read_connecting(struct tf_conn *c);
void tf_pump_flush_tls(struct tf_conn *c);     /* send the TLS records written so far */
void tf_pump_tls_out(void *arg, const char *data, size_t len); /* tlsbio flush callback */
void tf_pump_client_eof(struct tf_conn *c);    /* client finished sending */
void tf_pump_free_held(struct tf_conn *c);
/* Send to the backend (held until it connects); dropped once the connection is finishing. */
void tf_pump_to_backend(struct tf_conn *c, const char *data, size_t len);
/* Encrypt to the client (the caller flushes with tf_pump_flush_tls). Returns false after
 * closing the connection on a TLS error. */
bool tf_pump_to_client(struct tf_conn *c, const char *data, size_t len);
/* Stop (hold) or resume reading the client, independently of backpressure. */
void tf_pump_hold_client(struct tf_conn *c, bool hold);
/* Respond-then-close: stop the backend, send close_notify and FIN after what is queued for
 * the client, discard what the client still sends, close on its EOF or a short timer. */
void tf_pump_finish(struct tf_conn *c, enum tf_conn_end reason);
void on_pump_alloc(uv_handle_t *h, size_t size, uv_buf_t *buf);
/* What a backend connection's reads do while a client connection owns it (tf_bconn_read). */
void tf_pump_backend_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* backend.c */
void tf_backend_connect(struct tf_conn *c);
/* Hand the backend connection to the worker's pool (mode=http, a complete exchange and
 * nothing queued; the caller checked with tf_http_backend_reusable). */
void tf_backend_release(struct tf_conn *c);
/* Close the backend connection (pooled reuse went stale) and connect afresh, bypassing the
 * pool; bytes sent with tf_pump_to_backend meanwhile wait for the new connection. */
void tf_backend_reconnect(struct tf_conn *c);
/* Free c's dial (NULL: nothing to do). Not while a resolution or connect is pending, except
 * from conn_free, after every callback has run. */
void tf_backend_dial_free(struct tf_conn *c);
/* The close callback for c's backend socket: frees it and releases c. */
void tf_backend_on_closed(uv_handle_t *h);

/* conn.c helpers used by the pump and the backend connector */
void tf_conn_touch(struct tf_conn *c);
void tf_conn_maybe_done(struct tf_conn *c);
void tf_conn_connected(struct tf_conn *c);
void tf_conn_connecting(struct tf_conn *c);
void tf_conn_linger(struct tf_conn *c); /* short timer while finishing */
/* Drop one pending-close reference (a handle or request that outlives tf_conn_close). */
void tf_conn_release(struct tf_conn *c);
void on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

#endif
