// FP32 Gemm and MatMul on the packed GEMM driver. Constant weights are packed
// once in the factory; Gemm's C folds into a column bias when it is a vector.
#include "absl/strings/str_format.h"
#include "ops/broadcast.h"
#include "ops/cpu/gemm_f32.h"

namespace kvant::cpu {
namespace {

int64_t Product(absl::Span<const int64_t> s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
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
    return GemmScratchBytesF32(uk_, m, n, k, !has_packed_b_, s.num_threads);
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

  std::string Describe() const override { return uk_.name; }
  int64_t PackedBytes() const override { return has_packed_b_ ? packed_b_.bytes() : 0; }

 private:
  const GemmUkernelInfoF32& uk_;
  bool ta_, tb_;
  float alpha_, beta_;
  ActivationF32 act_;
  bool has_packed_b_ = false;
  PackedPanelsF32 packed_b_;
  std::vector<float> col_bias_;
};

class MatMulF32 final : public Kernel {
 public:
  MatMulF32(const GemmUkernelInfoF32& uk, ActivationF32 act) : uk_(uk), act_(act) {}

  void Prepare(const KernelInit& init) {
    const Tensor* b = init.constant_inputs[1];
    if (b != nullptr && b->rank() == 2) {
      const int64_t k = b->shape()[0], n = b->shape()[1];
      packed_b_ = PackConstantF32(n, k, uk_.nr, b->data<float>(), 1, n, 1.f);
      has_packed_b_ = true;
    }
  }

  size_t ScratchBytes(const KernelShapes& s) const override {
    const auto& a = s.inputs[0];
    const auto& b = s.inputs[1];
    const int64_t k = a.back();
    const int64_t m = a.size() >= 2 ? Product(absl::MakeConstSpan(a).subspan(0, a.size() - 1)) : 1;
    const int64_t n = b.size() >= 2 ? b.back() : 1;
    return GemmScratchBytesF32(uk_, m, n, k, !has_packed_b_, s.num_threads);
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
    GemmArgsF32 g;
    g.k = k;
    g.n = n;
    g.ldc = n;
    g.act = act_;
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
    for (int64_t bi = 0; bi < batches; ++bi) {
      int64_t oa = 0, ob = 0, rem = bi;
      for (int64_t d = static_cast<int64_t>(yb.size()) - 1; d >= 0; --d) {
        const int64_t idx = rem % yb[d];
        rem /= yb[d];
        oa += idx * sa[d];
        ob += idx * sb[d];
      }
      g.a = {nullptr, a.as<const float>() + oa * m * k, k, 1};
      g.b = {nullptr, b.as<const float>() + ob * k * n, 1, n};
      g.c = y.as<float>() + bi * m * n;
      RunGemmF32(uk_, g, ctx.scratch, ctx.pool);
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return uk_.name; }
  int64_t PackedBytes() const override { return has_packed_b_ ? packed_b_.bytes() : 0; }

 private:
  const GemmUkernelInfoF32& uk_;
  ActivationF32 act_;
  bool has_packed_b_ = false;
  PackedPanelsF32 packed_b_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateGemmF32(const KernelInit& init) {
  const AttributeMap& at = *init.attrs;
  auto k = std::make_unique<GemmF32>(SelectGemmUkernelF32(init.cpu), at.GetInt("transA", 0) != 0,
                                     at.GetInt("transB", 0) != 0, at.GetFloat("alpha", 1.f),
                                     at.GetFloat("beta", 1.f), ReadFusedActivation(at));
  if (auto s = k->Prepare(init); !s.ok()) return s;
  return k;
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateMatMulF32(const KernelInit& init) {
  auto k = std::make_unique<MatMulF32>(SelectGemmUkernelF32(init.cpu), ReadFusedActivation(*init.attrs));
  k->Prepare(init);
  return k;
}

}  // namespace kvant::cpu
