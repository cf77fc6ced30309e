#include "api/http_server.hpp"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "tests/unit/api/http_test_client.hpp"

namespace kw::api {
namespace {

using namespace std::chrono_literals;
using testing::BodyOf;
using testing::EchoHandler;
using testing::HeaderOf;
using testing::RawClient;
using testing::StartServer;
using testing::StatusOf;
using testing::TestOptions;

constexpr auto kWait = 5s;
constexpr std::string_view kLargeRequest = "GET /large HTTP/1.1\r\nHost: t\r\n\r\n";

nlohmann::json ParseBody(std::string_view response) {
  return nlohmann::json::parse(BodyOf(response), nullptr, /*allow_exceptions=*/false);
}

// Connects to 127.0.0.1:`port` with a 4 KiB receive buffer, sends `request` and never reads,
// so that the server cannot finish writing a large response. Returns the socket, or -1.
int SendAndStallReading(std::uint16_t port, std::string_view request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  const int receive_buffer = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
          static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Returns a handler that responds to /large with 8 MiB and to anything else with "small".
RequestHandler LargeOrSmallHandler(std::atomic<int>& large_calls) {
  return [&large_calls](HttpRequest& request) {
    HttpResponse response;
    if (request.target == "/large") {
      ++large_calls;
      response.body.assign(8 * 1024 * 1024, 'L');
    } else {
      response.body = "small";
    }
    return response;
  };
}

TEST_SUITE("api/http_server") {
  TEST_CASE("GET round trip with httplib") {
    auto server = StartServer(TestOptions(), EchoHandler());
    httplib::Client client("127.0.0.1", server->port());
    client.set_read_timeout(5, 0);

    auto result = client.Get("/v1/secret/data/a%20b?version=2", {{"X-Vault-Token", "t1"}});
    REQUIRE(result);
    CHECK(result->status == 200);
    CHECK(result->get_header_value("Content-Type") == "application/json");
    CHECK_FALSE(result->has_header("Server"));

    const auto echo = nlohmann::json::parse(result->body);
    CHECK(echo["method"] == "GET");
    CHECK(echo["target"] == "/v1/secret/data/a%20b?version=2");
    CHECK(echo["headers"]["x-vault-token"] == "t1");
    CHECK(echo["remote_address"] == "127.0.0.1");
    CHECK(echo["remote_port"].get<int>() != 0);
    CHECK(echo["tls"] == false);
    CHECK(echo["client_certificate_der"].is_null());
  }

  TEST_CASE("keep-alive connection serves several requests") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.connected());

    int first_port = 0;
    for (int i = 0; i < 3; ++i) {
      REQUIRE(client.Send("GET /n" + std::to_string(i) + " HTTP/1.1\r\nHost: t\r\n\r\n"));
      const std::string response = client.ReadResponse(kWait);
      REQUIRE(StatusOf(response) == 200);
      CHECK(HeaderOf(response, "connection") != "close");
      const auto echo = ParseBody(response);
      CHECK(echo["target"] == "/n" + std::to_string(i));
      if (i == 0) first_port = echo["remote_port"].get<int>();
      CHECK(echo["remote_port"].get<int>() == first_port);
    }
  }

  TEST_CASE("pipelined requests are answered in order") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("GET /one HTTP/1.1\r\nHost: t\r\n\r\n"
                        "GET /two HTTP/1.1\r\nHost: t\r\n\r\n"));

