// The CUDA backend: for now only device discovery. Built when CMake finds a
// CUDA toolkit (KVANT_HAVE_CUDA); otherwise it reports that it is absent.
#ifndef KVANT_RUNTIME_CUDA_CUDA_BACKEND_H_
#define KVANT_RUNTIME_CUDA_CUDA_BACKEND_H_

#include <string>

namespace kvant {

// Number of usable CUDA devices (0 without a driver, a device, or CUDA support).
int CudaDeviceCount();
// One line: build status and devices found.
std::string DescribeCudaBackend();

}  // namespace kvant

#endif  // KVANT_RUNTIME_CUDA_CUDA_BACKEND_H_
