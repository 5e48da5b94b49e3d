/*
 * acme.h: the ACME client (RFC 8555) that obtains certificates with TLS-ALPN-01 (RFC 8737)
 * or HTTP-01 (RFC 8555 §8.3), in the order of --acme-challenges, on the control loop. One
 * struct tf_acme per CA directory: it caches the directory, keeps a pool of nonces, owns the
 * account (key and URL in storage) and runs at most one order per name. It never blocks the loop (key generation on the thread pool, storage and HTTP are
 * asynchronous), never serves challenges itself (the responder below does: in the TLS
 * handshake, or on the redirect listener) and never logs keys or key authorizations.
 *
 * Also here: the pure parsers of the CA's JSON documents (exposed for tests) and the
 * certificate storage layout (certs/<name>/{cert.pem,key.pem,meta.json}).
 */
#ifndef TF_ACME_H
#define TF_ACME_H

#include "tlsfront/tls/certstore.h"
#include "tlsfront/config/config.h"
#include "tlsfront/store/storage.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct tf_httpc;

/* ---- Problem documents (RFC 7807, RFC 8555 §6.7) ---- */

struct tf_acme_subproblem {
    char *type;                  /* never NULL ("" when absent) */
    char *detail;                /* never NULL */
    char *ident_type;            /* NULL when the subproblem names no identifier */
    char *ident_value;
};

struct tf_acme_problem {
    char *type;                  /* "urn:ietf:params:acme:error:badNonce"; never NULL */
    char *detail;                /* never NULL ("" when absent) */
    char *instance;              /* NULL when absent */
    int status;                  /* the document's "status", else the HTTP status */
    struct tf_acme_subproblem *sub;
    int n_sub;
};

#define TF_ACME_ERR_PREFIX "urn:ietf:params:acme:error:"

/* Parse a problem document. Tolerant: a body that is not a JSON object still yields a
 * problem (type "", detail "HTTP <status>: <first bytes>"), so every CA error has a reason.
 * Always fills out (clear it with tf_acme_problem_clear). */
void tf_acme_problem_parse(const char *body, size_t len, int http_status,
                           struct tf_acme_problem *out);
void tf_acme_problem_clear(struct tf_acme_problem *p);
/* Deep copy into dst (dst is overwritten, not cleared). */
void tf_acme_problem_copy(struct tf_acme_problem *dst, const struct tf_acme_problem *src);
/* True when p->type is TF_ACME_ERR_PREFIX followed by short ("badNonce"). */
bool tf_acme_problem_is(const struct tf_acme_problem *p, const char *short_type);
/* One line: "<type> :: <detail> [<ident>: <type> :: <detail>; ...]" into buf. */
void tf_acme_problem_summary(const struct tf_acme_problem *p, char *buf, size_t len);
/* Let's Encrypt "paused" answer: type rateLimited or unauthorized whose detail says the
 * account/identifier is paused ("paused", "unpause", "temporarily prevented from requesting
 * certificates"). When true and url != NULL, *url is a new string with the unpause link (the
 * first http(s) URL in the detail, else "instance"), or NULL if none is given. */
bool tf_acme_problem_is_paused(const struct tf_acme_problem *p, char **url);

/* ---- Directory, order, authorization and challenge documents ---- */

struct tf_acme_directory {
    char *new_nonce, *new_account, *new_order;  /* required */
    char *revoke_cert, *key_change, *renewal_info, *terms_of_service; /* NULL when absent */
    char **profiles;             /* meta.profiles names (draft-ietf-acme-profiles) */
    int n_profiles;
    bool eab_required;           /* meta.externalAccountRequired */
};

enum tf_acme_status {
    TF_ACME_ST_UNKNOWN = 0,
    TF_ACME_ST_PENDING,
    TF_ACME_ST_READY,
    TF_ACME_ST_PROCESSING,
    TF_ACME_ST_VALID,
    TF_ACME_ST_INVALID,
    TF_ACME_ST_EXPIRED,
    TF_ACME_ST_DEACTIVATED,
    TF_ACME_ST_REVOKED,
};
const char *tf_acme_status_name(enum tf_acme_status st);

struct tf_acme_order_doc {
    enum tf_acme_status status;
    char **authorizations;       /* URLs */
    int n_authz;
    char *finalize;              /* URL, required */
    char *certificate;           /* URL once valid, else NULL */
    struct tf_acme_problem *error; /* NULL when absent */
};

struct tf_acme_challenge_doc {
    char *type;
    char *url;
    char *token;                 /* NULL when absent; base64url-checked when present */
    enum tf_acme_status status;
    struct tf_acme_problem *error;
};

struct tf_acme_authz_doc {
    enum tf_acme_status status;
    char *ident_type, *ident_value;
    bool wildcard;
    struct tf_acme_challenge_doc *challenges;
    int n_challenges;
};

