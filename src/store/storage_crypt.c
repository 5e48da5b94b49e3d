/*
 * storage_crypt.c: the AES-256-GCM envelope of secret storage values (see
 * include/storage_crypt.h for the format). Owns the key bytes (wiped on free) and nothing
 * else; never logs (callers name the value and decide), never keeps plaintext it was given.
 */
#include "tlsfront/store/storage_crypt.h"

#include "tlsfront/base/common.h"

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAGIC_LEN 4
#define ID_LEN 4
#define NONCE_LEN 12
#define TAG_LEN 16
#define HEAD_LEN (MAGIC_LEN + ID_LEN + NONCE_LEN)
#define KEYFILE_MAX 256

/* The key; owned by whoever made it. */
struct tf_storage_crypt {
    unsigned char key[32];
    unsigned char id[ID_LEN];
};

struct tf_storage_crypt *tf_storage_crypt_new(const unsigned char key[32])
{
    struct tf_storage_crypt *c = tf_calloc(1, sizeof(*c));
    memcpy(c->key, key, sizeof(c->key));
    unsigned char h[SHA256_DIGEST_LENGTH];
    SHA256(c->key, sizeof(c->key), h);
    memcpy(c->id, h, ID_LEN);
    return c;
}

void tf_storage_crypt_free(struct tf_storage_crypt *c)
{
    if (!c)
        return;
    OPENSSL_cleanse(c->key, sizeof(c->key));
    free(c);
}

static int hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    ch = tolower(ch);
    return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

struct tf_storage_crypt *tf_storage_crypt_load(const char *file, char *err, size_t errlen)
{
    char text[KEYFILE_MAX + 1];
    unsigned char key[32];
    struct tf_storage_crypt *c = NULL;
    FILE *f = fopen(file, "rb");
    if (!f) {
        snprintf(err, errlen, "--storage-key %s: %s", file, strerror(errno));
        return NULL;
    }
    size_t n = fread(text, 1, KEYFILE_MAX, f);
    bool more = fgetc(f) != EOF;
    fclose(f);
    text[n] = '\0';
    const char *p = text;
    while (*p && isspace((unsigned char)*p))
        p++;
    size_t len = strlen(p);
    while (len > 0 && isspace((unsigned char)p[len - 1]))
        len--;
    if (more || len != 64 || strlen(p) != n - (size_t)(p - text)) {
        snprintf(err, errlen, "--storage-key %s: expected 64 hexadecimal digits (32 bytes)",
                 file);
        goto out;
    }
    for (size_t i = 0; i < 32; i++) {
        int hi = hexval(p[2 * i]), lo = hexval(p[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "--storage-key %s: expected 64 hexadecimal digits (32 bytes)",
                     file);
            goto out;
        }
        key[i] = (unsigned char)(hi << 4 | lo);
    }
    c = tf_storage_crypt_new(key);
out:
    OPENSSL_cleanse(key, sizeof(key));
    OPENSSL_cleanse(text, sizeof(text));
    return c;
}

bool tf_storage_crypt_sealed(const void *data, size_t len)
{
    return len >= MAGIC_LEN && memcmp(data, TF_STORAGE_CRYPT_MAGIC, MAGIC_LEN) == 0;
}

void tf_storage_crypt_id(const struct tf_storage_crypt *c, char id[9])
{
    snprintf(id, 9, "%02x%02x%02x%02x", c->id[0], c->id[1], c->id[2], c->id[3]);
}

/* One GCM pass over in (encrypt or decrypt) into out; tag is written (encrypt) or checked
 * (decrypt). 0, or TF_ETLS / TF_EPROTO (decrypt: the tag does not match). */
static int gcm(const struct tf_storage_crypt *c, bool enc, const unsigned char *nonce,
               const char *name, const unsigned char *in, size_t len, unsigned char *out,
               unsigned char *tag)
{
    int rc = TF_ETLS, n = 0;
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx || len > INT32_MAX)
        goto out;
    if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL, enc) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) != 1 ||
        EVP_CipherInit_ex(ctx, NULL, NULL, c->key, nonce, enc) != 1 ||
        EVP_CipherUpdate(ctx, NULL, &n, (const unsigned char *)name, (int)strlen(name)) != 1 ||
        EVP_CipherUpdate(ctx, out, &n, in, (int)len) != 1)
        goto out;
    if (!enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, TAG_LEN, tag) != 1)
        goto out;
    if (EVP_CipherFinal_ex(ctx, out + n, &n) != 1) {
        rc = enc ? TF_ETLS : TF_EPROTO;
        goto out;
    }
    if (enc && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_LEN, tag) != 1)
        goto out;
    rc = 0;
out:
    EVP_CIPHER_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int tf_storage_crypt_seal(const struct tf_storage_crypt *c, const char *name, const void *in,
                          size_t len, char **out, size_t *outlen)
{
    unsigned char *buf = tf_malloc(HEAD_LEN + len + TAG_LEN + 1);
    memcpy(buf, TF_STORAGE_CRYPT_MAGIC, MAGIC_LEN);
    memcpy(buf + MAGIC_LEN, c->id, ID_LEN);
    unsigned char *nonce = buf + MAGIC_LEN + ID_LEN;
    int rc = RAND_bytes(nonce, NONCE_LEN) == 1 ? 0 : TF_ETLS;
    if (!rc)
        rc = gcm(c, true, nonce, name, in, len, buf + HEAD_LEN, buf + HEAD_LEN + len);
    ERR_clear_error();
    if (rc) {
        free(buf);
        return rc;
    }
    *out = (char *)buf;
    *outlen = HEAD_LEN + len + TAG_LEN;
    return 0;
}

int tf_storage_crypt_open(const struct tf_storage_crypt *c, const char *name, const void *in,
                          size_t len, char **out, size_t *outlen, char other_id[9])
{
    const unsigned char *p = in;
    if (len < HEAD_LEN + TAG_LEN || !tf_storage_crypt_sealed(in, len))
        return TF_EPROTO;
    if (memcmp(p + MAGIC_LEN, c->id, ID_LEN) != 0) {
        snprintf(other_id, 9, "%02x%02x%02x%02x", p[4], p[5], p[6], p[7]);
        return TF_EDENIED;
    }
    size_t clen = len - HEAD_LEN - TAG_LEN;
    unsigned char *buf = tf_malloc(clen + 1);
    unsigned char tag[TAG_LEN];
    memcpy(tag, p + HEAD_LEN + clen, TAG_LEN);
    int rc = gcm(c, false, p + MAGIC_LEN + ID_LEN, name, p + HEAD_LEN, clen, buf, tag);
    if (rc) {
        OPENSSL_cleanse(buf, clen);
        free(buf);
        return rc == TF_ETLS ? TF_ETLS : TF_EPROTO;
    }
    buf[clen] = '\0';
    *out = (char *)buf;
    *outlen = clen;
    return 0;
}
