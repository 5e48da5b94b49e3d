/*
 * certstore.h: the SNI certificate store. A store is an immutable, refcounted snapshot: a
 * hash table from lower-cased name (exact "a.example.com" or wildcard "*.example.com") to a
 * slot holding up to one ECDSA and one RSA certificate. Workers read a snapshot with no lock;
 * the control loop builds a new one (from a directory, or the old one plus an issued
 * certificate) and hands it to every worker. Certificates inside are refcounted too, so a
 * new snapshot shares them with the old one at the cost of a pointer each.
 */
#ifndef TF_CERTSTORE_H
#define TF_CERTSTORE_H

#include "tlsfront/base/common.h"
#include "tlsfront/tls/certstub.h"

#include <openssl/evp.h>
#include <openssl/types.h>
#include <openssl/x509.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum tf_cert_kind { TF_CERT_EC = 0, TF_CERT_RSA = 1, TF_CERT_KINDS = 2 };
enum tf_cert_source { TF_SRC_STATIC = 0, TF_SRC_ACME = 1 };

/* One certificate with its chain and key. Immutable once built; shared by refcount. */
struct tf_cert {
    struct tf_ref ref;
    X509 *leaf;                  /* owned (one reference) */
    STACK_OF(X509) *chain;       /* intermediates, owned; may be empty, never NULL */
    EVP_PKEY *key;               /* owned */
    /* per-worker contexts with only this certificate, built on first use:
     * tf_tls_cert_ctx_get (tls.h); owned. Next to leaf, chain and key: the handshake reads
     * the four together (one cache line, not two, for a certificate not in the CPU caches) */
    _Atomic(struct tf_tls_cert_ctxs *) ctxs;
    enum tf_cert_kind kind;
    enum tf_cert_source source;
    char *path;                  /* file it came from, or storage name; owned */
    char **names;                /* lower-cased SAN dNSNames (CN if no SAN); owned */
    int n_names;
    int64_t not_before, not_after; /* unix seconds */
    char *issuer;                /* one-line issuer DN, owned */
    char *serial;                /* hex, owned */
    _Atomic int64_t last_used;   /* unix seconds a handshake last chose it (ACME certs only);
                                    written by workers, read by renewal */
};

/* What a lookup returns: for each kind, nothing (0), a decoded certificate, or a stub to
 * load on first use (tlsfront/tls/certstub.h), told apart by the low bit. Read it with
 * tf_slot_cert and tf_slot_stub. */
struct tf_cert_slot {
    uintptr_t v[TF_CERT_KINDS];
};

/* The decoded certificate of kind k in slot, or NULL (none, or a stub). */
static inline struct tf_cert *tf_slot_cert(const struct tf_cert_slot *slot, int k)
{
    return (slot->v[k] & 1) ? NULL : (struct tf_cert *)slot->v[k];
}

/* The stub of kind k in slot, or NULL (none, or a decoded certificate). */
static inline struct tf_stub *tf_slot_stub(const struct tf_cert_slot *slot, int k)
{
    return (slot->v[k] & 1) ? (struct tf_stub *)(slot->v[k] - 1) : NULL;
}

/* A slot resolved for a handshake: decoded certificates only, either may be NULL. */
struct tf_cert_pair {
    struct tf_cert *cert[TF_CERT_KINDS];
};

struct tf_certstore;

/* Build a tf_cert from PEM text: chain (leaf first) and key (key_pem may be NULL when
 * chain_pem also holds the key). Checks the key matches the leaf. Returns NULL and fills
 * err on failure. The result has refcount 1. Key: EC or RSA, unencrypted (PKCS#8 or
 * traditional); other types fail with "unsupported key type". Names: the SAN dNSNames,
 * lower-cased, deduplicated and checked (LDH labels, "*." prefix only); the subject CN only
 * when the SAN holds no dNSName; a certificate without any valid name fails. Errors read
 * "no certificate", "no private key", "key does not match certificate", "malformed PEM
 * (...)", "encrypted private key not supported", ... The result has source TF_SRC_STATIC
 * and path (or "-" when path is NULL); the caller may set source to TF_SRC_ACME before
 * sharing it. Leaves the OpenSSL error queue empty. */
