/*
 * gate.h: the on-demand issuance gate of the control loop: is this name allowed a
 * certificate? Both gates must agree: when allow patterns are given (exact names and
 * "*.suffix" one-label wildcards) the name must match one, and when the operator's --ask HTTP
 * endpoint is given (GET <url>?domain=<name>; any 2xx allows, anything else denies; a 5xx
 * counts as an endpoint error) it must say yes. A name no pattern matches is refused without
 * asking. Asks go through a bounded LRU answer cache, single-flight requests per name and a
 * cap on requests in flight. Lives on the control loop; every function
 * must be called from that loop's thread. Never blocks, never calls a
 * callback from inside a call.
 */
#ifndef TF_GATE_H
#define TF_GATE_H

#include "tlsfront/base/outcome.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct tf_httpc;

enum { TF_GATE_DENY = 0, TF_GATE_ALLOW = 1 };

/*
 * The verdict for one check. why is one of (base/outcome.h): "allow_pattern" (a pattern matched and
 * there is no ask URL), "ask_allow", "ask_deny", "ask_error", "ask_timeout", "not_allowed"
 * (allow patterns are set and none matched, or there is neither a pattern nor an ask URL),
 * "ask_busy" (too many requests queued). A cached answer carries the why of the answer it
 * repeats. Runs exactly once per accepted check (unless cancelled), always from a loop
 * callback.
 */
typedef void (*tf_gate_cb)(int verdict, enum tf_outcome why, void *arg);

struct tf_gate;
struct tf_gate_req;

/*
 * Create a gate. allow[0..n_allow) are patterns (copied; already validated by the config).
 * ask_url (copied) may be NULL for no ask gate; http (borrowed, must outlive the gate) is then
 * unused and may be NULL, otherwise it is required. ask_timeout_ms: per request (0 = 5000).
 * ask_cache_s: how long answers are kept unless the response's Cache-Control says otherwise
 * (max-age=N, capped at one day; no-store or no-cache: not kept); 0 = answers are not
 * cached. Errors, timeouts and 5xx statuses ("ask_error") are kept for min(5 s, ask_cache_s)
 * (5 s when ask_cache_s is 0)
 * so a down endpoint is not hammered. ask_max_inflight: HTTP requests at once (0 = 8);
 * beyond that up to 16 * ask_max_inflight distinct names wait, further ones are denied
 * "ask_busy". cache_max_entries: LRU bound (0 = 10000). Returns NULL on bad arguments.
 */
struct tf_gate *tf_gate_new(uv_loop_t *loop, struct tf_httpc *http, char **allow,
                            int n_allow, const char *ask_url, uint32_t ask_timeout_ms,
                            uint32_t ask_cache_s, int ask_max_inflight, int cache_max_entries);

/*
 * Ask whether name (normalised and validated) may get a certificate. Returns 0 and, if handle
 * is not NULL, a handle valid until the callback has run or tf_gate_cancel() was called; or
 * TF_ECLOSED once tf_gate_close() was called, TF_EINVAL for a name with characters other than
 * lower-case LDH and dots (cb then never runs). Concurrent checks for one
 * name share one HTTP request.
 */
int tf_gate_check(struct tf_gate *g, const char *name, tf_gate_cb cb, void *arg,
                  struct tf_gate_req **handle);

/* Withdraw a check whose requester went away: its callback will not run. The HTTP request it
 * joined keeps going for the other waiters (and fills the cache); a request still queued
 * with nobody left waiting is dropped. h must not be used afterwards. */
void tf_gate_cancel(struct tf_gate_req *h);

struct tf_gate_stats {
    /* Decisions by where they came from and what they were. */
    uint64_t pattern_allow;    /* allow pattern matched, no ask URL */
    uint64_t not_allowed;      /* refused without asking: no pattern matched (or no gate) */
    uint64_t ask_allow, ask_deny, ask_error, ask_timeout; /* answered by a request */
    uint64_t cache_allow, cache_deny;                     /* answered from the cache */
    uint64_t busy;             /* denied "ask_busy" */
    uint64_t ask_requests;     /* HTTP requests made */
    uint64_t joined;           /* checks that joined a request already in flight or queued */
    uint64_t cache_evictions;  /* LRU evictions */
    size_t cache_size;
    int inflight, queued;      /* HTTP requests running, names waiting for a slot */
};
void tf_gate_stats(const struct tf_gate *g, struct tf_gate_stats *st);

/* Drop cached answers: name's, or every one when name is NULL (a tenant was removed, or
 * the endpoint's answers changed). Requests in flight are not touched: their answers are
 * cached when they arrive. Returns how many entries were dropped. */
size_t tf_gate_purge(struct tf_gate *g, const char *name);

/* Close: checks already accepted are answered (pending requests are cancelled and deny with
 * "ask_error"); then the gate frees itself and calls done(arg) (may be NULL) from a loop
 * callback. Idempotent. */
void tf_gate_close(struct tf_gate *g, void (*done)(void *arg), void *arg);

/* An exact pattern names one certificate we can obtain eagerly at start-up; a wildcard
 * pattern only says which names may be obtained on demand. */
bool tf_gate_eager(const char *pattern);

#endif
