// Slow and idle clients against the real binary: slowloris connections, slow bodies, clients
// that stop reading their response, idle keep-alive connections, per-address connection limits
// and TLS handshakes that stall. Health checks and secret reads must keep responding within a
// second while such clients are connected, and each kind must be cut by its timeout.
#include <doctest/doctest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"
#include "tests/unit/vault/auth/test_certificates.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr int kSlowConnections = 200;
// The time within which a health check or a secret read must complete, connect included,
// while slow clients are connected.
constexpr auto kResponseBound = 1s;
// How often a slow client sends its next byte.
constexpr auto kTrickleInterval = 250ms;
// Slack for a timeout to fire on a loaded machine. Timers never fire early.
constexpr auto kTimeoutSlack = 5s;

double Seconds(Clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// Raises this process's soft open-file limit to `target` (or the hard limit, if lower).
void RaiseOpenFileLimit(rlim_t target) {
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_cur >= target) return;
  limit.rlim_cur = std::min(target, limit.rlim_max);
  REQUIRE(::setrlimit(RLIMIT_NOFILE, &limit) == 0);
}

// Connects from `source`, an address in 127.0.0.0/8, to 127.0.0.1:`port`. A non-zero
// `receive_buffer` sets SO_RCVBUF before the connect, which bounds the TCP window the client
// offers. Returns the socket, or -1.
int ConnectFrom(const std::string& source, std::uint16_t port, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (receive_buffer > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in local{};
  local.sin_family = AF_INET;
  if (::inet_pton(AF_INET, source.c_str(), &local.sin_addr) != 1 ||
      ::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) {
    ::close(fd);
    return -1;
  }
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(port);
  remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof remote) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    pollfd writable{fd, POLLOUT, 0};
    if (::poll(&writable, 1, 5000) <= 0) return false;
    const ssize_t sent = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (sent <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(sent));
  }
  return true;
}

// The outcome of reading from a socket until the peer closed it or a time passed.
struct ReadResult {
  std::string bytes;
  bool closed = false;
  Clock::duration elapsed{};  // until the close, or the whole wait
};

ReadResult ReadUntilClosed(int fd, Clock::duration timeout) {
  ReadResult result;
  const auto start = Clock::now();
  const auto deadline = start + timeout;
  char buffer[16384];
  while (Clock::now() < deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      result.closed = true;
      break;
    }
    result.bytes.append(buffer, static_cast<std::size_t>(n));
  }
  result.elapsed = Clock::now() - start;
  return result;
}

// Returns the bytes that can be read from `fd` without waiting, or -1.
long BytesBuffered(int fd) {
  int available = 0;
  if (::ioctl(fd, FIONREAD, &available) != 0) return -1;
  return available;
}

std::uint16_t LocalPort(int fd) {
  sockaddr_in local{};
  socklen_t size = sizeof local;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &size) != 0) return 0;
  return ntohs(local.sin_port);
}

// Returns the bytes that the kernel has queued for sending on the server's end of the IPv4
// connection between server port `server_port` and client port `client_port`: the tx_queue
// column of /proc/net/tcp. Returns -1 when no such connection is listed.
long ServerSendQueue(std::uint16_t server_port, std::uint16_t client_port) {
  std::ifstream table("/proc/net/tcp");
  std::string line;
  std::getline(table, line);  // the column names
  while (std::getline(table, line)) {
    unsigned local_port = 0;
    unsigned remote_port = 0;
    unsigned long tx_queue = 0;
    if (std::sscanf(line.c_str(), " %*d: %*8x:%4x %*8x:%4x %*2x %8lx:%*8x", &local_port,
                    &remote_port, &tx_queue) != 3) {
      continue;
    }
    if (local_port == server_port && remote_port == client_port) {
      return static_cast<long>(tx_queue);
    }
  }
  return -1;
}

