/*
 * admin_action.c: the admin endpoint's routing and its API: which path a request names,
 * whether it needs the bearer token (every action; the reads too with --admin-token-reads,
 * never /healthz and /readyz) and whether it carries it, the checked action handed to the
 * server's hook, and the hook's answer, sent now or later (parsing of the connection waits
 * for it). Also the request header and body capture llhttp feeds. Control loop only; the
 * token is never logged.
 */
#include "admin_int.h"

#include "tlsfront/base/common.h"
#include "tlsfront/base/log.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Header names are kept only as far as needed to spot Authorization. */
int admin_on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    if (c->in_value) {
        c->in_value = false;
        c->field_len = 0;
    }
    for (size_t i = 0; i < n; i++, c->field_len++)
        if (c->field_len < sizeof c->field)
            c->field[c->field_len] = at[i];
    return admin_head_grow(c, n, 431);
}

int admin_on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    if (!c->in_value) {
        c->in_value = true;
        c->auth_field = c->field_len == 13 && strncasecmp(c->field, "authorization", 13) == 0;
        if (c->auth_field && c->auth_len)
            c->auth_over = true; /* a second Authorization header: refused */
    }
    if (c->auth_field) {
        if (c->auth_len + n > ADMIN_AUTH_MAX) {
            c->auth_over = true;
        } else {
            memcpy(c->auth + c->auth_len, at, n);
            c->auth_len += n;
            c->auth[c->auth_len] = '\0';
        }
    }
    return admin_head_grow(c, n, 431);
}

int admin_on_body(llhttp_t *p, const char *at, size_t n)
{
    struct admin_conn *c = p->data;
    if (c->body_len + n > ADMIN_BODY_MAX) {
        c->reject_status = 413;
        return HPE_USER;
    }
    if (!c->body)
        c->body = tf_malloc(ADMIN_BODY_MAX + 1);
    memcpy(c->body + c->body_len, at, n);
    c->body_len += n;
    c->body[c->body_len] = '\0';
    return 0;
}

/* --- the API's actions ----------------------------------------------------------------- */

/* Whether the request needs the bearer token: every action, and the reads but health with
 * --admin-token-reads. */
static bool needs_token(const struct tf_admin *a, const struct tf_admin_route *r)
{
    if (!r->read)
        return true;
    return a->token_reads && r->kind != TF_ADMIN_R_HEALTHZ && r->kind != TF_ADMIN_R_READYZ;
}

/* Refuse a request without the right token: 403 when no token is configured, else 401.
 * Returns true when refused. */
static bool auth_refused(struct admin_conn *c, const struct tf_admin_route *r, bool head,
                         bool close_after)
{
    struct tf_admin *a = c->admin;
    const char *m = llhttp_method_name(c->method);
    if (!a->token) {
        TF_INFO("admin", "%s %.100s from %s: 403 (no --admin-token-file)", m, c->url, c->peer);
        admin_respond_json_error(c, 403,
                           r->read ? "reads need the token, and no --admin-token-file is set"
                                   : "actions are disabled: start tlsfront with "
                                     "--admin-token-file",
                           head, close_after, NULL);
        return true;
    }
    if (!c->auth_over && tf_admin_token_ok(a->token, c->auth, c->auth_len))
        return false;
    TF_INFO("admin", "%s %.100s from %s: 401 (%s token)", m, c->url, c->peer,
            c->auth_len ? "wrong" : "no");
    admin_respond_json_error(c, 401, "a valid bearer token is required", head, close_after,
                       "WWW-Authenticate: Bearer realm=\"tlsfront\"\r\n");
    return true;
}

