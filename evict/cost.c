/* cost.c — see cost.h. */
#include "cost.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "util/util.h"

void evict_costmodel_default(evict_costmodel *cm)
{
    const double gpu_usd_s = EVICT_GPU_USD_PER_HOUR / 3600.0; /* 8.33e-4 $/s */
    const double month_s = EVICT_HOURS_PER_MONTH * 3600.0;    /* 2.628e6 s */
    const double pcie = 55.2e9;                               /* pinned host->GPU, §4 */

    *cm = (evict_costmodel){0};
    cm->gpu_usd_s = gpu_usd_s;
    cm->gpu_flops = EVICT_GPU_PEAK_FLOPS * EVICT_GPU_MFU; /* 494.5e12 FLOP/s */
    cm->n_tiers = 4;
    /* 80 GiB = 85.9e9 B; $8.33e-4/s over it = 9.70e-15 $/B·s; drain 85.9e9 / 2.95e12 = 29 ms */
    cm->tier[0] = (evict_tier){
        .name = "hbm", .capacity = 80ull << 30, .read_bw = 2950e9, .write_bw = 2950e9,
        .link_bw = 0, .latency_s = 0, .resident = 1,
    };
    cm->tier[0].cost_byte_s = gpu_usd_s / (double)cm->tier[0].capacity;
    /* $0.004237/GiB-h = 1.096e-15 $/B·s; drain 274.9e9 / 55.2e9 = 5.0 s */
    cm->tier[1] = (evict_tier){
        .name = "dram", .capacity = 256ull << 30, .read_bw = 55.2e9, .write_bw = 55.0e9,
        .link_bw = pcie, .latency_s = 12e-6,
        .cost_byte_s = 0.004237 / 3600.0 / EVICT_GIB,
    };
    /* $0.080/GiB-month = 2.835e-17 $/B·s; drain 3.84e12 / 3.0e9 = 1,280 s = 21 min */
    cm->tier[2] = (evict_tier){
        .name = "nvme", .capacity = 3840000000000ull, .read_bw = 3.0e9, .write_bw = 2.6e9,
        .link_bw = pcie, .latency_s = 100e-6,
        .cost_byte_s = 0.080 / month_s / EVICT_GIB,
    };
    /* $0.015/GB-month = 5.31e-18 $/B·s; drain 17.6e12 / 0.2e9 = 87,961 s = 24 h */
    cm->tier[3] = (evict_tier){
        .name = "disk", .capacity = 16ull << 40, .read_bw = 0.2e9, .write_bw = 0.2e9,
        .link_bw = pcie, .latency_s = 10e-3,
        .cost_byte_s = 0.015 / month_s / EVICT_GIB,
    };
}

static int evict_bad(double x) { return !(x >= 0); } /* negative or NaN */

int evict_costmodel_check(const evict_costmodel *cm)
{
    if (!cm || cm->n_tiers < 1 || cm->n_tiers > EVICT_MAX_TIERS)
        return -EINVAL;
    if (!(cm->gpu_usd_s > 0) || !(cm->gpu_flops > 0) || !cm->tier[0].resident)
        return -EINVAL;
    for (unsigned i = 0; i < cm->n_tiers; i++) {
        const evict_tier *t = &cm->tier[i];
        if (t->capacity == 0 || !(t->read_bw > 0) || evict_bad(t->write_bw) ||
            evict_bad(t->link_bw) || evict_bad(t->latency_s) || evict_bad(t->cost_byte_s))
            return -EINVAL;
    }
    return 0;
}

void evict_model_llama3_8b(evict_model *m)
{
    *m = (evict_model){.active_params = 8.03e9, .layers = 32, .hidden = 4096};
}

void evict_model_llama3_70b(evict_model *m)
{
    *m = (evict_model){.active_params = 70.6e9, .layers = 80, .hidden = 8192};
}

double evict_tier_eff_bw(const evict_tier *t)
{
    return t->link_bw > 0 && t->link_bw < t->read_bw ? t->link_bw : t->read_bw;
}

double evict_tier_drain_s(const evict_tier *t)
{
    return (double)t->capacity / evict_tier_eff_bw(t);
}

double evict_tier_load_s(const evict_tier *t, uint64_t bytes)
{
    if (t->resident)
        return 0;
    return t->latency_s + (double)bytes / evict_tier_eff_bw(t);
}

double evict_tier_hold_usd_s(const evict_tier *t, uint64_t bytes)
{
    return (double)bytes * t->cost_byte_s;
}

double evict_tier_kappa(const evict_costmodel *cm, unsigned tier)
{
    const evict_tier *t = &cm->tier[tier];
    return t->cost_byte_s * (double)t->capacity / cm->gpu_usd_s;
}

double evict_tier_balance_s(const evict_costmodel *cm, unsigned tier)
{
    const evict_tier *t = &cm->tier[tier];
    if (t->resident)
        return 0;
    if (t->cost_byte_s == 0)
        return INFINITY;
    return cm->gpu_usd_s / evict_tier_eff_bw(t) / t->cost_byte_s;
}

