/*
 * config_env.c: the TLSFRONT_* variables, from the environment or from the lines of an env
 * file (--env-file): each sets the option its name derives from. A TLSFRONT_* name that sets
 * nothing is never an error but a warning for the caller to log, with the closest variable
 * when the name looks like a slip of a key. Reads no file itself (config_envfile.c does).
 */
#include "config_load_int.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Add one warning line for the caller to log; past the cap the last line says so. */
static void add_warn(struct tf_config_loader *ld, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void add_warn(struct tf_config_loader *ld, const char *fmt, ...)
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
static const char *const env_other[] = {TF_CONFIG_ENV_PREFIX "TEST_CLOCK_OFFSET"};

/* Warn about a TLSFRONT_* variable that sets nothing: o is its flag-only row, or NULL for a
 * name no option has (then suggest the closest variable, if one is close). */
static void warn_env(struct tf_config_loader *ld, const char *name, const struct tf_config_opt *o)
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
    for (size_t i = 0; i < tf_config_n_opts; i++) {
        size_t d;
        if (tf_config_opts[i].flags & OF_NOENV)
            continue;
        tf_config_env_name(tf_config_opts[i].name, var, sizeof(var));
        d = edit_distance(name, var);
        if (d < best_d) {
            best_d = d;
            snprintf(best, sizeof(best), "%s", var);
        }
    }
    /* Close means a slip of a key or two, not a different word. */
    if (best_d <= 2 && best_d * 4 < len - strlen(TF_CONFIG_ENV_PREFIX) + 4)
        add_warn(ld, "%s: unknown variable, ignored (did you mean %s?)", name, best);
    else
        add_warn(ld, "%s: unknown variable, ignored (see --help)", name);
}

/* TLSFRONT_<OPT>=value; empty values are ignored. A TLSFRONT_* name that is no option (a
 * typo, or a flag-only option such as --check) is ignored with a warning, so a leftover in an
 * env file cannot change what the service does. Repeatable options take a whitespace-separated
 * list. */
static int apply_env_var(struct tf_config_loader *ld, const char *kv)
{
    const char *eq = strchr(kv, '=');
    const struct tf_config_opt *o;
    char who[128], *copy, *save = NULL;
    int rc = 0;

    if (!eq || strncmp(kv, TF_CONFIG_ENV_PREFIX, strlen(TF_CONFIG_ENV_PREFIX)) != 0)
        return 0;
    snprintf(who, sizeof(who), "%.*s", (int)TF_MIN(eq - kv, 100), kv);
    o = tf_config_opt_by_env(kv + strlen(TF_CONFIG_ENV_PREFIX),
                             (size_t)(eq - kv) - strlen(TF_CONFIG_ENV_PREFIX));
    if (!o || (o->flags & OF_NOENV)) {
        warn_env(ld, who, o);
        return 0;
    }
    if (ld->cur == SRC_ENVFILE)
        snprintf(who, sizeof(who), "%.80s: %.*s", ld->env_file, (int)TF_MIN(eq - kv, 40), kv);
    if ((o->flags & OF_PRE) || eq[1 + strspn(eq + 1, " \t\n")] == '\0')
        return 0;
    if (!(o->flags & OF_REPEAT))
        return tf_config_apply(ld, o, eq + 1, who);
    copy = tf_strdup(eq + 1);
    for (char *t = strtok_r(copy, " \t\n", &save); t && rc == 0; t = strtok_r(NULL, " \t\n", &save))
        rc = tf_config_apply(ld, o, t, who);
    free(copy);
    return rc;
}

int tf_config_apply_env(struct tf_config_loader *ld, char **envp, enum src_level level)
{
    ld->cur = level;
    for (char **e = envp; e && *e; e++) {
        if (apply_env_var(ld, *e) < 0)
            return TF_EINVAL;
    }
    return 0;
}
