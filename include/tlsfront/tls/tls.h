/*
 * tls.h: the server SSL_CTX (TLS 1.2/1.3, ECDHE and AEAD only, server preference, session
 * tickets through the worker's rotating key ring) and the handshake callbacks: certificate
 * choice by SNI in the ClientHello callback, ALPN by route.
 */
#ifndef TF_TLS_H
#define TF_TLS_H

#include "tlsfront/config/config.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

/* A new server context for cfg. Returns NULL after logging the OpenSSL errors. */
SSL_CTX *tf_tls_ctx_new(const struct tf_config *cfg);

struct tf_cert;

/* A certificate directory of up to this many certificates gives each a context of its own
 * (~13 KiB each; a larger directory gives none). The process-wide cap is twice as many, so
 * that a reload can build a full new store while the old one is still in use. */
#define TF_TLS_CERT_CTX_MAX 1000

/* A context holding only c's certificate, chain and key, with the ALPN callback: the
 * ClientHello callback switches to it with SSL_set_SSL_CTX(), which copies the prepared
 * certificate instead of SSL_use_cert_and_key()'s per-handshake key match and security
 * checks (~15,000 instructions). Everything else is per-SSL state taken from the listener's
 * context at SSL_new (versions, ciphers, groups, options), and session tickets stay with
 * the listener's context. NULL once 2 * TF_TLS_CERT_CTX_MAX exist (the caller falls back
 * to SSL_use_cert_and_key) or on error. Thread-safe; free with tf_tls_cert_ctx_free. */
SSL_CTX *tf_tls_cert_ctx_new(const struct tf_cert *c);
void tf_tls_cert_ctx_free(SSL_CTX *ctx);

/* Clear this thread's OpenSSL error queue before an SSL call (STYLE: branch on
 * SSL_get_error with a clean queue). Peeking first: the queue is almost always empty, and
 * ERR_clear_error() costs a measurable share of a handshake's instructions. */
static inline void tf_tls_clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

#endif
