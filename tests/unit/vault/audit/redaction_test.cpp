#include "vault/audit/redaction.hpp"

#include <doctest/doctest.h>

#include <string>

#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_log.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit {
namespace {

using testing::AuditHarness;
using testing::MakeEntry;

// Bytes an HMAC string takes in a record's JSON text, quotes included.
constexpr std::size_t kQuotedHmacBytes = 78;

// Returns a request body {"role_id": ..., "items": [...]} with `count` distinct strings.
nlohmann::json BodyWithStrings(std::size_t count) {
  nlohmann::json items = nlohmann::json::array();
  for (std::size_t i = 0; i < count; ++i) items.push_back("item-" + std::to_string(i));
  return {{"role_id", "role-1"}, {"items", std::move(items)}};
}

// Attaches `entry` through a token that counts HMAC calls, commits it and returns the count.
int AppendCountingHmacs(AuditHarness& harness, const AuditEntry& entry) {
  testing::CountingToken counting(harness.token());
  harness.OpenLogOver(harness.storage(), counting);
  storage::WriteBatch batch;
  const Status attached = harness.log().Attach(entry, batch);
  REQUIRE_MESSAGE(attached.has_value(), kw::testing::ErrorText(attached.error()));
  const int calls = counting.hmac_calls();
  REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
  harness.OpenLog();
  return calls;
}

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST_SUITE("vault/audit") {
  TEST_CASE("body past value bound hashed whole") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.path = "auth/approle/login";
    entry.request_body = BodyWithStrings(9'500);
    const int calls = AppendCountingHmacs(harness, entry);
    // The whole-body HMAC, plus the response's single value.
    CHECK(calls <= 2);

    const std::string text = detail::CanonicalJson(entry.request_body);
    const nlohmann::json request = harness.Record(1).at("request");
    CHECK(request.size() == 3);
    CHECK(request.at("hmac_of_body") == harness.log().Hash(text).value());
    CHECK(request.at("bytes") == text.size());
    CHECK(request.at("values") == 9'501);
    CHECK_FALSE(Contains(harness.Record(1).dump(), "item-42"));
    CHECK(harness.Verify().ok);
  }

  TEST_CASE("body at value bound redacted per value") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = BodyWithStrings(detail::kMaxBodyValues - 1);  // plus role_id
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json request = harness.Record(1).at("request");
    CHECK_FALSE(request.contains("hmac_of_body"));
    // sys/audit-hash of a known value still finds it.
    CHECK(request.at("items").at(42) == harness.log().Hash("item-42").value());
    CHECK(request.at("role_id") == harness.log().Hash("role-1").value());

    entry.request_body = BodyWithStrings(detail::kMaxBodyValues);
    REQUIRE(harness.Append(entry).has_value());
    CHECK(harness.Record(2).at("request").contains("hmac_of_body"));
  }

  TEST_CASE("body past byte bound hashed whole") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    // Strings under an allowlisted key stay in clear, so only the byte bound limits them.
    entry.request_body = {{"type", std::string(detail::kMaxBodyBytes, 'x')}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json request = harness.Record(1).at("request");
    CHECK(request.at("hmac_of_body") ==
          harness.log().Hash(detail::CanonicalJson(entry.request_body)).value());
    CHECK(request.at("values") == 1);
    CHECK(request.at("bytes") == detail::kMaxBodyBytes + 11);  // {"type":"..."}
  }

  TEST_CASE("object keys count toward byte bound") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    nlohmann::json keys = nlohmann::json::object();
    for (int i = 0; i < 400; ++i) keys[std::string(200, 'k') + std::to_string(i)] = nlohmann::json::object();
    entry.request_body = {{"options", std::move(keys)}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json request = harness.Record(1).at("request");
    CHECK(request.contains("hmac_of_body"));
    CHECK(request.at("values") == 0);
    CHECK_FALSE(Contains(harness.Record(1).dump(), std::string(200, 'k')));
  }

  TEST_CASE("response body bounded too") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.response_body = {{"data", {{"data", BodyWithStrings(5'000)}}}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json response = harness.Record(1).at("response");
    CHECK(response.at("hmac_of_body") ==
          harness.log().Hash(detail::CanonicalJson(entry.response_body)).value());
    CHECK(response.at("values") == 5'001);
    // The request, below both bounds, is still redacted value by value.
    CHECK(harness.Record(1).at("request").at("data").at("password") ==
          harness.log().Hash("pw-1").value());
  }

  TEST_CASE("redacted body size bounded") {
    // The worst case below both bounds: the most values, each one byte of text that becomes
    // an HMAC, and the remaining bytes in a string that stays in clear.
    nlohmann::json body = {{"data", nlohmann::json::array()}, {"type", ""}};
    for (std::size_t i = 0; i < detail::kMaxBodyValues - 1; ++i) body["data"].push_back(0);
    const std::size_t base = detail::CanonicalJson(body).size();
    body["type"] = std::string(detail::kMaxBodyBytes - base, 'x');
    REQUIRE(detail::CanonicalJson(body).size() == detail::kMaxBodyBytes);

    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.request_body = body;
    REQUIRE(harness.Append(entry).has_value());
    const nlohmann::json request = harness.Record(1).at("request");
    REQUIRE_FALSE(request.contains("hmac_of_body"));
    CHECK(request.at("data").at(0) == harness.log().Hash("0").value());
    const std::size_t limit =
        detail::kMaxBodyBytes + detail::kMaxBodyValues * (kQuotedHmacBytes - 1);
    CHECK(limit == 144'384);
    CHECK(detail::CanonicalJson(request).size() <= limit);
    // Every value but the clear "type" string grew by 77 bytes.
    CHECK(detail::CanonicalJson(request).size() == limit - (kQuotedHmacBytes - 1));

    // One byte more and the body is hashed whole.
    entry.request_body["type"] = std::string(detail::kMaxBodyBytes - base + 1, 'x');
    REQUIRE(harness.Append(entry).has_value());
    CHECK(harness.Record(2).at("request").contains("hmac_of_body"));
  }

  TEST_CASE("long object key replaced by hmac") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    const std::string long_key = "LEAKKEY" + std::string(detail::kMaxClearKeyBytes - 6, 'k');
    const std::string longest_clear_key(detail::kMaxClearKeyBytes, 'c');
    entry.request_body = {{"options", {{long_key, 1}, {longest_clear_key, 2}}}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json options = harness.Record(1).at("request").at("options");
    CHECK(options.at(harness.log().Hash(long_key).value()) == 1);
    CHECK(options.at(longest_clear_key) == 2);
    CHECK_FALSE(Contains(harness.Record(1).dump(), "LEAKKEY"));
  }

  TEST_CASE("long key inside payload hashed") {
    // The values under a hashed key are still in the payload, so their numbers are hashed too.
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    const std::string long_key(detail::kMaxClearKeyBytes + 1, 'd');
    entry.request_body = {{"data", {{long_key, {{"pin", 1234}}}}}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json data = harness.Record(1).at("request").at("data");
    const std::string key_hash = harness.log().Hash(long_key).value();
    CHECK(data.at(key_hash).at("pin") == harness.log().Hash("1234").value());
  }

  TEST_CASE("deep large body rejected") {
    AuditHarness harness;
    nlohmann::json deep = BodyWithStrings(2'000);
    for (int i = 0; i < detail::kMaxBodyDepth + 10; ++i) deep = nlohmann::json::array({deep});
    AuditEntry entry = MakeEntry(1);
    entry.request_body = {{"options", deep}};
    storage::WriteBatch batch;
    const Status attached = harness.log().Attach(entry, batch);
    REQUIRE_FALSE(attached.has_value());
    CHECK(attached.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("body at depth limit accepted") {
    AuditHarness harness;
    nlohmann::json deep = "leaf";
    for (int i = 0; i < detail::kMaxBodyDepth; ++i) deep = nlohmann::json::array({deep});
    AuditEntry entry = MakeEntry(1);
    entry.request_body = deep;
    REQUIRE(harness.Append(entry).has_value());

    deep = nlohmann::json::array({deep});
    entry.request_body = deep;
    storage::WriteBatch batch;
    const Status attached = harness.log().Attach(entry, batch);
    REQUIRE_FALSE(attached.has_value());
    CHECK(attached.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("audit records response summarized") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.operation = "read";
    entry.method = "GET";
    entry.path = "sys/audit/records";
    entry.request_body = nullptr;
    const nlohmann::json embedded = {{"path", "secret/data/app"}, {"error", "LEAKREC1"}};
    entry.response_body = {
        {"request_id", "req-1"},
        {"data", {{"records", {embedded, embedded, embedded}}, {"next", 17}, {"scanned", 40}}}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json response = harness.Record(1).at("response");
    CHECK(response.at("request_id") == "req-1");
    CHECK(response.at("data").at("records") == 3);
    CHECK(response.at("data").at("next") == 17);
    CHECK(response.at("data").at("scanned") == 40);
    CHECK_FALSE(Contains(harness.Record(1).dump(), "LEAKREC1"));
  }

  TEST_CASE("audit checkpoints response summarized") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.path = "sys/audit/checkpoints";
    entry.response_body = {
        {"data",
         {{"checkpoints", {{{"size", 4}, {"note", "LEAKNOTE"}}}}, {"next", nullptr}}}};
    REQUIRE(harness.Append(entry).has_value());

    const nlohmann::json response = harness.Record(1).at("response");
    CHECK(response.at("data").at("checkpoints") == 1);
    CHECK(response.at("data").at("next").is_null());
    CHECK_FALSE(Contains(harness.Record(1).dump(), "LEAKNOTE"));
  }

  TEST_CASE("summary only for listing paths") {
    AuditHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.path = "secret/data/sys/audit/records";
    entry.response_body = {{"data", {{"records", {"a", "b"}}}}};
    REQUIRE(harness.Append(entry).has_value());
    CHECK(harness.Record(1).at("response").at("data").at("records").is_array());

    // An error reply has no listing and is recorded as it is.
    entry.path = "sys/audit/records";
    entry.response_body = {{"errors", {"permission denied"}}};
    REQUIRE(harness.Append(entry).has_value());
    CHECK(harness.Record(2).at("response").at("errors").at(0) == "permission denied");
  }

  TEST_CASE("repeated record queries do not grow") {
    // Each query's response embeds the previous query's record, as sys/audit/records does.
    AuditHarness harness;
    std::size_t first_size = 0;
    for (std::uint64_t query = 1; query <= 6; ++query) {
      AuditEntry entry = MakeEntry(static_cast<int>(query));
      entry.path = "sys/audit/records";
      entry.request_body = nullptr;
      nlohmann::json records = nlohmann::json::array();
      if (query > 1) records.push_back(harness.Record(query - 1));
      entry.response_body = {{"data", {{"records", std::move(records)}, {"next", nullptr}}}};
      REQUIRE(harness.Append(entry).has_value());

      const std::size_t size = harness.Record(query).dump().size();
      if (query == 1) first_size = size;
      INFO("query " << query);
      CHECK(size <= first_size + 64);
    }
  }
}

}  // namespace
}  // namespace kw::vault::audit
