/*
 * probe.c — `kvtier probe`: measure the bandwidth of each configured tier and of the
 * host<->GPU link, print capacities, bandwidths and drain times (capacity / read bandwidth,
 * DESIGN.md §2), and optionally write the figures into the service's configuration, where
 * the cost model takes them (docs/cost-model.md §2, "Defaults and their sources").
 *
 * Tiers come from the service's configuration (--config FILE, parsed by server/config.c: dram_bytes,
 * data_dir, nvme_path/nvme_bytes, disk_path/disk_bytes) and/or --nvme DIR / --disk DIR. The
 * measurements are engine/probe.c's (the tiers' own I/O path: O_DIRECT through io/).
 *
 * --write-config FILE sets, in the top-level / [server] part of the INI file, the keys
 *   dram_read_bandwidth, dram_write_bandwidth     host->GPU, GPU->host (only with a GPU)
 *   nvme_read_bandwidth, nvme_write_bandwidth     bytes/s
 *   disk_read_bandwidth, disk_write_bandwidth
 * replacing a key where it is, adding it otherwise (before the first other section), and
 * leaving every other line as it was; the file is replaced atomically (rename).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cli/cli.h"
#include "engine/probe.h"
#include "kvtier/kvtier.h"
#ifdef KVT_HAVE_SERVER
#include "server/srv.h"
#endif

#define EXIT_USAGE 2

enum { P_DRAM, P_NVME, P_DISK, P_N };
static const char *const p_name[P_N] = {"dram", "nvme", "disk"};

typedef struct ptier {
    char path[4096];    /* nvme/disk: the directory probed; "" = not configured */
    uint64_t capacity;  /* bytes; 0 = unknown */
    int cap_from_fs;    /* capacity is the file system's size (no configured capacity) */
    int measured;
    double read_bw, write_bw;
    char note[96];
} ptier;

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kvtier probe [options]\n"
        "\n"
        "Measure each tier's read and write bandwidth (a scratch file per tier directory,\n"
        "O_DIRECT, the engine's I/O path) and the host<->GPU link (pinned copies; skipped\n"
        "without a GPU); print capacities, bandwidths and drain times (capacity / read).\n"
        "\n"
        "  --config FILE        the service's configuration (kvtier serve --config): probe its\n"
        "                       tiers (dram_bytes; nvme and disk under data_dir, nvme_path,\n"
        "                       disk_path, with nvme_bytes/disk_bytes as capacities)\n"
        "  --nvme DIR           probe DIR as the nvme tier (instead of the configuration's)\n"
        "  --disk DIR           probe DIR as the disk tier\n"
        "  --size SIZE          scratch file per tier (default 1GiB; K/M/G suffixes)\n"
        "  --block SIZE         request size, a multiple of 4 KiB (default 2MiB)\n"
        "  --qd N               requests in flight (default 32)\n"
        "  --no-gpu             do not measure the host<->GPU link\n"
        "  --write-config FILE  write the measured bandwidths into FILE (INI keys\n"
        "                       <tier>_read_bandwidth, <tier>_write_bandwidth in bytes/s;\n"
        "                       other lines kept; FILE is created if missing)\n"
        "  -h, --help           this text\n"
        "\n"
        "Exit status: 0 ok, 1 a measurement or the configuration write failed, 2 usage error.\n");
}

/* ---------------------------------------------------------------- progress */

typedef struct prog {
    int on;
    const char *tier;
    int last;
} prog;

static void on_progress(void *arg, const char *phase, double frac)
{
    prog *p = arg;
    int pct = (int)(frac * 100);
    if (!p->on || pct == p->last)
        return;
    p->last = pct;
    char bar[31];
    for (int i = 0; i < 30; i++)
        bar[i] = i < pct * 30 / 100 ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\rprobe %-4s %-5s [%s] %3d%%", p->tier, phase, bar, pct);
    fflush(stderr);
}

static void progress_end(prog *p)
{
    if (p->on)
        fprintf(stderr, "\r%60s\r", "");
}

/* ---------------------------------------------------------------- the configuration */

static int parse_size_arg(const char *opt, const char *v, uint64_t *out)
{
    if (kvt_parse_size(v, out) || *out == 0) {
        fprintf(stderr, "kvtier probe: %s '%s' is not a size (e.g. 64MiB, 1G)\n", opt, v);
        return -1;
    }
    return 0;
}

