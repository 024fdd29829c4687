// Walks a broadcast output shape with the matching offset into each input.
#ifndef KVANT_OPS_CPU_BROADCAST_LOOP_H_
#define KVANT_OPS_CPU_BROADCAST_LOOP_H_

#include <array>
#include <vector>

#include "absl/types/span.h"
#include "ops/broadcast.h"

namespace kvant::cpu {

// Calls fn(out_index, offsets) for every output element in order; offsets[i]
// indexes input i (right-aligned numpy broadcasting).
template <size_t N, typename Fn>
void ForEachBroadcast(const std::array<absl::Span<const int64_t>, N>& in, absl::Span<const int64_t> out, Fn fn) {
  const std::vector<int64_t> shape(out.begin(), out.end());
  const int64_t rank = shape.size();
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::array<std::vector<int64_t>, N> strides;
  for (size_t i = 0; i < N; ++i) strides[i] = BroadcastStrides(std::vector<int64_t>(in[i].begin(), in[i].end()), shape);
  std::vector<int64_t> idx(rank, 0);
  std::array<int64_t, N> off{};
  for (int64_t o = 0; o < n; ++o) {
    fn(o, off);
    for (int64_t d = rank - 1; d >= 0; --d) {
      for (size_t i = 0; i < N; ++i) off[i] += strides[i][d];
      if (++idx[d] < shape[d]) break;
      for (size_t i = 0; i < N; ++i) off[i] -= strides[i][d] * shape[d];
      idx[d] = 0;
    }
  }
}

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_BROADCAST_LOOP_H_
