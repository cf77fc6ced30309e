#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "storage/storage.hpp"

namespace kw::storage::sqlite {

// The schema version this build writes and accepts, stored in PRAGMA user_version.
inline constexpr int kSchemaVersion = 1;

struct SqliteOptions {
  std::string path;                                // the database file; created when missing
  std::size_t read_connections = 4;                // WAL readers do not wait for the writer
  std::chrono::milliseconds busy_timeout{5000};
  std::size_t max_batches_per_commit = 256;        // group commit: batches per transaction

  // Caps the database at this many pages (PRAGMA max_page_count on the writer connection);
  // 0 leaves SQLite's default. A write past the cap fails with SQLITE_FULL, as on a full disk.
  std::uint32_t max_page_count = 0;

  // Fault injection for tests: called on the writer thread at each COMMIT (sqlite3_commit_hook);
  // returning true makes that COMMIT fail and roll back. Leave empty in production.
  std::function<bool()> fail_commit_for_testing;
};

// Counters of the writer, for tests and metrics. A snapshot, taken under the queue lock.
struct CommitStats {
  std::uint64_t transactions = 0;       // write transactions committed
  std::uint64_t batches_committed = 0;  // batches applied in a committed transaction
  std::uint64_t batches_rejected = 0;   // batches that failed (expectation, finalizer, I/O)
  std::uint64_t largest_group = 0;      // most batches taken into one committed transaction
  std::uint64_t queued = 0;             // batches waiting for the writer right now
  bool stopping = false;                // the storage is being destroyed and drains its queue
  bool writes_disabled = false;         // a commit found the database file damaged
};

// The SQLite storage with its writer counters. Thread-safe.
class SqliteStorage : public Storage {
 public:
  virtual CommitStats Stats() const = 0;
};

// Opens (creating if needed) the SQLite database at options.path in WAL mode with
// synchronous=FULL. One writer thread applies batches; concurrent Commit calls are grouped
// into one transaction (each batch in its own savepoint) and each caller returns once that
// transaction is durable. unavailable when the file cannot be opened.
Result<std::unique_ptr<Storage>> Open(const SqliteOptions& options);

// Same as Open, with the SQLite-specific surface. failed_precondition when the file is not a
// keyward database or has a schema version other than kSchemaVersion; the file is unchanged.
Result<std::unique_ptr<SqliteStorage>> OpenSqliteStorage(const SqliteOptions& options);

// Checks, without creating or changing anything, that `path` is a keyward database of schema
// version kSchemaVersion. not_found when the file does not exist, failed_precondition when it
// is not a keyward database or has another schema version.
Status VerifyDatabase(const std::string& path);

}  // namespace kw::storage::sqlite
