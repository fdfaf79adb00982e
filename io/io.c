/*
 * io.c — see io.h.
 *
 * Context layout:
 *
 *   slots[qd]      one per request in flight: the request as submitted, bytes done, the
 *                  current attempt; free ones chained through next_free (a stack)
 *   ready[qd]      ring of finished completions not yet returned by io_wait
 *   uring backend: SQE user_data = slot index; a CQE advances its slot (done += res, retry,
 *                  resubmit the remainder) or finishes it into ready[]
 *   pool backend:  fifo[qd] ring of slot indices waiting for a worker; workers run
 *                  io_sync_rw and push into ready[]; mu guards slots' free stack, fifo and
 *                  ready (the owner thread and the workers share them)
 *
 * inflight counts slots in use plus ready entries: every accepted request is counted from
 * io_submit until io_wait returns its completion, so inflight <= qd always.
 */
#include "io/io.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "util/util.h"

/* ---------------------------------------------------------------- logging */

static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static io_log_fn log_fn;
static void *log_arg;

void io_set_log(io_log_fn fn, void *arg)
{
    pthread_mutex_lock(&log_mu);
    log_fn = fn;
    log_arg = arg;
    pthread_mutex_unlock(&log_mu);
}

void io_log(int level, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warning", "error"};
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (level < IO_LOG_DEBUG || level > IO_LOG_ERROR)
        level = IO_LOG_ERROR;
    pthread_mutex_lock(&log_mu);
    if (log_fn)
        log_fn(log_arg, level, msg);
    else
        fprintf(stderr, "kvtier: %s: %s\n", names[level], msg);
    pthread_mutex_unlock(&log_mu);
}

/* Each fallback is announced once per process, not once per context or file. */
static atomic_int said_no_uring, said_no_direct;

/* ---------------------------------------------------------------- buffers */

void *io_buf_alloc(size_t bytes)
{
    /* [pad][raw pointer][aligned block of `bytes`]: the raw pointer sits just below.
     * From IO_HUGE_BYTES up the block starts on a 2 MiB boundary and is advised for
     * transparent huge pages: each 2 MiB of it can then be one physically contiguous page,
     * so an O_DIRECT request of up to 2 MiB is one segment and one device request instead
     * of several (virtio-blk here allows 254 segments; 512 scattered 4 KiB pages are split
     * into 2-5 requests; see bench/RESULTS.md "Storage tiers"). The pad is address space
     * only: it is never touched but for the pointer page. */
    size_t align = bytes >= IO_HUGE_BYTES ? IO_HUGE_BYTES : IO_ALIGN;
    if (bytes > SIZE_MAX - align - sizeof(void *))
        return NULL;
    char *raw = util_malloc(bytes + align + sizeof(void *));
    if (!raw)
        return NULL;
    uintptr_t a = ((uintptr_t)raw + sizeof(void *) + align - 1) & ~(uintptr_t)(align - 1);
    ((void **)a)[-1] = raw;
    if (align == IO_HUGE_BYTES) /* advisory: without THP the buffer works the same */
        (void)madvise((void *)a, (bytes + IO_ALIGN - 1) & ~(size_t)(IO_ALIGN - 1),
                      MADV_HUGEPAGE);
    return (void *)a;
}

void io_buf_free(void *p)
{
    if (p)
        util_free(((void **)p)[-1]);
}

/* ---------------------------------------------------------------- files */

int io_file_open(const char *path, int flags, unsigned mode, int want_direct, int *direct)
{
    int fd = -1;
    if (direct)
        *direct = 0;
    flags |= O_CLOEXEC;
    if (want_direct) {
        fd = open(path, flags | O_DIRECT, (mode_t)mode);
        if (fd >= 0) {
            if (direct)
                *direct = 1;
            return fd;
        }
        if (errno != EINVAL)
            return -errno;
        if (!atomic_exchange(&said_no_direct, 1))
            io_log(IO_LOG_WARN, "io: the file system refuses O_DIRECT (%s): using buffered I/O",
                   path);
    }
    fd = open(path, flags, (mode_t)mode);
    return fd >= 0 ? fd : -errno;
}

