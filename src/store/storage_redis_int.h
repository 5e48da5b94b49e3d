/*
 * storage_redis_int.h: internals shared by the three parts of the Redis store:
 * storage_redis_conn.c (connection, reconnect, time limits, lifetime), storage_redis.c
 * (operations, get/put/list/del), storage_redis_lock.c (leased locks),
 * storage_redis_pubsub.c (the cluster extension) and storage_redis_tls.c (the TLS relay of
 * rediss://, its directory in storage_redis_relay_dir.c). Nothing else includes this.
 *
 * Redis keys, all under the prefix P (--storage-prefix):
 *   P:v:<key>    a value, byte for byte what the filesystem store would hold in DIR/<key>,
 *                except secret values when a storage key is set: those hold the
 *                AES-256-GCM envelope of include/storage_crypt.h
 *   P:d:<dir>    "1": <dir> is a directory of keys (some key below it was written once).
 *                Like the directories of the filesystem store these stay after their keys
 *                are deleted, which keeps "a value cannot sit where a directory is" and the
 *                reverse exactly as on disk (UV_ENOTDIR, UV_EISDIR)
 *   P:l:<name>   a lease: "<token> <host> <pid>", with a PX expiry; only a holder presenting
 *                the whole value renews or releases it (compare-and-act Lua scripts)
 * Every write is one command or one Lua script, so Redis never holds half of one.
 */
#ifndef TF_STORAGE_REDIS_INT_H
#define TF_STORAGE_REDIS_INT_H

#include "tlsfront/store/storage_cluster.h"
#include "tlsfront/store/storage_redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#define RS_MOD "storage"
#define RS_TOKEN_BYTES 16
#define RS_LEASE_MAX 320 /* token, host, pid */

enum rs_state { RS_DOWN, RS_RESOLVING, RS_CONNECTING, RS_UP };

enum rs_kind {
    RK_GET,
    RK_PUT,
    RK_LIST,
    RK_DEL,
    RK_LOCK,
    RK_UNLOCK,
    RK_RENEW,
    /* the cluster extension (storage_redis_pubsub.c) */
    RK_PUT_TTL,
    RK_GET_TTL,
    RK_PUBLISH,
    RK_COUNT,
};

struct rs_held;
struct rs_relay;
struct rs_sub;
struct tf_storage_redis;

/*
 * One operation from its start call to its callback. Owned by the store's op list; it is
 * freed right after its callback. At most one command of an op is pending in hiredis at a
 * time (sent), and an op completes only when none is: a lost connection answers pending
 * commands with a NULL reply, which completes them with the store's drop error.
 */
struct rs_op {
    struct rs_op *next, *prev;  /* the store's list of live ops */
    struct tf_storage_redis *rs; /* borrowed: close waits for every op */
    enum rs_kind kind;
    char *key;  /* owned: key, list prefix ("" for all) or lock name */
    char *data; /* owned: put's value (sealed when secret) */
    size_t len;
    bool sent;         /* a command of this op is pending in hiredis */
    bool done_queued;  /* on the store's deferred-completion queue */
    uint64_t sent_ms;  /* when the pending command went out (tf_mono_ms) */
    struct rs_op *next_done;
    int err;
    /* list */
    char **keys;
    int n, cap;
    char cursor[24]; /* SCAN cursor, decimal */
    /* locks */
    char lease[RS_LEASE_MAX]; /* the lease value (lock: ours; unlock/renew: held) */
    uint32_t lease_s;
    uint64_t deadline_ms;
    uv_timer_t timer; /* lock retry; initialised on first use, closed before free */
    bool timer_used, timer_waiting;
    /* cluster extension: put_ttl's expiry, count's delta and expiry, and its result */
    uint32_t ttl_ms;
    int64_t delta, value;
    union {
        tf_storage_get_cb get;
        tf_storage_done_cb done;
        tf_storage_list_cb list;
        tf_storage_count_cb count;
    } cb; /* NULL done: an internal release at close */
    void *arg;
};