// Reads one response with a Content-Length body from a keep-alive connection. Returns what
// arrived within `timeout`. The status is 0 when the head did not arrive.
RawResponse ReadOneResponse(int fd, Clock::duration timeout) {
  std::string bytes;
  const auto deadline = Clock::now() + timeout;
  std::size_t expected_size = std::string::npos;
  char buffer[16384];
  while (Clock::now() < deadline && bytes.size() < expected_size) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    bytes.append(buffer, static_cast<std::size_t>(n));
    const std::size_t end_of_head = bytes.find("\r\n\r\n");
    if (expected_size == std::string::npos && end_of_head != std::string::npos) {
      const std::size_t length = bytes.find("Content-Length: ");
      const std::size_t body_size =
          length < end_of_head ? std::stoul(bytes.substr(length + 16, 20)) : 0;
      expected_size = end_of_head + 4 + body_size;
    }
  }
  return ParseRawResponse(bytes);
}

std::string Get(const std::string& path, const std::string& token, bool close = true) {
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  if (!token.empty()) request += "X-Vault-Token: " + token + "\r\n";
  if (close) request += "Connection: close\r\n";
  return request + "\r\n";
}

// Sends `request` over TLS to 127.0.0.1:`port`, trusting `ca_file`, and returns the response
// read until the server closes. The status is 0 when the handshake or the exchange failed.
RawResponse TlsExchange(std::uint16_t port, const fs::path& ca_file, const std::string& request) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> context(SSL_CTX_new(TLS_client_method()),
                                                            SSL_CTX_free);
  if (!context) return {};
  SSL_CTX_load_verify_locations(context.get(), ca_file.c_str(), nullptr);
  SSL_CTX_set_verify(context.get(), SSL_VERIFY_PEER, nullptr);
  const int fd = ConnectLoopback(port);
  if (fd < 0) return {};
  timeval timeout{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(context.get()), SSL_free);
  std::string bytes;
  if (ssl && SSL_set_fd(ssl.get(), fd) == 1) {
    SSL_set1_host(ssl.get(), "127.0.0.1");
    if (SSL_connect(ssl.get()) == 1 &&
        SSL_write(ssl.get(), request.data(), static_cast<int>(request.size())) ==
            static_cast<int>(request.size())) {
      char buffer[16384];
      for (;;) {
        const int n = SSL_read(ssl.get(), buffer, sizeof buffer);
        if (n <= 0) break;
        bytes.append(buffer, static_cast<std::size_t>(n));
      }
    }
  }
  ERR_clear_error();
  ::close(fd);
  return ParseRawResponse(bytes);
}

// Connections that each sent an opening and then send one more byte now and then, as a
// slowloris client does. Notes when the server closes each one. One thread at a time.
class SlowConnections {
 public:
  struct Connection {
    int fd = -1;
    Clock::time_point opened;
    std::string received;
    bool closed = false;
    Clock::duration open_for{};  // from the connect to the server's close
  };

  SlowConnections() = default;
  SlowConnections(const SlowConnections&) = delete;
  SlowConnections& operator=(const SlowConnections&) = delete;
  ~SlowConnections() {
    for (const Connection& connection : connections_) ::close(connection.fd);
  }

  // Opens `count` connections from 127.0.0.1 to `port`, each sending `opening`. Returns false
  // when one could not connect or send.
  bool Open(std::uint16_t port, int count, const std::string& opening) {
    for (int i = 0; i < count; ++i) {
      Connection connection;
      connection.fd = ConnectFrom("127.0.0.1", port);
      if (connection.fd < 0) return false;
      connection.opened = Clock::now();
      connections_.push_back(connection);
      if (!opening.empty() && !SendAll(connection.fd, opening)) return false;
    }
    return true;
  }

