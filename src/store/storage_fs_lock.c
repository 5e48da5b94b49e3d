/*
 * storage_fs_lock.c: leased locks of the filesystem store, shared by every process that uses
 * the same storage directory (e.g. two tlsfront processes must not run one ACME order twice).
 *
 * The rule: a lease is the file DIR/.locks/<name>.lock holding
 * {"pid":N,"host":"H","expires":UNIX_SECONDS,"token":"32 hex"}. Every read-decide-write of a
 * lease (take, take over, renew, release) happens while holding flock(LOCK_EX) on
 * DIR/.locks/.guard, so deciding "free or stale" and replacing the file is one atomic step
 * for everyone who follows the rule; the kernel drops the guard if a process dies inside.
 * A lease is free when the file is missing, unparsable (only a crash can leave that, as
 * writers go through temp file and rename), expired (tf_wall_now() >= expires), or written
 * by a dead pid of this host (kill(pid, 0) == ESRCH). Our identity is the random token, not
 * the pid, so a second acquire in the same process waits like any other. Release and renew
 * act only when the file still carries our token. The guard is taken with LOCK_NB: a busy
 * guard is retried from a loop timer, so no pool thread ever sleeps or blocks on another
 * process; waiting for a holder is likewise a loop timer, never a sleep. Lease files are not
 * fsynced: a host crash kills their holders anyway.
 * Processes sharing a directory must see one pid namespace per hostname (containers with the
 * same hostname and separate pid namespaces would take each other's leases as dead).
 * XXX: a fork() without exec while a pool thread holds the guard would share the guard's
 * open file with the child; tlsfront does not fork.
 */
#include "tlsfront/store/storage_fs.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#define LOCK_AREA ".locks"
#define LOCK_SUFFIX ".lock"
#define LOCK_RETRY_MS 150  /* re-check a lease held by someone else */
#define GUARD_RETRY_MS 10  /* re-try a guard held by someone else (held for microseconds) */
#define GUARD_WAIT_MS 2000 /* minimum time an operation keeps trying for the guard */
#define GUARD_BUSY 1       /* internal attempt result: guard held elsewhere */
#define TOKEN_BYTES 16

/* A lease this store holds; owned by the store's list. */
struct fs_held {
    struct fs_held *next;
    char *name;
    char token[2 * TOKEN_BYTES + 1];
};

enum lk_kind { LK_LOCK, LK_UNLOCK, LK_RENEW };

/* One lock, unlock or renew in flight, including its sleeps between attempts. Owns itself
 * until its callback has run; the store counts it in flight. */
struct fs_lockop {
    uv_work_t work;   /* work.data == this op */
    uv_timer_t timer; /* retry sleep; initialised on first use, closed before free */
    bool timer_used;
    struct tf_storage_fs *fs; /* borrowed: close waits for this op */
    struct fs_lockop *next_waiting;
    enum lk_kind kind;
    char *name;                      /* owned, valid lock name */
    char *path;                      /* owned, the lease file */
    char token[2 * TOKEN_BYTES + 1]; /* ours; empty when this store does not hold the lease */
    uint32_t lease_s;
    uint64_t deadline_ms;       /* stop waiting for a holder (tf_mono_ms) */
    uint64_t guard_deadline_ms; /* stop waiting for the guard */
    int result;                 /* last attempt: 0, GUARD_BUSY, TF_EBUSY or an error */
    int err;                    /* what the callback gets */
    tf_storage_done_cb cb;      /* NULL for the releases close() starts */
    void *arg;
};

struct lease {
    long long pid;
    char host[256];
    long long expires;
    char token[2 * TOKEN_BYTES + 1];
};

/* ---- the on-disk protocol (pool threads) ---- */

