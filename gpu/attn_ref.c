/* attn_ref.c — float64 CPU reference for the paged attention kernels (paged.h), and the
 * bf16/fp16 conversions the tests use. Built with and without CUDA. Slow on purpose: one
 * loop per definition, no tiling, so that it "will always tell the truth". */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gpu/paged.h"

float gpu_bf16_to_f32(uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;
    memcpy(&f, &x, 4);
    return f;
}

uint16_t gpu_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);       /* round to nearest even */
    return (uint16_t)(x >> 16);
}

float gpu_f16_to_f32(uint16_t h)
{
    float sign = (h & 0x8000u) ? -1.0f : 1.0f;
    int e = (h >> 10) & 0x1f;
    int m = h & 0x3ff;
    if (e == 0)
        return sign * ldexpf((float)m, -24);
    if (e == 31)
        return m ? NAN : sign * INFINITY;
    return sign * ldexpf((float)(m | 0x400), e - 25);
}

uint16_t gpu_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u)
        return sign | (x > 0x7f800000u ? 0x7e00 : 0x7c00);
    if (x >= 0x477ff000u) /* >= 65520 rounds to infinity */
        return sign | 0x7c00;
    if (x < 0x38800000u) { /* below 2^-14: a subnormal half, exact multiple of 2^-24 */
        float a;
        memcpy(&a, &x, 4);
        return sign | (uint16_t)nearbyintf(a * 16777216.0f);
    }
    uint32_t h = (((x >> 23) - 112u) << 10) | ((x & 0x7fffffu) >> 13);
    uint32_t rest = x & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; /* a carry into the exponent is the right result */
    return sign | (uint16_t)h;
}

/* lut: every 16-bit pattern's value, so the loops below cost a load per element */
#define ELEM(p, i) lut[(p)[i]]

int gpu_attn_ref(const gpu_attn_params *p, uint32_t total_q, float *out_ref)
{
    if (!p || !out_ref || !p->q || !p->pool || !p->kv_indptr || !p->kv_indices || !p->kv_lens)
        return -EINVAL;
    if ((p->dtype != KVT_DTYPE_BF16 && p->dtype != KVT_DTYPE_FP16) || !p->num_kv_heads ||
        !p->num_qo_heads || p->num_qo_heads % p->num_kv_heads || !p->head_dim ||
        !p->block_tokens || p->layer >= p->layers)
        return -EINVAL;
    const uint32_t H = p->num_kv_heads, Hq = p->num_qo_heads, D = p->head_dim;
    const uint32_t G = Hq / H, bt = p->block_tokens;
    const uint16_t *q = p->q, *pool = p->pool;
    const size_t page = (size_t)bt * H * D;         /* elements of K (or V) of one layer */
    const size_t slab = (size_t)p->layers * 2 * page; /* elements of one block */
    const double scale = p->sm_scale != 0.0f ? (double)p->sm_scale : 1.0 / sqrt((double)D);

    size_t max_len = 0;
    for (uint32_t s = 0; s < p->num_seqs; s++)
        if ((size_t)p->kv_lens[s] > max_len)
            max_len = (size_t)p->kv_lens[s];
    double *sc = malloc((max_len + 1) * sizeof *sc);
    double *acc = malloc(D * sizeof *acc);
    double *lut = malloc(65536 * sizeof *lut);
    if (!sc || !acc || !lut) {
        free(sc);
        free(acc);
        free(lut);
        return -ENOMEM;
    }
    for (uint32_t x = 0; x < 65536; x++)
        lut[x] = p->dtype == KVT_DTYPE_BF16 ? (double)gpu_bf16_to_f32((uint16_t)x)
                                            : (double)gpu_f16_to_f32((uint16_t)x);
    for (uint32_t s = 0; s < p->num_seqs; s++) {
        int32_t q0 = p->qo_indptr ? p->qo_indptr[s] : (int32_t)s;
        int32_t qn = p->qo_indptr ? p->qo_indptr[s + 1] - q0 : 1;
        int32_t kv_len = p->kv_lens[s];
        const int32_t *table = p->kv_indices + p->kv_indptr[s];
        for (int32_t i = 0; i < qn; i++) {
            int64_t last = (int64_t)kv_len - qn + i; /* the query's own position */
            for (uint32_t hq = 0; hq < Hq; hq++) {
                uint32_t h = hq / G;
                const uint16_t *qv = q + ((size_t)(q0 + i) * Hq + hq) * D;
                float *o = out_ref + ((size_t)(q0 + i) * Hq + hq) * D;
                if (last < 0 || (uint32_t)q0 + (uint32_t)i >= total_q) {
                    for (uint32_t d = 0; d < D; d++)
                        o[d] = 0.0f;
                    continue;
                }
                double mx = -INFINITY;
                for (int64_t t = 0; t <= last; t++) {
                    const uint16_t *k = pool + (size_t)table[t / bt] * slab +
                                        (size_t)p->layer * 2 * page +
                                        ((size_t)(t % bt) * H + h) * D;
                    double dot = 0;
                    for (uint32_t d = 0; d < D; d++)
                        dot += ELEM(qv, d) * ELEM(k, d);
                    sc[t] = dot * scale;
                    if (sc[t] > mx)
                        mx = sc[t];
                }
                double sum = 0;
                for (uint32_t d = 0; d < D; d++)
                    acc[d] = 0;
                for (int64_t t = 0; t <= last; t++) {
                    const uint16_t *v = pool + (size_t)table[t / bt] * slab +
                                        (size_t)p->layer * 2 * page + page +
                                        ((size_t)(t % bt) * H + h) * D;
                    double w = exp(sc[t] - mx);
                    sum += w;
                    for (uint32_t d = 0; d < D; d++)
                        acc[d] += w * ELEM(v, d);
                }
                for (uint32_t d = 0; d < D; d++)
                    o[d] = (float)(acc[d] / sum);
            }
        }
    }
    free(sc);
    free(acc);
    free(lut);
    return 0;
}
