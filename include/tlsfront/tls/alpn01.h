/*
 * alpn01.h: ACME TLS-ALPN-01 (RFC 8737) on the serving side: the protocol name and the
 * snapshot of pending challenge certificates that every worker answers from. The
 * certificates themselves are built by the ACME module (tlsfront/acme/alpn01_cert.h).
 */
#ifndef TF_ALPN01_H
#define TF_ALPN01_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#define TF_ALPN01_PROTO "acme-tls/1"

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
