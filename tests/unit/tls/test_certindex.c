/*
 * test_certindex.c: loading on first use. The cache's CLOCK policy on hand-made stubs
 * (size bound, second chance for used entries, what is retired and when it is freed), and
 * against real certificates from certs/mkcerts.sh demo (every layout, ECDSA and RSA,
 * wildcard, several names): an index gives the same names, kinds and expiry as a full
 * load, the DER walker reads every demo certificate without falling back to OpenSSL and
 * agrees with it, and a stub whose file changed, broke or went away fails to load with a
 * reason. Managed stubs: paths from the name, decoding checked against the stub, last-use
 * side array, and a replaced certificate evicted from the cache. Live managed sets (names
 * obtained while running): appended to while published, and what a store counts and lists.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "certload_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/certcache.h"
#include "tlsfront/tls/certstore.h"
#include "tlsfront/tls/tls.h"
#include "tf_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[200]; /* the demo set, in a private temp dir */

static struct tf_cert *fake(void)
{
    struct tf_cert *c = tf_calloc(1, sizeof *c);
    tf_ref_init(&c->ref, 1);
    c->path = tf_strdup("loaded");
    return c;
}

static int refs(struct tf_cert *c)
{
    return (int)atomic_load(&c->ref.n);
}

/* A set of n hand-made stubs named s<i>.test. */
static struct tf_stubset *fake_set(int n)
{
    struct tf_stubset *set = tf_stubset_new("/nowhere", 0, 0);
    for (int i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%d.test", i);
        tf_stubset_add(set, name, 1, "x.pem", TF_STUB_KEY_IN);
    }
    tf_stubset_seal(set);
    return set;
}

static bool keep_only(const struct tf_stubset *set, void *arg)
{
    return set == arg;
}

static void test_clock(void)
{
    struct tf_certcache cc;
    tf_certcache_init(&cc, 3);
    struct tf_stubset *set = fake_set(6);
    struct tf_stub *s[6];
    struct tf_cert *l[6];
    for (int i = 0; i < 6; i++) {
        s[i] = &set->stubs[i];
        l[i] = fake();
    }
    CHECK(tf_stub_resolve(s[0]) == NULL);
    struct tf_certcache_retired *r = NULL;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(tf_certcache_install(&cc, set, s[i], l[i], &r), 0);
    CHECK(r == NULL);
    CHECK_EQ_INT(tf_certcache_size(&cc), 3);
    CHECK(tf_stub_resolve(s[1]) == l[1]);
    CHECK_EQ_INT((int)atomic_load(&set->ref.n), 4); /* ours and the ring's three */

    /* Full, every used bit set (new entries get a second chance): one sweep clears them
     * and the oldest goes. */
    CHECK_EQ_INT(tf_certcache_install(&cc, set, s[3], l[3], &r), 1);
    CHECK(r && r->n == 1 && r->certs[0] == l[0]);
    CHECK(atomic_load(&s[0]->loaded) == NULL);
    CHECK_EQ_INT(tf_certcache_size(&cc), 3);
    CHECK_EQ_INT((int)atomic_load(&set->ref.n), 4);

    /* A worker uses s[1]: the hand passes it and takes s[2]. */
    CHECK(tf_stub_resolve(s[1]) == l[1]);
    CHECK_EQ_INT(tf_certcache_install(&cc, set, s[4], l[4], &r), 1);
    CHECK(r->n == 2 && r->certs[1] == l[2]);
    CHECK(tf_stub_resolve(s[2]) == NULL && tf_stub_resolve(s[1]) == l[1]);

    /* The retired certificates live until the last holder releases them. */
    tf_cert_ref(l[0]);
    atomic_store(&r->pending, 2);
    tf_certcache_retired_release(r);
    CHECK_EQ_INT(refs(l[0]), 2);
    tf_certcache_retired_release(r);
    CHECK_EQ_INT(refs(l[0]), 1);
    tf_cert_unref(l[0]);

    /* An evicted stub loads again like any other. */
    r = NULL;
    CHECK_EQ_INT(tf_certcache_install(&cc, set, s[0], fake(), &r), 1);
    CHECK(tf_stub_resolve(s[0]) != NULL);
    CHECK_EQ_INT(tf_certcache_size(&cc), 3);

    /* A reload's prune takes out the stubs of sets no longer used, and their references. */
    struct tf_stubset *other = fake_set(1);
    struct tf_certcache_retired *r2 = NULL;
    CHECK_EQ_INT(tf_certcache_install(&cc, other, &other->stubs[0], fake(), &r2), 1);
    CHECK_EQ_INT(tf_certcache_prune(&cc, keep_only, other, &r2), 2);
    CHECK_EQ_INT(tf_certcache_size(&cc), 1);
    CHECK(tf_stub_resolve(&other->stubs[0]) != NULL);
    CHECK_EQ_INT((int)atomic_load(&set->ref.n), 1);
    atomic_store(&r2->pending, 1);
    tf_certcache_retired_release(r2);

    tf_certcache_free(&cc, &r);
    CHECK(r && r->n == 2); /* s[0]'s reload and other's stub */
    atomic_store(&r->pending, 1);
    tf_certcache_retired_release(r);
    for (int i = 0; i < 6; i++)
        CHECK(atomic_load(&s[i]->loaded) == NULL);
    CHECK_EQ_INT((int)atomic_load(&other->ref.n), 1);
    tf_stubset_unref(other);
    tf_stubset_unref(set);
    tf_cert_unref(l[5]);
}