/* ---------------------------------------------------------------- synchronous loop */

int io_sync_rw(const io_req *r, io_fault_fn fault, void *fault_arg, uint64_t seq)
{
    uint32_t done = 0;
    unsigned attempt = 0, retries = 0;
    while (done < r->len) {
        uint32_t len = r->len - done;
        int e = 0;
        if (fault) {
            e = fault(fault_arg, seq, attempt, r, &len);
            if (len == 0 || len > r->len - done)
                len = r->len - done;
        }
        attempt++;
        if (e == 0) {
            char *p = (char *)r->buf + done;
            off_t off = (off_t)(r->off + done);
            ssize_t got = r->op == IO_OP_READ ? pread(r->fd, p, len, off)
                                              : pwrite(r->fd, p, len, off);
            if (got > 0) {
                done += (uint32_t)got;
                continue;
            }
            if (got == 0)
                return r->op == IO_OP_READ ? -ENODATA : -EIO;
            e = -errno;
        }
        if ((e == -EAGAIN || e == -EINTR) && retries++ < IO_MAX_RETRIES)
            continue;
        return e;
    }
    return (int)r->len;
}

/* ---------------------------------------------------------------- the context */

typedef struct io_slot {
    io_req req;        /* as submitted; req.res unused */
    uint64_t seq;      /* submission number, for the fault hook */
    uint32_t done;     /* bytes transferred so far */
    unsigned attempt;  /* attempts started */
    unsigned retries;  /* -EAGAIN/-EINTR retries used */
    int32_t next_free; /* free stack link; -1 ends it */
} io_slot;

struct io_ctx {
    int backend;
    unsigned qd;
    unsigned inflight;
    uint64_t seq;
    io_fault_fn fault;
    void *fault_arg;

    io_slot *slots;   /* [qd] */
    int32_t free_top; /* -1 when every slot is in use */
    io_cqe *ready;    /* [qd] ring */
    unsigned ready_head, ready_n;

    /* bandwidth cap: tokens in bytes, may go negative (debt) */
    double bw_rate, bw_burst, bw_tokens;
    uint64_t bw_last_ns;

    struct iovec *bufs; /* [n_bufs] registered ranges */
    unsigned n_bufs;
    int32_t *fd_map;    /* [fd_map_len]: fd -> fixed-file index, -1 if not registered */
    unsigned fd_map_len;

    /* uring */
    struct io_uring ring;
    int ring_ok;
    int unsubmitted; /* SQEs prepared but not yet accepted by the kernel */

    /* pool */
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    pthread_t *threads;
    unsigned n_threads;
    uint32_t *fifo; /* [qd] slot indices */
    unsigned fifo_head, fifo_n;
    int stop;
    int sync_ok; /* mu and the condition variables were initialised */
};

void io_opts_init(io_opts *o)
{
    memset(o, 0, sizeof *o);
    o->queue_depth = 32;
    o->pool_threads = 4;
}

int io_ctx_backend(const io_ctx *c) { return c->backend; }
unsigned io_ctx_queue_depth(const io_ctx *c) { return c->qd; }
unsigned io_ctx_inflight(const io_ctx *c) { return c->inflight; }

const char *io_backend_name(int backend)
{
    return backend == IO_BACKEND_URING ? "io_uring" : backend == IO_BACKEND_POOL ? "pool" : "?";
}

void io_ctx_set_fault(io_ctx *c, io_fault_fn fn, void *arg)
{
    c->fault = fn;
    c->fault_arg = fn ? arg : NULL;
}

static int32_t slot_get(io_ctx *c)
{
    int32_t i = c->free_top;
    if (i >= 0)
        c->free_top = c->slots[i].next_free;
    return i;
}

