// Builds the CPU kernel table and the FP32 GEMM microkernel list from
// ops/cpu/kernels.inc. Adding a kernel is adding a row there.
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/conv_s8.h"
#include "ops/cpu/gemm_s8.h"
#include "ops/registry.h"

namespace kvant {
namespace cpu {

#define KVANT_CPU_KERNEL(name, op, dtypes, type_input, needs, priority, factory, inplace) \
  absl::StatusOr<std::unique_ptr<Kernel>> factory(const KernelInit&);
#define KVANT_CPU_DOMAIN_KERNEL(domain, ...) KVANT_CPU_KERNEL(__VA_ARGS__)
#include "ops/cpu/kernels.inc"
#undef KVANT_CPU_DOMAIN_KERNEL
#undef KVANT_CPU_KERNEL

namespace ref { const GemmUkernelF32* GemmF32ByRows(); }
namespace avx2 {
const GemmUkernelF32* GemmF32ByRows();
const GemmUkernelF32* GemmF32HalfByRows();
}  // namespace avx2
namespace avx512 {
const GemmUkernelF32* GemmF32ByRows();
const GemmUkernelF32* GemmF32NarrowByRows();
const GemmUkernelF32* GemmF32HalfByRows();
const GemmUkernelF32* GemmF32TailByRows();
}  // namespace avx512

const std::vector<GemmUkernelInfoF32>& GemmUkernelsF32() {
  static const auto* list = new std::vector<GemmUkernelInfoF32>{
#define KVANT_GEMM_F32_UKERNEL(name, needs, mr, nr, table, ...) {#name, needs, mr, nr, table(), __VA_ARGS__},
#include "ops/cpu/kernels.inc"
#undef KVANT_GEMM_F32_UKERNEL
  };
  return *list;
}

namespace avx512bf16 { const GemmUkernelBf16* GemmBf16ByRows(); }
namespace amx { const GemmUkernelBf16* GemmBf16ByRows(); void Begin(); void End(); }

const std::vector<GemmUkernelInfoBf16>& GemmUkernelsBf16() {
  static const auto* list = new std::vector<GemmUkernelInfoBf16>{
#define KVANT_GEMM_BF16_UKERNEL(name, needs, mr, nr, table, ...) {#name, needs, mr, nr, table(), ##__VA_ARGS__},
#include "ops/cpu/kernels.inc"
#undef KVANT_GEMM_BF16_UKERNEL
  };
  return *list;
}

using GemmS8EpilogueFn = void(const int32_t*, int64_t, int64_t, int64_t, const GemmS8Output&, void*, int64_t);
namespace ref { const GemmUkernelS8* GemmS8ByRows(); GemmS8EpilogueFn GemmS8Epilogue; }
namespace avx2 { const GemmUkernelS8* GemmS8ByRows(); GemmS8EpilogueFn GemmS8Epilogue; }
namespace avxvnni { const GemmUkernelS8* GemmS8ByRows(); }
namespace avx512 { const GemmUkernelS8* GemmS8BwByRows(); GemmS8EpilogueFn GemmS8Epilogue; }
namespace avx512vnni { const GemmUkernelS8* GemmS8ByRows(); const GemmUkernelS8* GemmS8HalfByRows(); }
namespace amx { const GemmUkernelS8* GemmS8ByRows(); const GemmUkernelS8* GemmS8HalfByRows(); void Begin(); void End(); }

const std::vector<GemmUkernelInfoS8>& GemmUkernelsS8() {
  static const auto* list = new std::vector<GemmUkernelInfoS8>{
#define KVANT_GEMM_S8_UKERNEL(name, needs, mr, nr, k_align, table, epilogue, half_table, ...) \
  {#name, needs, mr, nr, k_align, table(), epilogue, half_table __VA_OPT__(, ) __VA_ARGS__},
#include "ops/cpu/kernels.inc"
#undef KVANT_GEMM_S8_UKERNEL
  };
  return *list;
}

using ConvTapsS8Fn = void(int64_t, const int64_t*, int64_t, const uint8_t*, int64_t, const int8_t*, int32_t*);
namespace ref { ConvTapsS8Fn ConvTapsS8; }
namespace amx { ConvTapsS8Fn ConvTapsS8; }
namespace avx512vnni { ConvTapsS8Fn ConvTapsS8; ConvTapsS8Fn ConvTapsNarrowS8; }

const std::vector<ConvTapsS8Info>& ConvTapsS8Kernels() {
  static const auto* list = new std::vector<ConvTapsS8Info>{
#define KVANT_CONV_TAPS_S8(name, needs, mr, nr, k_align, tile, epilogue, ...) \
  {#name, needs, mr, nr, k_align, tile, epilogue, __VA_ARGS__},
#include "ops/cpu/kernels.inc"
#undef KVANT_CONV_TAPS_S8
  };
  return *list;
}

namespace ref {
void DepthwiseRowS8(const ConvS8Shape&, const int32_t* const*, const int32_t*, int32_t*);
void PairRowS8(const uint8_t*, int64_t, int64_t, int64_t, int64_t, int32_t*);
}  // namespace ref
namespace avx512 {
void DepthwiseRowS8(const ConvS8Shape&, const int32_t* const*, const int32_t*, int32_t*);
void PairRowS8(const uint8_t*, int64_t, int64_t, int64_t, int64_t, int32_t*);
}  // namespace avx512
namespace avx512vnni {
void DepthwiseRowS8(const ConvS8Shape&, const int32_t* const*, const int32_t*, int32_t*);
void LaneRowS8(const uint8_t*, int64_t, int64_t, int64_t, int64_t, int32_t*);
void DepthwiseRowRequantS8(const ConvS8Shape&, const int32_t* const*, const int32_t*, const GemmS8Output&, void*);
bool DepthwiseRowPairRequantS8(const ConvS8Shape&, const int32_t* const*, const int32_t*, const GemmS8Output&, void*,
                               void*);
}  // namespace avx512vnni

const std::vector<DepthwiseS8Info>& DepthwiseS8Kernels() {
  static const auto* list = new std::vector<DepthwiseS8Info>{
#define KVANT_DEPTHWISE_S8(name, needs, taps_per_lane, order, row, lane_row, ...) \
  {#name, needs, taps_per_lane, DepthwiseLaneOrder::order, row, lane_row __VA_OPT__(, ) __VA_ARGS__},
#include "ops/cpu/kernels.inc"
#undef KVANT_DEPTHWISE_S8
  };
  return *list;
}

}  // namespace cpu

namespace {

constexpr uint64_t F32 = DtypeBit(DataType::kFloat32);
constexpr uint64_t ANY = kAnyDtype;
constexpr uint64_t CASTABLE = F32 | DtypeBit(DataType::kFloat64) | DtypeBit(DataType::kFloat16) |
                              DtypeBit(DataType::kBFloat16) | DtypeBit(DataType::kInt8) |
                              DtypeBit(DataType::kUInt8) | DtypeBit(DataType::kInt16) |
                              DtypeBit(DataType::kUInt16) | DtypeBit(DataType::kInt32) |
                              DtypeBit(DataType::kUInt32) | DtypeBit(DataType::kInt64) |
                              DtypeBit(DataType::kUInt64) | DtypeBit(DataType::kBool);
constexpr uint64_t INTS = DtypeBit(DataType::kInt64) | DtypeBit(DataType::kInt32);
constexpr uint64_t QBYTES = DtypeBit(DataType::kUInt8) | DtypeBit(DataType::kInt8);
constexpr uint64_t S32 = DtypeBit(DataType::kInt32);
constexpr uint64_t REDUCIBLE = F32 | DtypeBit(DataType::kFloat64) | INTS;
constexpr uint64_t BOOL = DtypeBit(DataType::kBool);
constexpr uint64_t NUMERIC = CASTABLE & ~DtypeBit(DataType::kBool) & ~DtypeBit(DataType::kFloat16) &
                             ~DtypeBit(DataType::kBFloat16);

const KernelDef kCpuKernels[] = {
#define KVANT_CPU_KERNEL(name, op, dtypes, type_input, needs, priority, factory, inplace) \
  {#name, "", op, Backend::kCpu, dtypes, type_input, needs, priority, cpu::factory, inplace},
#define KVANT_CPU_DOMAIN_KERNEL(domain, name, op, dtypes, type_input, needs, priority, factory, inplace) \
  {#name, domain, op, Backend::kCpu, dtypes, type_input, needs, priority, cpu::factory, inplace},
#include "ops/cpu/kernels.inc"
#undef KVANT_CPU_DOMAIN_KERNEL
#undef KVANT_CPU_KERNEL
};

}  // namespace

absl::Span<const KernelDef> CpuKernelDefs() { return kCpuKernels; }

}  // namespace kvant
