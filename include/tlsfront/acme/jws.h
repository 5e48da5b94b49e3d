/*
 * jws.h: the crypto ACME needs, as pure functions with no I/O: base64url (RFC 4648 §5, no
 * padding), key generation and PEM, JWK and its RFC 7638 thumbprint, JWS in flattened JSON
 * serialization (RFC 7515/8555 §6.2: ES256 with raw R||S signatures, RS256), External
 * Account Binding (RFC 8555 §7.3.4, HS256), key authorizations (RFC 8555 §8.1) and CSRs.
 * Every heap result is owned by the caller (free() for strings/bytes, EVP_PKEY_free for keys).
 * Functions return NULL (or a negative code) on failure and leave the OpenSSL error queue for
 * the caller to log.
 */
#ifndef TF_JWS_H
#define TF_JWS_H

#include "tlsfront/base/b64url.h"
#include "tlsfront/config/config.h" /* enum tf_key_type */

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>
#include <stddef.h>

/* Generate a key. RSA generation is slow: call it from libuv's thread pool. */
EVP_PKEY *tf_key_generate(enum tf_key_type type);
/* PKCS#8 PEM of the private key, NUL-terminated, or NULL. */
char *tf_key_to_pem(EVP_PKEY *key);
/* Parse a PEM private key (PKCS#8, SEC1 EC or PKCS#1 RSA). */
EVP_PKEY *tf_key_from_pem(const char *pem, size_t len);

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

/* A DER CSR for names (first is the subject CN too; all are dNSName SANs), signed with key,
 * returned base64url-encoded as newOrder/finalize want it. */
char *tf_csr_b64url(EVP_PKEY *key, const char *const *names, int n_names);

/* Helpers shared by the CSR and the TLS-ALPN-01 certificate (alpn01_cert.c). */
/* True if name can be a dNSName: 1..253 characters of letters, digits, '-', '.', '_' and '*'
 * (A-labels only; IDNs must already be punycode). */
bool tf_dns_name_valid(const char *name);
/* A subjectAltName extension listing every name as a dNSName (non-critical), or NULL. */
X509_EXTENSION *tf_x509_san_ext(const char *const *names, int n_names);
/* Adds CN=cn to xn when it fits the X.520 64-character limit; longer names are skipped since
 * the SAN carries them (CAs accept an empty subject). Returns 0, TF_EINVAL or TF_ETLS. */
int tf_x509_name_add_cn(X509_NAME *xn, const char *cn);

#endif
