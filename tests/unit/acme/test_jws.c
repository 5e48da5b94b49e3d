/*
 * test_jws.c: base64url vectors (RFC 4648 §10, URL-safe), the RFC 7638 §3.1 thumbprint, the
 * canonical JWK, ES256/RS256 JWS checked by an independent OpenSSL verification, EAB HS256,
 * key authorizations, CSR contents and PEM round trips. Pure logic, no I/O.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/acme/csr.h"
#include "tlsfront/acme/jws.h"
#include "tf_test.h"

#include <cjson/cJSON.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdlib.h>

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Decodes a NUL-terminated base64url string into a NUL-terminated heap string, or NULL. */
static char *b64_to_str(const char *s, size_t *len)
{
    unsigned char *out = NULL;
    size_t n = 0;
    if (!s || tf_b64url_decode(s, strlen(s), &out, &n) != 0)
        return NULL;
    char *res = tf_strndup((const char *)out, n);
    free(out);
    if (len)
        *len = n;
    return res;
}

static void test_b64url_vectors(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"", "Zg", "Zm8", "Zm9v", "Zm9vYg", "Zm9vYmE", "Zm9vYmFy"};
    for (size_t i = 0; i < TF_ARRAY_LEN(plain); i++) {
        char *e = tf_b64url_encode(plain[i], strlen(plain[i]));
        CHECK_EQ_STR(e, enc[i]);
        free(e);
        char *d = b64_to_str(enc[i], NULL);
        CHECK_EQ_STR(d, plain[i]);
        free(d);
    }
    /* 0xfb 0xff 0xbf uses both URL-safe characters (standard base64 would give "+/+/"). */
    const unsigned char special[] = {0xfb, 0xff, 0xbf, 0xfb, 0xf0};
    char *e = tf_b64url_encode(special, sizeof special);
    CHECK_EQ_STR(e, "-_-_-_A");
    unsigned char *out = NULL;
    size_t n = 0;
    CHECK_EQ_INT(tf_b64url_decode(e, strlen(e), &out, &n), 0);
    CHECK(n == sizeof special && out && memcmp(out, special, n) == 0);
    free(out);
    free(e);
    /* Correct trailing padding is accepted. */
    char *d = b64_to_str("Zg==", NULL);
    CHECK_EQ_STR(d, "f");
    free(d);
    d = b64_to_str("Zm8=", NULL);
    CHECK_EQ_STR(d, "fo");
    free(d);
}

static void test_b64url_rejects(void)
{
    static const char *const bad[] = {"Zm+v",   "Zm/v", "Zm=v",       "Zg=A",  "Z",
                                      "Zm9vY",  "Zg=",  "Zg===",      "Zm9v=", "Zm 9v",
                                      "Zm9v\n", "====", "\xc3\xa9Zg", "Zm9v!", "*"};
    for (size_t i = 0; i < TF_ARRAY_LEN(bad); i++) {
        unsigned char *out = NULL;
        size_t n = 0;
        int rc = tf_b64url_decode(bad[i], strlen(bad[i]), &out, &n);
        CHECK_EQ_INT(rc, TF_EINVAL);
        if (rc == 0) {
            fprintf(stderr, "  accepted bad input \"%s\"\n", bad[i]);
            free(out);
        }
    }
    /* An embedded NUL inside the given length is not part of the alphabet. */
    unsigned char *out = NULL;
    size_t n = 0;
    CHECK_EQ_INT(tf_b64url_decode("Zm\0v", 4, &out, &n), TF_EINVAL);
    /* slen bounds the input: only "Zm9v" of "Zm9vYg" is decoded. */
    CHECK_EQ_INT(tf_b64url_decode("Zm9vYg", 4, &out, &n), 0);
    CHECK(n == 3 && memcmp(out, "foo", 3) == 0);
    free(out);
}

/* RFC 7638 §3.1 example key. */
static const char rfc7638_n[] =
    "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJE"
    "CPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2Q"
    "vzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6"
    "WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";

