/*
 * config_int.h: shared only by the files of the config module (config.c and the files of
 * config_load_int.h: the sources and the option table; config_parse.c: value parsers;
 * config_opts.c: option handlers; config_json.c: the JSON file). Parsers and handlers share one contract: parse text, fill
 * an out-parameter, and on failure return TF_EINVAL with a message in err that names the
 * problem and quotes the bad text but not the option (the caller adds "--flag: ",
 * "TLSFRONT_X: " or "file: key \"x\": "). Nothing here does I/O except tf_config_json_load.
 * Other modules may use the pattern parser (route.c) but should include config.h otherwise.
 */
#ifndef TF_CONFIG_INTERNAL_H
#define TF_CONFIG_INTERNAL_H

#include "tlsfront/config/config.h"

#include <stddef.h>
#include <stdint.h>

/* Whole decimal integer in [min, max]; no sign games, no trailing text, no blanks. */
int tf_config_parse_int(const char *s, long long min, long long max, long long *out, char *err,
                        size_t errlen);

/* Finite decimal number in [min, max]. */
int tf_config_parse_double(const char *s, double min, double max, double *out, char *err,
                           size_t errlen);

/* "250ms", "10s", "5m", "2h", "1d" or a bare number of seconds, into milliseconds within
 * [min_ms, max_ms]. With whole_s, the value must be a whole number of seconds. */
int tf_config_parse_duration(const char *s, uint64_t min_ms, uint64_t max_ms, bool whole_s,
                             uint64_t *out_ms, char *err, size_t errlen);

/* An exact DNS name or "*.suffix" (a wildcard for exactly one label). On success *out is a
 * fresh lower-cased copy owned by the caller. */
int tf_config_parse_pattern(const char *s, char **out, char *err, size_t errlen);

/* A list of ALPN protocol ids separated by sep (',' for --alpn, '+' inside --route). Replaces
 * out[0..*n) (freeing the old strings) only on success. */
int tf_config_parse_alpn(const char *s, char sep, char **out, int *n, char *err, size_t errlen);

/* "IP:PORT", "[IPv6]:PORT" or ":PORT" (IPv6 any, dual-stack) with no options; port 0..65535
 * (0 = kernel-chosen, for tests). *any is set for ":PORT". */
int tf_config_parse_addr(const char *s, size_t len, struct sockaddr_storage *out, bool *any,
                         char *err, size_t errlen);

/* "PATTERN=HOST:PORT[,proxy=v1|v2][,mode=tcp|http][,alpn=a+b]". On success *out owns its
 * strings (free with tf_config_route_clear); on failure *out is left zeroed. */
int tf_config_parse_route(const char *s, struct tf_route *out, char *err, size_t errlen);

/* Free the strings inside a backend, listener or route (not the struct itself). */
void tf_config_backend_clear(struct tf_backend *b);
void tf_config_listen_clear(struct tf_listen *l);
void tf_config_route_clear(struct tf_route *r);

/* "1|true|yes|on" or "0|false|no|off". */
int tf_config_parse_bool(const char *val, bool *out, char *err, size_t errlen);

/*
 * Option handlers (config_opts.c): parse val into cfg (off = the row's field where the
 * handler serves several rows). The repeatable ones (listen, route, allow) append, and take
 * val NULL to empty their list. On failure the field is unchanged.
 */
typedef int (*tf_config_setter)(struct tf_config *cfg, size_t off, const char *val, char *err,
                                size_t errlen);
