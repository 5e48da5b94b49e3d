/*
 * server.c: the root object and the control loop. Start-up (certificates, TLS context,
 * ticket keys, listeners, workers), signals (SIGTERM/SIGINT/SIGUSR1 drain then stop, SIGHUP
 * reload),
 * ticket key rotation, and the snapshot hand-off to workers: every change builds complete
 * new immutable objects here and posts one reference to each worker. Never on the data path.
 */
#include "tlsfront/ctl/server.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/proxy/listener.h"
#include "tlsfront/base/log.h"
#include "tlsfront/ctl/redirect.h"
#include "tlsfront/proxy/handshake.h"

#include <openssl/conf.h>
#include <openssl/crypto.h>

#include <signal.h>
#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void broadcast_certs(struct tf_server *s)
{
    for (int i = 0; i < s->n_started; i++) {
        tf_certstore_ref(s->certs);
        if (!tf_worker_post_certs(&s->workers[i], s->certs))
            tf_certstore_unref(s->certs);
    }
}

static void broadcast_config(struct tf_server *s)
{
    for (int i = 0; i < s->n_started; i++) {
        tf_config_ref(s->cfg);
        SSL_CTX_up_ref(s->ssl_ctxs[i]);
        if (!tf_worker_post_config(&s->workers[i], s->cfg, s->ssl_ctxs[i])) {
            tf_config_unref(s->cfg);
            SSL_CTX_free(s->ssl_ctxs[i]);
        }
    }
}

static void ctxs_free(SSL_CTX **v, int n)
{
    for (int i = 0; v && i < n; i++)
        SSL_CTX_free(v[i]);
    free(v);
}

/* A TLS context for cfg per worker, each in that worker's library context; NULL (nothing
 * left allocated) when one fails, after logging why. */
static SSL_CTX **ctxs_new(const struct tf_server *s, const struct tf_config *cfg)
{
    SSL_CTX **v = tf_calloc((size_t)s->n_workers, sizeof *v);
    for (int i = 0; i < s->n_workers; i++) {
        v[i] = tf_handshake_ctx_new(cfg, s->libs[i]);
        if (!v[i]) {
            ctxs_free(v, s->n_workers);
            return NULL;
        }
    }
    return v;
}

/* One OpenSSL library context per worker (tlsfront/tls/tls.h says why). Each one reads the
 * OpenSSL configuration file the default context read (OPENSSL_CONF or the built-in path), so
 * the providers an operator configured there (a FIPS provider, say) apply to the workers too;
 * a missing file is not an error, one that does not load is. */
static int libs_new(struct tf_server *s)
{
    char *conf = CONF_get1_default_config_file();
    int rc = 0;
    s->libs = tf_calloc((size_t)s->n_workers, sizeof *s->libs);
    for (int i = 0; i < s->n_workers && rc == 0; i++) {
        s->libs[i] = OSSL_LIB_CTX_new();
        if (!s->libs[i]) {
            tf_log_ssl(TF_LOG_ERROR, "server", "a worker's OpenSSL library context");
            rc = 1;
        } else if (conf && access(conf, R_OK) == 0 &&
                   !OSSL_LIB_CTX_load_config(s->libs[i], conf)) {
            tf_log_ssl(TF_LOG_ERROR, "server", "OpenSSL configuration file");
            rc = 1;
        }
    }
    OPENSSL_free(conf);
    return rc;
}

static void broadcast_tickets(struct tf_server *s)
{
    for (int i = 0; i < s->n_started; i++) {
        tf_tickets_ref(s->tickets);
        if (!tf_worker_post_tickets(&s->workers[i], s->tickets))
            tf_tickets_unref(s->tickets);
    }
}

void tf_server_publish_certs(struct tf_server *s)
{
    struct tf_certstore *merged =
        s->certmgr ? tf_certstore_merge(s->static_certs, tf_certmgr_store(s->certmgr)) : NULL;
    if (!merged) {
        merged = s->static_certs;
        tf_certstore_ref(merged);
    }
    tf_certstore_unref(s->certs);
    s->certs = merged;
    broadcast_certs(s);
    tf_server_cache_prune(s);
}

