/*
 * config.c: the loader. Builds the one immutable struct tf_config from defaults, the JSON
 * file (-c FILE, cJSON), TLSFRONT_* environment variables, the TLSFRONT_* lines of an env
 * file (--env-file FILE) and command-line flags, in that order, so a later source overrides
 * an earlier one (flag > env file > environment > JSON file > default). Every option is one
 * row of TF_OPTIONS (config_table.c); each value of each source is parsed into its field by
 * that row here. The variables are config_env.c's, the checks across options
 * config_finalize.c's. For repeatable options the highest source that sets one replaces the
 * lower sources' list wholesale. Reads only the two files: no network, no other files
 * (--certs and --acme-ca are checked by their users), no logging (errors go to res->err,
 * warnings such as an unknown TLSFRONT_* variable to res->warn for the caller to log).
 */
#include "tlsfront/config/config.h"
#include "config_load_int.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef TLSFRONT_VERSION
#define TLSFRONT_VERSION "dev"
#endif

/* One flag from argv, checked before any source is applied. */
struct flag_use {
    const struct tf_config_opt *o;
    const char *val; /* borrowed from argv; NULL for flags without a value */
};

#define FIELD(ld, o, type) ((type *)((char *)(ld)->cfg + (o)->off))

static int set_string(struct tf_config_loader *ld, const struct tf_config_opt *o, const char *val,
                      char *err, size_t errlen)
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
static int set_value(struct tf_config_loader *ld, const struct tf_config_opt *o, const char *val,
                     char *err, size_t errlen)
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

int tf_config_apply(struct tf_config_loader *ld, const struct tf_config_opt *o, const char *val,
                    const char *who)
{
    char msg[400];
    size_t i = (size_t)(o - tf_config_opts);
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

static int apply_defaults(struct tf_config_loader *ld)
{
    ld->cur = SRC_DEFAULT;
    for (size_t i = 0; i < tf_config_n_opts; i++) {
        if (tf_config_opts[i].def &&
            tf_config_apply(ld, &tf_config_opts[i], tf_config_opts[i].def, "default") < 0)
            return TF_EINVAL;
    }
    return 0;
}

static int json_shape(void *ctx, const char *key, enum tf_config_jshape *shape)
{
    const struct tf_config_opt *o = tf_config_opt_by_json(key);
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
    return tf_config_apply(ctx, tf_config_opt_by_json(key), text, who);
}

static int apply_file(struct tf_config_loader *ld)
{
    struct tf_config_json_sink sink = {ld, json_shape, json_set};
    if (!ld->config_path)
        return 0;
    ld->cur = SRC_FILE;
    return tf_config_json_load(ld->config_path, ld->config_who, &sink, ld->res->err,
                               sizeof(ld->res->err));
}

static int apply_flags(struct tf_config_loader *ld, const struct flag_use *uses, int n)
{
    char who[64];
    ld->cur = SRC_FLAG;
    for (int i = 0; i < n; i++) {
        if (uses[i].o->flags & OF_PRE)
            continue;
        snprintf(who, sizeof(who), "--%s", uses[i].o->name);
        if (tf_config_apply(ld, uses[i].o, uses[i].val, who) < 0)
            return TF_EINVAL;
    }
    return 0;
}

/* Classify argv[*i] (advancing *i past a separate value). Returns 0, 1 when --help or
 * --version was handled (stop), or TF_EINVAL with res->err set. */
static int scan_flag(struct tf_config_loader *ld, int argc, char **argv, int *i,
                     struct flag_use *use)
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
    use->o = tf_config_opt_by_flag(name, eq ? (size_t)(eq - name) : strlen(name));
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
        fputs(tf_config_usage(), stdout);
        return 1;
    }
    if (strcmp(use->o->name, "version") == 0) {
        ld->res->version = true;
        printf("tlsfront %s\n", TLSFRONT_VERSION);
        return 1;
    }
    return 0;
}

/* Take the config file from a TLSFRONT_CONFIG=FILE line of lines unless one is known. */
static void find_config_var(struct tf_config_loader *ld, char **lines)
{
    static const char key[] = TF_CONFIG_ENV_PREFIX "CONFIG=";
    for (char **e = lines; !ld->config_path && e && *e; e++) {
        if (strncmp(*e, key, strlen(key)) == 0) {
            ld->config_path = *e + strlen(key);
            ld->config_who = TF_CONFIG_ENV_PREFIX "CONFIG";
        }
    }
}

/* Check every flag and find the config file before anything is applied. */
static int scan_argv(struct tf_config_loader *ld, int argc, char **argv, char **envp,
                     struct flag_use *uses, int *n)
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
    find_config_var(ld, ld->env_lines);
    find_config_var(ld, envp);
    if (ld->config_path && !*ld->config_path)
        ld->config_path = NULL;
    return 0;
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
    struct tf_config_loader ld;
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
        rc = tf_config_apply_env(&ld, envp, SRC_ENV);
    if (rc == 0)
        rc = tf_config_apply_env(&ld, ld.env_lines, SRC_ENVFILE);
    if (rc == 0)
        rc = apply_flags(&ld, uses, n);
    if (rc == 0)
        rc = tf_config_finalize(&ld);
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
