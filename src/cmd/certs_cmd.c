/*
 * certs_cmd.c: the `tlsfront certs [--storage DIR|URL] [--storage-key FILE|none]
 * [--storage-prefix NAME] [--storage-ca FILE]` command: lists the certificates ACME stored (name, issuer,
 * not_after, days left), one per line, broken entries with their problem. Runs before the
 * server: a directory is read with blocking file reads; a redis:// store is read through the
 * asynchronous store on a loop of its own (broken entries there are logged and skipped by
 * the loader). Exit codes: 0 listed, 1 storage unreadable, 2 bad usage.
 */
#include "certs_cmd_int.h"
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tlsfront/config/config.h"
#include "tlsfront/store/storage_redis.h"
#include "tlsfront/tls/certstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_STORAGE "/var/lib/tlsfront"

static int usage(const char *msg)
{
    fprintf(stderr,
            "tlsfront certs: %s (usage: tlsfront certs [--storage DIR|redis[s]://...] "
            "[--storage-key FILE|none] [--storage-prefix NAME] [--storage-ca FILE])\n",
            msg);
    return 2;
}

/* Where the listing reads from. */
struct certs_args {
    const char *dir; /* a directory or a redis:// URL */
    const char *key, *prefix, *ca;
};

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* "--NAME VALUE" or "--NAME=VALUE" at argv[*i] into *out; 1 when it matched, -1 when the
 * value is missing, 0 when argv[*i] is another argument. */
static int take_opt(int argc, char **argv, int *i, const char *name, const char **out)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *out = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *out = argv[++*i];
    return 1;
}

/* Flags, else TLSFRONT_STORAGE*, else the default directory. */
static int parse_args(int argc, char **argv, struct certs_args *a)
{
    a->dir = env_or("TLSFRONT_STORAGE", DEFAULT_STORAGE);
    a->key = env_or("TLSFRONT_STORAGE_KEY", NULL);
    a->prefix = env_or("TLSFRONT_STORAGE_PREFIX", NULL);
    a->ca = env_or("TLSFRONT_STORAGE_CA", NULL);
    for (int i = 1; i < argc; i++) {
        int m = take_opt(argc, argv, &i, "--storage", &a->dir);
        if (!m)
            m = take_opt(argc, argv, &i, "--storage-key", &a->key);
        if (!m)
            m = take_opt(argc, argv, &i, "--storage-prefix", &a->prefix);
        if (!m)
            m = take_opt(argc, argv, &i, "--storage-ca", &a->ca);
        if (m < 0)
            return usage("an option needs a value");
        if (!m) {
            char msg[160];
            snprintf(msg, sizeof(msg), "unknown argument \"%.100s\"", argv[i]);
            return usage(msg);
        }
    }
    if (!*a->dir)
        return usage("--storage needs a directory");
    return 0;
}

/* The redis listing: entries collected by the loader's callbacks. */
struct redis_list {
    struct tf_acme_store_entry *e;
    int n, cap;
    int err;
    bool done;
};

static void on_each(const char *name, struct tf_cert *c, const char *ca_id, void *arg)
{
    (void)ca_id;
    struct redis_list *l = arg;
    if (l->n + 1 >= l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->e = tf_realloc(l->e, (size_t)l->cap * sizeof(*l->e));
    }
    struct tf_acme_store_entry *e = &l->e[l->n++];
    memset(e, 0, sizeof(*e));
    e->name = tf_strdup(name);
    e->issuer = tf_strdup(c->issuer ? c->issuer : "");
    e->not_after = c->not_after;
    tf_cert_unref(c);
}

static void on_all(int err, int loaded, int skipped, void *arg)
{
    struct redis_list *l = arg;
    (void)loaded;
    (void)skipped;
    l->err = err;
    l->done = true;
}

/* List a redis:// store: 0, a storage error (1), or 2 for a bad option (printed). */
static int list_redis(const struct certs_args *a, struct tf_acme_store_entry **out, int *n)
{
    struct tf_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.storage = (char *)a->dir;
    cfg.storage_key = (char *)a->key;
    cfg.storage_prefix = (char *)a->prefix;
    cfg.storage_ca = (char *)a->ca;
    char err[400] = "";
    uv_loop_t loop;
    if (uv_loop_init(&loop) != 0)
        return UV_ENOMEM;
    struct tf_storage *st = tf_storage_open(&loop, &cfg, err, sizeof(err));
    if (!st) {
        uv_loop_close(&loop);
        fprintf(stderr, "tlsfront certs: %s\n", err);
        return 2;
    }
    struct redis_list l = {0};
    int rc = tf_acme_store_load_all(st, on_each, on_all, &l);
    uv_run(&loop, UV_RUN_DEFAULT);
    tf_storage_close(st, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    rc = rc ? rc : !l.done ? TF_EIO : l.err;
    *out = l.e;
    *n = l.n;
    return rc;
}

int tf_cmd_certs(int argc, char **argv)
{
    struct certs_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc;
    struct tf_acme_store_entry *e = NULL;
    int n = 0;
    bool redis = tf_config_storage_is_redis(a.dir);
    rc = redis ? list_redis(&a, &e, &n) : tf_acme_store_list_sync(a.dir, &e, &n);
    if (rc == 2 && redis)
        return 2;
    if (rc) {
        tf_acme_store_entries_free(e, n);
        fprintf(stderr, "tlsfront certs: storage %s: %s\n", redis ? "redis" : a.dir,
                tf_strerror(rc));
        return 1;
    }
    printf("%-40s %-40s %-20s %s\n", "NAME", "ISSUER", "NOT_AFTER", "DAYS_LEFT");
    int64_t now = tf_wall_now();
    for (int i = 0; i < n; i++) {
        if (e[i].error) {
            printf("%-40s ERROR: %s\n", e[i].name, e[i].error);
            continue;
        }
        char when[32];
        time_t t = (time_t)e[i].not_after;
        struct tm tm;
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        long long days = (long long)((e[i].not_after - now) / 86400);
        printf("%-40s %-40s %-20s %lld\n", e[i].name, e[i].issuer, when, days);
    }
    tf_acme_store_entries_free(e, n);
    return 0;
}
