/*
 * outcome.c: the names of the certificate request outcomes, from the one table in
 * outcome.h. Holds no state.
 */
#include "tlsfront/base/outcome.h"

const char *tf_outcome_name(enum tf_outcome o)
{
    static const char *const names[] = {
#define TF_OUTCOME_NAME_(n, s, d) s,
        TF_OUTCOME_LIST(TF_OUTCOME_NAME_)
#undef TF_OUTCOME_NAME_
    };
    if ((unsigned)o >= TF_OUTCOME_COUNT)
        return "?";
    return names[o];
}