/* Fill tiers from the service's configuration file. 0, or -1 (message printed). */
static int tiers_from_config(const char *file, ptier *t)
{
#ifdef KVT_HAVE_SERVER
    srv_config c;
    char e[512] = "";
    cfg_defaults(&c);
    if (cfg_load_file(&c, file, e, sizeof e)) {
        fprintf(stderr, "kvtier probe: %s\n", e);
        cfg_free(&c);
        return -1;
    }
    t[P_DRAM].capacity = c.dram_bytes;
    if (c.data_dir[0]) {
        const char *path[2] = {c.nvme_path, c.disk_path};
        const uint64_t cap[2] = {c.nvme_bytes, c.disk_bytes};
        for (int i = 0; i < 2; i++) {
            if (!cap[i])
                continue; /* the tier is off */
            ptier *x = &t[P_NVME + i];
            if (path[i][0])
                snprintf(x->path, sizeof x->path, "%s", path[i]);
            else
                snprintf(x->path, sizeof x->path, "%s/%s", c.data_dir, p_name[P_NVME + i]);
            x->capacity = cap[i];
        }
    }
    cfg_free(&c);
    return 0;
#else
    (void)t;
    fprintf(stderr, "kvtier probe: --config %s: this program is built without the service, "
                    "which reads that file; use --nvme DIR / --disk DIR\n", file);
    return -1;
#endif
}

/* Read a whole file into a NUL-terminated buffer (*len bytes). 0; -errno. ENOENT: no file. */
static int slurp(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    while (b) {
        n += fread(b + n, 1, cap - n - 1, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(b, cap *= 2);
        if (!nb)
            free(b);
        b = nb;
    }
    int bad = ferror(f);
    fclose(f);
    if (!b)
        return -ENOMEM;
    if (bad) {
        free(b);
        return -EIO;
    }
    b[n] = 0;
    *buf = b;
    *len = n;
    return 0;
}

/* The key of an INI line "  key = value" into key[] (""): not a key line. */
static void line_key(const char *l, size_t n, char *key, size_t kn)
{
    size_t i = 0, k = 0;
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    key[0] = 0;
    if (i == n || l[i] == ';' || l[i] == '#' || l[i] == '[')
        return;
    while (i < n && l[i] != '=' && l[i] != ':' && l[i] != ' ' && l[i] != '\t' && k + 1 < kn)
        key[k++] = l[i++];
    while (i < n && (l[i] == ' ' || l[i] == '\t'))
        i++;
    key[i < n && (l[i] == '=' || l[i] == ':') ? k : 0] = 0;
}

/*
 * Set keys[i] = vals[i] in the server part of INI file `path` (see the header). 0, or -errno.
 */
static int ini_update(const char *path, const char *const *keys, const uint64_t *vals, int nk)
{
    char *in = NULL, tmp[4200];
    size_t len = 0;
    int rc = slurp(path, &in, &len);
    if (rc == -ENOENT) {
        in = calloc(1, 1);
        rc = in ? 0 : -ENOMEM;
    }
    if (rc)
        return rc;
    snprintf(tmp, sizeof tmp, "%s.probe-tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        free(in);
        return -errno;
    }
    int done[16] = {0}, server = 1, inserted = 0;
    for (const char *l = in; *l;) {
        const char *e = strchr(l, '\n');
        size_t n = e ? (size_t)(e - l) : strlen(l);
        const char *s = l;
        while (s < l + n && (*s == ' ' || *s == '\t'))
            s++;
        if (s < l + n && *s == '[') { /* a section header: leaving the server part? */
            int next_server = !strncmp(s, "[server]", 8);
            if (server && !next_server && !inserted) {
                for (int i = 0; i < nk; i++)
                    if (!done[i])
                        fprintf(out, "%s = %" PRIu64 "\n", keys[i], vals[i]);
                inserted = 1;
            }
            server = next_server;
        }
        char key[64];
        line_key(l, n, key, sizeof key);
        int hit = -1;
        for (int i = 0; server && key[0] && i < nk; i++)
            if (!strcmp(key, keys[i]))
                hit = i;
        if (hit >= 0) {
            fprintf(out, "%s = %" PRIu64 "\n", keys[hit], vals[hit]);
            done[hit] = 1;
        } else {
            fwrite(l, 1, n, out);
            fputc('\n', out);
        }
        l += n + (e ? 1 : 0);
    }
    if (!inserted)
        for (int i = 0; i < nk; i++)
            if (!done[i])
                fprintf(out, "%s = %" PRIu64 "\n", keys[i], vals[i]);
    free(in);
    if (fflush(out) || ferror(out)) {
        rc = -EIO;
        fclose(out);
    } else {
        rc = fclose(out) ? -errno : 0;
    }
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc)
        unlink(tmp);
    return rc;
}

