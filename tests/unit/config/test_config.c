/*
 * test_config.c: unit tests of the config module: defaults, every option type through flags,
 * TLSFRONT_* variables and the JSON file, precedence flag > env > file > default (scalars
 * and lists), and the value parsers (durations, listen, backend, route, patterns, ALPN).
 * Errors, actions and refcounting: test_config_errors.c. Writes only temp files of its own.
 */
#include "config_test_util.h"

static void test_defaults(void)
{
    struct tf_config_result res;
    struct tf_config *c;
    char buf[64];

    CHECK_EQ_INT(load(&res, NULL, "--backend", "app:80", NULL), 0);
    c = res.cfg;
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_EQ_INT(c->n_listen, 1);
    CHECK(c->listen[0].any);
    CHECK_EQ_INT(c->listen[0].addr.ss_family, AF_INET6);
    CHECK_EQ_STR(addr_text(&c->listen[0].addr, buf, sizeof(buf)), "::");
    CHECK_EQ_INT(port_of(&c->listen[0].addr), 8443);
    CHECK_EQ_STR(c->listen[0].spec, ":8443");
    CHECK(!c->listen[0].proxy);
    CHECK_EQ_INT(c->backlog, 511);
    CHECK_EQ_INT(c->workers, TF_MIN(TF_MAX(sysconf(_SC_NPROCESSORS_ONLN), 1), 1024));
    CHECK(c->certs_dir == NULL && c->default_cert == NULL);
    CHECK_EQ_STR(c->backend->host, "app");
    CHECK_EQ_INT(c->backend->port, 80);
    CHECK_EQ_INT(c->backend->proxy, TF_PROXY_NONE);
    CHECK_EQ_INT(c->backend->mode, TF_MODE_TCP);
    CHECK_EQ_INT(c->n_routes, 0);
    CHECK_EQ_INT(c->n_alpn, 1);
    CHECK_EQ_STR(c->alpn[0], "http/1.1");
    CHECK_EQ_INT(c->handshake_timeout_ms, 10000);
    CHECK_EQ_INT(c->idle_timeout_ms, 300000);
    CHECK_EQ_INT(c->connect_timeout_ms, 5000);
    CHECK_EQ_INT(c->grace_ms, 30000);
    CHECK_EQ_INT(c->max_connections, 10000);
    CHECK_EQ_INT(c->ticket_rotate_s, 3600);
    CHECK(c->tls12);
    CHECK(!c->log_json);
    CHECK_EQ_INT(c->log_level, TF_LOG_INFO);
    CHECK(c->admin == NULL);
    CHECK_EQ_STR(c->storage, "/var/lib/tlsfront");
    CHECK_EQ_STR(c->acme_directory, "https://acme-v02.api.letsencrypt.org/directory");
    CHECK(!c->acme_email && !c->acme_ca && !c->acme_eab_kid && !c->acme_eab_hmac);
    CHECK(!c->acme_profile && !c->ask && !c->redirect_http);
    CHECK_EQ_INT(c->acme_account_key, TF_KEY_EC256);
    CHECK_EQ_INT(c->acme_cert_key, TF_KEY_EC256);
    CHECK_EQ_INT(c->acme_timeout_s, 300);
    CHECK_EQ_INT(c->n_allow, 0);
    CHECK_EQ_INT(c->ask_timeout_ms, 3000);
    CHECK_EQ_INT(c->ask_cache_s, 300);
    CHECK_EQ_INT(c->hold_timeout_ms, 20000);
    CHECK(c->issue_rate == 10.0);
    CHECK_EQ_INT(c->issue_burst, 20);
    CHECK_EQ_INT(c->max_orders, 4);
    CHECK_EQ_INT(c->max_held, 1000);
    CHECK_EQ_INT(c->max_held_per_ip, 20);
    CHECK_EQ_INT(c->redirect_max_per_ip, 16);
    CHECK_EQ_INT(c->max_names, 10000);
    CHECK_EQ_INT(c->backoff_base_s, 60);
    CHECK_EQ_INT(c->backoff_max_s, 86400);
    CHECK_EQ_INT(c->idle_name_days, 30);
    CHECK(!res.check_only && !res.help && !res.version);
    CHECK_EQ_INT(atomic_load(&c->ref.n), 1);
    tf_config_unref(c);
}