/* The Redis store. Loop-thread state only. */
struct tf_storage_redis {
    struct tf_storage base; /* first member */
    char *host;             /* owned; from the URL */
    int port;
    char *user, *pass; /* owned; NULL when the URL has none */
    int db;
    char *prefix;                   /* owned */
    struct tf_storage_crypt *crypt; /* owned; NULL = secrets stored as they are */
    uint32_t timeout_ms;
    char hostname[256]; /* ours, written into leases */
    struct rs_relay *relay; /* owned: the TLS relay of rediss://; NULL for redis:// */

    enum rs_state state;
    redisAsyncContext *ac; /* NULL unless RESOLVING is over and not DOWN */
    uv_getaddrinfo_t gai;
    bool gai_pending;
    uv_timer_t retry;    /* reconnect backoff */
    uv_timer_t watchdog; /* connect and command time limits */
    uv_timer_t defer;    /* runs deferred completions */
    uint32_t backoff_ms;
    uint64_t connect_deadline_ms;
    int handshake_left; /* AUTH/SELECT/PING replies still due */
    int drop_err;       /* what pending commands fail with when the connection goes */
    int last_down_err;  /* logged once per outage */
    bool was_up;

    struct rs_op *ops;  /* every live op */
    struct rs_op *done_head, *done_tail;
    int inflight;       /* live ops */
    struct rs_held *held;
    struct rs_sub *sub; /* owned: the subscriber connection, once subscribe was called */
    bool closing, freeing;
    int closes_pending;
    void (*close_done)(void *arg);
    void *close_arg;
};

/* A new op, linked and counted; the caller fills the rest and dispatches it. */
struct rs_op *tf_rs_op_new(struct tf_storage_redis *rs, enum rs_kind kind, const char *key,
                           void *arg);
/* Send the op's next command now if the connection is up; else keep it waiting for the
 * connection (connecting) or fail it with the down error later (down). */
void tf_rs_dispatch(struct rs_op *op);

/* The first address of a uv_getaddrinfo answer as an IP literal in ip (hiredis then never
 * resolves on the loop); frees res. Returns status, or the formatting error. */
int tf_rs_gai_ip(int status, struct addrinfo *res, char *ip, size_t iplen);

/* Queue a write of data under key (kind RK_PUT, or RK_PUT_TTL with ttl_ms): the value is
 * sealed with the storage key when secret and a key is set, else copied. The caller has
 * validated its arguments. Returns 0 (cb runs later) or the seal's error. */
int tf_rs_put_op(struct tf_storage_redis *rs, enum rs_kind kind, const char *key,
                 const void *data, size_t len, bool secret, uint32_t ttl_ms,
                 tf_storage_done_cb cb, void *arg);
/* Send one command for op; argv strings are borrowed for the call. On failure the op is
 * completed later with the error. */
void tf_rs_command(struct rs_op *op, int argc, const char **argv, const size_t *lens);
/* Complete op with err from a later loop turn (never inside the current call stack). */
void tf_rs_fail_later(struct rs_op *op, int err);
/* Run op's callback now and free it; the store may finish closing. */
void tf_rs_complete(struct rs_op *op);
/* "<prefix>:<area>:<key>" into a heap string. */
char *tf_rs_key(const struct tf_storage_redis *rs, char area, const char *key);
/* The error a NULL or error reply stands for. */
int tf_rs_reply_err(struct tf_storage_redis *rs, const redisReply *r);

/* Send the op's next command (the connection is up). */
void tf_rs_send(struct rs_op *op);
/* The value ops of the table (storage_redis.c). */
int tf_rs_get(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg);
int tf_rs_put(struct tf_storage *s, const char *key, const void *data, size_t len, bool secret,
              tf_storage_done_cb cb, void *arg);
