/*
 * test_http_client.c: the HTTP client against an in-process libuv server on 127.0.0.1 port 0,
 * plaintext and TLS (self-signed certificates made here with the OpenSSL API and written to a
 * temp dir as the client's extra CA). The server parses requests, records what it got, counts
 * accepted connections and answers by a per-test script (echo, split chunked, silent, close,
 * big body, Connection: close). Every test asserts exact callback counts, closes everything
 * and requires uv_loop_close() to succeed.
 */
#include "http_client_world.h"

/* ---- the tests ---- */

static void get_post_after(struct t *t)
{
    struct srv *s = &t->srv;
    char host[64];
    snprintf(host, sizeof host, "127.0.0.1:%d", s->port);
    if (t->cbs == 1) {
        CHECK_EQ_INT(t->err[0], 0);
        CHECK_EQ_INT(t->status[0], 200);
        CHECK_EQ_STR(t->body[0], "echo:GET:/get?x=1");
        CHECK_EQ_STR(s->method, "GET");
        CHECK_EQ_STR(s->path, "/get?x=1");
        CHECK_EQ_STR(s->host, host);
        CHECK_EQ_STR(s->ua, "tlsfront/" TLSFRONT_VERSION);
        CHECK_EQ_INT(s->clen, -1);
        static const struct tf_http_header extra[] = {{"X-Extra", "42"}};
        struct opts o = {.method = "POST", .body = "hello body",
                         .ctype = "application/jose+json", .headers = extra, .n_headers = 1};
        t_req(t, "/post", &o);
    } else {
        CHECK_EQ_INT(t->err[1], 0);
        CHECK_EQ_STR(t->body[1], "echo:POST:/post");
        CHECK_EQ_STR(s->method, "POST");
        CHECK_EQ_STR(s->path, "/post");
        CHECK_EQ_STR(s->host, host);
        CHECK_EQ_INT(s->clen, 10);
        CHECK_EQ_STR(s->body, "hello body");
        CHECK_EQ_STR(s->ctype, "application/jose+json");
        CHECK_EQ_STR(s->extra, "42");
        CHECK_EQ_INT(s->accepted, 1); /* the POST reused the GET's connection */
        t_teardown(t);                /* closing the client from inside a callback */
    }
}

static void test_plain_get_post(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_ECHO);
    t.after = get_post_after;
    t_req(&t, "/get?x=1#frag", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
}

static void tls_keepalive_after(struct t *t)
{
    struct srv *s = &t->srv;
    int i = t->cbs - 1;
    CHECK_EQ_INT(t->err[i], 0);
    CHECK_EQ_INT(t->status[i], 200);
    CHECK_EQ_STR(s->sni, "localhost");
    if (t->cbs < 3) {
        char path[16];
        snprintf(path, sizeof path, "/n%d", t->cbs + 1);
        char *big = NULL;
        struct opts o = {0};
        if (t->cbs == 2) { /* a large body crosses many TLS records and writes */
            big = tf_malloc(200001);
            memset(big, 'b', 200000);
            big[200000] = '\0';
            o = (struct opts){.method = "POST", .body = big, .ctype = "text/plain"};
        }
        CHECK_EQ_INT(t_req_to(t, "localhost", s->port, path, &o, NULL), 0);
        free(big);
        return;
    }
    CHECK_EQ_STR(t->body[0], "echo:GET:/n1");
    CHECK_EQ_STR(t->body[2], "echo:POST:/n3");
    CHECK_EQ_INT(s->clen, 200000);
    char host[64];
    snprintf(host, sizeof host, "localhost:%d", s->port);
    CHECK_EQ_STR(s->host, host);
    CHECK_EQ_INT(s->requests, 3);
    CHECK_EQ_INT(s->accepted, 1);
    t_teardown(t);
}

static void test_tls_keepalive(struct pki *pki)
{
    struct t t;
    t_init(&t, pki->good_key, pki->good_crt, pki->good_pem, M_ECHO);
    t.after = tls_keepalive_after;
    CHECK_EQ_INT(t_req_to(&t, "localhost", t.srv.port, "/n1", NULL, NULL), 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 3);
}

