/*
 * handshake.c: the listener's server SSL_CTX and its handshake callbacks. The ClientHello
 * callback reads the SNI from the raw extension (parsed by hello.c), validates it, picks the
 * certificates from the worker's snapshot (ECDSA and RSA both installed when a name has both,
 * so OpenSSL serves ECDSA to clients that support it) and the route, and fills the
 * connection's struct tf_tls_alpn for the ALPN callback (src/tls/certctx.c); the ticket
 * callback encrypts session tickets with the worker's rotating key ring.
 * Callbacks run on worker threads and read only that worker's snapshots; a worker's contexts
 * live in its own OpenSSL library context (tls.h).
 */
#include "tlsfront/proxy/handshake.h"
#include "tlsfront/tls/tls.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/tls/hello.h"
#include "conn_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/base/name.h"
#include "tlsfront/tls/tickets.h"

#include <openssl/err.h>
#include <openssl/tls1.h>
#include <stdatomic.h>
#include <string.h>

/* TLS 1.2: ECDHE key exchange and AEAD ciphers only, fastest first. */
static const char CIPHERS_12[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char SUITES_13[] =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
static const char GROUPS[] = "X25519:P-256:P-384";

/* True when the ClientHello's ALPN list offers proto (a malformed list offers nothing: the
 * ALPN callback rejects it later). */
static bool offers_alpn(SSL *ssl, const char *proto)
{
    const unsigned char *p;
    size_t len;
    return SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_application_layer_protocol_negotiation,
                                     &p, &len) == 1 &&
           tf_hello_alpn_offers(p, len, proto);
}

/* TLS-ALPN-01 (RFC 8737 §3): a client offering acme-tls/1 gets the challenge certificate of
 * a pending authorization for its SNI, never a normal certificate; without one the handshake
 * is refused with no_application_protocol. */
