// Numpy broadcasting rules for shapes and strides.
#include "ops/broadcast.h"

#include <algorithm>

namespace kvant {

std::optional<Shape> BroadcastShapes(const Shape& a, const Shape& b) {
  if (!a.rank_known || !b.rank_known) return Shape::Unknown();
  Shape out;
  out.rank_known = true;
  int64_t rank = std::max(a.rank(), b.rank());
  out.dims.resize(rank);
  for (int64_t i = 0; i < rank; ++i) {
    int64_t ia = i - (rank - a.rank()), ib = i - (rank - b.rank());
    Dim da = ia >= 0 ? a.dims[ia] : Dim::Known(1);
    Dim db = ib >= 0 ? b.dims[ib] : Dim::Known(1);
    if (da.known() && da.value == 1) {
      out.dims[i] = db;
    } else if (db.known() && db.value == 1) {
      out.dims[i] = da;
    } else if (da.known() && db.known()) {
      if (da.value != db.value) return std::nullopt;
      out.dims[i] = da;
    } else {
      out.dims[i] = da.known() ? da : db;  // a symbol broadcast against a size is that size
    }
  }
  return out;
}

std::vector<int64_t> BroadcastStrides(const std::vector<int64_t>& in, const std::vector<int64_t>& out) {
  std::vector<int64_t> strides(out.size(), 0);
  int64_t stride = 1;
  for (int64_t i = static_cast<int64_t>(in.size()) - 1; i >= 0; --i) {
    int64_t o = i + static_cast<int64_t>(out.size() - in.size());
    strides[o] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return strides;
}

}  // namespace kvant
