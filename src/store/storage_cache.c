/*
 * storage_cache.c: --storage-cache DIR, a store that wraps the Redis store with a local
 * write-through copy of the certificates (include/tlsfront/store/storage_cache.h), so that a
 * node restarted while Redis is unreachable still serves what it had.
 *
 * Redis stays the source of truth: every call goes to it first. Values under "certs/" that
 * Redis returns or accepts (get, put) are then written to the directory store on DIR, and
 * deleted there when deleted in Redis. Only when Redis is unreachable (connection refused,
 * reset, timed out, ...) do get and list of "certs/..." answer from the directory instead;
 * a key the directory does not hold then fails with Redis's error, never UV_ENOENT, so
 * callers still know the store could not be asked (a name not cached is not ordered
 * without the lock). Everything else (other keys, locks, the cluster operations) goes to
 * Redis alone.
 *
 * The directory holds the values as the Redis store hands them to its callers: private
 * keys decrypted, like the directory store (every cache file is written 0600, the directory
 * 0700). A write-through that fails is logged and does not fail the call. Writes of the
 * same key (a put and a get's write-through) are not ordered among themselves, so the copy
 * of a key can lag behind Redis until its next write or read.
 */
#include "tlsfront/store/storage_cache.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_cluster.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SC_MOD "storage"

struct tf_storage_cache {
    struct tf_storage base;
    struct tf_storage *remote; /* the Redis store, owned */
    struct tf_storage *dir;    /* the directory store on DIR, owned */
    bool closing;
    void (*close_done)(void *arg);
    void *close_arg;
};

enum sc_kind { SC_GET, SC_PUT, SC_DEL, SC_LIST };

struct sc_op {
    struct tf_storage_cache *c;
    enum sc_kind kind;
    char *key;
    char *data; /* put: the value, for the write-through */
    size_t len;
    int remote_err;
    union {
        tf_storage_get_cb get;
        tf_storage_done_cb done;
        tf_storage_list_cb list;
    } cb;
    void *arg;
};

static struct tf_storage_cache *to_cache(struct tf_storage *s)
{
    return (struct tf_storage_cache *)s;
}

/* Keys that are copied to the directory: certificates, their keys and metadata. */
static bool cached_key(const char *key)
{
    return strcmp(key, "certs") == 0 || strncmp(key, "certs/", 6) == 0;
}

bool tf_storage_cache_err_unreachable(int err)
{
    switch (err) {
    case UV_ECONNREFUSED:
    case UV_ECONNRESET:
    case UV_ECONNABORTED:
    case UV_ETIMEDOUT:
    case UV_ENOTCONN:
    case UV_EHOSTUNREACH:
    case UV_ENETUNREACH:
    case UV_ENETDOWN:
    case UV_EPIPE:
    case UV_EBADF:
    case UV_EAI_AGAIN:
    case UV_EAI_FAIL:
    case UV_EAI_NONAME:
    case TF_ETIMEDOUT:
        return true;
    default:
        return false;
    }
}

static struct sc_op *op_new(struct tf_storage_cache *c, enum sc_kind kind, const char *key,
                            void *arg)
{
    struct sc_op *op = tf_calloc(1, sizeof(*op));
    op->c = c;
    op->kind = kind;
    op->key = tf_strdup(key);
    op->arg = arg;
    return op;
}

static void op_free(struct sc_op *op)
{
    free(op->key);
    free(op->data);
    free(op);
}

/* ---- write-through ---- */

static void on_through_done(int err, void *arg)
{
    char *key = arg;
    if (err && err != UV_ENOENT)
        TF_WARN(SC_MOD, "storage cache: %s not updated: %s", key, tf_strerror(err));
    free(key);
}

/* Copy a value Redis returned to the directory, in the background. */
static void write_through(struct tf_storage_cache *c, const char *key, const char *data, size_t len)
{
    char *k = tf_strdup(key);
    int rc = tf_storage_put(c->dir, key, data, len, true, on_through_done, k);
    if (rc) {
        if (rc != TF_ECLOSED)
            TF_WARN(SC_MOD, "storage cache: %s not updated: %s", key, tf_strerror(rc));
        free(k);
    }
}

/* ---- get ---- */

static void on_dir_get(int err, char *data, size_t len, void *arg)
{
    struct sc_op *op = arg;
    if (err) {
        op->cb.get(op->remote_err, NULL, 0, op->arg);
    } else {
        TF_DEBUG(SC_MOD, "storage cache: %s read from the cache (%s)", op->key,
                 tf_strerror(op->remote_err));
        op->cb.get(0, data, len, op->arg);
    }
    op_free(op);
}

