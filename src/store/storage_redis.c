/*
 * storage_redis.c: the Redis store's operations (tlsfront/store/storage_redis.h) minus its locks:
 * commands through hiredis's async API on the control loop (the connection itself is
 * storage_redis_conn.c); get/put/list/del with the filesystem store's exact results (key
 * layout in src/storage_redis_int.h) and the secret-value envelope.
 * It must never block the loop (names are resolved with uv_getaddrinfo, hiredis only ever
 * gets an IP literal, or the TLS relay's unix socket for rediss://), never leave a value half written (one command or one Lua script per
 * write), never list with KEYS (SCAN), and never let an operation wait on a dead or
 * silent Redis for longer than the time limit: while Redis is down, operations fail at once
 * with the reason the last connection attempt failed.
 */
#include "storage_redis_int.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_crypt.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 5000
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define SCAN_COUNT "512"

/* GET: the value, or 1 when the key is a directory, else 0. KEYS: v:key, d:key. */
static const char GET_LUA[] = "local v = redis.call('GET', KEYS[1]) "
                              "if v then return v end "
                              "return redis.call('EXISTS', KEYS[2])";
/* PUT: 1 when the key is a directory, 2 when an ancestor is a value, else writes the value
 * and marks the ancestors as directories, 0. KEYS: v:key, d:key, then v:a, d:a for each
 * ancestor a. ARGV: the value. */
static const char PUT_LUA[] = "if redis.call('EXISTS', KEYS[2]) == 1 then return 1 end "
                              "for i = 3, #KEYS, 2 do "
                              "if redis.call('EXISTS', KEYS[i]) == 1 then return 2 end end "
                              "for i = 4, #KEYS, 2 do redis.call('SET', KEYS[i], '1') end "
                              "redis.call('SET', KEYS[1], ARGV[1]) return 0";
/* DEL: 0 deleted, 1 a directory, 2 nothing there. KEYS: v:key, d:key. */
static const char DEL_LUA[] = "if redis.call('DEL', KEYS[1]) == 1 then return 0 end "
                              "return 2 - redis.call('EXISTS', KEYS[2])";


/* ---- small helpers ---- */

char *tf_rs_key(const struct tf_storage_redis *rs, char area, const char *key)
{
    return tf_asprintf("%s:%c:%s", rs->prefix, area, key);
}

int tf_rs_reply_err(struct tf_storage_redis *rs, const redisReply *r)
{
    if (!r)
        return rs->drop_err;
    if (r->type == REDIS_REPLY_ERROR) {
        TF_WARN(RS_MOD, "redis %s:%d: %.*s", rs->host, rs->port, (int)TF_MIN(r->len, 300),
                r->str);
        return TF_EIO;
    }
    return TF_EPROTO;
}

/* The watchdog keeps the loop alive only while operations are live. */
static void update_ref(struct tf_storage_redis *rs)
{
    if (rs->freeing)
        return;
    if (rs->inflight > 0)
        uv_ref((uv_handle_t *)&rs->watchdog);
    else
        uv_unref((uv_handle_t *)&rs->watchdog);
}

/* ---- operations ---- */

struct rs_op *tf_rs_op_new(struct tf_storage_redis *rs, enum rs_kind kind, const char *key,
                           void *arg)
{
    struct rs_op *op = tf_calloc(1, sizeof(*op));
    op->rs = rs;
    op->kind = kind;
    op->key = tf_strdup(key);
    op->arg = arg;
    op->next = rs->ops;
    if (rs->ops)
        rs->ops->prev = op;
    rs->ops = op;
    rs->inflight++;
    update_ref(rs);
    return op;
}

static void op_free(struct rs_op *op)
{
    free(op->key);
    free(op->data);
    for (int i = 0; i < op->n; i++)
        free(op->keys[i]);
    free(op->keys);
    free(op);
}

static void op_unlink(struct rs_op *op)
{
    struct tf_storage_redis *rs = op->rs;
    if (op->prev)
        op->prev->next = op->next;
    else
        rs->ops = op->next;
    if (op->next)
        op->next->prev = op->prev;
}

static void op_callback(struct rs_op *op)
{
    int err = op->err;
    switch (op->kind) {
    case RK_GET:
    case RK_GET_TTL:
        op->cb.get(err, err ? NULL : op->data, err ? 0 : op->len, op->arg);
        if (!err)
            op->data = NULL;
        break;
    case RK_LIST:
        op->cb.list(err, err ? NULL : op->keys, err ? 0 : op->n, op->arg);
        if (!err) {
            op->keys = NULL;
            op->n = 0;
        }
        break;
    case RK_COUNT:
        op->cb.count(err, err ? 0 : op->value, op->arg);
        break;
    default:
        if (op->cb.done)
            op->cb.done(err, op->arg);
        break;
    }
}

