// The persistent backend's kernel: each block keeps its layers' weights in shared memory for a whole launch, and
// the blocks of a pipeline hand one sample's activations to one another through global memory and flags.
//
// One pipeline runs NB streams. Its blocks, in order: NL layer blocks (block j owns layers j*LPB ..), then H head
// blocks (head block h owns hidden units h*SH ..; head block 0 also sums the logits and samples). Per sample:
//
//   layer block j: past terms of its layers (inputs at t - d: ready before this sample's input arrives)
//                  -> wait for x (block j - 1, or the sampled code for block 0) -> its layers -> hand x on
//                  -> its skip contributions, added to block j - 1's running sum -> hand the sum on
//   head block h:  wait for the skip sum -> relu, 1x1 (its hidden units), relu, 1x1 (partial logits) -> hand on
//   head block 0:  sum the partial logits -> Gumbel-max sampling (or the teacher's code) -> the code for block 0
//
// A sample's chain runs through every block before the next sample starts, so one slot per hand-off is enough.
// Flags count the samples a stage has handed on in this launch (zeroed by the host before each launch).
// Compile-time sizes come from the host as -D options (wavenet/generation/persistent.py): R, G, S, C (padded
// channel counts, powers of two >= 32), NB, LPB, NL, H, THREADS, WEIGHT_BF16, LAYER_BYTES, HEAD_BYTES, ACT_FLOATS;
// PROFILE=1 builds a kernel that also times its phases (see Profile below).

#include "flags.cuh"  // load_acquire, store_release, now_ns, wait_until, publish

#define SH (S / H)

#if WEIGHT_BF16
typedef unsigned short weight_t;  // bfloat16 bits
__device__ __forceinline__ float load_w(const weight_t* p) { return __uint_as_float(((unsigned int)*p) << 16); }
#else
typedef float weight_t;
__device__ __forceinline__ float load_w(const weight_t* p) { return *p; }
#endif

struct Params {
    long long* pending;          // (B,): the code fed at step 0; on return, the code to feed next
    long long* out;              // (B, n): sampled codes
    const long long* forced;     // (B, n): teacher codes, or null
    float* logits;               // (B, n, C): logits of every step when forced
    const long long* keys;       // (B,): noise keys in [0, 2^32)
    float* ring;                 // (sum of dilations, B, R): every layer's past inputs
    const int* ring_rows;        // (L,): first ring row of each layer
    const int* dilations;        // (L,)
    const float* embed;          // (classes, R)
    const unsigned char* layers; // (L, LAYER_BYTES): per layer past_w, now_w (R, 2G), res_w (G, R), skip_w (G, S),
                                 // then float dil_b (2G), res_b (R)
    const unsigned char* heads;  // (H, HEAD_BYTES): per head block w1 (S, SH), w2 (SH, C), then float b1 (SH)
    const float* skip_b;         // (S,): every layer's skip bias, summed
    const float* head_b2;        // (C,): padded classes hold -1e30
    float* x_handoff;            // per pipeline (NL, NB, R)
    float* skip_handoff;         // per pipeline (NL, NB, S)
    float* logit_handoff;        // per pipeline (H, NB, C)
    long long* code_handoff;     // per pipeline (NB,)
    unsigned int* flags;         // per pipeline (2 NL + H + 1) counters, FLAG_STRIDE apart
    unsigned int* error;         // set to 1 when a block gave up waiting (see wait_for)
    long long* profile;          // PROFILE builds: per block, PROFILE_SLOTS counters (see Profile)
    long long batch;             // B: streams in the ring, pending, out and keys
    long long first_stream;      // the first stream of this launch
    long long streams;           // streams in this launch
    long long n;                 // samples
    long long t0;                // the pending code's ring position, modulo the dilations' common period
    long long num_layers;        // L
    long long sample;            // 1: Gumbel-max at `temperature`; 0: greedy (ignored when forced)
    unsigned int index0;         // noise index of step 0, modulo 2^32
    float temperature;
};

static_assert(sizeof(Params) == PARAMS_BYTES, "Params must match the host's ctypes structure");

#define FLAG_STRIDE 32  // one 128-byte line per flag
#define FLAGS_PER_PIPELINE (2 * NL + H + 1)

