/*
 * certmgr.h: managed (ACME) certificates on the control loop: loads what storage holds at
 * start-up, answers workers that hold a handshake for a name without a certificate (gate ->
 * budget -> one ACME order per name -> publish), serves TLS-ALPN-01 challenges to every
 * worker through the challenge snapshot and HTTP-01 key authorizations to the redirect
 * listener, obtains exact --allow names eagerly, and renews.
 */
#ifndef TF_CERTMGR_H
#define TF_CERTMGR_H

#include "tlsfront/acme/acme.h"
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

/* Renewal-information (ARI, RFC 9773) requests the manager keeps in flight to the CA at once,
 * however many names it manages; the rest wait their turn. After a load of the stored
 * certificates, the first request of each name is also spread at random over
 * TF_CERTMGR_ARI_SPREAD_S seconds, so that nodes started together do not ask together. */
#define TF_CERTMGR_ARI_MAX_INFLIGHT 4
#define TF_CERTMGR_ARI_SPREAD_S 10

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
    /* Optional. A managed stub (one of set's, in the current store or about to be put
     * there) now stands for cert, just obtained or announced: put cert in the host's cache
     * of decoded certificates as the stub's, in place of what it had loaded (the hook takes
     * its own reference on cert), so no handshake serves the old certificate and none
     * waits for a load. cert NULL: the stub leaves the store (its name is forgotten): drop
     * what it had loaded. Without it, managed certificates obtained while running stay
     * decoded outside any cache. */
    void (*cache_replace)(void *arg, struct tf_stubset *set, struct tf_stub *stub,
                          struct tf_cert *cert);
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

/* HTTP-01 (RFC 8555 §8.3), for the redirect listener: the key authorization of the pending
 * challenge with this token, or NULL. Borrowed: valid until the loop runs again. */
const char *tf_certmgr_http01_find(struct tf_certmgr *cm, const char *token);

/* A token tf_certmgr_http01_find does not know: with a store shared by several nodes, look
 * it up there (another node's order may have published it). Returns 0 and cb runs once,
 * later, from a loop callback, with the key authorization (borrowed for the call) or NULL;
 * or a negative code (TF_ENOTFOUND: no shared store) and cb never runs. *out (may be NULL)
 * lets the caller cancel until cb ran: cb then never runs. */
struct tf_certmgr_h01_lookup;
typedef void (*tf_certmgr_h01_cb)(const char *key_authorization, void *arg);
int tf_certmgr_http01_lookup(struct tf_certmgr *cm, const char *token, tf_certmgr_h01_cb cb,
                             void *arg, struct tf_certmgr_h01_lookup **out);
void tf_certmgr_http01_cancel(struct tf_certmgr_h01_lookup *l);
/* The redirect listener answered an HTTP-01 request: with a key authorization (found) or
 * 404 (counted for tlsfront_http01_requests_total). */
void tf_certmgr_http01_answered(struct tf_certmgr *cm, bool found);

/* The ticket key rotation timer fired. Cluster: rotates the ring shared through the store
 * (one node per period, under a lock) or picks up another node's, and returns true; false:
 * the server rotates its own ring. */
bool tf_certmgr_tickets_due(struct tf_certmgr *cm);

/* The current managed-certificate store (borrowed). */
const struct tf_certstore *tf_certmgr_store(const struct tf_certmgr *cm);
/* A managed stub's load (the server's cache): read name's stored chain and key, not
 * decoded, through the storage (asynchronous: never blocks the loop). Returns 0 (cb runs
 * once, later) or an error (TF_ECLOSED while closing) and cb never runs. */
int tf_certmgr_read_stored(struct tf_certmgr *cm, const char *name, tf_acme_store_read_cb cb,
                           void *arg);

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

/* ---- Operator actions (certmgr_admin.c; the admin API). name: valid and lower-case. ---- */

/* How an asynchronous action ends: err 0 or a negative code (TF_ENOTFOUND: nothing to act
 * on; TF_EPROTO: the CA refused; UV_ECANCELED: shutting down; else a storage or transport
 * code), and a JSON object describing the outcome ({"error": ...} on failure), borrowed for
 * the call. Runs exactly once, later, on the control loop. */
typedef void (*tf_certmgr_action_cb)(int err, const char *json, void *arg);

/* Start a renewal of a managed name now (the gates and the budget still decide; the result
 * shows in tf_certmgr_detail). Returns 0, TF_ENOTFOUND (not managed), TF_EBUSY (an order for
 * it is in flight) or TF_ECLOSED (closing, or stored certificates not loaded yet). */
int tf_certmgr_renew_now(struct tf_certmgr *cm, const char *name);
/* Forget name: its stored certificate, key and metadata, then its managed entry; the next
 * handshake goes through on-demand issuance again. cb gets TF_ENOTFOUND when neither held
 * it. Returns 0 (cb runs), TF_EBUSY (an order for it is in flight), TF_EINVAL or
 * TF_ECLOSED. */
int tf_certmgr_forget(struct tf_certmgr *cm, const char *name, tf_certmgr_action_cb cb,
                      void *arg);
/* Clear name's backoff (budget and renewal) and delete its paused marker in storage.
 * Returns 0 (cb runs), TF_EINVAL, TF_ECLOSED or a storage start error. */
int tf_certmgr_unpause(struct tf_certmgr *cm, const char *name, tf_certmgr_action_cb cb,
                       void *arg);
/* Drop cached --ask answers: name's, or all with name NULL. Returns how many. */
size_t tf_certmgr_purge_ask(struct tf_certmgr *cm, const char *name);
/* One name as a JSON object (CA, serial, validity, ARI window, last use, renewal state,
 * backoff, last error): a new string, or NULL when the manager knows nothing of name. */
char *tf_certmgr_detail(struct tf_certmgr *cm, const char *name);
/* Revoke name's managed certificate with the account key (reason: a CRLReason code, see
 * tf_acme_revoke_reason), then forget it. Returns 0 (cb runs), TF_ENOTFOUND (not managed),
 * TF_EBUSY (an order for it is in flight), TF_ECLOSED, or an ACME start error. */
int tf_certmgr_revoke(struct tf_certmgr *cm, const char *name, int reason,
                      tf_certmgr_action_cb cb, void *arg);
/* The server started draining: webhook deliveries may go on until grace_ms from now, and
 * no longer (0: stop them at the close). */
void tf_certmgr_drain(struct tf_certmgr *cm, uint32_t grace_ms);

/* Stop: cancel orders and gate requests (waiters are answered "shutting_down"), close the
 * ACME client, HTTP client and storage, and give held webhook deliveries until the drain's
 * grace ends (tf_certmgr_drain; none without a drain); done runs once everything is closed. */
void tf_certmgr_close(struct tf_certmgr *cm, void (*done)(void *arg), void *arg);

#endif
