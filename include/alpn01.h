/*
 * alpn01.h: ACME TLS-ALPN-01 (RFC 8737). Builds the self-signed challenge certificate for a
 * name and key authorization: fresh P-256 key, exactly one dNSName SAN, and the critical
 * id-pe-acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the DER OCTET STRING of
 * SHA-256(key authorization) (RFC 8737 §3).
 */
#ifndef TF_ALPN01_H
#define TF_ALPN01_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#define TF_ALPN01_PROTO "acme-tls/1"

/* Build the challenge certificate. On success returns 0 and new references in *cert and
 * *key (caller frees). Returns TF_ETLS on failure (error queue left for the caller), or
 * TF_EINVAL if name is not a valid DNS name or key_authorization is empty. */
int tf_alpn01_make_cert(const char *name, const char *key_authorization, X509 **cert,
                        EVP_PKEY **key);

#endif
