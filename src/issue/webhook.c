/*
 * webhook.c: event webhooks (webhook_int.h). Every event becomes one JSON body shared by one
 * delivery per --webhook URL. Deliveries live in one list, oldest first, bounded by
 * --webhook-queue (queued, in flight and waiting to retry all count): a delivery that does
 * not fit is dropped and counted, so the certificate manager never waits. At most
 * TF_WEBHOOK_MAX_INFLIGHT requests run at once through a client of our own (its own
 * keep-alive pool and --webhook-ca). A 2xx status delivers; a transport error, a timeout,
 * 408, 429 or 5xx is retried after 1 s, 2 s, 4 s, 8 s (TF_WEBHOOK_MAX_ATTEMPTS in all); any
 * other status fails at once. Each attempt is signed anew with its own timestamp. One timer
 * wakes the list for the next retry and, once closing, for the flush deadline. Never blocks
 * the loop; never logs the secret.
 */
#include "webhook_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/net/http_client.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WH_MOD "webhook"
#define WH_SECRET_MAX 4096
#define WH_MAX_BODY 65536 /* the receiver's answer is not used: a larger one fails */

/* One event's body, shared by its deliveries (one reference each). */
struct wh_event {
    int refs;
    enum tf_webhook_kind kind;
    char *body;
    size_t len;
    char id[33]; /* X-Tlsfront-Delivery: random, the same for every URL and attempt */
};

/* One event for one URL; owned by the sender's list. */
struct wh_delivery {
    struct wh_delivery *next;
    struct tf_webhook *w;
    struct wh_event *ev;       /* one reference */
    int url;                   /* index into w->urls */
    int attempts;              /* started so far */
    uint64_t due_ms;           /* uv_now() from which the next attempt may start */
    struct tf_httpc_req *req;  /* while in flight */
};

struct tf_webhook {
    uv_loop_t *loop;
    struct tf_httpc *http;
    char **urls;               /* owned copies */
    char **shown;              /* per URL, what logs show: scheme://host[:port] (a path,
                                  query or user part may hold a token) */
    int n_urls;
    unsigned char *secret;     /* owned; NULL = unsigned */
    size_t secret_len;
    char *node;                /* owned; NULL = none */
    int max_held, held, inflight;
    struct wh_delivery *head;  /* every held delivery, oldest first */
    uv_timer_t timer;          /* the next retry, or the flush deadline */
    bool closing;              /* no new events; flushing until deadline_ms */
    bool cancelling;           /* the deadline passed (or nothing is held): winding down */
    uint64_t deadline_ms;
    int pending_closes;
    void (*done)(void *arg);
    void *done_arg;
    uint64_t sent, failed, dropped;
    struct tf_log_limit log_drop, log_fail;
};

/* --- the event: JSON and signature ------------------------------------------------------ */

static const char *const kind_names[] = {
#define TF_WEBHOOK_NAME_(n, s) s,
    TF_WEBHOOK_KIND_LIST(TF_WEBHOOK_NAME_)
#undef TF_WEBHOOK_NAME_
};

const char *tf_webhook_kind_name(enum tf_webhook_kind k)
{
    return (unsigned)k < TF_WEBHOOK_KIND_COUNT ? kind_names[k] : "?";
}

static void add_str(cJSON *j, const char *key, const char *val)
{
    if (val)
        cJSON_AddStringToObject(j, key, val);
    else
        cJSON_AddNullToObject(j, key);
}

