/*
 * proxy_proto.c: PROXY protocol v1/v2 encoder and incremental parser, following
 * HAProxy's proxy-protocol.txt. It owns nothing and must never do I/O, log, allocate or read
 * the clock: the connection code decides what to do with a result (close on TF_EPROTO, log
 * once). The parser is strict: anything the spec does not allow is TF_EPROTO, so a listener
 * marked ",proxy" never mistakes a client's own bytes for a header.
 */
#include "tlsfront/proto/proxy_proto.h"
#include "tlsfront/base/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#define V1_PREFIX "PROXY "
#define V1_PREFIX_LEN 6
#define V2_FIXED_LEN 16
#define V2_LEN_INET 12
#define V2_LEN_INET6 36
#define V2_LEN_UNIX 216
#define TLV_STR_MAX 255

/* ---- encoder ------------------------------------------------------------------------ */

/* Copies sa into *out, turning an IPv4-mapped IPv6 address (dual-stack sockets) into IPv4.
 * Returns the resulting family, or AF_UNSPEC for anything that is not IP. */
static int norm_addr(const struct sockaddr *sa, struct sockaddr_storage *out)
{
    memset(out, 0, sizeof(*out));
    if (sa && sa->sa_family == AF_INET) {
        memcpy(out, sa, sizeof(struct sockaddr_in));
        return AF_INET;
    }
    if (!sa || sa->sa_family != AF_INET6)
        return AF_UNSPEC;
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)out;
        s4->sin_family = AF_INET;
        s4->sin_port = s6->sin6_port;
        memcpy(&s4->sin_addr, &s6->sin6_addr.s6_addr[12], 4);
        return AF_INET;
    }
    memcpy(out, sa, sizeof(struct sockaddr_in6));
    return AF_INET6;
}

/* IPv4 address as IPv4-mapped IPv6, in place. */
static void map_v4_to_v6(struct sockaddr_storage *ss)
{
    struct sockaddr_in s4;
    memcpy(&s4, ss, sizeof(s4));
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
    memset(ss, 0, sizeof(*ss));
    s6->sin6_family = AF_INET6;
    s6->sin6_port = s4.sin_port;
    s6->sin6_addr.s6_addr[10] = 0xff;
    s6->sin6_addr.s6_addr[11] = 0xff;
    memcpy(&s6->sin6_addr.s6_addr[12], &s4.sin_addr, 4);
}

/* Both addresses normalised to one family: AF_INET, AF_INET6 or AF_UNSPEC. */
static int pair_family(const struct sockaddr *src, const struct sockaddr *dst,
                       struct sockaddr_storage *s, struct sockaddr_storage *d)
{
    int fs = norm_addr(src, s), fd = norm_addr(dst, d);
    if (fs == AF_UNSPEC || fd == AF_UNSPEC)
        return AF_UNSPEC;
    if (fs == fd)
        return fs;
    if (fs == AF_INET)
        map_v4_to_v6(s);
    else
        map_v4_to_v6(d);
    return AF_INET6;
}

static const void *in_addr_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return &((const struct sockaddr_in *)ss)->sin_addr;
    return &((const struct sockaddr_in6 *)ss)->sin6_addr;
}

static unsigned in_port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

size_t tf_proxy_v1_encode(char *out, size_t cap, const struct sockaddr *src,
                          const struct sockaddr *dst)
{
    struct sockaddr_storage s, d;
    char a[INET6_ADDRSTRLEN], b[INET6_ADDRSTRLEN], line[TF_PROXY_V1_MAX_LEN + 1];
    int fam = pair_family(src, dst, &s, &d);
    int n;

    if (fam == AF_UNSPEC) {
        n = snprintf(line, sizeof(line), "PROXY UNKNOWN\r\n");
    } else {
        if (!inet_ntop(fam, in_addr_of(&s), a, sizeof(a)) ||
            !inet_ntop(fam, in_addr_of(&d), b, sizeof(b)))
            return 0;
        n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
                     fam == AF_INET ? "TCP4" : "TCP6", a, b, in_port_of(&s), in_port_of(&d));
    }
    if (n < 0 || (size_t)n >= sizeof(line) || (size_t)n > cap)
        return 0;
    memcpy(out, line, (size_t)n);
    return (size_t)n;
}

/* Appends one TLV (type, 16-bit length, value) at out[*pos]; false if it does not fit. */
static bool put_tlv(unsigned char *out, size_t cap, size_t *pos, unsigned type, const void *val,
                    size_t vlen)
{
    if (vlen > 0xffff || cap - *pos < 3 + vlen)
        return false;
    out[*pos] = (unsigned char)type;
    out[*pos + 1] = (unsigned char)(vlen >> 8);
    out[*pos + 2] = (unsigned char)vlen;
    if (vlen)
        memcpy(out + *pos + 3, val, vlen);
    *pos += 3 + vlen;
    return true;
}

