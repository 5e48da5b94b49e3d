/*
 * test_storage.c: the filesystem store in a mkdtemp directory, driven through its libuv
 * interface: round trips, modes, atomic replacement (including real write failures), key
 * validation, list, del, start-up checks, leased locks within one process and between
 * processes (fork), and close with operations in flight. Every test runs its own loop and
 * requires uv_loop_close() to succeed at the end.
 */
#include "common.h"
#include "storage.h"
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

static void on_done(int err, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
}

static void on_get(int err, char *data, size_t len, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
    free(r->data);
    r->data = data;
    r->len = len;
}

static void on_list(int err, char **keys, int n, void *arg)
{
    struct res *r = arg;
    r->calls++;
    r->err = err;
    r->keys = keys;
    r->n = n;
}

static void res_clear(struct res *r)
{
    free(r->data);
    for (int i = 0; i < r->n; i++)
        free(r->keys[i]);
    free(r->keys);
    memset(r, 0, sizeof(*r));
}

static char *path_in(const char *dir, const char *rel)
{
    return tf_asprintf("%s/%s", dir, rel);
}

/* A fresh store in its own subdirectory of g_root (which does not exist yet). */
static struct tf_storage *store_new(uv_loop_t *loop, const char *name, char **dir)
{
    char err[512] = "";
    *dir = path_in(g_root, name);
    struct tf_storage *s = tf_storage_fs_new(loop, *dir, err, sizeof(err));
    if (!s)
        fprintf(stderr, "store_new: %s\n", err);
    return s;
}

static void store_close(struct tf_storage *s, uv_loop_t *loop)
{
    tf_storage_close(s, NULL, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

/* Start, run the loop until nothing is left, check exactly one callback; its code. */
static int put_wait(struct tf_storage *s, const char *key, const char *val, size_t len, bool secret)
{
    struct res r = {0};
    int err = tf_storage_put(s, key, val, len, secret, on_done, &r);
    if (err)
        return err;
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1);
    return r.err;
}

static int put_str(struct tf_storage *s, const char *key, const char *val, bool secret)
{
    return put_wait(s, key, val, strlen(val), secret);
}

/* The value of key, or NULL; *err gets the code. Caller frees. */
static char *get_wait(struct tf_storage *s, const char *key, int *err)
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

static int done_wait(struct tf_storage *s, int started, struct res *r)
{
    if (started)
        return started;
    uv_run(s->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r->calls, 1);
    return r->err;
}

static int lock_wait(struct tf_storage *s, const char *name, uint32_t lease, uint32_t wait_ms)
{
    struct res r = {0};
    return done_wait(s, tf_storage_lock(s, name, lease, wait_ms, on_done, &r), &r);
}

static int unlock_wait(struct tf_storage *s, const char *name)
{
    struct res r = {0};
    return done_wait(s, tf_storage_unlock(s, name, on_done, &r), &r);
}

static int renew_wait(struct tf_storage *s, const char *name, uint32_t lease)
{
    struct res r = {0};
    return done_wait(s, tf_storage_renew(s, name, lease, on_done, &r), &r);
}

static int g_tmp_count; /* nftw has no user pointer */

static int count_tmp(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    if (strstr(path + ftw->base, ".tmp."))
        g_tmp_count++;
    return 0;
}

static int temp_files(const char *dir)
{
    g_tmp_count = 0;
    CHECK_EQ_INT(nftw(dir, count_tmp, 16, FTW_PHYS), 0);
    return g_tmp_count;
}

static int file_mode(const char *dir, const char *rel)
{
    char *p = path_in(dir, rel);
    struct stat st;
    int m = stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
    free(p);
    return m;
}

static char *read_file(const char *dir, const char *rel)
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

static void write_file(const char *dir, const char *rel, const char *text)
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

static void test_round_trip(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "rt/nested", &dir);
    CHECK(s != NULL);
    CHECK_EQ_INT(file_mode(dir, ""), 0700);
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
    /* Values up to the cap are fine; beyond it put refuses up front. */
    char *big = tf_malloc(TF_STORAGE_MAX_VALUE + 1);
    memset(big, 'x', TF_STORAGE_MAX_VALUE + 1);
    CHECK_EQ_INT(put_wait(s, "big", big, TF_STORAGE_MAX_VALUE, false), 0);
    v = get_wait(s, "big", &err);
    CHECK_EQ_INT(err, 0);
    CHECK(v && strlen(v) == TF_STORAGE_MAX_VALUE);
    free(v);
    CHECK_EQ_INT(put_wait(s, "big", big, TF_STORAGE_MAX_VALUE + 1, false), TF_ETOOBIG);
    /* A file grown past the cap behind our back is refused by get. */
    char *bp = path_in(dir, "big");
    CHECK_EQ_INT(truncate(bp, TF_STORAGE_MAX_VALUE + 1), 0);
    free(bp);
    CHECK(get_wait(s, "big", &err) == NULL);
    CHECK_EQ_INT(err, TF_ETOOBIG);
    free(big);
    CHECK_EQ_INT(temp_files(dir), 0);
    store_close(s, &loop);
    free(dir);
}

