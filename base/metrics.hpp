#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

// Process-wide operator metrics: counters and fixed-bucket histograms with fixed label sets,
// rendered as Prometheus text (exposition format 0.0.4) or as the JSON of Vault's metrics
// endpoint. An observation costs a few relaxed atomic operations: no lock, map lookup or
// allocation. Label values are fixed when a family is built, so no request can add a series.
namespace kw::metrics {

enum class Type { kCounter, kGauge, kHistogram };

// Label names and values of one series, in order.
using Labels = std::vector<std::pair<std::string, std::string>>;

// The maximum number of bucket bounds of a histogram. The +Inf bucket comes on top of them.
inline constexpr std::size_t kMaxBounds = 24;

// Latency bucket bounds in nanoseconds, from 10 µs (an HSM operation) to 10 s.
inline constexpr std::array<std::uint64_t, 19> kLatencyBoundsNanos = {
    10'000,        25'000,        50'000,        100'000,       250'000,
    500'000,       1'000'000,     2'500'000,     5'000'000,     10'000'000,
    25'000'000,    50'000'000,    100'000'000,   250'000'000,   500'000'000,
    1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};
// Nanoseconds per second, the base unit of Prometheus metric names.
inline constexpr double kNanosPerSecond = 1e9;

// Returns the nanoseconds from `start` until now on the steady clock.
inline std::uint64_t NanosSince(std::chrono::steady_clock::time_point start) {
  const auto elapsed = std::chrono::steady_clock::now() - start;
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count());
}

// A monotonically increasing count. Thread-safe.
class Counter {
 public:
  void Increment(std::uint64_t amount = 1) noexcept {
    value_.fetch_add(amount, std::memory_order_relaxed);
  }
  std::uint64_t Value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// The state of a histogram at one moment, in the histogram's integer unit.
struct HistogramState {
  std::vector<std::uint64_t> bucket_counts;  // per bucket, not cumulative; +Inf last
  std::uint64_t count = 0;                   // the sum of bucket_counts
  std::uint64_t sum = 0;
  double sum_of_squares = 0;
  std::uint64_t min = 0;  // 0 when count is 0
  std::uint64_t max = 0;
};

// Observations sorted into fixed buckets, with their sum, sum of squares, min and max.
// Values are unsigned integers in a unit the owner picks (nanoseconds, batches). Thread-safe.
// NOTE: a state read while observations run may disagree between its fields by those
// observations, but never between bucket_counts and count, which come from the same reads.
class Histogram {
 public:
  // `bounds` are the inclusive upper bounds of the buckets, ascending, at most kMaxBounds.
  explicit Histogram(std::span<const std::uint64_t> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(std::uint64_t value) noexcept;
  HistogramState State() const;
  std::span<const std::uint64_t> bounds() const { return {bounds_.data(), bound_count_}; }

 private:
  std::array<std::uint64_t, kMaxBounds> bounds_{};
  std::size_t bound_count_ = 0;
  std::array<std::atomic<std::uint64_t>, kMaxBounds + 1> buckets_{};
  std::atomic<std::uint64_t> sum_{0};
  std::atomic<double> sum_of_squares_{0};
  std::atomic<std::uint64_t> min_{std::numeric_limits<std::uint64_t>::max()};
  std::atomic<std::uint64_t> max_{0};
};

// One series of a family as rendered: a counter or gauge value, or a histogram in the base
// unit with cumulative bucket counts.
struct Series {
  Labels labels;
  double value = 0;  // counters and gauges
  // Histograms only.
  std::vector<double> upper_bounds;        // without +Inf
  std::vector<std::uint64_t> cumulative;   // one per upper bound, then +Inf (== count)
  std::uint64_t count = 0;
  double sum = 0;
  double min = 0;
  double max = 0;
  double stddev = 0;  // sample standard deviation (divided by n - 1), as go-metrics has it
};

// A metric family as rendered: name (Prometheus style, with the keyward_ prefix), help text,
// type and series.
struct FamilySnapshot {
  std::string name;
  std::string help;
  Type type = Type::kGauge;
  std::vector<Series> series;
};

// Whether a family renders series that have seen nothing yet.
enum class ZeroSeries { kShow, kHide };

// Every label name of a family and, per name, its fixed list of values. A family has one
// series per combination of values. Combinations are indexed row-major, so for names (a, b)
// and value positions (i, j) the index is i * values(b) + j.
struct LabelGrid {
  std::vector<std::pair<std::string, std::vector<std::string>>> dimensions;

