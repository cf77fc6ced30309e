// keyward-loadgen: an HTTP/1.1 keep-alive load generator for loopback servers, on Boost.Asio.
//
// wrk measures throughput with closed-loop connections, but the benchmark also needs latency at
// a fixed request rate measured without coordinated omission, weighted request mixes with
// per-request paths (a million distinct secrets), and thousands of idle connections spread over
// source addresses. This program does those three things:
//   closed: each connection sends its next request as soon as the previous reply is read;
//   rate:   requests are scheduled at a fixed rate, and each latency counts from the request's
//           scheduled time, so time spent queued behind a slow reply is included;
//   idle:   opens many connections, sends one request on each, then keeps them open.
// It only connects to loopback addresses. Results are one JSON line on stdout.
#include <sys/resource.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cmath>
#include <deque>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_options.hpp"
#include "bench/latency_histogram.hpp"
#include "bench/loadgen_config.hpp"
#include "bench/loadgen_connection.hpp"

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using kw::bench::Connection;
using kw::bench::ConnectionOwner;
using kw::bench::LoadgenConfig;
using kw::bench::Mode;
using kw::bench::RequestTemplate;

constexpr auto kDrainTimeout = std::chrono::seconds(10);  // rate mode, after the last send
constexpr std::size_t kMaxConnecting = 256;               // idle mode connects in flight
constexpr int kMaxReportedErrors = 5;

constexpr const char* kUsage = R"(usage: keyward-loadgen --url http://127.0.0.1:PORT [options]

HTTP/1.1 keep-alive load generator for loopback servers (127.0.0.0/8 and ::1 only).

  --mode MODE           closed (default): each connection sends its next request when the
                          previous reply is read
                        rate: requests at a fixed --rate; latency counts from each request's
                          scheduled time; requests with no free connection wait in a queue
                        idle: open --connections, one request each, then keep them open
                          until SIGINT or SIGTERM (or --seconds); prints a ready line when all
                          are up, and at the end how many the server closed
  --url URL             http://HOST:PORT[/PATH]; PATH is the default request path
  --connections C       connections (default 32)
  --threads T           closed, rate: I/O threads, the connections split between them
                          (default 1)
  --seconds S           closed: stop after S seconds (default 10 unless --count is given);
                        rate: schedule requests for S seconds (default 10); idle: hold time
  --count N             closed: stop after N requests in total
  --rate R              rate: requests per second
  --header "N: V"       add a request header (repeatable)
  --request "W M P [@F]"  weight W, method M, path P, body read from file F (repeatable);
                        requests are picked at random by weight. In P, {n} becomes a counter
                        that is unique per request and {k} that counter modulo --keys.
                        Default: "1 GET PATH", with PATH from --url, or / (idle:
                        /v1/sys/health)
  --keys K              modulus for {k}
  --source-range A-B    bind connections round-robin to the IPv4 loopback addresses A to B
                        (idle default 127.0.0.2-127.0.0.50)

Output (closed, rate): {"program":"loadgen","mode":...,"requests":N,"seconds":S,"rps":X,
"status":{"200":N,...},"errors":N,"queued":N,"latency_ms":{"p50":...,"p90":...,"p99":...,
"p999":...,"max":...}}, plus "connections", "threads" and (rate) "rate". Exits 1 when any
request failed or got a status outside 2xx.
Output (idle): {"program":"loadgen","mode":"idle","ready":C} once all are up, then at the end
{"program":"loadgen","mode":"idle","connections":C,"ready":C,"held_seconds":S,
"closed_by_server":N}. Exits 1 when a connection or its first request failed.
)";

struct Stats {
  kw::bench::LatencyHistogram latency;
  std::array<std::uint64_t, 1000> status{};
  std::uint64_t errors = 0;
  std::uint64_t queued = 0;

  void Merge(const Stats& other) {
    latency.Merge(other.latency);
    for (std::size_t i = 0; i < status.size(); ++i) status[i] += other.status[i];
    errors += other.errors;
    queued += other.queued;
  }
};

