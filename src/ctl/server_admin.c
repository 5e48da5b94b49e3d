/*
 * server_admin.c: what the admin endpoint shows: health (every worker loop turned in
 * the last 5 s), readiness (listeners bound, certificates loaded, not draining), the
 * Prometheus metrics read from the shared atomics, and the certificate list as JSON; and
 * the API's actions, handed to the certificate manager (renew, forget, unpause, revoke,
 * purge the --ask cache, one name's detail) with its outcome mapped to an HTTP status.
 * Runs on the control loop; the reads only read atomics and control-loop state, so a
 * scrape cannot corrupt or slow the data path.
 */
#include "admin_api_int.h"
#include "tlsfront/ctl/admin.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/base/log.h"
#include "tlsfront/ctl/server.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD(s, f) atomic_load_explicit(&(s)->f, memory_order_relaxed)

static bool srv_healthy(void *arg)
{
    struct tf_server *s = arg;
    uint64_t now = tf_mono_ms();
    for (int i = 0; i < s->n_started; i++)
        if (now - atomic_load(&s->workers[i].heartbeat_ms) > 5000)
            return false;
    return s->n_started == s->n_workers;
}

static bool srv_ready(void *arg)
{
    struct tf_server *s = arg;
    return srv_healthy(s) && !s->draining && (!s->certmgr || tf_certmgr_loaded(s->certmgr));
}

static bool srv_storage_up(void *arg)
{
    struct tf_server *s = arg;
    return !s->certmgr || tf_certmgr_storage_up(s->certmgr);
}

/* --cert-cache: --certs certificates loaded on first use (server_certcache.c). */
static void cache_metrics(struct tf_stats *st, struct tf_wstats *ws, struct tf_metrics_buf *out)
{
    tf_metrics_gauge(out, "tlsfront_cert_cache_size",
                     "Decoded --certs certificates in the cache now (at most --cert-cache).",
                     NULL, (double)LOAD(st, cert_cache_size));
    const struct {
        const char *name, *help;
        atomic_ullong *v;
    } counters[] = {
        {"tlsfront_cert_cache_hits_total",
         "Handshakes for an indexed name whose certificate was loaded.", &ws->cert_cache_hits},
        {"tlsfront_cert_cache_misses_total",
         "Handshakes held because their name's certificate was not loaded.",
         &ws->cert_cache_misses},
        {"tlsfront_cert_cache_loads_total", "Certificates loaded into the cache.",
         &st->cert_cache_loads},
        {"tlsfront_cert_cache_load_failures_total",
         "Certificate files that failed to load on first use.", &st->cert_cache_load_failures},
        {"tlsfront_cert_cache_evictions_total", "Certificates evicted from the cache.",
         &st->cert_cache_evictions},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(counters); i++)
        tf_metrics_counter(out, counters[i].name, counters[i].help, NULL,
                           atomic_load_explicit(counters[i].v, memory_order_relaxed));
    tf_metrics_histogram(out, "tlsfront_cert_cache_load_seconds",
                         "Reading and decoding one certificate on first use.", NULL,
                         &st->cert_load_seconds);
}

/* The workers' own counters (stats.h), summed. */
static void workers_sum(struct tf_server *s, struct tf_wstats *sum)
{
    tf_wstats_init(sum);
    for (int i = 0; i < s->n_started; i++)
        tf_wstats_fold(sum, &s->workers[i].ws);
}

