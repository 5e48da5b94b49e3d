/*
 * acme_finalize.c: the end of an order (RFC 8555 §7.4): wait for "ready", generate a fresh
 * certificate key on libuv's thread pool (never reuse keys across certificates), finalize
 * with a CSR, poll until "valid", download the chain (application/pem-certificate-chain),
 * check that its leaf matches our key and covers the name, store key (0600), chain and
 * meta.json, and answer the obtainers. Never logs the key.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/csr.h"
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/log.h"
#include "tlsfront/acme/renew.h"

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- store ---- */

static void on_saved(int err, void *arg)
{
    struct tf_acme_order *o = arg;
    o->storage_busy = false;
    o->not_stored = err != 0;
    if (err)
        TF_WARN(ACME_MOD, "name=%s certificate not stored: %s (it is used anyway)", o->name,
                tf_strerror(err));
    tf_acme_order_succeed(o, false);
}

static char *meta_json(struct tf_acme_order *o)
{
    const struct tf_cert *c = o->cert;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "name", o->name);
    cJSON_AddStringToObject(j, "ca", o->a->dir_url);
    cJSON_AddStringToObject(j, "ca_id", o->a->ca_id);
    cJSON_AddStringToObject(j, "issuer", c->issuer ? c->issuer : "");
    cJSON_AddStringToObject(j, "serial", c->serial ? c->serial : "");
    cJSON_AddNumberToObject(j, "not_before", (double)c->not_before);
    cJSON_AddNumberToObject(j, "not_after", (double)c->not_after);
    cJSON_AddStringToObject(j, "kind", c->kind == TF_CERT_RSA ? "rsa" : "ec");
    cJSON_AddNumberToObject(j, "obtained", (double)tf_wall_now());
    char *id = tf_renew_cert_id(c->leaf);
    if (id)
        cJSON_AddStringToObject(j, "cert_id", id);
    free(id);
    if (o->order_url)
        cJSON_AddStringToObject(j, "order", o->order_url);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        abort(); /* cJSON only fails on allocation */
    return text;
}

static void store_cert(struct tf_acme_order *o)
{
    if (tf_acme_order_cancelled(o)) /* never store what a lost lease no longer covers */
        return;
    char *meta = meta_json(o);
    o->storage_busy = true;
    int rc = tf_acme_store_save(o->a->st, o->name, o->chain_pem, o->key_pem, meta, on_saved, o);
    free(meta);
    if (rc)
        on_saved(rc, o);
}

/* ---- download and verify ---- */

static void on_certificate(int err, const struct tf_http_response *resp,
                           const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    if (!tf_acme_order_answer(o, "certificate", err, prob))
        return;
    char why[256] = "";
    o->chain_pem = tf_strndup(resp->body, resp->body_len);
    o->key_pem = tf_key_to_pem(o->cert_key);
    if (!o->key_pem) {
        tf_log_ssl(TF_LOG_ERROR, ACME_MOD, "encoding the certificate key");
        tf_acme_order_fail(o, TF_ETLS, NULL, "cannot encode the certificate key");
        return;
    }
    o->cert = tf_cert_from_pem(o->chain_pem, strlen(o->chain_pem), o->key_pem,
                               strlen(o->key_pem), o->name, why, sizeof(why));
    ERR_clear_error();
    if (!o->cert)
        tf_acme_order_fail(o, TF_EPROTO, NULL, "certificate: %s", why);
    else if (!tf_cert_covers(o->cert, o->name))
        tf_acme_order_fail(o, TF_EPROTO, NULL, "certificate does not cover %s", o->name);
    else if (o->cert->not_after <= tf_wall_now())
        tf_acme_order_fail(o, TF_EPROTO, NULL, "certificate is already expired");
    else
        store_cert(o);
}

static void download(struct tf_acme_order *o)
{
    int rc = tf_acme_order_post(o, o->cert_url, "", "application/pem-certificate-chain",
                                on_certificate);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "certificate: cannot start the request");
}

/* ---- finalize and poll until valid ---- */

static void on_order_final(int err, const struct tf_http_response *resp,
                           const struct tf_acme_problem *prob, void *arg);

static void step_poll_valid(struct tf_acme_order *o)
{
    int rc = tf_acme_order_post(o, o->order_url, "", NULL, on_order_final);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "order: cannot start the request");
}