/* RFC 3339 UTC ("2026-01-02T03:04:05Z") of t, or JSON null for 0. */
static void add_time(cJSON *j, const char *key, int64_t t)
{
    char buf[32];
    struct tm tm;
    time_t tt = (time_t)t;
    if (t == 0 || !gmtime_r(&tt, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        cJSON_AddNullToObject(j, key);
        return;
    }
    cJSON_AddStringToObject(j, key, buf);
}

char *tf_webhook_body(const struct tf_webhook_event *ev)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        abort(); /* cJSON only fails on allocation */
    cJSON_AddStringToObject(j, "event", tf_webhook_kind_name(ev->kind));
    add_str(j, "name", ev->name);
    add_str(j, "ca", ev->ca);
    add_str(j, "serial", ev->serial);
    add_time(j, "not_after", ev->not_after);
    add_str(j, "error", ev->error);
    add_time(j, "time", ev->time);
    if (ev->node)
        cJSON_AddStringToObject(j, "node", ev->node);
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!text)
        abort();
    return text;
}

int tf_webhook_sign(const unsigned char *secret, size_t secret_len, int64_t ts, const char *body,
                    size_t body_len, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (outlen < 7 + 2 * 32 + 1)
        return TF_EINVAL;
    char *msg = tf_asprintf("%lld.", (long long)ts);
    size_t plen = strlen(msg);
    msg = tf_realloc(msg, plen + body_len + 1);
    memcpy(msg + plen, body, body_len);
    int rc = TF_ETLS;
    if (HMAC(EVP_sha256(), secret, (int)secret_len, (const unsigned char *)msg, plen + body_len,
             mac, &mac_len) &&
        mac_len == 32) {
        memcpy(out, "sha256=", 7);
        for (unsigned int i = 0; i < mac_len; i++) {
            out[7 + 2 * i] = hex[mac[i] >> 4];
            out[8 + 2 * i] = hex[mac[i] & 15];
        }
        out[7 + 2 * mac_len] = '\0';
        rc = 0;
    }
    free(msg);
    return rc;
}

/* --- deliveries ------------------------------------------------------------------------- */

static void pump(struct tf_webhook *w);
static void maybe_finish(struct tf_webhook *w);

static void event_unref(struct wh_event *ev)
{
    if (--ev->refs > 0)
        return;
    free(ev->body);
    free(ev);
}

/* Unlink d from the list and free it. */
static void delivery_free(struct wh_delivery *d)
{
    struct tf_webhook *w = d->w;
    struct wh_delivery **pp = &w->head;
    while (*pp && *pp != d)
        pp = &(*pp)->next;
    if (*pp)
        *pp = d->next;
    w->held--;
    event_unref(d->ev);
    free(d);
}

static void delivery_failed(struct wh_delivery *d, const char *why)
{
    struct tf_webhook *w = d->w;
    w->failed++;
    tf_log_limited(&w->log_fail, (int64_t)tf_mono_ms(), TF_LOG_WARN, WH_MOD,
                   "event=%s id=%s url=%s not delivered after %d attempt%s: %s",
                   tf_webhook_kind_name(d->ev->kind), d->ev->id, w->shown[d->url], d->attempts,
                   d->attempts == 1 ? "" : "s", why);
    delivery_free(d);
}

static bool retryable(int err, int status)
{
    if (err != 0)
        return err != UV_ECANCELED && err != TF_ETOOBIG;
    return status == 408 || status == 429 || status >= 500;
}

static void on_response(int err, const struct tf_http_response *resp, void *arg)
{
    struct wh_delivery *d = arg;
    struct tf_webhook *w = d->w;
    d->req = NULL;
    w->inflight--;
    int status = err == 0 ? resp->status : 0;
    char why[64];
    if (err == 0)
        snprintf(why, sizeof why, "HTTP %d", status);
    else
        snprintf(why, sizeof why, "%s", tf_strerror(err));
    if (err == 0 && status >= 200 && status < 300) {
        w->sent++;
        TF_DEBUG(WH_MOD, "event=%s id=%s url=%s delivered (HTTP %d)",
                 tf_webhook_kind_name(d->ev->kind), d->ev->id, w->shown[d->url], status);
        delivery_free(d);
    } else if (retryable(err, status) && d->attempts < TF_WEBHOOK_MAX_ATTEMPTS) {
        d->due_ms = uv_now(w->loop) + ((uint64_t)TF_WEBHOOK_RETRY_BASE_MS << (d->attempts - 1));
        TF_DEBUG(WH_MOD, "event=%s id=%s url=%s attempt %d failed (%s): retrying",
                 tf_webhook_kind_name(d->ev->kind), d->ev->id, w->shown[d->url], d->attempts,
                 why);
    } else {
        delivery_failed(d, why);
    }
    pump(w);
    maybe_finish(w);
}

