// Hostile and malformed requests against the real binary, over raw sockets so that nothing
// in between normalises them: the server responds to each with the right status and keeps serving.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

constexpr std::size_t kMiB = 1024 * 1024;

// Returns a complete HTTP/1.1 request with Connection: close.
std::string RawRequest(const std::string& method, const std::string& target,
                       const std::string& body, const std::string& headers) {
  std::string request = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
                        "Connection: close\r\n";
  if (!body.empty() || method == "POST" || method == "PUT" || method == "PATCH") {
    request += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return request + "\r\n" + body;
}

// Returns a JSON body nested `depth` arrays deep inside {"data": {"k": ...}}.
std::string Nested(int depth) {
  return "{\"data\":{\"k\":" + std::string(static_cast<std::size_t>(depth), '[') +
         std::string(static_cast<std::size_t>(depth), ']') + "}}";
}

struct BadInput {
  std::string method;
  std::string target;
  std::string body;
  std::string headers;  // extra header lines, each ending in \r\n; the token is added
  int status;
  std::string error;  // a substring of the response body
  bool authenticate = true;
};

std::vector<BadInput> BadInputs() {
  const std::string json_type = "Content-Type: application/json\r\n";
  return {
      {"GET", "/v1/secret/data/a/../known", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a/%2e%2e/known", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a/%2E%2e", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a//known", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%2fknown", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%00b", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%ffb", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%c3%28", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%01b", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%1bb", "", "", 400, "path"},
      {"GET", "/v1/secret/data/a%zz", "", "", 400, "path"},
      {"POST", "/v1/secret/data/./known", "{\"data\":{\"k\":\"x\"}}", json_type, 400, "path"},
      {"GET", "/v1/secret/data/known?version=abc", "", "", 400, "version"},
      {"GET", "/v1/secret/data/known?version=-1", "", "", 400, "version"},
      {"GET", "/v1/secret/data/known?version=1.5", "", "", 400, "version"},
      {"POST", "/v1/secret/data/known", "{\"data\":", json_type, 400, "JSON"},
      {"POST", "/v1/secret/data/known", "{\"data\":{\"k\":\"x\"}} extra", json_type, 400, "JSON"},
      {"POST", "/v1/secret/data/known", "[1,2]", json_type, 400, "object"},
      {"POST", "/v1/secret/data/known", Nested(70), json_type, 400, "JSON"},
      {"POST", "/v1/secret/data/known", "{\"data\":\"e2e-typed-value\"}", json_type, 400, "data"},
      {"POST", "/v1/secret/data/known",
       "{\"data\":{\"k\":\"x\"},\"options\":{\"cas\":\"e2e-cas\"}}", json_type, 400, "cas"},
      {"POST", "/v1/secret/data/known", "{\"data\":{\"k\":\"x\"},\"options\":[1]}", json_type, 400,
       "options"},
      {"POST", "/v1/secret/data/known", "{}", json_type, 400, "data"},
      {"POST", "/v1/secret/data/known", "{\"data\":{\"k\":\"\xff\xfe\"}}", json_type, 400, "JSON"},
      {"POST", "/v1/secret/data/known", "{\"data\":{\"k\":\"x\"},\"options\":{\"cas\":0}}",
       json_type, 400, "check-and-set"},
      {"POST", "/v1/secret/metadata/known", "{\"max_versions\":\"many\"}", json_type, 400,
       "max_versions"},
      {"POST", "/v1/secret/metadata/known", "{\"cas_required\":\"maybe\"}", json_type, 400,
       "cas_required"},
      {"POST", "/v1/secret/metadata/known", "{\"custom_metadata\":{\"a\":1}}", json_type, 400,
       "custom_metadata"},
      {"POST", "/v1/secret/metadata/known", "{\"delete_version_after\":\"forever\"}", json_type,
       400, "delete_version_after"},
      {"POST", "/v1/secret/destroy/known", "{\"versions\":\"a,b\"}", json_type, 400, "versions"},
      {"POST", "/v1/secret/delete/known", "{}", json_type, 400, "versions"},
      {"POST", "/v1/secret/data/", "{\"data\":{\"k\":\"x\"}}", json_type, 400, "path"},
      {"PATCH", "/v1/secret/data/known", "{\"data\":{\"k\":\"x\"}}", json_type, 415, "merge-patch"},
      {"PUT", "/v1/secret/nonsense/known", "{}", json_type, 404, "route"},
      {"GET", "/v1/nothing/here", "", "", 404, "route"},
      {"GET", "/v2/secret/data/known", "", "", 404, "route"},
      {"DELETE", "/v1/secret/config", "", "", 405, "DELETE"},
      {"PATCH", "/v1/secret/metadata/known", "{\"max_versions\":\"x\"}",
       "Content-Type: application/merge-patch+json\r\n", 400, "max_versions"},
      {"PATCH", "/v1/secret/config", "{}", json_type, 405, "PATCH"},
      {"GET", "/v1/secret/destroy/known", "", "", 405, "GET"},
      {"LIST", "/v1/secret/data/known", "", "", 405, "LIST"},
      {"GET", "/v1/sys/seal", "", "", 405, "GET"},
      {"POST", "/v1/sys/health", "{}", json_type, 405, "sys/health"},
      {"POST", "/v1/secret/data/known", "{\"data\":{\"k\":\"x\"}}", json_type, 403,
       "permission denied", false},
      {"DELETE", "/v1/secret/metadata/known", "", "X-Vault-Token: e2e-wrong\r\n", 403,
       "permission denied", false},
      {"PUT", "/v1/sys/seal", "", "Authorization: Bearer e2e-wrong\r\n", 403, "permission denied",
       false},
      {"POST", "/v1/secret/data/known", "{\"data\":{}}", "Content-Length: 12\r\n", 400, "", true},
      {"POST", "/v1/secret/data/known", "x", "Transfer-Encoding: gzip\r\n", 400,
       "Transfer-Encoding"},
      {"GET", "/v1/secret/data/" + std::string(9000, 'u'), "", "", 414, "URL"},
      {"GET", "/v1/secret/data/known", "", "X-Big: " + std::string(20000, 'h') + "\r\n", 431,
       "header"},
  };
}

}  // namespace

TEST_SUITE("e2e/limits") {
  TEST_CASE("bad inputs table") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    const json known = {{"k", "known-value"}};
    REQUIRE(StatusOf(WriteSecret(*client, "known", known)) == 200);
    const std::string token_header = "X-Vault-Token: " + server.token() + "\r\n";

    const std::vector<BadInput> inputs = BadInputs();
    REQUIRE(inputs.size() >= 25);
    for (const BadInput& input : inputs) {
      CAPTURE(input.method);
      CAPTURE(input.target.substr(0, 80));
      CAPTURE(input.body.substr(0, 80));
      const std::string headers = (input.authenticate ? token_header : "") + input.headers;
      const RawResponse response =
          SendRaw(server.port(), RawRequest(input.method, input.target, input.body, headers));
      CAPTURE(response.head);
      CAPTURE(response.body.substr(0, 300));
      CHECK(response.status == input.status);
      CHECK(response.body.find(input.error) != std::string::npos);
      CHECK(response.body.find("e2e-typed-value") == std::string::npos);
      CHECK(response.body.find("e2e-cas") == std::string::npos);

      CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
      auto read = client->Get("/v1/secret/data/known");
      CHECK(StatusOf(read) == 200);
      CHECK(BodyOf(read)["data"]["data"] == known);
      CHECK(BodyOf(read)["data"]["metadata"]["version"] == 1);
    }
  }

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
    CHECK(rss_during < rss_before + 64 * 1024);
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/health")) == 200);
    CHECK(StatusOf(server.Client()->Get("/v1/secret/data/endless")) == 404);

    // A declared length over the limit is rejected before any body is read.
    const RawResponse declared = SendRaw(
        server.port(),
        "POST /v1/secret/data/endless HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Vault-Token: " +
            server.token() + "\r\nContent-Length: " + std::to_string(40 * kMiB) + "\r\n\r\n{");
    CHECK(declared.status == 413);
    CHECK(ResidentKib(server.process().pid()) < rss_before + 64 * 1024);
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
  }
}  // TEST_SUITE

}  // namespace kw::e2e