/* Every option set through flags, in both "--flag value" and "--flag=value" forms. */
static void test_flags(void)
{
    struct tf_config_result res;
    struct tf_config *c;
    char buf[64];
    int rc = load(
        &res, NULL, "--listen", "127.0.0.1:443", "--listen=[::1]:8443,proxy", "--backlog", "128",
        "--workers=3", "--certs", "/etc/certs", "--default-cert", "example.com",
        "--backend=10.0.0.1:8080,proxy=v2,mode=http", "--route", "A.Example.com=app1:80", "--route",
        "*.example.org=[::1]:81,alpn=h2+http/1.1", "--alpn", "h2,http/1.1", "--handshake-timeout",
        "250ms", "--idle-timeout", "2h", "--connect-timeout=3", "--grace", "0", "--ticket-rotate",
        "5m", "--max-connections", "77", "--tls-min", "1.3", "--log-format", "json", "--log-level",
        "debug", "--admin", "127.0.0.1:9100", "--storage", "/tmp/st", "--acme-directory",
        "https://127.0.0.1:14000/dir", "--acme-email", "a@b.c", "--acme-ca", "/tmp/ca.pem",
        "--acme-eab-kid", "kid1", "--acme-eab-hmac", "c2VjcmV0LWtleQ", "--acme-profile",
        "shortlived", "--acme-key-type", "rsa2048", "--cert-key-type", "rsa4096", "--acme-timeout",
        "90s", "--allow", "*.Example.NET", "--allow", "exact.example.net", "--ask",
        "http://127.0.0.1:1/ask", "--ask-timeout", "1500ms", "--ask-cache", "0", "--hold-timeout",
        "1m", "--issue-rate", "2.5", "--issue-burst", "3", "--max-orders", "2", "--max-held", "50",
        "--max-held-per-ip", "5", "--max-names", "99", "--backoff-base", "10s", "--backoff-max",
        "1h", "--idle-name-days", "7", "--redirect-http", ":8080", NULL);
    CHECK_EQ_INT(rc, 0);
    c = res.cfg;
    if (!c) {
        fprintf(stderr, "error: %s\n", res.err);
        return;
    }
    CHECK_EQ_INT(c->n_listen, 2);
    CHECK_EQ_INT(c->listen[0].addr.ss_family, AF_INET);
    CHECK_EQ_STR(addr_text(&c->listen[0].addr, buf, sizeof(buf)), "127.0.0.1");
    CHECK_EQ_INT(port_of(&c->listen[0].addr), 443);
    CHECK(!c->listen[0].any && !c->listen[0].proxy);
    CHECK_EQ_STR(addr_text(&c->listen[1].addr, buf, sizeof(buf)), "::1");
    CHECK(c->listen[1].proxy && !c->listen[1].any);
    CHECK_EQ_INT(c->backlog, 128);
    CHECK_EQ_INT(c->workers, 3);
    CHECK_EQ_STR(c->certs_dir, "/etc/certs");
    CHECK_EQ_STR(c->default_cert, "example.com");
    CHECK_EQ_STR(c->backend->host, "10.0.0.1");
    CHECK_EQ_INT(c->backend->port, 8080);
    CHECK_EQ_INT(c->backend->proxy, TF_PROXY_V2);
    CHECK_EQ_INT(c->backend->mode, TF_MODE_HTTP);
    CHECK_EQ_INT(c->n_routes, 2);
    CHECK_EQ_STR(c->routes[0].pattern, "a.example.com");
    CHECK_EQ_STR(c->routes[0].backend.host, "app1");
    CHECK_EQ_INT(c->routes[0].n_alpn, 1);
    CHECK_EQ_STR(c->routes[0].alpn[0], "http/1.1");
    CHECK_EQ_STR(c->routes[1].pattern, "*.example.org");
    CHECK_EQ_STR(c->routes[1].backend.host, "::1");
    CHECK_EQ_INT(c->routes[1].backend.port, 81);
    CHECK_EQ_INT(c->routes[1].n_alpn, 2);
    CHECK_EQ_STR(c->routes[1].alpn[0], "h2");
    CHECK_EQ_INT(c->n_alpn, 2);
    CHECK_EQ_STR(c->alpn[1], "http/1.1");
    CHECK_EQ_INT(c->handshake_timeout_ms, 250);
    CHECK_EQ_INT(c->idle_timeout_ms, 7200000);
    CHECK_EQ_INT(c->connect_timeout_ms, 3000);
    CHECK_EQ_INT(c->grace_ms, 0);
    CHECK_EQ_INT(c->ticket_rotate_s, 300);
    CHECK_EQ_INT(c->max_connections, 77);
    CHECK(!c->tls12);
    CHECK(c->log_json);
    CHECK_EQ_INT(c->log_level, TF_LOG_DEBUG);
    CHECK_EQ_STR(c->admin, "127.0.0.1:9100");
    CHECK_EQ_INT(port_of(&c->admin_addr), 9100);
    CHECK_EQ_STR(c->storage, "/tmp/st");
    CHECK_EQ_STR(c->acme_directory, "https://127.0.0.1:14000/dir");
    CHECK_EQ_STR(c->acme_email, "a@b.c");
    CHECK_EQ_STR(c->acme_ca, "/tmp/ca.pem");
    CHECK_EQ_STR(c->acme_eab_kid, "kid1");
    CHECK_EQ_STR(c->acme_eab_hmac, "c2VjcmV0LWtleQ");
    CHECK_EQ_STR(c->acme_profile, "shortlived");
    CHECK_EQ_INT(c->acme_account_key, TF_KEY_RSA2048);
    CHECK_EQ_INT(c->acme_cert_key, TF_KEY_RSA4096);
    CHECK_EQ_INT(c->acme_timeout_s, 90);
    CHECK_EQ_INT(c->n_allow, 2);
    CHECK_EQ_STR(c->allow[0], "*.example.net");
    CHECK_EQ_STR(c->allow[1], "exact.example.net");
    CHECK_EQ_STR(c->ask, "http://127.0.0.1:1/ask");
    CHECK_EQ_INT(c->ask_timeout_ms, 1500);
    CHECK_EQ_INT(c->ask_cache_s, 0);
    CHECK_EQ_INT(c->hold_timeout_ms, 60000);
    CHECK(c->issue_rate == 2.5);
    CHECK_EQ_INT(c->issue_burst, 3);
    CHECK_EQ_INT(c->max_orders, 2);
    CHECK_EQ_INT(c->max_held, 50);
    CHECK_EQ_INT(c->max_held_per_ip, 5);
    CHECK_EQ_INT(c->max_names, 99);
    CHECK_EQ_INT(c->backoff_base_s, 10);
    CHECK_EQ_INT(c->backoff_max_s, 3600);
    CHECK_EQ_INT(c->idle_name_days, 7);
    CHECK_EQ_STR(c->redirect_http, ":8080");
    CHECK_EQ_INT(c->redirect_http_addr.ss_family, AF_INET6);
    CHECK_EQ_INT(port_of(&c->redirect_http_addr), 8080);
    tf_config_unref(c);
}

