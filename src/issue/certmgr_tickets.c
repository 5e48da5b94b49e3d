/*
 * certmgr_tickets.c: the session ticket key ring shared by the nodes of a cluster, so that a
 * session ticket issued by one node resumes on any other. The ring lives in the store as one
 * secret value (sealed with the storage key, never logged): "TFTK1", the creation time (8
 * bytes, big-endian unix seconds), the key count (1 byte), then each key (name, AES key,
 * HMAC key). On each rotation tick a node takes the "tickets" lock and rotates the ring
 * only when the stored one is at least half a period old (so one node per period rotates,
 * whichever timer fires first), then announces it; the others load it on the announcement
 * or at their own tick. While the store is unreachable a node rotates its own ring, and
 * takes the shared one again once the store answers. Control loop only.
 */
#include "certmgr_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_cluster.h"
#include "tlsfront/tls/tickets.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#define TK_MOD "cluster"
#define TK_KEY "cluster/tickets"
#define TK_LOCK "tickets"
#define TK_MAGIC "TFTK1"
#define TK_HEAD (5 + 8 + 1)
#define TK_KEYLEN ((int)sizeof(struct tf_ticket_key))

/* One sync: fetch (and maybe rotate) the shared ring. */
struct tk_sync {
    struct tf_certmgr *cm; /* borrowed: the storage (and so this callback) ends first */
    bool rotate;           /* the tick: rotate when the stored ring is old */
    bool locked;
};

static void install(struct tf_certmgr *cm, struct tf_ticket_ring *r)
{
    struct tf_ticket_ring *cur = cm->host.tickets(cm->host.arg);
    if (cur && cur->n == r->n && memcmp(cur->keys, r->keys, (size_t)r->n * TK_KEYLEN) == 0)
        return;
    cm->host.set_tickets(cm->host.arg, r);
    TF_DEBUG(TK_MOD, "session ticket keys taken from the shared storage");
}

/* A ring from its stored form, or NULL when malformed; *created gets its time. */
static struct tf_ticket_ring *decode(const unsigned char *p, size_t len, int64_t *created)
{
    if (len < TK_HEAD || memcmp(p, TK_MAGIC, 5) != 0)
        return NULL;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = (t << 8) | p[5 + i];
    int n = p[13];
    if (n < 1 || n > TF_TICKET_KEYS || len != TK_HEAD + (size_t)n * TK_KEYLEN)
        return NULL;
    struct tf_ticket_key keys[TF_TICKET_KEYS];
    memcpy(keys, p + TK_HEAD, (size_t)n * TK_KEYLEN);
    struct tf_ticket_ring *r = tf_tickets_from_keys(keys, n);
    OPENSSL_cleanse(keys, sizeof(keys));
    *created = (int64_t)t;
    return r;
}

static size_t encode(const struct tf_ticket_ring *r, int64_t created, unsigned char *out)
{
    memcpy(out, TK_MAGIC, 5);
    for (int i = 0; i < 8; i++)
        out[5 + i] = (unsigned char)((uint64_t)created >> (56 - 8 * i));
    out[13] = (unsigned char)r->n;
    memcpy(out + TK_HEAD, r->keys, (size_t)r->n * TK_KEYLEN);
    return TK_HEAD + (size_t)r->n * TK_KEYLEN;
}

static void on_unlocked(int err, void *arg)
{
    (void)arg;
    if (err)
        TF_DEBUG(TK_MOD, "releasing the ticket key lock: %s", tf_strerror(err));
}

static void sync_end(struct tk_sync *t)
{
    if (t->locked && tf_storage_unlock(t->cm->storage, TK_LOCK, on_unlocked, NULL) != 0)
        TF_DEBUG(TK_MOD, "releasing the ticket key lock: cannot start");
    free(t);
}

