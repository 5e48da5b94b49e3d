/*
 * config.c: builds the one immutable struct tf_config from defaults, the JSON file (-c FILE,
 * cJSON), TLSFRONT_* environment variables, the TLSFRONT_* lines of an env file (--env-file
 * FILE) and command-line flags, in that order, so a later source overrides an earlier one
 * (flag > env file > environment > JSON file > default). Every option is one row of
 * TF_OPTIONS below; flags, env, JSON, defaults and --help all go through that row, so they
 * cannot drift apart. For repeatable options the highest source that sets one replaces the
 * lower sources' list wholesale. Reads only the two files: no network, no other files
 * (--certs and --acme-ca are checked by their users), no logging (errors go to res->err,
 * warnings such as an unknown TLSFRONT_* variable to res->warn for the caller to log).
 */
#include "tlsfront/config/config.h"
#include "config_int.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TLSFRONT_VERSION
#define TLSFRONT_VERSION "dev"
#endif

#define MS_DAY 86400000LL
#define ENV_PREFIX "TLSFRONT_"

enum opt_type {
    OT_INT,   /* int field, integer in [min, max] */
    OT_U32,   /* uint32_t field, integer in [min, max] */
    OT_MS,    /* uint32_t milliseconds; a duration in [min, max] ms */
    OT_SEC,   /* uint32_t seconds; a duration of whole seconds in [min, max] ms */
    OT_STR,   /* char *; "" unsets it, unless the row has a default */
    OT_URL,   /* OT_STR that must be an http:// or https:// URL */
    OT_FN,    /* the row's handler does the work */
    OT_CHECK, /* --check: sets res->check_only (a flag only: never from the environment) */
    OT_FLAG,  /* bool field set to true by a flag that takes no value */
};

#define OF_REPEAT 0x01 /* each use appends; a higher source replaces the whole list */
#define OF_NOARG 0x02  /* flag takes no value (env: a boolean) */
#define OF_NOENV 0x04  /* no TLSFRONT_* variable */
#define OF_NOJSON 0x08 /* no JSON key */
#define OF_PRE 0x10    /* read before the sources are applied (--config) */
#define OF_JNUM 0x20   /* JSON: a number is accepted as well as a string */
#define OF_JLIST 0x40  /* JSON: an array of strings is accepted, joined with ',' */
#define OF_JONE 0x80   /* OF_REPEAT, JSON: one string is accepted as a list of one */

enum src_level { SRC_NONE = 0, SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_ENVFILE, SRC_FLAG };

struct opt {
    const char *name; /* flag without "--"; env and JSON names derive from it */
    enum opt_type type;
    unsigned flags;
    size_t off; /* field in struct tf_config (0 when the handler knows its fields) */
    long long min, max;
    tf_config_setter fn;
    const char *def; /* default, parsed like any other value; NULL = none */
};

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
static const struct opt opts[] = {TF_OPTIONS(TABLE_ROW)};
#define N_OPTS TF_ARRAY_LEN(opts)

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

/* Loading state; lives on tf_config_load's stack. */
struct loader {
    struct tf_config *cfg; /* being built; owned here until handed to res->cfg */
    struct tf_config_result *res;
    enum src_level cur;        /* the source being applied */
    unsigned char src[N_OPTS]; /* per row: the source that last set it */
    const char *config_path;   /* from --config or TLSFRONT_CONFIG; borrowed */
    const char *config_who;    /* which of the two, for messages */
    const char *env_file;      /* from --env-file; borrowed */
    char **env_lines;          /* the env file's KEY=VALUE lines; owned */
};

/* One flag from argv, checked before any source is applied. */
struct flag_use {
    const struct opt *o;
    const char *val; /* borrowed from argv; NULL for flags without a value */
};

#define FIELD(ld, o, type) ((type *)((char *)(ld)->cfg + (o)->off))

static int set_string(struct loader *ld, const struct opt *o, const char *val, char *err,
                      size_t errlen)
{
    char **field = FIELD(ld, o, char *);
    if (!*val && o->def) {
        snprintf(err, errlen, "must not be empty");
        return TF_EINVAL;
    }
    if (o->type == OT_URL && *val && strncmp(val, "https://", 8) != 0 &&
        strncmp(val, "http://", 7) != 0) {
        snprintf(err, errlen, "expected an http:// or https:// URL, got \"%.120s\"", val);
        return TF_EINVAL;
    }
    free(*field);
    *field = *val ? tf_strdup(val) : NULL;
    return 0;
}

