// Reductions (Reduce* over any set of axes), ArgMax/ArgMin, CumSum and TopK
// for f32, f64, s32 and s64. Floating sums accumulate in double.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "absl/strings/str_format.h"
#include "ops/kernel.h"
#include "ops/op_schema.h"
#include "ops/reduce_ops.h"

namespace kvant::cpu {
namespace {

enum class ReduceOp { kSum, kMean, kMax, kMin, kProd, kSumSquare, kL1, kL2, kLogSum, kLogSumExp };

// One block of reduced axes between kept ones, [outer, len, inner] after
// merging neighbours (BERT's mean pooling over tokens, a ReduceMean over the
// last axis): rows of `inner` accumulate with a loop the compiler vectorizes,
// instead of the general walk's per-element counter and switch. Sums in
// double, like the general walk.
template <typename T, ReduceOp kOp>
void ReduceRows(const T* x, int64_t outer, int64_t len, int64_t inner, T* y, std::vector<double>& acc) {
  for (int64_t o = 0; o < outer; ++o) {
    const T* xo = x + o * len * inner;
    double* a = acc.data();
    for (int64_t i = 0; i < inner; ++i) a[i] = static_cast<double>(xo[i]) * (kOp == ReduceOp::kSumSquare ? xo[i] : 1);
    for (int64_t r = 1; r < len; ++r) {
      const T* xr = xo + r * inner;
      for (int64_t i = 0; i < inner; ++i) {
        const double v = static_cast<double>(xr[i]);
        if constexpr (kOp == ReduceOp::kMax) a[i] = a[i] < v ? v : a[i];
        else if constexpr (kOp == ReduceOp::kMin) a[i] = v < a[i] ? v : a[i];
        else if constexpr (kOp == ReduceOp::kSumSquare) a[i] += v * v;
        else a[i] += v;
      }
    }
    for (int64_t i = 0; i < inner; ++i) y[o * inner + i] = static_cast<T>(kOp == ReduceOp::kMean ? a[i] / len : a[i]);
  }
}

// ReduceRows when it applies: f32, one block of reduced axes, a sum, mean,
// sum of squares, max or min (max and min without NaN, which the general
// walk treats its own way).
template <typename T>
bool ReduceOneBlock(ReduceOp op, const T* x, absl::Span<const int64_t> shape, const std::vector<bool>& axes, T* y) {
  if (!std::is_same_v<T, float> || (op != ReduceOp::kSum && op != ReduceOp::kMean && op != ReduceOp::kSumSquare &&
                                    op != ReduceOp::kMax && op != ReduceOp::kMin)) {
    return false;
  }
  int64_t outer = 1, len = 1, inner = 1;
  int phase = 0;  // 0: outer kept axes, 1: the reduced block, 2: inner kept axes
  for (size_t d = 0; d < shape.size(); ++d) {
    if (axes[d]) {
      if (phase == 2) return false;
      phase = 1;
      len *= shape[d];
    } else {
      (phase == 0 ? outer : inner) *= shape[d];
      if (phase == 1) phase = 2;
    }
  }
  if (len == 0 || outer * len * inner == 0) return false;
  if (op == ReduceOp::kMax || op == ReduceOp::kMin) {
    for (int64_t i = 0; i < outer * len * inner; ++i)
      if (x[i] != x[i]) return false;
  }
  std::vector<double> acc(inner);
  switch (op) {
    case ReduceOp::kSum: ReduceRows<T, ReduceOp::kSum>(x, outer, len, inner, y, acc); break;
    case ReduceOp::kMean: ReduceRows<T, ReduceOp::kMean>(x, outer, len, inner, y, acc); break;
    case ReduceOp::kSumSquare: ReduceRows<T, ReduceOp::kSumSquare>(x, outer, len, inner, y, acc); break;
    case ReduceOp::kMax: ReduceRows<T, ReduceOp::kMax>(x, outer, len, inner, y, acc); break;
    default: ReduceRows<T, ReduceOp::kMin>(x, outer, len, inner, y, acc); break;
  }
  return true;
}

template <typename T>
void Reduce(ReduceOp op, const T* x, absl::Span<const int64_t> shape, const std::vector<bool>& axes, T* y) {
  if (ReduceOneBlock(op, x, shape, axes, y)) return;
  const int64_t rank = shape.size();
  int64_t n = 1, out_n = 1;
  std::vector<int64_t> out_strides(rank, 0);
  for (int64_t d = rank - 1; d >= 0; --d) {
    if (!axes[d]) {
      out_strides[d] = out_n;
      out_n *= shape[d];
    }
    n *= shape[d];
  }
  const int64_t count = out_n ? n / out_n : 0;
  using Acc = std::conditional_t<std::is_floating_point_v<T>, double, int64_t>;
  Acc init = 0;
  if (op == ReduceOp::kMax) init = std::numeric_limits<Acc>::has_infinity ? -std::numeric_limits<Acc>::infinity()
                                                                          : std::numeric_limits<Acc>::lowest();
  if (op == ReduceOp::kMin) init = std::numeric_limits<Acc>::has_infinity ? std::numeric_limits<Acc>::infinity()
                                                                          : std::numeric_limits<Acc>::max();
  if (op == ReduceOp::kProd) init = 1;
  std::vector<Acc> acc(out_n, init);
  std::vector<double> shift;
  if (op == ReduceOp::kLogSumExp) {  // max first, for a stable log-sum-exp
    shift.assign(out_n, -INFINITY);
  }
  // Walk the input in order, keeping the output offset with a counter.
  std::vector<int64_t> idx(rank, 0);
  auto for_each = [&](auto&& fn) {
    std::fill(idx.begin(), idx.end(), 0);
    int64_t o = 0;
    for (int64_t i = 0; i < n; ++i) {
      fn(i, o);
      for (int64_t d = rank - 1; d >= 0; --d) {
        o += out_strides[d];
        if (++idx[d] < shape[d]) break;
        o -= out_strides[d] * shape[d];
        idx[d] = 0;
      }
    }
  };
  if (op == ReduceOp::kLogSumExp) {
    for_each([&](int64_t i, int64_t o) { shift[o] = std::max<double>(shift[o], x[i]); });
  }
  for_each([&](int64_t i, int64_t o) {
    const Acc v = static_cast<Acc>(x[i]);
    switch (op) {
      case ReduceOp::kSum: case ReduceOp::kMean: case ReduceOp::kLogSum: acc[o] += v; break;
      case ReduceOp::kMax: acc[o] = std::max(acc[o], v); break;
      case ReduceOp::kMin: acc[o] = std::min(acc[o], v); break;
      case ReduceOp::kProd: acc[o] *= v; break;
      case ReduceOp::kSumSquare: case ReduceOp::kL2: acc[o] += v * v; break;
      case ReduceOp::kL1: acc[o] += v < 0 ? -v : v; break;
      case ReduceOp::kLogSumExp: acc[o] += static_cast<Acc>(std::exp(double(x[i]) - shift[o])); break;
    }
  });
  for (int64_t o = 0; o < out_n; ++o) {
    double v = static_cast<double>(acc[o]);
    if (op == ReduceOp::kMean) v = count ? v / count : NAN;
    if (op == ReduceOp::kL2) v = std::sqrt(v);
    if (op == ReduceOp::kLogSum) v = std::log(v);
    if (op == ReduceOp::kLogSumExp) v = std::log(v) + shift[o];
    y[o] = std::is_floating_point_v<T> ? static_cast<T>(v) : static_cast<T>(acc[o] / (op == ReduceOp::kMean && count ? count : 1));
  }
}

class ReduceKernel final : public Kernel {
 public:
  ReduceKernel(ReduceOp op, std::string name, const AttributeMap& attrs, int64_t opset, std::string label)
      : op_(op), name_(std::move(name)), attrs_(attrs), opset_(opset), label_(std::move(label)) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    Tensor axes_tensor;
    if (ctx.has_input(1)) {
      axes_tensor = ctx.input(1).View();
    }
    auto axes = ReduceAxes(attrs_, ctx.has_input(1) ? &axes_tensor : nullptr, opset_, name_, x.rank(), label_);
    if (!axes.ok()) return axes.status();
    switch (x.dtype) {
      case DataType::kFloat32: Reduce(op_, x.as<const float>(), x.shape, *axes, ctx.output(0).as<float>()); break;
      case DataType::kFloat64: Reduce(op_, x.as<const double>(), x.shape, *axes, ctx.output(0).as<double>()); break;
      case DataType::kInt32: Reduce(op_, x.as<const int32_t>(), x.shape, *axes, ctx.output(0).as<int32_t>()); break;
      case DataType::kInt64: Reduce(op_, x.as<const int64_t>(), x.shape, *axes, ctx.output(0).as<int64_t>()); break;
      default: return absl::UnimplementedError(absl::StrFormat("%s on %s", label_, DataTypeName(x.dtype)));
    }
    return absl::OkStatus();
  }

