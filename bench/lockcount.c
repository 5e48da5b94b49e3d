/*
 * lockcount.c: an LD_PRELOAD library for the multi-core floor (docs/benchmarks.md, figure 9)
 * that counts, per lock, how often the program takes a pthread mutex or rwlock and how often
 * the lock was already held by another thread (the try-lock failed: contention). OpenSSL 3
 * guards its method stores, name map, providers and keys with such locks, so the counts say
 * which shared objects the threads of a handshake meet. At exit it prints, to stderr, the
 * totals and the locks most used across threads, then most used, each with the exported
 * functions on a stack that took it (libcrypto's internal functions show as the nearest
 * exported symbol). A lock taken by
 * more than one thread is "shared": shared_calls counts the calls on such locks, and
 * foreign_calls those made by a thread other than the lock's busiest: the calls that move
 * the lock's cache line between cores, which threads pay and processes do not (a lock that
 * one thread set up and another uses ever after counts only the set-up).
 *
 *   gcc -O2 -shared -fPIC -o lockcount.so bench/lockcount.c -ldl
 *   LOCKCOUNT_TOP=12 LD_PRELOAD=./lockcount.so floor CERT KEY N --tf --threads 2
 *
 * The program may mark a thread's stretches of interest by calling lockcount_server(1) and
 * lockcount_server(0) (bench/floor.c does, around every server-side OpenSSL call, found with
 * dlsym, and once at start): from its first call on, only the locks taken inside marked
 * stretches are counted. Counting costs a few atomics per
 * lock call, and a backtrace at a lock's first and 1000th call (the stack printed is the
 * latter's, a steady-state caller): compare counts, not times, with it loaded. Locks beyond
 * the table's size are counted in the totals only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <execinfo.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SLOTS 4096 /* open addressing on the lock's address */
#define FRAMES 10

struct slot {
    _Atomic uintptr_t addr;
    atomic_ullong calls, contended;
    atomic_int kind; /* 'm' mutex, 'r' read, 'w' write (the first seen) */
    atomic_ullong threads; /* bit i: the thread numbered i (mod 64) took it */
    atomic_ullong by_thread[64]; /* calls per thread number */
    void *stack[FRAMES];
    atomic_int depth; /* 0 until the stack is recorded */
};

static struct slot slots[SLOTS];
static atomic_ullong total_calls, total_contended;
static __thread int inside; /* no counting of the locks backtrace() itself takes */
static __thread int marked;  /* inside a lockcount_server(1) stretch */
static __thread int thread_no = -1; /* numbered on first count */
static atomic_int threads_seen;
static atomic_int any_marked; /* the program marks: count only marked stretches */

void lockcount_server(int on)
{
    if (!atomic_load_explicit(&any_marked, memory_order_relaxed))
        atomic_store(&any_marked, 1);
    marked = on;
}

static int (*real_mutex_lock)(pthread_mutex_t *);
static int (*real_rdlock)(pthread_rwlock_t *);
static int (*real_wrlock)(pthread_rwlock_t *);

__attribute__((constructor)) static void lc_init(void)
{
    real_mutex_lock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_lock");
    real_rdlock = (int (*)(pthread_rwlock_t *))dlsym(RTLD_NEXT, "pthread_rwlock_rdlock");
    real_wrlock = (int (*)(pthread_rwlock_t *))dlsym(RTLD_NEXT, "pthread_rwlock_wrlock");
}

static void record_stack(struct slot *s)
{
    if (inside)
        return;
    inside = 1;
    int d = backtrace(s->stack, FRAMES);
    inside = 0;
    atomic_store(&s->depth, d > 0 ? d : 1);
}

static struct slot *slot_of(const void *lock, int kind)
{
    uintptr_t a = (uintptr_t)lock;
    size_t h = (size_t)((a >> 3) * 0x9E3779B97F4A7C15ull) % SLOTS;
    for (size_t i = 0; i < 64; i++) {
        struct slot *s = &slots[(h + i) % SLOTS];
        uintptr_t cur = atomic_load_explicit(&s->addr, memory_order_acquire);
        if (cur == a)
            return s;
        if (cur == 0) {
            uintptr_t zero = 0;
            if (atomic_compare_exchange_strong(&s->addr, &zero, a)) {
                atomic_store(&s->kind, kind);
                record_stack(s);
                return s;
            }
            if (zero == a)
                return s;
        }
    }
    return NULL;
}

