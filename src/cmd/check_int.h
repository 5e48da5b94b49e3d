/*
 * check.h: what --check does beyond parsing: everything a start reads or opens before it
 * serves, short of binding a port. Used by main.c only.
 */
#ifndef TF_CHECK_H
#define TF_CHECK_H

#include "tlsfront/config/config.h"

/*
 * Check cfg as a start would, without listening: load the certificate directory (stricter
 * than a start: a file a start would skip with a warning fails the check), build the TLS
 * context, read --acme-ca, and, when on-demand issuance is on (--allow or --ask), open the
 * storage: a directory is created if missing and must be writable (as at start), a redis://
 * store must answer a read (on a private loop, bounded by the store's own time limit).
 * Resolves nothing else and binds nothing. Returns 0, or 2 after printing one line
 * "tlsfront: ..." to stderr naming the option.
 */
int tf_check_run(const struct tf_config *cfg);

#endif
