/*
 * certmgr.h: managed (ACME) certificates on the control loop: loads what storage holds at
 * start-up, answers workers that hold a handshake for a name without a certificate (gate ->
 * budget -> one ACME order per name -> publish), serves TLS-ALPN-01 challenges to every
 * worker through the challenge snapshot, obtains exact --allow names eagerly, and renews.
 */
#ifndef TF_CERTMGR_H
#define TF_CERTMGR_H

#include "tlsfront/base/metrics.h"
#include "tlsfront/base/outcome.h"
#include "tlsfront/base/stats.h"
#include "tlsfront/config/config.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/tls/tickets.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct tf_certmgr;

/* What the manager needs from whoever runs it (the control loop's server), as a struct of
 * hooks so that the manager never sees its host. Every hook runs on the control loop. */
struct tf_certmgr_host {
    uv_loop_t *loop;                    /* the control loop */
    int n_workers;                      /* workers that may ask: ids 0 .. n_workers - 1 */
    struct tf_histogram *issue_seconds; /* on-demand: first request to certificate */
    struct tf_stats *stats;             /* the process's counters (rate-limited log classes) */
    void *arg;                          /* passed to every hook */
    /* The managed store changed: merge it with the static one and hand it to the workers. */
    void (*publish_certs)(void *arg);
    /* Hand a pending-challenge snapshot to every worker (the hook takes its own references). */
    void (*publish_challenges)(void *arg, struct tf_challenges *ch);
    /* Answer a worker's request for name: alert 0 = ready, else the SSL_AD_* alert to fail
     * its held handshakes with, and outcome why (TF_OUTCOME_READY when alert is 0). */
    void (*answer)(void *arg, int worker, const char *name, int alert, enum tf_outcome outcome);
    /* Answer a worker's acme-tls/1 hold for name: ok = a challenge for it is installed. */
    void (*answer_challenge)(void *arg, int worker, const char *name, bool ok);
    /* The session ticket key ring the workers use now (borrowed), and replace it (the hook
     * takes its own reference). Cluster mode shares the ring through the store. */
    struct tf_ticket_ring *(*tickets)(void *arg);
    void (*set_tickets)(void *arg, struct tf_ticket_ring *r);
    /* True when the workers serve a certificate for name (static or managed). */
    bool (*serves)(void *arg, const char *name);
    /* True when a static (--certs) certificate covers name: it is never obtained or renewed. */
    bool (*has_static)(void *arg, const char *name);
};

/* Create the manager for cfg (on-demand or eager names configured). host is copied; its arg
 * must outlive the manager. Checks the storage synchronously (start-up: err names the
 * directory when it is unusable) and starts loading stored certificates. Returns 0, or an
 * exit code (2: configuration) with err filled; *out is then NULL or a partial manager that
 * the caller must tf_certmgr_close. */
int tf_certmgr_start(const struct tf_certmgr_host *host, const struct tf_config *cfg,
                     struct tf_certmgr **out, char *err, size_t errlen);

/* A worker holds a handshake for name (normalised, valid). Answers it later through the
 * host's answer hook. */
void tf_certmgr_need(struct tf_certmgr *cm, int worker, const char *name);

/* A worker holds an acme-tls/1 handshake for name, which has no challenge here. Cluster:
 * looks it up in the shared store (another node may have published it) and installs it;
 * answers the worker later through the host's answer_challenge hook. */
void tf_certmgr_need_challenge(struct tf_certmgr *cm, int worker, const char *name);

/* The ticket key rotation timer fired. Cluster: rotates the ring shared through the store
 * (one node per period, under a lock) or picks up another node's, and returns true; false:
 * the server rotates its own ring. */
bool tf_certmgr_tickets_due(struct tf_certmgr *cm);

/* The current managed-certificate store (borrowed). */
const struct tf_certstore *tf_certmgr_store(const struct tf_certmgr *cm);

/* Config reloaded: take the new gate settings (allow patterns, ask). */
void tf_certmgr_reconfigure(struct tf_certmgr *cm, const struct tf_config *cfg);

struct tf_certmgr_stats {
    uint64_t decisions_allow, decisions_deny, orders_ok, orders_failed, refused_backoff,
        refused_budget, refused_storage, cluster_certs_received, cluster_challenges_received;
    int pending_challenges, managed;
};

/* Append the manager's metric families (gate decisions, orders, challenges, budget, expiry
 * per managed name) in the Prometheus text format. */
struct tf_metrics_buf;
void tf_certmgr_metrics(struct tf_certmgr *cm, struct tf_metrics_buf *out);
/* True once the stored certificates are loaded. */
bool tf_certmgr_loaded(const struct tf_certmgr *cm);
/* Whether the storage is reachable now (always, for a directory). */
bool tf_certmgr_storage_up(const struct tf_certmgr *cm);

/* The server started draining: webhook deliveries may go on until grace_ms from now, and
 * no longer (0: stop them at the close). */
void tf_certmgr_drain(struct tf_certmgr *cm, uint32_t grace_ms);

/* Stop: cancel orders and gate requests (waiters are answered "shutting_down"), close the
 * ACME client, HTTP client and storage, and give held webhook deliveries until the drain's
 * grace ends (tf_certmgr_drain; none without a drain); done runs once everything is closed. */
void tf_certmgr_close(struct tf_certmgr *cm, void (*done)(void *arg), void *arg);

#endif
