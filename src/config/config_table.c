/*
 * config_table.c: the option table, one TF_OPTIONS row per option (name, type, limits,
 * handler, metavar, default, help), and what is read off it: the row of a flag, variable or
 * JSON key, and the --help text. Flags, environment, JSON, defaults and --help all go through
 * a row, so they cannot drift apart. Owns no state and does no I/O; applying a row's value
 * is config.c's.
 */
#include "config_load_int.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#define MS_DAY 86400000LL
#define F(field) offsetof(struct tf_config, field)
#define S(name) tf_config_set_##name
#define DUR_MAX 4294967295LL /* largest uint32_t millisecond value, about 49.7 days */

/* X(name, type, flags, offset, min, max, handler, metavar, has-default Y|N, default, help) */
#define TF_OPTIONS(X)                                                                              \
    X("listen", OT_FN, OF_REPEAT, 0, 0, 0, S(listen), " ADDR:PORT", Y, ":8443",                    \
      "IP:PORT, [IPv6]:PORT or :PORT (all addresses); \",proxy\": PROXY protocol; repeatable")     \
    X("backlog", OT_INT, 0, F(backlog), 1, 65535, NULL, " N", Y, "511", "listen backlog")          \
    X("workers", OT_INT, 0, F(workers), 1, 1024, NULL, " N", N, "",                                \
      "worker threads (default: number of online CPUs)")                                           \
    X("certs", OT_STR, 0, F(certs_dir), 0, 0, NULL, " DIR", N, "", "static certificates")          \
    X("cert-cache", OT_INT, 0, F(cert_cache), 1, 100000000, NULL, " N", Y, "10000",              \
      "decoded certificates kept in memory; a larger --certs directory or managed store loads on " \
      "first use")                                                                                 \
    X("default-cert", OT_STR, 0, F(default_cert), 0, 0, NULL, " NAME", N, "",                      \
      "certificate for clients without SNI, or with an unknown name when --allow/--ask "       \
      "are off (default: refuse)")                                                             \
    X("backend", OT_FN, 0, 0, 0, 0, S(backend),                                                    \
      " HOST:PORT[,proxy=v1|v2][,mode=tcp|http][,connect=on]", N, "", "default backend")           \
    X("route", OT_FN, OF_REPEAT, 0, 0, 0, S(route),                                                \
      " PATTERN=HOST:PORT[,proxy=v1|v2][,mode=tcp|http][,connect=on][,alpn=A+B]", N, "",           \
      "send an exact name or *.suffix to a backend, repeatable (JSON: \"routes\", objects ok)")    \
    X("alpn", OT_FN, OF_JLIST, 0, 0, 0, S(alpn), " LIST", Y, "http/1.1",                           \
      "comma-separated ALPN protocols of the default backend")                                     \
    X("handshake-timeout", OT_MS, 0, F(handshake_timeout_ms), 1, DUR_MAX, NULL, " DUR", Y, "10s",  \
      "TLS handshake time limit")                                                                  \
    X("idle-timeout", OT_MS, 0, F(idle_timeout_ms), 1, DUR_MAX, NULL, " DUR", Y, "5m",             \
      "close connections idle this long")                                                          \
    X("connect-timeout", OT_MS, 0, F(connect_timeout_ms), 1, DUR_MAX, NULL, " DUR", Y, "5s",       \
      "backend connect time limit")                                                                \
    X("grace", OT_MS, 0, F(grace_ms), 0, DUR_MAX, NULL, " DUR", Y, "30s",                          \
      "drain time after SIGTERM")                                                                  \
    X("ticket-rotate", OT_SEC, 0, F(ticket_rotate_s), 1000, 365 * MS_DAY, NULL, " DUR", Y, "1h",   \
      "session ticket key rotation")                                                               \
    X("backend-keepalive", OT_INT, 0, F(backend_keepalive), 0, 100000, NULL, " N", Y, "32",      \
      "mode=http: idle backend connections kept for reuse, per worker and backend (0: off)")     \
    X("backend-keepalive-timeout", OT_MS, 0, F(backend_keepalive_timeout_ms), 1, DUR_MAX, NULL,  \
      " DUR", Y, "30s", "mode=http: close a pooled backend connection idle this long")          \
    X("max-connections", OT_INT, 0, F(max_connections), 1, 10000000, NULL, " N", Y, "10000",       \
      "connections per process")                                                                   \
    X("tls-min", OT_FN, OF_JNUM, 0, 0, 0, S(tls_min), " 1.2|1.3", Y, "1.2", "lowest TLS version")  \
    X("log-format", OT_FN, 0, 0, 0, 0, S(log_format), " text|json", Y, "text", "log format")       \
    X("log-level", OT_FN, 0, 0, 0, 0, S(log_level), " debug|info|warn|error", Y, "info",           \
      "lowest level logged")                                                                       \
    X("access-log", OT_FN, 0, 0, 0, 0, S(access_log), " on|off", Y, "on",                          \
      "one line per connection on stdout")                                                         \
    X("admin", OT_FN, 0, 0, 0, 0, S(admin), " ADDR:PORT", N, "",                                   \
      "admin and metrics listener (default: off)")                                                 \
    X("admin-token-file", OT_STR, 0, F(admin_token_file), 0, 0, NULL, " FILE", N, "",             \
      "bearer token for the admin API's actions, read at start and at each SIGHUP (default: "    \
      "actions off)")                                                                              \
    X("admin-token-reads", OT_FN, 0, 0, 0, 0, S(admin_token_reads), " on|off", Y, "off",          \
      "also require the token for /metrics and /certs (/healthz and /readyz stay open)")          \
    X("storage", OT_FN, 0, 0, 0, 0, S(storage), " DIR|redis[s]://[[USER]:PASSWORD@]HOST:PORT[/DB]",\
      Y, "/var/lib/tlsfront", "ACME account, keys and issued certificates")                        \
    X("storage-prefix", OT_FN, 0, 0, 0, 0, S(storage_prefix), " NAME", N, "",                      \
      "redis storage: key prefix, so several clusters share one Redis (default tlsfront)")         \
    X("storage-key", OT_STR, 0, F(storage_key), 0, 0, NULL, " FILE|none", N, "",                   \
      "redis storage: 64 hex digits that encrypt private keys in Redis (AES-256-GCM); required")   \
    X("storage-cache", OT_STR, 0, F(storage_cache), 0, 0, NULL, " DIR", N, "",                     \
      "redis storage: local write-through copy of the certificates, served after a restart "      \
      "while Redis is unreachable")                                                                \
    X("storage-ca", OT_STR, 0, F(storage_ca), 0, 0, NULL, " FILE", N, "",                          \
      "rediss:// storage: CA certificates (PEM) Redis's certificate must chain to (default: "    \
      "the system store)")                                                                         \
    X("storage-lease", OT_SEC, 0, F(storage_lease_s), 3000, MS_DAY, NULL, " DUR", Y, "30s",        \
      "order lock lease, renewed every third of it: a node killed mid-order blocks its name "     \
      "this long")                                                                                 \
    X("acme-directory", OT_FN, OF_REPEAT | OF_JONE, 0, 0, 0, S(acme_directory),                   \
      " URL[,ca=FILE][,eab-kid=KID,eab-hmac=KEY]", Y,                                              \
      "https://acme-v02.api.letsencrypt.org/directory",                                            \
      "ACME directory; repeatable: CAs tried in this order, the next when one fails a name "    \
      "(ca=, eab-*: that CA's trust anchor and EAB; the plain flags are the first's)")          \
    X("acme-email", OT_STR, 0, F(acme_email), 0, 0, NULL, " EMAIL", N, "", "account contact")      \
    X("acme-ca", OT_STR, 0, F(acme_ca), 0, 0, NULL, " FILE", N, "",                                \
      "extra trust anchor (PEM) for the (first) ACME directory's HTTPS")                         \
    X("acme-eab-kid", OT_STR, 0, F(acme_eab_kid), 0, 0, NULL, " KID", N, "",                       \
      "external account binding key id (of the first --acme-directory)")                         \
    X("acme-eab-hmac", OT_FN, 0, 0, 0, 0, S(eab_hmac), " KEY", N, "",                              \
      "external account binding HMAC key (base64url; of the first --acme-directory)")            \
    X("acme-profile", OT_STR, 0, F(acme_profile), 0, 0, NULL, " NAME", N, "",                      \
      "ACME certificate profile")                                                                  \
    X("acme-profile-for", OT_FN, OF_REPEAT, 0, 0, 0, S(profile_for), " PATTERN=PROFILE", N, "",   \
      "ACME profile for names matching PATTERN (exact beats *.suffix), repeatable")              \
    X("acme-key-type", OT_FN, 0, F(acme_account_key), 0, 0, S(key_type),                           \
      " ec256|rsa2048|rsa3072|rsa4096", Y, "ec256", "ACME account key type")                       \
    X("cert-key-type", OT_FN, 0, F(acme_cert_key), 0, 0, S(key_type),                              \
      " ec256|rsa2048|rsa3072|rsa4096", Y, "ec256", "certificate key type")                        \
    X("acme-timeout", OT_SEC, 0, F(acme_timeout_s), 1000, MS_DAY, NULL, " DUR", Y, "5m",           \
      "time limit for one whole order")                                                            \
    X("acme-challenges", OT_FN, OF_JLIST, 0, 0, 0, S(acme_challenges), " LIST", N, "",            \
      "challenge types in order of preference: tls-alpn-01, http-01 (needs --redirect-http); "   \
      "a failed validation tries the next (default: tls-alpn-01, then http-01 with "             \
      "--redirect-http)")                                                                          \
    X("allow", OT_FN, OF_REPEAT, 0, 0, 0, S(allow), " PATTERN", N, "",                             \
      "issue on demand only for an exact name or *.suffix, repeatable (with --ask: and "          \
      "only if --ask also says yes)")                                                              \
    X("ask", OT_URL, 0, F(ask), 0, 0, NULL, " URL", N, "",                                         \
      "ask this URL whether to issue for a name on demand (with --allow: only names matching "    \
      "a pattern are asked)")                                                                      \
    X("ask-timeout", OT_MS, 0, F(ask_timeout_ms), 1, DUR_MAX, NULL, " DUR", Y, "3s",               \
      "--ask request time limit")                                                                  \
    X("ask-cache", OT_SEC, 0, F(ask_cache_s), 0, 30 * MS_DAY, NULL, " DUR", Y, "5m",               \
      "how long --ask answers are cached")                                                         \
    X("hold-timeout", OT_MS, 0, F(hold_timeout_ms), 1, DUR_MAX, NULL, " DUR", Y, "20s",            \
      "how long a handshake waits for its certificate")                                            \
    X("issue-rate", OT_FN, OF_JNUM, 0, 0, 0, S(issue_rate), " N", Y, "10",                         \
      "orders per minute (token bucket rate; whole orders: below 1 acts as 1, 2.5 as 2)")                                                     \
    X("issue-burst", OT_INT, 0, F(issue_burst), 1, 1000000, NULL, " N", Y, "20",                   \
      "token bucket size")                                                                         \
    X("max-orders", OT_INT, 0, F(max_orders), 1, 1000, NULL, " N", Y, "4", "concurrent orders")    \
    X("max-held", OT_INT, 0, F(max_held), 1, 1000000, NULL, " N", Y, "1000",                       \
      "handshakes held waiting for certificates")                                                  \
    X("max-held-per-ip", OT_INT, 0, F(max_held_per_ip), 1, 1000000, NULL, " N", Y, "20",           \
      "held handshakes per client address")                                                        \
    X("max-names", OT_INT, 0, F(max_names), 1, 10000000, NULL, " N", Y, "10000",                   \
      "managed on-demand names")                                                                   \
    X("ca-certs-per-domain", OT_INT, 0, F(ca_certs_per_domain), 1, 1000000, NULL, " N", Y, "50", \
      "certificates ordered per registered domain per week (the CA's limit)")                      \
    X("backoff-base", OT_SEC, 0, F(backoff_base_s), 1000, 30 * MS_DAY, NULL, " DUR", Y, "1m",      \
      "first retry delay after a failed order for a name")                                         \
    X("backoff-max", OT_SEC, 0, F(backoff_max_s), 1000, 365 * MS_DAY, NULL, " DUR", Y, "1d",       \
      "longest retry delay")                                                                       \
    X("idle-name-days", OT_U32, 0, F(idle_name_days), 1, 3650, NULL, " N", Y, "30",                \
      "on-demand names unused this many days are not renewed")                                     \
    X("webhook", OT_FN, OF_REPEAT, 0, 0, 0, S(webhook), " URL", N, "",                              \
      "POST certificate events (JSON) to this http:// or https:// URL, repeatable")              \
    X("webhook-secret-file", OT_STR, 0, F(webhook_secret_file), 0, 0, NULL, " FILE", N, "",        \
      "--webhook: sign each event with HMAC-SHA256 keyed by this file's content")                \
    X("webhook-ca", OT_STR, 0, F(webhook_ca), 0, 0, NULL, " FILE", N, "",                          \
      "--webhook: extra trust anchor (PEM) for https:// receivers")                              \
    X("webhook-queue", OT_INT, 0, F(webhook_queue), 1, 10000, NULL, " N", Y, "1000",              \
      "--webhook: deliveries held at once (queued, in flight, waiting to retry); more are "      \
      "dropped and counted")                                                                       \
    X("redirect-http", OT_FN, 0, 0, 0, 0, S(redirect), " ADDR:PORT", N, "",                        \
      "plain-HTTP listener that redirects to https:// (default: off)")                             \
    X("redirect-max-per-ip", OT_INT, 0, F(redirect_max_per_ip), 1, 1024, NULL, " N", Y, "16",     \
      "--redirect-http connections open per client address")                                       \
    X("proxy-from", OT_FN, OF_REPEAT, F(proxy_from), 0, 0, S(cidr), " CIDR", N, "",                \
      "load balancers allowed to send PROXY headers to \",proxy\" listeners, repeatable "          \
      "(default: any)")                                                                            \
    X("trusted-xff", OT_FN, OF_REPEAT, F(trusted_xff), 0, 0, S(cidr), " CIDR", N, "",              \
      "mode=http: clients whose X-Forwarded-For is appended to, repeatable (others: replaced)")   \
    X("forwarded", OT_FN, 0, 0, 0, 0, S(forwarded), " on|off", Y, "off",                           \
      "mode=http: also send the RFC 7239 Forwarded header")                                        \
    X("hsts", OT_FN, 0, 0, 0, 0, S(hsts), " VALUE", N, "",                                        \
      "mode=http: add Strict-Transport-Security: VALUE to responses lacking it (default: off)")  \
    X("config", OT_FN, OF_PRE | OF_NOJSON, 0, 0, 0, NULL, " FILE", N, "",                          \
      "JSON config file (also -c)")                                                                \
    X("env-file", OT_FN, OF_PRE | OF_NOENV | OF_NOJSON, 0, 0, 0, NULL, " FILE", N, "",             \
      "TLSFRONT_*=VALUE lines (# comments), read at start and at each SIGHUP; they override "    \
      "the environment")                                                                           \
    X("takeover", OT_FLAG, OF_NOARG | OF_NOENV | OF_NOJSON, F(takeover), 0, 0, NULL, "", N, "",   \
      "listen even where a running tlsfront listens (upgrade: start the new one with this, "     \
      "then SIGTERM the old)")                                                                     \
    X("check", OT_CHECK, OF_NOARG | OF_NOENV | OF_NOJSON, 0, 0, 0, NULL, "", N, "",                \
      "validate the configuration and exit")                                                       \
    X("help", OT_FN, OF_NOARG | OF_NOENV | OF_NOJSON, 0, 0, 0, NULL, "", N, "",                    \
      "print this help and exit (also -h)")                                                        \
    X("version", OT_FN, OF_NOARG | OF_NOENV | OF_NOJSON, 0, 0, 0, NULL, "", N, "",                 \
      "print the version and exit")

