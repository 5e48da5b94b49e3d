/*
 * acme_store.c: where issued certificates live in storage: certs/<name>/key.pem (0600),
 * certs/<name>/cert.pem (chain, leaf first) and certs/<name>/meta.json, plus the paused
 * markers acme/<ca-id>/paused/<name>. Saves write the key first, then the chain, then the
 * metadata, so a crash in between leaves a pair the loader rejects (mismatch) rather than a
 * chain without its key; a write that fails after the key (a full disk) deletes the name's
 * files, so a failed save leaves the old certificate or none; forgetting deletes in the
 * reverse order. Loading checks that key and leaf match; loading everything skips
 * (and logs) what does not, and reads meta.json with each certificate for the id of the CA
 * that issued it (tf_acme_store_load_meta). Also the synchronous listing for `tlsfront certs`.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <cjson/cJSON.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STORE_MOD "acme"

static bool name_chars_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 253)
        return false;
    const char *p = strncmp(name, "*.", 2) == 0 ? name + 2 : name;
    if (!*p || *p == '.' || *p == '-')
        return false;
    for (; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '.' || *p == '-'))
            return false;
    return true;
}

char *tf_acme_store_key(const char *name, const char *file)
{
    if (!name || !name_chars_ok(name))
        return NULL;
    char *key = tf_asprintf("certs/%s/%s", name, file);
    if (!tf_storage_key_valid(key)) {
        free(key);
        return NULL;
    }
    return key;
}

char *tf_acme_paused_key(const char *ca_id, const char *name)
{
    if (!name || !name_chars_ok(name))
        return NULL;
    char *key = tf_asprintf("acme/%s/paused/%s", ca_id, name);
    if (!tf_storage_key_valid(key)) {
        free(key);
        return NULL;
    }
    return key;
}

/* ---- save: key, chain, meta in that order ---- */

struct save_op {
    struct tf_storage *st;
    char *name;
    char *keys[3], *data[3];
    bool secret[3];
    int step;
    int err; /* the failed write, while the partly stored certificate is removed */
    tf_storage_done_cb cb;
    void *arg;
};

static void save_op_free(struct save_op *op)
{
    free(op->name);
    for (int i = 0; i < 3; i++) {
        free(op->keys[i]);
        if (op->data[i])
            OPENSSL_cleanse(op->data[i], strlen(op->data[i]));
        free(op->data[i]);
    }
    free(op);
}

static void on_save_undone(int err, void *arg)
{
    struct save_op *op = arg;
    if (err && err != UV_ENOENT)
        TF_WARN(STORE_MOD, "name=%s removing the partly stored certificate: %s", op->name,
                tf_strerror(err));
    else
        TF_INFO(STORE_MOD, "name=%s partly stored certificate removed (none is stored now)",
                op->name);
    op->cb(op->err, op->arg);
    save_op_free(op);
}

/* A write that fails after the key was written would leave a key without its chain (a new
 * name) or a new key beside the old chain (a renewal): neither loads, and the key is a
 * secret left behind. So the name's files are then deleted, and the storage holds a
 * certificate whole or not at all. A failed key write changed nothing: the old stays. */
static void on_save_step(int err, void *arg)
{
    struct save_op *op = arg;
    if (!err && ++op->step < 3) {
        int i = op->step;
        err = tf_storage_put(op->st, op->keys[i], op->data[i], strlen(op->data[i]),
                             op->secret[i], on_save_step, op);
        if (!err)
            return;
    }
    if (err && op->step > 0) {
        op->err = err;
        int rc = tf_acme_store_forget(op->st, op->name, on_save_undone, op);
        if (rc)
            on_save_undone(rc, op);
        return;
    }
    op->cb(err, op->arg);
    save_op_free(op);
}