static BIGNUM *b64_to_bn(const char *s)
{
    unsigned char *buf = NULL;
    size_t n = 0;
    if (tf_b64url_decode(s, strlen(s), &buf, &n) != 0)
        return NULL;
    BIGNUM *bn = BN_bin2bn(buf, (int)n, NULL);
    free(buf);
    return bn;
}

/* Public RSA key from base64url n and e, built with OSSL_PARAM_BLD / EVP_PKEY_fromdata. */
static EVP_PKEY *rsa_public_from(const char *n64, const char *e64)
{
    BIGNUM *n = b64_to_bn(n64), *e = b64_to_bn(e64);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    EVP_PKEY *key = NULL;
    if (n && e && bld && ctx && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) &&
        (params = OSSL_PARAM_BLD_to_param(bld)) != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
        EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1)
        key = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(e);
    BN_free(n);
    return key;
}

static void test_rfc7638_thumbprint(void)
{
    EVP_PKEY *key = rsa_public_from(rfc7638_n, "AQAB");
    CHECK(key != NULL);
    if (!key)
        return;
    CHECK_EQ_STR(tf_jws_alg(key), "RS256");
    char *json = tf_jwk_json(key);
    char *expect = tf_asprintf("{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\"%s\"}", rfc7638_n);
    CHECK_EQ_STR(json, expect);
    char *tp = tf_jwk_thumbprint(key);
    CHECK_EQ_STR(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    char *ka = tf_key_authorization("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", key);
    CHECK_EQ_STR(ka, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA."
                     "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    CHECK(tf_key_authorization("", key) == NULL);
    CHECK(tf_key_authorization(NULL, key) == NULL);
    free(ka);
    free(tp);
    free(expect);
    free(json);
    EVP_PKEY_free(key);
}

/* Decodes a JWK member to bytes and returns its length (or -1). */
static long jwk_member_len(const cJSON *jwk, const char *name, unsigned char *first)
{
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(jwk, name);
    unsigned char *buf = NULL;
    size_t n = 0;
    if (!cJSON_IsString(m) ||
        tf_b64url_decode(m->valuestring, strlen(m->valuestring), &buf, &n) != 0)
        return -1;
    if (first && n)
        *first = buf[0];
    free(buf);
    return (long)n;
}

/* EC JWK: member order crv,kty,x,y and coordinates always 32 bytes, including a key whose x
 * has a leading zero byte (about one key in 256, so search a bounded number of keys). */
static void test_jwk_ec(void)
{
    int found_short = 0;
    for (int i = 0; i < 4000 && !found_short; i++) {
        EVP_PKEY *key = tf_key_generate(TF_KEY_EC256);
        BIGNUM *x = NULL;
        CHECK(key && EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_EC_PUB_X, &x));
        bool short_x = x && BN_num_bytes(x) < 32;
        if (i == 0 || short_x) {
            found_short = short_x;
            char *json = tf_jwk_json(key);
            cJSON *jwk = json ? cJSON_Parse(json) : NULL;
            const char *order[] = {"crv", "kty", "x", "y"};
            const cJSON *it = jwk ? jwk->child : NULL;
            for (size_t k = 0; k < TF_ARRAY_LEN(order); k++, it = it ? it->next : NULL)
                CHECK(it && strcmp(it->string, order[k]) == 0);
            CHECK(it == NULL);
            CHECK(json && starts_with(json, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\""));
            unsigned char first = 0xff;
            CHECK_EQ_INT(jwk_member_len(jwk, "x", &first), 32);
            CHECK_EQ_INT(jwk_member_len(jwk, "y", NULL), 32);
            if (short_x)
                CHECK_EQ_INT(first, 0);
            cJSON_Delete(jwk);
            free(json);
        }
        BN_free(x);
        EVP_PKEY_free(key);
    }
    CHECK(found_short);
}

static void test_jwk_rsa_and_keygen(void)
{
    static const struct {
        enum tf_key_type type;
        int bits;
    } cases[] = {{TF_KEY_RSA2048, 2048}, {TF_KEY_RSA3072, 3072}, {TF_KEY_RSA4096, 4096}};
    for (size_t i = 0; i < TF_ARRAY_LEN(cases); i++) {
        EVP_PKEY *key = tf_key_generate(cases[i].type);
        CHECK(key && EVP_PKEY_is_a(key, "RSA"));
        CHECK_EQ_INT(EVP_PKEY_get_bits(key), cases[i].bits);
        char *json = tf_jwk_json(key);
        cJSON *jwk = json ? cJSON_Parse(json) : NULL;
        CHECK(json && starts_with(json, "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\""));
        unsigned char first = 0;
        CHECK_EQ_INT(jwk_member_len(jwk, "n", &first), cases[i].bits / 8);
        CHECK(first != 0);
        CHECK_EQ_INT(cJSON_GetArraySize(jwk), 3);
        cJSON_Delete(jwk);
        free(json);
        EVP_PKEY_free(key);
    }
    EVP_PKEY *ec = tf_key_generate(TF_KEY_EC256);
    CHECK(ec && EVP_PKEY_is_a(ec, "EC") && EVP_PKEY_get_bits(ec) == 256);
    CHECK_EQ_STR(tf_jws_alg(ec), "ES256");
    EVP_PKEY_free(ec);
    /* Other curves are not ES256: everything refuses them. */
    EVP_PKEY *p384 = EVP_EC_gen("P-384");
    CHECK(p384 != NULL);
    CHECK(tf_jws_alg(p384) == NULL);
    CHECK(tf_jwk_json(p384) == NULL);
    CHECK(tf_jws_sign(p384, NULL, "n", "https://x/", "{}") == NULL);
    EVP_PKEY_free(p384);
    ERR_clear_error();
}

/* The parts of a flattened JWS. */
struct parsed_jws {
    cJSON *root;
    cJSON *hdr; /* decoded protected header */
    const char *prot, *payload, *sig;
};

static bool parse_jws(const char *text, struct parsed_jws *p)
{
    memset(p, 0, sizeof *p);
    p->root = text ? cJSON_Parse(text) : NULL;
    if (!p->root || cJSON_GetArraySize(p->root) != 3)
        return false;
    p->prot = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p->root, "protected"));
    p->payload = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p->root, "payload"));
    p->sig = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p->root, "signature"));
    char *h = b64_to_str(p->prot, NULL);
    p->hdr = h ? cJSON_Parse(h) : NULL;
    free(h);
    return p->payload && p->sig && p->hdr;
}

