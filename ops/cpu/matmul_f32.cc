// FP32 Gemm and MatMul on the packed GEMM driver. Constant weights are packed
// once in the factory; Gemm's C folds into a column bias when it is a vector.
// With kvant_precision = "bf16" (graph/passes/assign_precision.cc) and BF16
// arithmetic on the CPU, constant 2-D weights run on the BF16 GEMM instead
// (ops/cpu/gemm_bf16.h): f32 in and out, bf16 products, f32 sums. With
// "fp16", constant weights are stored as FP16 and widened per panel as the
// FP32 GEMM uses them (NarrowToHalf in gemm_f32.h).
#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu {
namespace {

int64_t Product(absl::Span<const int64_t> s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

// A MatMul's fused_bias attribute (graph/passes/fuse_matmul_bias.cc): an
// FP32 vector, one value per column; empty when there is none.
absl::StatusOr<std::vector<float>> ReadFusedBias(const AttributeMap& attrs, const std::string& label) {
  const Attribute* a = attrs.Find("fused_bias");
  if (a == nullptr) return std::vector<float>();
  if (a->kind != Attribute::Kind::kTensor || a->t.dtype() != DataType::kFloat32 || a->t.rank() != 1) {
    return absl::InvalidArgumentError(
        absl::StrFormat("failed to read attributes of node %s: fused_bias must be a 1-D float tensor", label));
  }
  return std::vector<float>(a->t.data<float>(), a->t.data<float>() + a->t.num_elements());
}

class GemmF32 final : public Kernel {
 public:
  GemmF32(const GemmUkernelInfoF32& uk, bool ta, bool tb, float alpha, float beta, ActivationF32 act)
      : uk_(uk), ta_(ta), tb_(tb), alpha_(alpha), beta_(beta), act_(act) {}

  absl::Status Prepare(const KernelInit& init) {
    if (const Tensor* b = init.constant_inputs[1]) {
      const int64_t k = b->shape()[tb_ ? 1 : 0], n = b->shape()[tb_ ? 0 : 1];
      packed_b_ = PackConstantF32(n, k, uk_.nr, b->data<float>(), tb_ ? k : 1, tb_ ? 1 : n, 1.f);
      has_packed_b_ = true;
      half_b_ = NarrowToHalfIfAsked(*init.attrs, packed_b_);
    }
    if (init.constant_inputs.size() > 2 && init.constant_inputs[2] != nullptr) {
      const Tensor* c = init.constant_inputs[2];
      const int64_t n = c->num_elements();
      bool row_vector = c->rank() == 1 || (c->rank() == 2 && c->shape()[0] == 1);
      if (row_vector && n > 1) {
        col_bias_.resize(n);
        for (int64_t i = 0; i < n; ++i) col_bias_[i] = beta_ * c->data<float>()[i];
      }
    }
    return absl::OkStatus();
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const auto& a = s.inputs[0];
    const auto& b = s.inputs[1];
    const int64_t m = a[ta_ ? 1 : 0], k = a[ta_ ? 0 : 1], n = b[tb_ ? 0 : 1];
    return GemmScratchBytesF32(uk_, m, n, k, !has_packed_b_, s.num_threads, half_b_);
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(0);
    const TensorArg& b = ctx.input(1);
    const TensorArg& y = ctx.output(0);
    GemmArgsF32 g;
    g.m = y.shape[0];
    g.n = y.shape[1];
    g.k = a.shape[ta_ ? 0 : 1];
    g.a.src = a.as<const float>();
    g.a.so = ta_ ? 1 : g.k;
    g.a.sk = ta_ ? g.m : 1;
    if (has_packed_b_) {
      g.b.packed = &packed_b_;
    } else {
      g.b.src = b.as<const float>();
      g.b.so = tb_ ? g.k : 1;
      g.b.sk = tb_ ? 1 : g.n;
    }
    g.alpha = alpha_;
    g.c = y.as<float>();
    g.ldc = g.n;
    g.act = act_;
    if (!col_bias_.empty()) {
      g.col_bias = col_bias_.data();
    } else if (ctx.has_input(2) && beta_ != 0.f) {
      // General C: prefill Y with beta * broadcast(C) and accumulate onto it.
      const TensorArg& c = ctx.input(2);
      std::vector<int64_t> cs(c.shape.begin(), c.shape.end());
      const std::vector<int64_t> st = BroadcastStrides(cs, {g.m, g.n});
      const float* cp = c.as<const float>();
      for (int64_t i = 0; i < g.m; ++i) {
        for (int64_t j = 0; j < g.n; ++j) g.c[i * g.n + j] = beta_ * cp[i * st[0] + j * st[1]];
      }
      g.accumulate = true;
    }
    RunGemmF32(uk_, g, ctx.scratch, ctx.pool);
    return absl::OkStatus();
  }

  std::string Describe() const override { return std::string(uk_.name) + (half_b_ ? kHalfWeightsTag : ""); }
  int64_t PackedBytes() const override { return has_packed_b_ ? packed_b_.bytes() : 0; }

 private:
  const GemmUkernelInfoF32& uk_;
  bool ta_, tb_;
  float alpha_, beta_;
  ActivationF32 act_;
  bool has_packed_b_ = false;
  bool half_b_ = false;  // packed_b_ holds FP16 weights
  PackedPanelsF32 packed_b_;
  std::vector<float> col_bias_;
};

class MatMulF32 final : public Kernel {
 public:
  MatMulF32(const GemmUkernelInfoF32& uk, ActivationF32 act, std::string label)
      : uk_(uk), act_(act), label_(std::move(label)) {}

  absl::Status Prepare(const KernelInit& init) {
    const Tensor* b = init.constant_inputs[1];
    if (b != nullptr && b->rank() == 2) {
      const int64_t k = b->shape()[0], n = b->shape()[1];
      packed_b_ = PackConstantF32(n, k, uk_.nr, b->data<float>(), 1, n, 1.f);
      has_packed_b_ = true;
      half_b_ = NarrowToHalfIfAsked(*init.attrs, packed_b_);
    }
    auto bias = ReadFusedBias(*init.attrs, label_);
    if (!bias.ok()) return bias.status();
    bias_ = *std::move(bias);
    return absl::OkStatus();
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const auto& a = s.inputs[0];
    const auto& b = s.inputs[1];
    const int64_t k = a.back();
    const int64_t m = a.size() >= 2 ? Product(absl::MakeConstSpan(a).subspan(0, a.size() - 1)) : 1;
    const int64_t n = b.size() >= 2 ? b.back() : 1;
    const size_t whole = GemmScratchBytesF32(uk_, m, n, k, !has_packed_b_, s.num_threads, half_b_);
    if (b.size() <= 2 || a.size() < 2) return whole;
    // Batched: one single-threaded GEMM's scratch per thread (BatchSlot).
    return std::max(whole, s.num_threads * BatchSlot(a[a.size() - 2], n, k));
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(0);
    const TensorArg& b = ctx.input(1);
    const TensorArg& y = ctx.output(0);
    std::vector<int64_t> as(a.shape.begin(), a.shape.end()), bs(b.shape.begin(), b.shape.end());
    if (as.size() == 1) as.insert(as.begin(), 1);
    const bool b_vec = bs.size() == 1;
    if (b_vec) bs.push_back(1);
    const int64_t m = as[as.size() - 2], k = as.back(), n = bs.back();
    if (!bias_.empty() && static_cast<int64_t>(bias_.size()) != n) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "failed to run node %s: fused_bias must have %d values (columns), got %d", label_, n, bias_.size()));
    }
    GemmArgsF32 g;
    g.k = k;
    g.n = n;
    g.ldc = n;
    g.act = act_;
    g.col_bias = bias_.empty() ? nullptr : bias_.data();
    if (bs.size() == 2) {
      // One B for every batch: a single GEMM over all rows of A.
      g.m = Product(as) / k;
      g.a = {nullptr, a.as<const float>(), k, 1};
      if (has_packed_b_) g.b.packed = &packed_b_;
      else g.b = {nullptr, b.as<const float>(), 1, n};
      g.c = y.as<float>();
      RunGemmF32(uk_, g, ctx.scratch, ctx.pool);
      return absl::OkStatus();
    }
    // Batched with broadcasting over the leading dimensions.
    std::vector<int64_t> ab(as.begin(), as.end() - 2), bb(bs.begin(), bs.end() - 2);
    std::vector<int64_t> yb(y.shape.begin(), y.shape.begin() + std::max(ab.size(), bb.size()));
    const std::vector<int64_t> sa = BroadcastStrides(ab, yb), sb = BroadcastStrides(bb, yb);
    const int64_t batches = Product(yb);
    g.m = m;
    auto run_batch = [&](int64_t bi, void* scratch, ParallelRunner* pool) {
      int64_t oa = 0, ob = 0, rem = bi;
      for (int64_t d = static_cast<int64_t>(yb.size()) - 1; d >= 0; --d) {
        const int64_t idx = rem % yb[d];
        rem /= yb[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      GemmArgsF32 gi = g;
      gi.a = {nullptr, a.as<const float>() + oa * m * k, k, 1};
      gi.b = {nullptr, b.as<const float>() + ob * k * n, 1, n};
      gi.c = y.as<float>() + bi * m * n;
      RunGemmF32(uk_, gi, scratch, pool);
    };
    // Many small products (attention's per-head Q K^T and P V): whole
    // products across the threads, each single-threaded; dispatching each
    // one to the pool cost more than it computed (a transformer ran slower
    // on 2 threads than on 1). Few or large ones: each across the threads.
    const int threads = ctx.pool->num_threads();
    if (threads > 1 && batches >= 2 * threads && m * n * k <= (int64_t{1} << 20)) {
      const int64_t slot = BatchSlot(m, n, k);
      ctx.pool->ParallelFor(threads, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          for (int64_t bi = batches * t / threads; bi < batches * (t + 1) / threads; ++bi) {
            run_batch(bi, static_cast<char*>(ctx.scratch) + t * slot, nullptr);
          }
        }
      });
      return absl::OkStatus();
    }
    for (int64_t bi = 0; bi < batches; ++bi) run_batch(bi, ctx.scratch, ctx.pool);
    return absl::OkStatus();
  }

  std::string Describe() const override { return std::string(uk_.name) + (half_b_ ? kHalfWeightsTag : ""); }
  int64_t PackedBytes() const override { return has_packed_b_ ? packed_b_.bytes() : 0; }

 private:
  // Scratch of one single-threaded m x n x k product of the batched path, 64-byte aligned.
  size_t BatchSlot(int64_t m, int64_t n, int64_t k) const {
    return (GemmScratchBytesF32(uk_, m, n, k, true, 1, false) + 63) / 64 * 64;
  }

  const GemmUkernelInfoF32& uk_;
  ActivationF32 act_;
  std::string label_;
  bool has_packed_b_ = false;
  bool half_b_ = false;  // packed_b_ holds FP16 weights
  PackedPanelsF32 packed_b_;
  std::vector<float> bias_;  // fused_bias (graph/passes/fuse_matmul_bias.cc), one per column
};

