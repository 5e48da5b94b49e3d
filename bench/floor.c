/*
 * floor.c: the "libssl floor" for bench/run.sh: what OpenSSL itself costs on the server side of
 * one connection, with no sockets and no event loop. A client and a server SSL talk over a
 * memory BIO pair in one thread; only the server's calls are timed (CLOCK_THREAD_CPUTIME_ID):
 * SSL_new, the handshake (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, one session ticket, as
 * tlsfront configures it), reading a small request, writing a small response, SSL_free.
 *
 *   floor CERT KEY N [--resume]
 *   floor CERT KEY N --idle
 *   floor CERT KEY N [--resume] --tf [--threads T | --procs P] [--ctx MODE]
 *
 * prints {"cpu_s_per_1000": ...}. With --idle, the server keeps every SSL after its request
 * and response (as an idle kept-alive connection would) and prints the heap bytes in use
 * (mallinfo2) and the RSS growth per connection: the memory floor of figure 5. All server-side work runs inside server_op(), so that
 * `valgrind --tool=callgrind --toggle-collect=server_op floor ...` counts the server's
 * user-space instructions alone (run.sh divides by N).
 *
 * --tf sets the server up as tlsfront does (src/proxy/handshake.c, src/tls/certctx.c,
 * src/tls/tickets.c): a listener context with no certificate, a ClientHello callback that
 * switches to a per-certificate context (SSL_set_SSL_CTX), the ALPN callback, and the ticket
 * key callback (AES-256-CBC fetched once, HMAC-SHA256). The multi-core floor (docs/
 * benchmarks.md, figure 9) runs T threads (--threads) or P single-thread processes (--procs),
 * each doing N handshakes back to back, and prints the server CPU per handshake and the wall
 * rate of each. --ctx says what the threads share (the client side of each thread always has
 * an OpenSSL library context of its own, so that it adds no contention the server would not
 * see with a remote client):
 *   shared  one listener context and one per-certificate context for all threads (tlsfront
 *           before per-worker contexts)
 *   worker  a listener and a per-certificate context per thread; the X509 and EVP_PKEY
 *           objects and OpenSSL's default library context stay shared
 *   copy    as worker, and each thread decodes its own X509 and EVP_PKEY
 *   libctx  as worker, and each thread's contexts live in an OSSL_LIB_CTX of its own
 *           (method stores, name map, random generators, provider instances); the X509 and
 *           EVP_PKEY, decoded in the default one, stay shared
 *   libctx-copy  as libctx, and each thread decodes its own X509 and EVP_PKEY in its own
 *           library context: nothing shared but OpenSSL's process-wide locks (tlsfront
 *           since per-worker library contexts, src/tls/certctx.c)
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

static const char REQ[] = "GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n";
static const char RESP[] = "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
                           "hello, bench\n";

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum { OP_NEW, OP_HS, OP_READ, OP_WRITE, OP_FREE };

struct tfsrv;

struct srv {
    SSL_CTX *ctx;
    struct tfsrv *tf; /* --tf: what the callbacks read (the SSL's app data is this srv) */
    SSL *ssl;
    BIO *net; /* the client's end of the pair */
    int hs_done, req_done, resp_done;
    int keep; /* --idle: leave the SSL alive in ssl, the caller keeps it */
    double cpu;
};

