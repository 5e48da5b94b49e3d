/*
 * test_certstore.c: the certificate store and loader against real certificates made at test
 * time by certs/mkcerts.sh (and the openssl CLI for odd keys) in a private temp dir, which is
 * removed at the end. Covers every directory layout, name rules (SAN, CN fallback, wildcard
 * of exactly one label), broken files being skipped and counted, with/merge precedence and
 * snapshot immutability, reference counts (ASan/LSan catch the rest), and a 2,000-cert
 * directory (TF_CERTSTORE_MANY=N to change the count) with load and lookup times printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "tlsfront/tls/certstore.h"
#include "tlsfront/base/log.h"
#include "tlsfront/tls/tls.h"
#include "tf_test.h"

#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char g_tmp[256];     /* the private temp dir */
static char g_script[1024]; /* certs/mkcerts.sh */

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Run a shell command quietly; returns its exit status (or -1). */
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    char full[4200];
    snprintf(full, sizeof full, "( %s ) >/dev/null 2>&1", cmd);
    int rc = system(full);
    if (rc != 0)
        fprintf(stderr, "command failed (%d): %s\n", rc, cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static char *path_of(const char *rel)
{
    return tf_asprintf("%s/%s", g_tmp, rel);
}

static char *slurp(const char *rel, size_t *len)
{
    char *p = path_of(rel);
    FILE *f = fopen(p, "rb");
    free(p);
    if (!f)
        return NULL;
    char *buf = tf_malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

/* A cert from files under the temp dir; key_rel may be NULL (key inside crt_rel). */
static struct tf_cert *cert_from(const char *crt_rel, const char *key_rel, char *err, size_t errlen)
{
    size_t clen = 0, klen = 0;
    char *crt = slurp(crt_rel, &clen);
    char *key = key_rel ? slurp(key_rel, &klen) : NULL;
    struct tf_cert *c = NULL;
    if (crt && (key || !key_rel))
        c = tf_cert_from_pem(crt, clen, key, klen, crt_rel, err, errlen);
    else
        snprintf(err, errlen, "fixture missing");
    free(crt);
    free(key);
    return c;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int refs(const struct tf_cert *c)
{
    return atomic_load(&((struct tf_cert *)c)->ref.n);
}

static const struct tf_cert *get(const struct tf_certstore *st, const char *name, int kind)
{
    const struct tf_cert_slot *s = tf_certstore_lookup(st, name);
    return s ? tf_slot_cert(s, kind) : NULL;
}

struct visit {
    int n;
    int multi_seen;
};

static void on_cert(const struct tf_cert *c, void *arg)
{
    struct visit *v = arg;
    v->n++;
    for (int i = 0; i < c->n_names; i++)
        if (strcmp(c->names[i], "b.multi.test") == 0)
            v->multi_seen++;
}

static struct tf_certstore *load(const char *rel, int *ok, int *bad)
{
    char err[256] = "";
    char *dir = path_of(rel);
    struct tf_certstore *st = tf_certstore_load_dir(dir, ok, bad, err, sizeof err);
    if (!st)
        fprintf(stderr, "load %s: %s\n", dir, err);
    free(dir);
    return st;
}

/* The derived fields of demo's example.test certificate. */
static void check_fields(const struct tf_cert *ex)
{
    CHECK_EQ_INT(ex->kind, TF_CERT_EC);
    CHECK_EQ_INT(ex->source, TF_SRC_STATIC);
    CHECK_EQ_INT(ex->n_names, 2);
    CHECK_EQ_INT(ex->not_after - ex->not_before, 30 * 86400);
    CHECK(ex->not_after > time(NULL));
    CHECK(strstr(ex->issuer, "CN = tlsfront test CA") != NULL);
    CHECK(strlen(ex->serial) >= 30 && strspn(ex->serial, "0123456789ABCDEF") == strlen(ex->serial));
    CHECK_EQ_INT(sk_X509_num(ex->chain), 0);
    CHECK_EQ_INT(refs(ex), 1);
}

static void count_ctx(const struct tf_cert *c, void *arg)
{
    *(int *)arg += tf_tls_cert_ctx_get((struct tf_cert *)c, 0, 1, NULL) != NULL;
}

static void test_demo_layouts(void)
{
    int ok = -1, bad = -1;
    struct tf_certstore *st = load("demo", &ok, &bad);
    CHECK(st != NULL);
    if (!st)
        return;
    CHECK_EQ_INT(ok, 6);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(tf_certstore_count(st), 6);
    CHECK_EQ_INT(tf_certstore_names(st), 8);
    int with_ctx = 0; /* a small directory: every certificate may have contexts of its own */
    tf_certstore_foreach(st, count_ctx, &with_ctx);
    CHECK_EQ_INT(with_ctx, 6);

    const struct tf_cert *ex = get(st, "example.test", TF_CERT_EC);
    CHECK(ex && ends_with(ex->path, "/example.crt"));
    CHECK(get(st, "example.test", TF_CERT_RSA) == NULL);
    CHECK(get(st, "www.example.test", TF_CERT_EC) == ex);
    CHECK(get(st, "WWW.Example.TEST", TF_CERT_EC) == ex);
    if (ex)
        check_fields(ex);

    const struct tf_cert *wild = get(st, "foo.wild.test", TF_CERT_EC);
    CHECK(wild && ends_with(wild->path, "/wild.pem"));
    CHECK(wild && wild->names[0] && strcmp(wild->names[0], "*.wild.test") == 0);
    CHECK(get(st, "Bar.WILD.test", TF_CERT_EC) == wild);
    CHECK(tf_certstore_lookup(st, "a.b.wild.test") == NULL);
    CHECK(tf_certstore_lookup(st, "wild.test") == NULL);
    CHECK(tf_certstore_lookup(st, ".wild.test") == NULL);
    CHECK(tf_cert_covers(wild, "x.wild.test"));
    CHECK(!tf_cert_covers(wild, "a.b.wild.test"));
    CHECK(!tf_cert_covers(wild, "wild.test"));

    const struct tf_cert *rsa = get(st, "rsa.test", TF_CERT_RSA);
    CHECK(rsa && rsa->kind == TF_CERT_RSA && ends_with(rsa->path, "/rsa.crt"));
    CHECK(get(st, "rsa.test", TF_CERT_EC) == NULL);

    const struct tf_cert *dec = get(st, "dual.test", TF_CERT_EC);
    const struct tf_cert *dra = get(st, "dual.test", TF_CERT_RSA);
    CHECK(dec && dec->kind == TF_CERT_EC && ends_with(dec->path, "/dual-ec.crt"));
    CHECK(dra && dra->kind == TF_CERT_RSA && ends_with(dra->path, "/dual-rsa.pem"));

    const struct tf_cert *m = get(st, "a.multi.test", TF_CERT_EC);
    CHECK(m && ends_with(m->path, "/multi/fullchain.pem"));
    CHECK(m && sk_X509_num(m->chain) == 1);
    CHECK(get(st, "b.multi.test", TF_CERT_EC) == m);
    CHECK(get(st, "c.multi.test", TF_CERT_EC) == m);
    CHECK(tf_cert_covers(m, "B.MULTI.TEST"));
    CHECK(!tf_cert_covers(m, "d.multi.test"));

    CHECK(tf_certstore_lookup(st, "unknown.test") == NULL);
    CHECK(tf_certstore_lookup(st, "") == NULL);
    CHECK(tf_certstore_lookup(st, "test") == NULL);
    CHECK(tf_certstore_lookup(NULL, "example.test") == NULL);

    struct visit v = {0, 0};
    tf_certstore_foreach(st, on_cert, &v);
    CHECK_EQ_INT(v.n, 6);
    CHECK_EQ_INT(v.multi_seen, 1);
    tf_certstore_unref(st);
}

/* certbot's real layout: live/NAME/ holds symlinks into archive/, live/ has a README, and a
 * live entry may itself be a symlinked directory. */
static void test_certbot_symlinks(void)
{
    CHECK_EQ_INT(sh("'%s' leaf '%s/archive' site site.test --layout certbot && "
                    "'%s' leaf '%s/archive' other other.test --layout certbot --rsa",
                    g_script, g_tmp, g_script, g_tmp),
                 0);
    CHECK_EQ_INT(sh("cd '%s' && mkdir -p live/site && echo certbot >live/README && "
                    "for f in README cert.pem chain.pem fullchain.pem privkey.pem; do "
                    "ln -sf ../../archive/site/$f live/site/$f; done && "
                    "ln -sfn ../archive/other live/other",
                    g_tmp),
                 0);
    int ok = -1, bad = -1;
    struct tf_certstore *st = load("live", &ok, &bad);
    CHECK(st != NULL);
    CHECK_EQ_INT(ok, 2);
    CHECK_EQ_INT(bad, 0);
    const struct tf_cert *s = get(st, "site.test", TF_CERT_EC);
    CHECK(s && ends_with(s->path, "/live/site/fullchain.pem"));
    const struct tf_cert *o = get(st, "other.test", TF_CERT_RSA);
    CHECK(o != NULL);
    /* Both fullchains carry the same CA: one load shares one X509 for it. */
    CHECK(s && o && sk_X509_num(s->chain) == 1 && sk_X509_num(o->chain) == 1 &&
          sk_X509_value(s->chain, 0) == sk_X509_value(o->chain, 0));
    tf_certstore_unref(st);
}

/* Make the "bad" dir: two good certs and one of each kind of breakage. */
static int make_broken_dir(void)
{
    return sh("set -e; cd '%s'; S='%s'; mkdir -p bad; "
              "$S leaf bad good good.test; $S leaf bad other other.test; "
              "$S leaf bad single single.test --layout pem; "
              "printf 'hello, not a certificate\\n' >bad/garbage.pem; "
              "head -c $(( $(wc -c <bad/single.pem) - 60 )) bad/single.pem >bad/truncated.pem; "
              "cp bad/good.crt bad/mismatch.crt; cp bad/other.key bad/mismatch.key; "
              "cp bad/good.crt bad/nokey.crt; "
              "openssl x509 -in bad/single.pem -out bad/certonly.pem; "
              "openssl req -x509 -newkey ed25519 -nodes -keyout bad/ed.key -out bad/ed.crt "
              "  -days 5 -subj /CN=ed.test -addext subjectAltName=DNS:ed.test; "
              "mkdir -p bad/halfbot; cp bad/good.crt bad/halfbot/fullchain.pem; "
              "cp bad/other.key bad/orphan.key; "
              "mkdir -p bad/notours; echo hi >bad/notours/notes.txt; echo x >bad/README; "
              "$S leaf bad tradec tradec.test; openssl pkey -in bad/tradec.key -traditional "
              "  -out bad/tradec.key.new; mv bad/tradec.key.new bad/tradec.key; "
              "$S leaf bad tradrsa tradrsa.test --rsa; openssl pkey -in bad/tradrsa.key "
              "  -traditional -out bad/tradrsa.key.new; mv bad/tradrsa.key.new bad/tradrsa.key; "
              "$S leaf bad params params.test --layout pem; "
              "openssl x509 -in bad/params.pem -out bad/params.crt; "
              "openssl ecparam -name prime256v1 >>bad/params.crt; "
              "openssl pkey -in bad/params.pem -traditional >>bad/params.crt; "
              "mv bad/params.crt bad/params.pem",
              g_tmp, g_script);
}

static void test_broken_files(void)
{
    CHECK_EQ_INT(make_broken_dir(), 0);
    int ok = -1, bad = -1;
    struct tf_certstore *st = load("bad", &ok, &bad);
    CHECK(st != NULL);
    /* good, other, single and the traditional-key ones load; garbage, truncated, mismatch,
     * nokey, certonly, ed, halfbot fail; orphan.key, notours/ and README are ignored. */
    CHECK_EQ_INT(ok, 6);
    CHECK_EQ_INT(bad, 7);
    CHECK(get(st, "good.test", TF_CERT_EC) != NULL);
    CHECK(get(st, "other.test", TF_CERT_EC) != NULL);
    CHECK(get(st, "single.test", TF_CERT_EC) != NULL);
    CHECK(get(st, "tradec.test", TF_CERT_EC) != NULL);
    CHECK(get(st, "tradrsa.test", TF_CERT_RSA) != NULL);
    CHECK(get(st, "params.test", TF_CERT_EC) != NULL);
    CHECK(tf_certstore_lookup(st, "ed.test") == NULL);
    CHECK(tf_certstore_lookup(st, "mismatch.test") == NULL);
    CHECK_EQ_INT(tf_certstore_count(st), 6);
    tf_certstore_unref(st);

    char err[256] = "";
    char *missing = path_of("does-not-exist");
    st = tf_certstore_load_dir(missing, &ok, &bad, err, sizeof err);
    CHECK(st == NULL);
    CHECK(strstr(err, "cannot open directory") != NULL);
    free(missing);
}

static void check_err(const char *crt, const char *key, const char *want)
{
    char err[256] = "";
    struct tf_cert *c = cert_from(crt, key, err, sizeof err);
    CHECK(c == NULL);
    if (!strstr(err, want))
        fprintf(stderr, "  %s + %s: got \"%s\", want \"%s\"\n", crt, key ? key : "-", err, want);
    CHECK(strstr(err, want) != NULL);
    tf_cert_unref(c);
}

static void test_from_pem(void)
{
    CHECK_EQ_INT(sh("set -e; cd '%s/bad'; openssl req -x509 -newkey ec "
                    "-pkeyopt ec_paramgen_curve:P-256 -nodes -keyout cn.key -out cn.crt -days 3 "
                    "-subj /CN=CnOnly.Test.; openssl genpkey -algorithm EC "
                    "-pkeyopt ec_paramgen_curve:P-256 -aes256 -pass pass:x -out enc.key",
                    g_tmp),
                 0);
    check_err("bad/garbage.pem", NULL, "no certificate");
    check_err("bad/other.key", NULL, "no certificate");
    check_err("bad/certonly.pem", NULL, "no private key");
    check_err("bad/good.crt", "bad/good.crt", "no private key");
    check_err("bad/truncated.pem", NULL, "malformed PEM");
    check_err("bad/good.crt", "bad/other.key", "key does not match certificate");
    check_err("bad/single.pem", "bad/other.key", "key does not match certificate");
    check_err("bad/ed.crt", "bad/ed.key", "unsupported key type");
    check_err("bad/good.crt", "bad/enc.key", "encrypted private key not supported");

    char err[256] = "";
    struct tf_cert *c = cert_from("bad/cn.crt", "bad/cn.key", err, sizeof err);
    CHECK(c != NULL);
    if (c) {
        CHECK_EQ_INT(c->n_names, 1);
        CHECK_EQ_STR(c->names[0], "cnonly.test");
        CHECK(tf_cert_covers(c, "CNONLY.test"));
        CHECK_EQ_INT(c->not_after - c->not_before, 3 * 86400);
    }
    tf_cert_unref(c);
    c = cert_from("bad/tradrsa.crt", "bad/tradrsa.key", err, sizeof err);
    CHECK(c && c->kind == TF_CERT_RSA);
    tf_cert_unref(c);
    c = cert_from("bad/params.pem", NULL, err, sizeof err);
    CHECK(c && c->kind == TF_CERT_EC);
    tf_cert_unref(c);
    c = cert_from("bad/single.pem", NULL, err, sizeof err);
    CHECK(c && c->kind == TF_CERT_EC && refs(c) == 1);
    CHECK(c && strcmp(c->path, "bad/single.pem") == 0);
    tf_cert_unref(c);
    CHECK(tf_cert_from_pem(NULL, 0, NULL, 0, NULL, err, sizeof err) == NULL);
}

/* Leaves used by the with/merge tests, in their own dir with their own CA. */
/* A managed certificate is published under the name that was ordered only: a CA answering
 * an order for example.test with www.example.test as well does not get www served. */
static void test_with_ordered_name(void)
{
    char err[256] = "";
    struct tf_cert *all = cert_from("extra/exall.crt", "extra/exall.key", err, sizeof err);
    CHECK(all != NULL);
    if (!all)
        return;
    all->source = TF_SRC_ACME;
    struct tf_certstore *empty = tf_certstore_new();
    struct tf_certstore *st = tf_certstore_with(empty, all, "Example.TEST");
    CHECK(get(st, "example.test", TF_CERT_EC) == all);
    CHECK(tf_certstore_lookup(st, "www.example.test") == NULL);
    CHECK_EQ_INT(tf_certstore_names(st), 1);
    /* A name the certificate does not cover publishes nothing. */
    struct tf_certstore *st2 = tf_certstore_with(empty, all, "other.test");
    CHECK_EQ_INT(tf_certstore_names(st2), 0);
    CHECK(tf_certstore_lookup(st2, "other.test") == NULL);
    tf_certstore_unref(st2);
    tf_certstore_unref(st);
    tf_certstore_unref(empty);
    CHECK_EQ_INT(refs(all), 1);
    tf_cert_unref(all);
}

/* Forgetting one name keeps the others, and drops a certificate left without a name. */
static void test_without(void)
{
    char err[256] = "";
    struct tf_cert *all = cert_from("extra/exall.crt", "extra/exall.key", err, sizeof err);
    struct tf_cert *nw = cert_from("extra/new.crt", "extra/new.key", err, sizeof err);
    CHECK(all && nw);
    if (all && nw) {
        struct tf_certstore *a = tf_certstore_with(NULL, all, NULL);
        struct tf_certstore *b = tf_certstore_with(a, nw, NULL);
        struct tf_certstore *c = tf_certstore_without(b, "EXAMPLE.test");
        CHECK(tf_certstore_lookup(c, "example.test") == NULL);
        CHECK(get(c, "www.example.test", TF_CERT_EC) == all);
        CHECK(get(c, "new.test", TF_CERT_EC) == nw);
        CHECK_EQ_INT(tf_certstore_names(c), 2);
        CHECK_EQ_INT(tf_certstore_count(c), 2);
        CHECK(get(b, "example.test", TF_CERT_EC) == all); /* b is unchanged */
        struct tf_certstore *d = tf_certstore_without(c, "www.example.test");
        CHECK_EQ_INT(tf_certstore_count(d), 1);
        struct tf_certstore *e = tf_certstore_without(d, "absent.test");
        CHECK_EQ_INT(tf_certstore_names(e), 1);
        tf_certstore_unref(a);
        tf_certstore_unref(b);
        tf_certstore_unref(c);
        CHECK_EQ_INT(refs(all), 1);
        tf_certstore_unref(d);
        tf_certstore_unref(e);
        CHECK_EQ_INT(refs(nw), 1);
        struct tf_certstore *f = tf_certstore_without(NULL, "x.test");
        CHECK_EQ_INT(tf_certstore_names(f), 0);
        tf_certstore_unref(f);
    }
    tf_cert_unref(all);
    tf_cert_unref(nw);
}

static int make_extra(void)
{
    return sh("set -e; S='%s'; D='%s/extra'; "
              "$S leaf $D ex20 example.test --days 20; "
              "$S leaf $D exall example.test,www.example.test --days 25; "
              "$S leaf $D exrsa example.test --rsa; "
              "$S leaf $D new new.test; $S leaf $D xwild x.wild.test; "
              "$S leaf $D pick10 pick.test --days 10; $S leaf $D pick20 pick.test --days 20",
              g_script, g_tmp);
}

/* An ACME cert never displaces an operator's cert, but fills an empty kind. */
static void check_with_acme(const struct tf_certstore *base, const struct tf_cert *old)
{
    char err[256] = "";
    struct tf_cert *a20 = cert_from("extra/ex20.crt", "extra/ex20.key", err, sizeof err);
    struct tf_cert *arsa = cert_from("extra/exrsa.crt", "extra/exrsa.key", err, sizeof err);
    CHECK(a20 && arsa);
    if (a20 && arsa) {
        a20->source = TF_SRC_ACME;
        arsa->source = TF_SRC_ACME;
        struct tf_certstore *st5 = tf_certstore_with(base, a20, NULL);
        CHECK(get(st5, "example.test", TF_CERT_EC) == old);
        CHECK_EQ_INT(tf_certstore_count(st5), 6);
        CHECK_EQ_INT(refs(a20), 1);
        struct tf_certstore *st6 = tf_certstore_with(st5, arsa, NULL);
        CHECK(get(st6, "example.test", TF_CERT_RSA) == arsa);
        tf_certstore_unref(st5);
        tf_certstore_unref(st6);
    }
    tf_cert_unref(a20);
    tf_cert_unref(arsa);
}

static void test_with(void)
{
    char err[256] = "";
    struct tf_certstore *base = load("demo", NULL, NULL);
    struct tf_cert *c20 = cert_from("extra/ex20.crt", "extra/ex20.key", err, sizeof err);
    struct tf_cert *rsa = cert_from("extra/exrsa.crt", "extra/exrsa.key", err, sizeof err);
    struct tf_cert *all = cert_from("extra/exall.crt", "extra/exall.key", err, sizeof err);
    CHECK(base && c20 && rsa && all);
    if (!base || !c20 || !rsa || !all)
        goto done;
    const struct tf_cert *old = get(base, "example.test", TF_CERT_EC);

    struct tf_certstore *st2 = tf_certstore_with(base, c20, NULL);
    CHECK(get(base, "example.test", TF_CERT_EC) == old);
    CHECK(get(st2, "example.test", TF_CERT_EC) == c20);
    CHECK(get(st2, "www.example.test", TF_CERT_EC) == old);
    CHECK_EQ_INT(tf_certstore_count(st2), 7);
    CHECK_EQ_INT(tf_certstore_names(st2), 8);
    CHECK_EQ_INT(refs(old), 2);
    CHECK_EQ_INT(refs(c20), 2);

    struct tf_certstore *st3 = tf_certstore_with(st2, rsa, NULL);
    CHECK(get(st3, "example.test", TF_CERT_EC) == c20);
    CHECK(get(st3, "example.test", TF_CERT_RSA) == rsa);
    CHECK(get(st2, "example.test", TF_CERT_RSA) == NULL);

    /* A cert claiming every name of the old one pushes it out of the new snapshot. */
    struct tf_certstore *st4 = tf_certstore_with(base, all, NULL);
    CHECK_EQ_INT(tf_certstore_count(st4), 6);
    CHECK(get(st4, "www.example.test", TF_CERT_EC) == all);

    check_with_acme(base, old);

    tf_certstore_unref(base); /* the newer snapshots still hold what they share with it */
    base = NULL;
    CHECK_EQ_INT(refs(old), 2); /* st2, st3 */
    CHECK(get(st2, "www.example.test", TF_CERT_EC) == old);
    CHECK(get(st3, "www.example.test", TF_CERT_EC) == old);
    tf_certstore_unref(st2);
    CHECK_EQ_INT(refs(old), 1);
    tf_certstore_unref(st3);
    tf_certstore_unref(st4);
    CHECK_EQ_INT(refs(c20), 1);
    CHECK_EQ_INT(refs(rsa), 1);
    CHECK_EQ_INT(refs(all), 1);
done:
    tf_certstore_unref(base);
    tf_cert_unref(c20);
    tf_cert_unref(rsa);
    tf_cert_unref(all);
}

static void test_merge(void)
{
    char err[256] = "";
    const char *files[] = {"ex20", "exrsa", "new", "xwild", "pick20", "pick10"};
    struct tf_cert *a[6];
    bool ok = true;
    for (int i = 0; i < 6; i++) {
        char crt[64], key[64];
        snprintf(crt, sizeof crt, "extra/%s.crt", files[i]);
        snprintf(key, sizeof key, "extra/%s.key", files[i]);
        a[i] = cert_from(crt, key, err, sizeof err);
        ok = ok && a[i];
        if (a[i])
            a[i]->source = TF_SRC_ACME;
    }
    struct tf_certstore *stat = load("demo", NULL, NULL);
    CHECK(ok && stat);
    if (!ok || !stat)
        goto done;
    struct tf_certstore *acme = tf_certstore_from_certs(a, 6);
    CHECK(get(acme, "pick.test", TF_CERT_EC) == a[4]); /* later not_after, whatever order */
    CHECK_EQ_INT(tf_certstore_count(acme), 5);

    struct tf_certstore *m = tf_certstore_merge(stat, acme);
    const struct tf_cert *old = get(stat, "example.test", TF_CERT_EC);
    CHECK(get(m, "example.test", TF_CERT_EC) == old);
    CHECK(get(m, "example.test", TF_CERT_RSA) == a[1]);
    CHECK(get(m, "new.test", TF_CERT_EC) == a[2]);
    CHECK(get(m, "pick.test", TF_CERT_EC) == a[4]);
    /* x.wild.test: the operator's wildcard answers; the ACME exact entry is left out. */
    CHECK(get(m, "x.wild.test", TF_CERT_EC) == get(stat, "x.wild.test", TF_CERT_EC));
    CHECK_EQ_INT(tf_certstore_names(m), tf_certstore_names(stat) + 2);
    CHECK_EQ_INT(tf_certstore_count(m), tf_certstore_count(stat) + 3);
    CHECK(get(stat, "new.test", TF_CERT_EC) == NULL);

    struct tf_certstore *m2 = tf_certstore_merge(NULL, acme);
    CHECK(get(m2, "x.wild.test", TF_CERT_EC) == a[3]);
    CHECK_EQ_INT(tf_certstore_names(m2), tf_certstore_names(acme));
    struct tf_certstore *m3 = tf_certstore_merge(stat, NULL);
    CHECK_EQ_INT(tf_certstore_names(m3), tf_certstore_names(stat));
    struct tf_certstore *empty = tf_certstore_new();
    CHECK_EQ_INT(tf_certstore_count(empty), 0);
    CHECK(tf_certstore_lookup(empty, "example.test") == NULL);
    tf_certstore_unref(empty);
    tf_certstore_unref(m3);
    tf_certstore_unref(m2);
    tf_certstore_unref(m);
    tf_certstore_unref(acme);
done:
    tf_certstore_unref(stat);
    for (int i = 0; i < 6; i++)
        tf_cert_unref(a[i]);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_many(void)
{
    const char *env = getenv("TF_CERTSTORE_MANY");
    int n = env ? atoi(env) : 2000;
    if (n <= 0)
        n = 2000;
    double t0 = now_s();
    CHECK_EQ_INT(sh("'%s' many '%s/many' %d", g_script, g_tmp, n), 0);
    double t1 = now_s();
    int ok = -1, bad = -1;
    struct tf_certstore *st = load("many", &ok, &bad);
    double t2 = now_s();
    CHECK(st != NULL);
    CHECK_EQ_INT(ok, n);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(tf_certstore_count(st), n);
    CHECK_EQ_INT(tf_certstore_names(st), n);
    int found = 0;
    char name[64];
    for (int i = 1; i <= n; i++) {
        snprintf(name, sizeof name, "%d.many.test", i);
        const struct tf_cert *c = get(st, name, TF_CERT_EC);
        found += c && c->n_names == 1 && strcmp(c->names[0], name) == 0;
    }
    CHECK_EQ_INT(found, n);
    /* A directory of over TF_TLS_CERT_CTX_MAX certificates gives none a context. */
    int with_ctx = 0;
    tf_certstore_foreach(st, count_ctx, &with_ctx);
    CHECK_EQ_INT(with_ctx, n <= TF_TLS_CERT_CTX_MAX ? n : 0);
    CHECK(tf_certstore_lookup(st, "0.many.test") == NULL);
    CHECK(tf_certstore_lookup(st, "x.1.many.test") == NULL);
    int rounds = 1000000, hits = 0;
    double t3 = now_s();
    for (int i = 0; i < rounds; i++) {
        /* About 10% of the names asked for do not exist. */
        unsigned k = (unsigned)i * 2654435761u % (unsigned)(n + n / 10);
        snprintf(name, sizeof name, "%u.many.test", 1 + k);
        hits += tf_certstore_lookup(st, name) != NULL;
    }
    double t4 = now_s();
    CHECK(hits > 0 && hits < rounds);
    printf("many: mkcerts %d certs in %.2f s; load_dir %.3f s (%.1f us/cert); "
           "%d lookups %.0f ns each (incl. snprintf)\n",
           n, t1 - t0, t2 - t1, (t2 - t1) * 1e6 / n, rounds, (t4 - t3) * 1e9 / rounds);
    tf_certstore_unref(st);
    /* A single certificate (on-demand issuance) gets one while the process has room. */
    char err[256] = "";
    struct tf_cert *c = cert_from("many/1.many.test.pem", NULL, err, sizeof err);
    CHECK(c && tf_tls_cert_ctx_get(c, 0, 1, NULL) != NULL);
    tf_cert_unref(c);
}

/* Per-worker contexts: each worker's is built in its own library context on its first call
 * and is the same on every later call; they hold copies of the certificate and key (objects
 * of their own, equal to the store's); past the process-wide budget a worker gets none (and
 * keeps that answer). */
static void test_worker_ctxs(void)
{
    char err[256] = "";
    OSSL_LIB_CTX *lib[2] = {OSSL_LIB_CTX_new(), OSSL_LIB_CTX_new()};
    struct tf_cert *c = cert_from("demo/example.crt", "demo/example.key", err, sizeof err);
    CHECK(c && lib[0] && lib[1]);
    if (!c || !lib[0] || !lib[1])
        return;
    SSL_CTX *a = tf_tls_cert_ctx_get(c, 0, 2, lib[0]);
    SSL_CTX *b = tf_tls_cert_ctx_get(c, 1, 2, lib[1]);
    CHECK(a && b && a != b);
    CHECK(tf_tls_cert_ctx_get(c, 0, 2, lib[0]) == a);
    CHECK(tf_tls_cert_ctx_get(c, 1, 2, lib[1]) == b);
    for (int i = 0; i < 2; i++) {
        SSL_CTX *x = i ? b : a;
        X509 *leaf = x ? SSL_CTX_get0_certificate(x) : NULL;
        EVP_PKEY *key = x ? SSL_CTX_get0_privatekey(x) : NULL;
        CHECK(leaf && leaf != c->leaf && X509_cmp(leaf, c->leaf) == 0);
        CHECK(key && key != c->key && EVP_PKEY_eq(key, c->key) == 1);
    }
    CHECK(tf_tls_cert_ctx_get(c, 2, 2, lib[0]) == NULL); /* no such worker */
    /* Spend the budget with other certificates' contexts: the next worker gets none. */
    enum { MANY = 2 * TF_TLS_CERT_CTX_MAX };
    struct tf_cert **more = calloc(MANY, sizeof *more);
    int built = 0;
    for (int i = 0; more && i < MANY; i++) {
        more[i] = cert_from("demo/example.crt", "demo/example.key", err, sizeof err);
        built += more[i] && tf_tls_cert_ctx_get(more[i], 0, 1, lib[0]) != NULL;
    }
    CHECK(built > 0 && built < MANY); /* a test binary may hold a few contexts already */
    struct tf_cert *late = cert_from("demo/example.crt", "demo/example.key", err, sizeof err);
    CHECK(late && tf_tls_cert_ctx_get(late, 0, 1, lib[0]) == NULL);
    for (int i = 0; more && i < MANY; i++)
        tf_cert_unref(more[i]);
    free(more);
    /* Room again, but the answer "none" is kept for that worker and certificate. */
    CHECK(late && tf_tls_cert_ctx_get(late, 0, 1, lib[0]) == NULL);
    tf_cert_unref(late);
    tf_cert_unref(c); /* frees a and b, before their library contexts */
    OSSL_LIB_CTX_free(lib[0]);
    OSSL_LIB_CTX_free(lib[1]);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void)
{
    tf_log_setup(TF_LOG_WARN, false);
    const char *src = getenv("TF_SRC");
    snprintf(g_script, sizeof g_script, "%s/certs/mkcerts.sh", src ? src : ".");
    if (access(g_script, X_OK) != 0) {
        fprintf(stderr, "cannot run %s (set TF_SRC to the source tree)\n", g_script);
        return 1;
    }
    const char *tmpdir = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/tf_certstore_XXXXXX", tmpdir ? tmpdir : "/tmp");
    if (!mkdtemp(g_tmp)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = sh("'%s' demo '%s/demo'", g_script, g_tmp);
    CHECK_EQ_INT(rc, 0);
    if (rc == 0) {
        TF_TEST_RUN(test_demo_layouts);
        TF_TEST_RUN(test_certbot_symlinks);
        TF_TEST_RUN(test_broken_files);
        TF_TEST_RUN(test_from_pem);
        CHECK_EQ_INT(make_extra(), 0);
        TF_TEST_RUN(test_with);
        TF_TEST_RUN(test_with_ordered_name);
        TF_TEST_RUN(test_without);
        TF_TEST_RUN(test_merge);
        TF_TEST_RUN(test_many);
        TF_TEST_RUN(test_worker_ctxs);
    }
    nftw(g_tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return TF_TEST_DONE();
}
