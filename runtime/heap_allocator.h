// The allocator a Session uses when its options name none: the C heap,
// 64-byte aligned, blocks of exactly the size asked for (so AddressSanitizer
// sees an output overflow by one byte), with large freed blocks kept for the
// next request of the same size. Every Run allocates its outputs; glibc maps
// a block of a few MB afresh each time (its mmap threshold rises to the size
// of the last freed block, and a block of exactly that size is mapped again),
// so a 3.2 MB output cost 800 page faults per run, about 0.6 ms for PP-OCR's
// recogniser. Thread-safe.
#ifndef KVANT_RUNTIME_HEAP_ALLOCATOR_H_
#define KVANT_RUNTIME_HEAP_ALLOCATOR_H_

#include <cstddef>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "kvant/kvant.h"

namespace kvant::internal {

class HeapAllocator final : public Allocator {
 public:
  // Blocks of at least this many bytes are kept on Free, at most kMaxKept of
  // them and kMaxKeptBytes in all (the oldest go first).
  static constexpr size_t kMinKeptBytes = size_t{256} << 10;
  static constexpr size_t kMaxKept = 8;
  static constexpr size_t kMaxKeptBytes = size_t{256} << 20;

  ~HeapAllocator() override;
  void* Allocate(size_t bytes) override;
  void Free(void* p) override;
  // Blocks and bytes kept now (for tests and reports).
  std::pair<size_t, size_t> Kept();

 private:
  std::mutex mu_;
  absl::flat_hash_map<void*, size_t> large_ ABSL_GUARDED_BY(mu_);  // handed out, by address
  std::vector<std::pair<size_t, void*>> kept_ ABSL_GUARDED_BY(mu_);  // freed, oldest first
  size_t kept_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kvant::internal

#endif  // KVANT_RUNTIME_HEAP_ALLOCATOR_H_
