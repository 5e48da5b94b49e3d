/*
 * config_json.c: reads the JSON config file (-c FILE) with cJSON and turns each key into the
 * same text a flag would carry, handing it to config.c through a sink, so the file shares
 * every parser and message with flags and the environment. Owns only the file text and the
 * cJSON tree while loading; reads just that one file and never logs.
 */
#include "config_int.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE_BYTES (4u << 20)

/* Read the whole file into a NUL-terminated heap buffer. */
static int read_file(const char *path, const char *who, char **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = TF_EINVAL;

    if (!f) {
        snprintf(err, errlen, "%s: cannot read \"%s\": %s", who, path, strerror(errno));
        return TF_EINVAL;
    }
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 8192;
            buf = tf_realloc(buf, cap + 1);
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len > MAX_FILE_BYTES) {
            snprintf(err, errlen, "%s: \"%s\" is larger than %u bytes", who, path, MAX_FILE_BYTES);
            goto out;
        }
        if (n == 0)
            break;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "%s: cannot read \"%s\": %s", who, path, strerror(errno));
        goto out;
    }
    buf[len] = '\0';
    *out = buf;
    buf = NULL;
    rc = 0;
out:
    free(buf);
    fclose(f);
    return rc;
}

/* A JSON number as option text: integers as such, fractional seconds of a duration as
 * milliseconds when exact, anything else in %g form (which the option's parser judges). */
static void number_text(double v, bool duration, char *buf, size_t len)
{
    double ms = v * 1000;
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(buf, len, "%.0f", v);
    else if (duration && fabs(ms - round(ms)) < 1e-6 && fabs(ms) < 1e15)
        snprintf(buf, len, "%.0fms", round(ms));
    else
        snprintf(buf, len, "%.15g", v);
}

/* Join an array of strings with sep into *out; no element may contain a separator. */
static int join_strings(const cJSON *arr, const char *seps, char **out, char *err, size_t errlen)
{
    const cJSON *it;
    char *s = tf_strdup("");

    cJSON_ArrayForEach(it, arr)
    {
        char *next;
        if (!cJSON_IsString(it) || strpbrk(it->valuestring, seps)) {
            snprintf(err, errlen, "expected an array of strings without '%s'", seps);
            free(s);
            return TF_EINVAL;
        }
        next = tf_asprintf("%s%s%s", s, *s ? "," : "", it->valuestring);
        free(s);
        s = next;
    }
    *out = s;
    return 0;
}

/* Replace ',' with '+' so a list joined for --alpn fits inside a --route spec. */
static void plus_separated(char *s)
{
    for (; *s; s++) {
        if (*s == ',')
            *s = '+';
    }
}

/* {"pattern","backend","alpn","proxy_protocol","mode","connect"} as "PATTERN=BACKEND,opt=..". */
static int route_text(const cJSON *obj, char **out, char *err, size_t errlen)
{
    static const char *const keys[] = {"pattern", "backend", "proxy_protocol", "mode",
                                       "connect"};
    static const char *const forbidden[] = {"=,", "", ",", ",", ","}; /* would split the spec */
    const char *v[5] = {NULL, NULL, NULL, NULL, NULL};
    char *alpn = NULL;
    const cJSON *it;

    cJSON_ArrayForEach(it, obj)
    {
        size_t k = 0;
        while (k < 5 && strcmp(it->string, keys[k]) != 0)
            k++;
        if (k < 5 && cJSON_IsString(it) && !strpbrk(it->valuestring, forbidden[k])) {
            v[k] = it->valuestring;
        } else if (k == 5 && strcmp(it->string, "alpn") == 0 && cJSON_IsArray(it) && !alpn) {
            if (join_strings(it, ",+", &alpn, err, errlen) < 0)
                return TF_EINVAL;
            plus_separated(alpn);
        } else {
            snprintf(err, errlen, "route object: bad or unknown key \"%.60s\"", it->string);
            free(alpn);
            return TF_EINVAL;
        }
    }
    if (!v[0] || !v[1]) {
        snprintf(err, errlen, "route object: \"pattern\" and \"backend\" are required");
        free(alpn);
        return TF_EINVAL;
    }
    *out =
        tf_asprintf("%s=%s%s%s%s%s%s%s%s%s", v[0], v[1], v[2] ? ",proxy=" : "", v[2] ? v[2] : "",
                    v[3] ? ",mode=" : "", v[3] ? v[3] : "", v[4] ? ",connect=" : "",
                    v[4] ? v[4] : "", alpn ? ",alpn=" : "", alpn ? alpn : "");
    free(alpn);
    return 0;
}

/* One element of an array-valued key: a string, or (for routes) an object. */
static int element_text(const cJSON *it, enum tf_config_jshape shape, char **out, char *err,
                        size_t errlen)
{
    if (cJSON_IsString(it)) {
        *out = tf_strdup(it->valuestring);
        return 0;
    }
    if (shape == TF_JS_ROUTES && cJSON_IsObject(it))
        return route_text(it, out, err, errlen);
    snprintf(err, errlen, "expected an array of strings%s",
             shape == TF_JS_ROUTES ? " or route objects" : "");
    return TF_EINVAL;
}

