// The matrix products of the recurrent operators (ops/cpu/rnn.cc), per
// direction: the input projection X W^T, the recurrent projection H R^T, and
// GRU's R_h^T alone (its candidate gate when linear_before_reset is 0).
//   - f32: W and R packed for the FP32 GEMM.
//   - s8 (com.microsoft DynamicQuantizeLSTM, Kvant's DynamicQuantizeGRU/RNN):
//     W and R as s8 per gate column (u8 weights flip to s8 with their zero
//     points), the activation quantized to u8 per call over the whole product
//     (range measured on the call's rows, as DynamicQuantizeLinear), the INT8
//     GEMM dequantized to f32 in its epilogue with the bias added.
#ifndef KVANT_OPS_CPU_RNN_PROJECTIONS_H_
#define KVANT_OPS_CPU_RNN_PROJECTIONS_H_

#include <cstdint>
#include <memory>

#include "ops/kernel.h"

namespace kvant::cpu {

class RnnProjections {
 public:
  enum class Which { kInput, kRecurrent, kRecurrentH };
  virtual ~RnnProjections() = default;
  // c[m, n] = a[m, k] B + col_bias (may be null), a and c dense; n and k
  // follow from `which`.
  virtual void Run(Which which, int64_t dir, int64_t m, const float* a, float* c, const float* col_bias, void* scratch,
                   ParallelRunner* pool) const = 0;
  virtual int64_t PackedBytes() const = 0;
  virtual std::string Describe() const = 0;
};

struct RnnDims {
  int64_t dirs = 1, gates = 1, hidden = 0, input = 0;
  bool gru = false;
};

// W [dirs, gates * hidden, input], R [dirs, gates * hidden, hidden] in f32.
// `half_weights`: store them as FP16 where they fit (NarrowToHalf).
std::unique_ptr<RnnProjections> MakeRnnProjectionsF32(const RnnDims& dims, CpuFeatures cpu, const float* w,
                                                      const float* r, bool half_weights = false);

// BF16 products with FP32 accumulation (ops/cpu/gemm_bf16.h): W and R
// rounded to bf16 and packed once, the activations rounded as they are
// packed per call. `uk` must outlive the projections (a kernels.inc row).
struct GemmUkernelInfoBf16;
std::unique_ptr<RnnProjections> MakeRnnProjectionsBf16(const RnnDims& dims, const GemmUkernelInfoBf16& uk,
                                                       const float* w, const float* r);

// The quantized layout: W [dirs, input, gates * hidden], R [dirs, hidden,
// gates * hidden] bytes (u8 when `unsigned_weights`), scales and optional
// zero points each per direction ([dirs]) or per gate column ([dirs, gates *
// hidden]).
struct RnnWeightsS8 {
  const void* w = nullptr;
  const void* r = nullptr;
  bool unsigned_weights = false;
  const float* w_scale = nullptr;
  const float* r_scale = nullptr;
  const void* w_zero_point = nullptr;  // null: 0
  const void* r_zero_point = nullptr;
  bool w_per_column = false, r_per_column = false;
  bool w_zp_per_column = false, r_zp_per_column = false;
};
std::unique_ptr<RnnProjections> MakeRnnProjectionsS8(const RnnDims& dims, CpuFeatures cpu, const RnnWeightsS8& weights);

// Scratch for any Run with at most m rows (`bf16`: of MakeRnnProjectionsBf16).
size_t RnnProjectionScratchBytes(const RnnDims& dims, bool quantized, CpuFeatures cpu, int64_t m, int threads,
                                 bool bf16 = false);

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_RNN_PROJECTIONS_H_
