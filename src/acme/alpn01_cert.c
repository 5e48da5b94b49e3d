/*
 * alpn01_cert.c: builds the self-signed TLS-ALPN-01 challenge certificate (RFC 8737 §3) from a
 * name and its key authorization. A pure function: no I/O, no logging, no state; the pending
 * challenge table lives elsewhere. It must never reuse a key: every certificate gets a fresh
 * P-256 key, so a challenge certificate can never be mistaken for (or leak) a real one.
 */
#include "tlsfront/acme/alpn01_cert.h"
#include "tlsfront/base/name.h"
#include "tlsfront/tls/alpn01.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/csr.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/objects.h>
#include <openssl/x509v3.h>
#include <string.h>

#define ACME_IDENTIFIER_OID "1.3.6.1.5.5.7.1.31" /* id-pe-acmeIdentifier, RFC 8737 §6.1 */
#define ALPN01_NOT_BEFORE_S (-3600)              /* tolerate CA clocks running behind */
#define ALPN01_NOT_AFTER_S (7 * 24 * 3600)       /* a challenge lives minutes; keep it short */
#define ALPN01_SERIAL_BITS 128

/*
 * The critical acmeIdentifier extension. Its extnValue is the DER of an OCTET STRING holding
 * SHA-256(key authorization), so the extension's bytes are 04 20 <digest> (RFC 8737 §3).
 * Returns a new extension or NULL.
 */
static X509_EXTENSION *alpn01_acme_ext(const char *key_authorization)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    unsigned char *der = NULL;
    ASN1_OCTET_STRING *inner = NULL, *value = NULL;
    X509_EXTENSION *ext = NULL;
    ASN1_OBJECT *oid = OBJ_txt2obj(ACME_IDENTIFIER_OID, 1);
    if (!oid ||
        !EVP_Digest(key_authorization, strlen(key_authorization), md, &mdlen, EVP_sha256(), NULL))
        goto out;
    inner = ASN1_OCTET_STRING_new();
    value = ASN1_OCTET_STRING_new();
    if (!inner || !value || !ASN1_OCTET_STRING_set(inner, md, (int)mdlen))
        goto out;
    int derlen = i2d_ASN1_OCTET_STRING(inner, &der);
    if (derlen <= 0 || !ASN1_OCTET_STRING_set(value, der, derlen))
        goto out;
    ext = X509_EXTENSION_create_by_OBJ(NULL, oid, 1, value);
out:
    OPENSSL_free(der);
    ASN1_OCTET_STRING_free(value);
    ASN1_OCTET_STRING_free(inner);
    ASN1_OBJECT_free(oid);
    return ext;
}

/* A random positive serial of up to 128 bits (RFC 5280 §4.1.2.2 allows 20 octets). */
static int alpn01_set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int rc = TF_ETLS;
    if (!bn || !BN_rand(bn, ALPN01_SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ODD))
        goto out;
    if (!BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)))
        goto out;
    rc = 0;
out:
    BN_free(bn);
    return rc;
}

/* Version, serial, validity, subject = issuer = CN=name (when it fits) and the public key. */
static int alpn01_set_fields(X509 *x, const char *name, EVP_PKEY *key)
{
    X509_NAME *xn = X509_NAME_new();
    int rc = TF_ETLS;
    if (!xn || !X509_set_version(x, X509_VERSION_3) || alpn01_set_serial(x) != 0)
        goto out;
    /* Real time, not tf_wall_now(): the CA checks validity against its own clock. */
    if (!X509_gmtime_adj(X509_getm_notBefore(x), ALPN01_NOT_BEFORE_S) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), ALPN01_NOT_AFTER_S))
        goto out;
    if (tf_x509_name_add_cn(xn, name) != 0 || !X509_set_subject_name(x, xn) ||
        !X509_set_issuer_name(x, xn) || !X509_set_pubkey(x, key))
        goto out;
    rc = 0;
out:
    X509_NAME_free(xn);
    return rc;
}

/* Adds the single-dNSName SAN and the acmeIdentifier extension. 0 or TF_ETLS. */
static int alpn01_add_exts(X509 *x, const char *name, const char *key_authorization)
{
    const char *names[1] = {name};
    X509_EXTENSION *san = tf_x509_san_ext(names, 1);
    X509_EXTENSION *acme = alpn01_acme_ext(key_authorization);
    int rc = TF_ETLS;
    if (san && acme && X509_add_ext(x, san, -1) && X509_add_ext(x, acme, -1))
        rc = 0;
    X509_EXTENSION_free(acme);
    X509_EXTENSION_free(san);
    return rc;
}

int tf_alpn01_make_cert(const char *name, const char *key_authorization, X509 **cert,
                        EVP_PKEY **key)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    if (!tf_name_pattern_valid(name) || !key_authorization || !*key_authorization)
        return TF_EINVAL;
    k = EVP_EC_gen("P-256");
    x = X509_new();
    if (!k || !x)
        goto fail;
    if (alpn01_set_fields(x, name, k) != 0 || alpn01_add_exts(x, name, key_authorization) != 0)
        goto fail;
    if (X509_sign(x, k, EVP_sha256()) <= 0)
        goto fail;
    *cert = x;
    *key = k;
    return 0;
fail:
    X509_free(x);
    EVP_PKEY_free(k);
    return TF_ETLS;
}
