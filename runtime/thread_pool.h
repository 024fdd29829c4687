// The session thread pool: num_threads - 1 workers plus the calling thread.
// ParallelFor may be called from several threads at once (concurrent Run
// calls); each call is a job the workers and its caller drain together.
#ifndef KVANT_RUNTIME_THREAD_POOL_H_
#define KVANT_RUNTIME_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "ops/kernel.h"

namespace kvant {

class ThreadPool final : public ParallelRunner {
 public:
  // spin: waiting threads poll for up to 200 us before they sleep
  // (SessionOptions::allow_spinning).
  explicit ThreadPool(int num_threads, bool spin = true);
  ~ThreadPool() override;
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const override { return num_threads_; }
  void ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) override;

 private:
  struct Job;
  void WorkerLoop();
  bool HasWork() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stop_ || !queue_.empty(); }
  static void Drain(Job& job);

  const int num_threads_;
  const bool spin_;
  // std::mutex (pthreads) rather than absl::Mutex: ThreadSanitizer sees it
  // without an instrumented Abseil.
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::deque<std::shared_ptr<Job>> queue_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> queued_{0};  // queue_.size() (1 once stopping), for workers that spin
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_;
};

}  // namespace kvant

#endif  // KVANT_RUNTIME_THREAD_POOL_H_
