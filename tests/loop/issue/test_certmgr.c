/*
 * test_certmgr.c: the certificate manager on a loop of its own, with a fake host (the hooks
 * of tlsfront/issue/certmgr.h record what the server would do) and the fake CA of
 * tests/loop/acme_fake.h. A request that arrives before the stored certificates are loaded
 * is answered after the load; a failed order answers every waiting worker once and backs the
 * name off; a name the gate refuses, and a name the host already serves, are answered
 * without an order; closing answers nothing twice and leaves a loop that closes cleanly.
 * At scale: a store of many certificates (TF_TEST_MANAGED_N, default 5,000) loads, and the
 * renewal-information (ARI) requests that follow reach the CA at most
 * TF_CERTMGR_ARI_MAX_INFLIGHT at a time, every name getting its answer.
 * With two CAs, each CA's limits mirror decides for that CA alone.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/config/config.h"
#include "tlsfront/issue/certmgr.h"
#include "tlsfront/store/storage_redis.h"
#include "tf_test.h"

#include "acme_fake.h"

#include <ftw.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_ANSWERS 16

struct answer {
    int worker;
    char name[64];
    int alert;
    char reason[32];
};

struct host {
    int publish_certs, publish_challenges;
    int n_answers;
    struct answer answers[MAX_ANSWERS];
    struct tf_histogram issue_seconds;
    struct tf_stats stats; /* zeroed: the rate-limited log classes need nothing more */
    int challenge_answers;
};

static void h_answer_challenge(void *arg, int worker, const char *name, bool ok)
{
    ((struct host *)arg)->challenge_answers++;
}

static void h_publish_certs(void *arg)
{
    ((struct host *)arg)->publish_certs++;
}

static void h_publish_challenges(void *arg, struct tf_challenges *ch)
{
    ((struct host *)arg)->publish_challenges++;
}

static void h_answer(void *arg, int worker, const char *name, int alert, enum tf_outcome outcome)
{
    struct host *h = arg;
    CHECK(h->n_answers < MAX_ANSWERS);
    if (h->n_answers >= MAX_ANSWERS)
        return;
    struct answer *a = &h->answers[h->n_answers++];
    a->worker = worker;
    snprintf(a->name, sizeof a->name, "%s", name);
    a->alert = alert;
    snprintf(a->reason, sizeof a->reason, "%s", tf_outcome_name(outcome));
}

static bool h_serves(void *arg, const char *name)
{
    return strcmp(name, "static.fake.test") == 0;
}

static bool h_has_static(void *arg, const char *name)
{
    return strcmp(name, "static.fake.test") == 0;
}

static void on_guard(uv_timer_t *t)
{
}

/* Run the loop until *count reaches want or ms pass. */
static bool run_until(uv_loop_t *loop, const int *count, int want, uint64_t ms)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 50, 50);
    uv_update_time(loop);
    uint64_t end = uv_now(loop) + ms;
    while (*count < want && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return *count >= want;
}

/* The fake host's hooks, recording into h (zeroed here), two workers. */
static struct tf_certmgr_host host_hooks(uv_loop_t *loop, struct host *h)
{
    memset(h, 0, sizeof *h);
    struct tf_certmgr_host host = {
        .loop = loop,
        .n_workers = 2,
        .issue_seconds = &h->issue_seconds,
        .stats = &h->stats,
        .arg = h,
        .publish_certs = h_publish_certs,
        .publish_challenges = h_publish_challenges,
        .answer = h_answer,
        .answer_challenge = h_answer_challenge,
        .serves = h_serves,
        .has_static = h_has_static,
    };
    return host;
}

/* Load the config of argv into res and start a manager on loop with the fake host h;
 * NULL (checks failed) when either fails. */
static struct tf_certmgr *start_manager(uv_loop_t *loop, int argc, char **argv,
                                        struct tf_config_result *res, struct host *h)
{
    char *env[] = {NULL};
    memset(res, 0, sizeof *res);
    CHECK_EQ_INT(tf_config_load(argc, argv, env, res), 0);
    if (!res->cfg) {
        fprintf(stderr, "config: %s\n", res->err);
        return NULL;
    }
    struct tf_certmgr_host host = host_hooks(loop, h);
    struct tf_certmgr *cm = NULL;
    char err[256] = "";
    CHECK_EQ_INT(tf_certmgr_start(&host, res->cfg, &cm, err, sizeof err), 0);
    CHECK(cm != NULL);
    return cm;
}