  std::size_t SeriesCount() const;
  std::size_t Index(std::initializer_list<std::size_t> positions) const;
  Labels LabelsOf(std::size_t index) const;
};

class Registry;

// A family of counters or histograms, which its registry renders.
class Family {
 public:
  Family(Registry& registry, std::string name, std::string help, LabelGrid grid,
         ZeroSeries zero_series);
  virtual ~Family();
  Family(const Family&) = delete;
  Family& operator=(const Family&) = delete;

  virtual FamilySnapshot Snapshot() const = 0;
  const std::string& name() const { return name_; }

 protected:
  Registry& registry_;
  std::string name_;
  std::string help_;
  LabelGrid grid_;
  ZeroSeries zero_series_;
};

// Counters with a fixed label grid. Thread-safe.
class CounterFamily final : public Family {
 public:
  CounterFamily(Registry& registry, std::string name, std::string help, LabelGrid grid = {},
                ZeroSeries zero_series = ZeroSeries::kShow);
  ~CounterFamily() override;

  // `index` comes from LabelGrid::Index. An index out of range is a bug (KW_CHECK).
  Counter& At(std::size_t index);
  Counter& At(std::initializer_list<std::size_t> positions) { return At(grid_.Index(positions)); }
  FamilySnapshot Snapshot() const override;

 private:
  std::unique_ptr<Counter[]> counters_;
};

// Histograms with a fixed label grid and shared bounds. `units_per_base_unit` divides the
// integer unit into the base unit of the name: kNanosPerSecond for `_seconds`, 1 for counts.
// Thread-safe.
class HistogramFamily final : public Family {
 public:
  HistogramFamily(Registry& registry, std::string name, std::string help,
                  std::span<const std::uint64_t> bounds, double units_per_base_unit,
                  LabelGrid grid = {},
                  ZeroSeries zero_series = ZeroSeries::kShow);
  ~HistogramFamily() override;

  Histogram& At(std::size_t index);
  Histogram& At(std::initializer_list<std::size_t> positions) {
    return At(grid_.Index(positions));
  }
  FamilySnapshot Snapshot() const override;

 private:
  double units_per_base_unit_;
  std::vector<std::unique_ptr<Histogram>> histograms_;
};

// The families to render, in registration order. Families register themselves when built
// and leave when destroyed. Thread-safe: the mutex is taken only to register and to scrape.
class Registry {
 public:
  // The process-wide registry that the server's families use.
  static Registry& Global();

  void Add(const Family* family);
  void Remove(const Family* family);
  std::vector<FamilySnapshot> Snapshot() const;

 private:
  mutable std::mutex mutex_;
  std::vector<const Family*> families_;  // guarded by mutex_
};

// Returns the Prometheus text exposition (format 0.0.4) of `families`: HELP and TYPE lines,
// then one line per sample, label values escaped.
std::string FormatPrometheus(const std::vector<FamilySnapshot>& families);

// Returns the name Vault's JSON uses for `name`: every '_' becomes '.'.
std::string JsonName(std::string_view name);

// Returns `families` in the JSON shape of Vault's metrics endpoint (go-metrics' in-memory
// sink). Gauges have Name, Value and Labels. Counters and Samples (histograms) have Name,
// Count, Rate, Sum, Min, Max, Mean, Stddev and Labels. A counter's Count, Sum, Min, Max and
// Mean all hold its value, and every figure counts from start-up, not per interval.
nlohmann::json FormatVaultJson(const std::vector<FamilySnapshot>& families,
                               std::string timestamp);

// Returns the start time of the process (wall clock, Unix seconds), taken when this library
// was loaded.
double ProcessStartSeconds();

}  // namespace kw::metrics