static void free_jws(struct parsed_jws *p)
{
    cJSON_Delete(p->hdr);
    cJSON_Delete(p->root);
}

static const char *hdr_str(const struct parsed_jws *p, const char *name)
{
    return cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p->hdr, name));
}

/* Verifies sig over "prot.payload" with key. ES256 signatures must be 64 raw bytes and are
 * converted back to DER here, independently of the code under test. */
static bool verify_jws(EVP_PKEY *key, const char *prot, const char *payload, const char *sig64)
{
    unsigned char *sig = NULL, *der = NULL;
    size_t siglen = 0;
    bool ok = false;
    ECDSA_SIG *es = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    char *input = tf_asprintf("%s.%s", prot, payload);
    if (tf_b64url_decode(sig64, strlen(sig64), &sig, &siglen) != 0 || !ctx)
        goto out;
    if (EVP_PKEY_is_a(key, "EC")) {
        if (siglen != 64 || !(es = ECDSA_SIG_new()))
            goto out;
        BIGNUM *r = BN_bin2bn(sig, 32, NULL), *s = BN_bin2bn(sig + 32, 32, NULL);
        if (!r || !s || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            goto out;
        }
        int dlen = i2d_ECDSA_SIG(es, &der);
        if (dlen <= 0)
            goto out;
        free(sig);
        sig = tf_malloc((size_t)dlen);
        memcpy(sig, der, (size_t)dlen);
        siglen = (size_t)dlen;
    }
    ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, key) == 1 &&
         EVP_DigestVerify(ctx, sig, siglen, (unsigned char *)input, strlen(input)) == 1;
