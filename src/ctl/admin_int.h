/*
 * admin_int.h: what the admin endpoint's two files share: the admin and connection structs,
 * the response writers and the parser's resumption (admin.c: listener, connections, HTTP
 * transport) and the routing, bearer token and action hand-off (admin_action.c). Control
 * loop only.
 */
#ifndef TF_ADMIN_INT_H
#define TF_ADMIN_INT_H

#include "admin_api_int.h"
#include "tlsfront/ctl/admin.h"

#include <llhttp.h>
#include <netinet/in.h>

#define ADMIN_URL_MAX 1024
#define ADMIN_QUEUE_SOFT (256 * 1024)      /* stop reading above this many unsent bytes */
#define ADMIN_QUEUE_HARD (4 * 1024 * 1024) /* drop the connection above this */
#define ADMIN_LINGER_MS 2000               /* after our FIN, wait this long for the peer's */
#define ADMIN_BODY_MAX 4096                /* request bodies above this are refused (413) */
#define ADMIN_AUTH_MAX 1100                /* an Authorization value longer than this fails */

struct tf_admin {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct tf_admin_hooks hooks;
    llhttp_settings_t settings;
    struct admin_conn *conns; /* live connections, owned by the admin */
    int n_conns, max_conns;
    uint64_t idle_ms;
    size_t max_header;
    uint64_t requests;
    char *token;      /* bearer token of the actions, NULL = actions off; owned */
    bool token_reads; /* the token guards the reads too */
    int pending; /* listener + live connections; free at zero once closing */
    bool closing;
    void (*done)(void *arg);
    void *done_arg;
};

struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    struct tf_admin *admin;
    struct admin_conn *prev, *next;
    llhttp_t parser;
    int pending_closes;
    size_t head_bytes; /* request line + headers of the current request */
    size_t url_len;
    int reject_status; /* 414/431/413 decided by a callback, sent after execute */
    llhttp_method_t method;
    bool keep_alive;
    bool closing, finishing, shut_done, peer_eof, read_paused, overloaded;
    struct tf_admin_reply *reply; /* an action's answer still owed, or NULL */
    bool in_hook;                 /* inside the action hook: answers do not resume parsing */
    size_t rest_off, rest_len;    /* unparsed bytes in rbuf while an answer is owed */
    /* the Authorization header: field name matching state and value */
    char field[16];
    size_t field_len, auth_len;
    bool in_value, auth_field, auth_over;
    char auth[ADMIN_AUTH_MAX + 1];
    char *body; /* the request body, owned, at most ADMIN_BODY_MAX bytes */
    size_t body_len;
    char peer[INET6_ADDRSTRLEN + 8];
    char url[ADMIN_URL_MAX + 1];
    char rbuf[4096]; /* read buffer; reads are sequential so one suffices */
};

/* One queued response: the request and its bytes in one allocation, freed in on_write. */
struct admin_write {
    uv_write_t req;
    size_t len;
    char data[];
};

/* An action's answer owed to a connection; conn is cleared when the connection closes
 * first, and the reply is freed when answered. */
struct tf_admin_reply {
    struct admin_conn *conn;
    bool head_only, close_after;
    char what[64]; /* "POST /certs/x/renew" shortened, for the log */
};

/* admin.c: queue one response (body borrowed; extra: header lines or NULL; head_only: the
 * body is not sent; close_after: FIN once written). */
void admin_respond(struct admin_conn *c, int status, const char *ctype, const char *body,
                   size_t body_len, bool head_only, bool close_after, const char *extra);
void admin_respond_text(struct admin_conn *c, int status, const char *text, bool head_only,
                        bool close_after);
/* {"error": msg} as application/json. */
void admin_respond_json_error(struct admin_conn *c, int status, const char *msg,
                              bool head_only, bool close_after, const char *extra);
/* 200 with the body a hook writes. */
void admin_respond_hook(struct admin_conn *c, const char *ctype,
                        void (*hook)(void *, struct tf_metrics_buf *), bool head_only,
                        bool close_after);
/* An action was answered: parse what followed it, then read again. */
void admin_resume(struct admin_conn *c);
/* Count request-head bytes; past the cap the request is refused with status (HPE_USER). */
int admin_head_grow(struct admin_conn *c, size_t n, int status);

/* admin_action.c: route one complete request (reads, token checks, actions). */
void admin_route(struct admin_conn *c);
/* llhttp callbacks: header names and values (the Authorization value is kept), the body. */
int admin_on_header_field(llhttp_t *p, const char *at, size_t n);
int admin_on_header_value(llhttp_t *p, const char *at, size_t n);
int admin_on_body(llhttp_t *p, const char *at, size_t n);

#endif
