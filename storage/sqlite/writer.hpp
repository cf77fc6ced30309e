#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/result.hpp"
#include "storage/sqlite/connection.hpp"
#include "storage/sqlite/sqlite_storage.hpp"
#include "storage/storage.hpp"

namespace kw::storage::sqlite::detail {

// The one writer: a thread that owns the read-write connection and applies queued batches by
// group commit. Each group is one BEGIN IMMEDIATE ... COMMIT transaction with one SAVEPOINT
// per batch, so a batch that fails (expectation, finalizer) rolls back alone. A caller of
// Commit returns only after its group's COMMIT returned. After a failure that leaves
// durability in doubt every later Commit fails with unavailable until the storage is reopened.
// Thread-safe. Destruction finishes every queued batch, then stops the thread.
class Writer {
 public:
  // Starts the writer thread on `connection`, whose schema is ready.
  static Result<std::unique_ptr<Writer>> Start(Connection connection,
                                               const SqliteOptions& options);

  Writer(const Writer&) = delete;
  Writer& operator=(const Writer&) = delete;
  ~Writer();

  // Rejects new commits, finishes the queued ones, stops the thread and waits until every
  // caller of Commit has returned. Idempotent; the destructor calls it.
  void Shutdown();

  // Queues `batch` and waits for its group's transaction; see Storage::Commit.
  Status Commit(WriteBatch batch);

  CommitStats Stats() const;

 private:
  friend class WriterTransaction;

  // A queued batch and, once the writer is done with it, its result. Lives on the caller's
  // stack until `done`.
  struct Pending {
    WriteBatch batch;
    std::optional<Status> result;  // guarded by mu_
    bool done = false;             // guarded by mu_
  };

  // The result of one transaction for its group of batches.
  struct GroupOutcome {
    std::vector<Status> results;   // one per batch, in queue order
    bool committed = false;
    bool disable_writes = false;   // the database file is damaged: reject writes from now on
  };

  Writer(Connection connection, const SqliteOptions& options);
  Status PrepareStatements();

  void Run();
  GroupOutcome ApplyGroup(const std::vector<Pending*>& group);
  // `finalizer_succeeded` is set when the batch's finalizer ran and returned success.
  Status ApplyInSavepoint(const WriteBatch& batch, bool& finalizer_succeeded);
  Status ApplyBatch(const WriteBatch& batch, bool& finalizer_succeeded);
  GroupOutcome FailGroup(std::size_t size, const Error& cause, bool disable_writes);
  // Records a group's transaction time and size and its rejected batches for sys/metrics.
  static void RecordGroupMetrics(const GroupOutcome& outcome, std::size_t batches,
                                 std::uint64_t nanos);

  // Statement wrappers that record a failure which ends the transaction in fatal_error_.
  Status Exec(const char* sql, std::string_view action);
  Status ExecSavepointCommand(const char* sql, std::string_view action);
  Result<std::optional<Bytes>> ReadKey(std::string_view key);
  Status WriteKey(std::string_view key, ByteSpan value);
  Status DeleteKey(std::string_view key);
  void NoteFailure(int rc, const Error& error);

  // Writer thread only. Declared first so the statements are finalized before it closes.
  std::unique_ptr<Connection> connection_;
  std::optional<Statement> get_;
  std::optional<Statement> put_;
  std::optional<Statement> delete_;
  // Set when a statement failed in a way that ends the whole transaction.
  std::optional<Error> fatal_error_;
  int fatal_result_ = 0;  // the SQLite result code behind fatal_error_
  std::function<bool()> fail_commit_for_testing_;
  const std::size_t max_batches_per_commit_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;     // the writer waits for batches or stopping_
  std::condition_variable done_cv_;     // callers wait for their result; the destructor waits
                                        // for active_callers_ to reach zero
  std::deque<Pending*> queue_;          // guarded by mu_
  std::size_t active_callers_ = 0;      // guarded by mu_
  bool stopping_ = false;               // guarded by mu_
  bool writes_disabled_ = false;        // guarded by mu_
  CommitStats stats_;                   // guarded by mu_; queued, stopping and
                                        // writes_disabled are filled in by Stats()
  std::thread thread_;
};

}  // namespace kw::storage::sqlite::detail