static void test_env(void)
{
    struct tf_config_result res;
    char *env[] = {"PATH=/usr/bin",
                   "TLSFRONT_BIN=/x/tlsfront",
                   "TLSFRONT_WORKERS=5",
                   "TLSFRONT_LISTEN=127.0.0.1:1 [::1]:2,proxy\t:3",
                   "TLSFRONT_ROUTE=a.example=app:1 *.b.example=app:2,mode=http",
                   "TLSFRONT_BACKEND=",
                   "TLSFRONT_HANDSHAKE_TIMEOUT=2s",
                   "TLSFRONT_LOG_LEVEL=warn",
                   "TLSFRONT_ALPN=h2,http/1.1",
                   "TLSFRONT_ISSUE_RATE=0.5",
                   "TLSFRONT_ACME_EMAIL=ops@example.com",
                   "TLSFRONT_ALLOW=x.example y.example",
                   "TLSFRONT_CHECK=yes",
                   "TLSFRONT_HELP=1",
                   "tlsfront_workers=9",
                   NULL};

    CHECK_EQ_INT(load(&res, env, NULL), 0);
    if (!res.cfg) {
        fprintf(stderr, "error: %s\n", res.err);
        return;
    }
    CHECK_EQ_INT(res.cfg->workers, 5);
    CHECK_EQ_INT(res.cfg->n_listen, 3);
    CHECK(res.cfg->listen[1].proxy);
    CHECK(res.cfg->listen[2].any);
    CHECK_EQ_INT(port_of(&res.cfg->listen[2].addr), 3);
    CHECK_EQ_INT(res.cfg->n_routes, 2);
    CHECK_EQ_INT(res.cfg->routes[1].backend.mode, TF_MODE_HTTP);
    CHECK(res.cfg->backend == NULL); /* empty variable: ignored */
    CHECK_EQ_INT(res.cfg->handshake_timeout_ms, 2000);
    CHECK_EQ_INT(res.cfg->log_level, TF_LOG_WARN);
    CHECK_EQ_INT(res.cfg->n_alpn, 2);
    CHECK(res.cfg->issue_rate == 0.5);
    CHECK_EQ_STR(res.cfg->acme_email, "ops@example.com");
    CHECK_EQ_INT(res.cfg->n_allow, 2);
    CHECK_EQ_STR(res.cfg->allow[1], "y.example");
    /* --check and --help are flags only: their variables set nothing and are warned about,
     * as is the unknown TLSFRONT_BIN. */
    CHECK(!res.check_only);
    CHECK(!res.help);
    CHECK_EQ_INT(res.n_warn, 3);
    tf_config_unref(res.cfg);
}

