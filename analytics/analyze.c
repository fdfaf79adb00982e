/*
 * analyze.c — `kvtier analyze` options and the order of work: load, replay, capacity sweep,
 * multi-node simulation, reports.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "an.h"
#include "analyze.h"
#include "evict/reuse.h" /* layering: until exported through kvtier.h (evict_ttl_parse) */

#define EXIT_USAGE 2

static void usage(FILE *f)
{
    fprintf(f,
        "usage: kvtier analyze [options] TRACE.jsonl\n"
        "\n"
        "Replay a request trace through the kvtier engine and explain every hit and miss.\n"
        "TRACE: Mooncake JSONL (hash_ids), token JSONL (tokens), or the service's access log\n"
        "(ts_ms, tenant, ns, tokens, hash_ids|block_keys); '-' reads stdin.\n"
        "\n"
        "  --format F         auto (default), mooncake, tokens, log\n"
        "  --block-size N     tokens per block (default 512 for mooncake/log, 16 for tokens)\n"
        "  --model M          KV layout and prefill cost: llama3-8b (default), llama3-70b\n"
        "  --dram SIZE        DRAM tier capacity (default 256GiB); SIZE is bytes with K/M/G/T\n"
        "                     (binary) or tokens with a 'tok' suffix: 3Mtok, 50Mtok (decimal)\n"
        "  --nvme SIZE        NVMe tier capacity   } need the engine's data-free simulation\n"
        "  --disk SIZE        disk tier capacity   } mode (docs/analytics.md)\n"
        "  --nvme-bw BW       NVMe / disk read and write bandwidth for the cost model and the\n"
        "  --disk-bw BW       load plan: 0.2GB/s, 500MB/s, or GB/s without a unit (defaults:\n"
        "                     nvme 3.0GB/s, disk 0.2GB/s; `kvtier probe` measures them)\n"
        "  --policy P         eviction policy: lru (default), lfu, drain (kvt_options_set_policy)\n"
        "  --load L           plan (default): each hit is loaded or recomputed, whichever is\n"
        "                     faster (kvt_lease_plan); all: every hit is loaded from its tier\n"
        "                     however slow (\"always load\", the reference)\n"
        "  --ttl T            block lifetime since last use: 5m, 1h, 2h30m (default none)\n"
        "  --tenant-mode M    pool (default: tenants share one LRU pool, namespaces apart) or\n"
        "                     quota (each tenant gets capacity / tenants)\n"
        "  --nodes N          multi-node simulation with N nodes (default 10; 0 skips)\n"
        "  --seed N           random routing seed (default 1)\n"
        "  --sweep-points N   capacity sweep points (default 10; 0 skips)\n"
        "  --threads N        threads for the sweep's replays (default 2, or 1 on one CPU)\n"
        "  --top N            most shared prefixes to list (default 10)\n"
        "  --json             print the report as JSON instead of tables\n"
        "  --html FILE        write a self-contained HTML report with SVG charts\n"
        "  --strict           fail on the first malformed line (default: report and skip)\n"
        "  --quiet            no progress bar\n"
        "  -h, --help         this text\n");
}

/* Bytes, or tokens (suffix "tok") converted with the model's KV bytes per token.
 * 0; -EINVAL. */
static int parse_size(const char *s, uint64_t bytes_per_token, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v >= 0) || isspace((unsigned char)*s) || *s == '-' || *s == '+')
        return -EINVAL;
    double mul = 1;
    size_t rest = strlen(end);
    if (rest >= 3 && strcmp(end + rest - 3, "tok") == 0) {
        char u = rest == 4 ? end[0] : 0;
        if (rest > 4 || (rest == 4 && !strchr("kKMG", u)))
            return -EINVAL;
        mul = u == 'k' || u == 'K' ? 1e3 : u == 'M' ? 1e6 : u == 'G' ? 1e9 : 1;
        v = floor(v * mul) * (double)bytes_per_token;
    } else {
        char u = (char)toupper((unsigned char)end[0]);
        if (u) {
            const char *sfx = strchr("KMGT", u);
            if (!sfx || (end[1] && strcmp(end + 1, "iB") && strcmp(end + 1, "B")))
                return -EINVAL;
            mul = ldexp(1.0, 10 * (int)(sfx - "KMGT" + 1));
        }
        v = floor(v * mul);
    }
    if (v >= 1.8e19)
        return -EINVAL;
    *out = (uint64_t)v;
    return 0;
}