static void slot_put(io_ctx *c, int32_t i)
{
    c->slots[i].next_free = c->free_top;
    c->free_top = i;
}

static void ready_push(io_ctx *c, uint64_t user_data, int res)
{
    unsigned i = (c->ready_head + c->ready_n++) % c->qd;
    c->ready[i].user_data = user_data;
    c->ready[i].res = res;
}

static unsigned ready_drain(io_ctx *c, io_cqe *out, unsigned max)
{
    unsigned n = 0;
    while (n < max && c->ready_n) {
        out[n++] = c->ready[c->ready_head];
        c->ready_head = (c->ready_head + 1) % c->qd;
        c->ready_n--;
    }
    c->inflight -= n;
    return n;
}

static void bw_take(io_ctx *c, uint32_t len)
{
    if (c->bw_rate <= 0)
        return;
    uint64_t now = util_now_ns();
    c->bw_tokens += (double)(now - c->bw_last_ns) * 1e-9 * c->bw_rate;
    if (c->bw_tokens > c->bw_burst)
        c->bw_tokens = c->bw_burst;
    c->bw_last_ns = now;
    c->bw_tokens -= len;
    if (c->bw_tokens < 0) {
        double s = -c->bw_tokens / c->bw_rate;
        struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
            ;
        /* The sleep paid the debt: account for the time slept on the next call. */
        c->bw_tokens = 0;
        c->bw_last_ns = util_now_ns();
    }
}

static int req_valid(const io_req *r)
{
    return r->len >= 1 && r->len <= IO_MAX_LEN && r->fd >= 0 &&
           (r->op == IO_OP_READ || r->op == IO_OP_WRITE) && r->buf != NULL;
}

/* ---------------------------------------------------------------- uring backend */

static int uring_buf_index(const io_ctx *c, const char *p, uint32_t len)
{
    for (unsigned i = 0; i < c->n_bufs; i++) {
        const char *b = c->bufs[i].iov_base;
        if (p >= b && len <= c->bufs[i].iov_len && (size_t)(p - b) <= c->bufs[i].iov_len - len)
            return (int)i;
    }
    return -1;
}

static void uring_finish(io_ctx *c, int32_t s, int res)
{
    ready_push(c, c->slots[s].req.user_data, res);
    slot_put(c, s);
}

/* Start the next attempt of slot s (the remainder of its request): consult the fault hook,
 * then prepare an SQE, or finish the slot if the hook failed it for good. */
static void uring_start(io_ctx *c, int32_t s)
{
    io_slot *sl = &c->slots[s];
    for (;;) {
        uint32_t len = sl->req.len - sl->done;
        int e = 0;
        if (c->fault) {
            e = c->fault(c->fault_arg, sl->seq, sl->attempt, &sl->req, &len);
            if (len == 0 || len > sl->req.len - sl->done)
                len = sl->req.len - sl->done;
        }
        sl->attempt++;
        if (e == 0) {
            /* At most qd slots are live and the SQ has qd entries, all flushed before a
             * slot could be reused, so an SQE is always available here. */
            struct io_uring_sqe *sqe = io_uring_get_sqe(&c->ring);
            if (!sqe) {
                io_uring_submit(&c->ring);
                sqe = io_uring_get_sqe(&c->ring);
            }
            if (!sqe) {
                uring_finish(c, s, -EAGAIN);
                return;
            }
            char *p = (char *)sl->req.buf + sl->done;
            uint64_t off = sl->req.off + sl->done;
            int bi = uring_buf_index(c, p, len);
            if (sl->req.op == IO_OP_READ) {
                if (bi >= 0)
                    io_uring_prep_read_fixed(sqe, sl->req.fd, p, len, off, bi);
                else
                    io_uring_prep_read(sqe, sl->req.fd, p, len, off);
            } else {
                if (bi >= 0)
                    io_uring_prep_write_fixed(sqe, sl->req.fd, p, len, off, bi);
                else
                    io_uring_prep_write(sqe, sl->req.fd, p, len, off);
            }
            if ((unsigned)sl->req.fd < c->fd_map_len && c->fd_map[sl->req.fd] >= 0) {
                sqe->fd = c->fd_map[sl->req.fd];
                sqe->flags |= IOSQE_FIXED_FILE;
            }
            io_uring_sqe_set_data64(sqe, (uint64_t)s);
            c->unsubmitted = 1;
            return;
        }
        if ((e == -EAGAIN || e == -EINTR) && sl->retries < IO_MAX_RETRIES) {
            sl->retries++;
            continue;
        }
        uring_finish(c, s, e);
        return;
    }
}

