// Recurrent operators: RNN, GRU and LSTM, all directions, optional biases,
// initial states, peepholes and sequence lengths, batch-first layout; in f32,
// or with INT8 weights and activations quantized per product
// (com.microsoft DynamicQuantizeLSTM, Kvant's DynamicQuantizeGRU/RNN).
//
// Per direction: 1. one GEMM projects every time step's input, X W^T (+ the
// input biases), with W^T pre-packed; 2. per step, a small GEMM H_{t-1} R^T
// with R^T pre-packed; 3. the gate arithmetic, in f32. Batch rows past their
// sequence length keep their state and output zeros. The products are
// ops/cpu/rnn_projections.h.
#include <cmath>
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/activation_f32.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/rnn_projections.h"
#include "ops/cpu/vector_math.h"

namespace kvant::cpu {
namespace {

enum class Cell { kRnn, kGru, kLstm };

// One of the ONNX recurrent activations with its alpha and beta, applied to
// whole rows so the loops vectorize.
struct ActFn {
  enum class Kind { kSigmoid, kTanh, kRelu, kSoftsign, kSoftplus, kHardSigmoid, kLeakyRelu, kThresholdedRelu,
                    kScaledTanh, kAffine, kElu };
  Kind kind = Kind::kSigmoid;
  float alpha = 0.f, beta = 0.f;
  RowFnF32 sigmoid = nullptr, tanh = nullptr;  // vectorized for the CPU

  void operator()(float* x, int64_t n) const {
    const float a = alpha, b = beta;
    switch (kind) {
      case Kind::kSigmoid: sigmoid(x, n); break;
      case Kind::kTanh: tanh(x, n); break;
      case Kind::kRelu: for (int64_t i = 0; i < n; ++i) x[i] = x[i] > 0.f ? x[i] : 0.f; break;
      case Kind::kSoftsign: for (int64_t i = 0; i < n; ++i) x[i] = x[i] / (1.f + std::fabs(x[i])); break;
      case Kind::kSoftplus: for (int64_t i = 0; i < n; ++i) x[i] = std::log1p(FastExp(x[i])); break;
      case Kind::kHardSigmoid: for (int64_t i = 0; i < n; ++i) x[i] = std::min(1.f, std::max(0.f, a * x[i] + b)); break;
      case Kind::kLeakyRelu: for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0.f ? x[i] : a * x[i]; break;
      case Kind::kThresholdedRelu: for (int64_t i = 0; i < n; ++i) x[i] = x[i] > a ? x[i] : 0.f; break;
      case Kind::kScaledTanh: for (int64_t i = 0; i < n; ++i) x[i] = a * FastTanh(b * x[i]); break;
      case Kind::kAffine: for (int64_t i = 0; i < n; ++i) x[i] = a * x[i] + b; break;
      case Kind::kElu: for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0.f ? x[i] : a * (FastExp(x[i]) - 1.f); break;
    }
  }
};

absl::StatusOr<ActFn> MakeActivation(const std::string& name, float alpha, float beta, bool has_alpha, bool has_beta,
                                     CpuFeatures cpu) {
  using K = ActFn::Kind;
  static const std::pair<const char*, K> kNames[] = {
      {"Sigmoid", K::kSigmoid},       {"Tanh", K::kTanh},           {"Relu", K::kRelu},
      {"Softsign", K::kSoftsign},     {"Softplus", K::kSoftplus},   {"HardSigmoid", K::kHardSigmoid},
      {"LeakyRelu", K::kLeakyRelu},   {"ThresholdedRelu", K::kThresholdedRelu},
      {"ScaledTanh", K::kScaledTanh}, {"Affine", K::kAffine},       {"Elu", K::kElu}};
  for (const auto& [n, k] : kNames) {
    if (name != n) continue;
    ActFn f;
    f.kind = k;
    f.sigmoid = SigmoidRowsF32(cpu);
    f.tanh = TanhRowsF32(cpu);
    f.alpha = alpha;
    f.beta = beta;
    // Defaults where the attribute is absent.
    if (!has_alpha) f.alpha = k == K::kHardSigmoid ? 0.2f : k == K::kLeakyRelu ? 0.01f : 1.f;
    if (!has_beta) f.beta = k == K::kHardSigmoid ? 0.5f : k == K::kScaledTanh ? 1.f : 0.f;
    return f;
  }
  return absl::UnimplementedError("activation " + name);
}

class Recurrent final : public Kernel {
 public:
  Recurrent(Cell cell, bool quantized, CpuFeatures cpu, std::string label)
      : cell_(cell), quantized_(quantized), cpu_(cpu), label_(std::move(label)) {}