static void test_json(void)
{
    struct tf_config_result res;
    struct tf_config *c;
    const char *path =
        write_tmp("{\n"
                  "  \"listen\": [\"127.0.0.1:8443\", \":9443,proxy\"],\n"
                  "  \"workers\": 2, \"backlog\": 64,\n"
                  "  \"backend\": \"app:8080,mode=http\",\n"
                  "  \"routes\": [\"x.example=app:1\",\n"
                  "             {\"pattern\": \"*.Y.example\", \"backend\": \"[::1]:2\",\n"
                  "              \"alpn\": [\"h2\", \"http/1.1\"], \"proxy_protocol\": \"v1\",\n"
                  "              \"mode\": \"http\", \"connect\": \"on\"}],\n"
                  "  \"alpn\": [\"h2\"],\n"
                  "  \"handshake_timeout\": \"1500ms\", \"idle_timeout\": 60, \"grace\": 0.25,\n"
                  "  \"tls_min\": 1.3, \"log_format\": \"json\", \"issue_rate\": 30,\n"
                  "  \"acme_email\": null, \"allow\": [\"*.z.example\"], \"idle_name_days\": 3,\n"
                  "  \"admin\": \"[::1]:9100\"\n"
                  "}\n");

    CHECK_EQ_INT(load(&res, NULL, "-c", path, NULL), 0);
    c = res.cfg;
    if (!c) {
        fprintf(stderr, "error: %s\n", res.err);
        return;
    }
    CHECK_EQ_INT(c->n_listen, 2);
    CHECK(c->listen[1].any && c->listen[1].proxy);
    CHECK_EQ_INT(c->workers, 2);
    CHECK_EQ_INT(c->backlog, 64);
    CHECK_EQ_INT(c->backend->mode, TF_MODE_HTTP);
    CHECK_EQ_INT(c->n_routes, 2);
    CHECK_EQ_STR(c->routes[0].pattern, "x.example");
    CHECK_EQ_STR(c->routes[1].pattern, "*.y.example");
    CHECK_EQ_STR(c->routes[1].backend.host, "::1");
    CHECK_EQ_INT(c->routes[1].backend.proxy, TF_PROXY_V1);
    CHECK_EQ_INT(c->routes[1].backend.mode, TF_MODE_HTTP);
    CHECK(c->routes[1].backend.connect && !c->backend->connect && !c->routes[0].backend.connect);
    CHECK_EQ_INT(c->routes[1].n_alpn, 2);
    CHECK_EQ_STR(c->routes[1].alpn[0], "h2");
    CHECK_EQ_INT(c->n_alpn, 1);
    CHECK_EQ_STR(c->alpn[0], "h2");
    CHECK_EQ_INT(c->handshake_timeout_ms, 1500);
    CHECK_EQ_INT(c->idle_timeout_ms, 60000);
    CHECK_EQ_INT(c->grace_ms, 250);
    CHECK(!c->tls12);
    CHECK(c->log_json);
    CHECK(c->issue_rate == 30.0);
    CHECK(c->acme_email == NULL);
    CHECK_EQ_STR(c->allow[0], "*.z.example");
    CHECK_EQ_INT(c->idle_name_days, 3);
    CHECK_EQ_INT(c->admin_addr.ss_family, AF_INET6);
    tf_config_unref(c);

    /* The file can also come from TLSFRONT_CONFIG; "route" is accepted as well as "routes". */
    path = write_tmp("{\"route\": [\"r.example=app:1\"]}");
    char *var = tf_asprintf("TLSFRONT_CONFIG=%s", path);
    char *env[] = {var, NULL};
    CHECK_EQ_INT(load(&res, env, NULL), 0);
    CHECK(res.cfg && res.cfg->n_routes == 1);
    tf_config_unref(res.cfg);
    free(var);
}

