// The CPU capability table: features detected once with cpuid and xgetbv,
// lowered (never raised) by KVANT_CPU_ISA=scalar|avx2|avx512|avx512_vnni.
// Every CPU capability decision in Kvant reads ActiveCpuFeatures().
#ifndef KVANT_RUNTIME_CPU_CAPS_H_
#define KVANT_RUNTIME_CPU_CAPS_H_

#include <string>

#include "absl/status/statusor.h"
#include "ops/kernel.h"

namespace kvant {

// What the processor and OS support.
CpuFeatures DetectCpuFeatures();
// Detected features masked by KVANT_CPU_ISA (read once).
CpuFeatures ActiveCpuFeatures();
// The mask a KVANT_CPU_ISA value allows; error for an unknown name.
absl::StatusOr<CpuFeatures> IsaLevelMask(const std::string& level);
std::string CpuModelName();
// "avx2 fma f16c avx512f ..." for a feature set.
std::string CpuFeatureNames(CpuFeatures features);

}  // namespace kvant

#endif  // KVANT_RUNTIME_CPU_CAPS_H_
