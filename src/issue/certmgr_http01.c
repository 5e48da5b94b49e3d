/*
 * certmgr_http01.c: the HTTP-01 responder's table (RFC 8555 §8.3) on the control loop:
 * token -> key authorization for the challenges this node's orders published and, with a
 * store shared by several nodes, those other nodes announced or that this node found in the
 * store when the redirect listener (ctl/redirect.c) asked for a token it did not know. Entries
 * of other nodes expire with their value's TTL in the store, so a lost withdrawal cannot keep
 * one forever. Shared values live under "h01/<SHA-256 of the token, hex>" (tokens are
 * base64url, storage keys are lower-case). Never blocks the loop; never logs key
 * authorizations.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_cluster.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A lookup in the shared store: the redirect listener's (cb set) or an announcement's.
 * Freed by its storage callback; a cancelled one only clears cb. */
struct tf_certmgr_h01_lookup {
    struct tf_certmgr *cm; /* borrowed: the storage (and so this callback) ends first */
    char *token;
    tf_certmgr_h01_cb cb;
    void *arg;
};

static void free_entry(struct cm_h01 *e)
{
    OPENSSL_cleanse(e->ka, strlen(e->ka));
    free(e->ka);
    free(e->token);
    free(e);
}

/* Drop the entries of other nodes whose time is over. */
static void expire(struct tf_certmgr *cm)
{
    uint64_t now = tf_mono_ms();
    for (struct cm_h01 **pp = &cm->h01; *pp;) {
        struct cm_h01 *e = *pp;
        if (e->expires_ms && e->expires_ms <= now) {
            *pp = e->next;
            free_entry(e);
        } else {
            pp = &e->next;
        }
    }
}

static struct cm_h01 *find(struct tf_certmgr *cm, const char *token)
{
    expire(cm);
    for (struct cm_h01 *e = cm->h01; e; e = e->next)
        if (strcmp(e->token, token) == 0)
            return e;
    return NULL;
}

void cm_h01_put(struct tf_certmgr *cm, const char *token, const char *ka, uint64_t expires_ms)
{
    struct cm_h01 *e = find(cm, token);
    if (e) {
        if (!e->expires_ms) /* ours already: an announcement of it changes nothing */
            return;
        OPENSSL_cleanse(e->ka, strlen(e->ka));
        free(e->ka);
    } else {
        e = tf_calloc(1, sizeof(*e));
        e->token = tf_strdup(token);
        e->next = cm->h01;
        cm->h01 = e;
    }
    e->ka = tf_strdup(ka);
    e->expires_ms = expires_ms;
}

int cm_h01_count(struct tf_certmgr *cm)
{
    expire(cm);
    int n = 0;
    for (const struct cm_h01 *e = cm->h01; e; e = e->next)
        n++;
    return n;
}

void tf_certmgr_http01_answered(struct tf_certmgr *cm, bool found)
{
    if (found)
        cm->h01_found++;
    else
        cm->h01_not_found++;
}

void cm_h01_drop(struct tf_certmgr *cm, const char *token)
{
    for (struct cm_h01 **pp = &cm->h01; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->token, token) == 0) {
            struct cm_h01 *e = *pp;
            *pp = e->next;
            free_entry(e);
            return;
        }
}

void cm_h01_free_all(struct tf_certmgr *cm)
{
    while (cm->h01) {
        struct cm_h01 *e = cm->h01;
        cm->h01 = e->next;
        free_entry(e);
    }
}

char *cm_h01_key(const char *token)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(token, strlen(token), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        return NULL;
    char hex[65];
    for (unsigned int i = 0; i < mdlen; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return tf_asprintf("h01/%s", hex);
}

uint32_t cm_chal_ttl_ms(const struct tf_certmgr *cm)
{
    /* Lives as long as an order may: the CA validates within the order's time bound. */
    return (cm->cfg->acme_timeout_s + 60) * 1000;
}

const char *tf_certmgr_http01_find(struct tf_certmgr *cm, const char *token)
{
    struct cm_h01 *e = find(cm, token);
    return e ? e->ka : NULL;
}

static void on_h01_got(int err, char *data, size_t len, void *arg)
{
    struct tf_certmgr_h01_lookup *l = arg;
    struct tf_certmgr *cm = l->cm;
    const char *ka = NULL;
    /* The value is "<token>.<thumbprint>": anything else is not ours to serve. */
    size_t tlen = strlen(l->token);
    if (err == 0 && data && len > tlen + 1 && strlen(data) == len &&
        strncmp(data, l->token, tlen) == 0 && data[tlen] == '.' && !cm->closing) {
        cm_h01_put(cm, l->token, data, tf_mono_ms() + cm_chal_ttl_ms(cm));
        ka = tf_certmgr_http01_find(cm, l->token);
        cm->stats.cluster_challenges_received++;
        TF_DEBUG("cluster", "http-01 challenge token=%s taken from the shared store", l->token);
    } else if (err && err != UV_ENOENT && !cm->closing) {
        TF_WARN("cluster", "http-01 challenge lookup: %s", tf_strerror(err));
    }
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    if (!ka && !cm->closing)
        ka = tf_certmgr_http01_find(cm, l->token); /* announced meanwhile */
    if (l->cb)
        l->cb(ka, l->arg);
    free(l->token);
    free(l);
}

int tf_certmgr_http01_lookup(struct tf_certmgr *cm, const char *token, tf_certmgr_h01_cb cb,
                             void *arg, struct tf_certmgr_h01_lookup **out)
{
    if (!cm->cluster || cm->closing)
        return TF_ENOTFOUND;
    char *key = cm_h01_key(token);
    if (!key)
        return TF_EINVAL;
    struct tf_certmgr_h01_lookup *l = tf_calloc(1, sizeof(*l));
    l->cm = cm;
    l->token = tf_strdup(token);
    l->cb = cb;
    l->arg = arg;
    int rc = tf_storage_cluster(cm->storage)->get_ttl(cm->storage, key, on_h01_got, l);
    free(key);
    if (rc) {
        free(l->token);
        free(l);
        return rc;
    }
    if (out)
        *out = l;
    return 0;
}

void tf_certmgr_http01_cancel(struct tf_certmgr_h01_lookup *l)
{
    l->cb = NULL;
}
