#include "vault/audit/audit_log.hpp"

#include <doctest/doctest.h>

#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/chain_verifier.hpp"
#include "vault/audit/merkle.hpp"
#include "vault/audit/merkle_store.hpp"
#include "vault/audit/retention.hpp"
#include "vault/audit/signed_note.hpp"

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

constexpr std::string_view kOrigin = "keyward.audit/verify-test";

// An Ed25519 checkpoint key on the harness's token.
std::unique_ptr<note::NoteSigner> MakeSigner(AuditHarness& harness) {
  auto generated = harness.token().GenerateEd25519KeyPair("audit-checkpoint");
  REQUIRE_MESSAGE(generated.has_value(), kw::testing::ErrorText(generated.error()));
  auto signer = note::OpenHsmNoteSigner(harness.token(), "audit-checkpoint", kOrigin,
                                        note::KeyType::kEd25519);
  REQUIRE_MESSAGE(signer.has_value(), kw::testing::ErrorText(signer.error()));
  return std::move(*signer);
}

// Returns the tree of stored records 1 to `size`, computed from the records.
merkle::CompactRange RecordTree(AuditHarness& harness, std::uint64_t size) {
  merkle::CompactRange range;
  for (std::uint64_t sequence = 1; sequence <= size; ++sequence) {
    auto stored = harness.storage().Get(Key(sequence));
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    range.Append(merkle::LeafHash(**stored));
  }
  return range;
}

// Signs a checkpoint of records 1 to `size` and stores it where the log keeps checkpoints.
void StoreCheckpoint(AuditHarness& harness, note::NoteSigner& signer, std::uint64_t size) {
  note::Checkpoint checkpoint;
  checkpoint.origin = std::string(kOrigin);
  checkpoint.size = size;
  checkpoint.root = RecordTree(harness, size).Root();
  auto signed_note = note::SignNote(note::FormatCheckpoint(checkpoint), signer);
  REQUIRE(signed_note.has_value());
  storage::WriteBatch batch;
  batch.Put(detail::CheckpointKey(size), Bytes(signed_note->begin(), signed_note->end()));
  REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
}

VerifyReport VerifyWithKey(AuditHarness& harness, const note::NoteSigner& signer) {
  const note::VerifierKey key = signer.key();
  auto report = detail::VerifyChain(harness.storage(), harness.token(), harness.key(),
                                    std::span(&key, 1));
  REQUIRE_MESSAGE(report.has_value(), kw::testing::ErrorText(report.error()));
  return *report;
}

