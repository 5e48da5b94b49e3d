/*
 * acme_call.c: one request to the ACME server with the retry policy RFC 8555 asks for. A
 * signed POST takes a nonce from the pool (or HEADs newNonce), signs with the account key
 * (jwk for newAccount, kid after), and on badNonce signs again with the nonce the error
 * carried (§6.5). 503 and rateLimited wait for Retry-After if it ends before the deadline
 * (§6.6); network errors and other 5xx back off exponentially with jitter. Every wait is on a
 * timer and bounded in count and by the caller's deadline: never a hot retry loop. This
 * layer logs nothing; the order that decides logs once.
 */
#include "acme_int.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/log.h"

#include <openssl/err.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tf_acme_call {
    struct tf_acme *a;
    char *method, *url, *payload, *kid, *accept;
    bool use_jwk;
    EVP_PKEY *key;               /* one reference, for POST */
    uint64_t deadline_ms;
    size_t max_body;
    tf_acme_call_cb cb;
    void *arg;
    struct tf_acme_call **out;   /* cleared when the call ends */

    struct tf_httpc_req *req;
    bool fetching_nonce, timer_armed, cancelled;
    uv_timer_t timer;
    int bad_nonce_left, backoff_left, rate_left, attempt;
};

static void call_send(struct tf_acme_call *c);

static char *dup_opt(const char *s) { return s ? tf_strdup(s) : NULL; }

static void on_call_closed(uv_handle_t *h)
{
    struct tf_acme_call *c = h->data;
    struct tf_acme *a = c->a;
    free(c->method);
    free(c->url);
    free(c->payload);
    free(c->kid);
    free(c->accept);
    EVP_PKEY_free(c->key);
    free(c);
    tf_acme_release(a);
}

/* Deliver the result once, then free the call after its timer closed. */
static void call_finish(struct tf_acme_call *c, int err, const struct tf_http_response *resp,
                        const struct tf_acme_problem *prob)
{
    if (c->out)
        *c->out = NULL;
    c->cb(err, resp, prob, c->arg);
    uv_close((uv_handle_t *)&c->timer, on_call_closed);
}

static void on_call_timer(uv_timer_t *t)
{
    struct tf_acme_call *c = t->data;
    c->timer_armed = false;
    call_send(c);
}

static uint64_t rnd64(void)
{
    uint64_t r = 0;
    if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1) {
        ERR_clear_error();
        r = uv_hrtime();
    }
    return r;
}

/* Wait delay_ms and send again, unless that passes the deadline. */
static void call_retry_after(struct tf_acme_call *c, uint64_t delay_ms, int err,
                             const struct tf_acme_problem *prob)
{
    if (tf_mono_ms() + delay_ms >= c->deadline_ms) {
        call_finish(c, prob ? TF_EPROTO : (err ? err : TF_ETIMEDOUT), NULL, prob);
        return;
    }
    c->timer_armed = true;
    uv_timer_start(&c->timer, on_call_timer, delay_ms, 0);
}

/* Exponential backoff with jitter: 250 ms, 500 ms, 1 s, 2 s (+ up to 50%). */
static void call_backoff(struct tf_acme_call *c, int err, const struct tf_acme_problem *prob)
{
    if (c->backoff_left-- <= 0) {
        call_finish(c, prob ? TF_EPROTO : err, NULL, prob);
        return;
    }
    uint64_t base = 250ull << TF_MIN(c->attempt, 6);
    c->attempt++;
    c->a->stats.backoff_retries++;
    call_retry_after(c, base + rnd64() % (base / 2 + 1), err, prob);
}

static bool transient(int err)
{
    return err != UV_ECANCELED && err != TF_ETLS && err != TF_ETOOBIG && err != TF_EPROTO &&
           err != TF_EINVAL;
}

static void take_nonce(struct tf_acme *a, const struct tf_http_response *resp)
{
    const char *n = resp ? tf_http_response_header(resp, "Replay-Nonce") : NULL;
    if (n)
        tf_acme_nonce_put(a, n);
}

