// Kernels that make or re-lay data from shape-like inputs: ConstantOfShape,
// Range, Size, Expand, Tile, Pad (constant, reflect, edge, wrap) and Split.
// All but Range work on bytes, for any element type.
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/cpu/broadcast_loop.h"
#include "ops/generator_ops.h"
#include "ops/kernel.h"
#include "ops/op_schema.h"

namespace kvant::cpu {
namespace {

class ConstantOfShapeKernel final : public Kernel {
 public:
  explicit ConstantOfShapeKernel(Tensor value) : value_(std::move(value)) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& y = ctx.output(0);
    const size_t es = DataTypeSize(y.dtype);
    char* p = static_cast<char*>(y.data);
    for (int64_t i = 0; i < y.num_elements(); ++i) std::memcpy(p + i * es, value_.raw_data(), es);
    return absl::OkStatus();
  }

 private:
  Tensor value_;
};

class RangeKernel final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& y = ctx.output(0);
    const int64_t n = y.num_elements();
    switch (y.dtype) {
      case DataType::kFloat32: Fill<float>(ctx, n); break;
      case DataType::kFloat64: Fill<double>(ctx, n); break;
      case DataType::kInt16: Fill<int16_t>(ctx, n); break;
      case DataType::kInt32: Fill<int32_t>(ctx, n); break;
      case DataType::kInt64: Fill<int64_t>(ctx, n); break;
      default: return absl::UnimplementedError(absl::StrFormat("Range of %s", DataTypeName(y.dtype)));
    }
    return absl::OkStatus();
  }

 private:
  template <typename T>
  static void Fill(const KernelContext& ctx, int64_t n) {
    const T start = *ctx.input(0).as<const T>(), delta = *ctx.input(2).as<const T>();
    T* y = ctx.output(0).as<T>();
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(start + static_cast<T>(i) * delta);
  }
};

class SizeKernel final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    *ctx.output(0).as<int64_t>() = ctx.input(0).num_elements();
    return absl::OkStatus();
  }
};

class ExpandKernel final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const size_t es = DataTypeSize(y.dtype);
    const char* px = static_cast<const char*>(x.data);
    char* py = static_cast<char*>(y.data);
    ForEachBroadcast<1>({x.shape}, y.shape, [&](int64_t o, const std::array<int64_t, 1>& off) {
      std::memcpy(py + o * es, px + off[0] * es, es);
    });
    return absl::OkStatus();
  }
};

class TileKernel final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const int64_t rank = x.rank(), n = y.num_elements();
    const size_t es = DataTypeSize(y.dtype);
    std::vector<int64_t> xs(rank, 1);
    for (int64_t d = rank - 2; d >= 0; --d) xs[d] = xs[d + 1] * x.shape[d + 1];
    std::vector<int64_t> idx(rank, 0);
    for (int64_t o = 0; o < n; ++o) {
      int64_t off = 0;
      for (int64_t d = 0; d < rank; ++d) off += (idx[d] % x.shape[d]) * xs[d];
      std::memcpy(static_cast<char*>(y.data) + o * es, static_cast<const char*>(x.data) + off * es, es);
      for (int64_t d = rank - 1; d >= 0; --d) {
        if (++idx[d] < y.shape[d]) break;
        idx[d] = 0;
      }
    }
    return absl::OkStatus();
  }
};

void ConstantPad(const TensorArg& x, const TensorArg& y, const PadSpec& p, const char* fill, size_t es);

class PadKernel final : public Kernel {
 public:
  PadKernel(const AttributeMap& attrs, int64_t opset, std::string label)
      : attrs_(attrs), opset_(opset), label_(std::move(label)) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const int64_t rank = x.rank();
    Tensor pads, axes;
    if (opset_ >= 11) {
      if (!ctx.has_input(1)) {
        return absl::InvalidArgumentError(absl::StrFormat("failed to run node %s: input 'pads' is required", label_));
      }
      pads = ctx.input(1).View();
    }
    if (ctx.has_input(3)) axes = ctx.input(3).View();
    auto p = ResolvePads(attrs_, opset_, opset_ >= 11 ? &pads : nullptr, ctx.has_input(3) ? &axes : nullptr, rank, label_);
    if (!p.ok()) return p.status();
    const size_t es = DataTypeSize(y.dtype);
    std::vector<char> fill(es, 0);
    if (opset_ < 11) {
      const float v = attrs_.GetFloat("value", 0.f);
      std::memcpy(fill.data(), &v, std::min<size_t>(es, 4));
    } else if (ctx.has_input(2) && ctx.input(2).num_elements() > 0) {
      std::memcpy(fill.data(), ctx.input(2).data, es);
    }
    std::vector<int64_t> xs(rank, 1);
    for (int64_t d = rank - 2; d >= 0; --d) xs[d] = xs[d + 1] * x.shape[d + 1];
    std::vector<int64_t> idx(rank, 0);
    const int64_t n = y.num_elements();
    if (p->mode == "constant" && rank > 0) {
      ConstantPad(x, y, *p, fill.data(), es);
      return absl::OkStatus();
    }
    if (p->mode != "constant") {
      for (int64_t d = 0; d < rank; ++d) {
        if (x.shape[d] == 0 && y.shape[d] > 0) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "failed to run node %s: %s padding needs a non-empty dimension %d", label_, p->mode, d));
        }
      }
    }
    // Source index of every output index per dimension (-1: the fill value),
    // then output rows gathered through those tables.
    std::vector<std::vector<int64_t>> src(rank);
    for (int64_t d = 0; d < rank; ++d) {
      const int64_t len = x.shape[d];
      for (int64_t o = 0; o < y.shape[d]; ++o) {
        int64_t i = o - p->begin[d];
        if (i < 0 || i >= len) {
          if (p->mode == "constant") {
            i = -1;
          } else if (p->mode == "edge") {
            i = i < 0 ? 0 : len - 1;
          } else if (p->mode == "wrap") {
            i = ((i % len) + len) % len;
          } else {  // reflect, without repeating the edge
            const int64_t period = std::max<int64_t>(1, 2 * (len - 1));
            i = ((i % period) + period) % period;
            if (i >= len) i = period - i;
          }
        }
        src[d].push_back(i);
      }
    }
    if (rank == 0 || n == 0) {
      if (n) std::memcpy(y.data, x.data, es);
      return absl::OkStatus();
    }
    const int64_t last = rank - 1, row = y.shape[last], rows = n / row;
    const char* px = static_cast<const char*>(x.data);
    char* py = static_cast<char*>(y.data);
    for (int64_t r = 0; r < rows; ++r) {
      int64_t off = 0;
      bool inside = true;
      for (int64_t d = 0; d < last; ++d) {
        const int64_t i = src[d][idx[d]];
        inside &= i >= 0;
        off += i * xs[d];
      }
      char* dst = py + r * row * es;
      for (int64_t j = 0; j < row; ++j) {
        const int64_t i = src[last][j];
        std::memcpy(dst + j * es, inside && i >= 0 ? px + (off + i) * es : fill.data(), es);
      }
      for (int64_t d = last - 1; d >= 0; --d) {
        if (++idx[d] < y.shape[d]) break;
        idx[d] = 0;
      }
    }
    return absl::OkStatus();
  }

 private:
  AttributeMap attrs_;
  int64_t opset_;
  std::string label_;
};