  absl::Status Prepare(const KernelInit& init) {
    const AttributeMap& a = *init.attrs;
    hidden_ = a.GetInt("hidden_size", 0);
    const std::string dir = a.GetString("direction", "forward");
    dirs_ = dir == "bidirectional" ? 2 : 1;
    reverse_only_ = dir == "reverse";
    gates_ = cell_ == Cell::kLstm ? 4 : cell_ == Cell::kGru ? 3 : 1;
    batch_first_ = a.GetInt("layout", 0) != 0;
    clip_ = a.GetFloat("clip", 0.f);
    input_forget_ = a.GetInt("input_forget", 0) != 0;
    linear_before_reset_ = a.GetInt("linear_before_reset", 0) != 0;
    // Default activations per direction: f, g (and h for LSTM).
    std::vector<std::string> names;
    if (const Attribute* act = a.Find("activations")) names = act->strings;
    const std::vector<std::string> defaults = cell_ == Cell::kLstm  ? std::vector<std::string>{"Sigmoid", "Tanh", "Tanh"}
                                              : cell_ == Cell::kGru ? std::vector<std::string>{"Sigmoid", "Tanh"}
                                                                    : std::vector<std::string>{"Tanh"};
    const std::vector<float> alphas = a.GetFloats("activation_alpha"), betas = a.GetFloats("activation_beta");
    for (int64_t d = 0; d < dirs_; ++d) {
      for (size_t k = 0; k < defaults.size(); ++k) {
        const size_t i = d * defaults.size() + k;
        const std::string name = i < names.size() ? names[i] : defaults[k];
        auto fn = MakeActivation(name, i < alphas.size() ? alphas[i] : 0.f, i < betas.size() ? betas[i] : 0.f,
                                 i < alphas.size(), i < betas.size(), cpu_);
        if (!fn.ok()) {
          return absl::UnimplementedError(absl::StrFormat("failed to compile node %s: activation '%s' is not supported", label_, name));
        }
        acts_.push_back(*fn);
      }
    }
    acts_per_dir_ = defaults.size();
    input_ = init.input_shapes[1].IsStatic() ? init.input_shapes[1].Sizes()[quantized_ ? 1 : 2] : 0;
    if (quantized_) {
      unsigned_weights_ = init.input_types[1] == DataType::kUInt8;
      for (int i = 8; i < 12; ++i) {
        per_column_[i - 8] = i < static_cast<int>(init.input_shapes.size()) && init.input_shapes[i].rank_known &&
                             init.input_shapes[i].rank() == 2;
      }
    }
    // Constant weights (and their quantization parameters) are packed at load.
    bool constant = true;
    for (int i : quantized_ ? std::vector<int>{1, 2, 8, 9, 10, 11} : std::vector<int>{1, 2}) {
      const bool present = i < static_cast<int>(init.input_types.size()) && init.input_types[i] != DataType::kUndefined;
      constant &= !present || init.constant_inputs[i] != nullptr;
    }
    if (constant) {
      half_weights_ = a.GetString("kvant_precision", "") == "fp16";  // graph/passes/assign_precision.cc
      if (!quantized_ && a.GetString("kvant_precision", "") == "bf16") bf16_ = SelectGemmUkernelBf16(cpu_);
      packed_ = MakeProjections([&](int i) -> const void* {
        return i < static_cast<int>(init.constant_inputs.size()) && init.constant_inputs[i] ? init.constant_inputs[i]->raw_data()
                                                                                             : nullptr;
      });
    }
    return absl::OkStatus();
  }

  RnnDims Dims() const { return RnnDims{dirs_, gates_, hidden_, input_, cell_ == Cell::kGru}; }

