/*
 * acme_int.h: what the ACME client's files share and nobody else may use: the client struct,
 * the request layer (nonces, JWS, badNonce retry, backoff) and the order struct. The files
 * form a chain, each using only those before it: acme_json.c and acme_store.c (data),
 * acme_call.c (requests, nonce pool, the client's references), acme_account.c,
 * acme_ready.c (directory and account readiness), acme_order.c (what every order step
 * shares), acme_finalize.c, acme_authz.c, acme_order_begin.c, acme_revoke.c, acme.c (the client).
 * Everything here lives on the control loop's thread.
 */
#ifndef TF_ACME_INT_H
#define TF_ACME_INT_H

#include "tlsfront/acme/acme.h"
#include "tlsfront/net/http_client.h"

#include <openssl/evp.h>

#define ACME_MOD "acme"
#define ACME_MAX_NONCES 16
#define ACME_BAD_NONCE_RETRIES 10
#define ACME_BACKOFF_RETRIES 4
#define ACME_RATE_RETRIES 3

/* ---- request layer (acme_call.c) ---- */

/* err: 0 with resp (status < 400); TF_EPROTO with prob (the CA's problem document, status
 * >= 400, after the retries below); TF_ETIMEDOUT (deadline passed while waiting to retry,
 * prob = the last problem or NULL); or a transport code with resp and prob NULL. resp and
 * prob are valid during the callback only. */
typedef void (*tf_acme_call_cb)(int err, const struct tf_http_response *resp,
                                const struct tf_acme_problem *prob, void *arg);

struct tf_acme_call_spec {
    const char *method;          /* "GET" and "HEAD" are sent as is; "POST" is signed */
    const char *url;
    const char *payload;         /* POST: JSON text, "" for POST-as-GET */
    bool use_jwk;                /* sign with the jwk (newAccount) instead of the kid */
    EVP_PKEY *key;               /* POST: the account key (borrowed until the callback) */
    const char *kid;             /* POST without use_jwk: the account URL */
    const char *accept;          /* NULL: none */
    uint64_t deadline_ms;        /* tf_mono_ms() bound for every retry; 0 = 60 s from now */
    size_t max_body;             /* 0 = the client's default (1 MiB) */
};

struct tf_acme_call;

/* Start a request with the retry policy of RFC 8555 §6.5 and §6.7: badNonce is retried with
 * the fresh nonce (up to ACME_BAD_NONCE_RETRIES), 503 and rateLimited wait for Retry-After
 * when that ends before the deadline, network errors and other 5xx back off exponentially
 * with jitter (ACME_BACKOFF_RETRIES). Every Replay-Nonce goes to the pool. Returns 0 (cb runs
 * once, later) or a negative code (cb never runs). *out (may be NULL) is valid until cb. */
int tf_acme_call_start(struct tf_acme *a, const struct tf_acme_call_spec *spec,
                       tf_acme_call_cb cb, void *arg, struct tf_acme_call **out);
/* Make the call end soon with UV_ECANCELED. */
void tf_acme_call_cancel(struct tf_acme_call *c);

/* ---- the client (acme.c) ---- */

/* Someone waiting for the directory (and, if want_account, the account). Embedded in its
 * owner; cb runs once. */
struct tf_acme_waiter {
    void (*cb)(int err, const char *reason, const struct tf_acme_problem *prob, void *arg);
    void *arg;
    bool want_account;
    struct tf_acme_waiter *next;
};

struct tf_acme_order;
struct tf_acme_acct_op;
struct tf_acme_ari_op;
struct tf_acme_revoke_op;

struct tf_acme {
    uv_loop_t *loop;
    struct tf_storage *st;       /* borrowed */
    struct tf_httpc *http; /* borrowed */
    struct tf_acme_responder resp;

    /* copied from the config */
    char *dir_url, *ca_id, *email, *profile, *eab_kid;
    char *label;                 /* "host[:port]" of dir_url, for logs and metrics */
    unsigned char *eab_hmac;
    size_t eab_hmac_len;
    enum tf_key_type acct_key_type, cert_key_type;
    uint32_t timeout_s;
    uint32_t lease_s;            /* order lock lease, renewed every third of it */
    enum tf_chal_type chal_types[TF_CHAL_COUNT]; /* --acme-challenges, preferred first */
    int n_chal_types;

