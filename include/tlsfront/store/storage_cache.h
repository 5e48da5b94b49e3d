/*
 * storage_cache.h: --storage-cache DIR, the Redis store with a local write-through copy of
 * the certificates (src/store/storage_cache.c; docs/cluster.md). Reads and listings of
 * "certs/..." answer from DIR only while Redis is unreachable; everything else is the Redis
 * store's behaviour.
 */
#ifndef TF_STORAGE_CACHE_H
#define TF_STORAGE_CACHE_H

#include "tlsfront/store/storage.h"

/* The store that wraps remote (a store with cluster operations: the Redis store) with the
 * directory store on dir (created 0700 if missing, checked synchronously: start-up only).
 * remote is owned by the result from this call on, even on failure (then closed). NULL with
 * err filled ("--storage-cache: ...") when dir is unusable or remote is not a cluster store. */
struct tf_storage *tf_storage_cache_new(uv_loop_t *loop, struct tf_storage *remote, const char *dir,
                                        char *err, size_t errlen);

/* Whether a store error means the store could not be reached (as opposed to an answer). */
bool tf_storage_cache_err_unreachable(int err);

#endif