int tf_acme_store_save(struct tf_storage *st, const char *name, const char *chain_pem,
                       const char *key_pem, const char *meta_json, tf_storage_done_cb cb,
                       void *arg)
{
    char *k = tf_acme_store_key(name, "key.pem");
    if (!k)
        return TF_EINVAL;
    struct save_op *op = tf_calloc(1, sizeof(*op));
    op->st = st;
    op->name = tf_strdup(name);
    op->cb = cb;
    op->arg = arg;
    op->keys[0] = k;
    op->keys[1] = tf_acme_store_key(name, "cert.pem");
    op->keys[2] = tf_acme_store_key(name, "meta.json");
    op->data[0] = tf_strdup(key_pem);
    op->data[1] = tf_strdup(chain_pem);
    op->data[2] = tf_strdup(meta_json ? meta_json : "{}");
    op->secret[0] = true;
    int rc = tf_storage_put(st, op->keys[0], op->data[0], strlen(op->data[0]), true,
                            on_save_step, op);
    if (rc)
        save_op_free(op);
    return rc;
}

/* ---- forget: meta, chain, key (the reverse of save) ---- */

struct forget_op {
    struct tf_storage *st;
    char *keys[3];
    int step, found;
    tf_storage_done_cb cb;
    void *arg;
};

static void on_forget_step(int err, void *arg)
{
    struct forget_op *op = arg;
    if (!err)
        op->found++;
    if ((!err || err == UV_ENOENT) && ++op->step < 3) {
        err = tf_storage_del(op->st, op->keys[op->step], on_forget_step, op);
        if (!err)
            return;
    }
    if (err == UV_ENOENT || (!err && op->step >= 3))
        err = op->found ? 0 : UV_ENOENT;
    op->cb(err, op->arg);
    for (int i = 0; i < 3; i++)
        free(op->keys[i]);
    free(op);
}

int tf_acme_store_forget(struct tf_storage *st, const char *name, tf_storage_done_cb cb,
                         void *arg)
{
    char *k = tf_acme_store_key(name, "meta.json");
    if (!k)
        return TF_EINVAL;
    struct forget_op *op = tf_calloc(1, sizeof(*op));
    op->st = st;
    op->cb = cb;
    op->arg = arg;
    op->keys[0] = k;
    op->keys[1] = tf_acme_store_key(name, "cert.pem");
    op->keys[2] = tf_acme_store_key(name, "key.pem");
    int rc = tf_storage_del(st, op->keys[0], on_forget_step, op);
    if (rc) {
        for (int i = 0; i < 3; i++)
            free(op->keys[i]);
        free(op);
    }
    return rc;
}

/* ---- load one ---- */

struct load_op {
    struct tf_storage *st;
    char *name, *chain;
    size_t chain_len;
    tf_acme_store_load_cb cb;      /* one of cb (chain and key texts) ... */
    tf_acme_store_meta_cb meta_cb; /* ... or meta_cb (then meta.json is read third) ... */
    tf_acme_store_read_cb read_cb; /* ... or read_cb (the texts, not decoded) */
    struct tf_cert *cert;          /* meta_cb: the certificate while meta.json is read */
    void *arg;
};

static void load_op_free(struct load_op *op)
{
    free(op->name);
    free(op->chain);
    free(op);
}

/* The end of a load (meta_cb: one that stops before meta.json, so with no CA id). */
static void load_end(struct load_op *op, int err, struct tf_cert *c, const char *key)
{
    if (op->meta_cb)
        op->meta_cb(err, c, NULL, op->arg);
    else
        op->cb(err, c, op->chain, key, op->arg);
    load_op_free(op);
}

/* meta.json's "ca_id", or NULL when it is missing or unreadable (a certificate stored before
 * the metadata named its CA still loads). */
static char *meta_ca_id(const char *data, size_t len)
{
    cJSON *j = data ? cJSON_ParseWithLength(data, len) : NULL;
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "ca_id");
    char *out = cJSON_IsString(id) && id->valuestring[0] ? tf_strdup(id->valuestring) : NULL;
    cJSON_Delete(j);
    return out;
}

