/*
 * test_config_hints.c: the config loader's safety rails and helpful errors. Unknown
 * TLSFRONT_* variables load fine but leave a warning with a did-you-mean; flag-only options
 * (TLSFRONT_CHECK) set nothing from the environment; common slips get a message that says
 * what to type instead (a bare port, a scheme on a backend, a host name where an address is
 * needed, each kind of bad pattern); cross-option errors name the flag, variable or file key
 * that set the value. Writes only temp files of its own.
 */
#include "tlsfront/config/config.h"
#include "tf_test.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONTAINS(hay, needle) (strstr((hay), (needle)) != NULL)

/* Load with env (may be NULL) and the flags that follow, NULL-terminated. */
static int load(struct tf_config_result *res, char **env, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    argv[argc++] = "tlsfront";
    va_start(ap, env);
    for (char *a = va_arg(ap, char *); a && argc < 31; a = va_arg(ap, char *))
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    return tf_config_load(argc, argv, env, res);
}

/* The one error line for a bad value of flag (with a good backend unless flag is it). */
static const char *err_of(struct tf_config_result *res, const char *flag, const char *val)
{
    int rc = strcmp(flag, "--backend") == 0
                 ? load(res, NULL, flag, val, NULL)
                 : load(res, NULL, "--backend", "app:1", flag, val, NULL);
    CHECK_EQ_INT(rc, TF_EINVAL);
    CHECK(res->cfg == NULL);
    return res->err;
}

static void test_unknown_env(void)
{
    struct tf_config_result res;
    char *env[] = {"TLSFRONT_ROUTES=a.example=app:1",
                   "TLSFRONT_BACKEND=app:1",
                   "TLSFRONT_ALOW=*.x.example",
                   "TLSFRONT_SOMETHING_ELSE_ENTIRELY=1",
                   "TLSFRONT_TEST_CLOCK_OFFSET=5",
                   "TLSFRONT_CONFIG=",
                   "tlsfront_routes=x",
                   "OTHER_ROUTES=x",
                   NULL};
    CHECK_EQ_INT(load(&res, env, NULL), 0);
    CHECK(res.cfg != NULL);
    CHECK_EQ_INT(res.cfg->n_routes, 0); /* the misspelt variable set nothing */
    CHECK_EQ_INT(res.cfg->n_allow, 0);
    CHECK_EQ_INT(res.n_warn, 3);
    CHECK_EQ_STR(res.warn[0],
                 "TLSFRONT_ROUTES: unknown variable, ignored (did you mean TLSFRONT_ROUTE?)");
    CHECK_EQ_STR(res.warn[1],
                 "TLSFRONT_ALOW: unknown variable, ignored (did you mean TLSFRONT_ALLOW?)");
    CHECK_EQ_STR(res.warn[2], "TLSFRONT_SOMETHING_ELSE_ENTIRELY: unknown variable, ignored "
                              "(see --help)");
    tf_config_unref(res.cfg);

    /* A clean environment: no warnings. */
    char *clean[] = {"TLSFRONT_BACKEND=app:1", "TLSFRONT_ACME_EMAIL=a@b.example", NULL};
    CHECK_EQ_INT(load(&res, clean, NULL), 0);
    CHECK_EQ_INT(res.n_warn, 0);
    tf_config_unref(res.cfg);

    /* More than the cap: the last line says some were dropped. */
    char *many[] = {"TLSFRONT_A1=1", "TLSFRONT_A2=1", "TLSFRONT_A3=1", "TLSFRONT_A4=1",
                    "TLSFRONT_A5=1", "TLSFRONT_A6=1", "TLSFRONT_A7=1", "TLSFRONT_A8=1",
                    "TLSFRONT_A9=1", NULL};
    CHECK_EQ_INT(load(&res, many, "--backend", "app:1", NULL), 0);
    CHECK_EQ_INT(res.n_warn, TF_CONFIG_MAX_WARN);
    CHECK(CONTAINS(res.warn[TF_CONFIG_MAX_WARN - 1], "dropped"));
    tf_config_unref(res.cfg);
}

/* A TLSFRONT_CHECK left in an env file must not turn the service into a config check that
 * exits 0 at once; nor may any other value of it fail the load. */
static void test_check_not_env(void)
{
    struct tf_config_result res;
    const char *vals[] = {"TLSFRONT_CHECK=1", "TLSFRONT_CHECK=maybe", "TLSFRONT_CHECK="};
    for (size_t i = 0; i < TF_ARRAY_LEN(vals); i++) {
        char *env[] = {(char *)vals[i], NULL};
        CHECK_EQ_INT(load(&res, env, "--backend", "app:1", NULL), 0);
        CHECK(res.cfg != NULL);
        CHECK(!res.check_only);
        CHECK_EQ_INT(res.n_warn, 1);
        CHECK_EQ_STR(res.warn[0],
                     "TLSFRONT_CHECK: --check is a command-line flag only; variable ignored");
        tf_config_unref(res.cfg);
    }
    CHECK_EQ_INT(load(&res, NULL, "--backend", "app:1", "--check", NULL), 0);
    CHECK(res.check_only);
    tf_config_unref(res.cfg);
}