out:
    ERR_clear_error();
    OPENSSL_free(der);
    ECDSA_SIG_free(es);
    EVP_MD_CTX_free(ctx);
    free(input);
    free(sig);
    return ok;
}

static size_t sig_len(const char *sig64)
{
    size_t n = 0;
    free(b64_to_str(sig64, &n));
    return n;
}

/* Full checks of a JWS signed with jwk (kid == NULL). */
static void check_jwk_jws(EVP_PKEY *key, const char *alg, size_t expect_siglen)
{
    const char *url = "https://ca.test/acme/new-acct?a=\"b\"\\c";
    const char *payload = "{\"termsOfServiceAgreed\":true}";
    char *jws = tf_jws_sign(key, NULL, "nonce-1_x", url, payload);
    struct parsed_jws p;
    CHECK(parse_jws(jws, &p));
    CHECK_EQ_STR(hdr_str(&p, "alg"), alg);
    CHECK_EQ_STR(hdr_str(&p, "nonce"), "nonce-1_x");
    CHECK_EQ_STR(hdr_str(&p, "url"), url);
    CHECK(cJSON_GetObjectItemCaseSensitive(p.hdr, "kid") == NULL);
    char *jwk_hdr = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(p.hdr, "jwk"));
    char *jwk = tf_jwk_json(key);
    CHECK_EQ_STR(jwk_hdr, jwk);
    cJSON_free(jwk_hdr);
    free(jwk);
    char *pl = b64_to_str(p.payload, NULL);
    CHECK_EQ_STR(pl, payload);
    free(pl);
    CHECK_EQ_INT(sig_len(p.sig), expect_siglen);
    CHECK(verify_jws(key, p.prot, p.payload, p.sig));
    /* A tampered payload or header must not verify. */
    char *evil = tf_b64url_encode("{\"termsOfServiceAgreed\":false}", 30);
    CHECK(!verify_jws(key, p.prot, evil, p.sig));
    CHECK(!verify_jws(key, p.payload, p.payload, p.sig));
    free(evil);
    free_jws(&p);
    free(jws);
}

static void test_jws_es256(void)
{
    EVP_PKEY *key = tf_key_generate(TF_KEY_EC256);
    check_jwk_jws(key, "ES256", 64);
    /* About one signature in 256 has an R (or an S) shorter than 32 bytes; it must still be
     * 64 bytes on the wire, left-padded, and verify. Every signature is verified until both
     * cases have been seen (bounded; missing one in 5000 tries has odds near e^-19). */
    bool short_r = false, short_s = false;
    for (int i = 0; i < 5000 && !(short_r && short_s); i++) {
        char *jws = tf_jws_sign(key, "k", "n", "https://ca.test/", "{}");
        struct parsed_jws p;
        unsigned char *sig = NULL;
        size_t n = 0;
        CHECK(parse_jws(jws, &p));
        if (p.sig && tf_b64url_decode(p.sig, strlen(p.sig), &sig, &n) == 0 && n == 64) {
            short_r = short_r || sig[0] == 0;
            short_s = short_s || sig[32] == 0;
        }
        CHECK_EQ_INT(n, 64);
        CHECK(p.sig && verify_jws(key, p.prot, p.payload, p.sig));
        free(sig);
        free_jws(&p);
        free(jws);
    }
    CHECK(short_r && short_s);
    EVP_PKEY_free(key);
}

static void test_jws_rs256(void)
{
    EVP_PKEY *key = tf_key_generate(TF_KEY_RSA2048);
    check_jwk_jws(key, "RS256", 256);
    EVP_PKEY_free(key);
}

