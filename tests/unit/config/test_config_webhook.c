/*
 * test_config_webhook.c: --webhook (repeatable, from flags, the environment and the JSON
 * file), --webhook-secret-file, --webhook-ca and --webhook-queue, their errors, and the
 * reload rule (a change needs a restart).
 */
#include "config_test_util.h"

static void test_flags(void)
{
    struct tf_config_result res;
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", "--webhook", "http://127.0.0.1:9/hook",
                      "--webhook", "https://panel.example/tlsfront", "--webhook-secret-file",
                      "/etc/s", "--webhook-ca", "/etc/ca.pem", "--webhook-queue", "5", NULL),
                 0);
    if (!res.cfg)
        return;
    CHECK_EQ_INT(res.cfg->n_webhooks, 2);
    CHECK_EQ_STR(res.cfg->webhooks[0], "http://127.0.0.1:9/hook");
    CHECK_EQ_STR(res.cfg->webhooks[1], "https://panel.example/tlsfront");
    CHECK_EQ_STR(res.cfg->webhook_secret_file, "/etc/s");
    CHECK_EQ_STR(res.cfg->webhook_ca, "/etc/ca.pem");
    CHECK_EQ_INT(res.cfg->webhook_queue, 5);
    tf_config_unref(res.cfg);

    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", NULL), 0);
    if (res.cfg) {
        CHECK_EQ_INT(res.cfg->n_webhooks, 0);
        CHECK_EQ_INT(res.cfg->webhook_queue, 1000);
        tf_config_unref(res.cfg);
    }
}

static void test_env_and_json(void)
{
    struct tf_config_result res;
    char *env[] = {"TLSFRONT_WEBHOOK=http://e1/h http://e2/h", NULL};
    CHECK_EQ_INT(load(&res, env, "--backend", "a:1", NULL), 0);
    if (res.cfg) {
        CHECK_EQ_INT(res.cfg->n_webhooks, 2);
        CHECK_EQ_STR(res.cfg->webhooks[1], "http://e2/h");
        tf_config_unref(res.cfg);
    }
    const char *path = write_tmp("{\"backend\":\"a:1\",\"webhook\":[\"https://j/h\"],"
                                 "\"webhook_queue\":7}");
    /* The flag replaces the file's list wholesale. */
    CHECK_EQ_INT(load(&res, NULL, "-c", path, "--webhook", "http://f/h", NULL), 0);
    if (res.cfg) {
        CHECK_EQ_INT(res.cfg->n_webhooks, 1);
        CHECK_EQ_STR(res.cfg->webhooks[0], "http://f/h");
        CHECK_EQ_INT(res.cfg->webhook_queue, 7);
        tf_config_unref(res.cfg);
    }
}

static void test_errors(void)
{
    struct tf_config_result res;
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--webhook", "ftp://x/h", NULL),
                 "--webhook: expected an http:// or https:// URL, got \"ftp://x/h\"");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--webhook", "http:///h", NULL),
                   "--webhook: expected an http:// or https:// URL"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--webhook", "http://a b/", NULL),
                   "--webhook: expected"));
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--webhook-secret-file", "/s", NULL),
                 "--webhook-secret-file: needs --webhook");
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--webhook-ca", "/c", NULL),
                 "--webhook-ca: needs --webhook");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--webhook", "http://h/",
                            "--webhook-queue", "0", NULL),
                   "--webhook-queue: expected an integer 1..10000"));
}

static void test_restart(void)
{
    struct tf_config_result a, b;
    CHECK_EQ_INT(load(&a, NULL, "--backend", "a:1", "--webhook", "http://h/1", NULL), 0);
    CHECK_EQ_INT(load(&b, NULL, "--backend", "a:1", "--webhook", "http://h/2", NULL), 0);
    if (a.cfg && b.cfg) {
        char out[256];
        CHECK_EQ_INT(tf_config_restart_diff(a.cfg, b.cfg, out, sizeof out), 1);
        CHECK_EQ_STR(out, "--webhook");
        CHECK_EQ_INT(tf_config_restart_diff(a.cfg, a.cfg, out, sizeof out), 0);
    }
    tf_config_unref(a.cfg);
    tf_config_unref(b.cfg);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    TF_TEST_RUN(test_flags);
    TF_TEST_RUN(test_env_and_json);
    TF_TEST_RUN(test_errors);
    TF_TEST_RUN(test_restart);
    cleanup();
    return TF_TEST_DONE();
}
