/*
 * certread.c: reading certificate files. One at a time (tf_certload_read: open, read until
 * a short read, close, no stat), or many with few system calls (tf_certread_*): an index
 * reads a million certificate files, and with one openat, read and close each the system
 * calls are most of the start-up. Here one io_uring per parser thread
 * takes a batch of files at a time, each as a linked open (into a registered file slot),
 * read (into the file's own buffer) and close, and one io_uring_enter submits the batch and
 * waits for it. Where io_uring is missing or forbidden (old kernels, container seccomp
 * profiles) tf_certread_new returns NULL and the caller reads file by file. A file that
 * fills its buffer is reported too large here; the caller reads it again the plain way.
 * Never logs.
 */
#include "certload_int.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BUF_SIZE 16384

int tf_certload_read(int dfd, const char *rel, char **buf, size_t *cap, size_t *len,
                     bool *noatime)
{
    /* O_NONBLOCK: a FIFO opens at once and reads as empty instead of blocking. */
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK;
    int fd = noatime && *noatime ? openat(dfd, rel, flags | O_NOATIME) : -1;
    if (fd < 0 && noatime && *noatime && errno == EPERM)
        *noatime = false; /* not our file: O_NOATIME needs its owner */
    if (fd < 0)
        fd = openat(dfd, rel, flags);
    if (fd < 0)
        return -errno;
    int rc = 0;
    size_t off = 0;
    for (;;) {
        if (off > TF_CERTLOAD_MAX_FILE) {
            rc = TF_ETOOBIG;
            break;
        }
        if (off + 1 >= *cap) {
            *cap = *cap ? *cap * 2 : 16384;
            *buf = tf_realloc(*buf, *cap);
        }
        size_t want = *cap - off - 1;
        ssize_t n = read(fd, *buf + off, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = errno == EISDIR ? TF_EINVAL : -errno;
            break;
        }
        off += (size_t)n;
        /* A regular file reads short only at its end: no second read to see 0 (a file
         * written meanwhile may read partly, as with a stat'ed size; the load checks). */
        if ((size_t)n < want)
            break;
    }
    close(fd);
    if (rc == 0 && off > TF_CERTLOAD_MAX_FILE)
        rc = TF_ETOOBIG;
    if (rc == 0) {
        (*buf)[off] = '\0';
        *len = off;
    }
    return rc;
}

const char *tf_certload_read_problem(int rc, char *tmp, size_t n)
{
    switch (rc) {
    case TF_EINVAL:
        return "not a regular file";
    case TF_ETOOBIG:
        return "file too large";
    default:
        snprintf(tmp, n, "cannot read: %s", strerror(-rc));
        return tmp;
    }
}

struct tf_certread {
    int fd;
    unsigned batch;
    void *sq_ptr, *cq_ptr;
    size_t sq_len, cq_len;
    struct io_uring_sqe *sqes;
    size_t sqes_len;
    unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
    unsigned *cq_head, *cq_tail, *cq_mask;
    struct io_uring_cqe *cqes;
    char *bufs; /* batch buffers of BUF_SIZE */
};

static int ring_map(struct tf_certread *r, const struct io_uring_params *p)
{
    r->sq_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    r->cq_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    bool single = (p->features & IORING_FEAT_SINGLE_MMAP) != 0;
    if (single)
        r->sq_len = r->cq_len = TF_MAX(r->sq_len, r->cq_len);
    r->sq_ptr = mmap(NULL, r->sq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                     IORING_OFF_SQ_RING);
    if (r->sq_ptr == MAP_FAILED)
        return -1;
    r->cq_ptr = single ? r->sq_ptr
                       : mmap(NULL, r->cq_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
                              r->fd, IORING_OFF_CQ_RING);
    if (r->cq_ptr == MAP_FAILED)
        return -1;
    r->sqes_len = p->sq_entries * sizeof(struct io_uring_sqe);
    r->sqes = mmap(NULL, r->sqes_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd,
                   IORING_OFF_SQES);
    if (r->sqes == MAP_FAILED)
        return -1;
    char *sq = r->sq_ptr, *cq = r->cq_ptr;
    r->sq_head = (unsigned *)(sq + p->sq_off.head);
    r->sq_tail = (unsigned *)(sq + p->sq_off.tail);
    r->sq_mask = (unsigned *)(sq + p->sq_off.ring_mask);
    r->sq_array = (unsigned *)(sq + p->sq_off.array);
    r->cq_head = (unsigned *)(cq + p->cq_off.head);
    r->cq_tail = (unsigned *)(cq + p->cq_off.tail);
    r->cq_mask = (unsigned *)(cq + p->cq_off.ring_mask);
    r->cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
    return 0;
}