  // `data(i)`: input i's values, null when absent.
  template <typename DataOf>
  std::unique_ptr<RnnProjections> MakeProjections(DataOf data) const {
    if (!quantized_ && bf16_ != nullptr) {
      return MakeRnnProjectionsBf16(Dims(), *bf16_, static_cast<const float*>(data(1)),
                                    static_cast<const float*>(data(2)));
    }
    if (!quantized_) {
      return MakeRnnProjectionsF32(Dims(), cpu_, static_cast<const float*>(data(1)), static_cast<const float*>(data(2)),
                                   half_weights_);
    }
    RnnWeightsS8 q;
    q.w = data(1);
    q.r = data(2);
    q.unsigned_weights = unsigned_weights_;
    q.w_scale = static_cast<const float*>(data(8));
    q.w_zero_point = data(9);
    q.r_scale = static_cast<const float*>(data(10));
    q.r_zero_point = data(11);
    q.w_per_column = per_column_[0];
    q.w_zp_per_column = per_column_[1];
    q.r_per_column = per_column_[2];
    q.r_zp_per_column = per_column_[3];
    return MakeRnnProjectionsS8(Dims(), cpu_, q);
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const int64_t seq = s.inputs[0][batch_first_ ? 1 : 0], batch = s.inputs[0][batch_first_ ? 0 : 1];
    const int64_t gh = gates_ * hidden_;
    const int64_t floats = seq * batch * gh + batch * gh + 7 * batch * hidden_ + seq * batch * input_ + 64;
    return floats * 4 + RnnProjectionScratchBytes(Dims(), quantized_, cpu_, seq * batch, s.num_threads, bf16_ != nullptr) + 256;
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t seq = x.shape[batch_first_ ? 1 : 0], batch = x.shape[batch_first_ ? 0 : 1];
    const int64_t gh = gates_ * hidden_, h = hidden_;
    // Weights computed at run time are packed per call.
    std::unique_ptr<RnnProjections> runtime;
    if (!packed_) runtime = MakeProjections([&](int i) { return ctx.has_input(i) ? ctx.input(i).data : nullptr; });
    const RnnProjections& proj = packed_ ? *packed_ : *runtime;
    using Which = RnnProjections::Which;
    const float* bias = ctx.has_input(3) ? ctx.input(3).as<const float>() : nullptr;
    const int32_t* lens = ctx.has_input(4) ? ctx.input(4).as<const int32_t>() : nullptr;
    const float* init_h = ctx.has_input(5) ? ctx.input(5).as<const float>() : nullptr;
    const float* init_c = cell_ == Cell::kLstm && ctx.has_input(6) ? ctx.input(6).as<const float>() : nullptr;
    const float* peep = cell_ == Cell::kLstm && ctx.has_input(7) ? ctx.input(7).as<const float>() : nullptr;
    if (lens != nullptr) {
      for (int64_t b = 0; b < batch; ++b) {
        if (lens[b] < 0 || lens[b] > seq) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "failed to run node %s: sequence_lens[%d] must be in [0, %d], got %d", label_, b, seq, lens[b]));
        }
      }
    }
    float* y = ctx.outputs.size() > 0 && ctx.output(0).present() ? ctx.output(0).as<float>() : nullptr;
    float* y_h = ctx.outputs.size() > 1 && ctx.output(1).present() ? ctx.output(1).as<float>() : nullptr;
    float* y_c = ctx.outputs.size() > 2 && ctx.output(2).present() ? ctx.output(2).as<float>() : nullptr;
    if (y) std::memset(y, 0, ctx.output(0).num_elements() * 4);

