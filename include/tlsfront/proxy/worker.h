/*
 * worker.h: one worker = one thread, one libuv loop, its own SO_REUSEPORT listening sockets
 * and every connection accepted on them, from accept to close. A worker reads only its own
 * snapshot references (config, certificate store, ticket keys), which the control loop
 * replaces by message; it never touches another worker's objects.
 */
#ifndef TF_WORKER_H
#define TF_WORKER_H

#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/certcache.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/config/config.h"
#include "tlsfront/base/mailbox.h"
#include "tlsfront/base/name.h"
#include "tlsfront/base/outcome.h"
#include "tlsfront/base/stats.h"
#include "tlsfront/tls/tickets.h"
#include "tlsfront/tls/tlsbio.h"

#include <openssl/ssl.h>
#include <stdbool.h>
#include <uv.h>

struct tf_conn;

/* What a worker posts to the control loop's mailbox: a struct tf_smsg of this type. */
enum tf_server_msg {
    TF_SMSG_WORKER_IDLE = 1, /* a draining worker has no connections left */
    TF_SMSG_NEED_CERT,       /* name: a certificate is wanted for it */
    TF_SMSG_NEED_CHALLENGE,  /* name: offered acme-tls/1 without a challenge here (cluster:
                              * another node may have it) */
    TF_SMSG_NEED_LOAD,       /* name: its certificate is indexed (a --certs stub) but not
                              * loaded; answered with TF_WMSG_CERT_DONE */
};

struct tf_smsg {
    struct tf_msg hdr;              /* first; hdr.type is a TF_SMSG_* */
    struct tf_worker *worker;       /* the poster */
    char name[TF_NAME_MAX + 1];     /* NEED_CERT, NEED_CHALLENGE; "" otherwise */
};

/* What the control loop posts to a worker: a struct tf_wmsg of this type. */
enum tf_worker_msg {
    TF_WMSG_CONFIG = 1,     /* u.config */
    TF_WMSG_CERTS,          /* u.certs */
    TF_WMSG_TICKETS,        /* u.tickets */
    TF_WMSG_CHALLENGES,     /* u.challenges */
    TF_WMSG_CERT_DONE,      /* u.done */
    TF_WMSG_DRAIN,          /* no payload: stop accepting; report idle when the last
                             * connection closes */
    TF_WMSG_STOP,           /* no payload: close every connection and end the loop */
    TF_WMSG_CHALLENGE_DONE, /* u.done, for handshakes held for a TLS-ALPN-01 challenge */
    TF_WMSG_RETIRE,         /* u.retired: evicted certificates; releasing it marks this
                             * worker past any ClientHello callback that could still read
                             * them */
};

/* The payload is the union member its type names. Snapshot references move to the worker
 * with the message (and are dropped if the message is never delivered). */
struct tf_wmsg {
    struct tf_msg hdr; /* first; hdr.type is a TF_WMSG_* */
    union {
        struct {
            struct tf_config *cfg;
            SSL_CTX *ctx;
        } config;
        struct tf_certstore *certs;
        struct tf_ticket_ring *tickets;
        struct tf_challenges *challenges;
        struct tf_certcache_retired *retired;
        struct {
            int alert;                  /* 0: ready, else the SSL_AD_* alert */
            enum tf_outcome outcome;    /* why (TF_OUTCOME_READY when alert is 0) */
            char name[TF_NAME_MAX + 1];
        } done;
    } u;
};

struct tf_worker {
    struct tf_stats *stats;         /* borrowed: the process-wide gauges and rare counters */
    struct tf_wstats ws;            /* this worker's own counters (stats.h), read by the
                                     * admin endpoint; the array of workers is allocated
                                     * aligned (tf_calloc_aligned) */
    struct tf_mailbox *ctl;         /* borrowed: the control loop's mailbox (TF_SMSG_*) */
    int id;                         /* 0 .. n_workers-1 */
    int n_workers;                  /* set by the server before tf_worker_start */
    OSSL_LIB_CTX *lib;              /* borrowed: this worker's OpenSSL library context, which
                                     * its TLS contexts live in (tls.h); set by the server
                                     * before tf_worker_start, outlives the worker */
    uv_thread_t thread;
    uv_loop_t loop;
    struct tf_mailbox mbox;         /* control loop -> this worker */
    uv_tcp_t *listeners;            /* n_listeners, owned; fds handed over by the server */
    int *fds;
    bool *listener_proxy;           /* n_listeners: expects a PROXY header first, owned */
    int n_listeners;
    int listeners_open;             /* pending listener close callbacks */

