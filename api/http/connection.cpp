#include "api/http/connection.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <exception>
#include <iterator>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

// GCC 12 with -fsanitize=address reports a false maybe-uninitialized warning for the
// boost::optional in Beast 1.74's basic_parser, which the build turns into an error. Clang has
// no such warning and rejects the unknown name under -Werror.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/asio/post.hpp>
#include <boost/core/demangle.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "api/http/messages.hpp"
#include "api/http/tls.hpp"
#include "base/log.hpp"
#include "base/secret_buffer.hpp"

namespace kw::api::detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

// Bytes read while waiting for the first byte of the next keep-alive request.
constexpr std::size_t kIdleReadBytes = 4096;
// After an error response that closes the connection, the server reads and discards what the
// client still sends for this long or this many bytes before closing. Closing a socket with
// unread data sends a TCP reset, which can destroy the response before the client reads it.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr std::size_t kMaxLingerBytes = 1024 * 1024;
constexpr std::size_t kLingerReadBytes = 16 * 1024;
constexpr std::size_t kReadBufferSlack = 64 * 1024;
constexpr std::string_view kContinueResponse = "HTTP/1.1 100 Continue\r\n\r\n";
// Maximum header fields in a request; 431 beyond. Ordinary clients send far fewer. They are
// counted after the head is parsed, which max_header_bytes has already bounded in size.
constexpr std::size_t kMaxHeaderFields = 100;

template <class Stream>
constexpr bool kIsTls = !std::is_same_v<Stream, tcp::socket>;

bool IsHttpParseError(const error_code& error) {
  return error.category() == http::make_error_code(http::error::bad_method).category() &&
         error != http::error::end_of_stream && error != http::error::partial_message;
}

template <class Stream>
class Connection final : public ConnectionBase {
 public:
  Connection(std::shared_ptr<ServerState> state, tcp::socket socket, std::string remote_address,
             std::uint16_t remote_port)
      : state_(std::move(state)),
        options_(state_->options()),
        stream_(MakeStream(std::move(socket), *state_)),
        timer_(stream_.get_executor()),
        remote_address_(std::move(remote_address)),
        remote_port_(remote_port) {
    // Bounds what a chunk-size line, chunk extension or trailer can make the buffer hold:
    // Beast keeps such a line in the buffer until it ends, and the body limit does not count it.
    buffer_.max_size(options_.max_header_bytes + kReadBufferSlack);
  }

  ~Connection() override {
    WipeReadState();
    if (in_flight_) state_->EndRequest();
    state_->Unregister(this);
    state_->ReleaseConnectionSlot(remote_address_);
  }

  void Start() override {
    state_->Register(shared_from_this());
    net::post(stream_.get_executor(), [self = Self()] { self->Begin(); });
  }

  void Close() override {
    net::post(stream_.get_executor(), [self = Self()] { self->CloseNow(); });
  }

 private:
  static Stream MakeStream(tcp::socket socket, ServerState& state) {
    if constexpr (kIsTls<Stream>) {
      return Stream(std::move(socket), *state.tls_context());
    } else {
      return socket;
    }
  }

  std::shared_ptr<Connection> Self() {
    return std::static_pointer_cast<Connection>(shared_from_this());
  }

