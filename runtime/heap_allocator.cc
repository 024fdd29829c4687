// The default allocator (see the header).
#include "runtime/heap_allocator.h"

#include <sanitizer/asan_interface.h>

#include <algorithm>
#include <cstdlib>

namespace kvant::internal {

HeapAllocator::~HeapAllocator() {
  for (const auto& [bytes, p] : kept_) {
    ASAN_UNPOISON_MEMORY_REGION(p, bytes);
    std::free(p);
  }
}

void* HeapAllocator::Allocate(size_t bytes) {
  bytes = std::max<size_t>(bytes, 1);
  if (bytes >= kMinKeptBytes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (size_t i = kept_.size(); i-- > 0;) {  // the most recently freed of this size
      if (kept_[i].first != bytes) continue;
      void* p = kept_[i].second;
      kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(i));
      kept_bytes_ -= bytes;
      large_[p] = bytes;
      ASAN_UNPOISON_MEMORY_REGION(p, bytes);
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 64, bytes) != 0) return nullptr;
  if (bytes >= kMinKeptBytes) {
    std::lock_guard<std::mutex> lock(mu_);
    large_[p] = bytes;
  }
  return p;
}

void HeapAllocator::Free(void* p) {
  if (p == nullptr) return;
  std::vector<void*> evicted;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = large_.find(p);
    if (it == large_.end() || it->second > kMaxKeptBytes) {
      if (it != large_.end()) large_.erase(it);
      evicted.push_back(p);
    } else {
      const size_t bytes = it->second;
      large_.erase(it);
      // A kept block is poisoned: a read through a stale pointer to a freed
      // output is still reported under AddressSanitizer.
      ASAN_POISON_MEMORY_REGION(p, bytes);
      kept_.emplace_back(bytes, p);
      kept_bytes_ += bytes;
      while (kept_.size() > kMaxKept || kept_bytes_ > kMaxKeptBytes) {
        kept_bytes_ -= kept_.front().first;
        ASAN_UNPOISON_MEMORY_REGION(kept_.front().second, kept_.front().first);
        evicted.push_back(kept_.front().second);
        kept_.erase(kept_.begin());
      }
    }
  }
  for (void* q : evicted) std::free(q);
}

std::pair<size_t, size_t> HeapAllocator::Kept() {
  std::lock_guard<std::mutex> lock(mu_);
  return {kept_.size(), kept_bytes_};
}

}  // namespace kvant::internal
