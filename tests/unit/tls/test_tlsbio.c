/*
 * test_tlsbio.c: the low-copy BIO against a real OpenSSL client over memory BIOs: a full
 * TLS 1.3 handshake and data both ways with input offered whole, one byte at a time and with
 * leftovers kept across calls; several records coalesced into one flush; EOF; new input
 * appended after a partly consumed keep; a first record gathered across reads before the
 * SSL sees any of it (tf_tlsbio_first_record); the owner found from the SSL alone
 * (tf_tlsbio_arg), and no owner for an SSL on another BIO.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/tls/tls.h"
#include "tlsfront/tls/tlsbio.h"
#include "tf_test.h"

#include <openssl/ec.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <string.h>

struct sink {
    char data[1 << 20];
    size_t len;
    int calls;
};

static void on_flush(void *arg, const char *data, size_t len)
{
    struct sink *s = arg;
    if (s->len + len <= sizeof s->data) {
        memcpy(s->data + s->len, data, len);
        s->len += len;
    }
    s->calls++;
}

struct pair {
    SSL_CTX *sctx, *cctx;
    SSL *srv, *cli;
    BIO *cin, *cout; /* client memory BIOs */
    struct tf_tlsbio st;
    struct tf_tlsbio_out out;
    struct sink sink;
};

static void pair_init(struct pair *p)
{
    memset(p, 0, sizeof *p);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *cert = X509_new();
    CHECK(key && cert);
    CHECK(X509_set_version(cert, X509_VERSION_3) == 1);
    CHECK(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1) == 1);
    CHECK(X509_gmtime_adj(X509_getm_notBefore(cert), 0) != NULL);
    CHECK(X509_gmtime_adj(X509_getm_notAfter(cert), 3600) != NULL);
    CHECK(X509_NAME_add_entry_by_txt(X509_get_subject_name(cert), "CN", MBSTRING_ASC,
                                     (const unsigned char *)"bio.test", -1, -1, 0) == 1);
    CHECK(X509_set_issuer_name(cert, X509_get_subject_name(cert)) == 1);
    CHECK(X509_set_pubkey(cert, key) == 1);
    CHECK(X509_sign(cert, key, EVP_sha256()) > 0);
    p->sctx = SSL_CTX_new(TLS_server_method());
    p->cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_use_certificate(p->sctx, cert);
    SSL_CTX_use_PrivateKey(p->sctx, key);
    X509_free(cert);
    EVP_PKEY_free(key);
    p->srv = SSL_new(p->sctx);
    p->cli = SSL_new(p->cctx);
    p->out.cap = 64 * 1024;
    p->out.buf = malloc(p->out.cap);
    p->st.out = &p->out;
    p->st.flush = on_flush;
    p->st.arg = &p->sink;
    BIO *b = tf_tlsbio_new(&p->st, NULL);
    CHECK(b != NULL);
    SSL_set_bio(p->srv, b, b); /* one BIO both ways: SSL_set_bio takes one reference */
    SSL_set_accept_state(p->srv);
    p->cin = BIO_new(BIO_s_mem());
    p->cout = BIO_new(BIO_s_mem());
    SSL_set_bio(p->cli, p->cin, p->cout);
    SSL_set_connect_state(p->cli);
}

static void pair_free(struct pair *p)
{
    SSL_free(p->srv);
    SSL_free(p->cli);
    SSL_CTX_free(p->sctx);
    SSL_CTX_free(p->cctx);
    tf_tlsbio_clear(&p->st);
    free(p->out.buf);
}

/* Client -> server: offer what the client wrote, in pieces of `step` bytes. */
static void to_server(struct pair *p, size_t step, int (*op)(struct pair *))
{
    char buf[65536];
    int n;
    while ((n = BIO_read(p->cout, buf, sizeof buf)) > 0) {
        for (int off = 0; off < n; off += (int)step) {
            size_t len = TF_MIN(step, (size_t)(n - off));
            tf_tlsbio_input(&p->st, buf + off, len);
            op(p);
            tf_tlsbio_settle(&p->st);
            tf_tlsbio_flush(&p->st);
        }
    }
}