struct tf_cert *tf_cert_from_pem(const char *chain_pem, size_t chain_len, const char *key_pem,
                                 size_t key_len, const char *path, char *err, size_t errlen);
void tf_cert_ref(struct tf_cert *c);
void tf_cert_unref(struct tf_cert *c);
/* True when c covers name (exact SAN or one-label wildcard SAN). */
bool tf_cert_covers(const struct tf_cert *c, const char *name);

/* Load every certificate under dir: X.crt + X.key pairs, X.pem (chain then key, or chain
 * only with an X.key beside it), and certbot's X/fullchain.pem + X/privkey.pem (other files
 * in X/ are ignored; symlinks are followed, so /etc/letsencrypt/live works). Entries whose
 * names start with '.' and other files are ignored. Broken files are logged (warn, naming
 * the file and the problem), skipped and counted in *n_failed; a CA certificate without DNS
 * names (a trust anchor such as mkcerts.sh's ca.crt) is skipped at info level and not
 * counted; a lone X.key is warned about and not counted. *n_loaded counts certificates
 * parsed, including any whose names all went to a later-expiring certificate. Conflicts are
 * resolved as in tf_certstore_from_certs. O(n log n) in the number of entries.
 * Blocking file I/O: call from start-up or the thread pool.
 * Returns a new store (refcount 1), or NULL when dir cannot be read at all (err filled). */
struct tf_certstore *tf_certstore_load_dir(const char *dir, int *n_loaded, int *n_failed,
                                           char *err, size_t errlen);

/* Like tf_certstore_load_dir, but when the directory holds more than eager_max
 * certificates, index it instead: each file's leaf certificate is read for its names, kind
 * and expiry (in parallel, no key, no chain, no context) into one stub set
 * (tlsfront/tls/certstub.h) whose stubs the store holds and tlsfront/tls/certcache.h loads
 * on first use. At most eager_max certificates: the same as tf_certstore_load_dir.
 * *n_loaded counts certificates loaded or indexed. *lazy (may be NULL) says which
 * happened. Blocking file I/O. */
struct tf_certstore *tf_certstore_index_dir(const char *dir, int eager_max, int *n_loaded,
                                            int *n_failed, bool *lazy, char *err,
                                            size_t errlen);

/* An empty store. */
struct tf_certstore *tf_certstore_new(void);

/* A new store holding the n certs (the store takes its own reference on each one it keeps;
 * the caller keeps its references). Used for a directory load and for the ACME certificates
 * read back from storage: O(total names), unlike n calls of tf_certstore_with. When two
 * certs of the same kind claim a name: TF_SRC_STATIC beats TF_SRC_ACME, then the later
 * not_after wins, then the earlier one in the array. */
struct tf_certstore *tf_certstore_from_certs(struct tf_cert *const *certs, size_t n);

/* A new store holding every stub of set under each of its names (the store takes a
 * reference on set). Conflicts as in tf_certstore_from_certs (the later not_after, then the
 * earlier stub). Stores made from it (with, merge, without) keep the set too. */
struct tf_certstore *tf_certstore_from_stubs(struct tf_stubset *set);

/* The set of st that holds stub, or NULL (borrowed: valid while st is). */
struct tf_stubset *tf_certstore_stubset(const struct tf_certstore *st, const struct tf_stub *stub);

/* A new store holding everything in base (may be NULL) plus/replacing cert for each of its
 * names and kind: cert replaces whatever cert of its kind held the name (even one with a
 * later not_after, so a switch to shorter-lived certificates works), except that a
 * TF_SRC_ACME cert never displaces a TF_SRC_STATIC one. The other kind's cert for the name
 * stays, and a replaced cert stays in the new store under any names cert does not claim.
 * Wildcard entries are not consulted: keep ACME certs in their own store and publish
 * tf_certstore_merge(static, acme) to have operator wildcards win as well. base is
 * unchanged. O(names in base): meant for one issued certificate at a time.
 * only: NULL puts cert under every name it carries; a name puts it under that name alone
 * (lower-cased; nothing when cert does not cover it). A managed certificate is published
 * with only = the name that was ordered, so a CA that answers with extra SANs cannot take
 * over names nobody ordered from it. */
