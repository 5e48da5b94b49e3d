/*
 * storage_redis_lock.c: leased locks of the Redis store, shared by every node that uses the
 * same Redis and prefix. A lease is the key P:l:<name> holding "<token> <host> <pid>" (a
 * fresh random token per acquisition) with a PX expiry of the lease: taking it is one
 * SET NX PX, so a crashed holder's lease simply expires; renewing and releasing are Lua
 * scripts that act only while the key still holds our exact value, so a node never extends
 * or deletes a lease that expired and was taken by someone else (that answers TF_EDENIED,
 * as the filesystem store does). Waiting for a holder is a loop timer that retries the SET,
 * never a blocking call. Expiry is Redis's clock, not ours.
 */
#include "storage_redis_int.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOCK_RETRY_MS 150

static const char RELEASE_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                  "redis.call('DEL', KEYS[1]) return 1 end return 0";
static const char RENEW_LUA[] = "if redis.call('GET', KEYS[1]) == ARGV[1] then "
                                "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end return 0";

/* A lease this store holds; owned by the store's list. */
struct rs_held {
    struct rs_held *next;
    char *name;
    char lease[RS_LEASE_MAX];
};

static void held_add(struct tf_storage_redis *rs, const char *name, const char *lease)
{
    struct rs_held *h = tf_calloc(1, sizeof(*h));
    h->name = tf_strdup(name);
    snprintf(h->lease, sizeof(h->lease), "%s", lease);
    h->next = rs->held;
    rs->held = h;
}

/* The entry for name (and lease, when not NULL), unlinked; NULL if none. */
static struct rs_held *held_take(struct tf_storage_redis *rs, const char *name, const char *lease)
{
    for (struct rs_held **pp = &rs->held; *pp; pp = &(*pp)->next) {
        struct rs_held *h = *pp;
        if (strcmp(h->name, name) == 0 && (!lease || strcmp(h->lease, lease) == 0)) {
            *pp = h->next;
            return h;
        }
    }
    return NULL;
}

static void held_free(struct rs_held *h)
{
    if (h) {
        free(h->name);
        free(h);
    }
}

void tf_rs_lock_send(struct rs_op *op)
{
    char *key = tf_rs_key(op->rs, 'l', op->key);
    char ms[24];
    snprintf(ms, sizeof(ms), "%llu", (unsigned long long)op->lease_s * 1000ULL);
    const char *argv[6];
    int argc;
    if (op->kind == RK_LOCK) {
        const char *a[] = {"SET", key, op->lease, "NX", "PX", ms};
        memcpy(argv, a, sizeof(a));
        argc = 6;
    } else {
        const char *a[] = {"EVAL", op->kind == RK_RENEW ? RENEW_LUA : RELEASE_LUA, "1", key,
                           op->lease, ms};
        memcpy(argv, a, sizeof(a));
        argc = op->kind == RK_RENEW ? 6 : 5;
    }
    size_t lens[6];
    for (int i = 0; i < argc; i++)
        lens[i] = strlen(argv[i]);
    tf_rs_command(op, argc, argv, lens);
    free(key);
}

static void on_lock_timer(uv_timer_t *t)
{
    struct rs_op *op = t->data;
    op->timer_waiting = false;
    tf_rs_dispatch(op);
}

/* The lease is held elsewhere: try again on a timer, or give up. */
static void lock_busy(struct rs_op *op)
{
    uint64_t now = tf_mono_ms();
    int err = TF_EBUSY;
    if (now < op->deadline_ms) {
        err = 0;
        if (!op->timer_used) {
            err = uv_timer_init(op->rs->base.loop, &op->timer);
            op->timer.data = op;
            op->timer_used = err == 0;
        }
        if (!err)
            err = uv_timer_start(&op->timer, on_lock_timer,
                                 TF_MIN(LOCK_RETRY_MS, op->deadline_ms - now), 0);
        if (!err) {
            op->timer_waiting = true;
            return;
        }
    }
    op->err = err;
    tf_rs_complete(op);
}

static struct rs_op *lockop_new(struct tf_storage_redis *rs, enum rs_kind kind, const char *name,
                                const char *lease, uint32_t lease_s, tf_storage_done_cb cb,
                                void *arg)
{
    struct rs_op *op = tf_rs_op_new(rs, kind, name, arg);
    op->cb.done = cb;
    op->lease_s = lease_s;
    if (lease)
        snprintf(op->lease, sizeof(op->lease), "%s", lease);
    return op;
}