  // Sends `byte` on every connection the server has not closed.
  void SendByte(char byte) {
    for (Connection& connection : connections_) {
      if (!connection.closed) ::send(connection.fd, &byte, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
  }

  // Waits up to `wait` for data or closes, reads what arrived and marks closed connections.
  void Collect(std::chrono::milliseconds wait) {
    const auto deadline = Clock::now() + wait;
    do {
      std::vector<pollfd> polled;
      std::vector<Connection*> owners;
      for (Connection& connection : connections_) {
        if (connection.closed) continue;
        polled.push_back({connection.fd, POLLIN, 0});
        owners.push_back(&connection);
      }
      if (polled.empty()) return;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (::poll(polled.data(), polled.size(), static_cast<int>(std::max<long>(left.count(), 0))) <=
          0) {
        continue;
      }
      for (std::size_t i = 0; i < polled.size(); ++i) {
        if (polled[i].revents == 0) continue;
        Connection& connection = *owners[i];
        char buffer[4096];
        const ssize_t n = ::recv(connection.fd, buffer, sizeof buffer, MSG_DONTWAIT);
        if (n > 0) {
          connection.received.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          connection.closed = true;
          connection.open_for = Clock::now() - connection.opened;
        }
      }
    } while (Clock::now() < deadline);
  }

  std::size_t open_count() const {
    return static_cast<std::size_t>(std::count_if(
        connections_.begin(), connections_.end(), [](const Connection& c) { return !c.closed; }));
  }
  const std::vector<Connection>& connections() const { return connections_; }

 private:
  std::vector<Connection> connections_;
};

// Sends the next byte of `trickle` on every connection of `slow` each kTrickleInterval, on a
// thread of its own, until Stop, until all are closed or for at most `max_rounds` rounds.
// `slow` must not be used elsewhere until Stop returns.
class Trickler {
 public:
  Trickler(SlowConnections& slow, std::string trickle, int max_rounds)
      : thread_([this, &slow, trickle = std::move(trickle), max_rounds] {
          for (int round = 0; round < max_rounds && !stop_ && slow.open_count() > 0; ++round) {
            if (!trickle.empty()) slow.SendByte(trickle[round % trickle.size()]);
            slow.Collect(std::chrono::duration_cast<std::chrono::milliseconds>(kTrickleInterval));
            ++rounds_;
          }
        }) {}
  ~Trickler() { Stop(); }

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // Waits until the thread finishes on its own.
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  int rounds() const { return rounds_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<int> rounds_{0};
  std::thread thread_;
};

// A timed health check and secret read. Each sends its request on a fresh connection.
struct ProbeResult {
  RawResponse health;
  Clock::duration health_time{};
  RawResponse read;
  Clock::duration read_time{};
};

// Sends `request` and returns the response. Uses plain HTTP when `ca_file` is empty.
RawResponse Exchange(std::uint16_t port, const fs::path& ca_file, const std::string& request) {
  if (ca_file.empty()) return SendRaw(port, request, std::chrono::seconds(10));
  return TlsExchange(port, ca_file, request);
}

ProbeResult Probe(std::uint16_t port, const std::string& token, const std::string& secret_path,
                  const fs::path& ca_file = {}) {
  ProbeResult result;
  auto start = Clock::now();
  result.health = Exchange(port, ca_file, Get("/v1/sys/health", ""));
  result.health_time = Clock::now() - start;
  start = Clock::now();
  result.read = Exchange(port, ca_file, Get("/v1/secret/data/" + secret_path, token));
  result.read_time = Clock::now() - start;
  return result;
}

// Checks that the probe got a healthy 200 and the secret {"k": `value`}, each within
// kResponseBound.
void CheckProbe(const ProbeResult& probe, const std::string& value) {
  MESSAGE("health " << Seconds(probe.health_time) << " s, read " << Seconds(probe.read_time)
                    << " s");
  CAPTURE(probe.health.head);
  CAPTURE(probe.read.head);
  CHECK(probe.health.status == 200);
  CHECK(probe.health_time < kResponseBound);
  CHECK(probe.read.status == 200);
  CHECK(probe.read.body.find("\"k\":\"" + value + "\"") != std::string::npos);
  CHECK(probe.read_time < kResponseBound);
}

// A config-mode server on 127.0.0.1 with its own SoftHSM token, initialised through
// sys/init. Plain HTTP unless the listener settings name TLS files.
class ConfigServer {
 public:
  // Starts the server with `listener` merged into the listener section and initialises it.
  // `ca_file` is the CA that verifies a TLS listener's certificate, empty for plain HTTP.
  void Start(const json& listener, const fs::path& ca_file = {}) {
    ca_file_ = ca_file;
    const fs::path dir = dir_.path();
    fs::create_directories(dir / "tokens");
    const fs::path softhsm_conf = dir / "softhsm2.conf";
    const std::string softhsm_env = "SOFTHSM2_CONF=" + softhsm_conf.string();
    WriteTextFile(softhsm_conf, "directories.tokendir = " + (dir / "tokens").string() +
                                    "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteTextFile(dir / "pin", "e2e-slow-pin-1234");
    const ExitResult token_init =
        RunProgram("/usr/bin/softhsm2-util",
                   {"--init-token", "--free", "--label", "e2e-slow", "--pin", "e2e-slow-pin-1234",
                    "--so-pin", "e2e-slow-so-pin-5678"},
                   {softhsm_env});
    REQUIRE_MESSAGE(token_init.exit_code == 0, token_init.out << token_init.err);

    json config = {{"listener", {{"address", "127.0.0.1:0"}}},
                   {"storage", {{"path", (dir / "keyward.db").string()}}},
                   {"hsm",
                    {{"module", std::string(kSoftHsmModule)},
                     {"token_label", "e2e-slow"},
                     {"pin_file", (dir / "pin").string()}}}};
    config["listener"].merge_patch(listener);
    WriteTextFile(dir / "keyward.json", config.dump(2));
    process_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"server", "-config", (dir / "keyward.json").string()},
        std::vector<std::string>{softhsm_env}, dir);
    REQUIRE(process_->Start());

    const std::string init =
        "PUT /v1/sys/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    const RawResponse response = Exchange(port(), ca_file_, init);
    REQUIRE_MESSAGE(response.status == 200, response.head << response.body);
    token_ = json::parse(response.body).at("root_token").get<std::string>();
  }

  std::uint16_t port() const { return process_->port(); }
  const std::string& token() const { return token_; }
  const fs::path& dir() const { return dir_.path(); }

  // Writes {"k": `value`} to secret/data/`path` and returns the status.
  int WriteSecret(const std::string& path, const std::string& value) {
    const std::string body = json{{"data", {{"k", value}}}}.dump();
    const std::string request = "POST /v1/secret/data/" + path +
                                " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: " + token_ +
                                "\r\nContent-Type: application/json\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
                                body;
    return Exchange(port(), ca_file_, request).status;
  }

 private:
  TempDir dir_;
  fs::path ca_file_;
  std::unique_ptr<ServerProcess> process_;
  std::string token_;
};

// The start of a request head that never ends; the trickled bytes extend its last header.
const std::string kPartialHead =
    "GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";

}  // namespace

TEST_SUITE("e2e/slow_clients") {
  TEST_CASE("slowloris connections leave health and reads fast") {
    RaiseOpenFileLimit(4096);
    DevServer server;
    REQUIRE(server.Start());
    REQUIRE(StatusOf(WriteSecret(*server.Client(), "slowloris", {{"k", "still-served"}})) == 200);
    CheckProbe(Probe(server.port(), server.token(), "slowloris"), "still-served");

    SlowConnections slow;
    REQUIRE(slow.Open(server.port(), kSlowConnections, kPartialHead));
    // At most 60 rounds (15 s). The probes below end it much sooner.
    Trickler trickler(slow, "abcdefghij", 60);
    while (trickler.rounds() < 2) std::this_thread::sleep_for(10ms);

    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      CheckProbe(Probe(server.port(), server.token(), "slowloris"), "still-served");
    }
    trickler.Stop();

    // Every slowloris connection was still open and unanswered while the probes ran, so the
    // server was really holding them.
    CHECK(slow.open_count() == static_cast<std::size_t>(kSlowConnections));
    for (const auto& connection : slow.connections()) CHECK(connection.received.empty());
  }