static void test_modes(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "modes", &dir);
    CHECK(s != NULL);
    CHECK_EQ_INT(put_str(s, "acme/ca1/account.key", "secret", true), 0);
    CHECK_EQ_INT(put_str(s, "certs/a.example/cert.pem", "public", false), 0);
    CHECK_EQ_INT(file_mode(dir, "acme/ca1/account.key"), 0600);
    CHECK_EQ_INT(file_mode(dir, "certs/a.example/cert.pem"), 0644);
    CHECK_EQ_INT(file_mode(dir, "acme"), 0700);
    CHECK_EQ_INT(file_mode(dir, "acme/ca1"), 0700);
    CHECK_EQ_INT(file_mode(dir, "certs/a.example"), 0700);
    /* The mode does not depend on the umask, and an overwrite takes the new mode. */
    mode_t old = umask(077);
    CHECK_EQ_INT(put_str(s, "certs/a.example/chain.pem", "public", false), 0);
    umask(old);
    CHECK_EQ_INT(file_mode(dir, "certs/a.example/chain.pem"), 0644);
    CHECK_EQ_INT(put_str(s, "certs/a.example/cert.pem", "now secret", true), 0);
    CHECK_EQ_INT(file_mode(dir, "certs/a.example/cert.pem"), 0600);
    store_close(s, &loop);
    free(dir);
}

