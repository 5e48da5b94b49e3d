/*
 * storage_fs.h: internals shared by the two halves of the filesystem store, storage_fs.c
 * (layout, atomic files, get/put/list/del, lifetime) and storage_fs_lock.c (leased locks).
 * Nothing outside those two files may include this (the key fuzz target,
 * tests/fuzz/fuzz_storage_key.c, excepted): everyone else codes against storage.h.
 *
 * On-disk layout under the storage directory DIR:
 *   DIR/<key>                     one value per file; a key segment "*.x" is stored "_wildcard_.x"
 *   DIR/<dirs>/.<name>.tmp.<hex>  temp file of an atomic write (name truncated to 64 bytes)
 *   DIR/.locks/<name>.lock        a lease: {"pid":N,"host":"H","expires":UNIX,"token":"HEX"}
 *   DIR/.locks/.guard             flock(2)ed around every read-decide-write of a lease
 * Names starting with '.' are never keys, so list() skips temp files and the lock area.
 * An entry list() cannot read (a symlink loop, an unreadable directory) is logged and
 * skipped: it never costs the rest of the listing.
 */
#ifndef TF_STORAGE_FS_H
#define TF_STORAGE_FS_H

#include "tlsfront/store/storage.h"

#include <sys/types.h>

struct fs_held;
struct fs_lockop;

/* The filesystem store. Loop-thread state except where noted; pool threads only read the
 * immutable fields while an operation of theirs is in flight (close waits for those). */
struct tf_storage_fs {
    struct tf_storage base; /* first member: the ops cast struct tf_storage * to this */
    char *dir;              /* absolute path, owned; immutable */
    char host[256];         /* gethostname() at start-up, written into leases; immutable */
    int inflight;           /* operations whose callback has not run yet */
    bool closing;
    void (*close_done)(void *arg);
    void *close_arg;
    struct fs_held *held;      /* leases this store holds; owned */
    struct fs_lockop *waiting; /* lock operations sleeping on their retry timer; borrowed */
};

/* Path of key under dir: "dir[/area]/<encoded key><suffix>" (area and suffix may be NULL).
 * The key must be valid (tf_storage_key_valid). Returns a heap string. */
char *tf_storage_fs_path(const char *dir, const char *area, const char *key, const char *suffix);

/* Create (0700) the missing directories between root and the file path (root itself must
 * exist), fsyncing the parent of each one created. 0 or -errno. Blocking. */
int tf_storage_fs_mkdirs(const char *root, const char *path);

/* Replace path atomically with data: temp file in the same directory, created O_EXCL with
 * mode, written, fsynced (when durable), renamed over path, directory fsynced (when durable).
 * On failure before the rename the temp file is removed and path is untouched. Blocking. */
int tf_storage_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                               bool durable);

/* Read a whole regular file of at most cap bytes into a NUL-terminated heap buffer.
 * 0, -errno (UV_ENOENT if missing), TF_ETOOBIG or TF_EINVAL (not a regular file). Blocking. */
int tf_storage_fs_read_file(const char *path, size_t cap, char **data, size_t *len);

/* nbytes random bytes as lower-case hex into out (2 * nbytes + 1 bytes). 0 or a UV code. */
int tf_storage_fs_random_hex(char *out, size_t nbytes);

/* An operation's callback has run: drop the in-flight count, and finish a pending close
 * (free the store, then call the close callback) when it reaches zero. */
void tf_storage_fs_op_done(struct tf_storage_fs *fs);

/* The lock half of the ops table (storage_fs_lock.c). */
int tf_storage_fs_lock(struct tf_storage *s, const char *name, uint32_t lease_s, uint32_t wait_ms,
                       tf_storage_done_cb cb, void *arg);
int tf_storage_fs_unlock(struct tf_storage *s, const char *name, tf_storage_done_cb cb, void *arg);
int tf_storage_fs_renew(struct tf_storage *s, const char *name, uint32_t lease_s,
                        tf_storage_done_cb cb, void *arg);

/* Close time: lock waits sleeping on a timer end with TF_ECLOSED, and every lease still held
 * is released by an internal unlock (counted in flight). Call with fs->closing set. */
void tf_storage_fs_locks_close(struct tf_storage_fs *fs);

#endif