/* An authorized request of the API: check its input and hand it to the action hook. */
static void conn_action(struct admin_conn *c, const struct tf_admin_route *r, bool head,
                        bool close_after)
{
    struct tf_admin *a = c->admin;
    struct tf_admin_action act;
    char err[160];
    if (tf_admin_parse_action(r, c->body, c->body_len, &act, err, sizeof err) != 0) {
        TF_INFO("admin", "%s %.100s from %s: 400 (%s)", llhttp_method_name(c->method), c->url,
                c->peer, err);
        admin_respond_json_error(c, 400, err, head, close_after, NULL);
        return;
    }
    if (!a->hooks.action) {
        admin_respond_json_error(c, 404, "no certificate manager here", head, close_after, NULL);
        return;
    }
    act.peer = c->peer;
    struct tf_admin_reply *rep = tf_calloc(1, sizeof *rep);
    rep->conn = c;
    rep->head_only = head;
    rep->close_after = close_after;
    snprintf(rep->what, sizeof rep->what, "%.8s %.50s", llhttp_method_name(c->method), c->url);
    c->reply = rep;
    c->in_hook = true;
    a->hooks.action(a->hooks.arg, &act, rep);
    c->in_hook = false;
}

void tf_admin_reply(struct tf_admin_reply *reply, int status, const char *json)
{
    struct admin_conn *c = reply->conn;
    if (c) {
        c->reply = NULL;
        if (strncmp(reply->what, "GET ", 4) != 0 && strncmp(reply->what, "HEAD ", 5) != 0)
            TF_INFO("admin", "%s from %s: %d", reply->what, c->peer, status);
        const char *body = json ? json : "{}";
        size_t len = strlen(body);
        char *text = tf_asprintf("%s%s", body, len && body[len - 1] == '\n' ? "" : "\n");
        admin_respond(c, status, "application/json", text, strlen(text), reply->head_only,
                      reply->close_after, NULL);
        free(text);
        if (!c->in_hook && !c->closing)
            admin_resume(c);
    }
    free(reply);
}

/* Route one complete request; the query string is ignored. */
void admin_route(struct admin_conn *c)
{
    struct tf_admin *a = c->admin;
    bool head = c->method == HTTP_HEAD;
    bool close_after = !c->keep_alive;
    size_t plen = strcspn(c->url, "?");
    c->url[plen] = '\0';
    struct tf_admin_route r;
    int st = tf_admin_route(llhttp_method_name(c->method), c->url, &r);
    if (st == 405) {
        char allow[64];
        snprintf(allow, sizeof allow, "Allow: %s\r\n", r.allow);
        admin_respond_json_error(c, 405, "method not allowed", false, close_after, allow);
        return;
    }
    if (st != 0 || (r.kind == TF_ADMIN_R_METRICS && !a->hooks.metrics) ||
        (r.kind == TF_ADMIN_R_CERTS && !a->hooks.certs_json)) {
        admin_respond_text(c, 404, "not found\n", head, close_after);
        return;
    }
    if (needs_token(a, &r) && auth_refused(c, &r, head, close_after))
        return;
    if (r.kind == TF_ADMIN_R_HEALTHZ) {
        bool ok = a->hooks.healthy && a->hooks.healthy(a->hooks.arg);
        admin_respond_text(c, ok ? 200 : 503, ok ? "ok\n" : "unhealthy\n", head, close_after);
    } else if (r.kind == TF_ADMIN_R_READYZ) {
        bool ok = a->hooks.ready && a->hooks.ready(a->hooks.arg);
        bool st_up = !a->hooks.storage_up || a->hooks.storage_up(a->hooks.arg);
        const char *body = ok ? (st_up ? "ready\n" : "ready; storage down\n")
                              : (st_up ? "not ready\n" : "not ready; storage down\n");
        admin_respond_text(c, ok ? 200 : 503, body, head, close_after);
    } else if (r.kind == TF_ADMIN_R_METRICS) {
        admin_respond_hook(c, "text/plain; version=0.0.4; charset=utf-8", a->hooks.metrics, head,
                     close_after);
    } else if (r.kind == TF_ADMIN_R_CERTS) {
        admin_respond_hook(c, "application/json", a->hooks.certs_json, head, close_after);
    } else {
        conn_action(c, &r, head, close_after);
    }
}
