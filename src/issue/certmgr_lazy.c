/*
 * certmgr_lazy.c: managed certificates loaded on first use. When the store holds more names
 * than --cert-cache at start-up, the manager reads only each name's meta.json
 * (tf_acme_store_index_all) and indexes every name as a managed stub (tlsfront/tls/certstub.h:
 * one stub set of source TF_SRC_ACME, 40 bytes and the name per certificate, last-use times
 * in the set's side array); its own entry keeps the validity and the ARI certID, which is
 * all renewal planning needs. The server loads a stub's chain and key from the storage on
 * the first handshake that asks for it (tf_certmgr_read_stored) and evicts it with its
 * CLOCK cache, as for --certs stubs. A certificate obtained or announced later for an
 * indexed name is put in the server's cache in place of what its stub had loaded, so the
 * store keeps the stub and memory stays bounded by the cache however many names get
 * renewed. Control loop only.
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

void cm_lazy_index(struct tf_certmgr *cm, const char *name, struct tf_cert *cert,
                   const struct tf_acme_store_meta *meta, int ca, const char *cert_id)
{
    if (!cm->mset)
        cm->mset = tf_stubset_new_managed("certs", 1024);
    struct cm_managed *m = cm_managed_get(cm, name);
    tf_cert_unref(m->cert);
    m->cert = NULL;
    m->stub = 1 + (uint32_t)tf_stubset_add_managed(cm->mset, name, meta->kind, meta->not_after);
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
    if (!cm->mset)
        return;
    tf_stubset_seal(cm->mset);
    /* Nothing is in the store before the stored certificates are read. */
    tf_certstore_unref(cm->store);
    cm->store = tf_certstore_from_stubs(cm->mset);
}

struct tf_stub *cm_stub(const struct tf_certmgr *cm, const struct cm_managed *m)
{
    return m->stub && cm->mset && m->stub <= cm->mset->n ? &cm->mset->stubs[m->stub - 1] : NULL;
}

bool cm_lazy_replace(struct tf_certmgr *cm, struct cm_managed *m, struct tf_cert *cert)
{
    struct tf_stub *stub = cm_stub(cm, m);
    free(m->cert_id);
    m->cert_id = NULL;
    if (!stub || stub->kind != (uint8_t)cert->kind || !cm->host.cache_replace) {
        m->stub = 0; /* the store's slot gets cert itself */
        return false;
    }
    /* Only the control loop reads a stub's expiry (store building); workers read the
     * pointer the cache swaps. */
    stub->not_after = cert->not_after;
    m->cert_id = cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    tf_cert_unref(m->cert);
    m->cert = NULL;
    cm->host.cache_replace(cm->host.arg, cm->mset, stub, cert);
    return true;
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
    const struct tf_stub *stub = cm_stub(cm, m);
    if (!stub)
        return false;
    /* A stub is known by its certID (issuer key and serial) and validity. */
    char *theirs = cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    bool same = m->cert_id && theirs && strcmp(m->cert_id, theirs) == 0 &&
                m->not_after == cert->not_after && stub->kind == (uint8_t)cert->kind;
    free(theirs);
    return same;
}

struct tf_cert *cm_decoded(const struct tf_certmgr *cm, const struct cm_managed *m)
{
    struct tf_stub *stub = m->cert ? NULL : cm_stub(cm, m);
    return stub ? atomic_load_explicit(&stub->loaded, memory_order_acquire) : m->cert;
}

int64_t cm_last_used(const struct tf_certmgr *cm, const struct cm_managed *m)
{
    if (m->cert)
        return atomic_load_explicit(&m->cert->last_used, memory_order_relaxed);
    struct tf_stub *stub = cm_stub(cm, m);
    _Atomic int64_t *lu = stub ? tf_stub_last_used(cm->mset, stub) : NULL;
    return lu ? atomic_load_explicit(lu, memory_order_relaxed) : 0;
}

int tf_certmgr_read_stored(struct tf_certmgr *cm, const char *name, tf_acme_store_read_cb cb,
                           void *arg)
{
    if (cm->closing)
        return TF_ECLOSED;
    return tf_acme_store_read(cm->storage, name, cb, arg);
}
