// The session thread pool: every index of a ParallelFor runs exactly once,
// with spinning waits and without, for jobs that come back to back (workers
// still polling) and jobs that come after the workers have gone to sleep;
// several callers at once; a ParallelFor inside a ParallelFor.
#include "runtime/thread_pool.h"

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kvant {
namespace {

// Runs ParallelFor(n) and checks that each index was visited once.
void ExpectEachIndexOnce(ThreadPool& pool, int64_t n) {
  std::vector<std::atomic<int>> hits(n);
  pool.ParallelFor(n, [&](int64_t begin, int64_t end) {
    ASSERT_LE(0, begin);
    ASSERT_LT(begin, end);
    ASSERT_LE(end, n);
    for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
  });
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of " << n;
}

TEST(ThreadPool, EveryIndexOnceBackToBackAndAfterSleep) {
  for (bool spin : {true, false}) {
    for (int threads : {1, 2, 3, 5}) {
      ThreadPool pool(threads, spin);
      for (int64_t n : {1, 2, 3, 7, 64, 1000}) ExpectEachIndexOnce(pool, n);
      for (int i = 0; i < 200; ++i) ExpectEachIndexOnce(pool, 17);  // workers still polling
      // Past the spin window: the workers sleep and must be woken.
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      ExpectEachIndexOnce(pool, 33);
    }
  }
}

TEST(ThreadPool, SeveralCallersAtOnce) {
  ThreadPool pool(3);
  std::vector<std::thread> callers;
  std::atomic<int64_t> total{0};
  for (int t = 0; t < 4; ++t) {
    callers.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        pool.ParallelFor(100, [&](int64_t begin, int64_t end) { total.fetch_add(end - begin); });
      }
    });
  }
  for (auto& c : callers) c.join();
  EXPECT_EQ(total.load(), 4 * 50 * 100);
}

TEST(ThreadPool, NestedParallelFor) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  pool.ParallelFor(4, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      pool.ParallelFor(10, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
    }
  });
  EXPECT_EQ(total.load(), 40);
}

}  // namespace
}  // namespace kvant