static void on_load_meta(int err, char *data, size_t len, void *arg)
{
    struct load_op *op = arg;
    char *ca_id = err ? NULL : meta_ca_id(data, len);
    free(data);
    op->meta_cb(0, op->cert, ca_id, op->arg);
    free(ca_id);
    load_op_free(op);
}

/* Read name's file next, then next; a read that cannot start goes to next with its code. */
static void load_read(struct load_op *op, const char *file, tf_storage_get_cb next)
{
    char *key = tf_acme_store_key(op->name, file);
    int rc = tf_storage_get(op->st, key, next, op);
    free(key);
    if (rc)
        next(rc, NULL, 0, op);
}

static void on_load_key(int err, char *data, size_t len, void *arg)
{
    struct load_op *op = arg;
    struct tf_cert *c = NULL;
    if (op->read_cb) {
        op->read_cb(err, err ? NULL : op->chain, op->chain_len, err ? NULL : data, len, op->arg);
        if (data) {
            OPENSSL_cleanse(data, len);
            free(data);
        }
        load_op_free(op);
        return;
    }
    if (!err) {
        char why[200];
        char *path = tf_acme_store_key(op->name, "cert.pem");
        c = tf_cert_from_pem(op->chain, op->chain_len, data, len, path, why, sizeof(why));
        ERR_clear_error();
        if (!c) {
            TF_WARN(STORE_MOD, "name=%s stored certificate skipped: %s", op->name, why);
            err = TF_EINVAL;
        } else if (!tf_cert_covers(c, op->name)) {
            TF_WARN(STORE_MOD, "name=%s stored certificate skipped: does not cover the name",
                    op->name);
            tf_cert_unref(c);
            c = NULL;
            err = TF_EINVAL;
        }
        free(path);
    }
    if (op->meta_cb && !err) {
        op->cert = c;
        load_read(op, "meta.json", on_load_meta);
    } else {
        load_end(op, err, c, err ? NULL : data);
    }
    if (data) {
        OPENSSL_cleanse(data, len);
        free(data);
    }
}

static void on_load_chain(int err, char *data, size_t len, void *arg)
{
    struct load_op *op = arg;
    if (err) {
        free(data);
        if (op->read_cb) {
            op->read_cb(err, NULL, 0, NULL, 0, op->arg);
            load_op_free(op);
            return;
        }
        load_end(op, err, NULL, NULL);
        return;
    }
    op->chain = data;
    op->chain_len = len;
    load_read(op, "key.pem", on_load_key);
}

static int load_start(struct tf_storage *st, const char *name, tf_acme_store_load_cb cb,
                      tf_acme_store_meta_cb meta_cb, tf_acme_store_read_cb read_cb, void *arg)
{
    char *key = tf_acme_store_key(name, "cert.pem");
    if (!key)
        return TF_EINVAL;
    struct load_op *op = tf_calloc(1, sizeof(*op));
    op->st = st;
    op->name = tf_strdup(name);
    op->cb = cb;
    op->meta_cb = meta_cb;
    op->read_cb = read_cb;
    op->arg = arg;
    int rc = tf_storage_get(st, key, on_load_chain, op);
    free(key);
    if (rc) {
        free(op->name);
        free(op);
    }
    return rc;
}

int tf_acme_store_load(struct tf_storage *st, const char *name, tf_acme_store_load_cb cb,
                       void *arg)
{
    return load_start(st, name, cb, NULL, NULL, arg);
}

int tf_acme_store_read(struct tf_storage *st, const char *name, tf_acme_store_read_cb cb,
                       void *arg)
{
    return load_start(st, name, NULL, NULL, cb, arg);
}

int tf_acme_store_load_meta(struct tf_storage *st, const char *name, tf_acme_store_meta_cb cb,
                            void *arg)
{
    return load_start(st, name, NULL, cb, NULL, arg);
}

