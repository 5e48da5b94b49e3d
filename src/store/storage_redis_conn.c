/*
 * storage_redis_conn.c: the Redis store's one connection (hiredis async, on the loop through
 * the event adapter below) and its lifetime. States: RESOLVING
 * (uv_getaddrinfo) -> CONNECTING (hiredis connects to the IP literal, then AUTH, SELECT and
 * PING are pipelined) -> UP; any failure -> DOWN, retried after a backoff of 100 ms doubling
 * to 5 s. Operations wait while connecting, are sent when up, and fail at once while down.
 * One watchdog timer enforces the time limit on connecting and on every pending command: a
 * silent Redis costs the connection (pending commands then fail with UV_ETIMEDOUT) and a
 * reconnect. Handles that must not keep a loop alive on their own (the hiredis poll handle,
 * the backoff timer, the idle watchdog) are unreferenced. Also: tf_storage_redis_new and
 * tf_storage_open. Never blocks; hiredis only sees IP literals, so it never resolves.
 * rediss://: hiredis connects to the TLS relay's unix socket instead (no RESOLVING: the
 * relay resolves and connects for each connection, storage_redis_tls.c), and a connection
 * the relay ended is reported with the relay's reason.
 */
#include "storage_redis_int.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_cache.h"
#include "tlsfront/store/storage_crypt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000

static void connect_start(struct tf_storage_redis *rs);

/* ---- the event adapter ----
 * hiredis 0.14's own libuv adapter (hiredis/adapters/libuv.h) returns early when libuv
 * reports a poll error, and libuv reports a failed non-blocking connect (POLLERR) exactly
 * that way, as UV_EBADF: hiredis would never learn that the connection was refused and the
 * attempt would hang until our time limit. This is that adapter with the fix later hiredis
 * releases made: on an error, hiredis reads and writes and finds the socket error itself.
 * The poll handle is unreferenced: an idle connection must not keep a loop alive. */

struct rs_events {
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    uv_poll_t handle;      /* handle.data == this; freed in its close callback */
    int events;
};