static void split_after(struct t *t)
{
    int i = t->cbs - 1;
    CHECK_EQ_INT(t->err[i], 0);
    CHECK_EQ_INT(t->status[i], 200);
    CHECK_EQ_STR(t->body[i], "hello world");
    CHECK_EQ_INT(t->body_len[i], 11);
    CHECK_EQ_STR(t->xtest[i], "split");
    if (t->cbs == 1) {
        t_req(t, "/again", NULL);
        return;
    }
    CHECK_EQ_INT(t->srv.accepted, 1);
    t_teardown(t);
}

static void test_split_chunked(struct pki *pki, bool tls)
{
    struct t t;
    t_init(&t, tls ? pki->good_key : NULL, tls ? pki->good_crt : NULL,
           tls ? pki->good_pem : NULL, M_SPLIT_CHUNKED);
    t.after = split_after;
    t_req(&t, "/split", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_STR(t.srv.sni, ""); /* no SNI for an IP literal */
}

static void test_split_chunked_plain(struct pki *pki) { test_split_chunked(pki, false); }
static void test_split_chunked_tls(struct pki *pki) { test_split_chunked(pki, true); }

static void stale_after(struct t *t)
{
    struct srv *s = &t->srv;
    if (t->cbs < 3) {
        CHECK_EQ_INT(t->err[t->cbs - 1], 0);
        CHECK_EQ_STR(t->body[t->cbs - 1], "first");
        if (t->cbs == 2) {
            /* Request 2 met a connection the server closed and went out again. */
            CHECK_EQ_INT(s->accepted, 2);
            CHECK_EQ_INT(s->requests, 3);
            s->mode = M_DROP;
        }
        t_req(t, "/r", NULL);
        return;
    }
    /* Retried once on a fresh connection, which failed too: no second retry. */
    CHECK_EQ_INT(t->err[2], UV_EOF);
    CHECK_EQ_INT(s->accepted, 3);
    CHECK_EQ_INT(s->requests, 5);
    t_teardown(t);
}

static void test_stale_pool_retry(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_CLOSE_SECOND);
    t.after = stale_after;
    t_req(&t, "/r", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 3);
}

static void reconnect_after(struct t *t)
{
    int i = t->cbs - 1;
    CHECK_EQ_INT(t->err[i], 0);
    CHECK_EQ_INT(t->status[i], 200);
    if (t->cbs < 2) {
        t_req(t, "/two", NULL);
        return;
    }
    CHECK_EQ_INT(t->srv.accepted, 2);
    CHECK_EQ_INT(t->srv.requests, 2);
    t_teardown(t);
}

/* The server closes after answering, or says Connection: close: no reuse either way. */
static void test_server_closes(void)
{
    static const enum mode modes[] = {M_CLOSE_AFTER, M_CONN_CLOSE};
    for (size_t m = 0; m < TF_ARRAY_LEN(modes); m++) {
        struct t t;
        t_init(&t, NULL, NULL, NULL, modes[m]);
        t.after = reconnect_after;
        t_req(&t, "/one", NULL);
        t_run(&t);
        CHECK_EQ_INT(t.cbs, 2);
        CHECK_EQ_STR(t.body[1], modes[m] == M_CONN_CLOSE ? "bye" : "echo:GET:/two");
    }
}

static void teardown_after(struct t *t)
{
    t_teardown(t);
}

static void test_timeout(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_SILENT);
    t.after = teardown_after;
    struct opts o = {.timeout_ms = 200};
    t_req(&t, "/slow", &o);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 1);
    CHECK_EQ_INT(t.err[0], TF_ETIMEDOUT);
    CHECK(t.elapsed_ms[0] >= 195 && t.elapsed_ms[0] < 2000);
    CHECK_EQ_INT(t.srv.requests, 1);
}

static void cap_after(struct t *t)
{
    if (t->cbs == 1) {
        CHECK_EQ_INT(t->err[0], TF_ETOOBIG);
        struct opts o = {.max_body = 5000};
        t_req(t, "/big", &o);
        return;
    }
    CHECK_EQ_INT(t->err[1], 0);
    CHECK_EQ_INT(t->body_len[1], 5000);
    t_teardown(t);
}

static void test_body_cap(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_BIG);
    t.after = cap_after;
    struct opts o = {.max_body = 1000};
    t_req(&t, "/big", &o);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
}

