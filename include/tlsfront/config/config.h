/*
 * config.h: the one immutable configuration of a running tlsfront, merged from flags,
 * TLSFRONT_* lines of an env file (--env-file FILE), TLSFRONT_* environment variables, a JSON
 * file (-c FILE, cJSON) and defaults, with the precedence flag > env file > environment >
 * JSON file > default. A loaded config is never modified: SIGHUP builds a
 * whole new one and swaps it in (refcounted, shared read-only by every worker).
 */
#ifndef TF_CONFIG_H
#define TF_CONFIG_H

#include "tlsfront/base/cidr.h"
#include "tlsfront/base/common.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#define TF_MAX_ALPN 8

/* One listening address. "ADDR:PORT", "[v6]:PORT" or ":PORT" (all addresses, v4 and v6). */
struct tf_listen {
    char *spec;                  /* as given, for messages */
    struct sockaddr_storage addr;
    bool any;                    /* ":PORT": bind [::] dual-stack */
    bool proxy;                  /* accept PROXY protocol v1/v2 in */
};

enum tf_proxy_proto { TF_PROXY_NONE = 0, TF_PROXY_V1, TF_PROXY_V2 };
enum tf_route_mode { TF_MODE_TCP = 0, TF_MODE_HTTP };

/* A backend: "HOST:PORT" plus options after commas ("HOST:PORT,proxy=v2,mode=http"). */
struct tf_backend {
    char *host;                  /* hostname or IP literal (no brackets) */
    uint16_t port;
    enum tf_proxy_proto proxy;
    enum tf_route_mode mode;
    bool connect;                /* ",connect=on": mode=http forwards CONNECT (else 405) */
};

/* "PATTERN=HOST:PORT[,opts]"; PATTERN is an exact name or "*.suffix" (one label). */
struct tf_route {
    char *pattern;               /* lower-cased */
    struct tf_backend backend;
    char *alpn[TF_MAX_ALPN];     /* protocols to advertise; default {"http/1.1"} */
    int n_alpn;
};

enum tf_key_type { TF_KEY_EC256 = 0, TF_KEY_RSA2048, TF_KEY_RSA3072, TF_KEY_RSA4096 };

/* ACME challenge types tlsfront can answer (--acme-challenges). */
enum tf_chal_type { TF_CHAL_TLS_ALPN_01 = 0, TF_CHAL_HTTP_01, TF_CHAL_COUNT };
/* "tls-alpn-01", "http-01": the ACME "type" string. */
const char *tf_chal_type_name(enum tf_chal_type t);
/* One ACME CA: "--acme-directory URL[,ca=FILE][,eab-kid=KID,eab-hmac=KEY]". */
struct tf_acme_ca_cfg {
    char *directory;             /* the directory URL */
    char *ca;                    /* extra trust anchor (PEM) for its HTTPS, NULL = none */
    char *eab_kid, *eab_hmac;    /* external account binding (both or neither; base64url) */
};

struct tf_config {
    struct tf_ref ref;

    /* Listeners and workers */
    struct tf_listen *listen;    /* default ":8443" */
    int n_listen;
    int backlog;                 /* default 511 */
    int workers;                 /* default: number of CPUs */

    /* Certificates */
    char *certs_dir;             /* --certs DIR (static certificates); NULL = none */
    int cert_cache;              /* --cert-cache N: decoded certificates kept, default 10000 */
    char *default_cert;          /* --default-cert NAME: served without SNI/unknown; NULL = refuse */

    /* Routing */
    struct tf_backend *backend;  /* --backend: default route; NULL = no default */
    struct tf_route *routes;     /* --route, in the order given */
    int n_routes;
    char *alpn[TF_MAX_ALPN];     /* --alpn for the default backend (default "http/1.1") */
    int n_alpn;

