/*
 * test_webhook.c: the webhook event's JSON body (field order, RFC 3339 times, nulls, the
 * node only when set, escaping of odd characters) and its signature (HMAC-SHA256 of
 * "<timestamp>.<body>", checked against vectors computed independently with Python's hmac
 * module), plus the event name table.
 */
#include "webhook_int.h"
#include "tf_test.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define OBTAINED_BODY                                                                              \
    "{\"event\":\"certificate_obtained\",\"name\":\"a.example.test\",\"ca\":\"https://ca.test/"   \
    "dir\",\"serial\":\"0a1b\",\"not_after\":\"2026-03-04T05:06:07Z\",\"error\":null,\"time\":"    \
    "\"2026-01-02T03:04:05Z\"}"

static void test_body_obtained(void)
{
    struct tf_webhook_event ev = {.kind = TF_WEBHOOK_OBTAINED,
                                  .name = "a.example.test",
                                  .ca = "https://ca.test/dir",
                                  .serial = "0a1b",
                                  .not_after = 1772600767,
                                  .time = 1767323045};
    char *b = tf_webhook_body(&ev);
    CHECK_EQ_STR(b, OBTAINED_BODY);
    free(b);
}

static void test_body_failed_with_node(void)
{
    struct tf_webhook_event ev = {.kind = TF_WEBHOOK_FAILED,
                                  .name = "b.example.test",
                                  .ca = "https://ca.test/dir",
                                  .error = "urn:ietf:params:acme:error:connection: \"x\"\n",
                                  .node = "0011223344556677",
                                  .time = 1767323045};
    char *b = tf_webhook_body(&ev);
    cJSON *j = cJSON_Parse(b);
    CHECK(j != NULL);
    if (j) {
        CHECK_EQ_STR(cJSON_GetObjectItem(j, "event")->valuestring, "certificate_failed");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "serial")));
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "not_after")));
        CHECK_EQ_STR(cJSON_GetObjectItem(j, "error")->valuestring,
                     "urn:ietf:params:acme:error:connection: \"x\"\n");
        CHECK_EQ_STR(cJSON_GetObjectItem(j, "node")->valuestring, "0011223344556677");
        cJSON_Delete(j);
    }
    CHECK(strchr(b, '\n') == NULL); /* one line: the newline is escaped */
    free(b);
}

static void test_sign_vectors(void)
{
    char sig[80];
    const char *body = OBTAINED_BODY;
    CHECK_EQ_INT(tf_webhook_sign((const unsigned char *)"topsecret", 9, 1767323045, body,
                                 strlen(body), sig, sizeof sig),
                 0);
    CHECK_EQ_STR(sig, "sha256=bb251e3409c9005c109de1009a047502cbd0616b512291cd87c3385767e666f4");
    CHECK_EQ_INT(tf_webhook_sign((const unsigned char *)"k", 1, 0, "", 0, sig, sizeof sig), 0);
    CHECK_EQ_STR(sig, "sha256=6b4a4b8b3c40f1e8f53a3d36682e5f99f7ad2ac1df1c93dfe336f329167641e7");
    /* The timestamp is signed: another one gives another signature. */
    char sig2[80];
    CHECK_EQ_INT(tf_webhook_sign((const unsigned char *)"topsecret", 9, 1767323046, body,
                                 strlen(body), sig2, sizeof sig2),
                 0);
    CHECK(strcmp(sig2, "sha256=bb251e3409c9005c109de1009a047502cbd0616b512291cd87c3385767e666f4"));
    CHECK(tf_webhook_sign((const unsigned char *)"k", 1, 0, "", 0, sig, 71) != 0);
}

static void test_names(void)
{
    CHECK_EQ_STR(tf_webhook_kind_name(TF_WEBHOOK_OBTAINED), "certificate_obtained");
    CHECK_EQ_STR(tf_webhook_kind_name(TF_WEBHOOK_RENEWED), "certificate_renewed");
    CHECK_EQ_STR(tf_webhook_kind_name(TF_WEBHOOK_FAILED), "certificate_failed");
    CHECK_EQ_STR(tf_webhook_kind_name(TF_WEBHOOK_PAUSED), "name_paused");
    CHECK_EQ_STR(tf_webhook_kind_name(TF_WEBHOOK_DENIED_BY_ASK), "name_denied_by_ask");
    CHECK_EQ_STR(tf_webhook_kind_name(TF_WEBHOOK_KIND_COUNT), "?");
}

int main(void)
{
    TF_TEST_RUN(test_body_obtained);
    TF_TEST_RUN(test_body_failed_with_node);
    TF_TEST_RUN(test_sign_vectors);
    TF_TEST_RUN(test_names);
    return TF_TEST_DONE();
}
