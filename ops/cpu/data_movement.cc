// Data-movement kernels for any element type: copies (Reshape, Flatten,
// Squeeze, Unsqueeze, Identity, Dropout), Transpose, Concat, Slice, Gather and
// Shape. They move bytes; element size is all they need to know.
#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "ops/kernel.h"
#include "ops/op_schema.h"
#include "ops/tensor_ops.h"

namespace kvant::cpu {
namespace {

size_t ElemSize(const TensorArg& t) { return DataTypeSize(t.dtype); }

std::vector<int64_t> ReadIntArg(const TensorArg& t) { return ReadInts(t.View()); }

class Copy final : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    if (y.data != x.data) std::memcpy(y.data, x.data, y.num_elements() * ElemSize(y));
    if (ctx.outputs.size() > 1 && ctx.output(1).present()) {
      std::memset(ctx.output(1).data, 1, ctx.output(1).num_elements());  // Dropout mask: all kept
    }
    return absl::OkStatus();
  }
};

// dst[c * rows + r] = src[r * cols + c], in 32 x 32 tiles so that both sides
// stay in cache lines.
template <typename T>
void Transpose2D(const T* src, int64_t rows, int64_t cols, T* dst) {
  constexpr int64_t kTile = 32;
  for (int64_t r0 = 0; r0 < rows; r0 += kTile) {
    const int64_t r1 = std::min(rows, r0 + kTile);
    for (int64_t c0 = 0; c0 < cols; c0 += kTile) {
      const int64_t c1 = std::min(cols, c0 + kTile);
      for (int64_t c = c0; c < c1; ++c)
        for (int64_t r = r0; r < r1; ++r) dst[c * rows + r] = src[r * cols + c];
    }
  }
}

// dst[c * R + r] = src[r * cols + c] for c in [c0, c1): the transpose of R
// short rows (NCHW -> NHWC of an RGB image: R = 3 planes), written in order
// with the rows unrolled; Transpose2D's tiles would be 3 x 32 here.
template <typename T, int R>
void InterleaveRows(const T* src, int64_t cols, int64_t c0, int64_t c1, T* dst) {
  for (int64_t c = c0; c < c1; ++c) {
    for (int r = 0; r < R; ++r) dst[c * R + r] = src[r * cols + c];
  }
}

template <typename T>
void InterleaveRows(const T* src, int64_t rows, int64_t cols, int64_t c0, int64_t c1, T* dst) {
  switch (rows) {
    case 2: return InterleaveRows<T, 2>(src, cols, c0, c1, dst);
    case 3: return InterleaveRows<T, 3>(src, cols, c0, c1, dst);
    default: return InterleaveRows<T, 4>(src, cols, c0, c1, dst);
  }
}

// A permutation that keeps a leading block and swaps the two blocks after it
// ([0, 2, 3, 1]: NCHW -> NHWC, [0, 3, 1, 2]: NHWC -> NCHW, [1, 0] ...):
// sets batch x rows x cols of the equivalent 2-D transposes.
bool AsBatched2D(absl::Span<const int64_t> shape, const std::vector<int64_t>& perm, int64_t* batch, int64_t* rows,
                 int64_t* cols) {
  const int64_t rank = static_cast<int64_t>(perm.size());
  int64_t lead = 0;
  while (lead < rank && perm[lead] == lead) ++lead;
  if (lead == rank) return false;
  // perm[lead..] must be (k, k+1, ..., rank-1, lead, ..., k-1) for some k.
  const int64_t k = perm[lead];
  for (int64_t i = lead; i < rank; ++i) {
    const int64_t want = i - lead < rank - k ? k + (i - lead) : lead + (i - lead - (rank - k));
    if (perm[i] != want) return false;
  }
  *batch = *rows = *cols = 1;
  for (int64_t d = 0; d < lead; ++d) *batch *= shape[d];
  for (int64_t d = lead; d < k; ++d) *rows *= shape[d];
  for (int64_t d = k; d < rank; ++d) *cols *= shape[d];
  return true;
}

