/*
 * log.c: event and access logging. The only process-wide settings in tlsfront live here
 * (minimum level and format), written once before any thread starts and on reload from the
 * control loop; they are atomics so a worker reading them mid-reload sees a whole value.
 * Rate-limited message classes (struct tf_log_limit) keep their state in their owner, never
 * here, and are driven by the caller's clock so that tests can feed a fake one.
 * Never blocks on anything but write(2) to stderr/stdout; never logs key material.
 */
#include "tlsfront/base/log.h"
#include "tlsfront/base/common.h"

#include <openssl/err.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int g_min_level = TF_LOG_INFO;
static atomic_bool g_json = false;

void tf_log_setup(enum tf_log_level min_level, bool json)
{
    atomic_store(&g_min_level, (int)min_level);
    atomic_store(&g_json, json);
}

bool tf_log_enabled(enum tf_log_level level)
{
    return (int)level >= atomic_load_explicit(&g_min_level, memory_order_relaxed);
}

static const char *level_name(enum tf_log_level l)
{
    switch (l) {
    case TF_LOG_DEBUG: return "debug";
    case TF_LOG_INFO: return "info";
    case TF_LOG_WARN: return "warn";
    default: return "error";
    }
}

/* "2026-11-28T16:40:00.123Z". The part up to the seconds is formatted once a second per
 * thread (a thread-local cache: strftime is costly on the per-connection access log path). */
static size_t timestamp(char *buf, size_t cap)
{
    static _Thread_local time_t cached_sec = -1;
    static _Thread_local char cached[32];
    static _Thread_local size_t cached_len;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    if (tv.tv_sec != cached_sec) {
        struct tm tm;
        gmtime_r(&tv.tv_sec, &tm);
        cached_len = strftime(cached, sizeof cached, "%Y-%m-%dT%H:%M:%S", &tm);
        cached_sec = tv.tv_sec;
    }
    if (cap < cached_len + 6)
        return 0;
    memcpy(buf, cached, cached_len);
    int ms = (int)(tv.tv_usec / 1000);
    char *p = buf + cached_len;
    p[0] = '.';
    p[1] = (char)('0' + ms / 100);
    p[2] = (char)('0' + ms / 10 % 10);
    p[3] = (char)('0' + ms % 10);
    p[4] = 'Z';
    p[5] = '\0';
    return cached_len + 5;
}

/* Append s to buf as a JSON string body (no quotes), escaping as needed. */
static size_t json_escape(char *buf, size_t cap, size_t n, const char *s)
{
    for (; *s && n + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[n++] = '\\';
            buf[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(buf + n, cap - n, "\\u%04x", c);
        } else {
            buf[n++] = (char)c;
        }
    }
    return n;
}

static void emit(int fd, char *buf, size_t n, size_t cap)
{
    if (n >= cap - 1)
        n = cap - 2;
    buf[n++] = '\n';
    /* One write per line keeps lines whole between threads; short writes are retried. */
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, buf + off, n - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

void tf_log(enum tf_log_level level, const char *module, const char *fmt, ...)
{
    if (!tf_log_enabled(level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char buf[4096];
    size_t n = 0;
    char ts[40];
    timestamp(ts, sizeof ts);
    if (atomic_load(&g_json)) {
        n += (size_t)snprintf(buf, sizeof buf, "{\"ts\":\"%s\",\"level\":\"%s\",\"module\":\"%s\",\"msg\":\"",
                              ts, level_name(level), module);
        n = json_escape(buf, sizeof buf, n, msg);
        n += (size_t)snprintf(buf + n, sizeof buf - n, "\"}");
    } else {
        n += (size_t)snprintf(buf, sizeof buf, "%s %s %s: %s", ts, level_name(level), module, msg);
    }
    emit(STDERR_FILENO, buf, n, sizeof buf);
}

bool tf_log_limit_pass(struct tf_log_limit *l, int64_t now_ms, uint64_t *repeated,
                       int64_t *span_ms)
{
    int64_t interval = l->interval_ms ? l->interval_ms : TF_LOG_LIMIT_DEFAULT_MS;
    long long next = atomic_load(&l->next_ms);
    /* One thread wins the window: the others (and later callers inside it) only count. */
    if (now_ms < next || !atomic_compare_exchange_strong(&l->next_ms, &next, now_ms + interval)) {
        atomic_fetch_add_explicit(&l->pending, 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&l->suppressed, 1, memory_order_relaxed);
        return false;
    }
    *repeated = atomic_exchange(&l->pending, 0);
    /* next was the previous line's time plus the interval; 0 (never written) gives 0. */
    *span_ms = next ? now_ms - (next - interval) : 0;
    return true;
}

uint64_t tf_log_limit_suppressed(const struct tf_log_limit *l)
{
    return atomic_load_explicit(&l->suppressed, memory_order_relaxed);
}

void tf_log_limited(struct tf_log_limit *l, int64_t now_ms, enum tf_log_level level,
                    const char *module, const char *fmt, ...)
{
    uint64_t repeated;
    int64_t span_ms;
    if (!tf_log_enabled(level) || !tf_log_limit_pass(l, now_ms, &repeated, &span_ms))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (repeated == 0)
        tf_log(level, module, "%s", msg);
    else
        tf_log(level, module, "%s (repeated %llu times in the last %lld s)", msg,
               (unsigned long long)repeated, (long long)((span_ms + 500) / 1000));
}

void tf_log_ssl(enum tf_log_level level, const char *module, const char *context)
{
    unsigned long e;
    char line[256];
    const char *file, *data;
    int lineno, flags;
    int count = 0;
    while ((e = ERR_get_error_all(&file, &lineno, NULL, &data, &flags)) != 0) {
        ERR_error_string_n(e, line, sizeof line);
        tf_log(level, module, "%s: %s%s%s", context, line, (flags & ERR_TXT_STRING) ? ": " : "",
               (flags & ERR_TXT_STRING) ? data : "");
        count++;
    }
    if (count == 0)
        tf_log(level, module, "%s: (no OpenSSL error queued)", context);
}

/* Bounded appends for the access line. */
struct line {
    char *buf;
    size_t len, cap;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (l->len + n >= l->cap)
        n = l->cap - l->len - 1;
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void puts_(struct line *l, const char *s)
{
    put(l, s, strlen(s));
}

void tf_log_access(const struct tf_kv *kv, int n)
{
    char buf[4096];
    struct line l = {buf, 0, sizeof buf - 2};
    bool json = atomic_load(&g_json);
    if (json)
        puts_(&l, "{\"ts\":\"");
    l.len += timestamp(l.buf + l.len, l.cap - l.len); /* writes nothing when it does not fit */
    puts_(&l, json ? "\",\"type\":\"access\"" : " access");
    for (int i = 0; i < n; i++) {
        const char *v = kv[i].val ? kv[i].val : "-";
        bool quote = json ? !kv[i].is_num : (strpbrk(v, " \"=\\") != NULL || *v == '\0');
        puts_(&l, json ? ",\"" : " ");
        puts_(&l, kv[i].key);
        puts_(&l, json ? "\":" : "=");
        if (quote) {
            puts_(&l, "\"");
            l.len = json_escape(l.buf, l.cap, l.len, v);
            puts_(&l, "\"");
        } else {
            puts_(&l, v);
        }
    }
    if (json)
        puts_(&l, "}");
    emit(STDOUT_FILENO, buf, l.len, sizeof buf);
}