/* ---- load all ---- */

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The distinct names under "certs", sorted: keys may come back as "certs/<name>/<file>",
 * "<name>/<file>" or "<name>"; all give <name>. Sorting, then dropping neighbours that repeat,
 * keeps this O(n log n) in the number of keys (a store holds three keys per name). */
static int names_from_keys(char **keys, int n, char ***out)
{
    char **names = tf_calloc((size_t)n + 1, sizeof(char *));
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        const char *k = keys[i];
        if (strncmp(k, "certs/", 6) == 0)
            k += 6;
        char *name = tf_strndup(k, strcspn(k, "/"));
        if (name_chars_ok(name))
            names[cnt++] = name;
        else
            free(name);
    }
    if (cnt > 1)
        qsort(names, (size_t)cnt, sizeof(*names), cmp_name);
    int uniq = 0;
    for (int i = 0; i < cnt; i++) {
        if (uniq > 0 && strcmp(names[uniq - 1], names[i]) == 0)
            free(names[i]);
        else
            names[uniq++] = names[i];
    }
    *out = names;
    return uniq;
}

/* Stored certificates read at once by a load of everything: each load waits on three reads in
 * turn, so a few in flight keep the thread pool (or the Redis connection) busy, where one at
 * a time leaves it idle between reads. Small, so that the loop never holds many decoded
 * certificates it has not handed over yet. */
#define LOAD_WINDOW 8
/* An index reads one small meta.json per name and holds no decoded certificate: more reads
 * in flight keep the storage's threads (or the Redis pipeline) full. */
#define INDEX_WINDOW 64

struct all_op {
    struct tf_storage *st;
    char **names;
    int n, next, active, loaded, skipped;
    tf_acme_store_each_cb each;
    tf_acme_store_all_cb done;
    /* tf_acme_store_index_all: these instead of each and done */
    tf_acme_store_index_cb each_ix;
    tf_acme_store_indexed_cb done_ix;
    int eager_max;
    struct tf_acme_store_counts counts; /* index and decoded */
    void *arg;
};

/* One load of a load-all in flight: which name it reads. */
struct all_one {
    struct all_op *op;
    int i;
};

static void all_next(struct all_op *op);

/* One name done: c (one reference, handed on) is decoded, or NULL with meta from
 * meta.json. */
static void all_one_end(struct all_one *one, int err, struct tf_cert *c,
                        const struct tf_acme_store_meta *meta, const char *ca_id,
                        const char *cert_id)
{
    struct all_op *op = one->op;
    const char *name = op->names[one->i];
    free(one);
    if (err) {
        if (err != TF_EINVAL) /* TF_EINVAL was logged with its reason already */
            TF_WARN(STORE_MOD, "name=%s stored certificate skipped: %s", name, tf_strerror(err));
        op->skipped++;
    } else if (op->each) {
        op->loaded++;
        op->each(name, c, ca_id, op->arg);
    } else if (op->each_ix) {
        op->loaded++;
        struct tf_acme_store_meta from_cert;
        if (!meta && c && op->n > op->eager_max) { /* indexing: decoded for want of meta */
            from_cert = (struct tf_acme_store_meta){c->kind, c->not_before, c->not_after};
            meta = &from_cert;
        }
        op->each_ix(name, c, meta, ca_id, cert_id, op->arg);
    } else {
        op->loaded++;
        tf_cert_unref(c);
    }
    op->active--;
    all_next(op);
}

static void on_all_one(int err, struct tf_cert *c, const char *ca_id, void *arg)
{
    all_one_end(arg, err, c, NULL, ca_id, NULL);
}

/* ---- index: meta.json only ---- */

/* What an index needs from name's meta.json (its name, key kind and validity) into *meta;
 * false when the record is missing or lacks it. *ca_id and *cert_id are new strings or
 * NULL. */
