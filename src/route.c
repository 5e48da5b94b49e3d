/*
 * route.c: backend selection by SNI name. Reads only the immutable config it is given;
 * most specific wins: an exact route, then a "*.parent" wildcard route, then the default
 * backend. Routes are few (tens), so a scan is cheaper than building an index per config.
 */
#include "route.h"
#include "name.h"

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
    const struct tf_route *wild = NULL;
    for (int i = 0; i < cfg->n_routes; i++) {
        const struct tf_route *r = &cfg->routes[i];
        if (r->pattern[0] == '*') {
            if (!wild && tf_name_match(r->pattern, name))
                wild = r;
        } else if (strcmp(r->pattern, name) == 0) {
            choose(out, r);
            return;
        }
    }
    if (wild)
        choose(out, wild);
}
