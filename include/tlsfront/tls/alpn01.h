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


/*
 * Pending challenges: an immutable, refcounted snapshot name -> challenge certificate, built
 * on the control loop when the ACME client publishes or unpublishes a challenge and handed to
 * every worker, so that every worker answers every pending challenge. Small (one entry per
 * authorization in flight), so a sorted array is enough.
 */
#include "tlsfront/base/common.h"

struct tf_challenge {
    char *name;
    X509 *cert;
    EVP_PKEY *key;
};

struct tf_challenges {
    struct tf_ref ref;
    int n;
    struct tf_challenge *items; /* sorted by name */
};

/* A new snapshot: base (may be NULL) plus name -> (cert, key), replacing an older entry for
 * name. Takes new references on cert and key. */
struct tf_challenges *tf_challenges_with(const struct tf_challenges *base, const char *name,
                                         X509 *cert, EVP_PKEY *key);
/* A new snapshot: base without name (base may be NULL). */
struct tf_challenges *tf_challenges_without(const struct tf_challenges *base, const char *name);
/* The challenge for name, borrowed from the snapshot, or NULL. */
const struct tf_challenge *tf_challenges_find(const struct tf_challenges *c, const char *name);
void tf_challenges_ref(struct tf_challenges *c);
void tf_challenges_unref(struct tf_challenges *c);

#endif
