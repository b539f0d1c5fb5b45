// A hand-off of THREADS floats from block 0 to block 1, then a value shared within block 1, each step done right or
// wrong by `mode`: tests/test_cuda_on_cpu.py checks that the CPU emulation under ThreadSanitizer passes the right
// way and reports each wrong one, though the wrong ones give the right numbers on the CPU.

#include "flags.cuh"  // load_acquire, wait_until, publish

struct Params {
    int mode;
    unsigned int* flag;   // block 0's count of hand-offs
    unsigned int* error;  // wait_until's
    float* data;          // (THREADS,): what block 0 hands on
    float* out;           // (THREADS,): block 1's result
};

enum Mode {
    ORDERED,            // acquire the flag, __syncthreads between a shared write and its reads
    FLAG_NOT_ACQUIRED,  // the flag read with a plain load: nothing orders block 0's writes before the reads
    NO_BARRIER,         // thread 0 writes a shared value that the others read with no barrier between
    SHUFFLE_ONLY,       // between them only a warp shuffle, which moves values, not memory
};

extern "C" __global__ void races(const Params p) {
    extern __shared__ unsigned char smem[];
    float* total = reinterpret_cast<float*>(smem);
    const int tid = threadIdx.x;
    if (blockIdx.x == 0) {
        p.data[tid] = tid + 1.f;
        publish(p.flag, 1);
        return;
    }
    if (p.mode == FLAG_NOT_ACQUIRED)
        wait_until([&] { return __ldcg(p.flag); }, 1, p.error, 1000000000ull);
    else
        wait_until([&] { return load_acquire(p.flag); }, 1, p.error, 1000000000ull);
    const float mine = __ldcg(p.data + tid);
    if (tid == 0) *total = mine * 10.f;
    if (p.mode == SHUFFLE_ONLY) __shfl_xor_sync(0xffffffffu, 0, 1);
    if (p.mode != NO_BARRIER && p.mode != SHUFFLE_ONLY) __syncthreads();
    p.out[tid] = mine + *total;
}