/* Each parser returns 0 and fills out (clear with the matching _clear, also after a failure),
 * or TF_EINVAL with a one-line reason in err ("order: \"finalize\" missing or not a string").
 * They never trust types: a number where a string belongs, an array of non-strings, a
 * truncated body or a body over 1 MiB are all clean errors. URLs must be http(s) URLs. */
int tf_acme_parse_directory(const char *body, size_t len, struct tf_acme_directory *out,
                            char *err, size_t errlen);
void tf_acme_directory_clear(struct tf_acme_directory *d);
int tf_acme_parse_order(const char *body, size_t len, struct tf_acme_order_doc *out, char *err,
                        size_t errlen);
void tf_acme_order_doc_clear(struct tf_acme_order_doc *o);
int tf_acme_parse_authz(const char *body, size_t len, struct tf_acme_authz_doc *out, char *err,
                        size_t errlen);
void tf_acme_authz_doc_clear(struct tf_acme_authz_doc *z);
/* The challenge of that type inside z, or NULL. Borrowed from z. */
const struct tf_acme_challenge_doc *tf_acme_authz_find(const struct tf_acme_authz_doc *z,
                                                       const char *type);
/* An account object's "status" (RFC 8555 §7.1.2). */
int tf_acme_parse_account_status(const char *body, size_t len, enum tf_acme_status *st,
                                 char *err, size_t errlen);
/* A nonce is 1..256 base64url characters (RFC 8555 §6.5.1). */
bool tf_acme_nonce_valid(const char *nonce);

/* ---- The client ---- */

/* One challenge the responder answers: TLS-ALPN-01 (RFC 8737 §3: a certificate for name)
 * or HTTP-01 (RFC 8555 §8.3: key_authorization at /.well-known/acme-challenge/<token>).
 * Everything is borrowed for the call; key_authorization is NULL on unpublish. */
struct tf_acme_chal {
    enum tf_chal_type type;
    const char *name;
    const char *token;
    const char *key_authorization;
};

/* The challenge responder: publish before the challenge is POSTed, unpublish when the
 * authorization ends (valid, invalid, or the order failed or was cancelled). Both may be NULL.
 * Called on the loop thread. */
struct tf_acme_responder {
    void (*publish)(void *arg, const struct tf_acme_chal *c);
    void (*unpublish)(void *arg, const struct tf_acme_chal *c);
    void *arg;
    /* When set, replaces publish: the challenge is POSTed only once done(ctx) ran (later,
     * from a loop callback, exactly once), so that a responder shared by several nodes can
     * make the challenge known to all of them first. The client stays alive until then. */
    void (*publish_async)(void *arg, const struct tf_acme_chal *c, void (*done)(void *ctx),
                          void *ctx);
};

struct tf_acme_order_opts {
    const char *replaces;        /* ARI certID of the certificate this one replaces, or NULL */
    const char *profile;         /* overrides cfg->acme_profile; used only if the CA lists it */
};

/* What an obtain callback gets. Everything is borrowed for the duration of the callback
 * except cert, which is a new reference owned by the callback (tf_cert_unref it). */
struct tf_acme_result {
    const char *name;
    /* success */
    const char *chain_pem;       /* leaf first */
    size_t chain_len;
    const char *key_pem;         /* PKCS#8 */
    size_t key_len;
    struct tf_cert *cert;
    bool from_storage;           /* another process (or an earlier order) stored it */
    bool not_stored;             /* the storage refused it: it is only in memory */
    /* failure */
    const char *reason;          /* one line, never NULL on failure */
    const struct tf_acme_problem *problem; /* the CA's problem document, or NULL */
};

/* err: 0, UV_ECANCELED (tf_acme_close), TF_EDENIED (name paused by the CA), TF_ETIMEDOUT
 * (acme_timeout_s passed), TF_EPROTO (the CA refused or misbehaved), or a transport code. */
typedef void (*tf_acme_done_cb)(int err, const struct tf_acme_result *res, void *arg);

struct tf_acme;

/* Create the client for the first CA of cfg (cfg->acme_cas[0], or the plain
 * cfg->acme_directory and EAB fields of a config that lists none). cfg is read here only (the
 * fields needed are copied); st and http are borrowed and must outlive the client (close them
 * after tf_acme_close's done ran; http must trust that CA's ca= anchor). resp may be NULL.
 * Returns NULL with err filled on bad config (directory URL, EAB key). No I/O happens before
 * the first obtain. */
struct tf_acme *tf_acme_new(uv_loop_t *loop, const struct tf_config *cfg, struct tf_storage *st,
                            struct tf_httpc *http, const struct tf_acme_responder *resp,
                            char *err, size_t errlen);
