/*
 * jws.c: the account-side crypto of ACME as pure functions: the
 * public JWK with its RFC 7638 thumbprint, JWS in flattened JSON serialization (RFC 7515 §7.2.2,
 * RFC 8555 §6.2), External Account Binding (RFC 8555 §7.3.4) and key authorizations (RFC 8555
 * §8.1). It never does I/O, never logs (callers log the OpenSSL error queue once, where they
 * decide), and never keeps state. Every returned string or key is owned by the caller. Only
 * EC P-256 (ES256) and RSA (RS256) keys are supported, as RFC 8555 §6.2 requires of servers.
 */
#include "tlsfront/acme/jws.h"
#include "tlsfront/base/common.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P256_COORD_LEN 32

/* True for an EC key on P-256, the only curve ES256 allows (RFC 7518 §3.4). */
static bool jws_is_p256(EVP_PKEY *key)
{
    char group[64];
    size_t glen = 0;
    if (!EVP_PKEY_is_a(key, "EC"))
        return false;
    if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                        &glen))
        return false;
    int nid = OBJ_txt2nid(group);
    if (nid == NID_undef)
        nid = EC_curve_nist2nid(group);
    return nid == NID_X9_62_prime256v1;
}

const char *tf_jws_alg(EVP_PKEY *key)
{
    if (!key)
        return NULL;
    if (jws_is_p256(key))
        return "ES256";
    if (EVP_PKEY_is_a(key, "RSA"))
        return "RS256";
    return NULL;
}

/* base64url of a BIGNUM parameter of key; pad > 0 left-pads to pad bytes, 0 gives the
 * minimal big-endian form with no leading zero bytes (RFC 7518 §6.3.1.1). */
static char *jws_bn_param_b64(EVP_PKEY *key, const char *param, int pad)
{
    BIGNUM *bn = NULL;
    unsigned char *buf = NULL;
    char *res = NULL;
    if (!EVP_PKEY_get_bn_param(key, param, &bn))
        goto out;
    int n = pad > 0 ? pad : BN_num_bytes(bn);
    if (n <= 0 || BN_num_bytes(bn) > n)
        goto out;
    buf = tf_malloc((size_t)n);
    if (BN_bn2binpad(bn, buf, n) != n)
        goto out;
    res = tf_b64url_encode(buf, (size_t)n);
out:
    free(buf);
    BN_free(bn);
    return res;
}

/* cJSON fails only when malloc does; STYLE says allocation failure aborts. */
static void jws_oom(void)
{
    fprintf(stderr, "tlsfront: out of memory building JSON\n");
    abort();
}

static cJSON *jws_obj_new(void)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj)
        jws_oom();
    return obj;
}

static void jws_add_str(cJSON *obj, const char *name, const char *val)
{
    if (!cJSON_AddStringToObject(obj, name, val))
        jws_oom();
}

/* cJSON's printer allocates with its own hooks; hand back a tf_strdup'ed copy so callers can
 * always free(). Member order is insertion order, which the canonical JWK relies on. */
static char *jws_print(const cJSON *obj)
{
    char *s = cJSON_PrintUnformatted(obj);
    if (!s)
        jws_oom();
    char *copy = tf_strdup(s);
    cJSON_free(s);
    return copy;
}

/* Adds the public JWK members to obj in RFC 7638 §3.2 lexicographic order: crv, kty, x, y
 * for EC (coordinates left-padded to 32 bytes, RFC 7518 §6.2.1.2) and e, kty, n for RSA.
 * Returns 0, TF_EINVAL for an unsupported key or TF_ETLS if a parameter is unavailable. */
