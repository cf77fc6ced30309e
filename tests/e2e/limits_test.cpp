// Request limits against the real binary, over raw sockets so that nothing in between
// normalises the requests: body size whatever the framing, the time a whole request may take,
// JSON depth, and requests pipelined behind a rejected one. The table of single hostile
// requests is hostile_test.cpp.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/hostile_cases.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kMiB = 1024 * 1024;

// How much the server's RSS may grow, in KiB, while it refuses an endless body: one 32 MiB
// body buffer and its copies. AddressSanitizer keeps freed blocks in its quarantine (256 MiB
// by default) and adds shadow memory, so the sanitized build (whose server this test binary
// runs) gets more room, still far below the 64 MiB sent plus its copies.
#if defined(__SANITIZE_ADDRESS__)
constexpr long kBodyRssAllowanceKib = 192 * 1024;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr long kBodyRssAllowanceKib = 192 * 1024;
#else
constexpr long kBodyRssAllowanceKib = 64 * 1024;
#endif
#else
constexpr long kBodyRssAllowanceKib = 64 * 1024;
#endif

// A config-mode server (uninitialised, which the listener does not care about) whose listener
// takes `listener_options`, on a SoftHSM token of its own.
class ConfigModeServer {
 public:
  bool Start(const json& listener_options) {
    const fs::path tokens = dir_.path() / "tokens";
    fs::create_directories(tokens);
    WriteTextFile(softhsm_conf_, "directories.tokendir = " + tokens.string() +
                                     "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteTextFile(dir_.path() / "pin", "e2e-limits-pin-1234");
    const ExitResult token = RunProgram(
        "/usr/bin/softhsm2-util",
        {"--init-token", "--free", "--label", "e2e-limits", "--pin", "e2e-limits-pin-1234",
         "--so-pin", "e2e-limits-so-5678"},
        {softhsm_env()});
    if (token.exit_code != 0) {
      MESSAGE("softhsm2-util failed: " << token.out << token.err);
      return false;
    }
    json listener = listener_options;
    listener["address"] = "127.0.0.1:0";
    const json config = {
        {"listener", listener},
        {"storage", {{"path", (dir_.path() / "keyward.db").string()}}},
        {"hsm",
         {{"module", "/usr/lib/softhsm/libsofthsm2.so"},
          {"token_label", "e2e-limits"},
          {"pin_file", (dir_.path() / "pin").string()}}}};
    WriteTextFile(dir_.path() / "keyward.json", config.dump());
    process_ = std::make_unique<ServerProcess>(
        std::vector<std::string>{"server", "-config", (dir_.path() / "keyward.json").string()},
        std::vector<std::string>{softhsm_env()}, dir_.path());
    return process_->Start();
  }

  std::uint16_t port() const { return process_->port(); }

 private:
  std::string softhsm_env() const { return "SOFTHSM2_CONF=" + softhsm_conf_.string(); }

  TempDir dir_;
  fs::path softhsm_conf_ = dir_.path() / "softhsm2.conf";
  std::unique_ptr<ServerProcess> process_;
};

// Sends `head` at once, then `body` one byte every 100 ms until the server responds or closes
// the connection, at most 100 bytes. Returns the response and how long the trickle lasted.
std::pair<RawResponse, std::chrono::milliseconds> TrickleBody(std::uint16_t port,
                                                              const std::string& head,
                                                              const std::string& body) {
  const auto started = std::chrono::steady_clock::now();
  std::string received;
  const int fd = ConnectLoopback(port);
  if (fd < 0) return {};
  if (::send(fd, head.data(), head.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(head.size())) {
    ::close(fd);
    return {};
  }
  for (std::size_t i = 0; i < body.size() && i < 100; ++i) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 100) > 0) break;
    if (::send(fd, body.data() + i, 1, MSG_NOSIGNAL) != 1) break;
  }
  for (int i = 0; i < 50; ++i) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 100) <= 0) continue;
    char buffer[4096];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    received.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return {ParseRawResponse(received),
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                started)};
}

// Sends `requests` in one write on one connection and returns everything the server sends
// back before it closes the connection.
std::string SendPipelined(std::uint16_t port, const std::string& requests) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return {};
  std::string received;
  if (::send(fd, requests.data(), requests.size(), MSG_NOSIGNAL) ==
      static_cast<ssize_t>(requests.size())) {
    for (int i = 0; i < 100; ++i) {
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      received.append(buffer, static_cast<std::size_t>(n));
    }
  }
  ::close(fd);
  return received;
}

std::size_t CountStatusLines(const std::string& received) {
  std::size_t count = 0;
  for (std::size_t at = received.find("HTTP/1.1 "); at != std::string::npos;
       at = received.find("HTTP/1.1 ", at + 1)) {
    ++count;
  }
  return count;
}

}  // namespace

