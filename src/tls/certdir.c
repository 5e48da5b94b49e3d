/*
 * certdir.c: loading a certificate directory (tf_certstore_load_dir). Recognises the pair
 * (X.crt + X.key), single-file (X.pem) and certbot (live/NAME/fullchain.pem + privkey.pem)
 * layouts, parses the files on up to MAX_PARSERS threads with certload.c's parser, and hands
 * the result to tf_certstore_from_certs. A directory of more certificates than the cache
 * holds is indexed instead (tf_certstore_index_dir: each file's leaf only, giving one stub
 * set, tlsfront/tls/certstub.h, whose stubs tf_stub_load loads on first use). Built for a
 * million files: the listing is one text buffer (no allocation per entry), each file is one
 * open, read and close into a reused buffer, and the index has no allocation per
 * certificate. Does blocking file I/O: never on a worker loop.
 */
#include "certload_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/tls.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Parser threads for a large directory: parsing is independent per file, and files not in
 * the page cache wait for the disk, so a few more threads than CPUs keep reads in flight. */
#define MAX_PARSERS 8
#define MIN_IO_PARSERS 4
#define FILES_PER_PARSER 256
/* Files an index reads per io_uring submission (certread.c). */
#define READ_BATCH 64

/* One directory entry; its name is at text + name in the loader's text. */
struct dir_entry {
    uint64_t ino;       /* d_ino: files are read in inode order */
    uint32_t name;
    unsigned char type; /* d_type */
    bool key_used;      /* a .key claimed by a X.crt or X.pem */
};

/* One certificate to parse: the certificate file (offset of its path relative to the
 * directory in the loader's text) and where its key is (TF_STUB_KEY_*). A full load's
 * result is cert (one reference) or NULL; an index's is ok with kind, not_after and n_names
 * names at offset names in parser part's scan output. */
struct job {
    uint64_t ino; /* of the certificate file (0: unknown) */
    uint32_t crt;
    uint8_t key;
    bool ok;
    uint8_t kind;
    uint8_t part;
    uint16_t n_names;
    uint32_t names;
    union {
        struct tf_cert *cert;
        int64_t not_after;
    } u;
};

struct parser;

/* State of one load_dir call. The lists are built by the calling thread; the parsers then
 * only take job indexes from next and write their own job's result. */
struct loader {
    const char *dir;
    int dfd; /* borrowed from the DIR stream */
    char *text; /* entry names, then certbot paths (NUL-terminated) */
    size_t text_len, text_cap;
    struct dir_entry *ents;
    size_t n_ents;
    struct job *jobs;
    size_t n_jobs, cap_jobs;
    uint32_t *order; /* job indexes in inode order: the order files are read in */
    atomic_size_t next;
    atomic_int n_failed;
    bool scan; /* index: read each leaf for a stub (tf_certload_scan) */
    struct parser *parsers;
    size_t n_parsers;
};

/* One parser thread's reusable state: file buffers, the key decoder, the scan output. */
struct parser {
    struct loader *ld;
    char *buf[2];
    size_t cap[2];
    struct parse_cache pc;
    struct tf_scan_out out;
    struct tf_certread *rd; /* index only; NULL: file by file */
    bool ring_broken;       /* rd failed once: file by file from then on */
    bool noatime;
    uint8_t idx;
    pthread_t tid;
    bool started;
};

/* Append s (n bytes, then a NUL) to the loader's text; returns its offset, or UINT32_MAX
 * when the text would pass 4 GiB. */
static uint32_t text_add(struct loader *ld, const char *s, size_t n)
{
    if (ld->text_len + n + 1 >= UINT32_MAX)
        return UINT32_MAX;
    if (ld->text_len + n + 1 > ld->text_cap) {
        ld->text_cap = ld->text_cap ? ld->text_cap * 2 : 65536;
        while (ld->text_len + n + 1 > ld->text_cap)
            ld->text_cap *= 2;
        ld->text = tf_realloc(ld->text, ld->text_cap);
    }
    uint32_t off = (uint32_t)ld->text_len;
    memcpy(ld->text + off, s, n);
    ld->text[off + n] = '\0';
    ld->text_len += n + 1;
    return off;
}

static int cmp_entry(const void *a, const void *b, void *arg)
{
    const char *text = arg;
    return strcmp(text + ((const struct dir_entry *)a)->name,
                  text + ((const struct dir_entry *)b)->name);
}