static void on_poll(uv_poll_t *h, int status, int events)
{
    struct rs_events *p = h->data;
    int ev = status ? p->events : events;
    if (p->ac && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void ev_update(struct rs_events *p, int add, int del)
{
    p->events = (p->events | add) & ~del;
    if (p->events)
        uv_poll_start(&p->handle, p->events, on_poll);
    else
        uv_poll_stop(&p->handle);
}

static void ev_add_read(void *d)
{
    ev_update(d, UV_READABLE, 0);
}

static void ev_del_read(void *d)
{
    ev_update(d, 0, UV_READABLE);
}

static void ev_add_write(void *d)
{
    ev_update(d, UV_WRITABLE, 0);
}

static void ev_del_write(void *d)
{
    ev_update(d, 0, UV_WRITABLE);
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static void ev_cleanup(void *d)
{
    struct rs_events *p = d;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->handle, on_poll_closed);
}

int tf_rs_ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    struct rs_events *p = tf_calloc(1, sizeof(*p));
    if (uv_poll_init(loop, &p->handle, ac->c.fd) != 0) {
        free(p);
        return REDIS_ERR;
    }
    uv_unref((uv_handle_t *)&p->handle);
    p->handle.data = p;
    p->ac = ac;
    ac->ev.data = p;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    return REDIS_OK;
}

/* ---- down, retry, up ---- */

static void on_retry(uv_timer_t *t)
{
    connect_start(t->data);
}

/* The connection is gone (or never came): fail what waits for it, schedule a retry. */
static void go_down(struct tf_storage_redis *rs, int err, const char *why)
{
    rs->state = RS_DOWN;
    for (struct rs_op *op = rs->ops; op; op = op->next) {
        if (!op->sent && !op->timer_waiting && !op->done_queued)
            tf_rs_fail_later(op, err);
    }
    if (rs->closing) {
        tf_rs_maybe_finish(rs);
        return;
    }
    if (!rs->last_down_err)
        TF_WARN(RS_MOD, "redis %s:%d unavailable (%s); storage operations fail until it is back",
                rs->host, rs->port, why ? why : tf_strerror(err));
    else
        TF_DEBUG(RS_MOD, "redis %s:%d still unavailable (%s)", rs->host, rs->port,
                 why ? why : tf_strerror(err));
    rs->last_down_err = err;
    uint32_t delay = rs->backoff_ms;
    rs->backoff_ms = TF_MIN(rs->backoff_ms * 2, BACKOFF_MAX_MS);
    uv_timer_start(&rs->retry, on_retry, delay, 0);
}

/* Drop the connection ourselves (time limit, refused handshake). */
static void drop(struct tf_storage_redis *rs, int err, const char *why)
{
    redisAsyncContext *ac = rs->ac;
    rs->ac = NULL;
    rs->drop_err = err;
    if (ac)
        redisAsyncFree(ac); /* pending commands complete now with err; deferred in a callback */
    go_down(rs, err, why);
}

static void now_up(struct tf_storage_redis *rs)
{
    rs->state = RS_UP;
    rs->backoff_ms = BACKOFF_MIN_MS;
    if (rs->last_down_err || !rs->was_up)
        TF_INFO(RS_MOD, "redis %s:%d %s", rs->host, rs->port,
                rs->was_up ? "is back" : "connected");
    rs->last_down_err = 0;
    rs->was_up = true;
    struct rs_op *next;
    for (struct rs_op *op = rs->ops; op; op = next) {
        next = op->next; /* sending never frees an op here (failures are deferred) */
        if (!op->sent && !op->timer_waiting && !op->done_queued)
            tf_rs_send(op);
    }
}

/* ---- hiredis callbacks ---- */

static void on_handshake(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct tf_storage_redis *rs = ac->data;
    redisReply *r = reply;
    if (!rs || ac != rs->ac || !r)
        return; /* detached at close, or the connection went: its own callbacks handle it */
    if (r->type == REDIS_REPLY_ERROR) {
        char why[320];
        snprintf(why, sizeof(why), "%s refused: %.*s", (const char *)privdata,
                 (int)TF_MIN(r->len, 256), r->str);
        drop(rs, TF_EDENIED, why);
        return;
    }
    if (--rs->handshake_left == 0)
        now_up(rs);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct tf_storage_redis *rs = ac->data;
    if (!rs || ac != rs->ac || status == REDIS_OK)
        return;
    char why[160];
    snprintf(why, sizeof(why), "%s", ac->errstr[0] ? ac->errstr : "connect failed");
    rs->ac = NULL; /* hiredis frees it after this callback */
    go_down(rs, UV_ECONNREFUSED, tf_rs_why(rs, why));
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct tf_storage_redis *rs = ac->data;
    (void)status;
    if (!rs || ac != rs->ac)
        return;
    rs->ac = NULL;
    go_down(rs, UV_ECONNRESET, tf_rs_why(rs, "connection lost"));
}

/* Queue AUTH, SELECT and PING before anything else; UP when all have answered. */
static void handshake(struct tf_storage_redis *rs)
{
    char db[16];
    snprintf(db, sizeof(db), "%d", rs->db);
    rs->handshake_left = 0;
    if (rs->pass) {
        const char *argv[] = {"AUTH", rs->user ? rs->user : rs->pass, rs->pass};
        size_t lens[] = {4, strlen(argv[1]), strlen(rs->pass)};
        redisAsyncCommandArgv(rs->ac, on_handshake, "AUTH", rs->user ? 3 : 2, argv, lens);
        rs->handshake_left++;
    }
    if (rs->db) {
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        redisAsyncCommandArgv(rs->ac, on_handshake, "SELECT", 2, argv, lens);
        rs->handshake_left++;
    }
    redisAsyncCommand(rs->ac, on_handshake, "PING", "PING");
    rs->handshake_left++;
}

redisAsyncContext *tf_rs_connect(struct tf_storage_redis *rs, const char *ip, char *why,
                                 size_t whylen)
{
    redisAsyncContext *ac = rs->relay ? redisAsyncConnectUnix(tf_rs_relay_path(rs->relay))
                                      : redisAsyncConnect(ip, rs->port);
    if (!ac)
        abort(); /* hiredis returns NULL only when out of memory */
    if (ac->err || tf_rs_ev_attach(ac, rs->base.loop) != REDIS_OK) {
        snprintf(why, whylen, "%s", ac->err ? ac->errstr : "cannot watch the socket");
        redisAsyncFree(ac);
        return NULL;
    }
    return ac;
}

const char *tf_rs_why(const struct tf_storage_redis *rs, const char *fallback)
{
    const char *why = rs->relay ? tf_rs_relay_why(rs->relay) : NULL;
    return why ? why : fallback;
}

static void connect_ip(struct tf_storage_redis *rs, const char *ip)
{
    char why[160];
    redisAsyncContext *ac = tf_rs_connect(rs, ip, why, sizeof(why));
    if (!ac) {
        go_down(rs, UV_ECONNREFUSED, why);
        return;
    }
    ac->data = rs;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rs->ac = ac;
    rs->state = RS_CONNECTING;
    rs->drop_err = UV_ECONNRESET;
    handshake(rs);
}

int tf_rs_gai_ip(int status, struct addrinfo *res, char *ip, size_t iplen)
{
    if (status == 0 && res)
        status = res->ai_family == AF_INET6
                     ? uv_ip6_name((struct sockaddr_in6 *)res->ai_addr, ip, iplen)
                     : uv_ip4_name((struct sockaddr_in *)res->ai_addr, ip, iplen);
    uv_freeaddrinfo(res);
    return status;
}

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct tf_storage_redis *rs = req->data;
    rs->gai_pending = false;
    char ip[64] = "";
    status = tf_rs_gai_ip(status, res, ip, sizeof(ip));
    if (rs->freeing) {
        tf_rs_free_step(rs);
        return;
    }
    if (status) {
        go_down(rs, status, NULL);
        return;
    }
    connect_ip(rs, ip);
}