  TEST_CASE("slowloris connections are cut at request_timeout") {
    RaiseOpenFileLimit(4096);
    ConfigServer server;
    server.Start({{"request_timeout", "2s"}});
    REQUIRE(server.WriteSecret("timeout", "after-timeout") == 200);

    SlowConnections slow;
    REQUIRE(slow.Open(server.port(), kSlowConnections, kPartialHead));
    // A byte every 250 ms keeps any per-read timer from firing, so only a bound on the whole
    // request cuts these. At most 60 rounds (15 s).
    Trickler trickler(slow, "abcdefghij", 60);
    trickler.Join();

    CHECK(slow.open_count() == 0);
    std::size_t timed_out = 0;
    Clock::duration shortest = Clock::duration::max();
    Clock::duration longest{};
    for (const auto& connection : slow.connections()) {
      if (!connection.closed) continue;
      shortest = std::min(shortest, connection.open_for);
      longest = std::max(longest, connection.open_for);
      const RawResponse response = ParseRawResponse(connection.received);
      if (response.status == 408 && response.body.find("request timed out") != std::string::npos) {
        ++timed_out;
      }
    }
    MESSAGE("closed after " << Seconds(shortest) << " to " << Seconds(longest) << " s");
    CHECK(timed_out == static_cast<std::size_t>(kSlowConnections));
    CHECK(shortest >= 2s - 100ms);
    CHECK(longest < 2s + kTimeoutSlack);
    CheckProbe(Probe(server.port(), server.token(), "timeout"), "after-timeout");
  }