// Picks requests by weight with a per-thread generator.
class RequestPicker {
 public:
  RequestPicker(const std::vector<RequestTemplate>& requests, std::uint64_t seed)
      : requests_(requests), random_(seed) {
    for (const RequestTemplate& request : requests) {
      total_ += request.weight;
      cumulative_.push_back(total_);
    }
  }

  const RequestTemplate& Pick() {
    if (requests_.size() == 1) return requests_[0];
    std::uint64_t value = random_() % total_;
    std::size_t i = 0;
    while (cumulative_[i] <= value) ++i;
    return requests_[i];
  }

 private:
  const std::vector<RequestTemplate>& requests_;
  std::vector<std::uint64_t> cumulative_;
  std::uint64_t total_ = 0;
  std::mt19937_64 random_;
};

void ReportError(int& reported, const std::string& what) {
  if (reported < kMaxReportedErrors) std::cerr << "keyward-loadgen: " << what << "\n";
  if (++reported == kMaxReportedErrors) std::cerr << "keyward-loadgen: further errors not shown\n";
}

// Drives the connections of one thread in closed or rate mode. One per thread.
class LoadWorker final : public ConnectionOwner {
 public:
  // `index` of `workers`: in rate mode this worker sends requests index, index + workers, ...
  // of the whole schedule.
  LoadWorker(const LoadgenConfig& config, std::atomic<std::uint64_t>& next_index, std::size_t index,
             std::size_t workers, const std::vector<std::optional<asio::ip::address>>& sources)
      : config_(config),
        next_index_(next_index),
        io_(1),
        picker_(config.requests, index + 1),
        schedule_timer_(io_),
        end_timer_(io_) {
    for (const auto& source : sources) {
      connections_.push_back(std::make_unique<Connection>(*this, io_, source));
    }
    if (config.mode == Mode::kRate) {
      auto total = static_cast<std::uint64_t>(std::llround(config.rate * *config.seconds));
      scheduled_total_ = total / workers + (index < total % workers ? 1 : 0);
      offset_ = static_cast<double>(index) / static_cast<double>(workers);
      interval_ = static_cast<double>(workers) / config.rate;
    }
  }

  // Opens every connection; returns the first failure, or an empty string.
  std::string ConnectAll() {
    for (auto& connection : connections_) connection->Connect();
    io_.run();
    io_.restart();
    return connect_error_;
  }

  // Sends requests until the mode's end; runs on this worker's thread.
  void Run(Clock::time_point start) {
    start_ = start;
    running_ = true;
    if (config_.mode == Mode::kRate) {
      for (auto& connection : connections_) idle_.push_back(connection.get());
      OnScheduleTimer();
    } else {
      active_ = connections_.size();
      for (auto& connection : connections_) OnReady(*connection);
    }
    if (config_.mode == Mode::kClosed && config_.seconds) {
      end_timer_.expires_at(start + Seconds(*config_.seconds));
      end_timer_.async_wait([this](boost::system::error_code error) {
        if (!error) Finish(end_timer_.expiry());
      });
    }
    io_.run();
  }

  const Stats& stats() const { return stats_; }
  Clock::time_point end() const { return end_; }
  const LoadgenConfig& config() const override { return config_; }
  const RequestTemplate& PickRequest() override { return picker_.Pick(); }

  void OnReady(Connection& connection) override {
    if (!running_) return;  // connected during ConnectAll
    if (config_.mode == Mode::kRate) {
      if (queue_.empty()) {
        idle_.push_back(&connection);
        return MaybeFinishSchedule();
      }
      Clock::time_point scheduled = queue_.front();
      queue_.pop_front();
      return Send(connection, scheduled);
    }
    std::uint64_t n = next_index_.fetch_add(1, std::memory_order_relaxed);
    if (config_.count && n >= *config_.count) {
      if (--active_ == 0) Finish(last_completion_);
      return;
    }
    Send(connection, Clock::now(), n);
  }