/* ---------------------------------------------------------------- main */

enum { O_CONFIG = 256, O_NVME, O_DISK, O_SIZE, O_BLOCK, O_QD, O_NOGPU, O_WRITE };

int probe_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"config", 1, 0, O_CONFIG}, {"nvme", 1, 0, O_NVME},   {"disk", 1, 0, O_DISK},
        {"size", 1, 0, O_SIZE},     {"block", 1, 0, O_BLOCK}, {"qd", 1, 0, O_QD},
        {"no-gpu", 0, 0, O_NOGPU},  {"write-config", 1, 0, O_WRITE},
        {"help", 0, 0, 'h'},        {0, 0, 0, 0},
    };
    ptier t[P_N];
    memset(t, 0, sizeof t);
    probe_opts po = {0};
    const char *config = NULL, *write = NULL, *dir_arg[P_N] = {0};
    int no_gpu = 0, c;
    uint64_t v;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case O_CONFIG: config = optarg; break;
        case O_NVME: dir_arg[P_NVME] = optarg; break;
        case O_DISK: dir_arg[P_DISK] = optarg; break;
        case O_SIZE:
            if (parse_size_arg("--size", optarg, &po.bytes))
                return EXIT_USAGE;
            break;
        case O_BLOCK:
            if (parse_size_arg("--block", optarg, &v))
                return EXIT_USAGE;
            if (v % 4096 || v > (1u << 30)) {
                fprintf(stderr, "kvtier probe: --block %s: a multiple of 4 KiB up to 1 GiB\n",
                        optarg);
                return EXIT_USAGE;
            }
            po.block = (uint32_t)v;
            break;
        case O_QD: {
            char *end;
            unsigned long q = strtoul(optarg, &end, 10);
            if (*end || !*optarg || q < 1 || q > 4096) {
                fprintf(stderr, "kvtier probe: --qd %s: 1..4096\n", optarg);
                return EXIT_USAGE;
            }
            po.qd = (unsigned)q;
            break;
        }
        case O_NOGPU: no_gpu = 1; break;
        case O_WRITE: write = optarg; break;
        default:
            fprintf(stderr, "kvtier probe: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "kvtier probe: unexpected argument '%s'\n", argv[optind]);
        return EXIT_USAGE;
    }
    if (config && tiers_from_config(config, t))
        return EXIT_USAGE;
    for (int i = P_NVME; i < P_N; i++)
        if (dir_arg[i])
            snprintf(t[i].path, sizeof t[i].path, "%s", dir_arg[i]);
    if (!t[P_NVME].path[0] && !t[P_DISK].path[0] && !config) {
        fprintf(stderr, "kvtier probe: nothing to probe: give --config FILE (the service's "
                        "tiers) or --nvme DIR / --disk DIR\n");
        return EXIT_USAGE;
    }
    uint64_t size = po.bytes ? po.bytes : 1ull << 30, blk = po.block ? po.block : 2u << 20;
    if (size < blk) {
        fprintf(stderr, "kvtier probe: --size must hold at least one --block request\n");
        return EXIT_USAGE;
    }
    char a[32], b[32];
    printf("kvtier probe: %s scratch file per tier, %s requests, queue depth %u\n",
           fmt_size(a, sizeof a, size), fmt_size(b, sizeof b, blk), po.qd ? po.qd : 32);

    int failed = 0;
    prog pg = {.on = isatty(2), .last = -1};
    po.progress = on_progress;
    po.arg = &pg;
    for (int i = P_NVME; i < P_N; i++) {
        ptier *x = &t[i];
        if (!x->path[0])
            continue;
        struct stat st;
        if (stat(x->path, &st) || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "kvtier probe: %s: %s is not a directory (create it, or start the "
                            "service once)\n", p_name[i], x->path);
            failed = 1;
            continue;
        }
        struct statvfs vfs;
        if (!x->capacity && !statvfs(x->path, &vfs)) {
            x->capacity = (uint64_t)vfs.f_blocks * vfs.f_frsize;
            x->cap_from_fs = 1;
        }
        probe_io r;
        pg.tier = p_name[i];
        pg.last = -1;
        int rc = probe_dir(x->path, &po, &r);
        progress_end(&pg);
        if (rc) {
            fprintf(stderr, "kvtier probe: %s: %s: %s%s\n", p_name[i], x->path, strerror(-rc),
                    rc == -ENOSPC ? " (lower --size)" : "");
            failed = 1;
            continue;
        }
        x->measured = 1;
        x->read_bw = r.read_bw;
        x->write_bw = r.write_bw;
        snprintf(x->note, sizeof x->note, "%s, %s%s", r.direct ? "O_DIRECT" : "buffered",
                 r.backend, r.direct ? "" : ": page cache, not the device");
    }
    const char *gpu_line = NULL;
    if (no_gpu) {
        gpu_line = "host<->GPU link: not measured (--no-gpu)";
    } else {
        double h2d, d2h;
        int rc = probe_gpu_link(1ull << 30, 3, &h2d, &d2h);
        if (rc == 0) {
            t[P_DRAM].measured = 1;
            t[P_DRAM].read_bw = h2d;
            t[P_DRAM].write_bw = d2h;
            snprintf(t[P_DRAM].note, sizeof t[P_DRAM].note,
                     "host->GPU / GPU->host, pinned, 1 GiB copies");
        } else if (rc == -ENODEV) {
            gpu_line = "host<->GPU link: no GPU here (skipped); dram keeps the cost model's "
                       "defaults (55.2 / 55.0 GB/s)";
        } else {
            fprintf(stderr, "kvtier probe: host<->GPU link: %s\n", kvt_strerror(rc));
            failed = 1;
        }
    }

    printf("%-5s %-32s %12s %10s %10s %10s  %s\n", "tier", "path", "capacity", "read GB/s",
           "write GB/s", "drain", "how");
    for (int i = 0; i < P_N; i++) {
        ptier *x = &t[i];
        if (i != P_DRAM && !x->path[0])
            continue;
        if (i == P_DRAM && !x->capacity && !x->measured)
            continue;
        char cap[32] = "-", rd[16] = "-", wr[16] = "-", dr[32] = "-";
        if (x->capacity)
            snprintf(cap, sizeof cap, "%s%s", fmt_size(a, sizeof a, x->capacity),
                     x->cap_from_fs ? "*" : "");
        if (x->measured) {
            snprintf(rd, sizeof rd, "%.3f", x->read_bw / 1e9);
            snprintf(wr, sizeof wr, "%.3f", x->write_bw / 1e9);
            if (x->capacity)
                fmt_secs(dr, sizeof dr, (double)x->capacity / x->read_bw);
        }
        printf("%-5s %-32s %12s %10s %10s %10s  %s\n", p_name[i],
               i == P_DRAM ? "(host memory)" : x->path, cap, rd, wr, dr,
               x->measured ? x->note : "not measured");
    }
    if (t[P_NVME].cap_from_fs || t[P_DISK].cap_from_fs)
        printf("* no configured capacity: the file system's size\n");
    if (gpu_line)
        printf("%s\n", gpu_line);

    if (write) {
        const char *keys[6];
        uint64_t vals[6];
        int nk = 0;
        for (int i = 0; i < P_N; i++) {
            static const char *const rk[P_N] = {"dram_read_bandwidth", "nvme_read_bandwidth",
                                                "disk_read_bandwidth"};
            static const char *const wk[P_N] = {"dram_write_bandwidth", "nvme_write_bandwidth",
                                                "disk_write_bandwidth"};
            if (!t[i].measured)
                continue;
            keys[nk] = rk[i];
            vals[nk++] = (uint64_t)t[i].read_bw;
            keys[nk] = wk[i];
            vals[nk++] = (uint64_t)t[i].write_bw;
        }
        if (!nk) {
            fprintf(stderr, "kvtier probe: --write-config %s: nothing was measured\n", write);
            return 1;
        }
        int rc = ini_update(write, keys, vals, nk);
        if (rc) {
            fprintf(stderr, "kvtier probe: --write-config %s: %s\n", write, strerror(-rc));
            return 1;
        }
        printf("wrote %d bandwidth key(s) to %s\n", nk, write);
    }
    return failed ? 1 : 0;
}
