// The default allocator keeps large freed blocks for the next request of the
// same size (a Run's outputs), within its caps, and stays correct across
// threads.
#include "runtime/heap_allocator.h"

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace kvant::internal {
namespace {

TEST(HeapAllocator, LargeBlocksOfTheSameSizeAreReused) {
  HeapAllocator a;
  const size_t big = HeapAllocator::kMinKeptBytes * 3 + 8;
  void* p = a.Allocate(big);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
  std::memset(p, 1, big);
  a.Free(p);
  void* q = a.Allocate(big);
  EXPECT_EQ(q, p) << "the kept block of this size";
  void* r = a.Allocate(big + 64);
  EXPECT_NE(r, p) << "another size gets its own block";
  a.Free(q);
  a.Free(r);
  // Small blocks are not kept (the heap reuses them itself); all are aligned.
  void* s = a.Allocate(100);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(s) % 64, 0u);
  a.Free(s);
  a.Free(nullptr);
}

TEST(HeapAllocator, KeepsAtMostItsCap) {
  HeapAllocator a;
  const size_t big = HeapAllocator::kMinKeptBytes;
  std::vector<void*> blocks;
  for (size_t i = 0; i < HeapAllocator::kMaxKept + 4; ++i) blocks.push_back(a.Allocate(big));
  for (void* p : blocks) a.Free(p);
  EXPECT_EQ(a.Kept().first, HeapAllocator::kMaxKept) << "the oldest 4 were released";
  EXPECT_EQ(a.Kept().second, HeapAllocator::kMaxKept * big);
  std::vector<void*> again;
  for (size_t i = 0; i < HeapAllocator::kMaxKept; ++i) again.push_back(a.Allocate(big));
  EXPECT_EQ(a.Kept().first, 0u) << "each kept block went to a request of its size";
  for (void* p : again) a.Free(p);
  // A block over the byte cap is never kept.
  void* huge = a.Allocate(HeapAllocator::kMaxKeptBytes + 64);
  ASSERT_NE(huge, nullptr);
  a.Free(huge);
  EXPECT_EQ(a.Kept().first, HeapAllocator::kMaxKept);
}

TEST(HeapAllocator, ThreadsAllocateAndFreeConcurrently) {
  HeapAllocator a;
  auto work = [&](int seed) {
    for (int i = 0; i < 200; ++i) {
      const size_t bytes = HeapAllocator::kMinKeptBytes + static_cast<size_t>((i + seed) % 3) * 4096;
      auto* p = static_cast<uint8_t*>(a.Allocate(bytes));
      ASSERT_NE(p, nullptr);
      p[0] = static_cast<uint8_t>(i);
      p[bytes - 1] = static_cast<uint8_t>(seed);
      EXPECT_EQ(p[0], static_cast<uint8_t>(i));
      a.Free(p);
    }
  };
  std::thread t1(work, 1), t2(work, 2);
  t1.join();
  t2.join();
}

}  // namespace
}  // namespace kvant::internal
