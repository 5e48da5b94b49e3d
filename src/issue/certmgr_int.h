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
#include "tlsfront/base/lru.h"
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
    bool started;                 /* the local budget counts an order in flight for it */
    int ca;                       /* index in cm->cas of the CA asked (tried in order) */
    bool regate;                  /* reload: ask the new gate */
    bool renewal;                 /* no worker waits: keep serving the old certificate */
    uint64_t created_ms;          /* tf_mono_ms() of the first request, for the histogram */
};

/* A managed certificate and its renewal plan. The plan is metadata taken once from the
 * certificate when it is adopted (validity) or from the CA (ARI window): planning never
 * decodes a certificate again. Owned by the manager's list; indexed by name in cm->by_name
 * and by due time in the plan heap (certmgr_plan.c). */
struct cm_managed {
    struct cm_managed *next;
    char *name;
    struct tf_cert *cert;         /* one reference; NULL while a managed stub stands for it */
    char *cert_id;                /* ARI certID of a stub (from meta.json), else NULL */
    int64_t not_before, not_after; /* of cert, unix seconds */
    int64_t ari_start, ari_end;   /* the CA's last suggested window; 0 when none */
    int64_t renew_at;             /* unix seconds (tf_wall_now clock) */
    int64_t obtained_at;          /* when an order (ours or a node's) gave cert; 0: loaded */
    int64_t ari_next;             /* next ARI poll, 0 = none scheduled */
    size_t plan_i;                /* index in cm->plan, CM_PLAN_NONE when not there */
    struct cm_managed *ari_qnext; /* in the ARI queue */
    bool ari_queued;              /* waiting for an ARI slot */
    bool renewing;
    int failures;                 /* consecutive renewal failures (backoff) */
    int ca;                       /* index in cm->cas of the CA that issued it, as far as
                                   * this process knows (stored ones: 0, the first) */
    uint32_t seen_gen;            /* the last resync (cm->resync_gen) that listed it */
    uint32_t stub;                /* 1 + its stub's number (cm_stub), or 0 (cert decoded);
                                   * last, beside the other 32-bit fields: 128 bytes */
};

/* One CA of --acme-directory, in the order tried (certmgr_ca.c). */
struct cm_ca {
    struct tf_acme *acme;
    struct tf_httpc *http;        /* trusts the CA's ca= anchor */
    struct tf_budget *budget;     /* the mirror of this CA's limits (the local policy is
                                   * cm->budget) */
    uint64_t orders_ok, orders_failed; /* orders that ended (cancelled ones not counted) */
};

#define CM_PLAN_NONE ((size_t)-1)

/* A certificate adopted but not yet in the store (cm_stage_cert, cm_publish_staged):
 * decoded, or a managed stub that now stands for it. */
struct cm_staged {
    char *name;
    struct tf_cert *cert;   /* one reference, or NULL for a stub */
    struct tf_stubset *set; /* a stub's set (borrowed: cm->msets holds it), else NULL */
    struct tf_stub *stub;
};

/* A managed stub set: the one indexed at start, or a live one that names obtained while
 * running go to (tlsfront/tls/certstub.h). Stubs are numbered across the sets: set k's
 * stub i is number base + i, and the bases leave room for each set's capacity. */
