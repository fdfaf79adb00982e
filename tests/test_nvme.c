// ctest: labels=unit timeout=120
/*
 * test_nvme.c — the NVMe slot tier: geometry, capacity enforcement, free-map reuse against a
 * reference model, data round trips through io/ (io_uring and the forced pool), reopen and
 * warm-restart marking, OOM on open.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/io.h"
#include "testutil.h"
#include "tiers/nvme.h"
#include "util/util.h"

#define SB 65536u            /* slot bytes */
#define FB (4 * SB)          /* file bytes: 4 slots per file */
#define CAP (17 * SB + 5000) /* 17 slots and a remainder that must not be used */

static char dir[PATH_MAX];
static tu_rng rng;

static void setup_dir(void) { tu_test_dir(dir, sizeof dir, "test_nvme"); }

static void cleanup(void)
{
    tu_wipe_dir(dir);
    rmdir(dir);
}

/* Sum of slot file sizes in dir (bytes) and their count. */
static uint64_t dir_bytes(unsigned *files)
{
    DIR *d = opendir(dir);
    TU_CHECK(d);
    struct dirent *e;
    uint64_t sum = 0;
    *files = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "slots.", 6) != 0)
            continue;
        struct stat st;
        TU_CHECK(fstatat(dirfd(d), e->d_name, &st, 0) == 0);
        sum += (uint64_t)st.st_size;
        (*files)++;
    }
    closedir(d);
    return sum;
}

static nvme_tier *open_tier(uint64_t cap)
{
    nvme_opts o = {.file_bytes = FB};
    nvme_tier *t = NULL;
    TU_CHECK_EQ(nvme_open(dir, cap, SB, &o, &t), 0);
    return t;
}

static void test_geometry_and_capacity(void)
{
    nvme_tier *t = open_tier(CAP);
    TU_CHECK_EQ(nvme_slots(t), 17);
    TU_CHECK_EQ(nvme_capacity(t), 17ull * SB);
    unsigned nf;
    const int *fds = nvme_fds(t, &nf);
    TU_CHECK_EQ(nf, 5);
    TU_CHECK(fds[0] >= 0);
    unsigned files;
    TU_CHECK_EQ(dir_bytes(&files), 17ull * SB);
    TU_CHECK_EQ(files, 5);
    int fd;
    uint64_t off;
    TU_CHECK_EQ(nvme_slot_loc(t, 6, &fd, &off), 0);
    TU_CHECK_EQ(fd, fds[1]);
    TU_CHECK_EQ(off, 2ull * SB);
    TU_CHECK_EQ(nvme_slot_loc(t, 16, &fd, &off), 0);
    TU_CHECK_EQ(fd, fds[4]);
    TU_CHECK_EQ(off, 0);
    TU_CHECK_EQ(nvme_slot_loc(t, 17, &fd, &off), -ERANGE);

    /* Enforced: 17 allocations succeed in order, the 18th is -ENOSPC. */
    for (uint32_t i = 0; i < 17; i++) {
        uint32_t s;
        TU_CHECK_EQ(nvme_alloc(t, &s), 0);
        TU_CHECK_EQ(s, i);
    }
    uint32_t s;
    TU_CHECK_EQ(nvme_alloc(t, &s), -ENOSPC);
    TU_CHECK_EQ(nvme_free_slots(t), 0);
    /* Reuse: the lowest freed slot first. */
    TU_CHECK_EQ(nvme_free(t, 9), 0);
    TU_CHECK_EQ(nvme_free(t, 3), 0);
    TU_CHECK_EQ(nvme_free(t, 3), -EINVAL);
    TU_CHECK_EQ(nvme_free(t, 17), -ERANGE);
    TU_CHECK_EQ(nvme_alloc(t, &s), 0);
    TU_CHECK_EQ(s, 3);
    TU_CHECK_EQ(nvme_alloc(t, &s), 0);
    TU_CHECK_EQ(s, 9);
    TU_CHECK_EQ(nvme_alloc(t, &s), -ENOSPC);

    /* A second tier on the same directory is refused while this one is open. */
    nvme_tier *t2 = NULL;
    nvme_opts o = {.file_bytes = FB};
    TU_CHECK_EQ(nvme_open(dir, CAP, SB, &o, &t2), -EBUSY);
    nvme_close(t);

    /* Bad geometry. */
    TU_CHECK_EQ(nvme_open(dir, CAP, 1000, NULL, &t2), -EINVAL);
    TU_CHECK_EQ(nvme_open(dir, SB - 1, SB, NULL, &t2), -EINVAL);
    TU_CHECK_EQ(nvme_open(dir, CAP, 0, NULL, &t2), -EINVAL);
}

