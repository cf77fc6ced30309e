// One keep-alive HTTP/1.1 client connection for keyward-loadgen, and the interface of the mode
// that drives it. A connection has at most one request in flight and reports every reply and
// failure to its owner.
#pragma once

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "bench/http_response_parser.hpp"
#include "bench/loadgen_config.hpp"

namespace kw::bench {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;
using tcp = asio::ip::tcp;

inline constexpr std::size_t kReadChunk = 4096;
// A reply head longer than this fails the request; bodies of any size are skipped.
inline constexpr std::size_t kMaxResponseHead = 1 << 20;
inline constexpr auto kReconnectDelay = std::chrono::milliseconds(10);

class Connection;

// The callbacks of a connection into the mode that drives it. All calls come from the thread
// that runs the connection's io_context.
class ConnectionOwner {
 public:
  virtual ~ConnectionOwner() = default;
  virtual const LoadgenConfig& config() const = 0;
  virtual const RequestTemplate& PickRequest() = 0;
  // The connection is open and idle: after connecting, and after each keep-alive reply.
  virtual void OnReady(Connection& connection) = 0;
  virtual void OnResponse(Connection& connection, int status, Clock::time_point start) = 0;
  // The connection failed and is closed; `request_lost` when a request was in flight.
  virtual void OnFailure(Connection& connection, const std::string& what, bool request_lost) = 0;
  // Watch() saw the server close the connection.
  virtual void OnServerClose(Connection& connection) = 0;
};

// One keep-alive connection with at most one request in flight. One per owner thread.
class Connection {
 public:
  Connection(ConnectionOwner& owner, asio::io_context& io, std::optional<asio::ip::address> source)
      : owner_(owner), socket_(io), retry_timer_(io), source_(source) {}

  // Opens the socket, binds the source address if any, and connects.
  void Connect() {
    boost::system::error_code error;
    socket_.open(owner_.config().target.protocol(), error);
    if (!error && source_) socket_.bind(tcp::endpoint(*source_, 0), error);
    if (error) {
      asio::post(socket_.get_executor(), [this, error] { Fail("bind: " + error.message()); });
      return;
    }
    socket_.async_connect(owner_.config().target, [this](boost::system::error_code error) {
      if (error) return Fail("connect: " + error.message());
      socket_.set_option(tcp::no_delay(true), error);
      socket_.non_blocking(true, error);
      owner_.OnReady(*this);
    });
  }

  // Connects again after a short delay, so a dead server is not hammered in a loop.
  void Reconnect() {
    retry_timer_.expires_after(kReconnectDelay);
    retry_timer_.async_wait([this](boost::system::error_code error) {
      if (!error) Connect();
    });
  }

  // Sends one request, picked by the owner, with counter value `n`; `start` is the time its
  // latency counts from.
  void Send(Clock::time_point start, std::uint64_t n) {
    const RequestTemplate& request = owner_.PickRequest();
    std::string_view text = request.literals[0];
    if (!request.constant()) {
      request.Build(n, owner_.config().keys, request_);
      text = request_;
    }
    parser_.Reset(request.head);
    start_ = start;
    in_request_ = true;

    // A request fits the socket's send buffer, so one non-blocking send normally writes it
    // without a completion handler; the rest, if any, goes out asynchronously.
    boost::system::error_code error;
    std::size_t written = socket_.write_some(asio::buffer(text.data(), text.size()), error);
    if (error && error != asio::error::would_block) return Fail("send: " + error.message());
    if (written < text.size()) {
      text.remove_prefix(written);
      asio::async_write(socket_, asio::buffer(text.data(), text.size()),
                        [this](boost::system::error_code error, std::size_t) {
                          // The pending read reports the failure.
                          if (error) socket_.close(error);
                        });
    }
    ReadReply();
  }

  // Reads until the server closes the connection; for idle connections.
  void Watch() {
    if (buffer_.empty()) buffer_.resize(kReadChunk);
    socket_.async_read_some(asio::buffer(buffer_.data(), buffer_.size()),
                            [this](boost::system::error_code error, std::size_t) {
                              if (error) return owner_.OnServerClose(*this);
                              Watch();
                            });
  }

  int responses() const { return responses_; }
  int last_status() const { return last_status_; }

 private:
  // Reads the next part of the reply. Asio tries the read at once only when the last read
  // left bytes in the socket. Otherwise it waits for epoll first, which saves a system call.
  void ReadReply() {
    if (buffer_.empty()) buffer_.resize(kReadChunk);
    if (end_ == buffer_.size()) {
      if (buffer_.size() >= kMaxResponseHead) return Fail("response head too large");
      buffer_.resize(buffer_.size() * 2);
    }
    socket_.async_read_some(asio::buffer(buffer_.data() + end_, buffer_.size() - end_),
                            [this](boost::system::error_code error, std::size_t size) {
                              if (error == asio::error::eof) {
                                return Fail("connection closed by the server");
                              }
                              if (error) return Fail("receive: " + error.message());
                              end_ += size;
                              if (ParseReply()) ReadReply();
                            });
  }

  // Parses the buffered bytes; returns true when the reply needs more of them. Reports a
  // complete reply or a failure to the owner.
  bool ParseReply() {
    std::string_view input(buffer_.data(), end_);
    auto result = parser_.Feed(input);
    // Keep the unparsed rest (an incomplete head or chunk-size line) at the buffer's start.
    std::copy(input.begin(), input.end(), buffer_.begin());
    end_ = input.size();
    using Result = HttpResponseParser::Result;
    if (result == Result::kNeedMore) return true;
    if (result == Result::kInvalid) {
      Fail("invalid HTTP response");
      return false;
    }
    if (end_ != 0) {
      Fail("bytes after the response to the one request in flight");
      return false;
    }

    in_request_ = false;
    ++responses_;
    last_status_ = parser_.status();
    owner_.OnResponse(*this, last_status_, start_);
    if (parser_.close()) {
      Close();
      Connect();
    } else {
      owner_.OnReady(*this);
    }
    return false;
  }

  void Fail(const std::string& what) {
    bool lost = in_request_;
    in_request_ = false;
    Close();
    owner_.OnFailure(*this, what, lost);
  }

  void Close() {
    boost::system::error_code ignored;
    socket_.close(ignored);
    end_ = 0;
  }

  ConnectionOwner& owner_;
  tcp::socket socket_;
  asio::steady_timer retry_timer_;
  std::optional<asio::ip::address> source_;
  std::string request_;       // the request text when it has {n} or {k}
  std::vector<char> buffer_;  // unparsed reply bytes in [0, end_)
  std::size_t end_ = 0;
  HttpResponseParser parser_;
  Clock::time_point start_;
  bool in_request_ = false;
  int responses_ = 0;
  int last_status_ = 0;
};

}  // namespace kw::bench