struct cm_mset {
    struct tf_stubset *set; /* one reference */
    uint32_t base;
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
    struct cm_h01 *h01;           /* pending HTTP-01 challenges */
    uint64_t h01_found, h01_not_found; /* HTTP-01 requests the redirect listener answered */
    struct tf_webhook *webhook;   /* --webhook events; NULL = none */
    uint64_t drain_deadline_ms;   /* uv_now() at which the drain's grace ends; 0 = no drain */
    struct tf_certstore *store;   /* managed certificates, one reference */
    struct cm_demand *demands;
    struct cm_managed *managed;
    int n_managed;
    struct tf_lru *by_name;       /* name -> struct cm_managed (borrowed from the list) */
    struct cm_staged *staged;     /* adopted, not yet in store: published in one pass */
    size_t n_staged, cap_staged;
    /* the renewal plan (certmgr_plan.c): a min-heap by due time, and the ARI queue */
    struct cm_managed **plan;
    size_t plan_n, plan_cap;
    struct cm_managed *ari_head, *ari_tail; /* names waiting for an ARI slot, oldest first */
    int ari_inflight;             /* ARI requests in flight (<= TF_CERTMGR_ARI_MAX_INFLIGHT) */
    int ari_queued;               /* names in the ARI queue */
    uint64_t ari_answers;         /* ARI answers taken, for the metrics */
    int64_t timer_due;            /* unix seconds the renew timer fires at, 0 when idle */
    bool loaded;                  /* stored certificates loaded: requests are answered */
    bool lazy;                    /* the store held more names than --cert-cache at start:
                                   * stored certificates are stubs loaded on first use */
    struct cm_mset *msets;        /* the managed stub sets (start-up's first when lazy), and
                                   * the live ones of certificates obtained while running */
    size_t n_msets;
    size_t live_cap;              /* the room of the next live set */
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
    bool resync_again;            /* another gap while resyncing: once more when it ends */
    uint32_t resync_reads;        /* names a lazy resync read in full (changed or new) */
    struct cm_queued *resync_q;   /* names the current resync has yet to read in full, at
                                   * most CM_RESYNC_READS at a time (certmgr_cluster.c) */
    int resync_inflight;
    uint32_t resync_gen;          /* counts the resyncs after a gap (certmgr_cluster.c) */
    uv_timer_t resync_timer;      /* a resync the store failed is tried again (backoff) */
    uint32_t resync_backoff_ms;   /* the next retry's delay; 0: no retry since the last one */
    char node_id[17];             /* random, tells our own announcements apart */
    struct tf_lru *errors;        /* name -> struct cm_error: last failure (certmgr_admin.c) */
};

/* A pending HTTP-01 challenge (certmgr_http01.c). */
struct cm_h01 {
    struct cm_h01 *next;
    char *token;
    char *ka;                     /* key authorization: never logged */
    uint64_t expires_ms;          /* tf_mono_ms(); 0 = this node's, until withdrawn */
};

struct cm_queued {
    struct cm_queued *next;
    int worker;
    char *name;
};

/* certmgr.c */
/* Adopt cert for name (managed list, renewal plan) without touching the store yet: many
 * stored certificates are staged, then put into the store in one pass by cm_publish_staged
 * (linear in names, where one store per certificate would be quadratic). spread: the first
 * ARI request is put off at random over TF_CERTMGR_ARI_SPREAD_S (a load), else it is queued
 * now (a new certificate). ca: the CA that issued it (index in cm->cas; stored ones:
 * cm_ca_index of their metadata's ca_id).
 * Takes its own reference on cert. */
void cm_stage_cert(struct tf_certmgr *cm, const char *name, struct tf_cert *cert, bool spread,
                   int ca, bool stored);
/* Stage stub (of set) for name: cm_publish_staged puts it in the store. */
void cm_stage_stub(struct tf_certmgr *cm, const char *name, struct tf_stubset *set,
                   struct tf_stub *stub);
/* Put every staged certificate still current into the store, then (once loaded) have the
 * host publish it; nothing happens when nothing is staged. */
void cm_publish_staged(struct tf_certmgr *cm);
/* Add or replace the managed certificate of name, issued by CA number ca, and publish it
 * now (one issued or announced certificate). Takes its own reference on cert. stored:
 * cert is in the storage (false: its save failed, so it stays decoded: nothing could load
 * it again once evicted). */
void cm_publish_cert_ca(struct tf_certmgr *cm, const char *name, struct tf_cert *cert, int ca,
                        bool stored);
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
/* The local challenge responder (arg: the manager). */
void cm_responder_publish(void *arg, const struct tf_acme_chal *c);
void cm_responder_unpublish(void *arg, const struct tf_acme_chal *c);

/* certmgr_http01.c: pending HTTP-01 challenges. put copies token and ka (expires_ms 0: this
 * node's own, kept until dropped); key: the store key of token's shared value (new string,
 * NULL on failure); ttl: how long a shared value lives. */
