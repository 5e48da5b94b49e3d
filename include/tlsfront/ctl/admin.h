/*
 * admin.h: the admin HTTP endpoint (--admin ADDR:PORT): /healthz, /readyz, /metrics and
 * /certs over plain HTTP/1.1 parsed with llhttp, and the API's actions on certificates
 * (docs/operations.md) behind a bearer token. It runs on the control loop only, never on a
 * worker, and owns only its listener and its connections; all content comes from the hooks
 * the server supplies, and only the action hook, called for an authorized request, may
 * change state. It never blocks.
 */
#ifndef TF_ADMIN_H
#define TF_ADMIN_H

#include "tlsfront/base/metrics.h"
#include "tlsfront/base/name.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* The admin API's operations on certificates (see admin_api_int.h for the paths). */
enum tf_admin_op {
    TF_ADMIN_OP_CERT = 0,  /* GET /certs/NAME: detail */
    TF_ADMIN_OP_RENEW,     /* POST /certs/NAME/renew */
    TF_ADMIN_OP_FORGET,    /* DELETE /certs/NAME */
    TF_ADMIN_OP_UNPAUSE,   /* POST /certs/NAME/unpause */
    TF_ADMIN_OP_REVOKE,    /* POST /certs/NAME/revoke */
    TF_ADMIN_OP_ASK_PURGE, /* POST /ask-cache/purge */
};

/* One checked request for the action hook. */
struct tf_admin_action {
    enum tf_admin_op op;
    char name[TF_NAME_MAX + 1]; /* valid and lower-case; "" for a purge of every name */
    int reason;            /* revoke: the CRLReason code */
    const char *peer;      /* "ADDR:PORT" of the client, for the log */
};

/* A response the action hook owes; see tf_admin_reply. */
struct tf_admin_reply;

/* Answer an action: status and a JSON body (borrowed; NULL: {}). Sends it if the client is
 * still connected, frees reply either way. Exactly once per reply, on the admin's loop,
 * during the hook or later. */
void tf_admin_reply(struct tf_admin_reply *reply, int status, const char *json);

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
    /* An authorized, checked action (NULL: 404). Must answer reply exactly once. */
    void (*action)(void *arg, const struct tf_admin_action *act, struct tf_admin_reply *reply);
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

/* The bearer token that unlocks the actions (copied; NULL: actions answer 403) and whether
 * it also guards the reads (/metrics, /certs, /certs/NAME; never /healthz and /readyz). */
void tf_admin_set_token(struct tf_admin *a, const char *token, bool reads);

/* Requests served since start (any status) and connections open now, for tests and logs. */
uint64_t tf_admin_requests(const struct tf_admin *a);
int tf_admin_connections(const struct tf_admin *a);

/* Stop listening and close every connection. done(arg) runs from a close callback once
 * every handle is closed; the admin is freed just before. Idempotent; a NULL admin calls
 * nothing. done may be NULL. */
void tf_admin_close(struct tf_admin *a, void (*done)(void *arg), void *arg);

#endif
