/*
 * test_storage_redis.c: the Redis store against a real redis-server started here (password,
 * database 3): the filesystem store's contract (round trips, directory rules, list, del,
 * key rules, locks, close with everything in flight), leases between two stores (two nodes)
 * including a lease taken over after expiry that the old holder can neither renew nor
 * release, secret values sealed in Redis (checked with a raw GET) and opened again, the
 * wrong key refused, prefixes kept apart, and Redis killed, stopped and restarted: operations
 * fail with an error instead of hanging, and work again without a new store. Every test runs
 * its own loop and requires uv_loop_close() to succeed.
 */
#include "loop/redis_fixture.h"
#include "unit/store/storage_test_util.h"

#include "tlsfront/config/config.h"
#include "tlsfront/store/storage_crypt.h"
#include "tlsfront/store/storage_redis.h"

static struct redis_fixture g_fx;

static struct tf_storage *rstore(uv_loop_t *loop, const char *prefix, struct tf_storage_crypt *c,
                                 uint32_t timeout_ms)
{
    char *url = tf_asprintf("redis://:%s@127.0.0.1:%d/3", REDIS_URL_PASS, g_fx.port);
    struct tf_redis_url u;
    char err[300] = "";
    CHECK_EQ_INT(tf_config_parse_redis_url(url, &u, err, sizeof(err)), 0);
    free(url);
    struct tf_storage_redis_opts o = {.url = &u, .prefix = prefix, .crypt = c,
                                      .timeout_ms = timeout_ms};
    struct tf_storage *s = tf_storage_redis_new(loop, &o, err, sizeof(err));
    if (!s)
        fprintf(stderr, "rstore: %s\n", err);
    tf_config_redis_url_clear(&u);
    return s;
}

static struct tf_storage_crypt *crypt_of(unsigned char fill)
{
    unsigned char key[32];
    memset(key, fill, sizeof(key));
    return tf_storage_crypt_new(key);
}

static void test_values(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tf_storage *s = rstore(&loop, "t1", NULL, 0);
    check_round_trips(s);
    int err;
    char *v;
    /* A value cannot sit where a directory is, nor the reverse, as on disk. */
    CHECK_EQ_INT(put_str(s, "certs/example.com/cert.pem/x", "below", false), UV_ENOTDIR);
    CHECK_EQ_INT(put_str(s, "certs/example.com", "over a dir", false), UV_EISDIR);
    /* Binary values (NUL bytes) come back whole. */
    CHECK_EQ_INT(put_wait(s, "bin", "a\0b", 3, false), 0);
    struct res r = {0};
    CHECK_EQ_INT(done_wait(s, tf_storage_get(s, "bin", on_get, &r), &r), 0);
    CHECK(r.len == 3 && memcmp(r.data, "a\0b", 3) == 0);
    res_clear(&r);
    char *big = tf_malloc(TF_STORAGE_MAX_VALUE + 1);
    memset(big, 'x', TF_STORAGE_MAX_VALUE + 1);
    CHECK_EQ_INT(put_wait(s, "big", big, TF_STORAGE_MAX_VALUE, false), 0);
    v = get_wait(s, "big", &err);
    CHECK(v && strlen(v) == TF_STORAGE_MAX_VALUE);
    free(v);
    CHECK_EQ_INT(put_wait(s, "big", big, TF_STORAGE_MAX_VALUE + 1, false), TF_ETOOBIG);
    /* A value grown past the cap behind our back is refused by get. */
    raw_set(g_fx.port, "t1:v:big", big, TF_STORAGE_MAX_VALUE + 1);
    CHECK(get_wait(s, "big", &err) == NULL);
    CHECK_EQ_INT(err, TF_ETOOBIG);
    free(big);
    /* Values are stored as they are, under the prefix. */
    size_t len = 0;
    char *raw = raw_get(g_fx.port, "t1:v:certs/example.com/cert.pem", &len);
    CHECK_EQ_STR(raw, "world, longer");
    free(raw);
    store_close(s, &loop);
}