    /* Limits and timeouts (milliseconds) */
    uint32_t handshake_timeout_ms; /* default 10000 */
    uint32_t idle_timeout_ms;      /* default 300000 */
    uint32_t connect_timeout_ms;   /* default 5000 */
    uint32_t grace_ms;             /* SIGTERM drain, default 30000 */
    int max_connections;           /* per process; default 10000 */
    int backend_keepalive;         /* idle mode=http backend connections kept per worker
                                    * and backend address; 0 = off (default 32) */
    uint32_t backend_keepalive_timeout_ms; /* ... closed after idling this long (default 30s) */
    uint32_t ticket_rotate_s;      /* session ticket key rotation, default 3600 */
    bool tls12;                    /* allow TLS 1.2 (default true); TLS 1.3 always */

    /* Logging */
    bool log_json;                 /* --log-format json */
    bool access_log;               /* --access-log on|off */
    int log_level;                 /* enum tf_log_level; --log-level debug|info|warn|error */

    /* Admin */
    char *admin;                   /* --admin ADDR:PORT, NULL = off */
    struct sockaddr_storage admin_addr;
    char *admin_token_file;        /* --admin-token-file FILE: enables the API's actions */
    bool admin_token_reads;        /* --admin-token-reads on: the token guards reads too */

    /* ACME */
    char *storage;                 /* --storage DIR|redis://..., default /var/lib/tlsfront */
    char *storage_prefix;          /* --storage-prefix NAME (redis), default "tlsfront" */
    char *storage_key;             /* --storage-key FILE|none (redis: required) */
    char *storage_ca;              /* --storage-ca FILE (rediss://) */
    char *storage_cache;           /* --storage-cache DIR (redis): local write-through copy */
    uint32_t storage_lease_s;      /* --storage-lease: order lock lease, default 30 */
    struct tf_acme_ca_cfg *acme_cas; /* --acme-directory (repeatable), tried in this order;
                                      * at least one (default Let's Encrypt production).
                                      * The first has the plain --acme-ca and --acme-eab-* */
    int n_acme_cas;
    char *acme_directory;          /* the first CA's directory URL */
    char *acme_email;
    char *acme_ca;                 /* --acme-ca FILE: the first CA's extra trust anchor */
    char *acme_eab_kid;
    char *acme_eab_hmac;           /* base64url */
    char *acme_profile;
    struct tf_name_profile {       /* --acme-profile-for PATTERN=PROFILE (repeatable) */
        char *pattern;             /* exact name or *.suffix, lower-case */
        char *profile;
    } *profiles;
    int n_profiles;
    enum tf_key_type acme_account_key; /* default EC256 */
    enum tf_key_type acme_cert_key;    /* default EC256 */
    uint32_t acme_timeout_s;           /* whole-order bound, default 300 */
    /* --acme-challenges, in order of preference, no repeats; default tls-alpn-01, then
     * http-01 when --redirect-http is on */
    enum tf_chal_type acme_challenges[TF_CHAL_COUNT];
    int n_acme_challenges;

    /* On-demand */
    char **allow;                  /* --allow PATTERN (repeatable) */
    int n_allow;
    char *ask;                     /* --ask URL */
    uint32_t ask_timeout_ms;       /* default 3000 */
    uint32_t ask_cache_s;          /* default 300 */
    uint32_t hold_timeout_ms;      /* default 20000 */
    double issue_rate;             /* token bucket: orders per minute, default 10 */
    int issue_burst;               /* default 20 */
    int max_orders;                /* concurrent orders, default 4 */
    int max_held;                  /* held handshakes, default 1000 */
    int max_held_per_ip;           /* default 20 */
    int max_names;                 /* managed names, default 10000 */
    int ca_certs_per_domain;       /* CA limit per registered domain per week, default 50 */
    uint32_t backoff_base_s;       /* per-name failure backoff start, default 60 */
    uint32_t backoff_max_s;        /* default 86400 */
    uint32_t idle_name_days;       /* on-demand names unused this long are not renewed, default 30 */

