/*
 * test_config_cas.c: several CAs: --acme-directory repeated with its per-CA options
 * (",ca=FILE", ",eab-kid=KID,eab-hmac=KEY") from flags, the environment and the JSON file (a
 * string or an array), the plain --acme-ca and --acme-eab-* going to the first CA, what a
 * reload compares, and one message per bad combination. Writes only temp files of its own.
 */
#include "config_test_util.h"

static void test_default_and_one(void)
{
    struct tf_config_result res;
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_cas, 1);
    CHECK_EQ_STR(res.cfg->acme_cas[0].directory,
                 "https://acme-v02.api.letsencrypt.org/directory");
    CHECK_EQ_STR(res.cfg->acme_directory, res.cfg->acme_cas[0].directory);
    CHECK(res.cfg->acme_cas[0].ca == NULL && res.cfg->acme_cas[0].eab_kid == NULL);
    tf_config_unref(res.cfg);

    /* One directory with the plain flags: they are its own (as before several CAs). */
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", "--acme-directory", "https://one/dir",
                      "--acme-ca", "/etc/one.pem", "--acme-eab-kid", "kid1", "--acme-eab-hmac",
                      "c2VjcmV0", NULL),
                 0);
    CHECK_EQ_INT(res.cfg->n_acme_cas, 1);
    CHECK_EQ_STR(res.cfg->acme_cas[0].ca, "/etc/one.pem");
    CHECK_EQ_STR(res.cfg->acme_cas[0].eab_kid, "kid1");
    CHECK_EQ_STR(res.cfg->acme_cas[0].eab_hmac, "c2VjcmV0");
    CHECK_EQ_STR(res.cfg->acme_directory, "https://one/dir");
    tf_config_unref(res.cfg);
}

static void test_several_flags(void)
{
    struct tf_config_result res;
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", "--acme-ca", "/first.pem",
                      "--acme-directory", "https://one/dir", "--acme-directory",
                      "https://two:8443/dir,ca=/two.pem,eab-kid=k2,eab-hmac=aGk", "--acme-directory",
                      "http://three/dir,eab-hmac=eA,eab-kid=k3", NULL),
                 0);
    struct tf_config *c = res.cfg;
    CHECK_EQ_INT(c->n_acme_cas, 3);
    CHECK_EQ_STR(c->acme_cas[0].directory, "https://one/dir");
    CHECK_EQ_STR(c->acme_cas[0].ca, "/first.pem"); /* the plain flag is the first CA's */
    CHECK(c->acme_cas[0].eab_kid == NULL);
    CHECK_EQ_STR(c->acme_cas[1].directory, "https://two:8443/dir");
    CHECK_EQ_STR(c->acme_cas[1].ca, "/two.pem");
    CHECK_EQ_STR(c->acme_cas[1].eab_kid, "k2");
    CHECK_EQ_STR(c->acme_cas[1].eab_hmac, "aGk");
    CHECK_EQ_STR(c->acme_cas[2].directory, "http://three/dir");
    CHECK(c->acme_cas[2].ca == NULL);
    CHECK_EQ_STR(c->acme_cas[2].eab_kid, "k3");
    CHECK_EQ_STR(c->acme_directory, "https://one/dir");

    /* A reload that reorders, drops or changes a CA's option needs a restart. */
    struct tf_config_result res2;
    char out[200];
    CHECK_EQ_INT(load(&res2, NULL, "--backend", "a:1", "--acme-ca", "/first.pem",
                      "--acme-directory", "https://one/dir", "--acme-directory",
                      "https://two:8443/dir,ca=/two.pem,eab-kid=k2,eab-hmac=aGk", "--acme-directory",
                      "http://three/dir,eab-hmac=eA,eab-kid=k3", NULL),
                 0);
    CHECK_EQ_INT(tf_config_restart_diff(c, res2.cfg, out, sizeof out), 0);
    tf_config_unref(res2.cfg);
    CHECK_EQ_INT(load(&res2, NULL, "--backend", "a:1", "--acme-ca", "/first.pem",
                      "--acme-directory", "https://one/dir", "--acme-directory",
                      "https://two:8443/dir,ca=/other.pem,eab-kid=k2,eab-hmac=aGk",
                      "--acme-directory", "http://three/dir,eab-hmac=eA,eab-kid=k3", NULL),
                 0);
    CHECK_EQ_INT(tf_config_restart_diff(c, res2.cfg, out, sizeof out), 1);
    CHECK_EQ_STR(out, "--acme-directory");
    tf_config_unref(res2.cfg);
    tf_config_unref(c);
}

