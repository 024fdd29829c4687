// Helpers shared by the quantized CPU operators (quantize_s8.cc,
// qmatmul_s8.cc, qlinear_s8.cc, qlinear_lookup.cc): a kernel written once for
// u8 and s8 (ByteKernel), reading scales and zero points, and the sign conversions
// that let s8 activations and u8 weights meet the u8 x s8 GEMM (flip the top
// bit: s8 a is the u8 a + 128 with zero point za + 128; u8 b is the s8 b - 128
// with zero point zb - 128).
#ifndef KVANT_OPS_CPU_QUANTIZE_COMMON_H_
#define KVANT_OPS_CPU_QUANTIZE_COMMON_H_

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "graph/graph.h"
#include "ops/kernel.h"

namespace kvant::cpu {

inline bool Signed(DataType t) { return t == DataType::kInt8; }

// Zero point i of an optional u8/s8/s32 input (0 when absent; one value
// serves every i).
inline int32_t ZeroPointAt(const KernelContext& ctx, int input, int64_t i) {
  if (!ctx.has_input(input)) return 0;
  const TensorArg& t = ctx.input(input);
  const int64_t j = t.num_elements() == 1 ? 0 : i;
  switch (t.dtype) {
    case DataType::kUInt8: return t.as<const uint8_t>()[j];
    case DataType::kInt8: return t.as<const int8_t>()[j];
    case DataType::kInt32: return t.as<const int32_t>()[j];
    default: return 0;
  }
}

inline float ScaleAt(const KernelContext& ctx, int input, int64_t i) {
  const TensorArg& t = ctx.input(input);
  return t.as<const float>()[t.num_elements() == 1 ? 0 : i];
}

// u8 or s8 bytes as the u8 the GEMM takes (s8: top bit flipped).
inline void ToUnsigned(const void* src, DataType t, int64_t n, uint8_t* dst) {
  const uint8_t* s = static_cast<const uint8_t*>(src);
  if (!Signed(t)) {
    std::memcpy(dst, s, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = s[i] ^ 0x80;
  }
}

// u8 or s8 bytes as the s8 the GEMM takes (u8: top bit flipped).
inline std::vector<int8_t> ToSigned(const void* src, DataType t, int64_t n) {
  std::vector<int8_t> out(n);
  const uint8_t* s = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<int8_t>(Signed(t) ? s[i] : s[i] ^ 0x80);
  return out;
}

template <typename T>
inline constexpr float kLo = std::is_signed_v<T> ? -128.f : 0.f;
template <typename T>
inline constexpr float kHi = std::is_signed_v<T> ? 127.f : 255.f;

// round_half_even(v) + zero point, saturated (NaN -> the low end). Rounds by
// adding and removing 1.5 * 2^23, which is exact in the default rounding mode
// for |v| < 2^22 (larger values saturate either way) and, unlike a libm call,
// vectorizes on baseline x86-64.
template <typename T>
inline T Saturate(float v, float zero_point) {
  const float q = ((v + 12582912.f) - 12582912.f) + zero_point;
  const float lo = q > kLo<T> ? q : kLo<T>;
  return static_cast<T>(lo < kHi<T> ? lo : kHi<T>);
}

// Runs Derived::Apply<int8_t> or Apply<uint8_t> by the element type of input
// kTypeInput: the quantized operators below are written once for both.
template <class Derived, int kTypeInput = 0>
class ByteKernel : public Kernel {
 public:
  absl::Status Run(const KernelContext& ctx) const final {
    const Derived& self = static_cast<const Derived&>(*this);
    return ctx.input(kTypeInput).dtype == DataType::kInt8 ? self.template Apply<int8_t>(ctx)
                                                          : self.template Apply<uint8_t>(ctx);
  }
};

namespace avx512 {
// c[i] = saturate(round_half_even(rm * ((v[i] - zv) * g[i])) + zc): a
// quantized product row against a per-channel gate (qlinear_row_avx512.cc).
void GateRowU8(const uint8_t* v, const float* g, uint8_t* c, int64_t n, float zv, float rm, float zc);
void GateRowS8(const int8_t* v, const float* g, int8_t* c, int64_t n, float zv, float rm, float zc);
// y[i] = saturate(round_half_even(x[i] / scale) + zero_point), NaN -> the
// zero point: QuantizeLinear's row, byte for byte as the scalar loop with
// its division, mostly on a reciprocal (quantize_u8_avx512.cc).
void QuantizeRowU8(const float* x, int64_t n, float scale, float zero_point, uint8_t* y);
void QuantizeRowS8(const float* x, int64_t n, float scale, float zero_point, int8_t* y);
// c[i] = saturate(round_half_even(ra (a[i] - za) + rb (b[i] - zb)) + zc)
// (add; else ra ((a[i] - za)(b[i] - zb)), rb unused): QLinearAdd /
// QLinearMul of equal-length rows.
void SameRowsU8(bool add, const uint8_t* a, const uint8_t* b, uint8_t* c, int64_t n, float za, float zb, float zc,
                float ra, float rb);
void SameRowsS8(bool add, const int8_t* a, const int8_t* b, int8_t* c, int64_t n, float za, float zb, float zc,
                float ra, float rb);
// sums[c] += x[p * channels + c] for p < pixels (255 * pixels < 2^31).
void SumPixelsU8(const uint8_t* x, int64_t pixels, int64_t channels, int32_t* sums);
void SumPixelsS8(const int8_t* x, int64_t pixels, int64_t channels, int32_t* sums);
}  // namespace avx512

// com.microsoft.QLinearAdd of equal-length u8 (else s8) rows, exactly as
// its kernel computes them (qlinear_s8.cc; the AVX-512 rows where
// `avx512`): c[i] = saturate(round_half_even(ra (a[i] - za) + rb (b[i] -
// zb)) + zc), ra = sa / sc, rb = sb / sc. c may be a or b.
void QLinearAddRows(bool avx512, bool u8, const void* a, const void* b, void* c, int64_t n, float za, float zb,
                    float zc, float ra, float rb);

// Narrows a quantized output's [lo, hi] to a fused activation's real range
// (attributes kvant_clip_min / kvant_clip_max): q = round(r / scale) + zp.
inline void ApplyClipRange(const AttributeMap& attrs, float scale, int32_t zero_point, int32_t* lo, int32_t* hi) {
  if (attrs.Has("kvant_clip_min")) {
    const float q = std::nearbyint(attrs.GetFloat("kvant_clip_min", 0.f) / scale) + zero_point;
    if (q > *lo) *lo = q > *hi ? *hi : static_cast<int32_t>(q);
  }
  if (attrs.Has("kvant_clip_max")) {
    const float q = std::nearbyint(attrs.GetFloat("kvant_clip_max", 0.f) / scale) + zero_point;
    if (q < *hi) *hi = q < *lo ? *lo : static_cast<int32_t>(q);
  }
}

// DynamicQuantizeLinear's parameters for values in [lo, hi] (NaN ignored):
// the range widened to hold 0, scale = range / 255, zero point
// round(-lo / scale) saturated to u8; scale 0 (all zeros) gives zero point 0.
struct DynamicRange {
  float scale = 0;
  uint8_t zero_point = 0;
};
// AVX-512 when `cpu` has it (ops/cpu/quantize_u8_avx512.cc, bit-exact).
DynamicRange ComputeDynamicRange(const float* x, int64_t n, CpuFeatures cpu);
// y = saturate(round_half_even(x / scale) + zero_point) as u8 (scale 0: zero point).
void QuantizeU8(const float* x, int64_t n, DynamicRange r, uint8_t* y, CpuFeatures cpu);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_QUANTIZE_COMMON_H_
