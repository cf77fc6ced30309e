#include <doctest/doctest.h>

#include <vector>

#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_log.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/merkle.hpp"
#include "vault/audit/merkle_store.hpp"
#include "vault/audit/signed_note.hpp"

namespace kw::vault::audit {
namespace {

using testing::MakeEntry;

constexpr std::string_view kSignerLabel = "audit-checkpoint";
constexpr std::string_view kOrigin = "keyward.test/audit";

// A SoftHSM token with the audit HMAC key and an Ed25519 checkpoint key, a SQLite file, and an
// AuditLog that signs checkpoints. The log and the storage can be reopened.
class CheckpointHarness {
 public:
  CheckpointHarness() {
    auto token = hsm_.Open();
    REQUIRE_MESSAGE(token.has_value(), kw::testing::ErrorText(token.error()));
    token_ = std::move(*token);
    auto key = token_->GenerateHmacKey("audit-hmac");
    REQUIRE(key.has_value());
    hmac_key_ = *key;
    auto pair = token_->GenerateEd25519KeyPair(kSignerLabel);
    REQUIRE_MESSAGE(pair.has_value(), kw::testing::ErrorText(pair.error()));
    Open();
  }

  void Open() {
    storage::sqlite::SqliteOptions options;
    options.path = (dir_.path() / "keyward.db").string();
    auto opened = storage::sqlite::Open(options);
    REQUIRE(opened.has_value());
    storage_ = std::move(*opened);
    auto signer = note::OpenHsmNoteSigner(*token_, kSignerLabel, kOrigin, note::KeyType::kEd25519);
    REQUIRE_MESSAGE(signer.has_value(), kw::testing::ErrorText(signer.error()));
    auto log = AuditLog::Open(*storage_, *token_, hmac_key_, clock_, false, std::move(*signer));
    REQUIRE_MESSAGE(log.has_value(), kw::testing::ErrorText(log.error()));
    log_ = std::move(*log);
  }

  void Reopen() {
    log_.reset();
    storage_.reset();
    Open();
  }

  void Append(int first, int last) {
    for (int n = first; n <= last; ++n) {
      storage::WriteBatch batch;
      REQUIRE(log_->Attach(MakeEntry(n), batch).has_value());
      REQUIRE(storage_->Commit(std::move(batch)).has_value());
    }
  }

  // Returns the root recomputed from the stored records 1..size, independently of the tree
  // nodes the log stored.
  merkle::Hash RootOfRecords(std::uint64_t size) {
    merkle::CompactRange range;
    for (std::uint64_t seq = 1; seq <= size; ++seq) {
      auto stored = storage_->Get(detail::RecordKey(seq));
      REQUIRE(stored.has_value());
      REQUIRE(stored->has_value());
      range.Append(merkle::LeafHash(**stored));
    }
    return range.Root();
  }

  AuditLog& log() { return *log_; }
  storage::Storage& storage() { return *storage_; }

