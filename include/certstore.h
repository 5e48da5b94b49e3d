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

#include "common.h"

#include <openssl/evp.h>
#include <openssl/x509.h>
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
    enum tf_cert_kind kind;
    enum tf_cert_source source;
    char *path;                  /* file it came from, or storage name; owned */
    char **names;                /* lower-cased SAN dNSNames (CN if no SAN); owned */
    int n_names;
    int64_t not_before, not_after; /* unix seconds */
    char *issuer;                /* one-line issuer DN, owned */
    char *serial;                /* hex, owned */
};

/* What a lookup returns: the certificates for one name, either kind may be NULL. */
struct tf_cert_slot {
    struct tf_cert *cert[TF_CERT_KINDS];
};

struct tf_certstore;

/* Build a tf_cert from PEM text: chain (leaf first) and key (key_pem may be NULL when
 * chain_pem also holds the key). Checks the key matches the leaf. Returns NULL and fills
 * err on failure. The result has refcount 1. */
struct tf_cert *tf_cert_from_pem(const char *chain_pem, size_t chain_len, const char *key_pem,
                                 size_t key_len, const char *path, char *err, size_t errlen);
void tf_cert_ref(struct tf_cert *c);
void tf_cert_unref(struct tf_cert *c);
/* True when c covers name (exact SAN or one-label wildcard SAN). */
bool tf_cert_covers(const struct tf_cert *c, const char *name);

/* Load every certificate under dir: X.crt + X.key pairs, X.pem (chain then key), and
 * certbot's X/fullchain.pem + X/privkey.pem. Broken files are logged (warn, naming the file
 * and the problem) and skipped. Blocking file I/O: call from start-up or the thread pool.
 * Returns a new store (refcount 1), or NULL when dir cannot be read at all (err filled). */
struct tf_certstore *tf_certstore_load_dir(const char *dir, int *n_loaded, int *n_failed,
                                           char *err, size_t errlen);

/* An empty store. */
struct tf_certstore *tf_certstore_new(void);

/* A new store holding everything in base (may be NULL) plus/replacing cert for each of its
 * names and kind (a newer cert replaces an older one of the same kind). base is unchanged. */
struct tf_certstore *tf_certstore_with(const struct tf_certstore *base, struct tf_cert *cert);

/* A new store holding everything in base except certificates with source == src for which
 * keep(cert, arg) returns false (used to merge a reloaded static dir with ACME certs). */
struct tf_certstore *tf_certstore_merge(const struct tf_certstore *static_store,
                                        const struct tf_certstore *acme_store);

/* Find the certificates for a lower-cased name: exact match first, then "*.parent" for the
 * name minus its first label. Returns NULL if neither exists. O(1) expected. The result is
 * borrowed from the store: valid while the caller holds its reference to the store. */
const struct tf_cert_slot *tf_certstore_lookup(const struct tf_certstore *st, const char *name);

/* Number of distinct certificates, and of names (keys) in the table. */
size_t tf_certstore_count(const struct tf_certstore *st);
size_t tf_certstore_names(const struct tf_certstore *st);

/* Call fn for each distinct certificate (each once, even when it has several names). */
void tf_certstore_foreach(const struct tf_certstore *st,
                          void (*fn)(const struct tf_cert *c, void *arg), void *arg);

void tf_certstore_ref(struct tf_certstore *st);
void tf_certstore_unref(struct tf_certstore *st);

#endif