// Where a block's time goes, in a PROFILE build: thread 0 adds the clock cycles since its previous mark to the
// phase a mark names (PHASES of them: for a layer block past terms, waiting for x, its layers, handing x on, its
// skip matmuls, waiting for the skip sum, handing the sum on; for a head block waiting for the skip sum, its
// matmuls, the partial logits handed on or gathered, sampling, handing the code on), and at the end writes them
// with the clock and the global timer at its start and end, from which the host converts cycles to time. Marks
// follow barriers, so a phase holds the block's time, not thread 0's alone. Other builds compile the marks away.
#define PHASES 8
#define PROFILE_SLOTS (PHASES + 4)
enum LayerPhase { PAST_TERMS, WAIT_X, LAYERS, HAND_X_ON, SKIP_MATMULS, WAIT_SKIP_SUM, HAND_SKIP_ON };
enum HeadPhase { HEAD_WAIT_SKIP_SUM, HEAD_MATMULS, LOGITS, SAMPLE, HAND_CODE_ON };
#ifndef PROFILE
#define PROFILE 0
#endif
struct Profile {
#if PROFILE
    long long spent[PHASES] = {}, last, clock0;
    unsigned long long ns0;
    __device__ Profile() : last(clock64()), clock0(last), ns0(now_ns()) {}
    __device__ void mark(int phase) {  // a LayerPhase or HeadPhase
        if (threadIdx.x != 0) return;
        const long long now = clock64();
        spent[phase] += now - last;
        last = now;
    }
    __device__ void write(long long* out) const {
        if (threadIdx.x != 0) return;
        long long* mine = out + (size_t)blockIdx.x * PROFILE_SLOTS;
        for (int k = 0; k < PHASES; ++k) mine[k] = spent[k];
        mine[PHASES] = clock0, mine[PHASES + 1] = clock64();
        mine[PHASES + 2] = (long long)ns0, mine[PHASES + 3] = (long long)now_ns();
    }
#else
    __device__ void mark(int) {}
    __device__ void write(long long*) const {}
#endif
};

#ifndef WAIT_LIMIT_NS  // the CPU tests give a longer one: their blocks share a few cores
#define WAIT_LIMIT_NS 2000000000ull  // no sample takes that long: a block waiting longer waits for a fault
#endif

// Block-wide: wait until another block's counter reaches `count`. Returns false, with the launch's error flag set,
// when that takes over WAIT_LIMIT_NS or another block gave up: then every block returns and the host raises,
// where a fault would otherwise hang the GPU.
__device__ __forceinline__ bool wait_for(const unsigned int* flag, unsigned int count, unsigned int* error) {
    return wait_until([&] { return load_acquire(flag); }, count, error, WAIT_LIMIT_NS);
}

// Block-wide: out[b][j] = (add ? out[b][j] : 0) + bias[j] + sum_k in[b][k] w[k][j], b < NB. `w` is (K, N) row-major
// in shared memory; with N < THREADS, THREADS / N threads split each column's sum and `scratch` (THREADS * NB
// floats) holds their parts, added in a fixed order. Ends synchronised.
template <int K, int N>
__device__ __forceinline__ void matvec(const weight_t* w, const float* in, float* out, const float* bias, bool add,
                                       float* scratch) {
    constexpr int SPLIT = N >= THREADS ? 1 : THREADS / N;
    constexpr int PART = K / SPLIT;
    static_assert(SPLIT * PART == K, "K must split evenly");
    static_assert(N >= THREADS ? N % THREADS == 0 : THREADS % N == 0, "N must tile the block");
    const int tid = threadIdx.x;
    for (int n0 = 0; n0 < N; n0 += THREADS) {
        const int j = n0 + (SPLIT == 1 ? tid : tid % N);
        const int k0 = (SPLIT == 1 ? 0 : tid / N) * PART;
        float acc[NB];
#pragma unroll
        for (int b = 0; b < NB; ++b) acc[b] = 0.f;
#pragma unroll 8
        for (int k = k0; k < k0 + PART; ++k) {
            const float wk = load_w(w + k * N + j);
#pragma unroll
            for (int b = 0; b < NB; ++b) acc[b] += in[b * K + k] * wk;
        }
        if (SPLIT == 1) {
#pragma unroll
            for (int b = 0; b < NB; ++b)
                out[b * N + j] = (add ? out[b * N + j] : 0.f) + (bias ? bias[j] : 0.f) + acc[b];
        } else {
#pragma unroll
            for (int b = 0; b < NB; ++b) scratch[((tid / N) * NB + b) * N + j] = acc[b];
        }
    }
    if (SPLIT > 1) {
        __syncthreads();
        for (int i = tid; i < NB * N; i += THREADS) {
            const int b = i / N, j = i % N;
            float sum = 0.f;
#pragma unroll
            for (int part = 0; part < SPLIT; ++part) sum += scratch[(part * NB + b) * N + j];
            out[i] = (add ? out[i] : 0.f) + (bias ? bias[j] : 0.f) + sum;
        }
    }
    __syncthreads();
}