  TEST_CASE("per-address connection limit") {
    constexpr int kLimit = 4;
    ConfigServer server;
    server.Start({{"max_connections_per_address", kLimit}});
    REQUIRE(server.WriteSecret("limited", "per-address") == 200);

    // Fill the limit with keep-alive connections that each completed a request. The
    // connections that set the server up may still count until it detects their close, so a
    // rejected attempt is retried for a while.
    std::vector<int> open_connections;
    for (int i = 0; i < kLimit; ++i) {
      int status = 0;
      for (int attempt = 0; attempt < 100 && status != 200; ++attempt) {
        const int fd = ConnectFrom("127.0.0.1", server.port());
        REQUIRE(fd >= 0);
        REQUIRE(SendAll(fd, Get("/v1/sys/health", "", /*close=*/false)));
        status = ReadOneResponse(fd, 5s).status;
        if (status == 200) {
          open_connections.push_back(fd);
        } else {
          ::close(fd);
          std::this_thread::sleep_for(50ms);
        }
      }
      REQUIRE(status == 200);
    }

    // Connection kLimit + 1 from 127.0.0.1 gets a 503 with a JSON error at once and is closed.
    // It sends nothing, so the close is a clean FIN that cannot destroy the response.
    const int extra = ConnectFrom("127.0.0.1", server.port());
    REQUIRE(extra >= 0);
    const ReadResult rejected = ReadUntilClosed(extra, 5s);
    ::close(extra);
    CHECK(rejected.closed);
    const RawResponse busy = ParseRawResponse(rejected.bytes);
    CAPTURE(rejected.bytes);
    CHECK(busy.status == 503);
    CHECK(busy.head.find("Content-Type: application/json") != std::string::npos);
    CHECK(busy.body.find("{\"errors\":[\"server busy: too many open connections") !=
          std::string::npos);

    // Another loopback address has a limit of its own.
    const int other = ConnectFrom("127.0.0.2", server.port());
    REQUIRE(other >= 0);
    REQUIRE(SendAll(other, Get("/v1/secret/data/limited", server.token())));
    const ReadResult from_other = ReadUntilClosed(other, 5s);
    ::close(other);
    const RawResponse other_response = ParseRawResponse(from_other.bytes);
    CHECK(other_response.status == 200);
    CHECK(other_response.body.find("per-address") != std::string::npos);

    // The connections that fill the limit still work.
    for (const int fd : open_connections) {
      REQUIRE(SendAll(fd, Get("/v1/sys/health", "", /*close=*/false)));
      CHECK(ReadOneResponse(fd, 5s).status == 200);
    }

    // Closing one frees its slot once the server has seen the close.
    ::close(open_connections.back());
    open_connections.pop_back();
    int status = 0;
    const auto closed_at = Clock::now();
    while (status != 200 && Clock::now() - closed_at < 5s) {
      const int fd = ConnectFrom("127.0.0.1", server.port());
      REQUIRE(fd >= 0);
      REQUIRE(SendAll(fd, Get("/v1/sys/health", "")));
      status = ParseRawResponse(ReadUntilClosed(fd, 5s).bytes).status;
      ::close(fd);
      if (status != 200) std::this_thread::sleep_for(20ms);
    }
    CHECK(status == 200);
    for (const int fd : open_connections) ::close(fd);
  }

