#include "api/http/worker_pool.hpp"

#include <exception>
#include <typeinfo>
#include <utility>

#include <boost/core/demangle.hpp>

#include "base/log.hpp"

namespace kw::api::detail {

WorkerPool::WorkerPool(std::size_t threads, std::size_t max_queued) : max_queued_(max_queued) {
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) {
    threads_.emplace_back([this] { RunWorker(); });
  }
}

WorkerPool::~WorkerPool() { Stop(); }

bool WorkerPool::TrySubmit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || queue_.size() >= max_queued_) return false;
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  return true;
}

void WorkerPool::Stop() {
  std::deque<std::function<void()>> dropped;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    dropped.swap(queue_);
  }
  wake_.notify_all();
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  // The dropped tasks are destroyed here, outside the lock, because destroying one may
  // release the last reference to a connection.
}

void WorkerPool::RunWorker() {
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    try {
      task();
    } catch (const std::exception& e) {
      log::Error("worker task threw an exception",
                 {{"exception_type", boost::core::demangle(typeid(e).name())}});
    } catch (...) {
      log::Error("worker task threw an exception", {{"exception_type", "unknown"}});
    }
  }
}

}  // namespace kw::api::detail