static void uring_flush(io_ctx *c)
{
    if (!c->unsubmitted)
        return;
    int r = io_uring_submit(&c->ring);
    /* -EAGAIN/-EBUSY: the kernel is short of resources or CQ space; the SQEs stay queued
     * and are flushed by the next submit or wait. */
    if (r >= 0 && io_uring_sq_ready(&c->ring) == 0)
        c->unsubmitted = 0;
}

static void uring_complete(io_ctx *c, int32_t s, int res)
{
    io_slot *sl = &c->slots[s];
    if (res < 0) {
        if ((res == -EAGAIN || res == -EINTR) && sl->retries < IO_MAX_RETRIES) {
            sl->retries++;
            uring_start(c, s);
        } else {
            uring_finish(c, s, res);
        }
    } else if (res == 0) {
        uring_finish(c, s, sl->req.op == IO_OP_READ ? -ENODATA : -EIO);
    } else {
        sl->done += (uint32_t)res;
        if (sl->done >= sl->req.len)
            uring_finish(c, s, (int)sl->req.len);
        else
            uring_start(c, s); /* short transfer: the remainder */
    }
}

static int uring_wait(io_ctx *c, io_cqe *out, unsigned max, unsigned min)
{
    unsigned n = 0;
    for (;;) {
        n += ready_drain(c, out + n, max - n);
        if (n >= max)
            return (int)n;
        if (c->inflight == 0)
            return (int)n; /* nothing left anywhere */
        struct io_uring_cqe *cqe = NULL;
        int r;
        uring_flush(c);
        if (n >= min) {
            r = io_uring_peek_cqe(&c->ring, &cqe);
        } else if (c->unsubmitted) {
            /* The kernel refused some SQEs (-EAGAIN/-EBUSY) and may have nothing in flight
             * to wake us: wait at most 1 ms, then offer them again. */
            struct __kernel_timespec ts = {0, 1000000};
            r = io_uring_wait_cqe_timeout(&c->ring, &cqe, &ts);
        } else {
            r = io_uring_wait_cqe(&c->ring, &cqe);
        }
        if (r == -EAGAIN && n >= min)
            return (int)n;
        if (r == -EINTR || r == -EAGAIN || r == -ETIME)
            continue;
        if (r < 0)
            return n ? (int)n : r;
        /* Take every CQE that is there, then flush the resubmissions in one syscall. */
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&c->ring, head, cqe)
        {
            uint64_t s = io_uring_cqe_get_data64(cqe);
            int res = cqe->res;
            seen++;
            if (s < c->qd)
                uring_complete(c, (int32_t)s, res);
        }
        io_uring_cq_advance(&c->ring, seen);
        uring_flush(c);
    }
}

/* ---------------------------------------------------------------- pool backend */

