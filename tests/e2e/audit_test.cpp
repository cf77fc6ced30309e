// The audit log through the real binary: every authenticated request is recorded, secret
// values appear only as HMACs, and the chain verifies over HTTP and with the CLI.
#include <doctest/doctest.h>

#include <fstream>
#include <regex>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

namespace fs = std::filesystem;

std::size_t AuditCount(const DevServer& server) {
  Database db(server.db_path());
  return AuditRecords(db).size();
}

// Sends a mix of requests: writes, reads, misses, a list, a delete, a bad query and a 403.
void RunSession(DevServer& server) {
  auto client = server.Client();
  for (int i = 0; i < 4; ++i) {
    CHECK(StatusOf(WriteSecret(*client, "session/s" + std::to_string(i), {{"v", i}})) == 200);
  }
  CHECK(StatusOf(client->Get("/v1/secret/data/session/s1")) == 200);
  CHECK(StatusOf(client->Get("/v1/secret/data/session/none")) == 404);
  CHECK(StatusOf(Send(*client, "LIST", "/v1/secret/metadata/session")) == 200);
  CHECK(StatusOf(client->Delete("/v1/secret/data/session/s2")) == 204);
  CHECK(StatusOf(client->Get("/v1/secret/data/session/s1?version=x")) == 400);
  CHECK(StatusOf(server.AnonymousClient()->Get("/v1/secret/data/session/s1")) == 403);
}

// Returns the relative paths of files under `dir` whose bytes contain `needle`.
std::vector<std::string> FilesContaining(const fs::path& dir, const std::string& needle) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_regular_file() && FileContains(entry.path(), needle)) {
      found.push_back(fs::relative(entry.path(), dir).string());
    }
  }
  return found;
}

}  // namespace

