/*
 * certstub.h: certificates indexed but not loaded (load on first use). A directory of more
 * certificates than the cache holds becomes a stub set: one flat array of 40-byte stubs and
 * one text arena (each stub's names, and its file path unless the path is its first name
 * plus ".pem" or ".crt"), refcounted as a whole, with no allocation per certificate. A stub
 * knows what a load needs (where its files are, the names and kind the loaded certificate
 * must have) and carries an atomic pointer to its decoded certificate, which the cache
 * (tlsfront/tls/certcache.h) sets and clears. Stores (tlsfront/tls/certstore.h) put stubs
 * in their slots and hold a reference on each set they use.
 *
 * The load is chosen by the stub's source: a file stub (TF_SRC_STATIC) reads its files
 * (tf_stub_load); a managed stub (TF_SRC_ACME: a certificate in the --storage, indexed from
 * its meta.json) has its chain and key read through the storage by the server's cache and
 * decoded by tf_stub_decode. Managed stubs live in a set of their own (dir is the storage's
 * "certs" folder, a stub's path is derived from its name), which also keeps one last-use
 * time per stub in a side array; the rest (slots, cache, holding handshakes) is the same.
 */
#ifndef TF_CERTSTUB_H
#define TF_CERTSTUB_H

#include "tlsfront/base/common.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tf_cert;

/* Where a stub's key is (tf_stub.form bits 0-1). */
enum {
    TF_STUB_KEY_IN = 0,      /* in the certificate file (X.pem) */
    TF_STUB_KEY_BESIDE = 1,  /* X.key beside X.crt or X.pem */
    TF_STUB_KEY_CERTBOT = 2, /* privkey.pem beside the certificate file (certbot) */
};
/* Where a stub's certificate file is (tf_stub.form bits 2-3), relative to the set's dir. */
enum {
    TF_STUB_PATH_TEXT = 0, /* stored after the names */
    TF_STUB_PATH_PEM = 1,  /* the first name + ".pem" */
    TF_STUB_PATH_CRT = 2,  /* the first name + ".crt" */
};
#define TF_STUB_KEY(form) ((form)&3)
#define TF_STUB_PATH(form) (((form) >> 2) & 3)
#define TF_STUB_FORM(key, path) ((uint8_t)((key) | ((path) << 2)))

/* One indexed certificate. Written once while its set is built, except: loaded (control
 * loop: release store; workers: acquire load), used (workers set it, the cache's hand clears
 * it, relaxed), failed (control loop sets it once, workers read it; a managed stub's is
 * cleared when its certificate is renewed), loading (control loop only) and a managed
 * stub's not_after (the control loop updates it on renewal; workers never read it). */
struct tf_stub {
    _Atomic(struct tf_cert *) loaded; /* the decoded certificate (one reference, the cache's) */
    void *loading;                    /* the load in flight, or NULL */
    int64_t not_after;                /* unix seconds */
    uint32_t text;                    /* offset of its names in the set's text */
    uint16_t n_names;                 /* lower-cased SAN dNSNames (CN if no SAN), >= 1 */
    uint8_t kind;                     /* enum tf_cert_kind */
    uint8_t form;                     /* TF_STUB_FORM(key, path) */
    uint8_t source;                   /* enum tf_cert_source */
    _Atomic unsigned char used;
    _Atomic unsigned char failed; /* its files failed to load (logged once) */
};

/* Stubs of one directory (or the managed certificates), owned together. Immutable once
 * built but for the stubs' fields named above and the last-use times, except a live set
 * (tf_stubset_new_live): the control loop appends stubs to it while it is published, into
 * room reserved when it was made, so no stub, last-use time or name ever moves. Shared by
 * refcount: stores, the cache's ring and loads in flight hold one each. */
struct tf_stubset {
    struct tf_ref ref;
    char *dir;              /* owned: the directory paths are relative to */
    struct tf_stub *stubs;  /* owned: n stubs (room for cap) */
    size_t n, cap;
    char *text;             /* owned: names and paths, NUL-terminated */
    size_t text_len, text_cap;
    /* A managed set only (else NULL): per stub, the unix second a handshake last chose it
     * (workers write, renewal reads, relaxed); owned, cap entries. */
    _Atomic int64_t *last_used;
    /* A managed set only: its stubs the manager let go since (a name forgotten, or given a
     * stub of the other kind); the newest store no longer holds them (control loop). */
    size_t n_dropped;
};