class Transpose final : public Kernel {
 public:
  explicit Transpose(std::vector<int64_t> perm) : perm_(std::move(perm)) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    const int64_t rank = x.rank();
    std::vector<int64_t> perm = perm_;
    if (perm.empty()) {
      for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
    }
    std::vector<int64_t> in_strides(rank, 1);
    for (int64_t i = rank - 2; i >= 0; --i) in_strides[i] = in_strides[i + 1] * x.shape[i + 1];
    std::vector<int64_t> src_strides(rank);  // input stride of each output dimension
    for (int64_t i = 0; i < rank; ++i) src_strides[i] = in_strides[perm[i]];
    const size_t es = ElemSize(x);
    const int64_t n = y.num_elements();
    if (n == 0) return absl::OkStatus();
    if (rank == 0) {
      std::memcpy(y.data, x.data, es);
      return absl::OkStatus();
    }
    const char* xs = static_cast<const char*>(x.data);
    char* ys = static_cast<char*>(y.data);
    // Only dimensions of size 1 move ([N, H, W, 1] -> [N, 1, H, W]): the bytes stay in order.
    bool in_order = true;
    for (int64_t i = 0, last = -1; i < rank && in_order; ++i) {
      if (x.shape[perm[i]] == 1) continue;
      in_order = perm[i] > last;
      last = perm[i];
    }
    if (in_order) {
      constexpr int64_t kChunk = int64_t{1} << 20;
      const int64_t bytes = n * static_cast<int64_t>(es);
      ctx.pool->ParallelFor((bytes + kChunk - 1) / kChunk, [&](int64_t c0, int64_t c1) {
        std::memcpy(ys + c0 * kChunk, xs + c0 * kChunk, std::min(bytes, c1 * kChunk) - c0 * kChunk);
      });
      return absl::OkStatus();
    }
    int64_t batch, rows2, cols2;
    const bool batched = (es == 1 || es == 4) && AsBatched2D(x.shape, perm, &batch, &rows2, &cols2);
    if (batched && es == 4 && rows2 >= 2 && rows2 <= 4) {
      // Few rows: split the columns too, so one image uses every thread.
      constexpr int64_t kChunk = 4096;
      const int64_t chunks = (cols2 + kChunk - 1) / kChunk;
      ctx.pool->ParallelFor(batch * chunks, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t b = t / chunks, c0 = t % chunks * kChunk, off = b * rows2 * cols2;
          InterleaveRows(reinterpret_cast<const uint32_t*>(xs) + off, rows2, cols2, c0, std::min(cols2, c0 + kChunk),
                         reinterpret_cast<uint32_t*>(ys) + off);
        }
      });
      return absl::OkStatus();
    }
    if (batched) {
      ctx.pool->ParallelFor(batch, [&](int64_t b0, int64_t b1) {
        for (int64_t b = b0; b < b1; ++b) {
          const int64_t off = b * rows2 * cols2;
          if (es == 1) {
            Transpose2D(reinterpret_cast<const uint8_t*>(xs) + off, rows2, cols2, reinterpret_cast<uint8_t*>(ys) + off);
          } else {
            Transpose2D(reinterpret_cast<const uint32_t*>(xs) + off, rows2, cols2,
                        reinterpret_cast<uint32_t*>(ys) + off);
          }
        }
      });
      return absl::OkStatus();
    }
    if (src_strides[rank - 1] == 1) {
      // The last output dimension is contiguous in the input (attention's
      // [B, S, H, D] -> [B, H, S, D]): copy runs, with the trailing output
      // dimensions that stay contiguous merged into them, and step the
      // source offset like an odometer instead of dividing per run.
      int64_t run = y.shape[rank - 1], outer = rank - 1;
      while (outer > 0 && src_strides[outer - 1] == run) run *= y.shape[--outer];
      const int64_t runs = n / run;
      const int64_t per_task = std::max<int64_t>(1, (16 << 10) / (run * static_cast<int64_t>(es)));
      ctx.pool->ParallelFor((runs + per_task - 1) / per_task, [&](int64_t t0, int64_t t1) {
        const int64_t r0 = t0 * per_task, r1 = std::min(runs, t1 * per_task);
        std::vector<int64_t> idx(outer, 0);
        int64_t off = 0;
        for (int64_t d = outer - 1, rem = r0; d >= 0; --d) {
          idx[d] = rem % y.shape[d];
          rem /= y.shape[d];
          off += idx[d] * src_strides[d];
        }
        for (int64_t r = r0; r < r1; ++r) {
          std::memcpy(ys + r * run * es, xs + off * es, run * es);
          for (int64_t d = outer - 1; d >= 0; --d) {
            off += src_strides[d];
            if (++idx[d] < y.shape[d]) break;
            off -= idx[d] * src_strides[d];
            idx[d] = 0;
          }
        }
      });
      return absl::OkStatus();
    }
    const int64_t inner = y.shape[rank - 1], rows = n / inner, inner_stride = src_strides[rank - 1];
    ctx.pool->ParallelFor(rows, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        int64_t off = 0, rem = r;
        for (int64_t d = rank - 2; d >= 0; --d) {
          off += (rem % y.shape[d]) * src_strides[d];
          rem /= y.shape[d];
        }
        char* dst = ys + r * inner * es;
        switch (es) {
          case 1:
            for (int64_t j = 0; j < inner; ++j)
              reinterpret_cast<uint8_t*>(dst)[j] = reinterpret_cast<const uint8_t*>(xs)[off + j * inner_stride];
            break;
          case 4:
            for (int64_t j = 0; j < inner; ++j)
              reinterpret_cast<uint32_t*>(dst)[j] = reinterpret_cast<const uint32_t*>(xs)[off + j * inner_stride];
            break;
          case 8:
            for (int64_t j = 0; j < inner; ++j)
              reinterpret_cast<uint64_t*>(dst)[j] = reinterpret_cast<const uint64_t*>(xs)[off + j * inner_stride];
            break;
          default:
            for (int64_t j = 0; j < inner; ++j) std::memcpy(dst + j * es, xs + (off + j * inner_stride) * es, es);
        }
      }
    });
    return absl::OkStatus();
  }

 private:
  std::vector<int64_t> perm_;
};

