/*
 * report.c — the analysis as terminal tables, JSON (jansson) and a self-contained HTML page
 * with inline SVG charts (no scripts, no network).
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "an.h"
#include "evict/cost.h" /* layering: until exported through kvtier.h */

#define DEF_HIT "a request's block is a hit only if every block before it in that request hit"
#define DEF_RATE "token hit rate = hit tokens / input tokens, the final partial block counted " \
                 "with its real token count; block hit rate = hit blocks / blocks"

void an_fmt_bytes(char *buf, size_t n, double b)
{
    static const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
    int i = 0;
    while (b >= 1024 && i < 6) {
        b /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

void an_fmt_secs(char *buf, size_t n, double s)
{
    if (s < 1e-3)
        snprintf(buf, n, "%.1f us", s * 1e6);
    else if (s < 1)
        snprintf(buf, n, "%.1f ms", s * 1e3);
    else if (s < 120)
        snprintf(buf, n, "%.2f s", s);
    else if (s < 7200)
        snprintf(buf, n, "%.1f min", s / 60);
    else
        snprintf(buf, n, "%.1f h", s / 3600);
}

static void fmt_count(char *buf, size_t n, double v)
{
    if (v >= 1e9)
        snprintf(buf, n, "%.2fG", v / 1e9);
    else if (v >= 1e6)
        snprintf(buf, n, "%.2fM", v / 1e6);
    else if (v >= 1e4)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.0f", v);
}

static const char *fmt_name(an_format f)
{
    return f == AN_FMT_MOONCAKE ? "mooncake" : f == AN_FMT_TOKENS ? "tokens" : f == AN_FMT_LOG ? "log" : "auto";
}

static int dcmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* p50/p90/p99 and mean of the per-request TTFT savings. */
static void ttft_stats(const an_result *r, double out[4])
{
    size_t n = r->total.requests;
    memset(out, 0, 4 * sizeof(double));
    if (!n)
        return;
    double *v = malloc(n * sizeof *v), sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += r->ttft_saved_s[i];
    out[0] = sum / (double)n;
    if (!v)
        return;
    memcpy(v, r->ttft_saved_s, n * sizeof *v);
    qsort(v, n, sizeof *v, dcmp);
    out[1] = v[(n - 1) / 2];
    out[2] = v[(size_t)((double)(n - 1) * 0.9)];
    out[3] = v[(size_t)((double)(n - 1) * 0.99)];
    free(v);
}

static double bin_lo_s(int b) /* lower edge of reuse bin b (1..AN_REUSE_BINS) */
{
    return pow(10.0, (b - 1) / 4.0 - 3.0);
}

static const char *engine_mode(const an_result *r)
{
    return r->simulated ? "engine data-free simulation mode, modeled layout"
                        : "real DRAM engine over a tiny layout (2 bytes/token): capacities "
                          "scaled to block counts of the modeled layout; every hit is a DRAM "
                          "hit (the data-free simulation mode is not in this build)";
}

/* ---------------------------------------------------------------- text */

void an_report_text(FILE *f, const an_report *rp)
{
    const an_trace *t = rp->trace;
    const an_config *c = rp->cfg;
    const an_result *r = rp->res;
    const an_counts *a = &r->total;
    const uint64_t bb = an_block_bytes(c, t->bt);
    char b1[32], b2[32], b3[32], b4[32];

    fmt_count(b1, sizeof b1, (double)a->input_tokens);
    fprintf(f, "kvtier analyze: %s\n", rp->input);
    fprintf(f, "  trace     %s, %" PRIu64 " requests, %s input tokens, %zu tenant(s), "
               "%zu namespace(s), %zu malformed line(s) skipped\n",
            fmt_name(t->format), a->requests, b1, t->n_tenants, t->n_ns, t->bad_lines);
    an_fmt_bytes(b1, sizeof b1, (double)c->model.kv_bytes_per_token);
    an_fmt_bytes(b2, sizeof b2, (double)bb);
    fprintf(f, "  model     %s: %s/token; block %" PRIu32 " tokens = %s\n", c->model.name, b1,
            t->bt, b2);
    fprintf(f, "  tiers    ");
    for (int i = AN_DRAM; i < AN_TIERS; i++)
        if (c->cap[i]) {
            an_fmt_bytes(b1, sizeof b1, (double)c->cap[i]);
            fprintf(f, " %s %s (%" PRIu64 " blocks%s, drain %s", an_tier_name[i], b1,
                    c->cap[i] / bb, i == AN_DRAM && r->cap_blocks[AN_DRAM] < c->cap[i] / bb
                                        ? ", more than the trace can fill" : "",
                    (an_fmt_secs(b3, sizeof b3, r->drain_s[i]), b3));
            if (c->bw[i] > 0)
                fprintf(f, ", %.3g GB/s", c->bw[i] / 1e9);
            fprintf(f, ")");
        }
    fprintf(f, "; policy %s; load %s; ttl ", an_policy_name[c->policy],
            c->load_all ? "all" : "plan");
    if (c->ttl_ms >= 0)
        an_fmt_secs(b1, sizeof b1, (double)c->ttl_ms / 1000.0), fprintf(f, "%s", b1);
    else
        fprintf(f, "none");
    fprintf(f, "; tenants %s\n", c->tenant_mode == AN_TENANT_POOL ? "pooled" : "with equal quotas");
    fprintf(f, "  replay    %s\n", engine_mode(r));
    fprintf(f, "  defs      " DEF_HIT ";\n            " DEF_RATE "\n\n");

    fprintf(f, "Hit rates\n");
    fprintf(f, "  token hit rate            %6.2f%%   %" PRIu64 " of %" PRIu64 " tokens\n",
            100 * an_rate(a->hit_tokens, a->input_tokens), a->hit_tokens, a->input_tokens);
    fprintf(f, "  block hit rate            %6.2f%%   %" PRIu64 " of %" PRIu64 " blocks\n",
            100 * an_rate(a->hit_blocks, a->blocks), a->hit_blocks, a->blocks);
    fprintf(f, "  infinite capacity         %6.2f%%   tokens (%6.2f%% blocks): the most any "
               "capacity gives this trace\n",
            100 * an_rate(r->inf_hit_tokens, a->input_tokens), 100 * an_rate(r->inf_hit_blocks, a->blocks));
    if (r->obs_requests)
        fprintf(f, "  service-reported          %" PRIu64 " hit blocks in %" PRIu64
                   " logged requests (replay: %" PRIu64 ")\n",
                r->obs_hit_blocks, r->obs_requests, a->hit_blocks);

    fprintf(f, "\nHits per tier                blocks       tokens   share    bytes loaded   bytes "
               "written\n");
    for (int i = 0; i < AN_TIERS; i++) {
        an_fmt_bytes(b1, sizeof b1, (double)r->tier_read_bytes[i]);
        an_fmt_bytes(b2, sizeof b2, (double)r->tier_write_bytes[i]);
        fprintf(f, "  %-22s %12" PRIu64 " %12" PRIu64 " %6.2f%% %15s %15s\n", an_tier_name[i],
                r->tier_hit_blocks[i], r->tier_hit_tokens[i],
                100 * an_rate(r->tier_hit_tokens[i], a->hit_tokens), b1,
                i >= AN_NVME ? b2 : "-");
    }
    an_fmt_bytes(b1, sizeof b1, (double)r->write_bytes);
    fprintf(f, "  written by puts: %" PRIu64 " blocks, %s; evicted %" PRIu64 " blocks; puts "
               "short of space %" PRIu64 "\n",
            r->stored_blocks, b1, r->evicted_blocks, r->put_nospace);

    double tt[4];
    ttft_stats(r, tt);
    an_fmt_secs(b1, sizeof b1, r->prefill_all_s);
    an_fmt_secs(b2, sizeof b2, r->prefill_cache_s);
    an_fmt_secs(b3, sizeof b3, r->compute_saved_s);
    fprintf(f, "\nPrefill (cost model, DESIGN.md §3: H100 at %.1f TFLOP/s effective, $%.2f/h)\n",
            EVICT_GPU_PEAK_FLOPS * EVICT_GPU_MFU / 1e12, EVICT_GPU_USD_PER_HOUR);
    uint64_t declined_tok = r->plan_declined_blocks * t->bt; /* hits are whole blocks */
    fprintf(f, "  prefill tokens saved      %" PRIu64 " (the hit tokens the plan loaded; %" PRIu64
               " hit tokens recomputed)\n", a->hit_tokens - declined_tok, declined_tok);
    fprintf(f, "  prefill GPU time          %s without the cache, %s with it; recompute "
               "saved %s\n", b1, b2, b3);
    an_fmt_secs(b1, sizeof b1, tt[0]);
    an_fmt_secs(b2, sizeof b2, tt[1]);
    an_fmt_secs(b3, sizeof b3, tt[2]);
    an_fmt_secs(b4, sizeof b4, tt[3]);
    fprintf(f, "  TTFT saved per request    mean %s, p50 %s, p90 %s, p99 %s\n", b1, b2, b3, b4);
    if (c->load_all)
        fprintf(f, "  every hit loaded (--load all: no load plan)\n");
    else
        fprintf(f, "  hits the load plan recomputed (loading them was slower): %" PRIu64
                   " blocks, %" PRIu64 " tokens\n",
                r->plan_declined_blocks, r->plan_declined_blocks * t->bt);
    an_fmt_secs(b1, sizeof b1, r->duration_s);
    fprintf(f, "\nCost over the trace's %s\n", b1);
    fprintf(f, "  GPU prefill without cache $%.4f; with cache $%.4f; tier capacity held $%.4f;"
               " net saving $%.4f\n",
            r->usd_nocache, r->usd_cache_gpu, r->usd_hold,
            r->usd_nocache - r->usd_cache_gpu - r->usd_hold);

    fprintf(f, "\nMisses by class              blocks       tokens   of input tokens\n");
    for (int m = 0; m < AN_MISS_N; m++)
        fprintf(f, "  %-22s %12" PRIu64 " %12" PRIu64 " %6.2f%%\n", an_miss_name[m],
                a->miss_blocks[m], a->miss_tokens[m], 100 * an_rate(a->miss_tokens[m], a->input_tokens));

    fprintf(f, "\nPer tenant             requests   input tok  tok hit  blk hit   first  "
               "capacity   ttl  partial other-ns  (miss blocks)\n");
    for (size_t i = 0; i < t->n_tenants; i++) {
        const an_counts *x = &r->tenant[i];
        fmt_count(b1, sizeof b1, (double)x->input_tokens);
        fprintf(f, "  %-20.20s %10" PRIu64 " %11s %7.2f%% %7.2f%% %7" PRIu64 " %9" PRIu64
                   " %5" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n",
                t->tenants[i], x->requests, b1, 100 * an_rate(x->hit_tokens, x->input_tokens),
                100 * an_rate(x->hit_blocks, x->blocks), x->miss_blocks[AN_MISS_FIRST],
                x->miss_blocks[AN_MISS_CAPACITY], x->miss_blocks[AN_MISS_TTL],
                x->miss_blocks[AN_MISS_PARTIAL], x->miss_blocks[AN_MISS_OTHER_NS]);
    }

    fprintf(f, "\nReuse intervals (%" PRIu64 " reuses of a block requested before)\n", r->reuse_n);
    for (int i = 0; i < AN_TIERS; i++)
        if (r->drain_s[i] > 0) {
            an_fmt_secs(b1, sizeof b1, r->drain_s[i]);
            fprintf(f, "  within %-4s drain time %-9s %6.2f%%%s\n", an_tier_name[i], b1,
                    100 * an_rate(r->reuse_within[i], r->reuse_n),
                    i == AN_HBM ? "  (80 GiB H100, not replayed)" : "");
        }
    {
        /* one row per decade */
        uint64_t mx = 1;
        uint64_t dec[12] = {0};
        dec[0] = r->reuse_hist[0];
        for (int b = 1; b <= AN_REUSE_BINS; b++)
            dec[1 + (b - 1) / 4] += r->reuse_hist[b];
        dec[11] = r->reuse_hist[AN_REUSE_BINS + 1];
        for (int d = 0; d < 12; d++)
            if (dec[d] > mx)
                mx = dec[d];
        for (int d = 0; d < 12; d++) {
            char lab[80], bar[41];
            if (d == 0)
                snprintf(lab, sizeof lab, "< 1 ms (same ms)");
            else if (d == 11)
                snprintf(lab, sizeof lab, ">= 1e7 s");
            else {
                an_fmt_secs(b1, sizeof b1, pow(10, d - 4));
                an_fmt_secs(b2, sizeof b2, pow(10, d - 3));
                snprintf(lab, sizeof lab, "%s - %s", b1, b2);
            }
            int w = (int)(dec[d] * 40 / mx);
            memset(bar, '#', (size_t)w);
            bar[w] = 0;
            fprintf(f, "  %-20s %10" PRIu64 " %s\n", lab, dec[d], bar);
        }
    }

    if (r->n_top) {
        fprintf(f, "\nMost shared prefixes (by prefill tokens their reuse saves)\n");
        fprintf(f, "  %-4s %-18s %-24s %8s %8s %12s\n", "rank", "block key", "namespace",
                "tokens", "uses", "tokens saved");
        for (size_t i = 0; i < r->n_top; i++) {
            const an_prefix *p = &r->top[i];
            char ns[2 * KVT_NAME_MAX + 2];
            snprintf(ns, sizeof ns, "%s/%s", t->ns_name[p->ns], t->tenants[t->ns_tenant[p->ns]]);
            fprintf(f, "  %-4zu %016" PRIx64 "   %-24.24s %8" PRIu64 " %8" PRIu64 " %12" PRIu64 "\n",
                    i + 1, p->key, ns, (uint64_t)p->depth * t->bt, p->uses,
                    (p->uses - 1) * p->depth * (uint64_t)t->bt);
        }
    }

    if (rp->sweep) {
        const an_sweep *sw = rp->sweep;
        fprintf(f, "\nCapacity sweep: token hit rate of one DRAM tier of that capacity (lru, lfu, "
                   "drain from the engine;\n  belady = offline bound, prefix-unaware: an upper "
                   "bound; flat lru = LRU over block ids\n  without the prefix rule, a "
                   "cross-check; n/a: policy not in this engine build)\n");
        fprintf(f, "  %10s %12s %12s %8s %8s %8s %8s %9s\n", "blocks", "tokens", "bytes", "lru",
                "lfu", "drain", "belady", "flat lru");
        for (size_t i = 0; i < sw->n; i++) {
            const an_sweep_point *p = &sw->pt[i];
            fmt_count(b1, sizeof b1, (double)p->cap_blocks * t->bt);
            an_fmt_bytes(b2, sizeof b2, (double)p->cap_blocks * (double)bb);
            char pr[AN_POL_N][16];
            for (int k = 0; k < AN_POL_N; k++)
                if (isnan(p->hit_rate[k]))
                    snprintf(pr[k], sizeof pr[k], "n/a");
                else
                    snprintf(pr[k], sizeof pr[k], "%.2f%%", 100 * p->hit_rate[k]);
            fprintf(f, "  %10" PRIu64 " %12s %12s %8s %8s %8s %7.2f%% %8.2f%%%s\n",
                    p->cap_blocks, b1, b2, pr[AN_POL_LRU], pr[AN_POL_LFU], pr[AN_POL_DRAIN],
                    100 * p->belady, 100 * p->lru_flat,
                    p->cap_blocks == r->cap_blocks[AN_DRAM] ? "  <- --dram" : "");
        }
        fprintf(f, "  infinite capacity: %.2f%% (%" PRIu64 " distinct cacheable blocks)\n",
                100 * sw->inf_hit_rate, sw->distinct_blocks);
    }
    if (rp->mn) {
        const an_multinode *m = rp->mn;
        an_fmt_bytes(b1, sizeof b1, (double)m->node_cap_blocks * (double)bb);
        fprintf(f, "\nMulti-node: %" PRIu32 " nodes, each with the same local capacity "
                   "(%" PRIu64 " blocks, %s), against one pool of %" PRIu32 "x that shared "
                   "by all\n",
                m->nodes, m->node_cap_blocks, b1, m->nodes);
        fprintf(f, "  random routing (seed %" PRIu64 ")   %6.2f%%   load max/mean %.2f\n", m->seed,
                100 * m->hit_random, m->imbalance_random);
        fprintf(f, "  prefix-aware routing      %6.2f%%   load max/mean %.2f (longest cached prefix "
                   "among nodes within 10%% of the mean load)\n",
                100 * m->hit_prefix, m->imbalance_prefix);
        fprintf(f, "  shared pool               %6.2f%%\n", 100 * m->hit_pool);
        if (c->ttl_ms >= 0)
            fprintf(f, "  (TTLs are not applied in the multi-node simulation)\n");
    }
}

/* ---------------------------------------------------------------- JSON */

static json_t *counts_json(const an_counts *x)
{
    json_t *o = json_object(), *mb = json_object(), *mt = json_object();
    if (!o || !mb || !mt) {
        json_decref(o);
        json_decref(mb);
        json_decref(mt);
        return NULL;
    }
    json_object_set_new(o, "requests", json_integer((json_int_t)x->requests));
    json_object_set_new(o, "input_tokens", json_integer((json_int_t)x->input_tokens));
    json_object_set_new(o, "hit_tokens", json_integer((json_int_t)x->hit_tokens));
    json_object_set_new(o, "blocks", json_integer((json_int_t)x->blocks));
    json_object_set_new(o, "hit_blocks", json_integer((json_int_t)x->hit_blocks));
    json_object_set_new(o, "token_hit_rate", json_real(an_rate(x->hit_tokens, x->input_tokens)));
    json_object_set_new(o, "block_hit_rate", json_real(an_rate(x->hit_blocks, x->blocks)));
    for (int m = 0; m < AN_MISS_N; m++) {
        json_object_set_new(mb, an_miss_name[m], json_integer((json_int_t)x->miss_blocks[m]));
        json_object_set_new(mt, an_miss_name[m], json_integer((json_int_t)x->miss_tokens[m]));
    }
    json_object_set_new(o, "miss_blocks", mb);
    json_object_set_new(o, "miss_tokens", mt);
    return o;
}

static json_t *rate_or_null(double v) { return isnan(v) ? json_null() : json_real(v); }

/* The whole report as one JSON object (the caller owns it). NULL: out of memory. */
static json_t *report_json(const an_report *rp)
{
    const an_trace *t = rp->trace;
    const an_config *c = rp->cfg;
    const an_result *r = rp->res;
    const uint64_t bb = an_block_bytes(c, t->bt);
    json_t *o = json_object();
    if (!o)
        return NULL;
#define SETI(obj, k, v) json_object_set_new(obj, k, json_integer((json_int_t)(v)))
#define SETR(obj, k, v) json_object_set_new(obj, k, json_real(v))
#define SETS(obj, k, v) json_object_set_new(obj, k, json_string(v))
    json_t *in = json_object();
    SETS(in, "path", rp->input);
    SETS(in, "format", fmt_name(t->format));
    SETI(in, "block_tokens", t->bt);
    SETI(in, "requests", t->n_req);
    SETI(in, "lines", t->lines);
    SETI(in, "malformed_lines_skipped", t->bad_lines);
    SETI(in, "tenants", t->n_tenants);
    SETI(in, "namespaces", t->n_ns);
    json_object_set_new(o, "input", in);

    json_t *cf = json_object(), *tiers = json_object();
    SETS(cf, "model", c->model.name);
    SETI(cf, "kv_bytes_per_token", c->model.kv_bytes_per_token);
    SETI(cf, "block_bytes", bb);
    for (int i = AN_DRAM; i < AN_TIERS; i++)
        if (c->cap[i]) {
            json_t *ti = json_object();
            SETI(ti, "bytes", c->cap[i]);
            SETI(ti, "blocks", c->cap[i] / bb);
            SETI(ti, "blocks_replayed", r->cap_blocks[i]);
            SETR(ti, "drain_s", r->drain_s[i]);
            if (c->bw[i] > 0)
                SETR(ti, "bandwidth_bytes_s", c->bw[i]);
            json_object_set_new(tiers, an_tier_name[i], ti);
        }
    json_object_set_new(cf, "tiers", tiers);
    SETS(cf, "policy", an_policy_name[c->policy]);
    SETS(cf, "load", c->load_all ? "all" : "plan");
    json_object_set_new(cf, "ttl_s", c->ttl_ms >= 0 ? json_real((double)c->ttl_ms / 1000.0) : json_null());
    SETS(cf, "tenant_mode", c->tenant_mode == AN_TENANT_POOL ? "pool" : "quota");
    json_object_set_new(cf, "engine_simulate", json_boolean(r->simulated));
    SETS(cf, "engine_mode", engine_mode(r));
    json_object_set_new(o, "config", cf);

    json_t *defs = json_object();
    SETS(defs, "hit", DEF_HIT);
    SETS(defs, "hit_rate", DEF_RATE);
    json_object_set_new(o, "definitions", defs);

    json_object_set_new(o, "total", counts_json(&r->total));
    json_t *inf = json_object();
    SETI(inf, "hit_tokens", r->inf_hit_tokens);
    SETI(inf, "hit_blocks", r->inf_hit_blocks);
    SETR(inf, "token_hit_rate", an_rate(r->inf_hit_tokens, r->total.input_tokens));
    SETR(inf, "block_hit_rate", an_rate(r->inf_hit_blocks, r->total.blocks));
    json_object_set_new(o, "infinite_capacity", inf);

    json_t *ti = json_object();
    for (int i = 0; i < AN_TIERS; i++) {
        json_t *x = json_object();
        SETI(x, "hit_blocks", r->tier_hit_blocks[i]);
        SETI(x, "hit_tokens", r->tier_hit_tokens[i]);
        SETI(x, "bytes_loaded", r->tier_read_bytes[i]);
        SETI(x, "bytes_written", r->tier_write_bytes[i]);
        json_object_set_new(ti, an_tier_name[i], x);
    }
    json_object_set_new(o, "tiers", ti);
    json_t *mv = json_object();
    SETI(mv, "stored_blocks", r->stored_blocks);
    SETI(mv, "bytes_written", r->write_bytes);
    SETI(mv, "evicted_blocks", r->evicted_blocks);
    SETI(mv, "puts_short_of_space", r->put_nospace);
    json_object_set_new(o, "writes", mv);

    double tt[4];
    ttft_stats(r, tt);
    json_t *pf = json_object();
    SETI(pf, "tokens_saved", r->total.hit_tokens - r->plan_declined_blocks * t->bt);
    SETI(pf, "hit_tokens_recomputed", r->plan_declined_blocks * t->bt);
    SETR(pf, "gpu_s_without_cache", r->prefill_all_s);
    SETR(pf, "gpu_s_with_cache", r->prefill_cache_s);
    SETR(pf, "recompute_s_saved", r->compute_saved_s);
    SETR(pf, "ttft_saved_mean_s", tt[0]);
    SETR(pf, "ttft_saved_p50_s", tt[1]);
    SETR(pf, "ttft_saved_p90_s", tt[2]);
    SETR(pf, "ttft_saved_p99_s", tt[3]);
    SETI(pf, "hits_recomputed_by_plan", r->plan_declined_blocks);
    json_object_set_new(o, "prefill", pf);
    json_t *co = json_object();
    SETR(co, "duration_s", r->duration_s);
    SETR(co, "usd_gpu_without_cache", r->usd_nocache);
    SETR(co, "usd_gpu_with_cache", r->usd_cache_gpu);
    SETR(co, "usd_tier_hold", r->usd_hold);
    SETR(co, "usd_net_saving", r->usd_nocache - r->usd_cache_gpu - r->usd_hold);
    json_object_set_new(o, "cost", co);

    json_t *tn = json_object();
    for (size_t i = 0; i < t->n_tenants; i++)
        json_object_set_new(tn, t->tenants[i], counts_json(&r->tenant[i]));
    json_object_set_new(o, "tenants", tn);

    json_t *ru = json_object(), *h = json_array(), *wi = json_object();
    SETI(ru, "reuses", r->reuse_n);
    for (int b = 0; b < AN_REUSE_BINS + 2; b++) {
        json_t *x = json_object();
        json_object_set_new(x, "lo_s", b == 0 ? json_real(0) : json_real(bin_lo_s(b)));
        json_object_set_new(x, "hi_s", b == AN_REUSE_BINS + 1 ? json_null() : json_real(bin_lo_s(b + 1)));
        SETI(x, "count", r->reuse_hist[b]);
        json_array_append_new(h, x);
    }
    json_object_set_new(ru, "histogram", h);
    for (int i = 0; i < AN_TIERS; i++)
        if (r->drain_s[i] > 0) {
            json_t *x = json_object();
            SETR(x, "drain_s", r->drain_s[i]);
            SETI(x, "reuses_within", r->reuse_within[i]);
            SETR(x, "share", an_rate(r->reuse_within[i], r->reuse_n));
            json_object_set_new(wi, an_tier_name[i], x);
        }
    json_object_set_new(ru, "within_drain_time", wi);
    json_object_set_new(o, "reuse_intervals", ru);

    json_t *tp = json_array();
    for (size_t i = 0; i < r->n_top; i++) {
        const an_prefix *p = &r->top[i];
        json_t *x = json_object();
        char k[20];
        snprintf(k, sizeof k, "%016" PRIx64, p->key);
        SETS(x, "key", k);
        SETS(x, "ns", t->ns_name[p->ns]);
        SETS(x, "tenant", t->tenants[t->ns_tenant[p->ns]]);
        SETI(x, "blocks", p->depth);
        SETI(x, "tokens", (uint64_t)p->depth * t->bt);
        SETI(x, "uses", p->uses);
        SETI(x, "tokens_saved", (p->uses - 1) * p->depth * (uint64_t)t->bt);
        SETI(x, "first_ms", p->first_ms);
        SETI(x, "last_ms", p->last_ms);
        json_array_append_new(tp, x);
    }
    json_object_set_new(o, "shared_prefixes", tp);

    if (r->obs_requests) {
        json_t *x = json_object(), *pt = json_object();
        SETI(x, "requests", r->obs_requests);
        SETI(x, "hit_blocks", r->obs_hit_blocks);
        for (int i = 0; i < AN_TIERS; i++)
            SETI(pt, an_tier_name[i], r->obs_tier_blocks[i]);
        json_object_set_new(x, "hit_blocks_per_tier", pt);
        json_object_set_new(o, "service_reported", x);
    }

    if (rp->sweep) {
        const an_sweep *sw = rp->sweep;
        json_t *x = json_object(), *pts = json_array(), *na = json_array();
        SETR(x, "infinite_capacity", sw->inf_hit_rate);
        SETI(x, "distinct_blocks", sw->distinct_blocks);
        for (int p = 0; p < AN_POL_N; p++)
            if (!an_policy_in_engine((an_policy)p))
                json_array_append_new(na, json_string(an_policy_name[p]));
        json_object_set_new(x, "not_in_engine_yet", na);
        for (size_t i = 0; i < sw->n; i++) {
            const an_sweep_point *p = &sw->pt[i];
            json_t *y = json_object();
            SETI(y, "blocks", p->cap_blocks);
            SETI(y, "tokens", p->cap_blocks * t->bt);
            SETI(y, "bytes", p->cap_blocks * bb);
            for (int pol = 0; pol < AN_POL_N; pol++)
                json_object_set_new(y, an_policy_name[pol], rate_or_null(p->hit_rate[pol]));
            SETR(y, "belady", p->belady);
            SETR(y, "lru_flat", p->lru_flat);
            json_array_append_new(pts, y);
        }
        json_object_set_new(x, "points", pts);
        json_object_set_new(o, "capacity_sweep", x);
    }
    if (rp->mn) {
        const an_multinode *m = rp->mn;
        json_t *x = json_object();
        SETI(x, "nodes", m->nodes);
        SETI(x, "node_capacity_blocks", m->node_cap_blocks);
        SETI(x, "node_capacity_bytes", m->node_cap_blocks * bb);
        SETS(x, "capacity_rule", "each node has the configured DRAM capacity; the pool has nodes x that");
        SETI(x, "seed", m->seed);
        SETR(x, "random", m->hit_random);
        SETR(x, "prefix_aware", m->hit_prefix);
        SETR(x, "pool", m->hit_pool);
        SETR(x, "imbalance_random", m->imbalance_random);
        SETR(x, "imbalance_prefix_aware", m->imbalance_prefix);
        json_object_set_new(o, "multi_node", x);
    }
    return o;
}

int an_report_json(FILE *f, const an_report *rp)
{
    json_t *o = report_json(rp);
    if (!o)
        return -ENOMEM;
    int rc = json_dumpf(o, f, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
    json_decref(o);
    if (rc)
        return -EIO;
    fputc('\n', f);
    return 0;
}

/* ---------------------------------------------------------------- HTML */

static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

#define W 720
#define H 320
#define ML 60
#define MR 170
#define MT 20
#define MB 50

static const char *const colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"};

/* x: log10 scale over [lx0, lx1]; y: linear over [0, ymax]. */
static double sx(double lx, double lx0, double lx1)
{
    return ML + (lx - lx0) / (lx1 - lx0 > 0 ? lx1 - lx0 : 1) * (W - ML - MR);
}
static double sy(double y, double ymax) { return H - MB - y / ymax * (H - MT - MB); }

static void svg_open(FILE *f, const char *title)
{
    fprintf(f, "<figure><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\"><title>", W, H, W, H);
    esc(f, title);
    fprintf(f, "</title><rect width=\"%d\" height=\"%d\" fill=\"#fff\"/>", W, H);
}

static void svg_yaxis(FILE *f, double ymax, int pct)
{
    for (int i = 0; i <= 5; i++) {
        double v = ymax * i / 5, y = sy(v, ymax);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>", ML,
                W - MR, y, y);
        if (pct)
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%.0f%%</text>",
                    ML - 4, y + 4, 100 * v);
        else
        {
            char b[32];
            fmt_count(b, sizeof b, v);
            fprintf(f, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\">%s</text>",
                    ML - 4, y + 4, b);
        }
    }
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"#000\"/>", ML, W - MR,
            H - MB, H - MB);
}

