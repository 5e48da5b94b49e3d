/*
 * storage_redis_pubsub.c: the Redis store's cluster extension (include/storage_cluster.h):
 * short-lived values (P:e:<key>, SET PX), announcements (PUBLISH on the channel P:cluster),
 * counters with expiry (P:n:<key>, INCRBY then PEXPIRE in one Lua script), all sent as
 * ordinary operations on the store's connection; and the subscriber: a second connection of
 * its own, because a subscribed hiredis context cannot run other commands. The subscriber
 * resolves the host with uv_getaddrinfo (rediss://: connects to the TLS relay, which
 * resolves), connects, AUTHs, SUBSCRIBEs, and on any loss
 * reconnects after a backoff (100 ms doubling to 5 s); each subscription after the first
 * tells the owner that messages may have been missed. It never blocks the loop and never
 * logs message contents (they may name challenges).
 */
#include "storage_redis_int.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_crypt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SUB_BACKOFF_MIN_MS 100
#define SUB_BACKOFF_MAX_MS 5000

/* INCRBY, and an expiry for a counter that has none yet. KEYS: n:key. ARGV: delta, ttl ms. */
static const char COUNT_LUA[] = "local v = redis.call('INCRBY', KEYS[1], ARGV[1]) "
                                "if redis.call('PTTL', KEYS[1]) < 0 then "
                                "redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return v";

/* The subscriber connection. Owned by the store (rs->sub); freed when its handles are
 * closed, after the store stopped it. */
struct rs_sub {
    struct tf_storage_redis *rs; /* borrowed: the store waits for us at close */
    tf_storage_msg_cb cb;
    void *arg;
    char *channel;          /* owned: "<prefix>:cluster" */
    redisAsyncContext *ac;  /* NULL while not connected */
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_timer_t retry;       /* reconnect backoff; unreferenced */
    uint32_t backoff_ms;
    bool subscribed_once;   /* a later subscription means messages may have been missed */
    bool down_logged;
    bool closing, timer_closed;
};

/* ---- operations on the store's connection ---- */

void tf_rs_ext_send(struct rs_op *op)
{
    struct tf_storage_redis *rs = op->rs;
    char num[24], ms[24];
    snprintf(ms, sizeof(ms), "%u", op->ttl_ms);
    char *key = NULL;
    switch (op->kind) {
    case RK_PUT_TTL: {
        key = tf_rs_key(rs, 'e', op->key);
        const char *argv[] = {"SET", key, op->data, "PX", ms};
        size_t lens[] = {3, strlen(key), op->len, 2, strlen(ms)};
        tf_rs_command(op, 5, argv, lens);
        break;
    }
    case RK_GET_TTL: {
        key = tf_rs_key(rs, 'e', op->key);
        const char *argv[] = {"GET", key};
        size_t lens[] = {3, strlen(key)};
        tf_rs_command(op, 2, argv, lens);
        break;
    }
    case RK_PUBLISH: {
        key = tf_asprintf("%s:cluster", rs->prefix);
        const char *argv[] = {"PUBLISH", key, op->data};
        size_t lens[] = {7, strlen(key), op->len};
        tf_rs_command(op, 3, argv, lens);
        break;
    }
    default: { /* RK_COUNT */
        key = tf_rs_key(rs, 'n', op->key);
        snprintf(num, sizeof(num), "%lld", (long long)op->delta);
        const char *argv[] = {"EVAL", COUNT_LUA, "1", key, num, ms};
        size_t lens[6];
        for (int i = 0; i < 6; i++)
            lens[i] = strlen(argv[i]);
        tf_rs_command(op, 6, argv, lens);
        break;
    }
    }
    free(key);
}

/* The reply of an extension command (not an error reply: on_reply handled those). */
void tf_rs_ext_reply(struct rs_op *op, redisReply *r)
{
    switch (op->kind) {
    case RK_PUT_TTL:
        op->err = r->type == REDIS_REPLY_STATUS ? 0 : TF_EPROTO;
        break;
    case RK_GET_TTL:
        if (r->type == REDIS_REPLY_STRING)
            tf_rs_got_value(op, r->str, r->len);
        else
            op->err = r->type == REDIS_REPLY_NIL ? UV_ENOENT : TF_EPROTO;
        break;
    case RK_PUBLISH:
        op->err = r->type == REDIS_REPLY_INTEGER ? 0 : TF_EPROTO;
        break;
    default:
        op->err = r->type == REDIS_REPLY_INTEGER ? 0 : TF_EPROTO;
        op->value = r->type == REDIS_REPLY_INTEGER ? r->integer : 0;
        break;
    }
}

static int ext_start(struct tf_storage *s, const char *key, bool has_cb,
                     struct tf_storage_redis **out)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    *out = rs;
    if (rs->closing)
        return TF_ECLOSED;
    if (!has_cb || (key && !tf_storage_key_valid(key)))
        return TF_EINVAL;
    return 0;
}

