/*
 * config_parse.c: the strict value parsers of the config module (integers, numbers,
 * durations, DNS patterns, ALPN lists, listen/admin addresses, backends and routes). Every
 * parser either fills its out-parameter completely or leaves it untouched and writes one
 * message into err. It never does I/O, never resolves names (backend hosts are resolved
 * later, by whoever connects) and never logs.
 */
#include "config_int.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bad text is quoted in messages, cut short so one message stays one readable line. */
#define QLEN 120

int tf_config_parse_int(const char *s, long long min, long long max, long long *out, char *err,
                        size_t errlen)
{
    const char *d = (s[0] == '-') ? s + 1 : s;
    char *end = NULL;
    long long v = 0;

    if (!isdigit((unsigned char)d[0]))
        goto bad;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        goto bad;
    *out = v;
    return 0;
bad:
    snprintf(err, errlen, "expected an integer %lld..%lld, got \"%.*s\"", min, max, QLEN, s);
    return TF_EINVAL;
}

int tf_config_parse_double(const char *s, double min, double max, double *out, char *err,
                           size_t errlen)
{
    char *end = NULL;
    double v = 0;

    if (!isdigit((unsigned char)s[0]) && s[0] != '.')
        goto bad;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !isfinite(v) || v < min || v > max)
        goto bad;
    *out = v;
    return 0;
bad:
    snprintf(err, errlen, "expected a number %g..%g, got \"%.*s\"", min, max, QLEN, s);
    return TF_EINVAL;
}

/* Render milliseconds in the largest unit that divides them, for range messages. */
static void fmt_duration(uint64_t ms, char *buf, size_t len)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {
        {"d", 86400000},
        {"h", 3600000},
        {"m", 60000},
        {"s", 1000},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(units); i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, len, "%llu%s", (unsigned long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(buf, len, "%llums", (unsigned long long)ms);
}

/* Milliseconds per unit suffix, or 0 for an unknown suffix. No suffix means seconds. */
static uint64_t unit_ms(const char *u)
{
    static const struct {
        const char *name;
        uint64_t ms;
    } units[] = {
        {"", 1000}, {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000},
    };
    for (size_t i = 0; i < TF_ARRAY_LEN(units); i++) {
        if (strcmp(u, units[i].name) == 0)
            return units[i].ms;
    }
    return 0;
}

int tf_config_parse_duration(const char *s, uint64_t min_ms, uint64_t max_ms, bool whole_s,
                             uint64_t *out_ms, char *err, size_t errlen)
{
    uint64_t n = 0, mul;
    const char *p = s;
    char lo[32], hi[32];

    if (!isdigit((unsigned char)*p))
        goto syntax;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > (UINT64_MAX - 9) / 10)
            goto range;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    mul = unit_ms(p);
    if (mul == 0)
        goto syntax;
    if (n > UINT64_MAX / mul)
        goto range;
    n *= mul;
    if (n < min_ms || n > max_ms)
        goto range;
    if (whole_s && n % 1000 != 0) {
        snprintf(err, errlen, "expected whole seconds, got \"%.*s\"", QLEN, s);
        return TF_EINVAL;
    }
    *out_ms = n;
    return 0;
syntax:
    snprintf(err, errlen, "expected a duration like 250ms, 10s, 5m, 2h or seconds, got \"%.*s\"",
             QLEN, s);
    return TF_EINVAL;
range:
    fmt_duration(min_ms, lo, sizeof(lo));
    fmt_duration(max_ms, hi, sizeof(hi));
    snprintf(err, errlen, "duration \"%.*s\" out of range %s..%s", QLEN, s, lo, hi);
    return TF_EINVAL;
}

/* What is wrong with one DNS label of a lower-cased name (1..63 of [a-z0-9-], no hyphen at
 * either end), written into why; false if nothing is. */
