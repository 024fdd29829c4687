// The memory planner: places buffers with known lifetimes (first and last
// step, inclusive) and sizes at offsets in one arena so that buffers alive at
// the same step never overlap.
//
// Greedy by size (PlanGreedyBySize):
//  1. sort buffers by size, largest first (ties: earlier first use);
//  2. for each, collect the already placed buffers whose lifetimes overlap it,
//     ordered by offset;
//  3. place it in the lowest gap between them that fits (64-byte aligned), or
//     after the last one;
//  4. the arena is the highest end offset.
// Greedy by breadth (PlanGreedyByBreadth, as TensorFlow Lite's GPU delegate
// plans): steps in order of the bytes alive at them, largest first; at each,
// the buffers alive there not yet placed, largest first, into the lowest gap
// as in 3. Neither order wins everywhere (on random lifetimes each is
// strictly smaller on some), so PlanBest makes both and keeps the smaller.
// The lower bound is the largest sum of sizes alive at one step: no plan can
// do better. PlanLinear, the baseline, gives every buffer its own space.
#ifndef KVANT_RUNTIME_MEMORY_PLANNER_H_
#define KVANT_RUNTIME_MEMORY_PLANNER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace kvant {

struct BufferRequest {
  int64_t size = 0;
  int first = 0;  // step that writes it first
  int last = 0;   // step that reads it last
  std::string name;
};

struct MemoryPlan {
  std::vector<int64_t> offsets;  // one per request
  int64_t arena_bytes = 0;
  int64_t lower_bound = 0;

  // Checks that co-live buffers never overlap and all fit in the arena.
  absl::Status Verify(const std::vector<BufferRequest>& requests) const;
  // Timeline: one row per buffer, '#' where it is alive, with its offset.
  std::string DebugString(const std::vector<BufferRequest>& requests) const;
};

inline constexpr int64_t kArenaAlignment = 64;

MemoryPlan PlanGreedyBySize(const std::vector<BufferRequest>& requests);
MemoryPlan PlanGreedyByBreadth(const std::vector<BufferRequest>& requests);
MemoryPlan PlanBest(const std::vector<BufferRequest>& requests);
MemoryPlan PlanLinear(const std::vector<BufferRequest>& requests);
int64_t LowerBoundBytes(const std::vector<BufferRequest>& requests);

}  // namespace kvant

#endif  // KVANT_RUNTIME_MEMORY_PLANNER_H_
