/*
 * test_acme.c: the ACME client against Debian's pebble (started here on kernel-chosen
 * loopback ports with its own HTTPS certificate, PEBBLE_VA_ALWAYS_VALID) and against a tiny
 * misbehaving fake CA. Proves: an account is created once and reused by a second client on
 * the same storage; an order ends in a stored certificate (key 0600, meta.json, chain that
 * verifies against pebble's root); 50% badNonce is survived; pebble dying mid-order fails
 * that order once and cleanly, and a later order succeeds after a restart; concurrent
 * obtains (same client, and two clients sharing a storage) make one order; every malformed
 * CA answer fails the order with a reason; a paused name is refused until its marker goes.
 */
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"
#include "tlsfront/net/http_client.h"
#include "tlsfront/base/log.h"
#include "tlsfront/store/storage.h"
#include "tf_test.h"

#include "acme_fake.h"
#include "acme_pebble.h"

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>

struct ctx {
    uv_loop_t loop;
    struct tf_storage *st;
    struct tf_httpc *http;
    char store_dir[320];
    struct pebble peb;
    bool kill_on_publish;
    struct tf_acme *close_on_publish; /* tf_acme_close it from inside publish */
    int closed;
    int published, unpublished, done;
};

struct res {
    struct ctx *c;
    int calls, err;
    char reason[600], ptype[128];
    bool from_storage;
    char *chain;
    struct tf_cert *cert;
};

static void on_flag(void *arg) { (*(int *)arg)++; }

static void on_publish(void *arg, const struct tf_acme_chal *ch)
{
    struct ctx *c = arg;
    const char *ka = ch->key_authorization;
    CHECK(ka && strchr(ka, '.') != NULL); /* token "." thumbprint */
    CHECK(ch->token && strncmp(ka, ch->token, strlen(ch->token)) == 0);
    CHECK_EQ_INT(ch->type, TF_CHAL_TLS_ALPN_01);
    c->published++;
    if (c->close_on_publish) {
        struct tf_acme *a = c->close_on_publish;
        c->close_on_publish = NULL;
        tf_acme_close(a, on_flag, &c->closed);
    }
    if (c->kill_on_publish) {
        c->kill_on_publish = false;
        pebble_stop(&c->peb);
    }
}

static void on_unpublish(void *arg, const struct tf_acme_chal *ch)
{
    struct ctx *c = arg;
    CHECK(ch->name && ch->token && !ch->key_authorization);
    c->unpublished++;
}

static void on_obtained(int err, const struct tf_acme_result *r, void *arg)
{
    struct res *x = arg;
    x->calls++;
    x->err = err;
    if (err) {
        snprintf(x->reason, sizeof(x->reason), "%s", r->reason ? r->reason : "(null)");
        if (r->problem)
            snprintf(x->ptype, sizeof(x->ptype), "%s", r->problem->type);
    } else {
        x->from_storage = r->from_storage;
        x->chain = tf_strndup(r->chain_pem, r->chain_len);
        x->cert = r->cert;
    }
    x->c->done++;
}

static void res_clear(struct res *x)
{
    free(x->chain);
    tf_cert_unref(x->cert);
    struct ctx *c = x->c;
    memset(x, 0, sizeof(*x));
    x->c = c;
}

static struct tf_config mkcfg(const char *url, uint32_t timeout_s)
{
    struct tf_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.acme_directory = (char *)url;
    cfg.acme_email = "ops@example.com";
    cfg.acme_timeout_s = timeout_s;
    cfg.acme_account_key = TF_KEY_EC256;
    cfg.acme_cert_key = TF_KEY_EC256;
    return cfg;
}

static struct tf_acme *mkacme(struct ctx *c, const char *url, uint32_t timeout_s)
{
    struct tf_config cfg = mkcfg(url, timeout_s);
    struct tf_acme_responder rsp = {on_publish, on_unpublish, c, NULL};
    char err[256];
    struct tf_acme *a = tf_acme_new(&c->loop, &cfg, c->st, c->http, &rsp, err, sizeof(err));
    if (!a)
        fprintf(stderr, "tf_acme_new: %s\n", err);
    return a;
}

static void close_acme(struct ctx *c, struct tf_acme *a)
{
    int closed = 0;
    tf_acme_close(a, on_flag, &closed);
    CHECK(run_until(&c->loop, &closed, 1, 10000));
}

