#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <sqlite3.h>

#include <doctest/doctest.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/sqlite/sqlite_storage.hpp"
#include "tests/unit/storage/storage_test_support.hpp"

namespace {

using kw::Code;
using kw::Status;
using kw::storage::WriteBatch;
using kw::storage::testing::ErrorText;
using kw::storage::testing::GetText;
using kw::storage::testing::OpenOrFail;
using kw::storage::testing::PutOrFail;
using kw::storage::testing::ReadFileOrEmpty;
using kw::storage::testing::RunInOneGroup;
using kw::storage::testing::TempDir;
using kw::storage::testing::ToBytes;

std::string CrashKey(int round, std::uint32_t sequence) {
  return "crash/" + std::to_string(round) + "/" + std::to_string(sequence);
}

// The forked child: commits batches and reports each acknowledged sequence number on
// `report_fd`. Never returns; exits without running the parent's destructors.
[[noreturn]] void RunCrashChild(const std::string& path, int round, int report_fd) {
  kw::storage::sqlite::SqliteOptions options;
  options.path = path;
  auto storage = kw::storage::sqlite::Open(options);
  if (!storage) _exit(2);

  // Four threads commit at once so that kills land inside grouped transactions too.
  std::atomic<std::uint32_t> next{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        const std::uint32_t sequence = next.fetch_add(1);
        WriteBatch batch;
        batch.Put(CrashKey(round, sequence), ToBytes("acknowledged"));
        batch.Put("crash/filler/" + std::to_string(sequence), kw::Bytes(512, 0x5a));
        if (!(*storage)->Commit(std::move(batch))) _exit(3);
        if (write(report_fd, &sequence, sizeof(sequence)) != sizeof(sequence)) _exit(4);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  _exit(0);
}

std::string IntegrityCheck(const std::string& path) {
  sqlite3* db = nullptr;
  std::string result = "<open failed>";
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &stmt, nullptr) == SQLITE_OK &&
        sqlite3_step(stmt) == SQLITE_ROW) {
      result = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    }
    sqlite3_finalize(stmt);
  }
  sqlite3_close(db);
  return result;
}

}  // namespace