// Constant mode: fill, then copy each input row (cropped by negative pads)
// to its place.
void ConstantPad(const TensorArg& x, const TensorArg& y, const PadSpec& p, const char* fill, size_t es) {
  const int64_t rank = x.rank(), n = y.num_elements();
  char* py = static_cast<char*>(y.data);
  bool zero = true;
  for (size_t i = 0; i < es; ++i) zero &= fill[i] == 0;
  if (zero) {
    std::memset(py, 0, n * es);
  } else {
    for (int64_t i = 0; i < n; ++i) std::memcpy(py + i * es, fill, es);
  }
  std::vector<int64_t> ys(rank, 1);
  for (int64_t d = rank - 2; d >= 0; --d) ys[d] = ys[d + 1] * y.shape[d + 1];
  const int64_t last = rank - 1;
  const int64_t src0 = std::max<int64_t>(0, -p.begin[last]);
  const int64_t dst0 = std::max<int64_t>(0, p.begin[last]);
  const int64_t len = std::min(x.shape[last] - src0, y.shape[last] - dst0);
  if (len <= 0) return;
  int64_t rows = 1;
  for (int64_t d = 0; d < last; ++d) rows *= x.shape[d];
  std::vector<int64_t> idx(rank, 0);
  const char* px = static_cast<const char*>(x.data);
  for (int64_t r = 0; r < rows; ++r) {
    int64_t off = 0;
    bool inside = true;
    for (int64_t d = 0; d < last; ++d) {
      const int64_t o = idx[d] + p.begin[d];
      inside &= o >= 0 && o < y.shape[d];
      off += o * ys[d];
    }
    if (inside) std::memcpy(py + (off + dst0) * es, px + (r * x.shape[last] + src0) * es, len * es);
    for (int64_t d = last - 1; d >= 0; --d) {
      if (++idx[d] < x.shape[d]) break;
      idx[d] = 0;
    }
  }
}

class SplitKernel final : public Kernel {
 public:
  explicit SplitKernel(int64_t axis) : axis_(axis) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const int64_t axis = axis_ < 0 ? axis_ + x.rank() : axis_;
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
    for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape[i];
    const size_t es = DataTypeSize(x.dtype);
    const int64_t x_row = x.shape[axis] * inner * es;
    int64_t offset = 0;
    for (const TensorArg& y : ctx.outputs) {
      if (!y.present()) continue;
      const int64_t y_row = y.shape[axis] * inner * es;
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(static_cast<char*>(y.data) + o * y_row, static_cast<const char*>(x.data) + o * x_row + offset, y_row);
      }
      offset += y_row;
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateConstantOfShape(const KernelInit& init) {
  Tensor value = Tensor::FromVector<float>(DataType::kFloat32, {1}, {0.f});
  if (const Attribute* v = init.attrs->Find("value"); v && v->kind == Attribute::Kind::kTensor) value = v->t;
  if (value.num_elements() != 1) {
    return absl::InvalidArgumentError(absl::StrFormat("failed to compile node %s: value must hold one element, got %d",
                                                      init.node_label, value.num_elements()));
  }
  return std::make_unique<ConstantOfShapeKernel>(value);
}
absl::StatusOr<std::unique_ptr<Kernel>> CreateRange(const KernelInit&) { return std::make_unique<RangeKernel>(); }
absl::StatusOr<std::unique_ptr<Kernel>> CreateSize(const KernelInit&) { return std::make_unique<SizeKernel>(); }
absl::StatusOr<std::unique_ptr<Kernel>> CreateExpand(const KernelInit&) { return std::make_unique<ExpandKernel>(); }
absl::StatusOr<std::unique_ptr<Kernel>> CreateTile(const KernelInit&) { return std::make_unique<TileKernel>(); }
absl::StatusOr<std::unique_ptr<Kernel>> CreatePad(const KernelInit& init) {
  return std::make_unique<PadKernel>(*init.attrs, init.opset, init.node_label);
}
absl::StatusOr<std::unique_ptr<Kernel>> CreateSplit(const KernelInit& init) {
  return std::make_unique<SplitKernel>(init.attrs->GetInt("axis", 0));
}

}  // namespace kvant::cpu