    const std::string first = client.ReadResponse(kWait);
    const std::string second = client.ReadResponse(kWait);
    REQUIRE(StatusOf(first) == 200);
    REQUIRE(StatusOf(second) == 200);
    CHECK(ParseBody(first)["target"] == "/one");
    CHECK(ParseBody(second)["target"] == "/two");
  }

  TEST_CASE("Connection close ends the connection after the response") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));

    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 200);
    CHECK(HeaderOf(response, "connection") == "close");
    CHECK(client.WaitClosed(kWait));
  }

  TEST_CASE("custom method LIST reaches the handler") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("LIST /v1/secret/metadata/ HTTP/1.1\r\nHost: t\r\n\r\n"));

    const std::string response = client.ReadResponse(kWait);
    REQUIRE(StatusOf(response) == 200);
    const auto echo = ParseBody(response);
    CHECK(echo["method"] == "LIST");
    CHECK(echo["target"] == "/v1/secret/metadata/");
  }

  TEST_CASE("POST body arrives intact") {
    auto server = StartServer(TestOptions(), EchoHandler());
    httplib::Client client("127.0.0.1", server->port());
    client.set_read_timeout(5, 0);

    std::string body;
    for (int i = 0; i < 200000; ++i) body.push_back(static_cast<char>('a' + i % 26));
    auto result = client.Post("/v1/secret/data/x", body, "text/plain");
    REQUIRE(result);
    REQUIRE(result->status == 200);
    const auto echo = nlohmann::json::parse(result->body);
    CHECK(echo["method"] == "POST");
    CHECK(echo["body"].get<std::string>() == body);
    CHECK(echo["headers"]["content-type"] == "text/plain");
  }

  TEST_CASE("chunked request body is decoded") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("PUT /c HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"));

    const std::string response = client.ReadResponse(kWait);
    REQUIRE(StatusOf(response) == 200);
    CHECK(ParseBody(response)["body"] == "hello world");
  }

  TEST_CASE("Expect 100-continue gets an interim response") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
                        "Expect: 100-continue\r\n\r\n"));

    const std::string interim = client.ReadResponse(kWait);
    CHECK(StatusOf(interim) == 100);
    REQUIRE(client.Send("data"));
    const std::string response = client.ReadResponse(kWait);
    REQUIRE(StatusOf(response) == 200);
    CHECK(ParseBody(response)["body"] == "data");
  }

  TEST_CASE("HEAD response has no body") {
    const std::string body = R"({"data":"some value"})";
    auto server = StartServer(TestOptions(), [&body](HttpRequest&) {
      HttpResponse response;
      response.body = body;
      return response;
    });
    RawClient client(server->port());
    REQUIRE(client.Send("HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"));

    const std::string head = client.ReadResponse(kWait, /*head_request=*/true);
    REQUIRE(StatusOf(head) == 200);
    CHECK(HeaderOf(head, "content-length") == std::to_string(body.size()));
    CHECK(BodyOf(head).empty());

    // A body after the HEAD response would be read as the start of the next response.
    REQUIRE(client.Send("GET /h HTTP/1.1\r\nHost: t\r\n\r\n"));
    const std::string get = client.ReadResponse(kWait);
    REQUIRE(StatusOf(get) == 200);
    CHECK(BodyOf(get) == body);
  }

  TEST_CASE("handler status, headers and content type pass through") {
    auto server = StartServer(TestOptions(), [](HttpRequest& request) {
      HttpResponse response;
      if (request.target == "/text") {
        response.status = 404;
        response.headers.emplace_back("Content-Type", "text/plain");
        response.headers.emplace_back("X-Trace", "abc");
        response.body = "missing";
      } else if (request.target == "/injected") {
        response.headers.emplace_back("X-Bad", "a\r\nSet-Cookie: evil=1");
        response.body = "{}";
      } else {
        response.status = 204;
      }
      return response;
    });
    RawClient client(server->port());

    REQUIRE(client.Send("GET /text HTTP/1.1\r\nHost: t\r\n\r\n"));
    const std::string text = client.ReadResponse(kWait);
    CHECK(StatusOf(text) == 404);
    CHECK(HeaderOf(text, "content-type") == "text/plain");
    CHECK(HeaderOf(text, "x-trace") == "abc");
    CHECK(BodyOf(text) == "missing");

    REQUIRE(client.Send("GET /injected HTTP/1.1\r\nHost: t\r\n\r\n"));
    const std::string injected = client.ReadResponse(kWait);
    CHECK(StatusOf(injected) == 200);
    CHECK(HeaderOf(injected, "x-bad").empty());
    CHECK(HeaderOf(injected, "set-cookie").empty());
    CHECK(HeaderOf(injected, "content-type") == "application/json");

    REQUIRE(client.Send("DELETE /x HTTP/1.1\r\nHost: t\r\n\r\n"));
    const std::string empty = client.ReadResponse(kWait);
    CHECK(StatusOf(empty) == 204);
    CHECK(HeaderOf(empty, "content-type").empty());
  }

  TEST_CASE("throwing handler gets 500") {
    auto server = StartServer(TestOptions(), [](HttpRequest&) -> HttpResponse {
      throw std::runtime_error("handler bug");
    });
    RawClient client(server->port());
    REQUIRE(client.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));

    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 500);
    CHECK(BodyOf(response) == R"({"errors":["internal error"]})");
  }

  TEST_CASE("logs contain no request secrets") {
    testing::StderrCapture capture;
    {
      auto server = StartServer(TestOptions(), [](HttpRequest& request) -> HttpResponse {
        throw std::runtime_error("parse failed near " + request.body);
      });
      RawClient client(server->port());
      REQUIRE(client.Send("POST /v1/secret/data/k HTTP/1.1\r\nHost: t\r\n"
                          "X-Vault-Token: kw.token-value-1\r\nContent-Length: 18\r\n\r\n"
                          "secret-body-value1"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 500);
    }
    const std::string logs = capture.Finish();

    CHECK(logs.find("request handler threw an exception") != std::string::npos);
    CHECK(logs.find("token-value-1") == std::string::npos);
    CHECK(logs.find("secret-body-value1") == std::string::npos);
  }

  TEST_CASE("Stop lets a running handler finish") {
    std::promise<void> started;
    std::atomic<bool> finished{false};
    auto server = StartServer(TestOptions(), [&](HttpRequest&) {
      started.set_value();
      std::this_thread::sleep_for(300ms);
      finished = true;
      HttpResponse response;
      response.body = R"({"done":true})";
      return response;
    });
    const std::uint16_t port = server->port();
    auto reply = std::async(std::launch::async, [port] {
      RawClient client(port);
      client.Send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n");
      return client.ReadResponse(kWait);
    });
    REQUIRE(started.get_future().wait_for(kWait) == std::future_status::ready);

    server->Stop(5s);
    CHECK(finished);
    const std::string response = reply.get();
    CHECK(StatusOf(response) == 200);
    CHECK(BodyOf(response) == R"({"done":true})");
    CHECK(HeaderOf(response, "connection") == "close");

    RawClient late(port);
    CHECK_FALSE(late.connected());
    server->Stop(5s);  // idempotent
  }

  TEST_CASE("Stop closes idle keep-alive connections") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
    REQUIRE(StatusOf(client.ReadResponse(kWait)) == 200);

    server->Stop(1s);
    CHECK(client.WaitClosed(kWait));
  }

  TEST_CASE("clients that stop reading hold no worker") {
    auto options = TestOptions();
    options.worker_threads = 1;
    std::atomic<int> large_calls{0};
    auto server = StartServer(options, LargeOrSmallHandler(large_calls));

    std::vector<int> stalled;
    for (int i = 0; i < 4; ++i) {
      const int fd = SendAndStallReading(server->port(), kLargeRequest);
      REQUIRE(fd >= 0);
      stalled.push_back(fd);
    }
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (large_calls < 4 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    // Every handler ran on the single worker, so none of the stalled writes occupies it.
    CHECK(large_calls == 4);

    RawClient client(server->port());
    REQUIRE(client.Send("GET /small HTTP/1.1\r\nHost: t\r\n\r\n"));
    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 200);
    CHECK(BodyOf(response) == "small");
    for (const int fd : stalled) ::close(fd);
  }

  TEST_CASE("response write is bounded by request_timeout") {
    auto options = TestOptions();
    options.request_timeout = 300ms;
    std::atomic<int> large_calls{0};
    auto server = StartServer(options, LargeOrSmallHandler(large_calls));
    const int fd = SendAndStallReading(server->port(), kLargeRequest);
    REQUIRE(fd >= 0);
    std::this_thread::sleep_for(1s);

    // The server gave up on the write and closed the connection, so reading ends before the
    // 8 MiB body.
    timeval timeout{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    std::size_t received = 0;
    bool closed = false;
    char buffer[65536];
    while (received < 16 * 1024 * 1024) {
      const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n <= 0) {
        closed = n == 0 || errno == ECONNRESET;
        break;
      }
      received += static_cast<std::size_t>(n);
    }
    ::close(fd);
    CHECK(closed);
    CHECK(received < 8 * 1024 * 1024);
  }

  TEST_CASE("Start raises the open-file limit to fit max_connections") {
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    REQUIRE(saved.rlim_max >= 2048);
    rlimit lowered = saved;
    lowered.rlim_cur = 512;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &lowered) == 0);

    auto options = TestOptions();
    options.max_connections = 1000;
    auto server = HttpServer::Start(options, EchoHandler());
    rlimit raised{};
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &raised) == 0);
    ::setrlimit(RLIMIT_NOFILE, &saved);
    REQUIRE(server.has_value());
    // max_connections plus the 256 descriptors reserved for everything else.
    CHECK(raised.rlim_cur == 1256);
  }

  TEST_CASE("Start rejects bad options") {
    SUBCASE("only a certificate file") {
      auto options = TestOptions();
      options.tls_cert_file = "/nonexistent/cert.pem";
      auto server = HttpServer::Start(options, EchoHandler());
      REQUIRE_FALSE(server.has_value());
      CHECK(server.error().code() == Code::kInvalidArgument);
    }
    SUBCASE("unreadable TLS files") {
      auto options = TestOptions();
      options.tls_cert_file = "/nonexistent/cert.pem";
      options.tls_key_file = "/nonexistent/key.pem";
      auto server = HttpServer::Start(options, EchoHandler());
      REQUIRE_FALSE(server.has_value());
      CHECK(server.error().code() == Code::kInvalidArgument);
      CHECK(server.error().message().find("/nonexistent/cert.pem") != std::string::npos);
    }
    SUBCASE("empty handler") {
      auto server = HttpServer::Start(TestOptions(), RequestHandler());
      REQUIRE_FALSE(server.has_value());
      CHECK(server.error().code() == Code::kInvalidArgument);
    }
    SUBCASE("port already in use") {
      auto first = StartServer(TestOptions(), EchoHandler());
      auto options = TestOptions();
      options.port = first->port();
      auto second = HttpServer::Start(options, EchoHandler());
      REQUIRE_FALSE(second.has_value());
      CHECK(second.error().code() == Code::kUnavailable);
    }
  }
}

}  // namespace
}  // namespace kw::api