static int jws_jwk_add_members(cJSON *obj, EVP_PKEY *key)
{
    const char *alg = tf_jws_alg(key);
    if (!alg)
        return TF_EINVAL;
    bool ec = strcmp(alg, "ES256") == 0;
    int pad = ec ? P256_COORD_LEN : 0;
    int rc = TF_ETLS;
    char *a = jws_bn_param_b64(key, ec ? OSSL_PKEY_PARAM_EC_PUB_X : OSSL_PKEY_PARAM_RSA_E, pad);
    char *b = jws_bn_param_b64(key, ec ? OSSL_PKEY_PARAM_EC_PUB_Y : OSSL_PKEY_PARAM_RSA_N, pad);
    if (!a || !b)
        goto out;
    if (ec) {
        jws_add_str(obj, "crv", "P-256");
        jws_add_str(obj, "kty", "EC");
        jws_add_str(obj, "x", a);
        jws_add_str(obj, "y", b);
    } else {
        jws_add_str(obj, "e", a);
        jws_add_str(obj, "kty", "RSA");
        jws_add_str(obj, "n", b);
    }
    rc = 0;
out:
    free(a);
    free(b);
    return rc;
}

char *tf_jwk_json(EVP_PKEY *key)
{
    cJSON *obj = jws_obj_new();
    char *res = NULL;
    if (jws_jwk_add_members(obj, key) == 0)
        res = jws_print(obj);
    cJSON_Delete(obj);
    return res;
}

char *tf_jwk_thumbprint(EVP_PKEY *key)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    char *json = tf_jwk_json(key);
    char *res = NULL;
    if (!json)
        return NULL;
    if (EVP_Digest(json, strlen(json), md, &mdlen, EVP_sha256(), NULL) && mdlen == sizeof md)
        res = tf_b64url_encode(md, mdlen);
    free(json);
    return res;
}

char *tf_key_authorization(const char *token, EVP_PKEY *account_key)
{
    if (!token || !*token)
        return NULL;
    char *thumb = tf_jwk_thumbprint(account_key);
    if (!thumb)
        return NULL;
    char *res = tf_asprintf("%s.%s", token, thumb);
    free(thumb);
    return res;
}

/* Converts the DER ECDSA-Sig-Value that EVP_DigestSign produces to the fixed 64-byte R||S
 * form of RFC 7518 §3.4, each half left-padded to 32 bytes. *out is malloc'd. */
static int jws_ecdsa_der_to_raw(const unsigned char *der, size_t derlen, unsigned char **out,
                                size_t *outlen)
{
    const unsigned char *p = der;
    const BIGNUM *r = NULL, *s = NULL;
    unsigned char *raw = NULL;
    int rc = TF_ETLS;
    ECDSA_SIG *es = derlen <= LONG_MAX ? d2i_ECDSA_SIG(NULL, &p, (long)derlen) : NULL;
    if (!es)
        goto out;
    ECDSA_SIG_get0(es, &r, &s);
    raw = tf_malloc(2 * P256_COORD_LEN);
    if (BN_bn2binpad(r, raw, P256_COORD_LEN) != P256_COORD_LEN ||
        BN_bn2binpad(s, raw + P256_COORD_LEN, P256_COORD_LEN) != P256_COORD_LEN)
        goto out;
    *out = raw;
    *outlen = 2 * P256_COORD_LEN;
    raw = NULL;
    rc = 0;
out:
    free(raw);
    ECDSA_SIG_free(es);
    return rc;
}

/* Signs data with SHA-256 (ECDSA for EC keys, PKCS#1 v1.5 for RSA, OpenSSL's default RSA
 * padding) and returns the signature as JWS wants it in a malloc'd *sig. 0 or TF_ETLS. */
static int jws_sign_bytes(EVP_PKEY *key, bool ec, const char *data, unsigned char **sig,
                          size_t *siglen)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    const unsigned char *in = (const unsigned char *)data;
    size_t inlen = strlen(data), derlen = 0;
    unsigned char *der = NULL;
    int rc = TF_ETLS;
    if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1)
        goto out;
    if (EVP_DigestSign(ctx, NULL, &derlen, in, inlen) != 1)
        goto out;
    der = tf_malloc(derlen);
    if (EVP_DigestSign(ctx, der, &derlen, in, inlen) != 1)
        goto out;
    if (ec) {
        rc = jws_ecdsa_der_to_raw(der, derlen, sig, siglen);
        goto out;
    }
    *sig = der;
    *siglen = derlen;
    der = NULL;
    rc = 0;