static void *pool_main(void *arg)
{
    io_ctx *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        while (!c->fifo_n && !c->stop)
            pthread_cond_wait(&c->work_cv, &c->mu);
        if (!c->fifo_n)
            break; /* stop, and nothing left to run */
        uint32_t s = c->fifo[c->fifo_head];
        c->fifo_head = (c->fifo_head + 1) % c->qd;
        c->fifo_n--;
        io_slot sl = c->slots[s];
        io_fault_fn fault = c->fault;
        void *fault_arg = c->fault_arg;
        pthread_mutex_unlock(&c->mu);

        int res = io_sync_rw(&sl.req, fault, fault_arg, sl.seq);

        pthread_mutex_lock(&c->mu);
        ready_push(c, sl.req.user_data, res);
        slot_put(c, (int32_t)s);
        pthread_cond_broadcast(&c->done_cv);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

static int pool_wait(io_ctx *c, io_cqe *out, unsigned max, unsigned min)
{
    pthread_mutex_lock(&c->mu);
    while (c->ready_n < min)
        pthread_cond_wait(&c->done_cv, &c->mu);
    unsigned n = ready_drain(c, out, max);
    pthread_mutex_unlock(&c->mu);
    return (int)n;
}

/* ---------------------------------------------------------------- submit / wait */

/* Queue reqs[0..n); with index_ud, the completion's user_data is ud_base + i instead of
 * reqs[i].user_data (io_rw_batch). */
static int submit_common(io_ctx *c, const io_req *reqs, unsigned n, int index_ud,
                         uint64_t ud_base)
{
    unsigned k = 0;
    if (n && !reqs)
        return -EINVAL;
    if (c->backend == IO_BACKEND_POOL)
        pthread_mutex_lock(&c->mu);
    for (; k < n; k++) {
        if (!req_valid(&reqs[k])) {
            if (k == 0) {
                if (c->backend == IO_BACKEND_POOL)
                    pthread_mutex_unlock(&c->mu);
                return -EINVAL;
            }
            break;
        }
        /* inflight, not the free slots, is the bound: a finished request frees its slot at
         * once but holds a ready[] entry until io_wait returns it. */
        if (c->inflight >= c->qd)
            break;
        int32_t s = slot_get(c);
        if (s < 0)
            break;
        io_slot *sl = &c->slots[s];
        sl->req = reqs[k];
        if (index_ud)
            sl->req.user_data = ud_base + k;
        sl->seq = c->seq++;
        sl->done = 0;
        sl->attempt = sl->retries = 0;
        c->inflight++;
        if (c->backend == IO_BACKEND_POOL) {
            if (c->bw_rate > 0) {
                pthread_mutex_unlock(&c->mu);
                bw_take(c, sl->req.len);
                pthread_mutex_lock(&c->mu);
            }
            c->fifo[(c->fifo_head + c->fifo_n++) % c->qd] = (uint32_t)s;
            pthread_cond_signal(&c->work_cv);
        } else {
            bw_take(c, sl->req.len);
            uring_start(c, s);
        }
    }
    if (c->backend == IO_BACKEND_POOL)
        pthread_mutex_unlock(&c->mu);
    else
        uring_flush(c);
    return (int)k;
}

int io_submit(io_ctx *c, const io_req *reqs, unsigned n)
{
    return submit_common(c, reqs, n, 0, 0);
}

int io_wait(io_ctx *c, io_cqe *cqes, unsigned max, unsigned min_complete)
{
    if (max && !cqes)
        return -EINVAL;
    if (min_complete > max)
        min_complete = max;
    if (min_complete > c->inflight)
        min_complete = c->inflight;
    if (max == 0)
        return 0;
    return c->backend == IO_BACKEND_POOL ? pool_wait(c, cqes, max, min_complete)
                                         : uring_wait(c, cqes, max, min_complete);
}

int io_rw_batch(io_ctx *c, io_req *reqs, unsigned n)
{
    io_cqe cqes[64];
    if (c->inflight)
        return -EBUSY;
    if (n && !reqs)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++)
        if (!req_valid(&reqs[i]))
            return -EINVAL;
    unsigned next = 0, finished = 0;
    while (finished < n) {
        if (next < n && c->inflight < c->qd) {
            int k = submit_common(c, reqs + next, n - next, 1, next);
            if (k < 0 && c->inflight == 0) {
                /* Could not queue anything and nothing will complete: fail the rest. */
                for (unsigned i = next; i < n; i++)
                    reqs[i].res = k;
                finished += n - next;
                next = n;
                continue;
            }
            if (k > 0)
                next += (unsigned)k;
        }
        int got = io_wait(c, cqes, 64, 1);
        if (got < 0) {
            /* The ring itself failed; requests in flight cannot be accounted for. */
            return got;
        }
        for (int i = 0; i < got; i++) {
            reqs[cqes[i].user_data].res = cqes[i].res;
            finished++;
        }
    }
    for (unsigned i = 0; i < n; i++)
        if (reqs[i].res != (int)reqs[i].len)
            return reqs[i].res < 0 ? reqs[i].res : -EIO;
    return 0;
}