static bool label_problem(const char *s, size_t n, char *why, size_t wlen)
{
    if (n == 0) {
        snprintf(why, wlen, "empty label (two dots in a row, or a dot at the start)");
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '*') {
            snprintf(why, wlen, "a wildcard is only \"*.\" at the start, for exactly one label "
                                "(as *.example.com)");
            return true;
        }
        if (!islower(c) && !isdigit(c) && c != '-') {
            if (isgraph(c))
                snprintf(why, wlen, "'%c' is not allowed (letters, digits, '-' and '.')", c);
            else
                snprintf(why, wlen, "byte 0x%02x is not allowed (letters, digits, '-' and '.')",
                         c);
            return true;
        }
    }
    if (n > 63) {
        snprintf(why, wlen, "label \"%.20s...\" is longer than 63 characters", s);
        return true;
    }
    if (s[0] == '-' || s[n - 1] == '-') {
        snprintf(why, wlen, "label \"%.*s\" starts or ends with '-'", (int)TF_MIN(n, 63), s);
        return true;
    }
    return false;
}

/* What is wrong with a lower-cased DNS name: labels separated by single dots, the last label
 * not all digits (no TLD is, and this keeps IPv4 literals, which SNI never carries, out of
 * patterns). False if nothing is. */
static bool name_problem(const char *s, char *why, size_t wlen)
{
    const char *label = s, *last = s;
    size_t len = strlen(s);
    if (strstr(s, "://") || strchr(s, '/')) {
        snprintf(why, wlen, "a DNS name, not a URL");
        return true;
    }
    if (strchr(s, ':')) {
        snprintf(why, wlen, "a DNS name, without a port");
        return true;
    }
    if (len > 1 && s[len - 1] == '.') {
        snprintf(why, wlen, "drop the trailing dot");
        return true;
    }
    for (const char *p = s;; p++) {
        if (*p == '.' || *p == '\0') {
            if (label_problem(label, (size_t)(p - label), why, wlen))
                return true;
            last = label;
            if (*p == '\0')
                break;
            label = p + 1;
        }
    }
    for (const char *p = last; *p; p++) {
        if (!isdigit((unsigned char)*p))
            return false;
    }
    snprintf(why, wlen, "the last label is all digits (an IP address cannot be a pattern)");
    return true;
}

int tf_config_parse_pattern(const char *s, char **out, char *err, size_t errlen)
{
    size_t len = strlen(s);
    char *low = NULL, why[160];

    if (len == 0) {
        snprintf(err, errlen, "bad pattern \"\": empty");
        return TF_EINVAL;
    }
    if (len > 253) {
        snprintf(err, errlen, "bad pattern \"%.*s...\": longer than 253 characters", 40, s);
        return TF_EINVAL;
    }
    low = tf_strdup(s);
    for (char *p = low; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (name_problem(strncmp(low, "*.", 2) == 0 ? low + 2 : low, why, sizeof(why))) {
        free(low);
        snprintf(err, errlen, "bad pattern \"%.*s\": %s", QLEN, s, why);
        return TF_EINVAL;
    }
    *out = low;
    return 0;
}

/* An ALPN protocol id as we accept it: 1..255 visible ASCII bytes, none of our separators. */
static bool valid_alpn_id(const char *s, size_t n)
{
    if (n == 0 || n > 255)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x21 || c > 0x7e || c == ',' || c == '+')
            return false;
    }
    return true;
}

int tf_config_parse_alpn(const char *s, char sep, char **out, int *n, char *err, size_t errlen)
{
    char *ids[TF_MAX_ALPN];
    int k = 0;
    const char *p = s;

    for (;;) {
        const char *e = strchr(p, sep);
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!valid_alpn_id(p, len)) {
            snprintf(err, errlen, "bad protocol list \"%.*s\"", QLEN, s);
            goto fail;
        }
        if (k == TF_MAX_ALPN) {
            snprintf(err, errlen, "too many protocols in \"%.*s\" (max %d)", QLEN, s, TF_MAX_ALPN);
            goto fail;
        }
        ids[k] = tf_strndup(p, len);
        for (int i = 0; i < k; i++) {
            if (strcmp(ids[i], ids[k]) == 0) {
                snprintf(err, errlen, "duplicate protocol \"%s\"", ids[k]);
                k++;
                goto fail;
            }
        }
        k++;
        if (!e)
            break;
        p = e + 1;
    }
    for (int i = 0; i < *n; i++)
        free(out[i]);
    memcpy(out, ids, (size_t)k * sizeof(ids[0]));
    *n = k;
    return 0;
