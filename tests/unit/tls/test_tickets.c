/*
 * test_tickets.c: the session ticket key ring and the ticket callback body: a ticket sealed
 * under one ring opens under it and under the next rotations while its key is kept, the
 * callback asks OpenSSL to renew (return 2) for an older key and whenever the caller says so
 * (TLS 1.3) and not otherwise, unknown keys and a missing ring mean a full handshake; IVs
 * drawn in batches are all different, across batches too, and every ticket still opens.
 */
#include "tf_test.h"
#include "tlsfront/tls/tickets.h"

#include <openssl/evp.h>
#include <string.h>

struct cb_ctx {
    EVP_CIPHER_CTX *c;
    EVP_MAC *mac;
    EVP_MAC_CTX *h;
};

static void cb_open(struct cb_ctx *x)
{
    x->c = EVP_CIPHER_CTX_new();
    x->mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    x->h = x->mac ? EVP_MAC_CTX_new(x->mac) : NULL;
    if (!x->c || !x->h)
        abort();
}

static void cb_close(struct cb_ctx *x)
{
    EVP_CIPHER_CTX_free(x->c);
    EVP_MAC_CTX_free(x->h);
    EVP_MAC_free(x->mac);
}

/* A sealed "ticket": the key name, the IV and one encrypted block. */
struct sealed {
    unsigned char name[16];
    unsigned char iv[EVP_MAX_IV_LENGTH];
    unsigned char ct[32];
    int ct_len;
};

static const unsigned char PLAIN[16] = "a session state";
static struct tf_ticket_ivs ivs; /* the worker's, for these tests */

static int seal(const struct tf_ticket_ring *r, struct sealed *t)
{
    struct cb_ctx x;
    cb_open(&x);
    int rc = tf_tickets_cb(r, NULL, &ivs, t->name, t->iv, x.c, x.h, 1, false);
    int n = 0, m = 0;
    if (rc == 1 && (EVP_EncryptUpdate(x.c, t->ct, &n, PLAIN, sizeof PLAIN) != 1 ||
                    EVP_EncryptFinal_ex(x.c, t->ct + n, &m) != 1))
        rc = -100;
    t->ct_len = n + m;
    cb_close(&x);
    return rc;
}

/* The callback's answer for t under r; the plaintext must come back when it accepts. */
static int open_ticket(const struct tf_ticket_ring *r, struct sealed *t, bool renew)
{
    struct cb_ctx x;
    cb_open(&x);
    int rc = tf_tickets_cb(r, NULL, &ivs, t->name, t->iv, x.c, x.h, 0, renew);
    if (rc > 0) {
        unsigned char out[64];
        int n = 0, m = 0;
        if (EVP_DecryptUpdate(x.c, out, &n, t->ct, t->ct_len) != 1 ||
            EVP_DecryptFinal_ex(x.c, out + n, &m) != 1 || n + m != (int)sizeof PLAIN ||
            memcmp(out, PLAIN, sizeof PLAIN) != 0)
            rc = -100;
    }
    cb_close(&x);
    return rc;
}

static void test_renew(void)
{
    struct tf_ticket_ring *r1 = tf_tickets_rotate(NULL);
    CHECK(r1 != NULL);
    struct sealed t;
    CHECK_EQ_INT(seal(r1, &t), 1);
    /* Current key: TLS 1.2 keeps the ticket (1), TLS 1.3 always gets a fresh one (2). */
    CHECK_EQ_INT(open_ticket(r1, &t, false), 1);
    CHECK_EQ_INT(open_ticket(r1, &t, true), 2);
    /* After rotations the old key still opens it, and asks for a ticket under the new key. */
    struct tf_ticket_ring *r2 = tf_tickets_rotate(r1);
    struct tf_ticket_ring *r3 = tf_tickets_rotate(r2);
    CHECK_EQ_INT(open_ticket(r2, &t, false), 2);
    CHECK_EQ_INT(open_ticket(r3, &t, false), 2);
    CHECK_EQ_INT(open_ticket(r3, &t, true), 2);
    /* Rotated out of the ring: unknown key, full handshake. */
    struct tf_ticket_ring *r4 = tf_tickets_rotate(r3);
    CHECK_EQ_INT(open_ticket(r4, &t, false), 0);
    CHECK_EQ_INT(open_ticket(r4, &t, true), 0);
    tf_tickets_unref(r4);
    tf_tickets_unref(r3);
    tf_tickets_unref(r2);
    tf_tickets_unref(r1);
}

static void test_no_ring(void)
{
    struct sealed t;
    memset(&t, 0, sizeof t);
    CHECK_EQ_INT(seal(NULL, &t), -1);
    CHECK_EQ_INT(open_ticket(NULL, &t, true), 0);
}

static void test_iv_batches(void)
{
    enum { N = 2 * TF_TICKET_IV_BATCH + 3 };
    static struct sealed t[N];
    struct tf_ticket_ring *r = tf_tickets_rotate(NULL);
    CHECK(r != NULL);
    memset(&ivs, 0, sizeof ivs);
    int bad = 0, same = 0;
    for (int i = 0; i < N; i++) {
        bad += seal(r, &t[i]) != 1 || open_ticket(r, &t[i], true) != 2;
        for (int j = 0; j < i; j++)
            same += memcmp(t[i].iv, t[j].iv, sizeof t[i].iv) == 0;
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(same, 0);
    CHECK(ivs.left == TF_TICKET_IV_BATCH - 3); /* three batches drawn, three IVs used of the last */
    tf_tickets_unref(r);
}

int main(void)
{
    TF_TEST_RUN(test_renew);
    TF_TEST_RUN(test_no_ring);
    TF_TEST_RUN(test_iv_batches);
    return TF_TEST_DONE();
}