static void on_closed(void *arg)
{
    (*(int *)arg)++;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static const struct answer *find_answer(const struct host *h, int worker, const char *name)
{
    for (int i = 0; i < h->n_answers; i++)
        if (h->answers[i].worker == worker && strcmp(h->answers[i].name, name) == 0)
            return &h->answers[i];
    return NULL;
}

/* A config for the fake CA on port with a new storage directory (its path into dir). */
static struct tf_config *test_config(int port, char *dir, size_t dirlen)
{
    const char *tmp = getenv("TMPDIR");
    char url[128];
    snprintf(dir, dirlen, "%s/tf-certmgr.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/dir", port);
    char *argv[] = {"tlsfront", "--listen", "127.0.0.1:8443", "--backend", "127.0.0.1:9",
                    "--allow", "*.fake.test", "--storage", dir, "--acme-directory", url,
                    "--acme-email", "ops@example.com", "--issue-burst", "10", NULL};
    char *env[] = {NULL};
    struct tf_config_result res;
    memset(&res, 0, sizeof res);
    CHECK_EQ_INT(tf_config_load((int)TF_ARRAY_LEN(argv) - 1, argv, env, &res), 0);
    if (!res.cfg)
        fprintf(stderr, "config: %s\n", res.err);
    return res.cfg;
}

static void test_certmgr(void)
{
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    struct fake_srv srv;
    CHECK_EQ_INT(fake_start(&loop, &srv), 0);
    /* A well-formed order whose tls-alpn-01 challenge the fake does not know how to accept:
     * the challenge is published, the order fails, the challenge is withdrawn. */
    srv.mode = FAKE_ARI;
    char dir[256];
    struct tf_config *cfg = test_config(srv.port, dir, sizeof dir);
    if (!cfg)
        return;
    struct host h;
    memset(&h, 0, sizeof h);
    struct tf_certmgr_host host = host_hooks(&loop, &h);
    struct tf_certmgr *cm = NULL;
    char err[256] = "";
    CHECK_EQ_INT(tf_certmgr_start(&host, cfg, &cm, err, sizeof err), 0);
    CHECK(cm != NULL);

    /* Before the stored certificates are loaded: queued, answered after the load. */
    CHECK(!tf_certmgr_loaded(cm));
    tf_certmgr_need(cm, 0, "a.fake.test");
    tf_certmgr_need(cm, 1, "a.fake.test");
    CHECK_EQ_INT(h.n_answers, 0);
    CHECK(run_until(&loop, &h.n_answers, 2, 20000));
    CHECK(tf_certmgr_loaded(cm));
    CHECK_EQ_INT(h.publish_certs, 1); /* the (empty) stored set, once loaded */
    CHECK_EQ_INT(h.n_answers, 2);     /* one order, both workers answered once */
    for (int w = 0; w < 2; w++) {
        const struct answer *a = find_answer(&h, w, "a.fake.test");
        CHECK(a != NULL);
        if (a) {
            CHECK_EQ_INT(a->alert, SSL_AD_INTERNAL_ERROR);
            CHECK_EQ_STR(a->reason, "issue_failed");
        }
    }
    int orders = srv.requests;
    CHECK(orders > 0);

    /* The failed name is backed off: answered at once, no request to the CA. */
    tf_certmgr_need(cm, 1, "a.fake.test");
    CHECK_EQ_INT(h.n_answers, 3);
    CHECK_EQ_STR(h.answers[2].reason, "backed_off");
    CHECK_EQ_INT(h.answers[2].alert, SSL_AD_UNRECOGNIZED_NAME);

    /* A name the host serves already: ready, no order. */
    tf_certmgr_need(cm, 0, "static.fake.test");
    CHECK_EQ_INT(h.n_answers, 4);
    CHECK_EQ_INT(h.answers[3].alert, 0);

    /* A name outside --allow: refused by the gate, no order. */
    tf_certmgr_need(cm, 0, "b.example");
    CHECK(run_until(&loop, &h.n_answers, 5, 10000));
    CHECK_EQ_STR(h.answers[4].reason, "not_allowed");
    CHECK_EQ_INT(h.answers[4].alert, SSL_AD_UNRECOGNIZED_NAME);
    CHECK_EQ_INT(srv.requests, orders);
    CHECK_EQ_INT(h.publish_challenges, 2); /* a.fake.test's challenge, then none */

    int closed = 0;
    /* acme-tls/1 for a name without a challenge, single node: answered "none" at once. */
    tf_certmgr_need_challenge(cm, 1, "nochallenge.example");
    CHECK_EQ_INT(h.challenge_answers, 1);

    tf_certmgr_close(cm, on_closed, &closed);
    CHECK(run_until(&loop, &closed, 1, 10000));
    CHECK_EQ_INT(closed, 1);
    CHECK_EQ_INT(h.n_answers, 5);
    tf_config_unref(cfg);
    fake_stop(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* --- a managed store at scale ------------------------------------------------------------ */

/* Writes certificates for n0.fake.test .. n<N-1>.fake.test through the storage API as an
 * order would (tf_acme_store_save). Fast on purpose: one issuing key, and one leaf key that
 * every certificate shares (a key per name would cost more than the load being measured;
 * the manager only checks that each leaf matches its own key file). Each leaf carries an
 * authority key identifier, so that it has an ARI certID. */
struct gen {
    EVP_PKEY *ca_key, *key;
    char *key_pem;
    int saved, failed;
};

static char *pem_of(int (*write)(BIO *, const void *), const void *obj)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *data = NULL, *out = NULL;
    if (b && write(b, obj) == 1) {
        long n = BIO_get_mem_data(b, &data);
        out = n > 0 ? tf_strndup(data, (size_t)n) : NULL;
    }
    BIO_free(b);
    return out;
}

static int write_x509(BIO *b, const void *x)
{
    return PEM_write_bio_X509(b, (X509 *)x);
}

static int write_key(BIO *b, const void *k)
{
    return PEM_write_bio_PrivateKey(b, (EVP_PKEY *)k, NULL, NULL, 0, NULL, NULL);
}

static char *gen_cert(const struct gen *g, long serial, const char *name)
{
    static const unsigned char kid[20] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    char san[300];
    snprintf(san, sizeof san, "DNS:%s", name);
    X509 *x = X509_new();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    X509_NAME *issuer = X509_NAME_new();
    char *pem = NULL;
    bool ok = x && akid && ext && issuer && (akid->keyid = ASN1_OCTET_STRING_new()) &&
              ASN1_OCTET_STRING_set(akid->keyid, kid, sizeof kid) &&
              X509_set_version(x, X509_VERSION_3) &&
              ASN1_INTEGER_set(X509_get_serialNumber(x), serial) &&
              X509_gmtime_adj(X509_getm_notBefore(x), -86400) &&
              X509_gmtime_adj(X509_getm_notAfter(x), 60L * 86400) &&
              X509_NAME_add_entry_by_txt(issuer, "CN", MBSTRING_ASC,
                                         (const unsigned char *)"Fake CA", -1, -1, 0) &&
              X509_set_issuer_name(x, issuer) && X509_set_pubkey(x, g->key) &&
              X509_add_ext(x, ext, -1) &&
              X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0) == 1 &&
              X509_sign(x, g->ca_key, EVP_sha256()) > 0;
    if (ok)
        pem = pem_of(write_x509, x);
    X509_NAME_free(issuer);
    X509_EXTENSION_free(ext);
    AUTHORITY_KEYID_free(akid);
    X509_free(x);
    return pem;
}

static void on_gen_saved(int err, void *arg)
{
    struct gen *g = arg;
    g->saved++;
    g->failed += err != 0;
}

/* Store n certificates in st; returns how many were saved. */
static int gen_store(uv_loop_t *loop, struct tf_storage *st, int n)
{
    struct gen g = {.ca_key = EVP_EC_gen("P-256"), .key = EVP_EC_gen("P-256")};
    CHECK(g.ca_key && g.key);
    g.key_pem = g.key ? pem_of(write_key, g.key) : NULL;
    int started = 0;
    for (int i = 0; i < n && g.key_pem; i++) {
        char name[64];
        snprintf(name, sizeof name, "n%d.fake.test", i);
        char *chain = gen_cert(&g, 1000 + i, name);
        if (chain && tf_acme_store_save(st, name, chain, g.key_pem, "{}", on_gen_saved, &g) == 0)
            started++;
        free(chain);
    }
    CHECK_EQ_INT(started, n);
    CHECK(run_until(loop, &g.saved, started, 120000));
    CHECK_EQ_INT(g.failed, 0);
    free(g.key_pem);
    EVP_PKEY_free(g.key);
    EVP_PKEY_free(g.ca_key);
    return g.saved - g.failed;
}

static void on_storage_closed(void *arg)
{
    (*(int *)arg)++;
}

/* Load N stored certificates: every name is served, and the ARI requests that follow are
 * spread: never more than TF_CERTMGR_ARI_MAX_INFLIGHT connections to the CA at once, even
 * while the CA answers none of them (the fake holds ARI answers until the load is over, then
 * answers every 2 ms), and every name is answered in the end. */
static void test_certmgr_scale(void)
{
    const char *env_n = getenv("TF_TEST_MANAGED_N");
    int n = env_n ? atoi(env_n) : 5000;
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    struct fake_srv srv;
    CHECK_EQ_INT(fake_start(&loop, &srv), 0);
    srv.mode = FAKE_ARI;
    srv.ari_hold = true;
    char dir[256], err[256] = "";
    struct tf_config *cfg = test_config(srv.port, dir, sizeof dir);
    if (!cfg)
        return;
    struct tf_storage *st = tf_storage_open(&loop, cfg, err, sizeof err);
    CHECK(st != NULL);
    if (!st)
        return;
    uint64_t t0 = uv_hrtime();
    CHECK_EQ_INT(gen_store(&loop, st, n), n);
    int closed = 0;
    tf_storage_close(st, on_storage_closed, &closed);
    CHECK(run_until(&loop, &closed, 1, 10000));

    struct host h;
    memset(&h, 0, sizeof h);
    struct tf_certmgr_host host = host_hooks(&loop, &h);
    struct tf_certmgr *cm = NULL;
    uint64_t t1 = uv_hrtime();
    CHECK_EQ_INT(tf_certmgr_start(&host, cfg, &cm, err, sizeof err), 0);
    CHECK(run_until(&loop, &h.publish_certs, 1, 120000));
    uint64_t t2 = uv_hrtime();
    fprintf(stderr, "managed store: %d certificates generated and stored in %.0f ms, loaded in "
            "%.0f ms\n", n, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
    CHECK(tf_certmgr_loaded(cm));
    CHECK_EQ_INT(tf_certstore_names(tf_certmgr_store(cm)), n);

    fake_ari_release(&srv);
    CHECK(run_until(&loop, &srv.ari_answered, n, 150000));
    fprintf(stderr, "ARI: %d answers in %.0f ms after the load, at most %d at once\n",
            srv.ari_answered, (double)(uv_hrtime() - t2) / 1e6, srv.ari_max_open);
    CHECK(srv.ari_max_open >= 1);
    CHECK(srv.ari_max_open <= TF_CERTMGR_ARI_MAX_INFLIGHT);
    CHECK_EQ_INT(fake_ari_distinct(&srv), n);

    closed = 0;
    tf_certmgr_close(cm, on_closed, &closed);
    CHECK(run_until(&loop, &closed, 1, 10000));
    tf_config_unref(cfg);
    fake_stop(&srv);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Two CAs, each with its own limits mirror: with --ca-certs-per-domain 1, the second name of
 * a registered domain whose first name has an order in flight at the first CA is refused by
 * that CA's mirror and ordered at the second CA at once (one shared mirror would have
 * refused it outright: no order at the second CA). The first name, failed by the first CA
 * (a failed validation), is handed to the second CA, whose own mirror now refuses it (the
 * other name is in flight there): it fails without a second order there. */
static void test_two_cas(void)
{
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    struct fake_srv ca1, ca2;
    CHECK_EQ_INT(fake_start(&loop, &ca1), 0);
    CHECK_EQ_INT(fake_start(&loop, &ca2), 0);
    ca1.mode = FAKE_INVALID_AUTHZ;
    ca2.mode = FAKE_ARI; /* fails too, later: the challenge is never accepted */
    const char *tmp = getenv("TMPDIR");
    char dir[256], url1[128], url2[128];
    snprintf(dir, sizeof dir, "%s/tf-certmgr.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(url1, sizeof url1, "http://127.0.0.1:%d/dir", ca1.port);
    snprintf(url2, sizeof url2, "http://127.0.0.1:%d/dir", ca2.port);
    char *argv[] = {"tlsfront", "--backend", "127.0.0.1:9", "--allow", "*.fake.test",
                    "--storage", dir, "--acme-directory", url1, "--acme-directory", url2,
                    "--ca-certs-per-domain", "1", NULL};
    struct tf_config_result res;
    struct host h;
    struct tf_certmgr *cm = start_manager(&loop, (int)TF_ARRAY_LEN(argv) - 1, argv, &res, &h);
    if (!cm)
        return;
    /* The second CA keeps its order in flight (its challenge unanswered) until the name the
     * first CA failed has been handed over and refused by the second CA's mirror: which of
     * the two orders ends first is then not a race. */
    ca2.chal_hold = true;
    tf_certmgr_need(cm, 0, "a.fake.test");
    tf_certmgr_need(cm, 0, "b.fake.test");
    CHECK(run_until(&loop, &h.n_answers, 1, 30000));
    fake_chal_release(&ca2);
    CHECK(run_until(&loop, &h.n_answers, 2, 30000));
    CHECK_EQ_INT(h.n_answers, 2);
    for (int i = 0; i < h.n_answers; i++)
        CHECK_EQ_STR(h.answers[i].reason, "issue_failed");
    CHECK_EQ_INT(ca1.orders, 1);
    CHECK_EQ_INT(ca2.orders, 1);

    int closed = 0;
    tf_certmgr_close(cm, on_closed, &closed);
    CHECK(run_until(&loop, &closed, 1, 10000));
    tf_config_unref(res.cfg);
    fake_stop(&ca1);
    fake_stop(&ca2);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&loop), 0);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    tf_log_setup(TF_LOG_INFO, false);
    TF_TEST_RUN(test_certmgr);
    TF_TEST_RUN(test_certmgr_scale);
    TF_TEST_RUN(test_two_cas);
    return TF_TEST_DONE();
}
