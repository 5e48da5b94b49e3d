/*
 * cidr.c: parsing and matching address prefixes (see cidr.h). Used by the config loader to
 * parse --proxy-from and --trusted-xff, and by the connection code, once per connection, to
 * decide whether a peer may send a PROXY header or an X-Forwarded-For worth keeping. Never
 * allocates; lists are short, so matching is a scan.
 */
#include "tlsfront/base/cidr.h"
#include "tlsfront/base/common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static bool host_bits_zero(const struct tf_cidr *c)
{
    int bytes = c->family == AF_INET ? 4 : 16;
    for (int i = 0; i < bytes; i++) {
        int keep = TF_MIN(8, TF_MAX(0, c->prefix - i * 8));
        unsigned char mask = (unsigned char)(0xff >> keep);
        if (c->addr[i] & mask)
            return false;
    }
    return true;
}

int tf_cidr_parse(const char *s, struct tf_cidr *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof buf)
        return TF_EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return TF_EINVAL;
    int max = out->family == AF_INET ? 32 : 128;
    out->prefix = max;
    if (slash) {
        const char *p = slash + 1;
        size_t digits = strspn(p, "0123456789");
        if (digits == 0 || digits > 3 || p[digits] != '\0')
            return TF_EINVAL;
        out->prefix = atoi(p);
        if (out->prefix > max)
            return TF_EINVAL;
    }
    return host_bits_zero(out) ? 0 : TF_EINVAL;
}

static bool prefix_equal(const unsigned char *a, const unsigned char *b, int prefix)
{
    int full = prefix / 8, rest = prefix % 8;
    if (memcmp(a, b, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool tf_cidr_match(const struct tf_cidr *list, int n, const struct sockaddr *sa)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    const unsigned char *v4 = NULL, *v6 = NULL;
    if (sa->sa_family == AF_INET) {
        v4 = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    } else if (sa->sa_family == AF_INET6) {
        v6 = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (memcmp(v6, mapped, sizeof mapped) == 0)
            v4 = v6 + 12;
    }
    for (int i = 0; i < n; i++) {
        const struct tf_cidr *c = &list[i];
        if (c->family == AF_INET && v4 && prefix_equal(v4, c->addr, c->prefix))
            return true;
        if (c->family == AF_INET6 && v6 && prefix_equal(v6, c->addr, c->prefix))
            return true;
    }
    return false;
}
