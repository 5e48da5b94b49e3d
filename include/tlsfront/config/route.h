/*
 * route.h: which backend serves a name. Routes come from the immutable config; matching is
 * exact name first, then the one-label wildcard "*.parent", then the default --backend.
 */
#ifndef TF_ROUTE_H
#define TF_ROUTE_H

#include "tlsfront/config/config.h"

/* The chosen backend and ALPN list for a connection; pointers borrowed from cfg. */
struct tf_route_choice {
    const struct tf_backend *backend; /* NULL: no route and no default backend */
    const char *pattern;              /* route pattern, or "default" */
    char *const *alpn;
    int n_alpn;
};

/* name may be NULL (no SNI): then only the default backend applies. */
void tf_route_select(const struct tf_config *cfg, const char *name, struct tf_route_choice *out);

#endif