/* kid instead of jwk, POST-as-GET with an empty payload, and no nonce. */
static void test_jws_kid_post_as_get(void)
{
    EVP_PKEY *key = tf_key_generate(TF_KEY_EC256);
    const char *kid = "https://ca.test/acme/acct/42";
    char *jws = tf_jws_sign(key, kid, "abc", "https://ca.test/acme/order/1", "");
    struct parsed_jws p;
    CHECK(parse_jws(jws, &p));
    CHECK(jws && strstr(jws, "\"payload\":\"\"") != NULL);
    CHECK_EQ_STR(p.payload, "");
    CHECK_EQ_STR(hdr_str(&p, "kid"), kid);
    CHECK(cJSON_GetObjectItemCaseSensitive(p.hdr, "jwk") == NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(p.hdr), 4);
    CHECK(verify_jws(key, p.prot, p.payload, p.sig));
    free_jws(&p);
    free(jws);

    jws = tf_jws_sign(key, kid, NULL, "https://ca.test/x", "{}");
    CHECK(parse_jws(jws, &p));
    CHECK(cJSON_GetObjectItemCaseSensitive(p.hdr, "nonce") == NULL);
    CHECK_EQ_INT(cJSON_GetArraySize(p.hdr), 3);
    CHECK(verify_jws(key, p.prot, p.payload, p.sig));
    free_jws(&p);
    free(jws);
    CHECK(tf_jws_sign(key, kid, "n", NULL, "{}") == NULL);
    CHECK(tf_jws_sign(key, kid, "n", "https://x/", NULL) == NULL);
    CHECK(tf_jws_sign(NULL, kid, "n", "https://x/", "{}") == NULL);
    EVP_PKEY_free(key);
}

static void test_jws_eab(void)
{
    EVP_PKEY *acct = tf_key_generate(TF_KEY_EC256);
    const unsigned char hkey[] = "0123456789abcdef0123456789abcdef";
    const char *url = "https://ca.test/acme/new-account";
    char *eab = tf_jws_eab("kid-1", hkey, 32, acct, url);
    struct parsed_jws p;
    CHECK(parse_jws(eab, &p));
    CHECK_EQ_STR(hdr_str(&p, "alg"), "HS256");
    CHECK_EQ_STR(hdr_str(&p, "kid"), "kid-1");
    CHECK_EQ_STR(hdr_str(&p, "url"), url);
    CHECK_EQ_INT(cJSON_GetArraySize(p.hdr), 3);
    char *pl = b64_to_str(p.payload, NULL);
    char *jwk = tf_jwk_json(acct);
    CHECK_EQ_STR(pl, jwk);
    /* Recompute the MAC independently with HMAC(). */
    char *input = tf_asprintf("%s.%s", p.prot, p.payload);
    unsigned char mac[32];
    unsigned int maclen = 0;
    CHECK(HMAC(EVP_sha256(), hkey, 32, (unsigned char *)input, strlen(input), mac, &maclen));
    char *mac64 = tf_b64url_encode(mac, maclen);
    CHECK_EQ_STR(p.sig, mac64);
    /* A different key gives a different MAC over the same input. */
    char *eab2 = tf_jws_eab("kid-1", hkey + 1, 31, acct, url);
    struct parsed_jws p2;
    CHECK(parse_jws(eab2, &p2));
    CHECK(p2.sig && p.sig && strcmp(p2.sig, p.sig) != 0);
    CHECK(p2.prot && p.prot && strcmp(p2.prot, p.prot) == 0);
    free_jws(&p2);
    free(eab2);
    free(mac64);
    free(input);
    free(jwk);
    free(pl);
    free_jws(&p);
    free(eab);
    CHECK(tf_jws_eab("kid-1", hkey, 0, acct, url) == NULL);
    CHECK(tf_jws_eab(NULL, hkey, 32, acct, url) == NULL);
    CHECK(tf_jws_eab("kid-1", hkey, 32, acct, NULL) == NULL);
    EVP_PKEY_free(acct);
}

