/*
 * tls.h: the server SSL_CTX (TLS 1.2/1.3, ECDHE and AEAD only, server preference, session
 * tickets through the worker's rotating key ring) and the handshake callbacks: certificate
 * choice by SNI in the ClientHello callback, ALPN by route.
 */
#ifndef TF_TLS_H
#define TF_TLS_H

#include "config.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

/* A new server context for cfg. Returns NULL after logging the OpenSSL errors. */
SSL_CTX *tf_tls_ctx_new(const struct tf_config *cfg);

/* Clear this thread's OpenSSL error queue before an SSL call (STYLE: branch on
 * SSL_get_error with a clean queue). Peeking first: the queue is almost always empty, and
 * ERR_clear_error() costs a measurable share of a handshake's instructions. */
static inline void tf_tls_clear_errors(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

#endif