void tf_server_publish_challenges(struct tf_server *s, struct tf_challenges *ch)
{
    for (int i = 0; i < s->n_started; i++) {
        tf_challenges_ref(ch);
        if (!tf_worker_post_challenges(&s->workers[i], ch))
            tf_challenges_unref(ch);
    }
}

/* --- the certificate manager's host (tlsfront/issue/certmgr.h) -------------------------- */

static void host_publish_certs(void *arg)
{
    tf_server_publish_certs(arg);
}

static void host_publish_challenges(void *arg, struct tf_challenges *ch)
{
    tf_server_publish_challenges(arg, ch);
}

static void host_answer(void *arg, int worker, const char *name, int alert,
                        enum tf_outcome outcome)
{
    struct tf_server *s = arg;
    if (worker >= 0 && worker < s->n_started)
        tf_worker_post_cert_done(&s->workers[worker], name, alert, outcome);
}

static void host_answer_challenge(void *arg, int worker, const char *name, bool ok)
{
    struct tf_server *s = arg;
    if (worker >= 0 && worker < s->n_started)
        tf_worker_post_challenge_done(&s->workers[worker], name, ok);
}

static bool host_serves(void *arg, const char *name)
{
    const struct tf_server *s = arg;
    return tf_certstore_lookup(s->certs, name) != NULL;
}

static void host_cache_replace(void *arg, struct tf_stubset *set, struct tf_stub *stub,
                               struct tf_cert *cert)
{
    tf_server_cache_replace(arg, set, stub, cert);
}

static bool host_has_static(void *arg, const char *name)
{
    const struct tf_server *s = arg;
    return tf_certstore_lookup(s->static_certs, name) != NULL;
}

static void broadcast(struct tf_server *s, enum tf_worker_msg type)
{
    for (int i = 0; i < s->n_started; i++)
        tf_worker_post_signal(&s->workers[i], type);
}

void tf_server_set_tickets(struct tf_server *s, struct tf_ticket_ring *r)
{
    tf_tickets_ref(r);
    tf_tickets_unref(s->tickets);
    s->tickets = r;
    broadcast_tickets(s);
}

static struct tf_ticket_ring *host_tickets(void *arg)
{
    struct tf_server *s = arg;
    return s->tickets;
}

static void host_set_tickets(void *arg, struct tf_ticket_ring *r)
{
    tf_server_set_tickets(arg, r);
}

static void on_ticket_timer(uv_timer_t *t)
{
    struct tf_server *s = t->data;
    if (s->certmgr && tf_certmgr_tickets_due(s->certmgr))
        return; /* cluster: the ring is shared through the store */
    struct tf_ticket_ring *r = tf_tickets_rotate(s->tickets);
    if (!r) {
        tf_log_ssl(TF_LOG_ERROR, "server", "ticket key rotation");
        return;
    }
    tf_tickets_unref(s->tickets);
    s->tickets = r;
    broadcast_tickets(s);
    TF_DEBUG("server", "session ticket keys rotated");
}

/* --- certificates ---------------------------------------------------------------------- */

static struct tf_certstore *load_static(const struct tf_config *cfg, char *err, size_t errlen)
{
    if (!cfg->certs_dir)
        return tf_certstore_new();
    int ok = 0, bad = 0;
    bool lazy = false;
    struct tf_certstore *st =
        tf_certstore_index_dir(cfg->certs_dir, cfg->cert_cache, &ok, &bad, &lazy, err, errlen);
    if (st && lazy)
        TF_INFO("server",
                "certificates: %d indexed from %s, %d skipped (more than --cert-cache %d: "
                "loaded on first use); index: %zu names, %zu bytes",
                ok, cfg->certs_dir, bad, cfg->cert_cache, tf_certstore_names(st),
                tf_certstore_index_bytes(st));
    else if (st)
        TF_INFO("server", "certificates: %d loaded from %s, %d skipped", ok, cfg->certs_dir, bad);
    return st;
}