/* The same for CA number idx (0-based) of cfg->acme_cas. Each CA has its own account in
 * storage (acme/<ca-id>/). */
struct tf_acme *tf_acme_new_ca(uv_loop_t *loop, const struct tf_config *cfg, int idx,
                               struct tf_storage *st, struct tf_httpc *http,
                               const struct tf_acme_responder *resp, char *err, size_t errlen);

/* Obtain a certificate for name (lower-case DNS name, or "*.parent"). A second obtain for a
 * name with an order in flight joins it. Returns 0 (cb runs exactly once, later, from a loop
 * callback), TF_EINVAL for a bad name, or TF_ECLOSED after tf_acme_close. opts may be NULL. */
int tf_acme_obtain(struct tf_acme *a, const char *name, const struct tf_acme_order_opts *opts,
                   tf_acme_done_cb cb, void *arg);

/* ARI (RFC 9773): the CA's suggested renewal window for cert. */
struct tf_acme_ari {
    int64_t start, end;          /* unix seconds */
    int64_t retry_after;         /* seconds, from Retry-After (default 21600) */
    const char *explanation_url; /* borrowed, may be NULL */
};
typedef void (*tf_acme_ari_cb)(int err, const struct tf_acme_ari *ari, void *arg);
/* Returns 0 (cb runs once later), TF_ENOTFOUND when the CA has no renewalInfo (known only
 * after the directory was fetched: then cb gets TF_ENOTFOUND), TF_EINVAL when the
 * certificate has no AKI, or TF_ECLOSED. */
int tf_acme_renewal_info(struct tf_acme *a, const struct tf_cert *cert, tf_acme_ari_cb cb,
                         void *arg);
/* The same for a certificate known by its ARI certID alone (a managed certificate indexed
 * from its metadata; NULL: TF_EINVAL). cert_id is copied. */
int tf_acme_renewal_info_id(struct tf_acme *a, const char *cert_id, tf_acme_ari_cb cb,
                            void *arg);

/* Revocation (RFC 8555 §7.6). reason: a CRLReason code from tf_acme_revoke_reason. With
 * with_cert_key the request is signed with the certificate's own key (jwk), else with the
 * account key (kid; the account is loaded, or registered, first). err: 0 (revoked, or the
 * CA says it already was), UV_ECANCELED (tf_acme_close), TF_EPROTO (the CA refused; reason
 * is its problem in one line) or a transport code; reason is borrowed for the call. */
typedef void (*tf_acme_revoke_cb)(int err, const char *reason, void *arg);
/* Returns 0 (cb runs once, later), TF_EINVAL (no certificate, no key for with_cert_key,
 * negative reason), TF_ENOTFOUND (the directory, already fetched, has no revokeCert) or
 * TF_ECLOSED. Takes its own reference on cert. */
int tf_acme_revoke(struct tf_acme *a, struct tf_cert *cert, int reason, bool with_cert_key,
                   tf_acme_revoke_cb cb, void *arg);
/* The CRLReason code (RFC 5280 §5.3.1) of a reason a subscriber may give ("keyCompromise"
 * -> 1), or TF_EINVAL; and the accepted names as "a|b|..." for usage messages. */
int tf_acme_revoke_reason(const char *name);
const char *tf_acme_revoke_reasons_text(void);

/* Counters, for tests and the admin endpoint. */
struct tf_acme_stats {
    uint64_t orders_started;     /* newOrder requests that got an order */
    uint64_t orders_ok, orders_failed, joined, from_storage;
    uint64_t requests;           /* HTTP requests sent to the CA */
    uint64_t bad_nonce_retries, backoff_retries;
    uint64_t accounts_created;
};
void tf_acme_get_stats(const struct tf_acme *a, struct tf_acme_stats *out);
/* The storage id of this CA ("acme-v02.api.letsencrypt.org-directory"). Borrowed. */
const char *tf_acme_ca_id(const struct tf_acme *a);
/* "host[:port]" of the directory URL: how logs and metrics name the CA. Borrowed. */
const char *tf_acme_ca_label(const struct tf_acme *a);
/* The account URL once known, else NULL. Borrowed. */
const char *tf_acme_account_url(const struct tf_acme *a);

/* Cancel every order (callbacks run with UV_ECANCELED), wait for everything in flight, free
 * the client, then call done (may be NULL) from a loop callback. */
void tf_acme_close(struct tf_acme *a, void (*done)(void *arg), void *arg);

/* ---- Certificate storage layout ---- */

/* "certs/<name>/<file>" with name lower-cased; a wildcard keeps its "*." (storage.h's rule:
 * the filesystem store writes it as "_wildcard_."). Returns a new string, or NULL for a name
 * that cannot be stored. */
char *tf_acme_store_key(const char *name, const char *file);
/* "acme/<ca-id>/paused/<name>", a new string or NULL. */
char *tf_acme_paused_key(const char *ca_id, const char *name);

