/*
 * certctx.c: per-certificate SSL_CTXs (see tls.h for why they exist and their process-wide
 * budget) and the ALPN callback that every server context uses, the listener's and the
 * per-certificate ones alike, since OpenSSL asks the context the handshake switched to.
 * Never touches a connection beyond the struct tf_tls_alpn at the start of its app data.
 */
#include "tlsfront/tls/tls.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/tls/hello.h"

#include <openssl/err.h>
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

SSL_CTX *tf_tls_cert_ctx_new(const struct tf_cert *c)
{
    if (atomic_fetch_add(&cert_ctxs, 1) >= 2 * TF_TLS_CERT_CTX_MAX) {
        atomic_fetch_sub(&cert_ctxs, 1);
        return NULL;
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_use_cert_and_key(ctx, c->leaf, c->key, c->chain, 1) != 1) {
        SSL_CTX_free(ctx);
        ERR_clear_error();
        atomic_fetch_sub(&cert_ctxs, 1);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, tf_tls_alpn_select_cb, NULL);
    return ctx;
}

void tf_tls_cert_ctx_free(SSL_CTX *ctx)
{
    if (!ctx)
        return;
    SSL_CTX_free(ctx);
    atomic_fetch_sub(&cert_ctxs, 1);
}
