/*
 * webhook_int.h: event webhooks of the certificate manager (webhook.c). The manager reports
 * what happened to a name (obtained, renewed, failed, paused by the CA, denied by --ask) with
 * one call; this module turns it into a JSON event, signs it (HMAC-SHA256 over the timestamp
 * and the body, keyed by --webhook-secret-file) and POSTs it to every --webhook URL from the
 * control loop, with a bounded queue, a cap on requests in flight and bounded retries with
 * exponential backoff. It never blocks the loop and never delays the manager: an event that
 * does not fit in the queue is dropped and counted. Control loop only.
 */
#ifndef TF_WEBHOOK_INT_H
#define TF_WEBHOOK_INT_H

#include "tlsfront/base/metrics.h"
#include "tlsfront/config/config.h"
#include "tlsfront/tls/certstore.h"

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Event types: X(ENUM_SUFFIX, "name"). The name is the payload's "event" field. */
#define TF_WEBHOOK_KIND_LIST(X)                                                                    \
    X(OBTAINED, "certificate_obtained")                                                            \
    X(RENEWED, "certificate_renewed")                                                              \
    X(FAILED, "certificate_failed")                                                                \
    X(PAUSED, "name_paused")                                                                       \
    X(DENIED_BY_ASK, "name_denied_by_ask")

enum tf_webhook_kind {
#define TF_WEBHOOK_ENUM_(n, s) TF_WEBHOOK_##n,
    TF_WEBHOOK_KIND_LIST(TF_WEBHOOK_ENUM_)
#undef TF_WEBHOOK_ENUM_
    TF_WEBHOOK_KIND_COUNT
};

/* Deliveries in flight at once, attempts per delivery (the first and its retries), the
 * first retry delay (doubled each time) and one attempt's time limit. */
#define TF_WEBHOOK_MAX_INFLIGHT 4
#define TF_WEBHOOK_MAX_ATTEMPTS 5
#define TF_WEBHOOK_RETRY_BASE_MS 1000
#define TF_WEBHOOK_TIMEOUT_MS 10000

/* One event's fields; strings are borrowed, NULL ones are JSON null. */
struct tf_webhook_event {
    enum tf_webhook_kind kind;
    const char *name, *ca, *serial, *error, *node;
    int64_t not_after; /* unix seconds; 0 = null */
    int64_t time;      /* unix seconds */
};

/* The event's name ("certificate_obtained"), a static string; "?" out of range. */
const char *tf_webhook_kind_name(enum tf_webhook_kind k);

/* The JSON body of ev (one object, no newline), allocated; the caller frees it. */
char *tf_webhook_body(const struct tf_webhook_event *ev);

/* The X-Tlsfront-Signature value for body sent at ts (unix seconds): "sha256=" and the
 * lower-case hex HMAC-SHA256 of "<ts>.<body>" keyed by secret, into out (at least 72 bytes).
 * Returns 0, or TF_ETLS when OpenSSL fails. */
int tf_webhook_sign(const unsigned char *secret, size_t secret_len, int64_t ts, const char *body,
                    size_t body_len, char *out, size_t outlen);

struct tf_webhook;

/* Create the sender for cfg's --webhook URLs on loop; *out stays NULL when there are none.
 * Reads --webhook-secret-file here (start-up, synchronously: a missing, unreadable or empty
 * file is a configuration error). node (copied, may be NULL) goes into every event. Returns
 * 0, or 2 with err naming the flag. */
int tf_webhook_new(uv_loop_t *loop, const struct tf_config *cfg, const char *node,
                   struct tf_webhook **out, char *err, size_t errlen);

/* Queue one event for every URL (w NULL: nothing). cert (borrowed, may be NULL) gives the
 * serial and not-after; error may be NULL. Returns at once: delivery happens later from loop
 * callbacks, and a delivery that does not fit in the queue is dropped and counted. */
void tf_webhook_emit(struct tf_webhook *w, enum tf_webhook_kind kind, const char *name,
                     const char *ca, const struct tf_cert *cert, const char *error);

/* Append tlsfront_webhook_{sent,failed,dropped}_total and tlsfront_webhook_queued (w NULL:
 * nothing). */
void tf_webhook_metrics(const struct tf_webhook *w, struct tf_metrics_buf *out);

/* Stop taking events, keep delivering what is held for at most flush_ms more (retries that
 * would start later are given up), then cancel what is left (counted as failed), close the
 * HTTP client and free w; done(arg) runs then, from a loop callback. w NULL: done runs now. */
void tf_webhook_close(struct tf_webhook *w, uint64_t flush_ms, void (*done)(void *arg),
                      void *arg);

#endif
