// The cached engine's step in C++, for the CPU: every matmul of a step (both taps of the dilated conv at once,
// the residual added in place, all layers' skips in one product, the head) in one register-tiled kernel written
// with GCC vector types (compiled for this machine's SIMD: AVX-512, AVX2, ...), weights packed once in column
// blocks that stream from contiguous memory, outputs in buffers allocated once, the gated units (tanh x sigmoid,
// from a vectorised exp) in the same vectors, and no ATen call inside a step but the temperature's division.
// Whole runs of steps (sampling included) run in one call that releases the GIL. The logits differ from the
// cached engine's by rounding (sums in another order, exp to about 1 ulp): relative error ~1e-7.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace {

#if defined(__AVX512F__)
constexpr int kWidth = 16;  // floats per vector register
constexpr int kRows = 4;    // rows per tile: kRows x kVectors accumulators, plus kVectors weight registers
#else
constexpr int kWidth = 8;
constexpr int kRows = 3;
#endif
constexpr int kVectors = 4;  // a tile is kRows x (kVectors x kWidth) outputs
constexpr int64_t kDepth = 128;  // rows of w per pass: 128 x 64 floats (32 KB) fit L1
alignas(64) const float zeros[kVectors * kWidth] = {};  // the bias of every pass after the first
typedef float vec __attribute__((vector_size(4 * kWidth), aligned(4)));  // unaligned loads and stores

typedef int32_t ivec __attribute__((vector_size(4 * kWidth), aligned(4)));

inline vec splat(float v) { return vec{} + v; }
inline vec load(const float* p) { return *reinterpret_cast<const vec*>(p); }
inline void store(float* p, vec v) { *reinterpret_cast<vec*>(p) = v; }

