/*
 * certmgr_budget.c: the cluster-wide side of the issuance budget. budget.c stays a pure,
 * per-node mirror; when the store is shared with other nodes (include/storage_cluster.h),
 * an order the local budget admits is also counted in the store's atomic counters with
 * expiry, so that N nodes stay inside the CA's limits instead of N times them. Only the
 * order path counts (never the handshake of a name the workers already have).
 *
 * Counters are fixed windows, one key per window index (window = the limit's period), each
 * created with an expiry of two windows, under the id of the CA the order goes to (each CA
 * of --acme-directory has its own; an order one CA's counters refuse tries the next CA):
 *   budget/<ca-id>/orders/<3h index>                 new orders per account
 *   budget/<ca-id>/domain/<registered domain>/<week> orders per registered domain
 *   budget/<ca-id>/authz/<name>/<hour index>         failed validations per name
 *   budget/<ca-id>/rate/<minute index>               the token bucket, approximated
 * For the CA limits an order is admitted only when the current window's count (this order
 * included) plus the previous window's stays within the limit: any sliding window of one
 * period lies inside two consecutive fixed windows, so the cluster never exceeds the CA's
 * "N per period" whatever the window phase (at worst it admits half as many). The domain
 * counter counts orders, not issued certificates (a failed order still counts: conservative).
 * The token bucket is approximated by a one-minute counter of max(rate, burst) orders: our
 * own pacing, not a CA limit, so one window is enough (up to twice that across a boundary).
 * An order refused here gives back what it added to the current windows (best effort), so a
 * flood of refused names does not use up the account's budget. A store that does not answer
 * refuses the order ("storage_unavailable"): ordering needs the store's order lock anyway.
 * Control loop only.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_cluster.h"

#include <inttypes.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CM_MOD "budget"
#define N_CTR 7

enum { C_ORDERS, C_ORDERS_PREV, C_DOMAIN, C_DOMAIN_PREV, C_RATE, C_AUTHZ, C_AUTHZ_PREV };

struct cmb_req {
    struct tf_certmgr *cm; /* borrowed: the storage (and so every callback) ends first */
    struct cm_demand *d;
    char *key[N_CTR];      /* NULL: limit disabled, not asked */
    int64_t delta[N_CTR];
    int64_t value[N_CTR];
    int pending;
    int err;
};

static int64_t win_index(int64_t now_s, uint32_t window_s) { return now_s / window_s; }

static char *ctr_key(const char *ca, const char *kind, const char *sub, int64_t idx)
{
    return sub ? tf_asprintf("budget/%s/%s/%s/%" PRId64, ca, kind, sub, idx)
               : tf_asprintf("budget/%s/%s/%" PRId64, ca, kind, idx);
}

static void req_free(struct cmb_req *r)
{
    for (int i = 0; i < N_CTR; i++)
        free(r->key[i]);
    free(r);
}

static void on_given_back(int err, int64_t value, void *arg)
{
    (void)value;
    (void)arg;
    if (err)
        TF_DEBUG(CM_MOD, "giving back a refused order's count: %s", tf_strerror(err));
}

/* Over the limit? cur and prev are window counts after this order's increment. */
static bool over(int64_t cur, int64_t prev, uint32_t limit)
{
    return limit && cur + prev > (int64_t)limit;
}

static void decide(struct cmb_req *r)
{
    struct tf_certmgr *cm = r->cm;
    struct cm_demand *d = r->d;
    const struct tf_budget_limits *lim = tf_budget_limits_of(cm->cas[d->ca].budget);
    const struct tf_budget_limits *local = tf_budget_limits_of(cm->budget);
    enum tf_outcome why = TF_OUTCOME_READY;
    if (cm->closing) {
        why = TF_OUTCOME_SHUTTING_DOWN;
    } else if (r->err) {
        cm->stats.refused_storage++;
        TF_WARN(CM_MOD, "name=%s not ordered: the shared budget is unavailable (%s)", d->name,
                tf_strerror(r->err));
        why = TF_OUTCOME_STORAGE_UNAVAILABLE;
    } else {
        const char *limit = NULL;
        if (over(r->value[C_ORDERS], r->value[C_ORDERS_PREV], lim->ca_orders_per_account))
            limit = "ca_new_orders";
        else if (over(r->value[C_DOMAIN], r->value[C_DOMAIN_PREV], lim->ca_certs_per_domain))
            limit = "ca_certs_per_domain";
        else if (lim->ca_authz_failures &&
                 r->value[C_AUTHZ] + r->value[C_AUTHZ_PREV] >= (int64_t)lim->ca_authz_failures)
            limit = "ca_failed_authz";
        else if (r->key[C_RATE] && r->value[C_RATE] > (int64_t)TF_MAX(local->issue_rate_per_min,
                                                                     local->issue_burst))
            limit = "rate";
        if (limit) {
            cm->stats.refused_budget++;
            tf_log_limited(&cm->host.stats->log_order_refused, (int64_t)tf_mono_ms(),
                           TF_LOG_WARN, CM_MOD,
                           "name=%s ca=%s order refused by the cluster-wide budget: %s "
                           "orders=%" PRId64 "+%" PRId64 " domain=%s:%" PRId64 "+%" PRId64,
                           d->name, tf_acme_ca_label(cm->cas[d->ca].acme), limit, r->value[C_ORDERS], r->value[C_ORDERS_PREV], d->rd,
                           r->value[C_DOMAIN], r->value[C_DOMAIN_PREV]);
            why = TF_OUTCOME_BUDGET;
        }
    }
    if (why != TF_OUTCOME_READY && !r->err) {
        const struct tf_storage_cluster_ops *ops = tf_storage_cluster(cm->storage);
        for (int i = 0; i < N_CTR; i++)
            if (r->key[i] && r->delta[i] > 0 && !cm->closing)
                ops->count(cm->storage, r->key[i], -r->delta[i], 0, on_given_back, NULL);
    }
    req_free(r);
    if (why == TF_OUTCOME_READY) {
        cm_order_admitted(d);
        return;
    }
    if (why == TF_OUTCOME_BUDGET && d->ca + 1 < cm->n_cas) {
        cm_ca_pick(d, d->ca + 1); /* this CA's limits are used up: the next CA */
        return;
    }
    if (d->started) /* an earlier CA failed it: the local budget counts it in flight */
        tf_budget_order_done(cm->budget, d->name, d->rd, false, false, tf_wall_now() * 1000);
    bool renewal = d->renewal;
    char *name = tf_strdup(d->name);
    cm_demand_finish(d, why == TF_OUTCOME_SHUTTING_DOWN ? SSL_AD_INTERNAL_ERROR
                                                        : SSL_AD_UNRECOGNIZED_NAME, why);
    if (renewal && !cm->closing)
        cm_renew_done(cm, name, false);
    free(name);
}