/* ---------------------------------------------------------------- registration */

int io_ctx_register_buffers(io_ctx *c, const struct iovec *iov, unsigned n)
{
    if (!iov || n == 0 || n > 1024)
        return -EINVAL;
    if (c->n_bufs || c->inflight)
        return -EBUSY;
    for (unsigned i = 0; i < n; i++)
        if (!iov[i].iov_base || iov[i].iov_len == 0 || iov[i].iov_len > (1u << 30))
            return -EINVAL;
    struct iovec *copy = util_malloc(n * sizeof *copy);
    if (!copy)
        return -ENOMEM;
    memcpy(copy, iov, n * sizeof *copy);
    if (c->backend == IO_BACKEND_URING) {
        int r = io_uring_register_buffers(&c->ring, iov, n);
        if (r < 0) {
            util_free(copy);
            return r;
        }
    }
    c->bufs = copy;
    c->n_bufs = n;
    return 0;
}

int io_ctx_unregister_buffers(io_ctx *c)
{
    if (c->inflight)
        return -EBUSY;
    if (!c->n_bufs)
        return 0;
    if (c->backend == IO_BACKEND_URING)
        io_uring_unregister_buffers(&c->ring);
    util_free(c->bufs);
    c->bufs = NULL;
    c->n_bufs = 0;
    return 0;
}

int io_ctx_register_files(io_ctx *c, const int *fds, unsigned n)
{
    if (!fds || n == 0 || n > 65536)
        return -EINVAL;
    if (c->fd_map || c->inflight)
        return -EBUSY;
    int max_fd = -1;
    for (unsigned i = 0; i < n; i++) {
        if (fds[i] < 0 || fds[i] >= (1 << 24))
            return -EINVAL;
        if (fds[i] > max_fd)
            max_fd = fds[i];
    }
    int32_t *map = util_malloc(((size_t)max_fd + 1) * sizeof *map);
    if (!map)
        return -ENOMEM;
    for (int i = 0; i <= max_fd; i++)
        map[i] = -1;
    for (unsigned i = 0; i < n; i++)
        map[fds[i]] = (int32_t)i;
    if (c->backend == IO_BACKEND_URING) {
        int r = io_uring_register_files(&c->ring, fds, n);
        if (r < 0) {
            util_free(map);
            return r;
        }
        c->fd_map = map;
        c->fd_map_len = (unsigned)max_fd + 1;
    } else {
        util_free(map); /* the pool has no use for it */
        c->fd_map = NULL;
        c->fd_map_len = 0;
    }
    return 0;
}

int io_ctx_unregister_files(io_ctx *c)
{
    if (c->inflight)
        return -EBUSY;
    if (!c->fd_map)
        return 0;
    io_uring_unregister_files(&c->ring);
    util_free(c->fd_map);
    c->fd_map = NULL;
    c->fd_map_len = 0;
    return 0;
}

/* ---------------------------------------------------------------- open / close */