static void conn_metrics(struct tf_server *s, struct tf_wstats *ws, struct tf_metrics_buf *out)
{
    struct tf_stats *st = &s->stats;
    tf_metrics_gauge(out, "tlsfront_connections_open", "Client connections open now.", NULL,
                     LOAD(st, conns_open));
    tf_metrics_counter(out, "tlsfront_connections_total", "Client connections accepted.", NULL,
                       LOAD(ws, conns_total));
    tf_metrics_counter(out, "tlsfront_connections_refused_total",
                       "Connections closed at accept by max_connections.",
                       "reason=\"max_connections\"", LOAD(st, conns_refused));
    tf_metrics_counter(out, "tlsfront_handshakes_total", "TLS handshakes by result.",
                       "result=\"ok\"", LOAD(ws, hs_ok));
    tf_metrics_counter(out, "tlsfront_handshakes_total", NULL, "result=\"failed\"",
                       LOAD(ws, hs_failed));
    tf_metrics_counter(out, "tlsfront_handshakes_total", NULL, "result=\"timeout\"",
                       LOAD(ws, hs_timeout));
    tf_metrics_counter(out, "tlsfront_handshakes_version_total",
                       "Completed handshakes by TLS version.", "version=\"TLSv1.2\"",
                       LOAD(ws, hs_tls12));
    tf_metrics_counter(out, "tlsfront_handshakes_version_total", NULL, "version=\"TLSv1.3\"",
                       LOAD(ws, hs_tls13));
    tf_metrics_counter(out, "tlsfront_handshakes_resumed_total",
                       "Completed handshakes that resumed a session.", NULL,
                       LOAD(ws, hs_resumed));
    tf_metrics_histogram(out, "tlsfront_handshake_duration_seconds",
                         "Accept to finished handshake.", NULL, &ws->hs_seconds);
    tf_metrics_counter(out, "tlsfront_bytes_total", "Plaintext bytes forwarded (closed "
                       "connections).", "direction=\"client_to_backend\"", LOAD(ws, bytes_in));
    tf_metrics_counter(out, "tlsfront_bytes_total", NULL, "direction=\"backend_to_client\"",
                       LOAD(ws, bytes_out));
    tf_metrics_counter(out, "tlsfront_acme_challenges_served_total",
                       "TLS-ALPN-01 validation handshakes answered.", NULL,
                       LOAD(ws, acme_challenges_served));
    tf_metrics_counter(out, "tlsfront_backend_pool_total",
                       "mode=http backend connections wanted: from the keep-alive pool (hit) "
                       "or newly connected (miss).", "result=\"hit\"", LOAD(ws, pool_hits));
    tf_metrics_counter(out, "tlsfront_backend_pool_total", NULL, "result=\"miss\"",
                       LOAD(ws, pool_misses));
    tf_metrics_counter(out, "tlsfront_backend_pool_stale_retries_total",
                       "Pooled backend connections found closed, requests sent again on a new "
                       "one.", NULL, LOAD(ws, pool_stale_retries));
    tf_metrics_gauge(out, "tlsfront_held_handshakes", "Handshakes held for a certificate now.",
                     NULL, LOAD(st, held_now));
    tf_metrics_counter(out, "tlsfront_held_handshakes_total", "Handshakes ever held.", NULL,
                       LOAD(ws, held_total));
    tf_metrics_counter(out, "tlsfront_held_refused_total", "Holds refused by --max-held*.",
                       NULL, LOAD(st, held_refused));
    tf_metrics_counter(out, "tlsfront_malloc_trims_total",
                       "Free heap memory returned to the system after a burst of held "
                       "handshakes.", NULL, LOAD(ws, malloc_trims));
    cache_metrics(st, ws, out);
}

static void route_metrics(struct tf_server *s, struct tf_wstats *ws, struct tf_metrics_buf *out)
{
    struct tf_metrics_buf lb;
    tf_metrics_buf_init(&lb);
    const struct tf_config *cfg = s->cfg;
    int n = TF_MIN(cfg->n_routes, TF_STATS_ROUTES);
    for (int i = 0; i <= n; i++) {
        tf_metrics_buf_reset(&lb);
        const char *route = i == 0 ? "default"
                            : i == TF_STATS_ROUTES && cfg->n_routes > TF_STATS_ROUTES
                                ? "other"
                                : cfg->routes[i - 1].pattern;
        tf_metrics_label(&lb, "route", route);
        tf_metrics_counter(out, "tlsfront_backend_connect_errors_total",
                           "Backend connections that failed, by route.", lb.data,
                           LOAD(ws, backend_errors_route[i]));
    }
    tf_metrics_buf_free(&lb);
}

/* Lines the rate-limited log classes held back, one series per class. */
static void log_metrics(struct tf_server *s, struct tf_metrics_buf *out)
{
    const struct {
        const char *labels;
        const struct tf_log_limit *l;
    } cls[] = {
        {"class=\"order_refused_budget\"", &s->stats.log_order_refused},
        {"class=\"name_not_allowed\"", &s->stats.log_not_allowed},
        {"class=\"redirect_address_cap\"", &s->stats.log_redirect_cap},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(cls); i++)
        tf_metrics_counter(out, "tlsfront_log_suppressed_total",
                           i == 0 ? "Log lines held back by rate limiting, by message class."
                                  : NULL,
                           cls[i].labels, tf_log_limit_suppressed(cls[i].l));
}

