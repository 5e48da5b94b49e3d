/*
 * test_certmgr.c: the certificate manager on a loop of its own, with a fake host (the hooks
 * of tlsfront/issue/certmgr.h record what the server would do) and the fake CA of
 * tests/loop/acme_fake.h. A request that arrives before the stored certificates are loaded
 * is answered after the load; a failed order answers every waiting worker once and backs the
 * name off; a name the gate refuses, and a name the host already serves, are answered
 * without an order; closing answers nothing twice and leaves a loop that closes cleanly.
 * With two CAs, each CA's limits mirror decides for that CA alone.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"
#include "tlsfront/config/config.h"
#include "tlsfront/issue/certmgr.h"
#include "tf_test.h"

#include "acme_fake.h"

#include <ftw.h>
#include <openssl/ssl.h>
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

static void test_certmgr(void)
{
    uv_loop_t loop;
    CHECK_EQ_INT(uv_loop_init(&loop), 0);
    struct fake_srv srv;
    CHECK_EQ_INT(fake_start(&loop, &srv), 0);
    /* A well-formed order whose tls-alpn-01 challenge the fake does not know how to accept:
     * the challenge is published, the order fails, the challenge is withdrawn. */
    srv.mode = FAKE_ARI;
    const char *tmp = getenv("TMPDIR");
    char dir[256], url[128];
    snprintf(dir, sizeof dir, "%s/tf-certmgr.XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(dir) != NULL);
    snprintf(url, sizeof url, "http://127.0.0.1:%d/dir", srv.port);
    char *argv[] = {"tlsfront", "--listen", "127.0.0.1:8443", "--backend", "127.0.0.1:9",
                    "--allow", "*.fake.test", "--storage", dir, "--acme-directory", url,
                    "--acme-email", "ops@example.com", "--issue-burst", "10", NULL};
    struct tf_config_result res;
    struct host h;
    struct tf_certmgr *cm = start_manager(&loop, (int)TF_ARRAY_LEN(argv) - 1, argv, &res, &h);
    if (!cm)
        return;

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
    tf_config_unref(res.cfg);
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
    tf_certmgr_need(cm, 0, "a.fake.test");
    tf_certmgr_need(cm, 0, "b.fake.test");
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
    TF_TEST_RUN(test_two_cas);
    return TF_TEST_DONE();
}
