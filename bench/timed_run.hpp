// Runs one operation in a loop on several threads for a fixed time after a warm-up, and
// counts the operations completed in the measured window. Shared by the HSM and SQLite
// ceiling programs.
#pragma once

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace kw::bench {

// One thread's operation: returns an empty string on success, else what failed.
using Operation = std::function<std::string()>;

struct TimedResult {
  std::uint64_t ops = 0;
  double seconds = 0;
  std::string error;  // the first failure of any thread, or "interrupted"
};

namespace detail {

inline std::atomic<bool> interrupted{false};

inline void OnSignal(int) { interrupted.store(true); }

struct alignas(64) Counter {
  std::atomic<std::uint64_t> value{0};
};

}  // namespace detail

// Sets a flag on SIGINT and SIGTERM so a run ends early and the caller still cleans up
// (removes its keys or files) before it exits.
inline void CatchInterrupts() {
  std::signal(SIGINT, detail::OnSignal);
  std::signal(SIGTERM, detail::OnSignal);
}

// Runs operations[i] on thread i until the end. The window starts `warmup_seconds` after the
// threads start and lasts `seconds`. Counters are read at both ends of the window, so the
// count may be off by at most one operation per thread.
inline TimedResult RunTimed(std::vector<Operation>& operations, double warmup_seconds,
                            double seconds) {
  using Clock = std::chrono::steady_clock;
  std::atomic<bool> stop{false};
  std::vector<detail::Counter> counters(operations.size());
  std::mutex error_mutex;
  std::string error;  // guarded by error_mutex

  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < operations.size(); ++i) {
    threads.emplace_back([&, i] {
      while (!stop.load(std::memory_order_relaxed)) {
        std::string failure = operations[i]();
        if (!failure.empty()) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (error.empty()) error = failure;
          stop.store(true);
          return;
        }
        counters[i].value.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  auto total = [&] {
    std::uint64_t sum = 0;
    for (const auto& counter : counters) sum += counter.value.load();
    return sum;
  };
  // Sleeps until `deadline`; false when a failure or a signal ends the run first.
  auto wait_until = [&](Clock::time_point deadline) {
    while (Clock::now() < deadline) {
      if (stop.load() || detail::interrupted.load()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  };

  TimedResult result;
  Clock::time_point start = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                               std::chrono::duration<double>(warmup_seconds));
  bool completed = wait_until(start);
  std::uint64_t ops_at_start = total();
  start = Clock::now();
  if (completed) {
    completed = wait_until(start + std::chrono::duration_cast<Clock::duration>(
                                       std::chrono::duration<double>(seconds)));
  }
  result.ops = total() - ops_at_start;
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();

  stop.store(true);
  for (std::thread& thread : threads) thread.join();
  result.error = error;
  if (result.error.empty() && !completed) result.error = "interrupted";
  return result;
}

}  // namespace kw::bench