  TEST_CASE("idle keep-alive connection is closed") {
    ConfigServer server;
    server.Start({{"idle_timeout", "1s"}});

    // A connection that keeps sending requests, each within the idle timeout, stays open for
    // longer than the timeout.
    const int busy = ConnectFrom("127.0.0.1", server.port());
    REQUIRE(busy >= 0);
    const auto busy_start = Clock::now();
    for (int i = 0; i < 6; ++i) {
      CAPTURE(i);
      REQUIRE(SendAll(busy, Get("/v1/sys/health", "", /*close=*/false)));
      REQUIRE(ReadOneResponse(busy, 5s).status == 200);
      std::this_thread::sleep_for(400ms);
    }
    CHECK(Clock::now() - busy_start > 2s);
    ::close(busy);

    // After its last response, an idle connection is closed when idle_timeout passes.
    const int idle = ConnectFrom("127.0.0.1", server.port());
    REQUIRE(idle >= 0);
    REQUIRE(SendAll(idle, Get("/v1/sys/health", "", /*close=*/false)));
    REQUIRE(ReadOneResponse(idle, 5s).status == 200);
    const ReadResult after = ReadUntilClosed(idle, 1s + kTimeoutSlack);
    ::close(idle);
    MESSAGE("idle connection closed after " << Seconds(after.elapsed) << " s");
    CHECK(after.closed);
    CHECK(after.bytes.empty());
    CHECK(after.elapsed >= 900ms);
  }

  TEST_CASE("slow bodies and stalled readers hold no worker") {
    RaiseOpenFileLimit(4096);
    ConfigServer server;
    server.Start({{"worker_threads", 2}});
    REQUIRE(server.WriteSecret("small", "small-value") == 200);
    // Its response is larger than what the kernel buffers for a stalled reader: on Linux the
    // server's send buffer grows to net.ipv4.tcp_wmem's maximum, 4 MiB by default.
    const std::string large_value(8 * 1024 * 1024, 'L');
    REQUIRE(server.WriteSecret("large", large_value) == 200);

    // Slow bodies: complete heads of authenticated writes whose bodies arrive a byte at a time.
    SlowConnections slow_bodies;
    REQUIRE(slow_bodies.Open(server.port(), 100,
                             "POST /v1/secret/data/never-complete HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                             "X-Vault-Token: " + server.token() +
                                 "\r\nContent-Type: application/json\r\n"
                                 "Content-Length: 1000\r\n\r\n{\"data\":{\"k\":\""));
    Trickler trickler(slow_bodies, "abcdefghij", 60);

    // Stalled readers: each requests the large secret with a 4 KiB receive buffer and never
    // reads, so the server's write cannot finish. Twice the worker count.
    std::vector<int> readers;
    for (int i = 0; i < 4; ++i) {
      const int fd = ConnectFrom("127.0.0.1", server.port(), 4096);
      REQUIRE(fd >= 0);
      REQUIRE(SendAll(fd, Get("/v1/secret/data/large", server.token(), /*close=*/false)));
      readers.push_back(fd);
    }
    // Waits until every handler has run, which the first response bytes show, so that the
    // probes below compete with the stalled writes and not with the handlers' own work.
    const auto handlers_deadline = Clock::now() + 60s;
    bool all_started = false;
    while (!all_started && Clock::now() < handlers_deadline) {
      all_started = std::all_of(readers.begin(), readers.end(),
                                [](int fd) { return BytesBuffered(fd) > 0; });
      if (!all_started) std::this_thread::sleep_for(50ms);
    }
    REQUIRE(all_started);

    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      CheckProbe(Probe(server.port(), server.token(), "small"), "small-value");
    }
    trickler.Stop();
    CHECK(slow_bodies.open_count() == 100);

