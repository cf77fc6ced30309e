#include "base/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "base/result.hpp"

namespace kw::metrics {
namespace {

const double kProcessStartSeconds =
    std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();

const char* TypeName(Type type) {
  switch (type) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// Writes `value` as Prometheus and Go's strconv read it: integers without a fraction, other
// values in the shortest form that reads back exactly, and NaN, +Inf and -Inf by name. As Go's
// %g does, it uses an exponent only below 1e-4 or from 1e21 on (0.0001, but 1e-05).
void AppendNumber(std::string& out, double value) {
  if (std::isnan(value)) {
    out += "NaN";
    return;
  }
  if (std::isinf(value)) {
    out += value > 0 ? "+Inf" : "-Inf";
    return;
  }
  std::array<char, 64> buffer{};
  std::to_chars_result written;
  // 2^53: every integer up to it is exact in a double.
  if (value == std::floor(value) && std::fabs(value) < 9007199254740992.0) {
    written = std::to_chars(buffer.data(), buffer.data() + buffer.size(),
                            static_cast<std::int64_t>(value));
  } else {
    const double magnitude = std::fabs(value);
    const auto format = magnitude >= 1e-4 && magnitude < 1e21 ? std::chars_format::fixed
                                                               : std::chars_format::scientific;
    written = std::to_chars(buffer.data(), buffer.data() + buffer.size(), value, format);
  }
  out.append(buffer.data(), written.ptr);
}

// Escapes a label value: backslash, double quote and line feed, as the text format requires.
void AppendLabelValue(std::string& out, std::string_view value) {
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Escapes HELP text: backslash and line feed.
void AppendHelp(std::string& out, std::string_view help) {
  for (const char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

// Writes `{a="x",b="y"}` with `extra` (the histogram's `le`) last, or nothing when both are
// empty.
void AppendLabels(std::string& out, const Labels& labels,
                  const std::pair<std::string_view, std::string>* extra = nullptr) {
  if (labels.empty() && extra == nullptr) return;
  out += '{';
  bool first = true;
  for (const auto& [name, value] : labels) {
    if (!first) out += ',';
    first = false;
    out += name;
    out += "=\"";
    AppendLabelValue(out, value);
    out += '"';
  }
  if (extra != nullptr) {
    if (!first) out += ',';
    out += extra->first;
    out += "=\"";
    AppendLabelValue(out, extra->second);
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, const Labels& labels, double value,
                  const std::pair<std::string_view, std::string>* extra = nullptr) {
  out += name;
  AppendLabels(out, labels, extra);
  out += ' ';
  AppendNumber(out, value);
  out += '\n';
}

void AppendHistogram(std::string& out, const std::string& name, const Series& series) {
  const std::string bucket_name = name + "_bucket";
  for (std::size_t i = 0; i < series.cumulative.size(); ++i) {
    std::pair<std::string_view, std::string> le{"le", "+Inf"};
    if (i < series.upper_bounds.size()) {
      le.second.clear();
      AppendNumber(le.second, series.upper_bounds[i]);
    }
    AppendSample(out, bucket_name, series.labels, static_cast<double>(series.cumulative[i]), &le);
  }
  AppendSample(out, name + "_sum", series.labels, series.sum);
  AppendSample(out, name + "_count", series.labels, static_cast<double>(series.count));
}

nlohmann::json JsonLabels(const Labels& labels) {
  nlohmann::json object = nlohmann::json::object();
  for (const auto& [name, value] : labels) object[name] = value;
  return object;
}

// The summary fields of go-metrics' in-memory sink for one counter or histogram series.
nlohmann::json JsonSummary(const std::string& name, const Series& series, Type type) {
  nlohmann::json summary = {{"Name", name}, {"Rate", 0}, {"Labels", JsonLabels(series.labels)}};
  if (type == Type::kCounter) {
    // go-metrics' Count is an integer, as a counter's value always is.
    summary["Count"] = static_cast<std::uint64_t>(series.value);
    for (const char* field : {"Sum", "Min", "Max", "Mean"}) summary[field] = series.value;
    summary["Stddev"] = 0;
    return summary;
  }
  summary["Count"] = series.count;
  summary["Sum"] = series.sum;
  summary["Min"] = series.min;
  summary["Max"] = series.max;
  summary["Mean"] = series.count == 0 ? 0 : series.sum / static_cast<double>(series.count);
  summary["Stddev"] = series.stddev;
  return summary;
}

}  // namespace

Histogram::Histogram(std::span<const std::uint64_t> bounds) {
  KW_CHECK(bounds.size() <= kMaxBounds, "histogram: too many bucket bounds");
  KW_CHECK(std::is_sorted(bounds.begin(), bounds.end()), "histogram: bounds are not ascending");
  std::copy(bounds.begin(), bounds.end(), bounds_.begin());
  bound_count_ = bounds.size();
}

void Histogram::Observe(std::uint64_t value) noexcept {
  // A linear scan: at most kMaxBounds comparisons on one cache line pair, cheaper than a
  // binary search at this size.
  std::size_t bucket = 0;
  while (bucket < bound_count_ && value > bounds_[bucket]) ++bucket;
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(value, std::memory_order_relaxed);
  const double as_double = static_cast<double>(value);
  sum_of_squares_.fetch_add(as_double * as_double, std::memory_order_relaxed);
  std::uint64_t seen = min_.load(std::memory_order_relaxed);
  while (value < seen && !min_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
  seen = max_.load(std::memory_order_relaxed);
  while (value > seen && !max_.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

HistogramState Histogram::State() const {
  HistogramState state;
  state.bucket_counts.reserve(bound_count_ + 1);
  for (std::size_t i = 0; i <= bound_count_; ++i) {
    const std::uint64_t count = buckets_[i].load(std::memory_order_relaxed);
    state.bucket_counts.push_back(count);
    state.count += count;
  }
  state.sum = sum_.load(std::memory_order_relaxed);
  state.sum_of_squares = sum_of_squares_.load(std::memory_order_relaxed);
  if (state.count > 0) {
    const std::uint64_t min = min_.load(std::memory_order_relaxed);
    state.min = min == std::numeric_limits<std::uint64_t>::max() ? 0 : min;
    state.max = max_.load(std::memory_order_relaxed);
  }
  return state;
}

std::size_t LabelGrid::SeriesCount() const {
  std::size_t count = 1;
  for (const auto& dimension : dimensions) count *= dimension.second.size();
  return count;
}

std::size_t LabelGrid::Index(std::initializer_list<std::size_t> positions) const {
  KW_CHECK(positions.size() == dimensions.size(), "metrics: wrong number of label positions");
  std::size_t index = 0;
  std::size_t dimension = 0;
  for (const std::size_t position : positions) {
    const std::size_t size = dimensions[dimension].second.size();
    KW_CHECK(position < size, "metrics: label position out of range");
    index = index * size + position;
    ++dimension;
  }
  return index;
}

Labels LabelGrid::LabelsOf(std::size_t index) const {
  Labels labels(dimensions.size());
  for (std::size_t d = dimensions.size(); d-- > 0;) {
    const auto& [name, values] = dimensions[d];
    labels[d] = {name, values[index % values.size()]};
    index /= values.size();
  }
  return labels;
}

Family::Family(Registry& registry, std::string name, std::string help, LabelGrid grid,
               ZeroSeries zero_series)
    : registry_(registry),
      name_(std::move(name)),
      help_(std::move(help)),
      grid_(std::move(grid)),
      zero_series_(zero_series) {
  for (const auto& dimension : grid_.dimensions) {
    KW_CHECK(!dimension.second.empty(), "metrics: a label has no values");
  }
}

Family::~Family() = default;

CounterFamily::CounterFamily(Registry& registry, std::string name, std::string help,
                             LabelGrid grid, ZeroSeries zero_series)
    : Family(registry, std::move(name), std::move(help), std::move(grid), zero_series),
      counters_(std::make_unique<Counter[]>(grid_.SeriesCount())) {
  // Registered last, so that a scrape never reads a family that is still being built.
  registry_.Add(this);
}

CounterFamily::~CounterFamily() { registry_.Remove(this); }

Counter& CounterFamily::At(std::size_t index) {
  KW_CHECK(index < grid_.SeriesCount(), "metrics: counter index out of range");
  return counters_[index];
}

FamilySnapshot CounterFamily::Snapshot() const {
  FamilySnapshot snapshot{name_, help_, Type::kCounter, {}};
  const std::size_t count = grid_.SeriesCount();
  for (std::size_t i = 0; i < count; ++i) {
    const std::uint64_t value = counters_[i].Value();
    if (value == 0 && zero_series_ == ZeroSeries::kHide) continue;
    Series series;
    series.labels = grid_.LabelsOf(i);
    series.value = static_cast<double>(value);
    snapshot.series.push_back(std::move(series));
  }
  return snapshot;
}

HistogramFamily::HistogramFamily(Registry& registry, std::string name, std::string help,
                                 std::span<const std::uint64_t> bounds,
                                 double units_per_base_unit,
                                 LabelGrid grid, ZeroSeries zero_series)
    : Family(registry, std::move(name), std::move(help), std::move(grid), zero_series),
      units_per_base_unit_(units_per_base_unit) {
  const std::size_t count = grid_.SeriesCount();
  histograms_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    histograms_.push_back(std::make_unique<Histogram>(bounds));
  }
  registry_.Add(this);
}

HistogramFamily::~HistogramFamily() { registry_.Remove(this); }

Histogram& HistogramFamily::At(std::size_t index) {
  KW_CHECK(index < histograms_.size(), "metrics: histogram index out of range");
  return *histograms_[index];
}

FamilySnapshot HistogramFamily::Snapshot() const {
  FamilySnapshot snapshot{name_, help_, Type::kHistogram, {}};
  for (std::size_t i = 0; i < histograms_.size(); ++i) {
    const Histogram& histogram = *histograms_[i];
    const HistogramState state = histogram.State();
    if (state.count == 0 && zero_series_ == ZeroSeries::kHide) continue;

    Series series;
    series.labels = grid_.LabelsOf(i);
    for (const std::uint64_t bound : histogram.bounds()) {
      series.upper_bounds.push_back(static_cast<double>(bound) / units_per_base_unit_);
    }
    std::uint64_t running = 0;
    for (const std::uint64_t count : state.bucket_counts) {
      running += count;
      series.cumulative.push_back(running);
    }
    series.count = state.count;
    // Dividing rounds once, so 2500000 ns is exactly the double nearest 0.0025 s.
    series.sum = static_cast<double>(state.sum) / units_per_base_unit_;
    series.min = static_cast<double>(state.min) / units_per_base_unit_;
    series.max = static_cast<double>(state.max) / units_per_base_unit_;
    // The sample standard deviation, as go-metrics computes it: 0 below two observations.
    if (state.count > 1) {
      const double n = static_cast<double>(state.count);
      const double sum = static_cast<double>(state.sum);
      const double variance = (n * state.sum_of_squares - sum * sum) / (n * (n - 1));
      series.stddev = variance > 0 ? std::sqrt(variance) / units_per_base_unit_ : 0;
    }
    snapshot.series.push_back(std::move(series));
  }
  return snapshot;
}

Registry& Registry::Global() {
  // NOTE: never destroyed, so that families with static storage duration can still remove
  // themselves while the process exits.
  static Registry* const registry = new Registry();
  return *registry;
}

void Registry::Add(const Family* family) {
  std::lock_guard lock(mutex_);
  families_.push_back(family);
}

void Registry::Remove(const Family* family) {
  std::lock_guard lock(mutex_);
  families_.erase(std::remove(families_.begin(), families_.end(), family), families_.end());
}

std::vector<FamilySnapshot> Registry::Snapshot() const {
  std::lock_guard lock(mutex_);
  std::vector<FamilySnapshot> snapshots;
  snapshots.reserve(families_.size());
  for (const Family* family : families_) snapshots.push_back(family->Snapshot());
  return snapshots;
}

std::string FormatPrometheus(const std::vector<FamilySnapshot>& families) {
  std::string out;
  for (const FamilySnapshot& family : families) {
    out += "# HELP ";
    out += family.name;
    out += ' ';
    AppendHelp(out, family.help);
    out += "\n# TYPE ";
    out += family.name;
    out += ' ';
    out += TypeName(family.type);
    out += '\n';
    for (const Series& series : family.series) {
      if (family.type == Type::kHistogram) {
        AppendHistogram(out, family.name, series);
      } else {
        AppendSample(out, family.name, series.labels, series.value);
      }
    }
  }
  return out;
}

std::string JsonName(std::string_view name) {
  std::string dotted(name);
  std::replace(dotted.begin(), dotted.end(), '_', '.');
  return dotted;
}

nlohmann::json FormatVaultJson(const std::vector<FamilySnapshot>& families,
                               std::string timestamp) {
  nlohmann::json gauges = nlohmann::json::array();
  nlohmann::json counters = nlohmann::json::array();
  nlohmann::json samples = nlohmann::json::array();
  for (const FamilySnapshot& family : families) {
    const std::string name = JsonName(family.name);
    for (const Series& series : family.series) {
      switch (family.type) {
        case Type::kGauge:
          gauges.push_back(
              {{"Name", name}, {"Value", series.value}, {"Labels", JsonLabels(series.labels)}});
          break;
        case Type::kCounter:
          counters.push_back(JsonSummary(name, series, family.type));
          break;
        case Type::kHistogram:
          samples.push_back(JsonSummary(name, series, family.type));
          break;
      }
    }
  }
  return {{"Timestamp", std::move(timestamp)},
          {"Gauges", std::move(gauges)},
          {"Counters", std::move(counters)},
          {"Points", nlohmann::json::array()},
          {"Samples", std::move(samples)}};
}

double ProcessStartSeconds() { return kProcessStartSeconds; }

}  // namespace kw::metrics