/* Store chain, key (0600) and meta.json for name; cb runs once. The strings are copied. On
 * an error the storage holds name's old certificate (the key could not be written) or none
 * (a later write failed: what was written is deleted before cb runs). */
int tf_acme_store_save(struct tf_storage *st, const char *name, const char *chain_pem,
                       const char *key_pem, const char *meta_json, tf_storage_done_cb cb,
                       void *arg);
/* Delete name's meta.json, cert.pem and key.pem; cb runs once: 0 (something was deleted),
 * UV_ENOENT (nothing was stored) or the storage error that stopped it. */
int tf_acme_store_forget(struct tf_storage *st, const char *name, tf_storage_done_cb cb,
                         void *arg);
/* Load one stored certificate: cb gets 0 and a new reference (and the PEM texts, borrowed
 * for the call), UV_ENOENT, or TF_EINVAL for a corrupt or mismatched pair. */
typedef void (*tf_acme_store_load_cb)(int err, struct tf_cert *cert, const char *chain_pem,
                                      const char *key_pem, void *arg);
int tf_acme_store_load(struct tf_storage *st, const char *name, tf_acme_store_load_cb cb,
                       void *arg);
/* The same, then meta.json: cb also gets the id of the CA that issued the certificate
 * ("ca_id", borrowed for the call), or NULL when the metadata is missing or names none. */
typedef void (*tf_acme_store_meta_cb)(int err, struct tf_cert *cert, const char *ca_id,
                                      void *arg);
int tf_acme_store_load_meta(struct tf_storage *st, const char *name, tf_acme_store_meta_cb cb,
                            void *arg);

/* Load every stored certificate with its metadata. each (may be NULL) gets a new reference
 * per good certificate and the id of the CA that issued it (NULL when meta.json names none);
 * corrupt or mismatched ones are logged (warn) and skipped. done runs once at the end with
 * the counts. */
typedef void (*tf_acme_store_each_cb)(const char *name, struct tf_cert *cert,
                                      const char *ca_id, void *arg);
typedef void (*tf_acme_store_all_cb)(int err, int n_loaded, int n_skipped, void *arg);
int tf_acme_store_load_all(struct tf_storage *st, tf_acme_store_each_cb each,
                           tf_acme_store_all_cb done, void *arg);

/* Index the store when it holds more than eager_max names (else load it as
 * tf_acme_store_load_all does): read only each name's meta.json and hand its key kind and
 * validity (meta) with the metadata's "ca_id" and "cert_id" (the ARI certID; borrowed for
 * the call, may be NULL); cert is NULL then. A name whose meta.json is missing or lacks
 * those fields is decoded once instead: cert is the decoded certificate (one reference,
 * handed on), meta is taken from it, and it is counted in decoded. Not indexing: meta is
 * NULL and cert decoded, as tf_acme_store_load_all hands it. */
struct tf_acme_store_meta {
    enum tf_cert_kind kind;
    int64_t not_before, not_after;
};
typedef void (*tf_acme_store_index_cb)(const char *name, struct tf_cert *cert,
                                       const struct tf_acme_store_meta *meta,
                                       const char *ca_id, const char *cert_id, void *arg);
struct tf_acme_store_counts {
    int loaded, skipped; /* as tf_acme_store_all_cb's */
    int indexed;         /* known from meta.json */
    int decoded;         /* of those indexed, decoded for want of a usable meta.json */
    bool lazy;           /* more than eager_max names: indexed */
};
typedef void (*tf_acme_store_indexed_cb)(int err, const struct tf_acme_store_counts *n,
                                         void *arg);
int tf_acme_store_index_all(struct tf_storage *st, int eager_max, tf_acme_store_index_cb each,
                            tf_acme_store_indexed_cb done, void *arg);

/* Read name's stored chain and key without decoding them (a stub's load: the caller decodes
 * on the thread pool). cb runs once, later: err 0 with the texts (borrowed for the call; the
 * key is wiped after), or the storage error (UV_ENOENT: not stored). */
typedef void (*tf_acme_store_read_cb)(int err, const char *chain_pem, size_t chain_len,
                                      const char *key_pem, size_t key_len, void *arg);
int tf_acme_store_read(struct tf_storage *st, const char *name, tf_acme_store_read_cb cb,
                       void *arg);

/* Synchronous listing for `tlsfront certs` (never on a loop). */
struct tf_acme_store_entry {
    char *name, *issuer;
    int64_t not_after;
    char *error;                 /* non-NULL when the entry could not be loaded */
};
int tf_acme_store_list_sync(const char *dir, struct tf_acme_store_entry **out, int *n);
void tf_acme_store_entries_free(struct tf_acme_store_entry *e, int n);


#endif
