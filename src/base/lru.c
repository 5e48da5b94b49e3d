/*
 * lru.c: the bounded string map of lru.h. A chained hash table (power-of-two buckets, grown
 * at load 1) plus a doubly linked recency list, most recent at the head. Keys are often chosen
 * by strangers (SNI names), so buckets are picked with SipHash-1-3 under a random per-map key
 * to keep chains short against crafted collisions. Owns its keys and values; never reads a
 * clock, never logs, never does I/O beyond reading the random key once.
 */
#include "tlsfront/base/lru.h"
#include "tlsfront/base/common.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

struct lru_entry {
    char *key;
    void *val;
    int64_t expires;
    uint64_t hash;
    struct lru_entry *hnext;       /* bucket chain */
    struct lru_entry *prev, *next; /* recency list; prev is more recent */
};

struct tf_lru {
    struct lru_entry **buckets;
    size_t n_buckets; /* power of two */
    size_t size, max;
    struct lru_entry *head, *tail; /* most / least recently used */
    void (*free_val)(void *val);
    uint64_t k0, k1; /* SipHash key */
    uint64_t evictions;
};

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                              \
    do {                                                                                      \
        v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);                             \
        v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;                                                \
        v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;                                                \
        v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);                             \
    } while (0)

/* SipHash-1-3 of s[0..len) under (k0, k1). */
static uint64_t siphash13(uint64_t k0, uint64_t k1, const char *s, size_t len)
{
    uint64_t v0 = k0 ^ 0x736f6d6570736575ULL, v1 = k1 ^ 0x646f72616e646f6dULL;
    uint64_t v2 = k0 ^ 0x6c7967656e657261ULL, v3 = k1 ^ 0x7465646279746573ULL;
    size_t full = len & ~(size_t)7;
    for (size_t i = 0; i < full; i += 8) {
        uint64_t m;
        memcpy(&m, s + i, 8);
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    uint64_t last = (uint64_t)len << 56;
    for (size_t i = full; i < len; i++)
        last |= (uint64_t)(unsigned char)s[i] << (8 * (i - full));
    v3 ^= last;
    SIPROUND;
    v0 ^= last;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

struct tf_lru *tf_lru_new(size_t max_entries, void (*free_val)(void *val))
{
    struct tf_lru *l = tf_calloc(1, sizeof(*l));
    l->max = max_entries;
    l->free_val = free_val;
    l->n_buckets = 16;
    l->buckets = tf_calloc(l->n_buckets, sizeof(*l->buckets));
    uint64_t key[2];
    if (getrandom(key, sizeof(key), GRND_NONBLOCK) != (ssize_t)sizeof(key)) {
        /* No entropy yet (early boot): a time-derived key still beats a fixed one. */
        key[0] = tf_mono_ms() * 0x9e3779b97f4a7c15ULL;
        key[1] = (uint64_t)(uintptr_t)l ^ 0xc2b2ae3d27d4eb4fULL;
    }
    l->k0 = key[0];
    l->k1 = key[1];
    return l;
}

static struct lru_entry *find(const struct tf_lru *l, const char *key, uint64_t h)
{
    for (struct lru_entry *e = l->buckets[h & (l->n_buckets - 1)]; e; e = e->hnext)
        if (e->hash == h && strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static void list_unlink(struct tf_lru *l, struct lru_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        l->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        l->tail = e->prev;
    e->prev = e->next = NULL;
}

static void list_push_head(struct tf_lru *l, struct lru_entry *e)
{
    e->prev = NULL;
    e->next = l->head;
    if (l->head)
        l->head->prev = e;
    l->head = e;
    if (!l->tail)
        l->tail = e;
}

static void entry_remove(struct tf_lru *l, struct lru_entry *e)
{
    struct lru_entry **pp = &l->buckets[e->hash & (l->n_buckets - 1)];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    list_unlink(l, e);
    l->size--;
    if (l->free_val)
        l->free_val(e->val);
    free(e->key);
    free(e);
}

static void grow(struct tf_lru *l)
{
    size_t n = l->n_buckets * 2;
    struct lru_entry **b = tf_calloc(n, sizeof(*b));
    for (size_t i = 0; i < l->n_buckets; i++) {
        struct lru_entry *e = l->buckets[i];
        while (e) {
            struct lru_entry *nx = e->hnext;
            e->hnext = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
            e = nx;
        }
    }
    free(l->buckets);
    l->buckets = b;
    l->n_buckets = n;
}

void tf_lru_free(struct tf_lru *l)
{
    if (!l)
        return;
    while (l->head)
        entry_remove(l, l->head);
    free(l->buckets);
    free(l);
}

void *tf_lru_get(struct tf_lru *l, const char *key, int64_t now)
{
    struct lru_entry *e = find(l, key, siphash13(l->k0, l->k1, key, strlen(key)));
    if (!e)
        return NULL;
    if (e->expires <= now) {
        entry_remove(l, e);
        return NULL;
    }
    list_unlink(l, e);
    list_push_head(l, e);
    return e->val;
}

void *tf_lru_peek(const struct tf_lru *l, const char *key)
{
    struct lru_entry *e = find(l, key, siphash13(l->k0, l->k1, key, strlen(key)));
    return e ? e->val : NULL;
}

void tf_lru_put(struct tf_lru *l, const char *key, void *val, int64_t expires)
{
    uint64_t h = siphash13(l->k0, l->k1, key, strlen(key));
    struct lru_entry *e = find(l, key, h);
    if (e) {
        if (l->free_val && e->val != val)
            l->free_val(e->val);
        e->val = val;
        e->expires = expires;
        list_unlink(l, e);
        list_push_head(l, e);
        return;
    }
    if (l->max && l->size >= l->max && l->tail) {
        entry_remove(l, l->tail);
        l->evictions++;
    }
    if (l->size + 1 > l->n_buckets)
        grow(l);
    e = tf_calloc(1, sizeof(*e));
    e->key = tf_strdup(key);
    e->val = val;
    e->expires = expires;
    e->hash = h;
    e->hnext = l->buckets[h & (l->n_buckets - 1)];
    l->buckets[h & (l->n_buckets - 1)] = e;
    list_push_head(l, e);
    l->size++;
}

bool tf_lru_set_expiry(struct tf_lru *l, const char *key, int64_t expires)
{
    struct lru_entry *e = find(l, key, siphash13(l->k0, l->k1, key, strlen(key)));
    if (!e)
        return false;
    e->expires = expires;
    return true;
}

bool tf_lru_del(struct tf_lru *l, const char *key)
{
    struct lru_entry *e = find(l, key, siphash13(l->k0, l->k1, key, strlen(key)));
    if (!e)
        return false;
    entry_remove(l, e);
    return true;
}

size_t tf_lru_prune(struct tf_lru *l, int64_t now)
{
    size_t n = 0;
    struct lru_entry *e = l->head;
    while (e) {
        struct lru_entry *nx = e->next;
        if (e->expires <= now) {
            entry_remove(l, e);
            n++;
        }
        e = nx;
    }
    return n;
}

size_t tf_lru_size(const struct tf_lru *l) { return l->size; }

bool tf_lru_full(const struct tf_lru *l) { return l->max && l->size >= l->max; }

uint64_t tf_lru_evictions(const struct tf_lru *l) { return l->evictions; }