// y[rows, n] = act(x[rows, k] W + bias) with W packed as bf16: MatMul by a
// constant [K, N] (rows = every leading dimension of x) and Gemm (transA = 0,
// alpha = 1, a constant B either way round, C a vector).
class MatMulBf16 final : public Kernel {
 public:
  MatMulBf16(const GemmUkernelInfoBf16& uk, ActivationF32 act) : uk_(uk), act_(act) {}

  void Prepare(const Tensor& w, bool trans_b, const Tensor* c, float beta) {
    const int64_t k = w.shape()[trans_b ? 1 : 0], n = w.shape()[trans_b ? 0 : 1];
    packed_ = PackBBf16(uk_, k, n, w.data<float>(), trans_b ? 1 : n, trans_b ? k : 1);
    if (c != nullptr) {
      bias_.resize(n);
      for (int64_t j = 0; j < n; ++j) bias_[j] = beta * c->data<float>()[c->num_elements() == 1 ? 0 : j];
    }
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const auto& a = s.inputs[0];
    return GemmScratchBytesBf16(uk_, Product(a) / std::max<int64_t>(a.back(), 1), packed_.k, s.num_threads);
  }

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& a = ctx.input(0);
    GemmArgsBf16 g;
    g.m = a.num_elements() / packed_.k;
    g.a = a.as<const float>();
    g.lda = packed_.k;
    g.b = &packed_;
    g.c = ctx.output(0).as<float>();
    g.ldc = packed_.n;
    g.col_bias = bias_.empty() ? nullptr : bias_.data();
    g.act = act_;
    RunGemmBf16(uk_, g, ctx.scratch, ctx.pool);
    return absl::OkStatus();
  }

  std::string Describe() const override { return uk_.name; }
  int64_t PackedBytes() const override { return packed_.bytes(); }

 private:
  const GemmUkernelInfoBf16& uk_;
  ActivationF32 act_;
  PackedBBf16 packed_;
  std::vector<float> bias_;
};

