#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <httplib.h>

#include "api/http_server.hpp"
#include "tests/unit/api/http_test_client.hpp"

namespace kw::api {
namespace {

using namespace std::chrono_literals;
using testing::BodyOf;
using testing::EchoHandler;
using testing::HeaderOf;
using testing::RawClient;
using testing::ResidentMemoryBytes;
using testing::StartServer;
using testing::StatusOf;
using testing::TestOptions;

constexpr auto kWait = 5s;
constexpr std::size_t kMiB = 1024 * 1024;

// Returns an httplib GET result status for `path`, or 0 when the request failed.
int GetStatus(std::uint16_t port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(5, 0);
  client.set_read_timeout(5, 0);
  auto result = client.Get(path);
  return result ? result->status : 0;
}

TEST_SUITE("api/http_server limits") {
  TEST_CASE("Content-Length over the body limit gets 413") {
    auto options = TestOptions();
    options.max_body_bytes = 1 * kMiB;
    auto server = StartServer(options, EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("POST /big HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\n\r\n"));

    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 413);
    CHECK(BodyOf(response) ==
          R"({"errors":["request body too large: the limit is 1048576 bytes"]})");
    CHECK(HeaderOf(response, "connection") == "close");
    CHECK(client.WaitClosed(kWait));
  }

  TEST_CASE("body at the limit is accepted") {
    auto options = TestOptions();
    options.max_body_bytes = 1000;
    auto server = StartServer(options, EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" +
                        std::string(1000, 'x')));
    CHECK(StatusOf(client.ReadResponse(kWait)) == 200);
  }

