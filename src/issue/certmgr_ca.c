/*
 * certmgr_ca.c: the certificate manager's CAs (--acme-directory, repeatable), tried in the
 * order given. Each CA has its own ACME client (so its own account in storage, keyed by the
 * CA), its own HTTP client (its ca= trust anchor) and its own mirror of the CA's limits
 * (budget.h with the local policy off: orders per account, certificates per registered
 * domain, failed validations per name, duplicates), while the local policy (rate, caps,
 * backoff) stays one for the manager. An order that a CA fails (validation, server error,
 * unreachable, rate limited or paused, account creation), or that the CA's limits refuse,
 * moves on to the next CA; each attempt is bounded by the ACME client's retries and
 * --acme-timeout. Only when no CA is left does the name back off. Control loop only.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CA_MOD "certmgr"

/* The mirror of one CA's limits: budget.h's CA limits, the local policy off. */
static struct tf_budget *ca_budget_new(const struct tf_config *cfg)
{
    struct tf_budget_limits lim = tf_budget_limits_default();
    lim.issue_rate_per_min = lim.issue_burst = 0;
    lim.max_orders = lim.max_names = 0;
    lim.backoff_base_s = lim.backoff_max_s = 0;
    lim.ca_certs_per_domain = (uint32_t)cfg->ca_certs_per_domain;
    return tf_budget_new(&lim);
}

int cm_cas_start(struct tf_certmgr *cm, const struct tf_config *cfg,
                 const struct tf_acme_responder *resp, char *err, size_t errlen)
{
    int n = cfg->n_acme_cas > 0 ? cfg->n_acme_cas : 1;
    cm->cas = tf_calloc((size_t)n, sizeof *cm->cas);
    for (int i = 0; i < n; i++) {
        struct cm_ca *ca = &cm->cas[i];
        const char *anchor = cfg->n_acme_cas > 0 ? cfg->acme_cas[i].ca : cfg->acme_ca;
        char why[400] = "";
        ca->budget = ca_budget_new(cfg);
        cm->n_cas = i + 1; /* closed by cm_cas_close from here */
        ca->http = tf_httpc_new(cm->loop, anchor, why, sizeof why);
        if (!ca->http) {
            if (i == 0 && cfg->acme_ca)
                snprintf(err, errlen, "--acme-ca: %s", why);
            else
                snprintf(err, errlen, "--acme-directory %s: ca=: %s",
                         cfg->acme_cas[i].directory, why);
            return 2;
        }
        ca->acme = tf_acme_new_ca(cm->loop, cfg, i, cm->storage, ca->http, resp, err, errlen);
        if (!ca->acme)
            return 2;
    }
    cm->http = cm->cas[0].http;
    cm->acme = cm->cas[0].acme;
    return 0;
}

/* --- teardown: every ACME client, then every HTTP client ------------------------------ */

static void on_http_closed(void *arg)
{
    struct tf_certmgr *cm = arg;
    if (--cm->cas_closing == 0)
        cm->cas_done(cm);
}

static void on_acme_closed(void *arg)
{
    struct tf_certmgr *cm = arg;
    if (--cm->cas_closing > 0)
        return;
    cm->cas_closing = 1; /* held while the HTTP clients' closes start */
    for (int i = 0; i < cm->n_cas; i++) {
        if (cm->cas[i].http) {
            cm->cas_closing++;
            tf_httpc_close(cm->cas[i].http, on_http_closed, cm);
        }
    }
    on_http_closed(cm);
}

void cm_cas_close(struct tf_certmgr *cm, void (*done)(void *arg))
{
    cm->cas_done = done;
    cm->cas_closing = 1; /* held while the ACME clients' closes start */
    for (int i = 0; i < cm->n_cas; i++) {
        if (cm->cas[i].acme) {
            cm->cas_closing++;
            tf_acme_close(cm->cas[i].acme, on_acme_closed, cm);
        }
    }
    on_acme_closed(cm);
}