static void test_tls_untrusted(struct pki *pki)
{
    struct t t;
    t_init(&t, pki->good_key, pki->good_crt, NULL, M_ECHO);
    t.after = teardown_after;
    CHECK_EQ_INT(t_req_to(&t, "localhost", t.srv.port, "/", NULL, NULL), 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 1);
    CHECK_EQ_INT(t.err[0], TF_ETLS);
    CHECK_EQ_INT(t.srv.requests, 0);
}

static void names_after(struct t *t)
{
    if (t->cbs == 1)
        CHECK_EQ_INT(t_req_to(t, "localhost", t->srv.port, "/", NULL, NULL), 0);
    else
        t_teardown(t);
}

/* Trusted certificates for the wrong name fail, for an IP literal and for a DNS name. */
static void test_tls_hostname_mismatch(struct pki *pki)
{
    struct t t;
    t_init(&t, pki->other_key, pki->other_crt, pki->other_pem, M_ECHO);
    t.after = names_after;
    t_req(&t, "/", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_INT(t.err[0], TF_ETLS);
    CHECK_EQ_INT(t.err[1], TF_ETLS);
    CHECK_EQ_INT(t.srv.requests, 0);
    CHECK_EQ_INT(t.srv.accepted, 2);

    /* The same checks pass with the right names: IP SAN, then DNS SAN. */
    t_init(&t, pki->good_key, pki->good_crt, pki->good_pem, M_ECHO);
    t.after = names_after;
    t_req(&t, "/", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_INT(t.err[0], 0);
    CHECK_EQ_INT(t.err[1], 0);
}

static int free_port(uv_loop_t *loop)
{
    uv_tcp_t tcp;
    struct sockaddr_in sa;
    struct sockaddr_storage bound;
    int len = sizeof bound;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_init(loop, &tcp);
    CHECK_EQ_INT(uv_tcp_bind(&tcp, (struct sockaddr *)&sa, 0), 0);
    CHECK_EQ_INT(uv_tcp_getsockname(&tcp, (struct sockaddr *)&bound, &len), 0);
    uv_close((uv_handle_t *)&tcp, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void test_refused(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_ECHO);
    t.after = teardown_after;
    int port = free_port(&t.loop);
    CHECK_EQ_INT(t_req_to(&t, "127.0.0.1", port, "/", NULL, NULL), 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 1);
    CHECK_EQ_INT(t.err[0], UV_ECONNREFUSED);
}

static void cancel_on_request(struct srv *s)
{
    struct t *t = s->test;
    tf_httpc_cancel(t->h);
    tf_httpc_cancel(t->h); /* twice: still one callback */
}

static void cancel_after(struct t *t)
{
    CHECK_EQ_INT(t->err[t->cbs - 1], UV_ECANCELED);
    if (t->cbs == 2)
        t_teardown(t);
}

static void test_cancel(void)
{
    struct t t;
    struct tf_httpc_req *queued = NULL;
    t_init(&t, NULL, NULL, NULL, M_SILENT);
    t.after = cancel_after;
    t.srv.on_request = cancel_on_request;
    CHECK_EQ_INT(t_req_to(&t, "127.0.0.1", t.srv.port, "/a", NULL, &t.h), 0);
    CHECK_EQ_INT(t_req_to(&t, "127.0.0.1", t.srv.port, "/b", NULL, &queued), 0);
    tf_httpc_cancel(queued); /* before the loop ever ran: no callback from inside here */
    CHECK_EQ_INT(t.cbs, 0);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 2);
    CHECK_EQ_INT(t.srv.accepted, 1);
    CHECK_EQ_INT(t.srv.requests, 1);
    CHECK_EQ_STR(t.srv.path, "/a");
}

static void close_on_request(struct srv *s)
{
    struct t *t = s->test;
    if (s->requests < 2)
        return;
    t_req(t, "/queued", NULL); /* not started yet when the client closes */
    t->client_closed = true;
    tf_httpc_close(t->client, on_done, t);
    tf_httpc_close(t->client, on_done, t); /* idempotent */
    CHECK_EQ_INT(t->cbs, 0);
    CHECK_EQ_INT(t_req_to(t, "127.0.0.1", s->port, "/late", NULL, NULL), TF_ECLOSED);
}

static void close_after_cb(struct t *t)
{
    CHECK_EQ_INT(t->err[t->cbs - 1], UV_ECANCELED);
    if (t->cbs == 3)
        t_teardown(t);
}

static void test_close_in_flight(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_SILENT);
    t.after = close_after_cb;
    t.srv.on_request = close_on_request;
    t_req(&t, "/one", NULL);
    t_req(&t, "/two", NULL);
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 3);
    CHECK_EQ_INT(t.cbs_at_done, 3);
    CHECK_EQ_INT(t.srv.accepted, 2);
}

