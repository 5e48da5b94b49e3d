/*
 * certdir.c: loading a certificate directory (tf_certstore_load_dir). Recognises the pair
 * (X.crt + X.key), single-file (X.pem) and certbot (live/NAME/fullchain.pem + privkey.pem)
 * layouts, parses the files on up to MAX_PARSERS threads with certload.c's parser, and hands
 * the result to tf_certstore_from_certs. A directory of more certificates than the cache
 * holds is indexed instead (tf_certstore_index_dir: each file's leaf only, giving stubs that
 * tf_cert_load_stub loads on first use). Does blocking file I/O: never on a worker loop.
 */
#include "certload_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/tls.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* PEM files beyond this size are refused: a chain is a few kilobytes. */
#define MAX_FILE (1024 * 1024)
/* Parser threads for a large directory: parsing is CPU-bound and independent per file. */
#define MAX_PARSERS 8
#define FILES_PER_PARSER 256

struct dir_entry {
    char *name;
    unsigned char type; /* d_type */
    bool key_used;      /* a .key claimed by a X.crt or X.pem */
};

/* One certificate to parse: chain file and key file (NULL when the chain file holds it),
 * relative to the directory; cert is the result (one reference) or NULL. */
struct job {
    char *crt;
    char *key;
    struct tf_cert *cert;
};

/* State of one tf_certstore_load_dir call. The lists are built by the calling thread; the
 * parsers then only take job indexes from next and write their own job's cert. */
struct loader {
    const char *dir;
    int dfd; /* borrowed from the DIR stream */
    struct dir_entry *ents;
    size_t n_ents;
    struct job *jobs;
    size_t n_jobs, cap_jobs;
    atomic_size_t next;
    atomic_int n_failed;
    bool scan; /* index: decode each leaf into a stub (tf_certload_scan) */
};

/* One parser thread's reusable state: file buffers and the key decoder. */
struct parser {
    struct loader *ld;
    char *buf[2];
    size_t cap[2];
    struct parse_cache pc;
    pthread_t tid;
    bool started;
};

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const struct dir_entry *)a)->name, ((const struct dir_entry *)b)->name);
}

static struct dir_entry *find_entry(struct loader *ld, const char *name)
{
    struct dir_entry key = {.name = (char *)name};
    return bsearch(&key, ld->ents, ld->n_ents, sizeof key, cmp_entry);
}

/* Read every visible entry of the open directory, then sort by name so pairs are found by
 * binary search and the load order (which breaks ties) does not depend on readdir. */
static int list_dir(struct loader *ld, DIR *d)
{
    size_t cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (ld->n_ents == cap) {
            cap = cap ? cap * 2 : 64;
            ld->ents = tf_realloc(ld->ents, cap * sizeof *ld->ents);
        }
        ld->ents[ld->n_ents++] = (struct dir_entry){tf_strdup(de->d_name), de->d_type, false};
    }
    if (errno != 0)
        return -errno;
    if (ld->n_ents > 1)
        qsort(ld->ents, ld->n_ents, sizeof *ld->ents, cmp_entry);
    return 0;
}

static void fail(struct loader *ld, const char *rel, const char *problem)
{
    TF_WARN("certstore", "file %s/%s: %s", ld->dir, rel, problem);
    atomic_fetch_add(&ld->n_failed, 1);
}

/* Queue a parse job; takes ownership of crt and key. */
static void add_job(struct loader *ld, char *crt, char *key)
{
    if (ld->n_jobs == ld->cap_jobs) {
        ld->cap_jobs = ld->cap_jobs ? ld->cap_jobs * 2 : 64;
        ld->jobs = tf_realloc(ld->jobs, ld->cap_jobs * sizeof *ld->jobs);
    }
    ld->jobs[ld->n_jobs++] = (struct job){crt, key, NULL};
}

