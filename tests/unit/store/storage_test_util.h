/*
 * storage_test_util.h: helpers shared by test_storage.c and test_storage_lock.c: result
 * capture callbacks, "start, run the loop, check one callback" wrappers, a store in a fresh
 * subdirectory of the test's mkdtemp root, small file inspection helpers, and the parts of
 * the store contract that tests/loop/store/test_storage_redis.c checks on Redis as well.
 * Test-only.
 */
#ifndef TF_STORAGE_TEST_UTIL_H
#define TF_STORAGE_TEST_UTIL_H

#include "tlsfront/base/common.h"
#include "tlsfront/store/storage.h"
#include "tf_test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define LOCK_NAME "order/example.com"

static char g_root[256]; /* the mkdtemp directory; set once in main */

/* What one callback reported. */
struct res {
    int calls;
    int err;
    char *data;
    size_t len;
    char **keys;
    int n;
};

static inline void on_done(int err, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
}

static inline void on_get(int err, char *data, size_t len, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
    free(r->data);
    r->data = data;
    r->len = len;
}

static inline void on_list(int err, char **keys, int n, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
    r->keys = keys;
    r->n = n;
}

static inline void res_clear(struct res *r)
{
    free(r->data);
    for (int i = 0; i < r->n; i++)
        free(r->keys[i]);
    free(r->keys);
    memset(r, 0, sizeof(*r));
}

static inline char *path_in(const char *dir, const char *rel)
{
    return tf_asprintf("%s/%s", dir, rel);
}

/* A fresh store in its own subdirectory of g_root (which does not exist yet). */
static inline struct tf_storage *store_new(uv_loop_t *loop, const char *name, char **dir)
{
    char err[512] = "";
    *dir = path_in(g_root, name);
    struct tf_storage *s = tf_storage_fs_new(loop, *dir, err, sizeof(err));
    if (!s)
        fprintf(stderr, "store_new: %s\n", err);
    return s;
}

static inline void store_close(struct tf_storage *s, uv_loop_t *loop)
{
    tf_storage_close(s, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

/* Start, run the loop until nothing is left, check exactly one callback; its code. */
static inline int put_wait(struct tf_storage *s, const char *key, const char *val, size_t len,
                           bool secret)
{
    struct res r = {0};
    int err = tf_storage_put(s, key, val, len, secret, on_done, &r);
    if (err)
        return err;
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1);
    return r.err;
}

static inline int put_str(struct tf_storage *s, const char *key, const char *val, bool secret)
{
    return put_wait(s, key, val, strlen(val), secret);
}

/* The value of key, or NULL; *err gets the code. Caller frees. */
static inline char *get_wait(struct tf_storage *s, const char *key, int *err)
{
    struct res r = {0};
    *err = tf_storage_get(s, key, on_get, &r);
    if (*err)
        return NULL;
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1);
    *err = r.err;
    if (r.data)
        CHECK_EQ_INT(strlen(r.data), r.len); /* NUL-terminated beyond len */
    return r.data;
}

static inline int done_wait(struct tf_storage *s, int started, struct res *r)
{
    if (started)
        return started;
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r->calls, 1);
    return r->err;
}

static inline int lock_wait(struct tf_storage *s, const char *name, uint32_t lease,
                            uint32_t wait_ms)
{
    struct res r = {0};
    return done_wait(s, tf_storage_lock(s, name, lease, wait_ms, on_done, &r), &r);
}

static inline int unlock_wait(struct tf_storage *s, const char *name)
{
    struct res r = {0};
    return done_wait(s, tf_storage_unlock(s, name, on_done, &r), &r);
}

static inline int renew_wait(struct tf_storage *s, const char *name, uint32_t lease)
{
    struct res r = {0};
    return done_wait(s, tf_storage_renew(s, name, lease, on_done, &r), &r);
}

/* Writes past limit bytes of a file fail with EFBIG, as a full disk fails them with ENOSPC
 * (RLIMIT_FSIZE binds root too), until fsize_restore(saved). */
static inline void fsize_limit(rlim_t limit, struct rlimit *saved)
{
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, saved), 0);
    struct rlimit small = *saved;
    small.rlim_cur = limit;
    signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &small), 0);
}

static inline void fsize_restore(const struct rlimit *saved)
{
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, saved), 0);
    signal(SIGXFSZ, SIG_DFL);
}

/* ---- the store contract, shared by the filesystem and the Redis store's tests ---- */

/* Round trips on a fresh store: overwrite, an empty value, a missing key, a key below a
 * value, a directory read as a value. */
