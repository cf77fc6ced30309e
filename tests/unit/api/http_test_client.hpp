#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "api/http_server.hpp"

// Helpers for the HTTP listener tests: a raw TCP client for requests that a normal client
// library would refuse to send, and a server started on a free loopback port.
namespace kw::api::testing {

// A blocking TCP client socket on 127.0.0.1. Sends never raise SIGPIPE; every wait is bounded.
class RawClient {
 public:
  // Connects to 127.0.0.1:`port`; connected() is false when that failed.
  explicit RawClient(std::uint16_t port);
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Sends all of `data`. Returns false when the connection failed or a send blocked for 5 s.
  bool Send(std::string_view data);

  // Returns true when data (or the end of the stream) can be read within `timeout`.
  bool WaitReadable(std::chrono::milliseconds timeout);

  // Reads one response: the head and a Content-Length body (none for HEAD or 1xx). Returns what
  // arrived before `timeout`, the peer's close or an error; empty when nothing arrived.
  std::string ReadResponse(std::chrono::milliseconds timeout, bool head_request = false);

  // Reads and discards until the peer closes. Returns false when it stays open for `timeout`.
  bool WaitClosed(std::chrono::milliseconds timeout);

  void Close();

 private:
  int fd_ = -1;
  std::string pending_;  // bytes read past the last response
};

// Returns the status code of a raw response, or 0 when it has no status line.
int StatusOf(std::string_view response);

// Returns the body of a raw response (after the blank line).
std::string BodyOf(std::string_view response);

// Returns the value of header `name` (case-insensitive) in a raw response, or "".
std::string HeaderOf(std::string_view response, std::string_view name);

// Redirects this process's stderr (where kw::log writes) to a temporary file until Finish.
class StderrCapture {
 public:
  StderrCapture();
  ~StderrCapture();
  StderrCapture(const StderrCapture&) = delete;
  StderrCapture& operator=(const StderrCapture&) = delete;

  // Restores stderr and returns what was written to it meanwhile.
  std::string Finish();

 private:
  int saved_fd_ = -1;
  std::string path_;
};

// Returns the resident set size of this process, from VmRSS in /proc/self/status.
std::size_t ResidentMemoryBytes();

// Options for tests: 127.0.0.1, a free port, two I/O and two worker threads.
ServerOptions TestOptions();

// Returns a handler that responds 200 with a JSON echo of the request: method, target, body,
// remote_address, remote_port, tls, client_certificate_der (hex, or null) and headers.
RequestHandler EchoHandler();

// Starts a server and REQUIREs success.
std::unique_ptr<HttpServer> StartServer(const ServerOptions& options, RequestHandler handler);

}  // namespace kw::api::testing