/* Parse val by the row's type into its field; err gets the message without the option. */
static int set_value(struct loader *ld, const struct opt *o, const char *val, char *err,
                     size_t errlen)
{
    long long n = 0;
    uint64_t ms = 0;
    int rc = 0;

    switch (o->type) {
    case OT_INT:
    case OT_U32:
        rc = tf_config_parse_int(val, o->min, o->max, &n, err, errlen);
        if (rc == 0 && o->type == OT_INT)
            *FIELD(ld, o, int) = (int)n;
        else if (rc == 0)
            *FIELD(ld, o, uint32_t) = (uint32_t)n;
        return rc;
    case OT_MS:
    case OT_SEC:
        rc = tf_config_parse_duration(val, (uint64_t)o->min, (uint64_t)o->max, o->type == OT_SEC,
                                      &ms, err, errlen);
        if (rc == 0)
            *FIELD(ld, o, uint32_t) = (uint32_t)(o->type == OT_SEC ? ms / 1000 : ms);
        return rc;
    case OT_STR:
    case OT_URL:
        return set_string(ld, o, val, err, errlen);
    case OT_CHECK:
        ld->res->check_only = true;
        return 0;
    case OT_FLAG:
        *FIELD(ld, o, bool) = true;
        return 0;
    case OT_FN:
        break;
    }
    return o->fn(ld->cfg, o->off, val, err, errlen);
}

/* Apply one value from the current source; who names the flag, variable or key for the
 * message. A repeatable option drops what lower sources set the first time the current
 * source touches it; val NULL does only that (an empty JSON array). */
static int apply(struct loader *ld, const struct opt *o, const char *val, const char *who)
{
    char msg[400];
    size_t i = (size_t)(o - opts);
    int rc;

    if ((o->flags & OF_REPEAT) && ld->src[i] != ld->cur)
        o->fn(ld->cfg, o->off, NULL, msg, sizeof(msg));
    ld->src[i] = (unsigned char)ld->cur;
    if (!val && (o->flags & OF_REPEAT))
        return 0;
    rc = set_value(ld, o, val, msg, sizeof(msg));
    if (rc < 0)
        snprintf(ld->res->err, sizeof(ld->res->err), "%s: %s", who, msg);
    return rc;
}

static int apply_defaults(struct loader *ld)
{
    ld->cur = SRC_DEFAULT;
    for (size_t i = 0; i < N_OPTS; i++) {
        if (opts[i].def && apply(ld, &opts[i], opts[i].def, "default") < 0)
            return TF_EINVAL;
    }
    return 0;
}

/* Row whose flag name is the first len bytes of name, or NULL. */
static const struct opt *find_flag(const char *name, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    }
    return NULL;
}

/* Row whose variable would be TLSFRONT_ + key (len bytes: the flag upper-cased, '-' as '_'),
 * OF_NOENV rows included (the caller tells them apart), or NULL. */
static const struct opt *find_env(const char *key, size_t len)
{
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *n = opts[i].name;
        size_t j = 0;
        while (j < len && n[j] && key[j] == (n[j] == '-' ? '_' : toupper((unsigned char)n[j])))
            j++;
        if (j == len && n[j] == '\0')
            return &opts[i];
    }
    return NULL;
}

/* Row whose JSON key is key (the flag with '-' as '_'; "routes" too for --route). */
static const struct opt *find_json(const char *key)
{
    if (strcmp(key, "routes") == 0)
        key = "route";
    for (size_t i = 0; i < N_OPTS; i++) {
        const char *n = opts[i].name;
        size_t j = 0;
        if (opts[i].flags & OF_NOJSON)
            continue;
        while (n[j] && key[j] == (n[j] == '-' ? '_' : n[j]))
            j++;
        if (n[j] == '\0' && key[j] == '\0')
            return &opts[i];
    }
    return NULL;
}