/* An error status: badNonce, rate limits, 5xx, or final. */
static void call_error_status(struct tf_acme_call *c, const struct tf_http_response *resp)
{
    struct tf_acme_problem p;
    tf_acme_problem_parse(resp->body, resp->body_len, resp->status, &p);
    int64_t wait_s = tf_http_response_retry_after(resp);
    if (tf_acme_problem_is(&p, "badNonce") && c->bad_nonce_left-- > 0) {
        c->a->stats.bad_nonce_retries++;
        call_send(c);
    } else if (tf_acme_problem_is_paused(&p, NULL)) {
        call_finish(c, TF_EPROTO, resp, &p);
    } else if ((resp->status == 503 || tf_acme_problem_is(&p, "rateLimited")) && wait_s >= 0) {
        if (c->rate_left-- <= 0)
            call_finish(c, TF_EPROTO, resp, &p);
        else
            call_retry_after(c, (uint64_t)wait_s * 1000, TF_EPROTO, &p);
    } else if (resp->status >= 500) {
        call_backoff(c, TF_EPROTO, &p);
    } else {
        call_finish(c, TF_EPROTO, resp, &p);
    }
    tf_acme_problem_clear(&p);
}

/* newNonce answered without a usable Replay-Nonce: a problem of our own making, so the
 * order's reason says what went wrong. */
static void call_no_nonce(struct tf_acme_call *c, int status)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "newNonce answered HTTP %d without a valid Replay-Nonce",
             status);
    struct tf_acme_problem p = {.type = "", .detail = detail, .status = status};
    call_finish(c, TF_EPROTO, NULL, &p);
}

static void on_call_http(int err, const struct tf_http_response *resp, void *arg)
{
    struct tf_acme_call *c = arg;
    c->req = NULL;
    take_nonce(c->a, resp);
    if (c->cancelled || err == UV_ECANCELED) {
        call_finish(c, UV_ECANCELED, NULL, NULL);
    } else if (err) {
        if (transient(err))
            call_backoff(c, err, NULL);
        else
            call_finish(c, err, NULL, NULL);
    } else if (c->fetching_nonce) {
        c->fetching_nonce = false;
        if (resp->status >= 500)
            call_backoff(c, TF_EPROTO, NULL);
        else if (c->a->n_nonces == 0)
            call_no_nonce(c, resp->status);
        else
            call_send(c);
    } else if (resp->status >= 400) {
        call_error_status(c, resp);
    } else {
        call_finish(c, 0, resp, NULL);
    }
}

static int http_send(struct tf_acme_call *c, const char *method, const char *url,
                     const char *body, const char *accept)
{
    struct tf_http_header hdr[1];
    int n_hdr = 0;
    if (accept)
        hdr[n_hdr++] = (struct tf_http_header){.name = "Accept", .value = (char *)accept};
    uint64_t now = tf_mono_ms();
    uint64_t left = c->deadline_ms > now ? c->deadline_ms - now : 1;
    struct tf_http_request req = {
        .method = method,
        .url = url,
        .content_type = body ? "application/jose+json" : NULL,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .headers = hdr,
        .n_headers = n_hdr,
        .timeout_ms = (uint32_t)TF_MAX(TF_MIN(left, 30000), 1),
        .max_body = c->max_body,
    };
    c->a->stats.requests++;
    return tf_httpc_request(c->a->http, &req, on_call_http, c, &c->req);
}

/* Send (or resend) the request: GET/HEAD as is, POST signed with a fresh nonce. */
static void call_send(struct tf_acme_call *c)
{
    if (c->cancelled) {
        call_finish(c, UV_ECANCELED, NULL, NULL);
        return;
    }
    int rc;
    if (strcmp(c->method, "POST") != 0) {
        rc = http_send(c, c->method, c->url, NULL, c->accept);
    } else {
        char *nonce = tf_acme_nonce_take(c->a);
        if (!nonce) {
            if (!c->a->have_dir) {
                call_finish(c, TF_EINVAL, NULL, NULL);
                return;
            }
            c->fetching_nonce = true;
            rc = http_send(c, "HEAD", c->a->dir.new_nonce, NULL, NULL);
        } else {
            char *jws = tf_jws_sign(c->key, c->use_jwk ? NULL : c->kid, nonce, c->url,
                                    c->payload);
            free(nonce);
            if (!jws) {
                tf_log_ssl(TF_LOG_ERROR, ACME_MOD, "signing a request");
                call_finish(c, TF_ETLS, NULL, NULL);
                return;
            }
            rc = http_send(c, "POST", c->url, jws, c->accept);
            free(jws);
        }
    }
    if (rc)
        call_finish(c, rc, NULL, NULL);
}