static void count(const void *lock, int kind, int busy)
{
    if (atomic_load_explicit(&any_marked, memory_order_relaxed) && !marked)
        return;
    atomic_fetch_add_explicit(&total_calls, 1, memory_order_relaxed);
    if (busy)
        atomic_fetch_add_explicit(&total_contended, 1, memory_order_relaxed);
    if (inside)
        return;
    struct slot *s = slot_of(lock, kind);
    if (!s)
        return;
    if (thread_no < 0)
        thread_no = atomic_fetch_add(&threads_seen, 1) % 64;
    unsigned long long bit = 1ull << thread_no;
    if (!(atomic_load_explicit(&s->threads, memory_order_relaxed) & bit))
        atomic_fetch_or(&s->threads, bit);
    atomic_fetch_add_explicit(&s->by_thread[thread_no], 1, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&s->calls, 1, memory_order_relaxed) == 999)
        record_stack(s);
    if (busy)
        atomic_fetch_add_explicit(&s->contended, 1, memory_order_relaxed);
}

/* One wrapper: try first (a failure means another thread holds it), count, then take it. */
#define LC_WRAP(name, type, try_fn, real, kind)                                                  \
    int name(type *l)                                                                          \
    {                                                                                          \
        if (!real)                                                                             \
            lc_init();                                                                         \
        int r = try_fn(l);                                                                     \
        count(l, kind, r == EBUSY);                                                            \
        return r == EBUSY ? real(l) : r;                                                       \
    }

LC_WRAP(pthread_mutex_lock, pthread_mutex_t, pthread_mutex_trylock, real_mutex_lock, 'm')
LC_WRAP(pthread_rwlock_rdlock, pthread_rwlock_t, pthread_rwlock_tryrdlock, real_rdlock, 'r')
LC_WRAP(pthread_rwlock_wrlock, pthread_rwlock_t, pthread_rwlock_trywrlock, real_wrlock, 'w')

/* Calls on s by threads other than its busiest. */
static unsigned long long foreign_of(struct slot *s)
{
    unsigned long long most = 0;
    for (int k = 0; k < 64; k++)
        if (atomic_load(&s->by_thread[k]) > most)
            most = atomic_load(&s->by_thread[k]);
    return atomic_load(&s->calls) - most;
}

/* Busiest first: by foreign calls, then by calls. */
static int by_calls(const void *a, const void *b)
{
    struct slot *x = *(struct slot *const *)a, *y = *(struct slot *const *)b;
    unsigned long long fx = foreign_of(x), fy = foreign_of(y);
    if (fx != fy)
        return fx < fy ? 1 : -1;
    unsigned long long cx = atomic_load(&x->calls), cy = atomic_load(&y->calls);
    return cx < cy ? 1 : cx > cy ? -1 : 0;
}

/* The stack as "f1 < f2 < ...", exported names only, this library's frames skipped. */
static void print_stack(const struct slot *s)
{
    int d = atomic_load(&s->depth), shown = 0;
    for (int i = 0; i < d && shown < 6; i++) {
        Dl_info info;
        if (!dladdr(s->stack[i], &info) || !info.dli_sname)
            continue;
        if (!strncmp(info.dli_sname, "pthread_", 8) || !strcmp(info.dli_sname, "count") ||
            strstr(info.dli_fname, "lockcount"))
            continue;
        fprintf(stderr, "%s%s+%#lx", shown++ ? " < " : "", info.dli_sname,
                (unsigned long)((char *)s->stack[i] - (char *)info.dli_saddr));
    }
}

__attribute__((destructor)) static void lc_report(void)
{
    inside = 1;
    static struct slot *used[SLOTS];
    int n = 0;
    for (int i = 0; i < SLOTS; i++)
        if (atomic_load(&slots[i].addr))
            used[n++] = &slots[i];
    qsort(used, (size_t)n, sizeof *used, by_calls);
    const char *top_env = getenv("LOCKCOUNT_TOP");
    int top = top_env ? atoi(top_env) : 12;
    unsigned long long shared = 0, n_shared = 0, foreign = 0;
    for (int i = 0; i < n; i++) {
        unsigned long long t = atomic_load(&used[i]->threads);
        if (!(t & (t - 1)))
            continue;
        shared += atomic_load(&used[i]->calls);
        n_shared++;
        foreign += foreign_of(used[i]);
    }
    fprintf(stderr, "lockcount: pid=%d locks=%d calls=%llu contended=%llu shared_locks=%llu "
            "shared_calls=%llu foreign_calls=%llu\n", (int)getpid(), n,
            (unsigned long long)atomic_load(&total_calls),
            (unsigned long long)atomic_load(&total_contended), n_shared, shared, foreign);
    for (int i = 0; i < n && i < top; i++) {
        unsigned long long t = atomic_load(&used[i]->threads);
        fprintf(stderr, "lockcount:   %c%s calls=%llu foreign=%llu contended=%llu  ",
                atomic_load(&used[i]->kind), t & (t - 1) ? " shared" : "",
                (unsigned long long)atomic_load(&used[i]->calls), foreign_of(used[i]),
                (unsigned long long)atomic_load(&used[i]->contended));
        print_stack(used[i]);
        fputc('\n', stderr);
    }
}