struct cmb_slot {
    struct cmb_req *r;
    int i;
};

static void on_slot(int err, int64_t value, void *arg)
{
    struct cmb_slot *s = arg;
    struct cmb_req *r = s->r;
    if (err && !r->err)
        r->err = err;
    r->value[s->i] = err ? 0 : value;
    free(s);
    if (--r->pending == 0)
        decide(r);
}

void cm_budget_cluster_admit(struct cm_demand *d)
{
    struct tf_certmgr *cm = d->cm;
    const struct tf_storage_cluster_ops *ops = cm->cluster && cm->acme
                                                   ? tf_storage_cluster(cm->storage)
                                                   : NULL;
    if (!ops || !ops->count) {
        cm_order_admitted(d);
        return;
    }
    const struct tf_budget_limits *lim = tf_budget_limits_of(cm->cas[d->ca].budget);
    const struct tf_budget_limits *local = tf_budget_limits_of(cm->budget);
    const char *ca = tf_acme_ca_id(cm->cas[d->ca].acme);
    int64_t now = tf_wall_now();
    struct cmb_req *r = tf_calloc(1, sizeof *r);
    r->cm = cm;
    r->d = d;
    uint32_t win[N_CTR] = {0};
    if (lim->ca_orders_per_account) {
        int64_t i = win_index(now, lim->ca_orders_window_s);
        r->key[C_ORDERS] = ctr_key(ca, "orders", NULL, i);
        r->key[C_ORDERS_PREV] = ctr_key(ca, "orders", NULL, i - 1);
        r->delta[C_ORDERS] = 1;
        win[C_ORDERS] = win[C_ORDERS_PREV] = lim->ca_orders_window_s;
    }
    if (lim->ca_certs_per_domain && d->rd[0]) {
        int64_t i = win_index(now, lim->ca_certs_window_s);
        r->key[C_DOMAIN] = ctr_key(ca, "domain", d->rd, i);
        r->key[C_DOMAIN_PREV] = ctr_key(ca, "domain", d->rd, i - 1);
        r->delta[C_DOMAIN] = 1;
        win[C_DOMAIN] = win[C_DOMAIN_PREV] = lim->ca_certs_window_s;
    }
    if (lim->ca_authz_failures) {
        int64_t i = win_index(now, lim->ca_authz_window_s);
        r->key[C_AUTHZ] = ctr_key(ca, "authz", d->name, i);
        r->key[C_AUTHZ_PREV] = ctr_key(ca, "authz", d->name, i - 1);
        win[C_AUTHZ] = win[C_AUTHZ_PREV] = lim->ca_authz_window_s;
    }
    if (local->issue_rate_per_min && !d->started) { /* a fallback is no new local order */
        r->key[C_RATE] = ctr_key(ca, "rate", NULL, win_index(now, 60));
        r->delta[C_RATE] = 1;
        win[C_RATE] = 60;
    }
    r->pending = 1; /* held until every count is started */
    for (int i = 0; i < N_CTR; i++) {
        if (!r->key[i])
            continue;
        struct cmb_slot *s = tf_calloc(1, sizeof *s);
        s->r = r;
        s->i = i;
        r->pending++;
        int rc = ops->count(cm->storage, r->key[i], r->delta[i], win[i] * 2000u, on_slot, s);
        if (rc) {
            free(s);
            r->pending--;
            r->err = rc;
            r->delta[i] = 0; /* nothing added: nothing to give back */
        }
    }
    if (--r->pending == 0)
        decide(r); /* every count failed to start: refused now */
}

void cm_budget_cluster_failed_validation(struct tf_certmgr *cm, int ca, const char *name)
{
    const struct tf_storage_cluster_ops *ops = cm->cluster && cm->acme
                                                   ? tf_storage_cluster(cm->storage)
                                                   : NULL;
    const struct tf_budget_limits *lim = tf_budget_limits_of(cm->cas[ca].budget);
    if (!ops || !ops->count || !lim->ca_authz_failures || cm->closing)
        return;
    char *key = ctr_key(tf_acme_ca_id(cm->cas[ca].acme), "authz", name,
                        win_index(tf_wall_now(), lim->ca_authz_window_s));
    int rc = ops->count(cm->storage, key, 1, lim->ca_authz_window_s * 2000u, on_given_back,
                        NULL);
    if (rc)
        TF_WARN(CM_MOD, "name=%s failed validation not counted in the shared budget: %s", name,
                tf_strerror(rc));
    free(key);
}
