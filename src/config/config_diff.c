/*
 * config_diff.c: which options a SIGHUP reload cannot apply. The running process keeps the
 * sockets, threads, storage and ACME client it made at start-up from these, so a reload
 * that changes one says "needs a restart" instead of pretending; everything else is live.
 * The list here is the one --help prints (TF_CONFIG_RESTART_TEXT); a unit test keeps the two
 * in step. Pure: compares two loaded configs, no I/O.
 */
#include "tlsfront/config/config.h"
#include "config_int.h"

#include <stdio.h>
#include <string.h>

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static bool listen_differs(const struct tf_config *a, const struct tf_config *b)
{
    if (a->n_listen != b->n_listen)
        return true;
    for (int i = 0; i < a->n_listen; i++)
        if (strcmp(a->listen[i].spec, b->listen[i].spec) != 0)
            return true;
    return false;
}

static bool challenges_differ(const struct tf_config *a, const struct tf_config *b)
{
    return a->n_acme_challenges != b->n_acme_challenges ||
           memcmp(a->acme_challenges, b->acme_challenges,
                  (size_t)a->n_acme_challenges * sizeof(a->acme_challenges[0])) != 0;
}

static bool webhooks_differ(const struct tf_config *a, const struct tf_config *b)
{
    if (a->n_webhooks != b->n_webhooks)
        return true;
    for (int i = 0; i < a->n_webhooks; i++)
        if (strcmp(a->webhooks[i], b->webhooks[i]) != 0)
            return true;
    return false;
}

#define STR(field) str_differs(a->field, b->field)
#define NUM(field) (a->field != b->field)

int tf_config_restart_diff(const struct tf_config *a, const struct tf_config *b, char *out,
                           size_t len)
{
    const struct {
        const char *flag;
        bool differs;
    } rows[] = {
        {"--listen", listen_differs(a, b)},
        {"--backlog", NUM(backlog)},
        {"--workers", NUM(workers)},
        {"--cert-cache", NUM(cert_cache)},
        {"--admin", STR(admin)},
        {"--redirect-http", STR(redirect_http)},
        {"--ticket-rotate", NUM(ticket_rotate_s)},
        {"--storage", STR(storage)},
        {"--storage-prefix", STR(storage_prefix)},
        {"--storage-key", STR(storage_key)},
        {"--storage-ca", STR(storage_ca)},
        {"--storage-cache", STR(storage_cache)},
        {"--acme-directory", tf_config_acme_cas_differ(a, b)},
        {"--acme-email", STR(acme_email)},
        {"--acme-key-type", NUM(acme_account_key)},
        {"--acme-ca", STR(acme_ca)},
        {"--acme-eab-kid", STR(acme_eab_kid)},
        {"--acme-eab-hmac", STR(acme_eab_hmac)},
        {"--acme-challenges", challenges_differ(a, b)},
        {"--issue-rate", NUM(issue_rate)},
        {"--issue-burst", NUM(issue_burst)},
        {"--max-orders", NUM(max_orders)},
        {"--max-names", NUM(max_names)},
        {"--ca-certs-per-domain", NUM(ca_certs_per_domain)},
        {"--webhook", webhooks_differ(a, b)},
        {"--webhook-secret-file", STR(webhook_secret_file)},
        {"--webhook-ca", STR(webhook_ca)},
        {"--webhook-queue", NUM(webhook_queue)},
    };
    int n = 0;
    size_t used = 0;

    if (len)
        out[0] = '\0';
    for (size_t i = 0; i < TF_ARRAY_LEN(rows); i++) {
        if (!rows[i].differs)
            continue;
        if (used < len)
            used += (size_t)snprintf(out + used, len - used, "%s%s", n ? ", " : "", rows[i].flag);
        n++;
    }
    return n;
}
