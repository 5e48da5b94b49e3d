/*
 * route.c: backend selection by SNI name. Reads only the immutable config it is given;
 * most specific wins: an exact route, then a "*.parent" wildcard route, then the default
 * backend. Routes are few (tens), so a scan is cheaper than building an index per config.
 */
#include "tlsfront/config/route.h"
#include "tlsfront/base/name.h"

#include <stddef.h>
#include <string.h>

static void choose(struct tf_route_choice *out, const struct tf_route *r)
{
    out->backend = &r->backend;
    out->pattern = r->pattern;
    out->alpn = r->alpn;
    out->n_alpn = r->n_alpn;
}

void tf_route_select(const struct tf_config *cfg, const char *name, struct tf_route_choice *out)
{
    out->backend = cfg->backend;
    out->pattern = "default";
    out->alpn = cfg->alpn;
    out->n_alpn = cfg->n_alpn;
    if (!name)
        return;
    int i = tf_name_pick(cfg->routes, cfg->n_routes, sizeof *cfg->routes,
                         offsetof(struct tf_route, pattern), name);
    if (i >= 0)
        choose(out, &cfg->routes[i]);
}
