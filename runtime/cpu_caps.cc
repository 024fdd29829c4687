// CPU feature detection (cpuid + xgetbv, Intel and AMD alike: features, never
// vendors) and the hardware description `kvant inspect --hardware` prints.
#include "runtime/cpu_caps.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cpuid.h>

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ops/cpu/gemm_bf16.h"
#include "ops/cpu/gemm_f32.h"
#include "ops/cpu/gemm_s8.h"
#include "runtime/gpu_caps.h"

namespace kvant {
namespace {

struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs Cpuid(unsigned leaf, unsigned sub = 0) {
  Regs r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}

uint64_t Xgetbv() {
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
}

struct FeatureName {
  CpuFeature bit;
  const char* name;
};

constexpr FeatureName kNames[] = {
    {kCpuSse41, "sse4.1"},          {kCpuAvx2, "avx2"},           {kCpuFma, "fma"},
    {kCpuF16c, "f16c"},             {kCpuAvx512f, "avx512f"},     {kCpuAvx512bw, "avx512bw"},
    {kCpuAvx512vl, "avx512vl"},     {kCpuAvx512dq, "avx512dq"},   {kCpuAvx512vnni, "avx512_vnni"},
    {kCpuAvx512vbmi, "avx512_vbmi"}, {kCpuAvxVnni, "avx_vnni"},   {kCpuAvx512bf16, "avx512_bf16"},
    {kCpuAvx512fp16, "avx512_fp16"}, {kCpuAmxInt8, "amx_int8"},   {kCpuAmxBf16, "amx_bf16"},
};

}  // namespace

namespace {

bool RequestAmxPermission() {
#if defined(__linux__)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

}  // namespace

CpuFeatures DetectCpuFeatures() {
  CpuFeatures f = 0;
  const unsigned max_leaf = Cpuid(0).a;
  const Regs l1 = Cpuid(1);
  if (l1.c & (1u << 19)) f |= kCpuSse41;
  const bool osxsave = l1.c & (1u << 27);
  const uint64_t xcr0 = osxsave ? Xgetbv() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;             // XMM and YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM_Hi256, Hi16_ZMM
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;      // XTILECFG, XTILEDATA
  if (os_avx) {
    if (l1.c & (1u << 12)) f |= kCpuFma;
    if (l1.c & (1u << 29)) f |= kCpuF16c;
  }
  if (max_leaf >= 7) {
    const Regs l7 = Cpuid(7, 0);
    const Regs l71 = Cpuid(7, 1);
    if (os_avx && (l7.b & (1u << 5))) f |= kCpuAvx2;
    if (os_avx && (l71.a & (1u << 4))) f |= kCpuAvxVnni;
    if (os_avx512) {
      if (l7.b & (1u << 16)) f |= kCpuAvx512f;
      if (l7.b & (1u << 17)) f |= kCpuAvx512dq;
      if (l7.b & (1u << 30)) f |= kCpuAvx512bw;
      if (l7.b & (1u << 31)) f |= kCpuAvx512vl;
      if (l7.c & (1u << 11)) f |= kCpuAvx512vnni;
      if (l7.c & (1u << 1)) f |= kCpuAvx512vbmi;
      if (l7.d & (1u << 23)) f |= kCpuAvx512fp16;
      if (l71.a & (1u << 5)) f |= kCpuAvx512bf16;
    }
    // AMX also needs Linux's permission for the tile data state
    // (arch_prctl ARCH_REQ_XCOMP_PERM, for the whole process): asked here,
    // and AMX is reported only when it is granted.
    if (os_amx && (l7.d & ((1u << 25) | (1u << 22))) && RequestAmxPermission()) {
      if (l7.d & (1u << 25)) f |= kCpuAmxInt8;
      if (l7.d & (1u << 22)) f |= kCpuAmxBf16;
    }
  }
  return f;
}

absl::StatusOr<CpuFeatures> IsaLevelMask(const std::string& level) {
  if (level == "scalar") return CpuFeatures{kCpuSse41};
  if (level == "avx2") return CpuFeatures{kCpuSse41 | kIsaAvx2 | kCpuF16c};
  if (level == "avx512") return CpuFeatures{kCpuSse41 | kIsaAvx512 | kCpuF16c};
  if (level == "avx512_vnni") return CpuFeatures{kCpuSse41 | kIsaAvx512 | kCpuF16c | kCpuAvx512vnni};
  if (level == "native" || level.empty()) return ~CpuFeatures{0};
  return absl::InvalidArgumentError(absl::StrFormat(
      "KVANT_CPU_ISA must be scalar, avx2, avx512, avx512_vnni or native, got '%s'", level));
}

CpuFeatures ActiveCpuFeatures() {
  static const CpuFeatures active = [] {
    const char* env = std::getenv("KVANT_CPU_ISA");
    CpuFeatures f = DetectCpuFeatures();
    if (env == nullptr) return f;
    auto mask = IsaLevelMask(env);
    return mask.ok() ? f & *mask : f;  // an unknown name lowers nothing; inspect reports it
  }();
  return active;
}

std::string CpuModelName() {
  char brand[49] = {};
  if (Cpuid(0x80000000).a >= 0x80000004) {
    for (unsigned i = 0; i < 3; ++i) {
      Regs r = Cpuid(0x80000002 + i);
      std::memcpy(brand + i * 16, &r, 16);
    }
  }
  return brand;
}

std::string CpuFeatureNames(CpuFeatures features) {
  std::vector<std::string> names;
  for (const auto& n : kNames) {
    if (features & n.bit) names.push_back(n.name);
  }
  return absl::StrJoin(names, " ");
}

std::string DescribeHardware() {
  const CpuFeatures detected = DetectCpuFeatures(), active = ActiveCpuFeatures();
  std::string s = absl::StrFormat("CPU: %s\n", CpuModelName());
  const char* env = std::getenv("KVANT_CPU_ISA");
  if (env != nullptr) {
    auto mask = IsaLevelMask(env);
    absl::StrAppend(&s, "KVANT_CPU_ISA=", env, mask.ok() ? "" : " (ignored: unknown level)", "\n");
  }
  absl::StrAppend(&s, absl::StrFormat("  %-14s %-9s %s\n", "feature", "detected", "used"));
  for (const auto& n : kNames) {
    absl::StrAppend(&s, absl::StrFormat("  %-14s %-9s %s\n", n.name, (detected & n.bit) ? "yes" : "no",
                                        (active & n.bit) ? "yes" : "no"));
  }
  absl::StrAppend(&s, "Kernels by precision:\n");
  absl::StrAppend(&s, absl::StrFormat("  %-6s %s\n", "f32", cpu::SelectGemmUkernelF32(active).name));
  const cpu::GemmUkernelInfoS8& s8 = cpu::SelectGemmUkernelS8(active);
  absl::StrAppend(&s, absl::StrFormat("  %-6s %s%s\n", "int8", s8.name,
                                      s8.small_m ? absl::StrFormat(" (M < %d: %s)", s8.min_m, s8.small_m) : ""));
  if (const cpu::GemmUkernelInfoBf16* bf16 = cpu::SelectGemmUkernelBf16(active)) {
    absl::StrAppend(&s, absl::StrFormat("  %-6s %s%s\n", "bf16", bf16->name,
                                        bf16->small_m ? absl::StrFormat(" (M < %d: %s)", bf16->min_m, bf16->small_m)
                                                      : ""));
  } else {
    absl::StrAppend(&s, absl::StrFormat("  %-6s none: --precision bf16 runs FP32 (needs AVX-512 BF16)\n", "bf16"));
  }
  // --precision fp16 stores weights in FP16 and widens them for the FP32
  // kernel (VCVTPH2PS with AVX-512, a portable loop below it).
  absl::StrAppend(&s, absl::StrFormat(
                          "  %-6s FP16 weights widened for %s%s\n", "f16", cpu::SelectGemmUkernelF32(active).name,
                          (active & kCpuAvx512fp16)
                              ? " (this CPU has AVX512-FP16, whose products accumulate in FP16; Kvant keeps FP32 "
                                "accumulation, so FP16 is weight storage: bf16 is the fast half precision)"
                              : " (no FP16 arithmetic on this CPU)"));
  absl::StrAppend(&s, DescribeGpus());
  return s;
}

}  // namespace kvant