static void test_env_and_json(void)
{
    struct tf_config_result res;
    char *env[] = {"TLSFRONT_ACME_DIRECTORY=https://e1/dir,ca=/e1.pem https://e2/dir", NULL};
    CHECK_EQ_INT(load(&res, env, "--backend", "a:1", NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_cas, 2);
    CHECK_EQ_STR(res.cfg->acme_cas[0].ca, "/e1.pem");
    CHECK_EQ_STR(res.cfg->acme_cas[1].directory, "https://e2/dir");
    tf_config_unref(res.cfg);

    /* JSON: an array, or one string as before; the flags replace the file's list. */
    const char *arr = write_tmp("{\"backend\": \"a:1\", \"acme_directory\": "
                                "[\"https://j1/dir\", \"https://j2/dir,ca=/j2.pem\"]}");
    CHECK_EQ_INT(load(&res, NULL, "-c", arr, NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_cas, 2);
    CHECK_EQ_STR(res.cfg->acme_cas[1].ca, "/j2.pem");
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, NULL, "-c", arr, "--acme-directory", "https://f/dir", NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_cas, 1);
    CHECK_EQ_STR(res.cfg->acme_directory, "https://f/dir");
    tf_config_unref(res.cfg);
    const char *one = write_tmp("{\"backend\": \"a:1\", \"acme_directory\": \"https://s/dir\"}");
    CHECK_EQ_INT(load(&res, NULL, "-c", one, NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_cas, 1);
    CHECK_EQ_STR(res.cfg->acme_directory, "https://s/dir");
    tf_config_unref(res.cfg);
}

static void test_errors(void)
{
    struct tf_config_result res;
    static const struct {
        const char *val, *msg;
    } bad[] = {
        {"ftp://x", "--acme-directory: expected an http:// or https:// URL, got \"ftp://x\""},
        {"https://a/dir,bogus=1",
         "--acme-directory: unknown option \"bogus\" (expected ca=, eab-kid= or eab-hmac=)"},
        {"https://a/dir,ca=", "--acme-directory: \"ca=\" needs a value"},
        {"https://a/dir,ca", "--acme-directory: \"ca=\" needs a value"},
        {"https://a/dir,ca=/x,ca=/y", "--acme-directory: \"ca=\" given twice"},
        {"https://a/dir,eab-kid=k",
         "--acme-directory: eab-kid= needs eab-hmac= as well (the two go together)"},
        {"https://a/dir,eab-hmac=aGk",
         "--acme-directory: eab-hmac= needs eab-kid= as well (the two go together)"},
        {"https://a/dir,eab-kid=k,eab-hmac=a+b=",
         "--acme-directory: eab-hmac: expected base64url (A-Z a-z 0-9 - _, no padding)"},
        {"https://a/dir,", "--acme-directory: unknown option \"\""},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        const char *err = load_err(&res, NULL, "--backend", "a:1", "--acme-directory", bad[i].val,
                                   NULL);
        if (!CONTAINS(err, bad[i].msg))
            fprintf(stderr, "  %s -> %s\n", bad[i].val, err);
        CHECK(CONTAINS(err, bad[i].msg));
    }
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--acme-directory", "https://a/dir",
                          "--acme-directory", "https://a/dir,ca=/x", NULL),
                 "--acme-directory: \"https://a/dir\" listed twice");
    /* The plain flags and the first CA's own option: one or the other. */
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--acme-ca", "/p.pem",
                          "--acme-directory", "https://a/dir,ca=/x", NULL),
                 "--acme-ca: the first --acme-directory has its own ca=; give one of the two");
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--acme-eab-kid", "k",
                          "--acme-eab-hmac", "aGk", "--acme-directory",
                          "https://a/dir,eab-kid=k,eab-hmac=aGk", NULL),
                 "--acme-eab-kid: the first --acme-directory has its own eab-kid=; give one of "
                 "the two");
    const char *empty = write_tmp("{\"backend\": \"a:1\", \"acme_directory\": []}");
    CHECK_EQ_STR(load_err(&res, NULL, "-c", empty, NULL), "--acme-directory: none given");
    const char *num = write_tmp("{\"backend\": \"a:1\", \"acme_directory\": 5}");
    CHECK(CONTAINS(load_err(&res, NULL, "-c", num, NULL), "key \"acme_directory\": expected an "
                                                           "array"));
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    TF_TEST_RUN(test_default_and_one);
    TF_TEST_RUN(test_several_flags);
    TF_TEST_RUN(test_env_and_json);
    TF_TEST_RUN(test_errors);
    cleanup();
    return TF_TEST_DONE();
}