static bool meta_read(const char *name, const char *data, size_t len,
                      struct tf_acme_store_meta *meta, char **ca_id, char **cert_id)
{
    cJSON *j = data ? cJSON_ParseWithLength(data, len) : NULL;
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(j, "name");
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(j, "kind");
    const cJSON *nb = cJSON_GetObjectItemCaseSensitive(j, "not_before");
    const cJSON *na = cJSON_GetObjectItemCaseSensitive(j, "not_after");
    const cJSON *ca = cJSON_GetObjectItemCaseSensitive(j, "ca_id");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(j, "cert_id");
    bool ec = cJSON_IsString(kind) && strcmp(kind->valuestring, "ec") == 0;
    bool rsa = cJSON_IsString(kind) && strcmp(kind->valuestring, "rsa") == 0;
    bool ok = cJSON_IsString(n) && strcmp(n->valuestring, name) == 0 && (ec || rsa) &&
              cJSON_IsNumber(nb) && cJSON_IsNumber(na) && na->valuedouble > nb->valuedouble;
    if (ok) {
        *meta = (struct tf_acme_store_meta){ec ? TF_CERT_EC : TF_CERT_RSA,
                                            (int64_t)nb->valuedouble, (int64_t)na->valuedouble};
        *ca_id = cJSON_IsString(ca) && ca->valuestring[0] ? tf_strdup(ca->valuestring) : NULL;
        *cert_id = cJSON_IsString(id) && id->valuestring[0] ? tf_strdup(id->valuestring) : NULL;
    }
    cJSON_Delete(j);
    return ok;
}

static void on_index_meta(int err, char *data, size_t len, void *arg)
{
    struct all_one *one = arg;
    struct all_op *op = one->op;
    const char *name = op->names[one->i];
    char *ca_id = NULL, *cert_id = NULL;
    struct tf_acme_store_meta meta;
    bool ok = !err && meta_read(name, data, len, &meta, &ca_id, &cert_id);
    free(data);
    if (ok) {
        op->counts.indexed++;
        all_one_end(one, 0, NULL, &meta, ca_id, cert_id);
    } else {
        /* No usable record (stored by an older version, or damaged): decode it once. */
        TF_DEBUG(STORE_MOD, "name=%s meta.json missing or incomplete: decoding the certificate",
                 name);
        op->counts.decoded++;
        int rc = tf_acme_store_load_meta(op->st, name, on_all_one, one);
        if (rc)
            all_one_end(one, rc, NULL, NULL, NULL, NULL);
    }
    free(ca_id);
    free(cert_id);
}

static int index_one(struct all_op *op, struct all_one *one)
{
    char *key = tf_acme_store_key(op->names[one->i], "meta.json");
    int rc = key ? tf_storage_get(op->st, key, on_index_meta, one) : TF_EINVAL;
    free(key);
    return rc;
}

static void all_report(struct all_op *op, int err)
{
    if (op->done)
        op->done(err, op->loaded, op->skipped, op->arg);
    if (op->done_ix) {
        op->counts.loaded = op->loaded;
        op->counts.skipped = op->skipped;
        op->counts.lazy = op->n > op->eager_max;
        op->done_ix(err, &op->counts, op->arg);
    }
}

/* Keep LOAD_WINDOW loads in flight; after the last one, report and free op. Storage never
 * calls back from inside a call, so on_all_one cannot re-enter this loop. */
static void all_next(struct all_op *op)
{
    bool index = op->each_ix && op->n > op->eager_max;
    while (op->next < op->n && op->active < (index ? INDEX_WINDOW : LOAD_WINDOW)) {
        struct all_one *one = tf_calloc(1, sizeof(*one));
        one->op = op;
        one->i = op->next++;
        if ((index ? index_one(op, one)
                   : tf_acme_store_load_meta(op->st, op->names[one->i], on_all_one, one)) != 0) {
            free(one);
            op->skipped++;
            continue;
        }
        op->active++;
    }
    if (op->active > 0)
        return;
    all_report(op, 0);
    for (int i = 0; i < op->n; i++)
        free(op->names[i]);
    free(op->names);
    free(op);
}