static size_t tlv_str_len(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n > TLV_STR_MAX ? 0 : n;
}

/* The PP2_TYPE_SSL value: client flags, verify (0: the client presented no certificate we
 * verified), then the version and cipher sub-TLVs. Returns false if it does not fit. */
static bool put_ssl_tlv(unsigned char *out, size_t cap, size_t *pos,
                        const struct tf_proxy_tlv_info *info)
{
    unsigned char val[5 + 2 * (3 + TLV_STR_MAX)];
    size_t vlen = 5, nv = tlv_str_len(info->ssl_version), nc = tlv_str_len(info->ssl_cipher);

    memset(val, 0, 5);
    val[0] = TF_PP2_CLIENT_SSL;
    if (nv && !put_tlv(val, sizeof(val), &vlen, TF_PP2_SUBTYPE_SSL_VERSION, info->ssl_version, nv))
        return false;
    if (nc && !put_tlv(val, sizeof(val), &vlen, TF_PP2_SUBTYPE_SSL_CIPHER, info->ssl_cipher, nc))
        return false;
    return put_tlv(out, cap, pos, TF_PP2_TYPE_SSL, val, vlen);
}

static size_t put_v2_addrs(unsigned char *out, int fam, const struct sockaddr_storage *s,
                           const struct sockaddr_storage *d)
{
    size_t alen = fam == AF_INET ? 4 : 16;
    uint16_t sp = htons((uint16_t)in_port_of(s)), dp = htons((uint16_t)in_port_of(d));

    memcpy(out, in_addr_of(s), alen);
    memcpy(out + alen, in_addr_of(d), alen);
    memcpy(out + 2 * alen, &sp, 2);
    memcpy(out + 2 * alen + 2, &dp, 2);
    return 2 * alen + 4;
}

size_t tf_proxy_v2_encode(unsigned char *out, size_t cap, const struct sockaddr *src,
                          const struct sockaddr *dst, const struct tf_proxy_tlv_info *info)
{
    struct sockaddr_storage s, d;
    int fam = pair_family(src, dst, &s, &d);
    size_t need = V2_FIXED_LEN + (fam == AF_INET    ? V2_LEN_INET
                                  : fam == AF_INET6 ? V2_LEN_INET6
                                                    : 0);
    size_t pos, na = info ? tlv_str_len(info->authority) : 0;

    if (cap < need)
        return 0;
    memcpy(out, TF_PROXY_V2_SIG, TF_PROXY_V2_SIG_LEN);
    out[12] = 0x21; /* version 2, command PROXY */
    out[13] = fam == AF_INET ? 0x11 : fam == AF_INET6 ? 0x21 : 0x00;
    pos = V2_FIXED_LEN;
    if (fam != AF_UNSPEC)
        pos += put_v2_addrs(out + pos, fam, &s, &d);
    if (na && !put_tlv(out, cap, &pos, TF_PP2_TYPE_AUTHORITY, info->authority, na))
        return 0;
    if (info && info->ssl && !put_ssl_tlv(out, cap, &pos, info))
        return 0;
    if (pos - V2_FIXED_LEN > 0xffff)
        return 0;
    out[14] = (unsigned char)((pos - V2_FIXED_LEN) >> 8);
    out[15] = (unsigned char)(pos - V2_FIXED_LEN);
    return pos;
}

/* ---- parser ------------------------------------------------------------------------- */

/* A port: 1-5 decimal digits, no leading zero (except "0" itself), at most 65535. */
static bool parse_port(const char *s, size_t n, in_port_t *port)
{
    unsigned v = 0;
    if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *port = htons((in_port_t)v);
    return true;
}

static bool parse_ip(int fam, const char *s, size_t n, struct sockaddr_storage *ss)
{
    char tmp[INET6_ADDRSTRLEN];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    memset(ss, 0, sizeof(*ss));
    ss->ss_family = (sa_family_t)fam;
    if (fam == AF_INET)
        return inet_pton(AF_INET, tmp, &((struct sockaddr_in *)ss)->sin_addr) == 1;
    return inet_pton(AF_INET6, tmp, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1;
}

/* "SRC DST SPORT DPORT" of a TCP4/TCP6 line (without CRLF), single spaces only. */
static int parse_v1_addrs(const char *p, size_t n, int fam, struct tf_proxy_result *out)
{
    const char *f[4];
    size_t fl[4], k = 0, start = 0;
    in_port_t sp, dp;

    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != ' ')
            continue;
        if (k == 4)
            return TF_EPROTO;
        f[k] = p + start;
        fl[k++] = i - start;
        start = i + 1;
    }
    if (k != 4 || !parse_ip(fam, f[0], fl[0], &out->src) ||
        !parse_ip(fam, f[1], fl[1], &out->dst) || !parse_port(f[2], fl[2], &sp) ||
        !parse_port(f[3], fl[3], &dp))
        return TF_EPROTO;
    if (fam == AF_INET) {
        ((struct sockaddr_in *)&out->src)->sin_port = sp;
        ((struct sockaddr_in *)&out->dst)->sin_port = dp;
    } else {
        ((struct sockaddr_in6 *)&out->src)->sin6_port = sp;
        ((struct sockaddr_in6 *)&out->dst)->sin6_port = dp;
    }
    out->family = fam;
    out->has_addr = true;
    return 0;
}