/* Every server-side OpenSSL call goes through here (callgrind toggles on this function). */
__attribute__((noinline)) static int server_op(struct srv *s, int op)
{
    char buf[512];
    int r = 0;
    switch (op) {
    case OP_NEW: {
        BIO *sb;
        s->ssl = SSL_new(s->ctx);
        if (!s->ssl || !BIO_new_bio_pair(&sb, 0, &s->net, 0))
            return -1;
        SSL_set_bio(s->ssl, sb, sb);
        SSL_set_accept_state(s->ssl);
        SSL_set_app_data(s->ssl, s);
        return 0;
    }
    case OP_HS:
        r = SSL_do_handshake(s->ssl);
        if (r == 1)
            s->hs_done = 1;
        else if (SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
            return -1;
        return 0;
    case OP_READ:
        r = SSL_read(s->ssl, buf, sizeof buf);
        if (r == (int)sizeof REQ - 1)
            s->req_done = 1;
        else if (r > 0 || SSL_get_error(s->ssl, r) != SSL_ERROR_WANT_READ)
            return -1;
        return 0;
    case OP_WRITE:
        r = SSL_write(s->ssl, RESP, sizeof RESP - 1);
        s->resp_done = 1;
        return r == (int)sizeof RESP - 1 ? 0 : -1;
    default:
        SSL_free(s->ssl);
        s->ssl = NULL;
        return 0;
    }
}

/* bench/lockcount.c's marker, when that library is preloaded: it then counts only the locks
 * taken by server-side calls. */
static void (*lock_mark)(int);

static int timed(struct srv *s, int op)
{
    if (lock_mark)
        lock_mark(1);
    double t = cpu_now();
    int r = server_op(s, op);
    s->cpu += cpu_now() - t;
    if (lock_mark)
        lock_mark(0);
    return r;
}

/* Drive one connection; the client part is not timed. */
static int one_conn(struct srv *s, SSL_CTX *cctx, SSL_SESSION **sess, int resume, int *reused)
{
    s->hs_done = s->req_done = s->resp_done = 0;
    if (timed(s, OP_NEW) < 0)
        return -1;
    SSL *c = SSL_new(cctx);
    if (!c)
        return -1;
    SSL_set_bio(c, s->net, s->net);
    SSL_set_connect_state(c);
    SSL_set_tlsext_host_name(c, "bench.test");
    if (resume && *sess)
        SSL_set_session(c, *sess);
    int rc = -1, c_done = 0, sent = 0, got = 0;
    char buf[1024];
    for (int round = 0; round < 20 && !got; round++) {
        if (!c_done) {
            int r = SSL_do_handshake(c);
            c_done = r == 1;
            if (r != 1 && SSL_get_error(c, r) != SSL_ERROR_WANT_READ)
                goto out;
        }
        if (c_done && !sent) {
            if (SSL_write(c, REQ, sizeof REQ - 1) != (int)sizeof REQ - 1)
                goto out;
            sent = 1;
        }
        if (!s->hs_done && timed(s, OP_HS) < 0)
            goto out;
        if (s->hs_done && !s->req_done && timed(s, OP_READ) < 0)
            goto out;
        if (s->req_done && !s->resp_done && timed(s, OP_WRITE) < 0)
            goto out;
        if (s->resp_done) {
            int r;
            while ((r = SSL_read(c, buf, sizeof buf)) > 0)
                got += r;
        }
    }
    if (got != (int)sizeof RESP - 1)
        goto out;
    *reused = SSL_session_reused(c);
    /* mark the connection as cleanly finished, or SSL_free() marks its session not resumable */
    SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
    if (resume) {
        SSL_SESSION_free(*sess);
        *sess = SSL_get1_session(c);
    }
    rc = 0;
out:
    SSL_free(c);
    if (s->keep && rc == 0) {
        /* idle: swap the pair half (a 17 KB buffer) for an empty memory BIO, which is what
         * an idle connection needs at the least */
        BIO *m = BIO_new(BIO_s_mem());
        if (!m)
            rc = -1;
        else
            SSL_set_bio(s->ssl, m, m);
    }
    if (!s->keep || rc < 0)
        timed(s, OP_FREE);
    ERR_clear_error();
    return rc;
}

static SSL_CTX *make_ctx(OSSL_LIB_CTX *lib, int server, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(lib, NULL, server ? TLS_server_method() : TLS_client_method());
    if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
        !SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256") ||
        !SSL_CTX_set1_groups_list(ctx, "X25519"))
        return NULL;
    if (server) {
        SSL_CTX_set_num_tickets(ctx, 1);
        SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
        SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
            SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            return NULL;
    } else {
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

static long rss_kib(void)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
        rss = -1;
    fclose(f);
    return rss < 0 ? -1 : rss * (sysconf(_SC_PAGESIZE) / 1024);
}

/* --idle: n server SSLs kept after one request each; heap and RSS per connection. */
static int idle_floor(struct srv *s, SSL_CTX *cctx, long n)
{
    SSL **keep = calloc((size_t)n, sizeof *keep);
    SSL_SESSION *sess = NULL;
    int ru;
    for (int i = 0; i < 50; i++) /* warm-up, freed */
        if (one_conn(s, cctx, &sess, 0, &ru) < 0)
            return 1;
    size_t heap0 = mallinfo2().uordblks;
    long rss0 = rss_kib();
    s->keep = 1;
    for (long i = 0; i < n; i++) {
        if (!keep || one_conn(s, cctx, &sess, 0, &ru) < 0) {
            fprintf(stderr, "floor: idle connection %ld failed\n", i);
            return 1;
        }
        keep[i] = s->ssl;
    }
    size_t heap1 = mallinfo2().uordblks;
    long rss1 = rss_kib();
    printf("{\"idle\":%ld,\"heap_kib_per_conn\":%.3f,\"rss_kib_per_conn\":%.3f}\n", n,
           (double)(heap1 - heap0) / 1024.0 / (double)n, (double)(rss1 - rss0) / (double)n);
    for (long i = 0; i < n; i++)
        SSL_free(keep[i]);
    free(keep);
    return 0;
}

/* n connections in a row; *reused counts the resumed ones. The session offered next carries
 * over in *sess. */
static int run_conns(struct srv *s, SSL_CTX *cctx, long n, int resume, SSL_SESSION **sess,
                     long *reused)
{
    for (long i = 0; i < n; i++) {
        int ru = 0;
        if (one_conn(s, cctx, sess, resume, &ru) < 0) {
            fprintf(stderr, "floor: connection %ld failed\n", i);
            return -1;
        }
        *reused += ru;
    }
    return 0;
}

static int check_resumed(int resume, long reused, long n)
{
    if ((!resume && reused) || (resume && reused < n)) {
        fprintf(stderr, "floor: %ld of %ld resumed (resume=%d)\n", reused, n, resume);
        return -1;
    }
    return 0;
}

/* ---- --tf: the server as tlsfront sets it up ---- */

enum ctx_mode { CTX_SHARED, CTX_WORKER, CTX_COPY, CTX_LIBCTX, CTX_LIBCTX_COPY };
static const char *const CTX_NAMES[] = {"shared", "worker", "copy", "libctx", "libctx-copy"};

struct tfsrv {
    OSSL_LIB_CTX *lib;       /* NULL: OpenSSL's default library context */
    SSL_CTX *listener, *cert; /* the listener's context, the per-certificate one */
    X509 *leaf;
    EVP_PKEY *key;
    EVP_CIPHER *aes;         /* the ticket cipher, fetched once as tickets.c does */
    int own_keys, own_ctxs;  /* what tf_free releases */
};

/* One fixed ticket key: any thread (or process) decrypts any other's tickets. */
static const unsigned char TICKET_NAME[16] = "floor-ticket-key";
static const unsigned char TICKET_AES[32] = {1, 2, 3};
static const unsigned char TICKET_HMAC[32] = {4, 5, 6};

static int tf_hello_cb(SSL *ssl, int *al, void *arg)
{
    (void)arg;
    struct srv *s = SSL_get_app_data(ssl);
    const unsigned char *ext;
    size_t len;
    *al = SSL_AD_UNRECOGNIZED_NAME;
    if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &ext, &len) != 1 || len < 5)
        return SSL_CLIENT_HELLO_ERROR;
    *al = SSL_AD_INTERNAL_ERROR;
    return SSL_set_SSL_CTX(ssl, s->tf->cert) == s->tf->cert ? SSL_CLIENT_HELLO_SUCCESS
                                                             : SSL_CLIENT_HELLO_ERROR;
}

