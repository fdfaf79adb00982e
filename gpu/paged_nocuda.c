/* paged_nocuda.c — paged.h for builds without CUDA: every GPU call reports -ENODEV (the
 * CPU references in attn_ref.c still work). */
#include <errno.h>

#include "gpu/paged.h"

int gpu_copy_blocks(const void *const *src, void *const *dst, uint32_t n, uint64_t bytes,
                    gpu_xfer_method method, uint32_t sm_ctas, struct CUstream_st *stream)
{
    (void)src, (void)dst, (void)n, (void)bytes, (void)method, (void)sm_ctas, (void)stream;
    return -ENODEV;
}

int gpu_pool_create(const kvt_layout *layout, uint32_t num_blocks, gpu_pool **out)
{
    (void)layout, (void)num_blocks;
    if (out)
        *out = NULL;
    return -ENODEV;
}
void gpu_pool_destroy(gpu_pool *pool) { (void)pool; }
void *gpu_pool_base(const gpu_pool *pool) { (void)pool; return NULL; }
uint64_t gpu_pool_block_bytes(const gpu_pool *pool) { (void)pool; return 0; }
uint32_t gpu_pool_num_blocks(const gpu_pool *pool) { (void)pool; return 0; }
uint32_t gpu_pool_free_blocks(const gpu_pool *pool) { (void)pool; return 0; }
void *gpu_pool_block_ptr(const gpu_pool *pool, int32_t id) { (void)pool, (void)id; return NULL; }
uint32_t gpu_pool_pins(const gpu_pool *pool, int32_t id) { (void)pool, (void)id; return 0; }

int gpu_pool_alloc(gpu_pool *pool, uint32_t n, int32_t *ids)
{
    (void)pool, (void)n, (void)ids;
    return -ENODEV;
}
int gpu_pool_free(gpu_pool *pool, uint32_t n, const int32_t *ids)
{
    (void)pool, (void)n, (void)ids;
    return -ENODEV;
}
int gpu_pool_pin(gpu_pool *pool, uint32_t n, const int32_t *ids)
{
    (void)pool, (void)n, (void)ids;
    return -ENODEV;
}
int gpu_pool_unpin(gpu_pool *pool, uint32_t n, const int32_t *ids)
{
    (void)pool, (void)n, (void)ids;
    return -ENODEV;
}
int gpu_pool_load(gpu_pool *pool, uint32_t n, const int32_t *ids, const void *const *src,
                  gpu_xfer_method method, struct CUstream_st *stream)
{
    (void)pool, (void)n, (void)ids, (void)src, (void)method, (void)stream;
    return -ENODEV;
}
int gpu_pool_load_new(gpu_pool *pool, uint32_t n, const void *const *src, int32_t *ids_out,
                      gpu_xfer_method method, struct CUstream_st *stream)
{
    (void)pool, (void)n, (void)src, (void)ids_out, (void)method, (void)stream;
    return -ENODEV;
}
int gpu_pool_store(gpu_pool *pool, uint32_t n, const int32_t *ids, void *const *dst,
                   gpu_xfer_method method, struct CUstream_st *stream)
{
    (void)pool, (void)n, (void)ids, (void)dst, (void)method, (void)stream;
    return -ENODEV;
}

int gpu_attn_plan_make(const gpu_attn_params *p, uint32_t total_q, uint32_t max_q_len,
                       uint32_t max_kv_len, uint32_t force_splits, gpu_attn_plan *plan)
{
    (void)p, (void)total_q, (void)max_q_len, (void)max_kv_len, (void)force_splits, (void)plan;
    return -ENODEV;
}
int gpu_attn_plan_make_ex(const gpu_attn_params *p, uint32_t total_q, uint32_t max_q_len,
                          uint32_t max_kv_len, uint32_t force_splits, gpu_attn_kernel kernel,
                          gpu_attn_plan *plan)
{
    (void)p, (void)total_q, (void)max_q_len, (void)max_kv_len, (void)force_splits, (void)kernel;
    (void)plan;
    return -ENODEV;
}
int gpu_attn_run(const gpu_attn_params *p, const gpu_attn_plan *plan, void *workspace,
                 size_t workspace_bytes, struct CUstream_st *stream)
{
    (void)p, (void)plan, (void)workspace, (void)workspace_bytes, (void)stream;
    return -ENODEV;
}
