#include "vault/audit/audit_log.hpp"

#include <doctest/doctest.h>

#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_record.hpp"

// Tamper tests: the chain is written through AuditLog, then edited directly in the SQLite
// file while the storage is closed, as an attacker with file access would, and verified after
// reopening.
namespace kw::vault::audit {
namespace {

using testing::AuditHarness;
using testing::MakeEntry;
using testing::RawDatabase;

constexpr int kRecords = 100;

std::string Key(std::uint64_t sequence) { return detail::RecordKey(sequence); }
const std::string kHead(detail::kHeadKey);

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Appends kRecords records and closes the storage, ready for tampering.
void WriteChainAndClose(AuditHarness& harness) {
  harness.AppendMany(kRecords, 10);
  REQUIRE(harness.Verify().ok);
  harness.Close();
}

// Reopens after tampering and returns the verification report.
VerifyReport ReopenAndVerify(AuditHarness& harness) {
  harness.OpenStorage();
  harness.OpenLog();
  return harness.Verify();
}

TEST_SUITE("vault/audit") {
  TEST_CASE("edited record breaks the next link") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Edit(Key(37), "\"status\":200", "\"status\":404");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 38);
    CHECK(report.reason == "record 38: previous hash mismatch (record 37 changed?)");
    CHECK(report.records_checked == 37);
    CHECK(report.head_sequence == kRecords);
  }

