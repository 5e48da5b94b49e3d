/*
 * certmgr.c: managed certificates on the control loop. Answers the workers' "certificate for
 * NAME?" requests: a stored or issued certificate answers at once; otherwise the name goes
 * through the gate (allow patterns, --ask), then the budget (rates, caps, backoff, CA-limit
 * mirror), then one ACME order per name that every waiting worker shares. Issued
 * certificates join the managed store, which the server merges with the static one and hands
 * to the workers before they are told to resume. Also the challenge responder: TLS-ALPN-01
 * certificates are published to every worker as a snapshot, HTTP-01 key authorizations go
 * to the redirect listener's table (certmgr_http01.c). Never blocks the loop.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/lru.h"
#include "tlsfront/base/name.h"
#include "tlsfront/base/psl.h"
#include "tlsfront/acme/renew.h"
#include "tlsfront/store/storage_cluster.h"
#include "tlsfront/store/storage_redis.h"

#include <openssl/ssl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* --- answering workers ----------------------------------------------------------------- */

void cm_answer(struct tf_certmgr *cm, int worker, const char *name, int alert,
               enum tf_outcome outcome)
{
    cm->host.answer(cm->host.arg, worker, name, alert, outcome);
}

void cm_demand_finish(struct cm_demand *d, int alert, enum tf_outcome outcome)
{
    struct tf_certmgr *cm = d->cm;
    for (int i = 0; i < cm->host.n_workers; i++)
        if (d->waiting[i])
            cm_answer(cm, i, d->name, alert, outcome);
    struct cm_demand **pp = &cm->demands;
    while (*pp && *pp != d)
        pp = &(*pp)->next;
    if (*pp)
        *pp = d->next;
    free(d->waiting);
    free(d->name);
    free(d);
}

void cm_demand_fail(struct cm_demand *d, int alert, enum tf_outcome outcome)
{
    struct tf_certmgr *cm = d->cm;
    bool renewal = d->renewal && !cm->closing;
    char *name = tf_strdup(d->name);
    cm_demand_finish(d, alert, outcome);
    if (renewal)
        cm_renew_done(cm, name, false);
    free(name);
}

struct cm_demand *cm_find_demand(struct tf_certmgr *cm, const char *name)
{
    for (struct cm_demand *d = cm->demands; d; d = d->next)
        if (strcmp(d->name, name) == 0)
            return d;
    return NULL;
}

struct cm_demand *cm_demand_new(struct tf_certmgr *cm, const char *name)
{
    struct cm_demand *d = tf_calloc(1, sizeof *d);
    d->cm = cm;
    d->name = tf_strdup(name);
    d->waiting = tf_calloc((size_t)cm->host.n_workers, sizeof *d->waiting);
    d->created_ms = tf_mono_ms();
    if (tf_psl_registered_domain(name, d->rd, sizeof d->rd) != 0)
        snprintf(d->rd, sizeof d->rd, "%s", name);
    d->next = cm->demands;
    cm->demands = d;
    return d;
}

struct cm_managed *cm_find_managed(struct tf_certmgr *cm, const char *name)
{
    return tf_lru_peek(cm->by_name, name);
}

/* --- publishing ------------------------------------------------------------------------ */

/* Add or replace the managed certificate of name (takes its own reference on cert), issued
 * by CA number ca (its ARI is asked there), and publish it now (one issued or announced
 * certificate). Only the ordered name is published: extra SANs the CA put in the
 * certificate are not ours to serve (operators' static certificates, by contrast, serve
 * every name they carry). */
void cm_publish_cert_ca(struct tf_certmgr *cm, const char *name, struct tf_cert *cert, int ca,
                        bool stored)
{
    cm_stage_cert(cm, name, cert, false, ca, stored);
    cm_publish_staged(cm);
}

static struct cm_staged *staged_add(struct tf_certmgr *cm, const char *name)
{
    if (cm->n_staged == cm->cap_staged) {
        cm->cap_staged = cm->cap_staged ? 2 * cm->cap_staged : 64;
        cm->staged = tf_realloc(cm->staged, cm->cap_staged * sizeof *cm->staged);
    }
    struct cm_staged *st = &cm->staged[cm->n_staged++];
    *st = (struct cm_staged){.name = tf_strdup(name)};
    return st;
}

