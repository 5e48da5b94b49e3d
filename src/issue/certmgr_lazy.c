/*
 * certmgr_lazy.c: managed certificates as stubs loaded on first use and evicted with the
 * server's bounded cache. When the store holds more names than --cert-cache at start-up,
 * the manager reads only each name's meta.json (tf_acme_store_index_all) and indexes every
 * name as a managed stub (tlsfront/tls/certstub.h: one stub set of source TF_SRC_ACME, 40
 * bytes and the name per certificate, last-use times in the set's side array); its own
 * entry keeps the validity and the ARI certID, which is all renewal planning needs. The
 * server loads a stub's chain and key from the storage on the first handshake that asks for
 * it (tf_certmgr_read_stored) and evicts it with its CLOCK cache, as for --certs stubs.
 *
 * A certificate obtained, renewed or announced while running goes to the server's cache as
 * a stub's loaded certificate (cm_lazy_replace): in place of what the name's stub had
 * loaded when it has one of that kind (the store is unchanged), else as a new stub appended
 * to a live set (room reserved in advance, so nothing a worker or a load reads moves) and
 * put in the store. So however many names are obtained or renewed, what is decoded stays
 * bounded by the cache (plus a store decoded in full at start, itself at most --cert-cache
 * names, which turn into stubs as they renew). Control loop only.
 */
#include "certmgr_int.h"
#include "tlsfront/acme/renew.h"

#include <stdlib.h>
#include <string.h>

struct cm_managed *cm_managed_get(struct tf_certmgr *cm, const char *name)
{
    struct cm_managed *m = cm_find_managed(cm, name);
    if (m)
        return m;
    m = tf_calloc(1, sizeof *m);
    m->name = tf_strdup(name);
    m->plan_i = CM_PLAN_NONE;
    m->next = cm->managed;
    cm->managed = m;
    cm->n_managed++;
    tf_lru_put(cm->by_name, name, m, TF_LRU_NEVER);
    return m;
}

/* The first live set's room, and the most a live set reserves (each next one doubles). */
#define CM_LIVE_FIRST 256
#define CM_LIVE_MAX (1 << 20)
/* Text reserved per stub of a live set (its name and a NUL; a longer name fills it sooner). */
#define CM_LIVE_TEXT 40

static struct cm_mset *mset_push(struct tf_certmgr *cm, struct tf_stubset *set)
{
    const struct cm_mset *last = cm->n_msets ? &cm->msets[cm->n_msets - 1] : NULL;
    uint32_t base = last ? last->base + (uint32_t)last->set->cap : 0;
    cm->msets = tf_realloc(cm->msets, (cm->n_msets + 1) * sizeof *cm->msets);
    cm->msets[cm->n_msets] = (struct cm_mset){set, base};
    return &cm->msets[cm->n_msets++];
}

void cm_lazy_index(struct tf_certmgr *cm, const char *name, struct tf_cert *cert,
                   const struct tf_acme_store_meta *meta, int ca, const char *cert_id)
{
    if (!cm->n_msets)
        mset_push(cm, tf_stubset_new_managed("certs", 1024));
    struct tf_stubset *set = cm->msets[0].set;
    struct cm_managed *m = cm_managed_get(cm, name);
    tf_cert_unref(m->cert);
    m->cert = NULL;
    m->stub = 1 + (uint32_t)tf_stubset_add_managed(set, name, meta->kind, meta->not_after);
    free(m->cert_id);
    m->cert_id = cert_id ? tf_strdup(cert_id)
                 : cert && cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    m->not_before = meta->not_before;
    m->not_after = meta->not_after;
    m->obtained_at = 0;
    m->failures = 0;
    m->ca = ca;
    cm_schedule(cm, m, true);
}

void cm_lazy_sealed(struct tf_certmgr *cm)
{
    if (!cm->n_msets)
        return;
    tf_stubset_seal(cm->msets[0].set);
    /* Nothing is in the store before the stored certificates are read. */
    tf_certstore_unref(cm->store);
    cm->store = tf_certstore_from_stubs(cm->msets[0].set);
}

struct tf_stub *cm_stub(const struct tf_certmgr *cm, const struct cm_managed *m,
                        struct tf_stubset **set)
{
    uint32_t i = m->stub - 1;
    for (size_t k = cm->n_msets; m->stub && k-- > 0;) {
        const struct cm_mset *ms = &cm->msets[k];
        if (i < ms->base)
            continue;
        if (i - ms->base >= ms->set->n)
            break;
        if (set)
            *set = ms->set;
        return &ms->set->stubs[i - ms->base];
    }
    return NULL;
}

/* A new stub for m's name of kind and expiry in the live set with room (a new one when
 * full); m numbers it. Returns the stub, *set its set. */
static struct tf_stub *live_stub(struct tf_certmgr *cm, struct cm_managed *m, int kind,
                                 int64_t not_after, struct tf_stubset **set)
{
    struct cm_mset *ms = cm->n_msets ? &cm->msets[cm->n_msets - 1] : NULL;
    long i = ms ? tf_stubset_append_managed(ms->set, m->name, kind, not_after) : -1;
    if (i < 0) {
        size_t cap = cm->live_cap ? cm->live_cap : CM_LIVE_FIRST;
        cm->live_cap = TF_MIN(2 * cap, (size_t)CM_LIVE_MAX);
        ms = mset_push(cm, tf_stubset_new_live("certs", cap, cap * CM_LIVE_TEXT));
        i = tf_stubset_append_managed(ms->set, m->name, kind, not_after); /* fits: empty */
    }
    m->stub = 1 + ms->base + (uint32_t)i;
    *set = ms->set;
    return &ms->set->stubs[i];
}

