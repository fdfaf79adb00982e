/* rt_nocuda.c — gpu.h runtime helpers for builds without CUDA: no GPU, -ENODEV. */
#include <errno.h>

#include "gpu.h"

int gpu_memcpy(void *dst, const void *src, size_t n, struct CUstream_st *s)
{
    (void)dst, (void)src, (void)n, (void)s;
    return -ENODEV;
}
int gpu_stream_sync(struct CUstream_st *s)
{
    (void)s;
    return -ENODEV;
}
int gpu_event_create(void **ev)
{
    if (ev)
        *ev = NULL;
    return -ENODEV;
}
void gpu_event_destroy(void *ev) { (void)ev; }
int gpu_event_record(void *ev, struct CUstream_st *s)
{
    (void)ev, (void)s;
    return -ENODEV;
}
int gpu_stream_wait_event(struct CUstream_st *s, void *ev)
{
    (void)s, (void)ev;
    return -ENODEV;
}
int gpu_current_device(int *dev)
{
    if (dev)
        *dev = -1;
    return -ENODEV;
}
int gpu_gather_layer(const void *const *src, uint32_t n, const gpu_gather_params *p,
                     struct CUstream_st *s)
{
    (void)src, (void)n, (void)p, (void)s;
    return -ENODEV;
}
int gpu_copy_layer(const void *const *src, uint32_t n, const gpu_gather_params *p,
                   struct CUstream_st *s)
{
    (void)src, (void)n, (void)p, (void)s;
    return -ENODEV;
}
