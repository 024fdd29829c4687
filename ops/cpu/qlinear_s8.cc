// ONNX Runtime's quantized elementwise and pooling operators (com.microsoft),
// with activations staying u8/s8 between INT8 convolutions:
//   QLinearAdd  c = round(sa/sc (a - za) + sb/sc (b - zb)) + zc
//   QLinearMul  c = round(sa sb/sc (a - za)(b - zb)) + zc
//   QLinearSoftmax  softmax of the dequantized values along an axis, requantized
//   QLinearGlobalAveragePool (NCHW, or NHWC with channels_last)
//                y = round(sx/(sy N) (sum x - N zx)) + zy
// saturated to the type's range, rounding half to even, in float as ONNX
// Runtime's MLAS kernels compute them (numpy broadcasting for the binary ops,
// with a plain loop when both shapes are equal). The table-shaped ones
// (QLinearSigmoid, QLinearLeakyRelu, QLinearConcat, kvant.QLinearTable) are
// in qlinear_lookup.cc.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "absl/strings/str_format.h"
#include "ops/cpu/broadcast_loop.h"
#include "ops/cpu/lookup_u8.h"
#include "ops/cpu/quantize_common.h"
#include "ops/nn_ops.h"

namespace kvant::cpu {
namespace {

enum class BinaryOp { kAdd, kMul };

// Equal shapes: one loop the compiler vectorizes (VRNDSCALEPS on AVX-512).
template <typename T, BinaryOp kOp>
__attribute__((always_inline)) inline void SameShapeBody(const T* a, const T* b, T* c, int64_t n, float za, float zb,
                                                        float zc, float ra, float rb) {
  for (int64_t i = 0; i < n; ++i) {
    const float dx = static_cast<float>(a[i]) - za, dy = static_cast<float>(b[i]) - zb;
    const float v = std::nearbyint(kOp == BinaryOp::kAdd ? ra * dx + rb * dy : ra * (dx * dy)) + zc;
    c[i] = static_cast<T>(std::min(std::max(v, kLo<T>), kHi<T>));
  }
}
// One operand constant over the row (dc = its centered value):
// add: c = round(rv (v - zv) + rc dc); mul: c = round(rv dc (v - zv)).
template <typename T, BinaryOp kOp>
__attribute__((always_inline)) inline void RowScalarBody(const T* v, T* c, int64_t n, float zv, float rv, float rc,
                                                        float dc, float zc) {
  const float k = kOp == BinaryOp::kAdd ? rc * dc : 0.f, m = kOp == BinaryOp::kAdd ? rv : rv * dc;
  for (int64_t i = 0; i < n; ++i) c[i] = Saturate<T>(m * (static_cast<float>(v[i]) - zv) + k, zc);
}
template <typename T, BinaryOp kOp>
void RowScalar(const T* v, T* c, int64_t n, float zv, float rv, float rc, float dc, float zc) {
  RowScalarBody<T, kOp>(v, c, n, zv, rv, rc, dc, zc);
}
template <typename T, BinaryOp kOp>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))) void RowScalarAvx512(
    const T* v, T* c, int64_t n, float zv, float rv, float rc, float dc, float zc) {
  RowScalarBody<T, kOp>(v, c, n, zv, rv, rc, dc, zc);
}

template <typename T, BinaryOp kOp>
void SameShape(const T* a, const T* b, T* c, int64_t n, float za, float zb, float zc, float ra, float rb) {
  SameShapeBody<T, kOp>(a, b, c, n, za, zb, zc, ra, rb);
}
template <typename T, BinaryOp kOp>
void SameShapeAvx512(const T* a, const T* b, T* c, int64_t n, float za, float zb, float zc, float ra, float rb) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    avx512::SameRowsU8(kOp == BinaryOp::kAdd, a, b, c, n, za, zb, zc, ra, rb);
  } else {
    avx512::SameRowsS8(kOp == BinaryOp::kAdd, a, b, c, n, za, zb, zc, ra, rb);
  }
}

}  // namespace

