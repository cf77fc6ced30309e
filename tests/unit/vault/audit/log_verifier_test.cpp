// The streaming verifier over a log built in memory and checkpoints signed by a real SoftHSM
// Ed25519 key: a sound log passes, and each tampering is caught with the record it concerns.
#include "vault/audit/log_verifier.hpp"

#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "hsm/token.hpp"
#include "tests/unit/fakes/softhsm_fixture.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/audit/merkle.hpp"
#include "vault/audit/signed_note.hpp"

namespace kw::vault::audit {
namespace {

using kw::testing::ErrorText;

constexpr std::string_view kOrigin = "keyward.audit/test-log";
constexpr int kRecords = 30;

bool Contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

// Returns record `sequence` chained onto `prev_hash`, in its stored canonical form.
std::string MakeRecord(std::uint64_t sequence, const std::string& prev_hash,
                       std::string_view path_prefix = "secret/data/app") {
  const nlohmann::json record = {
      {"seq", sequence},
      {"prev_hash", prev_hash},
      {"time", "2026-05-28T20:26:" + std::to_string(10 + sequence % 40) + ".000000000Z"},
      {"accessor", "accessor-" + std::to_string(sequence)},
      {"method", "POST"},
      {"operation", "update"},
      {"path", std::string(path_prefix) + std::to_string(sequence)},
      {"status", 200},
      {"request", nullptr},
      {"response", nullptr},
  };
  return detail::CanonicalJson(record);
}

// Returns records first..last chained onto `prev_hash`.
std::vector<std::string> MakeRecords(std::uint64_t first, std::uint64_t last,
                                     std::string prev_hash = std::string(detail::kGenesisHash),
                                     std::string_view path_prefix = "secret/data/app") {
  std::vector<std::string> records;
  for (std::uint64_t sequence = first; sequence <= last; ++sequence) {
    records.push_back(MakeRecord(sequence, prev_hash, path_prefix));
    prev_hash = detail::RecordHash(records.back());
  }
  return records;
}

merkle::CompactRange RangeOf(const std::vector<std::string>& records, std::size_t count) {
  merkle::CompactRange range;
  for (std::size_t i = 0; i < count; ++i) range.Append(merkle::LeafHash(AsBytes(records[i])));
  return range;
}

// A SoftHSM token with an Ed25519 checkpoint key named kOrigin.
class SignerHarness {
 public:
  SignerHarness() {
    auto token = hsm_.Open();
    REQUIRE_MESSAGE(token.has_value(), ErrorText(token.error()));
    token_ = std::move(*token);
    signer_ = MakeSigner("checkpoint-key", kOrigin);
  }

  // Returns a signer over a new key pair labelled `label`, named `name`.
  std::unique_ptr<note::NoteSigner> MakeSigner(std::string_view label, std::string_view name) {
    auto generated = token_->GenerateEd25519KeyPair(label);
    REQUIRE_MESSAGE(generated.has_value(), ErrorText(generated.error()));
    auto signer = note::OpenHsmNoteSigner(*token_, label, name, note::KeyType::kEd25519);
    REQUIRE_MESSAGE(signer.has_value(), ErrorText(signer.error()));
    return std::move(*signer);
  }

  note::NoteSigner& signer() { return *signer_; }
  std::vector<note::VerifierKey> keys() const { return {signer_->key()}; }

  // Returns the checkpoint note of the first `size` records, signed by `signer`.
  std::string Checkpoint(const std::vector<std::string>& records, std::size_t size,
                         note::NoteSigner& signer, std::string_view origin = kOrigin) {
    note::Checkpoint checkpoint;
    checkpoint.origin = std::string(origin);
    checkpoint.size = size;
    checkpoint.root = RangeOf(records, size).Root();
    auto signed_note = note::SignNote(note::FormatCheckpoint(checkpoint), signer);
    REQUIRE_MESSAGE(signed_note.has_value(), ErrorText(signed_note.error()));
    return *signed_note;
  }
  std::string Checkpoint(const std::vector<std::string>& records, std::size_t size) {
    return Checkpoint(records, size, *signer_);
  }