out:
    free(der);
    EVP_MD_CTX_free(ctx);
    return rc;
}

/* base64url of the protected header {"alg","jwk"|"kid","nonce"?,"url"} (RFC 8555 §6.2).
 * cJSON escapes the server-provided strings. NULL if the JWK cannot be built. */
static char *jws_protected_b64(EVP_PKEY *key, const char *alg, const char *kid, const char *nonce,
                               const char *url)
{
    cJSON *hdr = jws_obj_new();
    char *json = NULL, *res = NULL;
    jws_add_str(hdr, "alg", alg);
    if (kid) {
        jws_add_str(hdr, "kid", kid);
    } else {
        cJSON *jwk = jws_obj_new();
        if (!cJSON_AddItemToObject(hdr, "jwk", jwk))
            jws_oom();
        if (jws_jwk_add_members(jwk, key) != 0)
            goto out;
    }
    if (nonce)
        jws_add_str(hdr, "nonce", nonce);
    jws_add_str(hdr, "url", url);
    json = jws_print(hdr);
    res = tf_b64url_encode(json, strlen(json));
out:
    free(json);
    cJSON_Delete(hdr);
    return res;
}

/* The flattened JSON serialization; every member is base64url, so no escaping is needed. */
static char *jws_flattened(const char *prot, const char *payload, const unsigned char *sig,
                           size_t siglen)
{
    char *sig64 = tf_b64url_encode(sig, siglen);
    char *res = tf_asprintf("{\"protected\":\"%s\",\"payload\":\"%s\",\"signature\":\"%s\"}", prot,
                            payload, sig64);
    free(sig64);
    return res;
}

char *tf_jws_sign(EVP_PKEY *key, const char *kid, const char *nonce, const char *url,
                  const char *payload)
{
    const char *alg = tf_jws_alg(key);
    unsigned char *sig = NULL;
    size_t siglen = 0;
    char *prot = NULL, *pay = NULL, *input = NULL, *res = NULL;
    if (!alg || !url || !payload)
        return NULL;
    prot = jws_protected_b64(key, alg, kid, nonce, url);
    if (!prot)
        goto out;
    /* An empty payload encodes to "", which is exactly POST-as-GET (RFC 8555 §6.3). */
    pay = tf_b64url_encode(payload, strlen(payload));
    input = tf_asprintf("%s.%s", prot, pay);
    if (jws_sign_bytes(key, strcmp(alg, "ES256") == 0, input, &sig, &siglen) != 0)
        goto out;
    res = jws_flattened(prot, pay, sig, siglen);
out:
    free(sig);
    free(input);
    free(pay);
    free(prot);
    return res;
}

char *tf_jws_eab(const char *eab_kid, const unsigned char *hmac_key, size_t hmac_len,
                 EVP_PKEY *account_key, const char *url)
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    size_t maclen = 0;
    char *jwk = NULL, *hdr_json = NULL, *prot = NULL, *pay = NULL, *input = NULL, *res = NULL;
    if (!eab_kid || !url || !hmac_key || hmac_len == 0)
        return NULL;
    jwk = tf_jwk_json(account_key);
    if (!jwk)
        return NULL;
    cJSON *hdr = jws_obj_new();
    jws_add_str(hdr, "alg", "HS256");
    jws_add_str(hdr, "kid", eab_kid);
    jws_add_str(hdr, "url", url);
    hdr_json = jws_print(hdr);
    cJSON_Delete(hdr);
    prot = tf_b64url_encode(hdr_json, strlen(hdr_json));
    pay = tf_b64url_encode(jwk, strlen(jwk));
    input = tf_asprintf("%s.%s", prot, pay);
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, hmac_key, hmac_len,
                   (const unsigned char *)input, strlen(input), mac, sizeof mac, &maclen))
        goto out;
    res = jws_flattened(prot, pay, mac, maclen);
out:
    free(input);
    free(pay);
    free(prot);
    free(hdr_json);
    free(jwk);
    return res;
}