void QLinearAddRows(bool avx512, bool u8, const void* a, const void* b, void* c, int64_t n, float za, float zb,
                    float zc, float ra, float rb) {
  if (u8) {
    (avx512 ? SameShapeAvx512<uint8_t, BinaryOp::kAdd> : SameShape<uint8_t, BinaryOp::kAdd>)(
        static_cast<const uint8_t*>(a), static_cast<const uint8_t*>(b), static_cast<uint8_t*>(c), n, za, zb, zc, ra,
        rb);
  } else {
    (avx512 ? SameShapeAvx512<int8_t, BinaryOp::kAdd> : SameShape<int8_t, BinaryOp::kAdd>)(
        static_cast<const int8_t*>(a), static_cast<const int8_t*>(b), static_cast<int8_t*>(c), n, za, zb, zc, ra, rb);
  }
}

namespace {

// One image's averages from its chunks' int32 channel sums:
// y[c] = saturate(round(scale (sum_k parts[k][c] - offset)) + zy).
template <typename T>
__attribute__((always_inline)) inline void AveragesBody(const int32_t* parts, int64_t chunks, int64_t channels,
                                                       float scale, float offset, float zy, T* y) {
  if (chunks == 1) {  // the usual case, one loop the compiler vectorizes
    for (int64_t c = 0; c < channels; ++c) y[c] = Saturate<T>(scale * (static_cast<float>(parts[c]) - offset), zy);
    return;
  }
  for (int64_t c = 0; c < channels; ++c) {
    int64_t sum = 0;
    for (int64_t k = 0; k < chunks; ++k) sum += parts[k * channels + c];
    y[c] = Saturate<T>(scale * (static_cast<float>(sum) - offset), zy);
  }
}
template <typename T>
void Averages(const int32_t* parts, int64_t chunks, int64_t channels, float scale, float offset, float zy, T* y) {
  AveragesBody<T>(parts, chunks, channels, scale, offset, zy, y);
}
// The same vectorized (VRNDSCALEPS): 1280 channels of EfficientNet's head
// took 37 us a batch of 4 through scalar rounding.
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,prefer-vector-width=512"))) void AveragesAvx512(
    const int32_t* parts, int64_t chunks, int64_t channels, float scale, float offset, float zy, T* y) {
  AveragesBody<T>(parts, chunks, channels, scale, offset, zy, y);
}

// A product row against a per-channel gate (a squeeze-excitation block's
// [N,1,1,C] over [N,H,W,C]): g holds the gate row's centered values.
template <typename T>
void RowGate(const T* v, const float* g, T* c, int64_t n, float zv, float rm, float zc) {
  for (int64_t i = 0; i < n; ++i) c[i] = Saturate<T>(rm * ((static_cast<float>(v[i]) - zv) * g[i]), zc);
}
template <typename T>
auto RowGateFor(bool avx512) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    return avx512 ? avx512::GateRowU8 : RowGate<uint8_t>;
  } else {
    return avx512 ? avx512::GateRowS8 : RowGate<int8_t>;
  }
}

// The images N when one operand of a product is a per-image gate [N,1,..,1,C]
// or a shared one [1,..,1,C] (rank 3 or more, right-aligned, at most half
// the output) and the other has the output's shape [N,H,..,W,C]; else 0.
int64_t GateImages(const TensorArg& a, const TensorArg& b, const TensorArg& c) {
  const bool gate_b = b.num_elements() < a.num_elements();
  const TensorArg& g = gate_b ? b : a;
  const TensorArg& v = gate_b ? a : b;
  const int64_t r = c.rank();
  if (r < 3 || v.shape != c.shape || g.rank() > r || g.rank() == 0 || g.shape.back() != c.shape[r - 1] ||
      g.num_elements() * 2 > c.num_elements()) {
    return 0;
  }
  for (int64_t d = 0; d + 1 < g.rank(); ++d) {
    const int64_t at = r - g.rank() + d;  // the output dimension g's dimension d broadcasts to
    if (g.shape[d] != 1 && !(at == 0 && g.shape[d] == c.shape[0])) return 0;
  }
  return c.shape[0];
}

