/*
 * storage_cluster.h: what a store shared by several tlsfront nodes offers beyond
 * include/storage.h: short-lived values (ACME challenges), announcements to every node
 * (publish/subscribe), and atomic counters with expiry (the cluster-wide budget). The Redis
 * store implements it; the filesystem store does not (ops->cluster is NULL: one node).
 *
 * Same rules as storage.h: every start call returns 0 (cb runs later on the store's loop,
 * exactly once, never from inside the call) or a negative code (cb never runs). Keys follow
 * storage.h's key rules; they live apart from the values of get/put (never listed).
 * Channel messages are at most TF_STORAGE_MSG_MAX bytes.
 */
#ifndef TF_STORAGE_CLUSTER_H
#define TF_STORAGE_CLUSTER_H

#include "tlsfront/store/storage.h"

#define TF_STORAGE_MSG_MAX 1024

/* A message announced by a node (possibly this one). msg is NUL-terminated, borrowed for
 * the call. msg NULL: the subscription was (re)established after a gap in which messages
 * may have been missed; the subscriber should resynchronise from the store. */
typedef void (*tf_storage_msg_cb)(const char *msg, size_t len, void *arg);
/* An atomic counter's value after the operation. */
typedef void (*tf_storage_count_cb)(int err, int64_t value, void *arg);

struct tf_storage_cluster_ops {
    /* Write a value that disappears after ttl_ms (sealed when secret, as put). */
    int (*put_ttl)(struct tf_storage *s, const char *key, const void *data, size_t len,
                   bool secret, uint32_t ttl_ms, tf_storage_done_cb cb, void *arg);
    /* Read a put_ttl value: as get (UV_ENOENT once expired). */
    int (*get_ttl)(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg);
    /* Announce msg to every subscribed node (this one included). cb: 0 once the store has
     * taken it (subscribers connected then receive it). */
    int (*publish)(struct tf_storage *s, const char *msg, size_t len, tf_storage_done_cb cb,
                   void *arg);
    /* Receive every announcement from now on, on a connection of its own that reconnects
     * by itself, until close. One subscriber per store (TF_EBUSY for a second). */
    int (*subscribe)(struct tf_storage *s, tf_storage_msg_cb cb, void *arg);
    /* Add delta to the counter key (created at 0), setting its expiry to ttl_ms when it was
     * created by this call; cb gets the new value. */
    int (*count)(struct tf_storage *s, const char *key, int64_t delta, uint32_t ttl_ms,
                 tf_storage_count_cb cb, void *arg);
    /* Whether the store answered last time it was tried (connected now); no I/O. */
    bool (*up)(const struct tf_storage *s);
};

/* The store's cluster operations, or NULL for a single-node store. */
static inline const struct tf_storage_cluster_ops *tf_storage_cluster(const struct tf_storage *s)
{
    return s->ops->cluster;
}

/* Whether the store is reachable now (a single-node store always is). */
static inline bool tf_storage_up(const struct tf_storage *s)
{
    return !s->ops->cluster || !s->ops->cluster->up || s->ops->cluster->up(s);
}

#endif
