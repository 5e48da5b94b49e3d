/*
 * key.h: private keys for ACME accounts and certificates (key.c). Every result belongs to
 * the caller (EVP_PKEY_free, free()); NULL on failure with the OpenSSL error queue left for
 * the caller to log.
 */
#ifndef TF_KEY_H
#define TF_KEY_H

#include "tlsfront/config/config.h" /* enum tf_key_type */

#include <openssl/evp.h>
#include <stddef.h>

/* Generate a key. RSA generation is slow: call it from libuv's thread pool. */
EVP_PKEY *tf_key_generate(enum tf_key_type type);
/* PKCS#8 PEM of the private key, NUL-terminated, or NULL. */
char *tf_key_to_pem(EVP_PKEY *key);
/* Parse a PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA). */
EVP_PKEY *tf_key_from_pem(const char *pem, size_t len);

#endif