class QLinearBinary final : public ByteKernel<QLinearBinary> {
 public:
  QLinearBinary(BinaryOp op, CpuFeatures cpu)
      : op_(op), avx512_((cpu & kIsaAvx512) == kIsaAvx512), lookup_(SelectLookupU8(cpu)) {}

  // One operand a constant scalar and every scale and zero point constant
  // (ONNX Runtime's QDQ files quantize each multiplier and offset of an
  // affine block so, 200 of them in PP-OCRv4's recogniser): the output is a
  // function of the other operand's byte, computed at load for all 256 by
  // the scalar-operand row below and then looked up.
  void Prepare(const KernelInit& init) {
    const auto& k = init.constant_inputs;
    auto constant = [&](size_t i) { return i < k.size() && k[i] != nullptr; };
    const bool a_scalar = constant(0) && k[0]->num_elements() == 1, b_scalar = constant(3) && k[3]->num_elements() == 1;
    if (a_scalar == b_scalar) return;  // neither (or both: folded elsewhere)
    for (size_t i : {1, 4, 6}) {
      if (!constant(i) || k[i]->num_elements() != 1 || k[i]->dtype() != DataType::kFloat32) return;
    }
    for (size_t i : {2, 5, 7}) {
      const bool present = i < init.input_types.size() && init.input_types[i] != DataType::kUndefined;
      if (present && !constant(i)) return;
      if (constant(i) && k[i]->num_elements() != 1) return;
    }
    auto zero = [&](size_t i) -> float {
      if (!constant(i)) return 0.f;
      const uint8_t bits = static_cast<const uint8_t*>(k[i]->raw_data())[0];
      return k[i]->dtype() == DataType::kInt8 ? static_cast<int8_t>(bits) : bits;
    };
    const Tensor& w = *k[a_scalar ? 0 : 3];
    if (w.dtype() != DataType::kUInt8 && w.dtype() != DataType::kInt8) return;
    const Params p{k[1]->data<float>()[0], k[4]->data<float>()[0], k[6]->data<float>()[0], zero(2), zero(5), zero(7)};
    table_.resize(256);
    const uint8_t wb = static_cast<const uint8_t*>(w.raw_data())[0];
    uint8_t all[256];
    for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
    if (w.dtype() == DataType::kInt8) {
      ScalarRow<int8_t>(p, !a_scalar, reinterpret_cast<const int8_t*>(all), reinterpret_cast<int8_t*>(table_.data()),
                        256, static_cast<int8_t>(wb));
    } else {
      ScalarRow<uint8_t>(p, !a_scalar, all, table_.data(), 256, wb);
    }
  }

  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& a = ctx.input(0);
    const TensorArg& b = ctx.input(3);
    const TensorArg& c = ctx.output(0);
    const Params p{ScaleAt(ctx, 1, 0), ScaleAt(ctx, 4, 0), ScaleAt(ctx, 6, 0), static_cast<float>(ZeroPointAt(ctx, 2, 0)),
                   static_cast<float>(ZeroPointAt(ctx, 5, 0)), static_cast<float>(ZeroPointAt(ctx, 7, 0))};
    const float za = p.za, zb = p.zb, zc = p.zc;
    const T* pa = a.as<const T>();
    const T* pb = b.as<const T>();
    T* pc = c.as<T>();
    const float ra = p.ra(), rb = p.rb(), rm = p.rm();
    auto one = [&](T x, T y) {
      const float dx = static_cast<float>(x) - za, dy = static_cast<float>(y) - zb;
      return Saturate<T>(op_ == BinaryOp::kAdd ? ra * dx + rb * dy : rm * (dx * dy), zc);
    };
    // A row of v against one value of the other operand (w at index j).
    auto row_scalar = [&](bool v_is_a, const T* v, T* out, int64_t n, T w) { ScalarRow<T>(p, v_is_a, v, out, n, w); };
    // Chunks of the flat output across the session's threads.
    constexpr int64_t kChunk = 1 << 16;
    auto chunked = [&](int64_t n, auto fn) {
      ctx.pool->ParallelFor((n + kChunk - 1) / kChunk, [&](int64_t b0, int64_t b1) {
        const int64_t lo = b0 * kChunk, hi = std::min(n, b1 * kChunk);
        fn(lo, hi - lo);
      });
    };
    // Elementwise over equal-length runs: the vector loop.
    const float r1 = op_ == BinaryOp::kAdd ? ra : rm;
    const auto same = op_ == BinaryOp::kAdd ? (avx512_ ? SameShapeAvx512<T, BinaryOp::kAdd> : SameShape<T, BinaryOp::kAdd>)
                                           : (avx512_ ? SameShapeAvx512<T, BinaryOp::kMul> : SameShape<T, BinaryOp::kMul>);
    if (!table_.empty() && (a.num_elements() == 1) != (b.num_elements() == 1)) {  // a constant scalar: the table
      const uint8_t* v = static_cast<const uint8_t*>(a.num_elements() == 1 ? b.data : a.data);
      chunked(c.num_elements(), [&](int64_t at, int64_t n) {
        lookup_(table_.data(), v + at, n, reinterpret_cast<uint8_t*>(pc) + at);
      });
    } else if (b.num_elements() == 1 || a.num_elements() == 1) {  // one operand a scalar
      const bool scalar_b = b.num_elements() == 1;
      const T* v = scalar_b ? pa : pb;
      chunked(c.num_elements(), [&](int64_t at, int64_t n) { row_scalar(scalar_b, v + at, pc + at, n, scalar_b ? pb[0] : pa[0]); });
    } else if (a.shape == b.shape) {
      chunked(c.num_elements(), [&](int64_t at, int64_t n) { same(pa + at, pb + at, pc + at, n, za, zb, zc, r1, rb); });
    } else if (const int64_t images = GateImages(a, b, c); op_ == BinaryOp::kMul && images > 0) {
      // A squeeze-excitation gate [N,1,..,1,C] (or [1,..,1,C] shared) over
      // [N,H,..,W,C] (NHWC): each image's products are one contiguous run
      // against the gate row repeating every C elements. The row, centered,
      // is repeated once per image to a length that C and the 16 lanes both
      // divide, and the run goes in chunks of that length (not one call per
      // pixel: a gate of 8 channels had 8 products per call), chunks across
      // the threads.
      const bool gate_b = b.num_elements() < a.num_elements();
      const TensorArg& g = gate_b ? b : a;
      const T* gv = gate_b ? pb : pa;
      const T* v = gate_b ? pa : pb;
      const float zg = gate_b ? zb : za, zv = gate_b ? za : zb;
      const int64_t ch = c.shape[c.rank() - 1], per = c.num_elements() / images;
      int64_t len = ch / std::gcd<int64_t>(ch, 16) * 16;
      len *= std::max<int64_t>(1, 256 / len);
      std::vector<float> rows(images * len);
      for (int64_t i = 0; i < images; ++i) {
        const T* row = gv + (g.num_elements() == ch ? 0 : i * ch);
        float* dst = rows.data() + i * len;
        for (int64_t j = 0; j < ch; ++j) dst[j] = static_cast<float>(row[j]) - zg;
        for (int64_t j = ch; j < len; j += ch) std::copy(dst, dst + ch, dst + j);
      }
      const auto gate_fn = RowGateFor<T>(avx512_);
      const int64_t chunks = (per + len - 1) / len;
      ctx.pool->ParallelFor(images * chunks, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t i = t / chunks, at = i * per + t % chunks * len;
          gate_fn(v + at, rows.data() + i * len, pc + at, std::min(len, (i + 1) * per - at), zv, rm, zc);
        }
      });
    } else if (const int64_t inner = c.rank() > 0 ? c.shape[c.rank() - 1] : 0;
               inner > 1 && ((a.shape == c.shape && b.num_elements() == inner && b.shape.back() == inner) ||
                             (b.shape == c.shape && a.num_elements() == inner && a.shape.back() == inner))) {
      // One operand a vector along the innermost dimension ([1,1,1,C] over
      // [N,H,W,C]: a squeeze-excite gate in NHWC): the vector loop per row,
      // rows across the threads.
      const bool vec_b = b.num_elements() == inner;
      ctx.pool->ParallelFor(c.num_elements() / inner, [&](int64_t first, int64_t end) {
        for (int64_t row = first; row < end; ++row) {
          const int64_t at = row * inner;
          same(vec_b ? pa + at : pa, vec_b ? pb : pb + at, pc + at, inner, za, zb, zc, r1, rb);
        }
      });
    } else if (c.rank() > 1) {
      // Row by row: the outer dimensions broadcast once per row; along the
      // innermost one each operand steps by 1 or stays (a [N,1,1,C]
      // channel scale over [N,H,W,C], a [C] bias over [N,T,C], say).
      // Shapes right-aligned to the output's rank.
      const int64_t r = c.rank(), inner = c.shape[r - 1];
      std::vector<int64_t> sa(r, 1), sb(r, 1);
      std::copy(a.shape.begin(), a.shape.end(), sa.end() - a.rank());
      std::copy(b.shape.begin(), b.shape.end(), sb.end() - b.rank());
      const int64_t la = sa[r - 1], lb = sb[r - 1];
      const int64_t step_a = la == 1 ? 0 : 1, step_b = lb == 1 ? 0 : 1;
      absl::Span<const int64_t> oa(sa.data(), r - 1), ob(sb.data(), r - 1), oc(c.shape.data(), r - 1);
      // A product whose smaller operand's rows repeat (a gate): that row
      // centered once in floats, then one multiply per element.
      const bool gate_b = b.num_elements() < a.num_elements();
      const bool gate = op_ == BinaryOp::kMul && step_a == 1 && step_b == 1 &&
                        (gate_b ? b.num_elements() : a.num_elements()) * 2 <= c.num_elements();
      std::vector<float> gate_row(gate ? inner : 0);
      int64_t gate_at = -1;
      const auto gate_fn = RowGateFor<T>(avx512_);
      ForEachBroadcast<2>({oa, ob}, oc, [&](int64_t row, const std::array<int64_t, 2>& off) {
        const T* ra_ = pa + off[0] * la;
        const T* rb_ = pb + off[1] * lb;
        T* rc_ = pc + row * inner;
        if (gate) {
          const int64_t at = gate_b ? off[1] : off[0];
          if (at != gate_at) {
            const T* g = gate_b ? rb_ : ra_;
            const float zg = gate_b ? zb : za;
            for (int64_t j = 0; j < inner; ++j) gate_row[j] = static_cast<float>(g[j]) - zg;
            gate_at = at;
          }
          gate_fn(gate_b ? ra_ : rb_, gate_row.data(), rc_, inner, gate_b ? za : zb, rm, zc);
        } else if (step_b == 0 && step_a == 1) {
          row_scalar(true, ra_, rc_, inner, rb_[0]);
        } else if (step_a == 0 && step_b == 1) {
          row_scalar(false, rb_, rc_, inner, ra_[0]);
        } else if (step_a == 1 && step_b == 1) {  // a channel scale [N,1,1,C] over [N,H,W,C], say
          same(ra_, rb_, rc_, inner, za, zb, zc, r1, rb);
        } else {
          for (int64_t j = 0; j < inner; ++j) rc_[j] = one(ra_[j * step_a], rb_[j * step_b]);
        }
      });
    } else {
      ForEachBroadcast<2>({a.shape, b.shape}, c.shape,
                          [&](int64_t o, const std::array<int64_t, 2>& off) { pc[o] = one(pa[off[0]], pb[off[1]]); });
    }
    return absl::OkStatus();
  }

 private:
  struct Params {
    float sa, sb, sc, za, zb, zc;
    float ra() const { return sa / sc; }
    float rb() const { return sb / sc; }
    float rm() const { return sa * sb / sc; }
  };

  // A row of v (operand a when v_is_a) against the other operand's value w.
  template <typename T>
  void ScalarRow(const Params& p, bool v_is_a, const T* v, T* out, int64_t n, T w) const {
    const float ra = p.ra(), rb = p.rb(), rm = p.rm();
    const float dc = static_cast<float>(w) - (v_is_a ? p.zb : p.za);
    const float zv = v_is_a ? p.za : p.zb, rv = op_ == BinaryOp::kAdd ? (v_is_a ? ra : rb) : rm;
    const float rc = v_is_a ? rb : ra;
    if (op_ == BinaryOp::kAdd) {
      (avx512_ ? RowScalarAvx512<T, BinaryOp::kAdd> : RowScalar<T, BinaryOp::kAdd>)(v, out, n, zv, rv, rc, dc, p.zc);
    } else {
      (avx512_ ? RowScalarAvx512<T, BinaryOp::kMul> : RowScalar<T, BinaryOp::kMul>)(v, out, n, zv, rv, rc, dc, p.zc);
    }
  }

  BinaryOp op_;
  bool avx512_;
  LookupU8 lookup_;
  std::vector<uint8_t> table_;  // y for each byte of the non-scalar operand (Prepare), or empty
};

