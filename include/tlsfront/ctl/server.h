/*
 * server.h: the root object. Owns the control loop (signals, reload, ticket rotation), the
 * current config and certificate snapshots, the TLS context, the workers, and the optional
 * parts it joins to them: the certificate manager (through its host hooks), the admin
 * endpoint and the redirect listener. Nothing on the data path runs here.
 */
#ifndef TF_SERVER_H
#define TF_SERVER_H

#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/certcache.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/config/config.h"
#include "tlsfront/base/mailbox.h"
#include "tlsfront/base/stats.h"
#include "tlsfront/tls/tickets.h"
#include "tlsfront/proxy/worker.h"

#include <openssl/ssl.h>
#include <uv.h>

struct tf_server {
    uv_loop_t loop;                /* the control loop (main thread) */
    int argc;
    char **argv;                   /* borrowed from main, for reload */
    char **envp;

    struct tf_config *cfg;         /* current config (one reference) */
    OSSL_LIB_CTX **libs;           /* [n_workers]: each worker's OpenSSL library context
                                      (tlsfront/tls/tls.h); owned, freed last */
    SSL_CTX **ssl_ctxs;            /* [n_workers]: each worker's current TLS context, in its
                                      library context (one reference each) */
    struct tf_certstore *static_certs; /* from --certs */
    struct tf_certstore *certs;    /* what workers serve (one reference) */
    struct tf_ticket_ring *tickets;
    struct tf_certcache cert_cache; /* decoded --certs certificates loaded on first use */

    struct tf_worker *workers;
    int n_workers;
    int **fds;                     /* [worker][listener] listening sockets until handed over */

    struct tf_mailbox mbox;        /* workers -> control loop */
    uv_signal_t sig_term, sig_int, sig_hup, sig_usr1;
    uv_timer_t ticket_timer, grace_timer;

    int n_started;                 /* workers whose thread runs */
    bool loop_ready;               /* control loop and its handles initialised */
    bool draining, reloading, stopped;
    int workers_idle;
    int exit_code;

    struct tf_certmgr *certmgr;    /* managed certificates; NULL without on-demand/ACME */
    struct tf_admin *admin;        /* --admin endpoint; NULL when off */
    struct tf_redirect *redirect;  /* --redirect-http listener; NULL when off */

    struct tf_stats stats;         /* shared atomics */
};

/* Load certificates, bind listeners, start workers. Returns 0, or an exit code (1 runtime
 * failure, 2 configuration) after logging one line. Takes a reference on cfg. */
int tf_server_start(struct tf_server *s, struct tf_config *cfg, int argc, char **argv, char **envp);
/* Run the control loop until shutdown; returns the process exit code. */
int tf_server_run(struct tf_server *s);
/* Merge the static and managed certificates into a new snapshot and hand it to every
 * worker (control loop). */
void tf_server_publish_certs(struct tf_server *s);
/* Hand a new pending-challenge snapshot to every worker (takes its own references). */
/* Replace the session ticket key ring (takes a reference) and hand it to every worker. */
void tf_server_set_tickets(struct tf_server *s, struct tf_ticket_ring *r);
void tf_server_publish_challenges(struct tf_server *s, struct tf_challenges *ch);

/* server_admin.c: the histograms' bounds (before any worker or the certificate manager
 * starts: they observe without a lock), and the --admin endpoint when configured (0 or exit
 * code). */
void tf_server_stats_init(struct tf_server *s);
int tf_server_admin_start(struct tf_server *s);
void tf_server_admin_stop(struct tf_server *s);
/* The admin token cfg names (--admin-token-file), read from its file (blocking: start-up or
 * the thread pool): 0 with *out a new string or NULL (none configured), or 2 with a
 * one-line reason in err. */
int tf_server_admin_token(const struct tf_config *cfg, char **out, char *err, size_t errlen);
/* Hand token (taken: wiped and freed here; NULL = actions off) to the admin endpoint, if
 * s (may be NULL: the token is only wiped) has one. */
void tf_server_admin_set_token(struct tf_server *s, char *token);

/* server_certcache.c: stubs (--certs, or managed ones) loaded on first use. init: the cache and its load
 * histogram (before any worker starts); need_load: a worker's TF_SMSG_NEED_LOAD (control
 * loop); free: after the workers are joined. */
void tf_server_cache_init(struct tf_server *s);
void tf_server_need_load(struct tf_server *s, int worker, const char *name);
/* Evict the cached certificates of stub sets the published store no longer holds (after a
 * reload), so the old index is freed at once rather than as the cache turns over. */
void tf_server_cache_prune(struct tf_server *s);
void tf_server_cache_free(struct tf_server *s);
/* The certificate manager's hook (tf_certmgr_host.cache_replace): stub of set now stands for
 * cert; the stub's loaded certificate (if any) is evicted, a load in flight is disregarded,
 * a failure mark is cleared and cert installed (its own reference), evicting as a load does.
 * cert NULL: the stub is dropped (its name forgotten): evicted, and a load in flight
 * disregarded, nothing installed. */
void tf_server_cache_replace(struct tf_server *s, struct tf_stubset *set, struct tf_stub *stub,
                             struct tf_cert *cert);

/* Release everything (after tf_server_run, or after a failed tf_server_start). */
void tf_server_free(struct tf_server *s);

#endif
