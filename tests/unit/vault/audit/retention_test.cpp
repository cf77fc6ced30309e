#include "vault/audit/retention.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/unit/fakes/failing_storage.hpp"
#include "tests/unit/vault/audit/audit_test_support.hpp"
#include "vault/audit/audit_record.hpp"

namespace kw::vault::audit {
namespace {

using testing::AuditHarness;
using testing::FixedClock;
using testing::MakeEntry;
using testing::ReadFileBytes;
using testing::TempDir;

// MakeEntry(n) is stamped 1'780'000'000 + n seconds after the epoch.
constexpr std::int64_t kEntryEpoch = 1'780'000'000;
constexpr std::chrono::seconds kOneHour{3600};

// A clock at which records 1 .. n - 1 are older than one hour and record n is not.
FixedClock ClockPruningBefore(int n) {
  return FixedClock(TimePoint(std::chrono::seconds(kEntryEpoch + n) + kOneHour));
}

// Counts the commits that reach the storage behind it.
class CountingStorage final : public kw::testing::ForwardingStorage {
 public:
  using ForwardingStorage::ForwardingStorage;
  std::atomic<int> commits{0};
  Status Commit(storage::WriteBatch batch) override {
    ++commits;
    return ForwardingStorage::Commit(std::move(batch));
  }
};

std::string StoredBytes(storage::Storage& storage, const std::string& key) {
  auto stored = storage.Get(key);
  REQUIRE(stored.has_value());
  REQUIRE(stored->has_value());
  return std::string(AsText(**stored));
}

bool IsStored(storage::Storage& storage, const std::string& key) {
  auto stored = storage.Get(key);
  REQUIRE(stored.has_value());
  return stored->has_value();
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    REQUIRE_MESSAGE(end != std::string::npos, "the last line has no newline");
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

std::string ArchivePath(const TempDir& dir, std::uint64_t first, std::uint64_t last) {
  char name[80];
  std::snprintf(name, sizeof name, "keyward-audit-%020llu-%020llu.jsonl",
                static_cast<unsigned long long>(first), static_cast<unsigned long long>(last));
  return (dir.path() / name).string();
}

Result<PruneReport> Prune(AuditHarness& harness, storage::Storage& storage, const Clock& clock,
                          const std::string& archive_dir) {
  return PruneAuditRecords(storage, harness.token(), harness.key(), clock, kOneHour, archive_dir);
}

std::size_t EntriesIn(const std::filesystem::path& dir) {
  std::size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator(dir)) ++count;
  return count;
}

TEST_SUITE("vault/audit/retention") {
  TEST_CASE("prune archives old records byte for byte") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    std::vector<std::string> originals;
    for (int n = 1; n <= 20; ++n) {
      originals.push_back(StoredBytes(harness.storage(), detail::RecordKey(n)));
    }
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(21);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE_MESSAGE(report.has_value(), kw::testing::ErrorText(report.error()));
    CHECK(report->pruned == 20);
    CHECK(report->first_seq == 1);
    CHECK(report->last_seq == 20);
    CHECK(report->checkpoints == 0);
    CHECK_FALSE(report->archive_reused);
    CHECK(report->archive == ArchivePath(archive_dir, 1, 20));

    const std::vector<std::string> lines = Lines(ReadFileBytes(report->archive));
    CHECK(lines == originals);
    struct stat status {};
    REQUIRE(::stat(report->archive.c_str(), &status) == 0);
    CHECK((status.st_mode & 0777) == 0600);
    CHECK(EntriesIn(archive_dir.path()) == 1);

    for (int n = 1; n <= 20; ++n) {
      INFO("record " << n);
      CHECK_FALSE(IsStored(harness.storage(), detail::RecordKey(n)));
    }
    for (int n = 21; n <= 30; ++n) {
      INFO("record " << n);
      CHECK(IsStored(harness.storage(), detail::RecordKey(n)));
    }
  }

