// Rate limits and the AppRole login lockout through the real binary in config mode. The tests
// check 429 with Retry-After, recovery after the wait, and limits per address, per token
// accessor and per (role_id, address). A second loopback address (127.0.0.2) shows that an
// attacker's guesses do not lock out other addresses.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kSoftHsmModule = "/usr/lib/softhsm/libsofthsm2.so";
constexpr std::string_view kInvalidLogin = "invalid role ID or secret ID";

// A SoftHSM token and a -config file with `rate_limit` set, started and initialised.
struct LimitedServer {
  TempDir dir;
  fs::path softhsm_conf = dir.path() / "softhsm2.conf";
  std::string softhsm_env = "SOFTHSM2_CONF=" + softhsm_conf.string();
  std::unique_ptr<ServerProcess> process;
  std::string root_token;

  void Start(const json& rate_limit) {
    fs::create_directories(dir.path() / "tokens");
    WriteTextFile(softhsm_conf, "directories.tokendir = " + (dir.path() / "tokens").string() +
                                "\nobjectstore.backend = file\nlog.level = ERROR\n");
    WriteTextFile(dir.path() / "pin", "e2e-user-pin-1234");
    const ExitResult token_init = RunProgram(
        "/usr/bin/softhsm2-util",
        {"--init-token", "--free", "--label", "e2e-rate", "--pin", "e2e-user-pin-1234",
         "--so-pin", "e2e-so-pin-5678"},
        {softhsm_env});
    REQUIRE_MESSAGE(token_init.exit_code == 0, token_init.out << token_init.err);

    const json config = {{"listener", {{"address", "127.0.0.1:0"}}},
                         {"storage", {{"path", db_path().string()}}},
                         {"hsm",
                          {{"module", std::string(kSoftHsmModule)},
                           {"token_label", "e2e-rate"},
                           {"pin_file", (dir.path() / "pin").string()}}},
                         {"rate_limit", rate_limit}};
    const fs::path config_path = dir.path() / "keyward.json";
    WriteTextFile(config_path, config.dump(2));
    process = std::make_unique<ServerProcess>(
        std::vector<std::string>{"server", "-config", config_path.string()},
        std::vector<std::string>{softhsm_env}, dir.path());
    REQUIRE(process->Start());

    // sys/init is exempt from every limit, as the other unauthenticated sys endpoints are.
    auto init = MakeClient(port(), "")->Put("/v1/sys/init", "{}", "application/json");
    REQUIRE(StatusOf(init) == 200);
    root_token = BodyOf(init)["root_token"].get<std::string>();
  }

  std::uint16_t port() const { return process->port(); }
  fs::path db_path() const { return dir.path() / "keyward.db"; }
};

// Sends one HTTP/1.1 request from the local address `from` (a loopback address such as
// 127.0.0.2) to 127.0.0.1:`port` and reads the response until the server closes.
RawResponse SendFrom(const std::string& from, std::uint16_t port, const std::string& method,
                     const std::string& path, const std::string& body) {
  RawResponse response;
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  REQUIRE(::inet_pton(AF_INET, from.c_str(), &local.sin_addr) == 1);
  REQUIRE_MESSAGE(::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) == 0,
                  "cannot bind to " << from);
  sockaddr_in server{};
  server.sin_family = AF_INET;
  server.sin_port = htons(port);
  server.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&server), sizeof server) != 0) {
    ::close(fd);
    return response;
  }
  const std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" +
                              "Content-Type: application/json\r\nContent-Length: " +
                              std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
                              body;
  REQUIRE(::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(request.size()));
  std::string bytes;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 100) <= 0) continue;
    char buffer[16384];
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    bytes.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return ParseRawResponse(bytes);
}

// Returns the Retry-After value in seconds, or -1 when the header is missing.
int RetryAfter(const httplib::Result& result) {
  if (!result || !result->has_header("Retry-After")) return -1;
  return std::stoi(result->get_header_value("Retry-After"));
}

std::string FirstError(const httplib::Result& result) {
  const json body = BodyOf(result);
  if (!body.is_object() || !body.contains("errors") || body["errors"].empty()) return "";
  return body["errors"][0].get<std::string>();
}