void cm_stage_stub(struct tf_certmgr *cm, const char *name, struct tf_stubset *set,
                   struct tf_stub *stub)
{
    struct cm_staged *st = staged_add(cm, name);
    st->set = set;
    st->stub = stub;
}

void cm_stage_cert(struct tf_certmgr *cm, const char *name, struct tf_cert *cert, bool spread,
                   int ca, bool stored)
{
    /* Not yet visible to any worker: mark it managed so static certificates win merges. */
    cert->source = TF_SRC_ACME;
    struct cm_managed *m = cm_managed_get(cm, name);
    m->not_before = cert->not_before;
    m->not_after = cert->not_after;
    m->obtained_at = spread ? 0 : tf_wall_now();
    m->failures = 0;
    m->ca = ca;
    /* A stub (the name's own, or a new one while running) stands for cert, which goes to
     * the server's cache: it is evicted and loaded again like any cached certificate. */
    if (!cm_lazy_replace(cm, m, cert, stored)) {
        tf_cert_ref(cert);
        tf_cert_unref(m->cert);
        m->cert = cert;
        tf_cert_ref(cert);
        staged_add(cm, name)->cert = cert;
    }
    cm_schedule(cm, m, spread);
}

static void staged_clear(struct tf_certmgr *cm)
{
    for (size_t i = 0; i < cm->n_staged; i++) {
        free(cm->staged[i].name);
        tf_cert_unref(cm->staged[i].cert);
    }
    cm->n_staged = 0;
}

/* The manager's store becomes next (its reference moves here). */
static void store_take(struct tf_certmgr *cm, struct tf_certstore *next)
{
    tf_certstore_unref(cm->store);
    cm->store = next;
}

void cm_publish_staged(struct tf_certmgr *cm)
{
    size_t n = cm->n_staged, nc = 0, ns = 0;
    if (n == 0)
        return;
    struct tf_cert **certs = tf_calloc(n, sizeof *certs);
    const char **names = tf_calloc(n, sizeof *names);
    struct tf_stubset **sets = tf_calloc(n, sizeof *sets);
    struct tf_stub **stubs = tf_calloc(n, sizeof *stubs);
    for (size_t i = 0; i < n; i++) {
        /* A name staged twice (or replaced since) keeps what it has now. */
        const struct cm_staged *g = &cm->staged[i];
        struct cm_managed *m = cm_find_managed(cm, g->name);
        if (m && g->cert && m->cert == g->cert) {
            certs[nc] = g->cert;
            names[nc++] = g->name;
        } else if (m && g->stub && !m->cert && cm_stub(cm, m, NULL) == g->stub) {
            sets[ns] = g->set;
            stubs[ns++] = g->stub;
        }
    }
    if (nc)
        store_take(cm, tf_certstore_with_each(cm->store, certs, names, nc));
    if (ns)
        store_take(cm, tf_certstore_with_stubs(cm->store, sets, stubs, ns));
    free(certs);
    free(names);
    free(sets);
    free(stubs);
    staged_clear(cm);
    if (cm->loaded)
        cm->host.publish_certs(cm->host.arg);
}

void cm_publish_challenges(struct tf_certmgr *cm, struct tf_challenges *next)
{
    tf_challenges_unref(cm->challenges);
    cm->challenges = next;
    cm->stats.pending_challenges = next->n;
    cm->host.publish_challenges(cm->host.arg, next);
}

void cm_responder_publish(void *arg, const struct tf_acme_chal *c)
{
    struct tf_certmgr *cm = arg;
    /* The token is public (the CA hands it to anyone); the key authorization is not logged. */
    TF_DEBUG("certmgr", "name=%s challenge published token=%s type=%s", c->name, c->token,
             tf_chal_type_name(c->type));
    if (c->type == TF_CHAL_HTTP_01) {
        cm_h01_put(cm, c->token, c->key_authorization, 0);
        return;
    }
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    if (tf_alpn01_make_cert(c->name, c->key_authorization, &cert, &key) != 0) {
        tf_log_ssl(TF_LOG_ERROR, "certmgr", "building the TLS-ALPN-01 certificate");
        return; /* the validation fails and the order reports it */
    }
    cm_publish_challenges(cm, tf_challenges_with(cm->challenges, c->name, cert, key));
    X509_free(cert);
    EVP_PKEY_free(key);
}