static void test_precedence(void)
{
    struct tf_config_result res;
    const char *path = write_tmp("{\"workers\": 2, \"backend\": \"app:1\","
                                 " \"listen\": [\"127.0.0.1:1\", \"127.0.0.1:2\"]}");
    char *var = tf_asprintf("TLSFRONT_CONFIG=%s", path);
    char *env_both[] = {var, "TLSFRONT_WORKERS=3", "TLSFRONT_LISTEN=127.0.0.1:3", NULL};
    char *env_file[] = {var, NULL};

    /* scalar: flag > env > file > default */
    CHECK_EQ_INT(load(&res, env_both, "--workers", "4", NULL), 0);
    CHECK(res.cfg && res.cfg->workers == 4);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, env_both, NULL), 0);
    CHECK(res.cfg && res.cfg->workers == 3);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, env_file, NULL), 0);
    CHECK(res.cfg && res.cfg->workers == 2);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, NULL, "--backend", "app:1", NULL), 0);
    CHECK(res.cfg && res.cfg->backlog == 511);
    tf_config_unref(res.cfg);

    /* lists: the highest source that sets one replaces the lower ones wholesale */
    CHECK_EQ_INT(load(&res, env_both, "--listen", "127.0.0.1:4", "--listen", "127.0.0.1:5", NULL),
                 0);
    CHECK(res.cfg && res.cfg->n_listen == 2 && port_of(&res.cfg->listen[0].addr) == 4 &&
          port_of(&res.cfg->listen[1].addr) == 5);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, env_both, NULL), 0);
    CHECK(res.cfg && res.cfg->n_listen == 1 && port_of(&res.cfg->listen[0].addr) == 3);
    tf_config_unref(res.cfg);
    CHECK_EQ_INT(load(&res, env_file, NULL), 0);
    CHECK(res.cfg && res.cfg->n_listen == 2 && port_of(&res.cfg->listen[1].addr) == 2);
    tf_config_unref(res.cfg);

    /* an explicit "" unsets a lower source's optional value */
    CHECK_EQ_INT(load(&res, env_file, "--backend", "", "--route", "a.example=app:1", NULL), 0);
    CHECK(res.cfg && res.cfg->backend == NULL && res.cfg->n_routes == 1);
    tf_config_unref(res.cfg);
    free(var);
}

