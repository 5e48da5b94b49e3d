/*
 * server_certcache.c: loading --certs stubs on first use (tlsfront/tls/certcache.h). A
 * worker that holds a handshake for a stub that is not loaded posts TF_SMSG_NEED_LOAD; here
 * the control loop joins the load already in flight for that stub or starts one on the
 * thread pool (file reads and decoding never run on a loop), publishes the result into the
 * stub (one atomic store: the workers' store snapshot is not rebuilt), evicts with the
 * cache's CLOCK hand, posts the evicted certificates to every worker to be freed after
 * their current callback, and answers the waiting workers with TF_WMSG_CERT_DONE. A file
 * that fails is logged here once; its stub is marked failed and workers refuse the name
 * without asking again. A managed stub (source TF_SRC_ACME, --storage) loads the same way
 * except that its chain and key are read through the storage (tf_certmgr_read_stored,
 * asynchronous) before the thread pool decodes them.
 */
#include "tlsfront/ctl/server.h"
#include "tlsfront/base/log.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/tls/tls.h"

#include <openssl/crypto.h>

#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One waiting worker and the name it asked for (its held connections match by name). */
struct waiter {
    int worker;
    char name[TF_NAME_MAX + 1];
};

/* One load in flight, owned by the control loop from start to done; stub->loading points at
 * it meanwhile. */
struct load_job {
    uv_work_t work;
    struct tf_server *s;
    struct tf_stubset *set; /* one reference */
    struct tf_stub *stub;   /* one of set's */
    struct tf_cert *cert;   /* result (one reference) or NULL */
    uint64_t started_ns, took_ns;
    char *chain, *key;     /* a managed stub: the texts read from the storage */
    size_t chain_len, key_len;
    bool transient;        /* the storage could not be read: not marked failed */
    bool retried;          /* a managed stub's texts were read a second time */
    bool replaced;         /* the manager put a new certificate in meanwhile: drop this */
    char err[256];
    struct waiter *waiters;
    size_t n_waiters, cap_waiters;
};

static void add_waiter(struct load_job *j, int worker, const char *name)
{
    for (size_t i = 0; i < j->n_waiters; i++)
        if (j->waiters[i].worker == worker && strcmp(j->waiters[i].name, name) == 0)
            return;
    if (j->n_waiters == j->cap_waiters) {
        j->cap_waiters = j->cap_waiters ? j->cap_waiters * 2 : 2;
        j->waiters = tf_realloc(j->waiters, j->cap_waiters * sizeof *j->waiters);
    }
    struct waiter *w = &j->waiters[j->n_waiters++];
    w->worker = worker;
    snprintf(w->name, sizeof w->name, "%s", name);
}

static void load_work(uv_work_t *req)
{
    struct load_job *j = req->data;
    if (j->stub->source == TF_SRC_ACME)
        j->cert = tf_stub_decode(j->set, j->stub, j->chain, j->chain_len, j->key, j->key_len,
                                 j->err, sizeof j->err);
    else
        j->cert = tf_stub_load(j->set, j->stub, j->err, sizeof j->err);
    j->took_ns = uv_hrtime() - j->started_ns;
}

static void texts_free(struct load_job *j)
{
    if (j->key)
        OPENSSL_cleanse(j->key, j->key_len);
    free(j->key);
    free(j->chain);
    j->key = j->chain = NULL;
}

static void job_free(struct load_job *j)
{
    texts_free(j);
    tf_stubset_unref(j->set);
    free(j->waiters);
    free(j);
}

/* Hand evicted certificates to every worker; the last to release them frees them. */
static void post_retired(struct tf_server *s, struct tf_certcache_retired *r)
{
    if (!r)
        return;
    atomic_store(&r->pending, s->n_started + 1);
    for (int i = 0; i < s->n_started; i++)
        if (!tf_worker_post_retired(&s->workers[i], r))
            tf_certcache_retired_release(r);
    tf_certcache_retired_release(r); /* the control loop's own hold */
}

static void answer(struct tf_server *s, int worker, const char *name, bool ok)
{
    if (worker >= 0 && worker < s->n_started)
        tf_worker_post_cert_done(&s->workers[worker], name, ok ? 0 : SSL_AD_INTERNAL_ERROR,
                                 ok ? TF_OUTCOME_READY : TF_OUTCOME_LOAD_FAILED);
}

