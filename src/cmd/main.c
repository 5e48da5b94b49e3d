/*
 * main.c: the command line. Loads the config (exit 2 with one line on a bad one), logs its
 * warnings, handles --check (check.c)/--help/--version, the `certs` and `revoke` subcommands
 * and the hidden --list-end-reasons (reference.c), ignores SIGPIPE, then runs the server
 * until it stops. Nothing else lives here.
 */
#include "certs_cmd_int.h"
#include "check_int.h"
#include "reference_int.h"
#include "revoke_cmd_int.h"
#include "tlsfront/base/log.h"
#include "tlsfront/config/config.h"
#include "tlsfront/ctl/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

int main(int argc, char **argv)
{
    /* A peer closing mid-write must be an error return, not a process kill. */
    signal(SIGPIPE, SIG_IGN);
    if (argc > 1 && strcmp(argv[1], "certs") == 0)
        return tf_cmd_certs(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "revoke") == 0)
        return tf_cmd_revoke(argc - 1, argv + 1);
    if (argc == 2 && strcmp(argv[1], "--list-end-reasons") == 0)
        return tf_cmd_reference(); /* hidden: regenerates docs/operations.md's reference */

    struct tf_config_result res;
    memset(&res, 0, sizeof res);
    if (tf_config_load(argc, argv, environ, &res) != 0) {
        fprintf(stderr, "tlsfront: %s\n", res.err);
        return 2;
    }
    if (res.help || res.version) {
        tf_config_unref(res.cfg);
        return 0;
    }
    struct tf_config *cfg = res.cfg;
    tf_log_setup((enum tf_log_level)cfg->log_level, cfg->log_json);
    for (int i = 0; i < res.n_warn; i++)
        TF_WARN("config", "%s", res.warn[i]);
    if (res.check_only) {
        int rc = tf_check_run(cfg);
        if (rc == 0)
            printf("tlsfront: configuration ok\n");
        tf_config_unref(cfg);
        return rc;
    }

    struct tf_server *srv = tf_calloc(1, sizeof *srv);
    int rc = tf_server_start(srv, cfg, argc, argv, environ);
    tf_config_unref(cfg);
    if (rc == 0)
        rc = tf_server_run(srv);
    tf_server_free(srv);
    free(srv);
    return rc;
}
