#include "storage/sqlite/writer.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <exception>
#include <utility>

#include "base/log.hpp"
#include "storage/sqlite/kv_reader.hpp"
#include "storage/sqlite/writer_metrics.hpp"

namespace kw::storage::sqlite::detail {
namespace {

constexpr const char* kWritesDisabled =
    "storage: writes disabled because the database file is damaged; restore it from a backup "
    "and restart the server";

int CallCommitHook(void* hook) {
  return (*static_cast<std::function<bool()>*>(hook))() ? 1 : 0;
}

Status ValidateBatch(const WriteBatch& batch) {
  for (const WriteBatch::Op& op : batch.ops()) {
    const Status valid = ValidateKey(op.key);
    if (!valid) return tl::unexpected(valid.error().WithContext("commit"));
    if (op.kind == WriteBatch::Op::Kind::kPut && !op.value) {
      return InvalidArgument("storage: commit: put of " + QuoteKey(op.key) + " has no value");
    }
  }
  return OkStatus();
}

}  // namespace

// The finalizer's view of the open transaction: reads and writes go through the writer's
// connection, inside the batch's savepoint.
class WriterTransaction : public Transaction {
 public:
  explicit WriterTransaction(Writer& writer) : writer_(writer) {}

  Result<std::optional<Bytes>> Get(std::string_view key) override {
    KW_RETURN_IF_ERROR(ValidateKey(key));
    return writer_.ReadKey(key);
  }
  Status Put(std::string_view key, ByteSpan value) override {
    KW_RETURN_IF_ERROR(ValidateKey(key));
    return writer_.WriteKey(key, value);
  }
  Status Delete(std::string_view key) override {
    KW_RETURN_IF_ERROR(ValidateKey(key));
    return writer_.DeleteKey(key);
  }

 private:
  Writer& writer_;
};

Result<std::unique_ptr<Writer>> Writer::Start(Connection connection,
                                              const SqliteOptions& options) {
  std::unique_ptr<Writer> writer(new Writer(std::move(connection), options));
  if (options.max_page_count != 0) {
    const std::string pragma = "PRAGMA max_page_count=" + std::to_string(options.max_page_count);
    KW_RETURN_IF_ERROR(writer->connection_->Exec(pragma.c_str(), "set max_page_count"));
  }
  KW_RETURN_IF_ERROR(writer->PrepareStatements());
  if (writer->fail_commit_for_testing_) {
    sqlite3_commit_hook(writer->connection_->handle(), &CallCommitHook,
                        &writer->fail_commit_for_testing_);
  }
  writer->thread_ = std::thread(&Writer::Run, writer.get());
  return writer;
}

Writer::Writer(Connection connection, const SqliteOptions& options)
    : connection_(std::make_unique<Connection>(std::move(connection))),
      fail_commit_for_testing_(options.fail_commit_for_testing),
      max_batches_per_commit_(std::max<std::size_t>(options.max_batches_per_commit, 1)) {
  // Metrics: registered now, so that a scrape lists them before the first commit.
  (void)WriterMetrics::Global();
}

Writer::~Writer() { Shutdown(); }

void Writer::Shutdown() {
  std::unique_lock lock(mu_);
  stopping_ = true;
  work_cv_.notify_all();
  lock.unlock();
  // The writer thread exits only once the queue is empty.
  if (thread_.joinable()) thread_.join();

  lock.lock();
  done_cv_.wait(lock, [this] { return active_callers_ == 0; });
}

Status Writer::PrepareStatements() {
  Connection& c = *connection_;
  KW_ASSIGN_OR_RETURN(get_, Statement::Prepare(c, "SELECT value FROM kv WHERE key = ?1"));
  KW_ASSIGN_OR_RETURN(put_, Statement::Prepare(c, "INSERT OR REPLACE INTO kv(key, value) "
                                                  "VALUES(?1, ?2)"));
  KW_ASSIGN_OR_RETURN(delete_, Statement::Prepare(c, "DELETE FROM kv WHERE key = ?1"));
  return OkStatus();
}

Status Writer::Commit(WriteBatch batch) {
  KW_RETURN_IF_ERROR(ValidateBatch(batch));

  Pending pending{std::move(batch), std::nullopt, false};
  std::unique_lock lock(mu_);
  if (writes_disabled_) return Unavailable(kWritesDisabled);
  if (stopping_) return Unavailable("storage: commit: the storage is closing");
  if (pending.batch.empty()) return OkStatus();

  const auto queued_at = std::chrono::steady_clock::now();  // metrics
  ++active_callers_;
  queue_.push_back(&pending);
  work_cv_.notify_one();
  done_cv_.wait(lock, [&pending] { return pending.done; });
  --active_callers_;
  // Wakes the destructor, which waits on the same condition variable.
  if (active_callers_ == 0 && stopping_) done_cv_.notify_all();
  WriterMetrics::Global().commit_duration.At(0).Observe(metrics::NanosSince(queued_at));
  return std::move(*pending.result);
}

CommitStats Writer::Stats() const {
  std::lock_guard lock(mu_);
  CommitStats stats = stats_;
  stats.queued = queue_.size();
  stats.stopping = stopping_;
  stats.writes_disabled = writes_disabled_;
  return stats;
}

void Writer::Run() {
  std::vector<Pending*> group;
  while (true) {
    bool disabled = false;
    {
      std::unique_lock lock(mu_);
      work_cv_.wait(lock, [this] { return !queue_.empty() || stopping_; });
      if (queue_.empty()) return;  // stopping, and every queued batch has its result
      const std::size_t count = std::min(queue_.size(), max_batches_per_commit_);
      group.assign(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(count));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<std::ptrdiff_t>(count));
      disabled = writes_disabled_;
    }

    const auto started = std::chrono::steady_clock::now();  // metrics
    GroupOutcome outcome =
        disabled ? FailGroup(group.size(), Error(Code::kUnavailable, kWritesDisabled), false)
                 : ApplyGroup(group);
    RecordGroupMetrics(outcome, group.size(), metrics::NanosSince(started));

    std::lock_guard lock(mu_);
    if (outcome.disable_writes) writes_disabled_ = true;
    if (outcome.committed) {
      ++stats_.transactions;
      stats_.largest_group = std::max<std::uint64_t>(stats_.largest_group, group.size());
    }
    for (std::size_t i = 0; i < group.size(); ++i) {
      if (outcome.results[i]) {
        ++stats_.batches_committed;
      } else {
        ++stats_.batches_rejected;
      }
      group[i]->result = std::move(outcome.results[i]);
      group[i]->done = true;
    }
    done_cv_.notify_all();
  }
}

