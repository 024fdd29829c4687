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

// One table per channel, channels innermost (NHWC): y[i] = tables[(i % c) *
// 256 + x[i]] for i < n, n a multiple of c. `tables` holds c * 256 bytes and
// 3 readable bytes after them (the AVX-512 form gathers 4 bytes per lane).
using LookupChannelsU8 = void (*)(const uint8_t* tables, int64_t c, const uint8_t* x, int64_t n, uint8_t* y);

// Rows of `len` bytes, `rows` of them, x and y `x_stride` and `y_stride`
// bytes apart: y = table[x] per byte, or a copy when table is null (a
// QLinearConcat's inputs along the channels of NHWC: rows of a few dozen
// bytes, one call for all of them).
using LookupRowsU8 = void (*)(const uint8_t* table, const uint8_t* x, int64_t rows, int64_t len, int64_t x_stride,
                              uint8_t* y, int64_t y_stride);

namespace ref {
void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y);
void LookupRowsU8(const uint8_t* table, const uint8_t* x, int64_t rows, int64_t len, int64_t x_stride, uint8_t* y,
                  int64_t y_stride);
void LookupChannelsU8(const uint8_t* tables, int64_t c, const uint8_t* x, int64_t n, uint8_t* y);
}  // namespace ref
namespace avx512vbmi {
// 64 bytes per step: two VPERMI2B over the table's halves, blended by x's top bit.
void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y);
// 16 bytes per step: VPGATHERDD at byte offsets channel * 256 + x, the
// lanes' channels stepped by 16 mod c.
void LookupChannelsU8(const uint8_t* tables, int64_t c, const uint8_t* x, int64_t n, uint8_t* y);
// 64 bytes per step of each row (masked at its end).
void LookupRowsU8(const uint8_t* table, const uint8_t* x, int64_t rows, int64_t len, int64_t x_stride, uint8_t* y,
                  int64_t y_stride);
}  // namespace avx512vbmi

// The best of the two for `cpu`.
inline LookupU8 SelectLookupU8(CpuFeatures cpu) {
  const CpuFeatures vbmi = kIsaAvx512 | kCpuAvx512vbmi;
  return (cpu & vbmi) == vbmi ? avx512vbmi::LookupU8 : ref::LookupU8;
}
inline LookupRowsU8 SelectLookupRowsU8(CpuFeatures cpu) {
  const CpuFeatures vbmi = kIsaAvx512 | kCpuAvx512vbmi;
  return (cpu & vbmi) == vbmi ? avx512vbmi::LookupRowsU8 : ref::LookupRowsU8;
}
inline LookupChannelsU8 SelectLookupChannelsU8(CpuFeatures cpu) {
  const CpuFeatures vbmi = kIsaAvx512 | kCpuAvx512vbmi;
  return (cpu & vbmi) == vbmi ? avx512vbmi::LookupChannelsU8 : ref::LookupChannelsU8;
}

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_LOOKUP_U8_H_