static int parse_u(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

enum {
    O_FORMAT = 256, O_BS, O_MODEL, O_DRAM, O_NVME, O_DISK, O_POLICY, O_TTL, O_TMODE, O_NODES,
    O_SEED, O_SWEEP, O_TOP, O_JSON, O_HTML, O_STRICT, O_QUIET, O_THREADS, O_NVME_BW, O_DISK_BW,
    O_LOAD,
};

/* A bandwidth: NUMBER[GB/s|MB/s] (decimal; no unit: GB/s), > 0. Bytes/s; -EINVAL. */
static int parse_bw(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || !(v > 0) || !isdigit((unsigned char)*s))
        return -EINVAL;
    double mul = !*end || !strcmp(end, "GB/s") ? 1e9 : !strcmp(end, "MB/s") ? 1e6 : 0;
    if (!mul || !(v * mul < 1e15))
        return -EINVAL;
    *out = v * mul;
    return 0;
}

int analyze_main(int argc, char **argv)
{
    static const struct option lo[] = {
        {"format", 1, 0, O_FORMAT}, {"block-size", 1, 0, O_BS}, {"model", 1, 0, O_MODEL},
        {"dram", 1, 0, O_DRAM}, {"nvme", 1, 0, O_NVME}, {"disk", 1, 0, O_DISK},
        {"policy", 1, 0, O_POLICY}, {"ttl", 1, 0, O_TTL}, {"tenant-mode", 1, 0, O_TMODE},
        {"nodes", 1, 0, O_NODES}, {"seed", 1, 0, O_SEED}, {"sweep-points", 1, 0, O_SWEEP},
        {"top", 1, 0, O_TOP}, {"json", 0, 0, O_JSON}, {"html", 1, 0, O_HTML},
        {"strict", 0, 0, O_STRICT}, {"quiet", 0, 0, O_QUIET}, {"threads", 1, 0, O_THREADS}, {"nvme-bw", 1, 0, O_NVME_BW},
        {"disk-bw", 1, 0, O_DISK_BW}, {"load", 1, 0, O_LOAD}, {"help", 0, 0, 'h'}, {0, 0, 0, 0},
    };
    an_config cfg = {.policy = AN_POL_LRU, .ttl_ms = -1, .nodes = 10, .seed = 1, .top = 10,
                     .sweep_points = 10};
    an_load_opts lo_opts = {.format = AN_FMT_AUTO, .errs = stderr};
    const char *size_arg[AN_TIERS] = {NULL, "256GiB", NULL, NULL};
    const char *html = NULL, *model = "llama3-8b";
    int json = 0, quiet = 0, c;
    uint64_t v;

    optind = 0; /* full getopt reset (glibc), so analyze_main can run more than once */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'h': usage(stdout); return 0;
        case O_FORMAT:
            if (!strcmp(optarg, "auto")) lo_opts.format = AN_FMT_AUTO;
            else if (!strcmp(optarg, "mooncake")) lo_opts.format = AN_FMT_MOONCAKE;
            else if (!strcmp(optarg, "tokens")) lo_opts.format = AN_FMT_TOKENS;
            else if (!strcmp(optarg, "log")) lo_opts.format = AN_FMT_LOG;
            else goto bad_value;
            break;
        case O_BS:
            if (parse_u(optarg, 4096, &v) || v == 0 || (v & (v - 1)))
                goto bad_value;
            lo_opts.block_tokens = (uint32_t)v;
            break;
        case O_MODEL: model = optarg; break;
        case O_DRAM: size_arg[AN_DRAM] = optarg; break;
        case O_NVME: size_arg[AN_NVME] = optarg; break;
        case O_DISK: size_arg[AN_DISK] = optarg; break;
        case O_POLICY: {
            int p = -1;
            for (int i = 0; i < AN_POL_N; i++)
                if (!strcmp(optarg, an_policy_name[i]))
                    p = i;
            if (p < 0)
                goto bad_value;
            if (!an_policy_in_engine((an_policy)p)) {
                fprintf(stderr, "kvtier analyze: policy %s is not in the engine yet (issue 4); "
                                "available: lru\n", optarg);
                return EXIT_USAGE;
            }
            cfg.policy = (an_policy)p;
            break;
        }
        case O_TTL: {
            double s;
            if (evict_ttl_parse(optarg, &s))
                goto bad_value;
            cfg.ttl_ms = (int64_t)llround(s * 1000.0);
            break;
        }
        case O_TMODE:
            if (!strcmp(optarg, "pool")) cfg.tenant_mode = AN_TENANT_POOL;
            else if (!strcmp(optarg, "quota")) cfg.tenant_mode = AN_TENANT_QUOTA;
            else goto bad_value;
            break;
        case O_NODES:
            if (parse_u(optarg, 1024, &v)) goto bad_value;
            cfg.nodes = (uint32_t)v;
            break;
        case O_SEED:
            if (parse_u(optarg, UINT64_MAX, &v)) goto bad_value;
            cfg.seed = v ? v : 1;
            break;
        case O_SWEEP:
            if (parse_u(optarg, 40, &v)) goto bad_value;
            cfg.sweep_points = (uint32_t)v;
            break;
        case O_TOP:
            if (parse_u(optarg, 1000, &v)) goto bad_value;
            cfg.top = (size_t)v;
            break;
        case O_JSON: json = 1; break;
        case O_HTML: html = optarg; break;
        case O_STRICT: lo_opts.strict = 1; break;
        case O_QUIET: quiet = 1; break;
        case O_NVME_BW:
        case O_DISK_BW:
            if (parse_bw(optarg, &cfg.bw[c == O_NVME_BW ? AN_NVME : AN_DISK]))
                goto bad_value;
            break;
        case O_LOAD:
            if (!strcmp(optarg, "plan")) cfg.load_all = 0;
            else if (!strcmp(optarg, "all")) cfg.load_all = 1;
            else goto bad_value;
            break;
        case O_THREADS:
            if (parse_u(optarg, 64, &v) || v == 0) goto bad_value;
            cfg.threads = (uint32_t)v;
            break;
        default:
            fprintf(stderr, "kvtier analyze: unknown option or missing value: %s\n",
                    argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
        continue;
    bad_value:
        fprintf(stderr, "kvtier analyze: bad value for --%s: '%s'\n", lo[c - O_FORMAT].name,
                optarg);
        return EXIT_USAGE;
    }
    if (optind != argc - 1) {
        fprintf(stderr, "kvtier analyze: expected one trace file\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *path = argv[optind];
    if (an_model_lookup(model, &cfg.model)) {
        fprintf(stderr, "kvtier analyze: unknown model '%s' (llama3-8b, llama3-70b)\n", model);
        return EXIT_USAGE;
    }
    for (int i = AN_DRAM; i < AN_TIERS; i++) {
        if (size_arg[i] && parse_size(size_arg[i], cfg.model.kv_bytes_per_token, &cfg.cap[i])) {
            fprintf(stderr, "kvtier analyze: bad size for --%s: '%s'\n", an_tier_name[i],
                    size_arg[i]);
            return EXIT_USAGE;
        }
    }
    if (!cfg.cap[AN_DRAM]) {
        fprintf(stderr, "kvtier analyze: --dram must be > 0\n");
        return EXIT_USAGE;
    }
    if (!KVT_AN_HAVE_SIM && (cfg.cap[AN_NVME] || cfg.cap[AN_DISK])) {
        fprintf(stderr, "kvtier analyze: --nvme/--disk need the engine's data-free simulation "
                        "mode, which this build's engine does not have yet; only the DRAM tier "
                        "can be replayed\n");
        return EXIT_USAGE;
    }

    an_trace t;
    int rc = an_trace_load(path, &lo_opts, &t);
    if (rc) {
        if (rc != -EINVAL || !lo_opts.strict)
            fprintf(stderr, "kvtier analyze: %s: %s\n", path,
                    rc == -EINVAL ? "no usable trace" : strerror(-rc));
        return rc == -ENOMEM ? 1 : EXIT_USAGE;
    }
    if (an_block_bytes(&cfg, t.bt) > cfg.cap[AN_DRAM]) {
        fprintf(stderr, "kvtier analyze: --dram holds less than one %" PRIu32 "-token block\n",
                t.bt);
        an_trace_free(&t);
        return EXIT_USAGE;
    }

    an_result res;
    an_sweep sw = {0};
    an_multinode mn = {0};
    an_progress prog = {.on = !quiet && isatty(2), .last_permille = -1, .what = "replay"};
    prog.total = (uint64_t)t.n_req * (1 + (cfg.sweep_points ? 3 * cfg.sweep_points + 2 : 0) +
                                      (cfg.nodes ? 3 : 0));
    int exit_code = 1;
    if ((rc = an_replay(&t, &cfg, &res, &prog))) {
        an_progress_end(&prog);
        fprintf(stderr, "kvtier analyze: replay failed: %s\n", kvt_strerror(rc));
        an_trace_free(&t);
        return rc == -ENOTSUP ? EXIT_USAGE : 1;
    }
    if (cfg.sweep_points) {
        prog.what = "sweep";
        if ((rc = an_sweep_run(&t, &cfg, res.cap_blocks[AN_DRAM], &sw, &prog))) {
            fprintf(stderr, "kvtier analyze: capacity sweep failed: %s\n", kvt_strerror(rc));
            goto out;
        }
    }
    if (cfg.nodes) {
        prog.what = "nodes";
        if ((rc = an_multinode_run(&t, &cfg, res.cap_blocks[AN_DRAM], &mn, &prog))) {
            fprintf(stderr, "kvtier analyze: multi-node simulation failed: %s\n",
                    kvt_strerror(rc));
            goto out;
        }
    }
    an_progress_end(&prog);
    an_report rep = {.input = path, .trace = &t, .cfg = &cfg, .res = &res,
                     .sweep = cfg.sweep_points ? &sw : NULL, .mn = cfg.nodes ? &mn : NULL};
    if (json) {
        if ((rc = an_report_json(stdout, &rep))) {
            fprintf(stderr, "kvtier analyze: JSON report: %s\n", strerror(-rc));
            goto out;
        }
    } else {
        an_report_text(stdout, &rep);
    }
    if (html) {
        FILE *f = fopen(html, "w");
        if (!f) {
            fprintf(stderr, "kvtier analyze: %s: %s\n", html, strerror(errno));
            goto out;
        }
        rc = an_report_html(f, &rep);
        if (fclose(f) || rc) {
            fprintf(stderr, "kvtier analyze: %s: could not write the report\n", html);
            goto out;
        }
    }
    if (fflush(stdout)) {
        fprintf(stderr, "kvtier analyze: stdout: %s\n", strerror(errno));
        goto out;
    }
    exit_code = 0;
out:
    an_progress_end(&prog);
    an_sweep_free(&sw);
    an_result_free(&res);
    an_trace_free(&t);
    return exit_code;
}