static bool is_dir(struct loader *ld, const struct dir_entry *e)
{
    if (e->type == DT_DIR)
        return true;
    if (e->type != DT_LNK && e->type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(ld->dfd, e->name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

/* certbot's live/NAME/: fullchain.pem + privkey.pem; README, cert.pem and chain.pem are
 * ignored. A subdirectory holding neither file is not ours and is ignored too. */
static void queue_certbot(struct loader *ld, const char *sub)
{
    char *chain = tf_asprintf("%s/fullchain.pem", sub);
    char *key = tf_asprintf("%s/privkey.pem", sub);
    bool has_chain = faccessat(ld->dfd, chain, F_OK, 0) == 0;
    bool has_key = faccessat(ld->dfd, key, F_OK, 0) == 0;
    if (has_chain && has_key) {
        add_job(ld, chain, key);
        return;
    }
    if (has_chain)
        fail(ld, chain, "no private key (privkey.pem missing)");
    else if (has_key)
        fail(ld, key, "no certificate (fullchain.pem missing)");
    else
        TF_DEBUG("certstore", "dir %s/%s: no fullchain.pem, ignored", ld->dir, sub);
    free(chain);
    free(key);
}

static bool has_suffix(const char *s, size_t n, const char *suffix)
{
    size_t k = strlen(suffix);
    return n > k && memcmp(s + n - k, suffix, k) == 0;
}

/* Classify one entry: X.crt (+ X.key), X.pem (+ X.key if present), certbot dir, or other
 * (ignored). */
static void queue_entry(struct loader *ld, struct dir_entry *e)
{
    size_t n = strlen(e->name);
    bool crt = has_suffix(e->name, n, ".crt");
    if (crt || has_suffix(e->name, n, ".pem")) {
        char *key_name = tf_asprintf("%.*s.key", (int)(n - 4), e->name);
        struct dir_entry *k = find_entry(ld, key_name);
        if (k)
            k->key_used = true;
        if (crt && !k) {
            fail(ld, e->name, "no private key (missing key file)");
            free(key_name);
            return;
        }
        if (!k) {
            free(key_name);
            key_name = NULL;
        }
        add_job(ld, tf_strdup(e->name), key_name);
    } else if (!has_suffix(e->name, n, ".key") && is_dir(ld, e)) {
        queue_certbot(ld, e->name);
    }
}

/* Read rel (relative to dfd, symlinks followed) into *buf (grown as needed, capacity *cap),
 * NUL-terminated. Returns 0, or a negative errno / TF_ETOOBIG / TF_EINVAL / TF_EIO. */
static int slurp(int dfd, const char *rel, char **buf, size_t *cap, size_t *len)
{
    int fd = openat(dfd, rel, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = TF_EINVAL;
        goto done;
    }
    if (st.st_size > MAX_FILE) {
        rc = TF_ETOOBIG;
        goto done;
    }
    if ((size_t)st.st_size + 1 > *cap) {
        *cap = (size_t)st.st_size + 4096;
        *buf = tf_realloc(*buf, *cap);
    }
    size_t off = 0;
    while (off < (size_t)st.st_size) {
        ssize_t n = read(fd, *buf + off, (size_t)st.st_size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : TF_EIO;
            goto done;
        }
        off += (size_t)n;
    }
    (*buf)[off] = '\0';
    *len = off;
done:
    close(fd);
    return rc;
}

static int read_file(struct parser *p, const char *rel, int slot, size_t *len)
{
    return slurp(p->ld->dfd, rel, &p->buf[slot], &p->cap[slot], len);
}

static const char *read_problem(int rc, char *tmp, size_t n)
{
    switch (rc) {
    case TF_EINVAL:
        return "not a regular file";
    case TF_ETOOBIG:
        return "file too large";
    case TF_EIO:
        return "file shrank while reading";
    default:
        snprintf(tmp, n, "cannot read: %s", strerror(-rc));
        return tmp;
    }
}

/* Read and parse one job's files; on success job->cert holds the result. */
static void run_job(struct parser *p, struct job *job)
{
    struct loader *ld = p->ld;
    char err[256];
    size_t clen = 0, klen = 0;
    int rc = read_file(p, job->crt, 0, &clen);
    if (rc < 0) {
        fail(ld, job->crt, read_problem(rc, err, sizeof err));
        return;
    }
    char *path = tf_asprintf("%s/%s", ld->dir, job->crt);
    if (ld->scan) {
        /* The key is read at load time; only its presence was checked here. */
        char *key_path = job->key ? tf_asprintf("%s/%s", ld->dir, job->key) : NULL;
        rc = tf_certload_scan(p->buf[0], clen, path, key_path, &job->cert, err, sizeof err);
        free(key_path);
    } else if (job->key && (rc = read_file(p, job->key, 1, &klen)) < 0) {
        fail(ld, job->key, read_problem(rc, err, sizeof err));
        free(path);
        return;
    } else {
        rc = tf_certload_parse(p->buf[0], clen, job->key ? p->buf[1] : NULL, klen, path,
                               &p->pc, &job->cert, err, sizeof err);
    }
    free(path);
    if (rc == PARSE_CA)
        TF_INFO("certstore", "file %s/%s: skipped: %s", ld->dir, job->crt, err);
    else if (rc != PARSE_OK)
        fail(ld, job->crt, err);
}

/* Parser thread body (also run on the calling thread): take jobs until none are left. */
static void *parse_jobs(void *arg)
{
    struct parser *p = arg;
    tf_certload_cache_init(&p->pc);
    /* All of a small directory's certificates get a context of their own, a large one's
     * none: the same path for every name, and a reload (which builds the new store while
     * the old one lives) never finds the budget taken by the store it replaces. */
    p->pc.no_ctx = p->ld->n_jobs > TF_TLS_CERT_CTX_MAX;
    size_t i;
    while ((i = atomic_fetch_add(&p->ld->next, 1)) < p->ld->n_jobs)
        run_job(p, &p->ld->jobs[i]);
    tf_certload_cache_free(&p->pc);
    free(p->buf[0]);
    free(p->buf[1]);
    return NULL;
}

/* Parse every job, on up to MAX_PARSERS threads for large directories. A thread that
 * cannot be started just leaves its share to the others. */
static void run_parsers(struct loader *ld)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n = ld->n_jobs / FILES_PER_PARSER + 1;
    n = TF_MIN(n, (size_t)MAX_PARSERS);
    n = TF_MIN(n, cpus > 0 ? (size_t)cpus : 1);
    struct parser ps[MAX_PARSERS];
    memset(ps, 0, sizeof ps);
    for (size_t i = 0; i < n; i++) {
        ps[i].ld = ld;
        if (i > 0)
            ps[i].started = pthread_create(&ps[i].tid, NULL, parse_jobs, &ps[i]) == 0;
    }
    parse_jobs(&ps[0]);
    for (size_t i = 1; i < n; i++)
        if (ps[i].started)
            pthread_join(ps[i].tid, NULL);
}

/* Take the parsed certs in job order (so ties break the same way on every run). */
static struct tf_certstore *build(struct loader *ld, int *n_loaded)
{
    struct tf_cert **certs = tf_malloc((ld->n_jobs + 1) * sizeof *certs);
    size_t n = 0;
    for (size_t i = 0; i < ld->n_jobs; i++)
        if (ld->jobs[i].cert)
            certs[n++] = ld->jobs[i].cert;
    struct tf_certstore *st = tf_certstore_from_certs(certs, n);
    free(certs);
    *n_loaded = (int)n;
    return st;
}

static void warn_lone_keys(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_ents; i++) {
        const char *name = ld->ents[i].name;
        if (has_suffix(name, strlen(name), ".key") && !ld->ents[i].key_used)
            TF_WARN("certstore", "file %s/%s: key without a matching .crt or .pem, ignored",
                    ld->dir, name);
    }
}

static void loader_free(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_ents; i++)
        free(ld->ents[i].name);
    free(ld->ents);
    for (size_t i = 0; i < ld->n_jobs; i++) {
        free(ld->jobs[i].crt);
        free(ld->jobs[i].key);
        tf_cert_unref(ld->jobs[i].cert);
    }
    free(ld->jobs);
}