const char *cm_ca_directory(const struct tf_certmgr *cm, int ca)
{
    const struct tf_config *cfg = cm->cfg;
    if (cfg->n_acme_cas > 0)
        return cfg->acme_cas[ca >= 0 && ca < cfg->n_acme_cas ? ca : 0].directory;
    return cfg->acme_directory;
}

int cm_ca_index(const struct tf_certmgr *cm, const char *ca_id, const char *name)
{
    if (!ca_id)
        return 0;
    for (int i = 0; i < cm->n_cas; i++)
        if (strcmp(tf_acme_ca_id(cm->cas[i].acme), ca_id) == 0)
            return i;
    TF_DEBUG(CA_MOD, "name=%s issued by ca_id=%s, no longer configured: attributed to the first CA",
             name, ca_id);
    return 0;
}

void cm_cas_free(struct tf_certmgr *cm)
{
    for (int i = 0; i < cm->n_cas; i++)
        tf_budget_free(cm->cas[i].budget);
    free(cm->cas);
    cm->cas = NULL;
    cm->n_cas = 0;
}

/* --- choosing the CA ------------------------------------------------------------------- */

void cm_ca_pick(struct cm_demand *d, int from)
{
    struct tf_certmgr *cm = d->cm;
    int64_t now_ms = tf_wall_now() * 1000;
    char why[256], first[300] = "";
    int first_r = 0;
    for (int k = from; k < cm->n_cas; k++) {
        int r = tf_budget_admit(cm->cas[k].budget, d->name, d->rd, now_ms, 0, why, sizeof why);
        if (r == 0) {
            d->ca = k;
            cm_budget_cluster_admit(d);
            return;
        }
        if (cm->n_cas > 1)
            TF_DEBUG(CA_MOD, "name=%s ca=%s skipped: its limits refuse (%s)", d->name,
                     tf_acme_ca_label(cm->cas[k].acme), why);
        if (!first_r) {
            first_r = r;
            if (cm->n_cas > 1)
                snprintf(first, sizeof first, "ca=%s %s", tf_acme_ca_label(cm->cas[k].acme),
                         why);
            else
                snprintf(first, sizeof first, "%s", why);
        }
    }
    cm_order_refused(d, first_r ? first_r : TF_EBUSY, first);
}

bool cm_ca_fallback(struct cm_demand *d, int err, const struct tf_acme_result *res)
{
    struct tf_certmgr *cm = d->cm;
    if (err == 0 || err == UV_ECANCELED || cm->closing || d->ca + 1 >= cm->n_cas)
        return false;
    TF_INFO(CA_MOD, "name=%s ca=%s not issued (%s); trying ca=%s", d->name,
            tf_acme_ca_label(cm->cas[d->ca].acme),
            res && res->reason ? res->reason : tf_strerror(err),
            tf_acme_ca_label(cm->cas[d->ca + 1].acme));
    d->ordering = false;
    cm_ca_pick(d, d->ca + 1);
    return true;
}

void cm_cas_metrics(struct tf_certmgr *cm, struct tf_metrics_buf *out)
{
    struct tf_metrics_buf lb;
    tf_metrics_buf_init(&lb);
    for (int i = 0; i < cm->n_cas; i++) {
        static const char *const results[] = {"ok", "failed"};
        uint64_t v[] = {cm->cas[i].orders_ok, cm->cas[i].orders_failed};
        for (int j = 0; j < 2; j++) {
            tf_metrics_buf_reset(&lb);
            tf_metrics_label(&lb, "ca", tf_acme_ca_label(cm->cas[i].acme));
            tf_metrics_label(&lb, "result", results[j]);
            tf_metrics_counter(out, "tlsfront_ca_orders_total",
                               i + j == 0 ? "ACME orders by CA (directory host) and result."
                                          : NULL,
                               lb.data, v[j]);
        }
    }
    tf_metrics_buf_free(&lb);
}
