// What the FP32 and INT8 convolution chains (conv_chain_f32_nhwc.cc,
// qconv_chain_s8.cc; graph/passes/fuse_conv_chain.cc) share: how a chain's
// depthwise output rows are cut into bands and parts, which input rows a band
// reads, and the buffer of expand rows that slides down the image.
#ifndef KVANT_OPS_CPU_CONV_CHAIN_H_
#define KVANT_OPS_CPU_CONV_CHAIN_H_

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ops/kernel.h"

namespace kvant::cpu {

// The depthwise stage's vertical geometry.
struct ChainRows {
  int64_t in_h, out_h, kh, sh, dh, pad_t;

  // First and one-past-last input row (inside the image) that output rows
  // [o0, o1) read.
  int64_t first_input(int64_t o0) const { return std::clamp<int64_t>(o0 * sh - pad_t, 0, in_h); }
  int64_t end_input(int64_t o0, int64_t o1) const {
    return std::clamp<int64_t>((o1 - 1) * sh - pad_t + (kh - 1) * dh + 1, first_input(o0), in_h);
  }
  // Input rows one band of `band` output rows reads at most.
  int64_t span(int64_t band) const { return std::min(in_h, (band - 1) * sh + (kh - 1) * dh + 1); }
};

struct ChainPlan {
  int64_t band = 1;         // depthwise output rows per band
  int64_t buffer_rows = 0;  // expand rows the buffer holds (0: no expand stage)
  int64_t parts = 1;        // row ranges per image
  int64_t images = 1;       // > 1: whole images per task, each stage one call over them
  int64_t slots = 1;        // concurrent workers, each with its own scratch
  // Task t covers images [first_image(t), + images) (fewer at the end), part t % parts.
  int64_t tasks(int64_t n) const { return (n + images - 1) / images * parts; }
  int64_t first_image(int64_t t) const { return t / parts * images; }
};

// Bands whose intermediates (`expand_row_bytes` per expand row, 0 without
// one; `band_row_bytes` per depthwise output row kept for the project, 0
// without one) take about `budget` bytes; parts so that n images x parts
// tasks split evenly over `threads`. When whole images fit the budget
// (the small images late in a network), a task takes as many as fit, up to
// its share of the batch: one call per stage over several images reads the
// stage's weights once for all of them.
inline ChainPlan PlanChain(const ChainRows& r, int64_t n, int threads, int64_t budget, int64_t expand_row_bytes,
                           int64_t band_row_bytes) {
  ChainPlan p;
  const int64_t per_band_row = r.sh * expand_row_bytes + band_row_bytes;
  p.band = std::clamp<int64_t>(budget / std::max<int64_t>(1, per_band_row), 1, std::max<int64_t>(1, r.out_h));
  if (p.band >= r.out_h) {
    const int64_t image_bytes = std::max<int64_t>(1, r.in_h * expand_row_bytes + r.out_h * band_row_bytes);
    p.images = std::clamp<int64_t>(budget / image_bytes, 1, (n + threads - 1) / threads);
  }
  if (p.images > 1) {
    p.band = p.images * r.out_h;
    p.buffer_rows = expand_row_bytes > 0 ? p.images * r.in_h : 0;
  } else {
    // The rows one band reads plus a band's worth, so the buffer slides
    // back every other band at most.
    p.buffer_rows = expand_row_bytes > 0 ? std::min(r.in_h, r.span(p.band) + p.band * r.sh) : 0;
    while ((n * p.parts) % threads != 0 && p.parts < threads && p.parts < r.out_h) ++p.parts;
  }
  p.slots = std::min<int64_t>(threads, p.tasks(n));
  return p;
}

// Output rows [begin, end) of part `part` of an image.
inline void ChainPartRows(const ChainPlan& p, const ChainRows& r, int64_t part, int64_t* begin, int64_t* end) {
  const int64_t per_part = (r.out_h + p.parts - 1) / p.parts;
  *begin = std::min(r.out_h, part * per_part);
  *end = std::min(r.out_h, *begin + per_part);
}

// Runs fn(task, slot) for every task < tasks, slot < p.slots naming the
// scratch the task may use (no two tasks of one slot run at once).
template <typename Fn>
void ForEachChainTask(ParallelRunner* pool, const ChainPlan& p, int64_t tasks, Fn fn) {
  pool->ParallelFor(p.slots, [&](int64_t s0, int64_t s1) {
    for (int64_t slot = s0; slot < s1; ++slot) {
      for (int64_t t = slot; t < tasks; t += p.slots) fn(t, slot);
    }
  });
}

// Expand rows [lo, hi) of one image, held at the start of `data` (at most
// `capacity` rows of `row_bytes`).
struct ChainRowBuffer {
  char* data;
  int64_t row_bytes, capacity;
  int64_t lo = 0, hi = 0;

  // Makes rows [i0, i1) fit: rows from i0 on that are already there stay
  // (moved to the start when i1 would not fit). Returns the first row the
  // caller must compute (rows [hi, i1), at row(hi)); then hi = i1.
  int64_t Reserve(int64_t i0, int64_t i1) {
    if (i0 < lo || i0 > hi) lo = hi = i0;  // nothing to keep
    if (i1 - lo > capacity) {
      std::memmove(data, data + (i0 - lo) * row_bytes, (hi - i0) * row_bytes);
      lo = i0;
    }
    const int64_t first = std::max(hi, i0);
    hi = std::max(hi, i1);
    return first;
  }
  char* row(int64_t r) const { return data + (r - lo) * row_bytes; }
};

}  // namespace kvant::cpu

#endif  // KVANT_OPS_CPU_CONV_CHAIN_H_