static int json_shape(void *ctx, const char *key, enum tf_config_jshape *shape)
{
    const struct opt *o = find_json(key);
    (void)ctx;
    if (!o)
        return TF_ENOTFOUND;
    if (o->type == OT_INT || o->type == OT_U32)
        *shape = TF_JS_NUMBER;
    else if (o->type == OT_MS || o->type == OT_SEC)
        *shape = TF_JS_DURATION;
    else if (o->flags & OF_REPEAT)
        *shape = (o->fn == tf_config_set_route) ? TF_JS_ROUTES
                 : (o->flags & OF_JONE)         ? TF_JS_ARRAY_ONE
                                                : TF_JS_ARRAY;
    else if (o->flags & OF_JNUM)
        *shape = TF_JS_STRING_NUM;
    else if (o->flags & OF_JLIST)
        *shape = TF_JS_STRING_LIST;
    else
        *shape = TF_JS_STRING;
    return 0;
}

static int json_set(void *ctx, const char *key, const char *text, const char *who)
{
    return apply(ctx, find_json(key), text, who);
}

static int apply_file(struct loader *ld)
{
    struct tf_config_json_sink sink = {ld, json_shape, json_set};
    if (!ld->config_path)
        return 0;
    ld->cur = SRC_FILE;
    return tf_config_json_load(ld->config_path, ld->config_who, &sink, ld->res->err,
                               sizeof(ld->res->err));
}