 private:
  kw::testing::SoftHsmFixture hsm_;
  std::unique_ptr<hsm::Token> token_;
  std::unique_ptr<note::NoteSigner> signer_;
};

std::string CheckpointLine(const std::string& note) {
  return detail::CanonicalJson(nlohmann::json{{"checkpoint", note}});
}

// Returns the export lines of `records` with a checkpoint line after each size in `sizes`.
std::vector<std::string> ExportLines(SignerHarness& harness,
                                     const std::vector<std::string>& records,
                                     const std::vector<std::size_t>& sizes) {
  std::vector<std::string> lines;
  for (std::size_t i = 0; i < records.size(); ++i) {
    lines.push_back(records[i]);
    for (const std::size_t size : sizes) {
      if (size == i + 1) lines.push_back(CheckpointLine(harness.Checkpoint(records, size)));
    }
  }
  return lines;
}

LogVerifier MakeVerifier(std::vector<note::VerifierKey> keys, VerifierStart start = {}) {
  auto verifier = LogVerifier::Create(std::move(keys), std::move(start));
  REQUIRE_MESSAGE(verifier.has_value(), ErrorText(verifier.error()));
  return std::move(*verifier);
}

// Feeds a saved checkpoint first, then every line, then finishes.
void FeedAll(LogVerifier& verifier, const std::vector<std::string>& lines,
             const std::optional<std::string>& saved_checkpoint) {
  if (saved_checkpoint) verifier.AddCheckpoint(*saved_checkpoint, "saved.ckpt");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    verifier.AddLine(lines[i], "export.jsonl line " + std::to_string(i + 1));
  }
  verifier.Finish();
}

// Returns the index in `lines` of record `sequence`.
std::size_t LineOf(const std::vector<std::string>& lines, std::uint64_t sequence) {
  const std::string needle = "\"seq\":" + std::to_string(sequence) + ",";
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (!lines[i].starts_with("{\"checkpoint\"") && Contains(lines[i], needle)) return i;
  }
  FAIL("record " << sequence << " not found");
  return 0;
}