static void connect_start(struct tf_storage_redis *rs)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rs->state = RS_RESOLVING;
    rs->connect_deadline_ms = tf_mono_ms() + rs->timeout_ms;
    if (rs->relay) {
        connect_ip(rs, NULL); /* the relay resolves for each connection it relays */
        return;
    }
    rs->gai.data = rs;
    int err = uv_getaddrinfo(rs->base.loop, &rs->gai, on_gai, rs->host, NULL, &hints);
    if (err) {
        go_down(rs, err, NULL);
        return;
    }
    rs->gai_pending = true;
}

/* Time limits: connecting, and every command pending on an up connection. */
static void on_watchdog(uv_timer_t *t)
{
    struct tf_storage_redis *rs = t->data;
    uint64_t now = tf_mono_ms();
    if (rs->state == RS_CONNECTING && now >= rs->connect_deadline_ms) {
        drop(rs, UV_ETIMEDOUT, "no connection within the time limit");
        return;
    }
    if (rs->state != RS_UP)
        return;
    for (struct rs_op *op = rs->ops; op; op = op->next) {
        if (op->sent && now - op->sent_ms >= rs->timeout_ms) {
            drop(rs, UV_ETIMEDOUT, "no answer within the time limit");
            return;
        }
    }
}

/* ---- lifetime ---- */

static void rs_free(struct tf_storage_redis *rs)
{
    void (*done)(void *arg) = rs->close_done;
    void *arg = rs->close_arg;
    tf_rs_locks_free(rs);
    tf_storage_crypt_free(rs->crypt);
    free(rs->host);
    free(rs->user);
    free(rs->pass);
    free(rs->prefix);
    free(rs);
    if (done)
        done(arg);
}

/* One of the handles (or the resolver request) the store waits for at close is done. */
void tf_rs_free_step(struct tf_storage_redis *rs)
{
    if (--rs->closes_pending == 0)
        rs_free(rs);
}

static void on_handle_closed(uv_handle_t *h)
{
    tf_rs_free_step(h->data);
}

static void on_relay_closed(void *arg)
{
    tf_rs_free_step(arg);
}

void tf_rs_maybe_finish(struct tf_storage_redis *rs)
{
    if (!rs->closing || rs->inflight > 0 || rs->freeing)
        return;
    rs->freeing = true;
    if (rs->ac) {
        redisAsyncContext *ac = rs->ac;
        rs->ac = NULL;
        ac->data = NULL; /* late handshake replies find no store */
        ac->onDisconnect = NULL;
        ac->onConnect = NULL;
        redisAsyncFree(ac); /* deferred by hiredis when called from one of its callbacks */
    }
    uv_handle_t *hs[] = {(uv_handle_t *)&rs->retry, (uv_handle_t *)&rs->watchdog,
                         (uv_handle_t *)&rs->defer};
    rs->closes_pending = (int)TF_ARRAY_LEN(hs) + (rs->gai_pending ? 1 : 0);
    tf_rs_sub_close(rs);
    if (rs->relay) {
        rs->closes_pending++;
        tf_rs_relay_close(rs->relay, on_relay_closed, rs); /* after hiredis let go of it */
        rs->relay = NULL;
    }
    if (rs->gai_pending)
        uv_cancel((uv_req_t *)&rs->gai); /* on_gai still runs, and counts itself off */
    for (size_t i = 0; i < TF_ARRAY_LEN(hs); i++)
        uv_close(hs[i], on_handle_closed);
}

