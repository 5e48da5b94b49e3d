/*
 * admin_api_int.h: the admin API's pure parts, for admin.c, server_admin.c and the unit
 * tests: which route a method and path name, the checks of a name and of a JSON body, the
 * bearer token (read from its file, compared in constant time). No I/O but the token file.
 */
#ifndef TF_ADMIN_API_INT_H
#define TF_ADMIN_API_INT_H

#include "tlsfront/ctl/admin.h"

#include <stdbool.h>
#include <stddef.h>

/* What a path names. */
enum tf_admin_route_kind {
    TF_ADMIN_R_NONE = 0, /* 404 */
    TF_ADMIN_R_HEALTHZ,
    TF_ADMIN_R_READYZ,
    TF_ADMIN_R_METRICS,
    TF_ADMIN_R_CERTS,
    TF_ADMIN_R_ACTION, /* one of enum tf_admin_op: see route.op */
};

struct tf_admin_route {
    enum tf_admin_route_kind kind;
    enum tf_admin_op op;  /* TF_ADMIN_R_ACTION */
    bool read;            /* GET/HEAD: a read (open unless --admin-token-reads) */
    const char *allow;    /* the methods the path takes, for 405's Allow header */
    const char *name;     /* the NAME segment, borrowed from the path, not yet checked */
    size_t name_len;
};

/* Route method ("GET", ...) and path (no query string). Returns 0 with *r filled, 404 (no
 * such path) or 405 (path known, method not: r->allow says which). */
int tf_admin_route(const char *method, const char *path, struct tf_admin_route *r);

/* Check one name from a path or a body: 1..253 characters, lower-cased here, one trailing
 * dot dropped, then the name validator (tf_name_pattern_valid: a host name or "*." one).
 * Returns 0 with out filled (capacity TF_NAME_MAX + 1), or TF_EINVAL. */
int tf_admin_name(const char *in, size_t len, char *out);

/* Fill act from a routed request and its body (may be empty: len 0). Bodies are JSON
 * objects: revoke {"reason": "keyCompromise"} (default "unspecified"), purge {"name": N}
 * (absent: every name); others take no member. Returns 0, or 400 with a one-line reason in
 * err. */
int tf_admin_parse_action(const struct tf_admin_route *r, const char *body, size_t len,
                          struct tf_admin_action *act, char *err, size_t errlen);

/* The bearer token of an Authorization header value ("Bearer <token>", scheme without case),
 * compared with token in constant time (both are hashed first, so their lengths do not
 * leak either). False for a NULL or malformed header. */
bool tf_admin_token_ok(const char *token, const char *header, size_t header_len);

/* Read the token file: its first line without surrounding blanks, 16..1024 characters of
 * the token68 set (RFC 9110 §11.2). Returns 0 with *out a new string, or TF_EINVAL with
 * err naming the problem ("FILE: ..."). Blocking: start-up or the thread pool only. */
int tf_admin_token_read(const char *path, char **out, char *err, size_t errlen);

/* A {"error": msg} document (with "\n"): a new string. */
char *tf_admin_json_error(const char *msg);

#endif
