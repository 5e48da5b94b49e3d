/*
 * revoke_cmd.c: `tlsfront revoke [OPTIONS] NAME [--reason REASON]`: revokes the certificate
 * the ACME storage holds for NAME (RFC 8555 §7.6) and removes it from the storage, so that
 * the next start orders a new one. OPTIONS are the server's (--storage, --acme-directory,
 * --acme-ca, --config, TLSFRONT_* ...), read by the one config loader. The request is signed
 * with the account key when the storage holds one for the CA (kid), else with the
 * certificate's own key (jwk). Runs before any server, on a loop of its own (the storage
 * and the ACME client are asynchronous). A running tlsfront keeps serving its copy from
 * memory: for that one, use the admin API's POST /certs/NAME/revoke. Exit codes: 0 revoked,
 * 1 refused or failed, 2 bad usage.
 */
#include "revoke_cmd_int.h"
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/name.h"
#include "tlsfront/config/config.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/store/storage_redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct revoke_run {
    uv_loop_t loop;
    struct tf_storage *st;
    struct tf_httpc *http;
    struct tf_acme *acme;
    const char *name, *reason_name;
    int reason;
    struct tf_cert *cert;
    bool with_cert_key;
    int rc; /* exit code */
};

static int usage(const char *msg)
{
    fprintf(stderr,
            "tlsfront revoke: %s (usage: tlsfront revoke [--storage DIR|redis://...] "
            "[--acme-directory URL] [--acme-ca FILE] [OPTIONS] NAME [--reason %s])\n",
            msg, tf_acme_revoke_reasons_text());
    return 2;
}

static void fail(struct revoke_run *r, const char *what, const char *why)
{
    fprintf(stderr, "tlsfront revoke: %s: %s: %s\n", r->name, what, why);
    r->rc = 1;
}

static void on_forgotten(int err, void *arg)
{
    struct revoke_run *r = arg;
    if (err && err != UV_ENOENT) {
        fail(r, "revoked, but not removed from the storage", tf_strerror(err));
        return;
    }
    printf("tlsfront revoke: %s: serial %s revoked (%s, signed with the %s); removed from the "
           "storage\n",
           r->name, r->cert->serial ? r->cert->serial : "?", r->reason_name,
           r->with_cert_key ? "certificate's key" : "account key");
    r->rc = 0;
}

static void on_revoked(int err, const char *reason, void *arg)
{
    struct revoke_run *r = arg;
    if (err) {
        fail(r, "not revoked", reason ? reason : tf_strerror(err));
        return;
    }
    int rc = tf_acme_store_forget(r->st, r->name, on_forgotten, r);
    if (rc)
        on_forgotten(rc, r);
}

static void on_account_key(int err, char *data, size_t len, void *arg)
{
    struct revoke_run *r = arg;
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
    if (err && err != UV_ENOENT) {
        fail(r, "reading the account key", tf_strerror(err));
        return;
    }
    r->with_cert_key = err == UV_ENOENT;
    int rc = tf_acme_revoke(r->acme, r->cert, r->reason, r->with_cert_key, on_revoked, r);
    if (rc)
        fail(r, "not revoked", tf_strerror(rc));
}

static void on_loaded(int err, struct tf_cert *cert, const char *chain, const char *key,
                      void *arg)
{
    struct revoke_run *r = arg;
    (void)chain;
    (void)key;
    if (err) {
        fail(r, "no usable stored certificate", tf_strerror(err));
        return;
    }
    r->cert = cert;
    char *k = tf_asprintf("acme/%s/account.key", tf_acme_ca_id(r->acme));
    int rc = tf_storage_get(r->st, k, on_account_key, r);
    free(k);
    if (rc)
        on_account_key(rc, NULL, 0, r);
}