static struct tf_certstore *load_dir(const char *dir, int eager_max, int *n_loaded,
                                     int *n_failed, bool *lazy, char *err, size_t errlen)
{
    struct loader ld = {.dir = dir, .dfd = -1};
    atomic_init(&ld.next, 0);
    atomic_init(&ld.n_failed, 0);
    struct tf_certstore *st = NULL;
    int loaded = 0;
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d) {
        if (err && errlen)
            snprintf(err, errlen, "cannot open directory %s: %s", dir ? dir : "(null)",
                     strerror(dir ? errno : EINVAL));
        goto done;
    }
    ld.dfd = dirfd(d);
    int rc = list_dir(&ld, d);
    if (rc < 0) {
        if (err && errlen)
            snprintf(err, errlen, "cannot read directory %s: %s", dir, strerror(-rc));
        goto done;
    }
    for (size_t i = 0; i < ld.n_ents; i++)
        queue_entry(&ld, &ld.ents[i]);
    warn_lone_keys(&ld);
    ld.scan = eager_max >= 0 && ld.n_jobs > (size_t)eager_max;
    run_parsers(&ld);
    st = build(&ld, &loaded);
done:
    if (n_loaded)
        *n_loaded = loaded;
    if (n_failed)
        *n_failed = atomic_load(&ld.n_failed);
    if (lazy)
        *lazy = ld.scan;
    if (d)
        closedir(d);
    loader_free(&ld);
    return st;
}