  tcp::socket& socket() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    if (closed_) return;
    if (state_->stopping()) {
      CloseNow();
      return;
    }
    if constexpr (kIsTls<Stream>) {
      ArmTimer(options_.handshake_timeout);
      stream_.async_handshake(ssl::stream_base::server,
                              [self = Self()](const error_code& error) {
                                self->OnHandshake(error);
                              });
    } else {
      StartRequest(/*after_response=*/false);
    }
  }

  void OnHandshake(const error_code& error) {
    const bool timed_out = timed_out_;
    CancelTimer();
    if (closed_) return;
    if (error) {
      const std::string reason = timed_out ? std::string("timed out") : error.message();
      log::Debug("TLS handshake failed", {{log::kAddress, remote_address_}, {log::kError, reason}});
      CloseNow();
      return;
    }
    if constexpr (kIsTls<Stream>) {
      client_certificate_der_ = VerifiedPeerCertificateDer(stream_.native_handle());
      client_certificate_chain_ = PeerCertificateChainDer(stream_.native_handle());
    }
    StartRequest(/*after_response=*/false);
  }

  // Reads the next request. After a response on a keep-alive connection, idle_timeout bounds
  // the wait for its first byte. request_timeout bounds the request itself, from that first
  // byte (or from the start of a new connection) to the end of its body.
  void StartRequest(bool after_response) {
    if (closed_) return;
    if (state_->stopping()) {
      CloseNow();
      return;
    }
    version_ = 11;
    head_request_ = false;
    keep_alive_ = true;
    parser_.emplace();
    const std::size_t header_limit =
        std::min<std::size_t>(options_.max_header_bytes, std::numeric_limits<std::uint32_t>::max());
    parser_->header_limit(static_cast<std::uint32_t>(header_limit));
    parser_->body_limit(static_cast<std::uint64_t>(options_.max_body_bytes));

    if (after_response && buffer_.size() == 0) {
      ArmTimer(options_.idle_timeout);
      stream_.async_read_some(buffer_.prepare(kIdleReadBytes),
                              [self = Self()](const error_code& error, std::size_t bytes) {
                                self->OnIdleRead(error, bytes);
                              });
      return;
    }
    ArmTimer(options_.request_timeout);
    ReadHeader();
  }

  void OnIdleRead(const error_code& error, std::size_t bytes) {
    if (closed_) return;
    if (error) {
      // An idle timeout, a clean close or a reset: there is no request to respond to.
      CloseNow();
      return;
    }
    buffer_.commit(bytes);
    ArmTimer(options_.request_timeout);
    ReadHeader();
  }

  void ReadHeader() {
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = Self()](const error_code& error, std::size_t) {
                              self->OnHeader(error);
                            });
  }

  void OnHeader(const error_code& error) {
    if (closed_) return;
    if (error) {
      OnReadError(error);
      return;
    }
    const auto& message = parser_->get();
    version_ = message.version();
    if (message.target().size() > options_.max_url_bytes) {
      SendError(414, UrlTooLongMessage());
      return;
    }
    if (const std::size_t fields = std::distance(message.begin(), message.end());
        fields > kMaxHeaderFields) {
      SendError(431, "request header too large: " + std::to_string(fields) +
                         " header fields, the limit is " + std::to_string(kMaxHeaderFields));
      return;
    }
    // RFC 9110 lets a server accept repeated identical Content-Length values, as Beast does.
    // They are rejected here because a proxy in front may frame such a request differently.
    if (message.count(http::field::content_length) > 1 ||
        message[http::field::content_length].find(',') != beast::string_view::npos) {
      SendError(400, "invalid HTTP request: more than one Content-Length value");
      return;
    }
    // Two credentials in one request: the server would use the first, a proxy or log in front
    // might use the other. Neither value is quoted.
    if (message.count("X-Vault-Token") > 1 || message.count(http::field::authorization) > 1) {
      SendError(400, "invalid HTTP request: more than one X-Vault-Token or Authorization "
                     "header; send the token once");
      return;
    }
    // RFC 9112, section 6.3: a request whose Transfer-Encoding does not end in chunked cannot
    // be framed. Codings before chunked are rejected too, as Go's net/http (which Vault uses)
    // accepts only a single "chunked", because a proxy in front may read "gzip, chunked" or
    // two Transfer-Encoding fields differently. Beast already rejects Content-Length together
    // with Transfer-Encoding.
    if (message.count(http::field::transfer_encoding) > 0 && !IsChunkedOnly(message)) {
      SendError(400, "invalid HTTP request: Transfer-Encoding must be exactly \"chunked\"");
      return;
    }
    if (options_.head_check) {
      HttpRequest head = ToHttpRequestHead(message);
      head.remote_address = remote_address_;
      head.remote_port = remote_port_;
      head.tls = kIsTls<Stream>;
      std::optional<HttpResponse> early = options_.head_check(head);
      if (early) {
        head_request_ = message.method() == http::verb::head;
        WipeReadState();
        WriteResponse(std::move(*early), /*close=*/true);
        return;
      }
    }
    if (!parser_->is_done() && ExpectsContinue(message)) {
      net::async_write(stream_, net::buffer(kContinueResponse.data(), kContinueResponse.size()),
                       [self = Self()](const error_code& write_error, std::size_t) {
                         if (write_error) {
                           self->OnReadError(write_error);
                           return;
                         }
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  static bool IsChunkedOnly(const BeastRequest& message) {
    if (message.count(http::field::transfer_encoding) != 1) return false;
    return beast::iequals(message[http::field::transfer_encoding], "chunked");
  }

  static bool ExpectsContinue(const BeastRequest& message) {
    auto expect = message.find(http::field::expect);
    return message.version() >= 11 && expect != message.end() &&
           beast::iequals(expect->value(), "100-continue");
  }

  void ReadBody() {
    if (closed_) return;
    if (parser_->is_done()) {
      OnRequestRead();
      return;
    }
    http::async_read(stream_, buffer_, *parser_,
                     [self = Self()](const error_code& error, std::size_t) {
                       if (self->closed_) return;
                       if (error) {
                         self->OnReadError(error);
                         return;
                       }
                       self->OnRequestRead();
                     });
  }

  void OnReadError(const error_code& error) {
    if (closed_) return;
    const bool timed_out = timed_out_;
    CancelTimer();
    if (timed_out) {
      if (ReceivedPartOfRequest()) {
        SendError(408, "request timed out: the whole request must arrive within " +
                           std::to_string(options_.request_timeout.count()) + " ms");
      } else {
        CloseNow();
      }
      return;
    }
    if (error == http::error::header_limit) {
      if (RequestLineExceedsUrlLimit()) {
        SendError(414, UrlTooLongMessage());
      } else {
        SendError(431, "request header too large: the limit is " +
                           std::to_string(options_.max_header_bytes) +
                           " bytes for the request line and headers");
      }
      return;
    }
    if (error == http::error::body_limit) {
      SendError(413, "request body too large: the limit is " +
                         std::to_string(options_.max_body_bytes) + " bytes");
      return;
    }
    if (error == http::error::buffer_overflow) {
      SendError(400, "invalid HTTP request: a chunk-size line, chunk extension or trailer is "
                     "longer than " + std::to_string(options_.max_header_bytes) + " bytes");
      return;
    }
    if (IsHttpParseError(error)) {
      SendError(400, "invalid HTTP request: " + error.message());
      return;
    }
    // The client closed or reset the connection, or the server is closing it.
    CloseNow();
  }

  bool ReceivedPartOfRequest() const {
    return buffer_.size() > 0 || (parser_.has_value() && parser_->got_some());
  }

  std::string UrlTooLongMessage() const {
    return "request URL too long: the limit is " + std::to_string(options_.max_url_bytes) +
           " bytes";
  }

  // After a header_limit error the parser has consumed nothing, so the buffer still starts with
  // the request line. Returns true when its target alone is over max_url_bytes.
  bool RequestLineExceedsUrlLimit() const {
    // Beast parses the request line as soon as it is complete and consumes it from the
    // buffer, so once the parser has a target the buffer holds header fields, not the line.
    if (parser_.has_value() && !parser_->get().target().empty()) {
      return parser_->get().target().size() > options_.max_url_bytes;
    }
    const auto data = buffer_.data();
    const std::string_view received(static_cast<const char*>(data.data()), data.size());
    const std::size_t line_end = received.find('\n');
    std::string_view line = received.substr(0, line_end);
    const std::size_t target_start = line.find(' ');
    if (target_start == std::string_view::npos) return false;
    std::string_view target = line.substr(target_start + 1);
    if (line_end != std::string_view::npos) {
      // The line is complete: drop the " HTTP/1.1\r" after the target.
      target = target.substr(0, target.rfind(' '));
    }
    return target.size() > options_.max_url_bytes;
  }

  void OnRequestRead() {
    CancelTimer();
    auto& message = parser_->get();
    keep_alive_ = message.keep_alive();
    version_ = message.version();
    head_request_ = message.method() == http::verb::head;
    request_.emplace(ToHttpRequest(message));
    parser_.reset();
    request_->remote_address = remote_address_;
    request_->remote_port = remote_port_;
    request_->tls = kIsTls<Stream>;
    request_->client_certificate_der = client_certificate_der_;
    request_->client_certificate_chain = client_certificate_chain_;

    state_->BeginRequest();
    in_flight_ = true;
    if (state_->stopping()) {
      request_.reset();
      SendError(503, "server shutting down: retry the request", /*close=*/true);
      return;
    }
    if (!state_->pool().TrySubmit([self = Self()] { self->RunHandler(); })) {
      request_.reset();
      state_->rejection_log().Warn(
          "request rejected because the worker queue is full",
          {{"max_queued_requests", options_.max_queued_requests},
           {log::kAddress, remote_address_}});
      SendError(503, "server busy: too many queued requests, retry later", /*close=*/false);
    }
  }

  // Runs on a worker thread. The I/O side does not touch request_ until the posted
  // WriteResponse runs.
  void RunHandler() {
    HttpResponse response;
    try {
      response = state_->handler()(*request_);
    } catch (const std::exception& e) {
      // The message is not logged because it may quote request data (nlohmann::json's
      // parse_error does), which may be a secret.
      log::Error("request handler threw an exception",
                 {{"exception_type", boost::core::demangle(typeid(e).name())}});
      WipeString(response.body);
      response = MakeErrorResponse(500, "internal error");
    } catch (...) {
      log::Error("request handler threw an exception", {{"exception_type", "unknown"}});
      WipeString(response.body);
      response = MakeErrorResponse(500, "internal error");
    }
    request_.reset();
    net::post(stream_.get_executor(),
              [self = Self(), response = std::move(response)]() mutable {
                self->WriteResponse(std::move(response), /*close=*/false);
              });
  }

  void SendError(int status, const std::string& message, bool close = true) {
    // A connection that stays open keeps its buffer, which may hold the next request.
    if (close) WipeReadState();
    WriteResponse(MakeErrorResponse(status, message), close);
  }

  // NOTE: the write is bounded by request_timeout too, as ServerOptions has no write timeout.
  void WriteResponse(HttpResponse&& response, bool close) {
    if (closed_) {
      WipeString(response.body);
      EndInFlight();
      return;
    }
    bool keep_alive = keep_alive_ && !close && !state_->stopping();
    try {
      response_.emplace(ToBeastResponse(std::move(response), version_, head_request_, keep_alive));
    } catch (const std::exception& e) {
      log::Error("building the HTTP response failed", {{log::kError, e.what()}});
      WipeString(response.body);
      keep_alive = false;
      response_.emplace(ToBeastResponse(MakeErrorResponse(500, "internal error"), version_,
                                        head_request_, keep_alive));
    }
    close_after_write_ = !keep_alive;
    ArmTimer(options_.request_timeout);
    http::async_write(stream_, *response_,
                      [self = Self()](const error_code& error, std::size_t) {
                        self->OnWrite(error);
                      });
  }

  void OnWrite(const error_code& error) {
    CancelTimer();
    if (response_.has_value()) {
      WipeString(response_->body());
      response_.reset();
    }
    EndInFlight();
    if (closed_) return;
    if (error) {
      CloseNow();
      return;
    }
    if (close_after_write_) {
      LingeringClose();
      return;
    }
    StartRequest(/*after_response=*/true);
  }

  void EndInFlight() {
    if (!in_flight_) return;
    in_flight_ = false;
    state_->EndRequest();
  }

  // Sends FIN, then discards what the client still sends until it closes, kLingerTime passes
  // or kMaxLingerBytes arrive.
  void LingeringClose() {
    error_code error;
    socket().shutdown(tcp::socket::shutdown_send, error);
    if (error || state_->stopping()) {
      CloseNow();
      return;
    }
    ArmTimer(kLingerTime);
    linger_buffer_.resize(kLingerReadBytes);
    linger_bytes_ = 0;
    Discard();
  }

  void Discard() {
    socket().async_read_some(net::buffer(linger_buffer_),
                             [self = Self()](const error_code& error, std::size_t bytes) {
                               self->linger_bytes_ += bytes;
                               if (error || self->linger_bytes_ >= kMaxLingerBytes) {
                                 self->CloseNow();
                                 return;
                               }
                               self->Discard();
                             });
  }

  void CloseNow() {
    if (closed_) return;
    closed_ = true;
    CancelTimer();
    WipeReadState();
    error_code ignored;
    socket().shutdown(tcp::socket::shutdown_both, ignored);
    socket().close(ignored);
  }

  // Wipes request bytes that are no longer needed: a partly read body and the read buffer.
  void WipeReadState() {
    if (parser_.has_value()) WipeString(parser_->get().body());
    if (buffer_.size() > 0) {
      auto data = buffer_.data();
      sodium_memzero(data.data(), data.size());
      buffer_.consume(buffer_.size());
    }
  }

  // Bounds the next operations by `timeout`: when it passes, pending socket operations are
  // cancelled and complete with operation_aborted while timed_out_ is set.
  void ArmTimer(std::chrono::steady_clock::duration timeout) {
    timed_out_ = false;
    timer_.expires_after(timeout);
    timer_.async_wait([self = Self(), generation = ++timer_generation_](const error_code& error) {
      if (error || generation != self->timer_generation_ || self->closed_) return;
      self->timed_out_ = true;
      error_code ignored;
      self->socket().cancel(ignored);
    });
  }

  void CancelTimer() {
    ++timer_generation_;
    timer_.cancel();
  }

  const std::shared_ptr<ServerState> state_;
  const ServerOptions& options_;  // owned by state_
  Stream stream_;
  net::steady_timer timer_;
  const std::string remote_address_;
  const std::uint16_t remote_port_;
  std::optional<std::string> client_certificate_der_;
  std::vector<std::string> client_certificate_chain_;

  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::optional<HttpRequest> request_;  // owned by the worker while the handler runs
  std::optional<BeastResponse> response_;
  std::vector<char> linger_buffer_;
  std::size_t linger_bytes_ = 0;

  std::uint64_t timer_generation_ = 0;
  bool timed_out_ = false;
  bool closed_ = false;
  bool in_flight_ = false;
  bool keep_alive_ = true;
  bool close_after_write_ = false;
  bool head_request_ = false;
  unsigned version_ = 11;
};

}  // namespace

std::shared_ptr<ConnectionBase> MakeConnection(std::shared_ptr<ServerState> state,
                                               tcp::socket socket, std::string remote_address,
                                               std::uint16_t remote_port) {
  if (state->tls_context() != nullptr) {
    return std::make_shared<Connection<ssl::stream<tcp::socket>>>(
        std::move(state), std::move(socket), std::move(remote_address), remote_port);
  }
  return std::make_shared<Connection<tcp::socket>>(std::move(state), std::move(socket),
                                                   std::move(remote_address), remote_port);
}

}  // namespace kw::api::detail
