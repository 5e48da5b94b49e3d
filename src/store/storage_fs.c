/*
 * storage_fs.c: the filesystem store (tlsfront/store/storage.h) minus its locks: the
 * on-disk layout described in tlsfront/store/storage_fs.h, atomic writes (temp file, fsync,
 * rename, fsync of the directory), get/put/list/del run on libuv's thread pool, the
 * synchronous helpers for the `certs` command, and the store's lifetime (close waits for every operation in flight).
 * It must never touch the disk on the loop thread once started (tf_storage_fs_new is the
 * start-up exception), never leave a value half written, and never follow a key outside
 * the storage directory (keys are validated before any path is built).
 */
#include "tlsfront/store/storage_fs.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define WILDCARD_DISK "_wildcard_."
#define LIST_MAX_DEPTH 32

enum fs_kind { FS_GET, FS_PUT, FS_LIST, FS_DEL, FS_CLOSE };

/* One get/put/list/del (or the close marker) in flight. Owned by itself from queueing until
 * its after-work callback has handed the results to the user callback. */
struct fs_op {
    uv_work_t work;           /* work.data == this op */
    struct tf_storage_fs *fs; /* borrowed: close waits for this op */
    enum fs_kind kind;
    char *path; /* owned: target file (get/put/del) or normalised prefix (list) */
    char *data; /* owned: put's copy of the value, get's result until given to cb */
    size_t len;
    bool secret;
    char **keys; /* owned: list result until given to cb */
    int n;
    int err;
    union {
        tf_storage_get_cb get;
        tf_storage_done_cb done;
        tf_storage_list_cb list;
    } cb;
    void *arg;
};

/* ---- paths and files (blocking; pool threads and start-up only) ---- */

char *tf_storage_fs_path(const char *dir, const char *area, const char *key, const char *suffix)
{
    size_t nseg = 1;
    for (const char *c = key; *c; c++)
        nseg += *c == '/';
    /* Each segment may grow by the wildcard spelling; +4: two '/', suffix, NUL. */
    size_t cap = strlen(dir) + (area ? strlen(area) : 0) + strlen(key) +
                 nseg * strlen(WILDCARD_DISK) + (suffix ? strlen(suffix) : 0) + 4;
    char *p = tf_malloc(cap);
    size_t n = (size_t)snprintf(p, cap, "%s%s%s", dir, area ? "/" : "", area ? area : "");
    for (const char *seg = key; seg;) {
        const char *slash = strchr(seg, '/');
        size_t sl = slash ? (size_t)(slash - seg) : strlen(seg);
        if (sl >= 2 && seg[0] == '*' && seg[1] == '.')
            n += (size_t)snprintf(p + n, cap - n, "/%s%.*s", WILDCARD_DISK, (int)(sl - 2), seg + 2);
        else
            n += (size_t)snprintf(p + n, cap - n, "/%.*s", (int)sl, seg);
        seg = slash ? slash + 1 : NULL;
    }
    snprintf(p + n, cap - n, "%s", suffix ? suffix : "");
    return p;
}

/* A file name read from disk back to a key segment ("_wildcard_.x" to "*.x"); heap string. */
static char *decode_segment(const char *name)
{
    size_t wl = strlen(WILDCARD_DISK);
    if (strncmp(name, WILDCARD_DISK, wl) == 0)
        return tf_asprintf("*.%s", name + wl);
    return tf_strdup(name);
}

static int fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int err = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return err;
}

int tf_storage_fs_mkdirs(const char *root, const char *path)
{
    size_t rl = strlen(root);
    if (strncmp(path, root, rl) != 0 || path[rl] != '/')
        return TF_EINVAL;
    char *p = tf_strdup(path);
    int err = 0;
    for (char *s = strchr(p + rl + 1, '/'); s && !err; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0700) == 0) {
            /* A new directory entry is only durable once its parent is synced. */
            char *up = strrchr(p, '/');
            *up = '\0';
            err = fsync_dir(p);
            *up = '/';
        } else if (errno != EEXIST) {
            err = -errno;
        }
        *s = '/';
    }
    free(p);
    return err;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, data, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        data += w;
        len -= (size_t)w;
    }
    return 0;
}