TEST_SUITE("e2e/limits") {
  TEST_CASE("endless chunked body is cut at the limit") {
    DevServer server;
    REQUIRE(server.Start());
    const long rss_before = ResidentKib(server.process().pid());
    REQUIRE(rss_before > 0);

    const int fd = ConnectLoopback(server.port());
    REQUIRE(fd >= 0);
    const std::string head =
        "POST /v1/secret/data/endless HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "X-Vault-Token: " +
        server.token() + "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    REQUIRE(::send(fd, head.data(), head.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(head.size()));

    // 256 KiB chunks until the server responds or stops reading, at most 64 MiB in all.
    constexpr std::size_t kChunk = 256 * 1024;
    char hex[32];
    std::snprintf(hex, sizeof hex, "%zx\r\n", kChunk);
    const std::string chunk = std::string(hex) + std::string(kChunk, 'x') + "\r\n";
    std::size_t sent = 0;
    std::string received;
    bool reset = false;
    while (sent < 64 * kMiB) {
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, 0) > 0) break;
      const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) {
        reset = true;
        break;
      }
      sent += static_cast<std::size_t>(n);
    }
    const long rss_during = ResidentKib(server.process().pid());
    for (int i = 0; i < 100; ++i) {
      pollfd readable{fd, POLLIN, 0};
      if (::poll(&readable, 1, 100) <= 0) continue;
      char buffer[4096];
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      received.append(buffer, static_cast<std::size_t>(n));
    }
    ::close(fd);

    MESSAGE("sent " << sent / kMiB << " MiB, reset " << reset << ", RSS " << rss_before
                    << " KiB before, " << rss_during << " KiB at the end");
    CHECK(sent < 64 * kMiB);
    CHECK(ParseRawResponse(received).status == 413);
    CHECK(rss_during < rss_before + kBodyRssAllowanceKib);
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
    CHECK(StatusOf(server.Client()->Get("/v1/secret/data/endless")) == 404);

    // A declared length over the limit is rejected before any body is read.
    const RawResponse declared = SendRaw(
        server.port(),
        "POST /v1/secret/data/endless HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: " +
            server.token() + "\r\nContent-Length: " + std::to_string(40 * kMiB) + "\r\n\r\n{");
    CHECK(declared.status == 413);
    CHECK(ResidentKib(server.process().pid()) < rss_before + kBodyRssAllowanceKib);
  }

  TEST_CASE("request line without end") {
    DevServer server;
    REQUIRE(server.Start());
    const std::string request = "GET /v1/secret/data/" + std::string(100 * 1024, 'a');
    const RawResponse response = SendRaw(server.port(), request, std::chrono::seconds(15));
    MESSAGE("status " << response.status << ", closed " << response.closed);
    const bool rejected =
        response.status == 400 || response.status == 414 || response.status == 431;
    CHECK((rejected || (response.status == 0 && response.closed)));
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
  }

  TEST_CASE("endless chunk extension is rejected") {
    DevServer server;
    REQUIRE(server.Start());
    const std::string request =
        "POST /v1/secret/data/x HTTP/1.1\r\nHost: x\r\nX-Vault-Token: " + server.token() +
        "\r\nTransfer-Encoding: chunked\r\n\r\n5;" + std::string(2 * 1024 * 1024, 'e');
    const RawResponse response = SendRaw(server.port(), request, std::chrono::seconds(15));
    CHECK(((response.status == 400) || (response.status == 0 && response.closed)));
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
  }

  TEST_CASE("anonymous large body refused unread") {
    DevServer server;
    REQUIRE(server.Start());
    // The head alone: the server must respond without waiting for the 30 MB it announces.
    const std::string request =
        "POST /v1/secret/data/x HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n";
    const RawResponse response = SendRaw(server.port(), request, std::chrono::seconds(10));
    CHECK(response.status == 403);
    CHECK(response.body.find("permission denied") != std::string::npos);

    // The endpoints that take no token are no way around it.
    for (const std::string path : {"/v1/sys/unseal", "/v1/sys/init", "/v1/sys/health",
                                   "/v1/sys/seal-status"}) {
      CAPTURE(path);
      const RawResponse unauthenticated = SendRaw(
          server.port(),
          "PUT " + path + " HTTP/1.1\r\nHost: x\r\nContent-Length: 30000000\r\n\r\n",
          std::chrono::seconds(10));
      CHECK(unauthenticated.status == 413);
      CHECK(unauthenticated.body.find("with Content-Length") != std::string::npos);
    }
  }
  TEST_CASE("slow body cut at request timeout") {
    ConfigModeServer server;
    REQUIRE(server.Start({{"request_timeout", "1s"}}));
    // One byte every 100 ms: no single read waits long, so only a bound on the whole request
    // stops the client. The body is never complete (100 bytes would take 10 s).
    const std::string body(100, 'x');
    const std::string length_head =
        "POST /v1/sys/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n";
    // A chunked body to an endpoint without a token is refused at its head (413), so the
    // chunked case initialises the server and writes a secret with the root token.
    const RawResponse init = SendRaw(
        server.port(),
        "PUT /v1/sys/init HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}");
    REQUIRE_MESSAGE(init.status == 200, init.body);
    const std::string root_token = json::parse(init.body)["root_token"].get<std::string>();
    const std::string chunked_head =
        "POST /v1/secret/data/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: " +
        root_token + "\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n";
    for (const std::string& head : {length_head, chunked_head}) {
      CAPTURE(head);
      const auto [response, elapsed] = TrickleBody(server.port(), head, body);
      MESSAGE("cut after " << elapsed.count() << " ms");
      CHECK(response.status == 408);
      CHECK(response.body.find("request timed out") != std::string::npos);
      CHECK(elapsed >= std::chrono::milliseconds(900));
      CHECK(elapsed < std::chrono::milliseconds(3000));
    }
    // The head itself trickled in, one byte every 100 ms.
    const auto [response, elapsed] =
        TrickleBody(server.port(), "G", "ET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    CHECK(response.status == 408);
    CHECK(elapsed < std::chrono::milliseconds(3000));
    CHECK(StatusOf(MakeClient(server.port(), "")->Get("/v1/sys/init")) == 200);
  }

  TEST_CASE("pipelined request behind a rejected one is not run") {
    DevServer server;
    REQUIRE(server.Start());
    const std::string write_body = "{\"data\":{\"k\":\"pipelined\"}}";
    const auto write = [&](const std::string& name) {
      return "POST /v1/secret/data/" + name + " HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: " +
             server.token() + "\r\nContent-Length: " + std::to_string(write_body.size()) +
             "\r\n\r\n" + write_body;
    };
    const std::string health = "GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

    // The control: behind an accepted request, the second one runs.
    const std::string accepted = SendPipelined(server.port(), health + write("control"));
    CHECK(CountStatusLines(accepted) == 2);
    CHECK(StatusOf(server.Client()->Get("/v1/secret/data/control")) == 200);

    struct Rejected {
      std::string name;
      std::string request;
      int status;
    };
    const std::vector<Rejected> rejected = {
        {"bad-transfer-encoding",
         "POST /v1/secret/data/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        {"length-and-chunked",
         "POST /v1/secret/data/a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
         400},
        {"header-fields", "GET /v1/sys/health HTTP/1.1\r\nHost: x\r\n" +
                              [] {
                                std::string fields;
                                for (int i = 0; i < 120; ++i) fields += "X-F" + std::to_string(i) + ": a\r\n";
                                return fields;
                              }() + "\r\n",
         431},
        {"anonymous-large-body",
         "POST /v1/secret/data/a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n", 403},
        {"bare-lf", "GET /v1/sys/health HTTP/1.1\nHost: x\n\n", 400},
    };
    for (const Rejected& first : rejected) {
      CAPTURE(first.name);
      const std::string received = SendPipelined(server.port(), first.request + write(first.name));
      CAPTURE(received.substr(0, 300));
      CHECK(ParseRawResponse(received).status == first.status);
      CHECK(CountStatusLines(received) == 1);
      CHECK(StatusOf(server.Client()->Get("/v1/secret/data/" + first.name)) == 404);
    }
  }

  TEST_CASE("million-deep JSON is rejected fast") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    constexpr int kDepth = 1'000'000;
    const std::string deep = NestedBody("data", kDepth);
    // Nesting inside a string field that a handler parses again: a JSON policy, within the
    // 1 MiB policy size limit so that the depth check is what rejects it.
    constexpr int kPolicyDepth = 400'000;
    const std::string deep_policy = "{\"policy\":\"{\\\"path\\\":" +
                                    std::string(kPolicyDepth, '[') +
                                    std::string(kPolicyDepth, ']') + "}\"}";
    struct Target {
      std::string path;
      const std::string& body;
    };
    for (const Target& target : {Target{"/v1/secret/data/deep", deep},
                                 Target{"/v1/auth/token/create", deep},
                                 Target{"/v1/sys/policies/acl/deep", deep_policy}}) {
      CAPTURE(target.path);
      const auto started = std::chrono::steady_clock::now();
      auto response = client->Post(target.path, target.body, "application/json");
      const auto elapsed = std::chrono::steady_clock::now() - started;
      CHECK(StatusOf(response) == 400);
      CHECK(elapsed < std::chrono::seconds(2));
      CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
    }
    CHECK(StatusOf(client->Get("/v1/secret/data/deep")) == 404);
    CHECK(StatusOf(client->Get("/v1/sys/policies/acl/deep")) == 404);
  }
}  // TEST_SUITE

}  // namespace kw::e2e
