// How long one block takes to hand a payload to a block on another SM, the step the persistent kernel takes 32
// times per sample (wavenet/generation/persistent.cu). Two blocks play ping-pong for `rounds` round trips: block 0
// hands FLOATS floats to block 1, which hands them back; a hand-off is half a round trip. Both ways in one source:
//
//   handoff_global:  as persistent.cu does it: the payload into a slot in global memory, a block-wide barrier, a
//                    fence and a release store of a counter; the reader spins on an acquire load, then reads the
//                    slot with L2-only loads.
//   handoff_cluster: the two blocks are one thread-block cluster (sm_90): the payload goes straight into the other
//                    block's shared memory (distributed shared memory), and the counter too, released and
//                    acquired at cluster scope.
//
// Every receiver checks the payload it got (round r carries r + i at position i) and counts what differs.
// Compile-time: THREADS, MAX_FLOATS, PARAMS_BYTES. tests/test_handoff_bench.py runs the global way on the CPU
// (tests/cuda_on_cpu.h), where the cluster way's PTX is left out.

#include "flags.cuh"  // persistent.cu's own acquire, release, wait and publish

struct Params {
    float* slots;                  // (2, MAX_FLOATS): the global way's payload slots, one per direction
    unsigned int* flags;           // (2, 32): the global way's counters, a 128-byte line each
    unsigned long long* result;    // (4,): elapsed ns, mismatches, the SM of block 0, the SM of block 1
    unsigned int* error;           // set to 1 when a block gave up waiting
    int rounds;
    int floats;                    // payload per hand-off, at most MAX_FLOATS
};

static_assert(sizeof(Params) == PARAMS_BYTES, "Params must match the host's ctypes structure");

#define WAIT_LIMIT_NS 1000000000ull

// Block-wide, as persistent.cu waits: until `load()` reaches `count`; false once a block gave up.
template <typename Load>
__device__ __forceinline__ bool wait_for(Load load, unsigned int count, unsigned int* error) {
    return wait_until(load, count, error, WAIT_LIMIT_NS);
}

__device__ __forceinline__ unsigned int sm_id() {
#ifdef CUDA_ON_CPU  // tests/cuda_on_cpu.h: each block is an SM of its own
    return blockIdx.x;
#else
    unsigned int id;
    asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
    return id;
#endif
}

#ifndef CUDA_ON_CPU  // the cluster way is PTX of sm_90's: the GPU's alone
__device__ __forceinline__ unsigned int load_acquire_cluster(const unsigned int* local) {
    unsigned int v;
    const unsigned int address = (unsigned int)__cvta_generic_to_shared(local);
    asm volatile("ld.acquire.cluster.shared::cta.u32 %0, [%1];" : "=r"(v) : "r"(address) : "memory");
    return v;
}

// The address of `local` (this block's shared memory) in block `rank` of the cluster.
__device__ __forceinline__ unsigned int remote(const void* local, unsigned int rank) {
    unsigned int address = (unsigned int)__cvta_generic_to_shared(local), mapped;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(mapped) : "r"(address), "r"(rank));
    return mapped;
}

__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;" ::: "memory");
}
#endif

__device__ __forceinline__ unsigned int mismatches(const float* got, int floats, int round) {
    unsigned int bad = 0;
    for (int i = threadIdx.x; i < floats; i += THREADS) bad += got[i] != (float)(round + i);
    return bad;
}

__device__ __forceinline__ void finish(const Params& p, unsigned long long start, unsigned int bad) {
    __shared__ unsigned int block_bad;
    if (threadIdx.x == 0) block_bad = 0;
    __syncthreads();
    if (bad) atomicAdd(&block_bad, bad);
    __syncthreads();
    if (threadIdx.x == 0) {
        if (blockIdx.x == 0) p.result[0] = now_ns() - start;
        atomicAdd(p.result + 1, (unsigned long long)block_bad);
        p.result[2 + blockIdx.x] = sm_id();
    }
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) handoff_global(const Params p) {
    __shared__ float got[MAX_FLOATS];
    const int me = blockIdx.x, tid = threadIdx.x;
    float* to = p.slots + (size_t)me * MAX_FLOATS;
    const float* from = p.slots + (size_t)(1 - me) * MAX_FLOATS;
    unsigned int* my_flag = p.flags + me * 32;
    const unsigned int* their_flag = p.flags + (1 - me) * 32;
    unsigned int bad = 0;
    const unsigned long long start = now_ns();
    for (int round = 1; round <= p.rounds; ++round) {
        if (me == 1 || round > 1) {  // receive: block 1 what block 0 sent this round, block 0 the last round's reply
            const int sent = me == 1 ? round : round - 1;
            if (!wait_for([&] { return load_acquire(their_flag); }, (unsigned int)sent, p.error)) return;
            for (int i = tid; i < p.floats; i += THREADS) got[i] = __ldcg(from + i);
            __syncthreads();
            bad += mismatches(got, p.floats, sent);
        }
        for (int i = tid; i < p.floats; i += THREADS) to[i] = (float)(round + i);
        publish(my_flag, (unsigned int)round);
    }
    if (me == 0) {  // the last reply
        if (!wait_for([&] { return load_acquire(their_flag); }, (unsigned int)p.rounds, p.error)) return;
        for (int i = tid; i < p.floats; i += THREADS) got[i] = __ldcg(from + i);
        __syncthreads();
        bad += mismatches(got, p.floats, p.rounds);
    }
    finish(p, start, bad);
}

#ifndef CUDA_ON_CPU
extern "C" __global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(THREADS, 1) handoff_cluster(const Params p) {
    __shared__ float inbox[MAX_FLOATS];
    __shared__ unsigned int arrived;  // rounds whose payload the other block has put in `inbox`
    const int me = blockIdx.x, tid = threadIdx.x;
    if (tid == 0) arrived = 0;
    cluster_sync();  // both inboxes are ready before either is written
    const unsigned int their_inbox = remote(inbox, 1 - me), their_arrived = remote(&arrived, 1 - me);
    unsigned int bad = 0;
    const unsigned long long start = now_ns();
    for (int round = 1; round <= p.rounds; ++round) {
        if (me == 1 || round > 1) {
            const int sent = me == 1 ? round : round - 1;
            if (!wait_for([&] { return load_acquire_cluster(&arrived); }, (unsigned int)sent, p.error)) break;
            bad += mismatches(inbox, p.floats, sent);
            __syncthreads();  // read before the next round overwrites it
        }
        for (int i = tid; i < p.floats; i += THREADS)
            asm volatile("st.shared::cluster.f32 [%0], %1;" ::"r"(their_inbox + 4 * i), "f"((float)(round + i))
                         : "memory");
        __syncthreads();
        if (tid == 0) {
            asm volatile("fence.acq_rel.cluster;" ::: "memory");
            asm volatile("st.release.cluster.shared::cluster.u32 [%0], %1;" ::"r"(their_arrived), "r"(round)
                         : "memory");
        }
    }
    if (me == 0 && wait_for([&] { return load_acquire_cluster(&arrived); }, (unsigned int)p.rounds, p.error))
        bad += mismatches(inbox, p.floats, p.rounds);
    finish(p, start, bad);
    cluster_sync();  // neither block leaves while the other may still write into its shared memory
}
#endif  // CUDA_ON_CPU
