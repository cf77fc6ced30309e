#pragma once

#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "storage/storage.hpp"
#include "tests/unit/fakes/temp_dir.hpp"

namespace kw::storage::testing {

using TempDir = kw::testing::TempDir;

inline Bytes ToBytes(std::string_view text) {
  const ByteSpan span = AsBytes(text);
  return Bytes(span.begin(), span.end());
}

inline std::string ErrorText(const Error& error) {
  return std::string(CodeName(error.code())) + ": " + error.message();
}

inline std::unique_ptr<sqlite::SqliteStorage> OpenOrFail(const sqlite::SqliteOptions& options) {
  auto storage = sqlite::OpenSqliteStorage(options);
  if (!storage) FAIL("open failed: " << ErrorText(storage.error()));
  return std::move(*storage);
}

inline std::unique_ptr<sqlite::SqliteStorage> OpenOrFail(const std::string& path) {
  sqlite::SqliteOptions options;
  options.path = path;
  return OpenOrFail(options);
}

// Commits one put of `key` = `value` and requires success.
inline void PutOrFail(Storage& storage, const std::string& key, std::string_view value) {
  WriteBatch batch;
  batch.Put(key, ToBytes(value));
  const Status status = storage.Commit(std::move(batch));
  if (!status) FAIL("commit of " << key << " failed: " << ErrorText(status.error()));
}

// Returns the value of `key` as text, or "<absent>"; fails the test on a read error.
inline std::string GetText(Storage& storage, std::string_view key) {
  auto value = storage.Get(key);
  if (!value) FAIL("get failed: " << ErrorText(value.error()));
  if (!value->has_value()) return "<absent>";
  return std::string(AsText(**value));
}

// Polls `condition` every millisecond for up to 30 seconds. The limit only keeps a broken
// implementation from hanging the suite; it asserts nothing about speed.
inline bool WaitFor(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return condition();
}

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Results of RunInOneGroup.
struct GroupRun {
  Status blocker;
  std::vector<Status> results;  // one per batch, in the order given
};

// Holds the writer inside a blocker batch's finalizer until all `batches` are queued, so the
// writer takes them into one transaction right after. Each batch is committed from its own
// thread. `before_release` runs on the writer thread just before the blocker returns.
inline GroupRun RunInOneGroup(sqlite::SqliteStorage& storage, std::vector<WriteBatch> batches,
                              const std::function<void()>& before_release = {}) {
  GroupRun run;
  run.results.resize(batches.size());
  std::atomic<bool> blocker_running{false};
  const std::size_t count = batches.size();

  std::thread blocker([&] {
    WriteBatch batch;
    batch.Put("group-blocker", ToBytes("held"));
    batch.finalizer = [&](Transaction&) -> Status {
      blocker_running = true;
      if (!WaitFor([&] { return storage.Stats().queued >= count; })) {
        return Internal("test: batches were never queued behind the blocker");
      }
      if (before_release) before_release();
      return OkStatus();
    };
    run.blocker = storage.Commit(std::move(batch));
  });
  // CHECK, not REQUIRE: throwing here would destroy the joinable blocker thread.
  CHECK(WaitFor([&] { return blocker_running.load(); }));

  std::vector<std::thread> committers;
  for (std::size_t i = 0; i < count; ++i) {
    committers.emplace_back([&, i] { run.results[i] = storage.Commit(std::move(batches[i])); });
  }
  for (std::thread& committer : committers) committer.join();
  blocker.join();
  return run;
}

}  // namespace kw::storage::testing
