/*
 * metrics.c: the Prometheus text exposition writer (format 0.0.4) and the lock-free
 * histogram. Owns only the buffers it is handed; reads no server state, does no I/O and
 * never blocks, so it is safe on the control loop and (for tf_histogram_observe) on workers.
 * See https://prometheus.io/docs/instrumenting/exposition_formats/ for the grammar: HELP
 * escapes backslash and newline, label values also escape the double quote, floats use Go's
 * spelling of the specials (+Inf, -Inf, NaN).
 */
#include "tlsfront/base/metrics.h"

#include "tlsfront/base/common.h"

#include <assert.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double tf_metrics_handshake_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                              0.25,  0.5,    1,     2.5,  5,     10};
const int tf_metrics_handshake_nbounds = (int)TF_ARRAY_LEN(tf_metrics_handshake_bounds);
const double tf_metrics_issuance_bounds[] = {0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300};
const int tf_metrics_issuance_nbounds = (int)TF_ARRAY_LEN(tf_metrics_issuance_bounds);

void tf_metrics_buf_init(struct tf_metrics_buf *b)
{
    memset(b, 0, sizeof *b);
}

void tf_metrics_buf_reset(struct tf_metrics_buf *b)
{
    for (int i = 0; i < b->n_families; i++)
        free(b->families[i]);
    b->n_families = 0;
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void tf_metrics_buf_free(struct tf_metrics_buf *b)
{
    if (!b)
        return;
    tf_metrics_buf_reset(b);
    free(b->families);
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* Make room for n more bytes plus the terminating NUL. */
static void buf_reserve(struct tf_metrics_buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1)
        cap *= 2;
    b->data = tf_realloc(b->data, cap);
    b->cap = cap;
}

void tf_metrics_buf_append(struct tf_metrics_buf *b, const char *s, size_t n)
{
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void tf_metrics_buf_puts(struct tf_metrics_buf *b, const char *s)
{
    tf_metrics_buf_append(b, s, strlen(s));
}

void tf_metrics_buf_printf(struct tf_metrics_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        tf_metrics_buf_append(b, tmp, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void tf_metrics_buf_json_str(struct tf_metrics_buf *b, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            tf_metrics_buf_append(b, esc, 2);
        } else if (*p < 0x20 || *p == 0x7f) {
            tf_metrics_buf_printf(b, "\\u%04x", *p);
        } else {
            tf_metrics_buf_append(b, (const char *)p, 1);
        }
    }
}

/* Append s with the exposition escapes: always \\ and \n, and \" when quote is set. */
static void append_escaped(struct tf_metrics_buf *b, const char *s, bool quote)
{
    for (const char *p = s; *p; p++) {
        if (*p == '\\')
            tf_metrics_buf_append(b, "\\\\", 2);
        else if (*p == '\n')
            tf_metrics_buf_append(b, "\\n", 2);
        else if (*p == '"' && quote)
            tf_metrics_buf_append(b, "\\\"", 2);
        else
            tf_metrics_buf_append(b, p, 1);
    }
}

void tf_metrics_label(struct tf_metrics_buf *labels, const char *key, const char *value)
{
    if (labels->len > 0)
        tf_metrics_buf_append(labels, ",", 1);
    tf_metrics_buf_puts(labels, key);
    tf_metrics_buf_append(labels, "=\"", 2);
    append_escaped(labels, value ? value : "", true);
    tf_metrics_buf_append(labels, "\"", 1);
}

/* Print HELP and TYPE unless this family was the last one written. A family seen earlier
 * but not last would be split in two, which the format forbids: that is our bug. */
static void family_header(struct tf_metrics_buf *b, const char *name, const char *type,
                          const char *help)
{
    if (b->n_families > 0 && strcmp(b->families[b->n_families - 1], name) == 0)
        return;
    for (int i = 0; i < b->n_families; i++)
        assert(strcmp(b->families[i], name) != 0 && "metric family written twice");
    if (b->n_families == b->cap_families) {
        b->cap_families = b->cap_families ? b->cap_families * 2 : 16;
        b->families = tf_realloc(b->families, (size_t)b->cap_families * sizeof(char *));
    }
    b->families[b->n_families++] = tf_strdup(name);
    tf_metrics_buf_printf(b, "# HELP %s ", name);
    append_escaped(b, help ? help : "", false);
    tf_metrics_buf_printf(b, "\n# TYPE %s %s\n", name, type);
}

/* Format a float the way Prometheus parses it: shortest text that reads back exactly. */
static void format_double(char *out, size_t n, double v)
{
    if (isnan(v)) {
        snprintf(out, n, "NaN");
    } else if (isinf(v)) {
        snprintf(out, n, "%s", v > 0 ? "+Inf" : "-Inf");
    } else {
        snprintf(out, n, "%.15g", v);
        if (strtod(out, NULL) != v)
            snprintf(out, n, "%.17g", v);
    }
}

/* name{labels} or name, then a space; suffix is appended to the name (_bucket etc.). */
static void sample_start(struct tf_metrics_buf *b, const char *name, const char *suffix,
                         const char *labels, const char *extra)
{
    tf_metrics_buf_puts(b, name);
    tf_metrics_buf_puts(b, suffix);
    bool have = labels && *labels;
    if (have || extra) {
        tf_metrics_buf_append(b, "{", 1);
        if (have)
            tf_metrics_buf_puts(b, labels);
        if (have && extra)
            tf_metrics_buf_append(b, ",", 1);
        if (extra)
            tf_metrics_buf_puts(b, extra);
        tf_metrics_buf_append(b, "}", 1);
    }
    tf_metrics_buf_append(b, " ", 1);
}

void tf_metrics_counter(struct tf_metrics_buf *b, const char *name, const char *help,
                        const char *labels, uint64_t value)
{
    family_header(b, name, "counter", help);
    sample_start(b, name, "", labels, NULL);
    tf_metrics_buf_printf(b, "%llu\n", (unsigned long long)value);
}

void tf_metrics_gauge(struct tf_metrics_buf *b, const char *name, const char *help,
                      const char *labels, double value)
{
    char num[40];
    family_header(b, name, "gauge", help);
    sample_start(b, name, "", labels, NULL);
    format_double(num, sizeof num, value);
    tf_metrics_buf_printf(b, "%s\n", num);
}

int tf_histogram_init(struct tf_histogram *h, const double *bounds, int n)
{
    if (n < 1 || n > TF_HISTOGRAM_MAX_BOUNDS)
        return TF_EINVAL;
    for (int i = 0; i < n; i++) {
        if (!isfinite(bounds[i]) || (i > 0 && bounds[i] <= bounds[i - 1]))
            return TF_EINVAL;
    }
    h->n_bounds = n;
    memcpy(h->bounds, bounds, (size_t)n * sizeof *bounds);
    for (int i = 0; i <= TF_HISTOGRAM_MAX_BOUNDS; i++)
        atomic_init(&h->counts[i], 0);
    atomic_init(&h->sum, 0.0);
    return 0;
}

/* The bucket value falls in: the first bound it does not exceed, else +Inf. */
static int bucket_of(const struct tf_histogram *h, double value)
{
    int i = 0;
    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    return i;
}

void tf_histogram_observe(struct tf_histogram *h, double value)
{
    if (isnan(value))
        return;
    int i = bucket_of(h, value);
    atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
    /* No fetch_add for floating atomics in C11: a compare-exchange loop, still lock-free. */
    double old = atomic_load_explicit(&h->sum, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(&h->sum, &old, old + value, memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

void tf_histogram_observe_own(struct tf_histogram *h, double value)
{
    if (isnan(value))
        return;
    int i = bucket_of(h, value);
    atomic_store_explicit(&h->counts[i],
                          atomic_load_explicit(&h->counts[i], memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_store_explicit(&h->sum, atomic_load_explicit(&h->sum, memory_order_relaxed) + value,
                          memory_order_relaxed);
}

void tf_histogram_fold(struct tf_histogram *dst, const struct tf_histogram *src)
{
    assert(dst->n_bounds == src->n_bounds);
    for (int i = 0; i <= dst->n_bounds; i++)
        atomic_store_explicit(&dst->counts[i],
                              atomic_load_explicit(&dst->counts[i], memory_order_relaxed) +
                                  atomic_load_explicit(&src->counts[i], memory_order_relaxed),
                              memory_order_relaxed);
    atomic_store_explicit(&dst->sum,
                          atomic_load_explicit(&dst->sum, memory_order_relaxed) +
                              atomic_load_explicit(&src->sum, memory_order_relaxed),
                          memory_order_relaxed);
}

void tf_metrics_histogram(struct tf_metrics_buf *b, const char *name, const char *help,
                          const char *labels, struct tf_histogram *h)
{
    char num[40], le[64];
    unsigned long long cum = 0;
    family_header(b, name, "histogram", help);
    for (int i = 0; i <= h->n_bounds; i++) {
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        if (i < h->n_bounds)
            format_double(num, sizeof num, h->bounds[i]);
        else
            snprintf(num, sizeof num, "+Inf");
        snprintf(le, sizeof le, "le=\"%s\"", num);
        sample_start(b, name, "_bucket", labels, le);
        tf_metrics_buf_printf(b, "%llu\n", cum);
    }
    format_double(num, sizeof num, atomic_load_explicit(&h->sum, memory_order_relaxed));
    sample_start(b, name, "_sum", labels, NULL);
    tf_metrics_buf_printf(b, "%s\n", num);
    sample_start(b, name, "_count", labels, NULL);
    tf_metrics_buf_printf(b, "%llu\n", cum);
}