static void test_key_rules(void)
{
    static const char *bad[] = {"", "/a", "a/", "a//b", "..", ".hidden", "A", "a b", "*", "a*b",
                                "_wildcard_.x"};
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tf_storage *s = rstore(&loop, "t2", NULL, 0);
    struct res r = {0};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(tf_storage_put(s, bad[i], "x", 1, false, on_done, &r), TF_EINVAL);
        CHECK_EQ_INT(tf_storage_get(s, bad[i], on_get, &r), TF_EINVAL);
        CHECK_EQ_INT(tf_storage_del(s, bad[i], on_done, &r), TF_EINVAL);
        CHECK_EQ_INT(tf_storage_lock(s, bad[i], 10, 0, on_done, &r), TF_EINVAL);
    }
    CHECK_EQ_INT(tf_storage_list(s, "../x", on_list, &r), TF_EINVAL);
    CHECK_EQ_INT(tf_storage_list(s, "/", on_list, &r), TF_EINVAL);
    CHECK_EQ_INT(tf_storage_lock(s, "ok", 0, 0, on_done, &r), TF_EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 0);
    store_close(s, &loop);
}

static void test_list_and_del(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tf_storage *s = rstore(&loop, "t3", NULL, 0);
    struct tf_storage *other = rstore(&loop, "t3x", NULL, 0);
    const char *keys[] = {"a/x", "a/b/y", "a/c", "b/z", "ab", "certs/*.example.com/cert.pem"};
    for (size_t i = 0; i < TF_ARRAY_LEN(keys); i++)
        CHECK_EQ_INT(put_str(s, keys[i], keys[i], false), 0);
    CHECK_EQ_INT(put_str(other, "a/other", "another prefix", false), 0);
    CHECK_EQ_INT(lock_wait(s, "a/x", 30, 0), 0); /* a lease must not show up as a key */
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
    res_clear(&r);
    /* '*' in the prefix is a character, not a pattern. */
    CHECK_EQ_INT(put_str(s, "certs/xx.example.com/cert.pem", "x", false), 0);
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "certs/*.example.com", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 1);
    res_clear(&r);
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "nothing/here", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 0);
    res_clear(&r);
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "ab", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 0); /* a value is not a directory */
    res_clear(&r);
    /* Many keys: SCAN takes several pages. */
    for (int i = 0; i < 1500; i++) {
        char key[32];
        snprintf(key, sizeof(key), "many/k%04d", i);
        CHECK_EQ_INT(tf_storage_put(s, key, "v", 1, false, on_done, &r), 0);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(r.calls, 1500);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(done_wait(s, tf_storage_list(s, "many", on_list, &r), &r), 0);
    CHECK_EQ_INT(r.n, 1500);
    if (r.n == 1500)
        CHECK_EQ_STR(r.keys[1499], "many/k1499");
    res_clear(&r);
    /* del */
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "a/x", on_done, &r), &r), 0);
    int err;
    CHECK(get_wait(s, "a/x", &err) == NULL);
    CHECK_EQ_INT(err, UV_ENOENT);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "a/x", on_done, &r), &r), UV_ENOENT);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "never/was", on_done, &r), &r), UV_ENOENT);
    memset(&r, 0, sizeof(r));
    CHECK_EQ_INT(done_wait(s, tf_storage_del(s, "a", on_done, &r), &r), UV_EISDIR);
    CHECK_EQ_INT(unlock_wait(s, "a/x"), 0);
    tf_storage_close(other, NULL, NULL);
    store_close(s, &loop);
}