struct tf_certstore *tf_certstore_with(const struct tf_certstore *base, struct tf_cert *cert,
                                       const char *only);

/* tf_certstore_with for n certificates at once, applied in order (a later one replaces an
 * earlier one as tf_certstore_with would): certs[i] under only[i] (only, or only[i], NULL:
 * under every name of certs[i]). O(names in base + names added): loading n stored
 * certificates this way is linear, where n calls of tf_certstore_with are quadratic. */
struct tf_certstore *tf_certstore_with_each(const struct tf_certstore *base,
                                            struct tf_cert *const *certs,
                                            const char *const *only, size_t n);
/* tf_certstore_with_each for stubs: stubs[i] (one of sets[i], which the new store takes a
 * reference on) under each of its names, by the same rule; a managed stub also takes its
 * name from a managed stub of the other kind (the storage keeps one certificate per managed
 * name, so that stub could only load one of the wrong kind). Managed stubs obtained while
 * running are published this way. base is unchanged. */
struct tf_certstore *tf_certstore_with_stubs(const struct tf_certstore *base,
                                             struct tf_stubset *const *sets,
                                             struct tf_stub *const *stubs, size_t n);
/* A new store holding everything in base (may be NULL) but the entry of name (exact key,
 * "*.parent" included; compared without case). A certificate left without any name drops
 * out. base is unchanged. O(names in base). */
struct tf_certstore *tf_certstore_without(const struct tf_certstore *base, const char *name);

/* A new store with all names of both stores (used to combine a reloaded static dir with the
 * ACME certificates). Rule: certificates configured by the operator win. For each name and
 * kind, the static store's cert is used when the static store answers that name for that
 * kind, through its exact entry or, for a name without a static exact entry, through its
 * "*.parent" wildcard entry; the ACME cert fills only the kinds static leaves empty. An
 * ACME name whose every ACME cert is overridden that way is left out (the static wildcard
 * answers it). Either store may be NULL. Neither is changed. */
struct tf_certstore *tf_certstore_merge(const struct tf_certstore *static_store,
                                        const struct tf_certstore *acme_store);

/* Find the certificates for a lower-cased name: exact match first, then "*.parent" for the
 * name minus its first label. Returns NULL if neither exists. O(1) expected. The result is
 * borrowed from the store: valid while the caller holds its reference to the store.
 * The name is lower-cased here as well (ASCII), so mixed case is harmless. A wildcard
 * matches exactly one label ("a.b.example.com" does not match "*.example.com"), and a name
 * with an exact entry never falls back to the wildcard, even for a kind its slot lacks.
 * Lock-free and safe from any thread: a store never changes after construction. */
const struct tf_cert_slot *tf_certstore_lookup(const struct tf_certstore *st, const char *name);

/* Number of distinct certificates (stubs included: every stub of its sets but those the
 * manager dropped, so O(sets); for a managed set that grows while running this counts the
 * newest store's, which is what the server asks), and of names (keys). */
size_t tf_certstore_count(const struct tf_certstore *st);
size_t tf_certstore_names(const struct tf_certstore *st);
/* Bytes the store's index takes: its table, key arena and certificate list, and its stub
 * sets (stubs and text) in full; decoded certificates are not counted. */
size_t tf_certstore_index_bytes(const struct tf_certstore *st);

/* Call fn for each distinct certificate (each once, even when it has several names): every
 * stub of a --certs set, and the managed stubs st's table holds (O(names)). A
 * store holds one reference on each; the last tf_certstore_unref drops them. A stub is
 * shown as a certificate of its names, kind, source, expiry and path, with nothing decoded
 * (no leaf, key, issuer or serial), valid during the call only. */
void tf_certstore_foreach(const struct tf_certstore *st,
                          void (*fn)(const struct tf_cert *c, void *arg), void *arg);

void tf_certstore_ref(struct tf_certstore *st);
void tf_certstore_unref(struct tf_certstore *st);

#endif
