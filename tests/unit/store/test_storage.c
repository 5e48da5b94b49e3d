/*
 * test_storage.c: the filesystem store's values in a mkdtemp directory, driven through its
 * libuv interface: round trips, modes, atomic replacement (including real write failures at
 * three points), key validation, list, del and start-up checks. Locks and close are in
 * test_storage_lock.c. Every test runs its own loop and requires uv_loop_close() to succeed.
 */
#include "storage_test_util.h"

static void test_round_trip(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "rt/nested", &dir);
    CHECK(s != NULL);
    CHECK_EQ_INT(file_mode(dir, ""), 0700);
    check_round_trips(s);
    int err;
    char *v;
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
    static const char *bad[] = {
        "",        "/a",     "a/",    "a//b",         "..",           "a/../b",     ".",  "./a",
        ".hidden", "a/.tmp", "A",     "a b",          "a\\b",         "*",          "*.", "*..x",
        "a*b",     "a/*",    "x.*.y", "_wildcard_.x", "a/_wildcard_", "caf\xc3\xa9"};
    static const char *good[] = {"a",
                                 "a.b-c_d/0",
                                 "*.example.com",
                                 "certs/*.example.com/c.pem",
                                 "a..b",
                                 "x_y",
                                 "_acme-challenge.example.com"};
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
    write_file(dir, "a/.x.tmp.0123", "half");    /* an interrupted write */
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
    struct rlimit saved;
    fsize_limit(4096, &saved);
    char *big = tf_malloc(65536);
    memset(big, 'n', 65536);
    CHECK_EQ_INT(put_wait(s, "k", big, 65536, true), UV_EFBIG);
    fsize_restore(&saved);
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

/* One unreadable entry under a prefix (a symlink to itself: stat says ELOOP even for root,
 * and a directory symlink cycle deeper than the walk allows) costs only that entry: the
 * rest of the listing still comes back, asynchronously and through the synchronous helper. */
static void test_list_skips_unreadable(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    char *dir;
    struct tf_storage *s = store_new(&loop, "unreadable", &dir);
    CHECK_EQ_INT(put_str(s, "certs/a.example/cert.pem", "a", false), 0);
    CHECK_EQ_INT(put_str(s, "certs/b.example/cert.pem", "b", false), 0);
    char *self = path_in(dir, "certs/loop.example");
    CHECK_EQ_INT(symlink("loop.example", self), 0);
    char *cycle = path_in(dir, "certs/b.example/again");
    CHECK_EQ_INT(symlink("..", cycle), 0);
    struct res r = {0};
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "certs", on_list, &r), &r), 0);
    /* b.example/again/b.example/again/... is walked up to the depth limit, then skipped. */
    int a = 0, b = 0;
    for (int i = 0; i < r.n; i++) {
        a += strcmp(r.keys[i], "certs/a.example/cert.pem") == 0;
        b += strcmp(r.keys[i], "certs/b.example/cert.pem") == 0;
        CHECK(strstr(r.keys[i], "loop.example") == NULL);
    }
    CHECK_EQ_INT(a, 1);
    CHECK_EQ_INT(b, 1);
    res_clear(&r);
    char **sk;
    int sn;
    CHECK_EQ_INT(tf_storage_fs_list_sync(dir, "certs", &sk, &sn), 0);
    CHECK(sn >= 2);
    for (int i = 0; i < sn; i++)
        free(sk[i]);
    free(sk);
    store_close(s, &loop);
    free(cycle);
    free(self);
    free(dir);
}

/* Parse a lease file; expires (or -1) and whether pid and host are as given. */

int main(void)
{
    if (!root_setup("storage"))
        return 1;
    TF_TEST_RUN(test_round_trip);
    TF_TEST_RUN(test_modes);
    TF_TEST_RUN(test_no_temp_files);
    TF_TEST_RUN(test_key_rules);
    TF_TEST_RUN(test_wildcard_and_list);
    TF_TEST_RUN(test_del);
    TF_TEST_RUN(test_failed_writes_keep_old);
    TF_TEST_RUN(test_unusable_dir);
    TF_TEST_RUN(test_list_skips_unreadable);
    root_remove();
    return TF_TEST_DONE();
}