static struct dir_entry *find_entry(struct loader *ld, const char *name)
{
    size_t lo = 0, hi = ld->n_ents;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ld->text + ld->ents[mid].name, name);
        if (c == 0)
            return &ld->ents[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* Read every visible entry of the open directory into the text (no allocation per entry),
 * then sort by name so pairs are found by binary search and the load order (which breaks
 * ties) does not depend on readdir. */
static int list_dir(struct loader *ld, DIR *d)
{
    size_t cap = 0;
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        if (ld->n_ents == cap) {
            cap = cap ? cap * 2 : 1024;
            ld->ents = tf_realloc(ld->ents, cap * sizeof *ld->ents);
        }
        uint32_t off = text_add(ld, de->d_name, strlen(de->d_name));
        if (off == UINT32_MAX)
            return TF_ETOOBIG;
        ld->ents[ld->n_ents++] = (struct dir_entry){de->d_ino, off, de->d_type, false};
    }
    if (errno != 0)
        return -errno;
    if (ld->n_ents > 1)
        qsort_r(ld->ents, ld->n_ents, sizeof *ld->ents, cmp_entry, ld->text);
    return 0;
}

static void fail(struct loader *ld, const char *rel, const char *problem)
{
    TF_WARN("certstore", "file %s/%s: %s", ld->dir, rel, problem);
    atomic_fetch_add(&ld->n_failed, 1);
}

/* Queue a parse job for the certificate file at text offset crt (inode ino, 0: unknown). */
static void add_job(struct loader *ld, uint32_t crt, int key, uint64_t ino)
{
    if (ld->n_jobs == ld->cap_jobs) {
        ld->cap_jobs = ld->cap_jobs ? ld->cap_jobs * 2 : 1024;
        ld->jobs = tf_realloc(ld->jobs, ld->cap_jobs * sizeof *ld->jobs);
    }
    ld->jobs[ld->n_jobs++] = (struct job){.ino = ino, .crt = crt, .key = (uint8_t)key};
}

static int cmp_ino(const void *a, const void *b, void *arg)
{
    const struct job *jobs = arg;
    uint64_t x = jobs[*(const uint32_t *)a].ino, y = jobs[*(const uint32_t *)b].ino;
    return x < y ? -1 : x > y;
}

/* The order files are read in: by inode, which on common file systems is close to where
 * they lie on disk, so a cold start reads the disk mostly forward. Results stay in job
 * (name) order. */
static void order_jobs(struct loader *ld)
{
    ld->order = tf_malloc((ld->n_jobs + 1) * sizeof *ld->order);
    for (size_t i = 0; i < ld->n_jobs; i++)
        ld->order[i] = (uint32_t)i;
    if (ld->n_jobs > 1)
        qsort_r(ld->order, ld->n_jobs, sizeof *ld->order, cmp_ino, ld->jobs);
}

static bool is_dir(struct loader *ld, const struct dir_entry *e)
{
    if (e->type == DT_DIR)
        return true;
    if (e->type != DT_LNK && e->type != DT_UNKNOWN)
        return false;
    struct stat st;
    return fstatat(ld->dfd, ld->text + e->name, &st, 0) == 0 && S_ISDIR(st.st_mode);
}

/* certbot's live/NAME/: fullchain.pem + privkey.pem; README, cert.pem and chain.pem are
 * ignored. A subdirectory holding neither file is not ours and is ignored too. */
static void queue_certbot(struct loader *ld, const char *sub)
{
    char chain[PATH_MAX], key[PATH_MAX];
    snprintf(chain, sizeof chain, "%s/fullchain.pem", sub);
    snprintf(key, sizeof key, "%s/privkey.pem", sub);
    bool has_chain = faccessat(ld->dfd, chain, F_OK, 0) == 0;
    bool has_key = faccessat(ld->dfd, key, F_OK, 0) == 0;
    uint32_t off = has_chain && has_key ? text_add(ld, chain, strlen(chain)) : 0;
    if (off == UINT32_MAX)
        fail(ld, chain, "directory listing too large");
    else if (has_chain && has_key)
        add_job(ld, off, TF_STUB_KEY_CERTBOT, 0);
    else if (has_chain)
        fail(ld, chain, "no private key (privkey.pem missing)");
    else if (has_key)
        fail(ld, key, "no certificate (fullchain.pem missing)");
    else
        TF_DEBUG("certstore", "dir %s/%s: no fullchain.pem, ignored", ld->dir, sub);
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
    const char *name = ld->text + e->name;
    size_t n = strlen(name);
    bool crt = has_suffix(name, n, ".crt");
    if (crt || has_suffix(name, n, ".pem")) {
        char key_name[PATH_MAX];
        snprintf(key_name, sizeof key_name, "%.*s.key", (int)(n - 4), name);
        struct dir_entry *k = find_entry(ld, key_name);
        if (k)
            k->key_used = true;
        if (crt && !k)
            fail(ld, name, "no private key (missing key file)");
        else
            add_job(ld, e->name, k ? TF_STUB_KEY_BESIDE : TF_STUB_KEY_IN, e->ino);
    } else if (!has_suffix(name, n, ".key") && is_dir(ld, e)) {
        queue_certbot(ld, name);
    }
}

