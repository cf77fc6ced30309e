#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/ssl/context.hpp>
#include <nlohmann/json.hpp>

#include "api/http/worker_pool.hpp"
#include "api/http_server.hpp"

namespace kw::api::detail {

// Logs a repeated warning at most once per interval and counts the lines it skipped.
// Thread-safe.
class RateLimitedLog {
 public:
  explicit RateLimitedLog(std::chrono::seconds interval) : interval_(interval) {}

  // Writes `message` with `fields` and a "suppressed" count, or only counts it when the last
  // line was written less than the interval ago.
  void Warn(std::string_view message, nlohmann::json fields);

 private:
  const std::chrono::seconds interval_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point last_written_;  // guarded by mutex_
  bool written_ = false;                                // guarded by mutex_
  std::size_t suppressed_ = 0;                          // guarded by mutex_
};

class ConnectionBase;

// The state that the acceptor, every connection and the worker pool share. The server and
// each connection own it through shared_ptr, so it outlives the last connection even when
// pending I/O handlers are destroyed with the io_context. Thread-safe.
class ServerState {
 public:
  ServerState(const ServerOptions& options, RequestHandler handler,
              std::unique_ptr<boost::asio::ssl::context> tls_context);

  const ServerOptions& options() const { return options_; }
  const RequestHandler& handler() const { return handler_; }
  // The TLS context, or null when serving plain HTTP.
  boost::asio::ssl::context* tls_context() const { return tls_context_.get(); }
  WorkerPool& pool() { return pool_; }
  RateLimitedLog& rejection_log() { return rejection_log_; }

  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  void BeginStopping() { stopping_.store(true, std::memory_order_release); }

  // Counts a connection from `address` against max_connections and
  // max_connections_per_address. Returns false, counting nothing, when either limit is reached.
  bool TryAcquireConnectionSlot(const std::string& address);
  void ReleaseConnectionSlot(const std::string& address);

  // Tracks live connections so that Stop can close them.
  void Register(const std::shared_ptr<ConnectionBase>& connection);
  void Unregister(const ConnectionBase* connection);
  std::vector<std::shared_ptr<ConnectionBase>> LiveConnections();
  std::size_t connection_count();

  // Counts requests between dispatch to the worker pool and the end of the response write.
  void BeginRequest();
  void EndRequest();
  // Waits until no request is in flight or `deadline` passes; returns true when none is.
  bool WaitForNoRequests(std::chrono::steady_clock::time_point deadline);

 private:
  const ServerOptions options_;
  const RequestHandler handler_;
  const std::unique_ptr<boost::asio::ssl::context> tls_context_;
  WorkerPool pool_;
  RateLimitedLog rejection_log_{std::chrono::seconds(10)};
  std::atomic<bool> stopping_{false};

  std::mutex mutex_;
  std::size_t connection_slots_ = 0;                               // guarded by mutex_
  std::unordered_map<std::string, std::size_t> slots_by_address_;  // guarded by mutex_
  std::unordered_map<const ConnectionBase*, std::weak_ptr<ConnectionBase>>
      connections_;                    // guarded by mutex_
  std::size_t requests_in_flight_ = 0;  // guarded by mutex_
  std::condition_variable no_requests_;
};

}  // namespace kw::api::detail
