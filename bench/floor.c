/*
 * floor.c: the "libssl floor" for bench/run.sh: what OpenSSL itself costs on the server side of
 * one connection, with no sockets and no event loop. A client and a server SSL talk over a
 * memory BIO pair in one thread; only the server's calls are timed (CLOCK_THREAD_CPUTIME_ID):
 * SSL_new, the handshake (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519, one session ticket, as
 * tlsfront configures it), reading a small request, writing a small response, SSL_free.
 *
 *   floor CERT KEY N [--resume]
 *   floor CERT KEY N --idle
 *
 * prints {"cpu_s_per_1000": ...}. With --idle, the server keeps every SSL after its request
 * and response (as an idle kept-alive connection would) and prints the heap bytes in use
 * (mallinfo2) and the RSS growth per connection: the memory floor of figure 5. All server-side work runs inside server_op(), so that
 * `valgrind --tool=callgrind --toggle-collect=server_op floor ...` counts the server's
 * user-space instructions alone (run.sh divides by N).
 */
#define _GNU_SOURCE
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

struct srv {
    SSL_CTX *ctx;
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

static int timed(struct srv *s, int op)
{
    double t = cpu_now();
    int r = server_op(s, op);
    s->cpu += cpu_now() - t;
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

static SSL_CTX *make_ctx(int server, const char *cert, const char *key)
{
    SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
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

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: floor CERT KEY N [--resume]\n");
        return 2;
    }
    long n = atol(argv[3]);
    int resume = argc > 4 && !strcmp(argv[4], "--resume");
    struct srv s = {.ctx = make_ctx(1, argv[1], argv[2])};
    SSL_CTX *cctx = make_ctx(0, NULL, NULL);
    if (!s.ctx || !cctx || n < 1) {
        fprintf(stderr, "floor: SSL_CTX set-up failed\n");
        return 1;
    }
    if (argc > 4 && !strcmp(argv[4], "--idle")) {
        int rc = idle_floor(&s, cctx, n);
        SSL_CTX_free(s.ctx);
        SSL_CTX_free(cctx);
        return rc;
    }
    SSL_SESSION *sess = NULL;
    long reused = 0;
    for (long i = -20; i < n; i++) { /* 20 warm-up connections */
        if (i == 0)
            s.cpu = 0;
        int ru = 0;
        if (one_conn(&s, cctx, &sess, resume, &ru) < 0) {
            fprintf(stderr, "floor: connection %ld failed\n", i);
            return 1;
        }
        reused += i >= 0 && ru;
    }
    if ((!resume && reused) || (resume && reused < n)) {
        fprintf(stderr, "floor: %ld of %ld resumed (resume=%d)\n", reused, n, resume);
        return 1;
    }
    printf("{\"resume\":%d,\"n\":%ld,\"resumed\":%ld,\"cpu_s_per_1000\":%.6f}\n", resume, n,
           reused, s.cpu / (double)n * 1000.0);
    SSL_SESSION_free(sess);
    SSL_CTX_free(s.ctx);
    SSL_CTX_free(cctx);
    return 0;
}
