/*
 * certmgr_int.h: the certificate manager's private state, shared by certmgr.c (demands,
 * orders, challenges) and certmgr_renew.c (eager names and renewal). Control loop only.
 */
#ifndef TF_CERTMGR_INT_H
#define TF_CERTMGR_INT_H

#include "tlsfront/acme/acme.h"
#include "tlsfront/acme/alpn01_cert.h"
#include "tlsfront/base/metrics.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/issue/budget.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/issue/gate.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/store/storage.h"

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
    bool started;                 /* the local budget counts an order in flight for it */
    int ca;                       /* index in cm->cas of the CA asked (tried in order) */
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
    int ca;                       /* index in cm->cas of the CA that issued it, as far as
                                   * this process knows (stored ones: 0, the first) */
};

/* One CA of --acme-directory, in the order tried (certmgr_ca.c). */
struct cm_ca {
    struct tf_acme *acme;
    struct tf_httpc *http;        /* trusts the CA's ca= anchor */
    struct tf_budget *budget;     /* the mirror of this CA's limits (the local policy is
                                   * cm->budget) */
    uint64_t orders_ok, orders_failed; /* orders that ended (cancelled ones not counted) */
};

struct tf_certmgr {
    struct tf_certmgr_host host;  /* copied at start */
    uv_loop_t *loop;
    struct tf_config *cfg;        /* reference */
    struct tf_storage *storage;
    struct tf_httpc *http;        /* the first CA's (also the gate's) */
    struct tf_acme *acme;         /* the first CA's */
    struct cm_ca *cas;            /* every CA, cas[0] first; n_cas >= 1 once started */
    int n_cas;
    int cas_closing;              /* certmgr_ca.c: client closes still running */
    void (*cas_done)(void *arg);  /* ... then this, with the manager */
    struct tf_gate *gate;
    struct tf_budget *budget;     /* the local policy: rate, caps, backoff */
    struct tf_challenges *challenges;
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
/* The same for a certificate that CA number ca issued. */
void cm_publish_cert_ca(struct tf_certmgr *cm, const char *name, struct tf_cert *cert, int ca);
struct cm_managed *cm_find_managed(struct tf_certmgr *cm, const char *name);
void cm_start_order(struct cm_demand *d);
/* d passed every budget check: start its order. */
void cm_order_admitted(struct cm_demand *d);
/* Run the gate for d, then (allowed) the budget and the order; d is finished either way. */
void cm_gate_then_order(struct cm_demand *d);
struct cm_demand *cm_demand_new(struct tf_certmgr *cm, const char *name);

void cm_demand_finish(struct cm_demand *d, int alert, enum tf_outcome outcome);
/* Finish d without a certificate; a renewal is reported failed (unless closing). */
void cm_demand_fail(struct cm_demand *d, int alert, enum tf_outcome outcome);
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
/* d passed the local budget of CA d->ca: count it in that CA's shared windows, then order or
 * refuse it (or try the next CA). */
void cm_budget_cluster_admit(struct cm_demand *d);
/* A validation of name at CA number ca failed: count it in the shared per-name window. */
void cm_budget_cluster_failed_validation(struct tf_certmgr *cm, int ca, const char *name);

/* certmgr_ca.c: the CAs, tried in order. */
/* One ACME client, HTTP client and limits mirror per CA of cfg (resp: the responder every
 * client uses). Returns 0, or 2 with err set (bad configuration). */
int cm_cas_start(struct tf_certmgr *cm, const struct tf_config *cfg,
                 const struct tf_acme_responder *resp, char *err, size_t errlen);
/* Close every ACME client, then every HTTP client; done(cm) runs once after. */
void cm_cas_close(struct tf_certmgr *cm, void (*done)(void *arg));
/* Free what the CAs own besides their handles (after cm_cas_close's done). */
void cm_cas_free(struct tf_certmgr *cm);
/* Ask the CAs from number from on: the first whose limits mirror admits d orders it (through
 * the cluster-wide budget); none left: d ends (cm_order_refused). */
void cm_ca_pick(struct cm_demand *d, int from);
/* The order at d->ca ended with err: true when d moved on to the next CA (it is then no
 * longer the caller's), false when none is left or err says to stop. */
bool cm_ca_fallback(struct cm_demand *d, int err, const struct tf_acme_result *res);
/* Prometheus families per CA. */
void cm_cas_metrics(struct tf_certmgr *cm, struct tf_metrics_buf *out);

/* certmgr.c: no CA may take d's order now (r and why from the first CA's refusal). */
void cm_order_refused(struct cm_demand *d, int r, const char *why);

/* certmgr_tickets.c: take the shared ticket key ring (creating it when the store has
 * none); rotate: a rotation tick. */
void cm_tickets_sync(struct tf_certmgr *cm, bool rotate);

/* certmgr_renew.c */
void cm_schedule(struct tf_certmgr *cm, struct cm_managed *m);
void cm_renew_start(struct tf_certmgr *cm);
void cm_renew_done(struct tf_certmgr *cm, const char *name, bool ok);
void cm_eager_start(struct tf_certmgr *cm);

#endif
