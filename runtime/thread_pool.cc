// Thread pool: a queue of ParallelFor jobs. A job is cut into blocks; the
// caller and any idle worker claim blocks with an atomic counter, and the
// caller returns when every block is finished.
//
// Waiting spins before it sleeps (unless the pool is made without), as ONNX
// Runtime's and OpenMP's pools do: a worker polls for the next job, and a
// caller for its job's last block, for kSpin before blocking on a condition
// variable. A network's operators come microseconds apart, and waking a
// sleeping thread costs tens of microseconds (more in a VM), which a model
// with a hundred parallel operators would pay on every one.
#include "runtime/thread_pool.h"

#include <algorithm>
#include <chrono>

namespace kvant {
namespace {

constexpr auto kSpin = std::chrono::microseconds(200);

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// Polls `ready` until it holds (true) or kSpin has passed (false); without
// `spin`, looks once.
template <typename Ready>
bool SpinUntil(bool spin, Ready ready) {
  if (!spin) return ready();
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      CpuRelax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return ready();
  }
}

}  // namespace

struct ThreadPool::Job {
  absl::FunctionRef<void(int64_t, int64_t)> fn;
  int64_t n;
  int64_t block;
  int64_t blocks;
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> done{0};
  std::mutex mu;
  std::condition_variable finished_cv;
  bool finished ABSL_GUARDED_BY(mu) = false;

  Job(absl::FunctionRef<void(int64_t, int64_t)> f, int64_t n_, int64_t block_)
      : fn(f), n(n_), block(block_), blocks((n_ + block_ - 1) / block_) {}
};

ThreadPool::ThreadPool(int num_threads, bool spin) : num_threads_(std::max(1, num_threads)), spin_(spin) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    queued_.store(1, std::memory_order_release);  // spinning workers look
  }
  work_cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::Drain(Job& job) {
  for (;;) {
    const int64_t b = job.next.fetch_add(1);
    if (b >= job.blocks) return;
    const int64_t begin = b * job.block, end = std::min(job.n, begin + job.block);
    job.fn(begin, end);
    if (job.done.fetch_add(1) + 1 == job.blocks) {
      {
        std::lock_guard<std::mutex> lock(job.mu);
        job.finished = true;
      }
      job.finished_cv.notify_all();
    }
  }
}

void ThreadPool::WorkerLoop() {
  for (;;) {
    SpinUntil(spin_, [this] { return queued_.load(std::memory_order_acquire) > 0; });
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return HasWork(); });
      if (stop_ && queue_.empty()) return;
      job = queue_.front();
      // Leave the job queued while blocks remain so other workers join it.
      if (job->next.load() + 1 >= job->blocks) {
        queue_.pop_front();
        queued_.store(static_cast<int64_t>(queue_.size()), std::memory_order_release);
      }
    }
    Drain(*job);
  }
}

void ThreadPool::ParallelFor(int64_t n, absl::FunctionRef<void(int64_t, int64_t)> fn) {
  if (n <= 0) return;
  if (num_threads_ == 1 || n == 1) {
    fn(0, n);
    return;
  }
  const int64_t block = (n + num_threads_ - 1) / num_threads_;
  auto job = std::make_shared<Job>(fn, n, block);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(job);
    queued_.store(static_cast<int64_t>(queue_.size()), std::memory_order_release);
  }
  work_cv_.notify_all();
  Drain(*job);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Remove the job if no worker took it off the queue.
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) {
      queue_.erase(it);
      queued_.store(static_cast<int64_t>(queue_.size()), std::memory_order_release);
    }
  }
  // Every block done: a worker may still be about to set `finished`, but it
  // no longer calls fn, and it holds its own reference to the job.
  if (SpinUntil(spin_, [&] { return job->done.load(std::memory_order_acquire) == job->blocks; })) return;
  std::unique_lock<std::mutex> lock(job->mu);
  job->finished_cv.wait(lock, [&] { return job->finished; });
}

}  // namespace kvant