  TEST_CASE("endless chunked body gets 413 with flat memory") {
    auto options = TestOptions();
    options.max_body_bytes = 1 * kMiB;
    auto server = StartServer(options, EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("POST /upload HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"));

    const std::size_t rss_before = ResidentMemoryBytes();
    std::size_t rss_peak = rss_before;
    const std::string chunk = "10000\r\n" + std::string(0x10000, 'z') + "\r\n";
    const std::size_t max_sent = 64 * kMiB;
    std::size_t sent = 0;
    while (sent < max_sent && !client.WaitReadable(0ms)) {
      if (!client.Send(chunk)) break;
      sent += 0x10000;
      rss_peak = std::max(rss_peak, ResidentMemoryBytes());
    }

    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 413);
    CHECK(sent < max_sent);
    CHECK(rss_peak - rss_before < options.max_body_bytes + 8 * kMiB);
  }

  TEST_CASE("request line without end is rejected with flat memory") {
    auto server = StartServer(TestOptions(), EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("GET /"));

    const std::size_t rss_before = ResidentMemoryBytes();
    std::size_t rss_peak = rss_before;
    const std::string piece(1000, 'a');
    for (int i = 0; i < 100 && !client.WaitReadable(0ms); ++i) {
      if (!client.Send(piece)) break;
      rss_peak = std::max(rss_peak, ResidentMemoryBytes());
    }

    const std::string response = client.ReadResponse(kWait);
    // The request line passes max_url_bytes (8 KiB) before max_header_bytes (16 KiB).
    CHECK(StatusOf(response) == 414);
    CHECK(rss_peak - rss_before < 8 * kMiB);
  }

  TEST_CASE("oversized headers get 431") {
    auto options = TestOptions();
    options.max_header_bytes = 4096;
    auto server = StartServer(options, EchoHandler());

    SUBCASE("one large header") {
      RawClient client(server->port());
      REQUIRE(client.Send("GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + std::string(5000, 'b') +
                          "\r\n\r\n"));
      const std::string response = client.ReadResponse(kWait);
      CHECK(StatusOf(response) == 431);
      CHECK(BodyOf(response).find("request header too large") != std::string::npos);
    }
    SUBCASE("many headers") {
      std::string request = "GET / HTTP/1.1\r\nHost: t\r\n";
      for (int i = 0; i < 500; ++i) request += "X-H" + std::to_string(i) + ": v\r\n";
      RawClient client(server->port());
      REQUIRE(client.Send(request + "\r\n"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 431);
    }
  }

  TEST_CASE("header field count over 100 gets 431") {
    auto server = StartServer(TestOptions(), EchoHandler());
    const auto request_with = [](int fields) {
      std::string request = "GET / HTTP/1.1\r\nHost: t\r\n";
      for (int i = 1; i < fields; ++i) request += "X-H" + std::to_string(i) + ": v\r\n";
      return request + "\r\n";
    };
    {
      RawClient client(server->port());
      REQUIRE(client.Send(request_with(100)));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 200);
    }
    RawClient client(server->port());
    REQUIRE(client.Send(request_with(101)));
    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 431);
    CHECK(BodyOf(response) ==
          R"({"errors":["request header too large: 101 header fields, the limit is 100"]})");
    CHECK(client.WaitClosed(kWait));
  }

  TEST_CASE("URL over max_url_bytes gets 414") {
    auto options = TestOptions();
    options.max_url_bytes = 1024;
    auto server = StartServer(options, EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("GET /" + std::string(2000, 'u') + " HTTP/1.1\r\nHost: t\r\n\r\n"));

    const std::string response = client.ReadResponse(kWait);
    CHECK(StatusOf(response) == 414);
    CHECK(BodyOf(response) ==
          R"({"errors":["request URL too long: the limit is 1024 bytes"]})");
  }

  TEST_CASE("bad framing gets 400 and close") {
    auto server = StartServer(TestOptions(), EchoHandler());
    SUBCASE("Content-Length with Transfer-Encoding") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
      const std::string response = client.ReadResponse(kWait);
      CHECK(StatusOf(response) == 400);
      CHECK(BodyOf(response).find("invalid HTTP request") != std::string::npos);
      CHECK(client.WaitClosed(kWait));
    }
    SUBCASE("invalid chunk size") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "zz\r\nhello\r\n"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 400);
      CHECK(client.WaitClosed(kWait));
    }
    SUBCASE("Transfer-Encoding not ending in chunked") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 400);
    }
    SUBCASE("coding before chunked") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: identity, chunked\r\n"
                          "\r\n0\r\n\r\n"));
      const std::string response = client.ReadResponse(kWait);
      CHECK(StatusOf(response) == 400);
      CHECK(BodyOf(response).find("Transfer-Encoding must be exactly") != std::string::npos);
    }
    SUBCASE("two Transfer-Encoding fields") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 400);
    }
    SUBCASE("chunked in any case is accepted") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: Chunked\r\n\r\n"
                          "2\r\nok\r\n0\r\n\r\n"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 200);
    }
    SUBCASE("two different Content-Length values") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n"
                          "Content-Length: 2\r\n\r\nab"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 400);
    }
  }

  TEST_CASE("stalled request gets 408") {
    auto options = TestOptions();
    options.request_timeout = 300ms;
    auto server = StartServer(options, EchoHandler());

    SUBCASE("half the headers") {
      RawClient client(server->port());
      REQUIRE(client.Send("GET / HTTP/1.1\r\nHost: t\r\n"));
      const std::string response = client.ReadResponse(kWait);
      CHECK(StatusOf(response) == 408);
      CHECK(BodyOf(response).find("request timed out") != std::string::npos);
      CHECK(client.WaitClosed(kWait));
    }
    SUBCASE("part of the body") {
      RawClient client(server->port());
      REQUIRE(client.Send("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc"));
      CHECK(StatusOf(client.ReadResponse(kWait)) == 408);
    }
    SUBCASE("slow trickle within the per-read time") {
      // Each byte arrives well within 300 ms of the last, but the whole request does not.
      RawClient client(server->port());
      const std::string request = "GET / HTTP/1.1\r\nHost: t\r\nX-Slow: abcdefghij\r\n\r\n";
      std::string response;
      for (char c : request) {
        if (!client.Send(std::string(1, c)) || client.WaitReadable(50ms)) break;
      }
      response = client.ReadResponse(kWait);
      CHECK(StatusOf(response) == 408);
    }
  }

  TEST_CASE("idle keep-alive connection is closed") {
    auto options = TestOptions();
    options.idle_timeout = 300ms;
    auto server = StartServer(options, EchoHandler());
    RawClient client(server->port());
    REQUIRE(client.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
    REQUIRE(StatusOf(client.ReadResponse(kWait)) == 200);

    CHECK(client.WaitClosed(kWait));
  }

  TEST_CASE("slowloris connections do not block a normal GET") {
    auto server = StartServer(TestOptions(), EchoHandler());
    std::vector<std::unique_ptr<RawClient>> slow_clients;
    for (int i = 0; i < 200; ++i) {
      slow_clients.push_back(std::make_unique<RawClient>(server->port()));
      REQUIRE(slow_clients.back()->connected());
    }

    std::atomic<bool> stop{false};
    std::atomic<int> rounds{0};
    std::thread trickler([&] {
      const std::string request = "GET / HTTP/1.1\r\nHost: t\r\nX-Padding: slowslowslowslow";
      for (std::size_t i = 0; i < request.size() && !stop; ++i) {
        for (auto& slow : slow_clients) slow->Send(std::string(1, request[i]));
        ++rounds;
        std::this_thread::sleep_for(100ms);
      }
    });
    while (rounds < 2) std::this_thread::sleep_for(10ms);

    const auto start = std::chrono::steady_clock::now();
    const int status = GetStatus(server->port(), "/normal");
    const auto elapsed = std::chrono::steady_clock::now() - start;
    stop = true;
    trickler.join();

    CHECK(status == 200);
    CHECK(elapsed < kWait);
  }

  TEST_CASE("slow body senders do not hold workers") {
    auto options = TestOptions();
    options.worker_threads = 2;
    auto server = StartServer(options, EchoHandler());
    std::vector<std::unique_ptr<RawClient>> slow_clients;
    for (int i = 0; i < 50; ++i) {
      slow_clients.push_back(std::make_unique<RawClient>(server->port()));
      REQUIRE(slow_clients.back()->Send(
          "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n"));
    }

    std::atomic<bool> stop{false};
    std::thread trickler([&] {
      for (int i = 0; i < 50 && !stop; ++i) {
        for (auto& slow : slow_clients) slow->Send("x");
        std::this_thread::sleep_for(100ms);
      }
    });
    std::this_thread::sleep_for(200ms);

    const int status = GetStatus(server->port(), "/fast");
    stop = true;
    trickler.join();
    CHECK(status == 200);
  }

  TEST_CASE("full worker queue gets 503") {
    auto options = TestOptions();
    options.worker_threads = 1;
    options.max_queued_requests = 1;
    std::promise<void> release;
    std::shared_future<void> released = release.get_future().share();
    std::promise<void> first_started;
    std::atomic<int> calls{0};
    auto server = StartServer(options, [&](HttpRequest&) {
      if (calls++ == 0) {
        first_started.set_value();
        released.wait_for(kWait);
      }
      return HttpResponse();
    });

    RawClient running(server->port());
    REQUIRE(running.Send("GET /1 HTTP/1.1\r\nHost: t\r\n\r\n"));
    REQUIRE(first_started.get_future().wait_for(kWait) == std::future_status::ready);

    // One of the next two requests fills the queue and the other is rejected.
    RawClient second(server->port());
    RawClient third(server->port());
    REQUIRE(second.Send("GET /2 HTTP/1.1\r\nHost: t\r\n\r\n"));
    REQUIRE(third.Send("GET /3 HTTP/1.1\r\nHost: t\r\n\r\n"));
    const auto deadline = std::chrono::steady_clock::now() + kWait;
    while (!second.WaitReadable(10ms) && !third.WaitReadable(10ms) &&
           std::chrono::steady_clock::now() < deadline) {
    }
    release.set_value();

    const std::string responses[] = {second.ReadResponse(kWait), third.ReadResponse(kWait)};
    CHECK(StatusOf(running.ReadResponse(kWait)) == 200);
    const int busy = (StatusOf(responses[0]) == 503) + (StatusOf(responses[1]) == 503);
    const int served = (StatusOf(responses[0]) == 200) + (StatusOf(responses[1]) == 200);
    CHECK(busy == 1);
    CHECK(served == 1);
    for (const auto& response : responses) {
      if (StatusOf(response) == 503) {
        CHECK(BodyOf(response).find("server busy") != std::string::npos);
      }
    }
  }

  TEST_CASE("connection limits reject extra connections") {
    auto options = TestOptions();
    SUBCASE("per address") { options.max_connections_per_address = 2; }
    SUBCASE("overall") { options.max_connections = 2; }
    auto server = StartServer(options, EchoHandler());

    auto first = std::make_unique<RawClient>(server->port());
    RawClient second(server->port());
    for (RawClient* client : {first.get(), &second}) {
      REQUIRE(client->Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n"));
      REQUIRE(StatusOf(client->ReadResponse(kWait)) == 200);
    }

    RawClient extra(server->port());
    extra.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    const std::string rejected = extra.ReadResponse(kWait);
    // The 503 is best effort: the server may reset the connection before it is read.
    CHECK((rejected.empty() || StatusOf(rejected) == 503));
    CHECK(extra.WaitClosed(kWait));

    // Closing one connection frees its slot.
    first.reset();
    int status = 0;
    for (int attempt = 0; attempt < 50 && status != 200; ++attempt) {
      RawClient retry(server->port());
      retry.Send("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
      status = StatusOf(retry.ReadResponse(kWait));
      if (status != 200) std::this_thread::sleep_for(20ms);
    }
    CHECK(status == 200);
  }
}

}  // namespace
}  // namespace kw::api