__device__ __forceinline__ void copy_to_shared(unsigned char* dst, const unsigned char* src, int bytes) {
    for (int i = threadIdx.x; i < bytes / 16; i += THREADS)
        reinterpret_cast<int4*>(dst)[i] = reinterpret_cast<const int4*>(src)[i];
}

__device__ __forceinline__ float sigmoid(float v) { return 1.f / (1.f + expf(-v)); }

// The same hash as wavenet/generation/sampling.py's mix32.
__device__ __forceinline__ unsigned int mix32(unsigned int v) {
    v ^= v >> 16;
    v *= 0x21F0AAADu;
    v ^= v >> 15;
    v *= 0x735A2D97u;
    return v ^ (v >> 15);
}

// A layer's weights inside its LAYER_BYTES: four matrices, then two bias vectors.
struct LayerWeights {
    const weight_t *past_w, *now_w, *res_w, *skip_w;
    const float *dil_b, *res_b;
    __device__ explicit LayerWeights(const unsigned char* blob) {
        past_w = reinterpret_cast<const weight_t*>(blob);
        now_w = past_w + R * 2 * G;
        res_w = now_w + R * 2 * G;
        skip_w = res_w + G * R;
        dil_b = reinterpret_cast<const float*>(skip_w + G * S);
        res_b = dil_b + 2 * G;
    }
};

