// The separate requantization pass a library without a fused epilogue needs
// after an int32 GEMM (the cuBLASLt baseline of gemm_cuda_bench): int32
// [M, N] -> s8 with per-column offset and scale, round half to even.
#ifndef KVANT_BENCHMARKS_KERNELS_CUDA_EPILOGUE_BASELINE_H_
#define KVANT_BENCHMARKS_KERNELS_CUDA_EPILOGUE_BASELINE_H_

#include <cstdint>

namespace kvant::bench {

// Returns a cudaError_t value.
int RequantizeS32ToS8(const int32_t* in, int64_t m, int64_t n, const int32_t* col_offset, const float* scale,
                      int8_t* out, void* stream);

}  // namespace kvant::bench

#endif  // KVANT_BENCHMARKS_KERNELS_CUDA_EPILOGUE_BASELINE_H_
