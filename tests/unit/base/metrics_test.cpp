#include "base/metrics.hpp"

#include <doctest/doctest.h>

#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace kw::metrics {
namespace {

constexpr std::array<std::uint64_t, 3> kBounds = {10, 20, 30};

LabelGrid TwoByTwo() {
  return {{{"family", {"kv", "sys"}}, {"code", {"200", "404"}}}};
}

}  // namespace

TEST_SUITE("base/metrics") {
  TEST_CASE("counter adds increments") {
    Counter counter;
    CHECK(counter.Value() == 0);
    counter.Increment();
    counter.Increment(41);
    CHECK(counter.Value() == 42);
  }

  TEST_CASE("histogram sorts values into inclusive buckets") {
    Histogram histogram(kBounds);
    for (const std::uint64_t value : {5, 10, 11, 30, 31, 1000}) histogram.Observe(value);

    const HistogramState state = histogram.State();
    REQUIRE(state.bucket_counts.size() == 4);
    CHECK(state.bucket_counts[0] == 2);  // 5 and 10: a bound is inclusive
    CHECK(state.bucket_counts[1] == 1);  // 11
    CHECK(state.bucket_counts[2] == 1);  // 30
    CHECK(state.bucket_counts[3] == 2);  // 31 and 1000 in +Inf
    CHECK(state.count == 6);
    CHECK(state.sum == 5 + 10 + 11 + 30 + 31 + 1000);
    CHECK(state.min == 5);
    CHECK(state.max == 1000);
  }

  TEST_CASE("empty histogram reports zero min and max") {
    Histogram histogram(kBounds);
    const HistogramState state = histogram.State();
    CHECK(state.count == 0);
    CHECK(state.min == 0);
    CHECK(state.max == 0);
  }

  TEST_CASE("label grid indexes row-major") {
    const LabelGrid grid = TwoByTwo();
    CHECK(grid.SeriesCount() == 4);
    CHECK(grid.Index({0, 0}) == 0);
    CHECK(grid.Index({0, 1}) == 1);
    CHECK(grid.Index({1, 0}) == 2);
    CHECK(grid.Index({1, 1}) == 3);
    const Labels labels = grid.LabelsOf(2);
    REQUIRE(labels.size() == 2);
    CHECK(labels[0] == std::pair<std::string, std::string>("family", "sys"));
    CHECK(labels[1] == std::pair<std::string, std::string>("code", "200"));
  }

  TEST_CASE("registry lists families until they are destroyed") {
    Registry registry;
    {
      CounterFamily first(registry, "test_first_total", "First.");
      CounterFamily second(registry, "test_second_total", "Second.");
      const auto snapshot = registry.Snapshot();
      REQUIRE(snapshot.size() == 2);
      CHECK(snapshot[0].name == "test_first_total");
      CHECK(snapshot[1].name == "test_second_total");
    }
    CHECK(registry.Snapshot().empty());
  }

  TEST_CASE("hidden zero series are left out") {
    Registry registry;
    CounterFamily hidden(registry, "test_hidden_total", "Hidden.", TwoByTwo(), ZeroSeries::kHide);
    CounterFamily shown(registry, "test_shown_total", "Shown.", TwoByTwo(), ZeroSeries::kShow);
    hidden.At({1, 1}).Increment(3);
    shown.At({1, 1}).Increment(3);

    const auto snapshot = registry.Snapshot();
    REQUIRE(snapshot.size() == 2);
    REQUIRE(snapshot[0].series.size() == 1);
    CHECK(snapshot[0].series[0].value == 3);
    CHECK(snapshot[0].series[0].labels == Labels{{"family", "sys"}, {"code", "404"}});
    CHECK(snapshot[1].series.size() == 4);
  }

  TEST_CASE("prometheus text of counters and gauges") {
    Registry registry;
    CounterFamily requests(registry, "test_requests_total", "Requests by family.", TwoByTwo(),
                           ZeroSeries::kHide);
    requests.At({0, 0}).Increment(7);
    requests.At({1, 1}).Increment(2);
    std::vector<FamilySnapshot> families = registry.Snapshot();
    FamilySnapshot gauge{"test_unsealed", "1 when unsealed.", Type::kGauge, {Series{}}};
    gauge.series[0].value = 1;
    families.push_back(gauge);
    FamilySnapshot fraction{"test_seconds", "A fraction.", Type::kGauge, {Series{}}};
    fraction.series[0].value = 0.25;
    families.push_back(fraction);

    CHECK(FormatPrometheus(families) ==
          "# HELP test_requests_total Requests by family.\n"
          "# TYPE test_requests_total counter\n"
          "test_requests_total{family=\"kv\",code=\"200\"} 7\n"
          "test_requests_total{family=\"sys\",code=\"404\"} 2\n"
          "# HELP test_unsealed 1 when unsealed.\n"
          "# TYPE test_unsealed gauge\n"
          "test_unsealed 1\n"
          "# HELP test_seconds A fraction.\n"
          "# TYPE test_seconds gauge\n"
          "test_seconds 0.25\n");
  }

  TEST_CASE("prometheus text of a histogram is cumulative") {
    Registry registry;
    HistogramFamily latency(registry, "test_duration_seconds", "Latency.", kBounds, 2.0,
                            LabelGrid{{{"op", {"read"}}}});
    for (const std::uint64_t value : {5, 10, 11, 30, 31, 1000}) latency.At({0}).Observe(value);

    CHECK(FormatPrometheus(registry.Snapshot()) ==
          "# HELP test_duration_seconds Latency.\n"
          "# TYPE test_duration_seconds histogram\n"
          "test_duration_seconds_bucket{op=\"read\",le=\"5\"} 2\n"
          "test_duration_seconds_bucket{op=\"read\",le=\"10\"} 3\n"
          "test_duration_seconds_bucket{op=\"read\",le=\"15\"} 4\n"
          "test_duration_seconds_bucket{op=\"read\",le=\"+Inf\"} 6\n"
          "test_duration_seconds_sum{op=\"read\"} 543.5\n"
          "test_duration_seconds_count{op=\"read\"} 6\n");
  }

  TEST_CASE("prometheus numbers read like go's") {
    Registry registry;
    HistogramFamily latency(registry, "test_duration_seconds", "Latency.", kLatencyBoundsNanos,
                            kNanosPerSecond);
    latency.At(0).Observe(2'500'000);
    latency.At(0).Observe(3'214'345);
    const std::string text = FormatPrometheus(registry.Snapshot());
    CHECK(text.find("test_duration_seconds_bucket{le=\"1e-05\"} 0\n") != std::string::npos);
    CHECK(text.find("test_duration_seconds_bucket{le=\"0.0001\"} 0\n") != std::string::npos);
    CHECK(text.find("test_duration_seconds_bucket{le=\"0.00025\"} 0\n") != std::string::npos);
    CHECK(text.find("test_duration_seconds_bucket{le=\"0.0025\"} 1\n") != std::string::npos);
    CHECK(text.find("test_duration_seconds_bucket{le=\"10\"} 2\n") != std::string::npos);
    CHECK(text.find("test_duration_seconds_sum 0.005714345\n") != std::string::npos);

    std::vector<FamilySnapshot> gauges;
    for (const double value : {1e21, 123456789012.5, -0.5, 1e-7}) {
      FamilySnapshot gauge{"test_value", "A value.", Type::kGauge, {Series{}}};
      gauge.series[0].value = value;
      gauges.push_back(gauge);
    }
    const std::string values = FormatPrometheus(gauges);
    CHECK(values.find("test_value 1e+21\n") != std::string::npos);
    CHECK(values.find("test_value 123456789012.5\n") != std::string::npos);
    CHECK(values.find("test_value -0.5\n") != std::string::npos);
    CHECK(values.find("test_value 1e-07\n") != std::string::npos);
  }

  TEST_CASE("prometheus text escapes label values and help") {
    FamilySnapshot family{"test_roles", "Roles \\ with\nlines.", Type::kGauge, {Series{}}};
    family.series[0].labels = {{"role", "a\"b\\c\nd"}};
    family.series[0].value = 3;
    CHECK(FormatPrometheus({family}) ==
          "# HELP test_roles Roles \\\\ with\\nlines.\n"
          "# TYPE test_roles gauge\n"
          "test_roles{role=\"a\\\"b\\\\c\\nd\"} 3\n");
  }

  TEST_CASE("vault json has gauges counters and samples") {
    Registry registry;
    CounterFamily counter(registry, "test_errors_total", "Errors.",
                          LabelGrid{{{"op", {"sign"}}}});
    counter.At({0}).Increment(4);
    HistogramFamily latency(registry, "test_duration_seconds", "Latency.", kBounds, 1.0);
    // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, sample standard deviation sqrt(32 / 7).
    for (const std::uint64_t value : {2, 4, 4, 4, 5, 5, 7, 9}) latency.At(0).Observe(value);
    std::vector<FamilySnapshot> families = registry.Snapshot();
    FamilySnapshot gauge{"test_leases", "Leases.", Type::kGauge, {Series{}}};
    gauge.series[0].labels = {{"role", "app"}};
    gauge.series[0].value = 12;
    families.push_back(gauge);

    const nlohmann::json json = FormatVaultJson(families, "2026-01-02T03:04:05Z");
    CHECK(json["Timestamp"] == "2026-01-02T03:04:05Z");
    CHECK(json["Points"] == nlohmann::json::array());

    REQUIRE(json["Gauges"].size() == 1);
    CHECK(json["Gauges"][0]["Name"] == "test.leases");
    CHECK(json["Gauges"][0]["Value"] == 12);
    CHECK(json["Gauges"][0]["Labels"] == nlohmann::json{{"role", "app"}});

    REQUIRE(json["Counters"].size() == 1);
    const nlohmann::json& errors = json["Counters"][0];
    CHECK(errors["Name"] == "test.errors.total");
    CHECK(errors["Count"] == 4);
    CHECK(errors["Count"].is_number_integer());
    CHECK(errors["Sum"] == 4);
    CHECK(errors["Labels"] == nlohmann::json{{"op", "sign"}});

    REQUIRE(json["Samples"].size() == 1);
    const nlohmann::json& sample = json["Samples"][0];
    CHECK(sample["Name"] == "test.duration.seconds");
    CHECK(sample["Count"] == 8);
    CHECK(sample["Sum"] == 40);
    CHECK(sample["Min"] == 2);
    CHECK(sample["Max"] == 9);
    CHECK(sample["Mean"] == 5);
    CHECK(sample["Stddev"].get<double>() == doctest::Approx(std::sqrt(32.0 / 7.0)));
    CHECK(sample["Labels"] == nlohmann::json::object());
  }

  TEST_CASE("concurrent observations are all counted") {
    Histogram histogram(kLatencyBoundsNanos);
    Counter counter;
    constexpr int kThreads = 4;
    constexpr std::uint64_t kPerThread = 100'000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (std::uint64_t i = 0; i < kPerThread; ++i) {
          histogram.Observe(i * 1000);
          counter.Increment();
        }
      });
    }
    for (auto& thread : threads) thread.join();

    const HistogramState state = histogram.State();
    CHECK(state.count == kThreads * kPerThread);
    CHECK(counter.Value() == kThreads * kPerThread);
    CHECK(state.sum == kThreads * 1000 * (kPerThread * (kPerThread - 1) / 2));
    CHECK(state.min == 0);
    CHECK(state.max == (kPerThread - 1) * 1000);
  }

  // Reports what one request observation costs: a counter and a latency histogram. The
  // figure is printed, not asserted, because it depends on the machine and its load.
  TEST_CASE("observation cost is reported") {
    Registry registry;
    CounterFamily requests(registry, "test_requests_total", "Requests.", TwoByTwo());
    HistogramFamily latency(registry, "test_duration_seconds", "Latency.", kLatencyBoundsNanos,
                            kNanosPerSecond, TwoByTwo());
    constexpr int kRounds = 1'000'000;
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kRounds; ++i) {
      const std::size_t family = static_cast<std::size_t>(i & 1);
      requests.At({family, 0}).Increment();
      latency.At({family, 0}).Observe(static_cast<std::uint64_t>(i) * 7);
    }
    const double nanos = static_cast<double>(NanosSince(start)) / kRounds;
    MESSAGE("one counter increment and one histogram observation: " << nanos << " ns");
    CHECK(requests.At({0, 0}).Value() + requests.At({1, 0}).Value() == kRounds);
  }
}

}  // namespace kw::metrics