static void test_durations(void)
{
    char err[256];
    uint64_t ms = 0;
    const uint64_t max = 4294967295u;

    CHECK(tf_config_parse_duration("250ms", 0, max, false, &ms, err, sizeof(err)) == 0 &&
          ms == 250);
    CHECK(tf_config_parse_duration("10s", 0, max, false, &ms, err, sizeof(err)) == 0 &&
          ms == 10000);
    CHECK(tf_config_parse_duration("5m", 0, max, false, &ms, err, sizeof(err)) == 0 &&
          ms == 300000);
    CHECK(tf_config_parse_duration("2h", 0, max, false, &ms, err, sizeof(err)) == 0 &&
          ms == 7200000);
    CHECK(tf_config_parse_duration("1d", 0, max, false, &ms, err, sizeof(err)) == 0 &&
          ms == 86400000);
    CHECK(tf_config_parse_duration("7", 0, max, false, &ms, err, sizeof(err)) == 0 && ms == 7000);
    CHECK(tf_config_parse_duration("0", 0, max, false, &ms, err, sizeof(err)) == 0 && ms == 0);
    const char *bad[] = {"", "10x", "1.5s", "-1", "ms", " 5", "5 ", "5S", "99999999999999999999"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(tf_config_parse_duration(bad[i], 0, max, false, &ms, err, sizeof(err)),
                     TF_EINVAL);
    CHECK(tf_config_parse_duration("50d", 0, max, false, &ms, err, sizeof(err)) == TF_EINVAL &&
          CONTAINS(err, "out of range"));
    CHECK(tf_config_parse_duration("1500ms", 0, max, true, &ms, err, sizeof(err)) == TF_EINVAL &&
          CONTAINS(err, "whole seconds"));

    struct tf_config_result res;
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--ticket-rotate", "1500ms", NULL),
                   "--ticket-rotate: expected whole seconds"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--idle-timeout", "0", NULL),
                   "--idle-timeout: duration \"0\" out of range"));
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--hold-timeout", "soon", NULL),
                   "--hold-timeout: expected a duration"));
}

static void test_listen_forms(void)
{
    struct tf_listen l;
    char err[256], buf[64];

    CHECK_EQ_INT(tf_config_parse_listen("127.0.0.1:443", &l, err, sizeof(err)), 0);
    CHECK(l.addr.ss_family == AF_INET && port_of(&l.addr) == 443 && !l.any && !l.proxy);
    tf_config_listen_clear(&l);
    CHECK_EQ_INT(tf_config_parse_listen("[::1]:8443", &l, err, sizeof(err)), 0);
    CHECK(l.addr.ss_family == AF_INET6 && port_of(&l.addr) == 8443 && !l.any);
    CHECK_EQ_STR(addr_text(&l.addr, buf, sizeof(buf)), "::1");
    tf_config_listen_clear(&l);
    CHECK_EQ_INT(tf_config_parse_listen(":443", &l, err, sizeof(err)), 0);
    CHECK(l.any && l.addr.ss_family == AF_INET6 && port_of(&l.addr) == 443);
    CHECK_EQ_STR(l.spec, ":443");
    tf_config_listen_clear(&l);
    CHECK_EQ_INT(tf_config_parse_listen("0.0.0.0:80,proxy", &l, err, sizeof(err)), 0);
    CHECK(l.proxy && !l.any && l.addr.ss_family == AF_INET);
    tf_config_listen_clear(&l);
    CHECK_EQ_INT(tf_config_parse_listen("127.0.0.1:0", &l, err, sizeof(err)), 0);
    tf_config_listen_clear(&l);

    const char *bad_addr[] = {"1.2.3:80", "localhost:80", "::1:80", "[::1]80",
                              "[zz]:80",  "80",           "[]:80",  "1.2.3.4"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad_addr); i++) {
        CHECK_EQ_INT(tf_config_parse_listen(bad_addr[i], &l, err, sizeof(err)), TF_EINVAL);
        CHECK(CONTAINS(err, "bad address"));
    }
    const char *bad_port[] = {"1.2.3.4:70000", "1.2.3.4:", "1.2.3.4:8x", ":-1"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad_port); i++) {
        CHECK_EQ_INT(tf_config_parse_listen(bad_port[i], &l, err, sizeof(err)), TF_EINVAL);
        CHECK(CONTAINS(err, "bad port"));
    }
    CHECK_EQ_INT(tf_config_parse_listen(":80,bogus", &l, err, sizeof(err)), TF_EINVAL);
    CHECK(CONTAINS(err, "unknown option \"bogus\""));
}