static int rs_put_ttl(struct tf_storage *s, const char *key, const void *data, size_t len,
                      bool secret, uint32_t ttl_ms, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_redis *rs;
    int err = ext_start(s, key, cb != NULL, &rs);
    if (!err && (len > TF_STORAGE_MAX_VALUE || (!data && len) || ttl_ms == 0))
        err = len > TF_STORAGE_MAX_VALUE ? TF_ETOOBIG : TF_EINVAL;
    if (err)
        return err;
    return tf_rs_put_op(rs, RK_PUT_TTL, key, data, len, secret, ttl_ms, cb, arg);
}

static int rs_get_ttl(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg)
{
    struct tf_storage_redis *rs;
    int err = ext_start(s, key, cb != NULL, &rs);
    if (err)
        return err;
    struct rs_op *op = tf_rs_op_new(rs, RK_GET_TTL, key, arg);
    op->cb.get = cb;
    tf_rs_dispatch(op);
    return 0;
}

static int rs_publish(struct tf_storage *s, const char *msg, size_t len, tf_storage_done_cb cb,
                      void *arg)
{
    struct tf_storage_redis *rs;
    int err = ext_start(s, NULL, cb != NULL, &rs);
    if (!err && (!msg || len == 0 || len > TF_STORAGE_MSG_MAX))
        err = TF_EINVAL;
    if (err)
        return err;
    struct rs_op *op = tf_rs_op_new(rs, RK_PUBLISH, "", arg);
    op->cb.done = cb;
    op->data = tf_strndup(msg, len);
    op->len = len;
    tf_rs_dispatch(op);
    return 0;
}

static int rs_count(struct tf_storage *s, const char *key, int64_t delta, uint32_t ttl_ms,
                    tf_storage_count_cb cb, void *arg)
{
    struct tf_storage_redis *rs;
    int err = ext_start(s, key, cb != NULL, &rs);
    if (!err && ttl_ms == 0)
        err = TF_EINVAL;
    if (err)
        return err;
    struct rs_op *op = tf_rs_op_new(rs, RK_COUNT, key, arg);
    op->cb.count = cb;
    op->delta = delta;
    op->ttl_ms = ttl_ms;
    tf_rs_dispatch(op);
    return 0;
}

/* ---- the subscriber connection ---- */

static void sub_connect_start(struct rs_sub *sub);
static void sub_release(struct rs_sub *sub);

static void on_sub_retry(uv_timer_t *t)
{
    sub_connect_start(t->data);
}

static void sub_down(struct rs_sub *sub, const char *why)
{
    if (sub->closing)
        return;
    if (!sub->down_logged)
        TF_DEBUG(RS_MOD, "redis %s:%d subscriber down (%s); reconnecting", sub->rs->host,
                 sub->rs->port, why);
    sub->down_logged = true;
    uint32_t delay = sub->backoff_ms;
    sub->backoff_ms = TF_MIN(sub->backoff_ms * 2, SUB_BACKOFF_MAX_MS);
    uv_timer_start(&sub->retry, on_sub_retry, delay, 0);
}

/* Drop the connection ourselves (a refused AUTH or SUBSCRIBE) and retry later. */
static void sub_drop(struct rs_sub *sub, const char *why)
{
    redisAsyncContext *ac = sub->ac;
    sub->ac = NULL;
    if (ac) {
        ac->data = NULL;
        ac->onDisconnect = NULL;
        redisAsyncFree(ac); /* deferred by hiredis inside its own callbacks */
    }
    sub_down(sub, why);
}

/* Every reply of the subscribed connection: AUTH's, then subscribe confirmations and
 * messages. NULL: the connection is going away (its callbacks handle that). */
static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct rs_sub *sub = privdata;
    redisReply *r = reply;
    if (!r || ac->data != sub || sub->closing)
        return;
    if (r->type == REDIS_REPLY_ERROR) {
        TF_WARN(RS_MOD, "redis %s:%d subscriber refused: %.*s", sub->rs->host, sub->rs->port,
                (int)TF_MIN(r->len, 256), r->str);
        sub_drop(sub, "refused");
        return;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return; /* AUTH's +OK */
    const redisReply *kind = r->element[0], *body = r->element[2];
    if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        bool again = sub->subscribed_once;
        sub->subscribed_once = true;
        sub->backoff_ms = SUB_BACKOFF_MIN_MS;
        if (sub->down_logged)
            TF_DEBUG(RS_MOD, "redis %s:%d subscriber back", sub->rs->host, sub->rs->port);
        sub->down_logged = false;
        if (again)
            sub->cb(NULL, 0, sub->arg);
    } else if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0 &&
               body->type == REDIS_REPLY_STRING && body->len <= TF_STORAGE_MSG_MAX) {
        char *msg = tf_strndup(body->str, body->len);
        sub->cb(msg, body->len, sub->arg);
        free(msg);
    }
}

static void on_sub_connect(const redisAsyncContext *ac, int status)
{
    struct rs_sub *sub = ac->data;
    if (!sub || ac != sub->ac || status == REDIS_OK)
        return;
    sub->ac = NULL; /* hiredis frees it after this callback */
    sub_down(sub, tf_rs_why(sub->rs, ac->errstr[0] ? ac->errstr : "connect failed"));
}

