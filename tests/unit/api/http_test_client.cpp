#include "tests/unit/api/http_test_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <utility>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"

namespace kw::api::testing {

namespace {

constexpr int kSendTimeoutSeconds = 5;

std::string ToLower(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return lower;
}

int RemainingMs(std::chrono::steady_clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<std::int64_t>(0, left.count()));
}

// Returns the full size of the response at the start of `data`, or 0 when incomplete.
std::size_t CompleteResponseSize(std::string_view data, bool head_request) {
  const std::size_t head_end = data.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return 0;
  const std::size_t head_size = head_end + 4;
  const int status = StatusOf(data);
  if (head_request || (status >= 100 && status < 200) || status == 204 || status == 304) {
    return head_size;
  }
  const std::string length = HeaderOf(data.substr(0, head_size), "content-length");
  const std::size_t body_size = length.empty() ? 0 : std::stoul(length);
  return data.size() >= head_size + body_size ? head_size + body_size : 0;
}

}  // namespace

RawClient::RawClient(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    ::close(fd);
    return;
  }
  timeval send_timeout{kSendTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof(send_timeout));
  int enable = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &enable, sizeof(enable));
  fd_ = fd;
}

RawClient::~RawClient() { Close(); }

void RawClient::Close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool RawClient::Send(std::string_view data) {
  if (fd_ < 0) return false;
  while (!data.empty()) {
    const ssize_t sent = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

bool RawClient::WaitReadable(std::chrono::milliseconds timeout) {
  if (fd_ < 0) return false;
  if (!pending_.empty()) return true;
  pollfd entry{fd_, POLLIN, 0};
  return ::poll(&entry, 1, static_cast<int>(timeout.count())) > 0;
}

std::string RawClient::ReadResponse(std::chrono::milliseconds timeout, bool head_request) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::string data = std::move(pending_);
  pending_.clear();
  char chunk[16384];
  while (fd_ >= 0) {
    const std::size_t size = CompleteResponseSize(data, head_request);
    if (size > 0) {
      pending_ = data.substr(size);
      data.resize(size);
      return data;
    }
    pollfd entry{fd_, POLLIN, 0};
    if (::poll(&entry, 1, RemainingMs(deadline)) <= 0) break;
    const ssize_t received = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (received <= 0) break;
    data.append(chunk, static_cast<std::size_t>(received));
  }
  return data;
}

bool RawClient::WaitClosed(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  char chunk[16384];
  while (fd_ >= 0) {
    pollfd entry{fd_, POLLIN, 0};
    if (::poll(&entry, 1, RemainingMs(deadline)) <= 0) return false;
    const ssize_t received = ::recv(fd_, chunk, sizeof(chunk), 0);
    if (received < 0 && errno == EINTR) continue;
    if (received <= 0) return true;
  }
  return true;
}

int StatusOf(std::string_view response) {
  if (response.size() < 12 || response.substr(0, 5) != "HTTP/") return 0;
  const std::size_t space = response.find(' ');
  if (space == std::string_view::npos || space + 4 > response.size()) return 0;
  int status = 0;
  for (std::size_t i = space + 1; i < space + 4; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(response[i]))) return 0;
    status = status * 10 + (response[i] - '0');
  }
  return status;
}

std::string BodyOf(std::string_view response) {
  const std::size_t head_end = response.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return "";
  return std::string(response.substr(head_end + 4));
}

std::string HeaderOf(std::string_view response, std::string_view name) {
  const std::string prefix = ToLower(name) + ":";
  const std::string_view head = response.substr(0, response.find("\r\n\r\n"));
  std::size_t line_start = head.find("\r\n");
  while (line_start != std::string_view::npos) {
    line_start += 2;
    const std::size_t line_end = head.find("\r\n", line_start);
    const std::string_view line = head.substr(line_start, line_end - line_start);
    if (ToLower(line.substr(0, prefix.size())) == prefix) {
      std::string_view value = line.substr(prefix.size());
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      return std::string(value);
    }
    line_start = line_end;
  }
  return "";
}

StderrCapture::StderrCapture() {
  char pattern[] = "/tmp/kw-http-stderr-XXXXXX";
  const int fd = ::mkstemp(pattern);
  REQUIRE(fd >= 0);
  path_ = pattern;
  std::fflush(stderr);
  saved_fd_ = ::dup(STDERR_FILENO);
  REQUIRE(saved_fd_ >= 0);
  REQUIRE(::dup2(fd, STDERR_FILENO) >= 0);
  ::close(fd);
}

StderrCapture::~StderrCapture() { Finish(); }

std::string StderrCapture::Finish() {
  if (saved_fd_ < 0) return "";
  std::fflush(stderr);
  ::dup2(saved_fd_, STDERR_FILENO);
  ::close(saved_fd_);
  saved_fd_ = -1;
  std::ifstream file(path_, std::ios::binary);
  std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ::unlink(path_.c_str());
  return text;
}

std::size_t ResidentMemoryBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

ServerOptions TestOptions() {
  ServerOptions options;
  options.host = "127.0.0.1";
  options.port = 0;
  options.io_threads = 2;
  options.worker_threads = 2;
  return options;
}

RequestHandler EchoHandler() {
  return [](HttpRequest& request) {
    nlohmann::json headers = nlohmann::json::object();
    for (const auto& [name, value] : request.headers) headers[name] = value;
    nlohmann::json echo = {
        {"method", request.method},
        {"target", request.target},
        {"body", request.body},
        {"remote_address", request.remote_address},
        {"remote_port", request.remote_port},
        {"tls", request.tls},
        {"headers", headers},
    };
    if (request.client_certificate_der.has_value()) {
      const auto& der = *request.client_certificate_der;
      echo["client_certificate_der"] = ToHex(AsBytes(der));
    } else {
      echo["client_certificate_der"] = nullptr;
    }
    HttpResponse response;
    response.body = echo.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return response;
  };
}

std::unique_ptr<HttpServer> StartServer(const ServerOptions& options, RequestHandler handler) {
  auto server = HttpServer::Start(options, std::move(handler));
  REQUIRE_MESSAGE(server.has_value(), "starting the server failed");
  REQUIRE((*server)->port() != 0);
  return std::move(*server);
}

}  // namespace kw::api::testing