double evict_recompute_flops(const evict_model *m, uint64_t pos, uint32_t tokens)
{
    double n = tokens, s = (double)pos;
    /* Llama-3-8B, 16 tokens at 0: 2·8.03e9·16 = 2.57e11 + 4·32·4096·136 = 7.1e7 (negligible);
     * at s = 32k the attention term is 4·32·4096·16·32768 = 2.75e11: the block costs 2x. */
    return 2.0 * m->active_params * n +
           4.0 * (double)m->layers * (double)m->hidden * (n * s + n * (n + 1) / 2);
}

double evict_recompute_s(const evict_costmodel *cm, const evict_model *m, uint64_t pos,
                         uint32_t tokens)
{
    if (m->prefill_tok_s > 0)
        return tokens / m->prefill_tok_s;
    return evict_recompute_flops(m, pos, tokens) / cm->gpu_flops;
}

/* The cost line of option k (0..n_tiers-1: a tier, n_tiers: recompute): a + b·t dollars. */
static void evict_line(const evict_costmodel *cm, unsigned k, uint64_t bytes, double recompute_s,
                       double *a, double *b)
{
    if (k == cm->n_tiers) {
        *a = recompute_s * cm->gpu_usd_s;
        *b = 0;
    } else {
        *a = evict_tier_load_s(&cm->tier[k], bytes) * cm->gpu_usd_s;
        *b = evict_tier_hold_usd_s(&cm->tier[k], bytes);
    }
}

static double evict_line_at(double a, double b, double t) { return b == 0 ? a : a + b * t; }

double evict_option_usd(const evict_costmodel *cm, int option, uint64_t bytes,
                        double recompute_s, double t)
{
    double a, b;
    if (option < EVICT_RECOMPUTE || option >= (int)cm->n_tiers)
        return NAN;
    evict_line(cm, option == EVICT_RECOMPUTE ? cm->n_tiers : (unsigned)option, bytes,
               recompute_s, &a, &b);
    return evict_line_at(a, b, t);
}

int evict_choose(const evict_costmodel *cm, uint64_t bytes, double recompute_s, double t,
                 uint32_t tier_mask, double *usd)
{
    int best = EVICT_RECOMPUTE;
    double best_usd = INFINITY;
    /* Fastest first with <=: a tie goes to the slower option; recompute is the slowest. */
    for (unsigned k = 0; k <= cm->n_tiers; k++) {
        if (k < cm->n_tiers && !(tier_mask >> k & 1))
            continue;
        double a, b;
        evict_line(cm, k, bytes, recompute_s, &a, &b);
        double c = evict_line_at(a, b, t);
        if (c <= best_usd) {
            best_usd = c;
            best = k == cm->n_tiers ? EVICT_RECOMPUTE : (int)k;
        }
    }
    if (usd)
        *usd = best == EVICT_RECOMPUTE ? recompute_s * cm->gpu_usd_s : best_usd;
    return best;
}

int evict_breakeven(const evict_costmodel *cm, uint64_t bytes, double recompute_s,
                    evict_window win[EVICT_MAX_TIERS + 1])
{
    double a[EVICT_MAX_TIERS + 1], b[EVICT_MAX_TIERS + 1];
    unsigned n, cur, owners = 0;
    double t = 0;

    if (evict_costmodel_check(cm) || !win || !(recompute_s >= 0))
        return -EINVAL;
    n = cm->n_tiers + 1;
    for (unsigned k = 0; k < n; k++) {
        evict_line(cm, k, bytes, recompute_s, &a[k], &b[k]);
        win[k].lo_s = win[k].hi_s = NAN;
        win[k].vs_recompute_s = NAN;
    }
    for (unsigned k = 0; k + 1 < n; k++) {
        double ar = a[n - 1];
        win[k].vs_recompute_s = a[k] >= ar ? 0 : b[k] == 0 ? INFINITY : (ar - a[k]) / b[k];
    }
    /* Lower envelope from t = 0: start at the smallest intercept (ties: the flatter line),
     * then repeatedly jump to the flatter line that crosses the current one first. */
    cur = 0;
    for (unsigned k = 1; k < n; k++)
        if (a[k] < a[cur] || (a[k] == a[cur] && b[k] <= b[cur]))
            cur = k;
    for (;;) {
        unsigned next = n;
        double tx = INFINITY;
        for (unsigned k = 0; k < n; k++) {
            if (!(b[k] < b[cur]))
                continue;
            double c = (a[k] - a[cur]) / (b[cur] - b[k]);
            if (c < t)
                c = t; /* rounding: a crossing behind us is a crossing now */
            if (c < tx || (c == tx && next < n && b[k] < b[next])) {
                tx = c;
                next = k;
            }
        }
        if (tx > t) {
            win[cur].lo_s = t;
            win[cur].hi_s = tx;
            owners++;
        }
        if (next == n)
            break;
        t = tx;
        cur = next;
    }
    return (int)owners;
}

/* ---------------------------------------------------------------- load plan */

typedef struct evict_cand {
    double ratio; /* load seconds per recompute second saved */
    size_t i;
} evict_cand;