// Deletes records 1 to `last` and writes the prune marker for them, as retention does.
void PruneThrough(AuditHarness& harness, std::uint64_t last) {
  const std::string last_bytes = *RawDatabase(harness.db_path()).Get(Key(last));
  detail::PruneMarker marker{last, detail::RecordHash(last_bytes)};
  auto mac = detail::ComputePruneMarkerMac(harness.token(), harness.key(), marker);
  REQUIRE(mac.has_value());
  RawDatabase db(harness.db_path());
  for (std::uint64_t sequence = 1; sequence <= last; ++sequence) db.Delete(Key(sequence));
  db.Put(std::string(detail::kPrunedKey), detail::EncodePruneMarker(marker, *mac));
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

  TEST_CASE("stored checkpoints verify with the records") {
    AuditHarness harness;
    auto signer = MakeSigner(harness);
    harness.AppendMany(50, 10);
    StoreCheckpoint(harness, *signer, 20);
    StoreCheckpoint(harness, *signer, 50);

    const VerifyReport report = VerifyWithKey(harness, *signer);
    CHECK(report.ok);
    CHECK(report.reason == "");
    CHECK(report.records_checked == 50);
    CHECK(report.tree_size == 50);
    CHECK(report.checkpoints_verified == 2);
    CHECK(report.root == ToBase64(RecordTree(harness, 50).Root()));

    // Without the key the stored checkpoints cannot be vouched for.
    auto keyless = detail::VerifyChain(harness.storage(), harness.token(), harness.key());
    REQUIRE(keyless.has_value());
    CHECK_FALSE(keyless->ok);
    CHECK(keyless->first_broken_sequence == 20);
    CHECK(Contains(keyless->reason, "no key was given"));
  }

  TEST_CASE("edited stored checkpoint is rejected") {
    AuditHarness harness;
    auto signer = MakeSigner(harness);
    harness.AppendMany(50, 10);
    StoreCheckpoint(harness, *signer, 20);
    harness.Close();
    {
      RawDatabase db(harness.db_path());
      std::string note = *db.Get(detail::CheckpointKey(20));
      const std::size_t root_at = note.find('\n', note.find('\n') + 1) + 1;
      note[root_at] = note[root_at] == 'A' ? 'B' : 'A';
      db.Put(detail::CheckpointKey(20), note);
    }
    harness.OpenStorage();
    const VerifyReport report = VerifyWithKey(harness, *signer);
    CHECK_FALSE(report.ok);
    CHECK(report.first_broken_sequence == 20);
    CHECK(report.reason.starts_with("the checkpoint for size 20 is rejected: "));
    CHECK(report.records_checked == 20);
  }

  TEST_CASE("checkpoint catches a rollback to an old head") {
    // Records after 30 deleted and the head stored at record 30 put back: the head MAC is
    // genuine, so only the checkpoint for size 50 shows the loss.
    AuditHarness harness;
    auto signer = MakeSigner(harness);
    harness.AppendMany(30, 10);
    const std::string head_at_30 = *RawDatabase(harness.db_path()).Get(kHead);
    for (int n = 31; n <= 50; ++n) REQUIRE(harness.Append(MakeEntry(n)).has_value());
    StoreCheckpoint(harness, *signer, 50);
    harness.Close();
    {
      RawDatabase db(harness.db_path());
      for (int sequence = 31; sequence <= 50; ++sequence) db.Delete(Key(sequence));
      db.Put(kHead, head_at_30);
    }
    harness.OpenStorage();
    const VerifyReport report = VerifyWithKey(harness, *signer);
    CHECK_FALSE(report.ok);
    CHECK(report.first_broken_sequence == 31);
    CHECK(report.reason ==
          "log ends after record 30 but the checkpoint for size 50 (signed by "
          "keyward.audit/verify-test) names 50 records (records 31 to 50 are missing)");
  }

  TEST_CASE("edited tree node is found") {
    AuditHarness harness;
    auto signer = MakeSigner(harness);
    harness.AppendMany(50, 10);
    harness.Close();
    {
      RawDatabase db(harness.db_path());
      db.Put(merkle::TreeNodeKey(0, 3), std::string(32, 'x'));
    }
    harness.OpenStorage();
    const VerifyReport report = VerifyWithKey(harness, *signer);
    CHECK_FALSE(report.ok);
    CHECK(report.first_broken_sequence == 4);
    CHECK(report.reason == "stored Merkle tree node " + merkle::TreeNodeKey(0, 3) +
                               " does not match records 4 to 4 (a tree node was changed)");
    CHECK(report.records_checked == 50);
  }

  TEST_CASE("deleted tree node is found") {
    AuditHarness harness;
    auto signer = MakeSigner(harness);
    harness.AppendMany(50, 10);
    harness.Close();
    {
      RawDatabase db(harness.db_path());
      db.Delete(merkle::TreeNodeKey(4, 2));  // records 33 to 48, a piece of the size-50 tree
    }
    harness.OpenStorage();
    const VerifyReport report = VerifyWithKey(harness, *signer);
    CHECK_FALSE(report.ok);
    CHECK(report.first_broken_sequence == 33);
    CHECK(report.reason == "stored Merkle tree node " + merkle::TreeNodeKey(4, 2) +
                               " over records 33 to 48 is missing");
  }

  TEST_CASE("verification resumes after pruned records") {
    AuditHarness harness;
    auto signer = MakeSigner(harness);
    harness.AppendMany(50, 10);
    StoreCheckpoint(harness, *signer, 20);
    StoreCheckpoint(harness, *signer, 40);
    harness.Close();
    PruneThrough(harness, 30);

    SUBCASE("sound") {
      harness.OpenStorage();
      const VerifyReport report = VerifyWithKey(harness, *signer);
      CHECK_MESSAGE(report.ok, report.reason);
      CHECK(report.records_checked == 20);
      CHECK(report.tree_size == 50);
      // Size 20 against the stored tree nodes, size 40 against the records.
      CHECK(report.checkpoints_verified == 2);
    }
    SUBCASE("edited prune marker") {
      {
        RawDatabase db(harness.db_path());
        db.Edit(std::string(detail::kPrunedKey), "\"seq\":30", "\"seq\":29");
      }
      harness.OpenStorage();
      const VerifyReport report = VerifyWithKey(harness, *signer);
      CHECK_FALSE(report.ok);
      CHECK(report.first_broken_sequence == 30);
      CHECK(report.reason == "prune marker MAC invalid");
    }
    SUBCASE("first kept record deleted") {
      {
        RawDatabase db(harness.db_path());
        db.Delete(Key(31));
      }
      harness.OpenStorage();
      const VerifyReport report = VerifyWithKey(harness, *signer);
      CHECK_FALSE(report.ok);
      CHECK(report.first_broken_sequence == 31);
      CHECK(report.reason == "record 31 missing");
    }
    SUBCASE("edited tree node of the pruned records") {
      {
        RawDatabase db(harness.db_path());
        db.Put(merkle::TreeNodeKey(2, 4), std::string(32, 'x'));  // records 17 to 20
      }
      harness.OpenStorage();
      const VerifyReport report = VerifyWithKey(harness, *signer);
      CHECK_FALSE(report.ok);
      CHECK(report.first_broken_sequence == 20);
      CHECK(Contains(report.reason, "does not match the stored tree nodes of the pruned"));
    }
  }

}

}  // namespace
}  // namespace kw::vault::audit