/* The free map against a trivial model: random alloc/free/mark_used. */
static void test_model(void)
{
    nvme_tier *t = open_tier(CAP + 200 * SB); /* 217 slots: four bitmap words */
    uint32_t n = nvme_slots(t);
    TU_CHECK_EQ(n, 217);
    unsigned char used[217] = {0};
    uint32_t n_used = 0;
    for (int op = 0; op < 20000; op++) {
        uint32_t k = (uint32_t)tu_below(&rng, 10);
        if (k < 5) {
            uint32_t s;
            int r = nvme_alloc(t, &s);
            uint32_t lowest = 0;
            while (lowest < n && used[lowest])
                lowest++;
            if (lowest == n) {
                TU_CHECK_EQ(r, -ENOSPC);
            } else {
                TU_CHECK_EQ(r, 0);
                TU_CHECK_EQ(s, lowest);
                used[s] = 1;
                n_used++;
            }
        } else if (k < 9) {
            uint32_t s = (uint32_t)tu_below(&rng, n + 2);
            int r = nvme_free(t, s);
            if (s >= n)
                TU_CHECK_EQ(r, -ERANGE);
            else if (!used[s])
                TU_CHECK_EQ(r, -EINVAL);
            else {
                TU_CHECK_EQ(r, 0);
                used[s] = 0;
                n_used--;
            }
        } else {
            uint32_t s = (uint32_t)tu_below(&rng, n);
            int r = nvme_mark_used(t, s);
            TU_CHECK_EQ(r, used[s] ? -EEXIST : 0);
            if (!used[s]) {
                used[s] = 1;
                n_used++;
            }
        }
        TU_CHECK_EQ(nvme_free_slots(t), n - n_used);
        if (op % 997 == 0)
            for (uint32_t s = 0; s < n; s++)
                TU_CHECK_EQ(nvme_is_used(t, s), used[s]);
    }
    nvme_close(t);
}