/* The SAN dNSNames of a CSR's extensionRequest, in order, joined by ',' (heap string). */
static char *csr_san_list(X509_REQ *req)
{
    STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
    GENERAL_NAMES *gens = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
    char *res = tf_strdup("");
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const char *v =
            g->type == GEN_DNS ? (const char *)ASN1_STRING_get0_data(g->d.dNSName) : "(not-dns)";
        char *next = tf_asprintf("%s%s%s", res, i ? "," : "", v);
        free(res);
        res = next;
    }
    GENERAL_NAMES_free(gens);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return res;
}

static X509_REQ *csr_decode(const char *b64)
{
    unsigned char *der = NULL;
    size_t n = 0;
    if (!b64 || tf_b64url_decode(b64, strlen(b64), &der, &n) != 0)
        return NULL;
    const unsigned char *p = der;
    X509_REQ *req = d2i_X509_REQ(NULL, &p, (long)n);
    if (req && p != der + n) { /* trailing garbage */
        X509_REQ_free(req);
        req = NULL;
    }
    free(der);
    return req;
}

static void check_csr(EVP_PKEY *key, const char *const *names, int n, const char *cn,
                      const char *sans)
{
    char *b64 = tf_csr_b64url(key, names, n);
    X509_REQ *req = csr_decode(b64);
    CHECK(req != NULL);
    if (!req) {
        free(b64);
        return;
    }
    EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
    CHECK(pub && EVP_PKEY_eq(pub, key) == 1);
    CHECK_EQ_INT(X509_REQ_verify(req, pub), 1);
    CHECK_EQ_INT(X509_REQ_get_signature_nid(req),
                 EVP_PKEY_is_a(key, "EC") ? NID_ecdsa_with_SHA256 : NID_sha256WithRSAEncryption);
    X509_NAME *subj = X509_REQ_get_subject_name(req);
    char got_cn[300] = "";
    int cn_len = X509_NAME_get_text_by_NID(subj, NID_commonName, got_cn, sizeof got_cn);
    if (cn) {
        CHECK_EQ_STR(got_cn, cn);
        CHECK_EQ_INT(X509_NAME_entry_count(subj), 1);
    } else {
        CHECK_EQ_INT(cn_len, -1);
        CHECK_EQ_INT(X509_NAME_entry_count(subj), 0);
    }
    char *got = csr_san_list(req);
    CHECK_EQ_STR(got, sans);
    free(got);
    X509_REQ_free(req);
    free(b64);
}

static void test_csr(void)
{
    EVP_PKEY *ec = tf_key_generate(TF_KEY_EC256);
    EVP_PKEY *rsa = tf_key_generate(TF_KEY_RSA2048);
    const char *names[] = {"example.com", "www.example.com", "a.b.example.org"};
    check_csr(ec, names, 3, "example.com", "example.com,www.example.com,a.b.example.org");
    check_csr(rsa, names + 1, 1, "www.example.com", "www.example.com");
    /* A first name longer than 64 characters cannot be a CN; it stays in the SAN. */
    const char *longn[] = {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example-long.com",
                           "b.example.com"};
    char *sans = tf_asprintf("%s,%s", longn[0], longn[1]);
    check_csr(ec, longn, 2, NULL, sans);
    free(sans);
    const char *bad1[] = {"ok.example.com", "bad name.com"};
    const char *bad2[] = {""};
    const char *bad3[] = {"a.com", NULL};
    CHECK(tf_csr_b64url(ec, bad1, 2) == NULL);
    CHECK(tf_csr_b64url(ec, bad2, 1) == NULL);
    CHECK(tf_csr_b64url(ec, bad3, 2) == NULL);
    CHECK(tf_csr_b64url(ec, names, 0) == NULL);
    CHECK(tf_csr_b64url(NULL, names, 1) == NULL);
    ERR_clear_error();
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

static void check_pem_round_trip(EVP_PKEY *key)
{
    char *pem = tf_key_to_pem(key);
    CHECK(pem && starts_with(pem, "-----BEGIN PRIVATE KEY-----\n"));
    EVP_PKEY *back = pem ? tf_key_from_pem(pem, strlen(pem)) : NULL;
    CHECK(back && EVP_PKEY_eq(back, key) == 1);
    char *t1 = tf_jwk_thumbprint(key), *t2 = back ? tf_jwk_thumbprint(back) : NULL;
    CHECK(t1 && t2 && strcmp(t1, t2) == 0);
    /* The private half survived: a JWS from the reloaded key verifies with the original. */
    char *jws = back ? tf_jws_sign(back, "k", "n", "https://ca.test/", "{}") : NULL;
    struct parsed_jws p;
    CHECK(parse_jws(jws, &p));
    CHECK(p.sig && verify_jws(key, p.prot, p.payload, p.sig));
    free_jws(&p);
    free(jws);
    free(t2);
    free(t1);
    EVP_PKEY_free(back);
    free(pem);
}

/* key written by OpenSSL in its traditional (SEC1 / PKCS#1) PEM form, or encrypted PKCS#8. */
static char *pem_other_form(EVP_PKEY *key, bool encrypted)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *data = NULL, *res = NULL;
    int ok = encrypted ? PEM_write_bio_PKCS8PrivateKey(bio, key, EVP_aes_128_cbc(), NULL, 0, NULL,
                                                       (void *)"secret")
                       : PEM_write_bio_PrivateKey_traditional(bio, key, NULL, NULL, 0, NULL, NULL);
    long n = ok ? BIO_get_mem_data(bio, &data) : 0;
    if (n > 0)
        res = tf_strndup(data, (size_t)n);
    BIO_free(bio);
    return res;
}