fail:
    for (int i = 0; i < k; i++)
        free(ids[i]);
    return TF_EINVAL;
}

/* Decimal port of 1..5 digits within [min, 65535]; s need not be NUL-terminated. */
static bool parse_port(const char *s, size_t len, unsigned min, uint16_t *out)
{
    unsigned v = 0;
    if (len == 0 || len > 5)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v < min || v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

/* Split "HOST:PORT" or "[HOST]:PORT" (len bytes of s) at the port colon. Sets the host span
 * (brackets removed) and *bracketed; returns the index of the colon or -1. */
static long split_hostport(const char *s, size_t len, const char **host, size_t *hlen,
                           bool *bracketed)
{
    const char *colon;
    *bracketed = (len > 0 && s[0] == '[');
    if (*bracketed) {
        const char *rb = memchr(s, ']', len);
        if (!rb || (size_t)(rb - s) + 1 >= len || rb[1] != ':')
            return -1;
        *host = s + 1;
        *hlen = (size_t)(rb - s) - 1;
        return rb + 1 - s;
    }
    colon = memrchr(s, ':', len);
    if (!colon || memchr(s, ':', (size_t)(colon - s)))
        return -1;
    *host = s;
    *hlen = (size_t)(colon - s);
    return colon - s;
}

int tf_config_parse_addr(const char *s, size_t len, struct sockaddr_storage *out, bool *any,
                         char *err, size_t errlen)
{
    const char *host = NULL;
    size_t hlen = 0;
    bool br = false;
    char h[INET6_ADDRSTRLEN];
    uint16_t port = 0;
    struct sockaddr_storage ss;
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
    long c = split_hostport(s, len, &host, &hlen, &br);

    memset(&ss, 0, sizeof(ss));
    if (c < 0 && len > 0 && len <= 5 && strspn(s, "0123456789") >= len) {
        snprintf(err, errlen, "bad address \"%.*s\" (did you mean \":%.*s\"?)", (int)len, s,
                 (int)len, s);
        return TF_EINVAL;
    }
    if (c >= 0 && hlen == 1 && host[0] == '*') {
        snprintf(err, errlen, "bad address \"%.*s\" (did you mean \"%.*s\"? \":PORT\" is every "
                 "address)", (int)TF_MIN(len, QLEN), s, (int)TF_MIN(len - 1, QLEN), s + 1);
        return TF_EINVAL;
    }
    if (c < 0 || hlen >= sizeof(h) || (br && hlen == 0))
        goto bad_addr;
    if (!parse_port(s + c + 1, len - (size_t)c - 1, 0, &port)) {
        snprintf(err, errlen, "bad port in \"%.*s\"", (int)TF_MIN(len, QLEN), s);
        return TF_EINVAL;
    }
    memcpy(h, host, hlen);
    h[hlen] = '\0';
    if (hlen == 0 || br) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons(port);
        if (hlen == 0)
            sin6->sin6_addr = in6addr_any;
        else if (inet_pton(AF_INET6, h, &sin6->sin6_addr) != 1)
            goto bad_addr;
    } else {
        sin->sin_family = AF_INET;
        sin->sin_port = htons(port);
        if (inet_pton(AF_INET, h, &sin->sin_addr) != 1)
            goto bad_host;
    }
    *out = ss;
    *any = (hlen == 0);
    return 0;
bad_host:
    /* A host name, not an address: listeners bind addresses, and resolving is not ours. */
    if (strspn(h, "0123456789.") != hlen) {
        char lo[48] = "";
        if (strcmp(h, "localhost") == 0)
            snprintf(lo, sizeof(lo), "\"127.0.0.1:%u\" for loopback, ", port);
        snprintf(err, errlen, "bad address \"%.*s\": an IP address is needed, not a host name "
                 "(%s\":%u\" for every address)", (int)TF_MIN(len, QLEN), s, lo, port);
        return TF_EINVAL;
    }
bad_addr:
    snprintf(err, errlen, "bad address \"%.*s\"", (int)TF_MIN(len, QLEN), s);
    return TF_EINVAL;
}