static int answer_challenge(SSL *ssl, struct tf_conn *c, bool have_sni, int *al)
{
    const struct tf_challenge *ch =
        have_sni ? tf_challenges_find(c->w->challenges, c->sni) : NULL;
    if (!ch && have_sni && c->hold == TF_HOLD_WAITING)
        return SSL_CLIENT_HELLO_RETRY;
    if (!ch && have_sni && c->hold == TF_HOLD_NONE && tf_config_storage_is_redis(c->cfg->storage)) {
        /* Cluster: another node may have published it; the control loop looks it up. */
        c->hold_challenge = true;
        tf_conn_hold(c);
        return SSL_CLIENT_HELLO_RETRY;
    }
    if (!ch) {
        c->end = TF_CONN_END_ACME_TLS_NO_CHALLENGE;
        *al = SSL_AD_NO_APPLICATION_PROTOCOL;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (SSL_use_cert_and_key(ssl, ch->cert, ch->key, NULL, 1) != 1) {
        tf_log_ssl(TF_LOG_ERROR, "tls", "challenge certificate");
        c->end = TF_CONN_END_CERTIFICATE_ERROR;
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    c->alpn_sel.acme = true;
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Count the connections of one client address held on this worker. */
static int held_by(const struct tf_worker *w, const char *ip)
{
    int n = 0;
    for (const struct tf_conn *o = w->held; o; o = o->held_next)
        n += strcmp(o->ip, ip) == 0;
    return n;
}

/* Whether the held-handshake caps (global, per client address on this worker) refuse one
 * more; counted and marked on the connection when they do. */
static bool hold_capped(struct tf_conn *c)
{
    struct tf_stats *st = c->w->stats;
    if (atomic_load(&st->held_now) < c->cfg->max_held &&
        held_by(c->w, c->ip) < c->cfg->max_held_per_ip)
        return false;
    TF_STAT_ADD(st, held_refused, 1);
    c->end = TF_CONN_END_HOLD_LIMIT;
    return true;
}

/* No certificate for a valid SNI: hold the handshake when on-demand issuance may want this
 * name, answer a finished hold, or refuse. */
static int on_demand(struct tf_conn *c, int *al)
{
    const struct tf_config *cfg = c->cfg;
    switch (c->hold) {
    case TF_HOLD_WAITING:
        return SSL_CLIENT_HELLO_RETRY;
    case TF_HOLD_FAILED:
        *al = c->hold_alert;
        return SSL_CLIENT_HELLO_ERROR;
    case TF_HOLD_READY:
        c->end = TF_CONN_END_CERTIFICATE_MISSING_AFTER_ISSUE;
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    default:
        break;
    }
    *al = SSL_AD_UNRECOGNIZED_NAME;
    if (!tf_name_may_issue(cfg->allow, cfg->n_allow, cfg->ask != NULL, c->sni)) {
        c->end = cfg->n_allow || cfg->ask ? TF_CONN_END_NOT_ALLOWED : TF_CONN_END_UNKNOWN_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (hold_capped(c))
        return SSL_CLIENT_HELLO_ERROR;
    c->hold_load = false;
    tf_conn_hold(c);
    return SSL_CLIENT_HELLO_RETRY;
}

/* Renewal skips managed names nobody asked for: stamp the slot's managed certificates as
 * the store holds them (a managed stub's time lives in its set's side array, found among
 * the store's few sets: no lock, no system call); write only when the second changes. */
static void touch_slot(const struct tf_certstore *st, const struct tf_cert_slot *slot)
{
    for (int k = 0; k < TF_CERT_KINDS; k++) {
        struct tf_cert *cert = tf_slot_cert(slot, k);
        struct tf_stub *stub = tf_slot_stub(slot, k);
        _Atomic int64_t *last = NULL;
        if (cert && cert->source == TF_SRC_ACME)
            last = &cert->last_used;
        else if (stub && stub->source == TF_SRC_ACME)
            last = tf_stub_last_used(tf_certstore_stubset(st, stub), stub);
        if (!last)
            continue;
        int64_t now = tf_wall_now();
        if (atomic_load_explicit(last, memory_order_relaxed) != now)
            atomic_store_explicit(last, now, memory_order_relaxed);
    }
}

/* A --certs directory larger than --cert-cache is loaded on first use: copy the slot with
 * each stub replaced by its loaded certificate (tf_stub_resolve: lock-free, no system call).
 * Returns SSL_CLIENT_HELLO_SUCCESS with *out filled; RETRY when a stub is not loaded yet
 * (the handshake is held and the control loop loads it: TF_SMSG_NEED_LOAD); ERROR when its
 * file failed to load (internal_error) or the hold caps refuse. A handshake resumed after a
 * load may find the name's other stub (ECDSA and RSA) still cold, or its own evicted by
 * a very small cache: it is held again, a few times at most. */
static int resolve_slot(struct tf_conn *c, const struct tf_cert_slot *slot,
                        struct tf_cert_pair *out, int *al)
{
    bool lazy = false, missing = false, failed = false;
    for (int k = 0; k < TF_CERT_KINDS; k++) {
        struct tf_stub *stub = tf_slot_stub(slot, k);
        out->cert[k] = stub ? tf_stub_resolve(stub) : tf_slot_cert(slot, k);
        if (!stub)
            continue;
        lazy = true;
        if (!out->cert[k] && atomic_load_explicit(&stub->failed, memory_order_acquire))
            failed = true;
        else if (!out->cert[k])
            missing = true;
    }
    if (!lazy)
        return SSL_CLIENT_HELLO_SUCCESS;
    *al = SSL_AD_INTERNAL_ERROR;
    if (failed || (missing && c->load_holds >= 3)) {
        c->end = TF_CONN_END_LOAD_FAILED;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (!missing) {
        if (c->load_holds == 0)
            TF_WSTAT_ADD(&c->w->ws, cert_cache_hits, 1);
        return SSL_CLIENT_HELLO_SUCCESS;
    }
    if (c->hold == TF_HOLD_WAITING)
        return SSL_CLIENT_HELLO_RETRY;
    if (c->hold == TF_HOLD_FAILED) {
        *al = c->hold_alert;
        return SSL_CLIENT_HELLO_ERROR;
    }
    if (hold_capped(c))
        return SSL_CLIENT_HELLO_ERROR;
    if (c->load_holds++ == 0)
        TF_WSTAT_ADD(&c->w->ws, cert_cache_misses, 1);
    c->hold_load = true;
    tf_conn_hold(c);
    return SSL_CLIENT_HELLO_RETRY;
}

/* A name with one certificate that has a context of its own (this worker's) switches to it;
 * otherwise (both kinds, or no context left in the budget) the certificates are installed one
 * by one. */
static int use_slot(SSL *ssl, const struct tf_worker *w, const struct tf_cert_pair *slot)
{
    struct tf_cert *ec = slot->cert[TF_CERT_EC], *rsa = slot->cert[TF_CERT_RSA];
    struct tf_cert *only = ec && rsa ? NULL : ec ? ec : rsa;
    SSL_CTX *ctx = only ? tf_tls_cert_ctx_get(only, w->id, w->n_workers, w->lib) : NULL;
    bool switched = ctx && SSL_set_SSL_CTX(ssl, ctx) == ctx;
    for (int k = 0; k < TF_CERT_KINDS; k++) {
        struct tf_cert *cert = slot->cert[k];
        if (!cert)
            continue;
        if (!switched && SSL_use_cert_and_key(ssl, cert->leaf, cert->key, cert->chain, 1) != 1)
            return -1;
    }
    return 0;
}

static int tls_client_hello_cb(SSL *ssl, int *al, void *arg)
{
    struct tf_conn *c = tf_tlsbio_arg(ssl);
    struct tf_worker *w = c->w;
    const unsigned char *ext = NULL, *raw = NULL;
    size_t ext_len = 0, raw_len = 0;
    int have = 0;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &ext_len) == 1) {
        have = tf_hello_sni(ext, ext_len, &raw, &raw_len);
        if (have < 0) {
            c->end = TF_CONN_END_BAD_SNI_EXTENSION;
            *al = SSL_AD_DECODE_ERROR;
            return SSL_CLIENT_HELLO_ERROR;
        }
        char name[TF_NAME_MAX + 1];
        if (have && tf_name_normalize((const char *)raw, raw_len, name) != 0) {
            c->end = TF_CONN_END_INVALID_SNI;
            *al = SSL_AD_UNRECOGNIZED_NAME;
            return SSL_CLIENT_HELLO_ERROR;
        }
        if (have)
            tf_conn_set_sni(c, name);
    }
    if (offers_alpn(ssl, TF_ALPN01_PROTO))
        return answer_challenge(ssl, c, have, al);
    const struct tf_cert_slot *slot = have ? tf_certstore_lookup(w->certs, c->sni) : NULL;
    if (!slot && have && (c->cfg->n_allow > 0 || c->cfg->ask))
        return on_demand(c, al);
    if (!slot && w->cfg->default_cert)
        slot = tf_certstore_lookup(w->certs, w->cfg->default_cert);
    if (!slot) {
        c->end = have ? TF_CONN_END_UNKNOWN_NAME : TF_CONN_END_NO_SNI;
        *al = SSL_AD_UNRECOGNIZED_NAME;
        return SSL_CLIENT_HELLO_ERROR;
    }
    struct tf_cert_pair now;
    int rc = resolve_slot(c, slot, &now, al);
    if (rc != SSL_CLIENT_HELLO_SUCCESS)
        return rc;
    if (use_slot(ssl, w, &now) != 0) {
        tf_log_ssl(TF_LOG_ERROR, "tls", "SSL_use_cert_and_key");
        c->end = TF_CONN_END_CERTIFICATE_ERROR;
        *al = SSL_AD_INTERNAL_ERROR;
        return SSL_CLIENT_HELLO_ERROR;
    }
    touch_slot(w->certs, slot);
    tf_route_select(c->cfg, have ? c->sni : NULL, &c->route);
    c->alpn_sel.protos = c->route.alpn;
    c->alpn_sel.n_protos = c->route.n_alpn;
    return SSL_CLIENT_HELLO_SUCCESS;
}

/* Tickets live on the listener's context (OpenSSL takes the callback from the session
 * context, which SSL_set_SSL_CTX leaves alone), so names served by a per-certificate context
 * get them too. OpenSSL 3 sends a TLS 1.3 ticket after a resumption only when this callback
 * asks to renew: it does for every TLS 1.3 resumption, and for TLS 1.2 once the key that
 * sealed the ticket has rotated out of first place. */
static int tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                         EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
{
    struct tf_conn *c = tf_tlsbio_arg(ssl);
    return tf_tickets_cb(c->w->tickets, c->w->lib, &c->w->ivs, key_name, iv, ctx, hctx, enc,
                         SSL_version(ssl) == TLS1_3_VERSION);
}

SSL_CTX *tf_handshake_ctx_new(const struct tf_config *cfg, OSSL_LIB_CTX *lib)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(lib, NULL, TLS_server_method());
    if (!ctx)
        goto fail;
    if (SSL_CTX_set_min_proto_version(ctx, cfg->tls12 ? TLS1_2_VERSION : TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, CIPHERS_12) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, SUITES_13) != 1 || SSL_CTX_set1_groups_list(ctx, GROUPS) != 1)
        goto fail;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Stateless tickets only: resumption works across workers and restarts of nothing. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_client_hello_cb(ctx, tls_client_hello_cb, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, tf_tls_alpn_select_cb, NULL);
    if (SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tls_ticket_cb) != 1)
        goto fail;
    return ctx;
fail:
    tf_log_ssl(TF_LOG_ERROR, "tls", "creating the server TLS context");
    SSL_CTX_free(ctx);
    return NULL;
}