    /* Snapshots: one reference each, touched only on this worker's thread. */
    struct tf_config *cfg;
    SSL_CTX *ssl_ctx;
    struct tf_certstore *certs;
    struct tf_ticket_ring *tickets;
    struct tf_ticket_ivs ivs;       /* the ticket IVs of this worker's handshakes */

    struct tf_challenges *challenges; /* pending TLS-ALPN-01 challenges (may be NULL) */

    struct tf_conn *conns;          /* intrusive list of live connections */
    struct tf_pool *pool;           /* idle keep-alive backend connections, owned */
    struct tf_deadlines *deadlines; /* the connections' timeouts (conn_timer.c), owned */
    struct tf_conn *held;           /* connections whose handshake waits for a certificate */
    int n_held;
    /* Returning the memory a burst of held handshakes freed (see worker.c, maybe_trim): */
    unsigned held_ended;            /* holds ended (answered or closed) since the last trim */
    unsigned held_ended_tick;       /* held_ended at the previous heartbeat */
    uint64_t trim_ms;               /* uv_now() of the last trim */
    int n_conns;
    uint64_t next_conn_id;
    bool draining, stopping;
    uv_timer_t heartbeat;           /* proves the loop turns (/healthz); checks for a trim */
    _Atomic uint64_t heartbeat_ms;  /* tf_mono_ms() of the last tick; read by the admin */
    /* Buffers that never hold data beyond one callback (see tlsbio.h): */
    char rx[65536];                 /* every socket read lands here */
    char scratch[65536];            /* plaintext out of SSL_read */
    struct tf_tlsbio_out tx;        /* TLS records, coalesced, flushed after each SSL call */
    char txbuf[160 * 1024];
};

/* Set up w (loop, mailbox, listeners from fds) on the calling thread and start its thread.
 * stats and ctl are borrowed and must outlive the worker. cfg/ctx/certs/tickets: new
 * references for the worker. Returns 0 or a libuv error. */
int tf_worker_start(struct tf_worker *w, struct tf_stats *stats, struct tf_mailbox *ctl, int id,
                    int *fds, int n_fds,
                    struct tf_config *cfg, SSL_CTX *ctx, struct tf_certstore *certs,
                    struct tf_ticket_ring *tickets);
/* Post a new snapshot from the control loop: the reference(s) passed move to the worker.
 * Each returns false if the worker is gone; the references are then still the caller's. */
bool tf_worker_post_config(struct tf_worker *w, struct tf_config *cfg, SSL_CTX *ctx);
bool tf_worker_post_certs(struct tf_worker *w, struct tf_certstore *certs);
bool tf_worker_post_tickets(struct tf_worker *w, struct tf_ticket_ring *tickets);
bool tf_worker_post_challenges(struct tf_worker *w, struct tf_challenges *challenges);
/* Post evicted certificates (one holder of r: the worker releases it after its current
 * callback). Returns false if the worker is gone; the holder is then still the caller's. */
bool tf_worker_post_retired(struct tf_worker *w, struct tf_certcache_retired *r);
/* Post TF_WMSG_DRAIN or TF_WMSG_STOP. Returns false if the worker is gone. */
bool tf_worker_post_signal(struct tf_worker *w, enum tf_worker_msg type);
/* Answer a worker's certificate request for name: alert 0 = ready, else the SSL_AD_* alert
 * to fail its held handshakes with, and outcome the refusal (their access log end=).
 * Any thread. */
void tf_worker_post_cert_done(struct tf_worker *w, const char *name, int alert,
                              enum tf_outcome outcome);
/* Answer the handshakes held for name's TLS-ALPN-01 challenge (cluster: looked up in the
 * shared store); the challenge snapshot, if updated, arrived before this message. */
void tf_worker_post_challenge_done(struct tf_worker *w, const char *name, bool found);
/* Join the thread after TF_WMSG_STOP and free what the worker owned. */
void tf_worker_join(struct tf_worker *w);

/* Called by conn.c when a connection is freed (for drain accounting). */
void tf_worker_conn_gone(struct tf_worker *w);

#endif
