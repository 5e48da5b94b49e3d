/*
 * certs_cmd_int.h: the `tlsfront certs` subcommand, for main.c.
 */
#ifndef TF_CERTS_CMD_INT_H
#define TF_CERTS_CMD_INT_H

/* `tlsfront certs --storage DIR`: prints name, issuer, not_after and days left.
 * argv excludes the program name but includes "certs". Returns the exit code. */
int tf_cmd_certs(int argc, char **argv);

#endif