struct pair {
    const struct tf_certstore *index;
    int n_certs, n_names;
};

/* For each certificate of the full load: the index serves each of its names with a stub of
 * the same kind, names and expiry, which loads into an equal certificate. */
static void compare_cert(const struct tf_cert *full, void *arg)
{
    struct pair *p = arg;
    p->n_certs++;
    for (int i = 0; i < full->n_names; i++) {
        p->n_names++;
        const struct tf_cert_slot *slot = tf_certstore_lookup(p->index, full->names[i]);
        struct tf_stub *stub = slot ? tf_slot_stub(slot, full->kind) : NULL;
        CHECK(stub != NULL);
        if (!stub)
            continue;
        const struct tf_stubset *set = tf_certstore_stubset(p->index, stub);
        CHECK(set != NULL);
        CHECK_EQ_INT(stub->n_names, full->n_names);
        CHECK_EQ_STR(tf_stub_name(set, stub, i), full->names[i]);
        CHECK_EQ_INT(stub->not_after, full->not_after);
        char crt[1024], key[1024];
        CHECK_EQ_INT(tf_stub_paths(set, stub, crt, key, sizeof crt), 0);
        CHECK_EQ_STR(crt, full->path);
        char err[256] = "";
        struct tf_cert *c = tf_stub_load(set, stub, err, sizeof err);
        CHECK(c && c->leaf && c->key && tf_tls_cert_ctx_get(c, 0, 1, NULL) == NULL);
        if (c) {
            CHECK_EQ_INT(c->kind, full->kind);
            CHECK(X509_cmp(c->leaf, full->leaf) == 0);
        } else {
            fprintf(stderr, "load %s: %s\n", crt, err);
        }
        tf_cert_unref(c);
    }
}

/* The walker reads the certificate without OpenSSL, and agrees with it. */
static bool scan_add(void *arg, const unsigned char *name, size_t len)
{
    (*(int *)arg)++;
    (void)name;
    (void)len;
    return true;
}