 private:
  ReduceOp op_;
  std::string name_;
  AttributeMap attrs_;
  int64_t opset_;
  std::string label_;
};

struct AxisSplit {
  int64_t outer = 1, len = 1, inner = 1;
};
AxisSplit SplitAt(absl::Span<const int64_t> shape, int64_t axis) {
  AxisSplit s;
  for (int64_t i = 0; i < axis; ++i) s.outer *= shape[i];
  s.len = shape.empty() ? 1 : shape[axis];
  for (int64_t i = axis + 1; i < static_cast<int64_t>(shape.size()); ++i) s.inner *= shape[i];
  return s;
}

template <typename T>
void ArgReduce(const T* x, AxisSplit s, bool is_max, bool last, int64_t* y) {
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t i = 0; i < s.inner; ++i) {
      const T* base = x + o * s.len * s.inner + i;
      int64_t best = 0;
      for (int64_t j = 1; j < s.len; ++j) {
        const T v = base[j * s.inner], b = base[best * s.inner];
        const bool better = is_max ? (last ? v >= b : v > b) : (last ? v <= b : v < b);
        if (better) best = j;
      }
      y[o * s.inner + i] = best;
    }
  }
}

class ArgReduceKernel final : public Kernel {
 public:
  ArgReduceKernel(bool is_max, int64_t axis, bool last) : is_max_(is_max), axis_(axis), last_(last) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const AxisSplit s = SplitAt(x.shape, axis_ < 0 ? axis_ + x.rank() : axis_);
    int64_t* y = ctx.output(0).as<int64_t>();
    switch (x.dtype) {
      case DataType::kFloat32: ArgReduce(x.as<const float>(), s, is_max_, last_, y); break;
      case DataType::kFloat64: ArgReduce(x.as<const double>(), s, is_max_, last_, y); break;
      case DataType::kInt32: ArgReduce(x.as<const int32_t>(), s, is_max_, last_, y); break;
      case DataType::kInt64: ArgReduce(x.as<const int64_t>(), s, is_max_, last_, y); break;
      default: return absl::UnimplementedError("ArgMax/ArgMin element type");
    }
    return absl::OkStatus();
  }

 private:
  bool is_max_;
  int64_t axis_;
  bool last_;
};