static void test_backend_parse(void)
{
    struct tf_backend b;
    char err[256];

    CHECK_EQ_INT(tf_config_parse_backend("app:8080", &b, err, sizeof(err)), 0);
    CHECK(strcmp(b.host, "app") == 0 && b.port == 8080 && b.proxy == TF_PROXY_NONE &&
          b.mode == TF_MODE_TCP);
    tf_config_backend_clear(&b);
    CHECK_EQ_INT(tf_config_parse_backend("10.0.0.1:80,proxy=v2,mode=http", &b, err, sizeof(err)),
                 0);
    CHECK(b.proxy == TF_PROXY_V2 && b.mode == TF_MODE_HTTP && !b.connect);
    tf_config_backend_clear(&b);
    CHECK_EQ_INT(tf_config_parse_backend("10.0.0.1:80,connect=on,mode=http", &b, err, sizeof(err)),
                 0);
    CHECK(b.mode == TF_MODE_HTTP && b.connect);
    tf_config_backend_clear(&b);
    CHECK_EQ_INT(tf_config_parse_backend("[::1]:9000,proxy=v1", &b, err, sizeof(err)), 0);
    CHECK(strcmp(b.host, "::1") == 0 && b.proxy == TF_PROXY_V1);
    tf_config_backend_clear(&b);
    CHECK_EQ_INT(tf_config_parse_backend("my_svc.internal:1", &b, err, sizeof(err)), 0);
    tf_config_backend_clear(&b);

    const struct {
        const char *spec, *msg;
    } bad[] = {
        {"app:99999", "bad port in \"app:99999\""},
        {"app:0", "bad port"},
        {"app", "expected HOST:PORT"},
        {"::1:80", "expected HOST:PORT"},
        {"bad host!:80", "bad host"},
        {"1.2.3:80", "bad host"},
        {":80", "bad host"},
        {"app:80,proxy=v3", "bad option \"proxy=v3\""},
        {"app:80,alpn=h2", "bad option \"alpn=h2\""},
        {"app:80,foo", "bad option \"foo\""},
        {"app:80,connect=yes,mode=http", "bad option \"connect=yes\""},
        {"app:80,connect=on", "connect=on needs mode=http in \"app:80,connect=on\""},
        {"app:80,mode=tcp,connect=on", "connect=on needs mode=http"},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(tf_config_parse_backend(bad[i].spec, &b, err, sizeof(err)), TF_EINVAL);
        if (!CONTAINS(err, bad[i].msg))
            fprintf(stderr, "backend \"%s\": got \"%s\"\n", bad[i].spec, err);
        CHECK(CONTAINS(err, bad[i].msg));
    }
}

