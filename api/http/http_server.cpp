#include "api/http_server.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/strand.hpp>

#include "api/http/connection.hpp"
#include "api/http/messages.hpp"
#include "api/http/server_state.hpp"
#include "api/http/tls.hpp"
#include "base/log.hpp"

namespace kw::api {

namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;
using detail::ServerState;

// Pause before accepting again after an accept error, so that running out of file descriptors
// does not turn the accept loop into a busy loop.
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(50);
// How long Stop waits for closed connections to finish their handlers before stopping the
// io_context, which destroys whatever is still pending.
constexpr auto kCloseWait = std::chrono::milliseconds(500);
// File descriptors kept free beside max_connections for the listener itself, storage, the HSM
// module, audit sinks and logs. An estimate with room to spare, not a measured count.
constexpr rlim_t kReservedDescriptors = 256;

// Returns the text form of `address`, with IPv4-mapped IPv6 addresses in IPv4 form, so that a
// client counts against one per-address limit whichever way it connected.
std::string AddressText(const net::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return net::ip::make_address_v4(net::ip::v4_mapped, address.to_v6()).to_string();
  }
  return address.to_string();
}

Status ValidateOptions(const ServerOptions& options, const RequestHandler& handler) {
  if (!handler) return InvalidArgument("http server: the request handler is empty");
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return InvalidArgument(
        "http server: set both tls_cert_file and tls_key_file for HTTPS, or neither for HTTP");
  }
  if (!options.tls_client_ca_file.empty() && options.tls_cert_file.empty()) {
    return InvalidArgument("http server: tls_client_ca_file requires tls_cert_file and "
                           "tls_key_file");
  }
  if (options.io_threads == 0 || options.worker_threads == 0) {
    return InvalidArgument("http server: io_threads and worker_threads must be at least 1");
  }
  if (options.max_queued_requests == 0 || options.max_connections == 0 ||
      options.max_connections_per_address == 0) {
    return InvalidArgument("http server: max_queued_requests, max_connections and "
                           "max_connections_per_address must be at least 1");
  }
  if (options.listen_backlog <= 0) {
    return InvalidArgument("http server: listen_backlog must be at least 1, got " +
                           std::to_string(options.listen_backlog));
  }
  return OkStatus();
}

// Raises the soft RLIMIT_NOFILE, up to the hard limit, so that max_connections connections
// fit beside kReservedDescriptors, and warns when they still do not. Once descriptors run
// out, accept fails with EMFILE and leaves every new client waiting in the backlog, so a
// single address could lock everyone out before any connection limit rejects it.
void FitOpenFileLimit(std::size_t max_connections) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return;
  const rlim_t needed = static_cast<rlim_t>(max_connections) + kReservedDescriptors;
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= needed) return;

  const rlim_t before = limit.rlim_cur;
  limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? needed : std::min(needed, limit.rlim_max);
  if (limit.rlim_cur > before) {
    if (::setrlimit(RLIMIT_NOFILE, &limit) == 0) {
      log::Info("http listener: raised the open-file limit to fit max_connections",
                {{"from", before}, {"to", limit.rlim_cur}});
    } else {
      log::Warn("http listener: raising the open-file limit failed",
                {{log::kError, std::strerror(errno)}});
      limit.rlim_cur = before;
    }
  }
  if (limit.rlim_cur < needed) {
    log::Warn("http listener: max_connections does not fit the open-file limit. Lower it or "
              "raise the hard limit (ulimit -Hn, LimitNOFILE in systemd)",
              {{"max_connections", max_connections},
               {"open_file_limit", limit.rlim_cur},
               {"reserved_descriptors", kReservedDescriptors}});
  }
}

Result<tcp::endpoint> ResolveListenEndpoint(net::io_context& io_context,
                                            const ServerOptions& options) {
  error_code error;
  const auto address = net::ip::make_address(options.host, error);
  if (!error) return tcp::endpoint(address, options.port);

  tcp::resolver resolver(io_context);
  const auto results = resolver.resolve(options.host, std::to_string(options.port), error);
  if (error || results.empty()) {
    return InvalidArgument("http server: host " + options.host +
                           " is neither an IP address nor a resolvable name: " + error.message());
  }
  return results.begin()->endpoint();
}

