/*
 * certcache.h: the bounded cache of decoded certificates behind load-on-first-use stubs
 * (tlsfront/tls/certstub.h). The control loop owns it: it publishes a loaded certificate into its
 * stub with one atomic store (no new store snapshot: O(1) per load) and evicts with CLOCK, a
 * second-chance approximation of LRU: workers only set a stub's used bit (a relaxed store, see
 * tf_stub_resolve), the hand clears it and evicts the first stub found clear. Eviction swaps the
 * stub's pointer to NULL and hands the certificate to the caller as "retired": it may be freed
 * only once every worker has passed a quiescent point (handled a message), so a handshake that
 * read the pointer just before never sees freed memory. Connections that already use it hold
 * OpenSSL's own references (SSL_use_cert_and_key up-refs the X509s and the EVP_PKEY), so freeing
 * the tf_cert never pulls a certificate from under a connection. Never does I/O and never logs.
 */
#ifndef TF_CERTCACHE_H
#define TF_CERTCACHE_H

#include "tlsfront/tls/certstore.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

/* One loaded stub and the set that owns it (one reference on the set). */
struct tf_certcache_entry {
    struct tf_stub *stub;
    struct tf_stubset *set;
};

struct tf_certcache {
    struct tf_certcache_entry *ring; /* cap slots, n used */
    size_t cap, n, hand;
};

/* Certificates evicted together, freed when the last of `pending` holders releases them:
 * the control loop posts one batch to every worker, each releases it from its mailbox. */
struct tf_certcache_retired {
    atomic_int pending;
    struct tf_cert **certs; /* one reference each, owned */
    size_t n, cap;
};

void tf_certcache_init(struct tf_certcache *cc, size_t cap);

/* Publish cert (its reference moves to the stub) as stub's loaded certificate and put the
 * stub in the ring (taking a reference on its set), evicting another when the ring is full. A
 * newly installed stub starts with its used bit set: the handshakes it was loaded for get
 * it before the hand comes round. Evicted certificates are appended to *retired (allocated
 * here when NULL and something is evicted, with pending 0). Returns the number evicted.
 * The stub must not be loaded or in the ring already. Control loop only. */
size_t tf_certcache_install(struct tf_certcache *cc, struct tf_stubset *set, struct tf_stub *stub,
                            struct tf_cert *cert, struct tf_certcache_retired **retired);

/* Evict every stub whose set keep does not say to keep (keep(set, arg) false) into *retired
 * as above: after a reload, the stubs of the sets no store uses any more. Returns the number
 * evicted. */
size_t tf_certcache_prune(struct tf_certcache *cc,
                          bool (*keep)(const struct tf_stubset *set, void *arg), void *arg,
                          struct tf_certcache_retired **retired);

/* Evict stub (when the ring holds it) into *retired as above: its certificate was replaced
 * (a managed certificate renewed). O(ring). Returns the number evicted (0 or 1). */
size_t tf_certcache_evict(struct tf_certcache *cc, const struct tf_stub *stub,
                          struct tf_certcache_retired **retired);

/* Decoded certificates in the cache now. */
size_t tf_certcache_size(const struct tf_certcache *cc);

/* Evict everything into *retired as above, and free the ring. */
void tf_certcache_free(struct tf_certcache *cc, struct tf_certcache_retired **retired);

/* Drop one holder of r (any thread); the last frees the certificates. r may be NULL. */
void tf_certcache_retired_release(struct tf_certcache_retired *r);

#endif