    struct tf_acme_directory dir;
    bool have_dir;
    struct tf_acme_call *dir_call;
    char *nonces[ACME_MAX_NONCES];
    int n_nonces;

    EVP_PKEY *acct_key;          /* owned, once loaded */
    char *kid;                   /* account URL, once known */
    struct tf_acme_acct_op *acct_op; /* account load/registration in flight */
    struct tf_acme_waiter *waiters;

    struct tf_acme_order *orders; /* in flight, doubly linked */
    struct tf_acme_ari_op *aris; /* renewalInfo lookups in flight, doubly linked */
    struct tf_acme_revoke_op *revokes; /* revocations in flight, doubly linked */
    int refs;                    /* orders, calls, account ops, ARI lookups alive */
    bool closing;
    uv_timer_t close_timer;      /* closed last; its close callback frees the client */
    void (*close_done)(void *arg);
    void *close_arg;
    struct tf_acme_stats stats;
};

/* acme_call.c: the client's references. */
void tf_acme_hold(struct tf_acme *a);
/* Drop a reference; the last one after tf_acme_close frees the client. */
void tf_acme_release(struct tf_acme *a);

/* acme_call.c: the nonce pool (RFC 8555 §7.2). take returns a new string or NULL; put copies
 * a valid nonce. */
char *tf_acme_nonce_take(struct tf_acme *a);
void tf_acme_nonce_put(struct tf_acme *a, const char *nonce);

/* acme_revoke.c: cancel the revocation calls in flight (tf_acme_close). */
void tf_acme_revoke_cancel_all(struct tf_acme *a);

/* ---- account (acme_account.c) ---- */

/* How the account code ends: err 0 (a->acct_key and a->kid are set) or the failure. */
typedef void (*tf_acme_account_cb)(struct tf_acme *a, int err, const char *reason,
                                   const struct tf_acme_problem *prob);
/* Load or create the account key and register (or find) the account; done runs once at the
 * end. */
void tf_acme_account_start(struct tf_acme *a, tf_acme_account_cb done);
void tf_acme_account_cancel(struct tf_acme *a);

/* ---- readiness (acme_ready.c) ---- */

/* Wait for the directory (and the account). w->cb runs once, from a loop callback or, when
 * everything is ready, right away. */
void tf_acme_ensure(struct tf_acme *a, struct tf_acme_waiter *w);
/* Drop the cached account URL (the CA forgot it, e.g. a restarted test CA). */
void tf_acme_forget_account(struct tf_acme *a);

/* ---- orders (acme_order.c, acme_finalize.c) ---- */

struct tf_acme_obtainer {
    tf_acme_done_cb cb;
    void *arg;
    struct tf_acme_obtainer *next;
};

typedef void (*tf_acme_order_step)(struct tf_acme_order *o);

struct tf_acme_order {
    struct tf_acme *a;
    struct tf_acme_order *prev, *next;
    char *name;
    char *lock_name;
    char *replaces, *profile;
    struct tf_acme_obtainer *obtainers;
    uint64_t deadline_ms;

    /* what is in flight (at most one of these at a time) */
    struct tf_acme_call *call;
    bool timer_armed, work_busy, storage_busy, ensure_busy;
    bool not_stored;          /* the certificate's save failed (tf_acme_result.not_stored) */
    uv_timer_t timer;
    tf_acme_order_step timer_step;
    uv_work_t work;
    struct tf_acme_waiter waiter;

    /* the order lock's lease (acme_order_lease.c) */
    uv_timer_t lease_timer;
    bool renew_busy, lease_lost, releasing;
    int closes;                  /* timer handles still closing */

    bool locked, published, account_retried, finished;
    bool lock_waiting;           /* the order lock was busy once (logged) */
    bool chal_pending; /* the challenge still needs its POST (RFC 8555 §7.5.1) */
    char *order_url, *finalize_url, *cert_url;
    char **authz;
    int n_authz, authz_idx;
    char *chal_url;
    char *chal_token;            /* the published challenge's token (HTTP-01 unpublish) */
    enum tf_chal_type chal_type; /* the published challenge's type */
    int chal_idx;                /* its place in a->chal_types */
    int chal_from;               /* types before this place failed a validation already */
    unsigned chal_offered;       /* 1 << type for each type the pending authorization offered */
    tf_acme_order_step again;    /* acme_order_begin.c's newOrder: a fallback's new order */
    uint32_t poll_ms;            /* next poll delay without Retry-After */

