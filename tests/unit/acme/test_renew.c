/*
 * test_renew.c: the renewal policy: one third of lifetime with bounded jitter, RFC 3339 and
 * ARI window parsing, picking inside the window, and the ARI certID of a certificate built
 * here with the RFC 9773 §4.1 example's AKI and serial.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/acme/renew.h"
#include "tf_test.h"

#include <openssl/evp.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#define DAY 86400LL

static void check_third(int64_t days)
{
    int64_t nb = 1700000000, life = days * DAY, na = nb + life;
    int64_t latest = na - life / 3;
    int64_t earliest = latest - life / 20;
    uint32_t rnds[] = {0, 1, 12345, 0x7fffffff, 0xffffffff, 987654321};
    bool moved = false;
    for (size_t i = 0; i < TF_ARRAY_LEN(rnds); i++) {
        int64_t t = tf_renew_time(nb, na, rnds[i]);
        CHECK(t <= latest);
        CHECK(t > earliest);
        if (t != latest)
            moved = true;
    }
    CHECK_EQ_INT(tf_renew_time(nb, na, 0), latest);
    CHECK(moved); /* the jitter is real */
}

static void test_third(void)
{
    check_third(90);
    check_third(45);
    check_third(6);
    /* 90 days: renew at day 60 at the latest, day 55.5 at the earliest. */
    int64_t t = tf_renew_time(0, 90 * DAY, 0xffffffffu);
    CHECK(t <= 60 * DAY && t > 60 * DAY - 90 * DAY / 20);
    /* Degenerate lifetimes do not go before not_before or crash. */
    CHECK_EQ_INT(tf_renew_time(100, 100, 5), 100);
    CHECK_EQ_INT(tf_renew_time(100, 50, 5), 50);
    CHECK_EQ_INT(tf_renew_time(100, 110, 7), 110 - 10 / 3);
}

static void test_rfc3339(void)
{
    int64_t t;
    CHECK_EQ_INT(tf_renew_parse_rfc3339("1970-01-01T00:00:00Z", &t), 0);
    CHECK_EQ_INT(t, 0);
    CHECK_EQ_INT(tf_renew_parse_rfc3339("2025-01-02T03:04:05Z", &t), 0);
    CHECK_EQ_INT(t, 1735787045);
    CHECK_EQ_INT(tf_renew_parse_rfc3339("2025-01-02T03:04:05.123456789Z", &t), 0);
    CHECK_EQ_INT(t, 1735787045);
    CHECK_EQ_INT(tf_renew_parse_rfc3339("2025-01-02T05:04:05+02:00", &t), 0);
    CHECK_EQ_INT(t, 1735787045);
    CHECK_EQ_INT(tf_renew_parse_rfc3339("2025-01-01T22:04:05-05:00", &t), 0);
    CHECK_EQ_INT(t, 1735787045);
    const char *bad[] = {"", "2025-01-02", "2025-01-02T03:04:05", "2025-13-02T03:04:05Z",
                         "2025-02-30T03:04:05Z", "2025-01-02T03:04:05.Z",
                         "2025-01-02T03:04:05+0200", "2025-01-02T03:04:05Zjunk", "abcd"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++)
        CHECK_EQ_INT(tf_renew_parse_rfc3339(bad[i], &t), TF_EINVAL);
}

#define P(s) s, strlen(s)

