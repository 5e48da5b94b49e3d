/*
 * metrics.h: a small writer for the Prometheus text exposition format (version 0.0.4) into a
 * growable buffer, and lock-free histograms that any worker thread may observe into. The
 * writer owns no state beyond the buffer it is handed; it never does I/O and never reads
 * counters on its own: the caller (the server's metrics hook, on the control loop) passes
 * values in. The buffer doubles as the plain growable string for /certs JSON.
 *
 * Families: HELP and TYPE are printed the first time a family name is written to a buffer;
 * further samples of the same family (other label sets) must follow it directly, e.g.
 *     tf_metrics_counter(b, "tlsfront_handshakes_total", "TLS handshakes.", "result=\"ok\"", 5);
 *     tf_metrics_counter(b, "tlsfront_handshakes_total", "TLS handshakes.", "result=\"failed\"",
 * 1); Returning to a family after writing another one is a programming error (the exposition format
 * forbids it) and trips an assert.
 */
#ifndef TF_METRICS_H
#define TF_METRICS_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A growable byte buffer, always NUL-terminated after the first append. Owned by whoever
 * declared it; release with tf_metrics_buf_free. Allocation failure aborts (common.h). */
struct tf_metrics_buf {
    char *data;
    size_t len, cap;
    char **families; /* family names written so far (for HELP/TYPE once) */
    int n_families, cap_families;
};

void tf_metrics_buf_init(struct tf_metrics_buf *b);
void tf_metrics_buf_free(struct tf_metrics_buf *b);
/* Forget the content and the families, keep the memory. */
void tf_metrics_buf_reset(struct tf_metrics_buf *b);
void tf_metrics_buf_append(struct tf_metrics_buf *b, const char *s, size_t n);
void tf_metrics_buf_puts(struct tf_metrics_buf *b, const char *s);
void tf_metrics_buf_printf(struct tf_metrics_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Append s as the inside of a JSON string (quotes not included): ", \ and controls escaped. */
void tf_metrics_buf_json_str(struct tf_metrics_buf *b, const char *s);

/* Append one label pair key="value" to a label list under construction, with a comma when
 * the list is not empty. The value is escaped (\\, \", \n) as the format requires, so names
 * from peers (SNI) are safe here. key must be a valid label name (our own constant). */
void tf_metrics_label(struct tf_metrics_buf *labels, const char *key, const char *value);

/* One sample. name is the family name; labels is "" or NULL for none, or a pre-formatted
 * list such as "result=\"ok\",version=\"TLSv1.3\"" (built with tf_metrics_label when the
 * values are not constants). help is one line; it is escaped. */
void tf_metrics_counter(struct tf_metrics_buf *b, const char *name, const char *help,
                        const char *labels, uint64_t value);
void tf_metrics_gauge(struct tf_metrics_buf *b, const char *name, const char *help,
                      const char *labels, double value);

/* Histogram with fixed upper bounds (strictly increasing, +Inf implied). Counts are atomic:
 * any thread may observe without a lock while the control loop reads it for a scrape. A
 * scrape reads each bucket once and derives _count from those reads, so a scrape is always
 * self-consistent (buckets cumulative, +Inf == _count); _sum may lag by in-flight adds. */
#define TF_HISTOGRAM_MAX_BOUNDS 20
struct tf_histogram {
    int n_bounds;
    double bounds[TF_HISTOGRAM_MAX_BOUNDS];
    atomic_ullong counts[TF_HISTOGRAM_MAX_BOUNDS + 1]; /* per bucket, last one is +Inf */
    _Atomic double sum;
};

/* Set bounds (copied) and zero the counts. Returns 0, or TF_EINVAL if n is out of range
 * (1..TF_HISTOGRAM_MAX_BOUNDS) or the bounds are not finite and strictly increasing. */
int tf_histogram_init(struct tf_histogram *h, const double *bounds, int n);
/* Record one value (any thread, lock-free). NaN is ignored. */
void tf_histogram_observe(struct tf_histogram *h, double value);
/* Record one value into a histogram only the calling thread writes (others may read it):
 * plain relaxed loads and stores, no read-modify-write. NaN is ignored. */
void tf_histogram_observe_own(struct tf_histogram *h, double value);
/* Add src's counts and sum into dst, the caller's own (same bounds: a programming error
 * otherwise, asserted). */
void tf_histogram_fold(struct tf_histogram *dst, const struct tf_histogram *src);
/* Write the family: _bucket{le=...} cumulative lines, _sum and _count. labels as above
 * (le is appended to them). */
void tf_metrics_histogram(struct tf_metrics_buf *b, const char *name, const char *help,
                          const char *labels, struct tf_histogram *h);

/* Standard bounds in seconds for handshake (1 ms .. 10 s) and issuance (0.5 s .. 300 s). */
extern const double tf_metrics_handshake_bounds[];
extern const int tf_metrics_handshake_nbounds;
extern const double tf_metrics_issuance_bounds[];
extern const int tf_metrics_issuance_nbounds;

#endif