/* Many concurrent puts (distinct keys and overwrites of one key) leave no temp file. */
static void test_no_temp_files(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "notemp", &dir);
    struct res r[40];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 40; i++) {
        char key[64], val[64];
        snprintf(key, sizeof(key), i % 2 ? "many/k%d" : "same/key", i);
        snprintf(val, sizeof(val), "value %d", i);
        CHECK_EQ_INT(tf_storage_put(s, key, val, strlen(val), i % 3 == 0, on_done, &r[i]), 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    for (int i = 0; i < 40; i++) {
        CHECK_EQ_INT(r[i].calls, 1);
        CHECK_EQ_INT(r[i].err, 0);
    }
    CHECK_EQ_INT(temp_files(dir), 0);
    int err;
    char *v = get_wait(s, "same/key", &err);
    CHECK(v && strncmp(v, "value ", 6) == 0); /* one whole value, whichever came last */
    free(v);
    store_close(s, &loop);
    free(dir);
}

static void test_key_rules(void)
{
    static const char *bad[] = {"", "/a", "a/", "a//b", "..", "a/../b", ".", "./a", ".hidden",
                                "a/.tmp", "A", "a b", "a\\b", "*", "*.", "*..x", "a*b", "a/*",
                                "x.*.y", "_wildcard_.x", "a/_wildcard_", "caf\xc3\xa9"};
    static const char *good[] = {"a", "a.b-c_d/0", "*.example.com", "certs/*.example.com/c.pem",
                                 "a..b", "x_y", "_acme-challenge.example.com"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        if (tf_storage_key_valid(bad[i]))
            fprintf(stderr, "accepted bad key \"%s\"\n", bad[i]);
        CHECK(!tf_storage_key_valid(bad[i]));
    }
    for (size_t i = 0; i < TF_ARRAY_LEN(good); i++)
        CHECK(tf_storage_key_valid(good[i]));
    CHECK(!tf_storage_key_valid(NULL));
    char seg[TF_STORAGE_MAX_SEGMENT + 2];
    memset(seg, 'a', sizeof(seg));
    seg[TF_STORAGE_MAX_SEGMENT] = '\0';
    CHECK(tf_storage_key_valid(seg));
    seg[TF_STORAGE_MAX_SEGMENT] = 'a';
    seg[TF_STORAGE_MAX_SEGMENT + 1] = '\0';
    CHECK(!tf_storage_key_valid(seg));
    char longkey[TF_STORAGE_MAX_KEY + 2];
    for (int i = 0; i < TF_STORAGE_MAX_KEY + 1; i++)
        longkey[i] = i % 2 ? '/' : 'a';
    longkey[TF_STORAGE_MAX_KEY + 1] = '\0';
    CHECK(!tf_storage_key_valid(longkey));

    /* Every start call refuses a bad key synchronously and never calls back. */
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "keys", &dir);
    struct res r = {0};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(tf_storage_put(s, bad[i], "x", 1, false, on_done, &r), TF_EINVAL);
        CHECK_EQ_INT(tf_storage_get(s, bad[i], on_get, &r), TF_EINVAL);
        CHECK_EQ_INT(tf_storage_del(s, bad[i], on_done, &r), TF_EINVAL);
        CHECK_EQ_INT(tf_storage_lock(s, bad[i], 10, 0, on_done, &r), TF_EINVAL);
    }
    CHECK_EQ_INT(tf_storage_list(s, "../x", on_list, &r), TF_EINVAL);
    CHECK_EQ_INT(tf_storage_list(s, "/", on_list, &r), TF_EINVAL);
    CHECK_EQ_INT(tf_storage_lock(s, "ok", 0, 0, on_done, &r), TF_EINVAL); /* zero lease */
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 0);
    store_close(s, &loop);
    free(dir);
}

static void test_wildcard_and_list(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "list", &dir);
    const char *keys[] = {"a/x", "a/b/y", "a/c", "b/z", "ab", "certs/*.example.com/cert.pem"};
    for (size_t i = 0; i < TF_ARRAY_LEN(keys); i++)
        CHECK_EQ_INT(put_str(s, keys[i], keys[i], false), 0);
    char *w = read_file(dir, "certs/_wildcard_.example.com/cert.pem");
    CHECK_EQ_STR(w, "certs/*.example.com/cert.pem");
    free(w);
    CHECK_EQ_INT(lock_wait(s, "a/x", 30, 0), 0); /* a lease must not show up as a key */
    write_file(dir, "a/.x.tmp.0123", "half");   /* an interrupted write */
    write_file(dir, "a/README", "not a key");
    struct res r = {0};
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "a", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 3);
    if (r.n == 3) {
        CHECK_EQ_STR(r.keys[0], "a/b/y");
        CHECK_EQ_STR(r.keys[1], "a/c");
        CHECK_EQ_STR(r.keys[2], "a/x");
    }
    res_clear(&r);
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "", on_list, &r), &r), 0);
    const char *all[] = {"a/b/y", "a/c", "a/x", "ab", "b/z", "certs/*.example.com/cert.pem"};
    CHECK_EQ_INT(r.n, 6);
    for (int i = 0; i < r.n && i < 6; i++)
        CHECK_EQ_STR(r.keys[i], all[i]);
    res_clear(&r);
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "certs/*.example.com/", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 1);
    if (r.n == 1)
        CHECK_EQ_STR(r.keys[0], "certs/*.example.com/cert.pem");
    res_clear(&r);
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "nothing/here", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_clear(&r);
    /* The synchronous helpers see the same. */
    char **sk;
    int sn;
    CHECK_EQ_INT(tf_storage_fs_list_sync(dir, "a/", &sk, &sn), 0);
    CHECK_EQ_INT(sn, 3);
    if (sn == 3)
        CHECK_EQ_STR(sk[0], "a/b/y");
    for (int i = 0; i < sn; i++)
        free(sk[i]);
    free(sk);
    char *data;
    size_t len;
    CHECK_EQ_INT(tf_storage_fs_read_sync(dir, "certs/*.example.com/cert.pem", &data, &len), 0);
    CHECK_EQ_STR(data, "certs/*.example.com/cert.pem");
    free(data);
    CHECK_EQ_INT(tf_storage_fs_read_sync(dir, "nope", &data, &len), UV_ENOENT);
    CHECK_EQ_INT(tf_storage_fs_read_sync(dir, "../etc", &data, &len), TF_EINVAL);
    store_close(s, &loop); /* also releases the lease on "a/x" */
    char *lp = path_in(dir, ".locks/a/x.lock");
    CHECK(access(lp, F_OK) != 0);
    free(lp);
    free(dir);
}

