// The single-header C++ SDK (include/keyward/client.hpp) against the real server: every typed
// call, error results, TLS with a CA file and a client certificate, the LifetimeWatcher with
// short TTLs, and the three example programs. Retries and timeouts run against small loopback
// servers that the tests start themselves.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <chrono>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

// This file uses the SDK's opt-in exceptions; the example programs build it without them.
#define KEYWARD_SDK_THROW
#include "include/keyward/client.hpp"
#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/postgres_harness.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// Builds an SDK client; fails the test when the configuration is rejected.
std::unique_ptr<keyward::Client> MakeSdk(keyward::ClientConfig config) {
  auto client = keyward::Client::Create(std::move(config));
  REQUIRE_MESSAGE(client.ok(), client.error().message());
  return std::move(client).value();
}

std::unique_ptr<keyward::Client> SdkFor(const std::string& url, const std::string& token) {
  keyward::ClientConfig config;
  config.address = url;
  config.token = keyward::SecretString(token);
  return MakeSdk(std::move(config));
}

// Sends a raw request that the test's setup needs; fails the test unless it succeeds.
keyward::Json MustRequest(keyward::Client& client, const std::string& method,
                          const std::string& path, const keyward::Json& body = nullptr) {
  auto reply = client.Request(method, path, body, keyward::RetryMode::kNever);
  REQUIRE_MESSAGE(reply.ok(), reply.error().message());
  return reply->body;
}

// Polls `condition` every 100 ms until it is true or `limit` passes.
template <class Condition>
bool WaitFor(Condition condition, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(100ms);
  }
  return condition();
}

// A CA and a SPIFFE role on a fresh server: roles "web" (spiffe://example.org/ns/*, `ttl`)
// and "self" ({{identity.spiffe_id}}).
void SetUpPki(keyward::Client& root, const std::string& ttl = "1h") {
  MustRequest(root, "POST", "pki/root/generate/internal", {{"trust_domain", "example.org"}});
  MustRequest(root, "POST", "pki/roles/web",
              {{"allowed_spiffe_ids", {"spiffe://example.org/ns/*"}}, {"ttl", ttl}});
  MustRequest(root, "POST", "pki/roles/self",
              {{"allowed_spiffe_ids", {"{{identity.spiffe_id}}"}}, {"ttl", ttl}});
}

// Returns a PEM PKCS#10 request for a new P-256 key.
std::string MakeCsr() {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  REQUIRE(key != nullptr);
  X509_REQ* request = X509_REQ_new();
  REQUIRE(X509_REQ_set_pubkey(request, key) == 1);
  REQUIRE(X509_REQ_sign(request, key, EVP_sha256()) > 0);
  BIO* out = BIO_new(BIO_s_mem());
  REQUIRE(PEM_write_bio_X509_REQ(out, request) == 1);
  char* data = nullptr;
  const long size = BIO_get_mem_data(out, &data);
  std::string pem(data, static_cast<std::size_t>(size));
  BIO_free(out);
  X509_REQ_free(request);
  EVP_PKEY_free(key);
  return pem;
}

// A loopback HTTP server that returns the status `fail_status` for the first `failures`
// requests, then 200 and a body that fits every typed call. It counts requests.
class FlakyServer {
 public:
  FlakyServer(int failures, int fail_status) : failures_(failures), fail_status_(fail_status) {
    server_.Get(".*", [this](const auto& request, auto& response) { Answer(request, response); });
    server_.Post(".*", [this](const auto& request, auto& response) { Answer(request, response); });
    server_.Put(".*", [this](const auto& request, auto& response) { Answer(request, response); });
    server_.Delete(".*",
                   [this](const auto& request, auto& response) { Answer(request, response); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    REQUIRE(WaitFor([this] { return server_.is_running(); }, 5000ms));
  }
  ~FlakyServer() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_.load(); }
  void Reset(int failures) {
    failures_ = failures;
    requests_ = 0;
  }

 private:
  void Answer(const httplib::Request&, httplib::Response& response) {
    const int seen = ++requests_;
    if (seen <= failures_.load()) {
      response.status = fail_status_;
      response.set_content(R"({"errors": ["injected failure"]})", "application/json");
      return;
    }
    const keyward::Json body = {
        {"data",
         {{"data", {{"k", "v"}}},
          {"metadata", {{"version", 1}}},
          {"username", "u"},
          {"password", "p"}}},
        {"auth", {{"client_token", "t"}, {"lease_duration", 60}}}};
    response.set_content(body.dump(), "application/json");
  }

  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
  std::atomic<int> failures_;
  const int fail_status_;
  std::atomic<int> requests_{0};
};

// A loopback listener that accepts connections and closes them without a reply, counting
// them: a server that is up but fails every request.
class ClosingListener {
 public:
  ClosingListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    port_ = ntohs(address.sin_port);
    REQUIRE(::listen(fd_, 16) == 0);
    thread_ = std::thread([this] {
      while (!stopping_) {
        pollfd ready{fd_, POLLIN, 0};
        if (::poll(&ready, 1, 50) <= 0) continue;
        const int connection = ::accept(fd_, nullptr, nullptr);
        if (connection < 0) continue;
        ++accepted_;
        ::close(connection);
      }
    });
  }
  ~ClosingListener() {
    stopping_ = true;
    thread_.join();
    ::close(fd_);
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_.load(); }
  void Reset() { accepted_ = 0; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

// A loopback HTTP server that replies to every request of the methods httplib routes (not
// LIST) through `handler`: a stand-in for a hostile or broken server.
class ScriptedServer {
 public:
  explicit ScriptedServer(httplib::Server::Handler handler) {
    server_.Get(".*", handler);
    server_.Post(".*", handler);
    server_.Put(".*", handler);
    server_.Patch(".*", handler);
    server_.Delete(".*", handler);
    server_.set_keep_alive_timeout(1);
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    REQUIRE(WaitFor([this] { return server_.is_running(); }, 5000ms));
  }
  ~ScriptedServer() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = 0;
};

// Makes `response` a 200 reply that announces 100,000 bytes of JSON and sends one byte every
// 100 ms until the client disconnects or `stop` is set.
void DripReply(httplib::Response& response, const std::atomic<bool>& stop) {
  response.set_content_provider(
      100000, "application/json",
      [&stop](std::size_t, std::size_t, httplib::DataSink& sink) {
        if (stop.load()) return false;
        std::this_thread::sleep_for(100ms);
        return sink.write("[", 1);
      });
}

keyward::ClientConfig FastRetries(const std::string& url, int max_retries) {
  keyward::ClientConfig config;
  config.address = url;
  config.token = keyward::SecretString("test-token");
  config.max_retries = max_retries;
  config.backoff_base = 10ms;
  config.backoff_max = 40ms;
  return config;
}

std::string ExamplePath(const std::string& name) {
  return std::string(KEYWARD_BUILD_ROOT) + "/examples/" + name;
}

}  // namespace

TEST_SUITE("e2e/sdk") {
  TEST_CASE("sdk: kv calls with versions and cas") {
    DevServer server;
    REQUIRE(server.Start());
    auto sdk = SdkFor(server.url(), server.token());

    auto first = sdk->KvPut("app/db", {{"user", "app"}, {"password", "one"}});
    REQUIRE_MESSAGE(first.ok(), first.error().message());
    CHECK(first->version == 1);
    auto second = sdk->KvPut("app/db", {{"user", "app"}, {"password", "two"}}, 1);
    REQUIRE(second.ok());
    CHECK(second->version == 2);

    // A stale check-and-set is an error result, not an exception.
    auto stale = sdk->KvPut("app/db", {{"password", "three"}}, 1);
    REQUIRE_FALSE(stale.ok());
    CHECK(stale.error().code() == keyward::ErrorCode::kAborted);
    CHECK(stale.error().status() == 400);
    REQUIRE(stale.error().server_messages().size() == 1);
    CHECK(stale.error().server_messages()[0].find("check-and-set") != std::string::npos);
    CHECK(stale.error().message().find("three") == std::string::npos);

    auto current = sdk->KvGet("app/db");
    REQUIRE(current.ok());
    CHECK(current->version == 2);
    CHECK(current->data.Reveal()["password"] == "two");
    auto old = sdk->KvGet("app/db", 1);
    REQUIRE(old.ok());
    CHECK(old->data.Reveal()["password"] == "one");

    auto patched = sdk->KvPatch("app/db", {{"port", 5432}, {"user", nullptr}});
    REQUIRE_MESSAGE(patched.ok(), patched.error().message());
    CHECK(patched->version == 3);
    auto merged = sdk->KvGet("app/db");
    REQUIRE(merged.ok());
    CHECK(merged->data.Reveal()["port"] == 5432);
    CHECK(merged->data.Reveal()["password"] == "two");
    CHECK_FALSE(merged->data.Reveal().contains("user"));

    REQUIRE(sdk->KvPut("app/web", {{"x", "1"}}).ok());
    auto names = sdk->KvList("app");
    REQUIRE(names.ok());
    CHECK(*names == std::vector<std::string>{"db", "web"});
    auto top = sdk->KvList("");
    REQUIRE(top.ok());
    CHECK(*top == std::vector<std::string>{"app/"});
    auto none = sdk->KvList("nothing/here");
    REQUIRE(none.ok());
    CHECK(none->empty());

    REQUIRE(sdk->KvDelete("app/db").ok());
    auto deleted = sdk->KvGet("app/db");
    REQUIRE_FALSE(deleted.ok());
    CHECK(deleted.error().code() == keyward::ErrorCode::kNotFound);
    CHECK(deleted.error().status() == 404);
    REQUIRE(sdk->KvUndelete("app/db", {3}).ok());
    CHECK(sdk->KvGet("app/db").ok());
    REQUIRE(sdk->KvDelete("app/db", {2}).ok());
    CHECK(sdk->KvGet("app/db", 2).error().status() == 404);
    REQUIRE(sdk->KvDestroy("app/db", {1}).ok());
    CHECK(sdk->KvGet("app/db", 1).error().status() == 404);
    CHECK(sdk->KvUndelete("app/db", {}).error().code() == keyward::ErrorCode::kInvalidArgument);

    auto metadata = sdk->KvMetadata("app/db");
    REQUIRE(metadata.ok());
    CHECK((*metadata)["current_version"] == 3);
    CHECK((*metadata)["versions"]["1"]["destroyed"] == true);
    CHECK((*metadata)["versions"]["2"]["deletion_time"] != "");

    REQUIRE(sdk->KvDeleteMetadata("app/db").ok());
    CHECK(sdk->KvGet("app/db").error().code() == keyward::ErrorCode::kNotFound);
    auto missing = sdk->KvGet("no/such/secret");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().status() == 404);
    CHECK(missing.error().code() == keyward::ErrorCode::kNotFound);
    CHECK_THROWS_AS(missing.value(), keyward::Error);
    CHECK_THROWS_AS(sdk->KvUndelete("app/db", {}).value(), keyward::Error);
    CHECK(sdk->KvPut("app/db", keyward::Json::array()).error().code() ==
          keyward::ErrorCode::kInvalidArgument);
    CHECK(sdk->KvPut("app/db", {{"bytes", "\xff\xfe"}}).error().code() ==
          keyward::ErrorCode::kInvalidArgument);
  }