/* Obtain name and wait (bounded) for the one callback. */
static void obtain_wait(struct ctx *c, struct tf_acme *a, const char *name, struct res *r,
                        uint64_t ms)
{
    r->c = c;
    int before = c->done;
    CHECK_EQ_INT(tf_acme_obtain(a, name, NULL, on_obtained, r), 0);
    CHECK(run_until(&c->loop, &c->done, before + 1, ms));
    CHECK_EQ_INT(r->calls, 1);
    if (r->err)
        fprintf(stderr, "  obtain %s: err %d: %s\n", name, r->err, r->reason);
}

/* ---- pebble's root and chain verification ---- */

struct fetch {
    int done, status;
    char *body;
};

static void on_fetch(int err, const struct tf_http_response *resp, void *arg)
{
    struct fetch *f = arg;
    f->status = err ? err : resp->status;
    if (!err)
        f->body = tf_strndup(resp->body, resp->body_len);
    f->done = 1;
}

static char *fetch_root(struct ctx *c)
{
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/roots/0", c->peb.mgmt_port);
    struct tf_http_request req = {.method = "GET", .url = url, .timeout_ms = 5000};
    struct fetch f = {0};
    CHECK_EQ_INT(tf_httpc_request(c->http, &req, on_fetch, &f, NULL), 0);
    CHECK(run_until(&c->loop, &f.done, 1, 10000));
    CHECK_EQ_INT(f.status, 200);
    return f.body;
}

static void check_stored(struct ctx *c, const char *name, const char *root)
{
    char path[512];
    struct stat sb;
    snprintf(path, sizeof(path), "%s/certs/%s/key.pem", c->store_dir, name);
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s/certs/%s/cert.pem", c->store_dir, name);
    char *chain = read_file(path);
    CHECK(chain != NULL);
    if (chain && root)
        CHECK(chain_verifies(chain, root));
    free(chain);
    snprintf(path, sizeof(path), "%s/certs/%s/meta.json", c->store_dir, name);
    char *meta = read_file(path);
    cJSON *j = meta ? cJSON_Parse(meta) : NULL;
    CHECK(j != NULL);
    CHECK_EQ_STR(cJSON_GetStringValue(cJSON_GetObjectItem(j, "name")), name);
    CHECK(strstr(cJSON_GetStringValue(cJSON_GetObjectItem(j, "ca")) ?: "", "/dir") != NULL);
    CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(j, "issuer")) != NULL);
    CHECK(cJSON_GetStringValue(cJSON_GetObjectItem(j, "serial")) != NULL);
    double nb = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "not_before"));
    double na = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "not_after"));
    double ob = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "obtained"));
    CHECK(nb > 1e9 && na > nb && ob >= nb - 3600 && ob < na);
    cJSON_Delete(j);
    free(meta);
}

/* ---- pebble scenarios ---- */

static void test_account_and_order(struct ctx *c, const char *url)
{
    struct res r = {.c = c};
    struct tf_acme *a = mkacme(c, url, 60);
    obtain_wait(c, a, "a.test", &r, 60000);
    CHECK_EQ_INT(r.err, 0);
    CHECK(r.cert && tf_cert_covers(r.cert, "a.test"));
    CHECK(!r.from_storage);
    CHECK_EQ_INT(c->published, c->unpublished);
    CHECK(c->published >= 1);
    struct tf_acme_stats s;
    tf_acme_get_stats(a, &s);
    CHECK_EQ_INT(s.accounts_created, 1);
    CHECK_EQ_INT(s.orders_started, 1);
    char *acct = tf_acme_account_url(a) ? tf_strdup(tf_acme_account_url(a)) : NULL;
    CHECK(acct != NULL);
    char *root = fetch_root(c);
    check_stored(c, "a.test", root);
    char path[512];
    snprintf(path, sizeof(path), "%s/acme/%s/account.key", c->store_dir, tf_acme_ca_id(a));
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    snprintf(path, sizeof(path), "%s/acme/%s/account.json", c->store_dir, tf_acme_ca_id(a));
    res_clear(&r);
    close_acme(c, a);

    /* A second client on the same storage reuses the account (same URL, none created). */
    char *aj = read_file(path);
    CHECK(aj && acct && strstr(aj, acct) != NULL);
    free(aj);
    a = mkacme(c, url, 60);
    obtain_wait(c, a, "b.test", &r, 60000);
    CHECK_EQ_INT(r.err, 0);
    CHECK_EQ_STR(tf_acme_account_url(a), acct);
    tf_acme_get_stats(a, &s);
    CHECK_EQ_INT(s.accounts_created, 0);
    check_stored(c, "b.test", root);
    res_clear(&r);
    /* A fresh stored certificate is returned without a new order. */
    obtain_wait(c, a, "a.test", &r, 30000);
    CHECK_EQ_INT(r.err, 0);
    CHECK(r.from_storage);
    tf_acme_get_stats(a, &s);
    CHECK_EQ_INT(s.orders_started, 1);
    res_clear(&r);
    close_acme(c, a);
    free(root);
    free(acct);
}