  void OnResponse(Connection&, int status, Clock::time_point start) override {
    if (finished_) return;
    Clock::time_point now = Clock::now();
    --in_flight_;
    stats_.latency.Record(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - start).count());
    ++stats_.status[status];
    last_completion_ = now;
  }

  void OnFailure(Connection& connection, const std::string& what, bool request_lost) override {
    if (!running_) {
      if (connect_error_.empty()) connect_error_ = what;
      io_.stop();
      return;
    }
    if (finished_) return;
    if (request_lost) --in_flight_;
    ++stats_.errors;
    ReportError(reported_errors_, what);
    connection.Reconnect();
  }

  void OnServerClose(Connection&) override {}

 private:
  static Clock::duration Seconds(double seconds) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  }

  Clock::time_point ScheduledTime(std::uint64_t i) const {
    return start_ + Seconds((static_cast<double>(i) + offset_) * interval_);
  }

  void Send(Connection& connection, Clock::time_point start) {
    Send(connection, start, next_index_.fetch_add(1, std::memory_order_relaxed));
  }

  void Send(Connection& connection, Clock::time_point start, std::uint64_t n) {
    ++in_flight_;
    connection.Send(start, n);
  }

  // Rate mode: sends or queues every request whose scheduled time has come, then sleeps
  // until the next one.
  void OnScheduleTimer() {
    Clock::time_point now = Clock::now();
    while (scheduled_ < scheduled_total_ && ScheduledTime(scheduled_) <= now) {
      Clock::time_point scheduled = ScheduledTime(scheduled_++);
      if (idle_.empty()) {
        queue_.push_back(scheduled);
        ++stats_.queued;
        continue;
      }
      Connection* connection = idle_.back();
      idle_.pop_back();
      Send(*connection, scheduled);
    }
    if (scheduled_ < scheduled_total_) {
      schedule_timer_.expires_at(ScheduledTime(scheduled_));
      schedule_timer_.async_wait([this](boost::system::error_code error) {
        if (!error) OnScheduleTimer();
      });
      return;
    }
    end_timer_.expires_after(kDrainTimeout);
    end_timer_.async_wait([this](boost::system::error_code error) {
      if (error) return;
      std::uint64_t unanswered = in_flight_ + queue_.size();
      std::cerr << "keyward-loadgen: " << unanswered << " requests unanswered "
                << kDrainTimeout.count() << " s after the last was scheduled\n";
      stats_.errors += unanswered;
      Finish(Clock::now());
    });
    MaybeFinishSchedule();
  }

  void MaybeFinishSchedule() {
    if (scheduled_ == scheduled_total_ && queue_.empty() && in_flight_ == 0) {
      Finish(scheduled_total_ == 0 ? start_ : last_completion_);
    }
  }

  // Ends the run at `end`; replies still in flight are not counted.
  void Finish(Clock::time_point end) {
    if (finished_) return;
    finished_ = true;
    end_ = end;
    io_.stop();
  }

  const LoadgenConfig& config_;
  std::atomic<std::uint64_t>& next_index_;  // shared by all workers: the {n} counter
  asio::io_context io_;
  std::vector<std::unique_ptr<Connection>> connections_;
  RequestPicker picker_;
  Stats stats_;
  std::string connect_error_;
  int reported_errors_ = 0;
  bool running_ = false;
  bool finished_ = false;
  Clock::time_point start_;
  Clock::time_point end_;
  Clock::time_point last_completion_;
  std::int64_t in_flight_ = 0;
  std::size_t active_ = 0;  // closed mode: connections not yet out of --count
  // Rate mode.
  asio::steady_timer schedule_timer_;
  asio::steady_timer end_timer_;  // closed: --seconds; rate: the drain timeout
  std::uint64_t scheduled_total_ = 0;
  std::uint64_t scheduled_ = 0;
  double offset_ = 0;    // this worker's first request, in intervals after the start
  double interval_ = 0;  // seconds between this worker's scheduled requests
  std::vector<Connection*> idle_;
  std::deque<Clock::time_point> queue_;
};

