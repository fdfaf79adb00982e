/*
 * gpu.h — the CUDA side of kvtier, as seen by the engine.
 *
 * Built in two halves: *_cuda.c / *.cu when CMake found a CUDA toolkit (KVT_HAVE_CUDA), and
 * *_nocuda.c otherwise. Every function works in both builds and on machines without a GPU:
 * there it reports -ENODEV and the engine carries on without the GPU.
 *
 * Thread safety: all functions may be called from any thread.
 */
#ifndef KVT_GPU_H
#define KVT_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices: 0 without a GPU, a driver, or a CUDA build. */
int gpu_device_count(void);

/* Page-lock host memory [p, p+n) for DMA (cudaHostRegister). 0; -ENODEV without a usable
 * GPU; -EIO if CUDA refuses. */
int gpu_host_register(void *p, size_t n);
/* Undo gpu_host_register. */
void gpu_host_unregister(void *p);

#ifdef __cplusplus
}
#endif

#endif