static void test_ari(void)
{
    int64_t s, e;
    char *x = NULL, err[128];
    CHECK_EQ_INT(tf_renew_parse_ari(P("{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\","
                                      "\"end\":\"2025-01-03T04:00:00Z\"},\"explanationURL\":"
                                      "\"https://acme.example.com/docs/ari\"}"),
                                    &s, &e, &x, err, sizeof(err)),
                 0);
    CHECK_EQ_INT(s, 1735790400);
    CHECK_EQ_INT(e, 1735790400 + DAY);
    CHECK_EQ_STR(x, "https://acme.example.com/docs/ari");
    free(x);
    uint64_t rnds[] = {0, 1, 86399, 86400, 123456789, UINT64_MAX};
    for (size_t i = 0; i < TF_ARRAY_LEN(rnds); i++) {
        int64_t t = tf_renew_pick(s, e, rnds[i]);
        CHECK(t >= s && t < e);
    }
    CHECK_EQ_INT(tf_renew_pick(s, e, 86400), s);
    CHECK_EQ_INT(tf_renew_pick(s, e, 5), s + 5);
    CHECK_EQ_INT(tf_renew_pick(e, s, 5), e);

    const char *bad[] = {
        "{\"suggestedWindow\":{\"start\":\"2025-01-03T04:00:00Z\",\"end\":\"2025-01-02T04:00:00Z\"}}",
        "{\"suggestedWindow\":{\"start\":1,\"end\":2}}",
        "{\"suggestedWindow\":\"soon\"}",
        "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\"}}",
        "{\"suggestedWindow\":{\"start\":\"yesterday\",\"end\":\"2025-01-02T04:00:00Z\"}}",
        "{\"suggestedWindow\":{\"start\":\"2025", "[]", "",
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        err[0] = '\0';
        CHECK_EQ_INT(tf_renew_parse_ari(P(bad[i]), &s, &e, &x, err, sizeof(err)), TF_EINVAL);
        CHECK(x == NULL);
        CHECK(strncmp(err, "renewalInfo: ", 13) == 0);
    }
    /* A non-https explanation URL is dropped, the window kept. */
    CHECK_EQ_INT(tf_renew_parse_ari(P("{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\","
                                      "\"end\":\"2025-01-03T04:00:00Z\"},\"explanationURL\":"
                                      "\"javascript:alert(1)\"}"),
                                    &s, &e, &x, err, sizeof(err)),
                 0);
    CHECK(x == NULL);
}

/* A self-signed certificate with the given AKI keyIdentifier and serial. */
static X509 *make_cert(const unsigned char *kid, int kid_len, const unsigned char *serial,
                       int serial_len)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
    akid->keyid = ASN1_OCTET_STRING_new();
    BIGNUM *bn = BN_bin2bn(serial, serial_len, NULL);
    bool ok = key && x && akid && akid->keyid && bn &&
              ASN1_OCTET_STRING_set(akid->keyid, kid, kid_len) &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) && X509_set_version(x, 2) &&
              X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
              X509_gmtime_adj(X509_getm_notAfter(x), 3600) && X509_set_pubkey(x, key) &&
              X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0) == 1 &&
              X509_sign(x, key, EVP_sha256()) > 0;
    BN_free(bn);
    AUTHORITY_KEYID_free(akid);
    EVP_PKEY_free(key);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static void test_cert_id(void)
{
    /* RFC 9773 §4.1's example: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4
     * and serial 00:87:65:43:21 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE". */
    static const unsigned char kid[] = {0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40,
                                        0x41, 0xE1, 0xB3, 0x7B, 0x84, 0x7B, 0xA0,
                                        0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4};
    static const unsigned char serial[] = {0x87, 0x65, 0x43, 0x21};
    X509 *x = make_cert(kid, sizeof(kid), serial, sizeof(serial));
    CHECK(x != NULL);
    char *id = tf_renew_cert_id(x);
    CHECK_EQ_STR(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
    free(id);
    X509_free(x);

    /* A serial without the top bit set has no leading zero octet. */
    static const unsigned char serial2[] = {0x01, 0x02};
    x = make_cert(kid, sizeof(kid), serial2, sizeof(serial2));
    id = tf_renew_cert_id(x);
    CHECK_EQ_STR(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AQI");
    free(id);
    X509_free(x);

    /* No AKI: no certID. */
    X509 *bare = X509_new();
    CHECK(tf_renew_cert_id(bare) == NULL);
    X509_free(bare);
    CHECK(tf_renew_cert_id(NULL) == NULL);
}

int main(void)
{
    TF_TEST_RUN(test_third);
    TF_TEST_RUN(test_rfc3339);
    TF_TEST_RUN(test_ari);
    TF_TEST_RUN(test_cert_id);
    return TF_TEST_DONE();
}
