/*
 * psl.c: registered domains through libpsl. The context is loaded exactly once per process
 * (pthread_once): psl_latest(NULL) picks the newer of libpsl's built-in list and the system
 * file of Debian's publicsuffix package; when neither loads, psl_builtin() is the fallback.
 * The context is immutable after loading and queries only read it, so callers on any thread
 * may share it. This is the module's one process-wide object: the list is static data, like
 * psl_builtin() itself, and is never freed (it lives as long as the process). Never logs.
 */
#include "tlsfront/base/psl.h"
#include "tlsfront/base/common.h"

#include <libpsl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

struct psl_state {
    pthread_once_t once;
    const psl_ctx_t *ctx;
    char source[160];
};

static struct psl_state psl_state = {.once = PTHREAD_ONCE_INIT};

static void psl_load(void)
{
    psl_ctx_t *latest = psl_latest(NULL);
    const char *file = psl_dist_filename();
    if (latest) {
        psl_state.ctx = latest;
    } else {
        psl_state.ctx = psl_builtin();
        file = psl_builtin_filename();
    }
    snprintf(psl_state.source, sizeof(psl_state.source), "libpsl %s, %s%s", psl_get_version(),
             psl_state.ctx ? "" : "no list: ", file ? file : "built-in");
}

static const psl_ctx_t *psl_ctx(void)
{
    pthread_once(&psl_state.once, psl_load);
    return psl_state.ctx;
}

int tf_psl_registered_domain(const char *name, char *out, size_t cap)
{
    if (cap)
        out[0] = '\0';
    const psl_ctx_t *ctx = psl_ctx();
    if (!ctx)
        return TF_ENOTFOUND;
    if (!name || !name[0])
        return TF_EINVAL;
    const char *rd = psl_registrable_domain(ctx, name);
    if (!rd || !rd[0])
        return TF_EINVAL;
    size_t len = strlen(rd);
    if (len + 1 > cap)
        return TF_ETOOBIG;
    memcpy(out, rd, len + 1);
    return 0;
}

const char *tf_psl_source(void)
{
    psl_ctx(); /* fills source */
    return psl_state.source;
}
