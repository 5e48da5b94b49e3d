/*
 * worker.c: a worker thread: its loop, its listening sockets (SO_REUSEPORT copies made by
 * the server), its snapshot references, and the messages from the control loop that replace
 * them, drain it or stop it. Owns every connection accepted here; never touches another
 * worker's objects. Its heartbeat also gives free heap back after a burst of held
 * handshakes (maybe_trim), never from the per-connection path.
 */
#include "tlsfront/proxy/worker.h"
#include "backend_pool_int.h"
#include "conn_int.h"
#include "tlsfront/base/log.h"

#include <openssl/ssl.h>
#include <assert.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_connection(uv_stream_t *listener, int status)
{
    struct tf_worker *w = listener->data;
    if (status != 0) {
        TF_WARN("worker", "worker=%d accept: %s", w->id, uv_strerror(status));
        return;
    }
    tf_conn_accept(w, listener);
}

static void on_listener_closed(uv_handle_t *h)
{
    struct tf_worker *w = h->data;
    w->listeners_open--;
}

static void close_listeners(struct tf_worker *w)
{
    for (int i = 0; i < w->n_listeners; i++) {
        uv_handle_t *h = (uv_handle_t *)&w->listeners[i];
        if (!uv_is_closing(h))
            uv_close(h, on_listener_closed);
    }
}

static void report_idle(struct tf_worker *w)
{
    struct tf_smsg *m = (struct tf_smsg *)tf_msg_new(sizeof *m, TF_SMSG_WORKER_IDLE);
    m->worker = w;
    if (!tf_mailbox_post(w->ctl, &m->hdr))
        tf_msg_free(&m->hdr);
}

void tf_worker_conn_gone(struct tf_worker *w)
{
    if (w->draining && w->n_conns == 0 && !w->stopping)
        report_idle(w);
}

static void on_mailbox_closed(struct tf_mailbox *mb)
{
    (void)mb;
}

/* A message never delivered: drop the references its payload carries, then free it. */
static void drop_payload(struct tf_msg *msg)
{
    struct tf_wmsg *m = (struct tf_wmsg *)msg;
    switch (msg->type) {
    case TF_WMSG_CONFIG:
        tf_config_unref(m->u.config.cfg);
        SSL_CTX_free(m->u.config.ctx);
        break;
    case TF_WMSG_CERTS: tf_certstore_unref(m->u.certs); break;
    case TF_WMSG_TICKETS: tf_tickets_unref(m->u.tickets); break;
    case TF_WMSG_CHALLENGES: tf_challenges_unref(m->u.challenges); break;
    case TF_WMSG_RETIRE: tf_certcache_retired_release(m->u.retired); break;
    default: break;
    }
    tf_msg_free(msg);
}

static void stop(struct tf_worker *w)
{
    w->stopping = true;
    uv_close((uv_handle_t *)&w->heartbeat, NULL);
    close_listeners(w);
    tf_pool_close(w->pool);
    tf_deadlines_close(w->deadlines);
    for (struct tf_conn *c = w->conns; c; c = c->next)
        tf_conn_close(c, w->draining ? TF_CONN_END_GRACE_EXPIRED : TF_CONN_END_SHUTDOWN);
    tf_mailbox_close(&w->mbox, drop_payload, on_mailbox_closed);
}

/* The control loop answered for name: resume (err 0) or fail (err = alert) every connection
 * held for it. The certificate store update, if any, arrived before this message. */
static void cert_done(struct tf_worker *w, const char *name, int alert,
                      enum tf_outcome outcome, bool challenge)
{
    struct tf_conn *c = w->held;
    while (c) {
        struct tf_conn *next = c->held_next;
        if (strcmp(c->sni, name) == 0 && c->hold_challenge == challenge) {
            /* unhold may close c and others; restart the scan rather than trust next. */
            tf_conn_unhold(c, alert == 0, alert, tf_conn_end_from_outcome(outcome));
            next = w->held;
        }
        c = next;
    }
}