static void to_client(struct pair *p)
{
    BIO_write(p->cin, p->sink.data, (int)p->sink.len);
    p->sink.len = 0;
}

static int srv_handshake(struct pair *p)
{
    return SSL_do_handshake(p->srv);
}

static bool handshake(struct pair *p, size_t step)
{
    for (int round = 0; round < 10; round++) {
        SSL_do_handshake(p->cli);
        to_server(p, step, srv_handshake);
        to_client(p);
        if (SSL_is_init_finished(p->srv) && SSL_do_handshake(p->cli) == 1)
            return true;
    }
    return false;
}

static char got[1 << 20];
static size_t got_len;

static int srv_read(struct pair *p)
{
    int n;
    while ((n = SSL_read(p->srv, got + got_len, (int)(sizeof got - got_len))) > 0)
        got_len += (size_t)n;
    return n;
}

static void test_roundtrip(size_t step)
{
    struct pair p;
    pair_init(&p);
    CHECK(handshake(&p, step));
    /* client -> server */
    char msg[50000];
    for (size_t i = 0; i < sizeof msg; i++)
        msg[i] = (char)(i * 7);
    CHECK_EQ_INT(SSL_write(p.cli, msg, sizeof msg), (int)sizeof msg);
    got_len = 0;
    to_server(&p, step, srv_read);
    CHECK_EQ_INT(got_len, sizeof msg);
    CHECK(memcmp(got, msg, sizeof msg) == 0);
    CHECK_EQ_INT(tf_tlsbio_pending(&p.st), 0);
    /* server -> client: 50000 bytes are 4 records, coalesced into one flush */
    p.sink.calls = 0;
    p.sink.len = 0;
    CHECK_EQ_INT(SSL_write(p.srv, msg, sizeof msg), (int)sizeof msg);
    tf_tlsbio_flush(&p.st);
    CHECK_EQ_INT(p.sink.calls, 1);
    to_client(&p);
    char back[sizeof msg];
    size_t n = 0;
    int r;
    while (n < sizeof back && (r = SSL_read(p.cli, back + n, (int)(sizeof back - n))) > 0)
        n += (size_t)r;
    CHECK_EQ_INT(n, sizeof msg);
    CHECK(memcmp(back, msg, sizeof msg) == 0);
    pair_free(&p);
}

static void test_whole(void) { test_roundtrip(1 << 20); }
static void test_bytewise(void) { test_roundtrip(1); }
static void test_odd_pieces(void) { test_roundtrip(333); }

/* Input the server does not read yet is kept (copied) and served first later. */
static void test_keep(void)
{
    struct pair p;
    pair_init(&p);
    CHECK(handshake(&p, 1 << 20));
    SSL_write(p.cli, "first", 5);
    SSL_write(p.cli, "second", 6);
    char buf[4096];
    int n = BIO_read(p.cout, buf, sizeof buf);
    tf_tlsbio_input(&p.st, buf, (size_t)n);
    tf_tlsbio_settle(&p.st); /* nothing consumed: all kept */
    memset(buf, 0, sizeof buf); /* the borrowed buffer is reused by the caller */
    CHECK_EQ_INT(tf_tlsbio_pending(&p.st), n);
    got_len = 0;
    srv_read(&p);
    CHECK_EQ_INT(got_len, 11);
    CHECK(memcmp(got, "firstsecond", 11) == 0);
    CHECK_EQ_INT(tf_tlsbio_pending(&p.st), 0);
    CHECK(p.st.keep == NULL); /* drained: nothing held by an idle connection */
    /* EOF: reads report it once input is drained. */
    p.st.eof = true;
    char one;
    CHECK(SSL_read(p.srv, &one, 1) <= 0);
    int e = SSL_get_error(p.srv, 0);
    (void)e;
    pair_free(&p);
}