static int evict_cand_cmp(const void *x, const void *y)
{
    const evict_cand *p = x, *q = y;
    if (p->ratio != q->ratio)
        return p->ratio < q->ratio ? -1 : 1;
    return p->i < q->i ? -1 : p->i > q->i; /* stable: earlier blocks first */
}

static int evict_plan_args_ok(const evict_costmodel *cm, const evict_plan_block *blk, size_t n,
                              double suffix_s, const evict_plan *out)
{
    if (evict_costmodel_check(cm) || !out || (n && !blk) || !(suffix_s >= 0))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (blk[i].tier < -1 || blk[i].tier >= (int)cm->n_tiers || !(blk[i].recompute_s >= 0))
            return 0;
    return 1;
}

/* The plan's figures from blk[i].load (set by the caller for cached blocks; resident blocks
 * are always used in place), with time_s filled in. */
static void evict_plan_fill(const evict_costmodel *cm, evict_plan_block *blk, size_t n,
                            double suffix_s, double all_recompute_s, evict_plan *out)
{
    double lat = 0, load = 0, compute = suffix_s;
    size_t loaded = 0;
    *out = (evict_plan){.all_recompute_s = all_recompute_s};
    for (size_t i = 0; i < n; i++) {
        evict_plan_block *b = &blk[i];
        const evict_tier *t = b->tier >= 0 ? &cm->tier[b->tier] : NULL;
        if (t && t->resident)
            b->load = 1;
        b->load = t && b->load;
        if (!b->load) {
            b->time_s = b->recompute_s;
            compute += b->recompute_s;
            out->n_recompute++;
            continue;
        }
        out->n_load++;
        b->time_s = t->resident ? 0 : (double)b->bytes / evict_tier_eff_bw(t);
        if (t->resident)
            continue;
        loaded++;
        if (t->latency_s > lat)
            lat = t->latency_s;
        load += b->time_s;
    }
    out->load_s = loaded ? lat + load : 0;
    out->compute_s = compute;
    out->total_s = fmax(out->load_s, out->compute_s);
}

int evict_plan_match(const evict_costmodel *cm, evict_plan_block *blk, size_t n,
                     double suffix_s, evict_plan *out)
{
    evict_cand *cand = NULL;
    size_t m = 0, best_k = 0;
    double compute0, best_total, load, lat = 0, compute;

    if (!evict_plan_args_ok(cm, blk, n, suffix_s, out))
        return -EINVAL;
    if (n && !(cand = util_malloc(n * sizeof *cand)))
        return -ENOMEM;

    /* Baseline: resident blocks used in place, everything else recomputed. */
    compute0 = suffix_s;
    for (size_t i = 0; i < n; i++) {
        int tr = blk[i].tier;
        if (tr >= 0 && cm->tier[tr].resident)
            continue;
        compute0 += blk[i].recompute_s;
        if (tr >= 0 && blk[i].recompute_s > 0) {
            double xfer = (double)blk[i].bytes / evict_tier_eff_bw(&cm->tier[tr]);
            cand[m++] = (evict_cand){.ratio = xfer / blk[i].recompute_s, .i = i};
        }
    }
    if (m > 1)
        qsort(cand, m, sizeof *cand, evict_cand_cmp);

    /* Take the best prefix of the ratio order: load_s rises, compute_s falls with k. */
    best_total = compute0;
    load = 0;
    compute = compute0;
    for (size_t k = 0; k < m; k++) {
        const evict_plan_block *b = &blk[cand[k].i];
        const evict_tier *t = &cm->tier[b->tier];
        if (t->latency_s > lat)
            lat = t->latency_s;
        load += (double)b->bytes / evict_tier_eff_bw(t);
        compute -= b->recompute_s;
        double total = fmax(lat + load, compute);
        if (total < best_total) {
            best_total = total;
            best_k = k + 1;
        }
    }
    for (size_t i = 0; i < n; i++)
        blk[i].load = 0;
    for (size_t k = 0; k < best_k; k++)
        blk[cand[k].i].load = 1;
    evict_plan_fill(cm, blk, n, suffix_s, compute0, out);
    util_free(cand);
    return 0;
}

int evict_plan_load_all(const evict_costmodel *cm, evict_plan_block *blk, size_t n,
                        double suffix_s, evict_plan *out)
{
    double all = suffix_s;
    if (!evict_plan_args_ok(cm, blk, n, suffix_s, out))
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        blk[i].load = blk[i].tier >= 0;
        if (!(blk[i].tier >= 0 && cm->tier[blk[i].tier].resident))
            all += blk[i].recompute_s;
    }
    evict_plan_fill(cm, blk, n, suffix_s, all, out);
    return 0;
}

double evict_hit_saving_s(const evict_costmodel *cm, int tier, uint64_t bytes,
                          double recompute_s)
{
    if (!cm || tier < 0 || (unsigned)tier >= cm->n_tiers || !(recompute_s > 0))
        return 0;
    const evict_tier *t = &cm->tier[tier];
    if (t->resident)
        return recompute_s;
    double l = evict_tier_load_s(t, bytes);
    return recompute_s * recompute_s / (recompute_s + l);
}