static void on_op_timer_closed(uv_handle_t *h)
{
    struct rs_op *op = h->data;
    struct tf_storage_redis *rs = op->rs;
    op_callback(op);
    op_free(op);
    rs->inflight--;
    update_ref(rs);
    tf_rs_maybe_finish(rs);
}

void tf_rs_complete(struct rs_op *op)
{
    struct tf_storage_redis *rs = op->rs;
    op_unlink(op);
    if (op->timer_used) {
        uv_close((uv_handle_t *)&op->timer, on_op_timer_closed);
        return;
    }
    op_callback(op);
    op_free(op);
    rs->inflight--;
    update_ref(rs);
    tf_rs_maybe_finish(rs);
}

static void on_defer(uv_timer_t *t)
{
    struct tf_storage_redis *rs = t->data;
    struct rs_op *op = rs->done_head;
    rs->done_head = rs->done_tail = NULL;
    while (op) {
        struct rs_op *next = op->next_done;
        op->done_queued = false;
        tf_rs_complete(op);
        op = next;
    }
}

void tf_rs_fail_later(struct rs_op *op, int err)
{
    struct tf_storage_redis *rs = op->rs;
    op->err = err;
    if (op->done_queued)
        return;
    op->done_queued = true;
    op->next_done = NULL;
    if (rs->done_tail)
        rs->done_tail->next_done = op;
    else
        rs->done_head = op;
    rs->done_tail = op;
    /* uv_timer_start fails only on a closing handle, and the store closes its timers only
     * once no operation is left. */
    int rc = uv_timer_start(&rs->defer, on_defer, 0, 0);
    assert(rc == 0);
    (void)rc;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata);

void tf_rs_command(struct rs_op *op, int argc, const char **argv, const size_t *lens)
{
    struct tf_storage_redis *rs = op->rs;
    if (!rs->ac || redisAsyncCommandArgv(rs->ac, on_reply, op, argc, argv, lens) != REDIS_OK) {
        tf_rs_fail_later(op, UV_ENOTCONN);
        return;
    }
    op->sent = true;
    op->sent_ms = tf_mono_ms();
}