static void on_remote_get(int err, char *data, size_t len, void *arg)
{
    struct sc_op *op = arg;
    struct tf_storage_cache *c = op->c;
    if (err == 0 && cached_key(op->key))
        write_through(c, op->key, data, len);
    if (err && tf_storage_cache_err_unreachable(err) && cached_key(op->key)) {
        op->remote_err = err;
        if (tf_storage_get(c->dir, op->key, on_dir_get, op) == 0)
            return;
    }
    op->cb.get(err, data, len, op->arg);
    op_free(op);
}

static int sc_get(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    if (c->closing)
        return TF_ECLOSED;
    if (!cb || !tf_storage_key_valid(key))
        return TF_EINVAL;
    struct sc_op *op = op_new(c, SC_GET, key, arg);
    op->cb.get = cb;
    int rc = tf_storage_get(c->remote, key, on_remote_get, op);
    if (rc)
        op_free(op);
    return rc;
}

/* ---- put and del ---- */

static void on_dir_done(int err, void *arg)
{
    struct sc_op *op = arg;
    if (err && !(op->kind == SC_DEL && err == UV_ENOENT))
        TF_WARN(SC_MOD, "storage cache: %s not %s: %s", op->key,
                op->kind == SC_PUT ? "updated" : "removed", tf_strerror(err));
    op->cb.done(0, op->arg);
    op_free(op);
}

static void on_remote_done(int err, void *arg)
{
    struct sc_op *op = arg;
    struct tf_storage_cache *c = op->c;
    if (err == 0 && cached_key(op->key)) {
        int rc = op->kind == SC_PUT
                     ? tf_storage_put(c->dir, op->key, op->data, op->len, true, on_dir_done, op)
                     : tf_storage_del(c->dir, op->key, on_dir_done, op);
        if (rc == 0)
            return;
        if (rc != TF_ECLOSED)
            TF_WARN(SC_MOD, "storage cache: %s not written: %s", op->key, tf_strerror(rc));
    }
    op->cb.done(err, op->arg);
    op_free(op);
}

static int sc_put(struct tf_storage *s, const char *key, const void *data, size_t len, bool secret,
                  tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    if (c->closing)
        return TF_ECLOSED;
    if (!cb || !tf_storage_key_valid(key))
        return TF_EINVAL;
    struct sc_op *op = op_new(c, SC_PUT, key, arg);
    op->cb.done = cb;
    int rc = tf_storage_put(c->remote, key, data, len, secret, on_remote_done, op);
    if (rc == 0 && cached_key(key)) {
        op->data = tf_calloc(1, len + 1);
        if (len)
            memcpy(op->data, data, len);
        op->len = len;
    }
    if (rc)
        op_free(op);
    return rc;
}

static int sc_del(struct tf_storage *s, const char *key, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    if (c->closing)
        return TF_ECLOSED;
    if (!cb || !tf_storage_key_valid(key))
        return TF_EINVAL;
    struct sc_op *op = op_new(c, SC_DEL, key, arg);
    op->cb.done = cb;
    int rc = tf_storage_del(c->remote, key, on_remote_done, op);
    if (rc)
        op_free(op);
    return rc;
}

/* ---- list ---- */

static void on_dir_list(int err, char **keys, int n, void *arg)
{
    struct sc_op *op = arg;
    if (err) {
        op->cb.list(op->remote_err, NULL, 0, op->arg);
    } else {
        TF_INFO(SC_MOD, "storage cache: %s listed from the cache (%d keys; redis: %s)", op->key, n,
                tf_strerror(op->remote_err));
        op->cb.list(0, keys, n, op->arg);
    }
    op_free(op);
}

static void on_remote_list(int err, char **keys, int n, void *arg)
{
    struct sc_op *op = arg;
    if (err && tf_storage_cache_err_unreachable(err) && cached_key(op->key)) {
        op->remote_err = err;
        if (tf_storage_list(op->c->dir, op->key, on_dir_list, op) == 0)
            return;
    }
    op->cb.list(err, keys, n, op->arg);
    op_free(op);
}

static int sc_list(struct tf_storage *s, const char *prefix, tf_storage_list_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    if (c->closing)
        return TF_ECLOSED;
    if (!cb || !prefix)
        return TF_EINVAL;
    struct sc_op *op = op_new(c, SC_LIST, prefix, arg);
    op->cb.list = cb;
    int rc = tf_storage_list(c->remote, prefix, on_remote_list, op);
    if (rc)
        op_free(op);
    return rc;
}

/* ---- locks: Redis alone ---- */