static void test_bad_args_and_idle_close(void)
{
    struct t t;
    t_init(&t, NULL, NULL, NULL, M_ECHO);
    struct tf_http_request rq = {.method = "GET", .url = "ftp://127.0.0.1/"};
    CHECK_EQ_INT(tf_httpc_request(t.client, &rq, on_resp, &t, NULL), TF_EINVAL);
    rq.url = "http://127.0.0.1/";
    rq.method = "GE T";
    CHECK_EQ_INT(tf_httpc_request(t.client, &rq, on_resp, &t, NULL), TF_EINVAL);
    struct tf_http_header bad = {"X-A", "1\r\nHost: evil"};
    rq.method = "GET";
    rq.headers = &bad;
    rq.n_headers = 1;
    CHECK_EQ_INT(tf_httpc_request(t.client, &rq, on_resp, &t, NULL), TF_EINVAL);
    char err[256] = "";
    CHECK(tf_httpc_new(&t.loop, "/nonexistent/ca.pem", err, sizeof err) == NULL);
    CHECK(strstr(err, "/nonexistent/ca.pem") != NULL);
    t_teardown(&t);
    CHECK_EQ_INT(t.dones, 0); /* done runs from the loop, not from inside close */
    t_run(&t);
    CHECK_EQ_INT(t.cbs, 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* a write racing the server's close must fail, not kill us */
    if (getenv("TF_TEST_DEBUG"))
        tf_log_setup(TF_LOG_DEBUG, false);
    struct pki pki = {0};
    const char *tmp = getenv("TMPDIR");
    snprintf(pki.dir, sizeof pki.dir, "%s/tf_http_client_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(pki.dir) != NULL);
    snprintf(pki.good_pem, sizeof pki.good_pem, "%s/good.pem", pki.dir);
    snprintf(pki.other_pem, sizeof pki.other_pem, "%s/other.pem", pki.dir);
    CHECK(make_cert("localhost", "DNS:localhost,IP:127.0.0.1", pki.good_pem, &pki.good_key,
                    &pki.good_crt));
    CHECK(make_cert("other.invalid", "DNS:other.invalid", pki.other_pem, &pki.other_key,
                    &pki.other_crt));

    TF_TEST_RUN(test_plain_get_post);
    TF_TEST_RUN(test_stale_pool_retry);
    TF_TEST_RUN(test_server_closes);
    TF_TEST_RUN(test_timeout);
    TF_TEST_RUN(test_body_cap);
    TF_TEST_RUN(test_refused);
    TF_TEST_RUN(test_cancel);
    TF_TEST_RUN(test_close_in_flight);
    TF_TEST_RUN(test_bad_args_and_idle_close);
#define RUN_PKI(fn)                                                                           \
    do {                                                                                      \
        int _f = tf_test_failed;                                                              \
        fn(&pki);                                                                             \
        fprintf(stderr, "%s %s\n", tf_test_failed == _f ? "ok  " : "FAIL", #fn);              \
    } while (0)
    RUN_PKI(test_tls_keepalive);
    RUN_PKI(test_split_chunked_plain);
    RUN_PKI(test_split_chunked_tls);
    RUN_PKI(test_tls_untrusted);
    RUN_PKI(test_tls_hostname_mismatch);

    unlink(pki.good_pem);
    unlink(pki.other_pem);
    rmdir(pki.dir);
    EVP_PKEY_free(pki.good_key);
    EVP_PKEY_free(pki.other_key);
    X509_free(pki.good_crt);
    X509_free(pki.other_crt);
    return TF_TEST_DONE();
}
