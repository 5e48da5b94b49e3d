/*
 * revoke_cmd_int.h: the `tlsfront revoke` subcommand, for main.c.
 */
#ifndef TF_REVOKE_CMD_INT_H
#define TF_REVOKE_CMD_INT_H

/* `tlsfront revoke [OPTIONS] NAME [--reason REASON]`: revokes NAME's stored certificate and
 * removes it from the storage. argv excludes the program name but includes "revoke".
 * Returns the exit code (0 revoked, 1 failed, 2 bad usage). */
int tf_cmd_revoke(int argc, char **argv);

#endif