int tf_config_parse_listen(const char *spec, struct tf_listen *out, char *err, size_t errlen)
{
    struct tf_listen l;
    const char *comma = strchr(spec, ',');
    size_t alen = comma ? (size_t)(comma - spec) : strlen(spec);
    int rc;

    memset(&l, 0, sizeof(l));
    rc = tf_config_parse_addr(spec, alen, &l.addr, &l.any, err, errlen);
    if (rc < 0)
        return rc;
    for (const char *p = comma; p; p = strchr(p + 1, ',')) {
        const char *e = strchr(p + 1, ',');
        size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
        if (n == 5 && strncmp(p + 1, "proxy", 5) == 0) {
            l.proxy = true;
            continue;
        }
        snprintf(err, errlen, "unknown option \"%.*s\" in \"%.*s\" (expected proxy)",
                 (int)TF_MIN(n, QLEN), p + 1, QLEN, spec);
        return TF_EINVAL;
    }
    l.spec = tf_strdup(spec);
    *out = l;
    return 0;
}

/* A backend host: an IP literal or a plausible DNS name (letters, digits, '.', '-', '_').
 * Resolution happens later; all-numeric hosts must be IPv4 literals. */
static bool valid_backend_host(const char *h, size_t n, bool bracketed)
{
    char buf[INET6_ADDRSTRLEN];
    unsigned char bin[sizeof(struct in6_addr)];
    bool numeric = true;

    if (n == 0 || n > 253)
        return false;
    if (bracketed || memchr(h, ':', n)) {
        if (n >= sizeof(buf))
            return false;
        memcpy(buf, h, n);
        buf[n] = '\0';
        return bracketed && inet_pton(AF_INET6, buf, bin) == 1;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_')
            return false;
        if (!isdigit(c) && c != '.')
            numeric = false;
    }
    if (!numeric)
        return true;
    if (n >= sizeof(buf))
        return false;
    memcpy(buf, h, n);
    buf[n] = '\0';
    return inet_pton(AF_INET, buf, bin) == 1;
}

/* One "key=value" option after a backend: proxy, mode and (for routes only) alpn. */
static int backend_option(const char *opt, size_t n, const char *spec, struct tf_route *r,
                          bool route, char *err, size_t errlen)
{
    struct tf_backend *b = &r->backend;
    char *val = NULL;
    int rc = 0;

    if (n > 6 && strncmp(opt, "proxy=", 6) == 0) {
        if (n == 8 && strncmp(opt + 6, "v1", 2) == 0)
            b->proxy = TF_PROXY_V1;
        else if (n == 8 && strncmp(opt + 6, "v2", 2) == 0)
            b->proxy = TF_PROXY_V2;
        else if (n == 10 && strncmp(opt + 6, "none", 4) == 0)
            b->proxy = TF_PROXY_NONE;
        else
            goto bad;
    } else if (n > 5 && strncmp(opt, "mode=", 5) == 0) {
        if (n == 8 && strncmp(opt + 5, "tcp", 3) == 0)
            b->mode = TF_MODE_TCP;
        else if (n == 9 && strncmp(opt + 5, "http", 4) == 0)
            b->mode = TF_MODE_HTTP;
        else
            goto bad;
    } else if (n > 8 && strncmp(opt, "connect=", 8) == 0) {
        if (n == 10 && strncmp(opt + 8, "on", 2) == 0)
            b->connect = true;
        else if (n == 11 && strncmp(opt + 8, "off", 3) == 0)
            b->connect = false;
        else
            goto bad;
    } else if (route && n > 5 && strncmp(opt, "alpn=", 5) == 0) {
        val = tf_strndup(opt + 5, n - 5);
        rc = tf_config_parse_alpn(val, '+', r->alpn, &r->n_alpn, err, errlen);
        free(val);
    } else {
        goto bad;
    }
    return rc;
bad:
    snprintf(err, errlen,
             "bad option \"%.*s\" in \"%.*s\" (expected proxy=v1|v2, mode=tcp|http, "
             "connect=on|off%s)",
             (int)TF_MIN(n, QLEN), opt, QLEN, spec, route ? ", alpn=A+B" : "");
    return TF_EINVAL;
}