/* EVAL script over keys (heap strings, freed here) and one optional argument. */
static void eval(struct rs_op *op, const char *script, char **keys, int nkeys, const char *arg,
                 size_t arglen)
{
    int argc = 3 + nkeys + (arg ? 1 : 0);
    const char **argv = tf_calloc((size_t)argc, sizeof(*argv));
    size_t *lens = tf_calloc((size_t)argc, sizeof(*lens));
    char nk[16];
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVAL";
    argv[1] = script;
    argv[2] = nk;
    for (int i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    if (arg)
        argv[argc - 1] = arg;
    for (int i = 0; i < argc; i++)
        lens[i] = arg && i == argc - 1 ? arglen : strlen(argv[i]);
    tf_rs_command(op, argc, argv, lens);
    for (int i = 0; i < nkeys; i++)
        free(keys[i]);
    free(argv);
    free(lens);
}

static void send_get_or_del(struct rs_op *op)
{
    char *keys[2] = {tf_rs_key(op->rs, 'v', op->key), tf_rs_key(op->rs, 'd', op->key)};
    eval(op, op->kind == RK_GET ? GET_LUA : DEL_LUA, keys, 2, NULL, 0);
}

static void send_put(struct rs_op *op)
{
    int nanc = 0;
    for (const char *c = op->key; *c; c++)
        nanc += *c == '/';
    int nkeys = 2 + 2 * nanc, k = 0;
    char **keys = tf_calloc((size_t)nkeys, sizeof(*keys));
    keys[k++] = tf_rs_key(op->rs, 'v', op->key);
    keys[k++] = tf_rs_key(op->rs, 'd', op->key);
    for (const char *c = op->key; *c; c++) {
        if (*c != '/')
            continue;
        char *anc = tf_strndup(op->key, (size_t)(c - op->key));
        keys[k++] = tf_rs_key(op->rs, 'v', anc);
        keys[k++] = tf_rs_key(op->rs, 'd', anc);
        free(anc);
    }
    eval(op, PUT_LUA, keys, nkeys, op->data, op->len);
    free(keys);
}

/* SCAN's MATCH pattern for the keys under op->key: glob characters in keys are escaped
 * ('*' of wildcard names; the key syntax allows no other). */
static char *scan_pattern(const struct rs_op *op)
{
    size_t n = strlen(op->key);
    char *esc = tf_malloc(2 * n + 1), *e = esc;
    for (size_t i = 0; i < n; i++) {
        if (strchr("*?[]\\", op->key[i]))
            *e++ = '\\';
        *e++ = op->key[i];
    }
    *e = '\0';
    char *pat = tf_asprintf("%s:v:%s%s*", op->rs->prefix, esc, n ? "/" : "");
    free(esc);
    return pat;
}

static void send_scan(struct rs_op *op)
{
    char *pat = scan_pattern(op);
    const char *argv[] = {"SCAN", op->cursor, "MATCH", pat, "COUNT", SCAN_COUNT};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    tf_rs_command(op, 6, argv, lens);
    free(pat);
}

void tf_rs_send(struct rs_op *op)
{
    switch (op->kind) {
    case RK_GET:
    case RK_DEL:
        send_get_or_del(op);
        break;
    case RK_PUT:
        send_put(op);
        break;
    case RK_LIST:
        send_scan(op);
        break;
    case RK_PUT_TTL:
    case RK_GET_TTL:
    case RK_PUBLISH:
    case RK_COUNT:
        tf_rs_ext_send(op);
        break;
    default:
        tf_rs_lock_send(op);
        break;
    }
}

void tf_rs_dispatch(struct rs_op *op)
{
    struct tf_storage_redis *rs = op->rs;
    if (rs->state == RS_UP)
        tf_rs_send(op);
    else if (rs->state == RS_DOWN)
        tf_rs_fail_later(op, rs->last_down_err ? rs->last_down_err : UV_ENOTCONN);
    /* else: connecting; sent once up */
}

/* ---- replies ---- */

void tf_rs_got_value(struct rs_op *op, const char *v, size_t len)
{
    struct tf_storage_redis *rs = op->rs;
    if (!tf_storage_crypt_sealed(v, len)) {
        op->err = len > TF_STORAGE_MAX_VALUE ? TF_ETOOBIG : 0;
        if (!op->err) {
            op->data = tf_malloc(len + 1);
            memcpy(op->data, v, len);
            op->data[len] = '\0';
            op->len = len;
        }
        return;
    }
    char other[9] = "", ours[9] = "";
    if (!rs->crypt) {
        TF_ERROR(RS_MOD, "%s is encrypted but --storage-key is none", op->key);
        op->err = TF_EDENIED;
        return;
    }
    op->err = tf_storage_crypt_open(rs->crypt, op->key, v, len, &op->data, &op->len, other);
    tf_storage_crypt_id(rs->crypt, ours);
    if (op->err == TF_EDENIED)
        TF_ERROR(RS_MOD, "%s is encrypted with another --storage-key (key id %s, ours %s)",
                 op->key, other, ours);
    else if (op->err)
        TF_ERROR(RS_MOD, "%s does not decrypt with --storage-key (key id %s): altered or "
                         "truncated", op->key, ours);
    if (!op->err && op->len > TF_STORAGE_MAX_VALUE) {
        free(op->data);
        op->data = NULL;
        op->err = TF_ETOOBIG;
    }
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One SCAN page; true when the listing is complete. */
static bool got_scan_page(struct rs_op *op, const redisReply *r)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->len >= sizeof(op->cursor)) {
        op->err = tf_rs_reply_err(op->rs, r);
        return true;
    }
    size_t pl = strlen(op->rs->prefix) + 3;
    const redisReply *arr = r->element[1];
    for (size_t i = 0; i < arr->elements; i++) {
        const redisReply *e = arr->element[i];
        if (e->type != REDIS_REPLY_STRING || e->len <= pl || memchr(e->str, '\0', e->len))
            continue;
        char *key = tf_strndup(e->str + pl, e->len - pl);
        if (!tf_storage_key_valid(key)) {
            free(key);
            continue;
        }
        if (op->n == op->cap) {
            op->cap = op->cap ? op->cap * 2 : 16;
            op->keys = tf_realloc(op->keys, (size_t)op->cap * sizeof(*op->keys));
        }
        op->keys[op->n++] = key;
    }
    memcpy(op->cursor, r->element[0]->str, r->element[0]->len);
    op->cursor[r->element[0]->len] = '\0';
    if (strcmp(op->cursor, "0") != 0)
        return false;
    /* SCAN may return a key twice: sort, then drop repeats. */
    if (op->n > 1)
        qsort(op->keys, (size_t)op->n, sizeof(*op->keys), cmp_str);
    int w = 0;
    for (int i = 0; i < op->n; i++) {
        if (w > 0 && strcmp(op->keys[w - 1], op->keys[i]) == 0)
            free(op->keys[i]);
        else
            op->keys[w++] = op->keys[i];
    }
    op->n = w;
    return true;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    struct rs_op *op = privdata;
    redisReply *r = reply;
    op->sent = false;
    if (!r || r->type == REDIS_REPLY_ERROR) {
        op->err = tf_rs_reply_err(op->rs, r);
        tf_rs_complete(op);
        return;
    }
    switch (op->kind) {
    case RK_GET:
        if (r->type == REDIS_REPLY_STRING)
            tf_rs_got_value(op, r->str, r->len);
        else
            op->err = r->type != REDIS_REPLY_INTEGER ? TF_EPROTO
                      : r->integer == 1              ? UV_EISDIR
                                                     : UV_ENOENT;
        break;
    case RK_PUT:
    case RK_DEL:
        op->err = r->type != REDIS_REPLY_INTEGER ? TF_EPROTO
                  : r->integer == 0              ? 0
                  : r->integer == 1              ? UV_EISDIR
                  : op->kind == RK_PUT           ? UV_ENOTDIR
                                                 : UV_ENOENT;
        break;
    case RK_LIST:
        if (!got_scan_page(op, r)) {
            send_scan(op);
            return;
        }
        break;
    case RK_PUT_TTL:
    case RK_GET_TTL:
    case RK_PUBLISH:
    case RK_COUNT:
        tf_rs_ext_reply(op, r);
        break;
    default:
        tf_rs_lock_reply(op, r);
        return;
    }
    tf_rs_complete(op);
}