static void test_del(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "del", &dir);
    CHECK_EQ_INT(put_str(s, "d/k", "v", false), 0);
    struct res r = {0};
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "d/k", on_done, &r), &r), 0);
    int err;
    CHECK(get_wait(s, "d/k", &err) == NULL);
    CHECK_EQ_INT(err, UV_ENOENT);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "d/k", on_done, &r), &r), UV_ENOENT);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "never/was", on_done, &r), &r), UV_ENOENT);
    store_close(s, &loop);
    free(dir);
}

/* Real failures at three points of a write; the old value must survive each whole. */
static void test_failed_writes_keep_old(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "fail", &dir);
    int err;
    /* 1. Mid-write: RLIMIT_FSIZE binds root too, so a 64 KiB value fails after 4 KiB of the
     * temp file have been written (EFBIG), just like a full disk would. */
    CHECK_EQ_INT(put_str(s, "k", "old value", true), 0);
    struct rlimit saved, small;
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &saved), 0);
    small = saved;
    small.rlim_cur = 4096;
    signal(SIGXFSZ, SIG_IGN);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &small), 0);
    char *big = tf_malloc(65536);
    memset(big, 'n', 65536);
    CHECK_EQ_INT(put_wait(s, "k", big, 65536, true), UV_EFBIG);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, SIG_DFL);
    free(big);
    char *v = get_wait(s, "k", &err);
    CHECK_EQ_STR(v, "old value");
    free(v);
    CHECK_EQ_INT(file_mode(dir, "k"), 0600);
    /* 2. Before the temp file: the parent "directory" is a value. */
    CHECK_EQ_INT(put_str(s, "f", "a file", false), 0);
    CHECK_EQ_INT(put_str(s, "f/x", "below", false), UV_ENOTDIR);
    v = get_wait(s, "f", &err);
    CHECK_EQ_STR(v, "a file");
    free(v);
    /* 3. At the rename: the target is a non-empty directory. */
    CHECK_EQ_INT(put_str(s, "d/x", "inside", false), 0);
    err = put_str(s, "d", "over a dir", false);
    CHECK(err == UV_EISDIR || err == UV_ENOTEMPTY);
    v = get_wait(s, "d/x", &err);
    CHECK_EQ_STR(v, "inside");
    free(v);
    CHECK_EQ_INT(temp_files(dir), 0); /* every failed temp file was removed */
    store_close(s, &loop);
    free(dir);
}

static void test_unusable_dir(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *file = path_in(g_root, "plainfile");
    write_file(g_root, "plainfile", "x");
    char *below = path_in(file, "sub/dir");
    char err[512] = "";
    CHECK(tf_storage_fs_new(&loop, below, err, sizeof(err)) == NULL);
    char *want = tf_asprintf("storage %s: not a directory", below);
    CHECK_EQ_STR(err, want);
    free(want);
    err[0] = '\0';
    CHECK(tf_storage_fs_new(&loop, file, err, sizeof(err)) == NULL);
    want = tf_asprintf("storage %s: not a directory", file);
    CHECK_EQ_STR(err, want);
    free(want);
    err[0] = '\0';
    CHECK(tf_storage_fs_new(&loop, "", err, sizeof(err)) == NULL);
    CHECK(strncmp(err, "storage ", 8) == 0);
    free(below);
    free(file);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
}

