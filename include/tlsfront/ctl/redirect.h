/*
 * redirect.h: the --redirect-http listener. Plain HTTP on the control loop: every
 * request gets a 308 to https://HOST/PATH?QUERY, where HOST must be a name tlsfront serves
 * (a loaded certificate covers it, or an --allow pattern matches it); anything else gets a
 * 400, so the listener is never an open redirect. One request per connection. Also the
 * ACME HTTP-01 responder: GET /.well-known/acme-challenge/TOKEN gets the pending challenge's
 * key authorization (200) or a 404, whatever the Host.
 */
#ifndef TF_REDIRECT_H
#define TF_REDIRECT_H

struct tf_server;

/* Bind and listen when s->cfg->redirect_http is set (else do nothing). Returns 0, or 1
 * after logging why the listener could not start. */
int tf_redirect_start(struct tf_server *s);
/* Close the listener and every open redirect connection (idempotent; frees itself after
 * the last close callback). */
void tf_redirect_stop(struct tf_server *s);

#endif
