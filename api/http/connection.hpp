#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <boost/asio/ip/tcp.hpp>

#include "api/http/server_state.hpp"

namespace kw::api::detail {

// One accepted client connection. Every member runs on the connection's strand (the executor
// of its socket); the handler alone runs on a worker thread. Owned by the asynchronous
// operations in progress and by a queued worker task; destroying it releases its connection
// slot.
class ConnectionBase : public std::enable_shared_from_this<ConnectionBase> {
 public:
  virtual ~ConnectionBase() = default;

  // Starts the TLS handshake or the first request read. Call once, from any thread.
  virtual void Start() = 0;

  // Cancels every pending operation and closes the socket. Callable from any thread.
  virtual void Close() = 0;
};

// Creates a connection for `socket`, whose executor must be a strand. `remote_address` must
// already hold a slot from ServerState::TryAcquireConnectionSlot; the connection releases it
// when destroyed. Serves TLS when the state has a TLS context.
std::shared_ptr<ConnectionBase> MakeConnection(std::shared_ptr<ServerState> state,
                                               boost::asio::ip::tcp::socket socket,
                                               std::string remote_address,
                                               std::uint16_t remote_port);

}  // namespace kw::api::detail