/* Version 1: "PROXY " then TCP4/TCP6 with addresses, or UNKNOWN followed by anything, then
 * CRLF within 107 bytes. A CR or LF anywhere else is malformed. */
static int parse_v1(const unsigned char *buf, size_t len, struct tf_proxy_result *out)
{
    size_t lim = TF_MIN(len, (size_t)TF_PROXY_V1_MAX_LEN), end = 0;
    const char *line = (const char *)buf + V1_PREFIX_LEN;
    bool found = false;

    for (size_t i = V1_PREFIX_LEN; i < lim && !found; i++) {
        if (buf[i] == '\n')
            return TF_EPROTO;
        if (buf[i] != '\r')
            continue;
        if (i + 2 > TF_PROXY_V1_MAX_LEN)
            return TF_EPROTO;
        if (i + 1 == len)
            return 0;
        if (buf[i + 1] != '\n')
            return TF_EPROTO;
        end = i;
        found = true;
    }
    if (!found)
        return len >= TF_PROXY_V1_MAX_LEN ? TF_EPROTO : 0;
    size_t n = end - V1_PREFIX_LEN;
    out->version = 1;
    out->command = TF_PROXY_CMD_PROXY;
    if (n >= 7 && memcmp(line, "UNKNOWN", 7) == 0 && (n == 7 || line[7] == ' ')) {
        out->family = AF_UNSPEC;
        return (int)end + 2;
    }
    if (n < 5 || line[4] != ' ' || (memcmp(line, "TCP4", 4) != 0 && memcmp(line, "TCP6", 4) != 0))
        return TF_EPROTO;
    int rc = parse_v1_addrs(line + 5, n - 5, line[3] == '4' ? AF_INET : AF_INET6, out);
    return rc < 0 ? rc : (int)end + 2;
}

/* Copies a TLV string value into dst (size cap, NUL-terminated); NUL bytes or overlong
 * values are malformed. */