/* The order after finalize (or a poll): valid -> download; processing -> poll again. */
static void on_order_final(int err, const struct tf_http_response *resp,
                           const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    if (!tf_acme_order_answer(o, "finalize", err, prob))
        return;
    struct tf_acme_order_doc d;
    char why[256];
    if (tf_acme_parse_order(resp->body, resp->body_len, &d, why, sizeof(why))) {
        tf_acme_order_fail(o, TF_EPROTO, NULL, "finalize: %s", why);
    } else if (d.status == TF_ACME_ST_VALID) {
        free(o->cert_url);
        o->cert_url = d.certificate;
        d.certificate = NULL;
        download(o);
    } else if (d.status == TF_ACME_ST_PROCESSING || d.status == TF_ACME_ST_READY) {
        tf_acme_order_after(o, tf_acme_order_poll_delay(o, resp), step_poll_valid,
                            "the certificate");
    } else {
        char sum[400] = "";
        if (d.error)
            tf_acme_problem_summary(d.error, sum, sizeof(sum));
        tf_acme_order_fail(o, TF_EPROTO, d.error, "finalize: order is %s%s%s",
                           tf_acme_status_name(d.status), d.error ? ": " : "", sum);
    }
    tf_acme_order_doc_clear(&d);
}

static void keygen_work(uv_work_t *w)
{
    struct tf_acme_order *o = w->data;
    o->cert_key = tf_key_generate(o->a->cert_key_type);
}

static void keygen_done(uv_work_t *w, int status)
{
    struct tf_acme_order *o = w->data;
    o->work_busy = false;
    if (status == UV_ECANCELED) {
        tf_acme_order_fail(o, UV_ECANCELED, NULL, "cancelled");
        return;
    }
    if (tf_acme_order_cancelled(o))
        return;
    const char *names[1] = {o->name};
    char *csr = o->cert_key ? tf_csr_b64url(o->cert_key, names, 1) : NULL;
    if (!csr) {
        tf_log_ssl(TF_LOG_ERROR, ACME_MOD, "generating the certificate key and CSR");
        tf_acme_order_fail(o, TF_ETLS, NULL, "cannot build the certificate key or CSR");
        return;
    }
    char *payload = tf_asprintf("{\"csr\":\"%s\"}", csr);
    free(csr);
    o->poll_ms = TF_ACME_FIRST_POLL_MS;
    int rc = tf_acme_order_post(o, o->finalize_url, payload, NULL, on_order_final);
    free(payload);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "finalize: cannot start the request");
}

void tf_acme_order_finalize(struct tf_acme_order *o)
{
    o->work_busy = true;
    int rc = uv_queue_work(o->a->loop, &o->work, keygen_work, keygen_done);
    if (rc) {
        o->work_busy = false;
        tf_acme_order_fail(o, rc, NULL, "cannot queue the certificate key generation");
    }
}

/* ---- wait for "ready" ---- */

static void on_order_ready(int err, const struct tf_http_response *resp,
                           const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    if (!tf_acme_order_answer(o, "order", err, prob))
        return;
    struct tf_acme_order_doc d;
    char why[256];
    if (tf_acme_parse_order(resp->body, resp->body_len, &d, why, sizeof(why))) {
        tf_acme_order_fail(o, TF_EPROTO, NULL, "order: %s", why);
    } else if (d.status == TF_ACME_ST_READY) {
        tf_acme_order_finalize(o);
    } else if (d.status == TF_ACME_ST_PENDING) {
        tf_acme_order_after(o, tf_acme_order_poll_delay(o, resp), tf_acme_order_poll_ready,
                            "the order to become ready");
    } else {
        char sum[400] = "";
        if (d.error)
            tf_acme_problem_summary(d.error, sum, sizeof(sum));
        tf_acme_order_fail(o, TF_EPROTO, d.error, "order is %s%s%s",
                           tf_acme_status_name(d.status), d.error ? ": " : "", sum);
    }
    tf_acme_order_doc_clear(&d);
}

void tf_acme_order_poll_ready(struct tf_acme_order *o)
{
    int rc = tf_acme_order_post(o, o->order_url, "", NULL, on_order_ready);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "order: cannot start the request");
}