int tf_storage_fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
                               bool durable)
{
    const char *slash = strrchr(path, '/');
    int dl = (int)(slash - path);
    char rnd[17];
    int err = tf_storage_fs_random_hex(rnd, 8);
    if (err)
        return err;
    /* The name part is cut at 64 bytes so the temp name always fits NAME_MAX. */
    char *tmp = tf_asprintf("%.*s/.%.64s.tmp.%s", dl, path, slash + 1, rnd);
    char *dir = tf_strndup(path, (size_t)dl);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0) {
        err = -errno;
        goto out;
    }
    /* fchmod: the mode must not depend on the process umask. */
    if (fchmod(fd, mode) < 0)
        err = -errno;
    if (!err)
        err = write_all(fd, data, len);
    if (!err && durable && fsync(fd) < 0)
        err = -errno;
    if (close(fd) < 0 && !err)
        err = -errno;
    if (!err && rename(tmp, path) < 0)
        err = -errno;
    if (err) {
        unlink(tmp);
        goto out;
    }
    /* XXX: if this fails the new value is in place but may not survive a power loss. */
    if (durable)
        err = fsync_dir(dir);
out:
    free(dir);
    free(tmp);
    return err;
}

static int read_fd(int fd, size_t cap, size_t hint, char **data, size_t *len)
{
    size_t size = TF_MIN(hint, cap) + 2, n = 0;
    char *buf = tf_malloc(size);
    int err = 0;
    for (;;) {
        if (n + 1 == size) {
            size = TF_MIN(size * 2, cap + 2);
            buf = tf_realloc(buf, size);
        }
        ssize_t r = read(fd, buf + n, size - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            err = r < 0 ? -errno : 0;
            break;
        }
        n += (size_t)r;
        if (n > cap) {
            err = TF_ETOOBIG;
            break;
        }
    }
    if (err) {
        free(buf);
        return err;
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

int tf_storage_fs_read_file(const char *path, size_t cap, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOTDIR ? UV_ENOENT : -errno; /* "a/b" with "a" a file: no such key */
    struct stat st;
    int err = 0;
    if (fstat(fd, &st) < 0)
        err = -errno;
    else if (!S_ISREG(st.st_mode))
        err = S_ISDIR(st.st_mode) ? UV_EISDIR : TF_EINVAL;
    else if ((uint64_t)st.st_size > cap)
        err = TF_ETOOBIG;
    else
        err = read_fd(fd, cap, (size_t)st.st_size, data, len);
    close(fd);
    return err;
}

int tf_storage_fs_random_hex(char *out, size_t nbytes)
{
    unsigned char raw[32];
    if (nbytes > sizeof(raw))
        return TF_EINVAL;
    int err = uv_random(NULL, NULL, raw, nbytes, 0, NULL);
    if (err)
        return err;
    for (size_t i = 0; i < nbytes; i++)
        snprintf(out + 2 * i, 3, "%02x", raw[i]);
    out[2 * nbytes] = '\0';
    return 0;
}

static int del_file(const char *path)
{
    if (unlink(path) < 0)
        return errno == ENOTDIR ? UV_ENOENT : -errno;
    char *dir = tf_strndup(path, (size_t)(strrchr(path, '/') - path));
    int err = fsync_dir(dir);
    free(dir);
    return err;
}

/* ---- list ---- */

struct keyvec {
    char **v;
    int n, cap;
};

static void keyvec_push(struct keyvec *kv, char *key)
{
    if (kv->n == kv->cap) {
        kv->cap = kv->cap ? kv->cap * 2 : 16;
        kv->v = tf_realloc(kv->v, (size_t)kv->cap * sizeof(*kv->v));
    }
    kv->v[kv->n++] = key;
}

static int list_dir(const char *path, const char *prefix, struct keyvec *kv, int depth);

/* The decision to skip an unreadable entry is taken here, so it is logged here (log.h is
 * safe on pool threads). */
static void skip_entry(const char *path, int err)
{
    TF_WARN("storage", "list: skipping %s: %s", path, tf_strerror(err));
}

/* One directory entry: a value (pushed), a directory (walked) or something to skip. */
static int list_entry(const char *path, const char *prefix, const char *name, struct keyvec *kv,
                      int depth)
{
    char *seg = decode_segment(name);
    char *key = prefix ? tf_asprintf("%s/%s", prefix, seg) : tf_strdup(seg);
    char *child = tf_asprintf("%s/%s", path, name);
    struct stat st;
    int err = 0;
    free(seg);
    if (!tf_storage_key_valid(key))
        goto out; /* not something a key can name (e.g. an operator's README) */
    if (stat(child, &st) < 0) {
        /* ENOENT: deleted while we looked (or a dangling link). Anything else (a symlink
         * loop, a permission problem) costs this entry only, never the whole listing. */
        if (errno != ENOENT)
            skip_entry(child, -errno);
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        int e = list_dir(child, key, kv, depth + 1);
        if (e && e != UV_ENOENT)
            skip_entry(child, e);
    } else if (S_ISREG(st.st_mode)) {
        keyvec_push(kv, key);
        key = NULL;
    }
out:
    free(child);
    free(key);
    return err;
}

static int list_dir(const char *path, const char *prefix, struct keyvec *kv, int depth)
{
    if (depth > LIST_MAX_DEPTH)
        return UV_ELOOP;
    DIR *d = opendir(path);
    if (!d)
        return -errno;
    int err = 0;
    while (!err) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            err = -errno;
            break;
        }
        if (de->d_name[0] == '.')
            continue; /* ".", "..", temp files, the lock area */
        err = list_entry(path, prefix, de->d_name, kv, depth);
    }
    closedir(d);
    return err;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* prefix "" lists everything; "a/b" or "a/b/" lists the keys under directory a/b. */
static int list_keys(const char *dir, const char *prefix, char ***keys, int *n)
{
    struct keyvec kv = {0};
    char *path = prefix[0] ? tf_storage_fs_path(dir, NULL, prefix, NULL) : tf_strdup(dir);
    int err = list_dir(path, prefix[0] ? prefix : NULL, &kv, 0);
    free(path);
    if (err == UV_ENOENT || err == UV_ENOTDIR)
        err = 0; /* nothing under a prefix that does not exist or is a value */
    if (err) {
        for (int i = 0; i < kv.n; i++)
            free(kv.v[i]);
        free(kv.v);
        kv.v = NULL;
        kv.n = 0;
    }
    if (kv.n > 1)
        qsort(kv.v, (size_t)kv.n, sizeof(*kv.v), cmp_str);
    *keys = kv.v;
    *n = kv.n;
    return err;
}

/* A list prefix without its one optional trailing '/'; NULL when invalid. Heap string. */
static char *normalise_prefix(const char *prefix)
{
    if (!prefix || !prefix[0])
        return tf_strdup("");
    size_t n = strlen(prefix);
    char *p = tf_strndup(prefix, prefix[n - 1] == '/' ? n - 1 : n);
    if (!tf_storage_key_valid(p)) {
        free(p);
        return NULL;
    }
    return p;
}

/* ---- synchronous helpers ---- */

int tf_storage_fs_read_sync(const char *dir, const char *key, char **data, size_t *len)
{
    *data = NULL;
    *len = 0;
    if (!tf_storage_key_valid(key))
        return TF_EINVAL;
    char *path = tf_storage_fs_path(dir, NULL, key, NULL);
    int err = tf_storage_fs_read_file(path, TF_STORAGE_MAX_VALUE, data, len);
    free(path);
    return err;
}

int tf_storage_fs_list_sync(const char *dir, const char *prefix, char ***keys, int *n)
{
    *keys = NULL;
    *n = 0;
    char *p = normalise_prefix(prefix);
    if (!p)
        return TF_EINVAL;
    int err = list_keys(dir, p, keys, n);
    free(p);
    return err;
}

/* ---- asynchronous operations ---- */

static void op_free(struct fs_op *op)
{
    free(op->path);
    free(op->data);
    for (int i = 0; i < op->n; i++)
        free(op->keys[i]);
    free(op->keys);
    free(op);
}

/* Pool thread: the blocking part of one operation. Only reads fs->dir, which is immutable. */
static void on_op_work(uv_work_t *w)
{
    struct fs_op *op = w->data;
    const char *dir = op->fs->dir;
    switch (op->kind) {
    case FS_GET:
        op->err = tf_storage_fs_read_file(op->path, TF_STORAGE_MAX_VALUE, &op->data, &op->len);
        break;
    case FS_PUT:
        op->err = tf_storage_fs_mkdirs(dir, op->path);
        if (!op->err)
            op->err = tf_storage_fs_write_atomic(op->path, op->data, op->len,
                                                 op->secret ? 0600 : 0644, true);
        break;
    case FS_LIST:
        op->err = list_keys(dir, op->path, &op->keys, &op->n);
        break;
    case FS_DEL:
        op->err = del_file(op->path);
        break;
    case FS_CLOSE:
        break;
    }
}

/* Loop thread: hand the results (and their ownership) to the user callback, exactly once. */
static void on_op_after(uv_work_t *w, int status)
{
    struct fs_op *op = w->data;
    struct tf_storage_fs *fs = op->fs;
    int err = status ? status : op->err;
    switch (op->kind) {
    case FS_GET:
        op->cb.get(err, err ? NULL : op->data, err ? 0 : op->len, op->arg);
        if (!err)
            op->data = NULL;
        break;
    case FS_PUT:
    case FS_DEL:
        op->cb.done(err, op->arg);
        break;
    case FS_LIST:
        op->cb.list(err, err ? NULL : op->keys, err ? 0 : op->n, op->arg);
        if (!err) {
            op->keys = NULL;
            op->n = 0;
        }
        break;
    case FS_CLOSE:
        break;
    }
    op_free(op);
    tf_storage_fs_op_done(fs);
}

/* Validate the common arguments and make an op; NULL with *err set when they are bad. */
static struct fs_op *op_new(struct tf_storage *s, enum fs_kind kind, const char *key, bool has_cb,
                            void *arg, int *err)
{
    struct tf_storage_fs *fs = (struct tf_storage_fs *)s;
    *err = fs->closing ? TF_ECLOSED : !has_cb ? TF_EINVAL : 0;
    if (!*err && kind != FS_LIST && !tf_storage_key_valid(key))
        *err = TF_EINVAL;
    char *prefix = NULL;
    if (!*err && kind == FS_LIST && !(prefix = normalise_prefix(key)))
        *err = TF_EINVAL;
    if (*err)
        return NULL;
    struct fs_op *op = tf_calloc(1, sizeof(*op));
    op->work.data = op;
    op->fs = fs;
    op->kind = kind;
    op->path = prefix ? prefix : tf_storage_fs_path(fs->dir, NULL, key, NULL);
    op->arg = arg;
    return op;
}

static int op_queue(struct fs_op *op)
{
    struct tf_storage_fs *fs = op->fs;
    int err = uv_queue_work(fs->base.loop, &op->work, on_op_work, on_op_after);
    if (err) {
        op_free(op);
        return err;
    }
    fs->inflight++;
    return 0;
}

static int fs_get(struct tf_storage *s, const char *key, tf_storage_get_cb cb, void *arg)
{
    int err;
    struct fs_op *op = op_new(s, FS_GET, key, cb != NULL, arg, &err);
    if (!op)
        return err;
    op->cb.get = cb;
    return op_queue(op);
}

static int fs_put(struct tf_storage *s, const char *key, const void *data, size_t len, bool secret,
                  tf_storage_done_cb cb, void *arg)
{
    if (len > TF_STORAGE_MAX_VALUE)
        return TF_ETOOBIG;
    if (!data && len)
        return TF_EINVAL;
    int err;
    struct fs_op *op = op_new(s, FS_PUT, key, cb != NULL, arg, &err);
    if (!op)
        return err;
    op->cb.done = cb;
    op->data = tf_malloc(len);
    if (len)
        memcpy(op->data, data, len);
    op->len = len;
    op->secret = secret;
    return op_queue(op);
}

static int fs_list(struct tf_storage *s, const char *prefix, tf_storage_list_cb cb, void *arg)
{
    int err;
    struct fs_op *op = op_new(s, FS_LIST, prefix, cb != NULL, arg, &err);
    if (!op)
        return err;
    op->cb.list = cb;
    return op_queue(op);
}

static int fs_del(struct tf_storage *s, const char *key, tf_storage_done_cb cb, void *arg)
{
    int err;
    struct fs_op *op = op_new(s, FS_DEL, key, cb != NULL, arg, &err);
    if (!op)
        return err;
    op->cb.done = cb;
    return op_queue(op);
}

/* ---- lifetime ---- */

static void fs_free(struct tf_storage_fs *fs)
{
    free(fs->dir);
    free(fs);
}

void tf_storage_fs_op_done(struct tf_storage_fs *fs)
{
    if (--fs->inflight > 0 || !fs->closing)
        return;
    void (*done)(void *arg) = fs->close_done;
    void *arg = fs->close_arg;
    fs_free(fs);
    if (done)
        done(arg);
}

/* Close: cancel lock waits, release held leases, then a no-op marker goes through the pool
 * so that the close callback always runs later even with nothing else in flight. */
static void fs_close(struct tf_storage *s, void (*done)(void *arg), void *arg)
{
    struct tf_storage_fs *fs = (struct tf_storage_fs *)s;
    if (fs->closing)
        return; /* close is called once; a second call is a no-op while the first runs */
    fs->closing = true;
    fs->close_done = done;
    fs->close_arg = arg;
    tf_storage_fs_locks_close(fs);
    struct fs_op *op = tf_calloc(1, sizeof(*op));
    op->work.data = op;
    op->fs = fs;
    op->kind = FS_CLOSE;
    if (op_queue(op) != 0) {
        /* XXX: uv_queue_work only fails on a NULL work callback; then done may run here. */
        fs->inflight++;
        tf_storage_fs_op_done(fs);
    }
}

static const struct tf_storage_ops fs_ops = {
    .get = fs_get,
    .put = fs_put,
    .list = fs_list,
    .del = fs_del,
    .lock = tf_storage_fs_lock,
    .unlock = tf_storage_fs_unlock,
    .close = fs_close,
    .renew = tf_storage_fs_renew,
};

/* mkdir -p for an absolute or relative dir, each new component 0700. 0 or -errno. */
static int mkdir_p(const char *dir)
{
    char *p = tf_strdup(dir);
    int err = 0;
    for (char *s = strchr(p + 1, '/'); s && !err; s = strchr(s + 1, '/')) {
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            err = -errno;
        *s = '/';
    }
    if (!err && mkdir(p, 0700) < 0 && errno != EEXIST)
        err = -errno;
    free(p);
    return err;
}

/* Text for a start-up error: the C library's wording for errno values, ours otherwise. */
static const char *errtext(int e)
{
    return e < 0 && e > -4096 ? strerror(-e) : tf_strerror(e);
}

/* Start-up check that dir is a directory in which we can create, write, rename and delete. */
static int probe_dir(const char *dir)
{
    char rnd[17];
    int err = tf_storage_fs_random_hex(rnd, 8);
    if (err)
        return err;
    char *path = tf_asprintf("%s/.probe.%s", dir, rnd);
    err = tf_storage_fs_write_atomic(path, "probe", 5, 0600, false);
    if (!err && unlink(path) < 0)
        err = -errno;
    free(path);
    return err;
}

struct tf_storage *tf_storage_fs_new(uv_loop_t *loop, const char *dir, char *err, size_t errlen)
{
    char *abs = NULL;
    int e = dir && dir[0] ? mkdir_p(dir) : TF_EINVAL;
    struct stat st;
    if (e == UV_ENOTDIR || (!e && stat(dir, &st) == 0 && !S_ISDIR(st.st_mode))) {
        snprintf(err, errlen, "storage %s: not a directory", dir);
        return NULL;
    }
    if (e) {
        snprintf(err, errlen, "storage %s: cannot create: %s", dir ? dir : "", errtext(e));
        return NULL;
    }
    if (!(abs = realpath(dir, NULL)) || (e = probe_dir(abs)) != 0) {
        e = abs ? e : -errno;
        snprintf(err, errlen, "storage %s: not writable: %s", dir, errtext(e));
        free(abs);
        return NULL;
    }
    struct tf_storage_fs *fs = tf_calloc(1, sizeof(*fs));
    fs->base.ops = &fs_ops;
    fs->base.loop = loop;
    fs->dir = tf_strdup(abs);
    free(abs); /* realpath's buffer comes from malloc, not tf_malloc */
    if (gethostname(fs->host, sizeof(fs->host) - 1) < 0)
        snprintf(fs->host, sizeof(fs->host), "localhost");
    return &fs->base;
}
