/*
 * acme_order.c: what every step of an order (RFC 8555 §7.4) shares: ending it once (fail,
 * succeed, cancel: unlock, unpublish, log the outcome, answer the obtainers), the order's
 * timer and deadline, signed POSTs with the account's kid, poll delays, and recognising a
 * paused name. The steps themselves are acme_order_begin.c (marker, lock, storage, account,
 * newOrder), acme_authz.c (authorizations) and acme_finalize.c (finalize, download, store).
 * Exactly one operation is in flight per order; each completion first checks for
 * cancellation. The order logs its outcome once; it never logs key authorizations.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/log.h"
#include "tlsfront/acme/renew.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_order_timer(uv_timer_t *t);

/* ---- ending ---- */

void tf_acme_order_free(struct tf_acme_order *o)
{
    struct tf_acme *a = o->a;
    if (o->prev)
        o->prev->next = o->next;
    else
        a->orders = o->next;
    if (o->next)
        o->next->prev = o->prev;
    free(o->name);
    free(o->lock_name);
    free(o->replaces);
    free(o->profile);
    free(o->order_url);
    free(o->finalize_url);
    free(o->cert_url);
    for (int i = 0; i < o->n_authz; i++)
        free(o->authz[i]);
    free(o->authz);
    free(o->chal_url);
    free(o->chal_token);
    EVP_PKEY_free(o->cert_key);
    free(o->chain_pem);
    if (o->key_pem) {
        OPENSSL_cleanse(o->key_pem, strlen(o->key_pem));
        free(o->key_pem);
    }
    tf_cert_unref(o->cert);
    tf_acme_problem_clear(&o->problem);
    free(o);
    tf_acme_release(a);
}

void tf_acme_order_unpublish(struct tf_acme_order *o)
{
    if (!o->published)
        return;
    o->published = false;
    struct tf_acme_chal c = {o->chal_type, o->name, o->chal_token, NULL};
    if (o->a->resp.unpublish)
        o->a->resp.unpublish(o->a->resp.arg, &c);
}

static void log_outcome(struct tf_acme_order *o, bool from_storage)
{
    struct tf_acme *a = o->a;
    if (!o->err && from_storage) {
        a->stats.from_storage++;
        TF_INFO(ACME_MOD, "name=%s ca=%s certificate found in storage (serial %s)", o->name,
                a->label, o->cert->serial);
    } else if (!o->err) {
        a->stats.orders_ok++;
        TF_INFO(ACME_MOD, "name=%s ca=%s certificate obtained (serial %s, issuer %s)", o->name,
                a->label, o->cert->serial, o->cert->issuer);
    } else if (o->err == UV_ECANCELED) {
        a->stats.orders_failed++;
        TF_INFO(ACME_MOD, "name=%s ca=%s order cancelled", o->name, a->label);
    } else {
        a->stats.orders_failed++;
        TF_WARN(ACME_MOD, "name=%s ca=%s order failed: %s", o->name, a->label, o->reason);
    }
}

/* Answer every obtainer, then release the lock and free the order. */
static void order_finish(struct tf_acme_order *o, bool from_storage)
{
    o->finished = true;
    tf_acme_order_unpublish(o);
    log_outcome(o, from_storage);
    struct tf_acme_result res = {.name = o->name, .from_storage = from_storage,
                                 .not_stored = o->not_stored};
    if (!o->err) {
        res.chain_pem = o->chain_pem;
        res.chain_len = strlen(o->chain_pem);
        res.key_pem = o->key_pem;
        res.key_len = strlen(o->key_pem);
    } else {
        res.reason = o->reason;
        res.problem = o->has_problem ? &o->problem : NULL;
    }
    while (o->obtainers) {
        struct tf_acme_obtainer *ob = o->obtainers;
        o->obtainers = ob->next;
        res.cert = NULL;
        if (!o->err) {
            tf_cert_ref(o->cert);
            res.cert = o->cert;
        }
        ob->cb(o->err, &res, ob->arg);
        free(ob);
    }
    tf_acme_lease_end(o);
}