/* --- reload (SIGHUP) ------------------------------------------------------------------- */

struct reload_job {
    uv_work_t work;
    struct tf_server *s;
    struct tf_config *cfg;
    struct tf_certstore *store;
    char *admin_token; /* read from --admin-token-file; owned */
    char err[512];
};

static void reload_work(uv_work_t *req)
{
    struct reload_job *j = req->data;
    j->store = load_static(j->cfg, j->err, sizeof j->err);
    if (j->store && tf_server_admin_token(j->cfg, &j->admin_token, j->err, sizeof j->err)) {
        tf_certstore_unref(j->store); /* a token file that cannot be read fails the reload */
        j->store = NULL;
    }
}

static void reload_done(uv_work_t *req, int status)
{
    struct reload_job *j = req->data;
    struct tf_server *s = j->s;
    s->reloading = false;
    SSL_CTX **ctxs = NULL;
    if (status != 0 || !j->store || s->draining) {
        if (!s->draining)
            TF_ERROR("server", "reload failed, keeping the running config: %s",
                     j->err[0] ? j->err : uv_strerror(status));
        goto out;
    }
    ctxs = ctxs_new(s, j->cfg);
    if (!ctxs) {
        TF_ERROR("server", "reload failed, keeping the running config: TLS context");
        goto out;
    }
    /* Commit config, TLS context and certificates together. */
    tf_config_unref(s->cfg);
    s->cfg = j->cfg;
    j->cfg = NULL;
    ctxs_free(s->ssl_ctxs, s->n_workers);
    s->ssl_ctxs = ctxs;
    tf_certstore_unref(s->static_certs);
    s->static_certs = j->store;
    j->store = NULL;
    tf_log_setup(s->cfg->log_level, s->cfg->log_json);
    tf_server_admin_set_token(s, j->admin_token);
    j->admin_token = NULL;
    if (s->certmgr)
        tf_certmgr_reconfigure(s->certmgr, s->cfg);
    else if (s->cfg->n_allow || s->cfg->ask)
        TF_WARN("server", "reload: needs a restart: --allow/--ask (on-demand issuance was off)");
    broadcast_config(s);
    tf_server_publish_certs(s);
    TF_INFO("server", "reloaded: %zu certificates, %zu names", tf_certstore_count(s->certs),
            tf_certstore_names(s->certs));
out:
    tf_server_admin_set_token(NULL, j->admin_token);
    tf_config_unref(j->cfg);
    tf_certstore_unref(j->store);
    free(j);
}

static void reload(struct tf_server *s)
{
    if (s->reloading || s->draining)
        return;
    struct tf_config_result res;
    memset(&res, 0, sizeof res);
    if (tf_config_load(s->argc, s->argv, s->envp, &res) != 0) {
        TF_ERROR("server", "reload failed, keeping the running config: %s", res.err);
        return;
    }
    char changed[400];
    if (tf_config_restart_diff(s->cfg, res.cfg, changed, sizeof changed) > 0)
        TF_WARN("server", "reload: needs a restart: %s (the running values stay)", changed);
    for (int i = 0; i < res.n_warn; i++)
        TF_WARN("config", "%s", res.warn[i]);
    struct reload_job *j = tf_calloc(1, sizeof *j);
    j->s = s;
    j->cfg = res.cfg;
    j->work.data = j;
    s->reloading = true;
    int r = uv_queue_work(&s->loop, &j->work, reload_work, reload_done);
    if (r != 0) {
        s->reloading = false;
        TF_ERROR("server", "reload: %s", uv_strerror(r));
        tf_config_unref(j->cfg);
        free(j);
    }
}

/* A message left in the mailbox at shutdown: NEED_CERT requests go unanswered (the workers
 * are stopping and close their connections). */
static void drop_message(struct tf_msg *m)
{
    tf_msg_free(m);
}

/* --- shutdown -------------------------------------------------------------------------- */

static void on_closed_noop(uv_handle_t *h)
{
    (void)h;
}