/* 0, UV_ENOENT (no lease), TF_EINVAL (unparsable: stale) or another read error. */
static int lease_read(const char *path, struct lease *l)
{
    char *data;
    size_t len;
    int err = tf_storage_fs_read_file(path, 4096, &data, &len);
    if (err)
        return err == TF_ETOOBIG ? TF_EINVAL : err;
    cJSON *j = cJSON_ParseWithLength(data, len);
    free(data);
    const cJSON *pid = cJSON_GetObjectItemCaseSensitive(j, "pid");
    const cJSON *host = cJSON_GetObjectItemCaseSensitive(j, "host");
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(j, "expires");
    const cJSON *tok = cJSON_GetObjectItemCaseSensitive(j, "token");
    err = TF_EINVAL;
    if (cJSON_IsNumber(pid) && cJSON_IsString(host) && cJSON_IsNumber(exp) && cJSON_IsString(tok) &&
        strlen(host->valuestring) < sizeof(l->host) &&
        strlen(tok->valuestring) < sizeof(l->token)) {
        l->pid = (long long)pid->valuedouble;
        l->expires = (long long)exp->valuedouble;
        strcpy(l->host, host->valuestring);
        strcpy(l->token, tok->valuestring);
        err = 0;
    }
    cJSON_Delete(j);
    return err;
}

static int lease_write(const struct fs_lockop *op, int64_t now)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "pid", (double)getpid());
    cJSON_AddStringToObject(j, "host", op->fs->host);
    cJSON_AddNumberToObject(j, "expires", (double)(now + (int64_t)op->lease_s));
    cJSON_AddStringToObject(j, "token", op->token);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        abort(); /* cJSON only fails on allocation; STYLE: abort on OOM */
    int err = tf_storage_fs_write_atomic(op->path, text, strlen(text), 0600, false);
    cJSON_free(text);
    return err;
}

/* Is the lease still someone's? See the rule in the file comment. */
static bool lease_live(const struct lease *l, const char *host, int64_t now)
{
    if (l->expires <= now)
        return false;
    if (strcmp(l->host, host) == 0 && l->pid > 0 && l->pid <= INT_MAX &&
        kill((pid_t)l->pid, 0) < 0 && errno == ESRCH)
        return false;
    return true;
}

/* 0 with *fd holding the guard, GUARD_BUSY, or -errno. */
static int guard_take(const char *dir, int *fd)
{
    char *path = tf_asprintf("%s/%s/.guard", dir, LOCK_AREA);
    *fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(path);
    if (*fd < 0)
        return -errno;
    if (flock(*fd, LOCK_EX | LOCK_NB) == 0)
        return 0;
    int e = errno;
    close(*fd);
    *fd = -1;
    return e == EWOULDBLOCK ? GUARD_BUSY : -e;
}

/* The decision, made while holding the guard. */
static int attempt_guarded(struct fs_lockop *op)
{
    struct lease l;
    int rr = lease_read(op->path, &l);
    int64_t now = tf_wall_now();
    if (rr && rr != UV_ENOENT && rr != TF_EINVAL)
        return rr; /* cannot tell: do not touch it */
    bool ours = rr == 0 && strcmp(l.token, op->token) == 0;
    switch (op->kind) {
    case LK_LOCK:
        if (rr == 0 && lease_live(&l, op->fs->host, now))
            return TF_EBUSY;
        if (rr == 0)
            TF_INFO("storage",
                    "lock %s: taking over the stale lease of pid %lld on %s "
                    "(expires %lld)",
                    op->name, l.pid, l.host, l.expires);
        else if (rr == TF_EINVAL)
            TF_WARN("storage", "lock %s: replacing an unreadable lease file", op->name);
        return lease_write(op, now);
    case LK_RENEW:
        return ours ? lease_write(op, now) : TF_EDENIED;
    case LK_UNLOCK:
        if (!ours)
            return TF_EDENIED;
        return unlink(op->path) < 0 ? -errno : 0;
    }
    return TF_EINVAL;
}

static void on_lock_work(uv_work_t *w)
{
    struct fs_lockop *op = w->data;
    if (op->kind == LK_LOCK && !op->token[0]) {
        op->result = tf_storage_fs_random_hex(op->token, TOKEN_BYTES);
        if (op->result)
            return;
    }
    if (!op->token[0]) {
        op->result = TF_ENOTFOUND; /* unlock or renew of a lease this store does not hold */
        return;
    }
    int gfd = -1;
    op->result = tf_storage_fs_mkdirs(op->fs->dir, op->path);
    if (!op->result)
        op->result = guard_take(op->fs->dir, &gfd);
    if (op->result)
        return;
    op->result = attempt_guarded(op);
    close(gfd); /* releases the guard */
}

/* ---- the held list (loop thread) ---- */

