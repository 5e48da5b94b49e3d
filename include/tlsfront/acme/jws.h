/*
 * jws.h: the account-side crypto of ACME, as pure functions with no I/O: JWK and its RFC 7638
 * thumbprint, JWS in flattened JSON serialization (RFC 7515/8555 §6.2: ES256 with raw R||S
 * signatures, RS256), External Account Binding (RFC 8555 §7.3.4, HS256) and key
 * authorizations (RFC 8555 §8.1). Keys are key.h's, base64url is base64url.h's, CSRs csr.h's.
 * Every heap result is owned by the caller (free() for strings/bytes, EVP_PKEY_free for keys).
 * Functions return NULL (or a negative code) on failure and leave the OpenSSL error queue for
 * the caller to log.
 */
#ifndef TF_JWS_H
#define TF_JWS_H

#include "tlsfront/acme/key.h"
#include "tlsfront/base/b64url.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

/* The JWS "alg" for key: "ES256" for EC P-256, "RS256" for RSA, NULL for anything else (other
 * curves and key types are unsupported). The string is static. */
const char *tf_jws_alg(EVP_PKEY *key);

/* The public JWK as canonical JSON: required members only, lexicographic order, no
 * whitespace (RFC 7638 §3): {"crv":"P-256","kty":"EC","x":..,"y":..} or {"e":..,"kty":"RSA","n":..}. */
char *tf_jwk_json(EVP_PKEY *key);
/* base64url(SHA-256(tf_jwk_json(key))). */
char *tf_jwk_thumbprint(EVP_PKEY *key);
/* token "." thumbprint (RFC 8555 §8.1). */
char *tf_key_authorization(const char *token, EVP_PKEY *account_key);

/*
 * A JWS in flattened JSON serialization: {"protected":..,"payload":..,"signature":..}.
 * Protected header: alg (ES256 or RS256 from the key), nonce, url, and kid when kid != NULL,
 * else jwk. payload is the JSON text to sign; "" makes a POST-as-GET (empty payload).
 */
char *tf_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload);

/*
 * The externalAccountBinding object for newAccount (RFC 8555 §7.3.4): a JWS over the account
 * key's JWK with protected {"alg":"HS256","kid":eab_kid,"url":url}, MAC'd with hmac_key.
 */
char *tf_jws_eab(const char *eab_kid, const unsigned char *hmac_key, size_t hmac_len,
                 EVP_PKEY *account_key, const char *url);

#endif