static void on_stored_read(int err, const char *chain, size_t chain_len, const char *key,
                           size_t key_len, void *arg);

/* A managed certificate is saved key first, then chain: a read that fell between the two
 * gets a pair that does not match. Read it once more before calling it broken. */
static bool read_again(struct load_job *j)
{
    if (j->stub->source != TF_SRC_ACME || j->cert || j->transient || j->retried ||
        j->replaced || !j->s->certmgr)
        return false;
    j->retried = true;
    texts_free(j);
    return tf_certmgr_read_stored(j->s->certmgr, tf_stub_name(j->set, j->stub, 0),
                                  on_stored_read, j) == 0;
}

static void load_failed(struct tf_server *s, struct load_job *j, const char *crt)
{
    const char *name = j->n_waiters ? j->waiters[0].name : "-";
    TF_STAT_ADD(&s->stats, cert_cache_load_failures, 1);
    if (j->transient)
        TF_WARN("server", "name=%s stored certificate %s: storage unavailable (%s): refused, "
                          "read again on the next handshake", name, crt, j->err);
    else if (j->stub->source == TF_SRC_ACME)
        TF_WARN("server", "name=%s stored certificate %s: %s: the name is refused until it "
                          "is renewed or tlsfront restarts", name, crt, j->err);
    else
        TF_WARN("server", "name=%s file %s: %s: the name is refused until a reload", name, crt,
                j->err);
    if (!j->transient)
        atomic_store_explicit(&j->stub->failed, 1, memory_order_release);
}

static void load_done(uv_work_t *req, int status)
{
    struct load_job *j = req->data;
    struct tf_server *s = j->s;
    struct tf_stub *stub = j->stub;
    if (!s->stopped && status == 0 && read_again(j))
        return;
    char crt[1024], key[1024];
    if (tf_stub_paths(j->set, stub, crt, key, sizeof crt) < 0)
        snprintf(crt, sizeof crt, "%s/...", j->set->dir);
    stub->loading = NULL;
    if (s->stopped || status != 0) {
        tf_cert_unref(j->cert);
        goto out;
    }
    if (j->replaced) { /* the new certificate is in: what this read is stale */
        tf_cert_unref(j->cert);
        for (size_t i = 0; i < j->n_waiters; i++)
            answer(s, j->waiters[i].worker, j->waiters[i].name, true);
        goto out;
    }
    struct tf_stats *st = &s->stats;
    tf_histogram_observe(&st->cert_load_seconds, (double)j->took_ns / 1e9);
    if (j->cert) {
        struct tf_certcache_retired *r = NULL;
        size_t ev = tf_certcache_install(&s->cert_cache, j->set, stub, j->cert, &r);
        post_retired(s, r);
        TF_STAT_ADD(st, cert_cache_loads, 1);
        TF_STAT_ADD(st, cert_cache_evictions, ev);
        atomic_store(&st->cert_cache_size, (long long)tf_certcache_size(&s->cert_cache));
        TF_DEBUG("server", "name=%s loaded %s in %.1f ms", j->n_waiters ? j->waiters[0].name : "-",
                 crt, (double)j->took_ns / 1e6);
    } else {
        load_failed(s, j, crt);
    }
    for (size_t i = 0; i < j->n_waiters; i++)
        answer(s, j->waiters[i].worker, j->waiters[i].name, j->cert != NULL);
out:
    job_free(j);
}

/* A managed stub's texts arrived from the storage: decode them on the thread pool. */
static void on_stored_read(int err, const char *chain, size_t chain_len, const char *key,
                           size_t key_len, void *arg)
{
    struct load_job *j = arg;
    int r = err;
    if (!err && !j->s->stopped && !j->replaced) {
        j->chain = tf_strndup(chain, chain_len);
        j->chain_len = chain_len;
        j->key = tf_strndup(key, key_len);
        j->key_len = key_len;
        r = uv_queue_work(&j->s->loop, &j->work, load_work, load_done);
        if (r == 0)
            return;
    }
    j->transient = err && err != UV_ENOENT && err != TF_EINVAL;
    snprintf(j->err, sizeof j->err, "%s", err == UV_ENOENT ? "not in the storage any more"
                                          : err ? tf_strerror(err) : uv_strerror(r));
    load_done(&j->work, 0);
}