static void on_message(struct tf_mailbox *mb, struct tf_msg *msg, void *owner)
{
    (void)mb;
    struct tf_worker *w = owner;
    struct tf_wmsg *m = (struct tf_wmsg *)msg;
    switch (msg->type) {
    case TF_WMSG_CONFIG: {
        struct tf_config *old = w->cfg;
        SSL_CTX *old_ctx = w->ssl_ctx;
        w->cfg = m->u.config.cfg;
        w->ssl_ctx = m->u.config.ctx;
        tf_config_unref(old); /* live connections hold their own reference */
        SSL_CTX_free(old_ctx);
        break;
    }
    case TF_WMSG_CERTS: {
        struct tf_certstore *old = w->certs;
        w->certs = m->u.certs;
        tf_certstore_unref(old);
        break;
    }
    case TF_WMSG_TICKETS: {
        struct tf_ticket_ring *old = w->tickets;
        w->tickets = m->u.tickets;
        tf_tickets_unref(old);
        break;
    }
    case TF_WMSG_CHALLENGES: {
        struct tf_challenges *old = w->challenges;
        w->challenges = m->u.challenges;
        tf_challenges_unref(old);
        break;
    }
    case TF_WMSG_RETIRE:
        /* A mailbox callback runs between ClientHello callbacks: this worker can no longer
         * be reading a pointer to them. */
        tf_certcache_retired_release(m->u.retired);
        break;
    case TF_WMSG_CERT_DONE:
        cert_done(w, m->u.done.name, m->u.done.alert, m->u.done.outcome, false);
        break;
    case TF_WMSG_CHALLENGE_DONE:
        cert_done(w, m->u.done.name, m->u.done.alert, m->u.done.outcome, true);
        break;
    case TF_WMSG_DRAIN:
        w->draining = true;
        close_listeners(w);
        tf_pool_close(w->pool); /* and connections that end from now on are not pooled */
        if (w->n_conns == 0)
            report_idle(w);
        break;
    case TF_WMSG_STOP:
        stop(w);
        break;
    default:
        break;
    }
    tf_msg_free(msg);
}

/* A trim follows at least TRIM_MIN_HELD ended holds, once none has ended for a whole
 * heartbeat and none is held, and at most once per TRIM_INTERVAL_MS. */
#define TRIM_MIN_HELD 32
#define TRIM_INTERVAL_MS 5000

#ifdef __GLIBC__
/* glibc keeps what a burst freed in its arenas (the worker's own, where the burst's SSL
 * objects and handshake buffers lived, and the control loop's): malloc_trim(0) walks every
 * arena and gives its free pages back. Returns true if it ran. */
static bool release_free_heap(void)
{
    malloc_trim(0);
    return true;
}
#else
static bool release_free_heap(void)
{
    return false; /* other C libraries: nothing portable to call */
}
#endif

/* On the heartbeat, never per connection: after a burst of held handshakes (an on-demand
 * flood of names the gate denies) has ended, return the memory it freed, so RSS does not
 * stay at the burst's peak. While holds keep ending every second the burst is not over
 * and nothing is trimmed; a trim costs a walk of the heap, hence the rate limit. */
static void maybe_trim(struct tf_worker *w)
{
    bool quiet = w->n_held == 0 && w->held_ended == w->held_ended_tick;
    w->held_ended_tick = w->held_ended;
    uint64_t now = uv_now(&w->loop);
    if (!quiet || w->held_ended < TRIM_MIN_HELD || now - w->trim_ms < TRIM_INTERVAL_MS)
        return;
    w->held_ended = w->held_ended_tick = 0;
    w->trim_ms = now;
    if (release_free_heap())
        TF_WSTAT_ADD(&w->ws, malloc_trims, 1);
}

static void on_heartbeat(uv_timer_t *t)
{
    struct tf_worker *w = t->data;
    atomic_store_explicit(&w->heartbeat_ms, tf_mono_ms(), memory_order_relaxed);
    maybe_trim(w);
}