  TEST_CASE("prune marker MAC verifies") {
    AuditHarness harness;
    harness.AppendMany(12, 4);
    const std::string last_pruned = StoredBytes(harness.storage(), detail::RecordKey(7));
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(8);
    REQUIRE(Prune(harness, harness.storage(), clock, archive_dir.path().string()).has_value());

    const std::string stored = StoredBytes(harness.storage(), std::string(detail::kPrunedKey));
    auto decoded = detail::DecodePruneMarker(AsBytes(stored));
    REQUIRE(decoded.has_value());
    CHECK(decoded->marker.sequence == 7);
    CHECK(decoded->marker.hash == detail::RecordHash(last_pruned));
    CHECK(stored == detail::EncodePruneMarker(decoded->marker, decoded->mac));
    auto valid = detail::IsPruneMarkerMacValid(harness.token(), harness.key(), *decoded);
    REQUIRE(valid.has_value());
    CHECK(*valid);

    auto loaded = detail::LoadPruneMarker(harness.storage(), harness.token(), harness.key());
    REQUIRE(loaded.has_value());
    REQUIRE(loaded->has_value());
    CHECK((*loaded)->sequence == 7);

    // The MAC binds the sequence number: the same MAC does not verify for another record.
    detail::StoredPruneMarker moved = *decoded;
    moved.marker.sequence = 8;
    auto moved_valid = detail::IsPruneMarkerMacValid(harness.token(), harness.key(), moved);
    REQUIRE(moved_valid.has_value());
    CHECK_FALSE(*moved_valid);
  }

  TEST_CASE("prune marker MAC message layout") {
    const detail::PruneMarker marker{42, std::string(64, 'a')};
    const Bytes message = detail::PruneMarkerMacMessage(marker);
    REQUIRE_FALSE(message.empty());
    CHECK(message[0] == 0xFF);
    const std::string text(message.begin() + 1, message.end());
    CHECK(text == "keyward-audit-pruned:42:" + std::string(64, 'a'));
  }

  TEST_CASE("malformed prune marker is data loss") {
    for (const std::string& stored :
         {std::string("not json"), std::string("{\"hash\":\"00\",\"mac\":\"00\",\"seq\":1}"),
          std::string("{\"hash\":\"") + std::string(64, '0') + "\",\"mac\":\"" +
              std::string(64, '0') + "\",\"seq\":0}",
          std::string("{\"hash\":\"") + std::string(64, '0') + "\",\"seq\":3}"}) {
      INFO("stored: " << stored);
      auto decoded = detail::DecodePruneMarker(AsBytes(stored));
      REQUIRE_FALSE(decoded.has_value());
      CHECK(decoded.error().code() == Code::kDataLoss);
    }
  }

  TEST_CASE("newest record is never pruned") {
    AuditHarness harness;
    harness.AppendMany(5, 5);
    TempDir archive_dir("kw-archive");
    // Every record is older than the cutoff.
    const FixedClock clock = ClockPruningBefore(1000);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE(report.has_value());
    CHECK(report->pruned == 4);
    CHECK(report->last_seq == 4);
    CHECK(IsStored(harness.storage(), detail::RecordKey(5)));

    auto again = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE(again.has_value());
    CHECK(again->pruned == 0);
    CHECK(again->archive.empty());
    CHECK(IsStored(harness.storage(), detail::RecordKey(5)));

    // The log still opens and appends after its prefix is gone.
    harness.Reopen();
    REQUIRE(harness.Append(MakeEntry(6)).has_value());
    CHECK(harness.Record(6).at("prev_hash") ==
          detail::RecordHash(StoredBytes(harness.storage(), detail::RecordKey(5))));
  }

  TEST_CASE("nothing old enough leaves no archive") {
    AuditHarness harness;
    harness.AppendMany(5, 5);
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(1);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE(report.has_value());
    CHECK(report->pruned == 0);
    CHECK(report->first_seq == 0);
    CHECK(EntriesIn(archive_dir.path()) == 0);
    CHECK_FALSE(IsStored(harness.storage(), std::string(detail::kPrunedKey)));
  }

  TEST_CASE("selection stops at first recent record") {
    AuditHarness harness;
    // Record 4 is recent, records 5 and 6 are old again: only 1 to 3 go, so the stored log
    // stays contiguous.
    for (int n = 1; n <= 7; ++n) {
      AuditEntry entry = MakeEntry(n);
      if (n == 4) entry.time = TimePoint(std::chrono::seconds(kEntryEpoch + 500) + kOneHour);
      REQUIRE(harness.Append(entry).has_value());
    }
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(100);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE(report.has_value());
    CHECK(report->pruned == 3);
    CHECK(report->last_seq == 3);
    CHECK(IsStored(harness.storage(), detail::RecordKey(5)));
  }