    /* Event webhooks */
    char **webhooks;               /* --webhook URL (repeatable), http:// or https:// */
    int n_webhooks;
    char *webhook_secret_file;     /* --webhook-secret-file FILE: HMAC-SHA256 key; NULL = unsigned */
    char *webhook_ca;              /* --webhook-ca FILE: extra trust anchor for https receivers */
    int webhook_queue;             /* --webhook-queue: deliveries held at once, default 1000 */

    /* HTTP redirect */
    char *redirect_http;
    struct sockaddr_storage redirect_http_addr; /* parsed; ":PORT" is [::] */
    int redirect_max_per_ip;       /* connections per client address, default 16 */

    /* Legacy backends */
    struct tf_cidr *proxy_from;    /* --proxy-from: who may send PROXY headers; none = anyone */
    int n_proxy_from;
    struct tf_cidr *trusted_xff;   /* --trusted-xff: clients whose X-Forwarded-For is kept */
    int n_trusted_xff;
    bool forwarded;                /* --forwarded: also write RFC 7239 Forwarded (mode=http) */
    char *hsts;                    /* --hsts VALUE: Strict-Transport-Security (mode=http) */

    /* Start-up only (flags, never from the environment or the file) */
    bool takeover;                 /* --takeover: share listening addresses already in use */
};

#define TF_CONFIG_MAX_WARN 8

/* Result of loading: on failure, err holds one line naming the flag/key and the problem. */
struct tf_config_result {
    struct tf_config *cfg;       /* NULL on failure */
    char err[512];
    /* On success: lines for the caller to log as warnings (e.g. an unknown TLSFRONT_*
     * variable, with a did-you-mean); at most TF_CONFIG_MAX_WARN, the last may say more were
     * dropped. */
    char warn[TF_CONFIG_MAX_WARN][200];
    int n_warn;
    bool check_only;             /* --check */
    bool help;                   /* --help printed */
    bool version;                /* --version printed */
};

/*
 * Parse argv (without the subcommand), the environment (envp, NULL-terminated "K=V") and
 * the JSON file named by -c/--config/TLSFRONT_CONFIG and the env file named by --env-file
 * (TLSFRONT_*=VALUE lines that override the environment). Returns 0 and sets res->cfg (refcount
 * 1), or TF_EINVAL with res->err set. Does no network I/O; reads only those two files.
 * argv[0] is a program or subcommand name and is skipped, as with getopt. --help and
 * --version print to stdout and return 0 with res->cfg NULL and res->help/res->version set.
 */
int tf_config_load(int argc, char **argv, char **envp, struct tf_config_result *res);

/* Parse a single value the way flags do; exposed for tests and for the route module. */
int tf_config_parse_backend(const char *spec, struct tf_backend *out, char *err, size_t errlen);
int tf_config_parse_listen(const char *spec, struct tf_listen *out, char *err, size_t errlen);

void tf_config_ref(struct tf_config *cfg);
void tf_config_unref(struct tf_config *cfg);

/* The options a reload cannot change (they need a restart) that differ between the running
 * config a and the reloaded b, as "--admin, --listen" into out (empty when none). Returns
 * how many differ. */
int tf_config_restart_diff(const struct tf_config *a, const struct tf_config *b, char *out,
                           size_t len);

/* Usage text for --help. */
const char *tf_config_usage(void);

/* A parsed --storage redis://[[USER]:PASSWORD@]HOST:PORT[/DB] (or rediss://). Strings are
 * owned (free with tf_config_redis_url_clear); user and pass may be NULL. */
struct tf_redis_url {
    bool tls;
    char *user;
    char *pass;
    char *host; /* a name or an IP literal (brackets removed) */
    int port;
    int db;
};
/* True when spec names a Redis store (starts with redis:// or rediss://). */
bool tf_config_storage_is_redis(const char *spec);
/* Parse spec; on failure TF_EINVAL and a message in err that quotes no password. */
int tf_config_parse_redis_url(const char *spec, struct tf_redis_url *out, char *err,
                              size_t errlen);
void tf_config_redis_url_clear(struct tf_redis_url *u);

#endif