TEST_SUITE("vault/audit") {
  TEST_CASE("log verifier passes a sound log") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    const std::vector<std::string> lines = ExportLines(harness, records, {7, 16, 25, 30});
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, harness.Checkpoint(records, kRecords));

    REQUIRE_MESSAGE(verifier.ok(), verifier.problem()->reason);
    CHECK(verifier.records_checked() == kRecords);
    CHECK(verifier.tree_size() == kRecords);
    CHECK(verifier.root() == RangeOf(records, kRecords).Root());
    CHECK(verifier.last_hash() == detail::RecordHash(records.back()));
    // Sizes 7, 16, 25 and 30 embedded, and the saved one for 30.
    CHECK(verifier.checkpoints_verified() == 5);
    CHECK(verifier.covered_size() == kRecords);
    CHECK(verifier.origin() == kOrigin);
  }

  TEST_CASE("log verifier accepts an empty tree checkpoint") {
    SignerHarness harness;
    const std::vector<std::string> records;
    LogVerifier verifier = MakeVerifier(harness.keys());
    verifier.AddCheckpoint(harness.Checkpoint(records, 0), "saved.ckpt");
    verifier.Finish();
    REQUIRE(verifier.ok());
    CHECK(verifier.checkpoints_verified() == 1);
    CHECK(verifier.root() == merkle::EmptyRoot());
  }

  TEST_CASE("log verifier catches a changed byte") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {10, 20, 30});
    const std::string saved = harness.Checkpoint(records, 20);

    SUBCASE("still canonical: the next record's link breaks") {
      std::string& line = lines[LineOf(lines, 12)];
      const std::size_t at = line.find("\"status\":200");
      REQUIRE(at != std::string::npos);
      line[at + 11] = '1';  // 200 -> 201
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, saved);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 13);
      CHECK(verifier.problem()->reason == "record 13: previous hash mismatch (record 12 changed?)");
      CHECK(verifier.problem()->location == "export.jsonl line 14");
    }
    SUBCASE("no longer JSON") {
      std::string& line = lines[LineOf(lines, 12)];
      line[0] = '[';
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, saved);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 12);
      CHECK(verifier.problem()->reason == "record 12 does not parse as a JSON object");
    }
    SUBCASE("no longer canonical") {
      std::string& line = lines[LineOf(lines, 12)];
      line.replace(line.find("\"status\":200"), 12, "\"status\":2e2");
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, saved);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 12);
      CHECK(Contains(verifier.problem()->reason, "record 12 is not in canonical JSON form"));
    }
    SUBCASE("last record: only the checkpoint catches it") {
      // Records 1 to 20 alone, the saved checkpoint covering them, record 20 edited: no later
      // record links to it.
      std::vector<std::string> short_lines(lines.begin(), lines.begin() + LineOf(lines, 20) + 1);
      std::string& line = short_lines.back();
      line[line.find("\"status\":200") + 11] = '1';
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, short_lines, saved);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 11);
      CHECK(Contains(verifier.problem()->reason,
                     "records 11 to 20 do not match the checkpoint for size 20 (signed by "
                     "keyward.audit/test-log)"));
      CHECK(Contains(verifier.problem()->reason,
                     "record 11 is the first not covered by an earlier verified checkpoint"));
      CHECK(verifier.problem()->location == "saved.ckpt");
    }
  }

  TEST_CASE("log verifier catches a deleted record") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {10, 20, 30});
    lines.erase(lines.begin() + static_cast<std::ptrdiff_t>(LineOf(lines, 15)));
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, harness.Checkpoint(records, 20));
    REQUIRE_FALSE(verifier.ok());
    CHECK(verifier.problem()->sequence == 15);
    CHECK(verifier.problem()->reason == "record 15 missing (record 16 follows record 14)");
  }

  TEST_CASE("log verifier catches a deleted first record") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {});
    lines.erase(lines.begin());
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, harness.Checkpoint(records, 20));
    REQUIRE_FALSE(verifier.ok());
    CHECK(verifier.problem()->sequence == 1);
    CHECK(Contains(verifier.problem()->reason, "record 1 missing (the first record given is 2"));
  }

  TEST_CASE("log verifier catches reordered records") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {10, 20, 30});
    std::swap(lines[LineOf(lines, 15)], lines[LineOf(lines, 16)]);

    SUBCASE("as they are") {
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, harness.Checkpoint(records, 20));
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 15);
      CHECK(verifier.problem()->reason == "record 15 missing (record 16 follows record 14)");
    }
    SUBCASE("renumbered to hide the swap") {
      // Record 16 is now where record 15 belongs: renumber it 15, and the other one 16.
      std::string& fifteen = lines[LineOf(lines, 16)];
      std::string& sixteen = lines[LineOf(lines, 15)];
      fifteen.replace(fifteen.find("\"seq\":16"), 8, "\"seq\":15");
      sixteen.replace(sixteen.find("\"seq\":15"), 8, "\"seq\":16");
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, harness.Checkpoint(records, 20));
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 15);
      CHECK(verifier.problem()->reason == "record 15: previous hash mismatch (record 14 changed?)");
    }
  }

  TEST_CASE("log verifier catches a truncated tail") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {10, 20, 30});
    // The checkpoint saved when the log had 25 records; the tail is cut after record 18, its
    // embedded checkpoints with it.
    const std::string saved = harness.Checkpoint(records, 25);
    lines.resize(LineOf(lines, 18) + 1);
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, saved);
    REQUIRE_FALSE(verifier.ok());
    CHECK(verifier.problem()->sequence == 19);
    CHECK(verifier.problem()->reason ==
          "log ends after record 18 but the checkpoint for size 25 (signed by "
          "keyward.audit/test-log) names 25 records (records 19 to 25 are missing)");
    CHECK(verifier.problem()->location == "saved.ckpt");
    CHECK(verifier.records_checked() == 18);
  }

  TEST_CASE("log verifier catches a rewritten tail") {
    // The attacker replaces records 22 to 30 with forged ones that chain correctly.
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> forged(records.begin(), records.begin() + 21);
    const std::vector<std::string> tail =
        MakeRecords(22, kRecords, detail::RecordHash(records[20]), "secret/data/forged");
    forged.insert(forged.end(), tail.begin(), tail.end());

    SUBCASE("embedded checkpoints left in place") {
      // Lines hold the forged records with the genuine checkpoints for 10, 20, 25 and 30.
      std::vector<std::string> lines;
      for (std::size_t i = 0; i < forged.size(); ++i) {
        lines.push_back(forged[i]);
        for (const std::size_t size : {10, 20, 25, 30}) {
          if (size == i + 1) lines.push_back(CheckpointLine(harness.Checkpoint(records, size)));
        }
      }
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, std::nullopt);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 21);
      CHECK(Contains(verifier.problem()->reason,
                     "records 21 to 25 do not match the checkpoint for size 25"));
      CHECK(verifier.problem()->location == "export.jsonl line 28");
      CHECK(verifier.checkpoints_verified() == 2);
    }
    SUBCASE("embedded checkpoints removed, saved checkpoint catches it") {
      std::vector<std::string> lines;
      for (std::size_t i = 0; i < forged.size(); ++i) {
        lines.push_back(forged[i]);
        if (i + 1 == 10) lines.push_back(CheckpointLine(harness.Checkpoint(records, 10)));
      }
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, harness.Checkpoint(records, 28));
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 11);
      CHECK(Contains(verifier.problem()->reason,
                     "records 11 to 28 do not match the checkpoint for size 28"));
      CHECK(verifier.problem()->location == "saved.ckpt");
    }
    SUBCASE("the forged chain alone passes the hash links") {
      // Without any checkpoint the forgery is invisible: what checkpoints are for.
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, forged, std::nullopt);
      CHECK(verifier.ok());
    }
  }

  TEST_CASE("log verifier rejects a checkpoint of another key") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    const std::vector<std::string> lines = ExportLines(harness, records, {});

    SUBCASE("same name, other key") {
      auto other = harness.MakeSigner("other-key", kOrigin);
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, harness.Checkpoint(records, 20, *other));
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 20);
      CHECK(verifier.problem()->reason.starts_with("the checkpoint for size 20 is rejected: "));
      CHECK(verifier.problem()->location == "saved.ckpt");
      CHECK(verifier.records_checked() == 0);
    }
    SUBCASE("origin that is not the key's name") {
      auto other = harness.MakeSigner("other-log-key", "keyward.audit/other-log");
      std::vector<note::VerifierKey> keys = harness.keys();
      keys.push_back(other->key());
      LogVerifier verifier = MakeVerifier(keys);
      // Signed by a known key, but for an origin that names the first key.
      FeedAll(verifier, lines, harness.Checkpoint(records, 20, *other, kOrigin));
      REQUIRE_FALSE(verifier.ok());
      CHECK(Contains(verifier.problem()->reason, "the checkpoint for size 20 is rejected"));
    }
    SUBCASE("embedded line signed by another key") {
      auto other = harness.MakeSigner("other-key", kOrigin);
      std::vector<std::string> mixed = lines;
      mixed.insert(mixed.begin() + static_cast<std::ptrdiff_t>(LineOf(mixed, 12)) + 1,
                   CheckpointLine(harness.Checkpoint(records, 12, *other)));
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, mixed, std::nullopt);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->sequence == 12);
      CHECK(verifier.problem()->location == "export.jsonl line 13");
      CHECK(verifier.records_checked() == 12);
    }
    SUBCASE("no key given") {
      LogVerifier verifier = MakeVerifier({});
      FeedAll(verifier, lines, harness.Checkpoint(records, 20));
      REQUIRE_FALSE(verifier.ok());
      CHECK(Contains(verifier.problem()->reason, "no key was given"));
    }
  }

  TEST_CASE("log verifier rejects two trees for one size") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> other = records;
    other[4] = MakeRecord(5, detail::RecordHash(records[3]), "secret/data/other");
    std::vector<std::string> lines = ExportLines(harness, records, {10});
    // A second, genuinely signed checkpoint for size 10 over a different record 5.
    lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(LineOf(lines, 10)) + 2,
                 CheckpointLine(harness.Checkpoint(other, 10)));
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, std::nullopt);
    REQUIRE_FALSE(verifier.ok());
    CHECK(verifier.problem()->sequence == 10);
    CHECK(Contains(verifier.problem()->reason, "the log signed two different trees"));
  }

  TEST_CASE("log verifier rejects malformed lines") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, 5);
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "empty line"},
        {"{\"note\":\"x\"}", "neither an audit record"},
        {"{\"checkpoint\":7}", "field checkpoint is not a string"},
        {"{\"checkpoint\":\"garbage\"}", "a checkpoint is rejected"},
    };
    // Plain references, not a structured binding, because clang 14 cannot capture a binding in the
    // lambda that CAPTURE expands to.
    for (const auto& entry : cases) {
      const std::string& line = entry.first;
      const std::string& expected = entry.second;
      CAPTURE(line);
      std::vector<std::string> lines = records;
      lines.insert(lines.begin() + 2, line);
      LogVerifier verifier = MakeVerifier(harness.keys());
      FeedAll(verifier, lines, std::nullopt);
      REQUIRE_FALSE(verifier.ok());
      CHECK(Contains(verifier.problem()->reason, expected));
      CHECK(verifier.problem()->location == "export.jsonl line 3");
    }
  }

  TEST_CASE("log verifier rejects a misplaced checkpoint") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {});
    lines.insert(lines.begin() + static_cast<std::ptrdiff_t>(LineOf(lines, 12)) + 1,
                 CheckpointLine(harness.Checkpoint(records, 8)));
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, std::nullopt);
    REQUIRE_FALSE(verifier.ok());
    CHECK(verifier.problem()->sequence == 8);
    CHECK(Contains(verifier.problem()->reason, "comes after record 12; it must follow record 8"));
  }

  TEST_CASE("log verifier resumes from a start state") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    VerifierStart start;
    start.sequence = 10;
    start.hash = detail::RecordHash(records[9]);
    start.range = RangeOf(records, 10);

    SUBCASE("sound") {
      LogVerifier verifier = MakeVerifier(harness.keys(), start);
      verifier.AddCheckpoint(harness.Checkpoint(records, kRecords), "saved.ckpt");
      for (std::uint64_t sequence = 11; sequence <= kRecords; ++sequence) {
        verifier.AddRecord(records[sequence - 1], detail::RecordKey(sequence), sequence);
      }
      verifier.Finish();
      REQUIRE_MESSAGE(verifier.ok(), verifier.problem()->reason);
      CHECK(verifier.records_checked() == 20);
      CHECK(verifier.tree_size() == kRecords);
      CHECK(verifier.checkpoints_verified() == 1);
    }
    SUBCASE("checkpoint of the pruned prefix checked against the given root") {
      LogVerifier verifier = MakeVerifier(harness.keys(), start);
      CheckpointContext context;
      context.stored_size = 6;
      context.root_before_start = RangeOf(records, 6).Root();
      verifier.AddCheckpoint(harness.Checkpoint(records, 6), "stored", context);
      CHECK(verifier.ok());
      CHECK(verifier.checkpoints_verified() == 1);

      context.root_before_start = RangeOf(records, 5).Root();
      verifier.AddCheckpoint(harness.Checkpoint(records, 6), "stored", context);
      REQUIRE_FALSE(verifier.ok());
      CHECK(Contains(verifier.problem()->reason, "does not match the stored tree nodes"));
    }
    SUBCASE("stored key names another size") {
      LogVerifier verifier = MakeVerifier(harness.keys(), start);
      CheckpointContext context;
      context.stored_size = 11;
      verifier.AddCheckpoint(harness.Checkpoint(records, 10), "stored", context);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->reason == "the checkpoint stored for size 11 names size 10");
    }
    SUBCASE("stored record in the wrong slot") {
      LogVerifier verifier = MakeVerifier(harness.keys(), start);
      verifier.AddRecord(records[11], detail::RecordKey(11), 11);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->reason ==
            "record 11: sequence out of order (the record stored there names 12)");
    }
    SUBCASE("wrong start hash") {
      start.hash = detail::RecordHash(records[8]);
      LogVerifier verifier = MakeVerifier(harness.keys(), start);
      verifier.AddRecord(records[10], detail::RecordKey(11), 11);
      REQUIRE_FALSE(verifier.ok());
      CHECK(verifier.problem()->reason == "record 11: previous hash mismatch (record 10 changed?)");
    }
  }

  TEST_CASE("log verifier start must be consistent") {
    VerifierStart start;
    start.sequence = 3;
    start.hash = std::string(64, 'a');
    auto created = LogVerifier::Create({}, start);
    REQUIRE_FALSE(created.has_value());
    CHECK(created.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("log verifier keeps the first problem") {
    SignerHarness harness;
    const std::vector<std::string> records = MakeRecords(1, kRecords);
    std::vector<std::string> lines = ExportLines(harness, records, {});
    lines.erase(lines.begin() + 4);   // record 5
    lines.erase(lines.begin() + 10);  // record 12
    LogVerifier verifier = MakeVerifier(harness.keys());
    FeedAll(verifier, lines, harness.Checkpoint(records, kRecords));
    REQUIRE_FALSE(verifier.ok());
    CHECK(verifier.problem()->sequence == 5);
    CHECK(verifier.records_checked() == 4);
  }
}

}  // namespace
}  // namespace kw::vault::audit