/* Write every slot through io/, read back; files never grow; reopen keeps the bytes. */
static void test_data(int pool)
{
    nvme_tier *t = open_tier(CAP);
    uint32_t n = nvme_slots(t);
    io_opts o;
    io_opts_init(&o);
    o.flags = pool ? IO_FORCE_POOL : 0;
    o.queue_depth = 8;
    io_ctx *c;
    TU_CHECK_EQ(io_ctx_open(&o, &c), 0);
    unsigned nf;
    const int *fds = nvme_fds(t, &nf);
    TU_CHECK_EQ(io_ctx_register_files(c, fds, nf), 0);

    unsigned char *w = io_buf_alloc((size_t)n * SB), *rd = io_buf_alloc((size_t)n * SB);
    TU_CHECK(w && rd);
    tu_fill(&rng, w, (size_t)n * SB);
    io_req r[17];
    for (uint32_t i = 0; i < n; i++) {
        uint32_t s;
        TU_CHECK_EQ(nvme_alloc(t, &s), 0);
        TU_CHECK_EQ(nvme_req(t, s, IO_OP_WRITE, w + (size_t)s * SB, SB, s, &r[i]), 0);
    }
    TU_CHECK_EQ(nvme_req(t, 0, IO_OP_WRITE, w, SB + 4096, 0, &r[0]), -EINVAL);
    TU_CHECK_EQ(nvme_req(t, 17, IO_OP_WRITE, w, SB, 0, &r[0]), -ERANGE);
    TU_CHECK_EQ(nvme_req(t, 0, IO_OP_WRITE, w, SB, 0, &r[0]), 0);
    TU_CHECK_EQ(io_rw_batch(c, r, n), 0);
    TU_CHECK_EQ(nvme_sync(t), 0);
    unsigned files;
    TU_CHECK_EQ(dir_bytes(&files), (uint64_t)n * SB);
    for (uint32_t s = 0; s < n; s++)
        TU_CHECK_EQ(nvme_req(t, s, IO_OP_READ, rd + (size_t)s * SB, SB, s, &r[s]), 0);
    TU_CHECK_EQ(io_rw_batch(c, r, n), 0);
    TU_CHECK(memcmp(w, rd, (size_t)n * SB) == 0);
    io_ctx_close(c); /* before the fds it registered are closed */
    nvme_close(t);

    /* Warm restart: same bytes, every slot free until marked. */
    t = open_tier(CAP);
    TU_CHECK_EQ(nvme_free_slots(t), n);
    TU_CHECK_EQ(nvme_mark_used(t, 7), 0);
    TU_CHECK_EQ(nvme_mark_used(t, 7), -EEXIST);
    TU_CHECK_EQ(nvme_mark_used(t, 17), -ERANGE);
    TU_CHECK_EQ(io_ctx_open(&o, &c), 0);
    memset(rd, 0, SB);
    TU_CHECK_EQ(nvme_req(t, 7, IO_OP_READ, rd, SB, 0, &r[0]), 0);
    TU_CHECK_EQ(io_rw_batch(c, r, 1), 0);
    TU_CHECK(memcmp(rd, w + 7ull * SB, SB) == 0);
    for (uint32_t i = 0; i < n - 1; i++) {
        uint32_t s;
        TU_CHECK_EQ(nvme_alloc(t, &s), 0);
        TU_CHECK(s != 7);
    }
    uint32_t s;
    TU_CHECK_EQ(nvme_alloc(t, &s), -ENOSPC);
    io_ctx_close(c);
    nvme_close(t);

    /* Smaller capacity: 5 slots = files 0 (4 slots) and 1 (1 slot); the rest deleted. */
    t = open_tier(5 * SB + 100);
    TU_CHECK_EQ(nvme_slots(t), 5);
    TU_CHECK_EQ(dir_bytes(&files), 5ull * SB);
    TU_CHECK_EQ(files, 2);
    nvme_close(t);
    io_buf_free(w);
    io_buf_free(rd);
}

static void test_oom(void)
{
    int ok = 0;
    nvme_opts o = {.file_bytes = FB};
    for (long k = 0; k < 32 && !ok; k++) {
        nvme_tier *t = NULL;
        util_alloc_fail_after(k);
        int r = nvme_open(dir, CAP, SB, &o, &t);
        util_alloc_fail_after(-1);
        if (r == 0) {
            ok = 1;
            nvme_close(t);
        } else {
            TU_CHECK_EQ(r, -ENOMEM);
        }
    }
    TU_CHECK(ok);
}

int main(void)
{
    tu_rng_init(&rng, tu_seed("test_nvme", 11));
    setup_dir();
    atexit(cleanup);
    test_geometry_and_capacity();
    test_model();
    io_ctx *probe;
    TU_CHECK_EQ(io_ctx_open(NULL, &probe), 0);
    int have_uring = io_ctx_backend(probe) == IO_BACKEND_URING;
    io_ctx_close(probe);
    for (int pool = have_uring ? 0 : 1; pool <= 1; pool++)
        test_data(pool);
    test_oom();
    printf("test_nvme: ok (io_uring %s)\n", have_uring ? "yes" : "no");
    return 0;
}