class Concat final : public Kernel {
 public:
  explicit Concat(int64_t axis) : axis_(axis) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& y = ctx.output(0);
    const int64_t rank = y.rank(), axis = axis_ < 0 ? axis_ + rank : axis_;
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= y.shape[i];
    for (int64_t i = axis + 1; i < rank; ++i) inner *= y.shape[i];
    const size_t es = ElemSize(y);
    const int64_t y_row = y.shape[axis] * inner * es;
    int64_t offset = 0;
    for (const TensorArg& x : ctx.inputs) {
      if (!x.present()) continue;
      const int64_t x_row = x.shape[axis] * inner * es;
      for (int64_t o = 0; o < outer; ++o) {
        std::memcpy(static_cast<char*>(y.data) + o * y_row + offset,
                    static_cast<const char*>(x.data) + o * x_row, x_row);
      }
      offset += x_row;
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
};

class Slice final : public Kernel {
 public:
  Slice(std::string label, const AttributeMap& attrs) : label_(std::move(label)), attrs_(attrs) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& y = ctx.output(0);
    std::vector<int64_t> starts, ends, axes, steps;
    if (ctx.num_inputs() >= 3) {
      starts = ReadIntArg(ctx.input(1));
      ends = ReadIntArg(ctx.input(2));
      if (ctx.has_input(3)) axes = ReadIntArg(ctx.input(3));
      if (ctx.has_input(4)) steps = ReadIntArg(ctx.input(4));
    } else {  // opset < 10: attributes
      starts = attrs_.GetInts("starts");
      ends = attrs_.GetInts("ends");
      axes = attrs_.GetInts("axes");
    }
    std::vector<int64_t> in(x.shape.begin(), x.shape.end());
    auto r = ComputeSlice(in, starts, ends, axes, steps, label_);
    if (!r.ok()) return r.status();
    const int64_t rank = in.size(), n = y.num_elements();
    if (n == 0) return absl::OkStatus();
    std::vector<int64_t> in_strides(rank, 1);
    for (int64_t i = rank - 2; i >= 0; --i) in_strides[i] = in_strides[i + 1] * in[i + 1];
    const size_t es = ElemSize(x);
    const char* xs = static_cast<const char*>(x.data);
    char* ys = static_cast<char*>(y.data);
    if (rank == 0) {
      std::memcpy(ys, xs, es);
      return absl::OkStatus();
    }
    // Rows along the last dimension: one memcpy per row when its step is 1.
    const int64_t last = rank - 1, row = y.shape[last], rows = n / row;
    std::vector<int64_t> idx(rank, 0);
    for (int64_t o = 0; o < rows; ++o) {
      int64_t off = r->start[last];
      for (int64_t d = 0; d < last; ++d) off += (r->start[d] + idx[d] * r->step[d]) * in_strides[d];
      char* dst = ys + o * row * es;
      if (r->step[last] == 1) {
        std::memcpy(dst, xs + off * es, row * es);
      } else {
        for (int64_t j = 0; j < row; ++j) std::memcpy(dst + j * es, xs + (off + j * r->step[last]) * es, es);
      }
      for (int64_t d = last - 1; d >= 0; --d) {
        if (++idx[d] < y.shape[d]) break;
        idx[d] = 0;
      }
    }
    return absl::OkStatus();
  }

