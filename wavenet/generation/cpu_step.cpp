// The cached engine's step in C++, for the CPU: the same ATen operations in the same order as CachedEngine._step
// (so the same logits, bit for bit), with no Python between them, outputs written into buffers allocated once, and
// whole runs of steps (sampling included) done in one call that releases the GIL.
#include <torch/extension.h>

#include <vector>

namespace {

class CpuStep {
 public:
  CpuStep(at::Tensor ring, std::vector<int64_t> dilations, std::vector<int64_t> offsets, at::Tensor embed,
          std::vector<at::Tensor> past_w, std::vector<at::Tensor> now_w, std::vector<at::Tensor> dilated_b,
          std::vector<at::Tensor> residual_w, std::vector<at::Tensor> residual_b, at::Tensor skip_w,
          at::Tensor skip_b, at::Tensor head_w1, at::Tensor head_b1, at::Tensor head_w2, at::Tensor head_b2,
          at::Tensor gated)
      : ring_(ring), dilations_(dilations), offsets_(offsets), embed_(embed), past_w_(past_w), now_w_(now_w),
        dilated_b_(dilated_b), residual_w_(residual_w), residual_b_(residual_b), skip_w_(skip_w), skip_b_(skip_b),
        head_w1_(head_w1), head_b1_(head_b1), head_w2_(head_w2), head_b2_(head_b2), gated_(gated) {
    const int64_t batch = ring.size(1), residual = embed.size(1), gate = gated.size(2);
    const auto options = embed.options();
    x_ = at::empty({batch, residual}, options);
    x_next_ = at::empty({batch, residual}, options);
    h_ = at::empty({batch, 2 * gate}, options);
    skips_ = at::empty({gated.size(0), batch, skip_w.size(2)}, options);
    skip_ = at::empty({batch, skip_w.size(2)}, options);
    hidden_ = at::empty({batch, head_w1.size(1)}, options);
    logits_ = at::empty({batch, head_w2.size(1)}, options);
    scaled_ = at::empty({batch, head_w2.size(1)}, at::kFloat);
  }

  // Feed codes (B,) at position t; the logits (B, C) predicting position t + 1 (a buffer reused by the next call).
  at::Tensor step(const at::Tensor& codes, int64_t t) {
    c10::InferenceMode guard;
    at::index_select_out(x_, embed_, 0, codes);
    at::Tensor x = x_, spare = x_next_;
    const size_t last = dilations_.size() - 1;
    const int64_t gate = gated_.size(2);
    for (size_t i = 0; i < dilations_.size(); ++i) {
      at::Tensor past = ring_[offsets_[i] + t % dilations_[i]].narrow(1, 0, x.size(1));
      at::addmm_out(h_, dilated_b_[i], past, past_w_[i]);
      h_.addmm_(x, now_w_[i]);
      past.copy_(x);
      at::Tensor filt = h_.narrow(1, 0, gate), gates = h_.narrow(1, gate, gate);
      at::Tensor z = gated_[i];
      at::mul_out(z, filt.tanh_(), gates.sigmoid_());
      if (i < last) {
        at::addmm_out(spare, residual_b_[i], z, residual_w_[i]);
        spare.add_(x);
        std::swap(x, spare);
      }
    }
    at::bmm_out(skips_, gated_, skip_w_);
    at::sum_out(skip_, skips_, {0});
    skip_.add_(skip_b_);
    at::addmm_out(hidden_, head_b1_, skip_.relu_(), head_w1_);
    hidden_.relu_();
    return at::addmm_out(logits_, head_b2_, hidden_, head_w2_);
  }

  // steps samples for every stream: feed `pending` (B,) at t, t + 1, ...; each draw becomes the next pending code
  // and is written to out[:, column + s]. noise (steps, B, C) is Gumbel noise, or empty for greedy (temperature 0).
  void generate(at::Tensor pending, int64_t t, int64_t steps, const at::Tensor& noise, double temperature,
                at::Tensor out, int64_t column) {
    c10::InferenceMode guard;
    for (int64_t s = 0; s < steps; ++s) {
      const at::Tensor& logits = step(pending, t + s);
      at::Tensor code;
      if (noise.numel() == 0) {
        code = logits.argmax(-1);
      } else {
        at::div_out(scaled_, logits.to(at::kFloat), temperature);
        code = scaled_.add_(noise[s]).argmax(-1);
      }
      pending.copy_(code);
      out.select(1, column + s).copy_(code);
    }
  }

 private:
  at::Tensor ring_;
  std::vector<int64_t> dilations_, offsets_;
  at::Tensor embed_;
  std::vector<at::Tensor> past_w_, now_w_, dilated_b_, residual_w_, residual_b_;
  at::Tensor skip_w_, skip_b_, head_w1_, head_b1_, head_w2_, head_b2_, gated_;
  at::Tensor x_, x_next_, h_, skips_, skip_, hidden_, logits_, scaled_;
};

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  py::class_<CpuStep>(m, "CpuStep")
      .def(py::init<at::Tensor, std::vector<int64_t>, std::vector<int64_t>, at::Tensor, std::vector<at::Tensor>,
                    std::vector<at::Tensor>, std::vector<at::Tensor>, std::vector<at::Tensor>,
                    std::vector<at::Tensor>, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor,
                    at::Tensor, at::Tensor>())
      .def("step", &CpuStep::step, py::call_guard<py::gil_scoped_release>())
      .def("generate", &CpuStep::generate, py::call_guard<py::gil_scoped_release>());
}