static int tf_alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                      const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl, (void)arg;
    static const unsigned char proto[] = "\x08http/1.1";
    return SSL_select_next_proto((unsigned char **)out, outlen, proto, sizeof proto - 1, in,
                                 inlen) == OPENSSL_NPN_NEGOTIATED ? SSL_TLSEXT_ERR_OK
                                                                  : SSL_TLSEXT_ERR_NOACK;
}

static int tf_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char *iv,
                        EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
{
    struct srv *s = SSL_get_app_data(ssl);
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    if (enc) {
        if (RAND_bytes_ex(s->tf->lib, iv, EVP_MAX_IV_LENGTH, 0) != 1)
            return -1;
        memcpy(key_name, TICKET_NAME, 16);
        return EVP_EncryptInit_ex(ctx, s->tf->aes, NULL, TICKET_AES, iv) == 1 &&
                       EVP_MAC_init(hctx, TICKET_HMAC, sizeof TICKET_HMAC, params) == 1
                   ? 1 : -1;
    }
    if (memcmp(key_name, TICKET_NAME, 16) != 0)
        return 0;
    return EVP_DecryptInit_ex(ctx, s->tf->aes, NULL, TICKET_AES, iv) == 1 &&
                   EVP_MAC_init(hctx, TICKET_HMAC, sizeof TICKET_HMAC, params) == 1
               ? 2 : -1; /* 2: a fresh ticket after each TLS 1.3 resumption, as tlsfront */
}

