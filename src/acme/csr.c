/*
 * csr.c: the certificate signing request ACME finalize wants (RFC 8555 §7.4): subject CN =
 * first name, an extensionRequest with one subjectAltName listing every name as a dNSName,
 * signed with SHA-256 by the certificate key, DER and then base64url. Also owns the small
 * X.509 helpers the TLS-ALPN-01 certificate shares (name checks, SAN, CN). Pure functions:
 * no I/O, no logging, no state; the OpenSSL error queue is left for the caller.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/acme/csr.h"
#include "tlsfront/base/name.h"
#include "tlsfront/base/b64url.h"

#include <openssl/asn1.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdlib.h>
#include <string.h>

#define X520_CN_MAX 64 /* ub-common-name, RFC 5280 Appendix A.1 */

/* Appends name to gens as a dNSName (IA5String). Returns 0 or TF_ETLS. */
static int csr_push_dns(GENERAL_NAMES *gens, const char *name)
{
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (!gen || !ia5 || !ASN1_STRING_set(ia5, name, (int)strlen(name)))
        goto fail;
    GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
    ia5 = NULL; /* owned by gen now */
    if (!sk_GENERAL_NAME_push(gens, gen))
        goto fail;
    return 0;
fail:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gen);
    return TF_ETLS;
}

X509_EXTENSION *tf_x509_san_ext(const char *const *names, int n_names)
{
    X509_EXTENSION *ext = NULL;
    if (!names || n_names <= 0)
        return NULL;
    GENERAL_NAMES *gens = GENERAL_NAMES_new();
    if (!gens)
        return NULL;
    for (int i = 0; i < n_names; i++) {
        if (!tf_name_pattern_valid(names[i]) || csr_push_dns(gens, names[i]) != 0)
            goto out;
    }
    ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, gens);
out:
    GENERAL_NAMES_free(gens);
    return ext;
}

int tf_x509_name_add_cn(X509_NAME *xn, const char *cn)
{
    if (!cn)
        return TF_EINVAL;
    if (strlen(cn) > X520_CN_MAX)
        return 0;
    if (!X509_NAME_add_entry_by_txt(xn, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0))
        return TF_ETLS;
    return 0;
}

/* Adds the extensionRequest attribute (PKCS#9) carrying the SAN to req. 0 or TF_ETLS. */
static int csr_add_san(X509_REQ *req, const char *const *names, int n_names)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509_EXTENSION *san = tf_x509_san_ext(names, n_names);
    int rc = TF_ETLS;
    if (!exts || !san || !sk_X509_EXTENSION_push(exts, san))
        goto out;
    san = NULL; /* owned by exts now */
    if (!X509_REQ_add_extensions(req, exts))
        goto out;
    rc = 0;
out:
    X509_EXTENSION_free(san);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    return rc;
}

/* DER of req, base64url-encoded, or NULL. */
static char *csr_der_b64url(X509_REQ *req)
{
    unsigned char *der = NULL;
    int len = i2d_X509_REQ(req, &der);
    if (len <= 0)
        return NULL;
    char *res = tf_b64url_encode(der, (size_t)len);
    OPENSSL_free(der);
    return res;
}

char *tf_csr_b64url(EVP_PKEY *key, const char *const *names, int n_names)
{
    X509_REQ *req = NULL;
    char *res = NULL;
    if (!key || !names || n_names <= 0 || !tf_name_pattern_valid(names[0]))
        return NULL;
    req = X509_REQ_new();
    if (!req || !X509_REQ_set_version(req, X509_REQ_VERSION_1))
        goto out;
    if (tf_x509_name_add_cn(X509_REQ_get_subject_name(req), names[0]) != 0)
        goto out;
    if (csr_add_san(req, names, n_names) != 0)
        goto out;
    if (!X509_REQ_set_pubkey(req, key) || X509_REQ_sign(req, key, EVP_sha256()) <= 0)
        goto out;
    res = csr_der_b64url(req);
out:
    X509_REQ_free(req);
    return res;
}