class BeastHttpServer final : public HttpServer {
 public:
  explicit BeastHttpServer(std::shared_ptr<ServerState> state)
      : state_(std::move(state)),
        acceptor_(net::make_strand(io_context_)),
        accept_retry_timer_(acceptor_.get_executor()),
        work_guard_(net::make_work_guard(io_context_)),
        accept_error_log_(std::chrono::seconds(10)) {}

  ~BeastHttpServer() override { Stop(std::chrono::milliseconds(10000)); }

  Status Listen(const tcp::endpoint& endpoint, int backlog) {
    const std::string where = endpoint.address().to_string() + ":" +
                              std::to_string(endpoint.port());
    error_code error;
    acceptor_.open(endpoint.protocol(), error);
    if (!error) acceptor_.set_option(tcp::acceptor::reuse_address(true), error);
    if (!error) acceptor_.bind(endpoint, error);
    if (!error) acceptor_.listen(backlog, error);
    if (error) return Unavailable("http server: listening on " + where + " failed: " +
                                  error.message());
    port_ = acceptor_.local_endpoint(error).port();
    if (error) return Unavailable("http server: reading the bound port failed: " +
                                  error.message());
    return OkStatus();
  }

  void Run() {
    Accept();
    const std::size_t count = state_->options().io_threads;
    running_ = true;
    io_threads_.reserve(count);
    for (std::size_t i = 0; i < count; ++i) {
      io_threads_.emplace_back([this] { RunIoContext(); });
    }
  }

  std::uint16_t port() const override { return port_; }