// Returns the source address of each connection of `worker` of `workers`, which takes
// connections worker, worker + workers, ... Empty optionals let the kernel pick.
std::vector<std::optional<asio::ip::address>> SourcesOfWorker(const LoadgenConfig& config,
                                                              std::size_t worker,
                                                              std::size_t workers) {
  std::vector<std::optional<asio::ip::address>> sources;
  for (std::size_t i = worker; i < config.connections; i += workers) {
    if (config.sources.empty()) {
      sources.emplace_back();
    } else {
      sources.emplace_back(config.sources[i % config.sources.size()]);
    }
  }
  return sources;
}

double Milliseconds(std::uint64_t nanoseconds) {
  return std::round(static_cast<double>(nanoseconds) / 1000.0) / 1000.0;
}

int RunLoad(const LoadgenConfig& config) {
  std::atomic<std::uint64_t> next_index{0};
  std::vector<std::unique_ptr<LoadWorker>> workers;
  for (std::size_t w = 0; w < config.threads; ++w) {
    workers.push_back(std::make_unique<LoadWorker>(config, next_index, w, config.threads,
                                                   SourcesOfWorker(config, w, config.threads)));
  }
  for (auto& worker : workers) {
    std::string error = worker->ConnectAll();
    if (!error.empty()) {
      std::cerr << "keyward-loadgen: cannot open the connections: " << error << "\n";
      return 1;
    }
  }

  Clock::time_point start = Clock::now();
  std::vector<std::thread> threads;
  for (std::size_t w = 1; w < workers.size(); ++w) {
    threads.emplace_back([&, w] { workers[w]->Run(start); });
  }
  workers[0]->Run(start);
  for (std::thread& thread : threads) thread.join();

  Stats stats;
  Clock::time_point end = start;
  for (auto& worker : workers) {
    stats.Merge(worker->stats());
    end = std::max(end, worker->end());
  }
  double seconds = std::chrono::duration<double>(end - start).count();
  std::uint64_t requests = stats.latency.count();
  nlohmann::ordered_json status = nlohmann::ordered_json::object();
  std::uint64_t not_2xx = 0;
  for (std::size_t code = 0; code < stats.status.size(); ++code) {
    if (stats.status[code] == 0) continue;
    status[std::to_string(code)] = stats.status[code];
    if (code / 100 != 2) not_2xx += stats.status[code];
  }
  nlohmann::ordered_json line = {
      {"program", "loadgen"},
      {"mode", config.mode == Mode::kRate ? "rate" : "closed"},
      {"connections", config.connections},
      {"threads", config.threads},
      {"requests", requests},
      {"seconds", std::round(seconds * 1000) / 1000},
      {"rps", seconds > 0 ? std::round(requests / seconds * 10) / 10 : 0.0},
      {"status", status},
      {"errors", stats.errors},
      {"queued", stats.queued},
      {"latency_ms",
       {{"p50", Milliseconds(stats.latency.Percentile(0.5))},
        {"p90", Milliseconds(stats.latency.Percentile(0.9))},
        {"p99", Milliseconds(stats.latency.Percentile(0.99))},
        {"p999", Milliseconds(stats.latency.Percentile(0.999))},
        {"max", Milliseconds(stats.latency.max())}}},
  };
  if (config.mode == Mode::kRate) line["rate"] = config.rate;
  std::cout << line.dump() << std::endl;
  if (stats.errors > 0 || not_2xx > 0 || requests == 0) {
    std::cerr << "keyward-loadgen: failed: " << stats.errors << " socket or protocol errors, "
              << not_2xx << " replies outside 2xx, " << requests << " replies in all\n";
    return 1;
  }
  return 0;
}

// Idle mode: opens the connections, a bounded number at a time, sends one request on each,
// prints a ready line when every reply is in, then keeps the connections open until a signal or the
// --seconds timer, and reports how many the server closed meanwhile.
class IdleHolder final : public ConnectionOwner {
 public:
  explicit IdleHolder(const LoadgenConfig& config)
      : config_(config), io_(1), picker_(config.requests, 1), signals_(io_), hold_timer_(io_) {
    for (const auto& source : SourcesOfWorker(config, 0, 1)) {
      connections_.push_back(std::make_unique<Connection>(*this, io_, source));
    }
  }