static void test_concurrent(struct ctx *c, const char *url)
{
    /* One client: the second obtain joins the first. */
    struct tf_acme *a = mkacme(c, url, 60), *b;
    struct res r1 = {.c = c}, r2 = {.c = c};
    int before = c->done;
    CHECK_EQ_INT(tf_acme_obtain(a, "c.test", NULL, on_obtained, &r1), 0);
    CHECK_EQ_INT(tf_acme_obtain(a, "c.test", NULL, on_obtained, &r2), 0);
    CHECK(run_until(&c->loop, &c->done, before + 2, 60000));
    CHECK(r1.calls == 1 && r2.calls == 1 && r1.err == 0 && r2.err == 0);
    struct tf_acme_stats s, s2;
    tf_acme_get_stats(a, &s);
    CHECK_EQ_INT(s.orders_started, 1);
    CHECK_EQ_INT(s.joined, 1);
    res_clear(&r1);
    res_clear(&r2);

    /* Two clients sharing the storage (as two processes would): one order, the other finds
     * the stored certificate after taking the lock. */
    char err[256];
    struct tf_storage *st2 = tf_storage_fs_new(&c->loop, c->store_dir, err, sizeof(err));
    CHECK(st2 != NULL);
    struct tf_config cfg = mkcfg(url, 60);
    b = tf_acme_new(&c->loop, &cfg, st2, c->http, NULL, err, sizeof(err));
    before = c->done;
    CHECK_EQ_INT(tf_acme_obtain(a, "d.test", NULL, on_obtained, &r1), 0);
    CHECK_EQ_INT(tf_acme_obtain(b, "d.test", NULL, on_obtained, &r2), 0);
    CHECK(run_until(&c->loop, &c->done, before + 2, 60000));
    CHECK(r1.err == 0 && r2.err == 0);
    tf_acme_get_stats(a, &s);
    tf_acme_get_stats(b, &s2);
    CHECK_EQ_INT(s.orders_started + s2.orders_started, 2); /* c.test and d.test */
    CHECK_EQ_INT(s.from_storage + s2.from_storage, 1);
    CHECK(r1.from_storage != r2.from_storage);
    res_clear(&r1);
    res_clear(&r2);
    close_acme(c, a);
    close_acme(c, b);
    int closed = 0;
    tf_storage_close(st2, on_flag, &closed);
    CHECK(run_until(&c->loop, &closed, 1, 10000));
}

static void test_nonce_reject(struct ctx *c, const char *url)
{
    /* Pebble restarted: it forgot the account, so the stored key is registered again. */
    struct tf_acme *a = mkacme(c, url, 90);
    struct res r = {.c = c};
    obtain_wait(c, a, "e.test", &r, 90000);
    CHECK_EQ_INT(r.err, 0);
    struct tf_acme_stats s;
    tf_acme_get_stats(a, &s);
    CHECK(s.bad_nonce_retries > 0);
    fprintf(stderr, "  badNonce retries: %llu of %llu requests\n",
            (unsigned long long)s.bad_nonce_retries, (unsigned long long)s.requests);
    res_clear(&r);
    close_acme(c, a);
}

static void test_killed(struct ctx *c, const char *url)
{
    struct tf_acme *a = mkacme(c, url, 30);
    struct res r = {.c = c};
    c->kill_on_publish = true;
    int pub = c->published, unpub = c->unpublished;
    obtain_wait(c, a, "f.test", &r, 40000);
    CHECK(r.err != 0);
    CHECK(r.reason[0] != '\0');
    CHECK_EQ_INT(c->published - pub, 1);
    CHECK_EQ_INT(c->unpublished - unpub, 1);
    res_clear(&r);
    /* No callback runs twice, whatever else happens on the loop. */
    int d = c->done;
    run_until(&c->loop, &c->done, d + 1, 300);
    CHECK_EQ_INT(c->done, d);

    CHECK_EQ_INT(pebble_start(&c->peb, 0), 0);
    obtain_wait(c, a, "g.test", &r, 60000);
    CHECK_EQ_INT(r.err, 0);
    res_clear(&r);
    close_acme(c, a);
}