/* What a handshake serves for a stub: its decoded certificate, or NULL when not loaded.
 * Lock-free: an acquire load, and a relaxed store of the used bit when it is clear. The
 * result is valid until the end of the calling callback (the cache frees an evicted
 * certificate only after every worker has passed a quiescent point). */
static inline struct tf_cert *tf_stub_resolve(struct tf_stub *s)
{
    struct tf_cert *l = atomic_load_explicit(&s->loaded, memory_order_acquire);
    if (l && !atomic_load_explicit(&s->used, memory_order_relaxed))
        atomic_store_explicit(&s->used, 1, memory_order_relaxed);
    return l;
}

/* A new empty set for dir (copied), refcount 1, with room for n stubs and text_cap bytes. */
struct tf_stubset *tf_stubset_new(const char *dir, size_t n, size_t text_cap);
/* Append a stub for n_names names (lower-cased, valid, each NUL-terminated, one after the
 * other in names) whose certificate file is rel (relative to the set's dir) and key as
 * key_form (TF_STUB_KEY_*) says. Returns the stub. Building only: stubs move as the set
 * grows. */
struct tf_stub *tf_stubset_add(struct tf_stubset *set, const char *names, int n_names,
                               const char *rel, int key_form);
/* Give back unused room once built. */
void tf_stubset_seal(struct tf_stubset *set);
void tf_stubset_ref(struct tf_stubset *set);
void tf_stubset_unref(struct tf_stubset *set);
/* Whether s is one of set's stubs (any thread: a live set's n changes, its room does not;
 * a sealed set's room is its n). */
static inline bool tf_stubset_holds(const struct tf_stubset *set, const struct tf_stub *s)
{
    return set && s >= set->stubs && s < set->stubs + set->cap;
}

/* A new empty managed set (stubs of source TF_SRC_ACME, with last-use times) for the
 * storage folder dir, refcount 1, room for n stubs. */
struct tf_stubset *tf_stubset_new_managed(const char *dir, size_t n);
/* Append a managed stub for one name (lower-cased, valid) of the given kind and expiry.
 * Building only. Returns the stub's index. */
size_t tf_stubset_add_managed(struct tf_stubset *set, const char *name, int kind,
                              int64_t not_after);
/* A new empty live managed set for names obtained while running: room for n stubs and
 * text_cap bytes of names, fixed (see struct tf_stubset), refcount 1. */
struct tf_stubset *tf_stubset_new_live(const char *dir, size_t n, size_t text_cap);
/* Append a managed stub to a live set (control loop, the set may be published). Returns
 * the stub's index, or -1 when the set has no room left for it. */
long tf_stubset_append_managed(struct tf_stubset *set, const char *name, int kind,
                               int64_t not_after);
/* Where s's last use is kept, or NULL (not a managed set's stub). Lock-free. */
static inline _Atomic int64_t *tf_stub_last_used(const struct tf_stubset *set,
                                                 const struct tf_stub *s)
{
    return set && set->last_used ? &set->last_used[s - set->stubs] : NULL;
}

/* Name i (< s->n_names) of s, borrowed from set. */
const char *tf_stub_name(const struct tf_stubset *set, const struct tf_stub *s, int i);
/* The certificate file's path (dir/rel) and the key file's (empty when in the certificate
 * file) into buffers of n bytes. Returns 0, or -1 when a path does not fit. */
int tf_stub_paths(const struct tf_stubset *set, const struct tf_stub *s, char *crt, char *key,
                  size_t n);

/* Load s's files (blocking file I/O: the thread pool). The result (refcount 1, no
 * per-certificate context, source as the stub's) must be of the stub's kind and cover all
 * of the stub's names, else the file changed since the index was built and the load fails
 * with err saying so. Returns NULL and fills err on failure. */
struct tf_cert *tf_stub_load(const struct tf_stubset *set, const struct tf_stub *s, char *err,
                             size_t errlen);
/* tf_stub_load's decoding half, for texts read some other way (a managed stub's, from the
 * storage): chain and key (key_pem may be NULL when chain_pem holds it), checked against
 * the stub the same way. CPU-bound: the thread pool. */
struct tf_cert *tf_stub_decode(const struct tf_stubset *set, const struct tf_stub *s,
                               const char *chain_pem, size_t chain_len, const char *key_pem,
                               size_t key_len, char *err, size_t errlen);

#endif