static void test_secrets(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    const char *pem = "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMG\n-----END PRIVATE KEY-----\n";
    struct tf_storage *s = rstore(&loop, "t4", crypt_of(1), 0);
    CHECK_EQ_INT(put_str(s, "acme/ca/account.key", pem, true), 0);
    CHECK_EQ_INT(put_str(s, "certs/a.example/cert.pem", "public", false), 0);
    size_t len = 0;
    char *raw = raw_get(g_fx.port, "t4:v:acme/ca/account.key", &len);
    CHECK(raw != NULL);
    CHECK(raw && len == strlen(pem) + TF_STORAGE_CRYPT_OVERHEAD);
    CHECK(raw && memcmp(raw, "TFE1", 4) == 0);
    CHECK(raw && !memmem(raw, len, "PRIVATE KEY", 11));
    CHECK(raw && !memmem(raw, len, "MIGHAgEAMBMG", 12));
    raw_set(g_fx.port, "t4:v:acme/moved.key", raw, len); /* sealed for another name */
    free(raw);
    raw = raw_get(g_fx.port, "t4:v:certs/a.example/cert.pem", &len);
    CHECK_EQ_STR(raw, "public"); /* only secrets are sealed */
    free(raw);
    int err;
    char *v = get_wait(s, "acme/ca/account.key", &err);
    CHECK_EQ_INT(err, 0);
    CHECK_EQ_STR(v, pem);
    free(v);
    CHECK(get_wait(s, "acme/moved.key", &err) == NULL);
    CHECK_EQ_INT(err, TF_EPROTO);
    store_close(s, &loop);
    /* Another key, or none: a clear refusal, never garbage. */
    uv_loop_init(&loop);
    s = rstore(&loop, "t4", crypt_of(2), 0);
    CHECK(get_wait(s, "acme/ca/account.key", &err) == NULL);
    CHECK_EQ_INT(err, TF_EDENIED);
    store_close(s, &loop);
    uv_loop_init(&loop);
    s = rstore(&loop, "t4", NULL, 0);
    CHECK(get_wait(s, "acme/ca/account.key", &err) == NULL);
    CHECK_EQ_INT(err, TF_EDENIED);
    CHECK_EQ_INT(put_str(s, "plain.key", "kept as is", true), 0); /* --storage-key none */
    raw = raw_get(g_fx.port, "t4:v:plain.key", &len);
    CHECK_EQ_STR(raw, "kept as is");
    free(raw);
    store_close(s, &loop);
    /* An altered envelope does not open. */
    uv_loop_init(&loop);
    s = rstore(&loop, "t4", crypt_of(1), 0);
    raw = raw_get(g_fx.port, "t4:v:acme/ca/account.key", &len);
    if (raw) {
        raw[len - 20] ^= 1;
        raw_set(g_fx.port, "t4:v:acme/ca/account.key", raw, len);
    }
    free(raw);
    CHECK(get_wait(s, "acme/ca/account.key", &err) == NULL);
    CHECK_EQ_INT(err, TF_EPROTO);
    store_close(s, &loop);
}

static void test_locks(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tf_storage *a = rstore(&loop, "t5", NULL, 0);
    struct tf_storage *b = rstore(&loop, "t5", NULL, 0); /* a second node */
    CHECK_EQ_INT(lock_wait(a, LOCK_NAME, 30, 0), 0);
    long long pttl = raw_int(g_fx.port, "PTTL %s", "t5:l:" LOCK_NAME);
    CHECK(pttl > 0 && pttl <= 30000);
    CHECK_EQ_INT(lock_wait(a, LOCK_NAME, 30, 300), TF_EBUSY); /* same store waits too */
    CHECK_EQ_INT(lock_wait(b, LOCK_NAME, 30, 0), TF_EBUSY);
    CHECK_EQ_INT(lock_wait(a, "other/name", 30, 0), 0);
    CHECK_EQ_INT(renew_wait(a, LOCK_NAME, 100), 0);
    CHECK(raw_int(g_fx.port, "PTTL %s", "t5:l:" LOCK_NAME) > 30000);
    CHECK_EQ_INT(renew_wait(b, LOCK_NAME, 100), TF_ENOTFOUND);
    CHECK_EQ_INT(unlock_wait(b, LOCK_NAME), TF_ENOTFOUND);
    CHECK_EQ_INT(unlock_wait(a, LOCK_NAME), 0);
    CHECK_EQ_INT(raw_int(g_fx.port, "EXISTS %s", "t5:l:" LOCK_NAME), 0);
    CHECK_EQ_INT(unlock_wait(a, LOCK_NAME), TF_ENOTFOUND);
    CHECK_EQ_INT(renew_wait(a, LOCK_NAME, 10), TF_ENOTFOUND);
    /* A lease that runs out is taken over by the other node (which waits for it); the old
     * holder can then neither renew nor release it. */
    CHECK_EQ_INT(lock_wait(a, LOCK_NAME, 1, 0), 0);
    CHECK_EQ_INT(lock_wait(b, LOCK_NAME, 30, 10000), 0);
    size_t len;
    char *held = raw_get(g_fx.port, "t5:l:" LOCK_NAME, &len);
    CHECK_EQ_INT(unlock_wait(a, LOCK_NAME), TF_EDENIED);
    char *still = raw_get(g_fx.port, "t5:l:" LOCK_NAME, &len);
    CHECK_EQ_STR(still, held); /* b's lease untouched */
    free(still);
    CHECK_EQ_INT(lock_wait(a, "ren", 1, 0), 0);
    CHECK_EQ_INT(lock_wait(b, "ren", 30, 10000), 0);
    CHECK_EQ_INT(renew_wait(a, "ren", 30), TF_EDENIED);
    CHECK_EQ_INT(unlock_wait(a, "ren"), TF_ENOTFOUND); /* renew dropped it */
    still = raw_get(g_fx.port, "t5:l:" LOCK_NAME, &len);
    CHECK_EQ_STR(still, held);
    free(still);
    free(held);
    CHECK_EQ_INT(unlock_wait(b, "ren"), 0);
    CHECK_EQ_INT(unlock_wait(b, LOCK_NAME), 0);
    CHECK_EQ_INT(unlock_wait(a, "other/name"), 0);
    tf_storage_close(b, NULL, NULL);
    store_close(a, &loop);
}

