// Byte table lookup, the reference (see lookup_u8.h).
#include "ops/cpu/lookup_u8.h"

#include <cstring>

namespace kvant::cpu::ref {

void LookupU8(const uint8_t* table, const uint8_t* x, int64_t n, uint8_t* y) {
  for (int64_t i = 0; i < n; ++i) y[i] = table[x[i]];
}

void LookupChannelsU8(const uint8_t* tables, int64_t c, const uint8_t* x, int64_t n, uint8_t* y) {
  for (int64_t p = 0; p < n; p += c) {
    for (int64_t ch = 0; ch < c; ++ch) y[p + ch] = tables[ch * 256 + x[p + ch]];
  }
}

void LookupRowsU8(const uint8_t* table, const uint8_t* x, int64_t rows, int64_t len, int64_t x_stride, uint8_t* y,
                  int64_t y_stride) {
  for (int64_t r = 0; r < rows; ++r) {
    if (table == nullptr) {
      std::memcpy(y + r * y_stride, x + r * x_stride, len);
    } else {
      LookupU8(table, x + r * x_stride, len, y + r * y_stride);
    }
  }
}

}  // namespace kvant::cpu::ref