void cm_responder_unpublish(void *arg, const struct tf_acme_chal *c)
{
    struct tf_certmgr *cm = arg;
    if (c->type == TF_CHAL_HTTP_01) {
        cm_h01_drop(cm, c->token);
        return;
    }
    if (!tf_challenges_find(cm->challenges, c->name))
        return;
    cm_publish_challenges(cm, tf_challenges_without(cm->challenges, c->name));
}

/* --- orders ---------------------------------------------------------------------------- */

static void on_obtained(int err, const struct tf_acme_result *res, void *arg)
{
    struct cm_demand *d = arg;
    struct tf_certmgr *cm = d->cm;
    struct cm_ca *ca = &cm->cas[d->ca];
    int64_t now = tf_wall_now();
    bool validation = res && res->problem && (tf_acme_problem_is(res->problem, "unauthorized") ||
                                              tf_acme_problem_is(res->problem, "connection") ||
                                              tf_acme_problem_is(res->problem, "tls") ||
                                              tf_acme_problem_is(res->problem, "dns"));
    tf_budget_order_done(ca->budget, d->name, d->rd, err == 0, validation, now * 1000);
    if (validation)
        cm_budget_cluster_failed_validation(cm, d->ca, d->name);
    if (err != UV_ECANCELED)
        *(err == 0 ? &ca->orders_ok : &ca->orders_failed) += 1;
    if (err != 0 && res && res->cert)
        tf_cert_unref(res->cert);
    if (cm_ca_fallback(d, err, res))
        return;
    tf_budget_order_done(cm->budget, d->name, d->rd, err == 0, false, now * 1000);
    bool renewal = d->renewal;
    char *name = tf_strdup(d->name);
    if (err == 0 && res && res->cert) {
        cm->stats.orders_ok++;
        if (!renewal)
            tf_histogram_observe(cm->host.issue_seconds,
                                 (double)(tf_mono_ms() - d->created_ms) / 1000.0);
        cm_publish_cert_ca(cm, d->name, res->cert, d->ca, !res->not_stored);
        cm_note_error(cm, d->name, NULL);
        if (!res->from_storage) {
            cm_cluster_announce_cert(cm, d->name);
            tf_webhook_emit(cm->webhook, renewal ? TF_WEBHOOK_RENEWED : TF_WEBHOOK_OBTAINED, name,
                            cm_ca_directory(cm, d->ca), res->cert, NULL);
        }
        tf_cert_unref(res->cert);
        cm_demand_finish(d, 0, TF_OUTCOME_READY);
    } else {
        cm->stats.orders_failed++;
        int64_t until = tf_budget_backoff_until(cm->budget, name) / 1000;
        if (err != UV_ECANCELED) {
            const char *why = res && res->reason ? res->reason : tf_strerror(err);
            cm_note_error(cm, name, why);
            TF_INFO("certmgr", "name=%s ca=%s not issued (%s); backed off for %llds", name,
                    tf_acme_ca_label(ca->acme), why, (long long)(until > now ? until - now : 0));
            tf_webhook_emit(cm->webhook, err == TF_EDENIED ? TF_WEBHOOK_PAUSED : TF_WEBHOOK_FAILED,
                            name, cm_ca_directory(cm, d->ca), NULL, why);
        }
        cm_demand_finish(d, SSL_AD_INTERNAL_ERROR,
                      err == TF_EDENIED ? TF_OUTCOME_PAUSED
                      : err == TF_ETIMEDOUT ? TF_OUTCOME_ISSUE_TIMEOUT
                      : err == UV_ECANCELED ? TF_OUTCOME_SHUTTING_DOWN : TF_OUTCOME_ISSUE_FAILED);
    }
    if (renewal)
        cm_renew_done(cm, name, err == 0);
    free(name);
}

/* The --acme-profile-for profile of name (exact pattern beats wildcard), else NULL: the
 * global --acme-profile applies. */
static const char *profile_for(const struct tf_config *cfg, const char *name)
{
    int i = tf_name_pick(cfg->profiles, cfg->n_profiles, sizeof *cfg->profiles,
                         offsetof(struct tf_name_profile, pattern), name);
    return i >= 0 ? cfg->profiles[i].profile : NULL;
}