void Writer::RecordGroupMetrics(const GroupOutcome& outcome, std::size_t batches,
                                std::uint64_t nanos) {
  WriterMetrics& metrics = WriterMetrics::Global();
  if (outcome.committed) {
    metrics.transaction_duration.At(0).Observe(nanos);
    metrics.transaction_batches.At(0).Observe(batches);
  }
  for (const Status& result : outcome.results) {
    if (result) continue;
    const std::size_t reason = result.error().code() == Code::kAborted ? 0 : 1;
    metrics.batches_rejected.At({reason}).Increment();
  }
}

Writer::GroupOutcome Writer::ApplyGroup(const std::vector<Pending*>& group) {
  fatal_error_.reset();
  fatal_result_ = SQLITE_OK;
  const Status begin = Exec("BEGIN IMMEDIATE", "begin transaction");
  if (!begin) {
    return FailGroup(group.size(), begin.error(), IsDamage(connection_->last_result()));
  }

  GroupOutcome outcome;
  outcome.results.reserve(group.size());
  // The batches whose finalizer ran and succeeded, in commit order.
  std::vector<const WriteBatch*> finalized;
  const WriteBatch* last_hook = nullptr;  // the last applied batch with a before_commit
  for (Pending* pending : group) {
    bool finalizer_succeeded = false;
    outcome.results.push_back(ApplyInSavepoint(pending->batch, finalizer_succeeded));
    if (finalizer_succeeded) finalized.push_back(&pending->batch);
    if (outcome.results.back() && pending->batch.before_commit) last_hook = &pending->batch;
    if (fatal_error_) break;
  }
  if (!fatal_error_ && last_hook != nullptr) {
    WriterTransaction transaction(*this);
    Status hooked;
    try {
      hooked = last_hook->before_commit(transaction);
    } catch (const std::exception&) {
      hooked = Internal("storage: commit: a before-commit step threw an exception");
    }
    if (!hooked) {
      fatal_error_ = hooked.error();
      fatal_result_ = connection_->last_result();
    }
  }

  if (!fatal_error_) {
    const Status commit = Exec("COMMIT", "commit");
    if (commit) {
      outcome.committed = true;
      return outcome;
    }
    fatal_error_ = commit.error();
    fatal_result_ = connection_->last_result();
  }

  if (!connection_->InAutocommit()) (void)connection_->Exec("ROLLBACK", "roll back");
  for (auto batch = finalized.rbegin(); batch != finalized.rend(); ++batch) {
    if ((*batch)->on_rollback) (*batch)->on_rollback();
  }
  // In WAL mode a failed COMMIT has not updated the WAL index, so this process never reads
  // its frames and the next commit overwrites them (SQLite's wal.c, sqlite3WalFrames). Writes
  // therefore go on once the cause (a full disk, a read-only file) is gone. NOTE: a crash
  // before the next commit may still let recovery find a complete transaction that was
  // reported failed, which is why the failure is reported as unavailable, not as rolled back.
  return FailGroup(group.size(), *fatal_error_, IsDamage(fatal_result_));
}

