/*
 * reference.c: the access log reference, printed from TF_ACCESS_FIELD_LIST and
 * TF_CONN_END_LIST (proxy/conn_end.h), so docs/operations.md can be regenerated from the
 * code and tests/e2e/test_docs_reference.py can tell when it drifted. Reads nothing else.
 */
#include "reference_int.h"
#include "tlsfront/proxy/conn_end.h"

#include <stdio.h>

int tf_cmd_reference(void)
{
    printf("| field | meaning |\n|---|---|\n");
#define TF_REF_ROW_(n, s, d) printf("| `%s` | %s |\n", s, d);
    TF_ACCESS_FIELD_LIST(TF_REF_ROW_)
    printf("\n| end= | meaning |\n|---|---|\n");
    TF_CONN_END_LIST(TF_REF_ROW_)
#undef TF_REF_ROW_
    return 0;
}