  TEST_CASE("checkpoints in range become archive lines") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    for (const std::uint64_t size : {3, 10, 25}) {
      storage::WriteBatch batch;
      const std::string note = "origin\n" + std::to_string(size) + "\nroot\n\n— origin sig\n";
      batch.Put(detail::CheckpointKey(size), Bytes(note.begin(), note.end()));
      REQUIRE(harness.storage().Commit(std::move(batch)).has_value());
    }
    const std::string record_3 = StoredBytes(harness.storage(), detail::RecordKey(3));
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(21);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE(report.has_value());
    CHECK(report->checkpoints == 2);
    const std::vector<std::string> lines = Lines(ReadFileBytes(report->archive));
    REQUIRE(lines.size() == 22);
    CHECK(lines[2] == record_3);
    CHECK(lines[3] == "{\"checkpoint\":\"origin\\n3\\nroot\\n\\n— origin sig\\n\"}");
    CHECK(nlohmann::json::parse(lines[4]).at("seq") == 4);
    CHECK(nlohmann::json::parse(lines[10]).at("seq") == 10);
    CHECK(nlohmann::json::parse(lines[11]).at("checkpoint") ==
          "origin\n10\nroot\n\n— origin sig\n");
    CHECK(nlohmann::json::parse(lines[21]).at("seq") == 20);

    // Checkpoints stay in storage: proofs and the verifier need them.
    CHECK(IsStored(harness.storage(), detail::CheckpointKey(3)));
    CHECK(IsStored(harness.storage(), detail::CheckpointKey(10)));
  }

  TEST_CASE("large prune commits in batches of 1000") {
    AuditHarness harness;
    harness.AppendMany(2501, 100);
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(5000);
    CountingStorage counting(harness.storage());

    auto report = Prune(harness, counting, clock, archive_dir.path().string());
    REQUIRE_MESSAGE(report.has_value(), kw::testing::ErrorText(report.error()));
    CHECK(report->pruned == 2500);
    CHECK(counting.commits.load() == 3);
    CHECK(Lines(ReadFileBytes(report->archive)).size() == 2500);
    auto marker = detail::LoadPruneMarker(harness.storage(), harness.token(), harness.key());
    REQUIRE(marker.has_value());
    REQUIRE(marker->has_value());
    CHECK((*marker)->sequence == 2500);
    auto remaining = harness.storage().Scan(detail::kLogPrefix, "", 10);
    REQUIRE(remaining.has_value());
    REQUIRE(remaining->size() == 1);
    CHECK(remaining->front().key == detail::RecordKey(2501));
  }

  TEST_CASE("second prune continues after the marker") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    TempDir archive_dir("kw-archive");
    const FixedClock first_clock = ClockPruningBefore(11);
    const FixedClock second_clock = ClockPruningBefore(21);
    const std::string record_10 = StoredBytes(harness.storage(), detail::RecordKey(10));

