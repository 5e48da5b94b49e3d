/*
 * lru.h: a small bounded map from string keys to owned values with a per-entry expiry time,
 * ordered by recency of use. Used by the ask gate's answer cache (evict the least recently
 * used entry when full) and by the issuance budget's per-name and per-domain state (no
 * eviction: the budget checks tf_lru_full() and refuses instead). Times are whatever clock the
 * caller uses (uv_now() milliseconds, unix milliseconds); the map never reads a clock itself.
 * Not thread-safe: one owner, one thread. Never does I/O.
 */
#ifndef TF_LRU_H
#define TF_LRU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* An expiry that never comes. */
#define TF_LRU_NEVER INT64_MAX

struct tf_lru;

/* Create a map holding at most max_entries (0 = no bound). free_val (may be NULL) releases a
 * value when its entry is removed, replaced, evicted or the map is freed. */
struct tf_lru *tf_lru_new(size_t max_entries, void (*free_val)(void *val));
void tf_lru_free(struct tf_lru *l);

/* The value for key, marking it most recently used; NULL when absent. An entry whose expiry
 * is <= now is removed (its value freed) and NULL is returned. The value stays owned by the
 * map. */
void *tf_lru_get(struct tf_lru *l, const char *key, int64_t now);

/* Like tf_lru_get() but without touching recency or removing expired entries. */
void *tf_lru_peek(const struct tf_lru *l, const char *key);

/* Insert or replace key (copied) with val (owned by the map from now on), expiring at
 * expires, as the most recently used entry. When the map is full and key is new, the least
 * recently used entry is evicted first. */
void tf_lru_put(struct tf_lru *l, const char *key, void *val, int64_t expires);

/* Change the expiry of an existing entry; returns false if key is absent. */
bool tf_lru_set_expiry(struct tf_lru *l, const char *key, int64_t expires);

/* Remove key (freeing its value); returns false if it was absent. */
bool tf_lru_del(struct tf_lru *l, const char *key);

/* Remove every entry whose expiry is <= now; returns how many were removed. O(size). */
size_t tf_lru_prune(struct tf_lru *l, int64_t now);

size_t tf_lru_size(const struct tf_lru *l);
bool tf_lru_full(const struct tf_lru *l);

/* Number of entries evicted because the map was full, since creation. */
uint64_t tf_lru_evictions(const struct tf_lru *l);

#endif