/* Parse a lease file; expires (or -1) and whether pid and host are as given. */
static long long lease_expires(const char *dir, const char *name, long long *pid)
{
    char *rel = tf_asprintf(".locks/%s.lock", name);
    char *t = read_file(dir, rel);
    free(rel);
    long long e = -1;
    char *p = t ? strstr(t, "\"expires\":") : NULL;
    if (p)
        e = atoll(p + 10);
    p = t ? strstr(t, "\"pid\":") : NULL;
    *pid = p ? atoll(p + 6) : -1;
    free(t);
    return e;
}

struct unlock_later {
    uv_timer_t timer;
    struct tf_storage *s;
    struct res r;
};

static void on_unlock_timer(uv_timer_t *t)
{
    struct unlock_later *u = t->data;
    CHECK_EQ_INT(tf_storage_unlock(u->s, LOCK_NAME, on_done, &u->r), 0);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_lock_in_process(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "lock1", &dir);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    long long pid, exp = lease_expires(dir, LOCK_NAME, &pid);
    CHECK_EQ_INT(pid, getpid());
    CHECK(exp >= tf_wall_now() + 29 && exp <= tf_wall_now() + 30);
    CHECK_EQ_INT(file_mode(dir, ".locks/" LOCK_NAME ".lock"), 0600);
    /* Same process, second acquire: waits wait_ms, then busy. */
    uint64_t t0 = tf_mono_ms();
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 300), TF_EBUSY);
    uint64_t took = tf_mono_ms() - t0;
    CHECK(took >= 300 && took < 3000);
    CHECK_EQ_INT(lock_wait(s, "other/name", 30, 0), 0); /* other names are independent */
    CHECK_EQ_INT(renew_wait(s, LOCK_NAME, 100), 0);
    exp = lease_expires(dir, LOCK_NAME, &pid);
    CHECK(exp >= tf_wall_now() + 99);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    CHECK_EQ_INT(file_mode(dir, ".locks/" LOCK_NAME ".lock"), -1);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), TF_ENOTFOUND);
    CHECK_EQ_INT(renew_wait(s, LOCK_NAME, 10), TF_ENOTFOUND);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    /* A waiter gets the lease as soon as the holder lets go (unlock from a timer). */
    struct unlock_later u = {.s = s};
    uv_timer_init(&loop, &u.timer);
    u.timer.data = &u;
    uv_timer_start(&u.timer, on_unlock_timer, 200, 0);
    struct res r = {0};
    t0 = tf_mono_ms();
    CHECK_EQ_INT(done_wait(s, tf_storage_lock(s, LOCK_NAME, 30, 5000, on_done, &r), &r), 0);
    CHECK_EQ_INT(u.r.calls, 1);
    CHECK_EQ_INT(u.r.err, 0);
    took = tf_mono_ms() - t0;
    CHECK(took >= 150 && took < 3000);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    CHECK_EQ_INT(unlock_wait(s, "other/name"), 0);
    CHECK_EQ_INT(temp_files(dir), 0);
    store_close(s, &loop);
    free(dir);
}

static void write_lease(const char *dir, const char *name, long long pid, const char *host,
                        long long expires, const char *token)
{
    char *rel = tf_asprintf(".locks/%s.lock", name);
    char *text = tf_asprintf("{\"pid\":%lld,\"host\":\"%s\",\"expires\":%lld,\"token\":\"%s\"}",
                             pid, host, expires, token);
    write_file(dir, rel, text);
    free(text);
    free(rel);
}

static pid_t dead_pid(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, NULL, 0);
    return pid;
}

