/* host_nocuda.c — gpu.h host-memory functions for builds without CUDA: no GPU. */
#include <errno.h>

#include "gpu.h"

int gpu_device_count(void) { return 0; }
int gpu_host_register(void *p, size_t n)
{
    (void)p;
    (void)n;
    return -ENODEV;
}
void gpu_host_unregister(void *p) { (void)p; }
