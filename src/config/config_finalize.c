/*
 * config_finalize.c: what is checked once every source is applied: options that go together
 * or against each other (--backoff-max against --backoff-base, the EAB pair, --webhook-*
 * without --webhook, http-01 without its listener), and defaults that depend on the machine
 * or on other options (--workers, --listen, --acme-challenges). Messages name where each
 * option came from (flag, variable, file key or default). Changes nothing but the config
 * being built; reads the machine's CPU count and no file.
 */
#include "config_load_int.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Name where the option of flag name came from, for cross-option messages: "--x",
 * "TLSFRONT_X", "FILE: key \"x\"" or "--x (default)". */
static const char *who_set(const struct tf_config_loader *ld, const char *name, char *buf,
                           size_t len)
{
    const struct tf_config_opt *o = tf_config_opt_by_flag(name, strlen(name));
    size_t j = 0;
    switch (o ? ld->src[o - tf_config_opts] : SRC_NONE) {
    case SRC_FLAG:
        snprintf(buf, len, "--%s", name);
        break;
    case SRC_ENV:
    case SRC_ENVFILE:
        tf_config_env_name(name, buf, len);
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
static int finalize_challenges(struct tf_config_loader *ld)
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

int tf_config_finalize(struct tf_config_loader *ld)
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
                 who_set(ld, cfg->webhook_ca ? "webhook-ca" : "webhook-secret-file", a, sizeof(a)));
        return TF_EINVAL;
    }
    return finalize_challenges(ld);
}
