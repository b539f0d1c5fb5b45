// CUDA on the CPU, for tests: the part of CUDA C++ that wavenet/generation/persistent.cu uses, run with one OS
// thread per block (every block resident at once, as a cooperative launch promises) and one coroutine per CUDA
// thread (ucontext), switched at __syncthreads and warp shuffles only. So a block's __shared__ variables are its OS
// thread's thread_local ones, and a barrier that not every thread of a block reaches is reported, not hung on.
// It checks a kernel's indexing, its dataflow and its protocol of hand-offs; not timing or arithmetic (expf and the
// like round as the CPU's libm does). Built with -fsanitize=thread it checks the ordering of memory too: every
// CUDA thread is a fiber of ThreadSanitizer's, switched without ordering anything, so only what orders memory on
// the GPU orders it here (__syncthreads; acquire and release between blocks; not a warp shuffle), and a read or
// write that nothing orders after a conflicting one is reported as a data race, whichever ran first.
// tests/cuda_on_cpu.py compiles a kernel with it.
#pragma once

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <ucontext.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#endif

#define CUDA_ON_CPU 1
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
#define __shared__ static thread_local  // per block: a block is one OS thread

using std::max;
using std::min;

struct alignas(16) int4 {
    int x, y, z, w;
};

namespace cuda_on_cpu {

// The emulator's own bookkeeping, shared by the coroutines of a block: relaxed atomics, so that ThreadSanitizer
// sees it as ordering nothing and as no race.
template <typename T>
T peek(const T& v) {
    return __atomic_load_n(&v, __ATOMIC_RELAXED);
}
template <typename T>
void poke(T& v, T x) {
    __atomic_store_n(&v, x, __ATOMIC_RELAXED);
}

#if defined(__SANITIZE_THREAD__)
inline void* new_fiber() { return __tsan_create_fiber(0); }
inline void* this_fiber() { return __tsan_get_current_fiber(); }
inline void drop_fiber(void* fiber) { __tsan_destroy_fiber(fiber); }
// Just before a switch of stacks; `ordered`: what the fiber left did happens before what the next one does.
inline void switch_fiber(void* to, bool ordered) {
    __tsan_switch_to_fiber(to, ordered ? 0 : __tsan_switch_to_fiber_no_sync);
}
inline void release(void* sync) { __tsan_release(sync); }
inline void acquire(void* sync) { __tsan_acquire(sync); }
#else
inline void* new_fiber() { return nullptr; }
inline void* this_fiber() { return nullptr; }
inline void drop_fiber(void*) {}
inline void switch_fiber(void*, bool) {}
inline void release(void*) {}
inline void acquire(void*) {}
#endif

struct Index {
    unsigned int x, y, z;
};

struct Thread {
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    void* fiber = nullptr;  // ThreadSanitizer's
    unsigned int index = 0;
    bool started = false, done = false;
};

struct Block {
    unsigned int index = 0, size = 0;
    std::unique_ptr<int4[]> shared;  // dynamic shared memory, 16-byte aligned
    std::vector<Thread> threads;
    Thread* current = nullptr;
    ucontext_t scheduler;
    void* scheduler_fiber = nullptr;
    unsigned int arrived = 0, generation = 0;           // __syncthreads
    char barrier_sync[2] = {};                          // its ordering, for ThreadSanitizer: one a generation
    char exited = 0;                                    // ThreadSanitizer's: the threads' ends before the block's
    std::vector<unsigned int> warp_arrived, warp_generation;  // __shfl_*_sync
    std::vector<uint64_t> lanes;                        // the values being shuffled
    unsigned long long progress = 0;                    // barrier arrivals and exits
    std::function<void()> body;
};

inline thread_local Block* block = nullptr;

inline Thread* current() { return peek(block->current); }
inline Index thread_index() { return {current()->index, 0, 0}; }
inline Index block_index() { return {block->index, 0, 0}; }
inline unsigned char* dynamic_shared() { return reinterpret_cast<unsigned char*>(block->shared.get()); }

// Back to the block's scheduler, which resumes the next thread.
inline void yield() {
    switch_fiber(block->scheduler_fiber, false);
    swapcontext(&current()->context, &block->scheduler);
}

// Wait until `count` threads have arrived at the barrier kept by (arrived, generation).
inline void barrier(unsigned int& arrived, unsigned int& generation, unsigned int count) {
    const unsigned int mine = peek(generation);
    __atomic_add_fetch(&block->progress, 1, __ATOMIC_RELAXED);
    if (__atomic_add_fetch(&arrived, 1, __ATOMIC_RELAXED) == count) {
        poke(arrived, 0u);
        poke(generation, mine + 1);
        return;
    }
    while (peek(generation) == mine) yield();
}

inline void run_thread() {
    Block& b = *block;
    b.body();
    poke(current()->done, true);
    __atomic_add_fetch(&b.progress, 1, __ATOMIC_RELAXED);
    void* const scheduler = b.scheduler_fiber;
    release(&b.exited);  // the block's end, not its other threads, comes after all this thread did
    switch_fiber(scheduler, false);
}

// Run one block's threads round robin until all have returned; an error when a round moves none of them on (they
// wait at barriers that cannot complete).
inline std::string run_block(unsigned int index, unsigned int threads, size_t shared_bytes,
                             const std::function<void()>& body) {
    constexpr size_t stack_bytes = 256 * 1024;
    Block b;
    b.index = index;
    b.size = threads;
    b.shared.reset(new int4[shared_bytes / sizeof(int4) + 1]());
    b.threads = std::vector<Thread>(threads);
    b.warp_arrived.assign((threads + 31) / 32, 0);
    b.warp_generation.assign((threads + 31) / 32, 0);
    b.lanes.assign(threads, 0);
    b.body = body;
    b.scheduler_fiber = this_fiber();
    block = &b;
    for (unsigned int t = 0; t < threads; ++t) {
        Thread& thread = b.threads[t];
        thread.index = t;
        thread.fiber = new_fiber();
        thread.stack.reset(new char[stack_bytes]);
        getcontext(&thread.context);
        thread.context.uc_stack.ss_sp = thread.stack.get();
        thread.context.uc_stack.ss_size = stack_bytes;
        thread.context.uc_link = &b.scheduler;
        makecontext(&thread.context, run_thread, 0);
    }
    std::string error;
    for (bool running = true; running;) {
        running = false;
        const unsigned long long before = peek(b.progress);
        for (Thread& thread : b.threads) {
            if (peek(thread.done)) continue;
            running = true;
            poke(b.current, &thread);
            const bool first = !thread.started;
            thread.started = true;
            switch_fiber(thread.fiber, first);  // a thread starts after the block's set-up
            swapcontext(&b.scheduler, &thread.context);
        }
        if (running && peek(b.progress) == before) {
            unsigned int done = 0;
            for (const Thread& thread : b.threads) done += peek(thread.done);
            error = "block " + std::to_string(index) + ": its threads wait at barriers that cannot complete (" +
                    std::to_string(done) + " of " + std::to_string(threads) + " have returned)";
            break;  // the waiting threads are abandoned with their stacks
        }
    }
    acquire(&b.exited);
    for (Thread& thread : b.threads) drop_fiber(thread.fiber);
    block = nullptr;
    return error;
}

// Every block at once, each on an OS thread of its own; the first block's error, or "".
inline std::string launch(unsigned int blocks, unsigned int threads, size_t shared_bytes,
                          const std::function<void()>& body) {
    std::vector<std::string> errors(blocks);
    std::vector<std::thread> workers;
    for (unsigned int b = 0; b < blocks; ++b)
        workers.emplace_back([&, b] { errors[b] = run_block(b, threads, shared_bytes, body); });
    for (std::thread& worker : workers) worker.join();
    for (const std::string& error : errors)
        if (!error.empty()) return error;
    return "";
}

}  // namespace cuda_on_cpu

