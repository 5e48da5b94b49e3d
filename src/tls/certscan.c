/*
 * certscan.c: what indexing a certificate file needs, read straight from the DER of its
 * first PEM certificate: the SAN dNSNames (or the subject CN), the validity and the public
 * key's algorithm. OpenSSL 3's d2i_X509 builds a decoder chain for the public key on every
 * call, which made indexing cost most of a full load; this walker reads only the fields it
 * needs, with every length checked against its container. It accepts only the plain shape
 * of a server certificate: anything else (another PEM layout, an unknown key algorithm, a
 * certificate without names) returns -1 and the caller falls back to OpenSSL, so this file
 * never decides that a certificate is bad. Never logs, never allocates beyond the decoded
 * DER buffer (kept by the caller between files).
 */
#include "certload_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A DER cursor: [p, end). */
struct der {
    const unsigned char *p, *end;
};

/* Read one TLV (short or long definite length) into *tag and *content; -1 when malformed. */
static int tlv(struct der *d, unsigned char *tag, struct der *content)
{
    if (d->end - d->p < 2)
        return -1;
    unsigned char t = *d->p++;
    size_t len = *d->p++;
    if (len & 0x80) {
        int n = (int)(len & 0x7f);
        if (n == 0 || n > 3 || d->end - d->p < n)
            return -1;
        len = 0;
        while (n--)
            len = (len << 8) | *d->p++;
    }
    if ((size_t)(d->end - d->p) < len)
        return -1;
    *tag = t;
    content->p = d->p;
    content->end = d->p + len;
    d->p += len;
    return 0;
}

static int expect(struct der *d, unsigned char want, struct der *content)
{
    unsigned char t;
    return tlv(d, &t, content) == 0 && t == want ? 0 : -1;
}

static bool oid_is(const struct der *o, const unsigned char *v, size_t n)
{
    return (size_t)(o->end - o->p) == n && memcmp(o->p, v, n) == 0;
}