static void refuse_local(struct cm_demand *d, int r, const char *why)
{
    struct tf_certmgr *cm = d->cm;
    cm->stats.refused_budget++;
    tf_log_limited(&cm->host.stats->log_order_refused, (int64_t)tf_mono_ms(), TF_LOG_WARN,
                   "certmgr", "name=%s order refused by the local budget: %s", d->name, why);
    bool renewal = d->renewal;
    char *name = tf_strdup(d->name);
    cm_demand_finish(d, SSL_AD_UNRECOGNIZED_NAME,
                     r == TF_EBUSY ? TF_OUTCOME_RATE_LIMITED : TF_OUTCOME_BUDGET);
    if (renewal)
        cm_renew_done(cm, name, false);
    free(name);
}

void cm_start_order(struct cm_demand *d)
{
    struct tf_certmgr *cm = d->cm;
    char why[256] = "";
    int64_t now_ms = tf_wall_now() * 1000;
    int r = tf_budget_admit(cm->budget, d->name, d->rd, now_ms, cm->n_managed, why, sizeof why);
    if (r != 0) {
        refuse_local(d, r, why);
        return;
    }
    cm_ca_pick(d, 0);
}

void cm_order_refused(struct cm_demand *d, int r, const char *why)
{
    struct tf_certmgr *cm = d->cm;
    if (!d->started) {
        refuse_local(d, r, why);
        return;
    }
    /* An earlier CA failed the name and no CA is left: it failed (and backs off). */
    int64_t now = tf_wall_now();
    tf_budget_order_done(cm->budget, d->name, d->rd, false, false, now * 1000);
    cm->stats.orders_failed++;
    int64_t until = tf_budget_backoff_until(cm->budget, d->name) / 1000;
    TF_INFO("certmgr", "name=%s not issued (no other CA may take it: %s); backed off for %llds",
            d->name, why, (long long)(until > now ? until - now : 0));
    cm_demand_fail(d, SSL_AD_INTERNAL_ERROR, TF_OUTCOME_ISSUE_FAILED);
}

void cm_order_admitted(struct cm_demand *d)
{
    struct tf_certmgr *cm = d->cm;
    char why[256] = "";
    int64_t now_ms = tf_wall_now() * 1000;
    struct cm_ca *ca = &cm->cas[d->ca];
    /* Again: other orders may have started while the shared counters answered. */
    int r = d->started ? 0
                       : tf_budget_admit(cm->budget, d->name, d->rd, now_ms, cm->n_managed, why,
                                         sizeof why);
    if (r != 0) {
        refuse_local(d, r, why);
        return;
    }
    r = tf_budget_admit(ca->budget, d->name, d->rd, now_ms, 0, why, sizeof why);
    if (r != 0 && d->ca + 1 < cm->n_cas) {
        cm_ca_pick(d, d->ca + 1);
        return;
    }
    if (r != 0) {
        cm_order_refused(d, r, why);
        return;
    }
    if (!d->started)
        tf_budget_order_started(cm->budget, d->name, d->rd, now_ms);
    d->started = true;
    tf_budget_order_started(ca->budget, d->name, d->rd, now_ms);
    d->ordering = true;
    struct tf_acme_order_opts opts = {0};
    char *replaces = NULL; /* ARI certID: RFC 9773 §5 */
    struct cm_managed *m = d->renewal ? cm_find_managed(cm, d->name) : NULL;
    if (m)
        opts.replaces = replaces = cm_cert_id(m);
    opts.profile = profile_for(cm->cfg, d->name);
    r = tf_acme_obtain(ca->acme, d->name, &opts, on_obtained, d);
    free(replaces);
    if (r != 0) {
        tf_budget_order_done(ca->budget, d->name, d->rd, false, false, now_ms);
        tf_budget_order_done(cm->budget, d->name, d->rd, false, false, now_ms);
        cm_demand_finish(d, SSL_AD_INTERNAL_ERROR, TF_OUTCOME_ISSUE_FAILED);
    }
}

