/*
 * storage.h: where tlsfront keeps what it must not lose (ACME account keys, issued
 * certificates and keys, their metadata), behind a small asynchronous interface so that a
 * shared store for several tlsfront nodes can be added later without touching the ACME or
 * TLS code. Keys are relative slash-separated paths of [a-z0-9._-] segments (no "..", no
 * empty segment), e.g. "acme/<ca-id>/account.key", "certs/example.com/cert.pem".
 * Also: a segment must not start with '.' (reserved for temp and lock files) nor with
 * "_wildcard_" (reserved for the on-disk form of wildcards); a segment may start with "*."
 * followed by at least one more character that is not '.', for wildcard certificate names
 * (the filesystem store keeps a segment "*.example.com" as "_wildcard_.example.com").
 * At most TF_STORAGE_MAX_SEGMENT bytes per segment and TF_STORAGE_MAX_KEY per key.
 * Lock names follow the same rules.
 *
 * Every call is asynchronous: the callback runs later on the store's loop, exactly once,
 * never from inside the call. The filesystem implementation does its I/O on libuv's thread
 * pool: writes are atomic (temp file, fsync, rename, fsync directory), secret values 0600,
 * directories 0700. Calls are not ordered among themselves: wait for a put's callback before
 * issuing the next put or del of the same key.
 */
#ifndef TF_STORAGE_H
#define TF_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct tf_storage;
struct tf_storage_cluster_ops;

#define TF_STORAGE_MAX_KEY 1024
#define TF_STORAGE_MAX_SEGMENT 240
/* Largest value get returns (TF_ETOOBIG beyond) and put accepts (synchronous TF_ETOOBIG). */
#define TF_STORAGE_MAX_VALUE (1024 * 1024)

/* err: 0, UV_ENOENT (no such key), or another negative code. data is owned by the callback
 * (free() it) and NUL-terminated beyond len. */
typedef void (*tf_storage_get_cb)(int err, char *data, size_t len, void *arg);
typedef void (*tf_storage_done_cb)(int err, void *arg);
/* keys: owned by the callback (free each and the array). */
typedef void (*tf_storage_list_cb)(int err, char **keys, int n, void *arg);

struct tf_storage_ops {
    int (*get)(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg);
    int (*put)(struct tf_storage *s, const char *key, const void *data, size_t len, bool secret,
               tf_storage_done_cb cb, void *arg);
    int (*list)(struct tf_storage *s, const char *prefix, tf_storage_list_cb cb, void *arg);
    int (*del)(struct tf_storage *s, const char *key, tf_storage_done_cb cb, void *arg);
    /* Try to take the named lock for lease_s seconds, waiting up to wait_ms for a holder
     * (another process or node) to let go. cb: 0 = held by us, TF_EBUSY = still held
     * elsewhere after wait_ms. A lease that is not renewed expires (a crashed holder does
     * not block forever). */
    int (*lock)(struct tf_storage *s, const char *name, uint32_t lease_s, uint32_t wait_ms,
                tf_storage_done_cb cb, void *arg);
    /* Release a lock this store holds. cb: 0 = released, TF_ENOTFOUND = this store does not
     * hold it, TF_EDENIED = the lease had expired and someone else took it over (or removed
     * it) meanwhile, so whatever it protected may have run twice. */
    int (*unlock)(struct tf_storage *s, const char *name, tf_storage_done_cb cb, void *arg);
    /* Wait for every callback in flight, then free s; done may be NULL and runs later, never
     * from inside close. Lock waits still pending end with TF_ECLOSED, locks still held are
     * released, and start calls made after close return TF_ECLOSED. */
    void (*close)(struct tf_storage *s, void (*done)(void *arg), void *arg);
    /* Extend a lock this store holds to lease_s seconds from now. cb: 0 = extended,
     * TF_ENOTFOUND = not held by this store, TF_EDENIED = the lease was lost (see unlock).
     * Added last so positional initialisers of older ops tables stay valid; may be NULL. */
    int (*renew)(struct tf_storage *s, const char *name, uint32_t lease_s, tf_storage_done_cb cb,
                 void *arg);
    /* Cluster extension (include/storage_cluster.h): NULL in a store that serves one node
     * (the filesystem store). */
    const struct tf_storage_cluster_ops *cluster;
};

struct tf_storage {
    const struct tf_storage_ops *ops;
    uv_loop_t *loop;
};

/* Start calls: each returns 0 (cb will run) or a negative code (cb never runs): TF_EINVAL
 * for a bad key or argument, TF_ETOOBIG for a put above TF_STORAGE_MAX_VALUE, TF_ECLOSED
 * after close. */
static inline int tf_storage_get(struct tf_storage *s, const char *key, tf_storage_get_cb cb,
                                 void *arg)
{
    return s->ops->get(s, key, cb, arg);
}
static inline int tf_storage_put(struct tf_storage *s, const char *key, const void *data,
                                 size_t len, bool secret, tf_storage_done_cb cb, void *arg)
{
    return s->ops->put(s, key, data, len, secret, cb, arg);
}
static inline int tf_storage_list(struct tf_storage *s, const char *prefix, tf_storage_list_cb cb,
                                  void *arg)
{
    return s->ops->list(s, prefix, cb, arg);
}
static inline int tf_storage_del(struct tf_storage *s, const char *key, tf_storage_done_cb cb,
                                 void *arg)
{
    return s->ops->del(s, key, cb, arg);
}
static inline int tf_storage_lock(struct tf_storage *s, const char *name, uint32_t lease_s,
                                  uint32_t wait_ms, tf_storage_done_cb cb, void *arg)
{
    return s->ops->lock(s, name, lease_s, wait_ms, cb, arg);
}
static inline int tf_storage_unlock(struct tf_storage *s, const char *name, tf_storage_done_cb cb,
                                    void *arg)
{
    return s->ops->unlock(s, name, cb, arg);
}
static inline int tf_storage_renew(struct tf_storage *s, const char *name, uint32_t lease_s,
                                   tf_storage_done_cb cb, void *arg)
{
    return s->ops->renew ? s->ops->renew(s, name, lease_s, cb, arg) : UV_ENOSYS;
}
static inline void tf_storage_close(struct tf_storage *s, void (*done)(void *arg), void *arg)
{
    s->ops->close(s, done, arg);
}

/* True when key is a valid storage key (see above). */
bool tf_storage_key_valid(const char *key);

/*
 * The filesystem store rooted at dir. Creates dir (0700) if missing and checks, synchronously
 * (start-up only), that it is a writable directory; returns NULL with err filled ("storage
 * DIR: not writable: Permission denied") otherwise.
 */
struct tf_storage *tf_storage_fs_new(uv_loop_t *loop, const char *dir, char *err, size_t errlen);

/* Synchronous helpers for start-up and the `tlsfront certs` command (never on a loop).
 * Same results as get and list: *data (NUL-terminated beyond *len) and *keys (sorted; each
 * and the array) are the caller's to free. A missing prefix directory lists zero keys. */
int tf_storage_fs_read_sync(const char *dir, const char *key, char **data, size_t *len);
int tf_storage_fs_list_sync(const char *dir, const char *prefix, char ***keys, int *n);

#endif