/* ---- the start calls ---- */

static int check_start(struct tf_storage_redis *rs, bool has_cb)
{
    return rs->closing ? TF_ECLOSED : !has_cb ? TF_EINVAL : 0;
}

int tf_rs_get(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, cb != NULL);
    if (err || !tf_storage_key_valid(key))
        return err ? err : TF_EINVAL;
    struct rs_op *op = tf_rs_op_new(rs, RK_GET, key, arg);
    op->cb.get = cb;
    tf_rs_dispatch(op);
    return 0;
}

int tf_rs_put(struct tf_storage *s, const char *key, const void *data, size_t len, bool secret,
                  tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, cb != NULL);
    if (!err && len > TF_STORAGE_MAX_VALUE)
        err = TF_ETOOBIG;
    if (!err && ((!data && len) || !tf_storage_key_valid(key)))
        err = TF_EINVAL;
    if (err)
        return err;
    return tf_rs_put_op(rs, RK_PUT, key, data, len, secret, 0, cb, arg);
}

/* The bytes stored for a value: sealed with the storage key when secret and a key is set,
 * else a copy. */
static int value_bytes(struct tf_storage_redis *rs, const char *key, const void *data,
                       size_t len, bool secret, char **out, size_t *out_len)
{
    if (secret && rs->crypt)
        return tf_storage_crypt_seal(rs->crypt, key, data, len, out, out_len);
    *out = tf_malloc(len + 1);
    if (len)
        memcpy(*out, data, len);
    (*out)[len] = '\0';
    *out_len = len;
    return 0;
}

int tf_rs_put_op(struct tf_storage_redis *rs, enum rs_kind kind, const char *key,
                 const void *data, size_t len, bool secret, uint32_t ttl_ms,
                 tf_storage_done_cb cb, void *arg)
{
    char *val = NULL;
    size_t vlen = 0;
    int err = value_bytes(rs, key, data, len, secret, &val, &vlen);
    if (err)
        return err;
    struct rs_op *op = tf_rs_op_new(rs, kind, key, arg);
    op->cb.done = cb;
    op->data = val;
    op->len = vlen;
    op->ttl_ms = ttl_ms;
    tf_rs_dispatch(op);
    return 0;
}

int tf_rs_list(struct tf_storage *s, const char *prefix, tf_storage_list_cb cb, void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, cb != NULL);
    if (err)
        return err;
    char *p = tf_strdup(prefix ? prefix : "");
    size_t n = strlen(p);
    if (n && p[n - 1] == '/')
        p[n - 1] = '\0';
    if ((n && !p[0]) || (p[0] && !tf_storage_key_valid(p))) { /* "/" is no prefix */
        free(p);
        return TF_EINVAL;
    }
    struct rs_op *op = tf_rs_op_new(rs, RK_LIST, p, arg);
    free(p);
    op->cb.list = cb;
    snprintf(op->cursor, sizeof(op->cursor), "0");
    tf_rs_dispatch(op);
    return 0;
}

int tf_rs_del(struct tf_storage *s, const char *key, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_redis *rs = (struct tf_storage_redis *)s;
    int err = check_start(rs, cb != NULL);
    if (err || !tf_storage_key_valid(key))
        return err ? err : TF_EINVAL;
    struct rs_op *op = tf_rs_op_new(rs, RK_DEL, key, arg);
    op->cb.done = cb;
    tf_rs_dispatch(op);
    return 0;
}
