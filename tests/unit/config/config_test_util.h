/*
 * config_test_util.h: what the config unit tests share: temp files of their own (cleaned up
 * by cleanup()), loading a config from flags and environment, and address helpers. Each test
 * file gets its own copy (static inline).
 */
#ifndef TF_CONFIG_TEST_UTIL_H
#define TF_CONFIG_TEST_UTIL_H

#include "tlsfront/config/config.h"
#include "config_int.h"
#include "tlsfront/base/log.h"
#include "tf_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#define MAX_ARGS 128

static char tmpdir[] = "/tmp/tf_test_config.XXXXXX"; /* made by main() with mkdtemp */
static char *tmpfiles[32];
static int n_tmpfiles;

/* Write text to a fresh temp file; the path lives until cleanup(). */
static inline const char *write_tmp(const char *text)
{
    char *path = tf_asprintf("%s/cfg.XXXXXX", tmpdir);
    int fd = mkstemp(path);
    size_t len = strlen(text);
    if (fd < 0 || write(fd, text, len) != (ssize_t)len || close(fd) != 0) {
        perror("write_tmp");
        abort();
    }
    tmpfiles[n_tmpfiles++] = path;
    return path;
}

static inline void cleanup(void)
{
    for (int i = 0; i < n_tmpfiles; i++) {
        unlink(tmpfiles[i]);
        free(tmpfiles[i]);
    }
    rmdir(tmpdir);
}

static inline int load_va(struct tf_config_result *res, char **env, va_list ap)
{
    char *argv[MAX_ARGS];
    int argc = 0;

    argv[argc++] = "tlsfront";
    for (char *a = va_arg(ap, char *); a; a = va_arg(ap, char *)) {
        if (argc == MAX_ARGS - 1)
            abort(); /* the test itself is wrong: raise MAX_ARGS */
        argv[argc++] = a;
    }
    argv[argc] = NULL;
    return tf_config_load(argc, argv, env, res);
}

/* Load with env (NULL-terminated, may be NULL) and the flags that follow, NULL-terminated. */
static inline int load(struct tf_config_result *res, char **env, ...)
{
    va_list ap;
    va_start(ap, env);
    int rc = load_va(res, env, ap);
    va_end(ap);
    return rc;
}

/* Load expecting failure; returns the message (stored in res). */
static inline const char *load_err(struct tf_config_result *res, char **env, ...)
{
    va_list ap;
    va_start(ap, env);
    int rc = load_va(res, env, ap);
    va_end(ap);
    CHECK_EQ_INT(rc, TF_EINVAL);
    CHECK(res->cfg == NULL);
    if (rc == 0)
        tf_config_unref(res->cfg);
    return res->err;
}

#define CONTAINS(hay, needle) (strstr((hay), (needle)) != NULL)

static inline uint16_t port_of(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
}

static inline const char *addr_text(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    const struct sockaddr_in *in4 = (const struct sockaddr_in *)ss;
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
    const void *a =
        ss->ss_family == AF_INET ? (const void *)&in4->sin_addr : (const void *)&in6->sin6_addr;
    return inet_ntop(ss->ss_family, a, buf, (socklen_t)len);
}

#endif