// exp(x) to about 1 ulp: x = n ln 2 + r with |r| <= ln 2 / 2, a degree-7 polynomial for exp(r) (Cephes' expf
// coefficients), 2^n built in the exponent bits.
inline vec exp(vec x) {
  const vec high = splat(88.3762626647949f), low = -high;
  x = x < high ? x : high;
  x = x > low ? x : low;
  const vec n = (x * 1.44269504088896341f + 12582912.f) - 12582912.f;  // round to nearest (|x log2 e| < 2^22)
  const vec r = x - n * 0.693359375f + n * 2.12194440e-4f;
  vec p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.f;
  const ivec bits = (__builtin_convertvector(n, ivec) + 127) << 23;
  vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

// The gated units of one layer: z[b][g] = tanh(h[b][g]) * sigmoid(h[b][G + g]), h (rows, 2G), z rows ldz apart.
void gated_units(const float* h, int64_t rows, int64_t G, float* z, int64_t ldz) {
  for (int64_t b = 0; b < rows; ++b) {
    const float* hb = h + b * 2 * G;
    int64_t g = 0;
    for (; g + kWidth <= G; g += kWidth) {
      const vec filt = load(hb + g), gate = load(hb + G + g);
      const vec tanh = 1.f - 2.f / (exp(2.f * filt) + 1.f), sigmoid = 1.f / (1.f + exp(-gate));
      store(z + b * ldz + g, tanh * sigmoid);
    }
    for (; g < G; ++g) z[b * ldz + g] = std::tanh(hb[g]) / (1.f + std::exp(-hb[G + g]));
  }
}

// out[r][j] = (init ? init[r][j] : 0) + bias[j] + sum_k a[r][k] w[k][j] (relu'd if asked) for rows r < ROWS and
// columns j of VECTORS vectors from j0. a: (ROWS, K) with row stride lda; w: (K, N) row-major.
template <int ROWS, int VECTORS>
inline void tile(const float* a, int64_t lda, const float* w, int64_t ldw, int64_t K, const float* bias,
                 const float* init, int64_t ldi, float* out, int64_t ldo, bool relu) {
  vec acc[ROWS][VECTORS];
  for (int c = 0; c < VECTORS; ++c) {
    const vec b = bias ? load(bias + c * kWidth) : vec{};
    for (int r = 0; r < ROWS; ++r) acc[r][c] = init ? b + load(init + r * ldi + c * kWidth) : b;
  }
  for (int64_t k = 0; k < K; ++k) {
    vec wk[VECTORS];
    for (int c = 0; c < VECTORS; ++c) wk[c] = load(w + k * ldw + c * kWidth);
    for (int r = 0; r < ROWS; ++r) {
      const float ark = a[r * lda + k];
      for (int c = 0; c < VECTORS; ++c) acc[r][c] += ark * wk[c];
    }
  }
  for (int r = 0; r < ROWS; ++r)
    for (int c = 0; c < VECTORS; ++c) {
      vec v = acc[r][c];
      if (relu) v = v > 0 ? v : vec{};
      store(out + r * ldo + c * kWidth, v);
    }
}

template <int VECTORS>
inline void rows_of_tiles(int64_t rows, const float* a, int64_t lda, const float* w, int64_t ldw, int64_t K,
                          const float* bias, const float* init, int64_t ldi, float* out, int64_t ldo, bool relu) {
  int64_t r = 0;
  for (; r + kRows <= rows; r += kRows)
    tile<kRows, VECTORS>(a + r * lda, lda, w, ldw, K, bias, init ? init + r * ldi : nullptr, ldi, out + r * ldo, ldo,
                         relu);
  for (; r < rows; ++r)
    tile<1, VECTORS>(a + r * lda, lda, w, ldw, K, bias, init ? init + r * ldi : nullptr, ldi, out + r * ldo, ldo,
                     relu);
}

// A weight matrix w (K, N) rearranged for `linear`: its columns in blocks of kVectors vectors (the last block
// narrower when N is not a multiple), each block's K rows one after another, so that every block's weights stream
// from contiguous memory. Element (k, j) of the block from j0 (width n = min(block, N - j0)) is at j0 K + k n + j - j0.
struct Weight {
  at::Tensor storage;
  const float* data;
  int64_t K, N;

  explicit Weight(const at::Tensor& w) : storage(at::empty({w.size(0) * w.size(1)}, w.options())), K(w.size(0)),
                                          N(w.size(1)) {
    const at::Tensor src = w.contiguous();
    const float* from = src.data_ptr<float>();
    float* to = storage.data_ptr<float>();
    for (int64_t j0 = 0; j0 < N; j0 += kVectors * kWidth) {
      const int64_t n = std::min<int64_t>(kVectors * kWidth, N - j0);
      for (int64_t k = 0; k < K; ++k) std::memcpy(to + j0 * K + k * n, from + k * N + j0, n * sizeof(float));
    }
    data = to;
  }
};

// out = [out +] bias + a @ w [relu] (accumulate: the residual added in place) for `rows` rows of a (K wide, rows
// lda apart) and of out (N wide, ldo apart); out must not overlap a. Columns in blocks of kVectors vectors; within
// a block, rows in tiles of kRows; columns past the last whole vector (sizes that are not a multiple of the vector
// width) one at a time. One thread: more threads work on shards of the streams, each with a kernel of its own.
void linear(float* out, int64_t ldo, const float* a, int64_t lda, int64_t rows, const Weight& w, const float* bias,
            bool accumulate, bool relu) {
  const int64_t K = w.K, N = w.N, block = kVectors * kWidth, vectors_end = N - N % kWidth;
  for (int64_t j = 0; j < vectors_end; j += block) {
    const int64_t width = std::min(block, N - j);
    for (int64_t k0 = 0; k0 < K; k0 += kDepth) {  // a (kDepth x block) slice of w stays in L1 for all rows
      const int64_t depth = std::min(kDepth, K - k0);
      const bool first_slice = k0 == 0, last_slice = k0 + depth == K;
      const float* b_j = first_slice ? bias + j : zeros;
      const float* init = accumulate || !first_slice ? out + j : nullptr;
      const float *a_k = a + k0, *w_k = w.data + j * K + k0 * width;
      if (width == block)
        rows_of_tiles<kVectors>(rows, a_k, lda, w_k, width, depth, b_j, init, ldo, out + j, ldo, relu && last_slice);
      else
        for (int64_t jj = 0; j + jj < vectors_end; jj += kWidth)
          rows_of_tiles<1>(rows, a_k, lda, w_k + jj, width, depth, b_j + jj, init ? init + jj : nullptr, ldo,
                           out + j + jj, ldo, relu && last_slice);
    }
  }
  for (int64_t j = vectors_end; j < N; ++j) {
    const int64_t j0 = j - j % block, width = std::min(block, N - j0);
    const float* column = w.data + j0 * K + (j - j0);
    for (int64_t r = 0; r < rows; ++r) {
      float sum = (accumulate ? out[r * ldo + j] : 0.f) + bias[j];
      for (int64_t k = 0; k < K; ++k) sum += a[r * lda + k] * column[k * width];
      out[r * ldo + j] = relu && sum < 0 ? 0.f : sum;
    }
  }
}

// The first index of the largest of n values (a NaN counts as the largest), as torch.argmax picks it.
int64_t argmax(const float* v, int64_t n) {
  int64_t best = 0;
  for (int64_t j = 1; j < n; ++j)
    if (v[j] > v[best] || (std::isnan(v[j]) && !std::isnan(v[best]))) best = j;
  return best;
}

// A model's step weights, packed once and shared by every shard's CpuStep. skip_w: (L * G, S), layer-major; the
// others as the cached engine holds them.
struct Weights {
  at::Tensor embed;
  std::vector<Weight> dilated_w, residual_w;  // dilated: (2R, 2G), the taps at t - d, then t
  std::vector<at::Tensor> dilated_b, residual_b;
  Weight skip_w, head_w1, head_w2;
  at::Tensor skip_b, head_b1, head_b2;
  int64_t residual, gate, classes;

  Weights(const at::Tensor& embed_w, const std::vector<at::Tensor>& past_w, const std::vector<at::Tensor>& now_w,
          const std::vector<at::Tensor>& dilated_biases, const std::vector<at::Tensor>& residual_ws,
          const std::vector<at::Tensor>& residual_biases, const at::Tensor& skip, const at::Tensor& skip_bias,
          const at::Tensor& w1, const at::Tensor& b1, const at::Tensor& w2, const at::Tensor& b2)
      : embed(embed_w.contiguous()), skip_w(skip), head_w1(w1), head_w2(w2), skip_b(skip_bias.contiguous()),
        head_b1(b1.contiguous()), head_b2(b2.contiguous()), residual(embed_w.size(1)),
        gate(residual_ws[0].size(0)), classes(w2.size(1)) {
    for (size_t i = 0; i < past_w.size(); ++i) {
      dilated_w.emplace_back(at::cat({past_w[i], now_w[i]}, 0));
      dilated_b.push_back(dilated_biases[i].contiguous());
      residual_w.emplace_back(residual_ws[i]);
      residual_b.push_back(residual_biases[i].contiguous());
    }
  }
};

class CpuStep {
 public:
  // ring: (slots, B, channels), B's rows ring.stride(1) apart (a slice of the engine's streams is fine).
  CpuStep(at::Tensor ring, std::vector<int64_t> dilations, std::vector<int64_t> offsets,
          std::shared_ptr<const Weights> weights)
      : ring_(ring), dilations_(dilations), offsets_(offsets), w_(std::move(weights)), batch_(ring.size(1)) {
    TORCH_CHECK(ring.stride(2) == 1, "CpuStep: the ring's channels must be contiguous");
    const auto options = w_->embed.options();
    const int64_t layers = dilations.size();
    taps_ = at::empty({batch_, 2 * w_->residual}, options);  // [input at t - d | input at t]
    h_ = at::empty({batch_, 2 * w_->gate}, options);
    gated_ = at::empty({batch_, layers * w_->gate}, options);  // every layer's gated units, for the one skip product
    skip_ = at::empty({batch_, w_->skip_w.N}, options);
    hidden_ = at::empty({batch_, w_->head_w1.N}, options);
    logits_ = at::empty({batch_, w_->classes}, options);
    scaled_ = at::empty({batch_, w_->classes}, at::kFloat);
  }

  // Feed codes (B,) at position t; the logits (B, C) predicting position t + 1 (a buffer reused by the next call).
  at::Tensor step(const at::Tensor& codes, int64_t t) {
    const at::Tensor c = codes.to(at::kLong).contiguous();
    TORCH_CHECK(c.numel() == batch_, "CpuStep.step: ", c.numel(), " codes for ", batch_, " streams");
    run_step(c.data_ptr<int64_t>(), 1, t);
    return logits_;
  }

  // steps samples for every stream: feed `pending` (B,) at t, t + 1, ...; each draw becomes the next pending code
  // and is written to out[:, column + s]. noise (steps, B, C) is Gumbel noise, or empty for greedy (temperature 0).
  void generate(at::Tensor pending, int64_t t, int64_t steps, const at::Tensor& noise, double temperature,
                at::Tensor out, int64_t column) {
    c10::InferenceMode guard;
    TORCH_CHECK(pending.scalar_type() == at::kLong && out.scalar_type() == at::kLong, "CpuStep.generate: int64 codes");
    const int64_t C = w_->classes;
    int64_t *codes = pending.data_ptr<int64_t>(), *drawn = out.data_ptr<int64_t>() + column * out.stride(1);
    const int64_t code_stride = pending.stride(0), out_rows = out.stride(0), out_steps = out.stride(1);
    const float *logits = logits_.data_ptr<float>(), *scaled = scaled_.data_ptr<float>();
    const bool greedy = noise.numel() == 0;
    const float* noise_data = greedy ? nullptr : noise.data_ptr<float>();
    std::vector<float> noisy(C);
    for (int64_t s = 0; s < steps; ++s) {
      run_step(codes, code_stride, t + s);
      if (!greedy) at::div_out(scaled_, logits_, temperature);  // as the engines divide, to the bit
      for (int64_t b = 0; b < batch_; ++b) {
        int64_t code;
        if (greedy) {
          code = argmax(logits + b * C, C);
        } else {
          const float* n = noise_data + s * noise.stride(0) + b * noise.stride(1);
          for (int64_t j = 0; j < C; ++j) noisy[j] = scaled[b * C + j] + n[j * noise.stride(2)];
          code = argmax(noisy.data(), C);
        }
        codes[b * code_stride] = code;
        drawn[b * out_rows + s * out_steps] = code;
      }
    }
  }

 private:
  // One step on raw memory: codes[b * code_stride] fed at position t; the logits into logits_.
  void run_step(const int64_t* codes, int64_t code_stride, int64_t t) {
    const Weights& w = *w_;
    const int64_t R = w.residual, G = w.gate, B = batch_, ring_rows = ring_.stride(1);
    float *taps = taps_.data_ptr<float>(), *h = h_.data_ptr<float>(), *gated = gated_.data_ptr<float>();
    float* x = taps + R;  // the residual stream lives in the taps' second half, rows 2R apart
    const float* embed = w.embed.data_ptr<float>();
    for (int64_t b = 0; b < B; ++b) {
      const int64_t code = codes[b * code_stride];
      TORCH_CHECK(0 <= code && code < w.embed.size(0), "CpuStep: code ", code, " is out of range");
      std::memcpy(x + b * 2 * R, embed + code * R, R * sizeof(float));
    }
    float* ring = ring_.data_ptr<float>();
    const size_t last = dilations_.size() - 1;
    for (size_t i = 0; i < dilations_.size(); ++i) {
      float* slot = ring + (offsets_[i] + t % dilations_[i]) * ring_.stride(0);  // (B, ring channels) >= R
      for (int64_t b = 0; b < B; ++b) {  // the input at t - d in, the input at t into the ring
        std::memcpy(taps + b * 2 * R, slot + b * ring_rows, R * sizeof(float));
        std::memcpy(slot + b * ring_rows, taps + b * 2 * R + R, R * sizeof(float));
      }
      linear(h, 2 * G, taps, 2 * R, B, w.dilated_w[i], w.dilated_b[i].data_ptr<float>(), false, false);
      float* z = gated + i * G;
      gated_units(h, B, G, z, gated_.stride(0));
      if (i < last)  // x += residual
        linear(x, 2 * R, z, gated_.stride(0), B, w.residual_w[i], w.residual_b[i].data_ptr<float>(), true, false);
    }
    float *skip = skip_.data_ptr<float>(), *hidden = hidden_.data_ptr<float>();
    linear(skip, w.skip_w.N, gated, gated_.stride(0), B, w.skip_w, w.skip_b.data_ptr<float>(), false, true);
    linear(hidden, w.head_w1.N, skip, w.skip_w.N, B, w.head_w1, w.head_b1.data_ptr<float>(), false, true);
    linear(logits_.data_ptr<float>(), w.classes, hidden, w.head_w1.N, B, w.head_w2, w.head_b2.data_ptr<float>(),
           false, false);
  }

  at::Tensor ring_;
  std::vector<int64_t> dilations_, offsets_;
  std::shared_ptr<const Weights> w_;
  int64_t batch_;
  at::Tensor taps_, h_, gated_, skip_, hidden_, logits_, scaled_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.attr("vector_width") = kWidth;
  py::class_<Weights, std::shared_ptr<Weights>>(m, "Weights")
      .def(py::init<const at::Tensor&, const std::vector<at::Tensor>&, const std::vector<at::Tensor>&,
                    const std::vector<at::Tensor>&, const std::vector<at::Tensor>&, const std::vector<at::Tensor>&,
                    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                    const at::Tensor&>());
  py::class_<CpuStep>(m, "CpuStep")
      .def(py::init<at::Tensor, std::vector<int64_t>, std::vector<int64_t>, std::shared_ptr<const Weights>>())
      .def("step", &CpuStep::step, py::call_guard<py::gil_scoped_release>())
      .def("generate", &CpuStep::generate, py::call_guard<py::gil_scoped_release>());
}
