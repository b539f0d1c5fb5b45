// Hand-offs between blocks on different SMs through global memory: the writer releases a counter, the reader
// acquires it; the global timer bounds a wait. Shared by persistent.cu and bench/handoff.cu, which measures them.
#pragma once

#ifndef CUDA_ON_CPU  // tests/cuda_on_cpu.h defines these three for its CPU threads
__device__ __forceinline__ unsigned int load_acquire(const unsigned int* p) {
    unsigned int v;
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

__device__ __forceinline__ void store_release(unsigned int* p, unsigned int v) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

__device__ __forceinline__ unsigned long long now_ns() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#endif

// Block-wide: wait until `load()` (another block's counter) reaches `count`. Returns false, with *error set, when
// that takes over `limit_ns` or another block gave up (set *error): then the caller returns, where a fault would
// otherwise hang the GPU.
template <typename Load>
__device__ __forceinline__ bool wait_until(Load load, unsigned int count, unsigned int* error,
                                           unsigned long long limit_ns) {
    __shared__ int gave_up;
    if (threadIdx.x == 0) {
        gave_up = 0;
        const unsigned long long start = now_ns();
        for (unsigned int spins = 1; load() < count; ++spins) {
            if (spins % 64 == 0 && (load_acquire(error) != 0 || now_ns() - start > limit_ns)) {
                atomicExch(error, 1u);
                gave_up = 1;
                break;
            }
        }
    }
    __syncthreads();
    return !gave_up;
}

// Block-wide: what every thread wrote before this call is visible to a block that then sees the counter at `count`.
__device__ __forceinline__ void publish(unsigned int* flag, unsigned int count) {
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        store_release(flag, count);
    }
}
