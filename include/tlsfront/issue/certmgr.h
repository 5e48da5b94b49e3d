/*
 * certmgr.h: managed (ACME) certificates on the control loop: loads what storage holds at
 * start-up, answers workers that hold a handshake for a name without a certificate (gate ->
 * budget -> one ACME order per name -> publish), serves TLS-ALPN-01 challenges to every
 * worker through the challenge snapshot, obtains exact --allow names eagerly, and renews.
 */
#ifndef TF_CERTMGR_H
#define TF_CERTMGR_H

#include "tlsfront/tls/certstore.h"
#include "tlsfront/config/config.h"

#include <stdbool.h>
#include <stdint.h>

struct tf_server;
struct tf_certmgr;

/* Create the manager for cfg (on-demand or eager names configured). Checks the storage
 * synchronously (start-up: err names the directory when it is unusable) and starts loading
 * stored certificates. Returns 0, or an exit code (2: configuration) with err filled; *out is
 * then NULL or a partial manager that the caller must tf_certmgr_close. */
int tf_certmgr_start(struct tf_server *srv, const struct tf_config *cfg, struct tf_certmgr **out,
                     char *err, size_t errlen);

/* A worker holds a handshake for name (normalised, valid). Answers the worker later with
 * TF_WMSG_CERT_DONE. */
void tf_certmgr_need(struct tf_certmgr *cm, int worker, const char *name, const char *client_ip);

/* The current managed-certificate store (borrowed). */
const struct tf_certstore *tf_certmgr_store(const struct tf_certmgr *cm);

/* Config reloaded: take the new gate settings (allow patterns, ask). */
void tf_certmgr_reconfigure(struct tf_certmgr *cm, const struct tf_config *cfg);

struct tf_certmgr_stats {
    uint64_t decisions_allow, decisions_deny, orders_ok, orders_failed, refused_backoff,
        refused_budget;
    int pending_challenges, managed;
};
void tf_certmgr_get_stats(const struct tf_certmgr *cm, struct tf_certmgr_stats *out);

/* Append the manager's metric families (gate decisions, orders, challenges, budget, expiry
 * per managed name) in the Prometheus text format. */
struct tf_metrics_buf;
void tf_certmgr_metrics(struct tf_certmgr *cm, struct tf_metrics_buf *out);
/* True once the stored certificates are loaded. */
bool tf_certmgr_loaded(const struct tf_certmgr *cm);

/* Stop: cancel orders and gate requests (waiters are answered "shutting_down"), close the
 * ACME client, HTTP client and storage; done runs once everything is closed. */
void tf_certmgr_close(struct tf_certmgr *cm, void (*done)(void *arg), void *arg);

#endif