/* Add one warning line for the caller to log; past the cap the last line says so. */
static void add_warn(struct loader *ld, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_warn(struct loader *ld, const char *fmt, ...)
{
    struct tf_config_result *res = ld->res;
    va_list ap;
    if (res->n_warn == TF_CONFIG_MAX_WARN) {
        snprintf(res->warn[TF_CONFIG_MAX_WARN - 1], sizeof(res->warn[0]),
                 "more warnings about the configuration were dropped");
        return;
    }
    va_start(ap, fmt);
    vsnprintf(res->warn[res->n_warn++], sizeof(res->warn[0]), fmt, ap);
    va_end(ap);
}

/* Edit distance between a and b (each at most 64 bytes; longer never matches closely). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[65], prev;
    if (la > 64 || lb > 64)
        return SIZE_MAX;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        prev = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t cur = row[j], sub = prev + (a[i - 1] != b[j - 1]);
            row[j] = TF_MIN(TF_MIN(row[j] + 1, row[j - 1] + 1), sub);
            prev = cur;
        }
    }
    return row[lb];
}

/* TLSFRONT_* variables the program reads that are not options. */
static const char *const env_other[] = {ENV_PREFIX "TEST_CLOCK_OFFSET"};

/* Warn about a TLSFRONT_* variable that sets nothing: o is its flag-only row, or NULL for a
 * name no option has (then suggest the closest variable, if one is close). */
static void warn_env(struct loader *ld, const char *name, const struct opt *o)
{
    char var[64], best[64] = "";
    size_t best_d = SIZE_MAX, len = strlen(name);

    if (o) {
        add_warn(ld, "%s: --%s is a command-line flag only; variable ignored", name, o->name);
        return;
    }
    for (size_t i = 0; i < TF_ARRAY_LEN(env_other); i++)
        if (strcmp(name, env_other[i]) == 0)
            return;
    for (size_t i = 0; i < N_OPTS; i++) {
        size_t j = strlen(ENV_PREFIX), d;
        if (opts[i].flags & OF_NOENV)
            continue;
        snprintf(var, sizeof(var), ENV_PREFIX "%s", opts[i].name);
        for (; var[j]; j++)
            var[j] = var[j] == '-' ? '_' : (char)toupper((unsigned char)var[j]);
        d = edit_distance(name, var);
        if (d < best_d) {
            best_d = d;
            snprintf(best, sizeof(best), "%s", var);
        }
    }
    /* Close means a slip of a key or two, not a different word. */
    if (best_d <= 2 && best_d * 4 < len - strlen(ENV_PREFIX) + 4)
        add_warn(ld, "%s: unknown variable, ignored (did you mean %s?)", name, best);
    else
        add_warn(ld, "%s: unknown variable, ignored (see --help)", name);
}

/* TLSFRONT_<OPT>=value; empty values are ignored. A TLSFRONT_* name that is no option (a
 * typo, or a flag-only option such as --check) is ignored with a warning, so a leftover in an
 * env file cannot change what the service does. Repeatable options take a whitespace-separated
 * list. */
static int apply_env_var(struct loader *ld, const char *kv)
{
    const char *eq = strchr(kv, '=');
    const struct opt *o;
    char who[128], *copy, *save = NULL;
    int rc = 0;

    if (!eq || strncmp(kv, ENV_PREFIX, strlen(ENV_PREFIX)) != 0)
        return 0;
    snprintf(who, sizeof(who), "%.*s", (int)TF_MIN(eq - kv, 100), kv);
    o = find_env(kv + strlen(ENV_PREFIX), (size_t)(eq - kv) - strlen(ENV_PREFIX));
    if (!o || (o->flags & OF_NOENV)) {
        warn_env(ld, who, o);
        return 0;
    }
    if (ld->cur == SRC_ENVFILE)
        snprintf(who, sizeof(who), "%.80s: %.*s", ld->env_file, (int)TF_MIN(eq - kv, 40), kv);
    if ((o->flags & OF_PRE) || eq[1 + strspn(eq + 1, " \t\n")] == '\0')
        return 0;
    if (!(o->flags & OF_REPEAT))
        return apply(ld, o, eq + 1, who);
    copy = tf_strdup(eq + 1);
    for (char *t = strtok_r(copy, " \t\n", &save); t && rc == 0; t = strtok_r(NULL, " \t\n", &save))
        rc = apply(ld, o, t, who);
    free(copy);
    return rc;
}

/* The environment (SRC_ENV), or the env file's lines (SRC_ENVFILE). */
static int apply_env(struct loader *ld, char **envp, enum src_level level)
{
    ld->cur = level;
    for (char **e = envp; e && *e; e++) {
        if (apply_env_var(ld, *e) < 0)
            return TF_EINVAL;
    }
    return 0;
}

static int apply_flags(struct loader *ld, const struct flag_use *uses, int n)
{
    char who[64];
    ld->cur = SRC_FLAG;
    for (int i = 0; i < n; i++) {
        if (uses[i].o->flags & OF_PRE)
            continue;
        snprintf(who, sizeof(who), "--%s", uses[i].o->name);
        if (apply(ld, uses[i].o, uses[i].val, who) < 0)
            return TF_EINVAL;
    }
    return 0;
}

/* Classify argv[*i] (advancing *i past a separate value). Returns 0, 1 when --help or
 * --version was handled (stop), or TF_EINVAL with res->err set. */
static int scan_flag(struct loader *ld, int argc, char **argv, int *i, struct flag_use *use)
{
    const char *a = argv[*i], *name = a + 2, *eq;
    char *err = ld->res->err;
    size_t errlen = sizeof(ld->res->err);

    if (strcmp(a, "-c") == 0 || strcmp(a, "-h") == 0)
        name = (a[1] == 'c') ? "config" : "help";
    else if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
        snprintf(err, errlen, "unexpected argument \"%.200s\" (see --help)", a);
        return TF_EINVAL;
    }
    eq = strchr(name, '=');
    use->o = find_flag(name, eq ? (size_t)(eq - name) : strlen(name));
    use->val = eq ? eq + 1 : NULL;
    if (!use->o) {
        snprintf(err, errlen, "unknown flag \"%.200s\" (see --help)", a);
        return TF_EINVAL;
    }
    if ((use->o->flags & OF_NOARG) && eq) {
        snprintf(err, errlen, "--%s: takes no value", use->o->name);
        return TF_EINVAL;
    }
    if (!(use->o->flags & OF_NOARG) && !eq) {
        if (*i + 1 >= argc) {
            snprintf(err, errlen, "--%s: missing value", use->o->name);
            return TF_EINVAL;
        }
        use->val = argv[++*i];
    }
    if (strcmp(use->o->name, "help") == 0) {
        ld->res->help = true;
        fputs(usage_text, stdout);
        return 1;
    }
    if (strcmp(use->o->name, "version") == 0) {
        ld->res->version = true;
        printf("tlsfront %s\n", TLSFRONT_VERSION);
        return 1;
    }
    return 0;
}

