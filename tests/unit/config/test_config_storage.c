/*
 * test_config_storage.c: the storage options: the redis:// URL grammar (user, password with
 * %-escapes, IPv6, database), --storage-prefix's name rule, and the checks that tie
 * --storage-key and --storage-ca to the kind of storage, through flags, environment and the
 * JSON file; every refusal is one line naming the option.
 */
#include "tlsfront/config/config.h"
#include "tf_test.h"

#include <stdarg.h>

#define BACKEND "--backend", "127.0.0.1:9"

static void test_url(void)
{
    struct tf_redis_url u;
    char err[300];
    CHECK_EQ_INT(tf_config_parse_redis_url("redis://bob:p%40ss%3Aw@10.0.0.1:6380/7", &u, err,
                                           sizeof(err)),
                 0);
    CHECK(!u.tls);
    CHECK_EQ_STR(u.user, "bob");
    CHECK_EQ_STR(u.pass, "p@ss:w");
    CHECK_EQ_STR(u.host, "10.0.0.1");
    CHECK_EQ_INT(u.port, 6380);
    CHECK_EQ_INT(u.db, 7);
    tf_config_redis_url_clear(&u);
    CHECK_EQ_INT(tf_config_parse_redis_url("redis://:pw@redis.internal:6379", &u, err,
                                           sizeof(err)),
                 0);
    CHECK(u.user == NULL);
    CHECK_EQ_STR(u.pass, "pw");
    CHECK_EQ_STR(u.host, "redis.internal");
    CHECK_EQ_INT(u.db, 0);
    tf_config_redis_url_clear(&u);
    CHECK_EQ_INT(tf_config_parse_redis_url("rediss://[::1]:6379/", &u, err, sizeof(err)), 0);
    CHECK(u.tls);
    CHECK_EQ_STR(u.host, "::1");
    CHECK(u.pass == NULL);
    tf_config_redis_url_clear(&u);
    static const char *bad[] = {"redis://host",         "redis://host:0",     "redis://host:x",
                                "redis://:6379",        "redis://h:6379/x",   "redis://pw@h:1",
                                "redis://:p%4@h:1",     "redis://:p%00@h:1",  "redis://[::1:1",
                                "redis://a/b:1",        "http://h:1",         "redis://h:1/-1"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        int rc = tf_config_parse_redis_url(bad[i], &u, err, sizeof(err));
        if (rc != TF_EINVAL)
            fprintf(stderr, "accepted \"%s\"\n", bad[i]);
        CHECK_EQ_INT(rc, TF_EINVAL);
        CHECK(err[0] != '\0');
        CHECK(strstr(err, "p%4") == NULL); /* passwords are never quoted */
    }
}

static int load(struct tf_config_result *res, char **env, ...)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = "tlsfront";
    va_list ap;
    va_start(ap, env);
    for (char *a = va_arg(ap, char *); a && argc < 31; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    char *none[] = {NULL};
    return tf_config_load(argc, argv, env ? env : none, res);
}

static void expect_err(struct tf_config_result *res, int rc, const char *want)
{
    CHECK_EQ_INT(rc, TF_EINVAL);
    if (!strstr(res->err, want))
        fprintf(stderr, "error \"%s\" lacks \"%s\"\n", res->err, want);
    CHECK(strstr(res->err, want) != NULL);
    CHECK(strchr(res->err, '\n') == NULL);
}

static void test_options(void)
{
    struct tf_config_result res;
    const char *url = "redis://:pw@127.0.0.1:6379/2";
    CHECK_EQ_INT(load(&res, NULL, BACKEND, "--storage", url, "--storage-key", "none",
                      "--storage-prefix", "prod-eu.1", "--storage-cache", "/var/cache/tf", NULL),
                 0);
    CHECK_EQ_STR(res.cfg->storage_cache, "/var/cache/tf");
    CHECK_EQ_STR(res.cfg->storage, url);
    CHECK_EQ_STR(res.cfg->storage_key, "none");
    CHECK_EQ_STR(res.cfg->storage_prefix, "prod-eu.1");
    tf_config_unref(res.cfg);
    /* The default directory store takes none of the redis options. */
    CHECK_EQ_INT(load(&res, NULL, BACKEND, NULL), 0);
    CHECK_EQ_STR(res.cfg->storage, "/var/lib/tlsfront");
    CHECK(res.cfg->storage_key == NULL && res.cfg->storage_prefix == NULL &&
          res.cfg->storage_cache == NULL);
    tf_config_unref(res.cfg);
    expect_err(&res, load(&res, NULL, BACKEND, "--storage", url, NULL),
               "config: --storage-key: required with redis storage");
    /* rediss:// takes --storage-ca (the file is read by the store at start-up). */
    CHECK_EQ_INT(load(&res, NULL, BACKEND, "--storage", "rediss://h:1", "--storage-key", "none",
                      "--storage-ca", "/x.pem", NULL),
                 0);
    CHECK_EQ_STR(res.cfg->storage_ca, "/x.pem");
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, NULL, BACKEND, "--storage", "rediss://h:1", "--storage-key", "none",
                      NULL),
                 0);
    tf_config_unref(res.cfg);
    expect_err(&res, load(&res, NULL, BACKEND, "--storage-ca", "/x.pem", NULL),
               "config: --storage-ca: only for rediss://");
    expect_err(&res, load(&res, NULL, BACKEND, "--storage", url, "--storage-key", "none",
                          "--storage-ca", "/x.pem", NULL),
               "config: --storage-ca: only for rediss://");
    expect_err(&res, load(&res, NULL, BACKEND, "--storage-key", "/k", NULL),
               "config: --storage-key: only for redis:// storage");
    expect_err(&res, load(&res, NULL, BACKEND, "--storage-prefix", "p", NULL),
               "config: --storage-prefix: only for redis:// storage");
    expect_err(&res, load(&res, NULL, BACKEND, "--storage-cache", "/c", NULL),
               "config: --storage-cache: only for redis:// storage");
    expect_err(&res, load(&res, NULL, BACKEND, "--storage", "redis://h", NULL),
               "--storage: expected HOST:PORT");
    expect_err(&res, load(&res, NULL, BACKEND, "--storage", url, "--storage-key", "none",
                          "--storage-prefix", "a:b", NULL),
               "--storage-prefix: expected 1 to 64 of [A-Za-z0-9._-]");
    /* Environment and JSON file. */
    char *env[] = {"TLSFRONT_STORAGE=redis://h:1", "TLSFRONT_STORAGE_KEY=/etc/k",
                   "TLSFRONT_STORAGE_CACHE=/var/cache/e", NULL};
    CHECK_EQ_INT(load(&res, env, BACKEND, NULL), 0);
    CHECK_EQ_STR(res.cfg->storage_key, "/etc/k");
    CHECK_EQ_STR(res.cfg->storage_cache, "/var/cache/e");
    tf_config_unref(res.cfg);
    char path[256];
    CHECK_EQ_INT(tf_test_tmpfile("{\"storage\": \"redis://h:1\", \"storage_key\": \"none\", "
                                 "\"storage_prefix\": \"c2\", \"storage_cache\": \"/c3\"}",
                                 path, sizeof(path)),
                 0);
    CHECK_EQ_INT(load(&res, NULL, BACKEND, "-c", path, NULL), 0);
    CHECK_EQ_STR(res.cfg->storage_prefix, "c2");
    CHECK_EQ_STR(res.cfg->storage_cache, "/c3");
    tf_config_unref(res.cfg);
    unlink(path);
}

int main(void)
{
    TF_TEST_RUN(test_url);
    TF_TEST_RUN(test_options);
    return TF_TEST_DONE();
}