// sums[c] += x[p * channels + c] over `pixels` pixels (255 * pixels < 2^31).
template <typename T>
void SumPixels(const T* x, int64_t pixels, int64_t channels, int32_t* sums) {
  for (int64_t p = 0; p < pixels; ++p) {
    const T* row = x + p * channels;
    for (int64_t c = 0; c < channels; ++c) sums[c] += row[c];
  }
}
template <typename T>
auto SumPixelsFor(bool avx512) {
  if constexpr (std::is_same_v<T, uint8_t>) {
    return avx512 ? avx512::SumPixelsU8 : SumPixels<uint8_t>;
  } else {
    return avx512 ? avx512::SumPixelsS8 : SumPixels<int8_t>;
  }
}

class QLinearGlobalAveragePool final : public ByteKernel<QLinearGlobalAveragePool> {
 public:
  QLinearGlobalAveragePool(bool channels_last, CpuFeatures cpu)
      : channels_last_(channels_last), avx512_((cpu & kIsaAvx512) == kIsaAvx512) {}

  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const int64_t channels = x.shape[channels_last_ ? x.rank() - 1 : 1];
    const int64_t planes = x.shape[0] * channels;
    const int64_t size = planes ? x.num_elements() / planes : 0;
    const float zx = static_cast<float>(ZeroPointAt(ctx, 2, 0)), zy = static_cast<float>(ZeroPointAt(ctx, 4, 0));
    const float scale = ScaleAt(ctx, 1, 0) / (ScaleAt(ctx, 3, 0) * static_cast<float>(std::max<int64_t>(size, 1)));
    const T* px = x.as<const T>();
    T* py = ctx.output(0).as<T>();
    if (channels_last_) {  // [N, ..., C]: sums per channel over the pixels
      // int32 sums (the vector loop) while 255 * pixels fits, in blocks of
      // pixels added into int64 totals otherwise.
      // Chunks of an image's pixels across the threads (one image: all of
      // them on it), each summed into its own int32 row, added up in int64.
      constexpr int64_t kBlock = int64_t{1} << 23;
      const int64_t n = x.shape[0], threads = ctx.pool->num_threads();
      const int64_t chunk = std::min(kBlock, std::max<int64_t>(2048, (size + threads - 1) / std::max<int64_t>(threads, 1)));
      const int64_t chunks = (size + chunk - 1) / chunk;
      const auto sum_fn = SumPixelsFor<T>(avx512_);
      std::vector<int32_t> parts(n * chunks * channels, 0);
      ctx.pool->ParallelFor(n * chunks, [&](int64_t t0, int64_t t1) {
        for (int64_t t = t0; t < t1; ++t) {
          const int64_t b = t / chunks, p0 = t % chunks * chunk;
          sum_fn(px + (b * size + p0) * channels, std::min(chunk, size - p0), channels, parts.data() + t * channels);
        }
      });
      const auto averages = avx512_ ? AveragesAvx512<T> : Averages<T>;
      for (int64_t b = 0; b < n; ++b) {
        averages(parts.data() + b * chunks * channels, chunks, channels, scale, static_cast<float>(size) * zx, zy,
                 py + b * channels);
      }
      return absl::OkStatus();
    }
    ctx.pool->ParallelFor(planes, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; ++p) {
        int64_t sum = 0;
        for (int64_t i = 0; i < size; ++i) sum += px[p * size + i];
        py[p] = Saturate<T>(scale * (static_cast<float>(sum) - static_cast<float>(size) * zx), zy);
      }
    });
    return absl::OkStatus();
  }

 private:
  bool channels_last_;
  bool avx512_;
};

