/*
 * certmgr_cluster.c: the certificate manager's side of a store shared by several nodes
 * (include/storage_cluster.h; docs/cluster.md). On the control loop:
 *  - challenges: a challenge this node publishes is written to the store (sealed, with a
 *    TTL) and announced before the CA is asked to validate; every node installs announced
 *    challenges in its workers' snapshot, and a node asked for acme-tls/1 for a name it has
 *    no challenge for looks it up in the store before refusing; HTTP-01 challenges are
 *    shared the same way, keyed by token (certmgr_http01.c holds them);
 *  - certificates: a certificate this node obtained is announced; every node loads it from
 *    the store and hands it to its workers; a first connection for an unknown name checks
 *    the store before the gate and the order (the store is the source of truth);
 *  - operator's actions (admin API): a forget (or revoke), unpause or ask-cache purge done on
 *    one node is announced; every other node drops the name from memory (its storage half
 *    was done once, by the asked node), clears its backoff, or drops its cached answers;
 *  - after a gap in the subscription, every stored certificate is reloaded, and what the
 *    missed announcements would have removed is removed: names no longer stored, and
 *    challenges no longer stored.
 * One order per name across the cluster is the ACME client's order lock (a leased storage
 * lock). It never blocks the loop, never puts the store on the handshake path of a name the
 * workers already have, and never logs key authorizations.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_cluster.h"

#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CM_MOD "cluster"

/* One asynchronous step for a name: an announcement being handled, a worker's challenge
 * lookup, a demand's storage check, or a challenge being shared. Freed by its callback. */
struct cmc_req {
    struct tf_certmgr *cm; /* borrowed: the storage (and so this callback) ends first */
    char *name;
    int worker;            /* challenge lookup: the worker to answer, else -1 */
    struct cm_demand *d;   /* storage check: the demand */
    bool resync_read;      /* a resync's read in full (counted in resync_inflight) */
    char *msg;             /* challenge: the announcement sent once the value is written */
    void (*done)(void *ctx);
    void *ctx;
    uv_timer_t defer;      /* challenge: done from a loop callback when the store refused */
};

static struct cmc_req *req_new(struct tf_certmgr *cm, const char *name)
{
    struct cmc_req *r = tf_calloc(1, sizeof(*r));
    r->cm = cm;
    r->name = tf_strdup(name);
    r->worker = -1;
    return r;
}

static void req_free(struct cmc_req *r)
{
    free(r->name);
    free(r->msg);
    free(r);
}

static char *chal_key(const char *name)
{
    return tf_asprintf("chal/%s", name);
}

static void on_published_noop(int err, void *arg)
{
    (void)arg;
    if (err)
        TF_DEBUG(CM_MOD, "announcement not sent: %s", tf_strerror(err));
}

/* "KIND NODE NAME", or "KIND NODE" when name is NULL. */
static void announce(struct tf_certmgr *cm, const char *kind, const char *name)
{
    char msg[TF_STORAGE_MSG_MAX];
    int n = snprintf(msg, sizeof(msg), "%s %s%s%s", kind, cm->node_id, name ? " " : "",
                     name ? name : "");
    const struct tf_storage_cluster_ops *ops = tf_storage_cluster(cm->storage);
    if (n > 0 && (size_t)n < sizeof(msg))
        ops->publish(cm->storage, msg, (size_t)n, on_published_noop, NULL);
}

void cm_cluster_announce_cert(struct tf_certmgr *cm, const char *name)
{
    if (cm->cluster)
        announce(cm, "cert", name);
}

void cm_cluster_announce_action(struct tf_certmgr *cm, const char *kind, const char *name)
{
    if (cm->cluster && !cm->closing)
        announce(cm, kind, name);
}