static void on_gate(int verdict, enum tf_outcome why, void *arg)
{
    struct cm_demand *d = arg;
    d->gate_req = NULL;
    if (verdict != TF_GATE_ALLOW) {
        struct tf_certmgr *cm = d->cm;
        cm->stats.decisions_deny++;
        tf_log_limited(&cm->host.stats->log_not_allowed, (int64_t)tf_mono_ms(), TF_LOG_INFO,
                       "certmgr", "name=%s not allowed (%s)%s", d->name, tf_outcome_name(why),
                       d->renewal ? ": not renewed" : "");
        if (why == TF_OUTCOME_ASK_DENY)
            tf_webhook_emit(cm->webhook, TF_WEBHOOK_DENIED_BY_ASK, d->name,
                            cm->cfg->acme_directory, NULL, NULL);
        bool renewal = d->renewal;
        char *name = tf_strdup(d->name);
        cm_demand_finish(d, SSL_AD_UNRECOGNIZED_NAME, why);
        if (renewal)
            cm_renew_done(cm, name, false);
        free(name);
        return;
    }
    d->cm->stats.decisions_allow++;
    cm_start_order(d);
}

static void need_now(struct tf_certmgr *cm, int worker, const char *name)
{
    if (cm->host.serves(cm->host.arg, name)) {
        cm_answer(cm, worker, name, 0, TF_OUTCOME_READY); /* issued meanwhile */
        return;
    }
    struct cm_demand *d = cm_find_demand(cm, name);
    if (d) {
        d->waiting[worker] = true;
        return;
    }
    int64_t until = tf_budget_backoff_until(cm->budget, name) / 1000;
    if (until > tf_wall_now()) {
        cm->stats.refused_backoff++;
        cm_answer(cm, worker, name, SSL_AD_UNRECOGNIZED_NAME, TF_OUTCOME_BACKED_OFF);
        return;
    }
    d = cm_demand_new(cm, name);
    d->waiting[worker] = true;
    if (cm->cluster)
        cm_cluster_check_stored(d); /* another node may have obtained it */
    else
        cm_gate_then_order(d);
}

void cm_gate_then_order(struct cm_demand *d)
{
    struct tf_gate_req *h = NULL;
    if (tf_gate_check(d->cm->gate, d->name, on_gate, d, &h) != 0) {
        bool renewal = d->renewal;
        struct tf_certmgr *cm = d->cm;
        char *name = tf_strdup(d->name);
        cm_demand_finish(d, SSL_AD_UNRECOGNIZED_NAME, TF_OUTCOME_NOT_ALLOWED);
        if (renewal)
            cm_renew_done(cm, name, false);
        free(name);
        return;
    }
    d->gate_req = h;
}

void tf_certmgr_need(struct tf_certmgr *cm, int worker, const char *name)
{
    if (cm->closing) {
        cm_answer(cm, worker, name, SSL_AD_INTERNAL_ERROR, TF_OUTCOME_SHUTTING_DOWN);
        return;
    }
    if (!cm->loaded) {
        struct cm_queued *q = tf_calloc(1, sizeof *q);
        q->worker = worker;
        q->name = tf_strdup(name);
        q->next = cm->queued;
        cm->queued = q;
        return;
    }
    need_now(cm, worker, name);
}

/* --- start-up -------------------------------------------------------------------------- */

static void on_stored(const char *name, struct tf_cert *cert,
                      const struct tf_acme_store_meta *meta, const char *ca_id,
                      const char *cert_id, void *arg)
{
    struct tf_certmgr *cm = arg;
    int ca = cm_ca_index(cm, ca_id, name);
    /* The store is built once, in on_all_stored. */
    if (meta)
        cm_lazy_index(cm, name, cert, meta, ca, cert_id);
    else
        cm_stage_cert(cm, name, cert, true, ca, true);
    tf_cert_unref(cert);
}

