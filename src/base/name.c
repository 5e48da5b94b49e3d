/*
 * name.c: host name normalisation, validation and wildcard matching for SNI, routes and the
 * on-demand gates. Pure functions over caller buffers; never allocates, never logs.
 */
#include "tlsfront/base/name.h"
#include "tlsfront/base/common.h"

#include <arpa/inet.h>
#include <string.h>

static bool ldh(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* Validate the labels of a lower-cased name without trailing dot. */
static bool labels_valid(const char *s, size_t len, int *n_labels)
{
    size_t start = 0;
    int n = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] != '.') {
            if (!ldh((unsigned char)s[i]))
                return false;
            continue;
        }
        size_t l = i - start;
        if (l == 0 || l > 63 || s[start] == '-' || s[i - 1] == '-')
            return false;
        n++;
        start = i + 1;
    }
    *n_labels = n;
    return true;
}

int tf_name_normalize(const char *in, size_t len, char *out)
{
    out[0] = '\0';
    if (len > 0 && in[len - 1] == '.')
        len--;
    if (len == 0 || len > TF_NAME_MAX)
        return TF_EINVAL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)in[i];
        out[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
    }
    out[len] = '\0';
    int n_labels = 0;
    if (!labels_valid(out, len, &n_labels) || n_labels < 2)
        goto bad;
    /* An all-numeric last label means an IPv4 literal (or nonsense); neither is a host name. */
    const char *last = strrchr(out, '.') + 1;
    if (strspn(last, "0123456789") == strlen(last))
        goto bad;
    return 0;
bad:
    out[0] = '\0';
    return TF_EINVAL;
}

bool tf_name_match(const char *pattern, const char *name)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        const char *dot = strchr(name, '.');
        return dot && dot != name && strcmp(dot + 1, pattern + 2) == 0;
    }
    return strcmp(pattern, name) == 0;
}

int tf_name_pick(const void *base, int n, size_t stride, size_t off, const char *name)
{
    int wild = -1;
    for (int i = 0; i < n; i++) {
        const char *pattern;
        memcpy(&pattern, (const char *)base + (size_t)i * stride + off, sizeof pattern);
        if (pattern[0] != '*') {
            if (strcmp(pattern, name) == 0)
                return i;
        } else if (wild < 0 && tf_name_match(pattern, name)) {
            wild = i;
        }
    }
    return wild;
}

bool tf_name_pattern_valid(const char *pattern)
{
    char buf[TF_NAME_MAX + 1];
    const char *p = pattern;
    if (!p)
        return false;
    if (p[0] == '*' && p[1] == '.')
        p += 2;
    size_t len = strlen(p);
    if (len > 0 && p[len - 1] == '.')
        return false;
    if (tf_name_normalize(p, len, buf) != 0)
        return false;
    return strcmp(buf, p) == 0; /* patterns must already be lower-case */
}

bool tf_name_may_issue(char *const *allow, int n_allow, bool ask, const char *name)
{
    if (n_allow == 0)
        return ask;
    for (int i = 0; i < n_allow; i++)
        if (tf_name_match(allow[i], name))
            return true;
    return false;
}
