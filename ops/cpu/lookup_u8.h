// Byte tables: y[i] = table[x[i]] over 256 entries, the kernel of every
// quantized unary map (QLinearSigmoid, QLinearLeakyRelu, and the
// kvant.QLinearTable a DequantizeLinear -> float ops -> QuantizeLinear chain
// becomes, graph/passes/fuse_qdq_table.cc). u8 and s8 alike: x indexes by
// its bits.
#ifndef KVANT_OPS_CPU_LOOKUP_U8_H_
#define KVANT_OPS_CPU_LOOKUP_U8_H_

#include <cstdint>

#include "ops/kernel.h"

namespace kvant::cpu {

using LookupU8 = void (*)(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y);

namespace ref {
void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y);
}  // namespace ref
namespace avx512vbmi {
// 64 bytes per step: two VPERMI2B over the table's halves, blended by x's top bit.
void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y);
}  // namespace avx512vbmi

// The best of the two for `cpu`.
inline LookupU8 SelectLookupU8(CpuFeatures cpu) {
  const CpuFeatures vbmi = kIsaAvx512 | kCpuAvx512vbmi;
  return (cpu & vbmi) == vbmi ? avx512vbmi::LookupU8 : ref::LookupU8;
}

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_LOOKUP_U8_H_