  int Run() {
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.async_wait([this](boost::system::error_code error, int) {
      if (error) return;
      if (!all_up_) return Fail("interrupted before all connections were up");
      Report();
    });
    StartMore();
    io_.run();
    return exit_status_;
  }

  const LoadgenConfig& config() const override { return config_; }
  const RequestTemplate& PickRequest() override { return picker_.Pick(); }

  void OnReady(Connection& connection) override {
    if (connection.responses() == 0) return connection.Send(Clock::now(), started_);
    if (connection.last_status() / 100 != 2) {
      return Fail("the server replied " + std::to_string(connection.last_status()) +
                  " to the request on a new connection");
    }
    ++ready_;
    connection.Watch();
    if (ready_ < connections_.size()) return StartMore();

    all_up_ = true;
    held_since_ = Clock::now();
    nlohmann::ordered_json line = {{"program", "loadgen"}, {"mode", "idle"}, {"ready", ready_}};
    std::cout << line.dump() << std::endl;
    if (config_.seconds) {
      hold_timer_.expires_after(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(*config_.seconds)));
      hold_timer_.async_wait([this](boost::system::error_code error) {
        if (!error) Report();
      });
    }
  }

  void OnResponse(Connection&, int, Clock::time_point) override {}

  void OnFailure(Connection&, const std::string& what, bool) override {
    Fail("a connection failed: " + what);
  }

  void OnServerClose(Connection&) override { ++closed_by_server_; }

 private:
  void StartMore() {
    while (started_ < connections_.size() && started_ - ready_ < kMaxConnecting) {
      connections_[started_++]->Connect();
    }
  }

  void Report() {
    double held = std::chrono::duration<double>(Clock::now() - held_since_).count();
    nlohmann::ordered_json line = {
        {"program", "loadgen"},
        {"mode", "idle"},
        {"connections", connections_.size()},
        {"ready", ready_},
        {"held_seconds", std::round(held * 1000) / 1000},
        {"closed_by_server", closed_by_server_},
    };
    std::cout << line.dump() << std::endl;
    io_.stop();
  }

  void Fail(const std::string& what) {
    std::cerr << "keyward-loadgen: idle: " << what << "; " << ready_ << " of "
              << connections_.size() << " connections were up\n";
    exit_status_ = 1;
    io_.stop();
  }

  const LoadgenConfig& config_;
  asio::io_context io_;
  std::vector<std::unique_ptr<Connection>> connections_;
  RequestPicker picker_;
  asio::signal_set signals_;
  asio::steady_timer hold_timer_;
  std::size_t started_ = 0;
  std::size_t ready_ = 0;
  std::size_t closed_by_server_ = 0;
  bool all_up_ = false;
  Clock::time_point held_since_;
  int exit_status_ = 0;
};

int RunIdle(const LoadgenConfig& config) { return IdleHolder(config).Run(); }

// Raises the soft limit on open files to the hard limit; fails when even that is too low.
void RaiseFileLimit(std::size_t connections) {
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  limit.rlim_cur = limit.rlim_max;
  setrlimit(RLIMIT_NOFILE, &limit);
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < connections + 64) {
    throw std::invalid_argument("--connections " + std::to_string(connections) +
                                " needs more open files than the hard limit of " +
                                std::to_string(limit.rlim_cur) + "; raise it with ulimit -Hn");
  }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    kw::bench::Options options(argc, argv,
                               {"mode", "url", "connections", "threads", "seconds", "count", "rate",
                                "header", "request", "keys", "source-range"});
    if (options.help()) {
      std::cout << kUsage;
      return 0;
    }
    LoadgenConfig config = kw::bench::ParseLoadgenConfig(options);
    RaiseFileLimit(config.connections);
    if (config.mode == Mode::kIdle) return RunIdle(config);
    return RunLoad(config);
  } catch (const std::exception& error) {
    std::cerr << "keyward-loadgen: " << error.what() << "\n";
    return 1;
  }
}
