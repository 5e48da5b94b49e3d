/*
 * conn_end.c: the names of the connection end reasons, from the one table in
 * proxy/conn_end.h, the end reason of a refused hold, and the access log's field keys.
 * Holds no state.
 */
#include "tlsfront/proxy/conn_end.h"

const char *tf_conn_end_name(enum tf_conn_end e)
{
    static const char *const names[] = {
        "-",
#define TF_CONN_END_NAME_(n, s, d) s,
        TF_CONN_END_LIST(TF_CONN_END_NAME_)
#undef TF_CONN_END_NAME_
    };
    if ((unsigned)e >= TF_CONN_END_COUNT)
        return "-";
    return names[e];
}

enum tf_conn_end tf_conn_end_from_outcome(enum tf_outcome o)
{
    switch (o) {
#define TF_CONN_END_CASE_(n, s, d)                                                             \
    case TF_OUTCOME_##n: return TF_CONN_END_##n;
        TF_OUTCOME_FAIL_LIST(TF_CONN_END_CASE_)
#undef TF_CONN_END_CASE_
    default: return TF_CONN_END_ISSUE_FAILED;
    }
}

const char *tf_access_field_name(enum tf_access_field f)
{
    static const char *const names[] = {
#define TF_ACCESS_NAME_(n, s, d) s,
        TF_ACCESS_FIELD_LIST(TF_ACCESS_NAME_)
#undef TF_ACCESS_NAME_
    };
    if ((unsigned)f >= TF_ACCESS_FIELD_COUNT)
        return "?";
    return names[f];
}
