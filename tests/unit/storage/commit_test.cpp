#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "storage/sqlite/sqlite_storage.hpp"
#include "tests/unit/storage/storage_test_support.hpp"

namespace {

using kw::Code;
using kw::Status;
using kw::storage::Transaction;
using kw::storage::WriteBatch;
using kw::storage::testing::ErrorText;
using kw::storage::testing::GetText;
using kw::storage::testing::OpenOrFail;
using kw::storage::testing::PutOrFail;
using kw::storage::testing::RunInOneGroup;
using kw::storage::testing::TempDir;
using kw::storage::testing::ToBytes;
using kw::storage::testing::WaitFor;

// A finalizer that reads "counter", stores counter + 1 and records "order/<counter>" = `name`.
// Each call sees the counter left by the batch before it, committed or not.
std::function<Status(Transaction&)> CountingFinalizer(std::string name) {
  return [name = std::move(name)](Transaction& transaction) -> Status {
    KW_ASSIGN_OR_RETURN(const std::optional<kw::Bytes> current, transaction.Get("counter"));
    const int count = current ? std::stoi(std::string(kw::AsText(*current))) : 0;
    KW_RETURN_IF_ERROR(transaction.Put("counter", ToBytes(std::to_string(count + 1))));
    char key[32];
    std::snprintf(key, sizeof(key), "order/%06d", count);
    return transaction.Put(key, ToBytes(name));
  };
}

}  // namespace

