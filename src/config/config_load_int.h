/*
 * config_load_int.h: what the files that build a struct tf_config share (config.c: the
 * loader and its sources; config_table.c: the option table and --help; config_env.c: the
 * TLSFRONT_* variables; config_finalize.c: checks across options). Only config*.c include
 * it. The table is the one list of options: flags, variables, JSON keys, defaults and --help
 * are all looked up in it, so they cannot drift apart.
 */
#ifndef TF_CONFIG_LOAD_INT_H
#define TF_CONFIG_LOAD_INT_H

#include "config_int.h"

#include <stddef.h>

#define TF_CONFIG_ENV_PREFIX "TLSFRONT_"

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

struct tf_config_opt {
    const char *name; /* flag without "--"; env and JSON names derive from it */
    enum opt_type type;
    unsigned flags;
    size_t off; /* field in struct tf_config (0 when the handler knows its fields) */
    long long min, max;
    tf_config_setter fn;
    const char *def; /* default, parsed like any other value; NULL = none */
};

/* Upper bound on the table's rows (checked where the table is built), so a loader can keep
 * one byte per row on the stack. */
#define TF_CONFIG_OPTS_MAX 128

extern const struct tf_config_opt tf_config_opts[];
extern const size_t tf_config_n_opts;

/* Row whose flag name is the first len bytes of name, or NULL. */
const struct tf_config_opt *tf_config_opt_by_flag(const char *name, size_t len);

/* Row whose variable would be TLSFRONT_ + key (len bytes: the flag upper-cased, '-' as '_'),
 * OF_NOENV rows included (the caller tells them apart), or NULL. */
const struct tf_config_opt *tf_config_opt_by_env(const char *key, size_t len);

/* Row whose JSON key is key (the flag with '-' as '_'; "routes" too for --route), or NULL. */
const struct tf_config_opt *tf_config_opt_by_json(const char *key);

/* The variable name of flag name ("acme-ca" -> "TLSFRONT_ACME_CA") into buf. */
void tf_config_env_name(const char *name, char *buf, size_t len);

/* Loading state; lives on tf_config_load's stack. */
struct tf_config_loader {
    struct tf_config *cfg; /* being built; owned here until handed to res->cfg */
    struct tf_config_result *res;
    enum src_level cur;                    /* the source being applied */
    unsigned char src[TF_CONFIG_OPTS_MAX]; /* per row: the source that last set it */
    const char *config_path;               /* from --config or TLSFRONT_CONFIG; borrowed */
    const char *config_who;                /* which of the two, for messages */
    const char *env_file;                  /* from --env-file; borrowed */
    char **env_lines;                      /* the env file's KEY=VALUE lines; owned */
};

/* Apply one value from the current source (config.c); who names the flag, variable or key
 * for the message. A repeatable option drops what lower sources set the first time the
 * current source touches it; val NULL does only that (an empty JSON array). Returns 0, or
 * TF_EINVAL with ld->res->err set. */
int tf_config_apply(struct tf_config_loader *ld, const struct tf_config_opt *o, const char *val,
                    const char *who);

/* Apply the environment (SRC_ENV) or the env file's lines (SRC_ENVFILE) (config_env.c). */
int tf_config_apply_env(struct tf_config_loader *ld, char **envp, enum src_level level);

/* Checks across options, and defaults that depend on the machine (config_finalize.c). */
int tf_config_finalize(struct tf_config_loader *ld);

#endif
