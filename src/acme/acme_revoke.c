/*
 * acme_revoke.c: certificate revocation (RFC 8555 §7.6). A revokeCert POST carries the
 * certificate (base64url DER) and a CRLReason code (RFC 5280 §5.3.1), signed either with
 * the account key (kid: the account that ordered the certificate, or one authorized for
 * its names) or with the certificate's own key (jwk: proves possession of the key, for a
 * key that leaked or an account key that is gone). The CA answering "alreadyRevoked" is a
 * success. Operations in flight are listed on the client so tf_acme_close cancels them.
 * Control loop only; never logs a key.
 */
#include "acme_int.h"
#include "tlsfront/base/b64url.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <cjson/cJSON.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reasons a subscriber may give (RFC 5280 §5.3.1 codes; CAs refuse the others from a
 * subscriber: certificateHold, removeFromCRL and the CA-compromise ones). */
static const struct {
    const char *name;
    int code;
} reasons[] = {
    {"unspecified", 0},          {"keyCompromise", 1}, {"affiliationChanged", 3},
    {"superseded", 4},           {"cessationOfOperation", 5},
    {"privilegeWithdrawn", 9},
};

int tf_acme_revoke_reason(const char *name)
{
    for (size_t i = 0; name && i < TF_ARRAY_LEN(reasons); i++)
        if (strcmp(reasons[i].name, name) == 0)
            return reasons[i].code;
    return TF_EINVAL;
}

const char *tf_acme_revoke_reasons_text(void)
{
    return "unspecified|keyCompromise|affiliationChanged|superseded|cessationOfOperation|"
           "privilegeWithdrawn";
}

struct tf_acme_revoke_op {
    struct tf_acme *a;
    struct tf_acme_revoke_op *prev, *next;
    struct tf_cert *cert; /* reference */
    int reason;
    bool with_cert_key;
    tf_acme_revoke_cb cb;
    void *arg;
    struct tf_acme_waiter waiter;
    struct tf_acme_call *call;
};

static void revoke_end(struct tf_acme_revoke_op *op, int err, const char *reason)
{
    struct tf_acme *a = op->a;
    op->cb(err, reason, op->arg);
    if (op->prev)
        op->prev->next = op->next;
    else
        a->revokes = op->next;
    if (op->next)
        op->next->prev = op->prev;
    tf_cert_unref(op->cert);
    free(op);
    tf_acme_release(a);
}

static void on_revoked(int err, const struct tf_http_response *resp,
                       const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_revoke_op *op = arg;
    (void)resp;
    op->call = NULL;
    char why[512] = "";
    if (err && prob && tf_acme_problem_is(prob, "alreadyRevoked"))
        err = 0;
    else if (err && prob)
        tf_acme_problem_summary(prob, why, sizeof why);
    else if (err)
        snprintf(why, sizeof why, "%s", tf_strerror(err));
    revoke_end(op, err, err ? why : NULL);
}

/* {"certificate": base64url(DER), "reason": N}; a new string. */
static char *revoke_payload(const struct tf_cert *c, int reason)
{
    unsigned char *der = NULL;
    int n = i2d_X509(c->leaf, &der);
    if (n <= 0)
        return NULL;
    char *b64 = tf_b64url_encode(der, (size_t)n);
    OPENSSL_free(der);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "certificate", b64);
    cJSON_AddNumberToObject(j, "reason", reason);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    free(b64);
    if (!text)
        abort(); /* cJSON only fails on allocation */
    return text;
}

static void on_revoke_ready(int err, const char *reason, const struct tf_acme_problem *prob,
                            void *arg)
{
    struct tf_acme_revoke_op *op = arg;
    struct tf_acme *a = op->a;
    (void)prob;
    if (!err && a->closing)
        err = UV_ECANCELED;
    if (!err && !a->dir.revoke_cert) {
        revoke_end(op, TF_ENOTFOUND, "the CA's directory has no revokeCert");
        return;
    }
    if (err) {
        revoke_end(op, err, reason ? reason : tf_strerror(err));
        return;
    }
    char *payload = revoke_payload(op->cert, op->reason);
    if (!payload) {
        revoke_end(op, TF_ETLS, "cannot encode the certificate");
        return;
    }
    struct tf_acme_call_spec spec = {
        .method = "POST",
        .url = a->dir.revoke_cert,
        .payload = payload,
        .use_jwk = op->with_cert_key,
        .key = op->with_cert_key ? op->cert->key : a->acct_key,
        .kid = op->with_cert_key ? NULL : a->kid,
        .deadline_ms = tf_mono_ms() + 60000,
    };
    int rc = tf_acme_call_start(a, &spec, on_revoked, op, &op->call);
    free(payload);
    if (rc)
        revoke_end(op, rc, tf_strerror(rc));
}

int tf_acme_revoke(struct tf_acme *a, struct tf_cert *cert, int reason, bool with_cert_key,
                   tf_acme_revoke_cb cb, void *arg)
{
    if (a->closing)
        return TF_ECLOSED;
    if (!cert || !cert->leaf || (with_cert_key && !cert->key) || reason < 0)
        return TF_EINVAL;
    if (a->have_dir && !a->dir.revoke_cert)
        return TF_ENOTFOUND;
    struct tf_acme_revoke_op *op = tf_calloc(1, sizeof(*op));
    op->a = a;
    op->cert = cert;
    tf_cert_ref(cert);
    op->reason = reason;
    op->with_cert_key = with_cert_key;
    op->cb = cb;
    op->arg = arg;
    op->waiter = (struct tf_acme_waiter){
        .cb = on_revoke_ready, .arg = op, .want_account = !with_cert_key};
    op->next = a->revokes;
    if (a->revokes)
        a->revokes->prev = op;
    a->revokes = op;
    tf_acme_hold(a);
    tf_acme_ensure(a, &op->waiter);
    return 0;
}

void tf_acme_revoke_cancel_all(struct tf_acme *a)
{
    for (struct tf_acme_revoke_op *op = a->revokes; op; op = op->next)
        tf_acme_call_cancel(op->call);
}
