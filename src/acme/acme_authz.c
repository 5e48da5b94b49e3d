/*
 * acme_authz.c: an order's authorizations (RFC 8555 §7.5), one after the other: fetch,
 * publish the TLS-ALPN-01 key authorization to the responder (RFC 8737 §3), POST the
 * challenge, poll until valid; then hand the order to acme_finalize.c. Never logs key
 * authorizations.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void step_authz(struct tf_acme_order *o);

/* ---- authorizations (RFC 8555 §7.5, RFC 8737 §3) ---- */

static void on_authz(int err, const struct tf_http_response *resp,
                     const struct tf_acme_problem *prob, void *arg);

static void step_poll_authz(struct tf_acme_order *o)
{
    int rc = tf_acme_order_post(o, o->authz[o->authz_idx], "", NULL, on_authz);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "authorization: cannot start the request");
}

static void on_challenge(int err, const struct tf_http_response *resp,
                         const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    if (!tf_acme_order_answer(o, "challenge", err, prob))
        return;
    tf_acme_order_after(o, tf_acme_order_poll_delay(o, resp), step_poll_authz,
                        "the authorization");
}

/* The challenge is published (on every node, for a shared responder): POST it. */
static void post_challenge(struct tf_acme_order *o)
{
    o->poll_ms = TF_ACME_FIRST_POLL_MS;
    if (!o->chal_pending) {
        /* Already being validated (an earlier order of ours): just poll. */
        tf_acme_order_after(o, 0, step_poll_authz, "the authorization");
        return;
    }
    int rc = tf_acme_order_post(o, o->chal_url, "{}", NULL, on_challenge);
    if (rc)
        tf_acme_order_fail(o, rc, NULL, "challenge: cannot start the request");
}

static void on_published(void *ctx)
{
    struct tf_acme_order *o = ctx;
    o->storage_busy = false;
    if (tf_acme_order_cancelled(o))
        return;
    post_challenge(o);
}

static void start_challenge(struct tf_acme_order *o, const struct tf_acme_challenge_doc *c)
{
    struct tf_acme *a = o->a;
    char *ka = tf_key_authorization(c->token, a->acct_key);
    if (!ka) {
        tf_log_ssl(TF_LOG_ERROR, ACME_MOD, "computing the key authorization");
        tf_acme_order_fail(o, TF_ETLS, NULL, "cannot compute the key authorization");
        return;
    }
    free(o->chal_url);
    o->chal_url = tf_strdup(c->url);
    o->chal_pending = c->status == TF_ACME_ST_PENDING;
    o->published = true;
    if (a->resp.publish_async) {
        o->storage_busy = true;
        a->resp.publish_async(a->resp.arg, o->name, ka, on_published, o);
        OPENSSL_cleanse(ka, strlen(ka));
        free(ka);
        return;
    }
    if (a->resp.publish)
        a->resp.publish(a->resp.arg, o->name, ka);
    OPENSSL_cleanse(ka, strlen(ka));
    free(ka);
    if (tf_acme_order_cancelled(o)) /* the responder may have closed the client */
        return;
    post_challenge(o);
}

static void authz_invalid(struct tf_acme_order *o, const struct tf_acme_authz_doc *z)
{
    const struct tf_acme_challenge_doc *c = tf_acme_authz_find(z, "tls-alpn-01");
    if (c && c->error) {
        char sum[400];
        tf_acme_problem_summary(c->error, sum, sizeof(sum));
        tf_acme_order_fail(o, TF_EPROTO, c->error, "authorization %s: %s",
                           tf_acme_status_name(z->status), sum);
    } else {
        tf_acme_order_fail(o, TF_EPROTO, NULL, "authorization for %s is %s", z->ident_value,
                           tf_acme_status_name(z->status));
    }
}

static void authz_pending(struct tf_acme_order *o, const struct tf_acme_authz_doc *z,
                          const struct tf_http_response *resp)
{
    if (o->chal_url) {
        tf_acme_order_after(o, tf_acme_order_poll_delay(o, resp), step_poll_authz,
                            "the authorization");
        return;
    }
    const struct tf_acme_challenge_doc *c = tf_acme_authz_find(z, "tls-alpn-01");
    if (!c || !c->token)
        tf_acme_order_fail(o, TF_EPROTO, NULL,
                           "authorization for %s%s offers no usable tls-alpn-01 challenge",
                           z->wildcard ? "*." : "", z->ident_value);
    else
        start_challenge(o, c);
}

static void on_authz(int err, const struct tf_http_response *resp,
                     const struct tf_acme_problem *prob, void *arg)
{
    struct tf_acme_order *o = arg;
    if (!tf_acme_order_answer(o, "authorization", err, prob))
        return;
    struct tf_acme_authz_doc z;
    char why[256];
    if (tf_acme_parse_authz(resp->body, resp->body_len, &z, why, sizeof(why))) {
        tf_acme_order_fail(o, TF_EPROTO, NULL, "%s", why);
    } else if (z.status == TF_ACME_ST_VALID) {
        tf_acme_order_unpublish(o);
        free(o->chal_url);
        o->chal_url = NULL;
        o->authz_idx++;
        step_authz(o);
    } else if (z.status == TF_ACME_ST_PENDING || z.status == TF_ACME_ST_PROCESSING) {
        authz_pending(o, &z, resp);
    } else {
        tf_acme_order_unpublish(o);
        authz_invalid(o, &z);
    }
    tf_acme_authz_doc_clear(&z);
}

static void step_authz(struct tf_acme_order *o)
{
    if (o->authz_idx >= o->n_authz) {
        o->poll_ms = TF_ACME_FIRST_POLL_MS;
        tf_acme_order_poll_ready(o);
        return;
    }
    step_poll_authz(o);
}

void tf_acme_order_authorize(struct tf_acme_order *o)
{
    o->authz_idx = 0;
    step_authz(o);
}
