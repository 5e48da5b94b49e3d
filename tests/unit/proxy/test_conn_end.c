/*
 * test_conn_end.c: the outcome and end-reason tables. Every name is unique and made of
 * [a-z0-9_]; every refusal outcome maps to the end reason of the same name; outcomes that are
 * no refusal, and values out of range, map to issue_failed / "-" / "?"; the access log's
 * field keys come out in the table's order.
 */
#include "tlsfront/base/outcome.h"
#include "tlsfront/proxy/conn_end.h"
#include "tf_test.h"

#include <stdbool.h>
#include <string.h>

static bool plain_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
            return false;
    return true;
}

static void test_end_names_unique(void)
{
    CHECK_EQ_STR(tf_conn_end_name(TF_CONN_END_NONE), "-");
    CHECK_EQ_STR(tf_conn_end_name(TF_CONN_END_COUNT), "-");
    for (int i = 1; i < TF_CONN_END_COUNT; i++) {
        const char *a = tf_conn_end_name((enum tf_conn_end)i);
        CHECK(plain_name(a));
        for (int j = i + 1; j < TF_CONN_END_COUNT; j++)
            CHECK(strcmp(a, tf_conn_end_name((enum tf_conn_end)j)) != 0);
    }
    CHECK_EQ_STR(tf_conn_end_name(TF_CONN_END_HOLD_OVERFLOW), "hold_overflow");
    CHECK_EQ_STR(tf_conn_end_name(TF_CONN_END_HTTP_405), "http_405");
    CHECK_EQ_STR(tf_conn_end_name(TF_CONN_END_DONE), "done");
}

static void test_outcomes(void)
{
    CHECK_EQ_STR(tf_outcome_name(TF_OUTCOME_COUNT), "?");
    for (int i = 0; i < TF_OUTCOME_COUNT; i++) {
        const char *a = tf_outcome_name((enum tf_outcome)i);
        CHECK(plain_name(a));
        for (int j = i + 1; j < TF_OUTCOME_COUNT; j++)
            CHECK(strcmp(a, tf_outcome_name((enum tf_outcome)j)) != 0);
    }
    /* A refusal ends the held handshake under its own name. */
#define SAME_NAME_(n, s, d)                                                                    \
    CHECK_EQ_STR(tf_conn_end_name(tf_conn_end_from_outcome(TF_OUTCOME_##n)), s);
    TF_OUTCOME_FAIL_LIST(SAME_NAME_)
#undef SAME_NAME_
    CHECK_EQ_STR(tf_conn_end_name(tf_conn_end_from_outcome(TF_OUTCOME_STORAGE_UNAVAILABLE)),
                 "storage_unavailable");
    /* What is no refusal cannot fail a hold: the old fallback, issue_failed. */
    CHECK_EQ_INT(tf_conn_end_from_outcome(TF_OUTCOME_READY), TF_CONN_END_ISSUE_FAILED);
    CHECK_EQ_INT(tf_conn_end_from_outcome(TF_OUTCOME_ASK_ALLOW), TF_CONN_END_ISSUE_FAILED);
    CHECK_EQ_INT(tf_conn_end_from_outcome(TF_OUTCOME_COUNT), TF_CONN_END_ISSUE_FAILED);
}

static void test_access_fields(void)
{
    static const char *const want[] = {"conn",    "client",    "proxy_peer", "sni",
                                       "alpn",    "tls",       "resumed",    "route",
                                       "backend", "bytes_in",  "bytes_out",  "duration_ms",
                                       "requests", "end"};
    CHECK_EQ_INT(TF_ACCESS_FIELD_COUNT, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < TF_ACCESS_FIELD_COUNT; i++)
        CHECK_EQ_STR(tf_access_field_name((enum tf_access_field)i), want[i]);
}

int main(void)
{
    TF_TEST_RUN(test_end_names_unique);
    TF_TEST_RUN(test_outcomes);
    TF_TEST_RUN(test_access_fields);
    return TF_TEST_DONE();
}