/* Start loading stub for worker's name; false when the thread pool refused the job. */
static bool start_load(struct tf_server *s, struct tf_stubset *set, struct tf_stub *stub,
                       int worker, const char *name)
{
    struct load_job *j = tf_calloc(1, sizeof *j);
    j->s = s;
    j->set = set;
    j->stub = stub;
    j->work.data = j;
    j->started_ns = uv_hrtime();
    add_waiter(j, worker, name);
    tf_stubset_ref(set);
    bool stored = stub->source == TF_SRC_ACME;
    int r = !stored    ? uv_queue_work(&s->loop, &j->work, load_work, load_done)
            : s->certmgr ? tf_certmgr_read_stored(s->certmgr, tf_stub_name(set, stub, 0),
                                                  on_stored_read, j)
                         : TF_ECLOSED;
    if (r != 0) {
        TF_ERROR("server", "name=%s loading from %s: %s", name, set->dir,
                 stored ? tf_strerror(r) : uv_strerror(r));
        job_free(j);
        return false;
    }
    stub->loading = j;
    return true;
}

void tf_server_need_load(struct tf_server *s, int worker, const char *name)
{
    const struct tf_cert_slot *slot = tf_certstore_lookup(s->certs, name);
    if (!slot && s->cfg->default_cert)
        slot = tf_certstore_lookup(s->certs, s->cfg->default_cert);
    bool failed = false;
    for (int k = 0; slot && k < TF_CERT_KINDS; k++) {
        struct tf_stub *c = tf_slot_stub(slot, k);
        if (!c || atomic_load(&c->loaded))
            continue;
        if (atomic_load(&c->failed)) {
            failed = true;
            continue;
        }
        /* One load per stub at a time; the worker asks again for the other kind, if any. */
        if (c->loading) {
            add_waiter(c->loading, worker, name);
            return;
        }
        struct tf_stubset *set = tf_certstore_stubset(s->certs, c);
        if (set && start_load(s, set, c, worker, name))
            return;
        failed = true;
    }
    /* Nothing to load (loaded meanwhile, or the name left with a reload): the worker's
     * ClientHello callback decides again with its own snapshot. */
    answer(s, worker, name, !failed);
}

static bool set_in_use(const struct tf_stubset *set, void *arg)
{
    const struct tf_server *s = arg;
    return set->n > 0 && tf_certstore_stubset(s->certs, set->stubs) == set;
}

void tf_server_cache_prune(struct tf_server *s)
{
    struct tf_certcache_retired *r = NULL;
    size_t ev = tf_certcache_prune(&s->cert_cache, set_in_use, s, &r);
    post_retired(s, r);
    TF_STAT_ADD(&s->stats, cert_cache_evictions, ev);
    atomic_store(&s->stats.cert_cache_size, (long long)tf_certcache_size(&s->cert_cache));
}

void tf_server_cache_replace(struct tf_server *s, struct tf_stubset *set, struct tf_stub *stub,
                             struct tf_cert *cert)
{
    if (s->stopped)
        return;
    struct tf_certcache_retired *r = NULL;
    size_t ev = tf_certcache_evict(&s->cert_cache, stub, &r);
    if (stub->loading)
        ((struct load_job *)stub->loading)->replaced = true;
    if (cert) {
        atomic_store_explicit(&stub->failed, 0, memory_order_release);
        /* As for a load: no per-certificate contexts for what the cache holds. No worker
         * has seen cert yet (it is in no store). */
        if (!atomic_load_explicit(&cert->ctxs, memory_order_acquire))
            tf_tls_cert_ctx_forbid(cert);
        tf_cert_ref(cert);
        ev += tf_certcache_install(&s->cert_cache, set, stub, cert, &r);
    }
    post_retired(s, r);
    TF_STAT_ADD(&s->stats, cert_cache_evictions, ev);
    atomic_store(&s->stats.cert_cache_size, (long long)tf_certcache_size(&s->cert_cache));
}

void tf_server_cache_init(struct tf_server *s)
{
    tf_certcache_init(&s->cert_cache, (size_t)s->cfg->cert_cache);
    tf_histogram_init(&s->stats.cert_load_seconds, tf_metrics_handshake_bounds,
                      tf_metrics_handshake_nbounds);
}

void tf_server_cache_free(struct tf_server *s)
{
    struct tf_certcache_retired *r = NULL;
    tf_certcache_free(&s->cert_cache, &r);
    if (r) {
        atomic_store(&r->pending, 1); /* the workers are joined: nobody reads them */
        tf_certcache_retired_release(r);
    }
}
