/*
 * check.c: --check. Runs the start-up steps that read files or reach the storage, in the
 * order a start runs them, and stops at the first failure with the same one line a start
 * prints (exit 2). Never binds a port, never contacts the ACME server or the --ask URL.
 * Blocking is fine here: no loop serves traffic; the Redis store still runs on a private
 * loop because that is the only way it talks.
 */
#include "check_int.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage_redis.h"
#include "tlsfront/proxy/handshake.h"
#include "tlsfront/tls/tls.h"
#include "tlsfront/ctl/server.h"

#include <openssl/crypto.h>
#include <stdlib.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

/* Print "tlsfront: " and the formatted line to stderr; returns 2 (the exit status). */
static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
    va_list ap;
    fputs("tlsfront: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 2;
}

static int check_certs(const struct tf_config *cfg)
{
    char err[512] = "";
    int ok = 0, bad = 0;
    if (!cfg->certs_dir)
        return 0;
    struct tf_certstore *st = tf_certstore_load_dir(cfg->certs_dir, &ok, &bad, err, sizeof err);
    if (!st)
        return fail("--certs: %s", err);
    if (cfg->default_cert && !tf_certstore_lookup(st, cfg->default_cert))
        TF_WARN("check", "--default-cert %s: no loaded certificate covers it", cfg->default_cert);
    tf_certstore_unref(st);
    if (bad > 0) {
        return fail("--certs %s: %d file(s) could not be loaded (named in the warnings above; a "
                    "start would skip them)",
                    cfg->certs_dir, bad);
    }
    TF_INFO("check", "--certs %s: %d certificates", cfg->certs_dir, ok);
    return 0;
}

/* A trust anchor file (--acme-ca, --webhook-ca): readable, with a PEM certificate in it.
 * flag: how the message names it ("--webhook-ca ", "--acme-directory ca="). */
static int check_ca_file(const char *flag, const char *path)
{
    if (!path)
        return 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return fail("%s%s: %s", flag, path, strerror(errno));
    int n = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        X509_free(x);
        n++;
    }
    fclose(f);
    ERR_clear_error(); /* the read that ends the loop leaves "no start line" */
    if (n == 0)
        return fail("%s%s: no PEM certificate in it", flag, path);
    return 0;
}

/* Each CA's trust anchor: the plain --acme-ca is the first CA's (config_acme.c). */
static int check_acme_ca(const struct tf_config *cfg)
{
    for (int i = 0; i < cfg->n_acme_cas; i++) {
        const char *flag = i == 0 && cfg->acme_ca ? "--acme-ca " : "--acme-directory ca=";
        int rc = check_ca_file(flag, cfg->acme_cas[i].ca);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* --webhook-secret-file: readable and not empty (a start reads it the same way). */
static int check_webhook_secret(const struct tf_config *cfg)
{
    if (!cfg->webhook_secret_file)
        return 0;
    FILE *f = fopen(cfg->webhook_secret_file, "rb");
    if (!f)
        return fail("--webhook-secret-file %s: %s", cfg->webhook_secret_file, strerror(errno));
    char buf[64];
    size_t n = fread(buf, 1, sizeof buf, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    while (n > 0 && strchr(" \t\r\n", buf[n - 1]) && buf[n - 1] != '\0')
        n--;
    if (bad || n == 0)
        return fail("--webhook-secret-file %s: %s", cfg->webhook_secret_file,
                    bad ? "read error" : "empty");
    return 0;
}

struct storage_probe {
    int err;
    bool done;
};

static void on_probe(int err, char *data, size_t len, void *arg)
{
    struct storage_probe *p = arg;
    (void)len;
    free(data);
    p->err = err == TF_ENOTFOUND || err == UV_ENOENT ? 0 : err; /* the key need not exist */
    p->done = true;
}

/* Open the storage as a start does and read one key that need not exist. */
static int check_storage(const struct tf_config *cfg)
{
    char err[512] = "";
    uv_loop_t loop;
    if (!cfg->n_allow && !cfg->ask)
        return 0; /* only on-demand issuance uses it */
    if (uv_loop_init(&loop) != 0)
        return fail("--storage %s: cannot make a loop", cfg->storage);
    struct tf_storage *st = tf_storage_open(&loop, cfg, err, sizeof err);
    if (!st) {
        uv_loop_close(&loop);
        return fail("%s", err);
    }
    struct storage_probe p = {0, false};
    int r = tf_storage_get(st, "check", on_probe, &p);
    uv_run(&loop, UV_RUN_DEFAULT);
    tf_storage_close(st, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&loop) != 0)
        TF_WARN("check", "storage loop did not close cleanly");
    r = r ? r : !p.done ? TF_EIO : p.err;
    if (r != 0)
        return fail("--storage %s: %s", tf_config_storage_is_redis(cfg->storage) ? "redis"
                                                                                 : cfg->storage,
                    tf_strerror(r));
    return 0;
}

/* The admin token file, read as a start reads it. */
static int check_admin_token(const struct tf_config *cfg)
{
    char err[512] = "";
    char *token = NULL;
    if (tf_server_admin_token(cfg, &token, err, sizeof err) != 0)
        return fail("%s", err);
    if (token)
        OPENSSL_cleanse(token, strlen(token));
    free(token);
    return 0;
}

int tf_check_run(const struct tf_config *cfg)
{
    int rc = check_certs(cfg);
    if (rc == 0) {
        SSL_CTX *ctx = tf_handshake_ctx_new(cfg, NULL);
        if (!ctx)
            return fail("TLS settings: the TLS context could not be built");
        SSL_CTX_free(ctx);
    }
    if (rc == 0)
        rc = check_acme_ca(cfg);
    if (rc == 0)
        rc = check_ca_file("--webhook-ca ", cfg->webhook_ca);
    if (rc == 0)
        rc = check_webhook_secret(cfg);
    if (rc == 0)
        rc = check_storage(cfg);
    if (rc == 0 && cfg->admin)
        rc = check_admin_token(cfg);
    return rc;
}