/* Check every flag and find the config file before anything is applied. */
static int scan_argv(struct loader *ld, int argc, char **argv, char **envp, struct flag_use *uses,
                     int *n)
{
    for (int i = 1; i < argc; i++) {
        int rc = scan_flag(ld, argc, argv, &i, &uses[*n]);
        if (rc != 0)
            return rc;
        if ((uses[*n].o->flags & OF_PRE) && strcmp(uses[*n].o->name, "env-file") == 0)
            ld->env_file = uses[*n].val;
        else if (uses[*n].o->flags & OF_PRE) {
            ld->config_path = uses[*n].val;
            ld->config_who = "--config";
        }
        (*n)++;
    }
    if (ld->env_file) {
        ld->env_lines = tf_config_envfile_read(ld->env_file, ld->res->err, sizeof(ld->res->err));
        if (!ld->env_lines)
            return TF_EINVAL;
    }
    /* TLSFRONT_CONFIG: the env file's beats the environment's. */
    for (char **e = ld->env_lines; !ld->config_path && e && *e; e++) {
        if (strncmp(*e, ENV_PREFIX "CONFIG=", strlen(ENV_PREFIX "CONFIG=")) == 0) {
            ld->config_path = *e + strlen(ENV_PREFIX "CONFIG=");
            ld->config_who = ENV_PREFIX "CONFIG";
        }
    }
    for (char **e = envp; !ld->config_path && e && *e; e++) {
        if (strncmp(*e, ENV_PREFIX "CONFIG=", strlen(ENV_PREFIX "CONFIG=")) == 0) {
            ld->config_path = *e + strlen(ENV_PREFIX "CONFIG=");
            ld->config_who = ENV_PREFIX "CONFIG";
        }
    }
    if (ld->config_path && !*ld->config_path)
        ld->config_path = NULL;
    return 0;
}

/* Name where the option of flag name came from, for cross-option messages: "--x",
 * "TLSFRONT_X", "FILE: key \"x\"" or "--x (default)". */
static const char *who_set(const struct loader *ld, const char *name, char *buf, size_t len)
{
    const struct opt *o = find_flag(name, strlen(name));
    size_t j = 0;
    switch (o ? ld->src[o - opts] : SRC_NONE) {
    case SRC_FLAG:
        snprintf(buf, len, "--%s", name);
        break;
    case SRC_ENV:
    case SRC_ENVFILE:
        j = strlen(ENV_PREFIX);
        snprintf(buf, len, ENV_PREFIX "%s", name);
        for (; buf[j]; j++)
            buf[j] = buf[j] == '-' ? '_' : (char)toupper((unsigned char)buf[j]);
        break;
    case SRC_FILE:
        j = (size_t)snprintf(buf, len, "%s: key \"", ld->config_path);
        for (const char *p = name; *p && j + 2 < len; p++)
            buf[j++] = *p == '-' ? '_' : *p;
        snprintf(buf + j, len - j, "\"");
        break;
    default:
        snprintf(buf, len, "--%s (default)", name);
        break;
    }
    return buf;
}

/* --acme-challenges: http-01 is answered by the --redirect-http listener only; without the
 * option, tls-alpn-01 comes first and http-01 follows when that listener is on. */
static int finalize_challenges(struct loader *ld)
{
    struct tf_config *cfg = ld->cfg;
    char a[200];
    if (cfg->n_acme_challenges == 0) {
        cfg->acme_challenges[cfg->n_acme_challenges++] = TF_CHAL_TLS_ALPN_01;
        if (cfg->redirect_http)
            cfg->acme_challenges[cfg->n_acme_challenges++] = TF_CHAL_HTTP_01;
        return 0;
    }
    for (int i = 0; i < cfg->n_acme_challenges; i++)
        if (cfg->acme_challenges[i] == TF_CHAL_HTTP_01 && !cfg->redirect_http) {
            snprintf(ld->res->err, sizeof(ld->res->err),
                     "%s: http-01 needs --redirect-http (the listener that answers it)",
                     who_set(ld, "acme-challenges", a, sizeof(a)));
            return TF_EINVAL;
        }
    return 0;
}

