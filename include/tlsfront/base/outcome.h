/*
 * outcome.h: how a certificate request ends, for the handshakes held for it. The gate
 * decides (allow or one of the refusals), the certificate manager answers the workers with
 * one outcome per name, and a held handshake that fails ends with the outcome's name as its
 * access log end= value (proxy/conn_end.h includes the refusals in its own table). One
 * table, TF_OUTCOME_LIST, gives each value its name and meaning: code compares enum values,
 * never names.
 */
#ifndef TF_OUTCOME_H
#define TF_OUTCOME_H

/* Outcomes that let the name through: X(ENUM_SUFFIX, "name", "meaning"). */
#define TF_OUTCOME_ALLOW_LIST(X)                                                                   \
    X(READY, "ready", "the certificate is ready: the held handshakes resume")                      \
    X(ALLOW_PATTERN, "allow_pattern", "an --allow pattern matched and there is no --ask")          \
    X(ASK_ALLOW, "ask_allow", "the --ask endpoint answered 2xx")

/* Outcomes that fail the held handshakes; each is also an access log end= value. */
#define TF_OUTCOME_FAIL_LIST(X)                                                                    \
    X(NOT_ALLOWED, "not_allowed",                                                                  \
      "no --allow pattern matched the name (or neither patterns nor --ask are set)")               \
    X(ASK_DENY, "ask_deny", "the --ask endpoint answered with a non-2xx, non-5xx status")          \
    X(ASK_ERROR, "ask_error",                                                                      \
      "the --ask endpoint failed (connection error or 5xx): denied, remembered briefly")           \
    X(ASK_TIMEOUT, "ask_timeout", "the --ask endpoint did not answer in --ask-timeout")            \
    X(ASK_BUSY, "ask_busy", "too many names already wait for the --ask endpoint")                  \
    X(BACKED_OFF, "backed_off", "an order for the name failed recently: backing off")              \
    X(RATE_LIMITED, "rate_limited", "the local order rate (token bucket) is spent")                \
    X(BUDGET, "budget",                                                                            \
      "the local budget refused the order (concurrent orders, names cap, CA limits)")              \
    X(PAUSED, "paused", "the CA paused issuance for the account or the identifier")                \
    X(ISSUE_FAILED, "issue_failed", "the ACME order failed")                                       \
    X(ISSUE_TIMEOUT, "issue_timeout", "the ACME order took too long")                              \
    X(SHUTTING_DOWN, "shutting_down", "tlsfront is stopping: no new certificates")                 \
    X(STORAGE_UNAVAILABLE, "storage_unavailable",                                                  \
      "the shared storage could not be read (cluster): the name is refused for now")               \
    X(ACME_TLS_NO_CHALLENGE, "acme_tls_no_challenge",                                              \
      "an acme-tls/1 handshake for a name with no pending challenge")                              \
    X(LOAD_FAILED, "load_failed",                                                                  \
      "the name's certificate file could not be loaded on first use (logged once)")

#define TF_OUTCOME_LIST(X) TF_OUTCOME_ALLOW_LIST(X) TF_OUTCOME_FAIL_LIST(X)

enum tf_outcome {
#define TF_OUTCOME_ENUM_(n, s, d) TF_OUTCOME_##n,
    TF_OUTCOME_LIST(TF_OUTCOME_ENUM_)
#undef TF_OUTCOME_ENUM_
    TF_OUTCOME_COUNT
};

/* The outcome's name ("not_allowed"), a static string; "?" for a value out of range. */
const char *tf_outcome_name(enum tf_outcome o);

#endif
