/*
 * acme_account.c: the ACME account (RFC 8555 §7.3). Loads the account key from storage
 * (acme/<ca-id>/account.key, 0600) or generates one on libuv's thread pool and stores it
 * before using it; with a stored key it first asks newAccount with onlyReturnExisting and
 * registers only if the CA answers accountDoesNotExist. Registration agrees to the terms,
 * gives the contact e-mail and, when configured, the External Account Binding (§7.3.4).
 * The account URL (the kid of every later request) is kept in acme/<ca-id>/account.json.
 * Never logs the key.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/log.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tf_acme_acct_op {
    struct tf_acme *a;
    uv_work_t work;
    bool work_busy;
    enum tf_key_type type;
    EVP_PKEY *key;
    struct tf_acme_call *call;
    char *key_path, *json_path;
    tf_acme_account_cb done;
};

static void acct_end(struct tf_acme_acct_op *op, int err, const char *reason,
                     const struct tf_acme_problem *prob)
{
    struct tf_acme *a = op->a;
    tf_acme_account_cb done = op->done;
    a->acct_op = NULL;
    if (!err) {
        EVP_PKEY_free(a->acct_key);
        a->acct_key = op->key;
        op->key = NULL;
    }
    EVP_PKEY_free(op->key);
    free(op->key_path);
    free(op->json_path);
    free(op);
    done(a, a->closing && err ? UV_ECANCELED : err, reason, prob);
    tf_acme_release(a);
}

static void on_json_put(int err, void *arg)
{
    struct tf_acme_acct_op *op = arg;
    if (err)
        TF_WARN(ACME_MOD, "storing %s: %s (the account still works)", op->json_path,
                tf_strerror(err));
    acct_end(op, 0, NULL, NULL);
}

static void save_account_json(struct tf_acme_acct_op *op)
{
    struct tf_acme *a = op->a;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "url", a->kid);
    cJSON_AddStringToObject(j, "directory", a->dir_url);
    if (a->email)
        cJSON_AddStringToObject(j, "contact", a->email);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        abort(); /* cJSON only fails on allocation */
    int rc = tf_storage_put(a->st, op->json_path, text, strlen(text), false, on_json_put, op);
    free(text);
    if (rc)
        on_json_put(rc, op);
}

static void do_register(struct tf_acme_acct_op *op, bool only_existing);

/* The newAccount answer: 200 (existing) or 201 (created), Location = account URL. */
static void on_registered(int err, const struct tf_http_response *resp,
                          const struct tf_acme_problem *prob, void *arg, bool only_existing)
{
    struct tf_acme_acct_op *op = arg;
    struct tf_acme *a = op->a;
    char reason[600], why[256];
    op->call = NULL;
    if (err && only_existing && prob && tf_acme_problem_is(prob, "accountDoesNotExist") &&
        !a->closing) {
        do_register(op, false);
        return;
    }
    if (err) {
        if (prob)
            tf_acme_problem_summary(prob, why, sizeof(why));
        snprintf(reason, sizeof(reason), "newAccount: %s", prob ? why : tf_strerror(err));
        acct_end(op, err, reason, prob);
        return;
    }
    const char *loc = tf_http_response_header(resp, "Location");
    enum tf_acme_status st;
    if (!loc || strncmp(loc, "http", 4) != 0) {
        acct_end(op, TF_EPROTO, "newAccount: no account URL (Location header)", NULL);
        return;
    }
    if (tf_acme_parse_account_status(resp->body, resp->body_len, &st, why, sizeof(why))) {
        snprintf(reason, sizeof(reason), "newAccount: %s", why);
        acct_end(op, TF_EPROTO, reason, NULL);
        return;
    }
    if (st != TF_ACME_ST_VALID) {
        snprintf(reason, sizeof(reason), "newAccount: account %s is %s", loc,
                 tf_acme_status_name(st));
        acct_end(op, TF_EDENIED, reason, NULL);
        return;
    }
    free(a->kid);
    a->kid = tf_strdup(loc);
    if (resp->status == 201)
        a->stats.accounts_created++;
    TF_INFO(ACME_MOD, "ca=%s account %s %s", a->label, loc,
            resp->status == 201 ? "created" : "found");
    save_account_json(op);
}

static void on_existing(int err, const struct tf_http_response *resp,
                        const struct tf_acme_problem *prob, void *arg)
{
    on_registered(err, resp, prob, arg, true);
}

static void on_created(int err, const struct tf_http_response *resp,
                       const struct tf_acme_problem *prob, void *arg)
{
    on_registered(err, resp, prob, arg, false);
}

