/*
 * acme_fake_cases.h: the fake-CA part of tests/loop/test_acme.c (included by it, after its
 * helpers): every malformed or hostile answer of acme_fake.h must fail the order once, with
 * a reason, promptly; a paused name is refused until its marker is deleted; ARI windows are
 * fetched from a renewalInfo URL (pebble 2.4 has none).
 */
#ifndef TF_TEST_ACME_FAKE_CASES_H
#define TF_TEST_ACME_FAKE_CASES_H

struct ari_res {
    struct ctx *c;
    int calls, err;
    int64_t start, end, retry_after;
    char expl[64];
};

static void on_ari(int err, const struct tf_acme_ari *ari, void *arg)
{
    struct ari_res *r = arg;
    r->calls++;
    r->err = err;
    if (!err) {
        r->start = ari->start;
        r->end = ari->end;
        r->retry_after = ari->retry_after;
        snprintf(r->expl, sizeof(r->expl), "%s", ari->explanation_url ?: "");
    }
    r->c->done++;
}

/* ARI (pebble 2.4 has no renewalInfo, so the fake serves it) on a.test's certificate. */
static void test_ari(struct ctx *c, struct fake_srv *srv, const char *url)
{
    char path[512], kpath[512], why[200];
    snprintf(path, sizeof(path), "%s/certs/a.test/cert.pem", c->store_dir);
    snprintf(kpath, sizeof(kpath), "%s/certs/a.test/key.pem", c->store_dir);
    char *chain = read_file(path), *key = read_file(kpath);
    struct tf_cert *cert = chain && key ? tf_cert_from_pem(chain, strlen(chain), key,
                                                           strlen(key), path, why, sizeof(why))
                                        : NULL;
    free(chain);
    free(key);
    CHECK(cert != NULL);
    if (!cert)
        return;
    for (int mode = 0; mode < 2; mode++) {
        srv->mode = mode ? FAKE_ARI : FAKE_NO_ALPN;
        struct tf_acme *a = mkacme(c, url, 6);
        struct ari_res r = {.c = c};
        int before = c->done;
        CHECK_EQ_INT(tf_acme_renewal_info(a, cert, on_ari, &r), 0);
        CHECK(run_until(&c->loop, &c->done, before + 1, 10000));
        CHECK_EQ_INT(r.calls, 1);
        if (mode == 0) {
            CHECK_EQ_INT(r.err, TF_ENOTFOUND); /* the directory has no renewalInfo */
        } else {
            CHECK_EQ_INT(r.err, 0);
            CHECK_EQ_INT(r.start, 1893542400);
            CHECK_EQ_INT(r.end, 1893542400 + 86400);
            CHECK_EQ_INT(r.retry_after, 3600);
            CHECK_EQ_STR(r.expl, "https://ca/ari");
        }
        close_acme(c, a);
    }
    tf_cert_unref(cert);
}

static void test_fake(struct ctx *c)
{
    struct fake_srv fsrv, *srv = &fsrv;
    CHECK_EQ_INT(fake_start(&c->loop, srv), 0);
    char url[128];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/dir", srv->port);
    const struct fake_case cases[] = {
        {FAKE_TRUNCATED_DIR, "not valid JSON", TF_EPROTO},
        {FAKE_WRONG_TYPES, "newAccount: account: \"status\" missing or not a string", 0},
        {FAKE_MISSING_FINALIZE, "newOrder: order: \"finalize\" missing", TF_EPROTO},
        {FAKE_HUGE, "directory", TF_ETOOBIG},
        {FAKE_GARBAGE, "directory", TF_EPROTO},
        {FAKE_NO_ALPN, "no usable challenge (tls-alpn-01)", TF_EPROTO},
        {FAKE_INVALID_AUTHZ, "Connection refused", TF_EPROTO},
        {FAKE_RATELIMITED, "rateLimited", TF_EPROTO},
        {FAKE_5XX, "HTTP 500", 0},
        {FAKE_BADNONCE, "badNonce", TF_EPROTO},
        {FAKE_PAUSED, "paused", TF_EDENIED},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(cases); i++) {
        srv->mode = cases[i].mode;
        srv->requests = 0;
        struct tf_acme *a = mkacme(c, url, 6);
        struct res r = {.c = c};
        uint64_t t0 = uv_now(&c->loop);
        obtain_wait(c, a, "fake.test", &r, 20000);
        uint64_t took = uv_now(&c->loop) - t0;
        CHECK(r.err != 0);
        if (cases[i].want_err)
            CHECK_EQ_INT(r.err, cases[i].want_err);
        if (!strstr(r.reason, cases[i].want)) {
            fprintf(stderr, "  case %zu: reason \"%s\" lacks \"%s\"\n", i, r.reason,
                    cases[i].want);
            CHECK(0);
        }
        if (cases[i].mode == FAKE_RATELIMITED)
            CHECK(took < 3000); /* failed now instead of waiting an hour past the deadline */
        if (cases[i].mode == FAKE_BADNONCE)
            CHECK(srv->requests <= 16); /* bounded: no hot loop */
        if (cases[i].mode == FAKE_INVALID_AUTHZ)
            CHECK(strstr(r.ptype, ":connection") != NULL);
        res_clear(&r);
        if (cases[i].mode == FAKE_PAUSED)
            check_paused(c, a, srv);
        close_acme(c, a);
    }
    test_ari(c, srv, url);
    fake_stop(srv);
    uv_run(&c->loop, UV_RUN_NOWAIT);
}

#endif