static void worker_main(void *arg)
{
    struct tf_worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

int tf_worker_start(struct tf_worker *w, struct tf_stats *stats, struct tf_mailbox *ctl, int id,
                    int *fds, int n_fds,
                    struct tf_config *cfg, SSL_CTX *ctx, struct tf_certstore *certs,
                    struct tf_ticket_ring *tickets)
{
    w->stats = stats;
    tf_wstats_init(&w->ws);
    w->ctl = ctl;
    w->id = id;
    w->cfg = cfg;
    w->ssl_ctx = ctx;
    w->tx.buf = w->txbuf;
    w->tx.cap = sizeof w->txbuf;
    w->tx.len = 0;
    w->certs = certs;
    w->tickets = tickets;
    int r = uv_loop_init(&w->loop);
    if (r != 0)
        return r;
    r = tf_mailbox_init(&w->mbox, &w->loop, on_message, w);
    if (r != 0)
        return r;
    uv_timer_init(&w->loop, &w->heartbeat);
    w->heartbeat.data = w;
    atomic_store(&w->heartbeat_ms, tf_mono_ms());
    uv_timer_start(&w->heartbeat, on_heartbeat, 1000, 1000);
    uv_unref((uv_handle_t *)&w->heartbeat);
    w->pool = tf_pool_new(&w->loop, &w->ws);
    w->deadlines = tf_deadlines_new(&w->loop);
    w->listeners = tf_calloc((size_t)n_fds, sizeof *w->listeners);
    w->listener_proxy = tf_calloc((size_t)n_fds, sizeof *w->listener_proxy);
    w->n_listeners = n_fds;
    /* Listener changes need a restart (see reload), so the start-up config decides. */
    for (int i = 0; i < n_fds && i < cfg->n_listen; i++)
        w->listener_proxy[i] = cfg->listen[i].proxy;
    for (int i = 0; i < n_fds; i++) {
        uv_tcp_t *t = &w->listeners[i];
        uv_tcp_init(&w->loop, t);
        t->data = w;
        w->listeners_open++;
        r = uv_tcp_open(t, fds[i]);
        fds[i] = -1; /* the handle owns the socket now, even on failure */
        if (r == 0)
            r = uv_listen((uv_stream_t *)t, cfg->backlog, on_connection);
        if (r != 0)
            return r;
    }
    return uv_thread_create(&w->thread, worker_main, w);
}

static struct tf_wmsg *wmsg_new(enum tf_worker_msg type)
{
    return (struct tf_wmsg *)tf_msg_new(sizeof(struct tf_wmsg), (int)type);
}

/* Post m; on refusal free it (its references are the caller's again) and say so. */
static bool post(struct tf_worker *w, struct tf_wmsg *m)
{
    if (tf_mailbox_post(&w->mbox, &m->hdr))
        return true;
    tf_msg_free(&m->hdr);
    return false;
}

static void post_done(struct tf_worker *w, enum tf_worker_msg type, const char *name,
                      int alert, enum tf_outcome outcome)
{
    struct tf_wmsg *m = wmsg_new(type);
    snprintf(m->u.done.name, sizeof m->u.done.name, "%s", name);
    m->u.done.alert = alert;
    m->u.done.outcome = outcome;
    post(w, m); /* refused: the worker is stopping, its held connections close anyway */
}

void tf_worker_post_cert_done(struct tf_worker *w, const char *name, int alert,
                              enum tf_outcome outcome)
{
    post_done(w, TF_WMSG_CERT_DONE, name, alert, outcome);
}

void tf_worker_post_challenge_done(struct tf_worker *w, const char *name, bool found)
{
    post_done(w, TF_WMSG_CHALLENGE_DONE, name, found ? 0 : SSL_AD_NO_APPLICATION_PROTOCOL,
              found ? TF_OUTCOME_READY : TF_OUTCOME_ACME_TLS_NO_CHALLENGE);
}

bool tf_worker_post_config(struct tf_worker *w, struct tf_config *cfg, SSL_CTX *ctx)
{
    struct tf_wmsg *m = wmsg_new(TF_WMSG_CONFIG);
    m->u.config.cfg = cfg;
    m->u.config.ctx = ctx;
    return post(w, m);
}

bool tf_worker_post_certs(struct tf_worker *w, struct tf_certstore *certs)
{
    struct tf_wmsg *m = wmsg_new(TF_WMSG_CERTS);
    m->u.certs = certs;
    return post(w, m);
}

bool tf_worker_post_tickets(struct tf_worker *w, struct tf_ticket_ring *tickets)
{
    struct tf_wmsg *m = wmsg_new(TF_WMSG_TICKETS);
    m->u.tickets = tickets;
    return post(w, m);
}

bool tf_worker_post_challenges(struct tf_worker *w, struct tf_challenges *challenges)
{
    struct tf_wmsg *m = wmsg_new(TF_WMSG_CHALLENGES);
    m->u.challenges = challenges;
    return post(w, m);
}

bool tf_worker_post_retired(struct tf_worker *w, struct tf_certcache_retired *r)
{
    struct tf_wmsg *m = wmsg_new(TF_WMSG_RETIRE);
    m->u.retired = r;
    return post(w, m);
}

bool tf_worker_post_signal(struct tf_worker *w, enum tf_worker_msg type)
{
    assert(type == TF_WMSG_DRAIN || type == TF_WMSG_STOP);
    return post(w, wmsg_new(type));
}

/* After the thread ended and the control loop stopped running: the loop has no handles
 * left; release the mailbox and the snapshots. */
void tf_worker_join(struct tf_worker *w)
{
    uv_thread_join(&w->thread);
    int r = uv_loop_close(&w->loop);
    if (r != 0)
        TF_WARN("worker", "worker=%d loop close: %s", w->id, uv_strerror(r));
    /* The control loop, the only poster here, has ended too (see tf_server_free). */
    tf_mailbox_destroy(&w->mbox);
    free(w->listeners);
    free(w->listener_proxy);
    tf_pool_free(w->pool);
    tf_deadlines_free(w->deadlines);
    tf_config_unref(w->cfg);
    SSL_CTX_free(w->ssl_ctx);
    tf_certstore_unref(w->certs);
    tf_tickets_unref(w->tickets);
    tf_challenges_unref(w->challenges);
}