#define TABLE_DEF_Y(d) d
#define TABLE_DEF_N(d) NULL
#define TABLE_ROW(name, type, flags, off, min, max, fn, meta, dk, def, help)                       \
    {name, type, flags, off, min, max, fn, TABLE_DEF_##dk(def)},
const struct tf_config_opt tf_config_opts[] = {TF_OPTIONS(TABLE_ROW)};
const size_t tf_config_n_opts = TF_ARRAY_LEN(tf_config_opts);
_Static_assert(TF_ARRAY_LEN(tf_config_opts) <= TF_CONFIG_OPTS_MAX, "raise TF_CONFIG_OPTS_MAX");

#define USAGE_DEF_Y(d) " (default " d ")"
#define USAGE_DEF_N(d) ""
#define USAGE_ROW(name, type, flags, off, min, max, fn, meta, dk, def, help)                       \
    "  --" name meta "\n        " help USAGE_DEF_##dk(def) "\n"
static const char usage_text[] =
    "Usage: tlsfront [OPTIONS]\n"
    "       tlsfront certs [--storage DIR|URL] [--storage-key FILE] [--storage-prefix NAME]\n"
    "           [--storage-ca FILE]\n"
    "           (lists the certificates in the ACME storage, one a line)\n"
    "       tlsfront revoke [OPTIONS] NAME [--reason REASON]\n"
    "           (revokes NAME's stored certificate and removes it from the storage)\n"
    "TLS-terminating front proxy with on-demand ACME certificates.\n\n"
    "Each option OPT-NAME but --check, --config, --env-file, --takeover, --help and\n"
    "--version may also be set by the environment variable TLSFRONT_OPT_NAME (repeatable\n"
    "options: a whitespace-separated list; unknown TLSFRONT_* names are warned about), by a\n"
    "TLSFRONT_OPT_NAME=VALUE line of the --env-file, or by the key \"opt_name\" of the JSON\n"
    "file given by --config (repeatable options: an array). Flags override the env file,\n"
    "which overrides the environment, which overrides the JSON file. Durations: 250ms, 10s,\n"
    "5m, 2h, 1d, or seconds.\n\n"
    "SIGHUP re-reads the JSON file, the env file and the certificate directory. These\n"
    "need a restart (a reload that changes one logs \"needs a restart\"):\n"
    TF_CONFIG_RESTART_TEXT ".\n\n"
    "Options:\n" TF_OPTIONS(USAGE_ROW);

const char *tf_config_usage(void)
{
    return usage_text;
}

/* Row whose flag name is the first len bytes of name, or NULL. */
const struct tf_config_opt *tf_config_opt_by_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < tf_config_n_opts; i++) {
        if (strlen(tf_config_opts[i].name) == len &&
            strncmp(tf_config_opts[i].name, name, len) == 0)
            return &tf_config_opts[i];
    }
    return NULL;
}