static void svg_legend(FILE *f, int i, const char *color, const char *dash, const char *label)
{
    int y = MT + 10 + i * 18;
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"2\" "
               "stroke-dasharray=\"%s\"/><text x=\"%d\" y=\"%d\" font-size=\"11\">",
            W - MR + 10, W - MR + 30, y, y, color, dash, W - MR + 34, y + 4);
    esc(f, label);
    fputs("</text>", f);
}

static void chart_sweep(FILE *f, const an_report *rp)
{
    const an_sweep *sw = rp->sweep;
    const an_trace *t = rp->trace;
    if (!sw || !sw->n)
        return;
    double lx0 = log10((double)sw->pt[0].cap_blocks * t->bt);
    double lx1 = log10((double)sw->pt[sw->n - 1].cap_blocks * t->bt);
    if (lx1 <= lx0)
        lx1 = lx0 + 1;
    double ymax = 0.05;
    for (size_t i = 0; i < sw->n; i++) {
        ymax = fmax(ymax, sw->pt[i].belady);
        for (int p = 0; p < AN_POL_N; p++)
            if (!isnan(sw->pt[i].hit_rate[p]))
                ymax = fmax(ymax, sw->pt[i].hit_rate[p]);
    }
    ymax = fmax(ymax, sw->inf_hit_rate);
    ymax = fmin(1.0, ceil(ymax * 10 + 0.5) / 10);
    svg_open(f, "token hit rate against capacity, per policy");
    svg_yaxis(f, ymax, 1);
    for (double d = ceil(lx0); d <= floor(lx1); d += 1) {
        double x = sx(d, lx0, lx1);
        char b[32];
        fmt_count(b, sizeof b, pow(10, d));
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#eee\"/>"
                   "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>",
                x, x, MT, H - MB, x, H - MB + 14, b);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">capacity "
               "(tokens, log scale)</text>", (ML + W - MR) / 2, H - 12);
    /* lru, lfu, drain (those in the engine), belady, flat lru; then infinite capacity */
    static const char *const dash[] = {"", "8,3", "3,2", "6,3", "2,3"};
    static const char *const label[] = {"lru (engine)", "lfu (engine)", "drain (engine)",
                                        "belady bound", "flat lru (ids)"};
    static const char *const scol[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"};
    int li = 0;
    for (int s = 0; s < 5; s++) {
        if (s < AN_POL_N && !an_policy_in_engine((an_policy)s))
            continue;
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
                   "stroke-dasharray=\"%s\" points=\"", scol[s], dash[s]);
        for (size_t i = 0; i < sw->n; i++) {
            const an_sweep_point *p = &sw->pt[i];
            double v = s < AN_POL_N ? p->hit_rate[s] : s == 3 ? p->belady : p->lru_flat;
            if (isnan(v))
                continue;
            fprintf(f, "%.1f,%.1f ", sx(log10((double)p->cap_blocks * t->bt), lx0, lx1), sy(v, ymax));
        }
        fputs("\"/>", f);
        svg_legend(f, li++, scol[s], dash[s], label[s]);
    }
    double yi = sy(sw->inf_hit_rate, ymax);
    fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" "
               "stroke-dasharray=\"1,3\"/>", ML, W - MR, yi, yi);
    svg_legend(f, li++, "#000", "1,3", "infinite capacity");
    uint64_t cb = rp->res->cap_blocks[AN_DRAM];
    double lc = log10((double)cb * t->bt);
    if (lc >= lx0 && lc <= lx1) {
        double x = sx(lc, lx0, lx1);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#888\" "
                   "stroke-dasharray=\"4,4\"/><text x=\"%.1f\" y=\"%d\" font-size=\"10\" "
                   "text-anchor=\"end\" fill=\"#555\">--dram</text>",
                x, x, MT, H - MB, x - 3, MT + 10);
    }
    for (int p = 0; p < AN_POL_N; p++)
        if (!an_policy_in_engine((an_policy)p)) {
            char b[64];
            snprintf(b, sizeof b, "%s: not in engine yet", an_policy_name[p]);
            fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"11\" fill=\"#888\">", W - MR + 10,
                    MT + 14 + li++ * 18);
            esc(f, b);
            fputs("</text>", f);
        }
    fputs("</svg><figcaption>Token hit rate against capacity for each policy. Belady is the "
          "offline optimum over block ids (it ignores the prefix rule, so it is an upper bound); "
          "flat lru is LRU over block ids without the prefix rule (it mostly lies under lru); the "
          "dashed vertical line is the configured --dram.</figcaption></figure>\n", f);
}