static void on_sub_disconnect(const redisAsyncContext *ac, int status)
{
    struct rs_sub *sub = ac->data;
    (void)status;
    if (!sub || ac != sub->ac)
        return;
    sub->ac = NULL;
    sub_down(sub, tf_rs_why(sub->rs, "connection lost"));
}

static void sub_connect_ip(struct rs_sub *sub, const char *ip)
{
    struct tf_storage_redis *rs = sub->rs;
    char why[160];
    redisAsyncContext *ac = tf_rs_connect(rs, ip, why, sizeof(why));
    if (!ac) {
        sub_down(sub, why);
        return;
    }
    /* A vanished Redis is noticed even with no traffic (the relay's TCP has it for TLS:
     * on a unix socket hiredis would fail the whole connection). */
    if (!rs->relay)
        redisEnableKeepAlive(&ac->c);
    ac->data = sub;
    redisAsyncSetConnectCallback(ac, on_sub_connect);
    redisAsyncSetDisconnectCallback(ac, on_sub_disconnect);
    sub->ac = ac;
    if (rs->pass) {
        const char *argv[] = {"AUTH", rs->user ? rs->user : rs->pass, rs->pass};
        size_t lens[] = {4, strlen(argv[1]), strlen(rs->pass)};
        redisAsyncCommandArgv(ac, on_sub_reply, sub, rs->user ? 3 : 2, argv, lens);
    }
    const char *argv[] = {"SUBSCRIBE", sub->channel};
    size_t lens[] = {9, strlen(sub->channel)};
    redisAsyncCommandArgv(ac, on_sub_reply, sub, 2, argv, lens);
}

static void on_sub_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct rs_sub *sub = req->data;
    sub->gai_pending = false;
    char ip[64] = "";
    status = tf_rs_gai_ip(status, res, ip, sizeof(ip));
    if (sub->closing) {
        sub_release(sub);
        return;
    }
    if (status)
        sub_down(sub, tf_strerror(status));
    else
        sub_connect_ip(sub, ip);
}

static void sub_connect_start(struct rs_sub *sub)
{
    if (sub->rs->relay) {
        sub_connect_ip(sub, NULL); /* the relay resolves for each connection it relays */
        return;
    }
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    sub->gai.data = sub;
    int err = uv_getaddrinfo(sub->rs->base.loop, &sub->gai, on_sub_gai, sub->rs->host, NULL,
                             &hints);
    if (err) {
        sub_down(sub, tf_strerror(err));
        return;
    }
    sub->gai_pending = true;
}

static int rs_subscribe(struct tf_storage *s, tf_storage_msg_cb cb, void *arg)
{
    struct tf_storage_redis *rs;
    int err = ext_start(s, NULL, cb != NULL, &rs);
    if (err)
        return err;
    if (rs->sub)
        return TF_EBUSY;
    struct rs_sub *sub = tf_calloc(1, sizeof(*sub));
    sub->rs = rs;
    sub->cb = cb;
    sub->arg = arg;
    sub->channel = tf_asprintf("%s:cluster", rs->prefix);
    sub->backoff_ms = SUB_BACKOFF_MIN_MS;
    uv_timer_init(rs->base.loop, &sub->retry);
    sub->retry.data = sub;
    uv_unref((uv_handle_t *)&sub->retry);
    rs->sub = sub;
    sub_connect_start(sub);
    return 0;
}

/* The subscriber is freed once both its timer and its resolver request are done. */
static void sub_release(struct rs_sub *sub)
{
    struct tf_storage_redis *rs = sub->rs;
    if (sub->timer_closed && !sub->gai_pending) {
        free(sub->channel);
        free(sub);
    }
    tf_rs_free_step(rs);
}

static void on_sub_timer_closed(uv_handle_t *h)
{
    struct rs_sub *sub = h->data;
    sub->timer_closed = true;
    sub_release(sub);
}

/* The store is freeing: stop the subscriber; what it waits for is counted in
 * rs->closes_pending (the retry timer, and the resolver request while pending). */
void tf_rs_sub_close(struct tf_storage_redis *rs)
{
    struct rs_sub *sub = rs->sub;
    if (!sub)
        return;
    rs->sub = NULL;
    sub->closing = true;
    if (sub->ac) {
        redisAsyncContext *ac = sub->ac;
        sub->ac = NULL;
        ac->data = NULL;
        ac->onDisconnect = NULL;
        ac->onConnect = NULL;
        redisAsyncFree(ac);
    }
    rs->closes_pending++;
    if (sub->gai_pending) {
        rs->closes_pending++;
        uv_cancel((uv_req_t *)&sub->gai);
    }
    uv_close((uv_handle_t *)&sub->retry, on_sub_timer_closed);
}

static bool rs_up(const struct tf_storage *s)
{
    return ((const struct tf_storage_redis *)s)->state == RS_UP;
}

const struct tf_storage_cluster_ops tf_rs_cluster_ops = {
    .up = rs_up,
    .put_ttl = rs_put_ttl,
    .get_ttl = rs_get_ttl,
    .publish = rs_publish,
    .subscribe = rs_subscribe,
    .count = rs_count,
};
