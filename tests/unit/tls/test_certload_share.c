/*
 * test_certload_share.c: a certificate loaded for the cache (no context of its own) has the
 * private key object as its leaf's public key, so that a handshake's key match compares one
 * object with itself; the certificate's bytes (what a handshake sends) and its
 * SubjectPublicKeyInfo stay exactly those of the file; a certificate whose public key the
 * key would encode differently (a compressed point) keeps its own decoded public key; a
 * certificate loaded with a context of its own (a small store) is left as decoded.
 * Certificates are made here with OpenSSL (ECDSA P-256 and RSA-2048, self-signed).
 */
#include "certload_int.h"
#include "tlsfront/tls/certstore.h"
#include "tf_test.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

struct pem {
    char *crt, *key;
    size_t crt_len, key_len;
};

static char *bio_text(BIO *b, size_t *len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *out = malloc((size_t)n + 1);
    memcpy(out, data, (size_t)n);
    out[n] = 0;
    *len = (size_t)n;
    return out;
}

/* A self-signed certificate for name; compressed: its SubjectPublicKeyInfo holds a
 * compressed EC point while the key file holds the key in the usual uncompressed form. */
static struct pem make(const char *type, const char *name, bool compressed)
{
    EVP_PKEY *k = strcmp(type, "EC") == 0 ? EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256")
                                          : EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    CHECK(k != NULL);
    if (compressed)
        CHECK(EVP_PKEY_set_utf8_string_param(k, "point-format", "compressed") == 1);
    X509 *x = X509_new();
    CHECK(X509_set_version(x, 2) == 1);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    CHECK(X509_set_issuer_name(x, n) == 1);
    CHECK(X509_set_pubkey(x, k) == 1);
    char san[300];
    snprintf(san, sizeof san, "DNS:%s", name);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, NULL, NID_subject_alt_name, san);
    CHECK(ext && X509_add_ext(x, ext, -1) == 1);
    X509_EXTENSION_free(ext);
    CHECK(X509_sign(x, k, EVP_sha256()) > 0);
    if (compressed)
        CHECK(EVP_PKEY_set_utf8_string_param(k, "point-format", "uncompressed") == 1);
    struct pem p;
    BIO *b = BIO_new(BIO_s_mem());
    CHECK(PEM_write_bio_X509(b, x) == 1);
    p.crt = bio_text(b, &p.crt_len);
    BIO_free(b);
    b = BIO_new(BIO_s_mem());
    CHECK(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL) == 1);
    p.key = bio_text(b, &p.key_len);
    BIO_free(b);
    X509_free(x);
    EVP_PKEY_free(k);
    return p;
}

/* DER of the first certificate in p (the file's bytes) and of its SubjectPublicKeyInfo. */
static void file_der(const struct pem *p, unsigned char **der, int *n, unsigned char **spki,
                     int *n_spki)
{
    BIO *b = BIO_new_mem_buf(p->crt, (int)p->crt_len);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    CHECK(x != NULL);
    *der = NULL;
    *spki = NULL;
    *n = i2d_X509(x, der);
    *n_spki = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), spki);
    X509_free(x);
    BIO_free(b);
}

/* Load p as the cache loads (no_ctx) or as a small store does; check what the handshake
 * sends and that OpenSSL accepts the pair; return whether the key object is shared. */
static bool load(const struct pem *p, bool no_ctx)
{
    struct parse_cache pc;
    tf_certload_cache_init(&pc);
    pc.no_ctx = no_ctx;
    struct tf_cert *c = NULL;
    char err[256] = "";
    int rc = tf_certload_parse(p->crt, p->crt_len, p->key, p->key_len, "test.pem", &pc, &c,
                               err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK_EQ_INT(rc, PARSE_OK);
    tf_certload_cache_free(&pc);
    unsigned char *want = NULL, *want_spki = NULL, *got = NULL, *got_spki = NULL;
    int n_want, n_want_spki;
    file_der(p, &want, &n_want, &want_spki, &n_want_spki);
    int n_got = i2d_X509(c->leaf, &got);
    int n_got_spki = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(c->leaf), &got_spki);
    CHECK(n_got == n_want && memcmp(got, want, (size_t)n_want) == 0);
    CHECK(n_got_spki == n_want_spki && memcmp(got_spki, want_spki, (size_t)n_want_spki) == 0);
    CHECK(X509_check_private_key(c->leaf, c->key) == 1);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    CHECK(SSL_CTX_use_cert_and_key(ctx, c->leaf, c->key, c->chain, 1) == 1);
    SSL_CTX_free(ctx);
    bool shared = X509_get0_pubkey(c->leaf) == c->key;
    OPENSSL_free(want);
    OPENSSL_free(want_spki);
    OPENSSL_free(got);
    OPENSSL_free(got_spki);
    tf_cert_unref(c);
    return shared;
}

static void test_shared_for_the_cache(void)
{
    struct pem ec = make("EC", "ec.share.test", false);
    struct pem rsa = make("RSA", "rsa.share.test", false);
    CHECK(load(&ec, true));
    CHECK(load(&rsa, true));
    /* with contexts of their own (a small store) the key match runs once, at start */
    CHECK(!load(&ec, false));
    CHECK(!load(&rsa, false));
    free(ec.crt), free(ec.key), free(rsa.crt), free(rsa.key);
}

static void test_other_encoding_kept(void)
{
    struct pem p = make("EC", "compressed.share.test", true);
    CHECK(!load(&p, true));
    free(p.crt), free(p.key);
}

int main(void)
{
    TF_TEST_RUN(test_shared_for_the_cache);
    TF_TEST_RUN(test_other_encoding_kept);
    return TF_TEST_DONE();
}
