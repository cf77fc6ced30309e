#include "storage/sqlite/sqlite_storage.hpp"

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <utility>
#include <vector>

#include "storage/sqlite/connection.hpp"
#include "storage/sqlite/kv_reader.hpp"
#include "storage/sqlite/schema.hpp"
#include "storage/sqlite/writer.hpp"

namespace kw::storage::sqlite {
namespace {

using detail::Connection;
using detail::KvReader;

// A fixed set of read-only connections. In WAL mode a reader sees the last committed state
// and never waits for the writer. Thread-safe.
class ReaderPool {
 public:
  explicit ReaderPool(std::vector<std::unique_ptr<KvReader>> readers)
      : idle_(std::move(readers)) {}

  // A reader checked out of the pool; gives it back when destroyed.
  class Lease {
   public:
    Lease(ReaderPool& pool, std::unique_ptr<KvReader> reader)
        : pool_(pool), reader_(std::move(reader)) {}
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease() { pool_.Release(std::move(reader_)); }

    KvReader* operator->() { return reader_.get(); }

   private:
    ReaderPool& pool_;
    std::unique_ptr<KvReader> reader_;
  };

  // Waits until a reader is idle.
  Lease Acquire() {
    std::unique_lock lock(mu_);
    idle_cv_.wait(lock, [this] { return !idle_.empty(); });
    std::unique_ptr<KvReader> reader = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(reader));
  }

 private:
  void Release(std::unique_ptr<KvReader> reader) {
    std::lock_guard lock(mu_);
    idle_.push_back(std::move(reader));
    idle_cv_.notify_one();
  }

  std::mutex mu_;
  std::condition_variable idle_cv_;
  std::vector<std::unique_ptr<KvReader>> idle_;  // guarded by mu_
};

class SqliteStorageImpl final : public SqliteStorage {
 public:
  SqliteStorageImpl(std::vector<std::unique_ptr<KvReader>> readers,
                    std::unique_ptr<detail::Writer> writer)
      : writer_(std::move(writer)), readers_(std::move(readers)) {}

  // Finishes queued commits while every member, the readers included, is still alive.
  ~SqliteStorageImpl() override { writer_->Shutdown(); }

  Result<std::optional<Bytes>> Get(std::string_view key) override {
    return readers_.Acquire()->Get(key);
  }

  Result<std::vector<std::string>> List(std::string_view prefix) override {
    return readers_.Acquire()->List(prefix);
  }

  Result<std::vector<Entry>> Scan(std::string_view prefix, std::string_view start_after,
                                  std::size_t limit) override {
    return readers_.Acquire()->Scan(prefix, start_after, limit);
  }

  Result<std::optional<Entry>> Last(std::string_view prefix) override {
    return readers_.Acquire()->Last(prefix);
  }

  Status Commit(WriteBatch batch) override { return writer_->Commit(std::move(batch)); }

  CommitStats Stats() const override { return writer_->Stats(); }

 private:
  // The writer is declared first so its connection closes last: the last connection to close
  // checkpoints the WAL into the database file and deletes it, which a read-only one cannot.
  std::unique_ptr<detail::Writer> writer_;
  ReaderPool readers_;
};

Status ValidateOptions(const SqliteOptions& options) {
  if (options.path.empty()) return InvalidArgument("storage: the database path is empty");
  if (options.read_connections == 0) {
    return InvalidArgument("storage: read_connections is 0; use at least 1");
  }
  if (options.max_batches_per_commit == 0) {
    return InvalidArgument("storage: max_batches_per_commit is 0; use at least 1");
  }
  if (options.busy_timeout.count() < 0) {
    return InvalidArgument("storage: busy_timeout is negative");
  }
  return OkStatus();
}

}  // namespace

Result<std::unique_ptr<SqliteStorage>> OpenSqliteStorage(const SqliteOptions& options) {
  KW_RETURN_IF_ERROR(ValidateOptions(options));

  // The writer connection comes first: it creates the file and switches it to WAL mode,
  // which the read-only connections cannot do.
  KW_ASSIGN_OR_RETURN(Connection writer_connection,
                      Connection::Open(options.path, Connection::Mode::kReadWrite,
                                       options.busy_timeout));
  KW_RETURN_IF_ERROR(detail::PrepareDatabase(writer_connection, options.path));

  std::vector<std::unique_ptr<KvReader>> readers;
  readers.reserve(options.read_connections);
  for (std::size_t i = 0; i < options.read_connections; ++i) {
    KW_ASSIGN_OR_RETURN(std::unique_ptr<KvReader> reader,
                        KvReader::Open(options.path, options.busy_timeout));
    readers.push_back(std::move(reader));
  }

  KW_ASSIGN_OR_RETURN(std::unique_ptr<detail::Writer> writer,
                      detail::Writer::Start(std::move(writer_connection), options));
  return std::unique_ptr<SqliteStorage>(
      new SqliteStorageImpl(std::move(readers), std::move(writer)));
}

Result<std::unique_ptr<Storage>> Open(const SqliteOptions& options) {
  KW_ASSIGN_OR_RETURN(std::unique_ptr<SqliteStorage> storage, OpenSqliteStorage(options));
  return std::unique_ptr<Storage>(std::move(storage));
}

Status VerifyDatabase(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) {
    return NotFound("storage: database file " + path + " does not exist");
  }
  KW_ASSIGN_OR_RETURN(Connection connection,
                      Connection::Open(path, Connection::Mode::kReadOnly,
                                       std::chrono::milliseconds(5000)));
  return detail::CheckSchema(connection, path);
}

}  // namespace kw::storage::sqlite