static void on_all_stored(int err, const struct tf_acme_store_counts *n, void *arg)
{
    struct tf_certmgr *cm = arg;
    if (err != 0)
        TF_ERROR("certmgr", "loading stored certificates: %s", tf_strerror(err));
    cm->lazy = n->lazy;
    if (n->lazy)
        TF_INFO("certmgr", "stored certificates: %d indexed, %d skipped, %d of them decoded "
                           "for want of a usable meta.json (more than --cert-cache %d: loaded "
                           "on first use)",
                n->loaded, n->skipped, n->decoded, cm->cfg->cert_cache);
    else
        TF_INFO("certmgr", "stored certificates: %d loaded, %d skipped", n->loaded, n->skipped);
    cm_lazy_sealed(cm);
    cm_publish_staged(cm);
    cm->loaded = true;
    cm->host.publish_certs(cm->host.arg);
    struct cm_queued *q = cm->queued;
    cm->queued = NULL;
    while (q) {
        struct cm_queued *next = q->next;
        if (!cm->closing)
            need_now(cm, q->worker, q->name);
        free(q->name);
        free(q);
        q = next;
    }
    if (!cm->closing) {
        cm_eager_start(cm);
        cm_renew_start(cm);
    }
}

static struct tf_budget *budget_for(const struct tf_config *cfg)
{
    struct tf_budget_limits lim = tf_budget_limits_default();
    /* Below one order a minute still means "rate limited", never "unlimited" (0). */
    lim.issue_rate_per_min = cfg->issue_rate < 1 ? 1 : (uint32_t)cfg->issue_rate;
    lim.issue_burst = cfg->issue_burst;
    lim.max_orders = cfg->max_orders;
    lim.max_names = cfg->max_names;
    lim.ca_certs_per_domain = (uint32_t)cfg->ca_certs_per_domain;
    lim.backoff_base_s = cfg->backoff_base_s;
    lim.backoff_max_s = cfg->backoff_max_s;
    /* The CA limits are mirrored per CA (certmgr_ca.c). */
    lim.ca_orders_per_account = lim.ca_certs_per_domain = lim.ca_authz_failures = 0;
    lim.dup_certs_per_name = 0;
    return tf_budget_new(&lim);
}

static struct tf_gate *gate_for(struct tf_certmgr *cm, const struct tf_config *cfg)
{
    return tf_gate_new(cm->loop, cm->http, cfg->allow, cfg->n_allow, cfg->ask, cfg->ask_timeout_ms,
                       cfg->ask_cache_s, 16, 10000);
}

int tf_certmgr_start(const struct tf_certmgr_host *host, const struct tf_config *cfg,
                     struct tf_certmgr **out, char *err, size_t errlen)
{
    *out = NULL;
    struct tf_storage *st = tf_storage_open(host->loop, cfg, err, errlen);
    if (!st)
        return 2; /* nothing asynchronous exists yet */
    struct tf_certmgr *cm = tf_calloc(1, sizeof *cm);
    *out = cm; /* from here a failure is cleaned up by tf_certmgr_close */
    cm->host = *host;
    cm->loop = host->loop;
    cm->cfg = (struct tf_config *)cfg;
    tf_config_ref(cm->cfg);
    cm->store = tf_certstore_new();
    cm->by_name = tf_lru_new(0, NULL);
    cm->storage = st;
    cm->budget = budget_for(cfg);
    uv_timer_init(cm->loop, &cm->renew_timer);
    cm->renew_timer.data = cm;
    uv_timer_init(cm->loop, &cm->resync_timer);
    cm->resync_timer.data = cm;
    struct tf_acme_responder resp = {cm_responder_publish, cm_responder_unpublish, cm, NULL};
    cm_cluster_start(cm, &resp);
    if (cm_cas_start(cm, cfg, &resp, err, errlen) != 0)
        return 2;
    int wr = tf_webhook_new(cm->loop, cfg, cm->cluster ? cm->node_id : NULL, &cm->webhook, err,
                            errlen);
    if (wr != 0)
        return wr;
    cm->gate = gate_for(cm, cfg);
    if (!cm->gate) {
        snprintf(err, errlen, "--ask: cannot set up the gate");
        return 2;
    }
    int r = tf_acme_store_index_all(cm->storage, cfg->cert_cache, on_stored, on_all_stored, cm);
    if (r != 0) {
        snprintf(err, errlen, "storage %s: %s", cfg->storage, tf_strerror(r));
        return 1;
    }
    return 0;
}

bool tf_certmgr_loaded(const struct tf_certmgr *cm)
{
    return cm->loaded;
}

bool tf_certmgr_storage_up(const struct tf_certmgr *cm)
{
    return !cm->storage || tf_storage_up(cm->storage);
}

const struct tf_certstore *tf_certmgr_store(const struct tf_certmgr *cm)
{
    return cm->store;
}

