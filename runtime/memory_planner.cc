// Greedy arena planning (by size, by breadth, the better of the two), its
// linear baseline, the lower bound, and the
// checker and timeline picture the tests and `kvant inspect --plan` use.
#include "runtime/memory_planner.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace kvant {
namespace {

int64_t Align(int64_t v) { return (v + kArenaAlignment - 1) / kArenaAlignment * kArenaAlignment; }

bool Overlaps(const BufferRequest& a, const BufferRequest& b) { return a.first <= b.last && b.first <= a.last; }

}  // namespace

int64_t LowerBoundBytes(const std::vector<BufferRequest>& requests) {
  int steps = 0;
  for (const auto& r : requests) steps = std::max(steps, r.last + 1);
  std::vector<int64_t> live(steps + 1, 0);
  for (const auto& r : requests) {
    live[r.first] += Align(r.size);
    live[r.last + 1] -= Align(r.size);
  }
  int64_t cur = 0, best = 0;
  for (int s = 0; s < steps; ++s) {
    cur += live[s];
    best = std::max(best, cur);
  }
  return best;
}

namespace {

// Places the buffers in `order`, each at the lowest 64-byte aligned gap its
// already placed co-live buffers leave (or above them all).
MemoryPlan PlaceInOrder(const std::vector<BufferRequest>& requests, const std::vector<size_t>& order) {
  MemoryPlan plan;
  plan.offsets.assign(requests.size(), -1);
  std::vector<size_t> placed;
  for (size_t idx : order) {
    const BufferRequest& r = requests[idx];
    const int64_t size = Align(r.size);
    std::vector<std::pair<int64_t, int64_t>> busy;  // [offset, end) of co-live buffers
    for (size_t p : placed) {
      if (Overlaps(requests[p], r)) busy.emplace_back(plan.offsets[p], plan.offsets[p] + Align(requests[p].size));
    }
    std::sort(busy.begin(), busy.end());
    int64_t offset = 0;
    for (const auto& [b, e] : busy) {
      if (b - offset >= size) break;
      offset = std::max(offset, e);
    }
    plan.offsets[idx] = offset;
    plan.arena_bytes = std::max(plan.arena_bytes, offset + size);
    placed.push_back(idx);
  }
  plan.lower_bound = LowerBoundBytes(requests);
  return plan;
}

}  // namespace

MemoryPlan PlanGreedyBySize(const std::vector<BufferRequest>& requests) {
  std::vector<size_t> order(requests.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (requests[a].size != requests[b].size) return requests[a].size > requests[b].size;
    return requests[a].first < requests[b].first;
  });
  return PlaceInOrder(requests, order);
}

MemoryPlan PlanGreedyByBreadth(const std::vector<BufferRequest>& requests) {
  int steps = 0;
  for (const auto& r : requests) steps = std::max(steps, r.last + 1);
  std::vector<std::vector<size_t>> alive(steps);
  std::vector<int64_t> breadth(steps, 0);
  for (size_t i = 0; i < requests.size(); ++i) {
    for (int t = requests[i].first; t <= requests[i].last; ++t) {
      alive[t].push_back(i);
      breadth[t] += Align(requests[i].size);
    }
  }
  std::vector<int> by_breadth(steps);
  std::iota(by_breadth.begin(), by_breadth.end(), 0);
  std::stable_sort(by_breadth.begin(), by_breadth.end(), [&](int a, int b) { return breadth[a] > breadth[b]; });
  std::vector<size_t> order;
  std::vector<bool> taken(requests.size(), false);
  for (int t : by_breadth) {
    std::vector<size_t> here;
    for (size_t i : alive[t]) {
      if (!taken[i]) here.push_back(i);
    }
    std::stable_sort(here.begin(), here.end(), [&](size_t a, size_t b) { return requests[a].size > requests[b].size; });
    for (size_t i : here) {
      taken[i] = true;
      order.push_back(i);
    }
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (!taken[i]) order.push_back(i);  // none: every buffer lives at some step
  }
  return PlaceInOrder(requests, order);
}

MemoryPlan PlanBest(const std::vector<BufferRequest>& requests) {
  MemoryPlan by_size = PlanGreedyBySize(requests), by_breadth = PlanGreedyByBreadth(requests);
  return by_breadth.arena_bytes < by_size.arena_bytes ? by_breadth : by_size;
}

MemoryPlan PlanLinear(const std::vector<BufferRequest>& requests) {
  MemoryPlan plan;
  int64_t offset = 0;
  for (const auto& r : requests) {
    plan.offsets.push_back(offset);
    offset += Align(r.size);
  }
  plan.arena_bytes = offset;
  plan.lower_bound = LowerBoundBytes(requests);
  return plan;
}

absl::Status MemoryPlan::Verify(const std::vector<BufferRequest>& requests) const {
  if (offsets.size() != requests.size()) {
    return absl::InternalError(absl::StrFormat("plan has %d offsets for %d buffers", offsets.size(), requests.size()));
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    if (offsets[i] < 0 || offsets[i] % kArenaAlignment != 0 || offsets[i] + requests[i].size > arena_bytes) {
      return absl::InternalError(absl::StrFormat("buffer '%s' at %d (+%d) lies outside the %d-byte arena or is unaligned",
                                                 requests[i].name, offsets[i], requests[i].size, arena_bytes));
    }
    for (size_t j = i + 1; j < requests.size(); ++j) {
      if (!Overlaps(requests[i], requests[j]) || requests[i].size == 0 || requests[j].size == 0) continue;
      const bool apart = offsets[i] + requests[i].size <= offsets[j] || offsets[j] + requests[j].size <= offsets[i];
      if (!apart) {
        return absl::InternalError(absl::StrFormat(
            "buffers '%s' [%d,%d) and '%s' [%d,%d) are alive together and overlap", requests[i].name, offsets[i],
            offsets[i] + requests[i].size, requests[j].name, offsets[j], offsets[j] + requests[j].size));
      }
    }
  }
  return absl::OkStatus();
}

std::string MemoryPlan::DebugString(const std::vector<BufferRequest>& requests) const {
  int steps = 0;
  for (const auto& r : requests) steps = std::max(steps, r.last + 1);
  std::string s = absl::StrFormat("arena %d bytes, lower bound %d (%.3fx)\n", arena_bytes, lower_bound,
                                  lower_bound ? static_cast<double>(arena_bytes) / lower_bound : 1.0);
  for (size_t i = 0; i < requests.size(); ++i) {
    std::string line(std::min(steps, 120), '.');
    for (int t = requests[i].first; t <= requests[i].last && t < 120; ++t) line[t] = '#';
    absl::StrAppend(&s, absl::StrFormat("  %10d %10d %s %s\n", offsets[i], requests[i].size, line, requests[i].name));
  }
  return s;
}

}  // namespace kvant