  TEST_CASE("edited prev hash breaks that record") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      const std::string original = *db.Get(Key(37));
      const std::size_t at = original.find("\"prev_hash\":\"") + 13;
      std::string edited = original;
      edited[at] = edited[at] == 'a' ? 'b' : 'a';
      db.Put(Key(37), edited);
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 37);
    CHECK(report.reason == "record 37: previous hash mismatch (record 36 changed?)");
  }

  TEST_CASE("non-canonical edit is caught at the record") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Edit(Key(37), "\"status\":200", "\"status\": 200");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 37);
    CHECK(Contains(report.reason, "record 37 is not in canonical JSON form"));
  }

  TEST_CASE("unparsable record is reported") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Put(Key(20), "{not json");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 20);
    CHECK(report.reason == "record 20 does not parse as a JSON object");
  }

  TEST_CASE("edited last record fails the head hash") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Edit(Key(kRecords), "\"method\":\"POST\"", "\"method\":\"GET\"");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == kRecords);
    CHECK(report.reason == "record 100 does not match the head hash (record 100 changed?)");
    CHECK(report.records_checked == kRecords);
  }

  TEST_CASE("deleted record is missing") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Delete(Key(50));
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 50);
    CHECK(report.reason == "record 50 missing");
  }

  TEST_CASE("deleted first record is missing") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Delete(Key(1));
    }
    const VerifyReport report = ReopenAndVerify(harness);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 1);
    CHECK(report.reason == "record 1 missing");
  }

  TEST_CASE("swapped records are out of order") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      const std::string forty = *db.Get(Key(40));
      const std::string forty_one = *db.Get(Key(41));
      db.Put(Key(40), forty_one);
      db.Put(Key(41), forty);
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 40);
    CHECK(Contains(report.reason, "record 40: sequence out of order"));
  }

  TEST_CASE("renumbered swap breaks the link") {
    // Swapping two records and fixing their seq fields still breaks the hash links.
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      std::string forty = *db.Get(Key(40));
      std::string forty_one = *db.Get(Key(41));
      db.Put(Key(40), forty_one);
      db.Put(Key(41), forty);
      db.Edit(Key(40), "\"seq\":41", "\"seq\":40");
      db.Edit(Key(41), "\"seq\":40", "\"seq\":41");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 40);
    CHECK(report.reason == "record 40: previous hash mismatch (record 39 changed?)");
  }

  TEST_CASE("truncated tail is detected") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      for (int sequence = kRecords - 4; sequence <= kRecords; ++sequence) db.Delete(Key(sequence));
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 96);
    CHECK(report.reason == "log truncated after record 95 (head names record 100)");
    CHECK(report.records_checked == 95);
    CHECK(report.head_sequence == kRecords);
  }

  TEST_CASE("truncation with rewritten head fails the mac") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      for (int sequence = kRecords - 4; sequence <= kRecords; ++sequence) db.Delete(Key(sequence));
      const std::string last = *db.Get(Key(95));
      auto head = nlohmann::json::parse(*db.Get(kHead));
      head["seq"] = 95;
      head["hash"] = detail::RecordHash(last);
      db.Put(kHead, detail::CanonicalJson(head));
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 96);
    CHECK(report.reason == "head MAC invalid");
  }

  TEST_CASE("edited head fails the mac") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      auto head = nlohmann::json::parse(*db.Get(kHead));
      std::string mac = head["mac"];
      mac[0] = mac[0] == '0' ? '1' : '0';
      head["mac"] = mac;
      db.Put(kHead, detail::CanonicalJson(head));
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == kRecords + 1);
    CHECK(report.reason == "head MAC invalid");
    CHECK(report.records_checked == kRecords);
  }

  TEST_CASE("garbled head fails the mac") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Put(kHead, "garbage");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    CHECK(report.reason.starts_with("head MAC invalid ("));
  }

  TEST_CASE("deleted head is detected") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      db.Delete(kHead);
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == kRecords + 1);
    CHECK(report.reason == "head missing although the log holds 100 records");
  }

  TEST_CASE("record beyond the head is detected") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      // A forged record 101 that links correctly to record 100 but has no head update.
      RawDatabase db(harness.db_path());
      auto forged = nlohmann::json::parse(*db.Get(Key(kRecords)));
      forged["seq"] = kRecords + 1;
      forged["prev_hash"] = detail::RecordHash(*db.Get(Key(kRecords)));
      db.Put(Key(kRecords + 1), detail::CanonicalJson(forged));
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == kRecords + 1);
    CHECK(report.reason == "record 101 lies beyond the head (head names record 100)");
  }

  TEST_CASE("tampered head makes attach fail closed") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    {
      RawDatabase db(harness.db_path());
      for (int sequence = kRecords - 4; sequence <= kRecords; ++sequence) db.Delete(Key(sequence));
    }
    harness.OpenStorage();
    harness.OpenLog();  // succeeds, so the server can start and report it

    storage::WriteBatch batch;
    const Status attached = harness.log().Attach(MakeEntry(200), batch);
    REQUIRE_FALSE(attached.has_value());
    CHECK(attached.error().code() == Code::kDataLoss);
    CHECK(Contains(attached.error().message(), "head names record 100"));

    // The evidence is untouched: verification still reports the truncation.
    const VerifyReport report = harness.Verify();
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 96);
  }

  TEST_CASE("broken record beyond the first page is found") {
    AuditHarness harness;
    constexpr int kManyRecords = 2500;
    harness.AppendMany(kManyRecords, 250);
    const VerifyReport sound = harness.Verify();
    CHECK(sound.ok);
    CHECK(sound.records_checked == kManyRecords);
    harness.Close();
    {
      RawDatabase db(harness.db_path());
      db.Edit(Key(2100), "\"status\":200", "\"status\":500");
    }
    const VerifyReport report = ReopenAndVerify(harness);
    CHECK_FALSE(report.ok);
    REQUIRE(report.first_broken_sequence.has_value());
    CHECK(*report.first_broken_sequence == 2101);
    CHECK(report.records_checked == 2100);
  }

  TEST_CASE("verify after reopen and tamper-free appends") {
    AuditHarness harness;
    WriteChainAndClose(harness);
    harness.OpenStorage();
    harness.OpenLog();
    REQUIRE(harness.Append(MakeEntry(kRecords + 1)).has_value());
    const VerifyReport report = harness.Verify();
    CHECK(report.ok);
    CHECK(report.records_checked == kRecords + 1);
  }
}

}  // namespace
}  // namespace kw::vault::audit
