// Numpy-style broadcasting: the output shape of two inputs (symbolic or not)
// and, for static shapes, the strides each input is read with.
#ifndef KVANT_OPS_BROADCAST_H_
#define KVANT_OPS_BROADCAST_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "graph/graph.h"

namespace kvant {

// Broadcast of two shapes; nullopt when two known dimensions differ and neither is 1.
std::optional<Shape> BroadcastShapes(const Shape& a, const Shape& b);

// Strides (in elements) of `in` read as `out` (0 along broadcast dimensions);
// `in` is right-aligned to `out`.
std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in, const std::vector<int64_t>& out);

}  // namespace kvant

#endif  // KVANT_OPS_BROADCAST_H_