int tf_rs_list(struct tf_storage *s, const char *prefix, tf_storage_list_cb cb, void *arg);
int tf_rs_del(struct tf_storage *s, const char *key, tf_storage_done_cb cb, void *arg);
/* storage_redis_conn.c: free the store once closing and nothing is live any more. */
void tf_rs_maybe_finish(struct tf_storage_redis *rs);

/* A GET reply's value into op->data, opening the envelope; sets op->err. */
void tf_rs_got_value(struct rs_op *op, const char *v, size_t len);
/* storage_redis_conn.c: watch a new hiredis context's socket on loop (REDIS_OK/ERR). */
int tf_rs_ev_attach(redisAsyncContext *ac, uv_loop_t *loop);
/* storage_redis_conn.c: one of the things the store waits for at close is done. */
void tf_rs_free_step(struct tf_storage_redis *rs);

/* storage_redis_conn.c: a hiredis context connecting to Redis: to ip (the resolved host)
 * for redis://, to the TLS relay's socket (ip unused) for rediss://. NULL when hiredis
 * failed at once (why filled); the caller attaches its callbacks. */
redisAsyncContext *tf_rs_connect(struct tf_storage_redis *rs, const char *ip, char *why,
                                 size_t whylen);
/* storage_redis_conn.c: why a connection ended, when the TLS relay knows better than
 * hiredis (a refused certificate, Redis unreachable behind the relay); else fallback. */
const char *tf_rs_why(const struct tf_storage_redis *rs, const char *fallback);

/* storage_redis_tls.c: the TLS relay (rediss://). new creates its private directory and
 * listening socket now (start-up, blocking) and loads ca_file (NULL: the system store);
 * NULL with err filled (one line naming the option) on failure. path is the unix socket
 * hiredis connects to; why is the reason the last relayed connection ended (NULL when one
 * opened since); close ends every relayed connection, removes the directory and calls done
 * from a later callback. */
struct rs_relay *tf_rs_relay_new(uv_loop_t *loop, const char *host, int port,
                                 const char *ca_file, uint32_t timeout_ms, char *err,
                                 size_t errlen);
const char *tf_rs_relay_path(const struct rs_relay *r);
const char *tf_rs_relay_why(const struct rs_relay *r);
void tf_rs_relay_close(struct rs_relay *r, void (*done)(void *arg), void *arg);

/* storage_redis_relay_dir.c: the relay's private directory: removes the stale ones of dead
 * processes of this user in the same place, then makes a new one (0700) holding "pid", into
 * dir (len bytes), under a base where DIR/s stays under max_path bytes (a unix socket path).
 * 0, or -1 when none could be made. Blocking: start-up only. */
int tf_rs_relay_dir_make(char *dir, size_t len, size_t max_path);

/* storage_redis_pubsub.c: the cluster extension's ops table, its commands and replies, and
 * the subscriber connection's close (adds what it waits for to rs->closes_pending). */
extern const struct tf_storage_cluster_ops tf_rs_cluster_ops;
void tf_rs_ext_send(struct rs_op *op);
void tf_rs_ext_reply(struct rs_op *op, redisReply *r);
void tf_rs_sub_close(struct tf_storage_redis *rs);

/* storage_redis_lock.c: the lock ops, and the replies of lock commands. */
int tf_rs_lock(struct tf_storage *s, const char *name, uint32_t lease_s, uint32_t wait_ms,
               tf_storage_done_cb cb, void *arg);
int tf_rs_unlock(struct tf_storage *s, const char *name, tf_storage_done_cb cb, void *arg);
int tf_rs_renew(struct tf_storage *s, const char *name, uint32_t lease_s, tf_storage_done_cb cb,
                void *arg);
void tf_rs_lock_send(struct rs_op *op);
void tf_rs_lock_reply(struct rs_op *op, redisReply *r);
/* Close: lock waits end with TF_ECLOSED, held leases are released (counted in flight). */
void tf_rs_locks_close(struct tf_storage_redis *rs);
void tf_rs_locks_free(struct tf_storage_redis *rs);

#endif