static void on_mbox_closed(struct tf_mailbox *mb)
{
    (void)mb;
}

/* Stop everything: workers close their connections and loops; control handles close. */
static void stop_all(struct tf_server *s)
{
    if (s->stopped)
        return;
    s->stopped = true;
    broadcast(s, TF_WMSG_STOP);
    uv_close((uv_handle_t *)&s->sig_term, on_closed_noop);
    uv_close((uv_handle_t *)&s->sig_int, on_closed_noop);
    uv_close((uv_handle_t *)&s->sig_hup, on_closed_noop);
    uv_close((uv_handle_t *)&s->sig_usr1, on_closed_noop);
    uv_close((uv_handle_t *)&s->ticket_timer, on_closed_noop);
    uv_close((uv_handle_t *)&s->grace_timer, on_closed_noop);
    tf_mailbox_close(&s->mbox, drop_message, on_mbox_closed);
    if (s->certmgr) {
        tf_certmgr_close(s->certmgr, NULL, NULL);
        s->certmgr = NULL;
    }
    tf_server_admin_stop(s);
    tf_redirect_stop(s);
}

static void on_grace_timer(uv_timer_t *t)
{
    struct tf_server *s = t->data;
    TF_WARN("server", "grace period over: closing the remaining connections");
    stop_all(s);
}

static void drain(struct tf_server *s, const char *why)
{
    if (s->draining) {
        TF_WARN("server", "%s again: stopping now", why);
        if (s->certmgr)
            tf_certmgr_drain(s->certmgr, 0);
        uv_timer_stop(&s->grace_timer);
        stop_all(s);
        return;
    }
    s->draining = true;
    TF_INFO("server", "%s: draining connections (grace %u ms)", why, s->cfg->grace_ms);
    uv_timer_stop(&s->ticket_timer);
    broadcast(s, TF_WMSG_DRAIN);
    if (s->certmgr)
        tf_certmgr_drain(s->certmgr, s->cfg->grace_ms);
    uv_timer_start(&s->grace_timer, on_grace_timer, s->cfg->grace_ms, 0);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct tf_server *s = h->data;
    if (signum == SIGHUP)
        reload(s);
    else
        drain(s, signum == SIGTERM ? "SIGTERM" : signum == SIGUSR1 ? "SIGUSR1" : "SIGINT");
}

static void on_message(struct tf_mailbox *mb, struct tf_msg *msg, void *owner)
{
    struct tf_server *s = owner;
    const struct tf_smsg *m = (const struct tf_smsg *)msg;
    if (msg->type == TF_SMSG_WORKER_IDLE && s->draining && ++s->workers_idle == s->n_workers) {
        TF_INFO("server", "all connections closed");
        uv_timer_stop(&s->grace_timer);
        stop_all(s);
    } else if (msg->type == TF_SMSG_NEED_CERT) {
        if (s->certmgr)
            tf_certmgr_need(s->certmgr, m->worker->id, m->name);
        else /* nobody can issue (shutting down): the held handshake fails at once */
            tf_worker_post_cert_done(m->worker, m->name, SSL_AD_INTERNAL_ERROR,
                                     TF_OUTCOME_SHUTTING_DOWN);
    } else if (msg->type == TF_SMSG_NEED_LOAD) {
        if (s->stopped)
            tf_worker_post_cert_done(m->worker, m->name, SSL_AD_INTERNAL_ERROR,
                                     TF_OUTCOME_SHUTTING_DOWN);
        else
            tf_server_need_load(s, m->worker->id, m->name);
    } else if (msg->type == TF_SMSG_NEED_CHALLENGE) {
        if (s->certmgr)
            tf_certmgr_need_challenge(s->certmgr, m->worker->id, m->name);
        else
            tf_worker_post_challenge_done(m->worker, m->name, false);
    }
    tf_msg_free(msg);
}

/* --- start-up -------------------------------------------------------------------------- */

