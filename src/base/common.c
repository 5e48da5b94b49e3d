/*
 * common.c: allocation wrappers that abort on failure, error strings and clocks. Owns no
 * state beyond reading one test-only environment variable once.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static void oom(size_t n)
{
    fprintf(stderr, "tlsfront: out of memory allocating %zu bytes\n", n);
    abort();
}

void *tf_malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        oom(n);
    return p;
}

void *tf_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        oom(n * size);
    return p;
}

void *tf_calloc_aligned(size_t n, size_t size, size_t align)
{
    size_t total;
    if (__builtin_mul_overflow(n ? n : 1, size ? size : 1, &total))
        oom(SIZE_MAX);
    void *p = NULL;
    if (posix_memalign(&p, align, total) != 0)
        oom(total);
    memset(p, 0, total);
    return p;
}

void *tf_realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        oom(n);
    return q;
}

char *tf_strdup(const char *s)
{
    return tf_strndup(s, strlen(s));
}

char *tf_strndup(const char *s, size_t n)
{
    char *p = tf_malloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *tf_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *p = tf_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

const char *tf_strerror(int err)
{
    switch (err) {
    case 0: return "ok";
    case TF_EINVAL: return "invalid input";
    case TF_ENOTFOUND: return "not found";
    case TF_ETLS: return "TLS error";
    case TF_EPROTO: return "protocol error";
    case TF_ETOOBIG: return "too large";
    case TF_ETIMEDOUT: return "timed out";
    case TF_EIO: return "I/O error";
    case TF_ECLOSED: return "closed";
    case TF_EBUSY: return "busy";
    case TF_EDENIED: return "denied";
    default: return uv_strerror(err);
    }
}

/* v in base 10 or 16 (lower case) into out, NUL-terminated; returns the length. */
static size_t u64_text(char *out, uint64_t v, unsigned base)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = digits[v % base];
        v /= base;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t tf_u64_dec(char *out, uint64_t v)
{
    return u64_text(out, v, 10);
}

size_t tf_u64_hex(char *out, uint64_t v)
{
    return u64_text(out, v, 16);
}

uint64_t tf_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

int64_t tf_wall_now(void)
{
    /* The process never calls setenv, so reading the environment here is thread-safe. */
    const char *e = getenv("TLSFRONT_TEST_CLOCK_OFFSET");
    return (int64_t)time(NULL) + (e ? atoll(e) : 0);
}