/* Start one attempt of d: sign it now and POST it. */
static void start_attempt(struct wh_delivery *d)
{
    struct tf_webhook *w = d->w;
    char ts[24], sig[80];
    int64_t now = (int64_t)time(NULL);
    snprintf(ts, sizeof ts, "%lld", (long long)now);
    struct tf_http_header hdr[4] = {
        {(char *)"X-Tlsfront-Event", (char *)tf_webhook_kind_name(d->ev->kind)},
        {(char *)"X-Tlsfront-Delivery", d->ev->id},
        {(char *)"X-Tlsfront-Timestamp", ts},
        {(char *)"X-Tlsfront-Signature", sig},
    };
    int n_hdr = 3;
    d->attempts++;
    if (w->secret) {
        if (tf_webhook_sign(w->secret, w->secret_len, now, d->ev->body, d->ev->len, sig,
                            sizeof sig) != 0) {
            tf_log_ssl(TF_LOG_ERROR, WH_MOD, "signing an event");
            delivery_failed(d, "signing failed");
            return;
        }
        n_hdr = 4;
    }
    struct tf_http_request rq = {.method = "POST",
                                 .url = w->urls[d->url],
                                 .content_type = "application/json",
                                 .body = d->ev->body,
                                 .body_len = d->ev->len,
                                 .headers = hdr,
                                 .n_headers = n_hdr,
                                 .timeout_ms = TF_WEBHOOK_TIMEOUT_MS,
                                 .max_body = WH_MAX_BODY};
    int r = tf_httpc_request(w->http, &rq, on_response, d, &d->req);
    if (r != 0) {
        d->req = NULL;
        delivery_failed(d, tf_strerror(r)); /* a URL the client cannot use: permanent */
        return;
    }
    w->inflight++;
}

static void on_timer(uv_timer_t *t)
{
    struct tf_webhook *w = t->data;
    if (w->closing && !w->cancelling && uv_now(w->loop) >= w->deadline_ms) {
        /* Flush time is over: what is in flight ends with UV_ECANCELED (counted as failed
         * in on_response), what waits is given up now. */
        w->cancelling = true;
        for (struct wh_delivery *d = w->head, *n; d; d = n) {
            n = d->next;
            if (d->req)
                tf_httpc_cancel(d->req);
            else
                delivery_failed(d, "shutting down");
        }
        maybe_finish(w);
        return;
    }
    pump(w);
}

/* Start what is due while slots are free; arm the timer for the next due retry (and, once
 * closing, the flush deadline). Retries that could only start after the deadline are given
 * up. */
static void pump(struct tf_webhook *w)
{
    if (w->cancelling)
        return;
    uint64_t now = uv_now(w->loop), next = UINT64_MAX;
    for (struct wh_delivery *d = w->head, *n; d; d = n) {
        n = d->next; /* start_attempt may free d */
        if (d->req)
            continue;
        if (w->closing && d->due_ms >= w->deadline_ms)
            delivery_failed(d, "shutting down");
        else if (d->due_ms <= now && w->inflight < TF_WEBHOOK_MAX_INFLIGHT)
            start_attempt(d);
        else if (d->due_ms > now && d->due_ms < next)
            next = d->due_ms;
    }
    if (w->closing && w->deadline_ms < next)
        next = w->deadline_ms;
    if (next == UINT64_MAX) {
        uv_timer_stop(&w->timer);
        return;
    }
    int r = uv_timer_start(&w->timer, on_timer, next > now ? next - now : 0, 0);
    if (r != 0)
        TF_ERROR(WH_MOD, "timer: %s", uv_strerror(r)); /* cannot fail on an open handle */
}

