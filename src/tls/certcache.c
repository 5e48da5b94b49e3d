/*
 * certcache.c: the CLOCK cache of decoded certificates (see tlsfront/tls/certcache.h for
 * the contract). The ring is an array in insertion order; the hand walks it, giving each
 * stub whose used bit is set a second chance (clearing the bit), and replaces the first one
 * found clear. Workers never touch the ring, only the stubs' used bits and loaded pointers.
 * Each entry holds a reference on its stub's set, so a set replaced by a reload lives until
 * its stubs leave the ring (tf_certcache_prune takes them out at once).
 */
#include "tlsfront/tls/certcache.h"

#include <assert.h>
#include <stdlib.h>

void tf_certcache_init(struct tf_certcache *cc, size_t cap)
{
    cc->cap = cap ? cap : 1;
    cc->ring = tf_calloc(cc->cap, sizeof *cc->ring);
    cc->n = cc->hand = 0;
}

static void retire(struct tf_certcache_retired **retired, struct tf_cert *c)
{
    if (!c)
        return;
    struct tf_certcache_retired *r = *retired;
    if (!r) {
        r = *retired = tf_calloc(1, sizeof *r);
        atomic_init(&r->pending, 0);
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? r->cap * 2 : 4;
        r->certs = tf_realloc(r->certs, r->cap * sizeof *r->certs);
    }
    r->certs[r->n++] = c;
}

/* Take an entry out of the cache: its certificate goes to *retired, its set reference
 * goes. */
static void evict(struct tf_certcache_entry *e, struct tf_certcache_retired **retired)
{
    retire(retired, atomic_exchange_explicit(&e->stub->loaded, NULL, memory_order_acq_rel));
    tf_stubset_unref(e->set);
    *e = (struct tf_certcache_entry){NULL, NULL};
}

size_t tf_certcache_install(struct tf_certcache *cc, struct tf_stubset *set, struct tf_stub *stub,
                            struct tf_cert *cert, struct tf_certcache_retired **retired)
{
    assert(tf_stubset_holds(set, stub) && !atomic_load(&stub->loaded));
    size_t evicted = 0;
    size_t slot = cc->n;
    if (cc->n == cc->cap) {
        /* Two turns at most: the first clears every used bit it passes (workers that set
         * them again meanwhile cannot keep the hand going round for ever). */
        for (size_t steps = 0;; steps++) {
            struct tf_stub *s = cc->ring[cc->hand].stub;
            if (steps < 2 * cc->cap && atomic_load_explicit(&s->used, memory_order_relaxed)) {
                atomic_store_explicit(&s->used, 0, memory_order_relaxed);
                cc->hand = (cc->hand + 1) % cc->cap;
                continue;
            }
            evict(&cc->ring[cc->hand], retired);
            evicted++;
            slot = cc->hand;
            cc->hand = (cc->hand + 1) % cc->cap;
            break;
        }
    } else {
        cc->n++;
    }
    tf_stubset_ref(set);
    cc->ring[slot] = (struct tf_certcache_entry){stub, set};
    atomic_store_explicit(&stub->used, 1, memory_order_relaxed);
    atomic_store_explicit(&stub->loaded, cert, memory_order_release);
    return evicted;
}

size_t tf_certcache_evict(struct tf_certcache *cc, const struct tf_stub *stub,
                          struct tf_certcache_retired **retired)
{
    for (size_t i = 0; i < cc->n; i++) {
        if (cc->ring[i].stub != stub)
            continue;
        evict(&cc->ring[i], retired);
        cc->ring[i] = cc->ring[--cc->n]; /* the hand's order matters little: keep it dense */
        if (cc->hand >= cc->n)
            cc->hand = 0;
        return 1;
    }
    return 0;
}

size_t tf_certcache_prune(struct tf_certcache *cc,
                          bool (*keep)(const struct tf_stubset *set, void *arg), void *arg,
                          struct tf_certcache_retired **retired)
{
    size_t kept = 0, evicted = 0;
    for (size_t i = 0; i < cc->n; i++) {
        if (keep(cc->ring[i].set, arg)) {
            cc->ring[kept++] = cc->ring[i];
        } else {
            evict(&cc->ring[i], retired);
            evicted++;
        }
    }
    cc->n = kept;
    cc->hand = kept ? cc->hand % kept : 0;
    return evicted;
}

size_t tf_certcache_size(const struct tf_certcache *cc)
{
    return cc->n;
}

void tf_certcache_free(struct tf_certcache *cc, struct tf_certcache_retired **retired)
{
    for (size_t i = 0; i < cc->n; i++)
        evict(&cc->ring[i], retired);
    free(cc->ring);
    cc->ring = NULL;
    cc->n = cc->cap = cc->hand = 0;
}

void tf_certcache_retired_release(struct tf_certcache_retired *r)
{
    if (!r || atomic_fetch_sub(&r->pending, 1) > 1)
        return;
    for (size_t i = 0; i < r->n; i++)
        tf_cert_unref(r->certs[i]);
    free(r->certs);
    free(r);
}