/* Index one job's certificate file (an index: the key is read at load time, only its
 * presence was checked here). */
static int scan_job(struct parser *p, struct job *job, const char *buf, size_t len, char *err,
                    size_t errlen)
{
    int rc = tf_certload_scan(buf, len, &p->out, err, errlen);
    if (rc == PARSE_OK && p->out.n_names > UINT16_MAX) {
        snprintf(err, errlen, "too many names");
        p->out.len = p->out.start;
        rc = PARSE_FAIL;
    }
    if (rc == PARSE_OK) {
        job->ok = true;
        job->kind = (uint8_t)p->out.kind;
        job->part = p->idx;
        job->n_names = (uint16_t)p->out.n_names;
        job->names = (uint32_t)p->out.start;
        job->u.not_after = p->out.not_after;
    }
    return rc;
}

/* load_job's result when it logged the failure itself. */
enum { JOB_LOGGED = -2 };

/* Read and parse one job's files (with the key) into job->u.cert. */
static int load_job(struct parser *p, struct job *job, size_t clen, char *err, size_t errlen)
{
    struct loader *ld = p->ld;
    const char *rel = ld->text + job->crt;
    char key[PATH_MAX], tmp[200];
    size_t klen = 0;
    if (tf_certload_key_path(rel, job->key, key, sizeof key) < 0) {
        snprintf(err, errlen, "path too long");
        return PARSE_FAIL;
    }
    int rc = key[0] ? tf_certload_read(ld->dfd, key, &p->buf[1], &p->cap[1], &klen,
                                       &p->noatime)
                    : 0;
    if (rc < 0) {
        fail(ld, key, tf_certload_read_problem(rc, tmp, sizeof tmp));
        return JOB_LOGGED;
    }
    char *path = tf_asprintf("%s/%s", ld->dir, rel);
    rc = tf_certload_parse(p->buf[0], clen, key[0] ? p->buf[1] : NULL, klen, path, &p->pc,
                           &job->u.cert, err, errlen);
    free(path);
    return rc;
}

/* Parse (or index) one job whose certificate file was read into buf (or failed: rc). */
static void parse_job(struct parser *p, struct job *job, int rc, const char *buf, size_t clen)
{
    struct loader *ld = p->ld;
    const char *rel = ld->text + job->crt;
    char err[256];
    if (rc < 0) {
        fail(ld, rel, tf_certload_read_problem(rc, err, sizeof err));
        return;
    }
    rc = ld->scan ? scan_job(p, job, buf, clen, err, sizeof err)
                  : load_job(p, job, clen, err, sizeof err);
    if (rc == PARSE_CA)
        TF_INFO("certstore", "file %s/%s: skipped: %s", ld->dir, rel, err);
    else if (rc == PARSE_FAIL)
        fail(ld, rel, err);
}

/* Read and parse (or index) one job, file by file. */
static void run_job(struct parser *p, struct job *job)
{
    size_t clen = 0;
    int rc = tf_certload_read(p->ld->dfd, p->ld->text + job->crt, &p->buf[0], &p->cap[0], &clen,
                              &p->noatime);
    parse_job(p, job, rc, p->buf[0], clen);
}

/* Index the n (<= READ_BATCH) jobs order[0..n) with one io_uring submission; a file the
 * ring could not take whole, or all of them when the ring fails, are read file by file. */
static void run_batch(struct parser *p, const uint32_t *order, size_t n)
{
    struct loader *ld = p->ld;
    const char *rel[READ_BATCH];
    int res[READ_BATCH];
    for (size_t i = 0; i < n; i++)
        rel[i] = ld->text + ld->jobs[order[i]].crt;
    bool ring = tf_certread_run(p->rd, ld->dfd, rel, n, res) == 0;
    if (!ring) /* the ring may hold requests of this batch: leave it, read file by file */
        p->ring_broken = true;
    for (size_t i = 0; i < n; i++) {
        struct job *job = &ld->jobs[order[i]];
        if (!ring || res[i] == TF_ETOOBIG)
            run_job(p, job);
        else
            parse_job(p, job, res[i] < 0 ? res[i] : 0, tf_certread_buf(p->rd, i),
                      res[i] < 0 ? 0 : (size_t)res[i]);
    }
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
    struct loader *ld = p->ld;
    p->rd = ld->scan ? tf_certread_new(READ_BATCH) : NULL;
    size_t i;
    while (p->rd && !p->ring_broken && (i = atomic_fetch_add(&ld->next, READ_BATCH)) < ld->n_jobs)
        run_batch(p, &ld->order[i], TF_MIN((size_t)READ_BATCH, ld->n_jobs - i));
    while ((i = atomic_fetch_add(&ld->next, 1)) < ld->n_jobs)
        run_job(p, &ld->jobs[ld->order[i]]);
    tf_certread_free(p->rd);
    p->rd = NULL;
    tf_certload_cache_free(&p->pc);
    free(p->buf[0]);
    free(p->buf[1]);
    p->buf[0] = p->buf[1] = NULL;
    return NULL;
}

