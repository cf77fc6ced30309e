#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"

namespace kw::api {

// One HTTP request, decoupled from the HTTP library. The body may hold secrets: it is wiped
// when the request is destroyed.
struct HttpRequest {
  std::string method;  // as received, such as "GET" or "LIST"
  std::string target;  // the raw request-target: path and query, still percent-encoded
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-case
  std::string body;
  std::string remote_address;  // the peer's IP address
  std::uint16_t remote_port = 0;
  bool tls = false;
  // The verified client certificate (DER), when TLS with a client certificate was used.
  std::optional<std::string> client_certificate_der;
  // Every certificate the client presented in the TLS handshake, leaf first, DER; empty when
  // it sent none. Not verified against any CA (the handshake proved the client holds the
  // leaf's key), so whoever uses it must verify it, as the cert auth method does.
  std::vector<std::string> client_certificate_chain;

  HttpRequest() = default;
  HttpRequest(HttpRequest&&) = default;
  HttpRequest& operator=(HttpRequest&&) = default;
  ~HttpRequest() { WipeString(body); }

  // Returns the first value of header `name` (lower-case), or nullopt.
  std::optional<std::string_view> Header(std::string_view name) const {
    for (const auto& [key, value] : headers) {
      if (key == name) return value;
    }
    return std::nullopt;
  }
};

// One HTTP response. The body may hold secrets: it is wiped when the response is destroyed.
struct HttpResponse {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;  // sent as is; Content-Length is set by the server

  HttpResponse() = default;
  HttpResponse(HttpResponse&&) = default;
  HttpResponse& operator=(HttpResponse&&) = default;
  ~HttpResponse() { WipeString(body); }
};

// Called on a worker thread for each complete request that passed the listener's limits.
// May block (HSM, storage). Must not throw.
using RequestHandler = std::function<HttpResponse(HttpRequest&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8200;  // 0 picks a free port; see HttpServer::port()

  // TLS: both set to serve HTTPS; both empty for plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  // PEM CA bundle that verifies client certificates; empty: none requested.
  std::string tls_client_ca_file;
  // Request a certificate from every client without requiring or verifying one in the
  // handshake (the cert auth method verifies it against its roles' CA bundles). The client
  // still proves possession of the key. Exclusive with tls_client_ca_file.
  bool tls_request_client_cert = false;

  std::size_t io_threads = 2;
  std::size_t worker_threads = 32;  // the bounded pool that runs handlers
  std::size_t max_queued_requests = 4096;  // beyond it: 503 without running the handler

  std::size_t max_header_bytes = 16 * 1024;         // request line and headers; 431 beyond
  std::size_t max_body_bytes = 32 * 1024 * 1024;    // decoded body, chunked included; 413 beyond
  std::size_t max_url_bytes = 8 * 1024;              // 414 beyond
  std::chrono::milliseconds request_timeout{30000};  // whole head and body; 408 beyond
  std::chrono::milliseconds idle_timeout{60000};     // keep-alive connection with no request
  std::chrono::milliseconds handshake_timeout{10000};
  std::size_t max_connections = 10000;
  std::size_t max_connections_per_address = 1000;
  int listen_backlog = 1024;

  // Called on an I/O thread with the request line and headers, before the body is read. A
  // returned response is sent at once and the connection closed without reading the body,
  // so a caller without credentials cannot make the server buffer a large body. Must be fast
  // and must not block or throw.
  std::function<std::optional<HttpResponse>(const HttpRequest& head)> head_check;
};

// The HTTP/1.1 listener on Boost.Beast and Asio: accepts and reads asynchronously on a few
// I/O threads and runs handlers on a bounded worker pool, so slow or idle clients never hold a
// worker. Enforces every limit in ServerOptions and answers violations itself with a JSON
// {"errors": [...]} body, closing the connection after 4xx errors on framing. Thread-safe.
class HttpServer {
 public:
  // Binds, listens and starts serving. unavailable when the address cannot be bound;
  // invalid_argument for a bad host or unreadable TLS files.
  static Result<std::unique_ptr<HttpServer>> Start(const ServerOptions& options,
                                                   RequestHandler handler);

  virtual ~HttpServer() = default;

  // The bound port (the chosen one when options.port was 0).
  virtual std::uint16_t port() const = 0;

  // Stops accepting, lets in-flight requests finish (up to `grace`), closes connections and
  // joins every thread. Idempotent.
  virtual void Stop(std::chrono::milliseconds grace = std::chrono::milliseconds(10000)) = 0;
};

}  // namespace kw::api