static inline void check_round_trips(struct tf_storage *s)
{
    int err;
    CHECK_EQ_INT(put_str(s, "certs/example.com/cert.pem", "hello", false), 0);
    char *v = get_wait(s, "certs/example.com/cert.pem", &err);
    CHECK_EQ_INT(err, 0);
    CHECK_EQ_STR(v, "hello");
    free(v);
    CHECK_EQ_INT(put_str(s, "certs/example.com/cert.pem", "world, longer", false), 0);
    v = get_wait(s, "certs/example.com/cert.pem", &err);
    CHECK_EQ_STR(v, "world, longer");
    free(v);
    CHECK_EQ_INT(put_wait(s, "empty", "", 0, false), 0);
    v = get_wait(s, "empty", &err);
    CHECK_EQ_INT(err, 0);
    CHECK_EQ_STR(v, "");
    free(v);
    CHECK(get_wait(s, "certs/missing.com/cert.pem", &err) == NULL);
    CHECK_EQ_INT(err, UV_ENOENT);
    CHECK(get_wait(s, "certs/example.com/cert.pem/below", &err) == NULL);
    CHECK_EQ_INT(err, UV_ENOENT); /* a value is not a directory of keys */
    CHECK(get_wait(s, "certs", &err) == NULL);
    CHECK_EQ_INT(err, UV_EISDIR);
}

static inline void on_close_done(void *arg)
{
    (*(int *)arg)++;
}

/* Close with everything in flight, part one: x/old and two held locks exist, then r[0..10]
 * are started (six puts, two gets, a list, a del, a lock that must wait for LOCK_NAME). The
 * caller runs the loop until that lock waits on its timer. */
static inline void close_busy_start(struct tf_storage *s, struct res r[12])
{
    CHECK_EQ_INT(put_str(s, "x/old", "o", false), 0);
    CHECK_EQ_INT(lock_wait(s, "held", 30, 0), 0);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    memset(r, 0, 12 * sizeof(*r));
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(tf_storage_put(s, "x/k", "v", 1, i % 2, on_done, &r[i]), 0);
    CHECK_EQ_INT(tf_storage_get(s, "x/old", on_get, &r[6]), 0);
    CHECK_EQ_INT(tf_storage_get(s, "x/none", on_get, &r[7]), 0);
    CHECK_EQ_INT(tf_storage_list(s, "x", on_list, &r[8]), 0);
    CHECK_EQ_INT(tf_storage_del(s, "x/old", on_done, &r[9]), 0);
    CHECK_EQ_INT(tf_storage_lock(s, LOCK_NAME, 30, 10000, on_done, &r[10]), 0);
}

/* Part two: close; later calls are refused; the loop ends with each started callback run
 * once, the waiting lock ended by the close (TF_ECLOSED), and the close callback once. */
static inline void close_busy_finish(struct tf_storage *s, struct res r[12])
{
    int closed = 0;
    tf_storage_close(s, on_close_done, &closed);
    CHECK_EQ_INT(closed, 0); /* never from inside close */
    CHECK_EQ_INT(tf_storage_put(s, "late", "v", 1, false, on_done, &r[11]), TF_ECLOSED);
    CHECK_EQ_INT(tf_storage_lock(s, "late", 1, 0, on_done, &r[11]), TF_ECLOSED);
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(closed, 1);
    for (int i = 0; i < 11; i++)
        CHECK_EQ_INT(r[i].calls, 1);
    CHECK_EQ_INT(r[11].calls, 0);
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(r[i].err, 0);
    CHECK_EQ_STR(r[6].data, "o");
    CHECK_EQ_INT(r[7].err, UV_ENOENT);
    CHECK_EQ_INT(r[9].err, 0);
    CHECK_EQ_INT(r[10].err, TF_ECLOSED);
    for (int i = 0; i < 12; i++)
        res_clear(&r[i]);
}

/* Close with nothing in flight: still calls back later, never from inside close. */
static inline void close_idle(struct tf_storage *s)
{
    uv_loop_t *loop = s->loop;
    int closed = 0;
    tf_storage_close(s, on_close_done, &closed);
    CHECK_EQ_INT(closed, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(closed, 1);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

static int g_tmp_count; /* nftw has no user pointer */

static inline int count_tmp(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    if (strstr(path + ftw->base, ".tmp."))
        g_tmp_count++;
    return 0;
}

static inline int temp_files(const char *dir)
{
    g_tmp_count = 0;
    CHECK_EQ_INT(nftw(dir, count_tmp, 16, FTW_PHYS), 0);
    return g_tmp_count;
}

static inline int file_mode(const char *dir, const char *rel)
{
    char *p = path_in(dir, rel);
    struct stat st;
    int m = stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
    free(p);
    return m;
}

static inline char *read_file(const char *dir, const char *rel)
{
    char *p = path_in(dir, rel), *data = NULL;
    size_t len = 0;
    FILE *f = fopen(p, "rb");
    if (f) {
        data = tf_calloc(1, 8192);
        len = fread(data, 1, 8191, f);
        data[len] = '\0';
        fclose(f);
    }
    free(p);
    return data;
}

static inline void write_file(const char *dir, const char *rel, const char *text)
{
    char *p = path_in(dir, rel);
    FILE *f = fopen(p, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    free(p);
}

static inline int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* Make the mkdtemp root for this test program; false (with a message) on failure. */
static inline bool root_setup(const char *tag)
{
    snprintf(g_root, sizeof(g_root), "%s/tf_%s_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp", tag);
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return false;
    }
    return true;
}

static inline void root_remove(void)
{
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