  void Stop(std::chrono::milliseconds grace) override {
    {
      std::lock_guard lock(stop_mutex_);
      if (stopped_) return;
      stopped_ = true;
    }
    state_->BeginStopping();
    net::post(acceptor_.get_executor(), [this] {
      error_code ignored;
      acceptor_.close(ignored);
      accept_retry_timer_.cancel();
    });

    const auto deadline = std::chrono::steady_clock::now() + grace;
    if (!state_->WaitForNoRequests(deadline)) {
      log::Warn("http listener: requests still running after the stop grace period",
                {{"grace_ms", grace.count()}});
    }
    // NOTE: joining the workers waits for handlers that are still running, even past the grace
    // period, because a thread that runs a handler cannot be abandoned safely.
    state_->pool().Stop();

    for (const auto& connection : state_->LiveConnections()) connection->Close();
    const auto close_deadline = std::chrono::steady_clock::now() + kCloseWait;
    while (state_->connection_count() > 0 && std::chrono::steady_clock::now() < close_deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    work_guard_.reset();
    io_context_.stop();
    for (auto& thread : io_threads_) {
      if (thread.joinable()) thread.join();
    }
    if (running_) log::Info("http listener stopped", {{"port", port_}});
  }

 private:
  void RunIoContext() {
    for (;;) {
      try {
        io_context_.run();
        return;
      } catch (const std::exception& e) {
        log::Error("http listener: an I/O handler threw an exception", {{log::kError, e.what()}});
      }
    }
  }

  void Accept() {
    acceptor_.async_accept(net::make_strand(io_context_),
                           [this](const error_code& error, auto socket) {
                             OnAccept(error, tcp::socket(std::move(socket)));
                           });
  }

  void OnAccept(const error_code& error, tcp::socket socket) {
    if (error == net::error::operation_aborted || !acceptor_.is_open() || state_->stopping()) {
      return;
    }
    if (error) {
      accept_error_log_.Warn("http listener: accepting a connection failed",
                             {{log::kError, error.message()}});
      accept_retry_timer_.expires_after(kAcceptRetryDelay);
      accept_retry_timer_.async_wait([this](const error_code& wait_error) {
        if (!wait_error && acceptor_.is_open()) Accept();
      });
      return;
    }

    error_code ignored;
    const tcp::endpoint remote = socket.remote_endpoint(ignored);
    if (!ignored) {
      socket.set_option(tcp::no_delay(true), ignored);
      std::string address = AddressText(remote.address());
      if (state_->TryAcquireConnectionSlot(address)) {
        StartConnection(std::move(socket), std::move(address), remote.port());
      } else {
        state_->rejection_log().Warn(
            "http listener: connection rejected because a connection limit is reached",
            {{log::kAddress, address},
             {"max_connections", state_->options().max_connections},
             {"max_connections_per_address", state_->options().max_connections_per_address}});
        RejectConnection(socket);
      }
    }
    Accept();
  }

  // Creates and starts a connection. An exception here (such as SSL_new failing for lack of
  // memory) must not escape, because the accept loop would then stop.
  void StartConnection(tcp::socket socket, std::string address, std::uint16_t port) {
    std::shared_ptr<detail::ConnectionBase> connection;
    try {
      connection = detail::MakeConnection(state_, std::move(socket), address, port);
    } catch (const std::exception& e) {
      // No connection object exists to release the slot when destroyed.
      state_->ReleaseConnectionSlot(address);
      accept_error_log_.Warn("http listener: setting up a connection failed",
                             {{log::kAddress, address}, {log::kError, e.what()}});
      return;
    }
    try {
      connection->Start();
    } catch (const std::exception& e) {
      accept_error_log_.Warn("http listener: starting a connection failed",
                             {{log::kAddress, address}, {log::kError, e.what()}});
    }
  }

  // Sends a best-effort 503 on plain HTTP (a fresh socket's send buffer takes it whole without
  // blocking), then closes. A TLS connection is closed without a response.
  void RejectConnection(tcp::socket& socket) {
    error_code ignored;
    if (state_->tls_context() == nullptr) {
      static const std::string kBusyResponse = [] {
        const std::string body =
            detail::ErrorBody("server busy: too many open connections, retry later");
        return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
               "Content-Length: " +
               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
      }();
      socket.non_blocking(true, ignored);
      socket.send(net::buffer(kBusyResponse), 0, ignored);
      socket.shutdown(tcp::socket::shutdown_send, ignored);
    }
    socket.close(ignored);
  }

  const std::shared_ptr<ServerState> state_;  // declared first: outlives the io_context
  net::io_context io_context_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_timer_;  // runs on the acceptor's strand
  // Keeps run() going while a handler runs on a worker and no I/O is pending, such as during
  // Stop, after the acceptor closed.
  net::executor_work_guard<net::io_context::executor_type> work_guard_;
  detail::RateLimitedLog accept_error_log_;
  std::vector<std::thread> io_threads_;
  std::uint16_t port_ = 0;
  bool running_ = false;  // set by Run before any I/O thread starts

  std::mutex stop_mutex_;
  bool stopped_ = false;  // guarded by stop_mutex_
};

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(const ServerOptions& options,
                                                      RequestHandler handler) {
  KW_RETURN_IF_ERROR(ValidateOptions(options, handler));
  FitOpenFileLimit(options.max_connections);

  std::unique_ptr<net::ssl::context> tls_context;
  if (!options.tls_cert_file.empty()) {
    KW_ASSIGN_OR_RETURN(tls_context, detail::MakeTlsContext(options));
  }

  net::io_context resolver_context;
  KW_ASSIGN_OR_RETURN(const tcp::endpoint endpoint,
                      ResolveListenEndpoint(resolver_context, options));

  const bool tls = tls_context != nullptr;
  auto state = std::make_shared<ServerState>(options, std::move(handler), std::move(tls_context));
  auto server = std::make_unique<BeastHttpServer>(std::move(state));
  KW_RETURN_IF_ERROR(server->Listen(endpoint, options.listen_backlog));
  server->Run();
  log::Info("http listener started", {{log::kAddress, endpoint.address().to_string()},
                                      {"port", server->port()},
                                      {"tls", tls},
                                      {"client_ca", !options.tls_client_ca_file.empty()}});
  return std::unique_ptr<HttpServer>(std::move(server));
}

}  // namespace kw::api
