/*
 * admin.h: the admin HTTP endpoint (--admin ADDR:PORT): /healthz, /readyz, /metrics and
 * /certs over plain HTTP/1.1 parsed with llhttp. It runs on the control loop only, never on
 * a worker, and owns only its listener and its connections; all content comes from the
 * hooks the server supplies, so a scrape cannot change proxy state. It never blocks.
 */
#ifndef TF_ADMIN_H
#define TF_ADMIN_H

#include "tlsfront/base/metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* What the server provides. Every hook is called on the admin's loop, during a request,
 * and must not block. A NULL hook answers 503 (healthy/ready) or 404 (metrics/certs). */
struct tf_admin_hooks {
    void *arg;
    /* Process alive and loops responsive: 200 "ok" or 503 "unhealthy". */
    bool (*healthy)(void *arg);
    /* Listeners bound and certificates loaded: 200 "ready" or 503 "not ready". */
    bool (*ready)(void *arg);
    /* Append the exposition text (metrics.h writers) to out, which is empty on entry. */
    void (*metrics)(void *arg, struct tf_metrics_buf *out);
    /* Append a JSON document (usually an array of certificate objects) to out. */
    void (*certs_json)(void *arg, struct tf_metrics_buf *out);
    /* Whether the storage is reachable (NULL: always). A ready node whose storage is down
     * stays ready (it serves what it holds) and says "ready; storage down". */
    bool (*storage_up)(void *arg);
};

/* Defaults; see tf_admin_set_limits. */
#define TF_ADMIN_MAX_CONNS 64
#define TF_ADMIN_IDLE_MS 15000
#define TF_ADMIN_MAX_HEADER 8192

struct tf_admin;

/* Bind addr (an IPv4 or IPv6 sockaddr; port 0 picks one) on loop and start accepting.
 * hooks is copied. Returns the admin, or NULL with a one-line reason in err. */
struct tf_admin *tf_admin_start(uv_loop_t *loop, const struct sockaddr *addr,
                                const struct tf_admin_hooks *hooks, char *err, size_t errlen);

/* The bound address (useful with port 0). Returns 0 or a libuv error. */
int tf_admin_address(const struct tf_admin *a, struct sockaddr_storage *out);

/* Change the connection cap, idle timeout and request-head cap (bytes of request line plus
 * headers); 0 keeps a value. Applies to connections accepted afterwards. */
void tf_admin_set_limits(struct tf_admin *a, int max_conns, uint64_t idle_ms, size_t max_header);

/* Requests served since start (any status) and connections open now, for tests and logs. */
uint64_t tf_admin_requests(const struct tf_admin *a);
int tf_admin_connections(const struct tf_admin *a);

/* Stop listening and close every connection. done(arg) runs from a close callback once
 * every handle is closed; the admin is freed just before. Idempotent; a NULL admin calls
 * nothing. done may be NULL. */
void tf_admin_close(struct tf_admin *a, void (*done)(void *arg), void *arg);

#endif