/* Open the storage, the HTTP client and the ACME client for cfg; 0, or an exit code. */
static int open_all(struct revoke_run *r, const struct tf_config *cfg)
{
    char err[512] = "";
    r->st = tf_storage_open(&r->loop, cfg, err, sizeof err);
    if (!r->st) {
        fprintf(stderr, "tlsfront revoke: %s\n", err);
        return 2;
    }
    r->http = tf_httpc_new(&r->loop, cfg->acme_ca, err, sizeof err);
    if (!r->http) {
        fprintf(stderr, "tlsfront revoke: --acme-ca: %s\n", err);
        return 2;
    }
    r->acme = tf_acme_new(&r->loop, cfg, r->st, r->http, NULL, err, sizeof err);
    if (!r->acme) {
        fprintf(stderr, "tlsfront revoke: %s\n", err);
        return 2;
    }
    return 0;
}

static void close_all(struct revoke_run *r)
{
    if (r->acme)
        tf_acme_close(r->acme, NULL, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    if (r->http)
        tf_httpc_close(r->http, NULL, NULL);
    if (r->st)
        tf_storage_close(r->st, NULL, NULL);
    uv_run(&r->loop, UV_RUN_DEFAULT);
    tf_cert_unref(r->cert);
    uv_loop_close(&r->loop);
}

static int run(struct revoke_run *r, const struct tf_config *cfg)
{
    if (uv_loop_init(&r->loop) != 0)
        return 1;
    r->rc = 1;
    int rc = open_all(r, cfg);
    if (rc == 0) {
        rc = tf_acme_store_load(r->st, r->name, on_loaded, r);
        if (rc)
            fail(r, "no usable stored certificate", tf_strerror(rc));
        uv_run(&r->loop, UV_RUN_DEFAULT);
        rc = r->rc;
    }
    close_all(r);
    return rc;
}

/* Split argv: --reason and NAME (the last argument) out, the rest to the config loader
 * (argv[0] becomes "tlsfront", and a placeholder --backend comes first). Returns 0 or an exit code (printed). */
static int split_args(int argc, char **argv, struct revoke_run *r, char **rest, int *n_rest)
{
    *n_rest = 0;
    rest[(*n_rest)++] = "tlsfront";
    /* The loader wants a backend; none is used here (a later --backend replaces it). */
    rest[(*n_rest)++] = "--backend=127.0.0.1:1";
    r->reason_name = "unspecified";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0) {
            if (i + 1 >= argc)
                return usage("--reason needs a value");
            r->reason_name = argv[++i];
        } else if (strncmp(argv[i], "--reason=", 9) == 0) {
            r->reason_name = argv[i] + 9;
        } else {
            rest[(*n_rest)++] = argv[i];
        }
    }
    r->reason = tf_acme_revoke_reason(r->reason_name);
    if (r->reason < 0) {
        fprintf(stderr, "tlsfront revoke: --reason: expected %s, got \"%.60s\"\n",
                tf_acme_revoke_reasons_text(), r->reason_name);
        return 2;
    }
    if (*n_rest < 3 || rest[*n_rest - 1][0] == '-')
        return usage("NAME missing");
    r->name = rest[--*n_rest];
    if (!tf_name_pattern_valid(r->name))
        return usage("NAME is not a valid lower-case name");
    rest[*n_rest] = NULL;
    return 0;
}

int tf_cmd_revoke(int argc, char **argv)
{
    struct revoke_run r;
    memset(&r, 0, sizeof r);
    char **rest = tf_calloc((size_t)argc + 3, sizeof *rest);
    int n_rest = 0;
    int rc = split_args(argc, argv, &r, rest, &n_rest);
    struct tf_config_result res;
    memset(&res, 0, sizeof res);
    if (rc == 0 && tf_config_load(n_rest, rest, environ, &res) != 0) {
        fprintf(stderr, "tlsfront revoke: %s\n", res.err);
        rc = 2;
    }
    if (rc == 0 && (res.help || res.version))
        rc = usage("see tlsfront --help for the options");
    if (rc == 0) {
        tf_log_setup((enum tf_log_level)res.cfg->log_level, res.cfg->log_json);
        rc = run(&r, res.cfg);
    }
    tf_config_unref(res.cfg);
    free(rest);
    return rc;
}