void tf_acme_order_fail(struct tf_acme_order *o, int err, const struct tf_acme_problem *prob,
                        const char *fmt, ...)
{
    if (o->finished)
        return;
    char buf[sizeof(o->reason)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    memcpy(o->reason, buf, sizeof(buf));
    o->err = err ? err : TF_EPROTO;
    if (prob && !o->has_problem) {
        tf_acme_problem_copy(&o->problem, prob);
        o->has_problem = true;
    }
    order_finish(o, false);
}

void tf_acme_order_succeed(struct tf_acme_order *o, bool from_storage)
{
    o->err = 0;
    order_finish(o, from_storage);
}

bool tf_acme_order_cancelled(struct tf_acme_order *o)
{
    if (o->lease_lost) {
        tf_acme_order_fail(o, TF_EDENIED, NULL,
                           "the order lock's lease was lost (another node may order this name): "
                           "abandoned without storing");
        return true;
    }
    if (!o->a->closing)
        return false;
    tf_acme_order_fail(o, UV_ECANCELED, NULL, "cancelled");
    return true;
}

bool tf_acme_order_answer(struct tf_acme_order *o, const char *step, int err,
                          const struct tf_acme_problem *prob)
{
    o->call = NULL;
    if (tf_acme_order_cancelled(o))
        return false;
    if (err) {
        tf_acme_order_call_failed(o, step, err, prob);
        return false;
    }
    return true;
}

void tf_acme_order_cancel(struct tf_acme_order *o)
{
    if (o->finished)
        return;
    if (o->call)
        tf_acme_call_cancel(o->call);
    if (o->timer_armed)
        uv_timer_start(&o->timer, on_order_timer, 0, 0);
    if (o->work_busy)
        uv_cancel((uv_req_t *)&o->work);
}

/* ---- helpers shared with acme_finalize.c ---- */

static void on_order_timer(uv_timer_t *t)
{
    struct tf_acme_order *o = t->data;
    o->timer_armed = false;
    if (tf_acme_order_cancelled(o))
        return;
    o->timer_step(o);
}

void tf_acme_order_after(struct tf_acme_order *o, uint64_t delay_ms, tf_acme_order_step step,
                         const char *what)
{
    if (tf_mono_ms() + delay_ms >= o->deadline_ms) {
        tf_acme_order_fail(o, TF_ETIMEDOUT, NULL, "timed out (acme timeout %us) waiting for %s",
                           o->a->timeout_s, what);
        return;
    }
    o->timer_step = step;
    o->timer_armed = true;
    uv_timer_start(&o->timer, on_order_timer, delay_ms, 0);
}

uint64_t tf_acme_order_poll_delay(struct tf_acme_order *o, const struct tf_http_response *r)
{
    int64_t s = tf_http_response_retry_after(r);
    if (s >= 0)
        return (uint64_t)TF_MIN(s, 86400) * 1000;
    uint64_t d = o->poll_ms;
    o->poll_ms = TF_MIN(o->poll_ms * 2, 2000);
    return d;
}

int tf_acme_order_post(struct tf_acme_order *o, const char *url, const char *payload,
                       const char *accept, tf_acme_call_cb cb)
{
    struct tf_acme_call_spec spec = {
        .method = "POST",
        .url = url,
        .payload = payload,
        .key = o->a->acct_key,
        .kid = o->a->kid,
        .accept = accept,
        .deadline_ms = o->deadline_ms,
    };
    return tf_acme_call_start(o->a, &spec, cb, o, &o->call);
}

/* ---- paused names (Let's Encrypt) ---- */

static void on_marker_put(int err, void *arg)
{
    struct tf_acme_order *o = arg;
    o->storage_busy = false;
    if (err)
        TF_WARN(ACME_MOD, "name=%s storing the paused marker: %s", o->name, tf_strerror(err));
    char reason[sizeof(o->reason)];
    memcpy(reason, o->reason, sizeof(reason));
    tf_acme_order_fail(o, TF_EDENIED, NULL, "%s", reason);
}

static void mark_paused(struct tf_acme_order *o, const struct tf_acme_problem *prob,
                        const char *url)
{
    struct tf_acme *a = o->a;
    char *key = tf_acme_paused_key(a->ca_id, o->name);
    TF_WARN(ACME_MOD, "name=%s ca=%s the CA paused issuance: %s; unpause at %s, then delete %s "
                      "from the storage", o->name, a->label, prob->detail, url ? url : "(no link given)", key);
    snprintf(o->reason, sizeof(o->reason), "paused by the CA (unpause: %s)",
             url ? url : "see the CA's documentation");
    tf_acme_problem_copy(&o->problem, prob);
    o->has_problem = true;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "detail", prob->detail);
    cJSON_AddStringToObject(j, "unpause", url ? url : "");
    cJSON_AddNumberToObject(j, "time", (double)tf_wall_now());
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    o->storage_busy = true;
    int rc = text ? tf_storage_put(a->st, key, text, strlen(text), false, on_marker_put, o)
                  : TF_EINVAL;
    free(text);
    free(key);
    if (rc)
        on_marker_put(rc, o);
}

void tf_acme_order_call_failed(struct tf_acme_order *o, const char *step, int err,
                               const struct tf_acme_problem *prob)
{
    char *url = NULL;
    char sum[400];
    if (err == UV_ECANCELED || o->a->closing) {
        tf_acme_order_fail(o, UV_ECANCELED, NULL, "cancelled");
    } else if (prob && tf_acme_problem_is_paused(prob, &url)) {
        mark_paused(o, prob, url);
        free(url);
    } else if (prob) {
        tf_acme_problem_summary(prob, sum, sizeof(sum));
        tf_acme_order_fail(o, err, prob, "%s: %s", step, sum);
    } else {
        tf_acme_order_fail(o, err, NULL, "%s: %s", step, tf_strerror(err));
    }
}