static void chart_bars(FILE *f, const char *title, const char *caption, const char *const *labels,
                       const uint64_t *v, int n, uint64_t den)
{
    double ymax = 0.05;
    for (int i = 0; i < n; i++)
        ymax = fmax(ymax, an_rate(v[i], den));
    ymax = fmin(1.0, ceil(ymax * 10 + 0.5) / 10);
    svg_open(f, title);
    svg_yaxis(f, ymax, 1);
    double bw = (double)(W - ML - MR) / n;
    for (int i = 0; i < n; i++) {
        double r = an_rate(v[i], den), y = sy(r, ymax);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"/>"
                   "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\">%s</text>"
                   "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" text-anchor=\"middle\">%.1f%%</text>",
                ML + i * bw + bw * 0.15, y, bw * 0.7, H - MB - y, colors[i % 6], ML + i * bw + bw / 2,
                H - MB + 14, labels[i], ML + i * bw + bw / 2, y - 3, 100 * r);
    }
    fprintf(f, "</svg><figcaption>%s</figcaption></figure>\n", caption);
}

static void chart_reuse(FILE *f, const an_result *r)
{
    /* bins 0..AN_REUSE_BINS+1 on a log axis from 1e-4 s to 1e8 s */
    const double lx0 = -4, lx1 = 8;
    uint64_t mx = 1;
    for (int b = 0; b < AN_REUSE_BINS + 2; b++)
        if (r->reuse_hist[b] > mx)
            mx = r->reuse_hist[b];
    /* a round axis top: 1, 2, 2.5 or 5 times a power of ten, so the ticks (fifths) are round */
    double top = 1;
    while (top * 10 <= (double)mx)
        top *= 10;
    top = (double)mx <= top ? top : (double)mx <= 2 * top ? 2 * top
          : (double)mx <= 2.5 * top ? 2.5 * top : (double)mx <= 5 * top ? 5 * top : 10 * top;
    mx = (uint64_t)top;
    svg_open(f, "reuse intervals with each tier's drain time");
    svg_yaxis(f, (double)mx, 0);
    /* one label per decade, short enough not to overlap (42 px apart) */
    static const char *const dl[] = {"100µs", "1ms", "10ms", "0.1s", "1s", "10s", "100s",
                                     "17min", "2.8h", "28h", "11.6d", "116d", "3.2y"};
    for (int d = (int)lx0; d <= (int)lx1; d++) {
        double x = sx(d, lx0, lx1);
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"#000\"/>"
                   "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"middle\">%s</text>",
                x, x, H - MB, H - MB + 3, x, H - MB + 14, dl[d - (int)lx0]);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">time since the "
               "block's previous use (log scale)</text>", (ML + W - MR) / 2, H - 12);
    for (int b = 0; b < AN_REUSE_BINS + 2; b++) {
        double lo = b == 0 ? -4 : b == AN_REUSE_BINS + 1 ? 7 : (b - 1) / 4.0 - 3;
        double hi = b == 0 ? -3 : b == AN_REUSE_BINS + 1 ? 8 : b / 4.0 - 3;
        double x0 = sx(lo, lx0, lx1), x1 = sx(hi, lx0, lx1), y = sy((double)r->reuse_hist[b], (double)mx);
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#1f77b4\"/>",
                x0 + 0.5, y, x1 - x0 - 1, H - MB - y);
    }
    int li = 0;
    for (int i = 0; i < AN_TIERS; i++)
        if (r->drain_s[i] > 0) {
            double x = sx(log10(r->drain_s[i]), lx0, lx1);
            char b[64], d[32];
            an_fmt_secs(d, sizeof d, r->drain_s[i]);
            snprintf(b, sizeof b, "%s %s: %.0f%%", an_tier_name[i], d,
                     100 * an_rate(r->reuse_within[i], r->reuse_n));
            fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" "
                       "stroke-width=\"2\" stroke-dasharray=\"5,3\"/>",
                    x, x, MT, H - MB, colors[(i + 1) % 6]);
            svg_legend(f, li++, colors[(i + 1) % 6], "5,3", b);
        }
    fputs("</svg><figcaption>Reuse intervals (time since a block's previous use, for every access "
          "of a block requested before) against each tier's drain time (capacity / read "
          "bandwidth); the legend gives each tier's drain time and the share of reuses within it. Rule of thumb (DESIGN.md §3): "
          "keep data in the tier whose drain time is about its reuse interval.</figcaption>"
          "</figure>\n", f);
}