static void test_address_hints(void)
{
    struct tf_config_result res;
    CHECK_EQ_STR(err_of(&res, "--listen", "443"),
                 "--listen: bad address \"443\" (did you mean \":443\"?)");
    CHECK_EQ_STR(err_of(&res, "--listen", "*:443"),
                 "--listen: bad address \"*:443\" (did you mean \":443\"? \":PORT\" is every "
                 "address)");
    CHECK_EQ_STR(err_of(&res, "--listen", "localhost:8443"),
                 "--listen: bad address \"localhost:8443\": an IP address is needed, not a host "
                 "name (\"127.0.0.1:8443\" for loopback, \":8443\" for every address)");
    CHECK_EQ_STR(err_of(&res, "--admin", "example.com:9000"),
                 "--admin: bad address \"example.com:9000\": an IP address is needed, not a host "
                 "name (\":9000\" for every address)");
    CHECK_EQ_STR(err_of(&res, "--redirect-http", "80"),
                 "--redirect-http: bad address \"80\" (did you mean \":80\"?)");
    /* No made-up advice where none fits. */
    CHECK_EQ_STR(err_of(&res, "--listen", "1.2.3:80"), "--listen: bad address \"1.2.3:80\"");
    CHECK_EQ_STR(err_of(&res, "--listen", "123456"), "--listen: bad address \"123456\"");
}

static void test_backend_scheme(void)
{
    struct tf_config_result res;
    CHECK_EQ_STR(err_of(&res, "--backend", "http://app:8080"),
                 "--backend: \"http://app:8080\": drop the scheme, a backend is HOST:PORT spoken "
                 "to in plaintext (did you mean \"app:8080\"?)");
    CHECK_EQ_STR(err_of(&res, "--backend", "https://10.0.0.5:8443/api,mode=http"),
                 "--backend: \"https://10.0.0.5:8443/api,mode=http\": drop the scheme, a backend "
                 "is HOST:PORT spoken to in plaintext (did you mean \"10.0.0.5:8443\"?)");
    CHECK(CONTAINS(err_of(&res, "--route", "a.example=http://app:1"),
                   "--route: \"a.example=http://app:1\": drop the scheme"));
    CHECK(CONTAINS(err_of(&res, "--route", "a.example=http://app:1"), "did you mean \"app:1\"?"));
}

static void test_pattern_reasons(void)
{
    struct tf_config_result res;
    static const struct {
        const char *pattern, *why;
    } cases[] = {
        {"*.*.x.example", "a wildcard is only \"*.\" at the start, for exactly one label"},
        {"a.*.example", "a wildcard is only \"*.\" at the start"},
        {"*", "a wildcard is only \"*.\" at the start"},
        {"a*.example", "a wildcard is only \"*.\" at the start"},
        {"https://a.example", "a DNS name, not a URL"},
        {"a.example:443", "a DNS name, without a port"},
        {"a.example.", "drop the trailing dot"},
        {"a..example", "empty label"},
        {".a.example", "empty label"},
        {"a_b.example", "'_' is not allowed (letters, digits, '-' and '.')"},
        {"-a.example", "label \"-a\" starts or ends with '-'"},
        {"a.example-", "label \"example-\" starts or ends with '-'"},
        {"10.0.0.1", "the last label is all digits"},
        {"", "empty"},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(cases); i++) {
        const char *e = err_of(&res, "--allow", cases[i].pattern);
        if (!CONTAINS(e, cases[i].why))
            fprintf(stderr, "pattern \"%s\": %s\n", cases[i].pattern, e);
        CHECK(strncmp(e, "--allow: bad pattern \"", 22) == 0);
        CHECK(CONTAINS(e, cases[i].why));
    }
    char long_label[80];
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".com");
    CHECK(CONTAINS(err_of(&res, "--allow", long_label), "is longer than 63 characters"));
    CHECK(CONTAINS(err_of(&res, "--route", "*.*.x=app:1"), "--route: bad pattern \"*.*.x\": "));
}

/* Cross-option errors name where each value came from: flag, variable or file key. */
static void test_cross_option_source(void)
{
    struct tf_config_result res;
    char path[512], expect[700];
    CHECK_EQ_INT(load(&res, NULL, "--backend", "app:1", "--backoff-base", "2h", "--backoff-max",
                      "1h", NULL),
                 TF_EINVAL);
    CHECK_EQ_STR(res.err, "--backoff-max: 3600 s is shorter than --backoff-base (7200 s)");

    char *env[] = {"TLSFRONT_BACKOFF_MAX=30s", NULL};
    CHECK_EQ_INT(load(&res, env, "--backend", "app:1", NULL), TF_EINVAL);
    CHECK_EQ_STR(res.err,
                 "TLSFRONT_BACKOFF_MAX: 30 s is shorter than --backoff-base (default) (60 s)");

    CHECK(tf_test_tmpfile("{\"backend\": \"app:1\", \"acme_eab_hmac\": \"c2VjcmV0\"}", path,
                          sizeof(path)) == 0);
    CHECK_EQ_INT(load(&res, NULL, "-c", path, NULL), TF_EINVAL);
    snprintf(expect, sizeof(expect),
             "%s: key \"acme_eab_hmac\": needs --acme-eab-kid as well (the two go together)",
             path);
    CHECK_EQ_STR(res.err, expect);
    unlink(path);

    CHECK_EQ_INT(load(&res, NULL, "--backend", "app:1", "--acme-eab-kid", "k", NULL), TF_EINVAL);
    CHECK_EQ_STR(res.err, "--acme-eab-kid: needs --acme-eab-hmac as well (the two go together)");
}

int main(void)
{
    TF_TEST_RUN(test_unknown_env);
    TF_TEST_RUN(test_check_not_env);
    TF_TEST_RUN(test_address_hints);
    TF_TEST_RUN(test_backend_scheme);
    TF_TEST_RUN(test_pattern_reasons);
    TF_TEST_RUN(test_cross_option_source);
    return TF_TEST_DONE();
}