__device__ void layer_block(const Params& p, int j, int live, long long first, unsigned char* smem,
                            unsigned int* flags, float* x_handoff, float* skip_handoff, long long* code_handoff) {
    const int l0 = j * LPB;
    const int count = min((long long)LPB, p.num_layers - l0);
    copy_to_shared(smem, p.layers + (size_t)l0 * LAYER_BYTES, count * LAYER_BYTES);

    float* x = reinterpret_cast<float*>(smem + LPB * LAYER_BYTES);  // (NB, R): the residual stream
    float* past = x + NB * R;                                          // (NB, R): a layer's input at t - d
    float* h = past + NB * R;                                          // (LPB, NB, 2G): dilated conv outputs
    float* z = h + LPB * NB * 2 * G;                                   // (LPB, NB, G): gated units
    float* skip = z + LPB * NB * G;                                    // (NB, S)
    float* scratch = skip + NB * S;                                    // (THREADS * NB)
    static_assert(2 * NB * R + LPB * NB * 3 * G + NB * S + THREADS * NB <= ACT_FLOATS, "layer activations");

    int row[LPB], dilation[LPB], slot[LPB];  // loops over k < LPB are unrolled: these stay in registers
#pragma unroll
    for (int k = 0; k < LPB; ++k) {
        if (k >= count) break;
        row[k] = p.ring_rows[l0 + k];
        dilation[k] = p.dilations[l0 + k];
        slot[k] = (int)(p.t0 % dilation[k]);
    }
    __syncthreads();
    const int tid = threadIdx.x;
    Profile profile;
    for (long long s = 0; s < p.n; ++s) {
        // The past terms: this sample's input is not needed for them.
#pragma unroll
        for (int k = 0; k < LPB; ++k) {
            if (k >= count) break;
            const LayerWeights w(smem + k * LAYER_BYTES);
            const float* ring = p.ring + (size_t)(row[k] + slot[k]) * p.batch * R;
            for (int i = tid; i < NB * R; i += THREADS) {
                const int b = i / R;
                past[i] = b < live ? ring[(first + b) * R + i % R] : 0.f;
            }
            __syncthreads();
            matvec<R, 2 * G>(w.past_w, past, h + k * NB * 2 * G, w.dil_b, false, scratch);
        }
        profile.mark(PAST_TERMS);
        // This sample's input.
        if (j == 0) {
            if (s > 0 && !wait_for(flags + (2 * NL + H) * FLAG_STRIDE, (unsigned int)s, p.error)) return;
            for (int i = tid; i < NB * R; i += THREADS) {
                const int b = i / R;
                long long code = 0;
                if (b < live) code = s == 0 ? p.pending[first + b] : __ldcg(code_handoff + b);
                x[i] = b < live ? p.embed[code * R + i % R] : 0.f;
            }
        } else {
            if (!wait_for(flags + (j - 1) * FLAG_STRIDE, (unsigned int)(s + 1), p.error)) return;
            const float* from = x_handoff + (size_t)(j - 1) * NB * R;
            for (int i = tid; i < NB * R; i += THREADS) x[i] = __ldcg(from + i);
        }
        __syncthreads();
        profile.mark(WAIT_X);
#pragma unroll
        for (int k = 0; k < LPB; ++k) {
            if (k >= count) break;
            const LayerWeights w(smem + k * LAYER_BYTES);
            float* ring = p.ring + (size_t)(row[k] + slot[k]) * p.batch * R;
            for (int i = tid; i < live * R; i += THREADS) ring[(first + i / R) * R + i % R] = x[i];
            float* hk = h + k * NB * 2 * G;
            matvec<R, 2 * G>(w.now_w, x, hk, nullptr, true, scratch);
            float* zk = z + k * NB * G;
            for (int i = tid; i < NB * G; i += THREADS) {
                const int b = i / G, g = i % G;
                zk[i] = tanhf(hk[b * 2 * G + g]) * sigmoid(hk[b * 2 * G + G + g]);
            }
            __syncthreads();
            if (l0 + k < p.num_layers - 1) matvec<G, R>(w.res_w, zk, x, w.res_b, true, scratch);
            slot[k] = slot[k] + 1 == dilation[k] ? 0 : slot[k] + 1;
        }
        profile.mark(LAYERS);
        if (j < NL - 1) {
            float* to = x_handoff + (size_t)j * NB * R;
            for (int i = tid; i < NB * R; i += THREADS) to[i] = x[i];
            publish(flags + j * FLAG_STRIDE, (unsigned int)(s + 1));
        }
        profile.mark(HAND_X_ON);
        // The skip path, off the residual stream's critical path.
#pragma unroll
        for (int k = 0; k < LPB; ++k) {
            if (k >= count) break;
            const LayerWeights w(smem + k * LAYER_BYTES);
            matvec<G, S>(w.skip_w, z + k * NB * G, skip, nullptr, k > 0, scratch);
        }
        profile.mark(SKIP_MATMULS);
        if (j > 0) {
            if (!wait_for(flags + (NL + j - 1) * FLAG_STRIDE, (unsigned int)(s + 1), p.error)) return;
            profile.mark(WAIT_SKIP_SUM);
            const float* from = skip_handoff + (size_t)(j - 1) * NB * S;
            for (int i = tid; i < NB * S; i += THREADS) skip[i] = __ldcg(from + i) + skip[i];
        }
        float* to = skip_handoff + (size_t)j * NB * S;
        for (int i = tid; i < NB * S; i += THREADS) to[i] = skip[i];
        publish(flags + (NL + j) * FLAG_STRIDE, (unsigned int)(s + 1));
        profile.mark(HAND_SKIP_ON);
    }
    profile.write(p.profile);
}

