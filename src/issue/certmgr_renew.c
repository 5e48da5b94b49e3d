/*
 * certmgr_renew.c: the managed certificates' clock. Exact --allow names are obtained eagerly
 * (in the background, paced by the budget's token bucket); every managed certificate is
 * renewed when ARI (RFC 9773) says so, else when a third of its lifetime remains (right for
 * 90-, 45- and 6-day certificates alike), with jitter. Renewal goes through the gates again,
 * so a name no longer allowed is not renewed; a failed renewal retries with backoff while the
 * current certificate keeps serving. One timer drives it all: it sleeps until the first
 * name the plan (certmgr_plan.c) says is due and wakes only the names due, and ARI requests
 * go through the plan's queue, a few at a time. Control loop only.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/name.h"
#include "tlsfront/acme/renew.h"

#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdlib.h>
#include <string.h>

#define TICK_FAST_MS 5000
#define TICK_SLOW_MS 60000
/* A certificate an order just gave is not renewed sooner than this, whatever the policy or
 * the CA's window says (a clock ahead of the CA's would otherwise renew it in a loop). */
#define RENEW_MIN_AGE_S 3600

static uint64_t rnd64(void)
{
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof r) != 1)
        r = (uint64_t)tf_mono_ms() * 0x9e3779b97f4a7c15ull;
    return r;
}

struct ari_ctx {
    struct tf_certmgr *cm;
    char *name;
    struct tf_cert *cert; /* reference: the certificate the answer is about (NULL: a stub) */
    int64_t not_after;    /* of that certificate */
};

static void set_renew_at(struct cm_managed *m, int64_t at)
{
    if (m->obtained_at && at < m->obtained_at + RENEW_MIN_AGE_S)
        at = m->obtained_at + RENEW_MIN_AGE_S;
    m->renew_at = at;
}

static void on_ari(int err, const struct tf_acme_ari *ari, void *arg)
{
    struct ari_ctx *x = arg;
    struct tf_certmgr *cm = x->cm;
    cm->ari_inflight--;
    struct cm_managed *m = cm->closing ? NULL : cm_find_managed(cm, x->name);
    if (m && m->cert == x->cert && m->not_after == x->not_after) {
        int64_t now = tf_wall_now();
        if (err == 0 && ari) {
            cm->ari_answers++;
            int64_t at = tf_renew_pick(ari->start, ari->end, rnd64());
            m->ari_start = ari->start;
            m->ari_end = ari->end;
            set_renew_at(m, at < now ? now : at);
            m->ari_next = now + (ari->retry_after > 0 ? ari->retry_after : 21600);
            TF_DEBUG("certmgr", "name=%s ARI window %lld..%lld, renew at %lld", m->name,
                     (long long)ari->start, (long long)ari->end, (long long)m->renew_at);
        } else {
            m->ari_next = err == TF_ENOTFOUND ? 0 : now + 3600;
        }
        cm_plan_fix(cm, m);
    }
    tf_cert_unref(x->cert);
    free(x->name);
    free(x);
    cm_ari_pump(cm);
}

int cm_poll_ari(struct tf_certmgr *cm, struct cm_managed *m)
{
    struct ari_ctx *x = tf_calloc(1, sizeof *x);
    x->cm = cm;
    x->name = tf_strdup(m->name);
    x->cert = m->cert; /* NULL for a stub: its expiry tells a renewal apart */
    x->not_after = m->not_after;
    tf_cert_ref(m->cert);
    m->ari_next = tf_wall_now() + 3600; /* until the answer says otherwise */
    struct tf_acme *acme = m->ca < cm->n_cas ? cm->cas[m->ca].acme : cm->acme;
    char *id = cm_cert_id(m);
    int rc = tf_acme_renewal_info_id(acme, id, on_ari, x);
    free(id);
    if (rc != 0) {
        m->ari_next = 0;
        tf_cert_unref(x->cert);
        free(x->name);
        free(x);
    }
    return rc;
}

void cm_schedule(struct tf_certmgr *cm, struct cm_managed *m, bool spread)
{
    set_renew_at(m, tf_renew_time(m->not_before, m->not_after, (uint32_t)rnd64()));
    m->ari_start = m->ari_end = 0;
    m->renewing = false;
    if (!cm->acme || cm->closing) {
        cm_plan_fix(cm, m);
    } else if (spread) {
        m->ari_next = tf_wall_now() + 1 + (int64_t)(rnd64() % TF_CERTMGR_ARI_SPREAD_S);
        cm_plan_fix(cm, m);
    } else {
        cm_ari_enqueue(cm, m);
    }
}

static bool used_recently(const struct tf_certmgr *cm, const struct cm_managed *m, int64_t now)
{
    int64_t last = cm_last_used(cm, m);
    int64_t idle = (int64_t)cm->cfg->idle_name_days * 86400;
    return last == 0 || now - last < idle;
}