TEST_SUITE("storage/sqlite commit") {
  TEST_CASE("expect on matching value commits") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    PutOrFail(*storage, "cas", "v1");

    WriteBatch batch;
    batch.Expect("cas", ToBytes("v1"));
    batch.Expect("absent", std::nullopt);
    batch.Put("cas", ToBytes("v2"));
    const Status status = storage->Commit(std::move(batch));
    if (!status) FAIL(ErrorText(status.error()));
    CHECK(GetText(*storage, "cas") == "v2");
  }

  TEST_CASE("expect mismatch aborts the whole batch") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    PutOrFail(*storage, "cas", "v1");

    SUBCASE("different value") {
      WriteBatch batch;
      batch.Put("side", ToBytes("effect"));
      batch.Expect("cas", ToBytes("stale"));
      batch.Put("cas", ToBytes("v2"));
      const Status status = storage->Commit(std::move(batch));
      REQUIRE_FALSE(status);
      CHECK(status.error().code() == Code::kAborted);
    }
    SUBCASE("expected absent but present") {
      WriteBatch batch;
      batch.Put("side", ToBytes("effect"));
      batch.Expect("cas", std::nullopt);
      const Status status = storage->Commit(std::move(batch));
      REQUIRE_FALSE(status);
      CHECK(status.error().code() == Code::kAborted);
    }
    SUBCASE("expected present but absent") {
      WriteBatch batch;
      batch.Put("side", ToBytes("effect"));
      batch.Expect("missing", ToBytes("v1"));
      const Status status = storage->Commit(std::move(batch));
      REQUIRE_FALSE(status);
      CHECK(status.error().code() == Code::kAborted);
    }

    CHECK(GetText(*storage, "cas") == "v1");
    CHECK(GetText(*storage, "side") == "<absent>");
  }

  TEST_CASE("expect race has exactly one winner") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    constexpr int kThreads = 12;
    std::vector<Status> results(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        WriteBatch batch;
        batch.Expect("lock", std::nullopt);
        batch.Put("lock", ToBytes(std::to_string(i)));
        batch.Put("holder/" + std::to_string(i), ToBytes("yes"));
        results[i] = storage->Commit(std::move(batch));
      });
    }
    for (std::thread& thread : threads) thread.join();

    int winners = 0;
    int winner = -1;
    for (int i = 0; i < kThreads; ++i) {
      if (results[i]) {
        ++winners;
        winner = i;
      } else {
        CHECK(results[i].error().code() == Code::kAborted);
        CHECK(GetText(*storage, "holder/" + std::to_string(i)) == "<absent>");
      }
    }
    REQUIRE(winners == 1);
    CHECK(GetText(*storage, "lock") == std::to_string(winner));
    CHECK(GetText(*storage, "holder/" + std::to_string(winner)) == "yes");
  }

  TEST_CASE("aborted batch leaves its group committed") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    PutOrFail(*storage, "cas/existing", "current");
    const auto before = storage->Stats();

    constexpr int kBatches = 10;
    std::vector<WriteBatch> batches(kBatches);
    for (int i = 0; i < kBatches; ++i) {
      if (i % 2 == 0) {
        batches[i].Expect("cas/" + std::to_string(i), std::nullopt);
        batches[i].Put("cas/" + std::to_string(i), ToBytes("new"));
      } else {
        batches[i].Put("cas/" + std::to_string(i), ToBytes("must not appear"));
        batches[i].Expect("cas/existing", ToBytes("stale"));
      }
      batches[i].Put("mark/" + std::to_string(i), ToBytes("x"));
    }
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);

    for (int i = 0; i < kBatches; ++i) {
      CAPTURE(i);
      const std::string mark = GetText(*storage, "mark/" + std::to_string(i));
      if (i % 2 == 0) {
        CHECK(run.results[i]);
        CHECK(mark == "x");
        CHECK(GetText(*storage, "cas/" + std::to_string(i)) == "new");
      } else {
        REQUIRE_FALSE(run.results[i]);
        CHECK(run.results[i].error().code() == Code::kAborted);
        CHECK(mark == "<absent>");
        CHECK(GetText(*storage, "cas/" + std::to_string(i)) == "<absent>");
      }
    }
    CHECK(GetText(*storage, "cas/existing") == "current");

    // The blocker's transaction, then one transaction for all ten batches.
    const auto after = storage->Stats();
    CHECK(after.transactions - before.transactions == 2);
    CHECK(after.largest_group >= kBatches);
    CHECK(after.batches_rejected - before.batches_rejected == kBatches / 2);
  }

  TEST_CASE("finalizer sees its batch and earlier batches") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));

    WriteBatch batch;
    batch.Put("own", ToBytes("mine"));
    std::string seen;
    batch.finalizer = [&seen](Transaction& transaction) -> Status {
      KW_ASSIGN_OR_RETURN(const std::optional<kw::Bytes> own, transaction.Get("own"));
      seen = own ? std::string(kw::AsText(*own)) : "<absent>";
      return transaction.Put("from-finalizer", ToBytes("written"));
    };
    REQUIRE(storage->Commit(std::move(batch)));
    CHECK(seen == "mine");
    CHECK(GetText(*storage, "from-finalizer") == "written");

    std::vector<WriteBatch> batches(6);
    for (int i = 0; i < 6; ++i) {
      batches[i].Put("g/" + std::to_string(i), ToBytes("v"));
      batches[i].finalizer = CountingFinalizer("batch" + std::to_string(i));
    }
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);
    for (const Status& result : run.results) CHECK(result);
    // Six finalizers in one transaction each saw the counter of the one before.
    CHECK(GetText(*storage, "counter") == "6");
    for (int i = 0; i < 6; ++i) {
      char key[32];
      std::snprintf(key, sizeof(key), "order/%06d", i);
      CHECK(GetText(*storage, key).starts_with("batch"));
    }
  }

  TEST_CASE("finalizers run one at a time in commit order") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    constexpr int kThreads = 8;
    constexpr int kCommitsPerThread = 25;
    std::mutex order_mu;
    std::vector<std::string> finalizer_order;  // guarded by order_mu
    std::atomic<int> running{0};
    std::atomic<bool> overlapped{false};

    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int c = 0; c < kCommitsPerThread; ++c) {
          const std::string name = std::to_string(t) + "." + std::to_string(c);
          WriteBatch batch;
          auto counting = CountingFinalizer(name);
          batch.finalizer = [&, name, counting](Transaction& transaction) -> Status {
            if (running.fetch_add(1) != 0) overlapped = true;
            {
              std::lock_guard lock(order_mu);
              finalizer_order.push_back(name);
            }
            const Status status = counting(transaction);
            running.fetch_sub(1);
            return status;
          };
          const Status status = storage->Commit(std::move(batch));
          if (!status) FAIL_CHECK(ErrorText(status.error()));
        }
      });
    }
    for (std::thread& thread : threads) thread.join();

    CHECK_FALSE(overlapped.load());
    constexpr int kTotal = kThreads * kCommitsPerThread;
    CHECK(GetText(*storage, "counter") == std::to_string(kTotal));
    REQUIRE(finalizer_order.size() == kTotal);
    // order/<n> contains the n-th finalizer to run, so durable order equals run order.
    for (int i = 0; i < kTotal; ++i) {
      char key[32];
      std::snprintf(key, sizeof(key), "order/%06d", i);
      CHECK(GetText(*storage, key) == finalizer_order[i]);
    }
  }

  TEST_CASE("finalizer error rolls back its batch only") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));

    std::vector<WriteBatch> batches(3);
    batches[0].Put("first", ToBytes("1"));
    batches[1].Put("second", ToBytes("2"));
    batches[1].finalizer = [](Transaction& transaction) -> Status {
      KW_RETURN_IF_ERROR(transaction.Put("second-finalizer", ToBytes("x")));
      return kw::FailedPrecondition("test: finalizer refuses");
    };
    batches[2].Put("third", ToBytes("3"));
    batches[2].finalizer = [](Transaction& transaction) -> Status {
      // The failed batch before this one left nothing behind.
      KW_ASSIGN_OR_RETURN(const std::optional<kw::Bytes> second, transaction.Get("second"));
      if (second) return kw::Internal("test: rolled-back write is visible");
      return transaction.Put("third-finalizer", ToBytes("y"));
    };
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);

    CHECK(run.results[0]);
    REQUIRE_FALSE(run.results[1]);
    CHECK(run.results[1].error().code() == Code::kFailedPrecondition);
    CHECK(run.results[1].error().message() == "test: finalizer refuses");
    if (!run.results[2]) FAIL_CHECK(ErrorText(run.results[2].error()));

    CHECK(GetText(*storage, "first") == "1");
    CHECK(GetText(*storage, "second") == "<absent>");
    CHECK(GetText(*storage, "second-finalizer") == "<absent>");
    CHECK(GetText(*storage, "third") == "3");
    CHECK(GetText(*storage, "third-finalizer") == "y");
  }

  TEST_CASE("finalizer exception rolls back its batch") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    WriteBatch batch;
    batch.Put("thrown", ToBytes("v"));
    batch.finalizer = [](Transaction&) -> Status { throw std::runtime_error("secret detail"); };
    const Status status = storage->Commit(std::move(batch));
    REQUIRE_FALSE(status);
    CHECK(status.error().code() == Code::kInternal);
    CHECK(status.error().message().find("secret detail") == std::string::npos);
    CHECK(GetText(*storage, "thrown") == "<absent>");
    PutOrFail(*storage, "after", "still writable");
  }

  TEST_CASE("before_commit runs once per transaction, the last applied batch's") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    std::vector<std::string> ran;  // the writer thread only, read after the group returned

    std::vector<WriteBatch> batches(4);
    for (int i = 0; i < 4; ++i) {
      const std::string name = "b" + std::to_string(i);
      batches[i].Put(name, ToBytes("v"));
      batches[i].before_commit = [&ran, name](Transaction& transaction) -> Status {
        ran.push_back(name);
        // It runs after every batch of the transaction applied.
        for (const char* key : {"b0", "b1", "b2"}) {
          KW_ASSIGN_OR_RETURN(const std::optional<kw::Bytes> applied, transaction.Get(key));
          if (!applied) return kw::Internal("test: ran before every batch applied");
        }
        return transaction.Put("hook", ToBytes(name));
      };
    }
    // This batch aborts, so its hook never runs, wherever the queue put it.
    batches[3].Expect("missing", ToBytes("x"));
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);
    for (int i = 0; i < 3; ++i) CHECK(run.results[i]);
    REQUIRE_FALSE(run.results[3]);
    CHECK(run.results[3].error().code() == Code::kAborted);
    REQUIRE(ran.size() == 1);
    CHECK(ran[0] != "b3");
    CHECK(GetText(*storage, "hook") == ran[0]);
    CHECK(GetText(*storage, "b3") == "<absent>");
  }

  TEST_CASE("before_commit failure rolls back the whole transaction") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    std::vector<std::string> undone;

    std::vector<WriteBatch> batches(3);
    for (int i = 0; i < 3; ++i) {
      const std::string name = "b" + std::to_string(i);
      batches[i].Put(name, ToBytes("v"));
      batches[i].finalizer = [](Transaction&) -> Status { return kw::OkStatus(); };
      batches[i].on_rollback = [&undone, name] { undone.push_back(name); };
    }
    batches[2].before_commit = [](Transaction& transaction) -> Status {
      KW_RETURN_IF_ERROR(transaction.Put("hook", ToBytes("x")));
      return kw::Unavailable("test: before-commit step fails");
    };
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);
    for (const Status& result : run.results) {
      REQUIRE_FALSE(result);
      CHECK(result.error().code() == Code::kUnavailable);
    }
    // Every finalized batch is undone.
    std::sort(undone.begin(), undone.end());
    CHECK(undone == std::vector<std::string>{"b0", "b1", "b2"});
    for (const char* key : {"b0", "b1", "b2", "hook"}) CHECK(GetText(*storage, key) == "<absent>");
    PutOrFail(*storage, "after", "still writable");
  }

  TEST_CASE("group commit puts many batches in one transaction") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    const auto before = storage->Stats();

    constexpr int kBatches = 40;
    std::vector<WriteBatch> batches(kBatches);
    for (int i = 0; i < kBatches; ++i) batches[i].Put("g/" + std::to_string(i), ToBytes("v"));
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);
    for (const Status& result : run.results) CHECK(result);

    const auto after = storage->Stats();
    CHECK(after.transactions - before.transactions == 2);
    CHECK(after.batches_committed - before.batches_committed == kBatches + 1);
    CHECK(after.largest_group == kBatches);
    CHECK(after.queued == 0);
  }

  TEST_CASE("group size is capped by max_batches_per_commit") {
    TempDir dir;
    kw::storage::sqlite::SqliteOptions options;
    options.path = dir.File("kv.db");
    options.max_batches_per_commit = 4;
    auto storage = OpenOrFail(options);
    const auto before = storage->Stats();

    std::vector<WriteBatch> batches(10);
    for (int i = 0; i < 10; ++i) batches[i].Put("g/" + std::to_string(i), ToBytes("v"));
    const auto run = RunInOneGroup(*storage, std::move(batches));
    REQUIRE(run.blocker);
    for (const Status& result : run.results) CHECK(result);

    // The blocker, then groups of 4, 4 and 2.
    const auto after = storage->Stats();
    CHECK(after.transactions - before.transactions == 4);
    CHECK(after.largest_group == 4);
  }

  TEST_CASE("reads proceed while a write transaction is open") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    PutOrFail(*storage, "committed", "old");

    std::atomic<bool> in_transaction{false};
    std::atomic<bool> reads_done{false};
    std::string read_committed;
    std::string read_uncommitted;
    std::vector<std::string> listed;

    std::thread writer([&] {
      WriteBatch batch;
      batch.Put("committed", ToBytes("new"));
      batch.Put("pending", ToBytes("not yet"));
      batch.finalizer = [&](Transaction&) -> Status {
        in_transaction = true;
        if (!WaitFor([&] { return reads_done.load(); })) {
          return kw::Internal("test: reads did not finish while the transaction was open");
        }
        return kw::OkStatus();
      };
      const Status status = storage->Commit(std::move(batch));
      if (!status) FAIL_CHECK(ErrorText(status.error()));
    });

    CHECK(WaitFor([&] { return in_transaction.load(); }));
    std::thread reader([&] {
      read_committed = GetText(*storage, "committed");
      read_uncommitted = GetText(*storage, "pending");
      auto names = storage->List("");
      if (names) listed = *names;
      reads_done = true;
    });
    reader.join();
    writer.join();

    // The readers saw the last committed state, not the open transaction.
    CHECK(read_committed == "old");
    CHECK(read_uncommitted == "<absent>");
    CHECK(listed == std::vector<std::string>{"committed"});
    CHECK(GetText(*storage, "pending") == "not yet");
  }

  TEST_CASE("destruction finishes queued commits") {
    TempDir dir;
    const std::string path = dir.File("kv.db");
    auto storage = OpenOrFail(path);
    auto* raw = storage.get();
    constexpr int kQueued = 6;

    std::atomic<bool> blocker_running{false};
    Status blocker_status;
    std::thread blocker([&] {
      WriteBatch batch;
      batch.Put("blocker", ToBytes("v"));
      batch.finalizer = [&](Transaction&) -> Status {
        blocker_running = true;
        // Holds the writer until the destructor has started.
        if (!WaitFor([&] { return raw->Stats().stopping; })) {
          return kw::Internal("test: the storage was never destroyed");
        }
        return kw::OkStatus();
      };
      blocker_status = raw->Commit(std::move(batch));
    });
    CHECK(WaitFor([&] { return blocker_running.load(); }));

    std::vector<Status> results(kQueued);
    std::vector<std::thread> committers;
    for (int i = 0; i < kQueued; ++i) {
      committers.emplace_back([&, i] {
        WriteBatch batch;
        batch.Put("queued/" + std::to_string(i), ToBytes("v"));
        results[i] = raw->Commit(std::move(batch));
      });
    }
    CHECK(WaitFor([&] { return raw->Stats().queued == kQueued; }));
    storage.reset();  // returns only after every queued caller has its result

    for (std::thread& committer : committers) committer.join();
    blocker.join();
    CHECK(blocker_status);
    for (const Status& result : results) CHECK(result);

    auto reopened = OpenOrFail(path);
    CHECK(GetText(*reopened, "blocker") == "v");
    for (int i = 0; i < kQueued; ++i) {
      CHECK(GetText(*reopened, "queued/" + std::to_string(i)) == "v");
    }
  }

  TEST_CASE("empty batch commits without a transaction") {
    TempDir dir;
    auto storage = OpenOrFail(dir.File("kv.db"));
    const auto before = storage->Stats();
    CHECK(storage->Commit(WriteBatch()));
    CHECK(storage->Stats().transactions == before.transactions);
  }
}
