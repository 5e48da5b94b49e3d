/*
 * certs_cmd.c: the `tlsfront certs [--storage DIR]` command: lists the certificates ACME
 * stored (name, issuer, not_after, days left), one per line, broken entries with their
 * problem. Runs before (and without) any loop; blocking file reads are fine here. Exit
 * codes: 0 listed, 1 storage unreadable, 2 bad usage.
 */
#include "certs_cmd_int.h"
#include "tlsfront/acme/acme.h"
#include "tlsfront/base/common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_STORAGE "/var/lib/tlsfront"

static int usage(const char *msg)
{
    fprintf(stderr, "tlsfront certs: %s (usage: tlsfront certs [--storage DIR])\n", msg);
    return 2;
}

/* --storage DIR, --storage=DIR, else TLSFRONT_STORAGE, else the default. */
static int parse_args(int argc, char **argv, const char **dir)
{
    *dir = getenv("TLSFRONT_STORAGE");
    if (!*dir || !**dir)
        *dir = DEFAULT_STORAGE;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--storage") == 0) {
            if (i + 1 >= argc)
                return usage("--storage needs a directory");
            *dir = argv[++i];
        } else if (strncmp(argv[i], "--storage=", 10) == 0) {
            *dir = argv[i] + 10;
        } else {
            char msg[160];
            snprintf(msg, sizeof(msg), "unknown argument \"%.100s\"", argv[i]);
            return usage(msg);
        }
    }
    if (!**dir)
        return usage("--storage needs a directory");
    return 0;
}

int tf_cmd_certs(int argc, char **argv)
{
    const char *dir;
    int rc = parse_args(argc, argv, &dir);
    if (rc)
        return rc;
    struct tf_acme_store_entry *e = NULL;
    int n = 0;
    rc = tf_acme_store_list_sync(dir, &e, &n);
    if (rc) {
        fprintf(stderr, "tlsfront certs: storage %s: %s\n", dir, tf_strerror(rc));
        return 1;
    }
    printf("%-40s %-40s %-20s %s\n", "NAME", "ISSUER", "NOT_AFTER", "DAYS_LEFT");
    int64_t now = tf_wall_now();
    for (int i = 0; i < n; i++) {
        if (e[i].error) {
            printf("%-40s ERROR: %s\n", e[i].name, e[i].error);
            continue;
        }
        char when[32];
        time_t t = (time_t)e[i].not_after;
        struct tm tm;
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tm));
        long long days = (long long)((e[i].not_after - now) / 86400);
        printf("%-40s %-40s %-20s %lld\n", e[i].name, e[i].issuer, when, days);
    }
    tf_acme_store_entries_free(e, n);
    return 0;
}