#define threadIdx (cuda_on_cpu::thread_index())
#define blockIdx (cuda_on_cpu::block_index())

// Orders memory within the block: what each thread did before it happens before what any does after it. Not
// after the next barrier: a thread that leaves this one late must not see what others did since (hence a
// ThreadSanitizer sync object for each of the two generations that can be in flight).
inline void __syncthreads() {
    cuda_on_cpu::Block& b = *cuda_on_cpu::block;
    char* sync = &b.barrier_sync[cuda_on_cpu::peek(b.generation) % 2];
    cuda_on_cpu::release(sync);
    cuda_on_cpu::barrier(b.arrived, b.generation, b.size);
    cuda_on_cpu::acquire(sync);
}

// Every lane of the calling thread's warp takes part (the kernel's only mask is the full one). It moves the values
// only: no memory is ordered by it, as on the GPU.
template <typename T>
T __shfl_xor_sync(unsigned int, T value, int lane_mask) {
    static_assert(sizeof(T) <= sizeof(uint64_t), "a shuffled value fits 64 bits");
    cuda_on_cpu::Block& b = *cuda_on_cpu::block;
    const unsigned int tid = cuda_on_cpu::current()->index, warp = tid / 32;
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof value);
    cuda_on_cpu::poke(b.lanes[tid], bits);
    cuda_on_cpu::barrier(b.warp_arrived[warp], b.warp_generation[warp], 32);
    bits = cuda_on_cpu::peek(b.lanes[warp * 32 + ((tid % 32) ^ lane_mask)]);
    cuda_on_cpu::barrier(b.warp_arrived[warp], b.warp_generation[warp], 32);
    T out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

template <typename T>
T __ldcg(const T* p) {
    return *const_cast<const volatile T*>(p);
}

inline float __int_as_float(int v) {
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

inline float __uint_as_float(unsigned int v) {
    float f;
    memcpy(&f, &v, sizeof f);
    return f;
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// CUDA's atomics are relaxed: they order no other memory.
inline unsigned int atomicExch(unsigned int* p, unsigned int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned int atomicAdd(unsigned int* p, unsigned int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

// flags.cuh's primitives (its PTX is for the GPU). A spinning reader lets the other blocks' OS threads run.
inline unsigned int load_acquire(const unsigned int* p) {
    std::this_thread::yield();
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

inline void store_release(unsigned int* p, unsigned int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

inline unsigned long long now_ns() {
    using namespace std::chrono;
    return duration_cast<nanoseconds>(steady_clock::now().time_since_epoch()).count();
}

// The SM's cycle counter: here nanoseconds of the steady clock.
inline long long clock64() { return (long long)now_ns(); }

// extern "C" int <kernel>_on_cpu(blocks, threads, shared bytes, params, error, error size): the launch, 0 when
// every block returned, else 1 with the reason in `error`.
#define CUDA_ON_CPU_ENTRY(kernel, Params)                                                                   \
    extern "C" int kernel##_on_cpu(unsigned int blocks, unsigned int threads, size_t shared_bytes,         \
                                   const Params* params, char* error, size_t error_size) {                 \
        const Params copy = *params;                                                                        \
        const std::string failed = cuda_on_cpu::launch(blocks, threads, shared_bytes, [&] { kernel(copy); }); \
        snprintf(error, error_size, "%s", failed.c_str());                                                  \
        return failed.empty() ? 0 : 1;                                                                      \
    }