/* The store cannot be used: a tick still rotates, locally. */
static void rotate_locally(struct tf_certmgr *cm)
{
    struct tf_ticket_ring *r = tf_tickets_rotate(cm->host.tickets(cm->host.arg));
    if (!r) {
        tf_log_ssl(TF_LOG_ERROR, TK_MOD, "ticket key rotation");
        return;
    }
    cm->host.set_tickets(cm->host.arg, r);
    tf_tickets_unref(r);
}

static void on_put(int err, void *arg)
{
    struct tk_sync *t = arg;
    struct tf_certmgr *cm = t->cm;
    if (err) {
        TF_WARN(TK_MOD, "session ticket keys not shared (%s): this node's own keys for now",
                tf_strerror(err));
    } else if (!cm->closing) {
        char msg[64];
        int n = snprintf(msg, sizeof(msg), "tickets %s -", cm->node_id);
        tf_storage_cluster(cm->storage)->publish(cm->storage, msg, (size_t)n, on_unlocked, NULL);
        TF_DEBUG(TK_MOD, "session ticket keys rotated for the cluster");
    }
    sync_end(t);
}

static void on_got(int err, char *data, size_t len, void *arg)
{
    struct tk_sync *t = arg;
    struct tf_certmgr *cm = t->cm;
    int64_t created = 0, now = tf_wall_now();
    struct tf_ticket_ring *stored =
        err == 0 ? decode((const unsigned char *)data, len, &created) : NULL;
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    if (cm->closing || (err && err != UV_ENOENT)) {
        if (err && !cm->closing && t->rotate)
            rotate_locally(cm);
        tf_tickets_unref(stored);
        sync_end(t);
        return;
    }
    uint32_t period = cm->cfg->ticket_rotate_s ? cm->cfg->ticket_rotate_s : 1;
    bool old = !stored || (t->rotate && now - created >= (int64_t)period / 2);
    if (!old || !t->locked) {
        if (stored)
            install(cm, stored);
        tf_tickets_unref(stored);
        sync_end(t);
        return;
    }
    struct tf_ticket_ring *next = tf_tickets_rotate(stored ? stored : cm->host.tickets(cm->host.arg));
    tf_tickets_unref(stored);
    if (!next) {
        tf_log_ssl(TF_LOG_ERROR, TK_MOD, "ticket key rotation");
        sync_end(t);
        return;
    }
    install(cm, next);
    unsigned char buf[TK_HEAD + TF_TICKET_KEYS * sizeof(struct tf_ticket_key)];
    size_t n = encode(next, now, buf);
    tf_tickets_unref(next);
    int rc = tf_storage_put(cm->storage, TK_KEY, buf, n, true, on_put, t);
    OPENSSL_cleanse(buf, sizeof(buf));
    if (rc)
        on_put(rc, t);
}

static void fetch(struct tk_sync *t)
{
    int rc = tf_storage_get(t->cm->storage, TK_KEY, on_got, t);
    if (rc)
        on_got(rc, NULL, 0, t);
}

static void on_locked(int err, void *arg)
{
    struct tk_sync *t = arg;
    t->locked = err == 0;
    if (err && err != TF_EBUSY && t->rotate && !t->cm->closing) {
        rotate_locally(t->cm); /* the store is down */
        sync_end(t);
        return;
    }
    fetch(t); /* busy: another node is rotating; take what is stored */
}

/* Start a sync; rotate: a tick (rotate when the stored ring is old, or absent). */
void cm_tickets_sync(struct tf_certmgr *cm, bool rotate)
{
    struct tk_sync *t = tf_calloc(1, sizeof(*t));
    t->cm = cm;
    t->rotate = rotate;
    int rc = tf_storage_lock(cm->storage, TK_LOCK, 30, 2000, on_locked, t);
    if (rc)
        on_locked(rc, t);
}

bool tf_certmgr_tickets_due(struct tf_certmgr *cm)
{
    if (!cm->cluster || cm->closing)
        return false;
    cm_tickets_sync(cm, true);
    return true;
}