static bool eager_name(const char *pattern)
{
    return pattern[0] != '*';
}

static void renew(struct tf_certmgr *cm, struct cm_managed *m, int64_t now)
{
    bool eager = false;
    for (int i = 0; i < cm->cfg->n_allow; i++)
        eager |= eager_name(cm->cfg->allow[i]) && strcmp(cm->cfg->allow[i], m->name) == 0;
    if (!eager && !used_recently(cm, m, now)) {
        TF_INFO("certmgr", "name=%s not renewed: no client asked for it in %u days", m->name,
                cm->cfg->idle_name_days);
        m->renew_at = now + 86400;
        return;
    }
    TF_INFO("certmgr", "name=%s renewing (expires %lld)", m->name, (long long)m->not_after);
    cm_renew_begin(cm, m);
}

void cm_renew_begin(struct tf_certmgr *cm, struct cm_managed *m)
{
    m->renewing = true;
    struct cm_demand *d = cm_demand_new(cm, m->name);
    d->renewal = true;
    cm_gate_then_order(d);
}

void cm_renew_done(struct tf_certmgr *cm, const char *name, bool ok)
{
    struct cm_managed *m = cm_find_managed(cm, name);
    if (!m || ok)
        return; /* success rescheduled it through cm_publish_cert_ca */
    m->renewing = false;
    m->failures++;
    int64_t wait = 60LL << (m->failures < 10 ? m->failures : 10);
    if (wait > 86400)
        wait = 86400;
    m->renew_at = tf_wall_now() + wait;
    cm_plan_fix(cm, m);
    TF_WARN("certmgr", "name=%s renewal failed (%d in a row); retry in %llds, the current "
                       "certificate keeps serving until %lld",
            name, m->failures, (long long)wait, (long long)m->not_after);
}

static void on_tick(uv_timer_t *t);

/* Fire the timer at unix second at (now when it is past). */
static void arm_at(struct tf_certmgr *cm, int64_t at)
{
    if (cm->closing)
        return;
    int64_t now = tf_wall_now();
    cm->timer_due = at > now ? at : now;
    uv_timer_start(&cm->renew_timer, on_tick, (uint64_t)(cm->timer_due - now) * 1000, 0);
}

void cm_renew_wake(struct tf_certmgr *cm, int64_t at)
{
    /* timer_due is 0 before cm_renew_start and while on_tick runs (it arms at its end). */
    if (cm->timer_due && at < cm->timer_due)
        arm_at(cm, at);
}

void cm_eager_start(struct tf_certmgr *cm)
{
    int64_t now = tf_wall_now();
    for (int i = 0; i < cm->cfg->n_allow; i++) {
        const char *name = cm->cfg->allow[i];
        if (!eager_name(name) || tf_certstore_lookup(cm->store, name) ||
            cm->host.has_static(cm->host.arg, name) || cm_find_managed(cm, name))
            continue;
        bool busy = false;
        for (struct cm_demand *d = cm->demands; d && !busy; d = d->next)
            busy = strcmp(d->name, name) == 0;
        if (busy || tf_budget_backoff_until(cm->budget, name) / 1000 > now)
            continue;
        TF_INFO("certmgr", "name=%s obtaining eagerly (exact --allow name)", name);
        struct cm_demand *d = cm_demand_new(cm, name);
        cm_gate_then_order(d);
    }
}

static void on_tick(uv_timer_t *t)
{
    struct tf_certmgr *cm = t->data;
    if (cm->closing)
        return;
    cm->timer_due = 0;
    int64_t now = tf_wall_now();
    /* Only the names due: each leaves the top once handled (its due time moves on). */
    size_t left = cm->plan_n;
    struct cm_managed *m;
    while ((m = cm_plan_top(cm)) && cm_plan_due(m) <= now && left-- > 0) {
        if (m->ari_next && now >= m->ari_next)
            cm_ari_enqueue(cm, m);
        if (!m->renewing && now >= m->renew_at)
            renew(cm, m, now);
        cm_plan_fix(cm, m);
    }
    cm_eager_start(cm);
    bool eager_left = false;
    for (int i = 0; i < cm->cfg->n_allow && !eager_left; i++)
        eager_left = eager_name(cm->cfg->allow[i]) && !cm_find_managed(cm, cm->cfg->allow[i]) &&
                     !cm->host.has_static(cm->host.arg, cm->cfg->allow[i]);
    int64_t next = now + (eager_left ? TICK_FAST_MS : TICK_SLOW_MS) / 1000;
    m = cm_plan_top(cm);
    if (m && cm_plan_due(m) < next)
        next = cm_plan_due(m) > now ? cm_plan_due(m) : now + 1;
    arm_at(cm, next);
}

void cm_renew_start(struct tf_certmgr *cm)
{
    arm_at(cm, tf_wall_now());
}
