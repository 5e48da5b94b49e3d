/*
 * alpn01_cert.h: the TLS-ALPN-01 challenge certificate (RFC 8737 §3) for a name and key
 * authorization: fresh P-256 key, exactly one dNSName SAN, and the critical
 * id-pe-acmeIdentifier extension (1.3.6.1.5.5.7.1.31) holding the DER OCTET STRING of
 * SHA-256(key authorization). Pure: no I/O.
 */
#ifndef TF_ALPN01_CERT_H
#define TF_ALPN01_CERT_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Build the challenge certificate. On success returns 0 and new references in *cert and
 * *key (caller frees). Returns TF_ETLS on failure (error queue left for the caller), or
 * TF_EINVAL if name is not a valid DNS name or key_authorization is empty. */
int tf_alpn01_make_cert(const char *name, const char *key_authorization, X509 **cert,
                        EVP_PKEY **key);

#endif