static int bind_all(struct tf_server *s)
{
    const struct tf_config *cfg = s->cfg;
    s->fds = tf_calloc((size_t)s->n_workers, sizeof *s->fds);
    for (int w = 0; w < s->n_workers; w++) {
        s->fds[w] = tf_calloc((size_t)cfg->n_listen, sizeof(int));
        for (int l = 0; l < cfg->n_listen; l++)
            s->fds[w][l] = -1;
    }
    char err[256];
    for (int l = 0; l < cfg->n_listen && !cfg->takeover; l++) {
        if (tf_listener_probe(&cfg->listen[l], err, sizeof err) != 0) {
            fprintf(stderr, "tlsfront: %s\n", err);
            return 2;
        }
    }
    int *tmp = tf_calloc((size_t)s->n_workers, sizeof(int));
    for (int l = 0; l < cfg->n_listen; l++) {
        if (tf_listener_bind(&cfg->listen[l], s->n_workers, tmp, err, sizeof err) != 0) {
            TF_ERROR("server", "%s", err);
            free(tmp);
            return 1;
        }
        for (int w = 0; w < s->n_workers; w++)
            s->fds[w][l] = tmp[w];
    }
    free(tmp);
    return 0;
}

static int uv_fileno_of(uv_tcp_t *t)
{
    uv_os_fd_t fd = -1;
    uv_fileno((uv_handle_t *)t, &fd);
    return fd;
}

static int init_control(struct tf_server *s)
{
    int r = uv_loop_init(&s->loop);
    if (r != 0)
        return r;
    r = tf_mailbox_init(&s->mbox, &s->loop, on_message, s);
    if (r != 0) {
        uv_loop_close(&s->loop); /* no handle was made: it closes at once */
        return r;
    }
    /* SIGUSR1 is HAProxy's graceful stop: the same drain as SIGTERM. */
    uv_signal_t *sigs[] = {&s->sig_term, &s->sig_int, &s->sig_hup, &s->sig_usr1};
    int nums[] = {SIGTERM, SIGINT, SIGHUP, SIGUSR1};
    for (int i = 0; i < 4; i++) {
        uv_signal_init(&s->loop, sigs[i]);
        sigs[i]->data = s;
    }
    uv_timer_init(&s->loop, &s->ticket_timer);
    uv_timer_init(&s->loop, &s->grace_timer);
    s->ticket_timer.data = s->grace_timer.data = s;
    s->loop_ready = true; /* from here tf_server_free closes every handle above */
    for (int i = 0; i < 4; i++) {
        r = uv_signal_start(sigs[i], on_signal, nums[i]);
        if (r != 0)
            return r;
    }
    uint64_t every = (uint64_t)s->cfg->ticket_rotate_s * 1000;
    return uv_timer_start(&s->ticket_timer, on_ticket_timer, every, every);
}