// The BF16 kernel where asked for and possible, else null.
std::unique_ptr<Kernel> MaybeBf16(const KernelInit& init, bool gemm) {
  const AttributeMap& at = *init.attrs;
  const GemmUkernelInfoBf16* uk = SelectGemmUkernelBf16(init.cpu);
  const Tensor* w = init.constant_inputs.size() > 1 ? init.constant_inputs[1] : nullptr;
  if (at.GetString("kvant_precision", "") != "bf16" || uk == nullptr || w == nullptr || w->rank() != 2 ||
      w->dtype() != DataType::kFloat32) {
    return nullptr;
  }
  const Tensor* c = nullptr;
  bool trans_b = false;
  const Attribute* fused_bias = at.Find("fused_bias");
  if (!gemm && fused_bias != nullptr) {
    c = &fused_bias->t;
    if (fused_bias->kind != Attribute::Kind::kTensor || c->dtype() != DataType::kFloat32 || c->rank() != 1 ||
        c->num_elements() != w->shape()[1]) {
      return nullptr;  // the FP32 kernel names what is wrong
    }
  }
  if (gemm) {
    if (at.GetInt("transA", 0) != 0 || at.GetFloat("alpha", 1.f) != 1.f) return nullptr;
    trans_b = at.GetInt("transB", 0) != 0;
    const bool has_c = init.input_types.size() > 2 && init.input_types[2] != DataType::kUndefined;
    if (has_c) {
      c = init.constant_inputs[2];
      const int64_t n = w->shape()[trans_b ? 0 : 1];
      if (c == nullptr || !(c->rank() <= 1 || (c->rank() == 2 && c->shape()[0] == 1)) ||
          (c->num_elements() != n && c->num_elements() != 1)) {
        return nullptr;
      }
    }
  }
  auto k = std::make_unique<MatMulBf16>(*uk, ReadFusedActivation(at));
  k->Prepare(*w, trans_b, c, at.GetFloat("beta", 1.f));
  return k;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateGemmF32(const KernelInit& init) {
  if (auto bf16 = MaybeBf16(init, true)) return bf16;
  const AttributeMap& at = *init.attrs;
  auto k = std::make_unique<GemmF32>(SelectGemmUkernelF32(init.cpu), at.GetInt("transA", 0) != 0,
                                     at.GetInt("transB", 0) != 0, at.GetFloat("alpha", 1.f),
                                     at.GetFloat("beta", 1.f), ReadFusedActivation(at));
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateMatMulF32(const KernelInit& init) {
  if (auto bf16 = MaybeBf16(init, false)) return bf16;
  auto k = std::make_unique<MatMulF32>(SelectGemmUkernelF32(init.cpu), ReadFusedActivation(*init.attrs),
                                       init.node_label);
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

}  // namespace kvant::cpu