/* The listener's context: handshake.c's tf_handshake_ctx_new with --tls-min 1.2. */
static SSL_CTX *tf_listener_ctx(OSSL_LIB_CTX *lib)
{
    SSL_CTX *ctx = SSL_CTX_new_ex(lib, NULL, TLS_server_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                                     "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                                     "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1 ||
        SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                      "TLS_CHACHA20_POLY1305_SHA256") != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256:P-384") != 1 ||
        SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, tf_ticket_cb) != 1) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_client_hello_cb(ctx, tf_hello_cb, NULL);
    SSL_CTX_set_alpn_select_cb(ctx, tf_alpn_cb, NULL);
    return ctx;
}

/* Decode the certificate and key into t's library context. */
static int tf_load(struct tfsrv *t, const char *cert, const char *key)
{
    BIO *b = BIO_new_file(cert, "r");
    t->leaf = X509_new_ex(t->lib, NULL);
    if (!b || !t->leaf || !PEM_read_bio_X509(b, &t->leaf, NULL, NULL)) {
        BIO_free(b);
        return -1;
    }
    BIO_free(b);
    b = BIO_new_file(key, "r");
    t->key = b ? PEM_read_bio_PrivateKey_ex(b, NULL, NULL, NULL, t->lib, NULL) : NULL;
    BIO_free(b);
    t->own_keys = 1;
    return t->key ? 0 : -1;
}

/* t for one thread in the given mode; base is the process's shared server (mode shared,
 * worker) or NULL (base itself, and every thread in modes copy and libctx). */
static int tf_setup(struct tfsrv *t, const struct tfsrv *base, enum ctx_mode mode,
                    const char *cert, const char *key)
{
    if (base && mode == CTX_SHARED) {
        *t = *base;
        t->own_keys = t->own_ctxs = 0;
        return 0;
    }
    memset(t, 0, sizeof *t);
    if (mode >= CTX_LIBCTX && !(t->lib = OSSL_LIB_CTX_new()))
        return -1;
    if (base && (mode == CTX_WORKER || mode == CTX_LIBCTX)) {
        t->leaf = base->leaf;
        t->key = base->key;
        t->aes = base->aes;
    } else if (tf_load(t, cert, key) != 0 ||
               !(t->aes = EVP_CIPHER_fetch(t->lib, "AES-256-CBC", NULL))) {
        return -1;
    }
    if (mode == CTX_LIBCTX && !(t->aes = EVP_CIPHER_fetch(t->lib, "AES-256-CBC", NULL)))
        return -1;
    t->own_ctxs = 1;
    t->listener = tf_listener_ctx(t->lib);
    t->cert = SSL_CTX_new_ex(t->lib, NULL, TLS_server_method());
    if (!t->listener || !t->cert || SSL_CTX_use_cert_and_key(t->cert, t->leaf, t->key, NULL, 1) != 1)
        return -1;
    SSL_CTX_set_alpn_select_cb(t->cert, tf_alpn_cb, NULL);
    return 0;
}

static void tf_free(struct tfsrv *t)
{
    if (t->own_ctxs) {
        SSL_CTX_free(t->listener);
        SSL_CTX_free(t->cert);
    }
    if (t->own_keys) {
        X509_free(t->leaf);
        EVP_PKEY_free(t->key);
    }
    if (t->own_keys || t->lib)
        EVP_CIPHER_free(t->aes);
    OSSL_LIB_CTX_free(t->own_ctxs ? t->lib : NULL);
}

/* ---- --threads / --procs: the multi-core floor ---- */

struct job {
    const char *cert, *key;
    long n;
    int resume;
    enum ctx_mode mode;
    const struct tfsrv *base;  /* threads: the shared server; procs: NULL */
    pthread_barrier_t *start;  /* threads: all start together after the warm-up */
    int ready_fd, go_fd;       /* procs: the same through pipes */
    double cpu, wall;          /* results: server CPU seconds, wall seconds of the N */
    long reused;
    int rc;
};

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void job_wait_start(struct job *j)
{
    char c = 0;
    if (j->start) {
        pthread_barrier_wait(j->start);
    } else if (write(j->ready_fd, &c, 1) != 1 || read(j->go_fd, &c, 1) != 0) {
        j->rc = -1; /* the parent closes go: read returns 0 */
    }
}