TEST_SUITE("e2e/audit") {
  TEST_CASE("audit verify ok after a session") {
    DevServer server;
    REQUIRE(server.Start());
    RunSession(server);
    auto client = server.Client();

    auto verify = client->Get("/v1/sys/audit/verify");
    REQUIRE(StatusOf(verify) == 200);
    const json report = BodyOf(verify)["data"];
    CHECK(report["ok"] == true);
    CHECK(report["records_checked"].get<int>() >= 10);
    CHECK(report["head_sequence"] == report["records_checked"]);
    CHECK(report["first_broken_sequence"].is_null());
    CHECK(report["reason"] == "");
    CHECK(StatusOf(server.AnonymousClient()->Get("/v1/sys/audit/verify")) == 403);

    const std::string address = "-address=" + server.url();
    const ExitResult flags =
        RunToExit({"audit", "verify", address, "-token=" + server.token()}, {});
    CHECK(flags.exit_code == 0);
    CHECK(flags.out.find("true") != std::string::npos);
    const ExitResult keyward_env = RunToExit(
        {"audit", "verify"}, {"KEYWARD_ADDR=" + server.url(), "KEYWARD_TOKEN=" + server.token()});
    CHECK(keyward_env.exit_code == 0);
    const ExitResult vault_env = RunToExit(
        {"audit", "verify"}, {"VAULT_ADDR=" + server.url(), "VAULT_TOKEN=" + server.token(),
                              "KEYWARD_ADDR=", "KEYWARD_TOKEN="});
    CHECK(vault_env.exit_code == 0);
    const ExitResult no_token =
        RunToExit({"audit", "verify", address}, {"KEYWARD_TOKEN=", "VAULT_TOKEN="});
    CHECK(no_token.exit_code == 1);

    // Still ok after the CLI's own audited requests.
    auto again = client->Get("/v1/sys/audit/verify");
    REQUIRE(StatusOf(again) == 200);
    CHECK(BodyOf(again)["data"]["ok"] == true);
  }

  TEST_CASE("secret never stored in clear") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    const std::string secret = "e2e-Cleartext-" + RandomHex(16);
    const std::string patched = "e2e-Patched-" + RandomHex(16);

    REQUIRE(StatusOf(WriteSecret(*client, "clear/one", {{"password", secret}})) == 200);
    CHECK(ReadSecretData(*client, "clear/one") == json({{"password", secret}}));
    CHECK(StatusOf(Send(*client, "PATCH", "/v1/secret/data/clear/one",
                        json({{"data", {{"other", patched}}}}).dump(), {},
                        "application/merge-patch+json")) == 200);
    CHECK(ReadSecretData(*client, "clear/one") == json({{"password", secret}, {"other", patched}}));
    CHECK(StatusOf(PostJson(*client, "/v1/sys/audit-hash/database", {{"input", secret}})) == 200);
    CHECK(StatusOf(WriteSecret(*server.AnonymousClient(), "clear/two", {{"password", secret}})) ==
          403);

    // Error responses name the field but never echo the value.
    const std::vector<std::string> bad_bodies = {
        json({{"data", secret}}).dump(),
        json({{"data", {{"k", "v"}}}, {"options", {{"cas", secret}}}}).dump(),
        json({{"data", {{"k", "v"}}}, {"options", secret}}).dump(),
        "{\"data\":{\"password\":\"" + secret + "\"",
        "{\"data\":{\"password\":\"" + secret + "\"}} trailing",
    };
    for (const std::string& body : bad_bodies) {
      auto result = client->Post("/v1/secret/data/clear/three", body, "application/json");
      CHECK(StatusOf(result) == 400);
      REQUIRE(result);
      CHECK(result->body.find(secret) == std::string::npos);
    }
    auto metadata = PostJson(*client, "/v1/secret/metadata/clear/one", {{"max_versions", secret}});
    CHECK(StatusOf(metadata) == 400);
    REQUIRE(metadata);
    CHECK(metadata->body.find(secret) == std::string::npos);
    auto versions = PostJson(*client, "/v1/secret/destroy/clear/one", {{"versions", secret}});
    CHECK(StatusOf(versions) == 400);
    REQUIRE(versions);
    CHECK(versions->body.find(secret) == std::string::npos);

    // While running: the database, its WAL and the logs so far.
    CHECK(fs::exists(server.data_dir() / "keyward.db-wal"));
    CHECK(FilesContaining(server.data_dir(), secret) == std::vector<std::string>{});
    CHECK(FilesContaining(server.data_dir(), patched) == std::vector<std::string>{});
    CHECK(server.process().ReadStderr().find(secret) == std::string::npos);

    // Neither the root token nor the HSM PIN reach the database or the logs.
    std::string pin;
    {
      std::ifstream pin_file(server.data_dir() / "hsm-pin");
      std::getline(pin_file, pin);
    }
    REQUIRE(pin.size() >= 8);
    for (const char* file : {"keyward.db", "keyward.db-wal"}) {
      CAPTURE(file);
      CHECK_FALSE(FileContains(server.data_dir() / file, server.token()));
      CHECK_FALSE(FileContains(server.data_dir() / file, pin));
    }
    CHECK(server.process().ReadStderr().find(server.token()) == std::string::npos);
    CHECK(server.process().ReadStderr().find(pin) == std::string::npos);
    CHECK(server.process().ReadStdout().find(pin) == std::string::npos);

    REQUIRE(server.Stop() == 0);
    CHECK(FilesContaining(server.data_dir(), secret) == std::vector<std::string>{});
    CHECK(FilesContaining(server.data_dir(), patched) == std::vector<std::string>{});
    CHECK(server.process().ReadStderr().find(secret) == std::string::npos);
    CHECK(server.process().ReadStdout().find(secret) == std::string::npos);
    CHECK(server.process().ReadStderr().find(patched) == std::string::npos);
  }

  TEST_CASE("audit record holds value hmac") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    const std::string value = "e2e-api-key-" + RandomHex(12);
    REQUIRE(StatusOf(WriteSecret(*client, "hashed/key", {{"api_key", value}})) == 200);
    REQUIRE(StatusOf(client->Get("/v1/secret/data/hashed/key")) == 200);

    auto hashed = PostJson(*client, "/v1/sys/audit-hash/database", {{"input", value}});
    REQUIRE(StatusOf(hashed) == 200);
    const json hash = BodyOf(hashed)["data"]["hash"];
    REQUIRE(hash.is_string());
    CHECK(std::regex_match(hash.get<std::string>(), std::regex("hmac-sha256:[0-9a-f]{64}")));
    auto other = PostJson(*client, "/v1/sys/audit-hash/database", {{"input", value + "x"}});
    CHECK(BodyOf(other)["data"]["hash"] != hash);

    Database db(server.db_path());
    const std::vector<json> records = AuditRecords(db);
    const json* write = nullptr;
    const json* read = nullptr;
    for (const json& record : records) {
      REQUIRE(record.is_object());
      CHECK(record.contains("seq"));
      CHECK(record.contains("prev_hash"));
      if (record.value("path", "") != "secret/data/hashed/key") continue;
      if (record.value("method", "") == "POST") write = &record;
      if (record.value("method", "") == "GET") read = &record;
    }
    REQUIRE(write != nullptr);
    CHECK((*write)["status"] == 200);
    CHECK((*write)["request"]["data"]["api_key"] == hash);
    REQUIRE(read != nullptr);
    CHECK((*read)["response"]["data"]["data"]["api_key"] == hash);
    CHECK(write->dump().find(value) == std::string::npos);
    CHECK(read->dump().find(value) == std::string::npos);
  }

  TEST_CASE("403 and 4xx requests are audited") {
    DevServer server;
    REQUIRE(server.Start());
    auto client = server.Client();
    REQUIRE(StatusOf(WriteSecret(*client, "audited", {{"k", "v"}})) == 200);
    const std::size_t before = AuditCount(server);
    REQUIRE(before > 0);

    auto anonymous = server.AnonymousClient();
    auto wrong = MakeClient(server.port(), "e2e-wrong-token");
    CHECK(StatusOf(anonymous->Get("/v1/secret/data/audited")) == 403);
    CHECK(StatusOf(WriteSecret(*wrong, "audited", {{"k", "x"}})) == 403);
    CHECK(StatusOf(Send(*wrong, "LIST", "/v1/secret/metadata/")) == 403);
    CHECK(StatusOf(anonymous->Get("/v1/sys/audit/verify")) == 403);
    CHECK(StatusOf(anonymous->Put("/v1/sys/seal", "", "application/json")) == 403);
    CHECK(AuditCount(server) == before + 5);

    Database db(server.db_path());
    const std::vector<json> records = AuditRecords(db);
    REQUIRE(records.size() == before + 5);
    for (std::size_t i = before; i < records.size(); ++i) {
      CAPTURE(records[i].dump());
      CHECK(records[i]["status"] == 403);
      CHECK(records[i]["accessor"] == "");
    }

    CHECK(StatusOf(client->Get("/v1/secret/data/audited?version=x")) == 400);
    CHECK(StatusOf(client->Get("/v1/secret/data/not-there")) == 404);
    CHECK(AuditCount(server) == before + 7);

    // As in Vault, health, seal-status and init are not audited.
    CHECK(StatusOf(anonymous->Get("/v1/sys/health")) == 200);
    CHECK(StatusOf(anonymous->Get("/v1/sys/seal-status")) == 200);
    CHECK(StatusOf(anonymous->Get("/v1/sys/init")) == 200);
    CHECK(AuditCount(server) == before + 7);
  }
}  // TEST_SUITE

}  // namespace kw::e2e