TEST_SUITE("storage/sqlite durability") {
  TEST_CASE("sixteen threads of commits survive reopen") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    constexpr int kThreads = 16;
    constexpr int kCommits = 200;
    {
      auto storage = OpenOrFail(path);
      std::vector<std::thread> threads;
      std::atomic<int> failures{0};
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
          for (int c = 0; c < kCommits; ++c) {
            WriteBatch batch;
            batch.Put("t/" + std::to_string(t) + "/" + std::to_string(c),
                      ToBytes(std::to_string(t * kCommits + c)));
            if (!storage->Commit(std::move(batch))) ++failures;
          }
        });
      }
      for (std::thread& thread : threads) thread.join();
      CHECK(failures.load() == 0);

      const auto stats = storage->Stats();
      CHECK(stats.batches_committed == kThreads * kCommits);
      CHECK(stats.transactions <= stats.batches_committed);
      MESSAGE("transactions for " << kThreads * kCommits << " commits: " << stats.transactions);
    }

    auto reopened = OpenOrFail(path);
    int missing = 0;
    for (int t = 0; t < kThreads; ++t) {
      for (int c = 0; c < kCommits; ++c) {
        const std::string expected = std::to_string(t * kCommits + c);
        if (GetText(*reopened, "t/" + std::to_string(t) + "/" + std::to_string(c)) != expected) {
          ++missing;
        }
      }
    }
    CHECK(missing == 0);
    auto all = reopened->Scan("t/", "", kThreads * kCommits + 1);
    REQUIRE(all);
    CHECK(all->size() == kThreads * kCommits);
  }

  TEST_CASE("acknowledged commits survive sigkill") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    { auto create = OpenOrFail(path); }
    std::mt19937 random(std::random_device{}());

    for (int round = 0; round < 3; ++round) {
      CAPTURE(round);
      int fds[2];
      REQUIRE(pipe(fds) == 0);
      const pid_t child = fork();
      REQUIRE(child >= 0);
      if (child == 0) {
        close(fds[0]);
        RunCrashChild(path, round, fds[1]);
      }
      close(fds[1]);

      // Kill at a random point after some acknowledgements, then collect every sequence the
      // child reported before it died: each one is an acknowledged commit.
      const int kill_after = std::uniform_int_distribution<int>(1, 400)(random);
      std::set<std::uint32_t> acknowledged;
      std::uint32_t sequence = 0;
      bool killed = false;
      while (read(fds[0], &sequence, sizeof(sequence)) == sizeof(sequence)) {
        acknowledged.insert(sequence);
        if (!killed && static_cast<int>(acknowledged.size()) >= kill_after) {
          kill(child, SIGKILL);
          killed = true;
        }
      }
      close(fds[0]);
      int wait_status = 0;
      REQUIRE(waitpid(child, &wait_status, 0) == child);
      CHECK(killed);
      CHECK(WIFSIGNALED(wait_status));
      CHECK(acknowledged.size() >= static_cast<std::size_t>(kill_after));

      CHECK(IntegrityCheck(path) == "ok");
      auto reopened = OpenOrFail(path);
      std::size_t missing = 0;
      for (const std::uint32_t acked : acknowledged) {
        if (GetText(*reopened, CrashKey(round, acked)) != "acknowledged") ++missing;
      }
      CHECK(missing == 0);
      MESSAGE("round " << round << ": " << acknowledged.size() << " acknowledged commits kept");
    }
  }

  TEST_CASE("full database rejects writes until space frees") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    kw::storage::sqlite::SqliteOptions options;
    options.path = path;
    options.max_page_count = 24;
    auto storage = OpenOrFail(options);
    PutOrFail(*storage, "kept", "before the disk filled");

    Status failure;
    int commits = 0;
    for (; commits < 200 && failure; ++commits) {
      WriteBatch batch;
      batch.Put("fill/" + std::to_string(commits), kw::Bytes(3000, 0x42));
      failure = storage->Commit(std::move(batch));
    }
    REQUIRE_FALSE(failure);
    CHECK(failure.error().code() == Code::kUnavailable);
    CHECK(failure.error().message().find("full") != std::string::npos);
    CHECK(failure.error().message().find("retry") != std::string::npos);
    CHECK_FALSE(storage->Stats().writes_disabled);

    // Still full: the same write fails again, and reads keep working.
    WriteBatch again;
    again.Put("fill/again", kw::Bytes(3000, 0x42));
    const Status still_full = storage->Commit(std::move(again));
    REQUIRE_FALSE(still_full);
    CHECK(still_full.error().code() == Code::kUnavailable);
    CHECK(GetText(*storage, "kept") == "before the disk filled");
    CHECK(GetText(*storage, "fill/" + std::to_string(commits - 1)) == "<absent>");

    // Deleting frees pages inside the capped file; the same write then fits, without a reopen.
    WriteBatch cleanup;
    for (int i = 0; i < 3 && i + 1 < commits; ++i) cleanup.Delete("fill/" + std::to_string(i));
    REQUIRE(storage->Commit(std::move(cleanup)));
    WriteBatch retry;
    retry.Put("fill/again", kw::Bytes(3000, 0x42));
    CHECK(storage->Commit(std::move(retry)));
    CHECK(GetText(*storage, "fill/again").size() == 3000);
    storage.reset();

    auto reopened = OpenOrFail(path);
    CHECK(GetText(*reopened, "kept") == "before the disk filled");
    for (int i = 3; i + 1 < commits; ++i) {
      CHECK(GetText(*reopened, "fill/" + std::to_string(i)).size() == 3000);
    }
    CHECK(GetText(*reopened, "fill/again").size() == 3000);
  }

  TEST_CASE("failed commit fails its whole group, later writes succeed") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    // Counts COMMITs down: the one seen at 0 fails, the others succeed; -1 disarms.
    std::atomic<int> commits_before_failure{-1};
    kw::storage::sqlite::SqliteOptions options;
    options.path = path;
    options.fail_commit_for_testing = [&commits_before_failure] {
      const int remaining = commits_before_failure.load();
      if (remaining < 0) return false;
      commits_before_failure = remaining - 1;
      return remaining == 0;
    };
    auto storage = OpenOrFail(options);
    PutOrFail(*storage, "kept", "v");

    // Each batch's finalizer and rollback hook log to `events`, all on the writer thread.
    std::vector<std::string> events;
    std::vector<WriteBatch> doomed(5);
    for (int i = 0; i < 5; ++i) {
      const std::string name = "doomed/" + std::to_string(i);
      doomed[i].Put(name, ToBytes("v"));
      if (i == 2) continue;  // a batch without a finalizer has nothing to undo
      doomed[i].finalizer = [&events, name](kw::storage::Transaction&) -> Status {
        events.push_back("finalize " + name);
        return kw::OkStatus();
      };
      doomed[i].on_rollback = [&events, name] { events.push_back("undo " + name); };
    }
    // Armed while the blocker holds the writer: the blocker's COMMIT passes, the next one,
    // which carries all five batches, fails.
    const auto run = RunInOneGroup(*storage, std::move(doomed),
                                   [&commits_before_failure] { commits_before_failure = 1; });
    if (!run.blocker) FAIL_CHECK(ErrorText(run.blocker.error()));
    for (const Status& result : run.results) {
      REQUIRE_FALSE(result);
      CHECK(result.error().code() == Code::kUnavailable);
      CHECK(result.error().message().find("commit") != std::string::npos);
    }
    const auto stats = storage->Stats();
    CHECK_FALSE(stats.writes_disabled);
    CHECK(stats.largest_group == 1);  // the failed group of five never committed

    // Every finalizer ran, then the hooks undid them newest first. The order of the batches
    // inside the group is the queue order, which the committer threads decide.
    REQUIRE(events.size() == 8);
    for (std::size_t i = 0; i < 4; ++i) {
      REQUIRE(events[i].starts_with("finalize "));
      CHECK(events[7 - i] == "undo " + events[i].substr(std::string("finalize ").size()));
    }

    WriteBatch later;
    later.Put("later", ToBytes("v"));
    CHECK(storage->Commit(std::move(later)));

    CHECK(GetText(*storage, "kept") == "v");
    CHECK(GetText(*storage, "group-blocker") == "held");
    CHECK(GetText(*storage, "doomed/0") == "<absent>");
    CHECK(GetText(*storage, "later") == "v");
    storage.reset();

    auto reopened = OpenOrFail(path);
    CHECK(GetText(*reopened, "doomed/0") == "<absent>");
    CHECK(GetText(*reopened, "later") == "v");
  }

  TEST_CASE("database file and wal hold exactly the bytes put") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    const std::string marker = "kw-marker-" + kw::ToHex(kw::RandomBytes(16));
    const std::string never_put = "kw-marker-" + kw::ToHex(kw::RandomBytes(16));

    auto storage = OpenOrFail(path);
    PutOrFail(*storage, "secret/path", marker);

    // While open, the committed page sits in the WAL (or the main file after a checkpoint).
    const std::string open_bytes = ReadFileOrEmpty(path) + ReadFileOrEmpty(path + "-wal");
    CHECK(open_bytes.find(marker) != std::string::npos);
    CHECK(open_bytes.find(never_put) == std::string::npos);

    storage.reset();
    // Closing checkpoints the WAL into the main file and removes it.
    CHECK_FALSE(std::filesystem::exists(path + "-wal"));
    const std::string closed_bytes = ReadFileOrEmpty(path) + ReadFileOrEmpty(path + "-wal");
    CHECK(closed_bytes.find(marker) != std::string::npos);
    CHECK(closed_bytes.find(never_put) == std::string::npos);
  }
}
