/*
 * test_config_errors.c: unit tests of the config module's failures and actions: one message
 * per error class naming the flag/variable/key (flags and JSON), --check/--help/--version,
 * and ref/unref (leaks and double frees show up under ASan). Writes only temp files of its
 * own.
 */
#include "config_test_util.h"

static void test_errors(void)
{
    struct tf_config_result res;
    char *env_port[] = {"TLSFRONT_BACKEND=app:99999", NULL};
    char *env_missing[] = {"TLSFRONT_CONFIG=/nonexistent/tf.json", NULL};
    char expect[512];

    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--workers", "abc", NULL),
                 "--workers: expected an integer 1..1024, got \"abc\"");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--workers", "0", NULL),
                   "--workers: expected an integer 1..1024"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--workers=12x", NULL), "--workers"));
    CHECK(CONTAINS(
        load_err(&res, NULL, "--backend", "a:1", "--backlog", "99999999999999999999", NULL),
        "--backlog: expected an integer"));
    CHECK_EQ_STR(load_err(&res, env_port, NULL), "TLSFRONT_BACKEND: bad port in \"app:99999\"");
    CHECK_EQ_STR(load_err(&res, NULL, NULL), "config: no backend: set --backend or --route");
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--listen", "1.2.3:80", NULL),
                 "--listen: bad address \"1.2.3:80\"");
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--bogus", NULL),
                 "unknown flag \"--bogus\" (see --help)");
    CHECK(CONTAINS(load_err(&res, NULL, "-x", NULL), "unexpected argument \"-x\""));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "stray", NULL),
                   "unexpected argument \"stray\""));
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", NULL), "--backend: missing value");
    CHECK_EQ_STR(load_err(&res, NULL, "--check=1", NULL), "--check: takes no value");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--tls-min", "1.1", NULL),
                   "--tls-min: expected 1.2|1.3, got \"1.1\""));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--log-level", "trace", NULL),
                   "--log-level: expected debug|info|warn|error"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--acme-key-type", "ec384", NULL),
                   "--acme-key-type: expected ec256|rsa2048|rsa3072|rsa4096"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--issue-rate", "0", NULL),
                   "--issue-rate: expected a number"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--acme-directory", "ftp://x", NULL),
                   "--acme-directory: expected an http:// or https:// URL"));
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--storage", "", NULL),
                 "--storage: must not be empty");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--acme-eab-hmac", "a+b/c=", NULL),
                   "--acme-eab-hmac: expected base64url"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--acme-eab-kid", "k", NULL),
                   "--acme-eab-kid: needs --acme-eab-hmac as well"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--backoff-base", "2h", "--backoff-max",
                            "1h", NULL),
                   "--backoff-max"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--admin", "nohost:1", NULL),
                   "--admin: bad address"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--redirect-http", "[::1]:x", NULL),
                   "--redirect-http: bad port"));

    snprintf(expect, sizeof(expect), "--config: cannot read \"/nonexistent/tf.json\": %s",
             strerror(ENOENT));
    CHECK_EQ_STR(load_err(&res, NULL, "--config", "/nonexistent/tf.json", NULL), expect);
    CHECK(CONTAINS(load_err(&res, env_missing, NULL), "TLSFRONT_CONFIG: cannot read"));
}

/* Expect the file's text to fail to load with exactly path + suffix. */
static void check_json_err(const char *text, const char *suffix)
{
    struct tf_config_result res;
    const char *path = write_tmp(text);
    char *want = tf_asprintf("%s%s", path, suffix);
    const char *got = load_err(&res, NULL, "--backend", "a:1", "--config", path, NULL);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "json %s: got \"%s\"\n", suffix, got);
    CHECK_EQ_STR(got, want);
    free(want);
}