template <typename T>
void CumSum(const T* x, AxisSplit s, bool exclusive, bool reverse, T* y) {
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t i = 0; i < s.inner; ++i) {
      const int64_t base = o * s.len * s.inner + i;
      T acc = 0;
      for (int64_t t = 0; t < s.len; ++t) {
        const int64_t j = reverse ? s.len - 1 - t : t;
        const T v = x[base + j * s.inner];
        if (exclusive) {
          y[base + j * s.inner] = acc;
          acc += v;
        } else {
          acc += v;
          y[base + j * s.inner] = acc;
        }
      }
    }
  }
}

class CumSumKernel final : public Kernel {
 public:
  CumSumKernel(bool exclusive, bool reverse) : exclusive_(exclusive), reverse_(reverse) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& a = ctx.input(1);
    int64_t axis = a.dtype == DataType::kInt32 ? *a.as<const int32_t>() : *a.as<const int64_t>();
    if (axis < -x.rank() || axis >= x.rank()) {
      return absl::InvalidArgumentError(absl::StrFormat("CumSum axis must be in [%d, %d], got %d", -x.rank(), x.rank() - 1, axis));
    }
    const AxisSplit s = SplitAt(x.shape, axis < 0 ? axis + x.rank() : axis);
    switch (x.dtype) {
      case DataType::kFloat32: CumSum(x.as<const float>(), s, exclusive_, reverse_, ctx.output(0).as<float>()); break;
      case DataType::kFloat64: CumSum(x.as<const double>(), s, exclusive_, reverse_, ctx.output(0).as<double>()); break;
      case DataType::kInt32: CumSum(x.as<const int32_t>(), s, exclusive_, reverse_, ctx.output(0).as<int32_t>()); break;
      case DataType::kInt64: CumSum(x.as<const int64_t>(), s, exclusive_, reverse_, ctx.output(0).as<int64_t>()); break;
      default: return absl::UnimplementedError("CumSum element type");
    }
    return absl::OkStatus();
  }

 private:
  bool exclusive_, reverse_;
};

