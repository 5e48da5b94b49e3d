/*
 * renew.c: the renewal-time policy as pure functions (see renew.h): one third of the lifetime
 * remaining with jitter, ARI suggestedWindow parsing and picking (RFC 9773 §4.2), and the ARI
 * certID (RFC 9773 §4.1). No clock, no randomness and no I/O of its own.
 */
#include "tlsfront/acme/renew.h"
#include "tlsfront/base/common.h"
#include "tlsfront/acme/jws.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t tf_renew_time(int64_t not_before, int64_t not_after, uint32_t rnd)
{
    int64_t life = not_after - not_before;
    if (life <= 0)
        return not_after;
    int64_t span = life / 20;
    int64_t jitter = span > 0 ? (int64_t)(rnd % (uint64_t)span) : 0;
    int64_t t = not_after - life / 3 - jitter;
    return t < not_before ? not_before : t;
}

static int digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return TF_EINVAL;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

static int expect(const char **p, const char *set)
{
    if (!**p || !strchr(set, **p))
        return TF_EINVAL;
    (*p)++;
    return 0;
}

/* The zone suffix: "Z" or "+hh:mm"/"-hh:mm", as seconds east of UTC. */
static int parse_zone(const char *p, int64_t *off)
{
    if (*p == 'Z' || *p == 'z')
        return p[1] ? TF_EINVAL : (*off = 0, 0);
    int sign = *p == '+' ? 1 : *p == '-' ? -1 : 0;
    int hh, mm;
    if (!sign)
        return TF_EINVAL;
    p++;
    if (digits(&p, 2, &hh) || expect(&p, ":") || digits(&p, 2, &mm) || *p || hh > 23 ||
        mm > 59)
        return TF_EINVAL;
    *off = sign * (hh * 3600 + mm * 60);
    return 0;
}

int tf_renew_parse_rfc3339(const char *s, int64_t *out)
{
    if (!s)
        return TF_EINVAL;
    const char *p = s;
    int Y, M, D, h, m, sec;
    if (digits(&p, 4, &Y) || expect(&p, "-") || digits(&p, 2, &M) || expect(&p, "-") ||
        digits(&p, 2, &D) || expect(&p, "Tt ") || digits(&p, 2, &h) || expect(&p, ":") ||
        digits(&p, 2, &m) || expect(&p, ":") || digits(&p, 2, &sec))
        return TF_EINVAL;
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60)
        return TF_EINVAL;
    if (*p == '.') {
        p++;
        if (!isdigit((unsigned char)*p))
            return TF_EINVAL;
        while (isdigit((unsigned char)*p))
            p++;
    }
    int64_t off;
    if (parse_zone(p, &off))
        return TF_EINVAL;
    struct tm tm = {.tm_year = Y - 1900, .tm_mon = M - 1, .tm_mday = D,
                    .tm_hour = h, .tm_min = m, .tm_sec = sec};
    time_t t = timegm(&tm);
    if (tm.tm_mday != D) /* timegm normalised an impossible date such as Feb 30 */
        return TF_EINVAL;
    *out = (int64_t)t - off;
    return 0;
}

static int ari_fail(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "renewalInfo: %s", msg);
    return TF_EINVAL;
}

int tf_renew_parse_ari(const char *body, size_t len, int64_t *start, int64_t *end,
                       char **explanation, char *err, size_t errlen)
{
    *explanation = NULL;
    if (!body || len == 0 || len > 65536)
        return ari_fail(err, errlen, "empty or oversized body");
    cJSON *j = cJSON_ParseWithLength(body, len);
    int rc = 0;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "suggestedWindow");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(w, "start");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(w, "end");
    if (!cJSON_IsObject(j))
        rc = ari_fail(err, errlen, "not a JSON object");
    else if (!cJSON_IsObject(w))
        rc = ari_fail(err, errlen, "\"suggestedWindow\" missing or not an object");
    else if (!cJSON_IsString(s) || !cJSON_IsString(e))
        rc = ari_fail(err, errlen, "window \"start\"/\"end\" missing or not strings");
    else if (tf_renew_parse_rfc3339(s->valuestring, start) ||
             tf_renew_parse_rfc3339(e->valuestring, end))
        rc = ari_fail(err, errlen, "window times are not RFC 3339");
    else if (*end <= *start)
        rc = ari_fail(err, errlen, "window end is not after its start");
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, "explanationURL");
    if (!rc && cJSON_IsString(x) && strncmp(x->valuestring, "https://", 8) == 0)
        *explanation = tf_strdup(x->valuestring);
    cJSON_Delete(j);
    return rc;
}

int64_t tf_renew_pick(int64_t start, int64_t end, uint64_t rnd)
{
    if (end <= start)
        return start;
    return start + (int64_t)(rnd % (uint64_t)(end - start));
}

/* The content octets of the serial's DER INTEGER (with the leading 0x00 a positive number
 * whose top bit is set carries), as RFC 9773 §4.1 asks. */
static char *serial_b64(X509 *cert)
{
    const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
    unsigned char *der = NULL;
    int n = i2d_ASN1_INTEGER(sn, &der);
    char *out = NULL;
    if (n < 3 || der[0] != 0x02)
        goto done;
    /* Short-form length only: serials are at most 20 octets (RFC 5280 §4.1.2.2). */
    if (der[1] & 0x80 || der[1] != n - 2)
        goto done;
    out = tf_b64url_encode(der + 2, (size_t)der[1]);
done:
    OPENSSL_free(der);
    return out;
}

char *tf_renew_cert_id(X509 *cert)
{
    if (!cert)
        return NULL;
    const ASN1_OCTET_STRING *kid = X509_get0_authority_key_id(cert);
    if (!kid || ASN1_STRING_length(kid) <= 0)
        return NULL;
    char *a = tf_b64url_encode(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid));
    char *b = serial_b64(cert);
    char *id = a && b ? tf_asprintf("%s.%s", a, b) : NULL;
    free(a);
    free(b);
    return id;
}
