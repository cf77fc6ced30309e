// Tampering with keyward.db while the server is stopped: the audit chain reports where it
// breaks, and ciphertext moved to another row fails to decrypt.
#include <doctest/doctest.h>

#include <functional>

#include "tests/e2e/e2e_helpers.hpp"
#include "tests/e2e/server_process.hpp"

namespace kw::e2e {
namespace {

// One way to damage the audit log. `apply` edits the stopped server's database, which contains
// `count` records. The verifier must report a first broken sequence in `expected`.
struct Tamper {
  std::string name;
  std::function<bool(Database&, std::uint64_t count)> apply;
  std::function<std::vector<std::uint64_t>(std::uint64_t count)> expected;
};

// Replaces the first occurrence of `from` with `to` in record `sequence`.
bool EditRecord(Database& db, std::uint64_t sequence, const std::string& from,
                const std::string& to) {
  auto value = db.Get(AuditRecordKey(sequence));
  if (!value) return false;
  const std::size_t at = value->find(from);
  if (at == std::string::npos) return false;
  value->replace(at, from.size(), to);
  return db.Set(AuditRecordKey(sequence), *value);
}

bool SwapValues(Database& db, const std::string& first, const std::string& second) {
  auto a = db.Get(first);
  auto b = db.Get(second);
  if (!a || !b) return false;
  return db.Set(first, *b) && db.Set(second, *a);
}

std::vector<Tamper> Tampers() {
  return {
      {"edit a field of record 5",
       [](Database& db, std::uint64_t) {
         return EditRecord(db, 5, "secret/data/tamper/", "secret/data/TAMPER/");
       },
       // Records carry no MAC of their own: an edit shows as record 6's prev_hash mismatch,
       // and a verifier that checks more could name 5 itself.
       [](std::uint64_t) {
         return std::vector<std::uint64_t>{5, 6};
       }},
      {"delete record 5", [](Database& db, std::uint64_t) { return db.Delete(AuditRecordKey(5)); },
       [](std::uint64_t) { return std::vector<std::uint64_t>{5}; }},
      {"swap records 5 and 6",
       [](Database& db, std::uint64_t) {
         return SwapValues(db, AuditRecordKey(5), AuditRecordKey(6));
       },
       [](std::uint64_t) { return std::vector<std::uint64_t>{5}; }},
      {"truncate the last 3 records",
       [](Database& db, std::uint64_t count) {
         return db.Delete(AuditRecordKey(count)) && db.Delete(AuditRecordKey(count - 1)) &&
                db.Delete(AuditRecordKey(count - 2));
       },
       [](std::uint64_t count) { return std::vector<std::uint64_t>{count - 2}; }},
  };
}

bool Contains(const std::vector<std::uint64_t>& values, std::uint64_t value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace

TEST_SUITE("e2e/tamper") {
  TEST_CASE("audit tamper detected") {
    for (const Tamper& tamper : Tampers()) {
      CAPTURE(tamper.name);
      DevServer server;
      REQUIRE(server.Start());
      {
        auto client = server.Client();
        for (int i = 0; i < 12; ++i) {
          REQUIRE(StatusOf(WriteSecret(*client, "tamper/s" + std::to_string(i), {{"i", i}})) ==
                  200);
        }
        auto verify = client->Get("/v1/sys/audit/verify");
        REQUIRE(StatusOf(verify) == 200);
        REQUIRE(BodyOf(verify)["data"]["ok"] == true);
      }
      REQUIRE(server.Stop() == 0);

      std::uint64_t count = 0;
      {
        Database db(server.db_path());
        count = AuditRecords(db).size();
        REQUIRE(count >= 13);
        REQUIRE(tamper.apply(db, count));
      }

      REQUIRE(server.Restart(std::string(kRootToken)));
      auto verify = server.Client()->Get("/v1/sys/audit/verify");
      CHECK(StatusOf(verify) == 200);
      const json body = BodyOf(verify);
      MESSAGE(tamper.name << ": " << body.dump());
      const json report = body.is_object() ? body.value("data", json::object()) : json::object();
      CHECK(report.value("ok", true) == false);
      const json first_broken = report.value("first_broken_sequence", json());
      CHECK(first_broken.is_number_unsigned());
      if (first_broken.is_number_unsigned()) {
        CHECK(Contains(tamper.expected(count), first_broken.get<std::uint64_t>()));
      }
      CHECK(report.value("reason", "") != "");

      const ExitResult cli = RunToExit(
          {"audit", "verify", "-address=" + server.url(), "-token=" + server.token()}, {});
      CHECK(cli.exit_code == 1);
      CHECK(server.Stop() == 0);
    }
  }

  TEST_CASE("erased audit log is detected") {
    DevServer server;
    REQUIRE(server.Start());
    REQUIRE(StatusOf(WriteSecret(*server.Client(), "erase/a", {{"v", "x"}})) == 200);
    REQUIRE(server.Stop() == 0);
    {
      Database db(server.db_path());
      REQUIRE(db.Exec("DELETE FROM kv WHERE key LIKE 'sys/audit/%'"));
    }

    REQUIRE(server.Restart(std::string(kRootToken)));
    auto client = server.Client();
    auto verify = client->Get("/v1/sys/audit/verify");
    REQUIRE(StatusOf(verify) == 200);
    const json report = BodyOf(verify)["data"];
    CHECK(report["ok"] == false);
    CHECK(report["reason"].get<std::string>().find("erased") != std::string::npos);
    // Fail closed: nothing else is served while the log cannot record it.
    CHECK(StatusOf(client->Get("/v1/secret/data/erase/a")) == 500);
  }

  TEST_CASE("deleted init marker does not reopen init") {
    DevServer server;
    REQUIRE(server.Start());
    REQUIRE(StatusOf(WriteSecret(*server.Client(), "init/a", {{"v", "x"}})) == 200);
    REQUIRE(server.Stop() == 0);
    {
      Database db(server.db_path());
      REQUIRE(db.Delete("sys/init"));
    }

    REQUIRE(server.Restart(std::string(kRootToken)));
    auto anonymous = server.AnonymousClient();
    auto init = anonymous->Get("/v1/sys/init");
    REQUIRE(StatusOf(init) == 200);
    CHECK(BodyOf(init)["initialized"] == true);
    auto again = anonymous->Put("/v1/sys/init", "{}", "application/json");
    CHECK(StatusOf(again) == 400);
    REQUIRE(again);
    CHECK(again->body.find("root_token") == std::string::npos);
  }

  TEST_CASE("swapped ciphertext rows fail to decrypt") {
    DevServer server;
    REQUIRE(server.Start());
    {
      auto client = server.Client();
      REQUIRE(StatusOf(WriteSecret(*client, "swap/a", {{"v", "value-a"}})) == 200);
      REQUIRE(StatusOf(WriteSecret(*client, "swap/b", {{"v", "value-b"}})) == 200);
      REQUIRE(StatusOf(WriteSecret(*client, "swap/other", {{"v", "value-other"}})) == 200);
    }
    REQUIRE(server.Stop() == 0);
    {
      Database db(server.db_path());
      std::string key_a;
      std::string key_b;
      for (const auto& [key, value] :
           db.Rows("SELECT key, value FROM kv WHERE key LIKE 'kv/secret/data/swap/%'")) {
        if (key.starts_with("kv/secret/data/swap/a")) key_a = key;
        if (key.starts_with("kv/secret/data/swap/b")) key_b = key;
      }
      REQUIRE_FALSE(key_a.empty());
      REQUIRE_FALSE(key_b.empty());
      REQUIRE(SwapValues(db, key_a, key_b));
    }

    REQUIRE(server.Restart(std::string(kRootToken)));
    auto client = server.Client();
    auto read_a = client->Get("/v1/secret/data/swap/a");
    CHECK(StatusOf(read_a) == 500);
    REQUIRE(read_a);
    CHECK(read_a->body.find("value-b") == std::string::npos);
    auto read_b = client->Get("/v1/secret/data/swap/b");
    CHECK(StatusOf(read_b) == 500);
    REQUIRE(read_b);
    CHECK(read_b->body.find("value-a") == std::string::npos);

    // Nothing else breaks: other secrets, metadata, new writes and the audit chain.
    CHECK(ReadSecretData(*client, "swap/other") == json({{"v", "value-other"}}));
    CHECK(StatusOf(client->Get("/v1/secret/metadata/swap/a")) == 200);
    CHECK(StatusOf(Send(*client, "LIST", "/v1/secret/metadata/swap")) == 200);
    REQUIRE(StatusOf(WriteSecret(*client, "swap/a", {{"v", "value-a2"}})) == 200);
    CHECK(ReadSecretData(*client, "swap/a") == json({{"v", "value-a2"}}));
    CHECK(StatusOf(client->Get("/v1/secret/data/swap/a?version=1")) == 500);
    auto verify = client->Get("/v1/sys/audit/verify");
    REQUIRE(StatusOf(verify) == 200);
    CHECK(BodyOf(verify)["data"]["ok"] == true);
  }
}  // TEST_SUITE

}  // namespace kw::e2e