 private:
  kw::testing::SoftHsmFixture hsm_;
  std::unique_ptr<hsm::Token> token_;
  hsm::KeyHandle hmac_key_;
  testing::TempDir dir_;
  testing::FixedClock clock_{TimePoint(std::chrono::seconds(1'790'000'000))};
  std::unique_ptr<storage::Storage> storage_;
  std::unique_ptr<AuditLog> log_;
};

TEST_SUITE("vault/audit/checkpoint") {
  TEST_CASE("checkpoint signs the committed tree") {
    CheckpointHarness harness;
    harness.Append(1, 13);

    auto made = harness.log().MakeCheckpoint();
    REQUIRE_MESSAGE(made.has_value(), kw::testing::ErrorText(made.error()));
    REQUIRE(made->has_value());
    CHECK((*made)->size == 13);
    CHECK((*made)->root == harness.RootOfRecords(13));

    const note::VerifierKey* key = harness.log().checkpoint_key();
    REQUIRE(key != nullptr);
    CHECK(key->name == kOrigin);
    auto text = note::OpenNote((*made)->note, std::span(key, 1));
    REQUIRE_MESSAGE(text.has_value(), kw::testing::ErrorText(text.error()));
    auto parsed = note::ParseCheckpoint(*text);
    REQUIRE(parsed.has_value());
    CHECK(parsed->origin == kOrigin);
    CHECK(parsed->size == 13);
    CHECK(parsed->root == (*made)->root);

    auto stored = harness.storage().Get(detail::CheckpointKey(13));
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    CHECK(AsText(**stored) == (*made)->note);
  }

  TEST_CASE("checkpoint skipped without new records") {
    CheckpointHarness harness;
    auto empty = harness.log().MakeCheckpoint();
    REQUIRE(empty.has_value());
    CHECK_FALSE(empty->has_value());

    harness.Append(1, 3);
    REQUIRE(harness.log().MakeCheckpoint().has_value());
    auto again = harness.log().MakeCheckpoint();
    REQUIRE(again.has_value());
    CHECK_FALSE(again->has_value());

    harness.Append(4, 4);
    auto grown = harness.log().MakeCheckpoint();
    REQUIRE(grown.has_value());
    REQUIRE(grown->has_value());
    CHECK((*grown)->size == 4);
  }

  TEST_CASE("latest checkpoint survives reopen") {
    CheckpointHarness harness;
    harness.Append(1, 5);
    REQUIRE(harness.log().MakeCheckpoint().has_value());
    harness.Reopen();

    auto latest = harness.log().LatestCheckpoint();
    REQUIRE(latest.has_value());
    REQUIRE(latest->has_value());
    CHECK((*latest)->size == 5);
    auto again = harness.log().MakeCheckpoint();
    REQUIRE(again.has_value());
    CHECK_FALSE(again->has_value());

    harness.Append(6, 9);
    auto grown = harness.log().MakeCheckpoint();
    REQUIRE(grown.has_value());
    REQUIRE(grown->has_value());
    CHECK((*grown)->root == harness.RootOfRecords(9));
  }

  TEST_CASE("proofs from stored nodes verify against checkpoints") {
    CheckpointHarness harness;
    harness.Append(1, 6);
    auto first = harness.log().MakeCheckpoint();
    REQUIRE(first.has_value());
    REQUIRE(first->has_value());
    harness.Append(7, 21);
    auto second = harness.log().MakeCheckpoint();
    REQUIRE(second.has_value());
    REQUIRE(second->has_value());

    const merkle::NodeReader read = merkle::StorageNodeReader(harness.storage());
    auto consistency = merkle::ConsistencyProof(6, 21, read);
    REQUIRE(consistency.has_value());
    CHECK(merkle::VerifyConsistency(6, 21, (*first)->root, (*second)->root, *consistency)
              .has_value());

    for (std::uint64_t index = 0; index < 21; ++index) {
      auto proof = merkle::InclusionProof(index, 21, read);
      REQUIRE(proof.has_value());
      auto record = harness.storage().Get(detail::RecordKey(index + 1));
      REQUIRE(record.has_value());
      REQUIRE(record->has_value());
      CHECK(merkle::VerifyInclusion(index, 21, merkle::LeafHash(**record), *proof,
                                    (*second)->root)
                .has_value());
    }
  }

  TEST_CASE("tree rebuilt for a log without nodes") {
    CheckpointHarness harness;
    harness.Append(1, 11);
    const merkle::Hash expected = harness.RootOfRecords(11);
    // A log written before the tree existed: records and head, no nodes.
    for (int level = 0; level < 5; ++level) {
      for (std::uint64_t index = 0; index < 11; ++index) {
        storage::WriteBatch batch;
        batch.Delete(merkle::TreeNodeKey(level, index));
        REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
      }
    }
    harness.Reopen();

    auto root = merkle::RootAt(11, merkle::StorageNodeReader(harness.storage()));
    REQUIRE(root.has_value());
    CHECK(*root == expected);
    harness.Append(12, 12);
    CHECK(harness.log().Verify()->ok);
  }

  TEST_CASE("missing tree node rejects appends") {
    CheckpointHarness harness;
    harness.Append(1, 8);
    storage::WriteBatch batch;
    batch.Delete(merkle::TreeNodeKey(3, 0));  // the root of the first 8 records
    REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
    harness.Reopen();

    storage::WriteBatch next;
    auto attached = harness.log().Attach(MakeEntry(9), next);
    REQUIRE_FALSE(attached.has_value());
    CHECK(attached.error().code() == Code::kDataLoss);
    auto checkpoint = harness.log().MakeCheckpoint();
    REQUIRE_FALSE(checkpoint.has_value());
    CHECK(checkpoint.error().code() == Code::kDataLoss);
  }

  TEST_CASE("record names new fields") {
    CheckpointHarness harness;
    AuditEntry entry = MakeEntry(1);
    entry.client_spiffe_id = "spiffe://example.org/ns/prod/sa/api";
    entry.mount = "secret/";
    entry.status = 403;
    entry.error = "permission denied";
    storage::WriteBatch batch;
    std::shared_ptr<AppendedRecord> appended;
    REQUIRE(harness.log().Attach(entry, batch, appended).has_value());
    REQUIRE(harness.storage().Commit(std::move(batch)).has_value());

    REQUIRE(appended != nullptr);
    CHECK(appended->sequence == 1);
    const nlohmann::json record = nlohmann::json::parse(appended->canonical);
    CHECK(record["client_spiffe_id"] == "spiffe://example.org/ns/prod/sa/api");
    CHECK(record["mount"] == "secret/");
    CHECK(record["error"] == "permission denied");
    CHECK(record["status"] == 403);
    auto stored = harness.storage().Get(detail::RecordKey(1));
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    CHECK(AsText(**stored) == appended->canonical);
  }
}

}  // namespace
}  // namespace kw::vault::audit

#include "vault/audit/log_verifier.hpp"

namespace kw::vault::audit {
namespace {

TEST_SUITE("vault/audit/depth") {
  TEST_CASE("nesting counted outside strings") {
    CHECK_FALSE(detail::NestsDeeperThan(R"({"a":[1,{"b":2}]})", 3));
    CHECK(detail::NestsDeeperThan(R"({"a":[1,{"b":[2]}]})", 3));
    CHECK_FALSE(detail::NestsDeeperThan(R"({"a":"[[[[[[{{{{"})", 1));
    CHECK_FALSE(detail::NestsDeeperThan(R"({"a":"\"[[[["})", 1));
    CHECK(detail::NestsDeeperThan(R"({"a":"\\",[[]]})", 2));
  }

  TEST_CASE("deep record reported, not crashed") {
    auto verifier = LogVerifier::Create({});
    REQUIRE(verifier.has_value());
    // Two million levels: serializing it recursively would exhaust the stack.
    const std::string deep = R"({"seq":1,"zz":)" + std::string(2'000'000, '[') +
                             std::string(2'000'000, ']') + "}";
    verifier->AddLine(deep, "export.jsonl:1");
    REQUIRE_FALSE(verifier->ok());
    CHECK(verifier->problem()->sequence == 1);
    CHECK(verifier->problem()->reason.find("nests deeper than") != std::string::npos);
  }
}

}  // namespace
}  // namespace kw::vault::audit
