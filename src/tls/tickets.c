/*
 * tickets.c: session ticket key rings and the ticket encryption callback (AES-256-CBC +
 * HMAC-SHA256, the scheme OpenSSL's own ticket format expects from the callback). Rings are
 * immutable after tf_tickets_rotate returns; never logs key material.
 */
#include "tlsfront/tls/tickets.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <string.h>

struct tf_ticket_ring *tf_tickets_rotate(const struct tf_ticket_ring *prev)
{
    struct tf_ticket_ring *r = tf_calloc(1, sizeof *r);
    tf_ref_init(&r->ref, 1);
    struct tf_ticket_key *k = &r->keys[0];
    r->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (!r->aes || RAND_bytes(k->name, sizeof k->name) != 1 ||
        RAND_bytes(k->aes, sizeof k->aes) != 1 || RAND_bytes(k->hmac, sizeof k->hmac) != 1) {
        EVP_CIPHER_free(r->aes);
        OPENSSL_cleanse(r, sizeof *r);
        free(r);
        return NULL;
    }
    r->n = 1;
    for (int i = 0; prev && i < prev->n && r->n < TF_TICKET_KEYS; i++)
        r->keys[r->n++] = prev->keys[i];
    return r;
}

struct tf_ticket_ring *tf_tickets_from_keys(const struct tf_ticket_key *keys, int n)
{
    if (n < 1 || n > TF_TICKET_KEYS)
        return NULL;
    struct tf_ticket_ring *r = tf_calloc(1, sizeof *r);
    tf_ref_init(&r->ref, 1);
    r->aes = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
    if (!r->aes) {
        free(r);
        return NULL;
    }
    memcpy(r->keys, keys, (size_t)n * sizeof *keys);
    r->n = n;
    return r;
}

void tf_tickets_ref(struct tf_ticket_ring *r)
{
    if (r)
        tf_ref_inc(&r->ref);
}

void tf_tickets_unref(struct tf_ticket_ring *r)
{
    if (r && tf_ref_dec(&r->ref)) {
        EVP_CIPHER_free(r->aes);
        OPENSSL_cleanse(r, sizeof *r);
        free(r);
    }
}

static int set_hmac(EVP_MAC_CTX *hctx, const struct tf_ticket_key *k)
{
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
    params[1] = OSSL_PARAM_construct_end();
    return EVP_MAC_init(hctx, k->hmac, sizeof k->hmac, params) == 1;
}

static int next_iv(OSSL_LIB_CTX *lib, struct tf_ticket_ivs *ivs, unsigned char *iv)
{
    if (ivs->left == 0) {
        if (RAND_bytes_ex(lib, ivs->buf, sizeof ivs->buf, 0) != 1)
            return -1;
        ivs->left = TF_TICKET_IV_BATCH;
    }
    ivs->left--;
    memcpy(iv, ivs->buf + (size_t)ivs->left * EVP_MAX_IV_LENGTH, EVP_MAX_IV_LENGTH);
    return 0;
}

int tf_tickets_cb(const struct tf_ticket_ring *ring, OSSL_LIB_CTX *lib, struct tf_ticket_ivs *ivs,
                  unsigned char key_name[16], unsigned char *iv, EVP_CIPHER_CTX *ctx,
                  EVP_MAC_CTX *hctx, int enc, bool renew)
{
    if (!ring || ring->n == 0)
        return enc ? -1 : 0; /* no keys: no ticket issued / ticket ignored (full handshake) */
    if (enc) {
        const struct tf_ticket_key *k = &ring->keys[0];
        if (next_iv(lib, ivs, iv) != 0)
            return -1;
        memcpy(key_name, k->name, sizeof k->name);
        if (EVP_EncryptInit_ex(ctx, ring->aes, NULL, k->aes, iv) != 1 || !set_hmac(hctx, k))
            return -1;
        return 1;
    }
    for (int i = 0; i < ring->n; i++) {
        const struct tf_ticket_key *k = &ring->keys[i];
        if (memcmp(key_name, k->name, sizeof k->name) != 0)
            continue;
        if (EVP_DecryptInit_ex(ctx, ring->aes, NULL, k->aes, iv) != 1 || !set_hmac(hctx, k))
            return -1;
        /* 2: valid, and issue a fresh ticket (under the current key) in this handshake. */
        return i == 0 && !renew ? 1 : 2;
    }
    return 0; /* unknown key: full handshake */
}
