/*
 * tls.h: the server SSL_CTX (TLS 1.2/1.3, ECDHE and AEAD only, server preference, session
 * tickets through the worker's rotating key ring) and the handshake callbacks: certificate
 * choice by SNI in the ClientHello callback, ALPN by route.
 */
#ifndef TF_TLS_H
#define TF_TLS_H

#include "config.h"

#include <openssl/ssl.h>

/* A new server context for cfg. Returns NULL after logging the OpenSSL errors. */
SSL_CTX *tf_tls_ctx_new(const struct tf_config *cfg);

/* Log the OpenSSL error queue for a connection at debug level and clear it. */
void tf_tls_clear_errors(void);

#endif