/* Leases written by others: live ones are respected, stale ones taken over. */
static void test_lock_stale(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "lock2", &dir);
    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    int64_t now = tf_wall_now();
    /* Create .locks/order/ by taking and releasing once. */
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    /* Live lease of another host: busy, and the file is left exactly as it was. */
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now + 60, "aaaa");
    char *before = read_file(dir, ".locks/" LOCK_NAME ".lock");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), TF_EBUSY);
    char *after = read_file(dir, ".locks/" LOCK_NAME ".lock");
    CHECK_EQ_STR(after, before);
    free(before);
    free(after);
    /* Expired lease (of a live process, even): taken over. */
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now - 1, "aaaa");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    long long pid;
    CHECK(lease_expires(dir, LOCK_NAME, &pid) >= now + 29);
    CHECK_EQ_INT(pid, getpid());
    /* Someone took it over after our lease ran out: renew and unlock refuse, leave it. */
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now + 60, "bbbb");
    CHECK_EQ_INT(renew_wait(s, LOCK_NAME, 30), TF_EDENIED);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), TF_ENOTFOUND); /* renew dropped it */
    CHECK(lease_expires(dir, LOCK_NAME, &pid) == now + 60);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), TF_EBUSY);
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now - 1, "bbbb");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    write_lease(dir, LOCK_NAME, 1, "other-host.invalid", now + 60, "cccc");
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), TF_EDENIED);
    CHECK(lease_expires(dir, LOCK_NAME, &pid) == now + 60); /* not removed */
    /* Unexpired lease of a dead process on this host: taken over. */
    write_lease(dir, LOCK_NAME, dead_pid(), host, now + 600, "dddd");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    /* Garbage (only a crash could leave it): taken over. */
    write_file(dir, ".locks/" LOCK_NAME ".lock", "{\"pid\":");
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    CHECK_EQ_INT(temp_files(dir), 0);
    store_close(s, &loop);
    free(dir);
}

/* Child: take the lease with its own loop and store, report 'L', then either exit holding
 * it (a crash) or wait for one byte from the parent and release it. Never returns. */
static void child_hold(const char *dir, int in_fd, int out_fd, bool release)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char err[512];
    struct tf_storage *s = tf_storage_fs_new(&loop, dir, err, sizeof(err));
    if (!s || lock_wait(s, LOCK_NAME, 60, 0) != 0)
        _exit(2);
    if (write(out_fd, "L", 1) != 1)
        _exit(3);
    if (!release)
        _exit(0); /* dies holding the lease */
    char c;
    if (read(in_fd, &c, 1) != 1 || unlock_wait(s, LOCK_NAME) != 0)
        _exit(4);
    tf_storage_close(s, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(uv_loop_close(&loop) == 0 ? 0 : 5);
}

/* One byte from fd within 10 s, or 0. */
static char read_byte(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char c = 0;
    if (poll(&p, 1, 10000) == 1 && read(fd, &c, 1) != 1)
        c = 0;
    return c;
}

static pid_t spawn_holder(const char *dir, bool release, int *to_child, int *from_child)
{
    int down[2], up[2];
    CHECK_EQ_INT(pipe(down), 0);
    CHECK_EQ_INT(pipe(up), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(down[1]);
        close(up[0]);
        child_hold(dir, down[0], up[1], release);
    }
    close(down[0]);
    close(up[1]);
    *to_child = down[1];
    *from_child = up[0];
    return pid;
}

static int child_status(pid_t pid)
{
    int st = 0;
    CHECK_EQ_INT(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void test_lock_between_processes(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "lock3", &dir);
    int to, from;
    pid_t pid = spawn_holder(dir, true, &to, &from);
    CHECK_EQ_INT(read_byte(from), 'L');
    long long holder;
    lease_expires(dir, LOCK_NAME, &holder);
    CHECK_EQ_INT(holder, pid);
    uint64_t t0 = tf_mono_ms();
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 300), TF_EBUSY);
    CHECK(tf_mono_ms() - t0 >= 300);
    /* Wait up to 5 s while the child is told to let go: we get it once it has. */
    struct res r = {0};
    CHECK_EQ_INT(tf_storage_lock(s, LOCK_NAME, 30, 5000, on_done, &r), 0);
    CHECK_EQ_INT(write(to, "R", 1), 1);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_INT(child_status(pid), 0);
    lease_expires(dir, LOCK_NAME, &holder);
    CHECK_EQ_INT(holder, getpid());
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    close(to);
    close(from);
    /* A holder that dies without unlocking: its unexpired lease is taken over. */
    pid = spawn_holder(dir, false, &to, &from);
    CHECK_EQ_INT(read_byte(from), 'L');
    CHECK_EQ_INT(child_status(pid), 0);
    lease_expires(dir, LOCK_NAME, &holder);
    CHECK_EQ_INT(holder, pid);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    CHECK_EQ_INT(unlock_wait(s, LOCK_NAME), 0);
    close(to);
    close(from);
    store_close(s, &loop);
    free(dir);
}