    float* xw = static_cast<float*>(ctx.scratch);           // [seq * batch, gh]
    float* hr = xw + seq * batch * gh;                      // [batch, gh]
    float* hstate = hr + batch * gh;                        // [batch, h]
    float* cstate = hstate + batch * h;                     // [batch, h]
    float* hprev = cstate + batch * h;                      // [batch, h]
    float* gru = hprev + batch * h;                         // GRU: z, r, r (.) H, product: 4 x [batch, h]
    float* xs = gru + 4 * batch * h;                        // X as [seq, batch, input]
    void* gemm_scratch = reinterpret_cast<char*>(((reinterpret_cast<uintptr_t>(xs + seq * batch * input_ + 64)) + 63) & ~uintptr_t{63});
    const float* xt = x.as<const float>();
    if (batch_first_) {  // [batch, seq, input] -> [seq, batch, input]
      for (int64_t b = 0; b < batch; ++b)
        for (int64_t t = 0; t < seq; ++t) std::memcpy(xs + (t * batch + b) * input_, xt + (b * seq + t) * input_, input_ * 4);
      xt = xs;
    }
    for (int64_t d = 0; d < dirs_; ++d) {
      const bool reverse = reverse_only_ || d == 1;
      const float* wb = bias ? bias + d * 2 * gh : nullptr;
      const float* rb = bias ? wb + gh : nullptr;
      // 1. Input projections for all steps; fold both biases in, except GRU's
      //    recurrent h-gate bias which linear_before_reset keeps inside r (.).
      std::vector<float> in_bias(gh, 0.f);
      for (int64_t g = 0; g < gh; ++g) {
        if (wb) in_bias[g] += wb[g];
        const bool keep_rb_apart = cell_ == Cell::kGru && g >= 2 * h;
        if (rb && !keep_rb_apart) in_bias[g] += rb[g];
      }
      proj.Run(Which::kInput, d, seq * batch, xt, xw, in_bias.data(), gemm_scratch, ctx.pool);
      // Initial states.
      for (int64_t i = 0; i < batch * h; ++i) {
        hstate[i] = init_h ? init_h[d * batch * h + i] : 0.f;
        cstate[i] = init_c ? init_c[d * batch * h + i] : 0.f;
      }
      const ActFn& f = acts_[d * acts_per_dir_];
      const ActFn& g = acts_[d * acts_per_dir_ + std::min<int64_t>(1, acts_per_dir_ - 1)];
      const ActFn& hact = acts_[d * acts_per_dir_ + std::min<int64_t>(2, acts_per_dir_ - 1)];
      const float* pi = peep ? peep + d * 3 * h : nullptr;
      const float* po = pi ? pi + h : nullptr;
      const float* pf = pi ? pi + 2 * h : nullptr;
      std::vector<float> gate(4 * h);
      for (int64_t step = 0; step < seq; ++step) {
        // 2. Recurrent projection H_{t-1} R^T.
        std::memcpy(hprev, hstate, batch * h * 4);
        proj.Run(Which::kRecurrent, d, batch, hprev, hr, nullptr, gemm_scratch, ctx.pool);
        // 3. Gates, one batch row at a time, as whole-row array operations.
        for (int64_t b = 0; b < batch; ++b) {
          const int64_t len = lens ? lens[b] : seq;
          if (step >= len) continue;
          const int64_t t = reverse ? len - 1 - step : step;
          const float* xg = xw + (t * batch + b) * gh;
          const float* rg = hr + b * gh;
          float* hs = hstate + b * h;
          float* cs = cstate + b * h;
          float* g0 = gate.data();
          if (cell_ == Cell::kRnn) {
            for (int64_t j = 0; j < h; ++j) g0[j] = xg[j] + rg[j];
            Clip(g0, h);
            f(g0, h);
            std::memcpy(hs, g0, h * 4);
          } else if (cell_ == Cell::kGru) {
            // z and r now; the candidate after the whole batch (GruCandidates).
            for (int64_t j = 0; j < 2 * h; ++j) g0[j] = xg[j] + rg[j];
            Clip(g0, 2 * h);
            f(g0, 2 * h);
            std::memcpy(gru + b * h, g0, h * 4);
            std::memcpy(gru + batch * h + b * h, g0 + h, h * 4);
          } else {
            float *gi = g0, *go = g0 + h, *gf = g0 + 2 * h, *gc = g0 + 3 * h;
            for (int64_t j = 0; j < h; ++j) {
              gi[j] = xg[j] + rg[j] + (pi ? pi[j] * cs[j] : 0.f);
              go[j] = xg[h + j] + rg[h + j];
              gf[j] = xg[2 * h + j] + rg[2 * h + j] + (pf ? pf[j] * cs[j] : 0.f);
              gc[j] = xg[3 * h + j] + rg[3 * h + j];
            }
            Clip(gi, h);
            Clip(gc, h);
            f(gi, h);
            g(gc, h);
            if (input_forget_) {
              for (int64_t j = 0; j < h; ++j) gf[j] = 1.f - gi[j];
            } else {
              Clip(gf, h);
              f(gf, h);
            }
            for (int64_t j = 0; j < h; ++j) {
              cs[j] = gf[j] * cs[j] + gi[j] * gc[j];
              go[j] += po ? po[j] * cs[j] : 0.f;
            }
            Clip(go, h);
            f(go, h);
            std::memcpy(gc, cs, h * 4);
            hact(gc, h);
            for (int64_t j = 0; j < h; ++j) hs[j] = go[j] * gc[j];
          }
        }
        if (cell_ == Cell::kGru) {
          GruCandidates(batch, step, seq, lens, reverse, xw, hr, rb, hprev, proj, d, g, gru, hstate, gemm_scratch, ctx.pool);
        }
        // Outputs of this step.
        if (y) {
          for (int64_t b = 0; b < batch; ++b) {
            const int64_t len = lens ? lens[b] : seq;
            if (step >= len) continue;
            const int64_t t = reverse ? len - 1 - step : step;
            float* dst = batch_first_ ? y + ((b * seq + t) * dirs_ + d) * h : y + ((t * dirs_ + d) * batch + b) * h;
            std::memcpy(dst, hstate + b * h, h * 4);
          }
        }
      }
      for (int64_t b = 0; b < batch; ++b) {
        float* dst_h = y_h ? (batch_first_ ? y_h + (b * dirs_ + d) * h : y_h + (d * batch + b) * h) : nullptr;
        float* dst_c = y_c ? (batch_first_ ? y_c + (b * dirs_ + d) * h : y_c + (d * batch + b) * h) : nullptr;
        if (dst_h) std::memcpy(dst_h, hstate + b * h, h * 4);
        if (dst_c) std::memcpy(dst_c, cstate + b * h, h * 4);
      }
    }
    return absl::OkStatus();
  }

  std::string Describe() const override {
    return packed_ ? packed_->Describe() : quantized_ ? "int8 gemm, weights packed per call" : "f32 gemm, weights packed per call";
  }
  int64_t PackedBytes() const override { return packed_ ? packed_->PackedBytes() : 0; }

 private:
  void Clip(float* v, int64_t n) const {
    if (clip_ <= 0) return;
    for (int64_t i = 0; i < n; ++i) v[i] = std::min(clip_, std::max(-clip_, v[i]));
  }

  // GRU candidate and new state for every active batch row:
  //   linear_before_reset: h~ = g(X W_h^T + Wb_h + r (.) (H R_h^T + Rb_h))
  //   otherwise:           h~ = g(X W_h^T + Wb_h + (r (.) H) R_h^T + Rb_h)
  //   H = (1 - z) (.) h~ + z (.) H_prev
  // `gru` holds z, r, then scratch for r (.) H and its product with R_h^T.
  void GruCandidates(int64_t batch, int64_t step, int64_t seq, const int32_t* lens, bool reverse, const float* xw,
                     const float* hr, const float* rb, const float* hprev, const RnnProjections& proj, int64_t dir,
                     const ActFn& g, float* gru,
                     float* hstate, void* gemm_scratch, ParallelRunner* pool) const {
    const int64_t h = hidden_, gh = gates_ * hidden_;
    const float* z = gru;
    const float* r = gru + batch * h;
    float* rh = gru + 2 * batch * h;
    float* prod = gru + 3 * batch * h;
    if (!linear_before_reset_) {
      for (int64_t i = 0; i < batch * h; ++i) rh[i] = r[i] * hprev[i];
      proj.Run(RnnProjections::Which::kRecurrentH, dir, batch, rh, prod, nullptr, gemm_scratch, pool);
    }
    std::vector<float> pre(h);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t len = lens ? lens[b] : seq;
      if (step >= len) continue;
      const int64_t t = reverse ? len - 1 - step : step;
      const float* xg = xw + (t * batch + b) * gh;
      for (int64_t j = 0; j < h; ++j) {
        const int64_t i = b * h + j;
        const float rbh = rb ? rb[2 * h + j] : 0.f;
        pre[j] = linear_before_reset_ ? xg[2 * h + j] + r[i] * (hr[b * gh + 2 * h + j] + rbh)
                                      : xg[2 * h + j] + prod[i] + rbh;
      }
      Clip(pre.data(), h);
      g(pre.data(), h);
      for (int64_t j = 0; j < h; ++j) {
        const int64_t i = b * h + j;
        hstate[i] = (1 - z[i]) * pre[j] + z[i] * hprev[i];
      }
    }
  }

 private:
  Cell cell_;
  bool quantized_;
  bool half_weights_ = false;  // constant f32 weights stored as FP16
  const GemmUkernelInfoBf16* bf16_ = nullptr;  // constant f32 weights in BF16 products
  CpuFeatures cpu_;
  std::string label_;
  int64_t hidden_ = 0, input_ = 0, dirs_ = 1, gates_ = 1, acts_per_dir_ = 1;
  bool reverse_only_ = false, batch_first_ = false, input_forget_ = false, linear_before_reset_ = false;
  float clip_ = 0.f;
  std::vector<ActFn> acts_;
  bool unsigned_weights_ = false;
  bool per_column_[4] = {};  // W scale, W zero point, R scale, R zero point: [dirs, gates * hidden]
  std::unique_ptr<RnnProjections> packed_;  // constant W and R, packed at load
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateRecurrent(const KernelInit& init) {
  const bool quantized = init.op.starts_with("DynamicQuantize");
  const std::string cell_op = quantized ? init.op.substr(std::strlen("DynamicQuantize")) : init.op;
  const Cell cell = cell_op == "LSTM" ? Cell::kLstm : cell_op == "GRU" ? Cell::kGru : Cell::kRnn;
  auto k = std::make_unique<Recurrent>(cell, quantized, init.cpu, init.node_label);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