/* Row whose variable would be TLSFRONT_ + key (len bytes: the flag upper-cased, '-' as '_'),
 * OF_NOENV rows included (the caller tells them apart), or NULL. */
const struct tf_config_opt *tf_config_opt_by_env(const char *key, size_t len)
{
    for (size_t i = 0; i < tf_config_n_opts; i++) {
        const char *n = tf_config_opts[i].name;
        size_t j = 0;
        while (j < len && n[j] && key[j] == (n[j] == '-' ? '_' : toupper((unsigned char)n[j])))
            j++;
        if (j == len && n[j] == '\0')
            return &tf_config_opts[i];
    }
    return NULL;
}

/* Row whose JSON key is key (the flag with '-' as '_'; "routes" too for --route). */
const struct tf_config_opt *tf_config_opt_by_json(const char *key)
{
    if (strcmp(key, "routes") == 0)
        key = "route";
    for (size_t i = 0; i < tf_config_n_opts; i++) {
        const char *n = tf_config_opts[i].name;
        size_t j = 0;
        if (tf_config_opts[i].flags & OF_NOJSON)
            continue;
        while (n[j] && key[j] == (n[j] == '-' ? '_' : n[j]))
            j++;
        if (n[j] == '\0' && key[j] == '\0')
            return &tf_config_opts[i];
    }
    return NULL;
}

void tf_config_env_name(const char *name, char *buf, size_t len)
{
    size_t j = strlen(TF_CONFIG_ENV_PREFIX);
    snprintf(buf, len, TF_CONFIG_ENV_PREFIX "%s", name);
    for (; j < len && buf[j]; j++)
        buf[j] = buf[j] == '-' ? '_' : (char)toupper((unsigned char)buf[j]);
}
