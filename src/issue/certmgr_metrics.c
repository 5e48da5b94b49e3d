/*
 * certmgr_metrics.c: the certificate manager's Prometheus families (gate decisions, orders,
 * pending challenges, budget, expiry per managed name) for the admin endpoint. Control loop
 * only; reads the manager's state, changes nothing.
 */
#include "certmgr_int.h"
#include "tlsfront/base/metrics.h"

/* Metrics families owned by the manager (admin endpoint, control loop). */
void tf_certmgr_metrics(struct tf_certmgr *cm, struct tf_metrics_buf *out)
{
    struct tf_gate_stats g;
    tf_gate_stats(cm->gate, &g);
    struct {
        const char *gate, *outcome;
        uint64_t v;
    } dec[] = {
        {"pattern", "allow", g.pattern_allow}, {"pattern", "deny", g.not_allowed},
        {"ask", "allow", g.ask_allow},         {"ask", "deny", g.ask_deny},
        {"ask", "error", g.ask_error},         {"ask", "timeout", g.ask_timeout},
        {"ask", "busy", g.busy},               {"cache", "allow", g.cache_allow},
        {"cache", "deny", g.cache_deny},
    };
    struct tf_metrics_buf lb;
    tf_metrics_buf_init(&lb);
    for (size_t i = 0; i < TF_ARRAY_LEN(dec); i++) {
        tf_metrics_buf_reset(&lb);
        tf_metrics_label(&lb, "gate", dec[i].gate);
        tf_metrics_label(&lb, "outcome", dec[i].outcome);
        tf_metrics_counter(out, "tlsfront_ondemand_decisions_total",
                           "On-demand gate decisions by gate and outcome.", lb.data, dec[i].v);
    }
    tf_metrics_counter(out, "tlsfront_ondemand_refused_total", "Held names refused before the "
                       "gate.", "reason=\"backoff\"", cm->stats.refused_backoff);
    tf_metrics_counter(out, "tlsfront_ondemand_refused_total", NULL, "reason=\"budget\"",
                       cm->stats.refused_budget);
    tf_metrics_counter(out, "tlsfront_ondemand_refused_total", NULL,
                       "reason=\"storage_unavailable\"", cm->stats.refused_storage);
    tf_metrics_gauge(out, "tlsfront_storage_up", "1 while the storage is reachable (always 1 "
                     "for a directory).", NULL, tf_certmgr_storage_up(cm) ? 1 : 0);
    if (cm->cluster) {
        tf_metrics_counter(out, "tlsfront_cluster_received_total", "Certificates and "
                           "challenges taken from other nodes' announcements.", "kind=\"cert\"",
                           cm->stats.cluster_certs_received);
        tf_metrics_counter(out, "tlsfront_cluster_received_total", NULL, "kind=\"challenge\"",
                           cm->stats.cluster_challenges_received);
    }
    tf_metrics_counter(out, "tlsfront_ask_requests_total", "HTTP requests made to --ask.", NULL,
                       g.ask_requests);
    tf_metrics_counter(out, "tlsfront_orders_total", "ACME orders by result.", "result=\"ok\"",
                       cm->stats.orders_ok);
    tf_metrics_counter(out, "tlsfront_orders_total", NULL, "result=\"failed\"",
                       cm->stats.orders_failed);
    tf_metrics_gauge(out, "tlsfront_pending_challenges", "TLS-ALPN-01 challenges being served.",
                     NULL, cm->challenges ? cm->challenges->n : 0);
    tf_metrics_gauge(out, "tlsfront_pending_http01_challenges", "HTTP-01 challenges the "
                     "redirect listener answers now.", NULL, cm_h01_count(cm));
    tf_metrics_counter(out, "tlsfront_http01_requests_total", "HTTP-01 requests answered on "
                       "the redirect listener by result.", "result=\"found\"", cm->h01_found);
    tf_metrics_counter(out, "tlsfront_http01_requests_total", NULL, "result=\"not_found\"",
                       cm->h01_not_found);
    tf_metrics_gauge(out, "tlsfront_managed_certificates", "Certificates managed by ACME.", NULL,
                     cm->n_managed);
    tf_metrics_gauge(out, "tlsfront_ari_inflight",
                     "Renewal-information (ARI) requests in flight to the CA.", NULL,
                     cm->ari_inflight);
    tf_metrics_gauge(out, "tlsfront_ari_queued",
                     "Managed names whose ARI request waits for a free slot.", NULL,
                     cm->ari_queued);
    tf_metrics_counter(out, "tlsfront_ari_answers_total",
                       "Renewal windows (ARI answers) taken from the CA.", NULL,
                       cm->ari_answers);
    cm_cas_metrics(cm, out);
    struct tf_budget_remaining rem, first;
    tf_budget_remaining(cm->budget, "", "", tf_wall_now() * 1000, &rem);
    tf_budget_remaining(cm->cas[0].budget, "", "", tf_wall_now() * 1000, &first);
    tf_metrics_gauge(out, "tlsfront_budget_tokens", "Orders the local token bucket allows now.",
                     NULL, rem.tokens);
    tf_metrics_gauge(out, "tlsfront_budget_ca_orders_remaining",
                     "New orders left in the first CA's 3-hour window (local mirror).", NULL,
                     first.ca_orders);
    int64_t now = tf_wall_now();
    for (struct cm_managed *m = cm->managed; m; m = m->next) {
        tf_metrics_buf_reset(&lb);
        tf_metrics_label(&lb, "name", m->name);
        tf_metrics_gauge(out, "tlsfront_certificate_expiry_seconds",
                         "Seconds until a managed certificate expires.", lb.data,
                         (double)(m->not_after - now));
    }
    tf_metrics_buf_free(&lb);
    tf_webhook_metrics(cm->webhook, out);
}