/* Let a stub go: the next store is made without it (counted out of the certificate count),
 * and the cache drops what it had loaded, so it is never served again. */
static void drop_stub(struct tf_certmgr *cm, struct tf_stubset *set, struct tf_stub *stub)
{
    set->n_dropped++;
    if (cm->host.cache_replace && !cm->closing)
        cm->host.cache_replace(cm->host.arg, set, stub, NULL);
}

bool cm_lazy_replace(struct tf_certmgr *cm, struct cm_managed *m, struct tf_cert *cert,
                     bool stored)
{
    struct tf_stubset *set = NULL;
    struct tf_stub *stub = cm_stub(cm, m, &set);
    free(m->cert_id);
    m->cert_id = NULL;
    bool fresh = !stub || stub->kind != (uint8_t)cert->kind;
    /* A stub stands only for a stored certificate (an evicted one is loaded from the
     * storage), and a new stub is made only while running (start-up decodes a small store
     * in full). */
    if (!cm->host.cache_replace || !stored || (fresh && !cm->loaded)) {
        if (stub) /* a renewal the storage did not keep: its old stub could load only that */
            drop_stub(cm, set, stub);
        m->stub = 0; /* the store's slot gets cert itself */
        return false;
    }
    if (fresh && stub) /* a key type change: the new stub takes the old one's place */
        drop_stub(cm, set, stub);
    if (fresh)
        stub = live_stub(cm, m, cert->kind, cert->not_after, &set);
    /* Only the control loop reads a stub's expiry (store building); workers read the
     * pointer the cache swaps. */
    stub->not_after = cert->not_after;
    m->cert_id = cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    tf_cert_unref(m->cert);
    m->cert = NULL;
    cm->host.cache_replace(cm->host.arg, set, stub, cert);
    if (fresh)
        cm_stage_stub(cm, m->name, set, stub);
    return true;
}

void cm_lazy_forget(struct tf_certmgr *cm, struct cm_managed *m)
{
    struct tf_stubset *set = NULL;
    struct tf_stub *stub = cm_stub(cm, m, &set);
    if (stub)
        drop_stub(cm, set, stub);
}

void cm_lazy_free(struct tf_certmgr *cm)
{
    for (size_t k = 0; k < cm->n_msets; k++)
        tf_stubset_unref(cm->msets[k].set);
    free(cm->msets);
    cm->msets = NULL;
    cm->n_msets = 0;
}

char *cm_cert_id(const struct cm_managed *m)
{
    if (m->cert)
        return m->cert->leaf ? tf_renew_cert_id(m->cert->leaf) : NULL;
    return m->cert_id ? tf_strdup(m->cert_id) : NULL;
}

bool cm_same_cert(const struct tf_certmgr *cm, const struct cm_managed *m,
                  const struct tf_cert *cert)
{
    if (!cert)
        return false;
    if (m->cert)
        return m->cert == cert || X509_cmp(m->cert->leaf, cert->leaf) == 0;
    /* A stub is known by its certID (issuer key and serial), validity and kind. */
    struct tf_acme_store_meta meta = {cert->kind, cert->not_before, cert->not_after};
    char *theirs = cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    bool same = cm_same_meta(cm, m, &meta, theirs);
    free(theirs);
    return same;
}

bool cm_same_meta(const struct tf_certmgr *cm, const struct cm_managed *m,
                  const struct tf_acme_store_meta *meta, const char *cert_id)
{
    struct tf_acme_store_meta ours;
    if (m->cert) {
        ours = (struct tf_acme_store_meta){m->cert->kind, m->cert->not_before,
                                           m->cert->not_after};
    } else {
        const struct tf_stub *stub = cm_stub(cm, m, NULL);
        if (!stub)
            return false;
        ours = (struct tf_acme_store_meta){stub->kind, m->not_before, m->not_after};
    }
    /* Without a certID on either side (a meta.json written without one, a leaf without
     * AKI), the validity to the second tells a renewed certificate apart. */
    char *id = cm_cert_id(m);
    bool same_id = id && cert_id ? strcmp(id, cert_id) == 0 : !id && !cert_id;
    free(id);
    return same_id && ours.kind == meta->kind && ours.not_before == meta->not_before &&
           ours.not_after == meta->not_after;
}

struct tf_cert *cm_decoded(const struct tf_certmgr *cm, const struct cm_managed *m)
{
    struct tf_stub *stub = m->cert ? NULL : cm_stub(cm, m, NULL);
    return stub ? atomic_load_explicit(&stub->loaded, memory_order_acquire) : m->cert;
}

int64_t cm_last_used(const struct tf_certmgr *cm, const struct cm_managed *m)
{
    if (m->cert)
        return atomic_load_explicit(&m->cert->last_used, memory_order_relaxed);
    struct tf_stubset *set = NULL;
    struct tf_stub *stub = cm_stub(cm, m, &set);
    _Atomic int64_t *lu = stub ? tf_stub_last_used(set, stub) : NULL;
    return lu ? atomic_load_explicit(lu, memory_order_relaxed) : 0;
}

int tf_certmgr_read_stored(struct tf_certmgr *cm, const char *name, tf_acme_store_read_cb cb,
                           void *arg)
{
    if (cm->closing)
        return TF_ECLOSED;
    return tf_acme_store_read(cm->storage, name, cb, arg);
}