/* Close with everything in flight: each callback once, the waiting lock ends early with
 * TF_ECLOSED, held leases are released, close's callback comes last and never inside. */
static void test_close_in_flight(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tf_storage *s = rstore(&loop, "t6", NULL, 0);
    struct res r[12];
    close_busy_start(s, r);
    while (r[9].calls == 0 || r[10].calls != 0) /* until the lock sleeps on its timer */
        uv_run(&loop, UV_RUN_ONCE);
    close_busy_finish(s, r);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    CHECK_EQ_INT(raw_int(g_fx.port, "EXISTS %s", "t6:l:held"), 0); /* released by close */
    CHECK_EQ_INT(raw_int(g_fx.port, "EXISTS %s", "t6:l:" LOCK_NAME), 0);
    /* Close with nothing in flight (still connecting) calls back later. */
    uv_loop_init(&loop);
    close_idle(rstore(&loop, "t6", NULL, 0));
}

/* Put until it works (the store reconnects on its own), bounded at 20 s. */
static int put_until_ok(uv_loop_t *loop, struct tf_storage *s)
{
    int err = -1;
    for (int i = 0; i < 200 && err != 0; i++) {
        err = put_str(s, "back/k", "again", false);
        if (err)
            loop_for(loop, 100);
    }
    return err;
}

static void test_down_and_back(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    struct tf_storage *s = rstore(&loop, "t7", NULL, 0);
    CHECK_EQ_INT(put_str(s, "k", "v", false), 0);
    redis_stop(&g_fx);
    /* Down: each operation ends with an error (the first may see the connection drop). */
    for (int i = 0; i < 3; i++) {
        int err = put_str(s, "k", "v2", false);
        CHECK(err != 0 && err != TF_ECLOSED);
    }
    int err;
    CHECK(get_wait(s, "k", &err) == NULL);
    CHECK(err == UV_ECONNREFUSED || err == UV_ECONNRESET);
    err = lock_wait(s, "l", 30, 600000); /* no wait for a holder while down */
    CHECK(err == UV_ECONNREFUSED || err == UV_ECONNRESET);
    CHECK(redis_start(&g_fx, false));
    CHECK_EQ_INT(put_until_ok(&loop, s), 0);
    char *v = get_wait(s, "back/k", &err);
    CHECK_EQ_STR(v, "again");
    free(v);
    /* Stopped (alive but silent): commands time out instead of hanging. */
    store_close(s, &loop);
    uv_loop_init(&loop);
    s = rstore(&loop, "t7", NULL, 300);
    CHECK_EQ_INT(put_str(s, "k", "v", false), 0);
    kill(g_fx.pid, SIGSTOP);
    CHECK(get_wait(s, "k", &err) == NULL);
    CHECK_EQ_INT(err, UV_ETIMEDOUT);
    kill(g_fx.pid, SIGCONT);
    CHECK_EQ_INT(put_until_ok(&loop, s), 0);
    store_close(s, &loop);
}

/* Nothing listens: operations started while connecting fail, nothing hangs. */
static void test_never_up(void)
{
    uv_loop_t loop;
    uv_loop_init(&loop);
    int real = g_fx.port;
    g_fx.port = free_port();
    struct tf_storage *s = rstore(&loop, "t8", NULL, 0);
    g_fx.port = real;
    int err;
    CHECK(get_wait(s, "k", &err) == NULL);
    CHECK_EQ_INT(err, UV_ECONNREFUSED);
    store_close(s, &loop);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (!root_setup("redis"))
        return 1;
    snprintf(g_fx.dir, sizeof(g_fx.dir), "%s", g_root);
    if (!redis_start(&g_fx, true)) {
        root_remove();
        return 1;
    }
    TF_TEST_RUN(test_values);
    TF_TEST_RUN(test_key_rules);
    TF_TEST_RUN(test_list_and_del);
    TF_TEST_RUN(test_secrets);
    TF_TEST_RUN(test_locks);
    TF_TEST_RUN(test_close_in_flight);
    TF_TEST_RUN(test_never_up);
    TF_TEST_RUN(test_down_and_back);
    redis_stop(&g_fx);
    root_remove();
    return TF_TEST_DONE();
}