int tf_server_start(struct tf_server *s, struct tf_config *cfg, int argc, char **argv, char **envp)
{
    s->argc = argc;
    s->argv = argv;
    s->envp = envp;
    s->cfg = cfg;
    tf_config_ref(cfg);
    s->n_workers = cfg->workers;
    tf_server_stats_init(s); /* workers observe into the histograms from their first handshake */
    tf_server_cache_init(s);
    char err[512] = "";
    s->static_certs = load_static(cfg, err, sizeof err);
    if (!s->static_certs) {
        fprintf(stderr, "tlsfront: --certs: %s\n", err);
        return 2;
    }
    s->certs = s->static_certs;
    tf_certstore_ref(s->certs);
    if (cfg->default_cert && !tf_certstore_lookup(s->certs, cfg->default_cert))
        TF_WARN("server", "--default-cert %s: no loaded certificate covers it", cfg->default_cert);
    if (libs_new(s) != 0)
        return 1;
    s->ssl_ctxs = ctxs_new(s, cfg);
    s->tickets = tf_tickets_rotate(NULL);
    if (!s->ssl_ctxs || !s->tickets)
        return 1;
    int rc = bind_all(s);
    if (rc != 0)
        return rc;
    int r = init_control(s);
    if (r != 0) {
        TF_ERROR("server", "control loop: %s", uv_strerror(r));
        return 1;
    }
    if (cfg->n_allow || cfg->ask) {
        struct tf_certmgr_host host = {
            .loop = &s->loop,
            .n_workers = s->n_workers,
            .issue_seconds = &s->stats.issue_seconds,
            .stats = &s->stats,
            .arg = s,
            .publish_certs = host_publish_certs,
            .publish_challenges = host_publish_challenges,
            .answer = host_answer,
            .answer_challenge = host_answer_challenge,
            .serves = host_serves,
            .has_static = host_has_static,
            .tickets = host_tickets,
            .set_tickets = host_set_tickets,
            .cache_replace = host_cache_replace,
        };
        rc = tf_certmgr_start(&host, cfg, &s->certmgr, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "tlsfront: %s\n", err);
            return rc;
        }
    }
    s->workers = tf_calloc_aligned((size_t)s->n_workers, sizeof *s->workers,
                                   alignof(struct tf_worker));
    for (int i = 0; i < s->n_workers; i++) {
        tf_config_ref(cfg);
        SSL_CTX_up_ref(s->ssl_ctxs[i]);
        tf_certstore_ref(s->certs);
        tf_tickets_ref(s->tickets);
        s->workers[i].lib = s->libs[i];
        s->workers[i].n_workers = s->n_workers;
        r = tf_worker_start(&s->workers[i], &s->stats, &s->mbox, i, s->fds[i], cfg->n_listen, cfg,
                            s->ssl_ctxs[i], s->certs, s->tickets);
        if (r != 0) {
            TF_ERROR("server", "worker %d: %s", i, uv_strerror(r));
            return 1;
        }
        s->n_started++;
    }
    rc = tf_server_admin_start(s);
    if (rc != 0)
        return rc;
    /* Logged once every socket listens: tests and operators may connect from this line on. */
    for (int l = 0; l < cfg->n_listen; l++) {
        char name[80];
        tf_listener_name(uv_fileno_of(&s->workers[0].listeners[l]), name, sizeof name);
        TF_INFO("server", "listening on %s (%d workers)", name, s->n_workers);
        if (cfg->listen[l].proxy && cfg->n_proxy_from == 0)
            TF_WARN("server", "listener %s takes PROXY headers from any source: anyone who can "
                              "reach it can forge the client address (set --proxy-from)",
                    name);
    }
    return tf_redirect_start(s);
}

int tf_server_run(struct tf_server *s)
{
    uv_run(&s->loop, UV_RUN_DEFAULT);
    TF_INFO("server", "stopped");
    return s->exit_code;
}

void tf_server_free(struct tf_server *s)
{
    if (s->loop_ready) {
        stop_all(s); /* after a failed start: nothing ran yet */
        uv_run(&s->loop, UV_RUN_DEFAULT);
        /* Mailboxes go only now that no thread can post: workers post to s->mbox until
         * joined, and the control loop (which has ended) was the only poster to theirs. */
        for (int i = 0; i < s->n_started; i++)
            tf_worker_join(&s->workers[i]);
        tf_mailbox_destroy(&s->mbox);
        int r = uv_loop_close(&s->loop);
        if (r != 0)
            TF_WARN("server", "control loop close: %s", uv_strerror(r));
    }
    for (int i = 0; s->fds && i < s->n_workers; i++) {
        for (int l = 0; l < s->cfg->n_listen; l++)
            if (s->fds[i][l] >= 0)
                close(s->fds[i][l]);
        free(s->fds[i]);
    }
    free(s->fds);
    free(s->workers);
    tf_server_cache_free(s);
    tf_certstore_unref(s->certs);
    tf_certstore_unref(s->static_certs);
    tf_tickets_unref(s->tickets);
    ctxs_free(s->ssl_ctxs, s->n_workers);
    tf_config_unref(s->cfg);
    /* Last: every context built in them (listeners', certificates') is gone now. */
    for (int i = 0; s->libs && i < s->n_workers; i++)
        OSSL_LIB_CTX_free(s->libs[i]);
    free(s->libs);
}