void tf_rs_lock_reply(struct rs_op *op, redisReply *r)
{
    struct tf_storage_redis *rs = op->rs;
    bool taken = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "OK") == 0;
    switch (op->kind) {
    case RK_LOCK:
        if (rs->closing) {
            /* Taken while closing: give it straight back (see tf_rs_locks_close). */
            if (taken)
                tf_rs_dispatch(lockop_new(rs, RK_UNLOCK, op->key, op->lease, 0, NULL, NULL));
            op->err = TF_ECLOSED;
            break;
        }
        if (r->type == REDIS_REPLY_NIL) {
            lock_busy(op);
            return;
        }
        op->err = taken ? 0 : TF_EPROTO;
        if (taken)
            held_add(rs, op->key, op->lease);
        break;
    case RK_RENEW:
    case RK_UNLOCK:
        op->err = r->type != REDIS_REPLY_INTEGER ? TF_EPROTO : r->integer == 1 ? 0 : TF_EDENIED;
        if (op->kind == RK_RENEW && op->err == TF_EDENIED)
            held_free(held_take(rs, op->key, op->lease)); /* lost it */
        break;
    default:
        op->err = TF_EPROTO;
        break;
    }
    tf_rs_complete(op);
}

static int check_start(struct tf_storage_redis *rs, const char *name, bool has_cb)
{
    if (rs->closing)
        return TF_ECLOSED;
    if (!has_cb || !tf_storage_key_valid(name))
        return TF_EINVAL;
    return 0;
}

int tf_rs_lock(struct tf_storage *s, const char *name, uint32_t lease_s, uint32_t wait_ms,
               tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, name, cb != NULL);
    if (err)
        return err;
    if (lease_s == 0)
        return TF_EINVAL;
    unsigned char raw[RS_TOKEN_BYTES];
    err = uv_random(NULL, NULL, raw, sizeof(raw), 0, NULL);
    if (err)
        return err;
    char lease[RS_LEASE_MAX];
    size_t n = 0;
    for (size_t i = 0; i < sizeof(raw); i++)
        n += (size_t)snprintf(lease + n, sizeof(lease) - n, "%02x", raw[i]);
    snprintf(lease + n, sizeof(lease) - n, " %.200s %ld", rs->hostname, (long)getpid());
    struct rs_op *op = lockop_new(rs, RK_LOCK, name, lease, lease_s, cb, arg);
    op->deadline_ms = tf_mono_ms() + wait_ms;
    tf_rs_dispatch(op);
    return 0;
}

int tf_rs_unlock(struct tf_storage *s, const char *name, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, name, cb != NULL);
    if (err)
        return err;
    struct rs_held *h = held_take(rs, name, NULL);
    struct rs_op *op = lockop_new(rs, RK_UNLOCK, name, h ? h->lease : NULL, 0, cb, arg);
    if (h)
        tf_rs_dispatch(op);
    else
        tf_rs_fail_later(op, TF_ENOTFOUND);
    held_free(h);
    return 0;
}

int tf_rs_renew(struct tf_storage *s, const char *name, uint32_t lease_s, tf_storage_done_cb cb,
                void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, name, cb != NULL);
    if (err)
        return err;
    if (lease_s == 0)
        return TF_EINVAL;
    const char *lease = NULL;
    for (struct rs_held *h = rs->held; h && !lease; h = h->next) {
        if (strcmp(h->name, name) == 0)
            lease = h->lease;
    }
    struct rs_op *op = lockop_new(rs, RK_RENEW, name, lease, lease_s, cb, arg);
    if (lease)
        tf_rs_dispatch(op);
    else
        tf_rs_fail_later(op, TF_ENOTFOUND);
    return 0;
}

void tf_rs_locks_close(struct tf_storage_redis *rs)
{
    struct rs_op *next;
    for (struct rs_op *op = rs->ops; op; op = next) {
        next = op->next;
        if (op->kind != RK_LOCK || !op->timer_waiting)
            continue;
        uv_timer_stop(&op->timer);
        op->timer_waiting = false;
        op->err = TF_ECLOSED;
        tf_rs_complete(op); /* its callback runs once the timer has closed */
    }
    while (rs->held) {
        struct rs_held *h = rs->held;
        rs->held = h->next;
        tf_rs_dispatch(lockop_new(rs, RK_UNLOCK, h->name, h->lease, 0, NULL, NULL));
        held_free(h);
    }
}

void tf_rs_locks_free(struct tf_storage_redis *rs)
{
    while (rs->held) {
        struct rs_held *h = rs->held;
        rs->held = h->next;
        held_free(h);
    }
}
