/*
 * acme_authz.c: an order's authorizations (RFC 8555 §7.5), one after the other: fetch, pick
 * the first challenge type of --acme-challenges the CA offers, publish its key authorization
 * to the responder (TLS-ALPN-01: RFC 8737 §3; HTTP-01: RFC 8555 §8.3), POST the challenge,
 * poll until valid; then hand the order to acme_finalize.c. A failed validation with another
 * preferred type offered starts a new order for that type (the failed authorization is
 * final, RFC 8555 §7.1.6). Never logs key authorizations.
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

static void start_challenge(struct tf_acme_order *o, const struct tf_acme_challenge_doc *c,
                            int idx)
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
    free(o->chal_token);
    o->chal_token = tf_strdup(c->token);
    o->chal_idx = idx;
    o->chal_type = a->chal_types[idx];
    o->chal_pending = c->status == TF_ACME_ST_PENDING;
    o->published = true;
    struct tf_acme_chal pub = {o->chal_type, o->name, o->chal_token, ka};
    TF_DEBUG(ACME_MOD, "name=%s answering %s", o->name, tf_chal_type_name(o->chal_type));
    if (a->resp.publish_async) {
        o->storage_busy = true;
        a->resp.publish_async(a->resp.arg, &pub, on_published, o);
        OPENSSL_cleanse(ka, strlen(ka));
        free(ka);
        return;
    }
    if (a->resp.publish)
        a->resp.publish(a->resp.arg, &pub);
    OPENSSL_cleanse(ka, strlen(ka));
    free(ka);
    if (tf_acme_order_cancelled(o)) /* the responder may have closed the client */
        return;
    post_challenge(o);
}

/* The place in a->chal_types of the first type from `from` on that z offers with a token,
 * or -1. */
static int pick_type(const struct tf_acme *a, const struct tf_acme_authz_doc *z, int from,
                     const struct tf_acme_challenge_doc **out)
{
    for (int i = from; i < a->n_chal_types; i++) {
        const struct tf_acme_challenge_doc *c =
            tf_acme_authz_find(z, tf_chal_type_name(a->chal_types[i]));
        if (c && c->token) {
            *out = c;
            return i;
        }
    }
    return -1;
}

/* The validation of o's challenge failed: if its authorization offered a later preferred
 * type when it was pending (a failed one lists only the attempted challenge, as Boulder and
 * pebble answer), forget this order and make a new one for that type. True when started. */
static bool fall_back(struct tf_acme_order *o, const char *why)
{
    int next = -1;
    for (int i = o->chal_idx + 1; o->chal_url && next < 0 && i < o->a->n_chal_types; i++)
        if (o->chal_offered & (1u << o->a->chal_types[i]))
            next = i;
    if (next < 0)
        return false;
    TF_INFO(ACME_MOD, "name=%s %s validation failed (%s); trying %s in a new order", o->name,
            tf_chal_type_name(o->chal_type), why, tf_chal_type_name(o->a->chal_types[next]));
    o->chal_from = next;
    free(o->chal_url);
    o->chal_url = NULL;
    free(o->order_url);
    o->order_url = NULL;
    free(o->finalize_url);
    o->finalize_url = NULL;
    for (int i = 0; i < o->n_authz; i++)
        free(o->authz[i]);
    free(o->authz);
    o->authz = NULL;
    o->n_authz = o->authz_idx = 0;
    o->poll_ms = TF_ACME_FIRST_POLL_MS;
    tf_acme_order_after(o, 0, o->again, "a new order");
    return true;
}

static void authz_invalid(struct tf_acme_order *o, const struct tf_acme_authz_doc *z)
{
    /* The challenge we answered; else (invalid before we did) the first preferred one with
     * an error. */
    const char *type = tf_chal_type_name(o->chal_type);
    const struct tf_acme_challenge_doc *c = o->chal_url ? tf_acme_authz_find(z, type) : NULL;
    for (int i = o->chal_from; !o->chal_url && !c && i < o->a->n_chal_types; i++) {
        type = tf_chal_type_name(o->a->chal_types[i]);
        c = tf_acme_authz_find(z, type);
        c = c && c->error ? c : NULL;
    }
    char sum[400];
    if (c && c->error) {
        tf_acme_problem_summary(c->error, sum, sizeof(sum));
        if (!fall_back(o, sum))
            tf_acme_order_fail(o, TF_EPROTO, c->error, "authorization %s (%s): %s",
                               tf_acme_status_name(z->status), type, sum);
    } else if (!fall_back(o, tf_acme_status_name(z->status))) {
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
    const struct tf_acme_challenge_doc *c = NULL, *any = NULL;
    o->chal_offered = 0;
    for (int i = 0; i < o->a->n_chal_types; i++)
        if (pick_type(o->a, z, i, &any) == i)
            o->chal_offered |= 1u << o->a->chal_types[i];
    int idx = pick_type(o->a, z, o->chal_from, &c);
    if (idx < 0) {
        char types[64] = "";
        for (int i = o->chal_from; i < o->a->n_chal_types; i++)
            snprintf(types + strlen(types), sizeof(types) - strlen(types), "%s%s",
                     i > o->chal_from ? ", " : "", tf_chal_type_name(o->a->chal_types[i]));
        tf_acme_order_fail(o, TF_EPROTO, NULL,
                           "authorization for %s%s offers no usable challenge (%s)",
                           z->wildcard ? "*." : "", z->ident_value, types);
    } else {
        start_challenge(o, c, idx);
    }
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