/* One worker: its own client (with its own library context), the server as mode says,
 * 20 warm-up connections, the start signal, then N timed ones. */
static void *run_job(void *arg)
{
    struct job *j = arg;
    struct tfsrv t = {0};
    struct srv s = {0};
    SSL_SESSION *sess = NULL;
    long warm = 0;
    OSSL_LIB_CTX *clib = OSSL_LIB_CTX_new();
    SSL_CTX *cctx = clib ? make_ctx(clib, 0, NULL, NULL) : NULL;
    j->rc = -1;
    if (cctx && SSL_CTX_set_alpn_protos(cctx, (const unsigned char *)"\x08http/1.1", 9) == 0 &&
        tf_setup(&t, j->base, j->mode, j->cert, j->key) == 0) {
        s.ctx = t.listener;
        s.tf = &t;
        j->rc = run_conns(&s, cctx, 20, j->resume, &sess, &warm);
    }
    job_wait_start(j);
    if (j->rc == 0) {
        s.cpu = 0;
        double t0 = wall_now();
        j->rc = run_conns(&s, cctx, j->n, j->resume, &sess, &j->reused);
        j->wall = wall_now() - t0;
        j->cpu = s.cpu;
    }
    if (j->rc == 0)
        j->rc = check_resumed(j->resume, j->reused, j->n);
    SSL_SESSION_free(sess);
    SSL_CTX_free(cctx);
    OSSL_LIB_CTX_free(clib);
    tf_free(&t);
    return NULL;
}

static int run_threads(struct job *jobs, int t)
{
    pthread_t *ids = calloc((size_t)t, sizeof *ids);
    pthread_barrier_t start;
    if (!ids || pthread_barrier_init(&start, NULL, (unsigned)t) != 0)
        return -1;
    int started = 0;
    for (int i = 0; i < t; i++) {
        jobs[i].start = &start;
        started += pthread_create(&ids[i], NULL, run_job, &jobs[i]) == 0;
    }
    for (int i = 0; i < started; i++)
        pthread_join(ids[i], NULL);
    pthread_barrier_destroy(&start);
    free(ids);
    return started == t ? 0 : -1;
}

/* P children, one job each; each sends its struct job back through res[1]. */
static int run_procs(struct job *jobs, int p)
{
    int ready[2], go[2], res[2];
    if (pipe(ready) || pipe(go) || pipe(res))
        return -1;
    for (int i = 0; i < p; i++) {
        pid_t pid = fork();
        if (pid < 0)
            return -1;
        if (pid == 0) {
            close(go[1]);
            jobs[i].ready_fd = ready[1];
            jobs[i].go_fd = go[0];
            run_job(&jobs[i]);
            _exit(write(res[1], &jobs[i], sizeof jobs[i]) == (ssize_t)sizeof jobs[i] ? 0 : 1);
        }
    }
    close(go[0]);
    close(ready[1]);
    close(res[1]);
    char c;
    for (int i = 0; i < p; i++)
        if (read(ready[0], &c, 1) != 1)
            break;
    close(go[1]); /* every child starts its timed connections now */
    int rc = 0;
    for (int i = 0; i < p; i++)
        if (read(res[0], &jobs[i], sizeof jobs[i]) != (ssize_t)sizeof jobs[i])
            rc = -1;
    while (wait(NULL) > 0)
        ;
    return rc;
}