 private:
  std::string label_;
  AttributeMap attrs_;
};

class Gather final : public Kernel {
 public:
  Gather(int64_t axis, std::string label) : axis_(axis), label_(std::move(label)) {}

  absl::Status Run(const KernelContext& ctx) const override {
    const TensorArg& x = ctx.input(0);
    const TensorArg& idx = ctx.input(1);
    const TensorArg& y = ctx.output(0);
    const int64_t axis = axis_ < 0 ? axis_ + x.rank() : axis_;
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < axis; ++i) outer *= x.shape[i];
    for (int64_t i = axis + 1; i < x.rank(); ++i) inner *= x.shape[i];
    const int64_t dim = x.shape[axis], count = idx.num_elements();
    const std::vector<int64_t> indices = ReadIntArg(idx);
    const size_t row = inner * ElemSize(x);
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < count; ++i) {
        int64_t j = indices[i];
        if (j < -dim || j >= dim) {
          return absl::InvalidArgumentError(absl::StrFormat(
              "failed to run node %s: index must be in [%d, %d], got %d at position %d", label_, -dim, dim - 1, j, i));
        }
        if (j < 0) j += dim;
        std::memcpy(static_cast<char*>(y.data) + (o * count + i) * row,
                    static_cast<const char*>(x.data) + (o * dim + j) * row, row);
      }
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  std::string label_;
};

class ShapeOf final : public Kernel {
 public:
  ShapeOf(int64_t start, int64_t end) : start_(start), end_(end) {}
  absl::Status Run(const KernelContext& ctx) const override {
    const int64_t rank = ctx.input(0).rank();
    int64_t s = start_ < 0 ? start_ + rank : start_, e = end_ == INT64_MAX ? rank : (end_ < 0 ? end_ + rank : end_);
    s = std::clamp<int64_t>(s, 0, rank);
    e = std::clamp<int64_t>(e, 0, rank);
    for (int64_t i = s; i < e; ++i) ctx.output(0).as<int64_t>()[i - s] = ctx.input(0).shape[i];
    return absl::OkStatus();
  }

 private:
  int64_t start_, end_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateCopy(const KernelInit&) { return std::make_unique<Copy>(); }

absl::StatusOr<std::unique_ptr<Kernel>> CreateTranspose(const KernelInit& init) {
  return std::make_unique<Transpose>(init.attrs->GetInts("perm"));
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateConcat(const KernelInit& init) {
  return std::make_unique<Concat>(init.attrs->GetInt("axis", 0));
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateSlice(const KernelInit& init) {
  return std::make_unique<Slice>(init.node_label, *init.attrs);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateGather(const KernelInit& init) {
  return std::make_unique<Gather>(init.attrs->GetInt("axis", 0), init.node_label);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateShape(const KernelInit& init) {
  return std::make_unique<ShapeOf>(init.attrs->GetInt("start", 0), init.attrs->GetInt("end", INT64_MAX));
}

}  // namespace kvant::cpu
