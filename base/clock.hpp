#pragma once

#include <chrono>
#include <string>

namespace kw {

using TimePoint = std::chrono::system_clock::time_point;

// The source of wall-clock time for every TTL, expiry and audit timestamp, injectable so that
// tests move time instead of sleeping. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimePoint Now() const = 0;
};

// The real wall clock.
class SystemClock final : public Clock {
 public:
  TimePoint Now() const override { return std::chrono::system_clock::now(); }
};

// Formats `time` as RFC 3339 UTC with nanoseconds, as Vault does: 2026-12-04T20:12:47.123456789Z.
std::string FormatRfc3339(TimePoint time);

}  // namespace kw