/* The newAccount payload; NULL only when the EAB cannot be built. */
static char *account_payload(struct tf_acme_acct_op *op, bool only_existing)
{
    struct tf_acme *a = op->a;
    cJSON *j = cJSON_CreateObject();
    if (only_existing) {
        cJSON_AddTrueToObject(j, "onlyReturnExisting");
    } else {
        cJSON_AddTrueToObject(j, "termsOfServiceAgreed");
        if (a->email) {
            char *mailto = tf_asprintf("mailto:%s", a->email);
            cJSON *arr = cJSON_AddArrayToObject(j, "contact");
            cJSON_AddItemToArray(arr, cJSON_CreateString(mailto));
            free(mailto);
        }
    }
    if (!only_existing && a->eab_kid) {
        char *eab = tf_jws_eab(a->eab_kid, a->eab_hmac, a->eab_hmac_len, op->key,
                               a->dir.new_account);
        cJSON *e = eab ? cJSON_Parse(eab) : NULL;
        free(eab);
        if (!e) {
            cJSON_Delete(j);
            return NULL;
        }
        cJSON_AddItemToObject(j, "externalAccountBinding", e);
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return text;
}

static void do_register(struct tf_acme_acct_op *op, bool only_existing)
{
    struct tf_acme *a = op->a;
    char *payload = account_payload(op, only_existing);
    if (!payload) {
        tf_log_ssl(TF_LOG_ERROR, ACME_MOD, "building the external account binding");
        acct_end(op, TF_ETLS, "newAccount: cannot build the external account binding", NULL);
        return;
    }
    struct tf_acme_call_spec spec = {
        .method = "POST",
        .url = a->dir.new_account,
        .payload = payload,
        .use_jwk = true,
        .key = op->key,
        .deadline_ms = tf_mono_ms() + (uint64_t)a->timeout_s * 1000,
    };
    int rc = tf_acme_call_start(a, &spec, only_existing ? on_existing : on_created, op,
                                &op->call);
    free(payload);
    if (rc)
        acct_end(op, rc, "newAccount: cannot start the request", NULL);
}

static void on_key_put(int err, void *arg)
{
    struct tf_acme_acct_op *op = arg;
    char reason[300];
    if (err) {
        snprintf(reason, sizeof(reason), "storing %s: %s", op->key_path, tf_strerror(err));
        acct_end(op, err, reason, NULL);
    } else if (op->a->closing) {
        acct_end(op, UV_ECANCELED, "cancelled", NULL);
    } else {
        do_register(op, false);
    }
}

static void keygen_work(uv_work_t *w)
{
    struct tf_acme_acct_op *op = w->data;
    op->key = tf_key_generate(op->type);
}

static void keygen_done(uv_work_t *w, int status)
{
    struct tf_acme_acct_op *op = w->data;
    op->work_busy = false;
    if (status == UV_ECANCELED || op->a->closing) {
        acct_end(op, UV_ECANCELED, "cancelled", NULL);
        return;
    }
    char *pem = op->key ? tf_key_to_pem(op->key) : NULL;
    if (!pem) {
        tf_log_ssl(TF_LOG_ERROR, ACME_MOD, "generating the account key");
        acct_end(op, TF_ETLS, "cannot generate the account key", NULL);
        return;
    }
    int rc = tf_storage_put(op->a->st, op->key_path, pem, strlen(pem), true, on_key_put, op);
    OPENSSL_cleanse(pem, strlen(pem));
    free(pem);
    if (rc)
        on_key_put(rc, op);
}

static void on_key_get(int err, char *data, size_t len, void *arg)
{
    struct tf_acme_acct_op *op = arg;
    struct tf_acme *a = op->a;
    char reason[300];
    if (a->closing) {
        acct_end(op, UV_ECANCELED, "cancelled", NULL);
    } else if (err == 0) {
        op->key = tf_key_from_pem(data, len);
        if (!op->key) {
            ERR_clear_error();
            snprintf(reason, sizeof(reason), "%s: not a private key (fix or delete it)",
                     op->key_path);
            acct_end(op, TF_EINVAL, reason, NULL);
        } else {
            do_register(op, true);
        }
    } else if (err == UV_ENOENT) {
        op->work_busy = true;
        int rc = uv_queue_work(a->loop, &op->work, keygen_work, keygen_done);
        if (rc) {
            op->work_busy = false;
            acct_end(op, rc, "cannot queue the account key generation", NULL);
        }
    } else {
        snprintf(reason, sizeof(reason), "reading %s: %s", op->key_path, tf_strerror(err));
        acct_end(op, err, reason, NULL);
    }
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
}

void tf_acme_account_start(struct tf_acme *a, tf_acme_account_cb done)
{
    struct tf_acme_acct_op *op = tf_calloc(1, sizeof(*op));
    op->a = a;
    op->done = done;
    op->type = a->acct_key_type;
    op->work.data = op;
    op->key_path = tf_asprintf("acme/%s/account.key", a->ca_id);
    op->json_path = tf_asprintf("acme/%s/account.json", a->ca_id);
    a->acct_op = op;
    tf_acme_hold(a);
    int rc = tf_storage_get(a->st, op->key_path, on_key_get, op);
    if (rc)
        acct_end(op, rc, "storage: cannot read the account key", NULL);
}

void tf_acme_account_cancel(struct tf_acme *a)
{
    struct tf_acme_acct_op *op = a->acct_op;
    if (!op)
        return;
    tf_acme_call_cancel(op->call);
    if (op->work_busy)
        uv_cancel((uv_req_t *)&op->work);
}