/* Another node's operator action: the in-memory half here. */
static void on_action(struct tf_certmgr *cm, const char *kind, const char *name)
{
    if (strcmp(kind, "forget") == 0) {
        bool had = cm_forget_memory(cm, name);
        TF_INFO(CM_MOD, "name=%s forgotten by another node (served here: %s)", name,
                had ? "yes" : "no");
    } else if (strcmp(kind, "unpause") == 0) {
        bool had = cm_clear_backoff(cm, name);
        TF_INFO(CM_MOD, "name=%s unpaused by another node (backoff here: %s)", name,
                had ? "cleared" : "none");
    } else if (strcmp(kind, "ask-purge") == 0) {
        cm_purge_ask_local(cm, name[0] ? name : NULL);
    }
}

/* ---- certificates ---------------------------------------------------------------------- */

/* Take a stored certificate unless it is the one we already serve. True when taken: staged
 * (a resync publishes its batch once, at its end), else published now. */
static bool take_stored(struct tf_certmgr *cm, const char *name, struct tf_cert *cert,
                        const char *ca_id, bool staged)
{
    int ca = cm_ca_index(cm, ca_id, name);
    struct cm_managed *m = cm_find_managed(cm, name);
    if (m && cm_same_cert(cm, m, cert))
        return false;
    if (staged)
        cm_stage_cert(cm, name, cert, true, ca, true);
    else
        cm_publish_cert_ca(cm, name, cert, ca, true);
    return true;
}

static void resync_later(struct tf_certmgr *cm);
static void resync_read_next(struct tf_certmgr *cm);

/* The store did not answer (its connection down or too slow), rather than answer "none". */
static bool store_unavailable(int err)
{
    return err == UV_ECONNREFUSED || err == UV_ECONNRESET || err == UV_ENOTCONN ||
           err == UV_ETIMEDOUT || err == UV_EPIPE || err == TF_ETIMEDOUT;
}

static void on_announced_cert(int err, struct tf_cert *cert, const char *ca_id, void *arg)
{
    struct cmc_req *r = arg;
    struct tf_certmgr *cm = r->cm;
    if (err) {
        bool later = store_unavailable(err) && !cm->closing;
        TF_WARN(CM_MOD, "name=%s announced certificate not loaded: %s%s", r->name,
                tf_strerror(err), later ? " (caught up when the storage answers)" : "");
        /* An announcement the store could not serve is as good as missed: a gap. */
        if (later)
            resync_later(cm);
    } else if (!cm->closing && take_stored(cm, r->name, cert, ca_id, false)) {
        cm->stats.cluster_certs_received++;
        TF_INFO(CM_MOD, "name=%s certificate from another node (serial %s)", r->name,
                cert->serial);
        /* Workers waiting for the name (our own order waits on the lock) resume now. */
        struct cm_demand *d = cm_find_demand(cm, r->name);
        for (int i = 0; d && i < cm->host.n_workers; i++)
            if (d->waiting[i]) {
                d->waiting[i] = false;
                cm_answer(cm, i, r->name, 0, TF_OUTCOME_READY);
            }
    }
    tf_cert_unref(cert);
    if (r->resync_read) {
        cm->resync_inflight--;
        resync_read_next(cm);
    }
    req_free(r);
}

static void on_stored_checked(int err, struct tf_cert *cert, const char *ca_id, void *arg)
{
    struct cmc_req *r = arg;
    struct cm_demand *d = r->d;
    struct tf_certmgr *cm = r->cm;
    req_free(r);
    if (cm->closing) {
        cm_demand_finish(d, SSL_AD_INTERNAL_ERROR, TF_OUTCOME_SHUTTING_DOWN);
    } else if (err == 0 && cert->not_after > tf_wall_now()) {
        TF_INFO(CM_MOD, "name=%s certificate found in the shared storage (serial %s)", d->name,
                cert->serial);
        take_stored(cm, d->name, cert, ca_id, false);
        cm_demand_finish(d, 0, TF_OUTCOME_READY);
    } else if (err == 0 || err == UV_ENOENT || err == TF_EINVAL) {
        cm_gate_then_order(d); /* none (or none usable): order it, under the order lock */
    } else {
        cm->stats.refused_storage++;
        TF_WARN(CM_MOD, "name=%s not ordered: the storage is unavailable (%s)", d->name,
                tf_strerror(err));
        cm_demand_finish(d, SSL_AD_UNRECOGNIZED_NAME, TF_OUTCOME_STORAGE_UNAVAILABLE);
    }
    tf_cert_unref(cert);
}

