/*
 * certmgr_int.h: the certificate manager's private state, shared by certmgr.c (demands,
 * orders, challenges) and certmgr_renew.c (eager names and renewal). Control loop only.
 */
#ifndef TF_CERTMGR_INT_H
#define TF_CERTMGR_INT_H

#include "tlsfront/acme/acme.h"
#include "tlsfront/acme/alpn01_cert.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/issue/budget.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/issue/gate.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/store/storage.h"
#include "webhook_int.h"

#include <uv.h>

/* A name some workers wait for, between the first request and the answer. */
struct cm_demand {
    struct cm_demand *next;
    struct tf_certmgr *cm;
    char *name;
    char rd[256];                 /* registered domain (budget key) */
    bool *waiting;                /* [n_workers] */
    struct tf_gate_req *gate_req; /* while the gate decides */
    bool ordering;
    bool regate;                  /* reload: ask the new gate */
    bool renewal;                 /* no worker waits: keep serving the old certificate */
    uint64_t created_ms;          /* tf_mono_ms() of the first request, for the histogram */
};

/* A managed certificate. */
struct cm_managed {
    struct cm_managed *next;
    char *name;
    struct tf_cert *cert;         /* one reference */
    int64_t renew_at;             /* unix seconds (tf_wall_now clock) */
    int64_t ari_next;             /* next ARI poll, 0 = none scheduled */
    bool renewing;
    int failures;                 /* consecutive renewal failures (backoff) */
};

struct tf_certmgr {
    struct tf_certmgr_host host;  /* copied at start */
    uv_loop_t *loop;
    struct tf_config *cfg;        /* reference */
    struct tf_storage *storage;
    struct tf_httpc *http;
    struct tf_acme *acme;
    struct tf_gate *gate;
    struct tf_budget *budget;
    struct tf_challenges *challenges;
    struct tf_webhook *webhook;   /* --webhook events; NULL = none */
    uint64_t drain_deadline_ms;   /* uv_now() at which the drain's grace ends; 0 = no drain */
    struct tf_certstore *store;   /* managed certificates, one reference */
    struct cm_demand *demands;
    struct cm_managed *managed;
    int n_managed;
    bool loaded;                  /* stored certificates loaded: requests are answered */
    bool closing;
    struct cm_queued *queued;     /* requests that arrived while loading */
    uv_timer_t renew_timer;
    int pending_closes;
    void (*close_done)(void *arg);
    void *close_arg;
    struct tf_certmgr_stats stats;
    /* cluster (certmgr_cluster.c): the store is shared with other nodes */
    bool cluster;
    bool resyncing;               /* reloading every stored certificate after a gap */
    char node_id[17];             /* random, tells our own announcements apart */
};

struct cm_queued {
    struct cm_queued *next;
    int worker;
    char *name;
};

/* certmgr.c */
void cm_publish_cert(struct tf_certmgr *cm, const char *name, struct tf_cert *cert);
struct cm_managed *cm_find_managed(struct tf_certmgr *cm, const char *name);
void cm_start_order(struct cm_demand *d);
/* d passed every budget check: start its order. */
void cm_order_admitted(struct cm_demand *d);
/* Run the gate for d, then (allowed) the budget and the order; d is finished either way. */
void cm_gate_then_order(struct cm_demand *d);
struct cm_demand *cm_demand_new(struct tf_certmgr *cm, const char *name);

void cm_demand_finish(struct cm_demand *d, int alert, enum tf_outcome outcome);
struct cm_demand *cm_find_demand(struct tf_certmgr *cm, const char *name);
void cm_answer(struct tf_certmgr *cm, int worker, const char *name, int alert,
               enum tf_outcome outcome);
void cm_publish_challenges(struct tf_certmgr *cm, struct tf_challenges *next);
/* The local TLS-ALPN-01 responder (arg: the manager). */
void cm_responder_publish(void *arg, const char *name, const char *key_authorization);
void cm_responder_unpublish(void *arg, const char *name);

/* certmgr_cluster.c: a store shared with other nodes (no-ops otherwise). */
/* Subscribe to the other nodes' announcements and make resp share challenges. */
void cm_cluster_start(struct tf_certmgr *cm, struct tf_acme_responder *resp);
/* Tell the other nodes that name has a new certificate in the store. */
void cm_cluster_announce_cert(struct tf_certmgr *cm, const char *name);
/* d (one waiting worker, nothing started): serve what the store holds, else gate and
 * order; a store that cannot be read refuses d ("storage_unavailable"). */
void cm_cluster_check_stored(struct cm_demand *d);

/* certmgr_budget.c: the cluster-wide budget (a single-node store: cm_order_admitted now). */
/* d passed the local budget: count it in the shared windows, then order or refuse it. */
void cm_budget_cluster_admit(struct cm_demand *d);
/* A validation of name failed: count it in the shared per-name window. */
void cm_budget_cluster_failed_validation(struct tf_certmgr *cm, const char *name);

/* certmgr_tickets.c: take the shared ticket key ring (creating it when the store has
 * none); rotate: a rotation tick. */
void cm_tickets_sync(struct tf_certmgr *cm, bool rotate);

/* certmgr_renew.c */
void cm_schedule(struct tf_certmgr *cm, struct cm_managed *m);
void cm_renew_start(struct tf_certmgr *cm);
void cm_renew_done(struct tf_certmgr *cm, const char *name, bool ok);
void cm_eager_start(struct tf_certmgr *cm);

#endif
