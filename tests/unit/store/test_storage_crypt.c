/*
 * test_storage_crypt.c: the secret-value envelope: round trip, format and overhead, a fresh
 * nonce per seal, the key id telling another key from an altered value, the storage key
 * name bound in (a value moved to another key does not open), and the key file's one
 * accepted form (64 hex digits) against its near misses.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/store/storage_crypt.h"
#include "tf_test.h"

static void test_round_trip(void)
{
    unsigned char k1[32], k2[32];
    memset(k1, 7, sizeof(k1));
    memset(k2, 8, sizeof(k2));
    struct tf_storage_crypt *a = tf_storage_crypt_new(k1), *b = tf_storage_crypt_new(k2);
    const char *msg = "-----BEGIN PRIVATE KEY-----";
    char *s1, *s2, *out, other[9] = "";
    size_t l1, l2, ol;
    CHECK_EQ_INT(tf_storage_crypt_seal(a, "k/key.pem", msg, strlen(msg), &s1, &l1), 0);
    CHECK_EQ_INT(tf_storage_crypt_seal(a, "k/key.pem", msg, strlen(msg), &s2, &l2), 0);
    CHECK_EQ_INT(l1, strlen(msg) + TF_STORAGE_CRYPT_OVERHEAD);
    CHECK(tf_storage_crypt_sealed(s1, l1));
    CHECK(!tf_storage_crypt_sealed(msg, strlen(msg)));
    CHECK(memcmp(s1, s2, l1) != 0); /* fresh nonce */
    CHECK_EQ_INT(tf_storage_crypt_open(a, "k/key.pem", s1, l1, &out, &ol, other), 0);
    CHECK_EQ_STR(out, msg);
    free(out);
    CHECK_EQ_INT(tf_storage_crypt_open(a, "other/key.pem", s1, l1, &out, &ol, other), TF_EPROTO);
    CHECK_EQ_INT(tf_storage_crypt_open(b, "k/key.pem", s1, l1, &out, &ol, other), TF_EDENIED);
    char id[9];
    tf_storage_crypt_id(a, id);
    CHECK_EQ_STR(other, id);
    CHECK_EQ_INT(tf_storage_crypt_open(a, "k/key.pem", s1, l1 - 1, &out, &ol, other), TF_EPROTO);
    s1[10 + 4] ^= 1;
    CHECK_EQ_INT(tf_storage_crypt_open(a, "k/key.pem", s1, l1, &out, &ol, other), TF_EPROTO);
    free(s1);
    free(s2);
    CHECK_EQ_INT(tf_storage_crypt_seal(a, "e", "", 0, &s1, &l1), 0);
    CHECK_EQ_INT(tf_storage_crypt_open(a, "e", s1, l1, &out, &ol, other), 0);
    CHECK_EQ_INT(ol, 0);
    free(out);
    free(s1);
    tf_storage_crypt_free(a);
    tf_storage_crypt_free(b);
}

static void test_key_file(void)
{
    const char *good = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF\n";
    static const char *bad[] = {
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeef\n",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0\n",
        "0g112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n",
        "ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=\n", ""};
    char path[256], err[400];
    CHECK_EQ_INT(tf_test_tmpfile(good, path, sizeof(path)), 0);
    struct tf_storage_crypt *c = tf_storage_crypt_load(path, err, sizeof(err));
    CHECK(c != NULL);
    unlink(path);
    unsigned char raw[32];
    for (int i = 0; i < 32; i++)
        raw[i] = (unsigned char)(((i % 16) << 4) | (i % 16));
    struct tf_storage_crypt *same = tf_storage_crypt_new(raw);
    char id1[9] = "", id2[9] = "";
    if (c)
        tf_storage_crypt_id(c, id1);
    tf_storage_crypt_id(same, id2);
    CHECK_EQ_STR(id1, id2);
    tf_storage_crypt_free(c);
    tf_storage_crypt_free(same);
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        CHECK_EQ_INT(tf_test_tmpfile(bad[i], path, sizeof(path)), 0);
        err[0] = '\0';
        CHECK(tf_storage_crypt_load(path, err, sizeof(err)) == NULL);
        CHECK(strstr(err, "--storage-key ") == err);
        CHECK(strstr(err, "64 hexadecimal digits") != NULL);
        unlink(path);
    }
    CHECK(tf_storage_crypt_load("/nonexistent/key", err, sizeof(err)) == NULL);
    CHECK(strstr(err, "No such file") != NULL);
}

int main(void)
{
    TF_TEST_RUN(test_round_trip);
    TF_TEST_RUN(test_key_file);
    return TF_TEST_DONE();
}