void cm_cluster_check_stored(struct cm_demand *d)
{
    struct cmc_req *r = req_new(d->cm, d->name);
    r->d = d;
    int rc = tf_acme_store_load_meta(d->cm->storage, d->name, on_stored_checked, r);
    if (rc) {
        req_free(r);
        cm_gate_then_order(d);
    }
}

/* One stored name of a resync. Not indexing (meta NULL): cert is decoded, taken unless it is
 * the one served. Indexing (a lazy store: only meta.json was read): a name whose metadata
 * matches what is held here costs nothing more; one that changed, or is new here, is read
 * in full, as the announcement that was missed would have had it read; a name decoded for
 * want of a usable meta.json (cert set) is taken as when not indexing. */
static void on_resync_each(const char *name, struct tf_cert *cert,
                           const struct tf_acme_store_meta *meta, const char *ca_id,
                           const char *cert_id, void *arg)
{
    struct tf_certmgr *cm = arg;
    struct cm_managed *m = cm_find_managed(cm, name);
    if (m)
        m->seen_gen = cm->resync_gen;
    if (cm->closing) {
        tf_cert_unref(cert);
        return;
    }
    if (cert) {
        take_stored(cm, name, cert, ca_id, true);
    } else if (!m || !cm_same_meta(cm, m, meta, cert_id)) {
        cm->resync_reads++;
        struct cm_queued *q = tf_calloc(1, sizeof *q); /* in any order */
        q->name = tf_strdup(name);
        q->next = cm->resync_q;
        cm->resync_q = q;
        resync_read_next(cm);
    }
    tf_cert_unref(cert);
}

/* Reads in full that a resync queued, CM_RESYNC_READS at a time: after a long gap many
 * names may have changed, and each read holds its texts and then a decoded certificate. */
#define CM_RESYNC_READS 32

static void resync_read_next(struct tf_certmgr *cm)
{
    while (cm->resync_q && cm->resync_inflight < CM_RESYNC_READS && !cm->closing) {
        struct cm_queued *q = cm->resync_q;
        cm->resync_q = q->next;
        struct cmc_req *r = req_new(cm, q->name);
        r->resync_read = true;
        free(q->name);
        free(q);
        if (tf_acme_store_load_meta(cm->storage, r->name, on_announced_cert, r) == 0)
            cm->resync_inflight++;
        else
            req_free(r);
    }
}

/* Also when a resync starts: its own listing queues again what still differs. */
void cm_cluster_free(struct tf_certmgr *cm)
{
    for (struct cm_queued *q = cm->resync_q, *n; q; q = n) {
        n = q->next;
        free(q->name);
        free(q);
    }
    cm->resync_q = NULL;
}

static void catch_up(struct tf_certmgr *cm, bool listed);
static void start_resync(struct tf_certmgr *cm);

static void on_resync_retry(uv_timer_t *t)
{
    struct tf_certmgr *cm = t->data;
    if (!cm->closing && !cm->resyncing)
        start_resync(cm);
}

/* The store could not be listed (its connection may still be coming back while the
 * subscription already is): the resync is tried again after a backoff of 250 ms doubling to
 * 10 s, until one succeeds; only then is the catch-up run, on a complete listing. */
