/* host_cuda.c — gpu.h host-memory functions over the CUDA runtime. */
#include <errno.h>

#include <cuda_runtime.h>

#include "gpu.h"

int gpu_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear the sticky "no device" error */
        return 0;
    }
    return n;
}

int gpu_host_register(void *p, size_t n)
{
    if (gpu_device_count() <= 0)
        return -ENODEV;
    if (cudaHostRegister(p, n, cudaHostRegisterPortable) != cudaSuccess) {
        cudaGetLastError();
        return -EIO;
    }
    return 0;
}

void gpu_host_unregister(void *p)
{
    if (cudaHostUnregister(p) != cudaSuccess)
        cudaGetLastError();
}
