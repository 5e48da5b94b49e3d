/*
 * fuzz_config_json.c: libFuzzer target for the JSON config file (config_json.c) and the
 * option handlers it feeds (config.c, config_opts.c, config_parse.c): each input is written
 * to one private temp file (under TMPDIR) and loaded as `tlsfront --config FILE`, the way
 * the binary reads it. Checked: no crash, leak or out-of-bounds access (ASan, LSan, UBSan);
 * a failed load leaves no config and a one-line error; a successful one has a backend or a
 * route, as the loader promises.
 */
#include "tlsfront/base/common.h"
#include "tlsfront/config/config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The temp file's name: written once at start-up, then only read. */
static char g_path[512];

static void remove_file(void)
{
    unlink(g_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_path, sizeof(g_path), "%s/tf-fuzz-config-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(g_path);
    if (fd < 0)
        abort();
    close(fd);
    atexit(remove_file);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f = fopen(g_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    char *argv[] = {"tlsfront", "--config", g_path, NULL};
    char *envp[] = {NULL};
    struct tf_config_result res;
    int rc = tf_config_load(3, argv, envp, &res);
    if (rc != 0) {
        if (res.cfg || res.err[0] == '\0' || strchr(res.err, '\n'))
            abort();
    } else if (res.cfg) {
        if (!res.cfg->backend && res.cfg->n_routes == 0)
            abort();
        tf_config_unref(res.cfg);
    }
    return 0;
}