static void test_cancel(struct ctx *c, const char *url)
{
    struct tf_acme *a = mkacme(c, url, 30);
    struct res r = {.c = c};
    CHECK_EQ_INT(tf_acme_obtain(a, "h.test", NULL, on_obtained, &r), 0);
    int closed = 0;
    tf_acme_close(a, on_flag, &closed);
    CHECK_EQ_INT(tf_acme_obtain(a, "h.test", NULL, on_obtained, &r), TF_ECLOSED);
    CHECK_EQ_INT(r.calls, 0); /* never from inside tf_acme_close */
    CHECK(run_until(&c->loop, &closed, 1, 10000));
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.err, UV_ECANCELED);
    res_clear(&r);

    /* Closed mid-order, from inside the responder: one callback, challenge unpublished. */
    a = mkacme(c, url, 30);
    c->close_on_publish = a;
    c->closed = 0;
    int pub = c->published, unpub = c->unpublished;
    CHECK_EQ_INT(tf_acme_obtain(a, "i.test", NULL, on_obtained, &r), 0);
    CHECK(run_until(&c->loop, &c->closed, 1, 20000));
    CHECK_EQ_INT(r.calls, 1);
    CHECK_EQ_INT(r.err, UV_ECANCELED);
    CHECK_EQ_INT(c->published - pub, 1);
    CHECK_EQ_INT(c->unpublished - unpub, 1);
    res_clear(&r);
}

/* Pebble requiring External Account Binding: a wrong HMAC is refused with the CA's reason,
 * the right one registers (the stored key is registered anew with the binding). */
static void test_eab(struct ctx *c, const char *url)
{
    for (int good = 0; good < 2; good++) {
        struct tf_config cfg = mkcfg(url, 30);
        cfg.acme_eab_kid = "kid-1";
        cfg.acme_eab_hmac = good ? TEST_EAB_HMAC : "c2VjcmV0LWJ1dC13cm9uZw";
        char err[256];
        struct tf_acme *a = tf_acme_new(&c->loop, &cfg, c->st, c->http, NULL, err, sizeof(err));
        CHECK(a != NULL);
        if (!a)
            return;
        struct res r = {.c = c};
        obtain_wait(c, a, good ? "eab.test" : "noeab.test", &r, 30000);
        if (good) {
            CHECK_EQ_INT(r.err, 0);
        } else {
            CHECK(r.err != 0);
            CHECK(strstr(r.reason, "newAccount: urn:ietf:params:acme:error:") != NULL);
        }
        res_clear(&r);
        close_acme(c, a);
    }
    struct tf_config bad = mkcfg(url, 30);
    bad.acme_eab_kid = "kid-1";
    char err[256] = "";
    CHECK(tf_acme_new(&c->loop, &bad, c->st, c->http, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "go together") != NULL);
    bad.acme_eab_hmac = "not base64url!";
    CHECK(tf_acme_new(&c->loop, &bad, c->st, c->http, NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "not base64url") != NULL);
}

/* ---- fake CA scenarios ---- */

/* After a paused answer: the marker is stored, the name is refused without asking the CA,
 * and deleting the marker lets orders through again. */
static void check_paused(struct ctx *c, struct tf_acme *a, struct fake_srv *srv)
{
    char path[512];
    struct res r = {.c = c};
    snprintf(path, sizeof(path), "%s/acme/%s/paused/fake.test", c->store_dir, tf_acme_ca_id(a));
    CHECK(access(path, F_OK) == 0);
    int before = srv->requests;
    obtain_wait(c, a, "fake.test", &r, 10000);
    CHECK_EQ_INT(r.err, TF_EDENIED);
    CHECK_EQ_INT(srv->requests, before);
    res_clear(&r);
    unlink(path);
    srv->mode = FAKE_NO_ALPN;
    obtain_wait(c, a, "fake.test", &r, 10000);
    CHECK_EQ_INT(r.err, TF_EPROTO);
    res_clear(&r);
}

struct fake_case {
    enum fake_mode mode;
    const char *want;            /* substring of the reason */
    int want_err;                /* 0 = any error */
};

#include "acme_fake_cases.h"

/* ---- storage listing ---- */

static int n_each;
static void on_each(const char *name, struct tf_cert *cert, const char *ca_id, void *arg)
{
    (void)arg;
    (void)ca_id;
    CHECK(tf_cert_covers(cert, name));
    n_each++;
    tf_cert_unref(cert);
}

