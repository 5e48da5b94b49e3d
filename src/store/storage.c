/*
 * storage.c: the parts of the storage contract that do not depend on where values live:
 * the key syntax every implementation accepts (see tlsfront/store/storage.h). Keys double as
 * relative file paths in the filesystem store, so this check is what keeps a key from
 * escaping the storage directory or colliding with temp and lock files: it must never be
 * loosened without reviewing storage_fs.c. Owns no state, does no I/O.
 */
#include "tlsfront/store/storage.h"

#include <string.h>

#define WILDCARD_RESERVED "_wildcard_"

static bool seg_char_ok(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

/* One segment of n bytes (no '/'): see the rules in storage.h. */
static bool segment_valid(const char *seg, size_t n)
{
    if (n == 0 || n > TF_STORAGE_MAX_SEGMENT)
        return false;
    if (seg[0] == '.')
        return false; /* ".", "..", hidden names, temp files */
    size_t rl = strlen(WILDCARD_RESERVED);
    if (n >= rl && memcmp(seg, WILDCARD_RESERVED, rl) == 0)
        return false;
    size_t i = 0;
    if (seg[0] == '*') {
        /* "*." then at least one character that is not '.'. */
        if (n < 3 || seg[1] != '.' || seg[2] == '.')
            return false;
        i = 2;
    }
    for (; i < n; i++) {
        if (!seg_char_ok(seg[i]))
            return false;
    }
    return true;
}

bool tf_storage_key_valid(const char *key)
{
    if (!key)
        return false;
    size_t len = strlen(key);
    if (len == 0 || len > TF_STORAGE_MAX_KEY)
        return false;
    const char *p = key;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (!segment_valid(p, n))
            return false; /* also catches a leading '/', "//" and a trailing '/' */
        if (!slash)
            return true;
        p = slash + 1;
    }
}