// Returns the message without its "; retry in N s" tail, which counts down.
std::string WithoutWait(const std::string& message) {
  return message.substr(0, message.rfind("; retry in "));
}

httplib::Result Login(httplib::Client& client, const std::string& role_id,
                      const std::string& secret_id) {
  return PostJson(client, "/v1/auth/approle/login",
                  {{"role_id", role_id}, {"secret_id", secret_id}});
}

std::size_t AuditRecordCount(const fs::path& db_path) {
  Database db(db_path);
  return AuditRecords(db).size();
}

void WaitSeconds(int seconds) { std::this_thread::sleep_for(std::chrono::seconds(seconds)); }

}  // namespace

TEST_SUITE("e2e/rate_limit") {
  TEST_CASE("per-address limit and recovery") {
    LimitedServer server;
    // One request per 5 s after a burst of 3: the fourth request in a row is refused even on
    // a slow machine.
    server.Start({{"per_address", {{"rate", 0.2}, {"burst", 3}}}});
    auto root = MakeClient(server.port(), server.root_token);
    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      CHECK(StatusOf(root->Get("/v1/auth/token/lookup-self")) == 200);
    }
    const std::size_t records = AuditRecordCount(server.db_path());

    auto refused = root->Get("/v1/auth/token/lookup-self");
    REQUIRE(StatusOf(refused) == 429);
    const int wait = RetryAfter(refused);
    CHECK(wait >= 1);
    CHECK(wait <= 5);
    const std::string message = FirstError(refused);
    CHECK(message.starts_with("rate limit exceeded: too many requests from client address "
                              "127.0.0.1; retry in "));
    CHECK(message.find(server.root_token) == std::string::npos);
    // A refused request reaches neither storage nor the audit log.
    CHECK(AuditRecordCount(server.db_path()) == records);

    // Health checks are exempt, and another address has its own bucket.
    CHECK(StatusOf(MakeClient(server.port(), "")->Get("/v1/sys/health")) == 200);
    const RawResponse other = SendFrom("127.0.0.2", server.port(), "GET",
                                       "/v1/sys/mounts", "");
    CHECK(other.status == 403);

    WaitSeconds(wait);
    CHECK(StatusOf(root->Get("/v1/auth/token/lookup-self")) == 200);
  }

  TEST_CASE("per-accessor and login limits") {
    LimitedServer server;
    server.Start({{"per_accessor", {{"rate", 0.2}, {"burst", 3}}},
                  {"login_per_address", {{"rate", 0.2}, {"burst", 2}}}});
    auto root = MakeClient(server.port(), server.root_token);
    auto create = [&] {
      auto created = PostJson(*root, "/v1/auth/token/create", {{"policies", {"default"}}});
      REQUIRE(StatusOf(created) == 200);
      return BodyOf(created)["auth"];
    };
    const json first = create();
    const json second = create();
    auto first_client = MakeClient(server.port(), first["client_token"].get<std::string>());
    auto second_client = MakeClient(server.port(), second["client_token"].get<std::string>());

    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      CHECK(StatusOf(first_client->Get("/v1/auth/token/lookup-self")) == 200);
    }
    auto refused = first_client->Get("/v1/auth/token/lookup-self");
    REQUIRE(StatusOf(refused) == 429);
    CHECK(RetryAfter(refused) >= 1);
    const std::string message = FirstError(refused);
    CHECK(message.starts_with("rate limit exceeded: too many requests with token accessor " +
                              first["accessor"].get<std::string>() + "; retry in "));
    CHECK(message.find(first["client_token"].get<std::string>()) == std::string::npos);
    // The other token, from the same address, is not limited.
    CHECK(StatusOf(second_client->Get("/v1/auth/token/lookup-self")) == 200);

    // Logins carry no token: they have their own limit per address.
    auto anonymous = MakeClient(server.port(), "");
    for (int i = 0; i < 2; ++i) {
      CAPTURE(i);
      auto failed = Login(*anonymous, RandomHex(16), RandomHex(16));
      CHECK(StatusOf(failed) == 400);
      CHECK(FirstError(failed) == kInvalidLogin);
    }
    auto login_refused = Login(*anonymous, RandomHex(16), RandomHex(16));
    REQUIRE(StatusOf(login_refused) == 429);
    CHECK(RetryAfter(login_refused) >= 1);
    CHECK(FirstError(login_refused)
              .starts_with("rate limit exceeded: too many login requests from client address "
                           "127.0.0.1; retry in "));
    // Requests other than logins from the same address go on.
    CHECK(StatusOf(second_client->Get("/v1/auth/token/lookup-self")) == 200);
  }

  TEST_CASE("approle lockout per role and address") {
    LimitedServer server;
    server.Start({{"approle_lockout",
                   {{"lockout_threshold", 3},
                    {"lockout_duration", "6s"},
                    {"lockout_counter_reset", "1m"}}}});
    auto root = MakeClient(server.port(), server.root_token);
    REQUIRE(StatusOf(PostJson(*root, "/v1/auth/approle/role/app", json::object())) == 204);
    auto role = root->Get("/v1/auth/approle/role/app/role-id");
    REQUIRE(StatusOf(role) == 200);
    const std::string role_id = BodyOf(role)["data"]["role_id"].get<std::string>();
    auto generated = PostJson(*root, "/v1/auth/approle/role/app/secret-id", json::object());
    REQUIRE(StatusOf(generated) == 200);
    const std::string secret_id = BodyOf(generated)["data"]["secret_id"].get<std::string>();

    auto anonymous = MakeClient(server.port(), "");
    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      auto wrong = Login(*anonymous, role_id, RandomHex(16));
      CHECK(StatusOf(wrong) == 400);
      CHECK(FirstError(wrong) == kInvalidLogin);
    }
    // Locked out: the right secret ID is refused too, without a storage read or an audit
    // record.
    const std::size_t records = AuditRecordCount(server.db_path());
    auto locked = Login(*anonymous, role_id, secret_id);
    REQUIRE(StatusOf(locked) == 429);
    const int wait = RetryAfter(locked);
    CHECK(wait >= 1);
    CHECK(wait <= 6);
    const std::string message = FirstError(locked);
    CHECK(message.starts_with("login locked out: too many failed logins for this role ID from "
                              "client address 127.0.0.1; retry in "));
    CHECK(message.find(role_id) == std::string::npos);
    CHECK(AuditRecordCount(server.db_path()) == records);

    // An unknown role ID gets the same responses, so the lockout does not reveal whether it
    // exists.
    const std::string unknown = RandomHex(16);
    for (int i = 0; i < 3; ++i) {
      CAPTURE(i);
      auto wrong = Login(*anonymous, unknown, RandomHex(16));
      CHECK(StatusOf(wrong) == 400);
      CHECK(FirstError(wrong) == kInvalidLogin);
    }
    auto unknown_locked = Login(*anonymous, unknown, RandomHex(16));
    CHECK(StatusOf(unknown_locked) == 429);
    CHECK(RetryAfter(unknown_locked) >= 1);
    CHECK(WithoutWait(FirstError(unknown_locked)) == WithoutWait(message));

    // The same role from another address is not locked out by these guesses.
    const std::string body = json({{"role_id", role_id}, {"secret_id", secret_id}}).dump();
    const RawResponse elsewhere =
        SendFrom("127.0.0.2", server.port(), "POST", "/v1/auth/approle/login", body);
    CHECK(elsewhere.status == 200);
    CHECK(json::parse(elsewhere.body, nullptr, false)["auth"]["client_token"].is_string());

    // Once the lockout ends, the right secret ID works from the locked address again.
    auto still_locked = Login(*anonymous, role_id, secret_id);
    const int remaining = StatusOf(still_locked) == 429 ? RetryAfter(still_locked) : 0;
    WaitSeconds(remaining);
    auto after = Login(*anonymous, role_id, secret_id);
    CHECK(StatusOf(after) == 200);
  }
}

}  // namespace kw::e2e