struct tf_certread *tf_certread_new(unsigned batch)
{
    struct tf_certread *r = tf_calloc(1, sizeof *r);
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    r->batch = batch;
    r->sq_ptr = r->cq_ptr = r->sqes = MAP_FAILED;
    r->fd = (int)syscall(__NR_io_uring_setup, batch * 3, &p);
    struct io_uring_rsrc_register reg = {.nr = batch, .flags = IORING_RSRC_REGISTER_SPARSE};
    if (r->fd < 0 || ring_map(r, &p) < 0 || p.sq_entries < batch * 3 ||
        syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_FILES2, &reg, sizeof reg) < 0) {
        tf_certread_free(r);
        return NULL;
    }
    r->bufs = tf_malloc((size_t)batch * BUF_SIZE);
    return r;
}

void tf_certread_free(struct tf_certread *r)
{
    if (!r)
        return;
    if (r->sqes != MAP_FAILED)
        munmap(r->sqes, r->sqes_len);
    if (r->cq_ptr != MAP_FAILED && r->cq_ptr != r->sq_ptr)
        munmap(r->cq_ptr, r->cq_len);
    if (r->sq_ptr != MAP_FAILED)
        munmap(r->sq_ptr, r->sq_len);
    if (r->fd >= 0)
        close(r->fd);
    free(r->bufs);
    free(r);
}

char *tf_certread_buf(struct tf_certread *r, size_t i)
{
    return r->bufs + i * BUF_SIZE;
}

static struct io_uring_sqe *next_sqe(struct tf_certread *r, unsigned *tail)
{
    unsigned idx = *tail & *r->sq_mask;
    struct io_uring_sqe *sqe = &r->sqes[idx];
    memset(sqe, 0, sizeof *sqe);
    r->sq_array[idx] = idx;
    (*tail)++;
    return sqe;
}

/* Queue file i: open into slot i, read into buffer i, close the slot. The close is
 * hard-linked so it runs even when the read fails; a failed open cancels both. */
static void queue_file(struct tf_certread *r, unsigned *tail, int dfd, const char *rel, size_t i)
{
    struct io_uring_sqe *op = next_sqe(r, tail);
    op->opcode = IORING_OP_OPENAT;
    op->fd = dfd;
    op->addr = (uint64_t)(uintptr_t)rel;
    op->open_flags = O_RDONLY | O_NONBLOCK; /* a direct descriptor takes no O_CLOEXEC */
    op->file_index = (uint32_t)i + 1;
    op->flags = IOSQE_IO_LINK;
    op->user_data = i * 3;
    struct io_uring_sqe *rd = next_sqe(r, tail);
    rd->opcode = IORING_OP_READ;
    rd->fd = (int)i;
    rd->addr = (uint64_t)(uintptr_t)tf_certread_buf(r, i);
    rd->len = BUF_SIZE - 1;
    rd->flags = IOSQE_FIXED_FILE | IOSQE_IO_HARDLINK;
    rd->user_data = i * 3 + 1;
    struct io_uring_sqe *cl = next_sqe(r, tail);
    cl->opcode = IORING_OP_CLOSE;
    cl->file_index = (uint32_t)i + 1;
    cl->user_data = i * 3 + 2;
}

/* Record one completion: the open's error, or the read's length (or error). */
static void complete(const struct io_uring_cqe *c, int *res)
{
    size_t i = (size_t)(c->user_data / 3);
    int step = (int)(c->user_data % 3);
    if (step == 0 && c->res < 0)
        res[i] = c->res;
    else if (step == 1 && res[i] >= 0)
        res[i] = c->res == -ECANCELED ? res[i]
                 : c->res >= BUF_SIZE - 1 ? TF_ETOOBIG
                 : c->res == -EISDIR ? TF_EINVAL
                                     : c->res;
}

int tf_certread_run(struct tf_certread *r, int dfd, const char *const *rel, size_t n, int *res)
{
    unsigned tail = __atomic_load_n(r->sq_tail, __ATOMIC_RELAXED);
    for (size_t i = 0; i < n; i++) {
        res[i] = 0;
        queue_file(r, &tail, dfd, rel[i], i);
    }
    __atomic_store_n(r->sq_tail, tail, __ATOMIC_RELEASE);
    unsigned want = (unsigned)n * 3, done = 0, submitted = 0;
    while (done < want) {
        int rc = (int)syscall(__NR_io_uring_enter, r->fd, want - submitted, want - done,
                              IORING_ENTER_GETEVENTS, NULL, 0);
        if (rc < 0 && errno != EINTR && errno != EAGAIN)
            return -errno;
        if (rc > 0)
            submitted += (unsigned)rc;
        unsigned head = *r->cq_head;
        unsigned ctail = __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE);
        for (; head != ctail; head++, done++)
            complete(&r->cqes[head & *r->cq_mask], res);
        __atomic_store_n(r->cq_head, head, __ATOMIC_RELEASE);
    }
    for (size_t i = 0; i < n; i++)
        if (res[i] >= 0)
            tf_certread_buf(r, i)[res[i]] = '\0';
    return 0;
}
