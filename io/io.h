/*
 * io.h — the block I/O engine: batched reads and writes of aligned buffers, io_uring first,
 * a pread/pwrite thread pool when io_uring cannot be used.
 *
 * An io_ctx is a queue of at most queue_depth requests in flight. The owner submits a batch
 * (io_submit) and reaps completions (io_wait), each carrying the request's user_data and its
 * result; io_rw_batch() is the synchronous helper that does both for one batch.
 *
 *   io_submit(reqs[0..n)) --copy--> in-flight table [queue_depth] --> backend
 *   io_wait()  <-- completions: {user_data, res}    <-- backend
 *
 * A request is finished only when all of its bytes are transferred or it fails: the engine
 * resubmits the remainder of a short transfer and retries -EAGAIN/-EINTR up to
 * IO_MAX_RETRIES times, so the caller sees res == len or res < 0, nothing in between.
 *
 * Backends:
 *   IO_BACKEND_URING  one io_uring of queue_depth entries; user_data of an SQE is the index
 *                     of its in-flight slot. Buffers inside a registered range use
 *                     READ_FIXED/WRITE_FIXED, fds in the registered table IOSQE_FIXED_FILE
 *                     (both looked up automatically, O(n_bufs) and O(1)).
 *   IO_BACKEND_POOL   pool_threads workers take requests from a FIFO and run pread/pwrite
 *                     loops; chosen when io_uring_queue_init fails (ENOSYS, EPERM: kernels or
 *                     containers that disable io_uring) or when IO_FORCE_POOL is set. The
 *                     fallback is logged once per process. Environment KVT_IO_NO_URING=1
 *                     makes io_uring look unavailable (-ENOSYS) to every context: CI
 *                     machines where io_uring is blocked, and the fallback's own test.
 * O_DIRECT: io does not open the tier files; io_file_open() tries O_DIRECT and, when the file
 * system refuses it (EINVAL), opens the file buffered, logs that once and says so in *direct.
 * Buffered fds go through the same backend (io_uring handles them in its worker threads).
 *
 * Bandwidth cap (IO_OPTS bw_bytes_per_s): a token bucket per context charged with a request's
 * whole length at submission; io_submit sleeps when the bucket is in debt. One context per
 * tier gives per-tier caps (tests and experiments: emulate a slow disk on fast flash).
 *
 * Fault injection (tests): io_ctx_set_fault() installs a hook consulted before every attempt
 * of every request. It can fail the attempt with any -errno (no I/O is done) or shorten it
 * (a real short transfer that the engine must complete), so tests can prove that an I/O error
 * reaches the caller as an error for that request only, never as data.
 *
 * Thread safety: an io_ctx has one owner thread at a time (like an io_uring): io_submit,
 * io_wait, io_rw_batch, register/unregister and close must not run concurrently on one
 * context. Different contexts are independent. The pool backend's workers are internal; the
 * fault hook is called from them in pool mode (it must be thread-safe then). io_set_log and
 * io_log are thread-safe.
 *
 * Errors are negative errno values. Allocation goes through util_malloc (OOM injectable).
 */
#ifndef KVT_IO_H
#define KVT_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#define IO_ALIGN 4096u             /* O_DIRECT alignment of buffers, offsets, lengths (bytes) */
#define IO_MAX_LEN 0x7ffff000u     /* largest request, bytes (what one read(2) can move) */
#define IO_MAX_QD 4096u            /* largest queue depth */
#define IO_MAX_RETRIES 8u          /* -EAGAIN/-EINTR retries per request before giving up */
#define IO_HUGE_BYTES (2u << 20)   /* io_buf_alloc: huge-page alignment from this size up */

enum { IO_OP_READ = 0, IO_OP_WRITE = 1 };
enum { IO_BACKEND_URING = 1, IO_BACKEND_POOL = 2 };