void cm_h01_put(struct tf_certmgr *cm, const char *token, const char *ka, uint64_t expires_ms);
void cm_h01_drop(struct tf_certmgr *cm, const char *token);
void cm_h01_free_all(struct tf_certmgr *cm);
char *cm_h01_key(const char *token);
/* Pending HTTP-01 challenges (ours and other nodes' not expired). */
int cm_h01_count(struct tf_certmgr *cm);
uint32_t cm_chal_ttl_ms(const struct tf_certmgr *cm);

/* certmgr_cluster.c: a store shared with other nodes (no-ops otherwise). */
/* Subscribe to the other nodes' announcements and make resp share challenges. */
void cm_cluster_start(struct tf_certmgr *cm, struct tf_acme_responder *resp);
/* Tell the other nodes that name has a new certificate in the store. */
void cm_cluster_announce_cert(struct tf_certmgr *cm, const char *name);
/* Tell the other nodes about an operator's action done here: kind "forget", "unpause" or
 * "ask-purge" (name NULL: every name); each applies its in-memory half only. */
void cm_cluster_announce_action(struct tf_certmgr *cm, const char *kind, const char *name);
/* d (one waiting worker, nothing started): serve what the store holds, else gate and
 * order; a store that cannot be read refuses d ("storage_unavailable"). */
void cm_cluster_check_stored(struct cm_demand *d);
/* Let go of the names a resync had yet to read (closing). */
void cm_cluster_free(struct tf_certmgr *cm);

/* certmgr_budget.c: the cluster-wide budget (a single-node store: cm_order_admitted now). */
/* d passed the local budget of CA d->ca: count it in that CA's shared windows, then order or
 * refuse it (or try the next CA). */
void cm_budget_cluster_admit(struct cm_demand *d);
/* A validation of name at CA number ca failed: count it in the shared per-name window. */
void cm_budget_cluster_failed_validation(struct tf_certmgr *cm, int ca, const char *name);

/* certmgr_ca.c: the CAs, tried in order. */
/* The directory URL of CA number ca (the first's when out of range); NULL when none. */
const char *cm_ca_directory(const struct tf_certmgr *cm, int ca);
/* The index in cm->cas of the CA with id ca_id (stored metadata); the first CA when ca_id is
 * NULL or names a CA no longer configured (logged at debug, naming name). */
int cm_ca_index(const struct tf_certmgr *cm, const char *ca_id, const char *name);
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

/* certmgr_plan.c: the renewal plan. */
/* The unix second m next needs the timer: its renewal or its ARI poll, INT64_MAX for none. */
int64_t cm_plan_due(const struct cm_managed *m);
/* Put m in the plan or move it to where its due time now belongs. O(log n). */
void cm_plan_fix(struct tf_certmgr *cm, struct cm_managed *m);
/* The managed name due first, or NULL. */
struct cm_managed *cm_plan_top(const struct tf_certmgr *cm);
/* Queue m's ARI poll, and start polls while fewer than TF_CERTMGR_ARI_MAX_INFLIGHT are in
 * flight. */
void cm_ari_enqueue(struct tf_certmgr *cm, struct cm_managed *m);
void cm_ari_pump(struct tf_certmgr *cm);
/* Take m out of the plan and the ARI queue (before m is freed). */
void cm_plan_remove(struct tf_certmgr *cm, struct cm_managed *m);
void cm_plan_free(struct tf_certmgr *cm);

/* certmgr_renew.c */
/* Plan m's renewal from its metadata; the ARI poll as cm_stage_cert's spread says. */
void cm_schedule(struct tf_certmgr *cm, struct cm_managed *m, bool spread);
/* Poll ARI for m now (called by cm_ari_pump; counts in cm->ari_inflight). 0, or an error
 * when no request started. */