Writer::GroupOutcome Writer::FailGroup(std::size_t size, const Error& cause,
                                       bool disable_writes) {
  if (disable_writes) {
    log::Error("storage writes disabled: the database file is damaged",
               {{log::kError, cause.message()}, {"batches", size}});
  } else if (cause.message() != kWritesDisabled) {
    log::Error("storage transaction failed; its writes were rejected",
               {{log::kError, cause.message()}, {"batches", size}});
  }
  GroupOutcome outcome;
  outcome.disable_writes = disable_writes;
  std::string message = cause.message();
  if (disable_writes && cause.message() != kWritesDisabled) {
    message += "; writes disabled, restore the database from a backup and restart the server";
  } else if (!disable_writes) {
    message += "; free disk space or make the database writable, then retry";
  }
  outcome.results.assign(size, tl::unexpected(Error(Code::kUnavailable, message)));
  return outcome;
}

Status Writer::ApplyInSavepoint(const WriteBatch& batch, bool& finalizer_succeeded) {
  KW_RETURN_IF_ERROR(ExecSavepointCommand("SAVEPOINT batch", "open savepoint"));
  const Status applied = ApplyBatch(batch, finalizer_succeeded);
  if (fatal_error_) return applied;
  if (applied) return ExecSavepointCommand("RELEASE batch", "release savepoint");

  // ROLLBACK TO keeps the savepoint open, so RELEASE still has to close it.
  if (ExecSavepointCommand("ROLLBACK TO batch", "roll back savepoint")) {
    (void)ExecSavepointCommand("RELEASE batch", "release savepoint");
  }
  return applied;
}

Status Writer::ApplyBatch(const WriteBatch& batch, bool& finalizer_succeeded) {
  using Kind = WriteBatch::Op::Kind;
  for (const WriteBatch::Op& op : batch.ops()) {
    if (op.kind != Kind::kExpect) continue;
    KW_ASSIGN_OR_RETURN(const std::optional<Bytes> current, ReadKey(op.key));
    if (current != op.value) {
      return Aborted("storage: commit aborted: key " + QuoteKey(op.key) +
                     " no longer has the expected value; reread it and retry");
    }
  }

  for (const WriteBatch::Op& op : batch.ops()) {
    if (op.kind == Kind::kPut) {
      KW_RETURN_IF_ERROR(WriteKey(op.key, *op.value));
    } else if (op.kind == Kind::kDelete) {
      KW_RETURN_IF_ERROR(DeleteKey(op.key));
    }
  }

  if (!batch.finalizer) return OkStatus();
  WriterTransaction transaction(*this);
  try {
    Status finalized = batch.finalizer(transaction);
    finalizer_succeeded = finalized.has_value();
    return finalized;
  } catch (const std::exception&) {
    // The exception text is not copied: it might quote data the finalizer handled.
    return Internal("storage: commit: the batch finalizer threw an exception");
  }
}

Status Writer::Exec(const char* sql, std::string_view action) {
  const Status status = connection_->Exec(sql, action);
  if (!status) NoteFailure(connection_->last_result(), status.error());
  return status;
}

// A batch whose savepoint cannot be opened, rolled back or released might leave part of its
// writes in the transaction, so any failure here ends the whole group.
Status Writer::ExecSavepointCommand(const char* sql, std::string_view action) {
  const Status status = Exec(sql, action);
  if (!status && !fatal_error_) {
    fatal_error_ = status.error();
    fatal_result_ = connection_->last_result();
  }
  return status;
}

Result<std::optional<Bytes>> Writer::ReadKey(std::string_view key) {
  auto value = RunGet(*get_, key);
  if (!value) NoteFailure(get_->last_result(), value.error());
  return value;
}

Status Writer::WriteKey(std::string_view key, ByteSpan value) {
  Statement& put = *put_;
  ResetOnExit reset(put);
  KW_RETURN_IF_ERROR(put.BindText(1, key));
  KW_RETURN_IF_ERROR(put.BindBlob(2, value));
  auto done = put.Step("put");
  if (!done) {
    NoteFailure(put.last_result(), done.error());
    return tl::unexpected(done.error());
  }
  return OkStatus();
}

Status Writer::DeleteKey(std::string_view key) {
  Statement& del = *delete_;
  ResetOnExit reset(del);
  KW_RETURN_IF_ERROR(del.BindText(1, key));
  auto done = del.Step("delete");
  if (!done) {
    NoteFailure(del.last_result(), done.error());
    return tl::unexpected(done.error());
  }
  return OkStatus();
}

// SQLite may roll back the whole transaction on its own after SQLITE_FULL, SQLITE_IOERR,
// SQLITE_BUSY or SQLITE_NOMEM, and sqlite3_get_autocommit is the only way to tell (its SQLite
// documentation). A transaction in doubt ends the whole group.
void Writer::NoteFailure(int rc, const Error& error) {
  if (fatal_error_) return;
  if (IsIoFailure(rc) || connection_->InAutocommit()) {
    fatal_error_ = error;
    fatal_result_ = rc;
  }
}

}  // namespace kw::storage::sqlite::detail