// QLinearSoftmax: the softmax of the dequantized row, requantized. The row's
// values are all of the form (q - max q) * scale, so exp comes from a
// 256-entry table per call, as ONNX Runtime computes it.
class QLinearSoftmax final : public ByteKernel<QLinearSoftmax> {
 public:
  QLinearSoftmax(int64_t axis, bool coerce_2d) : axis_(axis), coerce_2d_(coerce_2d) {}

  template <typename T>
  absl::Status Apply(const KernelContext& ctx) const {
    const TensorArg& x = ctx.input(0);
    const auto [outer, len, inner] = SoftmaxRowsOf(x.shape, axis_, coerce_2d_);
    const float sx = ScaleAt(ctx, 1, 0), sy = ScaleAt(ctx, 3, 0);
    const float zy = static_cast<float>(ZeroPointAt(ctx, 4, 0));
    float table[256];  // exp(-d * sx) for d = max q - q in [0, 255]
    for (int d = 0; d < 256; ++d) table[d] = std::exp(-static_cast<float>(d) * sx);
    const T* xs = x.as<const T>();
    T* ys = ctx.output(0).as<T>();
    for (int64_t r = 0; r < outer * inner; ++r) {
      const int64_t base = (r / inner) * len * inner + r % inner;
      int mx = std::numeric_limits<int>::min();
      for (int64_t i = 0; i < len; ++i) mx = std::max<int>(mx, xs[base + i * inner]);
      float sum = 0;
      for (int64_t i = 0; i < len; ++i) sum += table[mx - xs[base + i * inner]];
      const float inv = 1.f / (sum * sy);
      for (int64_t i = 0; i < len; ++i) ys[base + i * inner] = Saturate<T>(table[mx - xs[base + i * inner]] * inv, zy);
    }
    return absl::OkStatus();
  }

 private:
  int64_t axis_;
  bool coerce_2d_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearSoftmax(const KernelInit& init) {
  // `opset` is the ONNX opset of the Softmax it replaces: before 13, the
  // input is flattened to 2-D at the axis (default 1); from 13, one axis (-1).
  const int64_t opset = init.attrs->GetInt("opset", 13);
  return std::make_unique<QLinearSoftmax>(init.attrs->GetInt("axis", opset < 13 ? 1 : -1), opset < 13);
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearBinary(const KernelInit& init) {
  auto k = std::make_unique<QLinearBinary>(init.op == "QLinearMul" ? BinaryOp::kMul : BinaryOp::kAdd, init.cpu);
  k->Prepare(init);
  return k;
}

absl::StatusOr<std::unique_ptr<Kernel>> CreateQLinearGlobalAveragePool(const KernelInit& init) {
  return std::make_unique<QLinearGlobalAveragePool>(init.attrs->GetInt("channels_last", 0) != 0, init.cpu);
}

}  // namespace kvant::cpu