    REQUIRE(Prune(harness, harness.storage(), first_clock, archive_dir.path().string()));
    auto second = Prune(harness, harness.storage(), second_clock, archive_dir.path().string());
    REQUIRE(second.has_value());
    CHECK(second->first_seq == 11);
    CHECK(second->last_seq == 20);
    CHECK(second->archive == ArchivePath(archive_dir, 11, 20));
    const std::vector<std::string> lines = Lines(ReadFileBytes(second->archive));
    REQUIRE_FALSE(lines.empty());
    CHECK(nlohmann::json::parse(lines.front()).at("prev_hash") == detail::RecordHash(record_10));
    CHECK(EntriesIn(archive_dir.path()) == 2);
  }

  TEST_CASE("rerun after crash reuses the archive") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(21);

    // The archive is written, then the deletion commit fails as after a crash.
    kw::testing::FailingStorage failing(harness.storage());
    failing.fail_commits = true;
    auto crashed = Prune(harness, failing, clock, archive_dir.path().string());
    REQUIRE_FALSE(crashed.has_value());
    CHECK(crashed.error().code() == Code::kUnavailable);
    const std::string archive = ArchivePath(archive_dir, 1, 20);
    struct stat before {};
    REQUIRE(::stat(archive.c_str(), &before) == 0);
    CHECK(IsStored(harness.storage(), detail::RecordKey(1)));
    CHECK_FALSE(IsStored(harness.storage(), std::string(detail::kPrunedKey)));

    auto rerun = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE_MESSAGE(rerun.has_value(), kw::testing::ErrorText(rerun.error()));
    CHECK(rerun->archive_reused);
    CHECK(rerun->archive == archive);
    CHECK(rerun->pruned == 20);
    struct stat after {};
    REQUIRE(::stat(archive.c_str(), &after) == 0);
    CHECK(after.st_ino == before.st_ino);
    CHECK(EntriesIn(archive_dir.path()) == 1);
    CHECK_FALSE(IsStored(harness.storage(), detail::RecordKey(1)));
    CHECK(Lines(ReadFileBytes(archive)).size() == 20);
  }

  TEST_CASE("differing archive blocks prune") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    TempDir archive_dir("kw-archive");
    const std::string archive = ArchivePath(archive_dir, 1, 20);
    std::ofstream(archive) << "something else\n";
    const FixedClock clock = ClockPruningBefore(21);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE_FALSE(report.has_value());
    CHECK(report.error().code() == Code::kFailedPrecondition);
    CHECK(report.error().message().find(archive) != std::string::npos);
    CHECK(ReadFileBytes(archive) == "something else\n");
    CHECK(EntriesIn(archive_dir.path()) == 1);
    CHECK(IsStored(harness.storage(), detail::RecordKey(1)));
  }

  TEST_CASE("broken chain prunes nothing") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    harness.Close();
    {
      testing::RawDatabase raw(harness.db_path());
      raw.Edit(detail::RecordKey(5), "\"prev_hash\":\"", "\"prev_hash\":\"f");
    }
    harness.OpenStorage();
    harness.OpenLog();
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(21);

    auto report = Prune(harness, harness.storage(), clock, archive_dir.path().string());
    REQUIRE_FALSE(report.has_value());
    CHECK(report.error().code() == Code::kDataLoss);
    CHECK(report.error().message().find("record 5") != std::string::npos);
    CHECK(EntriesIn(archive_dir.path()) == 0);
    CHECK(IsStored(harness.storage(), detail::RecordKey(1)));
  }

  TEST_CASE("forged prune marker is rejected") {
    AuditHarness harness;
    harness.AppendMany(30, 10);
    TempDir archive_dir("kw-archive");
    REQUIRE(Prune(harness, harness.storage(), ClockPruningBefore(11), archive_dir.path().string()));

    // Moving the marker forward (to hide records 11 to 20 from a verifier) breaks its MAC.
    const std::string stored = StoredBytes(harness.storage(), std::string(detail::kPrunedKey));
    auto decoded = detail::DecodePruneMarker(AsBytes(stored));
    REQUIRE(decoded.has_value());
    detail::PruneMarker forged{20, detail::RecordHash(StoredBytes(harness.storage(),
                                                                  detail::RecordKey(20)))};
    storage::WriteBatch batch;
    const std::string forged_bytes = detail::EncodePruneMarker(forged, decoded->mac);
    batch.Put(std::string(detail::kPrunedKey), Bytes(forged_bytes.begin(), forged_bytes.end()));
    REQUIRE(harness.storage().Commit(std::move(batch)).has_value());

    auto loaded = detail::LoadPruneMarker(harness.storage(), harness.token(), harness.key());
    REQUIRE_FALSE(loaded.has_value());
    CHECK(loaded.error().code() == Code::kDataLoss);
    auto report =
        Prune(harness, harness.storage(), ClockPruningBefore(25), archive_dir.path().string());
    REQUIRE_FALSE(report.has_value());
    CHECK(report.error().code() == Code::kDataLoss);
    CHECK(IsStored(harness.storage(), detail::RecordKey(11)));
  }

  TEST_CASE("missing archive directory is created 0700") {
    AuditHarness harness;
    harness.AppendMany(3, 3);
    TempDir parent("kw-archive");
    const std::filesystem::path nested = parent.path() / "a" / "b";

    auto report = Prune(harness, harness.storage(), ClockPruningBefore(3), nested.string());
    REQUIRE_MESSAGE(report.has_value(), kw::testing::ErrorText(report.error()));
    CHECK(report->pruned == 2);
    for (const auto& dir : {parent.path() / "a", nested}) {
      INFO("directory " << dir);
      struct stat status {};
      REQUIRE(::stat(dir.c_str(), &status) == 0);
      CHECK(S_ISDIR(status.st_mode));
      CHECK((status.st_mode & 0777) == 0700);
    }
  }

  TEST_CASE("world-writable archive directory is rejected") {
    AuditHarness harness;
    harness.AppendMany(3, 3);
    TempDir archive_dir("kw-archive");
    REQUIRE(::chmod(archive_dir.path().c_str(), 01777) == 0);

    auto report =
        Prune(harness, harness.storage(), ClockPruningBefore(3), archive_dir.path().string());
    REQUIRE_FALSE(report.has_value());
    CHECK(report.error().code() == Code::kFailedPrecondition);
    CHECK(report.error().message().find("world-writable") != std::string::npos);
    CHECK(IsStored(harness.storage(), detail::RecordKey(1)));
  }

  TEST_CASE("invalid prune arguments") {
    AuditHarness harness;
    harness.AppendMany(3, 3);
    TempDir archive_dir("kw-archive");
    const FixedClock clock = ClockPruningBefore(3);

    auto zero = PruneAuditRecords(harness.storage(), harness.token(), harness.key(), clock,
                                  std::chrono::seconds(0), archive_dir.path().string());
    REQUIRE_FALSE(zero.has_value());
    CHECK(zero.error().code() == Code::kInvalidArgument);
    CHECK(zero.error().message().find("older_than") != std::string::npos);

    auto relative = Prune(harness, harness.storage(), clock, "relative/archive");
    REQUIRE_FALSE(relative.has_value());
    CHECK(relative.error().code() == Code::kInvalidArgument);
    CHECK(relative.error().message().find("archive_dir") != std::string::npos);

    auto empty = Prune(harness, harness.storage(), clock, "");
    REQUIRE_FALSE(empty.has_value());
    CHECK(empty.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("RFC 3339 parsing") {
    using std::chrono::seconds;
    const TimePoint base{seconds(1'780'000'001)};  // 2026-05-28T20:26:41Z
    CHECK(ParseRfc3339("2026-05-28T20:26:41Z") == base);
    CHECK(ParseRfc3339("2026-05-28t20:26:41z") == base);
    CHECK(ParseRfc3339("2026-05-28T20:26:41.000000000Z") == base);
    CHECK(ParseRfc3339("2026-05-28T20:26:41.5Z") == base + std::chrono::milliseconds(500));
    CHECK(ParseRfc3339("2026-05-28T20:26:41.000000007Z") == base + std::chrono::nanoseconds(7));
    CHECK(ParseRfc3339("2026-05-28T22:26:41+02:00") == base);
    CHECK(ParseRfc3339("2026-05-28T15:56:41-04:30") == base);
    CHECK(ParseRfc3339("2024-02-29T00:00:00Z").has_value());
    CHECK(ParseRfc3339(FormatRfc3339(base + std::chrono::nanoseconds(123456789))) ==
          base + std::chrono::nanoseconds(123456789));

    for (const char* bad :
         {"", "2026-05-28", "2026-05-28 20:26:41Z", "2026-05-28T20:26:41", "2026-13-01T00:00:00Z",
          "2023-02-29T00:00:00Z", "2026-05-28T24:00:00Z", "2026-05-28T20:60:00Z",
          "2026-05-28T20:26:60Z", "2026-05-28T20:26:41.Z", "2026-05-28T20:26:41.0000000001Z",
          "2026-05-28T20:26:41+0200", "2026-05-28T20:26:41+24:00", "2026-05-28T20:26:41Zjunk",
          "+026-05-28T20:26:41Z", "1780000001"}) {
      INFO("input: " << bad);
      CHECK_FALSE(ParseRfc3339(bad).has_value());
    }
  }
}

}  // namespace
}  // namespace kw::vault::audit
