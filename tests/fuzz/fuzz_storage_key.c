/*
 * fuzz_storage_key.c: libFuzzer target for the storage key grammar (storage.c) and the
 * filesystem store's key-to-path mapping (storage_fs.c). The input is one key, or two keys
 * separated by a NUL byte.
 * Checked: validation never reads past the key (ASan); every valid key maps to a path under
 * the storage directory whose segments are neither empty, ".", "..", nor hidden (so no key
 * reaches a temp file, the lock area or outside the directory), that names a wildcard
 * segment "*.x" "_wildcard_.x" and leaves every other segment as it is; two different
 * valid keys never share a path.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/store/storage_fs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define DIR "/srv/store"

/* Map the path back to the key it came from, checking every segment on the way. */
static char *path_to_key(const char *path)
{
    size_t dl = strlen(DIR);
    if (strncmp(path, DIR, dl) != 0 || path[dl] != '/')
        abort();
    char *key = tf_malloc(strlen(path) + 1);
    size_t kn = 0;
    for (const char *seg = path + dl + 1; seg;) {
        const char *slash = strchr(seg, '/');
        size_t sl = slash ? (size_t)(slash - seg) : strlen(seg);
        if (sl == 0 || seg[0] == '.')
            abort();
        if (sl > 11 && memcmp(seg, "_wildcard_.", 11) == 0) {
            key[kn++] = '*';
            key[kn++] = '.';
            memcpy(key + kn, seg + 11, sl - 11);
            kn += sl - 11;
        } else {
            if (sl >= 10 && memcmp(seg, "_wildcard_", 10) == 0)
                abort(); /* the reserved spelling only ever encodes "*." */
            memcpy(key + kn, seg, sl);
            kn += sl;
        }
        key[kn++] = slash ? '/' : '\0';
        seg = slash ? slash + 1 : NULL;
    }
    return key;
}

static char *check_key(const char *key)
{
    if (!tf_storage_key_valid(key))
        return NULL;
    size_t len = strlen(key);
    if (len == 0 || len > TF_STORAGE_MAX_KEY || key[0] == '/' || key[len - 1] == '/')
        abort();
    char *path = tf_storage_fs_path(DIR, NULL, key, NULL);
    char *back = path_to_key(path);
    if (strcmp(back, key) != 0)
        abort();
    free(back);
    return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* Copies: NUL-terminated at exactly their length, so over-reads show. */
    const uint8_t *nul = memchr(data, 0, size);
    size_t n1 = nul ? (size_t)(nul - data) : size;
    char *k1 = tf_strndup((const char *)data, n1);
    char *k2 = nul ? tf_strndup((const char *)nul + 1, size - n1 - 1) : NULL;
    char *p1 = check_key(k1);
    char *p2 = k2 ? check_key(k2) : NULL;
    if (p1 && p2 && strcmp(k1, k2) != 0 && strcmp(p1, p2) == 0)
        abort();
    free(p1);
    free(p2);
    free(k1);
    free(k2);
    return 0;
}