static void test_routes_and_patterns(void)
{
    struct tf_route r;
    char err[256], *p = NULL;

    CHECK_EQ_INT(tf_config_parse_route("Example.COM=app:80", &r, err, sizeof(err)), 0);
    CHECK_EQ_STR(r.pattern, "example.com");
    CHECK(r.n_alpn == 1 && strcmp(r.alpn[0], "http/1.1") == 0);
    tf_config_route_clear(&r);
    CHECK_EQ_INT(tf_config_parse_route("*.example.com=app:80,alpn=h2+http/1.1,mode=http", &r, err,
                                       sizeof(err)),
                 0);
    CHECK(r.n_alpn == 2 && strcmp(r.alpn[1], "http/1.1") == 0 && r.backend.mode == TF_MODE_HTTP);
    tf_config_route_clear(&r);

    const char *good[] = {"localhost", "a-b.example", "*.com", "xn--bcher-kva.example", "1a.b"};
    for (size_t i = 0; i < TF_ARRAY_LEN(good); i++) {
        CHECK_EQ_INT(tf_config_parse_pattern(good[i], &p, err, sizeof(err)), 0);
        free(p);
        p = NULL;
    }
    char long_label[80];
    memset(long_label, 'a', 64);
    strcpy(long_label + 64, ".com");
    const char *bad[] = {"*.*.x",  "*",       "*.",     "a..b",    "-a.com",
                         "a-.com", "a.com.",  ".a.com", "1.2.3.4", "a_b.com",
                         "a*.com", "x.*.com", "",       "a b.com", long_label};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(tf_config_parse_pattern(bad[i], &p, err, sizeof(err)), TF_EINVAL);
        CHECK(CONTAINS(err, "bad pattern"));
    }

    CHECK_EQ_INT(tf_config_parse_route("example.com", &r, err, sizeof(err)), TF_EINVAL);
    CHECK(CONTAINS(err, "expected PATTERN=HOST:PORT"));
    CHECK_EQ_INT(tf_config_parse_route("a.com=app:1,alpn=1+2+3+4+5+6+7+8+9", &r, err, sizeof(err)),
                 TF_EINVAL);
    CHECK(CONTAINS(err, "too many protocols"));
    CHECK_EQ_INT(tf_config_parse_route("a.com=app:1,alpn=h2+h2", &r, err, sizeof(err)), TF_EINVAL);
    CHECK(CONTAINS(err, "duplicate protocol"));

    struct tf_config_result res;
    CHECK_EQ_STR(load_err(&res, NULL, "--route", "*.*.x=app:1", NULL),
                 "--route: bad pattern \"*.*.x\": a wildcard is only \"*.\" at the start, "
                 "for exactly one label (as *.example.com)");
    CHECK_EQ_STR(load_err(&res, NULL, "--route", "a.x=app:1", "--route", "A.X=app:2", NULL),
                 "--route: duplicate pattern \"a.x\"");
    CHECK_EQ_STR(load_err(&res, NULL, "--backend", "a:1", "--allow", "*.*.x", NULL),
                 "--allow: bad pattern \"*.*.x\": a wildcard is only \"*.\" at the start, "
                 "for exactly one label (as *.example.com)");
    CHECK(CONTAINS(load_err(&res, NULL, "--backend", "a:1", "--alpn", "h2,,x", NULL),
                   "--alpn: bad protocol list"));
}

/* One message per error class; each names the flag, variable, key or file. */
int main(void)
{
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    TF_TEST_RUN(test_defaults);
    TF_TEST_RUN(test_flags);
    TF_TEST_RUN(test_env);
    TF_TEST_RUN(test_json);
    TF_TEST_RUN(test_precedence);
    TF_TEST_RUN(test_durations);
    TF_TEST_RUN(test_listen_forms);
    TF_TEST_RUN(test_backend_parse);
    TF_TEST_RUN(test_routes_and_patterns);
    cleanup();
    return TF_TEST_DONE();
}
