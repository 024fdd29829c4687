// Requantization pass for the cuBLASLt baseline (cuda_epilogue_baseline.h):
// four int32 in, four s8 out per thread.
#include <cuda_runtime.h>

#include "benchmarks/kernels/cuda_epilogue_baseline.h"

namespace kvant::bench {
namespace {

__global__ void RequantizeKernel(const int4* in, int64_t quads, int n, const int32_t* col_offset, const float* scale,
                                 char4* out) {
  for (int64_t q = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; q < quads;
       q += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int4 v = in[q];
    const int col = static_cast<int>((q * 4) % n);
    auto one = [&](int32_t x, int c) {
      const int r = __float2int_rn(static_cast<float>(x + col_offset[c]) * scale[c]);
      return static_cast<signed char>(r < -128 ? -128 : (r > 127 ? 127 : r));
    };
    out[q] = make_char4(one(v.x, col), one(v.y, col + 1), one(v.z, col + 2), one(v.w, col + 3));
  }
}

}  // namespace

int RequantizeS32ToS8(const int32_t* in, int64_t m, int64_t n, const int32_t* col_offset, const float* scale,
                      int8_t* out, void* stream) {
  if (n % 4 != 0) return static_cast<int>(cudaErrorInvalidValue);
  const int64_t quads = m * n / 4;
  const int blocks = static_cast<int>(std::min<int64_t>((quads + 255) / 256, 4096));
  RequantizeKernel<<<blocks, 256, 0, static_cast<cudaStream_t>(stream)>>>(
      reinterpret_cast<const int4*>(in), quads, static_cast<int>(n), col_offset, scale, reinterpret_cast<char4*>(out));
  return static_cast<int>(cudaGetLastError());
}

}  // namespace kvant::bench