    // The writes really are stalled: what the client has buffered and what the server's kernel
    // has queued is less than the response, so the rest still waits in the server process.
    for (const int fd : readers) {
      const long buffered = BytesBuffered(fd);
      const long queued = ServerSendQueue(server.port(), LocalPort(fd));
      MESSAGE("a stalled reader has " << buffered << " bytes buffered, the server's kernel "
                                      << queued << " queued");
      REQUIRE(queued >= 0);
      CHECK(static_cast<std::size_t>(buffered + queued) < large_value.size());
    }
    // The write resumes once the client reads.
    const RawResponse large = ReadOneResponse(readers.front(), 20s);
    CHECK(large.status == 200);
    CHECK(large.body.find(large_value) != std::string::npos);
    for (const int fd : readers) ::close(fd);

    // The handler never ran for a write whose body did not arrive.
    const RawResponse missing =
        SendRaw(server.port(), Get("/v1/secret/data/never-complete", server.token()));
    CHECK(missing.status == 404);
  }

  TEST_CASE("stalled TLS handshakes leave TLS health and reads fast") {
    RaiseOpenFileLimit(4096);
    const std::time_t now = std::time(nullptr);
    const testing::TestCert ca = testing::IssueCa("e2e slow clients CA", now - 3600, now + 86400);
    testing::CertSpec spec;
    spec.common_name = "127.0.0.1";
    spec.subject_alt_name = "IP:127.0.0.1";
    spec.extended_key_usage = "serverAuth";
    spec.not_before = now - 60;
    spec.not_after = now + 3600;
    const testing::TestCert certificate = testing::IssueCert(spec, &ca);

    ConfigServer server;
    WriteTextFile(server.dir() / "server.pem", certificate.Pem());
    WriteTextFile(server.dir() / "server-key.pem", certificate.KeyPem());
    WriteTextFile(server.dir() / "ca.pem", ca.Pem());
    server.Start({{"tls_cert_file", (server.dir() / "server.pem").string()},
                  {"tls_key_file", (server.dir() / "server-key.pem").string()},
                  {"tls_handshake_timeout", "3s"}},
                 server.dir() / "ca.pem");
    REQUIRE(server.WriteSecret("tls", "over-tls") == 200);
    const fs::path ca_file = server.dir() / "ca.pem";
    CheckProbe(Probe(server.port(), server.token(), "tls", ca_file), "over-tls");

    // Half the connections send nothing. The other half send a TLS record header announcing
    // a 512-byte ClientHello, its first bytes, and then one more byte now and then.
    const std::string half_client_hello = {'\x16', '\x03', '\x01', '\x02', '\x00', '\x01',
                                           '\x00', '\x01', '\xfc', '\x03', '\x03'};
    SlowConnections silent;
    SlowConnections half_hello;
    const auto opened = Clock::now();
    REQUIRE(silent.Open(server.port(), kSlowConnections / 2, ""));
    REQUIRE(half_hello.Open(server.port(), kSlowConnections / 2, half_client_hello));
    Trickler silent_watch(silent, "", 60);
    Trickler trickler(half_hello, "0123456789", 60);

    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      CheckProbe(Probe(server.port(), server.token(), "tls", ca_file), "over-tls");
    }
    const auto probes_done = Clock::now() - opened;

    // Both kinds are closed when the handshake timeout passes, not before.
    silent_watch.Join();
    trickler.Join();
    for (const SlowConnections* slow : {&silent, &half_hello}) {
      CHECK(slow->open_count() == 0);
      Clock::duration shortest = Clock::duration::max();
      Clock::duration longest{};
      for (const auto& connection : slow->connections()) {
        if (!connection.closed) continue;
        shortest = std::min(shortest, connection.open_for);
        longest = std::max(longest, connection.open_for);
      }
      MESSAGE("probes done after " << Seconds(probes_done) << " s; stalled handshakes closed after "
                                   << Seconds(shortest) << " to " << Seconds(longest) << " s");
      CHECK(shortest > probes_done);
      CHECK(shortest >= 3s - 100ms);
      CHECK(longest < 3s + kTimeoutSlack);
    }
    CheckProbe(Probe(server.port(), server.token(), "tls", ca_file), "over-tls");
  }
}  // TEST_SUITE

}  // namespace kw::e2e
