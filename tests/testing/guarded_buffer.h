// A buffer whose end touches a PROT_NONE page, so a kernel reading or writing
// one element past it faults at once (as MLAS's test buffers do).
#ifndef KVANT_TESTS_TESTING_GUARDED_BUFFER_H_
#define KVANT_TESTS_TESTING_GUARDED_BUFFER_H_

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace kvant::testing {

template <typename T>
class GuardedBuffer {
 public:
  explicit GuardedBuffer(size_t count) : count_(count) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = (count * sizeof(T) + page - 1) / page * page;
    total_ = bytes + page;
    base_ = static_cast<char*>(mmap(nullptr, total_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    mprotect(base_ + bytes, page, PROT_NONE);
    data_ = reinterpret_cast<T*>(base_ + bytes - count * sizeof(T));
  }
  ~GuardedBuffer() { munmap(base_, total_); }
  GuardedBuffer(const GuardedBuffer&) = delete;
  GuardedBuffer& operator=(const GuardedBuffer&) = delete;

  T* data() { return data_; }
  size_t size() const { return count_; }
  T& operator[](size_t i) { return data_[i]; }

 private:
  size_t count_, total_;
  char* base_;
  T* data_;
};

}  // namespace kvant::testing

#endif  // KVANT_TESTS_TESTING_GUARDED_BUFFER_H_