static void retry_resync(struct tf_certmgr *cm, int err)
{
    uint32_t delay = cm->resync_backoff_ms ? cm->resync_backoff_ms : 250;
    cm->resync_backoff_ms = TF_MIN(delay * 2, 10000);
    if (err)
        TF_WARN(CM_MOD, "reloading stored certificates after a gap: %s; again in %u ms",
                tf_strerror(err), delay);
    else
        TF_INFO(CM_MOD, "an announcement was missed: stored certificates reloaded in %u ms",
                delay);
    uv_timer_start(&cm->resync_timer, on_resync_retry, delay, 0);
}

static void on_resync_done(int err, const struct tf_acme_store_counts *n, void *arg)
{
    struct tf_certmgr *cm = arg;
    cm->resyncing = false;
    if (cm->closing)
        return;
    if (err) { /* after a backoff, even with another gap meanwhile: it lists anyway */
        cm_publish_staged(cm); /* what was read before the failure */
        retry_resync(cm, err);
        return;
    }
    if (cm->resync_again) { /* the listing may predate the later gap: list again */
        cm_publish_staged(cm);
        start_resync(cm);
        return;
    }
    if (cm->resync_backoff_ms) /* the ring's fetch at the gap failed as the reload did */
        cm_tickets_sync(cm, false);
    cm->resync_backoff_ms = 0;
    if (n->lazy)
        TF_INFO(CM_MOD, "re-indexed stored certificates after a gap: %d indexed, %d skipped, "
                        "%u changed or new read in full",
                n->loaded, n->skipped, cm->resync_reads);
    else
        TF_INFO(CM_MOD, "reloaded stored certificates after a gap: %d loaded, %d skipped",
                n->loaded, n->skipped);
    cm_publish_staged(cm);
    catch_up(cm, true);
}

/* A resync soon (a missed announcement): after the current one, or on the retry timer. */
static void resync_later(struct tf_certmgr *cm)
{
    if (cm->resyncing)
        cm->resync_again = true;
    else if (cm->loaded && !uv_is_active((uv_handle_t *)&cm->resync_timer))
        retry_resync(cm, 0);
}

/* Reload every stored certificate, or with a large store index every stored name again:
 * each one seen is marked with a new generation, so the catch-up knows which names held
 * here the listing no longer showed. */
static void start_resync(struct tf_certmgr *cm)
{
    uv_timer_stop(&cm->resync_timer);
    cm->resync_again = false;
    cm->resync_gen++;
    cm->resync_reads = 0;
    cm_cluster_free(cm); /* reads an earlier resync had yet to start */
    /* Indexed as at start-up once the store holds more than --cert-cache names (however
     * small it was then): a resync never decodes more than the cache holds. */
    int rc = tf_acme_store_index_all(cm->storage, cm->lazy ? 0 : cm->cfg->cert_cache,
                                     on_resync_each, on_resync_done, cm);
    if (rc == 0)
        cm->resyncing = true;
    else
        retry_resync(cm, rc);
}

/* ---- challenges ------------------------------------------------------------------------ */

/* Install name's challenge from its key authorization; true when done. */
static bool install_challenge(struct tf_certmgr *cm, const char *name, const char *ka)
{
    X509 *cert = NULL;
    EVP_PKEY *key = NULL;
    if (tf_alpn01_make_cert(name, ka, &cert, &key) != 0) {
        tf_log_ssl(TF_LOG_ERROR, CM_MOD, "building a TLS-ALPN-01 certificate");
        return false;
    }
    cm_publish_challenges(cm, tf_challenges_with(cm->challenges, name, cert, key));
    X509_free(cert);
    EVP_PKEY_free(key);
    return true;
}

static void on_challenge_got(int err, char *data, size_t len, void *arg)
{
    struct cmc_req *r = arg;
    struct tf_certmgr *cm = r->cm;
    bool ok = false;
    if (!cm->closing) {
        if (err == 0 && len > 0) {
            ok = install_challenge(cm, r->name, data);
            cm->stats.cluster_challenges_received += ok;
            TF_DEBUG(CM_MOD, "name=%s challenge from another node installed", r->name);
        } else if (tf_challenges_find(cm->challenges, r->name)) {
            ok = true; /* announced meanwhile */
        } else if (err != UV_ENOENT) {
            TF_WARN(CM_MOD, "name=%s challenge lookup: %s", r->name, tf_strerror(err));
        }
    }
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    cm->host.answer_challenge(cm->host.arg, r->worker, r->name, ok);
    req_free(r);
}

