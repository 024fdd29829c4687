// The memory planners on random lifetimes: no two co-live buffers overlap
// (Verify), the arena is never below the lower bound nor above the linear
// baseline, PlanBest keeps the smaller of the greedy plans, and a
// hand-checked case is placed optimally.
#include <random>

#include "gtest/gtest.h"
#include "runtime/memory_planner.h"

namespace kvant {
namespace {

std::vector<BufferRequest> RandomRequests(std::mt19937_64& rng, int count, int steps) {
  std::uniform_int_distribution<int> step(0, steps - 1), len(0, 6);
  std::uniform_int_distribution<int64_t> size(0, 1 << 16);
  std::vector<BufferRequest> r;
  for (int i = 0; i < count; ++i) {
    const int first = step(rng);
    r.push_back({size(rng), first, std::min(steps - 1, first + len(rng)), "b" + std::to_string(i)});
  }
  return r;
}

TEST(MemoryPlanner, RandomLifetimesNeverOverlap) {
  int breadth_wins = 0, size_wins = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    std::mt19937_64 rng(seed);
    auto req = RandomRequests(rng, 1 + seed % 60, 1 + seed % 40);
    const MemoryPlan linear = PlanLinear(req);
    ASSERT_TRUE(linear.Verify(req).ok()) << "seed " << seed;
    const MemoryPlan by_size = PlanGreedyBySize(req), by_breadth = PlanGreedyByBreadth(req), best = PlanBest(req);
    for (const MemoryPlan* p : {&by_size, &by_breadth, &best}) {
      ASSERT_TRUE(p->Verify(req).ok()) << p->Verify(req) << " seed " << seed << "\n" << p->DebugString(req);
      EXPECT_GE(p->arena_bytes, p->lower_bound) << "seed " << seed;
      EXPECT_LE(p->arena_bytes, linear.arena_bytes) << "seed " << seed;
    }
    EXPECT_EQ(best.arena_bytes, std::min(by_size.arena_bytes, by_breadth.arena_bytes)) << "seed " << seed;
    breadth_wins += by_breadth.arena_bytes < by_size.arena_bytes;
    size_wins += by_size.arena_bytes < by_breadth.arena_bytes;
  }
  // Neither order dominates: each is strictly better on some lifetimes.
  EXPECT_GT(breadth_wins, 0);
  EXPECT_GT(size_wins, 0);
}

TEST(MemoryPlanner, ChainReusesMemory) {
  // a -> b -> c -> d: each buffer lives two steps, so two slots suffice.
  std::vector<BufferRequest> req = {{1000, 0, 1, "a"}, {1000, 1, 2, "b"}, {1000, 2, 3, "c"}, {1000, 3, 4, "d"}};
  MemoryPlan p = PlanGreedyBySize(req);
  ASSERT_TRUE(p.Verify(req).ok());
  EXPECT_EQ(p.arena_bytes, 2 * 1024);
  EXPECT_EQ(p.lower_bound, 2 * 1024);
  EXPECT_EQ(p.offsets[0], p.offsets[2]);
}

TEST(MemoryPlanner, VerifyCatchesOverlap) {
  std::vector<BufferRequest> req = {{100, 0, 2, "a"}, {100, 1, 3, "b"}};
  MemoryPlan p;
  p.offsets = {0, 64};
  p.arena_bytes = 256;
  EXPECT_FALSE(p.Verify(req).ok());
}

}  // namespace
}  // namespace kvant