static void on_all_list(int err, char **keys, int n, void *arg)
{
    struct all_op *op = arg;
    if (err == UV_ENOENT) {
        err = 0;
        n = 0;
    }
    if (!err)
        op->n = names_from_keys(keys, n, &op->names);
    for (int i = 0; keys && i < n; i++)
        free(keys[i]);
    free(keys);
    if (err) {
        all_report(op, err);
        free(op);
        return;
    }
    all_next(op);
}

static struct all_op *all_new(struct tf_storage *st, void *arg)
{
    struct all_op *op = tf_calloc(1, sizeof(*op));
    op->st = st;
    op->arg = arg;
    return op;
}

/* List the names, then load or index them (on_all_list); op is freed here on failure. */
static int all_start(struct all_op *op)
{
    int rc = tf_storage_list(op->st, "certs", on_all_list, op);
    if (rc)
        free(op);
    return rc;
}

int tf_acme_store_load_all(struct tf_storage *st, tf_acme_store_each_cb each,
                           tf_acme_store_all_cb done, void *arg)
{
    struct all_op *op = all_new(st, arg);
    op->each = each;
    op->done = done;
    return all_start(op);
}

int tf_acme_store_index_all(struct tf_storage *st, int eager_max, tf_acme_store_index_cb each,
                            tf_acme_store_indexed_cb done, void *arg)
{
    struct all_op *op = all_new(st, arg);
    op->each_ix = each;
    op->done_ix = done;
    op->eager_max = eager_max;
    return all_start(op);
}

/* ---- synchronous listing ---- */

static void list_one(const char *dir, const char *name, struct tf_acme_store_entry *e)
{
    char *ck = tf_acme_store_key(name, "cert.pem"), *kk = tf_acme_store_key(name, "key.pem");
    char *chain = NULL, *key = NULL, why[200] = "";
    size_t clen = 0, klen = 0;
    e->name = tf_strdup(name);
    int rc = tf_storage_fs_read_sync(dir, ck, &chain, &clen);
    if (!rc)
        rc = tf_storage_fs_read_sync(dir, kk, &key, &klen);
    struct tf_cert *c = NULL;
    if (rc) {
        e->error = tf_strdup(tf_strerror(rc));
    } else if (!(c = tf_cert_from_pem(chain, clen, key, klen, ck, why, sizeof(why)))) {
        ERR_clear_error();
        e->error = tf_strdup(why);
    } else {
        e->issuer = tf_strdup(c->issuer ? c->issuer : "");
        e->not_after = c->not_after;
        tf_cert_unref(c);
    }
    if (key) {
        OPENSSL_cleanse(key, klen);
        free(key);
    }
    free(chain);
    free(ck);
    free(kk);
}

int tf_acme_store_list_sync(const char *dir, struct tf_acme_store_entry **out, int *n)
{
    char **keys = NULL;
    int nk = 0;
    *out = NULL;
    *n = 0;
    int rc = tf_storage_fs_list_sync(dir, "certs", &keys, &nk);
    if (rc == UV_ENOENT)
        return 0;
    if (rc)
        return rc;
    char **names = NULL;
    int cnt = names_from_keys(keys, nk, &names);
    for (int i = 0; i < nk; i++)
        free(keys[i]);
    free(keys);
    struct tf_acme_store_entry *e = tf_calloc((size_t)cnt + 1, sizeof(*e));
    for (int i = 0; i < cnt; i++) {
        list_one(dir, names[i], &e[i]);
        free(names[i]);
    }
    free(names);
    *out = e;
    *n = cnt;
    return 0;
}

void tf_acme_store_entries_free(struct tf_acme_store_entry *e, int n)
{
    for (int i = 0; e && i < n; i++) {
        free(e[i].name);
        free(e[i].issuer);
        free(e[i].error);
    }
    free(e);
}