template <typename T>
void TopK(const T* x, AxisSplit s, int64_t k, bool largest, bool sorted, T* values, int64_t* indices) {
  std::vector<int64_t> order(s.len);
  for (int64_t o = 0; o < s.outer; ++o) {
    for (int64_t i = 0; i < s.inner; ++i) {
      const T* base = x + o * s.len * s.inner + i;
      std::iota(order.begin(), order.end(), 0);
      // Ties keep the lower index first.
      auto cmp = [&](int64_t a, int64_t b) {
        const T va = base[a * s.inner], vb = base[b * s.inner];
        if (va != vb) return largest ? va > vb : va < vb;
        return a < b;
      };
      std::partial_sort(order.begin(), order.begin() + k, order.end(), cmp);
      if (!sorted) std::sort(order.begin(), order.begin() + k);
      for (int64_t j = 0; j < k; ++j) {
        const int64_t out = (o * k + j) * s.inner + i;
        values[out] = base[order[j] * s.inner];
        indices[out] = order[j];
      }
    }
  }
}

class TopKKernel final : public Kernel {
 public:
  TopKKernel(int64_t axis, bool largest, bool sorted) : axis_(axis), largest_(largest), sorted_(sorted) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t axis = axis_ < 0 ? axis_ + x.rank() : axis_;
    const AxisSplit s = SplitAt(x.shape, axis);
    const int64_t k = ctx.output(0).shape[axis];
    int64_t* idx = ctx.outputs.size() > 1 && ctx.output(1).present() ? ctx.output(1).as<int64_t>() : nullptr;
    std::vector<int64_t> idx_buf;
    if (idx == nullptr) {
      idx_buf.resize(ctx.output(0).num_elements());
      idx = idx_buf.data();
    }
    switch (x.dtype) {
      case DataType::kFloat32: TopK(x.as<const float>(), s, k, largest_, sorted_, ctx.output(0).as<float>(), idx); break;
      case DataType::kFloat64: TopK(x.as<const double>(), s, k, largest_, sorted_, ctx.output(0).as<double>(), idx); break;
      case DataType::kInt32: TopK(x.as<const int32_t>(), s, k, largest_, sorted_, ctx.output(0).as<int32_t>(), idx); break;
      case DataType::kInt64: TopK(x.as<const int64_t>(), s, k, largest_, sorted_, ctx.output(0).as<int64_t>(), idx); break;
      default: return absl::UnimplementedError("TopK element type");
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  bool largest_, sorted_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateReduce(const KernelInit& init) {
  static const std::pair<const char*, ReduceOp> kOps[] = {
      {"ReduceSum", ReduceOp::kSum},   {"ReduceMean", ReduceOp::kMean},       {"ReduceMax", ReduceOp::kMax},
      {"ReduceMin", ReduceOp::kMin},   {"ReduceProd", ReduceOp::kProd},       {"ReduceSumSquare", ReduceOp::kSumSquare},
      {"ReduceL1", ReduceOp::kL1},     {"ReduceL2", ReduceOp::kL2},           {"ReduceLogSum", ReduceOp::kLogSum},
      {"ReduceLogSumExp", ReduceOp::kLogSumExp}};
  for (const auto& [name, op] : kOps) {
    if (init.op == name) return std::make_unique<ReduceKernel>(op, init.op, *init.attrs, init.opset, init.node_label);
  }
  return absl::InternalError("unknown reduction " + init.op);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateArgReduce(const KernelInit& init) {
  return std::make_unique<ArgReduceKernel>(init.op == "ArgMax", init.attrs->GetInt("axis", 0),
                                           init.attrs->GetInt("select_last_index", 0) != 0);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateCumSum(const KernelInit& init) {
  return std::make_unique<CumSumKernel>(init.attrs->GetInt("exclusive", 0) != 0, init.attrs->GetInt("reverse", 0) != 0);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateTopK(const KernelInit& init) {
  return std::make_unique<TopKKernel>(init.attrs->GetInt("axis", -1), init.attrs->GetInt("largest", 1) != 0,
                                      init.attrs->GetInt("sorted", 1) != 0);
}

}  // namespace kvant::cpu
