// CUDA device discovery through the CUDA runtime, when built with CUDA.
#include "runtime/cuda/cuda_backend.h"

#include "absl/strings/str_format.h"

#ifdef KVANT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvant {

int CudaDeviceCount() {
#ifdef KVANT_HAVE_CUDA
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
#else
  return 0;
#endif
}

std::string DescribeCudaBackend() {
#ifdef KVANT_HAVE_CUDA
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) return absl::StrFormat("CUDA backend built; no device (%s)", cudaGetErrorString(err));
  std::string s = absl::StrFormat("CUDA backend built; %d device(s)", n);
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) == cudaSuccess) {
      s += absl::StrFormat("; [%d] %s sm_%d%d", i, p.name, p.major, p.minor);
    }
  }
  return s + " (no GPU kernels yet)";
#else
  return "CUDA backend not built (no CUDA toolkit found at configure time)";
#endif
}

}  // namespace kvant
