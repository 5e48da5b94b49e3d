/*
 * certmgr_lazy.c: managed certificates loaded on first use. When the store holds more names
 * than --cert-cache at start-up, the manager reads only each name's meta.json
 * (tf_acme_store_index_all) and keeps a stub per name: the name, key kind, validity and the
 * ARI certID, which is all renewal planning needs. The server loads a stub's chain and key
 * from the storage on the first handshake that asks for it (tf_certmgr_read_stored) and
 * evicts it with its CLOCK cache, exactly as for --certs stubs. A certificate obtained or
 * announced later becomes a stub too, with its decoded certificate put straight in the
 * server's cache, so memory stays bounded by the cache however many names get renewed.
 * Control loop only.
 */
#include "certmgr_int.h"
#include "tlsfront/acme/renew.h"

#include <stdlib.h>
#include <string.h>

struct tf_cert *cm_lazy_adopt(struct tf_certmgr *cm, const char *name, struct tf_cert *cert,
                              bool fresh, const char *cert_id, char **out_id)
{
    *out_id = NULL;
    if (cert->stub) {
        *out_id = cert_id ? tf_strdup(cert_id) : NULL;
        tf_cert_ref(cert);
        return cert;
    }
    if (!cm->lazy) {
        tf_cert_ref(cert);
        return cert;
    }
    char *key = tf_acme_store_key(name, "cert.pem");
    struct tf_cert *stub = tf_cert_stub_new(name, cert->kind, cert->not_before, cert->not_after,
                                            TF_SRC_ACME, key ? key : name);
    free(key);
    *out_id = cert->leaf ? tf_renew_cert_id(cert->leaf) : NULL;
    if (fresh && cm->host.cache_loaded)
        cm->host.cache_loaded(cm->host.arg, stub, cert);
    return stub;
}

char *cm_cert_id(const struct cm_managed *m)
{
    if (!m->cert)
        return NULL;
    if (m->cert->stub)
        return m->cert_id ? tf_strdup(m->cert_id) : NULL;
    return tf_renew_cert_id(m->cert->leaf);
}

bool cm_same_cert(const struct cm_managed *m, const struct tf_cert *cert, const char *cert_id)
{
    if (!m->cert || !cert)
        return false;
    if (m->cert == cert)
        return true;
    if (!m->cert->stub && !cert->stub)
        return X509_cmp(m->cert->leaf, cert->leaf) == 0;
    /* A stub is known by its certID (issuer key and serial) and validity. */
    char *mine = cm_cert_id(m);
    char *theirs = cert->stub ? (cert_id ? tf_strdup(cert_id) : NULL)
                              : tf_renew_cert_id(cert->leaf);
    bool same = mine && theirs && strcmp(mine, theirs) == 0 &&
                m->cert->not_after == cert->not_after && m->cert->kind == cert->kind;
    free(mine);
    free(theirs);
    return same;
}

struct tf_cert *cm_decoded(const struct cm_managed *m)
{
    if (!m->cert || !m->cert->stub)
        return m->cert;
    return atomic_load_explicit(&m->cert->loaded, memory_order_acquire);
}

void cm_lazy_staged(struct tf_certmgr *cm)
{
    if (!cm->lazy)
        return;
    for (size_t i = 0; i < cm->n_staged; i++) {
        struct cm_staged *s = &cm->staged[i];
        struct cm_managed *m = cm_find_managed(cm, s->name);
        if (s->cert->stub || !m || m->cert != s->cert)
            continue;
        char *id = NULL;
        struct tf_cert *stub = cm_lazy_adopt(cm, s->name, s->cert, false, NULL, &id);
        tf_cert_unref(s->cert); /* the staged entry's and m's reference on the decoded */
        tf_cert_unref(m->cert);
        tf_cert_ref(stub);      /* cm_lazy_adopt's and this one: one each */
        s->cert = m->cert = stub;
        free(m->cert_id);
        m->cert_id = id;
    }
}

int tf_certmgr_read_stored(struct tf_certmgr *cm, const char *name, tf_acme_store_read_cb cb,
                           void *arg)
{
    if (cm->closing)
        return TF_ECLOSED;
    return tf_acme_store_read(cm->storage, name, cb, arg);
}