static void test_json_errors(void)
{
    check_json_err("{\n  \"workers\": 4,\n  \"backlog\" 5\n}\n", ":3:13: JSON syntax error");
    check_json_err("{\n  \"workers\": 1,\n  \"backlog\": @\n}", ":3:14: JSON syntax error");
    check_json_err("{\"workers\": 4} x", ":1:16: JSON syntax error");
    check_json_err("", ":1:1: JSON syntax error");
    check_json_err("{\"workers\": \"4\"}", ": key \"workers\": expected a number");
    check_json_err("{\"workers\": 2.5}",
                   ": key \"workers\": expected an integer 1..1024, got \"2.5\"");
    check_json_err("{\"bogus\": 1}", ": unknown key \"bogus\"");
    check_json_err("{\"handshake-timeout\": 1}", ": unknown key \"handshake-timeout\"");
    check_json_err("{\"config\": \"x\"}", ": unknown key \"config\"");
    check_json_err("{\"workers\": 2, \"workers\": 3}", ": key \"workers\": duplicate key");
    check_json_err("[1]", ": expected a JSON object");
    check_json_err("{\"listen\": \":1\"}", ": key \"listen\": expected an array");
    check_json_err("{\"listen\": [1]}", ": key \"listen\": expected an array of strings");
    check_json_err("{\"listen\": [\"1.2.3:80\"]}", ": key \"listen\": bad address \"1.2.3:80\"");
    check_json_err("{\"routes\": [{\"pattern\": \"a.x\"}]}",
                   ": key \"routes\": route object: \"pattern\" and \"backend\" are required");
    check_json_err("{\"routes\": [{\"pattern\": \"a.x\", \"backend\": \"b:1\", \"x\": 1}]}",
                   ": key \"routes\": route object: bad or unknown key \"x\"");
    check_json_err("{\"routes\": [{\"pattern\": \"a.x\", \"backend\": \"b:1\","
                   " \"proxy_protocol\": \"v9\"}]}",
                   ": key \"routes\": bad option \"proxy=v9\" in \"a.x=b:1,proxy=v9\" "
                   "(expected proxy=v1|v2, mode=tcp|http, connect=on|off, alpn=A+B)");
    check_json_err("{\"handshake_timeout\": true}",
                   ": key \"handshake_timeout\": expected a duration (seconds, or a string like "
                   "\"10s\")");
    check_json_err("{\"storage\": 5}", ": key \"storage\": expected a string");
    check_json_err("{\"alpn\": [\"h2,x\"]}",
                   ": key \"alpn\": expected an array of strings without ','");
    /* A quoted value with control bytes still makes one line (found by fuzz_config_json). */
    check_json_err("{\"backend\": \"c\\nx\\u0007\"}",
                   ": key \"backend\": expected HOST:PORT (IPv6 in brackets), got \"c?x?\"");
}

/* Run a load with stdout captured (for --help and --version); *out is a heap copy. */
static int load_captured(struct tf_config_result *res, const char *flag, char **out)
{
    char *path = tf_asprintf("%s/stdout.XXXXXX", tmpdir), buf[16384];
    int saved = dup(STDOUT_FILENO), fd = mkstemp(path), rc;
    ssize_t n;

    if (saved < 0 || fd < 0)
        abort();
    fflush(stdout);
    dup2(fd, STDOUT_FILENO);
    rc = load(res, NULL, flag, "--bogus-after-help", NULL);
    fflush(stdout);
    dup2(saved, STDOUT_FILENO);
    close(saved);
    n = pread(fd, buf, sizeof(buf) - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    *out = tf_strdup(buf);
    close(fd);
    unlink(path);
    free(path);
    return rc;
}

/* --acme-challenges: defaults follow --redirect-http, order kept, JSON arrays, and each
 * error names the option. */
static void test_challenges(void)
{
    struct tf_config_result res;
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_challenges, 1);
    CHECK_EQ_INT(res.cfg->acme_challenges[0], TF_CHAL_TLS_ALPN_01);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", "--redirect-http", ":0", NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_challenges, 2);
    CHECK_EQ_INT(res.cfg->acme_challenges[0], TF_CHAL_TLS_ALPN_01);
    CHECK_EQ_INT(res.cfg->acme_challenges[1], TF_CHAL_HTTP_01);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", "--redirect-http", ":0",
                      "--acme-challenges", "http-01,tls-alpn-01", NULL),
                 0);
    CHECK_EQ_INT(res.cfg->n_acme_challenges, 2);
    CHECK_EQ_INT(res.cfg->acme_challenges[0], TF_CHAL_HTTP_01);
    CHECK_EQ_STR(tf_chal_type_name(res.cfg->acme_challenges[1]), "tls-alpn-01");
    tf_config_unref(res.cfg);
    const char *js = write_tmp("{\"backend\": \"a:1\", \"redirect_http\": \":0\","
                               " \"acme_challenges\": [\"http-01\"]}");
    CHECK_EQ_INT(load(&res, NULL, "-c", js, NULL), 0);
    CHECK_EQ_INT(res.cfg->n_acme_challenges, 1);
    CHECK_EQ_INT(res.cfg->acme_challenges[0], TF_CHAL_HTTP_01);
    tf_config_unref(res.cfg);

    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--acme-challenges", "dns-01", NULL),
                 "--acme-challenges: expected tls-alpn-01|http-01, got \"dns-01\"");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--acme-challenges",
                            "tls-alpn-01,,http-01", NULL),
                   "--acme-challenges: expected a list of tls-alpn-01|http-01"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--acme-challenges", "", NULL),
                   "--acme-challenges: expected a list"));
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--acme-challenges",
                          "tls-alpn-01,tls-alpn-01", NULL),
                 "--acme-challenges: tls-alpn-01 is listed twice");
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--acme-challenges",
                          "tls-alpn-01,http-01", NULL),
                 "--acme-challenges: http-01 needs --redirect-http (the listener that answers "
                 "it)");
    char *env[] = {"TLSFRONT_ACME_CHALLENGES=http-01", NULL};
    CHECK(CONTAINS(load_err(&res, env, "--backend", "a:1", NULL),
                   "TLSFRONT_ACME_CHALLENGES: http-01 needs --redirect-http"));
}

