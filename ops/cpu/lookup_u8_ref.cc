// Byte table lookup, the reference (see lookup_u8.h).
#include "ops/cpu/lookup_u8.h"

namespace kvant::cpu::ref {

void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = table[x[i]];
}

}  // namespace kvant::cpu::ref
