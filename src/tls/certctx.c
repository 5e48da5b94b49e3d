/*
 * certctx.c: per-certificate SSL_CTXs, one per worker and certificate, built by the worker in
 * its own library context (see tls.h for why they exist and their process-wide budget), and
 * the ALPN callback that every server context uses, the listener's and the per-certificate
 * ones alike, since OpenSSL asks the context the handshake switched to.
 * Never touches a connection beyond the struct tf_tls_alpn at the start of its BIO's argument
 * (tf_tlsbio_arg).
 */
#include "tlsfront/tls/tls.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/tls/hello.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <string.h>

/* Server preference: the route's first protocol the client also offers. No overlap: no ALPN
 * (the handshake goes on, as with a client that sent none). */
int tf_tls_alpn_select_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    const struct tf_tls_alpn *c = tf_tlsbio_arg(ssl);
    if (c->acme) {
        static const unsigned char proto[] = "\x0a" TF_ALPN01_PROTO;
        if (SSL_select_next_proto((unsigned char **)out, outlen, proto, sizeof proto - 1, in,
                                  inlen) != OPENSSL_NPN_NEGOTIATED)
            return SSL_TLSEXT_ERR_ALERT_FATAL;
        return SSL_TLSEXT_ERR_OK;
    }
    int rc = tf_hello_alpn_pick(in, inlen, c->protos, c->n_protos, out, outlen);
    return rc > 0 ? SSL_TLSEXT_ERR_OK : rc < 0 ? SSL_TLSEXT_ERR_ALERT_FATAL
                                                : SSL_TLSEXT_ERR_NOACK;
}

static atomic_int cert_ctxs; /* live per-certificate contexts, process-wide */

/* A slot answered "none" (no context for this worker): not retried per handshake. */
static SSL_CTX *const NO_CTX = (SSL_CTX *)&cert_ctxs;

struct tf_tls_cert_ctxs {
    int n;
    SSL_CTX *ctx[]; /* [worker]: NULL not asked yet, NO_CTX, or the worker's context */
};

/* The slots of a certificate that gets no context: none at all (n = 0), never freed. */
static struct tf_tls_cert_ctxs no_ctxs;

/* x decoded again in lib; NULL on failure. */
static X509 *x509_in(OSSL_LIB_CTX *lib, X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    const unsigned char *p = der;
    X509 *copy = n > 0 ? X509_new_ex(lib, NULL) : NULL;
    if (copy && !d2i_X509(&copy, &p, n))
        copy = NULL; /* d2i freed it */
    OPENSSL_free(der);
    return copy;
}

/* k decoded again in lib; NULL on failure. The DER copy of the key is wiped. */
static EVP_PKEY *key_in(OSSL_LIB_CTX *lib, EVP_PKEY *k)
{
    unsigned char *der = NULL;
    int n = i2d_PrivateKey(k, &der);
    const unsigned char *p = der;
    EVP_PKEY *copy = n > 0 ? d2i_AutoPrivateKey_ex(NULL, &p, n, lib, NULL) : NULL;
    OPENSSL_clear_free(der, n > 0 ? (size_t)n : 0);
    return copy;
}

/* A context in lib holding copies of c's certificate, chain and key decoded in lib: a
 * handshake switched to it then touches no object another worker uses (no shared
 * refcounts when SSL_set_SSL_CTX copies the certificate, no per-signature export of the key
 * into lib under the key's lock). NULL when the budget is spent or OpenSSL fails. */
static SSL_CTX *cert_ctx_new(const struct tf_cert *c, OSSL_LIB_CTX *lib)
{
    if (atomic_fetch_add(&cert_ctxs, 1) >= 2 * TF_TLS_CERT_CTX_MAX) {
        atomic_fetch_sub(&cert_ctxs, 1);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new_ex(lib, NULL, TLS_server_method());
    X509 *leaf = x509_in(lib, c->leaf);
    EVP_PKEY *key = key_in(lib, c->key);
    STACK_OF(X509) *chain = sk_X509_new_null();
    bool ok = ctx && leaf && key && chain;
    for (int i = 0; ok && i < sk_X509_num(c->chain); i++) {
        X509 *x = x509_in(lib, sk_X509_value(c->chain, i));
        ok = x && sk_X509_push(chain, x) > 0;
        if (!ok)
            X509_free(x);
    }
    ok = ok && SSL_CTX_use_cert_and_key(ctx, leaf, key, chain, 1) == 1;
    X509_free(leaf); /* the context holds its own references */
    EVP_PKEY_free(key);
    sk_X509_pop_free(chain, X509_free);
    if (!ok) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        atomic_fetch_sub(&cert_ctxs, 1);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, tf_tls_alpn_select_cb, NULL);
    return ctx;
}

/* c's slot array, made on the first call from any worker. Workers may race to make it: the
 * loser frees its own and uses the winner's. */
static struct tf_tls_cert_ctxs *cert_ctxs_of(struct tf_cert *c, int n_workers)
{
    struct tf_tls_cert_ctxs *x = atomic_load_explicit(&c->ctxs, memory_order_acquire);
    if (x)
        return x;
    x = tf_calloc(1, sizeof *x + (size_t)n_workers * sizeof x->ctx[0]);
    x->n = n_workers;
    struct tf_tls_cert_ctxs *none = NULL;
    if (atomic_compare_exchange_strong_explicit(&c->ctxs, &none, x, memory_order_acq_rel,
                                                memory_order_acquire))
        return x;
    free(x);
    return none;
}

void tf_tls_cert_ctx_forbid(struct tf_cert *c)
{
    atomic_store_explicit(&c->ctxs, &no_ctxs, memory_order_relaxed);
}

SSL_CTX *tf_tls_cert_ctx_get(struct tf_cert *c, int worker, int n_workers, OSSL_LIB_CTX *lib)
{
    if (!c->leaf)
        return NULL;
    struct tf_tls_cert_ctxs *x = cert_ctxs_of(c, n_workers);
    if (worker < 0 || worker >= x->n)
        return NULL;
    SSL_CTX *ctx = x->ctx[worker];
    if (!ctx) {
        ctx = cert_ctx_new(c, lib);
        x->ctx[worker] = ctx ? ctx : NO_CTX;
    }
    return ctx == NO_CTX ? NULL : ctx;
}

void tf_tls_cert_ctxs_free(struct tf_tls_cert_ctxs *x)
{
    if (!x || x == &no_ctxs)
        return;
    for (int i = 0; i < x->n; i++) {
        if (x->ctx[i] && x->ctx[i] != NO_CTX) {
            SSL_CTX_free(x->ctx[i]);
            atomic_fetch_sub(&cert_ctxs, 1);
        }
    }
    free(x);
}