/* A partly consumed keep, then more input: the rest of the keep comes first, in order. */
static void test_keep_append(void)
{
    struct pair p;
    pair_init(&p);
    CHECK(handshake(&p, 1 << 20));
    SSL_write(p.cli, "first", 5);
    SSL_write(p.cli, "second", 6);
    char buf[4096];
    int n = BIO_read(p.cout, buf, sizeof buf);
    tf_tlsbio_input(&p.st, buf, (size_t)n);
    tf_tlsbio_settle(&p.st);
    char five[5];
    CHECK_EQ_INT(SSL_read(p.srv, five, 5), 5); /* one record taken, the other kept */
    CHECK(memcmp(five, "first", 5) == 0);
    CHECK(p.st.keep_off > 0);
    SSL_write(p.cli, "third", 5);
    n = BIO_read(p.cout, buf, sizeof buf);
    tf_tlsbio_input(&p.st, buf, (size_t)n);
    tf_tlsbio_settle(&p.st);
    memset(buf, 0, sizeof buf);
    got_len = 0;
    srv_read(&p);
    CHECK_EQ_INT(got_len, 11);
    CHECK(memcmp(got, "secondthird", 11) == 0);
    CHECK(p.st.keep == NULL);
    pair_free(&p);
}

/* The connection's first bytes, gathered before the SSL reads any: first_record turns true
 * exactly when the ClientHello's record is complete, and the handshake then works. */
static void test_first_record(void)
{
    struct pair p;
    pair_init(&p);
    SSL_do_handshake(p.cli);
    char hello[4096];
    int n = BIO_read(p.cout, hello, sizeof hello);
    CHECK(n > 100);
    size_t rec = 5 + (((size_t)(unsigned char)hello[3] << 8) | (unsigned char)hello[4]);
    CHECK_EQ_INT(rec, n); /* one record */
    CHECK(!tf_tlsbio_first_record(&p.st));
    for (int off = 0; off < n; off += 3) {
        size_t len = TF_MIN((size_t)3, (size_t)(n - off));
        char piece[3];
        memcpy(piece, hello + off, len); /* borrowed from a buffer the caller reuses */
        tf_tlsbio_input(&p.st, piece, len);
        CHECK_EQ_INT(tf_tlsbio_first_record(&p.st), (size_t)off + len == rec);
        tf_tlsbio_settle(&p.st);
        memset(piece, 0, sizeof piece);
    }
    CHECK(tf_tlsbio_first_record(&p.st));
    CHECK_EQ_INT(tf_tlsbio_pending(&p.st), n);
    /* Now the SSL reads it all from the keep; the rest of the handshake as usual. */
    CHECK_EQ_INT(SSL_do_handshake(p.srv), -1);
    CHECK_EQ_INT(tf_tlsbio_pending(&p.st), 0);
    tf_tlsbio_flush(&p.st);
    to_client(&p);
    CHECK(handshake(&p, 1 << 20));
    pair_free(&p);

    /* Not a handshake record, or longer than a record may be: decided at 5 bytes. */
    struct tf_tlsbio st = {0};
    tf_tlsbio_input(&st, "GET /", 5);
    CHECK(tf_tlsbio_first_record(&st));
    tf_tlsbio_input(&st, "\x16\x03\x01\x40\x01", 5);
    CHECK(tf_tlsbio_first_record(&st));
    tf_tlsbio_input(&st, "\x16\x03\x01\x40\x00", 5);
    CHECK(!tf_tlsbio_first_record(&st));
    tf_tlsbio_input(&st, "\x16\x03\x01", 3);
    CHECK(!tf_tlsbio_first_record(&st));
    tf_tlsbio_clear(&st);
}

/* The ClientHello and ALPN callbacks find their connection through the SSL's BIO. */
static void test_arg(void)
{
    struct pair p;
    pair_init(&p);
    CHECK(tf_tlsbio_arg(p.srv) == &p.sink);
    CHECK(tf_tlsbio_arg(p.cli) == NULL); /* memory BIOs: not ours */
    SSL *bare = SSL_new(p.sctx);
    CHECK(bare != NULL);
    CHECK(tf_tlsbio_arg(bare) == NULL); /* no BIO yet */
    SSL_free(bare);
    pair_free(&p);
}

int main(void)
{
    TF_TEST_RUN(test_whole);
    TF_TEST_RUN(test_bytewise);
    TF_TEST_RUN(test_odd_pieces);
    TF_TEST_RUN(test_keep);
    TF_TEST_RUN(test_keep_append);
    TF_TEST_RUN(test_first_record);
    TF_TEST_RUN(test_arg);
    return TF_TEST_DONE();
}