static int copy_tlv_str(char *dst, size_t cap, const unsigned char *v, size_t n)
{
    if (n >= cap || memchr(v, '\0', n))
        return TF_EPROTO;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

static int parse_ssl_tlv(const unsigned char *v, size_t n, struct tf_proxy_result *out)
{
    if (n < 5)
        return TF_EPROTO;
    out->has_ssl = true;
    out->ssl_client = v[0];
    out->ssl_verify = (unsigned)v[1] << 24 | (unsigned)v[2] << 16 | (unsigned)v[3] << 8 | v[4];
    for (size_t p = 5; p < n;) {
        if (n - p < 3)
            return TF_EPROTO;
        size_t sl = (size_t)v[p + 1] << 8 | v[p + 2];
        if (n - p - 3 < sl)
            return TF_EPROTO;
        int rc = 0;
        if (v[p] == TF_PP2_SUBTYPE_SSL_VERSION)
            rc = copy_tlv_str(out->ssl_version, sizeof(out->ssl_version), v + p + 3, sl);
        else if (v[p] == TF_PP2_SUBTYPE_SSL_CIPHER)
            rc = copy_tlv_str(out->ssl_cipher, sizeof(out->ssl_cipher), v + p + 3, sl);
        if (rc < 0)
            return rc;
        p += 3 + sl;
    }
    return 0;
}

/* The TLVs after the address block. Unknown types are skipped (spec section 2.2). */
static int parse_tlvs(const unsigned char *p, size_t n, struct tf_proxy_result *out)
{
    for (size_t i = 0; i < n;) {
        if (n - i < 3)
            return TF_EPROTO;
        size_t vl = (size_t)p[i + 1] << 8 | p[i + 2];
        const unsigned char *v = p + i + 3;
        int rc = 0;
        if (n - i - 3 < vl)
            return TF_EPROTO;
        if (p[i] == TF_PP2_TYPE_AUTHORITY) {
            rc = vl == 0 ? TF_EPROTO : copy_tlv_str(out->authority, sizeof(out->authority), v, vl);
            out->has_authority = rc == 0;
        } else if (p[i] == TF_PP2_TYPE_SSL) {
            rc = parse_ssl_tlv(v, vl, out);
        }
        if (rc < 0)
            return rc;
        i += 3 + vl;
    }
    return 0;
}

static void v2_inet_addrs(const unsigned char *a, int fam, struct tf_proxy_result *out)
{
    size_t alen = fam == AF_INET ? 4 : 16;
    in_port_t sp, dp;
    struct sockaddr_storage *ss[2] = {&out->src, &out->dst};

    memcpy(&sp, a + 2 * alen, 2);
    memcpy(&dp, a + 2 * alen + 2, 2);
    for (int i = 0; i < 2; i++) {
        memset(ss[i], 0, sizeof(*ss[i]));
        ss[i]->ss_family = (sa_family_t)fam;
        if (fam == AF_INET) {
            memcpy(&((struct sockaddr_in *)ss[i])->sin_addr, a + i * alen, alen);
            ((struct sockaddr_in *)ss[i])->sin_port = i == 0 ? sp : dp;
        } else {
            memcpy(&((struct sockaddr_in6 *)ss[i])->sin6_addr, a + i * alen, alen);
            ((struct sockaddr_in6 *)ss[i])->sin6_port = i == 0 ? sp : dp;
        }
    }
    out->has_addr = true;
}

/* The address block of a complete PROXY-command v2 header; returns its length or TF_EPROTO.
 * Datagram families are refused: these are stream listeners. */
static int v2_block(const unsigned char *blk, size_t blen, unsigned fam,
                    struct tf_proxy_result *out)
{
    switch (fam) {
    case 0x00:
        out->family = AF_UNSPEC;
        return 0;
    case 0x11:
        if (blen < V2_LEN_INET)
            return TF_EPROTO;
        out->family = AF_INET;
        v2_inet_addrs(blk, AF_INET, out);
        return V2_LEN_INET;
    case 0x21:
        if (blen < V2_LEN_INET6)
            return TF_EPROTO;
        out->family = AF_INET6;
        v2_inet_addrs(blk, AF_INET6, out);
        return V2_LEN_INET6;
    case 0x31:
        if (blen < V2_LEN_UNIX)
            return TF_EPROTO;
        out->family = AF_UNIX;
        return V2_LEN_UNIX;
    default:
        return TF_EPROTO;
    }
}

static int parse_v2(const unsigned char *buf, size_t len, size_t cap, struct tf_proxy_result *out)
{
    if (len < V2_FIXED_LEN)
        return 0;
    unsigned ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13];
    size_t blen = (size_t)buf[14] << 8 | buf[15], total = V2_FIXED_LEN + blen;

    if (ver != 2 || cmd > 1)
        return TF_EPROTO;
    if (fam != 0x00 && fam != 0x11 && fam != 0x12 && fam != 0x21 && fam != 0x22 && fam != 0x31 &&
        fam != 0x32)
        return TF_EPROTO;
    if (total > cap)
        return TF_ETOOBIG;
    if (len < total)
        return 0;
    out->version = 2;
    out->command = cmd == 1 ? TF_PROXY_CMD_PROXY : TF_PROXY_CMD_LOCAL;
    if (cmd == 0) {
        /* LOCAL: the block, family included, is ignored (spec section 2.2). */
        out->family = AF_UNSPEC;
        return (int)total;
    }
    int alen = v2_block(buf + V2_FIXED_LEN, blen, fam, out);
    if (alen < 0)
        return alen;
    int rc = parse_tlvs(buf + V2_FIXED_LEN + alen, blen - (size_t)alen, out);
    return rc < 0 ? rc : (int)total;
}

int tf_proxy_parse_cap(const unsigned char *buf, size_t len, size_t v2_cap,
                       struct tf_proxy_result *out)
{
    size_t n1 = TF_MIN(len, (size_t)V1_PREFIX_LEN), n2 = TF_MIN(len, (size_t)TF_PROXY_V2_SIG_LEN);
    int rc;

    memset(out, 0, sizeof(*out));
    if (v2_cap == 0)
        v2_cap = TF_PROXY_V2_DEFAULT_CAP;
    if (len == 0)
        return 0;
    if (memcmp(buf, V1_PREFIX, n1) == 0)
        rc = len < V1_PREFIX_LEN ? 0 : parse_v1(buf, len, out);
    else if (memcmp(buf, TF_PROXY_V2_SIG, n2) == 0)
        rc = len < TF_PROXY_V2_SIG_LEN ? 0 : parse_v2(buf, len, v2_cap, out);
    else
        rc = TF_EPROTO;
    if (rc <= 0)
        memset(out, 0, sizeof(*out)); /* no half-filled result on "need more" or errors */
    return rc;
}

int tf_proxy_parse(const unsigned char *buf, size_t len, struct tf_proxy_result *out)
{
    return tf_proxy_parse_cap(buf, len, 0, out);
}