static void test_actions(void)
{
    struct tf_config_result res;
    const char *u = tf_config_usage();
    char *out = NULL;
    /* Every flag of the brief, each on its own usage line. */
    const char *names = "listen backlog workers certs default-cert backend route alpn "
                        "handshake-timeout idle-timeout connect-timeout grace ticket-rotate "
                        "max-connections tls-min log-format log-level admin storage "
                        "acme-directory acme-email acme-ca acme-eab-kid acme-eab-hmac "
                        "acme-profile acme-key-type cert-key-type acme-timeout allow ask "
                        "ask-timeout ask-cache hold-timeout issue-rate issue-burst max-orders "
                        "max-held max-held-per-ip max-names backoff-base backoff-max "
                        "idle-name-days redirect-http acme-challenges config check help version";

    CHECK_EQ_INT(load(&res, NULL, "--backend", "a:1", "--check", NULL), 0);
    CHECK(res.check_only && res.cfg != NULL);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load_captured(&res, "--help", &out), 0);
    CHECK(res.help && res.cfg == NULL && !res.version);
    CHECK_EQ_STR(out, u);
    free(out);
    CHECK_EQ_INT(load_captured(&res, "-h", &out), 0);
    CHECK(res.help && res.cfg == NULL);
    free(out);
    CHECK_EQ_INT(load_captured(&res, "--version", &out), 0);
    CHECK(res.version && res.cfg == NULL && !res.help);
    CHECK_EQ_STR(out, "tlsfront " TLSFRONT_VERSION "\n");
    free(out);
    for (const char *p = names; *p;) {
        size_t n = strcspn(p, " ");
        char *line = tf_asprintf("\n  --%.*s", (int)n, p);
        char *sp = tf_asprintf("%s ", line), *nl = tf_asprintf("%s\n", line);
        if (!CONTAINS(u, sp) && !CONTAINS(u, nl))
            fprintf(stderr, "usage lacks --%.*s\n", (int)n, p);
        CHECK(CONTAINS(u, sp) || CONTAINS(u, nl));
        free(line);
        free(sp);
        free(nl);
        p += n + (p[n] == ' ');
    }
    CHECK(CONTAINS(u, "--handshake-timeout DUR\n        TLS handshake time limit (default 10s)"));
    CHECK(CONTAINS(u, "TLSFRONT_"));
}

static void test_refcount(void)
{
    struct tf_config_result res;
    CHECK_EQ_INT(load(&res, NULL, "--route", "a.example=app:1,alpn=h2", "--allow", "b.example",
                      "--admin", ":9", "--acme-email", "x@y", NULL),
                 0);
    if (!res.cfg)
        return;
    tf_config_ref(res.cfg);
    CHECK_EQ_INT(atomic_load(&res.cfg->ref.n), 2);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(atomic_load(&res.cfg->ref.n), 1);
    tf_config_unref(res.cfg);
    tf_config_unref(NULL);
}

int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    TF_TEST_RUN(test_errors);
    TF_TEST_RUN(test_json_errors);
    TF_TEST_RUN(test_actions);
    TF_TEST_RUN(test_challenges);
    TF_TEST_RUN(test_refcount);
    cleanup();
    return TF_TEST_DONE();
}