int cm_poll_ari(struct tf_certmgr *cm, struct cm_managed *m);
/* The timer must fire no later than at (unix seconds). */
void cm_renew_wake(struct tf_certmgr *cm, int64_t at);
void cm_renew_start(struct tf_certmgr *cm);
void cm_renew_done(struct tf_certmgr *cm, const char *name, bool ok);
void cm_eager_start(struct tf_certmgr *cm);
/* Start m's renewal now (no worker waits; the gates decide again). */
void cm_renew_begin(struct tf_certmgr *cm, struct cm_managed *m);

/* certmgr_lazy.c: managed certificates as stubs (cm->lazy). */
/* The entry of name, made (not yet scheduled, no certificate) when missing. */
struct cm_managed *cm_managed_get(struct tf_certmgr *cm, const char *name);
/* Index name as a managed stub (start-up, cm->msets[0] being built): meta from its meta.json
 * (cert_id may be NULL), or cert decoded for want of one (its certID is taken, the
 * certificate itself is dropped). */
void cm_lazy_index(struct tf_certmgr *cm, const char *name, struct tf_cert *cert,
                   const struct tf_acme_store_meta *meta, int ca, const char *cert_id);
/* After the index: seal cm->msets[0] and make cm->store hold its stubs. */
void cm_lazy_sealed(struct tf_certmgr *cm);
/* A new certificate for m (obtained or announced): when m has a stub of cert's kind, the
 * stub now stands for cert (its expiry updated, cert put in the host's cache in place of
 * whatever the stub had loaded; the store is unchanged). Else, while running (and when
 * stored: the storage can load it again), m gets a new stub in a live set, staged for the
 * store, with cert in the host's cache as its loaded certificate, so it is evicted and
 * loaded again like any stub. Either way true is returned. Else false: m's stub is let go
 * and the caller stages cert as a decoded certificate. */
bool cm_lazy_replace(struct tf_certmgr *cm, struct cm_managed *m, struct tf_cert *cert,
                     bool stored);
/* m's stub, or NULL; *set (may be NULL) its set. */
struct tf_stub *cm_stub(const struct tf_certmgr *cm, const struct cm_managed *m,
                        struct tf_stubset **set);
/* m is being dropped (forgotten): the host's cache lets go of its stub's certificate. */
void cm_lazy_forget(struct tf_certmgr *cm, struct cm_managed *m);
/* Let go of every stub set (closing). */
void cm_lazy_free(struct tf_certmgr *cm);
/* The ARI certID of m's certificate, a new string or NULL (no AKI). */
char *cm_cert_id(const struct cm_managed *m);
/* True when cert (decoded) is the one m holds (a stub: cm_same_meta of cert's). */
bool cm_same_cert(const struct tf_certmgr *cm, const struct cm_managed *m,
                  const struct tf_cert *cert);
/* Whether m holds the certificate meta describes (the same ARI certID, or none on both
 * sides, validity and kind): a lazy resync reads only names for which it does not. */
bool cm_same_meta(const struct tf_certmgr *cm, const struct cm_managed *m,
                  const struct tf_acme_store_meta *meta, const char *cert_id);
/* The decoded certificate of m when it has one in memory (borrowed), else NULL. */
struct tf_cert *cm_decoded(const struct tf_certmgr *cm, const struct cm_managed *m);
/* When a handshake last chose m's certificate (unix seconds, 0: never). */
int64_t cm_last_used(const struct tf_certmgr *cm, const struct cm_managed *m);

/* certmgr_admin.c: remember (reason != NULL) or clear the last failure of name, shown by
 * tf_certmgr_detail; bounded, oldest dropped first. */
void cm_note_error(struct tf_certmgr *cm, const char *name, const char *reason);
/* The in-memory halves of the operator's actions, also applied when another node announces
 * one: drop name from the managed list, renewal plan and store and publish (true when it was
 * there); clear name's budget backoff and renewal backoff (true when there was one); drop
 * the cached --ask answers of name (NULL: all), returning how many. */
bool cm_forget_memory(struct tf_certmgr *cm, const char *name);
bool cm_clear_backoff(struct tf_certmgr *cm, const char *name);
size_t cm_purge_ask_local(struct tf_certmgr *cm, const char *name);

#endif
