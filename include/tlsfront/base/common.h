/*
 * common.h: small shared helpers every module uses: error codes, allocation that aborts on
 * failure (STYLE: "if allocation fails, log a message and abort"), atomic reference counts,
 * and monotonic/wall time. Owns no state; never does I/O.
 */
#ifndef TF_COMMON_H
#define TF_COMMON_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

/* Error codes of our own; libuv codes (UV_E*) are negative too and do not overlap these. */
#define TF_EINVAL   (-10001) /* bad input from a peer, a file or the user */
#define TF_ENOTFOUND (-10002)
#define TF_ETLS     (-10003) /* OpenSSL failure; the error queue was logged by the caller */
#define TF_EPROTO   (-10004) /* peer violated a protocol */
#define TF_ETOOBIG  (-10005)
#define TF_ETIMEDOUT (-10006)
#define TF_EIO      (-10007)
#define TF_ECLOSED  (-10008)
#define TF_EBUSY    (-10009)
#define TF_EDENIED  (-10010)

/* Human-readable text for a TF_E* or UV_E* code. */
const char *tf_strerror(int err);

void *tf_malloc(size_t n);
void *tf_calloc(size_t n, size_t size);
void *tf_realloc(void *p, size_t n);
/* n zeroed elements of size bytes at an address aligned to align (a power of two, a multiple
 * of sizeof(void *)), for types declared with alignas; release with free(). */
void *tf_calloc_aligned(size_t n, size_t size, size_t align);
char *tf_strdup(const char *s);
char *tf_strndup(const char *s, size_t n);
/* printf into a fresh heap string; aborts on allocation failure. */
char *tf_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Decimal / lower-case hex text of v into out (capacity >= 21), NUL-terminated; returns the
 * length. For hot paths where snprintf's format parsing shows in profiles. */
size_t tf_u64_dec(char *out, uint64_t v);
size_t tf_u64_hex(char *out, uint64_t v);

/* Monotonic milliseconds and wall-clock seconds. tf_wall_now() honours the test-only clock
 * offset TLSFRONT_TEST_CLOCK_OFFSET (seconds) so renewal can be forced in tests. */
uint64_t tf_mono_ms(void);
int64_t tf_wall_now(void);

/* Atomic reference count embedded in shared, immutable objects. */
struct tf_ref {
    atomic_int n;
};
static inline void tf_ref_init(struct tf_ref *r, int n) { atomic_init(&r->n, n); }
static inline void tf_ref_inc(struct tf_ref *r) { atomic_fetch_add_explicit(&r->n, 1, memory_order_relaxed); }
/* Returns true when this was the last reference. */
static inline bool tf_ref_dec(struct tf_ref *r)
{
    return atomic_fetch_sub_explicit(&r->n, 1, memory_order_acq_rel) == 1;
}

#define TF_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TF_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TF_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