static void ctx_free(io_ctx *c)
{
    if (c->n_threads) {
        pthread_mutex_lock(&c->mu);
        c->stop = 1;
        pthread_cond_broadcast(&c->work_cv);
        pthread_mutex_unlock(&c->mu);
        for (unsigned i = 0; i < c->n_threads; i++)
            pthread_join(c->threads[i], NULL);
    }
    util_free(c->threads);
    if (c->sync_ok) {
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->work_cv);
        pthread_cond_destroy(&c->done_cv);
    }
    if (c->ring_ok)
        io_uring_queue_exit(&c->ring);
    util_free(c->fd_map);
    util_free(c->bufs);
    util_free(c->fifo);
    util_free(c->ready);
    util_free(c->slots);
    util_free(c);
}

int io_ctx_open(const io_opts *opts, io_ctx **out)
{
    io_opts o;
    io_opts_init(&o);
    if (opts) {
        o = *opts;
        if (!o.queue_depth)
            o.queue_depth = 32;
        if (!o.pool_threads)
            o.pool_threads = 4;
    }
    if (!out || o.queue_depth > IO_MAX_QD || o.pool_threads > 256 || (o.flags & ~IO_FORCE_POOL))
        return -EINVAL;
    int err = -ENOMEM;
    io_ctx *c = util_calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    c->qd = o.queue_depth;
    c->slots = util_calloc(c->qd, sizeof *c->slots);
    c->ready = util_calloc(c->qd, sizeof *c->ready);
    if (!c->slots || !c->ready)
        goto fail;
    c->free_top = -1;
    for (int32_t i = (int32_t)c->qd - 1; i >= 0; i--)
        slot_put(c, i);
    if (o.bw_bytes_per_s) {
        c->bw_rate = (double)o.bw_bytes_per_s;
        c->bw_burst = o.bw_burst_bytes ? (double)o.bw_burst_bytes : c->bw_rate / 20;
        if (c->bw_burst < (double)(1u << 20))
            c->bw_burst = (double)(1u << 20);
        c->bw_tokens = c->bw_burst;
        c->bw_last_ns = util_now_ns();
    }

    if (!(o.flags & IO_FORCE_POOL)) {
        const char *no = getenv("KVT_IO_NO_URING");
        int r = no && *no && *no != '0' ? -ENOSYS : io_uring_queue_init(c->qd, &c->ring, 0);
        if (r == 0) {
            c->ring_ok = 1;
            c->backend = IO_BACKEND_URING;
            *out = c;
            return 0;
        }
        if (!atomic_exchange(&said_no_uring, 1))
            io_log(IO_LOG_WARN, "io: io_uring unavailable (%s): using the pread/pwrite pool",
                   strerror(-r));
    }

    c->backend = IO_BACKEND_POOL;
    c->fifo = util_calloc(c->qd, sizeof *c->fifo);
    c->threads = util_calloc(o.pool_threads, sizeof *c->threads);
    if (!c->fifo || !c->threads)
        goto fail;
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        goto fail;
    if (pthread_cond_init(&c->work_cv, NULL) != 0) {
        pthread_mutex_destroy(&c->mu);
        goto fail;
    }
    if (pthread_cond_init(&c->done_cv, NULL) != 0) {
        pthread_cond_destroy(&c->work_cv);
        pthread_mutex_destroy(&c->mu);
        goto fail;
    }
    c->sync_ok = 1;
    for (unsigned i = 0; i < o.pool_threads; i++) {
        if (pthread_create(&c->threads[i], NULL, pool_main, c) != 0) {
            err = -EAGAIN;
            goto fail;
        }
        c->n_threads++;
    }
    *out = c;
    return 0;
fail:
    ctx_free(c);
    return err;
}

void io_ctx_close(io_ctx *c)
{
    if (!c)
        return;
    /* The kernel or a worker may still write into the caller's buffers: wait them out. */
    io_cqe tmp[64];
    while (c->inflight)
        if (io_wait(c, tmp, 64, 1) < 0)
            break;
    io_ctx_unregister_buffers(c);
    io_ctx_unregister_files(c);
    ctx_free(c);
}