/* CPUs this process may run on (taskset), at least 1. */
static size_t usable_cpus(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (size_t)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

/* Parse every job, on up to MAX_PARSERS threads for large directories. A thread that
 * cannot be started just leaves its share to the others. The parsers stay in ld (their
 * scan output is the index's names) until loader_free. */
static void run_parsers(struct loader *ld)
{
    size_t n = ld->n_jobs / FILES_PER_PARSER + 1;
    n = TF_MIN(n, (size_t)MAX_PARSERS);
    n = TF_MIN(n, TF_MAX(usable_cpus(), (size_t)MIN_IO_PARSERS));
    ld->parsers = tf_calloc(n, sizeof *ld->parsers);
    ld->n_parsers = n;
    for (size_t i = 0; i < n; i++) {
        struct parser *p = &ld->parsers[i];
        p->ld = ld;
        p->idx = (uint8_t)i;
        p->noatime = true;
        if (i > 0)
            p->started = pthread_create(&p->tid, NULL, parse_jobs, p) == 0;
    }
    parse_jobs(&ld->parsers[0]);
    for (size_t i = 1; i < n; i++)
        if (ld->parsers[i].started)
            pthread_join(ld->parsers[i].tid, NULL);
}

/* Take the parsed certs in job order (so ties break the same way on every run). */
static struct tf_certstore *build(struct loader *ld, int *n_loaded)
{
    struct tf_cert **certs = tf_malloc((ld->n_jobs + 1) * sizeof *certs);
    size_t n = 0;
    for (size_t i = 0; i < ld->n_jobs; i++)
        if (ld->jobs[i].u.cert)
            certs[n++] = ld->jobs[i].u.cert;
    struct tf_certstore *st = tf_certstore_from_certs(certs, n);
    free(certs);
    *n_loaded = (int)n;
    return st;
}

/* The index: one stub per certificate read, in job order, in one set. */
static struct tf_certstore *build_index(struct loader *ld, int *n_loaded)
{
    size_t n = 0, text = 0;
    for (size_t i = 0; i < ld->n_parsers; i++)
        text += ld->parsers[i].out.len;
    for (size_t i = 0; i < ld->n_jobs; i++)
        n += ld->jobs[i].ok;
    struct tf_stubset *set = tf_stubset_new(ld->dir, n, text + 1024);
    for (size_t i = 0; i < ld->n_jobs; i++) {
        const struct job *j = &ld->jobs[i];
        if (!j->ok)
            continue;
        const char *names = ld->parsers[j->part].out.buf + j->names;
        struct tf_stub *s = tf_stubset_add(set, names, j->n_names, ld->text + j->crt, j->key);
        s->kind = j->kind;
        s->not_after = j->u.not_after;
    }
    tf_stubset_seal(set);
    struct tf_certstore *st = tf_certstore_from_stubs(set);
    tf_stubset_unref(set);
    *n_loaded = (int)n;
    return st;
}

static void warn_lone_keys(struct loader *ld)
{
    for (size_t i = 0; i < ld->n_ents; i++) {
        const char *name = ld->text + ld->ents[i].name;
        if (has_suffix(name, strlen(name), ".key") && !ld->ents[i].key_used)
            TF_WARN("certstore", "file %s/%s: key without a matching .crt or .pem, ignored",
                    ld->dir, name);
    }
}

static void loader_free(struct loader *ld)
{
    free(ld->ents);
    for (size_t i = 0; !ld->scan && i < ld->n_jobs; i++)
        tf_cert_unref(ld->jobs[i].u.cert);
    free(ld->jobs);
    free(ld->order);
    free(ld->text);
    for (size_t i = 0; i < ld->n_parsers; i++) {
        free(ld->parsers[i].out.buf);
        free(ld->parsers[i].out.scan.der);
    }
    free(ld->parsers);
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
            snprintf(err, errlen, "cannot read directory %s: %s", dir,
                     rc == TF_ETOOBIG ? "too many entries" : strerror(-rc));
        goto done;
    }
    for (size_t i = 0; i < ld.n_ents; i++)
        queue_entry(&ld, &ld.ents[i]);
    warn_lone_keys(&ld);
    ld.scan = eager_max >= 0 && ld.n_jobs > (size_t)eager_max;
    order_jobs(&ld);
    run_parsers(&ld);
    st = ld.scan ? build_index(&ld, &loaded) : build(&ld, &loaded);
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
    /* An index's listing and scan buffers were the large allocations: give the pages back
     * to the system rather than keep them for later. */
    if (ld.scan)
        malloc_trim(0);
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