static void rs_close(struct tf_storage *s, void (*done)(void *arg), void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    if (rs->closing)
        return;
    rs->closing = true;
    rs->close_done = done;
    rs->close_arg = arg;
    uv_timer_stop(&rs->retry);
    tf_rs_locks_close(rs);
    tf_rs_maybe_finish(rs);
}

static const struct tf_storage_ops redis_ops = {
    .get = tf_rs_get,
    .put = tf_rs_put,
    .list = tf_rs_list,
    .del = tf_rs_del,
    .lock = tf_rs_lock,
    .unlock = tf_rs_unlock,
    .close = rs_close,
    .renew = tf_rs_renew,
    .cluster = &tf_rs_cluster_ops,
};

struct tf_storage *tf_storage_redis_new(uv_loop_t *loop, const struct tf_storage_redis_opts *o,
                                        char *err, size_t errlen)
{
    uint32_t timeout_ms = o->timeout_ms ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    struct rs_relay *relay = NULL;
    if (o->url->tls && !(relay = tf_rs_relay_new(loop, o->url->host, o->url->port, o->ca_file,
                                                 timeout_ms, err, errlen))) {
        tf_storage_crypt_free(o->crypt);
        return NULL;
    }
    struct tf_storage_redis *rs = tf_calloc(1, sizeof(*rs));
    rs->relay = relay;
    rs->base.ops = &redis_ops;
    rs->base.loop = loop;
    rs->host = tf_strdup(o->url->host);
    rs->port = o->url->port;
    rs->user = o->url->user ? tf_strdup(o->url->user) : NULL;
    rs->pass = o->url->pass ? tf_strdup(o->url->pass) : NULL;
    rs->db = o->url->db;
    rs->prefix = tf_strdup(o->prefix ? o->prefix : TF_STORAGE_REDIS_PREFIX);
    rs->crypt = o->crypt;
    rs->timeout_ms = timeout_ms;
    rs->backoff_ms = BACKOFF_MIN_MS;
    if (gethostname(rs->hostname, sizeof(rs->hostname) - 1) < 0)
        snprintf(rs->hostname, sizeof(rs->hostname), "localhost");
    uv_timer_init(loop, &rs->retry);
    uv_timer_init(loop, &rs->watchdog);
    uv_timer_init(loop, &rs->defer);
    rs->retry.data = rs->watchdog.data = rs->defer.data = rs;
    uv_unref((uv_handle_t *)&rs->retry);
    uint64_t tick = TF_MAX(rs->timeout_ms / 4, 20);
    uv_timer_start(&rs->watchdog, on_watchdog, tick, tick);
    uv_unref((uv_handle_t *)&rs->watchdog);
    connect_start(rs);
    return &rs->base;
}

struct tf_storage *tf_storage_open(uv_loop_t *loop, const struct tf_config *cfg, char *err,
                                   size_t errlen)
{
    if (!tf_config_storage_is_redis(cfg->storage))
        return tf_storage_fs_new(loop, cfg->storage, err, errlen);
    struct tf_redis_url url;
    char why[300];
    if (tf_config_parse_redis_url(cfg->storage, &url, why, sizeof(why)) != 0) {
        snprintf(err, errlen, "--storage: %s", why);
        return NULL;
    }
    struct tf_storage_crypt *crypt = NULL;
    if (!cfg->storage_key) {
        snprintf(err, errlen, "--storage-key: required with redis storage");
        tf_config_redis_url_clear(&url);
        return NULL;
    }
    if (strcmp(cfg->storage_key, "none") != 0 &&
        !(crypt = tf_storage_crypt_load(cfg->storage_key, err, errlen))) {
        tf_config_redis_url_clear(&url);
        return NULL;
    }
    struct tf_storage_redis_opts o = {
        .url = &url, .prefix = cfg->storage_prefix, .crypt = crypt, .ca_file = cfg->storage_ca};
    struct tf_storage *s = tf_storage_redis_new(loop, &o, err, errlen);
    tf_config_redis_url_clear(&url);
    if (s && cfg->storage_cache)
        s = tf_storage_cache_new(loop, s, cfg->storage_cache, err, errlen);
    return s;
}