__device__ void head_block(const Params& p, int hb, int live, long long first, unsigned char* smem,
                           unsigned int* flags, const float* skip_handoff, float* logit_handoff,
                           long long* code_handoff) {
    copy_to_shared(smem, p.heads + (size_t)hb * HEAD_BYTES, HEAD_BYTES);
    const weight_t* w1 = reinterpret_cast<const weight_t*>(smem);  // (S, SH)
    const weight_t* w2 = w1 + S * SH;                              // (SH, C)
    const float* b1 = reinterpret_cast<const float*>(w2 + SH * C);  // (SH,)

    float* skip = reinterpret_cast<float*>(smem + HEAD_BYTES);  // (NB, S)
    float* hidden = skip + NB * S;                              // (NB, SH)
    float* logits = hidden + NB * SH;                           // (NB, C)
    float* scratch = logits + NB * C;                           // (THREADS * NB)
    long long* codes = reinterpret_cast<long long*>(scratch + THREADS * NB);  // (NB,): the last codes drawn
    static_assert(NB * (S + SH + C + THREADS + 2) <= ACT_FLOATS, "head activations");
    __syncthreads();

    const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
    const float* total = skip_handoff + (size_t)(NL - 1) * NB * S;
    Profile profile;
    for (long long s = 0; s < p.n; ++s) {
        if (!wait_for(flags + (NL + NL - 1) * FLAG_STRIDE, (unsigned int)(s + 1), p.error)) return;
        for (int i = tid; i < NB * S; i += THREADS) skip[i] = fmaxf(__ldcg(total + i) + p.skip_b[i % S], 0.f);
        __syncthreads();
        profile.mark(HEAD_WAIT_SKIP_SUM);
        matvec<S, SH>(w1, skip, hidden, b1, false, scratch);
        for (int i = tid; i < NB * SH; i += THREADS) hidden[i] = fmaxf(hidden[i], 0.f);
        __syncthreads();
        matvec<SH, C>(w2, hidden, logits, nullptr, false, scratch);
        profile.mark(HEAD_MATMULS);
        if (hb > 0) {
            float* to = logit_handoff + (size_t)hb * NB * C;
            for (int i = tid; i < NB * C; i += THREADS) to[i] = logits[i];
            publish(flags + (2 * NL + hb) * FLAG_STRIDE, (unsigned int)(s + 1));
            profile.mark(LOGITS);
            continue;
        }
        // Head block 0: the logits, then the next code.
        for (int other = 1; other < H; ++other) {
            if (!wait_for(flags + (2 * NL + other) * FLAG_STRIDE, (unsigned int)(s + 1), p.error)) return;
            const float* from = logit_handoff + (size_t)other * NB * C;
            for (int i = tid; i < NB * C; i += THREADS) logits[i] += __ldcg(from + i);
        }
        for (int i = tid; i < NB * C; i += THREADS) logits[i] += p.head_b2[i % C];
        __syncthreads();
        profile.mark(LOGITS);
        if (p.forced) {
            for (int i = tid; i < live * C; i += THREADS)
                p.logits[((first + i / C) * p.n + s) * C + i % C] = logits[i];
            if (tid < live) codes[tid] = p.forced[(first + tid) * p.n + s];
        } else if (warp < live) {  // one warp per stream: argmax of logits / T + Gumbel noise, first index on ties
            const unsigned int step_key = mix32((unsigned int)p.keys[first + warp] ^ (p.index0 + (unsigned int)s));
            float best = -__int_as_float(0x7f800000);  // -inf
            int best_c = C;
            for (int c = lane; c < C; c += 32) {
                float v = logits[warp * C + c];
                if (p.sample) {
                    const unsigned int bits = mix32(step_key ^ (unsigned int)c);
                    const float uniform = ((float)(bits >> 8) + 0.5f) * 5.9604644775390625e-08f;  // 2^-24
                    v = v / p.temperature - logf(-logf(uniform));
                }
                if (v > best || best_c == C) best = v, best_c = c;
            }
            for (int offset = 16; offset > 0; offset /= 2) {
                const float other = __shfl_xor_sync(0xffffffffu, best, offset);
                const int other_c = __shfl_xor_sync(0xffffffffu, best_c, offset);
                if (other > best || (other == best && other_c < best_c)) best = other, best_c = other_c;
            }
            if (lane == 0) {
                codes[warp] = best_c;
                p.out[(first + warp) * p.n + s] = best_c;
            }
        }
        __syncthreads();
        profile.mark(SAMPLE);
        if (tid < live) code_handoff[tid] = codes[tid];
        publish(flags + (2 * NL + H) * FLAG_STRIDE, (unsigned int)(s + 1));
        profile.mark(HAND_CODE_ON);
    }
    profile.write(p.profile);
    if (hb == 0 && p.n > 0 && tid < live) p.pending[first + tid] = codes[tid];
}

extern "C" __global__ void __launch_bounds__(THREADS, 1) wavenet_persistent(const Params p) {
    extern __shared__ __align__(16) unsigned char smem[];
    const int roles = NL + H;
    const int pipeline = blockIdx.x / roles, role = blockIdx.x % roles;
    const long long first = p.first_stream + (long long)pipeline * NB;
    const int live = (int)min((long long)NB, p.first_stream + p.streams - first);
    if (live <= 0) return;  // the host sizes the grid so that this never happens
    unsigned int* flags = p.flags + (size_t)pipeline * FLAGS_PER_PIPELINE * FLAG_STRIDE;
    float* x_handoff = p.x_handoff + (size_t)pipeline * NL * NB * R;
    float* skip_handoff = p.skip_handoff + (size_t)pipeline * NL * NB * S;
    float* logit_handoff = p.logit_handoff + (size_t)pipeline * H * NB * C;
    long long* code_handoff = p.code_handoff + (size_t)pipeline * NB;
    if (role < NL)
        layer_block(p, role, live, first, smem, flags, x_handoff, skip_handoff, code_handoff);
    else
        head_block(p, role - NL, live, first, smem, flags, skip_handoff, logit_handoff, code_handoff);
}