static void fetch_challenge(struct tf_certmgr *cm, const char *name, int worker)
{
    struct cmc_req *r = req_new(cm, name);
    r->worker = worker;
    char *key = chal_key(name);
    int rc = tf_storage_cluster(cm->storage)->get_ttl(cm->storage, key, on_challenge_got, r);
    free(key);
    if (rc)
        on_challenge_got(rc, NULL, 0, r);
}

void tf_certmgr_need_challenge(struct tf_certmgr *cm, int worker, const char *name)
{
    bool have = tf_challenges_find(cm->challenges, name) != NULL;
    if (have || !cm->cluster || cm->closing) {
        cm->host.answer_challenge(cm->host.arg, worker, name, have);
        return;
    }
    fetch_challenge(cm, name, worker);
}

static void on_defer_closed(uv_handle_t *h)
{
    req_free(h->data);
}

static void challenge_shared(struct cmc_req *r)
{
    r->done(r->ctx);
    uv_close((uv_handle_t *)&r->defer, on_defer_closed);
}

static void on_defer(uv_timer_t *t)
{
    challenge_shared(t->data);
}

static void on_challenge_announced(int err, void *arg)
{
    struct cmc_req *r = arg;
    if (err)
        TF_WARN(CM_MOD, "name=%s challenge not announced (%s): only this node answers it",
                r->name, tf_strerror(err));
    challenge_shared(r);
}

static void on_challenge_written(int err, void *arg)
{
    struct cmc_req *r = arg;
    struct tf_certmgr *cm = r->cm;
    if (err)
        TF_WARN(CM_MOD, "name=%s challenge not stored (%s): other nodes may not answer it",
                r->name, tf_strerror(err));
    int rc = tf_storage_cluster(cm->storage)->publish(cm->storage, r->msg, strlen(r->msg),
                                                      on_challenge_announced, r);
    if (rc)
        on_challenge_announced(rc, r);
}

/* The ACME client's responder: install locally, write to the store, announce, then let the
 * client POST the challenge. TLS-ALPN-01 is keyed by name, HTTP-01 by token. */
static void publish_async(void *arg, const struct tf_acme_chal *c, void (*done)(void *ctx),
                          void *ctx)
{
    struct tf_certmgr *cm = arg;
    bool h01 = c->type == TF_CHAL_HTTP_01;
    cm_responder_publish(cm, c);
    struct cmc_req *r = req_new(cm, c->name);
    r->done = done;
    r->ctx = ctx;
    r->msg = h01 ? tf_asprintf("h01 %s %s", cm->node_id, c->token)
                 : tf_asprintf("chal %s %s", cm->node_id, c->name);
    uv_timer_init(cm->loop, &r->defer);
    r->defer.data = r;
    char *key = h01 ? cm_h01_key(c->token) : chal_key(c->name);
    const char *ka = c->key_authorization;
    int rc = key ? tf_storage_cluster(cm->storage)->put_ttl(cm->storage, key, ka, strlen(ka),
                                                            true, cm_chal_ttl_ms(cm),
                                                            on_challenge_written, r)
                 : TF_EINVAL;
    free(key);
    if (rc) {
        TF_WARN(CM_MOD, "name=%s challenge not shared: %s", c->name, tf_strerror(rc));
        uv_timer_start(&r->defer, on_defer, 0, 0);
    }
}

/* Withdraw a challenge here and on the other nodes. A TLS-ALPN-01 challenge's stored value
 * is withdrawn too (overwritten by an empty one that expires at once: short-lived values have
 * no delete), so a node that misses the announcement finds it gone when it catches up.
 * HTTP-01 ones expire with their TTL on every node. */