typedef struct io_req {
    void *buf;          /* [in] len bytes; IO_ALIGN-aligned address when fd is O_DIRECT */
    uint64_t off;       /* [in] file offset, bytes (IO_ALIGN multiple for O_DIRECT) */
    uint64_t user_data; /* [in] opaque, returned in the completion */
    uint32_t len;       /* [in] bytes, 1..IO_MAX_LEN (IO_ALIGN multiple for O_DIRECT) */
    int fd;             /* [in] an open file descriptor (registered or not) */
    int op;             /* [in] IO_OP_READ or IO_OP_WRITE */
    int res;            /* [out] io_rw_batch only: len on success, else -errno */
} io_req;

/* A completion. res: the request's len on success, or -errno:
 *   -ENODATA  a read reached end of file before len bytes (a missing/truncated block);
 *   -EIO, -ENOSPC, -EBADF, -EINVAL (misaligned O_DIRECT), ... as the kernel returned them;
 *   -EAGAIN   still refused after IO_MAX_RETRIES retries. */
typedef struct io_cqe {
    uint64_t user_data;
    int res;
} io_cqe;

/*
 * Fault hook, tests only. Called before attempt `attempt` (0 = first submission, then each
 * retry or remainder of a short transfer) of the request numbered `seq` (per context, from 0
 * in submission order). *len is the bytes this attempt will move (the remainder) and may be
 * lowered (>= 1) to force a short transfer; the hook must keep O_DIRECT alignment itself.
 * Return 0 to run the attempt, or -errno to fail it without I/O: -EAGAIN/-EINTR are then
 * retried as if the kernel had returned them, any other value completes the request with it.
 */
typedef int (*io_fault_fn)(void *arg, uint64_t seq, unsigned attempt, const io_req *req,
                           uint32_t *len);

/* Options. Zero-initialised (or io_opts_init) means: queue depth 32, 4 pool threads,
 * io_uring when available, no bandwidth cap. */
#define IO_FORCE_POOL 0x1u /* use the pread/pwrite pool even when io_uring works */
typedef struct io_opts {
    unsigned queue_depth;    /* requests in flight, 1..IO_MAX_QD; 0 = 32 */
    unsigned pool_threads;   /* pool backend workers, 1..256; 0 = 4 */
    unsigned flags;          /* IO_FORCE_POOL */
    uint64_t bw_bytes_per_s; /* bandwidth cap over reads and writes, bytes/s; 0 = none */
    uint64_t bw_burst_bytes; /* token bucket size, bytes; 0 = max(1 MiB, rate / 20) */
} io_opts;

typedef struct io_ctx io_ctx;

void io_opts_init(io_opts *o);

/*
 * Create a context. opts may be NULL (defaults). Never fails because io_uring is missing:
 * the pool is used instead (io_ctx_backend tells which).
 * Returns 0 and *out; -EINVAL (bad option); -ENOMEM; -EAGAIN (could not start a thread).
 */
int io_ctx_open(const io_opts *opts, io_ctx **out);
/* Wait for every request in flight, then free the context (completions are discarded).
 * NULL is a no-op. Registered buffers and files are unregistered; fds are not closed. */
void io_ctx_close(io_ctx *c);

int io_ctx_backend(const io_ctx *c);            /* IO_BACKEND_URING or IO_BACKEND_POOL */
const char *io_backend_name(int backend);       /* "io_uring", "pool" */
unsigned io_ctx_queue_depth(const io_ctx *c);
unsigned io_ctx_inflight(const io_ctx *c);      /* submitted, not yet returned by io_wait */

/*
 * Register buffers (io_uring: pinned once, then READ_FIXED/WRITE_FIXED for any request whose
 * [buf, buf+len) lies inside iov[i]; each iov_len <= 1 GiB, a kernel limit). The memory must
 * stay mapped until io_ctx_unregister_buffers or close. Pool backend: recorded, no effect.
 * Returns 0; -EBUSY (already registered, or requests in flight); -EINVAL; -ENOMEM (also when
 * RLIMIT_MEMLOCK forbids pinning: the context stays usable without registration).
 */
int io_ctx_register_buffers(io_ctx *c, const struct iovec *iov, unsigned n);
int io_ctx_unregister_buffers(io_ctx *c);
/* Register fds (io_uring fixed files: saves an fget/fput per request). Requests keep naming
 * the fd itself; the context maps it. Same errors as io_ctx_register_buffers. */
