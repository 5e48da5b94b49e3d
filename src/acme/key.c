/*
 * key.c: private keys for ACME accounts and certificates: generation (EC P-256, RSA 2048 or
 * 4096; RSA is slow, so callers run it on libuv's thread pool) and PKCS#8 PEM both ways.
 * Pure functions: no I/O, no logging, results owned by the caller.
 */
#include "tlsfront/acme/key.h"
#include "tlsfront/base/common.h"

#include <limits.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdlib.h>
#include <string.h>

EVP_PKEY *tf_key_generate(enum tf_key_type type)
{
    switch (type) {
    case TF_KEY_EC256:
        return EVP_EC_gen("P-256");
    case TF_KEY_RSA2048:
        return EVP_RSA_gen(2048); /* e = 65537 is OpenSSL's default */
    case TF_KEY_RSA3072:
        return EVP_RSA_gen(3072);
    case TF_KEY_RSA4096:
        return EVP_RSA_gen(4096);
    }
    return NULL;
}

char *tf_key_to_pem(EVP_PKEY *key)
{
    char *pem = NULL, *data = NULL;
    BIO *bio = key ? BIO_new(BIO_s_mem()) : NULL;
    if (!bio)
        goto out;
    /* PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3. */
    if (!PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL))
        goto out;
    long n = BIO_get_mem_data(bio, &data);
    if (n <= 0 || !data)
        goto out;
    pem = tf_strndup(data, (size_t)n);
out:
    BIO_free(bio);
    return pem;
}

/* Key files are never encrypted; refusing a passphrase keeps OpenSSL from prompting on a tty. */
static int key_no_passphrase_cb(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

EVP_PKEY *tf_key_from_pem(const char *pem, size_t len)
{
    if (!pem || len == 0 || len > INT_MAX)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return NULL;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, key_no_passphrase_cb, NULL);
    BIO_free(bio);
    return key;
}
