/*
 * log.h: one line per event to stderr (errors, warnings, info) and the access log to stdout,
 * as text or JSON (--log-format json). Line-buffered, safe to call from any thread: each
 * line is formatted into a local buffer and written with one write(2).
 */
#ifndef TF_LOG_H
#define TF_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum tf_log_level { TF_LOG_DEBUG = 0, TF_LOG_INFO, TF_LOG_WARN, TF_LOG_ERROR };

/* Set once at start-up (and on reload) before workers run; read-only afterwards. */
void tf_log_setup(enum tf_log_level min_level, bool json);
bool tf_log_enabled(enum tf_log_level level);

/* tf_log(TF_LOG_INFO, "conn", "conn=%llu backend refused", id) */
void tf_log(enum tf_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log OpenSSL's whole error queue with context at ERROR/WARN/INFO level, then clear it. */
void tf_log_ssl(enum tf_log_level level, const char *module, const char *context);

/* A rate-limited message class: the first line is written, then at most one line per
 * interval, which says how many were held back since the previous one ("... (repeated 523
 * times in the last 10 s)"). Embedded in its owner (e.g. struct tf_stats) and zero-
 * initialised; interval_ms 0 means TF_LOG_LIMIT_DEFAULT_MS. Thread-safe (atomics), so
 * workers and the control loop may share one. Lines held back when a flood stops are only
 * counted (tf_log_limit_suppressed(), exported as metrics), never written later. */
#define TF_LOG_LIMIT_DEFAULT_MS 10000
struct tf_log_limit {
    uint32_t interval_ms;
    atomic_llong next_ms;         /* earliest clock value at which a line may be written */
    atomic_ullong pending;        /* held back since the last written line */
    atomic_ullong suppressed;     /* held back ever */
};

/* Whether a line of class l may be written at now_ms (any monotonic clock, never going
 * back). When it may, *repeated gets how many were held back since the last written line
 * and *span_ms how long ago that line was written (0 when none was). */
bool tf_log_limit_pass(struct tf_log_limit *l, int64_t now_ms, uint64_t *repeated,
                       int64_t *span_ms);
uint64_t tf_log_limit_suppressed(const struct tf_log_limit *l);

/* tf_log() through the limiter l at now_ms (tf_mono_ms() in production). Nothing is counted
 * while level is disabled. */
void tf_log_limited(struct tf_log_limit *l, int64_t now_ms, enum tf_log_level level,
                    const char *module, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* One access-log record: key/value pairs, values already strings. Text mode prints
 * "key=value" separated by spaces (values with spaces quoted); JSON mode prints an object. */
struct tf_kv {
    const char *key;
    const char *val;
    bool is_num; /* JSON: emit without quotes */
};
void tf_log_access(const struct tf_kv *kv, int n);

#define TF_DEBUG(mod, ...) do { if (tf_log_enabled(TF_LOG_DEBUG)) tf_log(TF_LOG_DEBUG, mod, __VA_ARGS__); } while (0)
#define TF_INFO(mod, ...) tf_log(TF_LOG_INFO, mod, __VA_ARGS__)
#define TF_WARN(mod, ...) tf_log(TF_LOG_WARN, mod, __VA_ARGS__)
#define TF_ERROR(mod, ...) tf_log(TF_LOG_ERROR, mod, __VA_ARGS__)

#endif