static void held_add(struct tf_storage_fs *fs, const char *name, const char *token)
{
    struct fs_held *h = tf_calloc(1, sizeof(*h));
    h->name = tf_strdup(name);
    memcpy(h->token, token, sizeof(h->token));
    h->next = fs->held;
    fs->held = h;
}

/* The entry for name (and token, when not NULL), unlinked from the list; NULL if none. */
static struct fs_held *held_take(struct tf_storage_fs *fs, const char *name, const char *token)
{
    for (struct fs_held **pp = &fs->held; *pp; pp = &(*pp)->next) {
        struct fs_held *h = *pp;
        if (strcmp(h->name, name) == 0 && (!token || strcmp(h->token, token) == 0)) {
            *pp = h->next;
            return h;
        }
    }
    return NULL;
}

static void held_free(struct fs_held *h)
{
    if (h) {
        free(h->name);
        free(h);
    }
}

/* ---- operations in flight (loop thread) ---- */

static void lockop_complete(struct fs_lockop *op)
{
    struct tf_storage_fs *fs = op->fs;
    if (op->cb)
        op->cb(op->err, op->arg);
    free(op->name);
    free(op->path);
    free(op);
    tf_storage_fs_op_done(fs);
}

static void on_lock_timer_closed(uv_handle_t *h)
{
    lockop_complete(h->data);
}

static void lockop_finish(struct fs_lockop *op, int err)
{
    op->err = err;
    if (op->timer_used)
        uv_close((uv_handle_t *)&op->timer, on_lock_timer_closed);
    else
        lockop_complete(op);
}

static void on_lock_after(uv_work_t *w, int status);

static int lockop_queue(struct fs_lockop *op)
{
    return uv_queue_work(op->fs->base.loop, &op->work, on_lock_work, on_lock_after);
}

static void waiting_remove(struct tf_storage_fs *fs, struct fs_lockop *op)
{
    for (struct fs_lockop **pp = &fs->waiting; *pp; pp = &(*pp)->next_waiting) {
        if (*pp == op) {
            *pp = op->next_waiting;
            return;
        }
    }
}

static void on_lock_timer(uv_timer_t *t)
{
    struct fs_lockop *op = t->data;
    waiting_remove(op->fs, op);
    int err = lockop_queue(op);
    if (err)
        lockop_finish(op, err);
}

/* Sleep ms on the op's timer, then try again; on failure the op is finished with the error. */
static void lockop_sleep(struct fs_lockop *op, uint64_t ms)
{
    int err = 0;
    if (!op->timer_used) {
        err = uv_timer_init(op->fs->base.loop, &op->timer);
        op->timer.data = op;
        op->timer_used = err == 0;
    }
    if (!err)
        err = uv_timer_start(&op->timer, on_lock_timer, ms, 0);
    if (err) {
        lockop_finish(op, err);
        return;
    }
    op->next_waiting = op->fs->waiting;
    op->fs->waiting = op;
}

static int lockop_start(struct tf_storage_fs *fs, enum lk_kind kind, const char *name,
                        const char *token, uint32_t lease_s, uint32_t wait_ms,
                        tf_storage_done_cb cb, void *arg);

/* After an attempt: retry on a timer, or settle and call back. */
static void on_lock_after(uv_work_t *w, int status)
{
    struct fs_lockop *op = w->data;
    struct tf_storage_fs *fs = op->fs;
    int r = status ? status : op->result;
    uint64_t now = tf_mono_ms();
    if (fs->closing && op->kind == LK_LOCK) {
        /* Taken while closing: give it straight back. XXX: if that cannot even be queued
         * the lease stays until it expires. */
        if (r == 0)
            lockop_start(fs, LK_UNLOCK, op->name, op->token, 0, 0, NULL, NULL);
        lockop_finish(op, TF_ECLOSED);
        return;
    }
    if (r == GUARD_BUSY && now < op->guard_deadline_ms) {
        lockop_sleep(op, GUARD_RETRY_MS);
        return;
    }
    if (r == TF_EBUSY && now < op->deadline_ms) {
        lockop_sleep(op, TF_MIN(LOCK_RETRY_MS, op->deadline_ms - now));
        return;
    }
    if (r == GUARD_BUSY)
        r = TF_EBUSY;
    if (op->kind == LK_LOCK && r == 0)
        held_add(fs, op->name, op->token);
    if (op->kind == LK_RENEW && r == TF_EDENIED)
        held_free(held_take(fs, op->name, op->token)); /* lost it */
    lockop_finish(op, r);
}

