/*
 * storage_redis.h: the Redis store behind struct tf_storage_ops (include/storage.h), for
 * several tlsfront nodes sharing certificates, account and locks; and tf_storage_open, which
 * builds the store --storage names (a directory, a redis:// or a rediss:// URL). Key
 * layout, locks and encryption are described in src/store/storage_redis_int.h and
 * docs/cluster.md.
 */
#ifndef TF_STORAGE_REDIS_H
#define TF_STORAGE_REDIS_H

#include "tlsfront/config/config.h"
#include "tlsfront/store/storage.h"

#include <stdint.h>

#define TF_STORAGE_REDIS_PREFIX "tlsfront"

struct tf_storage_crypt;

struct tf_storage_redis_opts {
    const struct tf_redis_url *url; /* borrowed for the call */
    const char *prefix;             /* NULL: TF_STORAGE_REDIS_PREFIX */
    struct tf_storage_crypt *crypt; /* NULL: secrets stored as they are; else owned by the store */
    uint32_t timeout_ms;            /* connect and per-command limit; 0: 5000 */
    const char *ca_file;            /* rediss://: trust anchors (PEM); NULL: the system store */
};

/*
 * The Redis store. Starts connecting at once (the address is resolved with uv_getaddrinfo;
 * nothing blocks the loop); operations started before the connection is up wait for it,
 * up to timeout_ms. NULL with err filled only for bad options. opts->crypt is owned by the
 * store from this call on, even on failure. A rediss:// URL gets TLS through the store's
 * relay (src/store/storage_redis_tls.c): it loads opts->ca_file and creates a private
 * directory now, so NULL also means a bad CA file or no directory.
 */
struct tf_storage *tf_storage_redis_new(uv_loop_t *loop, const struct tf_storage_redis_opts *opts,
                                        char *err, size_t errlen);

/* The store cfg->storage names: the filesystem store for a directory, the Redis store for a
 * redis:// or rediss:// URL (reading --storage-key and --storage-ca now, blocking: start-up
 * only). NULL with err filled
 * (one line naming the option) on failure. */
struct tf_storage *tf_storage_open(uv_loop_t *loop, const struct tf_config *cfg, char *err,
                                   size_t errlen);

#endif