static const unsigned char OID_SAN[] = {0x55, 0x1d, 0x11};
static const unsigned char OID_CN[] = {0x55, 0x04, 0x03};
static const unsigned char OID_EC[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
static const unsigned char OID_RSA[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};

static int digits(const unsigned char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* UTCTime (RFC 5280 4.1.2.5.1: YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ). */
static int der_time(struct der *d, int64_t *out)
{
    unsigned char t;
    struct der v;
    if (tlv(d, &t, &v) < 0)
        return -1;
    size_t n = (size_t)(v.end - v.p);
    int yl = t == 0x17 ? 2 : t == 0x18 ? 4 : 0;
    if (!yl || n != (size_t)yl + 11 || v.p[n - 1] != 'Z')
        return -1;
    int year = digits(v.p, yl);
    if (yl == 2)
        year += year < 50 ? 2000 : 1900;
    const unsigned char *r = v.p + yl;
    struct tm tm = {.tm_year = year - 1900, .tm_mon = digits(r, 2) - 1,
                    .tm_mday = digits(r + 2, 2), .tm_hour = digits(r + 4, 2),
                    .tm_min = digits(r + 6, 2), .tm_sec = digits(r + 8, 2)};
    if (year < 0 || tm.tm_mon < 0 || tm.tm_mday < 1 || tm.tm_hour < 0 || tm.tm_min < 0 ||
        tm.tm_sec < 0)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

/* The SAN extension's dNSNames ([2] IA5String) to add. */
static int san_names(struct der v, struct tf_certscan *out)
{
    struct der seq, gn;
    unsigned char t;
    if (expect(&v, 0x30, &seq) < 0)
        return -1;
    while (seq.p < seq.end) {
        if (tlv(&seq, &t, &gn) < 0)
            return -1;
        if (t == 0x82 && out->add(out->arg, gn.p, (size_t)(gn.end - gn.p)))
            out->n_added++;
    }
    return 0;
}

/* Extensions ([3] EXPLICIT SEQUENCE OF Extension): the SAN only. */
static int extensions(struct der x, struct tf_certscan *out)
{
    struct der seq, ext, oid, val;
    unsigned char t;
    if (expect(&x, 0x30, &seq) < 0)
        return -1;
    while (seq.p < seq.end) {
        if (expect(&seq, 0x30, &ext) < 0 || expect(&ext, 0x06, &oid) < 0)
            return -1;
        if (ext.p < ext.end && *ext.p == 0x01 && tlv(&ext, &t, &val) < 0) /* critical */
            return -1;
        if (expect(&ext, 0x04, &val) < 0)
            return -1;
        if (oid_is(&oid, OID_SAN, sizeof OID_SAN) && san_names(val, out) < 0)
            return -1;
    }
    return 0;
}

/* The first CN of a Name (SEQUENCE OF SET OF AttributeTypeAndValue), as its raw bytes. */
static int subject_cn(struct der name, struct tf_certscan *out)
{
    struct der set, atv, oid, val;
    unsigned char t;
    while (name.p < name.end) {
        if (expect(&name, 0x31, &set) < 0)
            return -1;
        while (set.p < set.end) {
            if (expect(&set, 0x30, &atv) < 0 || expect(&atv, 0x06, &oid) < 0 ||
                tlv(&atv, &t, &val) < 0)
                return -1;
            if (oid_is(&oid, OID_CN, sizeof OID_CN)) {
                out->n_added += out->add(out->arg, val.p, (size_t)(val.end - val.p));
                return 0;
            }
        }
    }
    return 0;
}

/* Walk a DER Certificate (RFC 5280 4.1). */
static int walk(struct der all, struct tf_certscan *out)
{
    struct der cert, tbs, x, subject, spki, alg, oid;
    unsigned char t;
    if (expect(&all, 0x30, &cert) < 0 || expect(&cert, 0x30, &tbs) < 0)
        return -1;
    if (tbs.p < tbs.end && *tbs.p == 0xa0 && tlv(&tbs, &t, &x) < 0) /* version */
        return -1;
    if (expect(&tbs, 0x02, &x) < 0 || expect(&tbs, 0x30, &x) < 0 || /* serial, signature */
        expect(&tbs, 0x30, &x) < 0 || expect(&tbs, 0x30, &x) < 0)    /* issuer, validity */
        return -1;
    if (der_time(&x, &out->not_before) < 0 || der_time(&x, &out->not_after) < 0)
        return -1;
    if (expect(&tbs, 0x30, &subject) < 0 || expect(&tbs, 0x30, &spki) < 0 ||
        expect(&spki, 0x30, &alg) < 0 || expect(&alg, 0x06, &oid) < 0)
        return -1;
    if (oid_is(&oid, OID_EC, sizeof OID_EC))
        out->kind = TF_CERT_EC;
    else if (oid_is(&oid, OID_RSA, sizeof OID_RSA))
        out->kind = TF_CERT_RSA;
    else
        return -1;
    out->n_added = 0;
    while (tbs.p < tbs.end) {
        if (tlv(&tbs, &t, &x) < 0)
            return -1;
        if (t == 0xa3 && extensions(x, out) < 0)
            return -1;
    }
    /* As collect_names in certload.c: the CN only when the SAN gave no valid name. */
    return out->n_added ? 0 : subject_cn(subject, out);
}

/* Base64 (RFC 4648 4, line breaks allowed) of [p, end) into out; the number of bytes, or -1
 * for anything else (the caller then asks OpenSSL, which knows every variant). */
static long unbase64(const char *p, const char *end, unsigned char *out)
{
    static const signed char val[256] = {
        ['A'] = 1,  ['B'] = 2,  ['C'] = 3,  ['D'] = 4,  ['E'] = 5,  ['F'] = 6,  ['G'] = 7,
        ['H'] = 8,  ['I'] = 9,  ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14,
        ['O'] = 15, ['P'] = 16, ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21,
        ['V'] = 22, ['W'] = 23, ['X'] = 24, ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28,
        ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32, ['g'] = 33, ['h'] = 34, ['i'] = 35,
        ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40, ['o'] = 41, ['p'] = 42,
        ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48, ['w'] = 49,
        ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
        ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63,
        ['/'] = 64, ['\n'] = -1, ['\r'] = -1, ['='] = -2};
    uint32_t acc = 0;
    int bits = 0, pad = 0;
    long n = 0;
    for (; p < end; p++) {
        int v = val[(unsigned char)*p];
        if (v == -1)
            continue;
        if (v == -2) {
            pad++;
            continue;
        }
        if (v == 0 || pad)
            return -1;
        acc = (acc << 6) | (uint32_t)(v - 1);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
        }
    }
    return pad > 2 || (bits + 6 * pad) % 8 != 0 ? -1 : n;
}

int tf_certscan_leaf(const char *pem, size_t len, struct tf_certscan *out)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    const char *b = memmem(pem, len, begin, sizeof begin - 1);
    if (!b)
        return -1;
    const char *body = b + sizeof begin - 1;
    const char *e = memmem(body, len - (size_t)(body - pem), "-----END", 8);
    if (!e || memchr(body, ':', (size_t)(e - body))) /* PEM headers: not the plain shape */
        return -1;
    /* Decoded DER is at most 3/4 of the base64 text. */
    size_t need = (size_t)(e - body) / 4 * 3 + 4;
    if (need > out->der_cap) {
        out->der_cap = need + 1024;
        out->der = tf_realloc(out->der, out->der_cap);
    }
    long n = unbase64(body, e, out->der);
    return n < 0 ? -1 : walk((struct der){out->der, out->der + n}, out);
}