/* An array-valued key: tell the sink the list starts (so it drops lower sources' entries),
 * then hand it each element. */
static int apply_array(const struct tf_config_json_sink *sink, const cJSON *item,
                       enum tf_config_jshape shape, const char *who, char *err, size_t errlen)
{
    char msg[300];
    const cJSON *it;
    int rc;

    if (!cJSON_IsArray(item)) {
        snprintf(err, errlen, "%s: expected an array", who);
        return TF_EINVAL;
    }
    rc = sink->set(sink->ctx, item->string, NULL, who);
    cJSON_ArrayForEach(it, item)
    {
        char *text = NULL;
        if (rc < 0)
            break;
        rc = element_text(it, shape, &text, msg, sizeof(msg));
        if (rc < 0)
            snprintf(err, errlen, "%s: %s", who, msg);
        else
            rc = sink->set(sink->ctx, item->string, text, who);
        free(text);
    }
    return rc;
}

/* A scalar key: check the JSON type the option's shape allows, convert, hand over. */
static int apply_scalar(const struct tf_config_json_sink *sink, const cJSON *item,
                        enum tf_config_jshape shape, const char *who, char *err, size_t errlen)
{
    char buf[128], *list = NULL;
    const char *text = NULL, *want = "a string";
    int rc;

    if (cJSON_IsString(item) && shape != TF_JS_NUMBER)
        text = item->valuestring;
    else if (cJSON_IsNumber(item) && shape != TF_JS_STRING && shape != TF_JS_STRING_LIST) {
        number_text(item->valuedouble, shape == TF_JS_DURATION, buf, sizeof(buf));
        text = buf;
    } else if (cJSON_IsArray(item) && shape == TF_JS_STRING_LIST) {
        if (join_strings(item, ",", &list, buf, sizeof(buf)) < 0) {
            snprintf(err, errlen, "%s: %s", who, buf);
            return TF_EINVAL;
        }
        text = list;
    }
    if (!text) {
        if (shape == TF_JS_NUMBER)
            want = "a number";
        else if (shape == TF_JS_DURATION)
            want = "a duration (seconds, or a string like \"10s\")";
        else if (shape == TF_JS_STRING_NUM)
            want = "a string or a number";
        else if (shape == TF_JS_STRING_LIST)
            want = "a string or an array of strings";
        snprintf(err, errlen, "%s: expected %s", who, want);
        return TF_EINVAL;
    }
    rc = sink->set(sink->ctx, item->string, text, who);
    free(list);
    return rc;
}

/* One top-level key; first is the object's first key (for the duplicate check). */
static int apply_key(const struct tf_config_json_sink *sink, const char *path, const cJSON *first,
                     const cJSON *item, char *err, size_t errlen)
{
    enum tf_config_jshape shape = TF_JS_STRING;
    char who[320];

    snprintf(who, sizeof(who), "%.200s: key \"%.80s\"", path, item->string);
    for (const cJSON *prev = first; prev != item; prev = prev->next) {
        if (strcmp(prev->string, item->string) == 0) {
            snprintf(err, errlen, "%s: duplicate key", who);
            return TF_EINVAL;
        }
    }
    if (sink->shape(sink->ctx, item->string, &shape) < 0) {
        snprintf(err, errlen, "%.200s: unknown key \"%.80s\"", path, item->string);
        return TF_EINVAL;
    }
    if (cJSON_IsNull(item))
        return 0;
    if (shape == TF_JS_ARRAY_ONE && cJSON_IsString(item))
        return apply_scalar(sink, item, TF_JS_STRING, who, err, errlen);
    if (shape == TF_JS_ARRAY || shape == TF_JS_ROUTES || shape == TF_JS_ARRAY_ONE)
        return apply_array(sink, item, shape, who, err, errlen);
    return apply_scalar(sink, item, shape, who, err, errlen);
}

/* 1-based line and column of at within text. */
static void text_position(const char *text, const char *at, int *line, int *col)
{
    const char *bol = text;
    *line = 1;
    for (const char *p = text; p < at && *p; p++) {
        if (*p == '\n') {
            (*line)++;
            bol = p + 1;
        }
    }
    *col = (int)(at - bol) + 1;
}

int tf_config_json_load(const char *path, const char *who, const struct tf_config_json_sink *sink,
                        char *err, size_t errlen)
{
    char *text = NULL;
    const char *end = NULL;
    cJSON *root = NULL;
    const cJSON *item;
    int rc = read_file(path, who, &text, err, errlen), line = 0, col = 0;

    if (rc < 0)
        return rc;
    root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root) {
        text_position(text, end ? end : text, &line, &col);
        snprintf(err, errlen, "%.300s:%d:%d: JSON syntax error", path, line, col);
        rc = TF_EINVAL;
        goto out;
    }
    if (!cJSON_IsObject(root)) {
        snprintf(err, errlen, "%.300s: expected a JSON object", path);
        rc = TF_EINVAL;
        goto out;
    }
    cJSON_ArrayForEach(item, root)
    {
        rc = apply_key(sink, path, root->child, item, err, errlen);
        if (rc < 0)
            break;
    }
out:
    cJSON_Delete(root);
    free(text);
    return rc;
}
