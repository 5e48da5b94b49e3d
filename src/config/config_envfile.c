/*
 * config_envfile.c: reads the env file of --env-file into "KEY=VALUE" strings for config.c,
 * which applies the TLSFRONT_* ones like environment variables (above the environment, below
 * flags). The same file works as systemd's EnvironmentFile= and docker run --env-file for
 * plain KEY=VALUE lines. Reads one file, synchronously: the config loader runs at start-up
 * and at SIGHUP, like the JSON file's reader.
 */
#include "config_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ENVFILE_MAX_LINES 4096

void tf_config_envfile_free(char **lines)
{
    for (char **l = lines; l && *l; l++)
        free(*l);
    free(lines);
}

/* One line (no newline, modified in place) into *out, or NULL for a blank or comment line.
 * Returns 0 or TF_EINVAL with err set. */
static int parse_line(char *line, const char *path, int no, char **out, char *err, size_t errlen)
{
    char *p = line, *eq, *val, *end;
    size_t vlen;

    *out = NULL;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0' || *p == '#')
        return 0;
    if (strncmp(p, "export ", 7) == 0)
        p += 7;
    eq = strchr(p, '=');
    if (!eq || eq == p) {
        snprintf(err, errlen, "%s:%d: expected KEY=VALUE, got \"%.80s\"", path, no, p);
        return TF_EINVAL;
    }
    for (const char *k = p; k < eq; k++) {
        if (!isalnum((unsigned char)*k) && *k != '_') {
            snprintf(err, errlen, "%s:%d: \"%.*s\" is no variable name", path, no,
                     (int)TF_MIN(eq - p, 80), p);
            return TF_EINVAL;
        }
    }
    val = eq + 1;
    end = val + strlen(val);
    while (end > val && isspace((unsigned char)end[-1]))
        *--end = '\0';
    vlen = (size_t)(end - val);
    if (vlen >= 2 && (val[0] == '"' || val[0] == '\'') && val[vlen - 1] == val[0]) {
        val[vlen - 1] = '\0';
        val++;
    }
    *eq = '\0';
    size_t n = strlen(p) + 1 + strlen(val) + 1;
    *out = tf_malloc(n);
    snprintf(*out, n, "%s=%s", p, val);
    return 0;
}

char **tf_config_envfile_read(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char buf[8192];
    char **lines = NULL;
    int n = 0, no = 0;

    if (!f) {
        snprintf(err, errlen, "--env-file %s: %s", path, strerror(errno));
        return NULL;
    }
    lines = tf_calloc(1, sizeof(*lines));
    while (fgets(buf, sizeof(buf), f)) {
        char *kv;
        size_t len = strlen(buf);
        no++;
        if (len == sizeof(buf) - 1 && buf[len - 1] != '\n') {
            snprintf(err, errlen, "%s:%d: line longer than %zu bytes", path, no, sizeof(buf) - 2);
            goto fail;
        }
        buf[strcspn(buf, "\r\n")] = '\0';
        if (parse_line(buf, path, no, &kv, err, errlen) != 0)
            goto fail;
        if (!kv)
            continue;
        if (n == ENVFILE_MAX_LINES) {
            free(kv);
            snprintf(err, errlen, "%s: more than %d variables", path, ENVFILE_MAX_LINES);
            goto fail;
        }
        lines = tf_realloc(lines, (size_t)(n + 2) * sizeof(*lines));
        lines[n++] = kv;
        lines[n] = NULL;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "--env-file %s: read error", path);
        goto fail;
    }
    fclose(f);
    return lines;
fail:
    fclose(f);
    tf_config_envfile_free(lines);
    return NULL;
}