static void on_close_done(void *arg)
{
    (*(int *)arg)++;
}

/* Close with everything in flight: each callback runs once, the waiting lock ends early
 * with TF_ECLOSED, the held lease is released, and close's callback comes last. */
static void test_close_in_flight(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "close", &dir);
    CHECK_EQ_INT(put_str(s, "x/old", "o", false), 0);
    CHECK_EQ_INT(lock_wait(s, "held", 30, 0), 0);
    CHECK_EQ_INT(lock_wait(s, LOCK_NAME, 30, 0), 0);
    struct res r[12];
    memset(r, 0, sizeof(r));
    for (int i = 0; i < 6; i++)
        CHECK_EQ_INT(tf_storage_put(s, "x/k", "v", 1, i % 2, on_done, &r[i]), 0);
    CHECK_EQ_INT(tf_storage_get(s, "x/old", on_get, &r[6]), 0);
    CHECK_EQ_INT(tf_storage_get(s, "x/none", on_get, &r[7]), 0);
    CHECK_EQ_INT(tf_storage_list(s, "x", on_list, &r[8]), 0);
    CHECK_EQ_INT(tf_storage_del(s, "x/old", on_done, &r[9]), 0);
    CHECK_EQ_INT(tf_storage_lock(s, LOCK_NAME, 30, 10000, on_done, &r[10]), 0);
    uv_run(&loop, UV_RUN_ONCE); /* let the lock's first attempt fail and start its timer */
    int closed = 0;
    uint64_t t0 = tf_mono_ms();
    tf_storage_close(s, on_close_done, &closed);
    CHECK_EQ_INT(closed, 0); /* never from inside close */
    CHECK_EQ_INT(tf_storage_put(s, "late", "v", 1, false, on_done, &r[11]), TF_ECLOSED);
    CHECK_EQ_INT(tf_storage_lock(s, "late", 1, 0, on_done, &r[11]), TF_ECLOSED);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(tf_mono_ms() - t0 < 5000);
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
    CHECK_EQ_INT(file_mode(dir, ".locks/held.lock"), -1); /* released by close */
    CHECK_EQ_INT(file_mode(dir, ".locks/" LOCK_NAME ".lock"), -1);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    /* Close with nothing in flight still calls back later, not from inside close. */
    uv_loop_init(&loop);
    free(dir);
    s = store_new(&loop, "close", &dir);
    closed = 0;
    tf_storage_close(s, on_close_done, &closed);
    CHECK_EQ_INT(closed, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(closed, 1);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    free(dir);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(void)
{
    snprintf(g_root, sizeof(g_root), "%s/tf_storage_XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    TF_TEST_RUN(test_round_trip);
    TF_TEST_RUN(test_modes);
    TF_TEST_RUN(test_no_temp_files);
    TF_TEST_RUN(test_key_rules);
    TF_TEST_RUN(test_wildcard_and_list);
    TF_TEST_RUN(test_del);
    TF_TEST_RUN(test_failed_writes_keep_old);
    TF_TEST_RUN(test_unusable_dir);
    TF_TEST_RUN(test_lock_in_process);
    TF_TEST_RUN(test_lock_stale);
    TF_TEST_RUN(test_lock_between_processes);
    TF_TEST_RUN(test_close_in_flight);
    nftw(g_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return TF_TEST_DONE();
}