static void srv_metrics(void *arg, struct tf_metrics_buf *out)
{
    struct tf_server *s = arg;
    tf_metrics_gauge(out, "tlsfront_build_info", "Build information.",
                     "version=\"" TLSFRONT_VERSION "\"", 1);
    struct tf_wstats ws;
    workers_sum(s, &ws);
    conn_metrics(s, &ws, out);
    route_metrics(s, &ws, out);
    log_metrics(s, out);
    tf_metrics_gauge(out, "tlsfront_certificates", "Certificates being served.", NULL,
                     (double)tf_certstore_count(s->certs));
    tf_metrics_histogram(out, "tlsfront_issuance_duration_seconds",
                         "On-demand: first request for a name to its certificate.", NULL,
                         &s->stats.issue_seconds);
    if (s->certmgr)
        tf_certmgr_metrics(s->certmgr, out);
}

/* A JSON string value with its quotes (the metrics writer escapes, we quote). */
static void json_str(struct tf_metrics_buf *out, const char *v)
{
    tf_metrics_buf_puts(out, "\"");
    tf_metrics_buf_json_str(out, v);
    tf_metrics_buf_puts(out, "\"");
}

static void cert_json(const struct tf_cert *c, void *arg)
{
    struct tf_metrics_buf *out = arg;
    if (out->len > 1)
        tf_metrics_buf_puts(out, ",");
    tf_metrics_buf_puts(out, "{\"names\":[");
    for (int i = 0; i < c->n_names; i++) {
        if (i)
            tf_metrics_buf_puts(out, ",");
        json_str(out, c->names[i]);
    }
    tf_metrics_buf_printf(out, "],\"source\":\"%s\",\"key\":\"%s\",\"issuer\":",
                          c->source == TF_SRC_ACME ? "acme" : "static",
                          c->kind == TF_CERT_EC ? "ecdsa" : "rsa");
    json_str(out, c->issuer ? c->issuer : "");
    tf_metrics_buf_printf(out, ",\"not_after\":%lld,\"serial\":", (long long)c->not_after);
    json_str(out, c->serial ? c->serial : "");
    tf_metrics_buf_puts(out, "}");
}

static void srv_certs_json(void *arg, struct tf_metrics_buf *out)
{
    struct tf_server *s = arg;
    tf_metrics_buf_puts(out, "[");
    tf_certstore_foreach(s->certs, cert_json, out);
    tf_metrics_buf_puts(out, "]\n");
}

/* --- actions -------------------------------------------------------------------------- */

/* The HTTP status of a certificate manager outcome. */
static int action_status(int err)
{
    switch (err) {
    case 0:
        return 200;
    case TF_EINVAL:
        return 400;
    case TF_ENOTFOUND:
        return 404;
    case TF_EBUSY:
        return 409;
    case TF_EPROTO:
        return 502; /* the CA refused */
    case TF_ECLOSED:
    case UV_ECANCELED:
        return 503;
    default:
        return 500;
    }
}

static void reply_error(struct tf_admin_reply *reply, int err, const char *msg)
{
    char *body = tf_admin_json_error(msg);
    tf_admin_reply(reply, action_status(err), body);
    free(body);
}

static void on_action_done(int err, const char *json, void *arg)
{
    tf_admin_reply(arg, action_status(err), json);
}

/* Why a synchronous refusal happened, in the words of the API. */
static const char *refusal(int err)
{
    switch (err) {
    case TF_ENOTFOUND:
        return "no managed certificate for this name";
    case TF_EBUSY:
        return "an order for this name is in flight; try again when it ends";
    case TF_ECLOSED:
        return "not ready (stored certificates loading) or shutting down";
    default:
        return tf_strerror(err);
    }
}

