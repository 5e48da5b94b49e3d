/*
 * test_certindex.c: loading on first use. The cache's CLOCK policy on hand-made stubs
 * (size bound, second chance for used entries, what is retired and when it is freed), and
 * against real certificates from certs/mkcerts.sh demo (every layout, ECDSA and RSA,
 * wildcard, several names): an index gives the same names, kinds and expiry as a full
 * load, the DER walker reads every demo certificate without falling back to OpenSSL and
 * agrees with it, and a stub whose file changed, broke or went away fails to load with a
 * reason.
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

static struct tf_cert *fake(bool stub)
{
    struct tf_cert *c = tf_calloc(1, sizeof *c);
    tf_ref_init(&c->ref, 1);
    c->stub = stub;
    c->path = tf_strdup(stub ? "stub" : "loaded");
    return c;
}

static int refs(struct tf_cert *c)
{
    return (int)atomic_load(&c->ref.n);
}

static void test_clock(void)
{
    struct tf_certcache cc;
    tf_certcache_init(&cc, 3);
    struct tf_cert *s[6], *l[6];
    for (int i = 0; i < 6; i++) {
        s[i] = fake(true);
        l[i] = fake(false);
    }
    CHECK(tf_cert_resolve(s[0]) == NULL);
    CHECK(tf_cert_resolve(l[0]) == l[0]);
    struct tf_certcache_retired *r = NULL;
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(tf_certcache_install(&cc, s[i], l[i], &r), 0);
    CHECK(r == NULL);
    CHECK_EQ_INT(tf_certcache_size(&cc), 3);
    CHECK(tf_cert_resolve(s[1]) == l[1]);
    CHECK_EQ_INT(refs(s[1]), 2); /* the ring's */

    /* Full, every used bit set (new entries get a second chance): one sweep clears them
     * and the oldest goes. */
    CHECK_EQ_INT(tf_certcache_install(&cc, s[3], l[3], &r), 1);
    CHECK(r && r->n == 1 && r->certs[0] == l[0]);
    CHECK(atomic_load(&s[0]->loaded) == NULL && !s[0]->cached);
    CHECK_EQ_INT(refs(s[0]), 1);
    CHECK_EQ_INT(tf_certcache_size(&cc), 3);

    /* A worker uses s[1]: the hand passes it and takes s[2]. */
    CHECK(tf_cert_resolve(s[1]) == l[1]);
    CHECK_EQ_INT(tf_certcache_install(&cc, s[4], l[4], &r), 1);
    CHECK(r->n == 2 && r->certs[1] == l[2]);
    CHECK(tf_cert_resolve(s[2]) == NULL && tf_cert_resolve(s[1]) == l[1]);

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
    CHECK_EQ_INT(tf_certcache_install(&cc, s[0], fake(false), &r), 1);
    CHECK(tf_cert_resolve(s[0]) != NULL);
    CHECK_EQ_INT(tf_certcache_size(&cc), 3);
    tf_certcache_free(&cc, &r);
    CHECK(r && r->n == 4);
    atomic_store(&r->pending, 1);
    tf_certcache_retired_release(r);
    for (int i = 0; i < 6; i++) {
        CHECK_EQ_INT(refs(s[i]), 1);
        CHECK(atomic_load(&s[i]->loaded) == NULL);
        tf_cert_unref(s[i]);
    }
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
        struct tf_cert *stub = slot ? slot->cert[full->kind] : NULL;
        CHECK(stub && stub->stub);
        if (!stub)
            continue;
        CHECK_EQ_INT(stub->n_names, full->n_names);
        CHECK_EQ_STR(stub->names[i], full->names[i]);
        CHECK_EQ_INT(stub->not_after, full->not_after);
        CHECK_EQ_STR(stub->path, full->path);
        char err[256] = "";
        struct tf_cert *c = tf_cert_load_stub(stub, err, sizeof err);
        CHECK(c && c->leaf && c->key && !c->stub && tf_tls_cert_ctx_get(c, 0, 1, NULL) == NULL);
        if (c) {
            CHECK_EQ_INT(c->kind, full->kind);
            CHECK(X509_cmp(c->leaf, full->leaf) == 0);
        } else {
            fprintf(stderr, "load %s: %s\n", stub->path, err);
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
    CHECK(slot && slot->cert[TF_CERT_RSA] && !slot->cert[TF_CERT_RSA]->stub);
    tf_certstore_unref(small);
    tf_certstore_unref(full);
    tf_certstore_unref(ix);
}

static struct tf_cert *stub_for(struct tf_certstore *ix, const char *name, int kind)
{
    const struct tf_cert_slot *slot = tf_certstore_lookup(ix, name);
    return slot ? slot->cert[kind] : NULL;
}

static void check_fails(struct tf_cert *stub, const char *want)
{
    char err[256] = "";
    struct tf_cert *c = stub ? tf_cert_load_stub(stub, err, sizeof err) : NULL;
    CHECK(stub && c == NULL);
    if (!strstr(err, want))
        fprintf(stderr, "want \"%s\" in \"%s\"\n", want, err);
    CHECK(strstr(err, want) != NULL);
    tf_cert_unref(c);
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
    check_fails(stub_for(ix, "example.test", TF_CERT_EC), "changed since start-up");
    snprintf(cmd, sizeof cmd, "echo garbage > '%s/wild.pem'", g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    check_fails(stub_for(ix, "x.wild.test", TF_CERT_EC), "no certificate");
    snprintf(cmd, sizeof cmd, "rm '%s/rsa.key'", g_dir);
    CHECK_EQ_INT(system(cmd), 0);
    check_fails(stub_for(ix, "rsa.test", TF_CERT_RSA), "cannot read");
    tf_certstore_unref(ix);
}

int main(void)
{
    tf_log_setup(TF_LOG_ERROR, false);
    TF_TEST_RUN(test_clock);
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
        TF_TEST_RUN(test_changed_files);
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    CHECK_EQ_INT(system(cmd), 0);
    return TF_TEST_DONE();
}
