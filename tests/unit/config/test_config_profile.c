/*
 * test_config_profile.c: --acme-profile-for PATTERN=PROFILE (certificate profiles per
 * name) from flags, the environment and the JSON file, and its errors.
 */
#include "tlsfront/config/config.h"
#include "tf_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int load(int argc, char **argv, char **envp, struct tf_config_result *res)
{
    memset(res, 0, sizeof *res);
    return tf_config_load(argc, argv, envp, res);
}

static void test_flags(void)
{
    char *argv[] = {"tlsfront", "--backend", "127.0.0.1:1", "--acme-profile-for",
                    "*.a.test=shortlived", "--acme-profile-for", "X.test=tlsserver", NULL};
    char *envp[] = {NULL};
    struct tf_config_result res;
    CHECK_EQ_INT(load(7, argv, envp, &res), 0);
    CHECK_EQ_INT(res.cfg->n_profiles, 2);
    CHECK_EQ_STR(res.cfg->profiles[0].pattern, "*.a.test");
    CHECK_EQ_STR(res.cfg->profiles[0].profile, "shortlived");
    CHECK_EQ_STR(res.cfg->profiles[1].pattern, "x.test"); /* lower-cased */
    CHECK_EQ_STR(res.cfg->profiles[1].profile, "tlsserver");
    tf_config_unref(res.cfg);
}

static void test_env_and_json(void)
{
    char path[512];
    const char *json = "{\"backend\":\"127.0.0.1:1\",\"acme_profile_for\":[\"j.test=fromfile\"]}";
    CHECK(tf_test_tmpfile(json, path, sizeof path) == 0);
    char *argv[] = {"tlsfront", "-c", path, NULL};
    char *envp[] = {NULL};
    struct tf_config_result res;
    CHECK_EQ_INT(load(3, argv, envp, &res), 0);
    CHECK_EQ_INT(res.cfg->n_profiles, 1);
    CHECK_EQ_STR(res.cfg->profiles[0].profile, "fromfile");
    tf_config_unref(res.cfg);
    /* The environment (a whitespace list) replaces the file's list wholesale. */
    char *envp2[] = {"TLSFRONT_ACME_PROFILE_FOR=e1.test=one *.e2.test=two", NULL};
    CHECK_EQ_INT(load(3, argv, envp2, &res), 0);
    CHECK_EQ_INT(res.cfg->n_profiles, 2);
    CHECK_EQ_STR(res.cfg->profiles[1].pattern, "*.e2.test");
    CHECK_EQ_STR(res.cfg->profiles[1].profile, "two");
    tf_config_unref(res.cfg);
    unlink(path);
}

static void test_errors(void)
{
    const char *bad[] = {"noequals", "=p", "a.test=", "*.*.a.test=p", "a.test=bad profile",
                         "a.test=semi;colon"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        char *argv[] = {"tlsfront", "--backend", "127.0.0.1:1", "--acme-profile-for",
                        (char *)bad[i], NULL};
        char *envp[] = {NULL};
        struct tf_config_result res;
        CHECK_EQ_INT(load(5, argv, envp, &res), TF_EINVAL);
        CHECK(strstr(res.err, "--acme-profile-for") != NULL);
        CHECK(res.cfg == NULL);
    }
}

int main(void)
{
    TF_TEST_RUN(test_flags);
    TF_TEST_RUN(test_env_and_json);
    TF_TEST_RUN(test_errors);
    return TF_TEST_DONE();
}
