#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace kw::api::detail {

// A fixed set of threads that run submitted tasks in FIFO order, with a bounded queue so that
// a burst of requests is rejected rather than buffered without limit. Thread-safe.
class WorkerPool {
 public:
  WorkerPool(std::size_t threads, std::size_t max_queued);
  ~WorkerPool();

  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  // Queues `task`. Returns false, without running or keeping it, when the queue already contains
  // max_queued tasks or the pool is stopped. A task must not throw; one that does is logged.
  bool TrySubmit(std::function<void()> task);

  // Discards the queued tasks, waits for the running ones and joins the threads. Idempotent.
  void Stop();

 private:
  void RunWorker();

  const std::size_t max_queued_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;  // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace kw::api::detail