void tf_certmgr_reconfigure(struct tf_certmgr *cm, const struct tf_config *cfg)
{
    tf_config_ref((struct tf_config *)cfg);
    tf_config_unref(cm->cfg);
    cm->cfg = (struct tf_config *)cfg;
    struct tf_gate *next_gate = gate_for(cm, cfg);
    if (!next_gate) {
        TF_ERROR("certmgr", "reload: cannot set up the new gate; keeping the old one");
        return;
    }
    /* Names waiting on the old gate are asked again through the new one. */
    for (struct cm_demand *d = cm->demands; d; d = d->next)
        if (d->gate_req) {
            tf_gate_cancel(d->gate_req);
            d->gate_req = NULL;
            d->regate = true;
        }
    tf_gate_close(cm->gate, NULL, NULL);
    cm->gate = next_gate;
    for (struct cm_demand *d = cm->demands, *next; d; d = next) {
        next = d->next; /* cm_gate_then_order may finish (free) d */
        if (d->regate) {
            d->regate = false;
            cm_gate_then_order(d);
        }
    }
}

/* --- shutdown -------------------------------------------------------------------------- */

static void close_step(void *arg)
{
    struct tf_certmgr *cm = arg;
    if (--cm->pending_closes > 0)
        return;
    for (struct cm_managed *m = cm->managed, *n; m; m = n) {
        n = m->next;
        tf_cert_unref(m->cert);
        free(m->cert_id);
        free(m->name);
        free(m);
    }
    cm_lazy_free(cm);
    cm_cluster_free(cm);
    tf_lru_free(cm->by_name);
    staged_clear(cm);
    free(cm->staged);
    cm_plan_free(cm);
    tf_challenges_unref(cm->challenges);
    cm_h01_free_all(cm);
    tf_lru_free(cm->errors);
    tf_certstore_unref(cm->store);
    tf_budget_free(cm->budget);
    cm_cas_free(cm);
    tf_config_unref(cm->cfg);
    void (*done)(void *) = cm->close_done;
    void *done_arg = cm->close_arg;
    free(cm);
    if (done)
        done(done_arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    close_step(h->data);
}

static void on_cas_closed(void *arg)
{
    struct tf_certmgr *cm = arg;
    cm->pending_closes++; /* storage */
    tf_storage_close(cm->storage, close_step, cm);
    close_step(cm);
}

void tf_certmgr_drain(struct tf_certmgr *cm, uint32_t grace_ms)
{
    cm->drain_deadline_ms = uv_now(cm->loop) + grace_ms;
}

/* How long webhook deliveries may go on after the close: until the drain's grace ends. */
static uint64_t cm_flush_ms(const struct tf_certmgr *cm)
{
    uint64_t now = uv_now(cm->loop);
    return cm->drain_deadline_ms > now ? cm->drain_deadline_ms - now : 0;
}

void tf_certmgr_close(struct tf_certmgr *cm, void (*done)(void *arg), void *arg)
{
    cm->closing = true;
    cm->close_done = done;
    cm->close_arg = arg;
    /* Gate decisions still pending are answered now; orders end through tf_acme_close. */
    for (struct cm_demand *d = cm->demands, *n; d; d = n) {
        n = d->next;
        if (d->gate_req) {
            tf_gate_cancel(d->gate_req);
            cm_demand_finish(d, SSL_AD_INTERNAL_ERROR, TF_OUTCOME_SHUTTING_DOWN);
        }
    }
    for (struct cm_queued *q = cm->queued, *n; q; q = n) {
        n = q->next;
        free(q->name);
        free(q);
    }
    cm->queued = NULL;
    cm->pending_closes = 2; /* the timers; the rest are added as they are started */
    uv_close((uv_handle_t *)&cm->renew_timer, on_timer_closed);
    uv_close((uv_handle_t *)&cm->resync_timer, on_timer_closed);
    if (cm->gate) {
        cm->pending_closes++;
        tf_gate_close(cm->gate, close_step, cm);
    }
    if (cm->webhook) {
        cm->pending_closes++;
        tf_webhook_close(cm->webhook, cm_flush_ms(cm), close_step, cm);
    }
    cm->pending_closes++; /* the acme -> http -> storage chain */
    cm_cas_close(cm, on_cas_closed);
}
