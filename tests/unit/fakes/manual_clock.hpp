#pragma once

#include <atomic>
#include <chrono>

#include "base/clock.hpp"

namespace kw::testing {

// A clock that tests move by hand, so TTL logic runs without sleeping. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimePoint start = TimePoint(std::chrono::seconds(1'800'000'000)))
      : now_(start.time_since_epoch().count()) {}

  TimePoint Now() const override { return TimePoint(TimePoint::duration(now_.load())); }

  void Advance(std::chrono::nanoseconds by) {
    now_ += std::chrono::duration_cast<TimePoint::duration>(by).count();
  }

 private:
  std::atomic<TimePoint::rep> now_;
};

}  // namespace kw::testing