int tf_config_set_listen(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_backend(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_route(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_alpn(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_tls_min(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_log_format(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_access_log(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_log_level(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_admin(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_redirect(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_key_type(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_acme_challenges(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_eab_hmac(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_allow(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_webhook(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_profile_for(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_issue_rate(struct tf_config *, size_t, const char *, char *, size_t);
/* off is that of proxy_from or trusted_xff (the count follows the pointer). */
int tf_config_set_cidr(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_hsts(struct tf_config *, size_t, const char *, char *, size_t);
/* config_storage.c: --storage (a DIR or a redis:// URL), --storage-prefix, and the checks
 * between the storage options once every source is applied. */
int tf_config_set_storage(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_storage_prefix(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_check_storage(const struct tf_config *cfg, char *err, size_t errlen);
/* config_acme.c: --acme-directory (repeatable, "URL[,ca=FILE][,eab-kid=KID,eab-hmac=KEY]");
 * finish: once every source is applied, give the first CA the plain --acme-ca and
 * --acme-eab-* (who[] names where those two and --acme-eab-hmac came from, for messages) and
 * set acme_directory; differ: for a reload. */
int tf_config_set_acme_directory(struct tf_config *, size_t, const char *, char *, size_t);
void tf_config_clear_acme_cas(struct tf_config *cfg);
int tf_config_finish_acme(struct tf_config *cfg, const char *const who[3], char *err,
                          size_t errlen);
bool tf_config_acme_cas_differ(const struct tf_config *a, const struct tf_config *b);
int tf_config_set_forwarded(struct tf_config *, size_t, const char *, char *, size_t);
int tf_config_set_admin_token_reads(struct tf_config *, size_t, const char *, char *, size_t);

/* config_envfile.c: the lines of an env file (--env-file): blank lines and lines starting
 * with '#' skipped, "export " before a key allowed, KEY=VALUE with one pair of matching
 * quotes around VALUE removed (as systemd's EnvironmentFile and most shells read them).
 * Returns a NULL-terminated array of "KEY=VALUE" strings (free with tf_config_envfile_free),
 * or NULL with err set: "FILE: ..." or "FILE:LINE: ...". */
char **tf_config_envfile_read(const char *path, char *err, size_t errlen);
void tf_config_envfile_free(char **lines);

/* config_diff.c: the options a reload cannot change, for --help (keep in step with the
 * table there; a unit test checks it). */
#define TF_CONFIG_RESTART_TEXT                                                                     \
    "--listen, --backlog, --workers, --admin, --redirect-http, --ticket-rotate,\n"                 \
    "--storage, --storage-prefix, --storage-key, --storage-ca, --storage-cache,\n"                 \
    "--acme-directory, --acme-email, --acme-key-type, --acme-ca, --acme-eab-kid,\n"                \
    "--acme-eab-hmac, --acme-challenges, --issue-rate, --issue-burst, --max-orders,\n"             \
    "--max-names, --webhook, --webhook-secret-file, --webhook-ca, --webhook-queue, and\n"           \
    "turning on-demand issuance on (--allow/--ask when neither was set at start)"

/* Free a config and everything it owns, whatever its refcount; accepts NULL. */
void tf_config_free_all(struct tf_config *cfg);

/* What JSON value a key takes; config.c maps each option row to one of these. */
enum tf_config_jshape {
    TF_JS_NUMBER,      /* a number */
    TF_JS_DURATION,    /* a number of seconds or a duration string */
    TF_JS_STRING,      /* a string */
    TF_JS_STRING_NUM,  /* a string or a number (used as text: 1.2 -> "1.2") */
    TF_JS_STRING_LIST, /* a string or an array of strings, joined with ',' */
    TF_JS_ARRAY,       /* an array of strings, one value each */
    TF_JS_ARRAY_ONE,   /* TF_JS_ARRAY, or one string (a list of one) */
    TF_JS_ROUTES,      /* an array of strings or route objects */
};

/* Where the JSON reader delivers values. shape() returns TF_ENOTFOUND for an unknown key.
 * set() applies one value as text (text NULL: an array starts, drop the old list) and on
 * failure writes the whole message, starting with who, into the caller's err. */
struct tf_config_json_sink {
    void *ctx;
    int (*shape)(void *ctx, const char *key, enum tf_config_jshape *shape);
    int (*set)(void *ctx, const char *key, const char *text, const char *who);
};

/* Read path (named by who, e.g. "--config", in open errors), parse it and feed every key to
 * sink. On failure err holds one line: "path:LINE:COL: JSON syntax error", "path: key
 * \"k\": ...", "path: unknown key \"k\"" or "who: cannot read \"path\": ...". */
int tf_config_json_load(const char *path, const char *who, const struct tf_config_json_sink *sink,
                        char *err, size_t errlen);

#endif