/* Queue the first attempt. token: ours for unlock/renew ("" or NULL when not held). On
 * failure nothing is left behind and cb never runs. */
static int lockop_start(struct tf_storage_fs *fs, enum lk_kind kind, const char *name,
                        const char *token, uint32_t lease_s, uint32_t wait_ms,
                        tf_storage_done_cb cb, void *arg)
{
    struct fs_lockop *op = tf_calloc(1, sizeof(*op));
    op->work.data = op;
    op->fs = fs;
    op->kind = kind;
    op->name = tf_strdup(name);
    op->path = tf_storage_fs_path(fs->dir, LOCK_AREA, name, LOCK_SUFFIX);
    if (token)
        snprintf(op->token, sizeof(op->token), "%s", token);
    op->lease_s = lease_s;
    uint64_t now = tf_mono_ms();
    op->deadline_ms = now + wait_ms;
    op->guard_deadline_ms = now + TF_MAX(wait_ms, GUARD_WAIT_MS);
    op->cb = cb;
    op->arg = arg;
    int err = lockop_queue(op);
    if (err) {
        free(op->name);
        free(op->path);
        free(op);
        return err;
    }
    fs->inflight++;
    return 0;
}

/* ---- the ops ---- */

static int check_start(struct tf_storage_fs *fs, const char *name, bool has_cb)
{
    if (fs->closing)
        return TF_ECLOSED;
    if (!has_cb || !tf_storage_key_valid(name))
        return TF_EINVAL;
    return 0;
}

int tf_storage_fs_lock(struct tf_storage *s, const char *name, uint32_t lease_s, uint32_t wait_ms,
                       tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_fs *fs = (struct tf_storage_fs *)s;
    int err = check_start(fs, name, cb != NULL);
    if (err)
        return err;
    if (lease_s == 0)
        return TF_EINVAL;
    return lockop_start(fs, LK_LOCK, name, NULL, lease_s, wait_ms, cb, arg);
}

int tf_storage_fs_unlock(struct tf_storage *s, const char *name, tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_fs *fs = (struct tf_storage_fs *)s;
    int err = check_start(fs, name, cb != NULL);
    if (err)
        return err;
    struct fs_held *h = held_take(fs, name, NULL);
    err = lockop_start(fs, LK_UNLOCK, name, h ? h->token : NULL, 0, 0, cb, arg);
    if (err && h) {
        h->next = fs->held; /* not started: we still hold it */
        fs->held = h;
        h = NULL;
    }
    held_free(h);
    return err;
}

int tf_storage_fs_renew(struct tf_storage *s, const char *name, uint32_t lease_s,
                        tf_storage_done_cb cb, void *arg)
{
    struct tf_storage_fs *fs = (struct tf_storage_fs *)s;
    int err = check_start(fs, name, cb != NULL);
    if (err)
        return err;
    if (lease_s == 0)
        return TF_EINVAL;
    const char *token = NULL;
    for (struct fs_held *h = fs->held; h && !token; h = h->next) {
        if (strcmp(h->name, name) == 0)
            token = h->token;
    }
    return lockop_start(fs, LK_RENEW, name, token, lease_s, 0, cb, arg);
}

void tf_storage_fs_locks_close(struct tf_storage_fs *fs)
{
    /* Lock waits end now; unlock and renew retries (a busy guard) run to their end. */
    for (struct fs_lockop **pp = &fs->waiting; *pp;) {
        struct fs_lockop *op = *pp;
        if (op->kind != LK_LOCK) {
            pp = &op->next_waiting;
            continue;
        }
        *pp = op->next_waiting;
        uv_timer_stop(&op->timer);
        lockop_finish(op, TF_ECLOSED);
    }
    while (fs->held) {
        struct fs_held *h = fs->held;
        fs->held = h->next;
        lockop_start(fs, LK_UNLOCK, h->name, h->token, 0, 0, NULL, NULL);
        held_free(h);
    }
}
