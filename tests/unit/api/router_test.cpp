#include "api/router.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <thread>

#include "fakes/failing_storage.hpp"
#include "fakes/manual_clock.hpp"
#include "fakes/softhsm_fixture.hpp"
#include "storage/sqlite/sqlite_storage.hpp"

namespace {

// A Core on a real SoftHSM token and SQLite file, behind a storage that can fail commits,
// and a Router over it: the request pipeline without sockets.
struct RouterEnv {
  RouterEnv() {
    dir = std::filesystem::temp_directory_path() / ("kw-router-" + kw::ToHex(kw::RandomBytes(6)));
    std::filesystem::create_directories(dir);
    kw::storage::sqlite::SqliteOptions options;
    options.path = (dir / "router.db").string();
    auto opened = kw::storage::sqlite::Open(options);
    if (!opened) throw std::runtime_error(opened.error().message());
    inner = std::move(*opened);
    failing = std::make_unique<kw::testing::FailingStorage>(*inner);
    kw::vault::CoreConfig config;
    config.token = hsm.Config();
    config.pin_source.pin = std::string(hsm.pin().RevealText());
    core = std::make_unique<kw::vault::Core>(config, *failing, clock);
    auto initialized =
        core->Initialize(kw::SecretBuffer::CopyFrom(std::string_view("root")), std::nullopt);
    if (!initialized) throw std::runtime_error(initialized.error().message());
    router = std::make_unique<kw::api::Router>(*core);
  }
  ~RouterEnv() {
    router.reset();
    core.reset();
    failing.reset();
    inner.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir, ignored);
  }

  kw::api::HttpResponse Send(std::string method, std::string target, std::string body = "",
                             std::string content_type = "") {
    kw::api::HttpRequest request;
    if (!content_type.empty()) request.headers.emplace_back("content-type", content_type);
    request.method = std::move(method);
    request.target = std::move(target);
    request.body = std::move(body);
    request.remote_address = "127.0.0.1";
    request.headers.emplace_back("x-vault-token", "root");
    return router->Handle(request);
  }

  kw::testing::SoftHsmFixture hsm;
  kw::testing::ManualClock clock;
  std::filesystem::path dir;
  std::unique_ptr<kw::storage::Storage> inner;
  std::unique_ptr<kw::testing::FailingStorage> failing;
  std::unique_ptr<kw::vault::Core> core;
  std::unique_ptr<kw::api::Router> router;
};

}  // namespace

