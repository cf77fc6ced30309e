#include "api/http/server_state.hpp"

#include <utility>

#include "api/http/connection.hpp"
#include "base/log.hpp"

namespace kw::api::detail {

void RateLimitedLog::Warn(std::string_view message, nlohmann::json fields) {
  std::size_t suppressed = 0;
  {
    std::lock_guard lock(mutex_);
    const auto now = std::chrono::steady_clock::now();
    if (written_ && now - last_written_ < interval_) {
      ++suppressed_;
      return;
    }
    written_ = true;
    last_written_ = now;
    suppressed = std::exchange(suppressed_, 0);
  }
  fields["suppressed"] = suppressed;
  log::Warn(message, std::move(fields));
}

ServerState::ServerState(const ServerOptions& options, RequestHandler handler,
                         std::unique_ptr<boost::asio::ssl::context> tls_context)
    : options_(options),
      handler_(std::move(handler)),
      tls_context_(std::move(tls_context)),
      pool_(options.worker_threads, options.max_queued_requests) {}

bool ServerState::TryAcquireConnectionSlot(const std::string& address) {
  std::lock_guard lock(mutex_);
  if (connection_slots_ >= options_.max_connections) return false;
  std::size_t& per_address = slots_by_address_[address];
  if (per_address >= options_.max_connections_per_address) {
    if (per_address == 0) slots_by_address_.erase(address);
    return false;
  }
  ++per_address;
  ++connection_slots_;
  return true;
}

void ServerState::ReleaseConnectionSlot(const std::string& address) {
  std::lock_guard lock(mutex_);
  auto it = slots_by_address_.find(address);
  if (it == slots_by_address_.end()) return;
  --connection_slots_;
  if (--it->second == 0) slots_by_address_.erase(it);
}

void ServerState::Register(const std::shared_ptr<ConnectionBase>& connection) {
  std::lock_guard lock(mutex_);
  connections_.emplace(connection.get(), connection);
}

void ServerState::Unregister(const ConnectionBase* connection) {
  std::lock_guard lock(mutex_);
  connections_.erase(connection);
}

std::vector<std::shared_ptr<ConnectionBase>> ServerState::LiveConnections() {
  std::vector<std::shared_ptr<ConnectionBase>> live;
  std::lock_guard lock(mutex_);
  live.reserve(connections_.size());
  for (const auto& [key, weak] : connections_) {
    if (auto connection = weak.lock()) live.push_back(std::move(connection));
  }
  return live;
}

std::size_t ServerState::connection_count() {
  std::lock_guard lock(mutex_);
  return connections_.size();
}

void ServerState::BeginRequest() {
  std::lock_guard lock(mutex_);
  ++requests_in_flight_;
}

void ServerState::EndRequest() {
  {
    std::lock_guard lock(mutex_);
    --requests_in_flight_;
  }
  no_requests_.notify_all();
}

bool ServerState::WaitForNoRequests(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mutex_);
  return no_requests_.wait_until(lock, deadline, [this] { return requests_in_flight_ == 0; });
}

}  // namespace kw::api::detail