/* Checks across options, and defaults that depend on the machine. */
static int finalize(struct loader *ld)
{
    struct tf_config *cfg = ld->cfg;
    char *err = ld->res->err;
    size_t errlen = sizeof(ld->res->err);
    char a[200], b[200];
    long cpus;

    if (cfg->n_listen == 0 && tf_config_set_listen(cfg, 0, ":8443", err, errlen) < 0)
        return TF_EINVAL;
    if (cfg->workers == 0) {
        cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = (int)(cpus < 1 ? 1 : cpus > 1024 ? 1024 : cpus);
    }
    if (!cfg->backend && cfg->n_routes == 0) {
        snprintf(err, errlen, "config: no backend: set --backend or --route");
        return TF_EINVAL;
    }
    if (cfg->backoff_max_s < cfg->backoff_base_s) {
        snprintf(err, errlen, "%s: %u s is shorter than %s (%u s)",
                 who_set(ld, "backoff-max", a, sizeof(a)), cfg->backoff_max_s,
                 who_set(ld, "backoff-base", b, sizeof(b)), cfg->backoff_base_s);
        return TF_EINVAL;
    }
    if (!cfg->acme_eab_kid != !cfg->acme_eab_hmac) {
        bool kid = cfg->acme_eab_kid != NULL;
        snprintf(err, errlen, "%s: needs --%s as well (the two go together)",
                 who_set(ld, kid ? "acme-eab-kid" : "acme-eab-hmac", a, sizeof(a)),
                 kid ? "acme-eab-hmac" : "acme-eab-kid");
        return TF_EINVAL;
    }
    char c[200];
    const char *const acme_who[3] = {who_set(ld, "acme-ca", a, sizeof(a)),
                                     who_set(ld, "acme-eab-kid", b, sizeof(b)),
                                     who_set(ld, "acme-eab-hmac", c, sizeof(c))};
    if (tf_config_finish_acme(cfg, acme_who, err, errlen) != 0)
        return TF_EINVAL;
    if (tf_config_check_storage(cfg, err, errlen) != 0)
        return TF_EINVAL;
    if (!cfg->n_webhooks && (cfg->webhook_secret_file || cfg->webhook_ca)) {
        snprintf(err, errlen, "%s: needs --webhook",
                 who_set(ld, cfg->webhook_ca ? "webhook-ca" : "webhook-secret-file", a,
                         sizeof(a)));
        return TF_EINVAL;
    }
    return finalize_challenges(ld);
}

/* Bad config is reported on one stderr line, but errors quote the offending value, which
 * may hold a newline or other control bytes (a JSON string "a\nb", an environment
 * variable): each becomes '?'. */
static void one_line(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

int tf_config_load(int argc, char **argv, char **envp, struct tf_config_result *res)
{
    struct loader ld;
    struct flag_use *uses = tf_calloc((size_t)(argc > 0 ? argc : 1), sizeof(*uses));
    int n = 0, rc;

    memset(res, 0, sizeof(*res));
    memset(&ld, 0, sizeof(ld));
    ld.res = res;
    ld.cfg = tf_calloc(1, sizeof(*ld.cfg));
    tf_ref_init(&ld.cfg->ref, 1);
    rc = scan_argv(&ld, argc, argv, envp, uses, &n);
    if (rc == 0)
        rc = apply_defaults(&ld);
    if (rc == 0)
        rc = apply_file(&ld);
    if (rc == 0)
        rc = apply_env(&ld, envp, SRC_ENV);
    if (rc == 0)
        rc = apply_env(&ld, ld.env_lines, SRC_ENVFILE);
    if (rc == 0)
        rc = apply_flags(&ld, uses, n);
    if (rc == 0)
        rc = finalize(&ld);
    free(uses);
    tf_config_envfile_free(ld.env_lines);
    if (rc == 0) {
        res->cfg = ld.cfg;
        return 0;
    }
    tf_config_free_all(ld.cfg);
    one_line(res->err);
    return rc > 0 ? 0 : TF_EINVAL;
}

void tf_config_ref(struct tf_config *cfg)
{
    tf_ref_inc(&cfg->ref);
}

void tf_config_unref(struct tf_config *cfg)
{
    if (cfg && tf_ref_dec(&cfg->ref))
        tf_config_free_all(cfg);
}