int io_ctx_register_files(io_ctx *c, const int *fds, unsigned n);
int io_ctx_unregister_files(io_ctx *c);

/* Install (fn != NULL) or remove the fault hook. Tests only. */
void io_ctx_set_fault(io_ctx *c, io_fault_fn fn, void *arg);

/*
 * Queue reqs[0..n) (copied: the array may be reused on return; the buffers may not until the
 * request completes). Accepts at most queue_depth - inflight requests, in order, and stops
 * before a malformed one (len 0 or > IO_MAX_LEN, bad op, fd < 0, NULL buf).
 * Returns the number accepted (0..n), or -EINVAL when reqs[0] is malformed. Errors of the
 * I/O itself arrive as completions; a submission the kernel refuses for lack of resources
 * (-EAGAIN/-EBUSY) stays queued and is offered again by the next io_submit/io_wait.
 * May sleep for the bandwidth cap.
 */
int io_submit(io_ctx *c, const io_req *reqs, unsigned n);

/*
 * Reap up to max completions into cqes[0..max), blocking until at least min_complete are
 * available (min_complete is clamped to io_ctx_inflight, so it cannot wait forever; 0 polls).
 * Returns the number written (>= 0) or -errno (-EINVAL for cqes == NULL with max > 0).
 */
int io_wait(io_ctx *c, io_cqe *cqes, unsigned max, unsigned min_complete);

/*
 * Synchronous batch: run reqs[0..n) (any n; queue_depth at a time), wait for all, set each
 * reqs[i].res. user_data is ignored. The context must be idle (no requests in flight).
 * Returns 0 if every request succeeded, else the res of the first failed request (by index);
 * -EBUSY if requests were in flight; -EINVAL for a malformed request (none run).
 */
int io_rw_batch(io_ctx *c, io_req *reqs, unsigned n);

/*
 * Open `path` with `flags` (O_RDWR|O_CREAT, ... ; O_CLOEXEC is added). With want_direct, try
 * O_DIRECT first; when the file system refuses it (EINVAL), open without it and log that once
 * per process. *direct (may be NULL) is set to 1 when the fd is O_DIRECT.
 * Returns the fd (>= 0) or -errno.
 */
int io_file_open(const char *path, int flags, unsigned mode, int want_direct, int *direct);

/*
 * A plain pread/pwrite loop with the engine's semantics (short transfers completed, -EINTR
 * and -EAGAIN retried): returns len or -errno (-ENODATA on end of file). Used by the pool
 * workers and by the disk tier's synchronous I/O. fault/seq as for io_fault_fn (fault may be
 * NULL).
 */
int io_sync_rw(const io_req *r, io_fault_fn fault, void *fault_arg, uint64_t seq);

/* IO_ALIGN-aligned buffer of `bytes` from util_malloc (OOM injection applies); NULL on
 * failure. Free with io_buf_free (NULL is a no-op). From IO_HUGE_BYTES up it is 2 MiB-aligned
 * and madvise(MADV_HUGEPAGE)d: with transparent huge pages (enabled "always" or "madvise")
 * each 2 MiB of it is one physically contiguous page, so an O_DIRECT request of <= 2 MiB
 * is one device request rather than several (measured: 2 MiB reads on the dev VM's virtio
 * disk, bench/RESULTS.md "Storage tiers"). */
void *io_buf_alloc(size_t bytes);
void io_buf_free(void *p);

/* Logging. The library never prints to stdout. Messages go to the hook (thread-safe:
 * called under a lock, one message at a time); the default writes one line
 * "kvtier: <level>: <msg>" to stderr. io_set_log(NULL, NULL) restores the default. */
enum { IO_LOG_DEBUG = 0, IO_LOG_INFO = 1, IO_LOG_WARN = 2, IO_LOG_ERROR = 3 };
typedef void (*io_log_fn)(void *arg, int level, const char *msg);
void io_set_log(io_log_fn fn, void *arg);
void io_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