  TEST_CASE("sdk: token calls") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());

    keyward::TokenCreateOptions options;
    options.policies = {"default"};
    options.ttl = 1h;
    options.metadata = {{"app", "billing"}};
    auto created = root->TokenCreate(options);
    REQUIRE_MESSAGE(created.ok(), created.error().message());
    CHECK(created->client_token.Reveal().starts_with("kw."));
    CHECK(created->lease_duration == 3600s);
    CHECK(created->renewable);
    CHECK(created->metadata["app"] == "billing");

    auto child = SdkFor(server.url(), created->client_token.Reveal());
    auto self = child->TokenLookupSelf();
    REQUIRE_MESSAGE(self.ok(), self.error().message());
    CHECK(self->accessor == created->accessor);
    CHECK(self->ttl > 3500s);
    CHECK(self->creation_ttl == 3600s);
    CHECK_FALSE(self->data.contains("id"));
    auto looked_up = root->TokenLookup(created->client_token);
    REQUIRE(looked_up.ok());
    CHECK(looked_up->accessor == created->accessor);

    auto renewed = child->TokenRenewSelf(1800s);
    REQUIRE_MESSAGE(renewed.ok(), renewed.error().message());
    CHECK(renewed->lease_duration == 1800s);
    CHECK(renewed->accessor == created->accessor);
    auto renewed_by_root = root->TokenRenew(created->client_token, 2400s);
    REQUIRE(renewed_by_root.ok());
    CHECK(renewed_by_root->lease_duration == 2400s);

    keyward::TokenCreateOptions orphan_options;
    orphan_options.orphan = true;
    orphan_options.ttl = 10min;
    auto orphan = root->TokenCreate(orphan_options);
    REQUIRE_MESSAGE(orphan.ok(), orphan.error().message());
    CHECK(orphan->orphan);
    REQUIRE(root->TokenRevoke(orphan->client_token).ok());
    auto gone = root->TokenLookup(orphan->client_token);
    REQUIRE_FALSE(gone.ok());
    CHECK(gone.error().status() == 403);

    REQUIRE(child->TokenRevokeSelf().ok());
    auto after = child->TokenLookupSelf();
    REQUIRE_FALSE(after.ok());
    CHECK(after.error().code() == keyward::ErrorCode::kPermissionDenied);
    CHECK(after.error().status() == 403);

    // SetToken switches the token of later calls.
    child->SetToken(keyward::SecretString(server.token()));
    CHECK(child->TokenLookupSelf().ok());
  }

  TEST_CASE("sdk: approle login") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    MustRequest(*root, "POST", "auth/approle/role/web",
                {{"token_policies", "default"}, {"token_ttl", "1h"}});
    const auto role_id =
        MustRequest(*root, "GET", "auth/approle/role/web/role-id")["data"]["role_id"];
    const auto secret_id =
        MustRequest(*root, "POST", "auth/approle/role/web/secret-id")["data"]["secret_id"];

    auto anonymous = SdkFor(server.url(), "");
    auto auth = anonymous->AppRoleLogin(keyward::SecretString(role_id.get<std::string>()),
                                        keyward::SecretString(secret_id.get<std::string>()));
    REQUIRE_MESSAGE(auth.ok(), auth.error().message());
    CHECK_FALSE(auth->client_token.empty());
    CHECK(auth->metadata["role_name"] == "web");
    CHECK(auth->lease_duration == 3600s);
    CHECK(anonymous->token().empty());

    auto wrong = anonymous->AppRoleLogin(keyward::SecretString(role_id.get<std::string>()),
                                         keyward::SecretString("not-the-secret-id"));
    REQUIRE_FALSE(wrong.ok());
    CHECK(wrong.error().status() == 400);
    CHECK(wrong.error().message().find("not-the-secret-id") == std::string::npos);
  }

  TEST_CASE("sdk: raw request and error results") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());

    auto health = root->Request("GET", "sys/health");
    REQUIRE(health.ok());
    CHECK(health->status == 200);
    CHECK(health->body["sealed"] == false);
    auto with_query = root->Request("GET", "/v1/sys/health?sealedcode=299");
    REQUIRE(with_query.ok());
    CHECK(with_query->status == 200);
    REQUIRE(root->KvPut("a/b", {{"k", "v"}}).ok());
    auto listed = root->Request("LIST", "secret/metadata/a");
    REQUIRE(listed.ok());
    CHECK(listed->body["data"]["keys"] == keyward::Json::array({"b"}));

    auto unknown = root->Request("GET", "no/such/engine");
    REQUIRE_FALSE(unknown.ok());
    CHECK(unknown.error().status() == 404);

    auto stranger = SdkFor(server.url(), "kw.not-a-real-token");
    auto refused = stranger->KvGet("a/b");
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == keyward::ErrorCode::kPermissionDenied);
    REQUIRE_FALSE(refused.error().server_messages().empty());
    CHECK(refused.error().server_messages()[0] == "permission denied");

    keyward::ClientConfig bad;
    bad.address = "ftp://127.0.0.1:1";
    CHECK(keyward::Client::Create(bad).error().code() == keyward::ErrorCode::kInvalidArgument);
    bad.address = "http://127.0.0.1:1/v1";
    CHECK_FALSE(keyward::Client::Create(bad).ok());
    bad.address = "http://127.0.0.1:1";
    bad.client_cert_file = "cert.pem";
    CHECK_FALSE(keyward::Client::Create(bad).ok());
  }

  TEST_CASE("sdk: create validates the address") {
    // Create only checks the text; none of these addresses is contacted.
    for (const char* address :
         {"http://127.0.0.1:99999", "http://127.0.0.1:0", "http://127.0.0.1:65536",
          "http://127.0.0.1:", "http://127.0.0.1:80x", "http://bad host:8200",
          "http://a..b:8200", "http://", "https://[::1", "http://[fe80::1%25eth0]:8200",
          "http://[::1]x", "http://host_name", "http://127.0.0.1:8200#frag"}) {
      const std::string shown = address;
      CAPTURE(shown);
      keyward::ClientConfig config;
      config.address = address;
      auto client = keyward::Client::Create(config);
      REQUIRE_FALSE(client.ok());
      CHECK(client.error().code() == keyward::ErrorCode::kInvalidArgument);
    }
    for (const char* address : {"http://127.0.0.1:8200", "http://localhost", "http://[::1]:8200",
                                "https://vault.example.test:65535/", "http://127.0.0.1:1"}) {
      const std::string shown = address;
      CAPTURE(shown);
      keyward::ClientConfig config;
      config.address = address;
      auto client = keyward::Client::Create(config);
      CHECK_MESSAGE(client.ok(), client.error().message());
    }

    // Credentials in the address are rejected without being echoed.
    keyward::ClientConfig with_password;
    with_password.address = "http://admin:hunter2@127.0.0.1:8200";
    auto rejected = keyward::Client::Create(with_password);
    REQUIRE_FALSE(rejected.ok());
    CHECK(rejected.error().code() == keyward::ErrorCode::kInvalidArgument);
    CHECK(rejected.error().message().find("hunter2") == std::string::npos);
    CHECK(rejected.error().message().find("admin") == std::string::npos);
    CHECK(rejected.error().message().find("credentials") != std::string::npos);
    with_password.address = "ftp://admin:hunter2@127.0.0.1";
    CHECK(keyward::Client::Create(with_password).error().message().find("hunter2") ==
          std::string::npos);
  }

  TEST_CASE("sdk: config from the environment") {
    ::setenv("KEYWARD_ADDR", "http://127.0.0.1:18200", 1);
    ::setenv("VAULT_ADDR", "http://127.0.0.1:28200", 1);
    ::unsetenv("KEYWARD_TOKEN");
    ::setenv("VAULT_TOKEN", "vault-token", 1);
    ::setenv("KEYWARD_MAX_RETRIES", "5", 1);
    ::setenv("VAULT_CLIENT_TIMEOUT", "7", 1);
    ::setenv("KEYWARD_SKIP_VERIFY", "true", 1);
    auto config = keyward::ClientConfig::FromEnvironment();
    REQUIRE(config.ok());
    CHECK(config->address == "http://127.0.0.1:18200");
    CHECK(config->token.Reveal() == "vault-token");
    CHECK(config->max_retries == 5);
    CHECK(config->request_timeout == 7s);
    CHECK(config->read_timeout == 60s);
    CHECK(config->tls_skip_verify);

    // VAULT_CLIENT_TIMEOUT is whole seconds or a Go duration, as Vault reads it.
    const std::pair<const char*, std::chrono::milliseconds> durations[] = {
        {"60s", 60s}, {"1m", 60s}, {"1m30s", 90s}, {"250ms", 250ms}, {"1.5s", 1500ms},
        {"2h", 2h}};
    for (const auto& [text, expected] : durations) {
      const std::string shown = text;
      CAPTURE(shown);
      ::setenv("KEYWARD_CLIENT_TIMEOUT", text, 1);
      auto parsed = keyward::ClientConfig::FromEnvironment();
      REQUIRE_MESSAGE(parsed.ok(), parsed.error().message());
      CHECK(parsed->request_timeout == expected);
    }
    for (const char* text : {"0", "0s", "7x", "s", "1.2.3s", "-5", "5 s", "1m-3s"}) {
      const std::string shown = text;
      CAPTURE(shown);
      ::setenv("KEYWARD_CLIENT_TIMEOUT", text, 1);
      auto rejected = keyward::ClientConfig::FromEnvironment();
      REQUIRE_FALSE(rejected.ok());
      CHECK(rejected.error().message().find("KEYWARD_CLIENT_TIMEOUT") != std::string::npos);
    }
    ::unsetenv("KEYWARD_CLIENT_TIMEOUT");
    ::setenv("KEYWARD_MAX_RETRIES", "many", 1);
    auto invalid = keyward::ClientConfig::FromEnvironment();
    REQUIRE_FALSE(invalid.ok());
    CHECK(invalid.error().message().find("KEYWARD_MAX_RETRIES") != std::string::npos);
    for (const char* name : {"KEYWARD_ADDR", "VAULT_ADDR", "VAULT_TOKEN", "KEYWARD_MAX_RETRIES",
                             "VAULT_CLIENT_TIMEOUT", "KEYWARD_SKIP_VERIFY"}) {
      ::unsetenv(name);
    }
  }

  TEST_CASE("sdk: retries only idempotent calls on 5xx") {
    FlakyServer server(2, 503);
    auto sdk = MakeSdk(FastRetries(server.url(), 3));

    auto read = sdk->KvGet("x");
    CHECK_MESSAGE(read.ok(), read.error().message());
    CHECK(server.requests() == 3);

    server.Reset(100);
    auto exhausted = sdk->KvGet("x");
    REQUIRE_FALSE(exhausted.ok());
    CHECK(exhausted.error().status() == 503);
    CHECK(exhausted.error().code() == keyward::ErrorCode::kUnavailable);
    CHECK(server.requests() == 4);

    // A login, a write and a credential read (a GET that creates) are tried once.
    server.Reset(100);
    auto login = sdk->AppRoleLogin(keyward::SecretString("r"), keyward::SecretString("s"));
    CHECK_FALSE(login.ok());
    CHECK(server.requests() == 1);
    server.Reset(100);
    CHECK_FALSE(sdk->KvPut("x", {{"k", "v"}}).ok());
    CHECK(server.requests() == 1);
    server.Reset(100);
    CHECK_FALSE(sdk->DatabaseCreds("app").ok());
    CHECK(server.requests() == 1);
    server.Reset(100);
    CHECK_FALSE(sdk->TokenCreate().ok());
    CHECK(server.requests() == 1);
    server.Reset(100);
    CHECK_FALSE(sdk->Request("POST", "sys/anything", keyward::Json::object()).ok());
    CHECK(server.requests() == 1);
    server.Reset(100);
    CHECK_FALSE(
        sdk->Request("POST", "sys/anything", nullptr, keyward::RetryMode::kIdempotent).ok());
    CHECK(server.requests() == 4);

    // Renewals and lease revocations are retried.
    server.Reset(1);
    CHECK(sdk->TokenRenewSelf().ok());
    CHECK(server.requests() == 2);
    server.Reset(1);
    CHECK(sdk->LeaseRevoke("database/creds/app/x").ok());
    CHECK(server.requests() == 2);
  }

  TEST_CASE("sdk: no retry on 4xx or 501") {
    FlakyServer bad_request(100, 400);
    auto sdk = MakeSdk(FastRetries(bad_request.url(), 3));
    CHECK(sdk->KvGet("x").error().code() == keyward::ErrorCode::kInvalidArgument);
    CHECK(bad_request.requests() == 1);

    FlakyServer not_initialised(100, 501);
    auto other = MakeSdk(FastRetries(not_initialised.url(), 3));
    CHECK(other->KvGet("x").error().status() == 501);
    CHECK(not_initialised.requests() == 1);
  }

  TEST_CASE("sdk: retries connection failures of idempotent calls") {
    ClosingListener listener;
    auto sdk = MakeSdk(FastRetries(listener.url(), 2));

    auto read = sdk->KvGet("x");
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().code() == keyward::ErrorCode::kUnavailable);
    CHECK(read.error().status() == 0);
    CHECK(WaitFor([&] { return listener.accepted() >= 3; }, 2000ms));
    std::this_thread::sleep_for(200ms);
    CHECK(listener.accepted() == 3);

    listener.Reset();
    auto login = sdk->AppRoleLogin(keyward::SecretString("r"), keyward::SecretString("s"));
    REQUIRE_FALSE(login.ok());
    CHECK(WaitFor([&] { return listener.accepted() >= 1; }, 2000ms));
    std::this_thread::sleep_for(300ms);
    CHECK(listener.accepted() == 1);
  }

  TEST_CASE("sdk: read timeout") {
    std::mutex mutex;
    std::condition_variable released;
    bool release = false;
    std::atomic<int> requests{0};
    httplib::Server slow;
    slow.Get(".*", [&](const httplib::Request&, httplib::Response& response) {
      ++requests;
      std::unique_lock lock(mutex);
      released.wait_for(lock, 5s, [&] { return release; });
      response.set_content("{}", "application/json");
    });
    const int port = slow.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    std::thread thread([&] { slow.listen_after_bind(); });
    REQUIRE(WaitFor([&] { return slow.is_running(); }, 5000ms));

    auto config = FastRetries("http://127.0.0.1:" + std::to_string(port), 1);
    config.read_timeout = 500ms;
    auto sdk = MakeSdk(config);
    const auto started = std::chrono::steady_clock::now();
    auto read = sdk->KvGet("x");
    const auto elapsed = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().code() == keyward::ErrorCode::kDeadlineExceeded);
    CHECK(requests.load() == 2);
    CHECK(elapsed < 3s);

    {
      std::lock_guard lock(mutex);
      release = true;
    }
    released.notify_all();
    slow.stop();
    thread.join();
  }

  TEST_CASE("sdk: pki issue, sign and jwt-svid") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    SetUpPki(*root);

    const keyward::PkiIssueParams params{"spiffe://example.org/ns/web", 10min};
    auto issued = root->PkiIssue("web", params);
    REQUIRE_MESSAGE(issued.ok(), issued.error().message());
    CHECK(issued->certificate.starts_with("-----BEGIN CERTIFICATE-----"));
    CHECK(issued->private_key.Reveal().find("PRIVATE KEY") != std::string::npos);
    CHECK(issued->spiffe_id == "spiffe://example.org/ns/web");
    CHECK_FALSE(issued->ca_chain.empty());
    CHECK_FALSE(issued->serial_number.empty());
    const auto lifetime = keyward::LeaseTermsOf(issued.value()).ttl;
    CHECK(lifetime > 590s);
    CHECK(lifetime <= 600s);

    auto signed_svid = root->PkiSign("web", MakeCsr(), params);
    REQUIRE_MESSAGE(signed_svid.ok(), signed_svid.error().message());
    CHECK(signed_svid->private_key.empty());
    CHECK(signed_svid->serial_number != issued->serial_number);

    auto jwt = root->JwtSvidIssue("web", "spiffe://example.org/ns/web", {"reports", "db"});
    REQUIRE_MESSAGE(jwt.ok(), jwt.error().message());
    CHECK(std::count(jwt->token.Reveal().begin(), jwt->token.Reveal().end(), '.') == 2);
    CHECK(jwt->audience == std::vector<std::string>{"reports", "db"});
    CHECK_FALSE(jwt->kid.empty());
    CHECK(jwt->expires_at > 0);

    auto outside = root->PkiIssue("web", {"spiffe://example.org/admin", std::nullopt});
    REQUIRE_FALSE(outside.ok());
    CHECK(outside.error().code() == keyward::ErrorCode::kInvalidArgument);
    CHECK(root->JwtSvidIssue("web", "spiffe://example.org/ns/web", {}).error().code() ==
          keyward::ErrorCode::kInvalidArgument);
  }

  TEST_CASE("sdk: tls with a ca file and a client certificate") {
    DevTlsServer server;
    REQUIRE(server.Start());
    REQUIRE_FALSE(server.ca_file().empty());

    keyward::ClientConfig config;
    config.address = server.url();
    config.token = keyward::SecretString(server.token());
    config.ca_file = server.ca_file().string();
    auto root = MakeSdk(config);
    auto health = root->Request("GET", "sys/health");
    REQUIRE_MESSAGE(health.ok(), health.error().message());

    // Without the CA the server certificate does not verify, unless verification is off.
    keyward::ClientConfig untrusted = config;
    untrusted.ca_file = "";
    untrusted.max_retries = 0;
    auto refused = MakeSdk(untrusted)->Request("GET", "sys/health");
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().code() == keyward::ErrorCode::kUnavailable);
    CHECK(refused.error().status() == 0);
    untrusted.tls_skip_verify = true;
    CHECK(MakeSdk(untrusted)->Request("GET", "sys/health").ok());

    // A client certificate that keyward's PKI issued logs in through auth/cert.
    SetUpPki(*root);
    auto ca = root->Request("GET", "pki/ca/pem");
    REQUIRE(ca.ok());
    MustRequest(*root, "PUT", "auth/cert/certs/workloads",
                {{"certificate", ca->text},
                 {"allowed_spiffe_ids", "spiffe://example.org/ns/*"},
                 {"policies", "default"},
                 {"token_ttl", "15m"}});
    auto svid = root->PkiIssue("web", {"spiffe://example.org/ns/web", std::nullopt});
    REQUIRE(svid.ok());
    const fs::path cert_file = server.scratch_dir() / "sdk-client.pem";
    const fs::path key_file = server.scratch_dir() / "sdk-client-key.pem";
    WriteTextFile(cert_file, svid->certificate);
    WriteTextFile(key_file, svid->private_key.Reveal());

    keyward::ClientConfig mutual = config;
    mutual.token = keyward::SecretString();
    mutual.client_cert_file = cert_file.string();
    mutual.client_key_file = key_file.string();
    auto workload = MakeSdk(mutual);
    auto login = workload->CertLogin("workloads");
    REQUIRE_MESSAGE(login.ok(), login.error().message());
    CHECK(login->metadata["spiffe_id"] == "spiffe://example.org/ns/web");
    workload->SetToken(login->client_token);
    CHECK(workload->TokenLookupSelf().ok());

    keyward::ClientConfig no_certificate = config;
    no_certificate.token = keyward::SecretString();
    auto anonymous = MakeSdk(no_certificate)->CertLogin("workloads");
    REQUIRE_FALSE(anonymous.ok());
    CHECK(anonymous.error().status() == 403);

    keyward::ClientConfig missing_files = mutual;
    missing_files.client_cert_file = (server.scratch_dir() / "absent.pem").string();
    auto unloaded = MakeSdk(missing_files)->CertLogin("workloads");
    REQUIRE_FALSE(unloaded.ok());
    CHECK(unloaded.error().status() == 0);
  }

  TEST_CASE("sdk: watcher keeps a short token alive") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    keyward::TokenCreateOptions options;
    options.policies = {"default"};
    options.ttl = 3s;
    auto created = root->TokenCreate(options);
    REQUIRE(created.ok());
    auto sdk = SdkFor(server.url(), created->client_token.Reveal());

    std::atomic<int> errors{0};
    keyward::WatcherOptions watch;
    watch.on_error = [&](const keyward::Error&) { ++errors; };
    keyward::LifetimeWatcher watcher(*sdk, watch);
    std::this_thread::sleep_for(10s);
    auto self = sdk->TokenLookupSelf();
    REQUIRE_MESSAGE(self.ok(), self.error().message());
    CHECK(self->accessor == created->accessor);
    CHECK(watcher.logins() == 0);
    CHECK(errors.load() == 0);
  }

  TEST_CASE("sdk: watcher logs in again at the max ttl") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    keyward::TokenCreateOptions options;
    options.policies = {"default"};
    options.ttl = 3s;
    options.explicit_max_ttl = 5s;
    auto created = root->TokenCreate(options);
    REQUIRE(created.ok());
    auto sdk = SdkFor(server.url(), created->client_token.Reveal());

    std::atomic<int> logins{0};
    std::atomic<int> rotations{0};
    keyward::WatcherOptions watch;
    watch.login = [&](keyward::Client&) -> keyward::Result<keyward::Auth> {
      ++logins;
      return root->TokenCreate(options);
    };
    watch.on_token_rotated = [&](const keyward::Auth&) { ++rotations; };
    keyward::LifetimeWatcher watcher(*sdk, watch);
    CHECK(WaitFor([&] { return rotations.load() >= 1; }, 8000ms));
    CHECK(logins.load() >= 1);
    CHECK(sdk->token().Reveal() != created->client_token.Reveal());
    // The old token's max TTL has passed by now; the client carries on with new ones.
    std::this_thread::sleep_for(6s);
    auto self = sdk->TokenLookupSelf();
    REQUIRE_MESSAGE(self.ok(), self.error().message());
    CHECK(self->accessor != created->accessor);
    CHECK(rotations.load() >= 2);
  }

  TEST_CASE("sdk: watcher logs in again when renewal is refused") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    keyward::TokenCreateOptions options;
    options.policies = {"default"};
    options.ttl = 3s;
    auto created = root->TokenCreate(options);
    REQUIRE(created.ok());
    auto sdk = SdkFor(server.url(), created->client_token.Reveal());

    std::atomic<int> rotations{0};
    std::atomic<int> errors{0};
    keyward::WatcherOptions watch;
    watch.login = [&](keyward::Client&) { return root->TokenCreate(options); };
    watch.on_token_rotated = [&](const keyward::Auth&) { ++rotations; };
    watch.on_error = [&](const keyward::Error& error) {
      if (error.code() == keyward::ErrorCode::kPermissionDenied) ++errors;
    };
    keyward::LifetimeWatcher watcher(*sdk, watch);
    std::this_thread::sleep_for(500ms);
    REQUIRE(root->TokenRevoke(created->client_token).ok());
    CHECK(WaitFor([&] { return rotations.load() == 1; }, 6000ms));
    CHECK(errors.load() == 1);
    CHECK(sdk->TokenLookupSelf().ok());
  }

  TEST_CASE("sdk: watcher re-issues an svid before expiry") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    SetUpPki(*root, "3s");
    const keyward::PkiIssueParams params{"spiffe://example.org/ns/web", std::nullopt};
    auto first = root->PkiIssue("web", params);
    REQUIRE(first.ok());

    std::mutex mutex;
    std::vector<keyward::X509Svid> rotated;
    keyward::WatcherOptions watch;
    watch.watch_token = false;
    keyward::LifetimeWatcher watcher(*root, watch);
    watcher.Watch<keyward::X509Svid>(
        first.value(), [&](keyward::Client& c) { return c.PkiIssue("web", params); },
        [&](const keyward::X509Svid& svid) {
          std::lock_guard lock(mutex);
          rotated.push_back(svid);
        });
    CHECK(WaitFor(
        [&] {
          std::lock_guard lock(mutex);
          return rotated.size() >= 2;
        },
        8000ms));
    std::lock_guard lock(mutex);
    REQUIRE(rotated.size() >= 2);
    CHECK(rotated[0].serial_number != first->serial_number);
    CHECK(rotated[1].serial_number != rotated[0].serial_number);
    CHECK(rotated[0].expiration >= first->expiration);
    CHECK(watcher.fetches() >= 2);
  }

  TEST_CASE("sdk: watcher stops promptly") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    keyward::TokenCreateOptions options;
    options.ttl = 1h;
    auto created = root->TokenCreate(options);
    REQUIRE(created.ok());
    auto sdk = SdkFor(server.url(), created->client_token.Reveal());
    auto watcher = std::make_unique<keyward::LifetimeWatcher>(*sdk, keyward::WatcherOptions{});
    SetUpPki(*root);
    auto svid = root->PkiIssue("web", {"spiffe://example.org/ns/web", std::nullopt});
    REQUIRE(svid.ok());
    watcher->Watch<keyward::X509Svid>(
        svid.value(), [](keyward::Client&) -> keyward::Result<keyward::X509Svid> {
          return keyward::Error(keyward::ErrorCode::kInternal, "not expected");
        },
        nullptr);
    std::this_thread::sleep_for(300ms);
    const auto started = std::chrono::steady_clock::now();
    watcher.reset();
    CHECK(std::chrono::steady_clock::now() - started < 200ms);
  }

  TEST_CASE("sdk: database creds and lease calls") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    MustRequest(*root, "POST", "database/config/pg",
                pg->ConfigBody());
    MustRequest(*root, "POST", "database/roles/app",
                {{"db_name", "pg"},
                 {"creation_statements",
                  "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
                  "'{{expiration}}';"},
                 {"default_ttl", "1h"},
                 {"max_ttl", "2h"}});

    auto creds = root->DatabaseCreds("app");
    REQUIRE_MESSAGE(creds.ok(), creds.error().message());
    CHECK(creds->lease_id.starts_with("database/creds/app/"));
    CHECK(creds->lease_duration == 3600s);
    CHECK(creds->renewable);
    PgSession session(pg->LoginInfo(creds->username, creds->password.Reveal()));
    CHECK(session.ok());

    auto info = root->LeaseLookup(creds->lease_id);
    REQUIRE_MESSAGE(info.ok(), info.error().message());
    CHECK(info->id == creds->lease_id);
    CHECK(info->renewable);
    CHECK(info->ttl > 3500s);
    auto renewed = root->LeaseRenew(creds->lease_id, 5400s);
    REQUIRE_MESSAGE(renewed.ok(), renewed.error().message());
    CHECK(renewed->lease_id == creds->lease_id);
    CHECK(renewed->lease_duration > 3600s);
    CHECK(renewed->lease_duration <= 7200s);

    REQUIRE(root->LeaseRevoke(creds->lease_id).ok());
    auto after = root->LeaseLookup(creds->lease_id);
    REQUIRE_FALSE(after.ok());
    CHECK(after.error().status() == 400);
    CHECK(root->LeaseRenew(creds->lease_id).error().status() == 400);
  }

  TEST_CASE("sdk: watcher renews and replaces leases") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    MustRequest(*root, "POST", "database/config/pg",
                pg->ConfigBody());
    const std::string creation =
        "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
        "'{{expiration}}';";
    MustRequest(*root, "POST", "database/roles/long",
                {{"db_name", "pg"}, {"creation_statements", creation},
                 {"default_ttl", "3s"}, {"max_ttl", "1h"}});
    MustRequest(*root, "POST", "database/roles/short",
                {{"db_name", "pg"}, {"creation_statements", creation},
                 {"default_ttl", "2s"}, {"max_ttl", "4s"}});

    // What the callbacks touch is declared before the watcher, which calls them until it is
    // destroyed.
    auto held = root->DatabaseCreds("long");
    REQUIRE(held.ok());
    auto capped = root->DatabaseCreds("short");
    REQUIRE(capped.ok());
    std::atomic<int> long_rotations{0};
    std::mutex mutex;
    std::vector<std::string> usernames;  // of replacements, guarded by mutex
    std::vector<bool> logged_in;         // each replacement's login at arrival, guarded by mutex
    keyward::WatcherOptions watch;
    watch.watch_token = false;
    keyward::LifetimeWatcher watcher(*root, watch);

    // A renewable lease far from its max TTL is renewed, never replaced.
    watcher.Watch<keyward::DatabaseCredential>(
        held.value(), [](keyward::Client& c) { return c.DatabaseCreds("long"); },
        [&](const keyward::DatabaseCredential&) { ++long_rotations; });

    // A lease capped at 4 s is replaced, and each replacement logs in when it arrives.
    watcher.Watch<keyward::DatabaseCredential>(
        capped.value(), [](keyward::Client& c) { return c.DatabaseCreds("short"); },
        [&](const keyward::DatabaseCredential& credential) {
          PgSession session(pg->LoginInfo(credential.username, credential.password.Reveal()));
          std::lock_guard lock(mutex);
          usernames.push_back(credential.username);
          logged_in.push_back(session.ok());
        });

    std::this_thread::sleep_for(8s);
    auto lookup = root->LeaseLookup(held->lease_id);
    REQUIRE_MESSAGE(lookup.ok(), lookup.error().message());
    CHECK(lookup->ttl > 0s);
    CHECK(long_rotations.load() == 0);
    PgSession still(pg->LoginInfo(held->username, held->password.Reveal()));
    CHECK(still.ok());

    std::lock_guard lock(mutex);
    REQUIRE_FALSE(usernames.empty());
    CHECK(usernames.front() != capped->username);
    for (std::size_t i = 0; i < logged_in.size(); ++i) {
      CAPTURE(i);
      CHECK(logged_in[i]);
    }
  }

  TEST_CASE("sdk: deeply nested reply is an error") {
    const std::string deep = std::string(100000, '[') + std::string(100000, ']');
    const std::string shallow = std::string(500, '[') + std::string(500, ']');
    ScriptedServer server([&](const httplib::Request& request, httplib::Response& response) {
      if (request.path == "/v1/deep-error") {
        response.status = 500;
        response.set_content("{\"errors\": [" + deep + "]}", "application/json");
      } else if (request.path == "/v1/shallow") {
        response.set_content(shallow, "application/json");
      } else {
        response.set_content(deep, "application/json");
      }
    });
    auto sdk = MakeSdk(FastRetries(server.url(), 0));

    auto read = sdk->KvGet("app/db");
    REQUIRE_FALSE(read.ok());
    CHECK(read.error().code() == keyward::ErrorCode::kInternal);
    CHECK(read.error().message().find("nested deeper than 512") != std::string::npos);
    auto raw = sdk->Request("GET", "anything");
    REQUIRE_FALSE(raw.ok());
    CHECK(raw.error().code() == keyward::ErrorCode::kInternal);

    auto failed = sdk->Request("GET", "deep-error");
    REQUIRE_FALSE(failed.ok());
    CHECK(failed.error().status() == 500);
    CHECK(failed.error().server_messages().empty());

    auto within_limit = sdk->Request("GET", "shallow");
    REQUIRE_MESSAGE(within_limit.ok(), within_limit.error().message());
    CHECK(within_limit->body.is_array());
  }

  TEST_CASE("sdk: secret json wipes deep values") {
    // One million levels: a recursive wipe overflows an 8 MiB stack long before that.
    keyward::Json root = keyward::Json::array();
    keyward::Json* level = &root;
    for (int i = 0; i < 1000000; ++i) {
      level->push_back(keyward::Json::array());
      level = &level->back();
    }
    level->push_back("secret");
    auto held = std::make_unique<keyward::SecretJson>(std::move(root));
    held.reset();
    CHECK(held == nullptr);
  }

  TEST_CASE("sdk: non-vault 2xx replies are errors") {
    std::atomic<bool> html{true};
    ScriptedServer server([&](const httplib::Request&, httplib::Response& response) {
      if (html.load()) {
        response.set_content("<html>hello</html>", "text/html");
      } else {
        response.set_content(R"({"data": {}})", "application/json");
      }
    });
    auto sdk = MakeSdk(FastRetries(server.url(), 0));
    auto expect_bad_reply = [](const auto& result, const std::string& call) {
      CAPTURE(call);
      REQUIRE_FALSE(result.ok());
      CHECK(result.error().code() == keyward::ErrorCode::kInternal);
      CHECK(result.error().message().find("not a Vault response") != std::string::npos);
    };

    expect_bad_reply(sdk->KvGet("a"), "KvGet");
    expect_bad_reply(sdk->KvPut("a", {{"k", "v"}}), "KvPut");
    expect_bad_reply(sdk->KvMetadata("a"), "KvMetadata");
    expect_bad_reply(sdk->KvDelete("a"), "KvDelete");
    expect_bad_reply(sdk->KvDestroy("a", {1}), "KvDestroy");
    expect_bad_reply(sdk->TokenLookupSelf(), "TokenLookupSelf");
    expect_bad_reply(sdk->TokenRenewSelf(), "TokenRenewSelf");
    expect_bad_reply(sdk->TokenRevokeSelf(), "TokenRevokeSelf");
    expect_bad_reply(sdk->LeaseRenew("l"), "LeaseRenew");
    expect_bad_reply(sdk->LeaseLookup("l"), "LeaseLookup");
    expect_bad_reply(sdk->LeaseRevoke("l"), "LeaseRevoke");
    expect_bad_reply(sdk->DatabaseCreds("app"), "DatabaseCreds");
    expect_bad_reply(
        sdk->AppRoleLogin(keyward::SecretString("r"), keyward::SecretString("s")),
        "AppRoleLogin");
    // A raw request returns whatever came back.
    auto raw = sdk->Request("GET", "anything");
    REQUIRE(raw.ok());
    CHECK(raw->body.is_null());
    CHECK(raw->text == "<html>hello</html>");

    // Valid JSON without the expected fields is not a Vault reply either.
    html = false;
    expect_bad_reply(sdk->TokenLookupSelf(), "TokenLookupSelf");
    expect_bad_reply(sdk->LeaseRenew("l"), "LeaseRenew");
    expect_bad_reply(sdk->LeaseLookup("l"), "LeaseLookup");
    expect_bad_reply(sdk->KvMetadata("a"), "KvMetadata");
    expect_bad_reply(sdk->TokenRenewSelf(), "TokenRenewSelf");
    CHECK(sdk->KvDelete("a").ok());
  }

  TEST_CASE("sdk: request timeout bounds slow replies") {
    std::atomic<bool> stop{false};
    ScriptedServer server([&](const httplib::Request& request, httplib::Response& response) {
      if (request.path.find("silent") != std::string::npos) {
        for (int i = 0; i < 100 && !stop.load(); ++i) std::this_thread::sleep_for(50ms);
        response.set_content("{}", "application/json");
        return;
      }
      DripReply(response, stop);
    });
    auto config = FastRetries(server.url(), 2);
    config.read_timeout = 5s;
    config.request_timeout = 1s;
    auto sdk = MakeSdk(config);

    // A byte every 100 ms keeps each receive under read_timeout; the request timeout still ends
    // the call.
    auto started = std::chrono::steady_clock::now();
    auto dripped = sdk->KvGet("drip");
    auto elapsed = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(dripped.ok());
    CHECK(dripped.error().code() == keyward::ErrorCode::kDeadlineExceeded);
    CHECK(dripped.error().message().find("request timeout") != std::string::npos);
    CHECK(elapsed >= 900ms);
    CHECK(elapsed < 3s);

    // A server that sends nothing gets less than read_timeout when the deadline comes first.
    started = std::chrono::steady_clock::now();
    auto silent = sdk->KvGet("silent");
    elapsed = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(silent.ok());
    CHECK(silent.error().code() == keyward::ErrorCode::kDeadlineExceeded);
    CHECK(elapsed < 3s);
    stop = true;
  }

  TEST_CASE("sdk: watcher stop interrupts retries and slow replies") {
    std::atomic<bool> stop{false};
    std::atomic<bool> drip{false};
    std::atomic<int> requests{0};
    ScriptedServer server([&](const httplib::Request&, httplib::Response& response) {
      ++requests;
      if (drip.load()) {
        DripReply(response, stop);
        return;
      }
      response.status = 503;
      response.set_content(R"({"errors": ["sealed"]})", "application/json");
    });
    auto config = FastRetries(server.url(), 5);
    config.backoff_base = 2s;
    config.backoff_max = 5s;
    auto sdk = MakeSdk(config);

    // The first lookup fails with 503 and waits seconds before its retry.
    auto watcher = std::make_unique<keyward::LifetimeWatcher>(*sdk, keyward::WatcherOptions{});
    REQUIRE(WaitFor([&] { return requests.load() >= 1; }, 5000ms));
    std::this_thread::sleep_for(100ms);
    auto started = std::chrono::steady_clock::now();
    watcher.reset();
    CHECK(std::chrono::steady_clock::now() - started < 500ms);

    // A reply that arrives a byte at a time is abandoned at its next byte.
    drip = true;
    requests = 0;
    watcher = std::make_unique<keyward::LifetimeWatcher>(*sdk, keyward::WatcherOptions{});
    REQUIRE(WaitFor([&] { return requests.load() >= 1; }, 5000ms));
    std::this_thread::sleep_for(300ms);
    started = std::chrono::steady_clock::now();
    watcher.reset();
    CHECK(std::chrono::steady_clock::now() - started < 1s);
    stop = true;
  }

  TEST_CASE("sdk: unwatch waits for a running fetch") {
    FlakyServer unused(0, 500);
    auto sdk = MakeSdk(FastRetries(unused.url(), 0));
    keyward::WatcherOptions options;
    options.watch_token = false;
    keyward::LifetimeWatcher watcher(*sdk, options);
    const auto now_unix = [] {
      return std::chrono::duration_cast<std::chrono::seconds>(
                 std::chrono::system_clock::now().time_since_epoch())
          .count();
    };

    std::atomic<bool> fetching{false};
    std::atomic<bool> unwatched{false};
    std::atomic<int> rotations{0};
    std::atomic<int> late_rotations{0};
    keyward::JwtSvid expiring;
    expiring.expires_at = now_unix() + 1;
    const auto id = watcher.Watch<keyward::JwtSvid>(
        expiring,
        [&](keyward::Client&) -> keyward::Result<keyward::JwtSvid> {
          fetching = true;
          std::this_thread::sleep_for(800ms);
          keyward::JwtSvid fresh;
          fresh.expires_at = now_unix() + 3600;
          return fresh;
        },
        [&](const keyward::JwtSvid&) {
          ++rotations;
          if (unwatched.load()) ++late_rotations;
        });
    REQUIRE(WaitFor([&] { return fetching.load(); }, 5000ms));
    watcher.Unwatch(id);
    CHECK(rotations.load() == 1);
    unwatched = true;
    std::this_thread::sleep_for(300ms);
    CHECK(late_rotations.load() == 0);

    // Unwatch from the credential's own callback returns at once and ends its rotations.
    std::atomic<std::uint64_t> self_id{0};
    std::atomic<int> self_rotations{0};
    keyward::JwtSvid short_lived;
    short_lived.expires_at = now_unix() + 1;
    self_id = watcher.Watch<keyward::JwtSvid>(
        short_lived,
        [&](keyward::Client&) -> keyward::Result<keyward::JwtSvid> {
          keyward::JwtSvid fresh;
          fresh.expires_at = now_unix() + 1;
          return fresh;
        },
        [&](const keyward::JwtSvid&) {
          ++self_rotations;
          watcher.Unwatch(self_id.load());
        });
    CHECK(WaitFor([&] { return self_rotations.load() >= 1; }, 5000ms));
    std::this_thread::sleep_for(1500ms);
    CHECK(self_rotations.load() == 1);
  }

  TEST_CASE("sdk: watcher survives throwing callbacks") {
    FlakyServer unused(0, 500);
    auto sdk = SdkFor(unused.url(), "");
    std::mutex mutex;
    std::vector<std::string> errors;  // guarded by mutex
    std::atomic<int> logins{0};
    keyward::WatcherOptions options;
    options.retry_delay = 100ms;
    options.max_retry_delay = 200ms;
    options.login = [&](keyward::Client&) -> keyward::Result<keyward::Auth> {
      ++logins;
      throw std::runtime_error("login exploded");
    };
    options.on_error = [&](const keyward::Error& error) {
      std::lock_guard lock(mutex);
      errors.push_back(error.message());
      throw std::runtime_error("on_error throws too");
    };
    keyward::LifetimeWatcher watcher(*sdk, options);

    keyward::JwtSvid expiring;
    expiring.expires_at = 1;  // long past: fetched at once
    std::atomic<int> rotations{0};
    watcher.Watch<keyward::JwtSvid>(
        expiring,
        [&](keyward::Client&) -> keyward::Result<keyward::JwtSvid> {
          keyward::JwtSvid fresh;
          fresh.expires_at = 1;
          return fresh;
        },
        [&](const keyward::JwtSvid&) {
          ++rotations;
          throw keyward::Error(keyward::ErrorCode::kUnavailable, "pool is down");
        });

    CHECK(WaitFor([&] { return logins.load() >= 3; }, 8000ms));
    CHECK(WaitFor([&] { return rotations.load() >= 3; }, 8000ms));
    std::lock_guard lock(mutex);
    const auto contains = [&](const std::string& text) {
      return std::any_of(errors.begin(), errors.end(), [&](const std::string& message) {
        return message.find(text) != std::string::npos;
      });
    };
    CHECK(contains("login function threw: login exploded"));
    CHECK(contains("rotation callback threw: pool is down"));
  }

  TEST_CASE("sdk: watcher spaces failed logins") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    keyward::TokenCreateOptions options;
    options.policies = {"default"};
    options.ttl = 3s;
    options.renewable = false;
    auto created = root->TokenCreate(options);
    REQUIRE(created.ok());
    auto sdk = SdkFor(server.url(), created->client_token.Reveal());

    using Clock = std::chrono::steady_clock;
    const auto started = Clock::now();
    std::mutex mutex;
    std::vector<Clock::duration> attempts;  // guarded by mutex
    keyward::WatcherOptions watch;
    watch.retry_delay = 300ms;
    watch.max_retry_delay = 1200ms;
    watch.login = [&](keyward::Client&) -> keyward::Result<keyward::Auth> {
      std::lock_guard lock(mutex);
      attempts.push_back(Clock::now() - started);
      return keyward::Error(keyward::ErrorCode::kPermissionDenied, "login refused");
    };
    keyward::LifetimeWatcher watcher(*sdk, watch);
    std::this_thread::sleep_for(7s);

    std::lock_guard lock(mutex);
    REQUIRE(attempts.size() >= 3);
    // The first login comes before the 3 s token expires, and attempts go on after it.
    CHECK(attempts.front() < 2500ms);
    CHECK(attempts.back() > 4s);
    for (std::size_t i = 1; i < attempts.size(); ++i) {
      CAPTURE(i);
      const auto gap = attempts[i] - attempts[i - 1];
      CHECK(gap >= 290ms);
      CHECK(gap < 2s);
    }
  }

  TEST_CASE("sdk: watcher logs in before the token expires") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    keyward::TokenCreateOptions options;
    options.policies = {"default"};
    options.ttl = 3s;
    options.explicit_max_ttl = 8s;
    auto created = root->TokenCreate(options);
    REQUIRE(created.ok());
    auto sdk = SdkFor(server.url(), created->client_token.Reveal());

    std::atomic<int> errors{0};
    keyward::WatcherOptions watch;
    watch.login = [&](keyward::Client&) { return root->TokenCreate(options); };
    watch.on_error = [&](const keyward::Error&) { ++errors; };
    keyward::LifetimeWatcher watcher(*sdk, watch);

    // Probes every 200 ms across two max TTLs: none may meet a dead token.
    int failed_probes = 0;
    const auto until = std::chrono::steady_clock::now() + 11s;
    while (std::chrono::steady_clock::now() < until) {
      auto probe = sdk->TokenLookupSelf();
      if (!probe.ok()) {
        ++failed_probes;
        MESSAGE(probe.error().message());
      }
      std::this_thread::sleep_for(200ms);
    }
    CHECK(failed_probes == 0);
    CHECK(errors.load() == 0);
    CHECK(watcher.logins() >= 1);
  }

  TEST_CASE("sdk: read_secret example") {
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    REQUIRE(root->KvPut("app/db", {{"password", "example-pass"}, {"port", 5432}}).ok());
    const std::vector<std::string> env = {"KEYWARD_ADDR=" + server.url(),
                                          "KEYWARD_TOKEN=" + server.token()};

    const ExitResult read = RunProgram(ExamplePath("read_secret"), {"app/db", "password"}, env);
    CHECK(read.exit_code == 0);
    CHECK(read.out == "example-pass\n");
    CHECK(read.err.find("version 1") != std::string::npos);

    const ExitResult number = RunProgram(ExamplePath("read_secret"), {"app/db", "port"}, env);
    CHECK(number.exit_code == 0);
    CHECK(number.out == "5432\n");

    const ExitResult field = RunProgram(ExamplePath("read_secret"), {"app/db", "user"}, env);
    CHECK(field.exit_code == 1);
    CHECK(field.err.find("field \"user\" not found") != std::string::npos);
    CHECK(field.out.empty());

    const ExitResult secret = RunProgram(ExamplePath("read_secret"), {"app/none", "x"}, env);
    CHECK(secret.exit_code == 1);
    CHECK(secret.err.find("404") != std::string::npos);

    const ExitResult usage = RunProgram(ExamplePath("read_secret"), {"app/db"}, env);
    CHECK(usage.exit_code == 2);
  }

  TEST_CASE("sdk: mtls_svid example") {
    DevTlsServer server;
    REQUIRE(server.Start());
    keyward::ClientConfig config;
    config.address = server.url();
    config.token = keyward::SecretString(server.token());
    config.ca_file = server.ca_file().string();
    auto root = MakeSdk(config);
    // 8 s leaves seconds of margin for a renewal on a loaded two-core machine, where 3 s did not.
    SetUpPki(*root, "8s");
    MustRequest(*root, "PUT", "sys/policies/acl/svid",
                {{"policy", "path \"pki/issue/self\" { capabilities = [\"update\"] }"}});
    auto ca = root->Request("GET", "pki/ca/pem");
    REQUIRE(ca.ok());
    MustRequest(*root, "PUT", "auth/cert/certs/workloads",
                {{"certificate", ca->text},
                 {"allowed_spiffe_ids", "spiffe://example.org/ns/*"},
                 {"policies", "svid"},
                 {"token_ttl", "15m"}});
    // The bootstrap certificate must outlive the run, so its role has a TTL of 1 h.
    MustRequest(*root, "POST", "pki/roles/bootstrap",
                {{"allowed_spiffe_ids", {"spiffe://example.org/ns/*"}}, {"ttl", "1h"}});
    auto bootstrap = root->PkiIssue("bootstrap", {"spiffe://example.org/ns/web", std::nullopt});
    REQUIRE(bootstrap.ok());
    const fs::path cert_file = server.scratch_dir() / "bootstrap.pem";
    const fs::path key_file = server.scratch_dir() / "bootstrap-key.pem";
    WriteTextFile(cert_file, bootstrap->certificate);
    WriteTextFile(key_file, bootstrap->private_key.Reveal());

    const std::vector<std::string> env = {
        "KEYWARD_ADDR=" + server.url(), "KEYWARD_CACERT=" + server.ca_file().string(),
        "KEYWARD_CLIENT_CERT=" + cert_file.string(), "KEYWARD_CLIENT_KEY=" + key_file.string()};
    const ExitResult run = RunProgram(
        ExamplePath("mtls_svid"),
        {"workloads", "self", "spiffe://example.org/ns/web", "2", "30"}, env);
    CHECK_MESSAGE(run.exit_code == 0, run.err);
    CHECK(run.out.find("svid 2: spiffe://example.org/ns/web expires ") != std::string::npos);
    CHECK(run.out.find("mtls_svid: renewed the X.509-SVID of spiffe://example.org/ns/web 2 "
                       "times") != std::string::npos);

    // Without a client certificate the program stops with a usage error before connecting.
    const ExitResult anonymous = RunProgram(
        ExamplePath("mtls_svid"), {"workloads", "self", "spiffe://example.org/ns/web", "1"},
        {"KEYWARD_ADDR=" + server.url(), "KEYWARD_CACERT=" + server.ca_file().string()});
    CHECK(anonymous.exit_code == 2);
  }

  TEST_CASE("sdk: db_credentials example") {
    auto pg = RequireSharedPostgres();
    if (!pg) return;
    DevServer server;
    REQUIRE(server.Start());
    auto root = SdkFor(server.url(), server.token());
    MustRequest(*root, "POST", "database/config/pg",
                pg->ConfigBody());
    MustRequest(*root, "POST", "database/roles/app",
                {{"db_name", "pg"},
                 {"creation_statements",
                  "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
                  "'{{expiration}}'; GRANT CONNECT ON DATABASE postgres TO \"{{name}}\";"},
                 {"default_ttl", "2s"},
                 {"max_ttl", "4s"}});
    const std::string conninfo = "host=" + pg->host + " port=" + pg->port + " dbname=postgres";
    const ExitResult run =
        RunProgram(ExamplePath("db_credentials"), {"app", "2", conninfo, "60"},
                   {"KEYWARD_ADDR=" + server.url(), "KEYWARD_TOKEN=" + server.token()});
    CHECK_MESSAGE(run.exit_code == 0, run.err);
    CHECK(run.out.find("credential 2: connected as v-") != std::string::npos);
    CHECK(run.out.find("db_credentials: 2 rotated credentials each logged in to PostgreSQL") !=
          std::string::npos);
  }
}

}  // namespace kw::e2e