void tf_webhook_emit(struct tf_webhook *w, enum tf_webhook_kind kind, const char *name,
                     const char *ca, const struct tf_cert *cert, const char *error)
{
    if (!w)
        return;
    struct tf_webhook_event fields = {.kind = kind,
                                      .name = name,
                                      .ca = ca,
                                      .serial = cert ? cert->serial : NULL,
                                      .error = error,
                                      .node = w->node,
                                      .not_after = cert ? cert->not_after : 0,
                                      .time = (int64_t)time(NULL)};
    struct wh_event *ev = tf_calloc(1, sizeof *ev);
    ev->kind = kind;
    ev->body = tf_webhook_body(&fields);
    ev->len = strlen(ev->body);
    ev->refs = 1; /* ours until the deliveries are linked */
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        memset(rnd, 0, sizeof rnd); /* an id of zeros: receivers cannot dedupe, nothing else */
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(ev->id + 2 * i, 3, "%02x", rnd[i]);
    struct wh_delivery **tail = &w->head;
    while (*tail)
        tail = &(*tail)->next;
    for (int i = 0; i < w->n_urls; i++) {
        if (w->closing || w->held >= w->max_held) {
            w->dropped++;
            tf_log_limited(&w->log_drop, (int64_t)tf_mono_ms(), TF_LOG_WARN, WH_MOD,
                           "event=%s name=%s url=%s dropped: %s", tf_webhook_kind_name(kind),
                           name, w->shown[i], w->closing ? "shutting down" : "queue full");
            continue;
        }
        struct wh_delivery *d = tf_calloc(1, sizeof *d);
        d->w = w;
        d->ev = ev;
        ev->refs++;
        d->url = i;
        d->due_ms = uv_now(w->loop);
        *tail = d;
        tail = &d->next;
        w->held++;
    }
    event_unref(ev);
    pump(w);
}

void tf_webhook_metrics(const struct tf_webhook *w, struct tf_metrics_buf *out)
{
    if (!w)
        return;
    tf_metrics_counter(out, "tlsfront_webhook_sent_total", "Webhook deliveries answered 2xx.",
                       NULL, w->sent);
    tf_metrics_counter(out, "tlsfront_webhook_failed_total",
                       "Webhook deliveries given up (attempts spent, refused, or shutdown).",
                       NULL, w->failed);
    tf_metrics_counter(out, "tlsfront_webhook_dropped_total",
                       "Webhook deliveries dropped because the queue was full.", NULL,
                       w->dropped);
    tf_metrics_gauge(out, "tlsfront_webhook_queued",
                     "Webhook deliveries held (queued, in flight, waiting to retry).", NULL,
                     w->held);
}

/* --- start and stop --------------------------------------------------------------------- */

/* The secret: the file's bytes without trailing whitespace (a newline an editor added). */
static int read_secret(struct tf_webhook *w, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "--webhook-secret-file: %s: %s", path, strerror(errno));
        return 2;
    }
    unsigned char *buf = tf_malloc(WH_SECRET_MAX + 1);
    size_t n = fread(buf, 1, WH_SECRET_MAX + 1, f);
    bool bad = ferror(f) != 0;
    fclose(f);
    while (n > 0 && strchr(" \t\r\n", buf[n - 1]) && buf[n - 1] != '\0')
        n--;
    if (bad || n == 0 || n > WH_SECRET_MAX) {
        snprintf(err, errlen, "--webhook-secret-file: %s: %s", path,
                 bad ? "read error" : n == 0 ? "empty" : "longer than 4096 bytes");
        free(buf);
        return 2;
    }
    w->secret = buf;
    w->secret_len = n;
    return 0;
}