/* Parse "HOST:PORT[,opts]" into r->backend (and r->alpn when route). On failure the strings
 * already allocated in r stay there for the caller's clear. */
static int parse_backend_into(const char *s, const char *spec, struct tf_route *r, bool route,
                              char *err, size_t errlen)
{
    const char *comma = strchr(s, ','), *host = NULL;
    size_t len = comma ? (size_t)(comma - s) : strlen(s), hlen = 0;
    bool br = false;
    const char *scheme = strstr(s, "://");
    long c = split_hostport(s, len, &host, &hlen, &br);

    if (scheme) {
        /* "http://app:8080/x" -> suggest "app:8080" (the part up to the path). */
        const char *rest = scheme + 3;
        size_t rlen = strcspn(rest, "/,");
        snprintf(err, errlen, "\"%.*s\": drop the scheme, a backend is HOST:PORT spoken to in "
                 "plaintext (did you mean \"%.*s\"?)", QLEN, spec, (int)TF_MIN(rlen, QLEN), rest);
        return TF_EINVAL;
    }
    if (c < 0) {
        snprintf(err, errlen, "expected HOST:PORT (IPv6 in brackets), got \"%.*s\"", QLEN, spec);
        return TF_EINVAL;
    }
    if (!valid_backend_host(host, hlen, br)) {
        snprintf(err, errlen, "bad host in \"%.*s\"", QLEN, spec);
        return TF_EINVAL;
    }
    if (!parse_port(s + c + 1, len - (size_t)c - 1, 1, &r->backend.port)) {
        snprintf(err, errlen, "bad port in \"%.*s\"", QLEN, spec);
        return TF_EINVAL;
    }
    r->backend.host = tf_strndup(host, hlen);
    for (const char *p = comma; p; p = strchr(p + 1, ',')) {
        const char *e = strchr(p + 1, ',');
        size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);
        int rc = backend_option(p + 1, n, spec, r, route, err, errlen);
        if (rc < 0)
            return rc;
    }
    if (r->backend.connect && r->backend.mode != TF_MODE_HTTP) {
        snprintf(err, errlen, "connect=on needs mode=http in \"%.*s\"", QLEN, spec);
        return TF_EINVAL;
    }
    return 0;
}

int tf_config_parse_backend(const char *spec, struct tf_backend *out, char *err, size_t errlen)
{
    struct tf_route r;
    int rc;

    memset(&r, 0, sizeof(r));
    rc = parse_backend_into(spec, spec, &r, false, err, errlen);
    if (rc < 0) {
        tf_config_route_clear(&r);
        return rc;
    }
    *out = r.backend;
    return 0;
}

int tf_config_parse_route(const char *s, struct tf_route *out, char *err, size_t errlen)
{
    struct tf_route r;
    const char *eq = strchr(s, '=');
    char *pat = NULL;
    int rc = TF_EINVAL;

    memset(&r, 0, sizeof(r));
    if (!eq) {
        snprintf(err, errlen, "expected PATTERN=HOST:PORT, got \"%.*s\"", QLEN, s);
        goto out;
    }
    pat = tf_strndup(s, (size_t)(eq - s));
    rc = tf_config_parse_pattern(pat, &r.pattern, err, errlen);
    if (rc < 0)
        goto out;
    rc = parse_backend_into(eq + 1, s, &r, true, err, errlen);
    if (rc < 0)
        goto out;
    if (r.n_alpn == 0) {
        r.alpn[0] = tf_strdup("http/1.1");
        r.n_alpn = 1;
    }
    *out = r;
out:
    if (rc < 0)
        tf_config_route_clear(&r);
    free(pat);
    return rc;
}

void tf_config_backend_clear(struct tf_backend *b)
{
    if (!b)
        return;
    free(b->host);
    b->host = NULL;
}

void tf_config_listen_clear(struct tf_listen *l)
{
    if (!l)
        return;
    free(l->spec);
    l->spec = NULL;
}

void tf_config_route_clear(struct tf_route *r)
{
    if (!r)
        return;
    free(r->pattern);
    r->pattern = NULL;
    tf_config_backend_clear(&r->backend);
    for (int i = 0; i < r->n_alpn; i++)
        free(r->alpn[i]);
    r->n_alpn = 0;
}