static void on_all(int err, int loaded, int skipped, void *arg)
{
    struct res *r = arg;
    r->err = err;
    r->calls = loaded * 100 + skipped;
    r->c->done++;
}

static void test_store_listing(struct ctx *c)
{
    /* Break one stored certificate: its key no longer matches. */
    char path[512], path2[512];
    snprintf(path, sizeof(path), "%s/certs/b.test/key.pem", c->store_dir);
    snprintf(path2, sizeof(path2), "%s/certs/c.test/key.pem", c->store_dir);
    char *k = read_file(path2);
    FILE *f = fopen(path, "w");
    if (f && k)
        fputs(k, f);
    if (f)
        fclose(f);
    free(k);
    struct res r = {.c = c};
    int before = c->done;
    CHECK_EQ_INT(tf_acme_store_load_all(c->st, on_each, on_all, &r), 0);
    CHECK(run_until(&c->loop, &c->done, before + 1, 10000));
    CHECK_EQ_INT(r.err, 0);
    CHECK(r.calls / 100 >= 5 && r.calls % 100 == 1); /* b.test skipped */
    CHECK_EQ_INT(n_each, r.calls / 100);
    struct tf_acme_store_entry *e;
    int n;
    CHECK_EQ_INT(tf_acme_store_list_sync(c->store_dir, &e, &n), 0);
    int bad = 0, good = 0;
    for (int i = 0; i < n; i++) {
        if (e[i].error)
            bad++;
        else if (e[i].not_after > tf_wall_now() && e[i].issuer[0])
            good++;
    }
    CHECK_EQ_INT(bad, 1);
    CHECK_EQ_INT(good, r.calls / 100);
    tf_acme_store_entries_free(e, n);
}

/* TF_TEST_RUN for calls with arguments. */
#define RUN(call)                                                                             \
    do {                                                                                      \
        int _f = tf_test_failed;                                                              \
        call;                                                                                 \
        fprintf(stderr, "%s %s\n", tf_test_failed == _f ? "ok  " : "FAIL", #call);            \
    } while (0)

static int setup(struct ctx *c)
{
    char err[256];
    uv_loop_init(&c->loop);
    if (pebble_init(&c->peb))
        return -1;
    snprintf(c->store_dir, sizeof(c->store_dir), "%s/storage", c->peb.dir);
    c->st = tf_storage_fs_new(&c->loop, c->store_dir, err, sizeof(err));
    c->http = tf_httpc_new(&c->loop, c->peb.ca_file, err, sizeof(err));
    if (!c->st || !c->http) {
        fprintf(stderr, "setup: %s\n", err);
        return -1;
    }
    return 0;
}

static void teardown(struct ctx *c)
{
    int closed = 0;
    tf_httpc_close(c->http, on_flag, &closed);
    tf_storage_close(c->st, on_flag, &closed);
    CHECK(run_until(&c->loop, &closed, 2, 10000));
    uv_run(&c->loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(&c->loop), 0);
}

int main(void)
{
    if (access(PEBBLE_BIN, X_OK) != 0) {
        printf("SKIP: %s is not installed (scripts/deps.sh installs it)\n", PEBBLE_BIN);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    tf_log_setup(TF_LOG_INFO, false);
    static struct ctx c;
    if (setup(&c)) {
        CHECK(0);
        return TF_TEST_DONE();
    }
    char url[128];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/dir", c.peb.port);
    CHECK_EQ_INT(pebble_start(&c.peb, 0), 0);
    RUN(test_account_and_order(&c, url));
    RUN(test_concurrent(&c, url));
    RUN(test_cancel(&c, url));
    pebble_stop(&c.peb);
    CHECK_EQ_INT(pebble_start(&c.peb, 50), 0);
    RUN(test_nonce_reject(&c, url));
    RUN(test_killed(&c, url));
    RUN(test_fake(&c));
    RUN(test_store_listing(&c));
    pebble_stop(&c.peb);
    CHECK_EQ_INT(pebble_write_config(&c.peb, true), 0);
    CHECK_EQ_INT(pebble_start(&c.peb, 0), 0);
    RUN(test_eab(&c, url));
    pebble_stop(&c.peb);
    if (tf_test_failed)
        pebble_dump_log(&c.peb);
    teardown(&c);
    rm_rf(c.peb.dir);
    return TF_TEST_DONE();
}