/* --tf [--threads T | --procs P] [--ctx MODE]: print one JSON line; 0 or 1. */
static int multi(const char *cert, const char *key, long n, int resume, int threads, int procs,
                 enum ctx_mode mode)
{
    struct tfsrv base = {0};
    int w = procs ? procs : threads;
    struct job *jobs = calloc((size_t)w, sizeof *jobs);
    if (!jobs || (!procs && tf_setup(&base, NULL, CTX_COPY, cert, key) != 0)) {
        fprintf(stderr, "floor: server set-up failed\n");
        return 1;
    }
    for (int i = 0; i < w; i++)
        jobs[i] = (struct job){.cert = cert, .key = key, .n = n, .resume = resume,
                               .mode = procs ? CTX_COPY : mode, .base = procs ? NULL : &base};
    int rc = procs ? run_procs(jobs, procs) : run_threads(jobs, threads);
    double cpu = 0, rate = 0;
    printf("{\"tf\":1,\"threads\":%d,\"procs\":%d,\"ctx\":\"%s\",\"resume\":%d,\"n\":%ld,"
           "\"per_worker\":[", threads, procs, procs ? "process" : CTX_NAMES[mode], resume, n);
    for (int i = 0; i < w; i++) {
        rc |= jobs[i].rc;
        cpu += jobs[i].cpu / (double)n * 1000.0 / w;
        rate += jobs[i].wall > 0 ? (double)n / jobs[i].wall : 0;
        printf("%s{\"cpu_s_per_1000\":%.6f,\"hs_per_s\":%.1f}", i ? "," : "",
               jobs[i].cpu / (double)n * 1000.0, jobs[i].wall > 0 ? (double)n / jobs[i].wall : 0);
    }
    printf("],\"cpu_s_per_1000\":%.6f,\"hs_per_s\":%.1f}\n", cpu, rate);
    tf_free(&base);
    free(jobs);
    if (rc != 0)
        fprintf(stderr, "floor: a worker failed\n");
    return rc != 0;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: floor CERT KEY N [--resume|--idle] [--tf [--threads T | "
                        "--procs P] [--ctx shared|worker|copy|libctx|libctx-copy]]\n");
        return 2;
    }
    lock_mark = (void (*)(int))dlsym(RTLD_DEFAULT, "lockcount_server");
    if (lock_mark)
        lock_mark(0); /* count from here on only what the server's calls take */
    long n = atol(argv[3]);
    int resume = 0, idle = 0, tf = 0, threads = 1, procs = 0;
    enum ctx_mode mode = CTX_SHARED;
    for (int i = 4; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        if (!strcmp(a, "--resume") || !strcmp(a, "--idle") || !strcmp(a, "--tf")) {
            *(!strcmp(a, "--resume") ? &resume : !strcmp(a, "--idle") ? &idle : &tf) = 1;
            continue;
        }
        if (!strcmp(a, "--threads") || !strcmp(a, "--procs")) {
            *(!strcmp(a, "--threads") ? &threads : &procs) = atoi(v);
        } else if (!strcmp(a, "--ctx")) {
            for (mode = CTX_SHARED; mode <= CTX_LIBCTX_COPY && strcmp(v, CTX_NAMES[mode]); mode++)
                ;
        } else {
            mode = CTX_LIBCTX_COPY + 1;
        }
        i++;
        if (threads < 1 || procs < 0 || mode > CTX_LIBCTX_COPY) {
            fprintf(stderr, "floor: bad %s\n", a);
            return 2;
        }
    }
    if (n < 1 || (idle && tf)) {
        fprintf(stderr, "floor: bad N, or --idle with --tf\n");
        return 2;
    }
    if (tf)
        return multi(argv[1], argv[2], n, resume, threads, procs, mode);
    struct srv s = {.ctx = make_ctx(NULL, 1, argv[1], argv[2])};
    SSL_CTX *cctx = make_ctx(NULL, 0, NULL, NULL);
    if (!s.ctx || !cctx) {
        fprintf(stderr, "floor: SSL_CTX set-up failed\n");
        return 1;
    }
    if (idle) {
        int rc = idle_floor(&s, cctx, n);
        SSL_CTX_free(s.ctx);
        SSL_CTX_free(cctx);
        return rc;
    }
    SSL_SESSION *sess = NULL;
    long reused = 0, warm = 0;
    if (run_conns(&s, cctx, 20, resume, &sess, &warm) != 0)
        return 1;
    s.cpu = 0;
    if (run_conns(&s, cctx, n, resume, &sess, &reused) != 0 ||
        check_resumed(resume, reused, n) != 0)
        return 1;
    printf("{\"resume\":%d,\"n\":%ld,\"resumed\":%ld,\"cpu_s_per_1000\":%.6f}\n", resume, n,
           reused, s.cpu / (double)n * 1000.0);
    SSL_SESSION_free(sess);
    SSL_CTX_free(s.ctx);
    SSL_CTX_free(cctx);
    return 0;
}