struct tf_certstore *tf_certstore_load_dir(const char *dir, int *n_loaded, int *n_failed, char *err,
                                           size_t errlen)
{
    return load_dir(dir, -1, n_loaded, n_failed, NULL, err, errlen);
}

struct tf_certstore *tf_certstore_index_dir(const char *dir, int eager_max, int *n_loaded,
                                            int *n_failed, bool *lazy, char *err,
                                            size_t errlen)
{
    return load_dir(dir, eager_max < 0 ? 0 : eager_max, n_loaded, n_failed, lazy, err, errlen);
}

/* Why a loaded certificate may not replace its stub, or NULL when it may. */
static const char *stub_mismatch(const struct tf_cert *stub, const struct tf_cert *c)
{
    if (c->kind != stub->kind)
        return "key type changed since start-up (reload with SIGHUP)";
    for (int i = 0; i < stub->n_names; i++)
        if (!tf_cert_covers(c, stub->names[i]))
            return "names changed since start-up (reload with SIGHUP)";
    return NULL;
}

struct tf_cert *tf_cert_stub_decode(const struct tf_cert *stub, const char *chain_pem,
                                    size_t chain_len, const char *key_pem, size_t key_len,
                                    char *err, size_t errlen)
{
    struct tf_cert *c = NULL;
    struct parse_cache pc;
    memset(&pc, 0, sizeof pc); /* no shared key decoder: one key is decoded */
    pc.no_ctx = true;
    int rc = tf_certload_parse(chain_pem, chain_len, key_pem, key_len, stub->path, &pc, &c, err,
                               errlen);
    tf_certload_cache_free(&pc);
    const char *why = c ? stub_mismatch(stub, c) : NULL;
    if (why) {
        snprintf(err, errlen, "%s", why);
        tf_cert_unref(c);
        c = NULL;
    }
    if (c)
        c->source = stub->source;
    else if (rc == PARSE_CA)
        snprintf(err, errlen, "certificate has no DNS names");
    return c;
}

struct tf_cert *tf_cert_load_stub(const struct tf_cert *stub, char *err, size_t errlen)
{
    char *buf[2] = {NULL, NULL};
    size_t cap[2] = {0, 0}, len[2] = {0, 0};
    struct tf_cert *c = NULL;
    char tmp[200];
    int rc = slurp(AT_FDCWD, stub->path, &buf[0], &cap[0], &len[0]);
    if (rc == 0 && stub->key_path)
        rc = slurp(AT_FDCWD, stub->key_path, &buf[1], &cap[1], &len[1]);
    if (rc < 0)
        snprintf(err, errlen, "%s", read_problem(rc, tmp, sizeof tmp));
    else
        c = tf_cert_stub_decode(stub, buf[0], len[0], buf[1], len[1], err, errlen);
    free(buf[0]);
    free(buf[1]);
    return c;
}