    EVP_PKEY *cert_key;
    char *chain_pem, *key_pem;
    struct tf_cert *cert;

    int err;
    char reason[512];
    struct tf_acme_problem problem;
    bool has_problem;
};

/* Create and start an order (acme_order.c). */
struct tf_acme_order *tf_acme_order_start(struct tf_acme *a, const char *name,
                                          const struct tf_acme_order_opts *opts);
/* Make the order end soon with UV_ECANCELED. */
void tf_acme_order_cancel(struct tf_acme_order *o);
/* Unlink and free an order whose handles are closed (acme_order.c). */
void tf_acme_order_free(struct tf_acme_order *o);

/* The order lock's lease (acme_order_lease.c). init: with the order's timer. start: the lock
 * was taken; renew it every third of the lease until the end. A renewal answered "lost" sets
 * lease_lost and cancels what is in flight, so the order fails at its next step and never
 * stores. end: after the obtainers were answered: wait for a renewal in flight, release the
 * lock if still held, close both timers, then tf_acme_order_free. */
void tf_acme_lease_init(struct tf_acme_order *o);
void tf_acme_lease_start(struct tf_acme_order *o);
void tf_acme_lease_end(struct tf_acme_order *o);

/* Shared by the order files. */
/* Withdraw the order's published challenge, if any (the responder's unpublish). */
void tf_acme_order_unpublish(struct tf_acme_order *o);
void tf_acme_order_fail(struct tf_acme_order *o, int err, const struct tf_acme_problem *prob,
                        const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Fail from a call's result: names the step, recognises a paused name. */
void tf_acme_order_call_failed(struct tf_acme_order *o, const char *step, int err,
                               const struct tf_acme_problem *prob);
void tf_acme_order_succeed(struct tf_acme_order *o, bool from_storage);
/* Signed POST (payload "" = POST-as-GET) with the account's kid. */
int tf_acme_order_post(struct tf_acme_order *o, const char *url, const char *payload,
                       const char *accept, tf_acme_call_cb cb);
/* Run step after delay_ms on the order's timer, or fail if that passes the deadline. */
void tf_acme_order_after(struct tf_acme_order *o, uint64_t delay_ms, tf_acme_order_step step,
                         const char *what);
/* Without Retry-After, polls start this soon and double up to 2 s: a CA that validates at
 * once (pebble, a nearby private CA) answers the first poll; a slow one costs a few more
 * cheap POST-as-GETs in the first second. */
#define TF_ACME_FIRST_POLL_MS 20

/* The delay before the next poll: Retry-After when given, else the order's backoff. */
uint64_t tf_acme_order_poll_delay(struct tf_acme_order *o, const struct tf_http_response *r);
/* True (and the order failed with UV_ECANCELED) when the client is closing. */
bool tf_acme_order_cancelled(struct tf_acme_order *o);
/* The common start of every order step's HTTP callback: clears the call in flight, and
 * returns false when the order was cancelled or the call failed (the order is then ended
 * with the step's name and the problem); true when the response is there to be read. */
bool tf_acme_order_answer(struct tf_acme_order *o, const char *step, int err,
                          const struct tf_acme_problem *prob);

/* acme_authz.c: walk the order's authorizations (publish, challenge, poll), then
 * tf_acme_order_poll_ready(). Each uses the first type of a->chal_types from o->chal_from
 * on that the CA offers; a failed validation starts a new order (o->again) with the next
 * offered type, if any, before the order fails. */
void tf_acme_order_authorize(struct tf_acme_order *o);

/* acme_finalize.c: all authorizations are valid; wait for ready, finalize, download,
 * verify, store. */
void tf_acme_order_finalize(struct tf_acme_order *o);
/* Poll the order URL until it is ready (then finalize). */
void tf_acme_order_poll_ready(struct tf_acme_order *o);

#endif
