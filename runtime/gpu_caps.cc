// The GPU capability table and device query (runtime/gpu_caps.h).
#include "runtime/gpu_caps.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

#ifdef KVANT_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif

namespace kvant {
namespace {

constexpr uint32_t kCoresModern = kGpuFp16 | kGpuBf16 | kGpuFp32 | kGpuFp64 | kGpuInt8;

}  // namespace

const std::vector<GpuArch>& GpuArchTable() {
  static const std::vector<GpuArch> table = {
      {60, "P100", kGpuFp16 | kGpuFp32 | kGpuFp64, 0},
      {61, "P4, P40", kGpuFp32 | kGpuFp64 | kGpuInt8, 0},  // INT8: dp4a
      {70, "V100", kGpuFp16 | kGpuFp32 | kGpuFp64 | kGpuInt8, kGpuFp16},
      {75, "T4, RTX 20", kGpuFp16 | kGpuFp32 | kGpuFp64 | kGpuInt8, kGpuFp16 | kGpuInt8 | kGpuInt4 | kGpuInt1},
      {80, "A100, A30", kCoresModern,
       kGpuFp16 | kGpuBf16 | kGpuTf32 | kGpuFp64 | kGpuInt8 | kGpuInt4 | kGpuInt1},
      {86, "A10, A40, RTX 30", kCoresModern, kGpuFp16 | kGpuBf16 | kGpuTf32 | kGpuInt8 | kGpuInt4 | kGpuInt1},
      {89, "L4, L40S, RTX 40", kCoresModern,
       kGpuFp8 | kGpuFp16 | kGpuBf16 | kGpuTf32 | kGpuInt8 | kGpuInt4 | kGpuInt1},
      {90, "H100, H200", kCoresModern, kGpuFp8 | kGpuFp16 | kGpuBf16 | kGpuTf32 | kGpuFp64 | kGpuInt8},
      {100, "B200, GB200", kCoresModern,
       kGpuFp4 | kGpuFp6 | kGpuFp8 | kGpuFp16 | kGpuBf16 | kGpuTf32 | kGpuFp64 | kGpuInt8},
      {120, "RTX 50, RTX PRO 6000", kCoresModern,
       kGpuFp4 | kGpuFp6 | kGpuFp8 | kGpuFp16 | kGpuBf16 | kGpuTf32 | kGpuInt8},
  };
  return table;
}

const GpuArch* FindGpuArch(int cc) {
  const GpuArch* best = nullptr;
  for (const GpuArch& row : GpuArchTable()) {
    if (row.cc / 10 == cc / 10 && row.cc <= cc) best = &row;
  }
  return best;
}

std::string GpuPrecisionNames(uint32_t p) {
  static constexpr struct {
    uint32_t bit;
    const char* name;
  } kNames[] = {{kGpuFp4, "fp4"},   {kGpuFp6, "fp6"},   {kGpuFp8, "fp8"},   {kGpuFp16, "fp16"},
                {kGpuBf16, "bf16"}, {kGpuTf32, "tf32"}, {kGpuFp32, "fp32"}, {kGpuFp64, "fp64"},
                {kGpuInt1, "int1"}, {kGpuInt4, "int4"}, {kGpuInt8, "int8"}};
  std::vector<std::string> names;
  for (const auto& n : kNames)
    if (p & n.bit) names.push_back(n.name);
  return names.empty() ? "-" : absl::StrJoin(names, " ");
}

std::vector<GpuDevice> QueryGpuDevices(std::string* why) {
  std::vector<GpuDevice> devices;
#ifdef KVANT_HAVE_CUDA
  int n = 0;
  if (cudaError_t e = cudaGetDeviceCount(&n); e != cudaSuccess) {
    if (why != nullptr) *why = absl::StrCat("no device (", cudaGetErrorString(e), ")");
    return devices;
  }
  for (int i = 0; i < n; ++i) {
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
    GpuDevice d;
    d.index = i;
    d.name = p.name;
    d.cc = p.major * 10 + p.minor;
    d.sms = p.multiProcessorCount;
    d.smem_per_block = static_cast<int64_t>(p.sharedMemPerBlock);
    d.smem_per_block_optin = static_cast<int64_t>(p.sharedMemPerBlockOptin);
    d.smem_per_sm = static_cast<int64_t>(p.sharedMemPerMultiprocessor);
    d.l2_bytes = p.l2CacheSize;
    d.global_bytes = static_cast<int64_t>(p.totalGlobalMem);
    devices.push_back(d);
  }
  if (devices.empty() && why != nullptr) *why = "no device";
#else
  if (why != nullptr) *why = "CUDA backend not built (no CUDA toolkit found at configure time)";
#endif
  return devices;
}

std::string GpuGemmKernel(int cc, const char* precision) {
  if (cc < kMinBuildCc) return "none: this build needs sm_75 or newer";
  const std::string p = precision;
  if (p == "int8")
    return cc >= 80 ? "imma mma.sync m16n8k32 s8, cp.async pipeline (gemm_s8_imma_sm80)"
                    : "imma mma.sync m8n8k16 s8 x4, synchronous loads (gemm_s8_imma_sm80, sm_75 path)";
  if (p == "fp16")
    return cc >= 80 ? "hmma mma.sync m16n8k16 f16, f32 accumulate (gemm_f16_hmma_sm80)"
                    : "hmma mma.sync m16n8k8 f16 x2, f32 accumulate (gemm_f16_hmma_sm80, sm_75 path)";
  return "none";
}

std::string DescribeGpus() {
  std::string s = "GPU capability table (precisions on CUDA cores / tensor cores):\n";
  absl::StrAppend(&s, absl::StrFormat("  %-6s %-22s %-10s %-28s %s\n", "sm", "examples", "this build",
                                      "CUDA cores", "tensor cores"));
  for (const GpuArch& row : GpuArchTable()) {
    absl::StrAppend(&s, absl::StrFormat("  %-6s %-22s %-10s %-28s %s\n", absl::StrFormat("%d.%d", row.cc / 10, row.cc % 10),
                                        row.examples, row.cc >= kMinBuildCc ? "runs" : "too old",
                                        GpuPrecisionNames(row.cuda_cores), GpuPrecisionNames(row.tensor_cores)));
  }
#ifdef KVANT_HAVE_CUDA
  absl::StrAppend(&s, "CUDA backend built for: ", KVANT_CUDA_ARCHS_STRING, " (machine code; PTX of the newest for later GPUs)\n");
#endif
  std::string why;
  const std::vector<GpuDevice> devices = QueryGpuDevices(&why);
  if (devices.empty()) return absl::StrCat(s, "GPU devices: ", why, "\n");
  for (const GpuDevice& d : devices) {
    absl::StrAppend(&s, absl::StrFormat("GPU %d: %s, sm_%d, %d SMs, shared memory %d KB per block (%d KB opt-in), "
                                        "%d KB per SM, L2 %d MB, memory %.1f GiB\n",
                                        d.index, d.name, d.cc, d.sms, d.smem_per_block / 1024,
                                        d.smem_per_block_optin / 1024, d.smem_per_sm / 1024, d.l2_bytes >> 20,
                                        d.global_bytes / 1073741824.0));
    const GpuArch* arch = FindGpuArch(d.cc);
    if (arch != nullptr)
      absl::StrAppend(&s, absl::StrFormat("  table row sm_%d: tensor cores %s\n", arch->cc,
                                          GpuPrecisionNames(arch->tensor_cores)));
    absl::StrAppend(&s, "  int8 GEMM: ", GpuGemmKernel(d.cc, "int8"), "\n");
    absl::StrAppend(&s, "  fp16 GEMM: ", GpuGemmKernel(d.cc, "fp16"), "\n");
  }
  return s;
}

}  // namespace kvant