static int sc_lock(struct tf_storage *s, const char *name, uint32_t lease_s, uint32_t wait_ms,
                   tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    return c->closing ? TF_ECLOSED : tf_storage_lock(c->remote, name, lease_s, wait_ms, cb, arg);
}

static int sc_unlock(struct tf_storage *s, const char *name, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    return c->closing ? TF_ECLOSED : tf_storage_unlock(c->remote, name, cb, arg);
}

static int sc_renew(struct tf_storage *s, const char *name, uint32_t lease_s, tf_storage_done_cb cb,
                    void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    return c->closing ? TF_ECLOSED : tf_storage_renew(c->remote, name, lease_s, cb, arg);
}

/* ---- close: Redis first (its callbacks may still write through), then the directory ---- */

static void on_dir_closed(void *arg)
{
    struct tf_storage_cache *c = arg;
    void (*done)(void *) = c->close_done;
    void *done_arg = c->close_arg;
    free(c);
    if (done)
        done(done_arg);
}

static void on_remote_closed(void *arg)
{
    struct tf_storage_cache *c = arg;
    tf_storage_close(c->dir, on_dir_closed, c);
}

static void sc_close(struct tf_storage *s, void (*done)(void *arg), void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    c->closing = true;
    c->close_done = done;
    c->close_arg = arg;
    tf_storage_close(c->remote, on_remote_closed, c);
}

/* ---- cluster operations: forwarded to Redis ---- */

static const struct tf_storage_cluster_ops *inner_cluster(struct tf_storage_cache *c)
{
    return tf_storage_cluster(c->remote);
}

static int sc_put_ttl(struct tf_storage *s, const char *key, const void *data, size_t len,
                      bool secret, uint32_t ttl_ms, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    if (c->closing)
        return TF_ECLOSED;
    return inner_cluster(c)->put_ttl(c->remote, key, data, len, secret, ttl_ms, cb, arg);
}

static int sc_get_ttl(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    return c->closing ? TF_ECLOSED : inner_cluster(c)->get_ttl(c->remote, key, cb, arg);
}

static int sc_publish(struct tf_storage *s, const char *msg, size_t len, tf_storage_done_cb cb,
                      void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    return c->closing ? TF_ECLOSED : inner_cluster(c)->publish(c->remote, msg, len, cb, arg);
}

static int sc_subscribe(struct tf_storage *s, tf_storage_msg_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    return c->closing ? TF_ECLOSED : inner_cluster(c)->subscribe(c->remote, cb, arg);
}

static int sc_count(struct tf_storage *s, const char *key, int64_t delta, uint32_t ttl_ms,
                    tf_storage_count_cb cb, void *arg)
{
    struct tf_storage_cache *c = to_cache(s);
    if (c->closing)
        return TF_ECLOSED;
    return inner_cluster(c)->count(c->remote, key, delta, ttl_ms, cb, arg);
}

static bool sc_up(const struct tf_storage *s)
{
    const struct tf_storage_cache *c = (const struct tf_storage_cache *)s;
    return tf_storage_up(c->remote);
}

static const struct tf_storage_cluster_ops cache_cluster_ops = {
    .put_ttl = sc_put_ttl,
    .get_ttl = sc_get_ttl,
    .publish = sc_publish,
    .subscribe = sc_subscribe,
    .count = sc_count,
    .up = sc_up,
};

static const struct tf_storage_ops cache_ops = {
    .get = sc_get,
    .put = sc_put,
    .list = sc_list,
    .del = sc_del,
    .lock = sc_lock,
    .unlock = sc_unlock,
    .close = sc_close,
    .renew = sc_renew,
    .cluster = &cache_cluster_ops,
};

struct tf_storage *tf_storage_cache_new(uv_loop_t *loop, struct tf_storage *remote, const char *dir,
                                        char *err, size_t errlen)
{
    const struct tf_storage_cluster_ops *cl = tf_storage_cluster(remote);
    if (!cl || !cl->put_ttl || !cl->get_ttl || !cl->publish || !cl->subscribe || !cl->count) {
        snprintf(err, errlen, "--storage-cache: only for redis:// storage");
        tf_storage_close(remote, NULL, NULL);
        return NULL;
    }
    char why[300];
    struct tf_storage *d = tf_storage_fs_new(loop, dir, why, sizeof(why));
    if (!d) {
        snprintf(err, errlen, "--storage-cache: %s", why);
        tf_storage_close(remote, NULL, NULL);
        return NULL;
    }
    struct tf_storage_cache *c = tf_calloc(1, sizeof(*c));
    c->base.ops = &cache_ops;
    c->base.loop = loop;
    c->remote = remote;
    c->dir = d;
    return &c->base;
}