TEST_SUITE("api/router") {
  TEST_CASE("write is audited and readable") {
    RouterEnv env;
    auto written = env.Send("POST", "/v1/secret/data/app", R"({"data":{"k":"v"}})");
    CHECK(written.status == 200);
    auto read = env.Send("GET", "/v1/secret/data/app");
    CHECK(read.status == 200);
    CHECK(read.body.find("\"k\":\"v\"") != std::string::npos);
    auto records = env.inner->Scan("sys/audit/log/", "", 100);
    REQUIRE(records.has_value());
    CHECK(records->size() == 3);  // sys/init, the write and the read
  }

  TEST_CASE("unrecordable request fails closed") {
    RouterEnv env;
    env.failing->fail_commits = true;
    auto written = env.Send("POST", "/v1/secret/data/app", R"({"data":{"k":"v"}})");
    // A commit that fails as a full disk does (unavailable) is a 503 naming storage; the
    // server takes writes again once the cause is gone.
    CHECK(written.status == 503);
    CHECK(written.body.find("storage unavailable") != std::string::npos);
    auto refused_read = env.Send("GET", "/v1/secret/data/app");
    CHECK(refused_read.status == 503);

    env.failing->fail_commits = false;
    auto read = env.Send("GET", "/v1/secret/data/app");
    CHECK(read.status == 404);
    auto verify = env.Send("GET", "/v1/sys/audit/verify");
    CHECK(verify.status == 200);
    CHECK(verify.body.find("\"ok\":true") != std::string::npos);
  }

  TEST_CASE("sealed core answers 503") {
    RouterEnv env;
    auto sealed = env.Send("PUT", "/v1/sys/seal");
    CHECK(sealed.status == 204);
    auto read = env.Send("GET", "/v1/secret/data/app");
    CHECK(read.status == 503);
    CHECK(read.body.find("Vault is sealed") != std::string::npos);
    auto health = env.Send("GET", "/v1/sys/health");
    CHECK(health.status == 503);
    auto anonymous = env.Send("PUT", "/v1/sys/unseal");
    CHECK(anonymous.status == 400);
    CHECK(anonymous.body.find("sealed by an operator") != std::string::npos);
    auto wrong = env.Send("PUT", "/v1/sys/unseal", R"({"key":"0000"})");
    CHECK(wrong.status == 400);
    const std::string body =
        R"({"key":")" + std::string(env.hsm.pin().RevealText()) + R"("})";
    auto unsealed = env.Send("PUT", "/v1/sys/unseal", body);
    CHECK(unsealed.status == 200);
    CHECK(env.Send("GET", "/v1/sys/health").status == 200);
  }

  TEST_CASE("metadata patch merges custom metadata") {
    RouterEnv env;
    CHECK(env.Send("POST", "/v1/secret/metadata/m",
                   R"({"max_versions":4,"custom_metadata":{"a":"1","b":"2"}})")
              .status == 204);
    CHECK(env.Send("PATCH", "/v1/secret/metadata/m", R"({"cas_required":true})").status == 415);
    CHECK(env.Send("PATCH", "/v1/secret/metadata/m",
                   R"({"cas_required":true,"custom_metadata":{"a":null,"c":"3"}})",
                   "application/merge-patch+json")
              .status == 204);
    const auto read = env.Send("GET", "/v1/secret/metadata/m");
    REQUIRE(read.status == 200);
    const auto data = nlohmann::json::parse(read.body)["data"];
    CHECK(data["max_versions"] == 4);
    CHECK(data["cas_required"] == true);
    CHECK(data["custom_metadata"] == nlohmann::json({{"b", "2"}, {"c", "3"}}));
    CHECK(env.Send("PATCH", "/v1/secret/metadata/none", "{}", "application/merge-patch+json")
              .status == 404);
  }

  TEST_CASE("subkeys hide values") {
    RouterEnv env;
    CHECK(env.Send("POST", "/v1/secret/data/s",
                   R"({"data":{"user":"u","db":{"password":"p","nested":{"x":"y"}}}})")
              .status == 200);
    const auto all = env.Send("GET", "/v1/secret/subkeys/s");
    REQUIRE(all.status == 200);
    CHECK(all.body.find("\"p\"") == std::string::npos);
    const auto data = nlohmann::json::parse(all.body)["data"];
    CHECK(data["subkeys"] ==
          nlohmann::json::parse(R"({"user":null,"db":{"password":null,"nested":{"x":null}}})"));
    CHECK(data["metadata"]["version"] == 1);
    const auto shallow = env.Send("GET", "/v1/secret/subkeys/s?depth=1");
    REQUIRE(shallow.status == 200);
    CHECK(nlohmann::json::parse(shallow.body)["data"]["subkeys"] ==
          nlohmann::json::parse(R"({"user":null,"db":null})"));
    CHECK(env.Send("GET", "/v1/secret/subkeys/missing").status == 404);
  }

  TEST_CASE("unseal waits for requests from before the seal") {
    RouterEnv env;
    auto in_flight = env.core->Acquire();
    REQUIRE(in_flight.has_value());
    env.core->Seal();

    // A request that began before the seal commits its audit record after the unseal began.
    std::thread finisher([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      kw::storage::WriteBatch batch;
      kw::vault::audit::AuditEntry entry;
      entry.request_id = "before-seal";
      entry.path = "secret/data/late";
      entry.status = 200;
      REQUIRE((*in_flight)->audit->Attach(entry, batch).has_value());
      REQUIRE(env.failing->Commit(std::move(batch)).has_value());
      in_flight->reset();
    });
    auto unsealed = env.core->Unseal(kw::SecretBuffer::CopyFrom(env.hsm.pin().Reveal()));
    finisher.join();
    REQUIRE(unsealed.has_value());

    CHECK(env.Send("POST", "/v1/secret/data/after", R"({"data":{"k":"v"}})").status == 200);
    const auto verify = env.Send("GET", "/v1/sys/audit/verify");
    CHECK(verify.body.find("\"ok\":true") != std::string::npos);
  }

  TEST_CASE("unauthenticated body is not parsed") {
    RouterEnv env;
    kw::api::HttpRequest request;
    request.method = "POST";
    request.target = "/v1/secret/data/app";
    request.body = R"({"data":{"pw":"do-not-record-me"}})";
    request.remote_address = "127.0.0.1";
    auto response = env.router->Handle(request);
    CHECK(response.status == 403);
    auto last = env.inner->Last("sys/audit/log/");
    REQUIRE(last.has_value());
    REQUIRE(last->has_value());
    const auto record = nlohmann::json::parse(kw::AsText((*last)->value));
    CHECK(record.at("status") == 403);
    CHECK(record.at("request").is_null());
  }

  TEST_CASE("errors never echo secret values") {
    RouterEnv env;
    auto bad_type = env.Send("POST", "/v1/secret/metadata/app",
                             R"({"max_versions":"hunter2-do-not-echo"})");
    CHECK(bad_type.status == 400);
    CHECK(bad_type.body.find("hunter2") == std::string::npos);
    auto bad_json = env.Send("POST", "/v1/secret/data/app", R"({"data":{"pw":"hunter2-do-not)");
    CHECK(bad_json.status == 400);
    CHECK(bad_json.body.find("hunter2") == std::string::npos);
  }
}
