// The GPU capability table: compute capability -> the precisions CUDA cores
// and tensor cores support (NVIDIA's data-center datasheets for P4, P100,
// V100, T4, A100 and H100, extended to sm_86, sm_89, sm_100 and sm_120), and
// the devices found at run time (SMs, shared memory, L2) with the kernel each
// GEMM precision gets. `kvant inspect --hardware` prints it.
#ifndef KVANT_RUNTIME_GPU_CAPS_H_
#define KVANT_RUNTIME_GPU_CAPS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace kvant {

enum GpuPrecision : uint32_t {
  kGpuFp4 = 1u << 0,
  kGpuFp6 = 1u << 1,
  kGpuFp8 = 1u << 2,
  kGpuFp16 = 1u << 3,
  kGpuBf16 = 1u << 4,
  kGpuTf32 = 1u << 5,
  kGpuFp32 = 1u << 6,
  kGpuFp64 = 1u << 7,
  kGpuInt1 = 1u << 8,
  kGpuInt4 = 1u << 9,
  kGpuInt8 = 1u << 10,
};

struct GpuArch {
  int cc;                 // 10 * major + minor
  const char* examples;   // e.g. "H100, H200"
  uint32_t cuda_cores;    // GpuPrecision bits
  uint32_t tensor_cores;
};

// Rows by compute capability, oldest first.
const std::vector<GpuArch>& GpuArchTable();
// The row for a compute capability: exact, else the newest row of the same
// major version at or below it; null if none.
const GpuArch* FindGpuArch(int cc);
// This build (CUDA 13) runs on sm_75 and newer.
constexpr int kMinBuildCc = 75;
std::string GpuPrecisionNames(uint32_t precisions);

struct GpuDevice {
  int index = 0;
  std::string name;
  int cc = 0;
  int sms = 0;
  int64_t smem_per_block = 0, smem_per_block_optin = 0, smem_per_sm = 0;
  int64_t l2_bytes = 0, global_bytes = 0;
};
// Devices the CUDA runtime reports (empty without CUDA, a driver or a GPU;
// `why` says which).
std::vector<GpuDevice> QueryGpuDevices(std::string* why = nullptr);
// Which GEMM kernel each precision gets on a device of this capability.
std::string GpuGemmKernel(int cc, const char* precision);
// The table, the devices and their kernels, for `kvant inspect --hardware`.
std::string DescribeGpus();

}  // namespace kvant

#endif  // KVANT_RUNTIME_GPU_CAPS_H_
