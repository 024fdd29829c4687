// Thread pool: a queue of ParallelFor jobs. A job is cut into blocks; the
// caller and any idle worker claim blocks with an atomic counter, and the
// caller returns when every block is finished.
#include "runtime/thread_pool.h"

#include <algorithm>

namespace kvant {

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

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this] { WorkerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
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
    std::shared_ptr<Job> job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [this] { return HasWork(); });
      if (stop_ && queue_.empty()) return;
      job = queue_.front();
      // Leave the job queued while blocks remain so other workers join it.
      if (job->next.load() + 1 >= job->blocks) queue_.pop_front();
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
  }
  work_cv_.notify_all();
  Drain(*job);
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Remove the job if no worker took it off the queue.
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it != queue_.end()) queue_.erase(it);
  }
  std::unique_lock<std::mutex> lock(job->mu);
  job->finished_cv.wait(lock, [&] { return job->finished; });
}

}  // namespace kvant