static void unpublish(void *arg, const struct tf_acme_chal *c)
{
    struct tf_certmgr *cm = arg;
    cm_responder_unpublish(cm, c);
    if (cm->closing)
        return;
    if (c->type == TF_CHAL_HTTP_01) {
        announce(cm, "unh01", c->token);
        return;
    }
    char *key = chal_key(c->name);
    if (tf_storage_cluster(cm->storage)->put_ttl(cm->storage, key, "", 0, false, 1,
                                                 on_published_noop, NULL) != 0)
        TF_DEBUG(CM_MOD, "name=%s stored challenge not withdrawn (it expires)", c->name);
    free(key);
    announce(cm, "unchal", c->name);
}

/* ---- catching up after a gap ----------------------------------------------------------- */

/* A catch-up after a gap in the subscription: it undoes what the announcements it may have
 * missed would have undone here. Each check is one storage read; freed, with one log line,
 * when the last one has answered. */
struct cmc_catchup {
    int pending;   /* checks in flight, plus one while they are being started */
    int forgotten; /* names dropped: forgotten or revoked through another node */
    int unchal;    /* challenges dropped: withdrawn by the node that published them */
};

static void catch_up_step(struct cmc_catchup *c)
{
    if (--c->pending > 0)
        return;
    TF_INFO(CM_MOD, "caught up after a gap: %d names forgotten elsewhere dropped, %d withdrawn "
                    "challenges removed", c->forgotten, c->unchal);
    free(c);
}

/* A stored certificate's check: gone from the store means forgotten (or revoked) through
 * another node, so drop it as that announcement would have; one this node orders or renews
 * right now is left to that order. */
static void on_cert_probed(int err, char *data, size_t len, void *arg)
{
    struct cmc_req *r = arg;
    struct tf_certmgr *cm = r->cm;
    struct cm_managed *m = cm->closing ? NULL : cm_find_managed(cm, r->name);
    (void)len;
    free(data);
    if (err == UV_ENOENT && m && !m->renewing && !cm_find_demand(cm, r->name) &&
        m->seen_gen != cm->resync_gen && cm_forget_memory(cm, r->name)) {
        ((struct cmc_catchup *)r->ctx)->forgotten++;
        TF_INFO(CM_MOD, "name=%s no longer in the storage (forgotten by another node during "
                        "a gap): dropped here", r->name);
    } else if (err && err != UV_ENOENT) {
        TF_DEBUG(CM_MOD, "name=%s stored certificate not checked: %s", r->name, tf_strerror(err));
    }
    catch_up_step(r->ctx);
    req_free(r);
}

/* A challenge's check: gone from the store (or empty) means withdrawn by the node that
 * published it (this node's own, for a name it orders, are left to its order). */
static void on_chal_probed(int err, char *data, size_t len, void *arg)
{
    struct cmc_req *r = arg;
    struct tf_certmgr *cm = r->cm;
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    if ((err == UV_ENOENT || (err == 0 && len == 0)) && !cm->closing &&
        !cm_find_demand(cm, r->name) &&
        tf_challenges_find(cm->challenges, r->name)) {
        cm_publish_challenges(cm, tf_challenges_without(cm->challenges, r->name));
        ((struct cmc_catchup *)r->ctx)->unchal++;
        TF_INFO(CM_MOD, "name=%s challenge withdrawn during a gap: removed here", r->name);
    }
    catch_up_step(r->ctx);
    req_free(r);
}

static void probe(struct tf_certmgr *cm, struct cmc_catchup *c, const char *name, bool chal)
{
    struct cmc_req *r = req_new(cm, name);
    r->ctx = c;
    char *key = chal ? chal_key(name) : tf_acme_store_key(name, "cert.pem");
    const struct tf_storage_cluster_ops *ops = tf_storage_cluster(cm->storage);
    int rc = !key ? TF_EINVAL
             : chal ? ops->get_ttl(cm->storage, key, on_chal_probed, r)
                    : tf_storage_get(cm->storage, key, on_cert_probed, r);
    free(key);
    if (rc) {
        req_free(r);
        return;
    }
    c->pending++;
}

