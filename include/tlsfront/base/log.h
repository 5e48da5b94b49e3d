/*
 * log.h: one line per event to stderr (errors, warnings, info) and the access log to stdout,
 * as text or JSON (--log-format json). Line-buffered, safe to call from any thread: each
 * line is formatted into a local buffer and written with one write(2).
 */
#ifndef TF_LOG_H
#define TF_LOG_H

#include <stdbool.h>

enum tf_log_level { TF_LOG_DEBUG = 0, TF_LOG_INFO, TF_LOG_WARN, TF_LOG_ERROR };

/* Set once at start-up (and on reload) before workers run; read-only afterwards. */
void tf_log_setup(enum tf_log_level min_level, bool json);
bool tf_log_enabled(enum tf_log_level level);

/* tf_log(TF_LOG_INFO, "conn", "conn=%llu backend refused", id) */
void tf_log(enum tf_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Log OpenSSL's whole error queue with context at ERROR/WARN/INFO level, then clear it. */
void tf_log_ssl(enum tf_log_level level, const char *module, const char *context);

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
