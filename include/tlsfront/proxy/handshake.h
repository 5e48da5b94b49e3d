/*
 * handshake.h: the listener's server SSL_CTX (TLS 1.2/1.3, ECDHE and AEAD only, server
 * preference, session tickets through the worker's rotating key ring) and its handshake
 * callbacks: certificate choice by SNI in the ClientHello callback, the TLS-ALPN-01
 * challenge, the on-demand hold, ALPN by route (tls.h).
 */
#ifndef TF_HANDSHAKE_H
#define TF_HANDSHAKE_H

#include "tlsfront/config/config.h"

#include <openssl/ssl.h>

/* A new server context for cfg in the library context lib (a worker's, see tls.h; NULL: the
 * default). Returns NULL after logging the OpenSSL errors. */
SSL_CTX *tf_handshake_ctx_new(const struct tf_config *cfg, OSSL_LIB_CTX *lib);

#endif