/* scheme://host[:port] of url (userinfo, path, query and fragment left out), allocated. */
static char *url_shown(const char *url)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    size_t end = strcspn(host, "/?#");
    const char *at = memchr(host, '@', end);
    const char *from = at ? at + 1 : host;
    return tf_asprintf("%.*s%.*s", (int)(host - url), url, (int)(host + end - from), from);
}

static void wh_free(struct tf_webhook *w)
{
    for (int i = 0; i < w->n_urls; i++) {
        free(w->urls[i]);
        free(w->shown[i]);
    }
    free(w->urls);
    free(w->shown);
    if (w->secret)
        OPENSSL_cleanse(w->secret, w->secret_len);
    free(w->secret);
    free(w->node);
    free(w);
}

int tf_webhook_new(uv_loop_t *loop, const struct tf_config *cfg, const char *node,
                   struct tf_webhook **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->n_webhooks == 0)
        return 0;
    struct tf_webhook *w = tf_calloc(1, sizeof *w);
    w->loop = loop;
    w->max_held = cfg->webhook_queue > 0 ? cfg->webhook_queue : 1000;
    w->log_drop.interval_ms = w->log_fail.interval_ms = TF_LOG_LIMIT_DEFAULT_MS;
    w->node = node ? tf_strdup(node) : NULL;
    w->urls = tf_calloc((size_t)cfg->n_webhooks, sizeof *w->urls);
    w->shown = tf_calloc((size_t)cfg->n_webhooks, sizeof *w->shown);
    for (int i = 0; i < cfg->n_webhooks; i++) {
        w->urls[i] = tf_strdup(cfg->webhooks[i]);
        w->shown[i] = url_shown(cfg->webhooks[i]);
        w->n_urls++;
    }
    if (cfg->webhook_secret_file && read_secret(w, cfg->webhook_secret_file, err, errlen) != 0) {
        wh_free(w);
        return 2;
    }
    char why[400] = "";
    w->http = tf_httpc_new(loop, cfg->webhook_ca, why, sizeof why);
    if (!w->http) {
        snprintf(err, errlen, "--webhook-ca: %s", why);
        wh_free(w);
        return 2;
    }
    uv_timer_init(loop, &w->timer);
    w->timer.data = w;
    if (!w->secret)
        TF_WARN(WH_MOD, "webhook events are sent unsigned (no --webhook-secret-file)");
    *out = w;
    return 0;
}

static void close_step(void *arg)
{
    struct tf_webhook *w = arg;
    if (--w->pending_closes > 0)
        return;
    void (*done)(void *) = w->done;
    void *done_arg = w->done_arg;
    wh_free(w);
    if (done)
        done(done_arg);
}

static void on_timer_closed(uv_handle_t *h)
{
    close_step(h->data);
}

/* Closing and nothing held any more: close the timer and the client, then free. */
static void maybe_finish(struct tf_webhook *w)
{
    if (!w->closing || w->held > 0 || w->pending_closes > 0)
        return;
    w->cancelling = true;
    w->pending_closes = 2;
    uv_close((uv_handle_t *)&w->timer, on_timer_closed);
    tf_httpc_close(w->http, close_step, w);
}

void tf_webhook_close(struct tf_webhook *w, uint64_t flush_ms, void (*done)(void *arg),
                      void *arg)
{
    if (!w) {
        if (done)
            done(arg);
        return;
    }
    if (w->closing)
        return;
    w->closing = true;
    w->done = done;
    w->done_arg = arg;
    w->deadline_ms = uv_now(w->loop) + flush_ms;
    if (w->held > 0)
        TF_INFO(WH_MOD, "delivering %d held event%s for at most %llu ms", w->held,
                w->held == 1 ? "" : "s", (unsigned long long)flush_ms);
    pump(w);
    maybe_finish(w);
}