/* Check what the resync could not see: each name held in memory that the listing did not
 * show (listed: the listing succeeded), and each challenge installed here but not ordered
 * here. Certificates from --certs files are not managed here and are never checked. */
static void catch_up(struct tf_certmgr *cm, bool listed)
{
    struct cmc_catchup *c = tf_calloc(1, sizeof(*c));
    c->pending = 1;
    for (struct cm_managed *m = cm->managed; listed && m; m = m->next)
        if (m->seen_gen != cm->resync_gen && !m->renewing && !cm_find_demand(cm, m->name))
            probe(cm, c, m->name, false);
    for (int i = 0; cm->challenges && i < cm->challenges->n; i++)
        if (!cm_find_demand(cm, cm->challenges->items[i].name))
            probe(cm, c, cm->challenges->items[i].name, true);
    catch_up_step(c);
}

/* ---- announcements --------------------------------------------------------------------- */

static void on_message(const char *msg, size_t len, void *arg)
{
    struct tf_certmgr *cm = arg;
    (void)len;
    if (cm->closing)
        return;
    if (!msg) {
        cm_tickets_sync(cm, false);
        if (cm->resyncing)
            cm->resync_again = true;
        else if (cm->loaded)
            start_resync(cm);
        return;
    }
    char kind[16], node[17], name[256] = "";
    int n = sscanf(msg, "%15s %16s %255s", kind, node, name);
    bool all_names = n == 2 && strcmp(kind, "ask-purge") == 0;
    if ((n != 3 && !all_names) || strcmp(node, cm->node_id) == 0)
        return;
    if (strcmp(kind, "forget") == 0 || strcmp(kind, "unpause") == 0 ||
        strcmp(kind, "ask-purge") == 0) {
        on_action(cm, kind, name);
    } else if (strcmp(kind, "cert") == 0) {
        struct cmc_req *r = req_new(cm, name);
        if (tf_acme_store_load_meta(cm->storage, name, on_announced_cert, r) != 0)
            req_free(r);
    } else if (strcmp(kind, "chal") == 0) {
        fetch_challenge(cm, name, -1);
    } else if (strcmp(kind, "unchal") == 0) {
        struct tf_acme_chal c = {.type = TF_CHAL_TLS_ALPN_01, .name = name};
        cm_responder_unpublish(cm, &c);
    } else if (strcmp(kind, "h01") == 0) {
        tf_certmgr_http01_lookup(cm, name, NULL, NULL, NULL);
    } else if (strcmp(kind, "unh01") == 0) {
        cm_h01_drop(cm, name);
    } else if (strcmp(kind, "tickets") == 0) {
        cm_tickets_sync(cm, false);
    }
}

void cm_cluster_start(struct tf_certmgr *cm, struct tf_acme_responder *resp)
{
    const struct tf_storage_cluster_ops *ops = tf_storage_cluster(cm->storage);
    if (!ops)
        return;
    unsigned char id[8];
    if (RAND_bytes(id, sizeof(id)) != 1) {
        tf_log_ssl(TF_LOG_ERROR, CM_MOD, "RAND_bytes");
        abort();
    }
    for (size_t i = 0; i < sizeof(id); i++)
        snprintf(cm->node_id + 2 * i, 3, "%02x", id[i]);
    int rc = ops->subscribe(cm->storage, on_message, cm);
    if (rc) {
        TF_ERROR(CM_MOD, "subscribing to the other nodes' announcements: %s", tf_strerror(rc));
        return;
    }
    cm->cluster = true;
    resp->publish_async = publish_async;
    resp->unpublish = unpublish;
    cm_tickets_sync(cm, false);
}
