#include "vault/audit/audit_log.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <set>
#include <thread>
#include <vector>

#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit {
namespace {

using testing::AuditHarness;
using testing::MakeEntry;

constexpr std::string_view kSecret = "correct-horse-battery-staple-7f3a";
constexpr std::string_view kSecondSecret = "second-secret-value-91c2";

// An entry whose bodies hold secrets in every position a string can take.
AuditEntry SecretEntry() {
  AuditEntry entry = MakeEntry(1);
  entry.request_body = {
      {"data", {{"password", kSecret}, {"list", {kSecondSecret, 42, true, nullptr}}}},
      {"options", {{"cas", 3}, {"enabled", false}}},
      {"type", "kv"},
      {"nested", {{"deeper", {{"token", kSecret}}}}},
  };
  entry.response_body = {
      {"request_id", "req-clear-1"},
      {"lease_id", "database/creds/app/lease-1"},
      {"data",
       {{"data", {{"api_key", kSecondSecret}}},
        {"metadata", {{"created_time", "2026-01-02T03:04:05Z"}, {"version", 7}}}}},
      {"errors", {"permission denied"}},
  };
  return entry;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_SUITE("vault/audit") {
  TEST_CASE("empty log verifies") {
    AuditHarness harness;
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.records_checked == 0);
    CHECK(report.head_sequence == 0);
    CHECK_FALSE(report.first_broken_sequence.has_value());
    CHECK(report.reason.empty());
  }

  TEST_CASE("concurrent appends chain contiguously") {
    AuditHarness harness;
    constexpr int kThreads = 8;
    constexpr int kRecords = 100;
    std::atomic<int> next{1};
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&] {
        for (int n = next++; n <= kRecords; n = next++) {
          if (!harness.Append(MakeEntry(n))) ++failures;
        }
      });
    }
    for (auto& thread : threads) thread.join();
    REQUIRE(failures.load() == 0);

    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.reason == "");
    CHECK(report.records_checked == kRecords);
    CHECK(report.head_sequence == kRecords);

    auto records = harness.storage().Scan(detail::kLogPrefix, "", 1000);
    REQUIRE(records.has_value());
    REQUIRE(records->size() == kRecords);
    std::set<std::string> request_ids;
    for (std::size_t i = 0; i < records->size(); ++i) {
      const auto record = nlohmann::json::parse(AsText((*records)[i].value));
      CHECK(record.at("seq").get<std::uint64_t>() == i + 1);
      request_ids.insert(record.at("request_id").get<std::string>());
    }
    CHECK(request_ids.size() == kRecords);
  }

  TEST_CASE("record is canonical and chained") {
    AuditHarness harness;
    REQUIRE(harness.Append(MakeEntry(1)).has_value());
    REQUIRE(harness.Append(MakeEntry(2)).has_value());

    auto first = harness.storage().Get(detail::RecordKey(1));
    auto second = harness.storage().Get(detail::RecordKey(2));
    REQUIRE(first.has_value());
    REQUIRE(first->has_value());
    REQUIRE(second.has_value());
    REQUIRE(second->has_value());
    const std::string first_bytes(AsText(**first));
    const auto record = nlohmann::json::parse(first_bytes);

    CHECK(first_bytes == record.dump());
    CHECK_FALSE(Contains(first_bytes, " "));
    CHECK(first_bytes.starts_with("{\"accessor\":\"accessor-1\",\"client_address\":"));
    CHECK(record.size() == 16);
    CHECK(record.at("delegation_chain") == nlohmann::json::array());
    CHECK(record.at("seq") == 1);
    CHECK(record.at("prev_hash") == std::string(64, '0'));
    CHECK(record.at("time") == "2026-05-28T20:26:41.000000000Z");
    CHECK(record.at("request_id") == "request-1");
    CHECK(record.at("client_address") == "127.0.0.1");
    CHECK(record.at("accessor") == "accessor-1");
    CHECK(record.at("operation") == "update");
    CHECK(record.at("method") == "POST");
    CHECK(record.at("path") == "secret/data/app1");
    CHECK(record.at("status") == 200);

    const auto next = nlohmann::json::parse(AsText(**second));
    CHECK(next.at("seq") == 2);
    CHECK(next.at("prev_hash") == ToHex(Sha256(AsBytes(first_bytes))));

    auto head = harness.storage().Get(detail::kHeadKey);
    REQUIRE(head.has_value());
    REQUIRE(head->has_value());
    const auto head_json = nlohmann::json::parse(AsText(**head));
    CHECK(head_json.at("seq") == 2);
    CHECK(head_json.at("hash") == ToHex(Sha256(**second)));
    CHECK(head_json.at("mac").get<std::string>().size() == 64);
  }

  TEST_CASE("entry without time gets clock time") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.time = TimePoint{};
    REQUIRE(harness.Append(entry).has_value());
    CHECK(harness.Record(1).at("time") == "2026-09-21T14:13:20.000000000Z");
  }

  TEST_CASE("null bodies stay null") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = nullptr;
    entry.response_body = nullptr;
    REQUIRE(harness.Append(entry).has_value());
    const auto record = harness.Record(1);
    CHECK(record.at("request").is_null());
    CHECK(record.at("response").is_null());
  }

  TEST_CASE("secret values are replaced by hmacs") {
    AuditHarness harness;
    REQUIRE(harness.Append(SecretEntry()).has_value());
    auto secret_hash = harness.log().Hash(kSecret);
    auto second_hash = harness.log().Hash(kSecondSecret);
    REQUIRE(secret_hash.has_value());
    REQUIRE(second_hash.has_value());

    const auto record = harness.Record(1);
    const auto& request = record.at("request");
    CHECK(request.at("data").at("password") == *secret_hash);
    CHECK(request.at("data").at("list").at(0) == *second_hash);
    // Inside the payload, scalars are hashed as their JSON text.
    CHECK(request.at("data").at("list").at(1) == harness.log().Hash("42").value());
    CHECK(request.at("data").at("list").at(2) == harness.log().Hash("true").value());
    CHECK(request.at("data").at("list").at(3).is_null());
    CHECK(request.at("options").at("cas") == 3);
    CHECK(request.at("options").at("enabled") == false);
    CHECK(request.at("type") == "kv");
    CHECK(request.at("nested").at("deeper").at("token") == *secret_hash);

    const auto& response = record.at("response");
    CHECK(response.at("request_id") == "req-clear-1");
    CHECK(response.at("lease_id") == "database/creds/app/lease-1");
    CHECK(response.at("data").at("data").at("api_key") == *second_hash);
    CHECK(response.at("data").at("metadata").at("created_time") == "2026-01-02T03:04:05Z");
    CHECK(response.at("data").at("metadata").at("version") == 7);
    CHECK(response.at("errors").at(0) == "permission denied");
  }

  TEST_CASE("secrets never reach the database file") {
    AuditHarness harness;
    for (int i = 0; i < 3; ++i) REQUIRE(harness.Append(SecretEntry()).has_value());
    REQUIRE(harness.Verify().ok);

    // Scans the main file, the WAL and the shared-memory index. A clear field of the same
    // record must be found, which shows that the scan reaches the stored records.
    const auto scan_files = [&] {
      std::string all_files;
      for (const char* suffix : {"", "-wal", "-shm"}) {
        const std::string bytes = testing::ReadFileBytes(harness.db_path().string() + suffix);
        INFO("file suffix: " << suffix);
        CHECK_FALSE(Contains(bytes, kSecret));
        CHECK_FALSE(Contains(bytes, kSecondSecret));
        all_files += bytes;
      }
      CHECK(Contains(all_files, "req-clear-1"));
    };
    scan_files();
    harness.Close();
    scan_files();
  }

  TEST_CASE("object keys stay in clear") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"data", {{"db-password", "x"}}}};
    REQUIRE(harness.Append(entry).has_value());
    CHECK(harness.Record(1).at("request").at("data").contains("db-password"));
  }

  TEST_CASE("large body hashed as one value") {
    AuditHarness harness;
    testing::CountingToken counting(harness.token());
    harness.OpenLogOver(harness.storage(), counting);
    nlohmann::json values = nlohmann::json::array();
    for (int i = 0; i < 5000; ++i) values.push_back("value-" + std::to_string(i));
    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"data", {{"list", values}}}};
    storage::WriteBatch batch;
    REQUIRE(harness.log().Attach(entry, batch).has_value());
    CHECK(counting.hmac_calls() <= 4);
    REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
    const auto record = harness.Record(1);
    CHECK(record.at("request").contains("hmac_of_body"));
    const std::string stored = record.dump();
    CHECK(stored.find("value-42") == std::string::npos);
  }

  TEST_CASE("numbers inside payloads are hashed") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"data", {{"pin", 123456}, {"flag", true}}}, {"options", {{"cas", 3}}}};
    REQUIRE(harness.Append(entry).has_value());
    auto pin_hash = harness.log().Hash("123456");
    auto flag_hash = harness.log().Hash("true");
    REQUIRE(pin_hash.has_value());
    REQUIRE(flag_hash.has_value());
    const auto record = harness.Record(1);
    CHECK(record.at("request").at("data").at("pin") == *pin_hash);
    CHECK(record.at("request").at("data").at("flag") == *flag_hash);
    CHECK(record.at("request").at("options").at("cas") == 3);
  }

  TEST_CASE("allowlist ignored inside user payloads") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"data", {{"type", kSecret}, {"version", kSecret}}},
                          {"custom_metadata", {{"errors", kSecret}}}};
    entry.response_body = {
        {"request_id", "req-clear-1"},
        {"data", {{"data", {{"accessor", kSecret}}},
                  {"metadata", {{"created_time", "2026-01-02T03:04:05Z"},
                                {"custom_metadata", {{"type", kSecret}}}}}}}};
    REQUIRE(harness.Append(entry).has_value());
    auto secret_hash = harness.log().Hash(kSecret);
    REQUIRE(secret_hash.has_value());
    const auto record = harness.Record(1);
    CHECK(record.at("request").at("data").at("type") == *secret_hash);
    CHECK(record.at("request").at("data").at("version") == *secret_hash);
    CHECK(record.at("request").at("custom_metadata").at("errors") == *secret_hash);
    CHECK(record.at("response").at("data").at("data").at("accessor") == *secret_hash);
    CHECK(record.at("response").at("data").at("metadata").at("custom_metadata").at("type") ==
          *secret_hash);
    CHECK(record.at("response").at("data").at("metadata").at("created_time") ==
          "2026-01-02T03:04:05Z");
    CHECK(record.at("response").at("request_id") == "req-clear-1");
  }

  TEST_CASE("allowlisted key holding an object is still redacted") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"type", {{"password", kSecret}}}};
    REQUIRE(harness.Append(entry).has_value());
    auto secret_hash = harness.log().Hash(kSecret);
    REQUIRE(secret_hash.has_value());
    CHECK(harness.Record(1).at("request").at("type").at("password") == *secret_hash);
  }

  TEST_CASE("identical strings cost one hsm call") {
    AuditHarness harness;
    testing::CountingToken counting(harness.token());
    harness.OpenLogOver(harness.storage(), counting);

    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"a", kSecret}, {"b", kSecret}, {"c", {kSecret, kSecret}}};
    entry.response_body = {{"d", kSecret}, {"e", kSecondSecret}};
    storage::WriteBatch batch;
    REQUIRE(harness.log().Attach(entry, batch).has_value());
    CHECK(counting.hmac_calls() == 2);

    REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
    CHECK(counting.hmac_calls() == 3);  // plus the head MAC on the writer thread
  }

  TEST_CASE("hash has vault form") {
    AuditHarness harness;
    auto first = harness.log().Hash("my-secret-vault");
    auto again = harness.log().Hash("my-secret-vault");
    auto other = harness.log().Hash("my-secret-vaulT");
    REQUIRE(first.has_value());
    REQUIRE(again.has_value());
    REQUIRE(other.has_value());
    CHECK(first->starts_with("hmac-sha256:"));
    CHECK(first->size() == 12 + 64);
    CHECK(*first == *again);
    CHECK(*first != *other);
    CHECK(first->find_first_not_of("0123456789abcdef", 12) == std::string::npos);
  }

  TEST_CASE("hash rejects head mac domain") {
    AuditHarness harness;
    auto hashed = harness.log().Hash(
        "\xff"
        "keyward-audit-head:1:abc");
    REQUIRE_FALSE(hashed.has_value());
    CHECK(hashed.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("deeply nested body fails attach") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    nlohmann::json body = "leaf";
    for (int i = 0; i < 200; ++i) body = nlohmann::json::array({std::move(body)});
    entry.request_body = std::move(body);

    storage::WriteBatch batch;
    const Status attached = harness.log().Attach(entry, batch);
    REQUIRE_FALSE(attached.has_value());
    CHECK(attached.error().code() == Code::kInvalidArgument);
    CHECK_FALSE(static_cast<bool>(batch.finalizer));
  }

  TEST_CASE("caller finalizer runs before audit") {
    AuditHarness harness;
    std::vector<std::string> order;
    storage::WriteBatch batch;
    batch.Put("app/data", {1, 2, 3});
    batch.finalizer = [&order](storage::Transaction& transaction) -> Status {
      order.push_back("caller");
      auto head = transaction.Get(detail::kHeadKey);
      if (!head) return tl::unexpected(head.error());
      if (head->has_value()) return Internal("audit ran before the caller's finalizer");
      return transaction.Put("app/finalized", AsBytes("yes"));
    };
    REQUIRE(harness.log().Attach(MakeEntry(1), batch).has_value());
    REQUIRE(harness.storage().Commit(std::move(batch)).has_value());

    CHECK(order == std::vector<std::string>{"caller"});
    auto finalized = harness.storage().Get("app/finalized");
    REQUIRE(finalized.has_value());
    CHECK(finalized->has_value());
    CHECK(harness.Record(1).at("request_id") == "request-1");
    CHECK(harness.Verify().ok);
  }

  TEST_CASE("failed caller finalizer consumes no sequence") {
    AuditHarness harness;
    REQUIRE(harness.Append(MakeEntry(1)).has_value());

    storage::WriteBatch batch;
    batch.finalizer = [](storage::Transaction&) -> Status {
      return FailedPrecondition("caller finalizer rejects the batch");
    };
    REQUIRE(harness.log().Attach(MakeEntry(2), batch).has_value());
    const Status committed = harness.storage().Commit(std::move(batch));
    REQUIRE_FALSE(committed.has_value());
    CHECK(committed.error().code() == Code::kFailedPrecondition);

    REQUIRE(harness.Append(MakeEntry(3)).has_value());
    CHECK(harness.Record(2).at("request_id") == "request-3");
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.head_sequence == 2);
  }

  TEST_CASE("aborted batch consumes no sequence") {
    AuditHarness harness;
    REQUIRE(harness.Append(MakeEntry(1)).has_value());

    storage::WriteBatch batch;
    batch.Expect("app/cas", Bytes{1});  // absent, so the batch aborts
    REQUIRE(harness.log().Attach(MakeEntry(2), batch).has_value());
    const Status committed = harness.storage().Commit(std::move(batch));
    REQUIRE_FALSE(committed.has_value());
    CHECK(committed.error().code() == Code::kAborted);

    REQUIRE(harness.Append(MakeEntry(3)).has_value());
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.records_checked == 2);
    CHECK(report.head_sequence == 2);
    CHECK(harness.Record(2).at("request_id") == "request-3");
  }

  TEST_CASE("failed head put leaves head unchanged") {
    AuditHarness harness;
    testing::FailingHeadPutStorage failing(harness.storage());
    harness.OpenLogOver(failing, harness.token());
    REQUIRE(harness.Append(MakeEntry(1)).has_value());

    failing.fail_head_put = true;
    storage::WriteBatch batch;
    batch.Put("app/data", {9});
    REQUIRE(harness.log().Attach(MakeEntry(2), batch).has_value());
    const Status committed = failing.Commit(std::move(batch));
    REQUIRE_FALSE(committed.has_value());
    CHECK(committed.error().code() == Code::kUnavailable);
    CHECK(committed.error().message().find("audit log: store head 2") != std::string::npos);

    // The transaction rolled back with the record; nothing of it is stored.
    auto record = harness.storage().Get(detail::RecordKey(2));
    REQUIRE(record.has_value());
    CHECK_FALSE(record->has_value());
    auto data = harness.storage().Get("app/data");
    REQUIRE(data.has_value());
    CHECK_FALSE(data->has_value());

    failing.fail_head_put = false;
    storage::WriteBatch retry;
    REQUIRE(harness.log().Attach(MakeEntry(3), retry).has_value());
    REQUIRE(failing.Commit(std::move(retry)).has_value());
    CHECK(harness.Record(2).at("request_id") == "request-3");
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.head_sequence == 2);
  }

  TEST_CASE("several records in one batch") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.records_checked == 30);
    CHECK(harness.Record(30).at("request_id") == "request-30");
  }

  TEST_CASE("reopen continues the chain") {
    AuditHarness harness;
    harness.AppendMany(10);
    harness.Reopen();
    for (int n = 11; n <= 20; ++n) REQUIRE(harness.Append(MakeEntry(n)).has_value());

    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.records_checked == 20);
    CHECK(report.head_sequence == 20);
    CHECK(harness.Record(11).at("prev_hash") == detail::RecordHash(harness.Record(10).dump()));
  }

  TEST_CASE("second log on same storage fails closed") {
    AuditHarness harness;
    REQUIRE(harness.Append(MakeEntry(1)).has_value());
    SystemClock clock;
    auto opened = AuditLog::Open(harness.storage(), harness.token(), harness.key(), clock);
    REQUIRE(opened.has_value());
    std::unique_ptr<AuditLog> stale = std::move(*opened);
    REQUIRE(harness.Append(MakeEntry(2)).has_value());

    // `stale` loaded head 1 and would fork the chain at record 2.
    storage::WriteBatch batch;
    REQUIRE(stale->Attach(MakeEntry(3), batch).has_value());
    const Status committed = harness.storage().Commit(std::move(batch));
    REQUIRE_FALSE(committed.has_value());
    CHECK(committed.error().code() == Code::kDataLoss);

    CHECK(harness.Record(2).at("request_id") == "request-2");
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.head_sequence == 2);
  }
}

}  // namespace
}  // namespace kw::vault::audit