static void test_pem(void)
{
    EVP_PKEY *ec = tf_key_generate(TF_KEY_EC256);
    EVP_PKEY *rsa = tf_key_generate(TF_KEY_RSA2048);
    check_pem_round_trip(ec);
    check_pem_round_trip(rsa);
    EVP_PKEY *keys[] = {ec, rsa};
    const char *heads[] = {"-----BEGIN EC PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----"};
    for (int i = 0; i < 2; i++) {
        char *trad = pem_other_form(keys[i], false);
        CHECK(trad && starts_with(trad, heads[i]));
        EVP_PKEY *back = trad ? tf_key_from_pem(trad, strlen(trad)) : NULL;
        CHECK(back && EVP_PKEY_eq(back, keys[i]) == 1);
        EVP_PKEY_free(back);
        free(trad);
        /* Encrypted keys are refused without prompting for a passphrase. */
        char *enc = pem_other_form(keys[i], true);
        CHECK(enc && strstr(enc, "ENCRYPTED PRIVATE KEY") != NULL);
        CHECK(enc && tf_key_from_pem(enc, strlen(enc)) == NULL);
        free(enc);
    }
    const char garbage[] = "-----BEGIN PRIVATE KEY-----\nnot base64!\n-----END PRIVATE KEY-----\n";
    CHECK(tf_key_from_pem(garbage, strlen(garbage)) == NULL);
    CHECK(tf_key_from_pem("", 0) == NULL);
    char *pem = tf_key_to_pem(ec);
    CHECK(pem && tf_key_from_pem(pem, strlen(pem) / 2) == NULL); /* truncated */
    free(pem);
    ERR_clear_error();
    EVP_PKEY_free(rsa);
    EVP_PKEY_free(ec);
}

int main(void)
{
    TF_TEST_RUN(test_b64url_vectors);
    TF_TEST_RUN(test_b64url_rejects);
    TF_TEST_RUN(test_rfc7638_thumbprint);
    TF_TEST_RUN(test_jwk_ec);
    TF_TEST_RUN(test_jwk_rsa_and_keygen);
    TF_TEST_RUN(test_jws_es256);
    TF_TEST_RUN(test_jws_rs256);
    TF_TEST_RUN(test_jws_kid_post_as_get);
    TF_TEST_RUN(test_jws_eab);
    TF_TEST_RUN(test_csr);
    TF_TEST_RUN(test_pem);
    return TF_TEST_DONE();
}