int an_report_html(FILE *f, const an_report *rp)
{
    const an_trace *t = rp->trace;
    const an_result *r = rp->res;
    const an_counts *a = &r->total;
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
          "<title>kvtier analyze</title><style>body{font:14px sans-serif;max-width:960px;"
          "margin:1em auto;padding:0 1em}table{border-collapse:collapse;margin:.5em 0}"
          "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f4f4f4}"
          "td:first-child,th:first-child{text-align:left}figure{margin:1em 0}"
          "figcaption{color:#555;font-size:12px;max-width:720px}pre{background:#f8f8f8;"
          "padding:.5em;white-space:pre-wrap;font-size:12px}</style></head><body>\n", f);
    fputs("<h1>kvtier analyze</h1><p>", f);
    esc(f, rp->input);
    fprintf(f, "</p><p><b>Definitions.</b> %s. %s.</p>\n", DEF_HIT, DEF_RATE);
    fprintf(f, "<table><tr><th>token hit rate</th><th>block hit rate</th><th>infinite capacity"
               "</th><th>requests</th><th>input tokens</th></tr><tr><td>%.2f%%</td><td>%.2f%%</td>"
               "<td>%.2f%%</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td></tr></table>\n",
            100 * an_rate(a->hit_tokens, a->input_tokens), 100 * an_rate(a->hit_blocks, a->blocks),
            100 * an_rate(r->inf_hit_tokens, a->input_tokens), a->requests, a->input_tokens);
    fputs("<h2>Capacity</h2>\n", f);
    chart_sweep(f, rp);
    fputs("<h2>Hits per tier, misses by class</h2>\n", f);
    chart_bars(f, "hits per tier", "Share of hit tokens served by each tier.", an_tier_name,
               r->tier_hit_tokens, AN_TIERS, a->hit_tokens);
    chart_bars(f, "misses by class", "Missed tokens by class, as a share of all input tokens.",
               an_miss_name, a->miss_tokens, AN_MISS_N, a->input_tokens);
    fputs("<h2>Reuse intervals</h2>\n", f);
    chart_reuse(f, r);
    if (t->n_tenants > 1 || t->n_tenants == 1) {
        fputs("<h2>Per tenant</h2><table><tr><th>tenant</th><th>requests</th><th>input tokens"
              "</th><th>token hit</th><th>block hit</th>", f);
        for (int m = 0; m < AN_MISS_N; m++)
            fprintf(f, "<th>%s</th>", an_miss_name[m]);
        fputs("</tr>\n", f);
        for (size_t i = 0; i < t->n_tenants; i++) {
            const an_counts *x = &r->tenant[i];
            fputs("<tr><td>", f);
            esc(f, t->tenants[i]);
            fprintf(f, "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%.2f%%</td><td>%.2f%%</td>",
                    x->requests, x->input_tokens, 100 * an_rate(x->hit_tokens, x->input_tokens),
                    100 * an_rate(x->hit_blocks, x->blocks));
            for (int m = 0; m < AN_MISS_N; m++)
                fprintf(f, "<td>%" PRIu64 "</td>", x->miss_blocks[m]);
            fputs("</tr>\n", f);
        }
        fputs("</table><p>Miss columns count blocks.</p>\n", f);
    }
    if (rp->mn) {
        const an_multinode *m = rp->mn;
        fprintf(f, "<h2>Multi-node</h2><p>%" PRIu32 " nodes, each with the configured DRAM "
                   "capacity (%" PRIu64 " blocks), against one pool of %" PRIu32 "&times; that "
                   "shared by all.</p><table><tr><th>setup</th><th>token hit rate</th><th>load "
                   "max/mean</th></tr><tr><td>random routing</td><td>%.2f%%</td><td>%.2f</td></tr>"
                   "<tr><td>prefix-aware routing</td><td>%.2f%%</td><td>%.2f</td></tr><tr><td>"
                   "shared pool</td><td>%.2f%%</td><td></td></tr></table>\n",
                m->nodes, m->node_cap_blocks, m->nodes, 100 * m->hit_random, m->imbalance_random,
                100 * m->hit_prefix, m->imbalance_prefix, 100 * m->hit_pool);
    }
    /* everything else, verbatim: the terminal report */
    fputs("<h2>Full report</h2><pre>", f);
    char *buf = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&buf, &len);
    if (!m)
        return -ENOMEM;
    an_report_text(m, rp);
    if (fclose(m)) {
        free(buf);
        return -ENOMEM;
    }
    esc(f, buf);
    free(buf);
    fputs("</pre></body></html>\n", f);
    return ferror(f) ? -EIO : 0;
}
