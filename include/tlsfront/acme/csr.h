/*
 * csr.h: certificate signing requests for newOrder/finalize (csr.c) and the X.509 helpers
 * the CSR shares with the TLS-ALPN-01 certificate (alpn01_cert.c). Pure: no I/O.
 */
#ifndef TF_CSR_H
#define TF_CSR_H

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <stdbool.h>

/* A DER CSR for names (first is the subject CN too; all are dNSName SANs), signed with key,
 * returned base64url-encoded as newOrder/finalize want it. */
char *tf_csr_b64url(EVP_PKEY *key, const char *const *names, int n_names);

/* Helpers shared by the CSR and the TLS-ALPN-01 certificate (alpn01_cert.c); names are
 * checked with base's tf_name_pattern_valid. */
/* A subjectAltName extension listing every name as a dNSName (non-critical), or NULL. */
X509_EXTENSION *tf_x509_san_ext(const char *const *names, int n_names);
/* Adds CN=cn to xn when it fits the X.520 64-character limit; longer names are skipped since
 * the SAN carries them (CAs accept an empty subject). Returns 0, TF_EINVAL or TF_ETLS. */
int tf_x509_name_add_cn(X509_NAME *xn, const char *cn);

#endif
