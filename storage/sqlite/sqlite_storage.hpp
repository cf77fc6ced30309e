#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "storage/storage.hpp"

namespace kw::storage::sqlite {

struct SqliteOptions {
  std::string path;                                // the database file; created when missing
  std::size_t read_connections = 4;                // readers never wait on the writer
  std::chrono::milliseconds busy_timeout{5000};
  std::size_t max_batches_per_commit = 256;        // group commit: batches per transaction
};

// Opens (creating if needed) the SQLite database at options.path in WAL mode with
// synchronous=FULL. One writer thread applies batches; concurrent Commit calls are grouped
// into one transaction (each batch in its own savepoint) and each caller returns once that
// transaction is durable. unavailable when the file cannot be opened.
Result<std::unique_ptr<Storage>> Open(const SqliteOptions& options);

}  // namespace kw::storage::sqlite