static void scan_cert(const struct tf_cert *full, void *arg)
{
    (void)arg;
    FILE *f = fopen(full->path, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    int names = 0;
    struct tf_certscan sc = {.add = scan_add, .arg = &names};
    CHECK_EQ_INT(tf_certscan_leaf(buf, n, &sc), 0);
    CHECK_EQ_INT(names, full->n_names);
    CHECK_EQ_INT(sc.n_added, full->n_names);
    CHECK_EQ_INT(sc.kind, full->kind);
    CHECK_EQ_INT(sc.not_before, full->not_before);
    CHECK_EQ_INT(sc.not_after, full->not_after);
    free(sc.der);
}

static void test_index_is_load(void)
{
    int ok = 0, bad = 0, iok = 0, ibad = 0;
    bool lazy = false;
    char err[256];
    struct tf_certstore *full = tf_certstore_load_dir(g_dir, &ok, &bad, err, sizeof err);
    struct tf_certstore *ix = tf_certstore_index_dir(g_dir, 5, &iok, &ibad, &lazy, err, sizeof err);
    CHECK(full && ix && lazy);
    CHECK_EQ_INT(iok, ok);
    CHECK_EQ_INT(ibad, bad);
    CHECK_EQ_INT(tf_certstore_names(ix), tf_certstore_names(full));
    struct pair p = {ix, 0, 0};
    tf_certstore_foreach(full, compare_cert, &p);
    CHECK_EQ_INT(p.n_certs, 6);
    CHECK_EQ_INT(p.n_names, 9); /* dual.test twice: ECDSA and RSA */
    tf_certstore_foreach(full, scan_cert, NULL);

    /* Up to eager_max files (ca.crt counts: it is only skipped once read): a full load. */
    struct tf_certstore *small = tf_certstore_index_dir(g_dir, 7, &iok, &ibad, &lazy, err,
                                                        sizeof err);
    CHECK(small && !lazy);
    const struct tf_cert_slot *slot = small ? tf_certstore_lookup(small, "rsa.test") : NULL;
    CHECK(slot && tf_slot_cert(slot, TF_CERT_RSA) && !tf_slot_stub(slot, TF_CERT_RSA));
    tf_certstore_unref(small);
    tf_certstore_unref(full);
    tf_certstore_unref(ix);
}

static struct tf_stub *stub_for(struct tf_certstore *ix, const char *name, int kind)
{
    const struct tf_cert_slot *slot = tf_certstore_lookup(ix, name);
    return slot ? tf_slot_stub(slot, kind) : NULL;
}

static void check_fails(struct tf_certstore *ix, struct tf_stub *stub, const char *want)
{
    char err[256] = "";
    const struct tf_stubset *set = tf_certstore_stubset(ix, stub);
    struct tf_cert *c = stub && set ? tf_stub_load(set, stub, err, sizeof err) : NULL;
    CHECK(stub && c == NULL);
    if (!strstr(err, want))
        fprintf(stderr, "want \"%s\" in \"%s\"\n", want, err);
    CHECK(strstr(err, want) != NULL);
    tf_cert_unref(c);
}

/* A file over the size limit is refused, even a valid certificate padded with text that
 * PEM readers skip (the reader stops at the first short read: the size is checked). */
static void test_too_large(void)
{
    char err[256], cmd[2048];
    int ok0, bad0, ok1, bad1;
    struct tf_certstore *ix = tf_certstore_index_dir(g_dir, 0, &ok0, &bad0, NULL, err, sizeof err);
    tf_certstore_unref(ix);
    snprintf(cmd, sizeof cmd,
             "cd '%s' && { cat example.crt; head -c 1200000 /dev/zero | tr '\\0' x; echo; } "
             "> big.pem && cp example.key big.key",
             g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    ix = tf_certstore_index_dir(g_dir, 0, &ok1, &bad1, NULL, err, sizeof err);
    CHECK(ix != NULL);
    CHECK_EQ_INT(ok1, ok0);
    CHECK_EQ_INT(bad1, bad0 + 1);
    tf_certstore_unref(ix);
    snprintf(cmd, sizeof cmd, "rm '%s/big.pem' '%s/big.key'", g_dir, g_dir);
    CHECK_EQ_INT(system(cmd), 0);
}

/* A file's text (a new string), or NULL. */
static char *read_text(const char *dir, const char *file, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    FILE *f = fopen(path, "rb");
    char *buf = tf_calloc(1, 65536);
    *len = f ? fread(buf, 1, 65535, f) : 0;
    if (f)
        fclose(f);
    if (*len == 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

/* Managed stubs: their own set (source ACME, last-use side array kept as the set grows),
 * paths derived from the name, no file load, decoding checked against the stub, and a
 * replaced certificate evicted from the cache. */
static void test_managed(void)
{
    struct tf_stubset *set = tf_stubset_new_managed("certs", 1);
    CHECK_EQ_INT((int)tf_stubset_add_managed(set, "a.test", TF_CERT_EC, 100), 0);
    CHECK_EQ_INT((int)tf_stubset_add_managed(set, "example.test", TF_CERT_EC, 123), 1);
    CHECK_EQ_INT((int)tf_stubset_add_managed(set, "rsa.test", TF_CERT_RSA, 200), 2);
    atomic_store(tf_stub_last_used(set, &set->stubs[2]), 77);
    tf_stubset_seal(set);
    struct tf_stub *ex = &set->stubs[1];
    CHECK(ex->source == TF_SRC_ACME && ex->kind == TF_CERT_EC && ex->not_after == 123);
    CHECK(strcmp(tf_stub_name(set, ex, 0), "example.test") == 0);
    CHECK_EQ_INT((int)set->text_len, 7 + 13 + 9); /* the names alone */
    CHECK(atomic_load(tf_stub_last_used(set, ex)) == 0);
    CHECK(atomic_load(tf_stub_last_used(set, &set->stubs[2])) == 77);
    struct tf_stubset *files = fake_set(1);
    CHECK(tf_stub_last_used(files, &files->stubs[0]) == NULL);
    tf_stubset_unref(files);

    char crt[256], key[256], err[256] = "";
    CHECK_EQ_INT(tf_stub_paths(set, ex, crt, key, sizeof crt), 0);
    CHECK(strcmp(crt, "certs/example.test/cert.pem") == 0);
    CHECK(strcmp(key, "certs/example.test/key.pem") == 0);
    CHECK(tf_stub_load(set, ex, err, sizeof err) == NULL && strstr(err, "storage"));

    size_t cl = 0, kl = 0;
    char *chain = read_text(g_dir, "example.crt", &cl), *pkey = read_text(g_dir, "example.key", &kl);
    CHECK(chain && pkey);
    struct tf_cert *c = tf_stub_decode(set, ex, chain, cl, pkey, kl, err, sizeof err);
    CHECK(c && c->source == TF_SRC_ACME);
    struct tf_cert *bad = tf_stub_decode(set, &set->stubs[0], chain, cl, pkey, kl, err, sizeof err);
    CHECK(bad == NULL && strstr(err, "names changed"));
    bad = tf_stub_decode(set, &set->stubs[2], chain, cl, pkey, kl, err, sizeof err);
    CHECK(bad == NULL && strstr(err, "key type changed"));
    free(chain);
    free(pkey);

    /* The store finds the set of a managed stub (the handshake's last-use stamp). */
    struct tf_certstore *st = tf_certstore_from_stubs(set);
    const struct tf_cert_slot *slot = tf_certstore_lookup(st, "example.test");
    CHECK(slot && tf_slot_stub(slot, TF_CERT_EC) == ex);
    CHECK(tf_certstore_stubset(st, ex) == set);

    /* Replacement: the stub's loaded certificate leaves the ring and is retired. */
    struct tf_certcache cc;
    struct tf_certcache_retired *r = NULL;
    tf_certcache_init(&cc, 2);
    CHECK_EQ_INT(tf_certcache_install(&cc, set, ex, c, &r), 0);
    CHECK_EQ_INT(tf_certcache_install(&cc, set, &set->stubs[0], fake(), &r), 0);
    CHECK_EQ_INT(tf_certcache_evict(&cc, ex, &r), 1);
    CHECK(r && r->n == 1 && r->certs[0] == c && atomic_load(&ex->loaded) == NULL);
    CHECK_EQ_INT(tf_certcache_evict(&cc, ex, &r), 0);
    CHECK_EQ_INT(tf_certcache_size(&cc), 1);
    CHECK_EQ_INT(tf_certcache_install(&cc, set, ex, fake(), &r), 0);
    CHECK(tf_stub_resolve(ex) != NULL);
    tf_certcache_free(&cc, &r);
    atomic_store(&r->pending, 1);
    tf_certcache_retired_release(r);
    tf_certstore_unref(st);
    tf_stubset_unref(set);
}

static void count_names(const struct tf_cert *c, void *arg)
{
    *(int *)arg += c->n_names;
}

/* A live set grows while published: its stubs never move, a full one says so; a store lists
 * only the managed stubs its table holds (not those appended after it was built, nor those
 * of a name it dropped), and counts its sets' stubs less those the manager dropped. */
static void test_live(void)
{
    struct tf_stubset *set = tf_stubset_new_live("certs", 2, 20);
    CHECK_EQ_INT((int)tf_stubset_append_managed(set, "a.test", TF_CERT_EC, 100), 0);
    struct tf_stub *a = &set->stubs[0];
    struct tf_certstore *st = tf_certstore_with_stubs(NULL, &set, &a, 1);
    CHECK_EQ_INT((int)tf_stubset_append_managed(set, "b.test", TF_CERT_RSA, 200), 1);
    CHECK(&set->stubs[0] == a && set->cap == 2 && tf_stubset_holds(set, &set->stubs[1]));
    CHECK_EQ_INT((int)tf_stubset_append_managed(set, "c.test", TF_CERT_EC, 300), -1); /* full */
    struct tf_stubset *roomy = tf_stubset_new_live("certs", 8, 16);
    CHECK_EQ_INT((int)tf_stubset_append_managed(roomy, "long-name-here.test", 0, 1), -1);
    CHECK_EQ_INT((int)tf_stubset_append_managed(roomy, "d.test", 0, 1), 0);
    tf_stubset_unref(roomy);
    CHECK(tf_stub_last_used(set, &set->stubs[1]) != NULL);

    const struct tf_cert_slot *slot = tf_certstore_lookup(st, "a.test");
    CHECK(slot && tf_slot_stub(slot, TF_CERT_EC) == a && tf_certstore_stubset(st, a) == set);
    CHECK(tf_certstore_lookup(st, "b.test") == NULL);
    int names = 0;
    tf_certstore_foreach(st, count_names, &names);
    CHECK_EQ_INT(names, 1); /* b.test came after st */

    struct tf_stub *b = &set->stubs[1];
    struct tf_certstore *st2 = tf_certstore_with_stubs(st, &set, &b, 1);
    slot = tf_certstore_lookup(st2, "b.test");
    CHECK(slot && tf_slot_stub(slot, TF_CERT_RSA) == b);
    CHECK_EQ_INT((int)tf_certstore_count(st2), 2);
    struct tf_certstore *st3 = tf_certstore_without(st2, "a.test");
    set->n_dropped++; /* as the manager does when it forgets a name */
    names = 0;
    tf_certstore_foreach(st3, count_names, &names);
    CHECK_EQ_INT((int)tf_certstore_count(st3), 1); /* a.test forgotten: its stub not listed */
    CHECK_EQ_INT(names, 1);

    /* b.test's key type changes: its new stub takes the old one's place, both kinds. */
    struct tf_stubset *set2 = tf_stubset_new_live("certs", 4, 160);
    CHECK_EQ_INT((int)tf_stubset_append_managed(set2, "b.test", TF_CERT_EC, 300), 0);
    struct tf_stub *b2 = &set2->stubs[0];
    struct tf_certstore *st4 = tf_certstore_with_stubs(st3, &set2, &b2, 1);
    slot = tf_certstore_lookup(st4, "b.test");
    CHECK(slot && tf_slot_stub(slot, TF_CERT_EC) == b2 && slot->v[TF_CERT_RSA] == 0);
    set->n_dropped++;
    names = 0;
    tf_certstore_foreach(st4, count_names, &names);
    CHECK_EQ_INT(names, 1);
    CHECK_EQ_INT((int)tf_certstore_count(st4), 1);
    tf_certstore_unref(st4);
    tf_stubset_unref(set2);
    tf_certstore_unref(st);
    tf_certstore_unref(st2);
    tf_certstore_unref(st3);
    tf_stubset_unref(set);
}

static void test_changed_files(void)
{
    char err[256];
    int ok, bad;
    struct tf_certstore *ix = tf_certstore_index_dir(g_dir, 0, &ok, &bad, NULL, err, sizeof err);
    CHECK(ix != NULL);
    if (!ix)
        return;
    char cmd[2048];
    /* Another certificate under a stub's file: its names differ. */
    snprintf(cmd, sizeof cmd, "cd '%s' && cp rsa.crt example.crt && cp rsa.key example.key",
             g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    check_fails(ix, stub_for(ix, "example.test", TF_CERT_EC), "changed since start-up");
    snprintf(cmd, sizeof cmd, "echo garbage > '%s/wild.pem'", g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    check_fails(ix, stub_for(ix, "x.wild.test", TF_CERT_EC), "no certificate");
    snprintf(cmd, sizeof cmd, "rm '%s/rsa.key'", g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    check_fails(ix, stub_for(ix, "rsa.test", TF_CERT_RSA), "cannot read");
    tf_certstore_unref(ix);
}

int main(void)
{
    tf_log_setup(TF_LOG_ERROR, false);
    TF_TEST_RUN(test_clock);
    TF_TEST_RUN(test_live);
    const char *src = getenv("TF_SRC"), *tmp = getenv("TMPDIR");
    char root[150], cmd[1024];
    snprintf(root, sizeof root, "%s/tf_certindex_XXXXXX", tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "%s/demo", root);
    snprintf(cmd, sizeof cmd, "'%s/certs/mkcerts.sh' demo '%s' >/dev/null 2>&1",
             src ? src : ".", g_dir);
    int rc = system(cmd);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        TF_TEST_RUN(test_index_is_load);
        TF_TEST_RUN(test_managed);
        TF_TEST_RUN(test_too_large);
        TF_TEST_RUN(test_changed_files);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_EQ_INT(system(cmd), 0);
    return TF_TEST_DONE();
}