int tf_acme_call_start(struct tf_acme *a, const struct tf_acme_call_spec *spec,
                       tf_acme_call_cb cb, void *arg, struct tf_acme_call **out)
{
    bool post = strcmp(spec->method, "POST") == 0;
    if (post && (!spec->key || !spec->payload || (!spec->use_jwk && !spec->kid)))
        return TF_EINVAL;
    struct tf_acme_call *c = tf_calloc(1, sizeof(*c));
    c->a = a;
    c->method = tf_strdup(spec->method);
    c->url = tf_strdup(spec->url);
    c->payload = dup_opt(spec->payload);
    c->kid = dup_opt(spec->kid);
    c->accept = dup_opt(spec->accept);
    c->use_jwk = spec->use_jwk;
    if (post && EVP_PKEY_up_ref(spec->key))
        c->key = spec->key;
    c->deadline_ms = spec->deadline_ms ? spec->deadline_ms : tf_mono_ms() + 60000;
    c->max_body = spec->max_body;
    c->cb = cb;
    c->arg = arg;
    c->out = out;
    c->bad_nonce_left = ACME_BAD_NONCE_RETRIES;
    c->backoff_left = ACME_BACKOFF_RETRIES;
    c->rate_left = ACME_RATE_RETRIES;
    uv_timer_init(a->loop, &c->timer);
    c->timer.data = c;
    tf_acme_hold(a);
    if (out)
        *out = c;
    /* Start from a timer so the callback never runs inside this function, even when the
     * first send fails synchronously. */
    c->timer_armed = true;
    uv_timer_start(&c->timer, on_call_timer, 0, 0);
    return 0;
}

void tf_acme_call_cancel(struct tf_acme_call *c)
{
    if (!c || c->cancelled)
        return;
    c->cancelled = true;
    if (c->req)
        tf_httpc_cancel(c->req);
    else if (c->timer_armed)
        uv_timer_start(&c->timer, on_call_timer, 0, 0);
}

/* ---- the client's lifetime ---- */

void tf_acme_hold(struct tf_acme *a) { a->refs++; }

static void on_acme_closed(uv_handle_t *h)
{
    struct tf_acme *a = h->data;
    void (*done)(void *) = a->close_done;
    void *arg = a->close_arg;
    for (int i = 0; i < a->n_nonces; i++)
        free(a->nonces[i]);
    tf_acme_directory_clear(&a->dir);
    EVP_PKEY_free(a->acct_key);
    free(a->kid);
    free(a->dir_url);
    free(a->ca_id);
    free(a->label);
    free(a->email);
    free(a->profile);
    free(a->eab_kid);
    free(a->eab_hmac);
    free(a);
    if (done)
        done(arg);
}

void tf_acme_release(struct tf_acme *a)
{
    if (--a->refs == 0)
        uv_close((uv_handle_t *)&a->close_timer, on_acme_closed);
}

/* ---- nonce pool (RFC 8555 §7.2): newest first, bounded ---- */

char *tf_acme_nonce_take(struct tf_acme *a)
{
    if (a->n_nonces == 0)
        return NULL;
    return a->nonces[--a->n_nonces];
}

void tf_acme_nonce_put(struct tf_acme *a, const char *nonce)
{
    if (!tf_acme_nonce_valid(nonce))
        return;
    if (a->n_nonces == ACME_MAX_NONCES) {
        free(a->nonces[0]);
        memmove(a->nonces, a->nonces + 1, sizeof(a->nonces[0]) * (ACME_MAX_NONCES - 1));
        a->n_nonces--;
    }
    a->nonces[a->n_nonces++] = tf_strdup(nonce);
}