static void srv_action(void *arg, const struct tf_admin_action *act, struct tf_admin_reply *reply)
{
    struct tf_server *s = arg;
    struct tf_certmgr *cm = s->certmgr;
    if (!cm) {
        reply_error(reply, TF_ENOTFOUND, "on-demand issuance is off (no --allow or --ask)");
        return;
    }
    const char *name = act->name[0] ? act->name : NULL;
    int rc = 0;
    switch (act->op) {
    case TF_ADMIN_OP_CERT: {
        char *json = tf_certmgr_detail(cm, act->name);
        if (json)
            tf_admin_reply(reply, 200, json);
        else
            reply_error(reply, TF_ENOTFOUND, "nothing known about this name");
        free(json);
        return;
    }
    case TF_ADMIN_OP_RENEW:
        rc = tf_certmgr_renew_now(cm, act->name);
        if (rc == 0) {
            char *body = tf_asprintf("{\"name\":\"%s\",\"status\":\"renewing\"}", act->name);
            tf_admin_reply(reply, 202, body);
            free(body);
            return;
        }
        break;
    case TF_ADMIN_OP_FORGET:
        rc = tf_certmgr_forget(cm, act->name, on_action_done, reply);
        break;
    case TF_ADMIN_OP_UNPAUSE:
        rc = tf_certmgr_unpause(cm, act->name, on_action_done, reply);
        break;
    case TF_ADMIN_OP_REVOKE:
        TF_INFO("admin", "name=%s revocation asked by %s", act->name, act->peer);
        rc = tf_certmgr_revoke(cm, act->name, act->reason, on_action_done, reply);
        break;
    case TF_ADMIN_OP_ASK_PURGE: {
        size_t n = tf_certmgr_purge_ask(cm, name);
        char *body = tf_asprintf("{\"purged\":%zu}", n);
        tf_admin_reply(reply, 200, body);
        free(body);
        return;
    }
    }
    if (rc != 0)
        reply_error(reply, rc, refusal(rc));
}

void tf_server_stats_init(struct tf_server *s)
{
    tf_histogram_init(&s->stats.issue_seconds, tf_metrics_issuance_bounds,
                      tf_metrics_issuance_nbounds);
}

int tf_server_admin_token(const struct tf_config *cfg, char **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->admin_token_reads && !cfg->admin_token_file) {
        snprintf(err, errlen, "--admin-token-reads: needs --admin-token-file");
        return 2;
    }
    if (!cfg->admin_token_file)
        return 0;
    char why[400];
    if (tf_admin_token_read(cfg->admin_token_file, out, why, sizeof why) != 0) {
        snprintf(err, errlen, "--admin-token-file %s", why);
        return 2;
    }
    return 0;
}

void tf_server_admin_set_token(struct tf_server *s, char *token)
{
    if (s && s->admin)
        tf_admin_set_token(s->admin, token, s->cfg->admin_token_reads);
    if (token)
        OPENSSL_cleanse(token, strlen(token));
    free(token);
}

int tf_server_admin_start(struct tf_server *s)
{
    if (!s->cfg->admin)
        return 0;
    char err[512];
    char *token = NULL;
    int rc = tf_server_admin_token(s->cfg, &token, err, sizeof err);
    if (rc != 0) {
        fprintf(stderr, "tlsfront: %s\n", err);
        return rc;
    }
    struct tf_admin_hooks h = {s,          srv_healthy,    srv_ready, srv_metrics,
                               srv_certs_json, srv_storage_up, srv_action};
    s->admin = tf_admin_start(&s->loop, (const struct sockaddr *)&s->cfg->admin_addr, &h, err,
                              sizeof err);
    if (!s->admin) {
        TF_ERROR("server", "--admin %s: %s", s->cfg->admin, err);
        tf_server_admin_set_token(s, token);
        return 1;
    }
    tf_server_admin_set_token(s, token);
    struct sockaddr_storage ss;
    char name[INET6_ADDRSTRLEN + 8] = "?";
    if (tf_admin_address(s->admin, &ss) == 0) {
        char ip[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET6)
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof ip);
        else
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof ip);
        snprintf(name, sizeof name, ss.ss_family == AF_INET6 ? "[%s]:%d" : "%s:%d", ip,
                 ntohs(((struct sockaddr_in *)&ss)->sin_port));
    }
    TF_INFO("server", "admin endpoint on %s (actions %s)", name,
            s->cfg->admin_token_file ? "on, with the token" : "off: no --admin-token-file");
    return 0;
}

void tf_server_admin_stop(struct tf_server *s)
{
    tf_admin_close(s->admin, NULL, NULL);
    s->admin = NULL;
}
