/*
 * dev.h — device facts shared by the CUDA files of gpu/ (C++ linkage; not for C callers).
 * Read once per process; thread-safe after the first successful gpu_dev_info() (the values
 * are written once, the same by every thread that races to write them).
 */
#ifndef KVT_GPU_DEV_H
#define KVT_GPU_DEV_H

extern int gpu_dev_sms;         /* multiprocessors of the current device; 0 until read */
extern int gpu_dev_host_ptr_ok; /* 1 if kernels may use registered host memory at its host
                                   address; -1 until read */

/* Read the facts above for the current device: 0, or -ENODEV. */
int gpu_dev_info(void);
/* 1 if a kernel may dereference p: device memory, or registered (pinned) host memory when
 * the device can use host pointers directly. */
bool gpu_dev_addressable(const void *p);

#endif
