#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/bytes.hpp"
#include "base/result.hpp"

struct sqlite3;
struct sqlite3_stmt;

// Thin owners of SQLite handles. Every SQLite failure becomes a kw::Error reading
// "storage: <action>: <sqlite message>"; messages never contain bound values.
namespace kw::storage::sqlite::detail {

// Returns the kw::Code for an SQLite result code (primary or extended).
Code CodeForSqliteResult(int rc);

// True for results after which SQLite may have rolled back the open write transaction on its own
// (full disk, I/O error, corruption, out of memory): the writer then ends the whole transaction.
bool IsIoFailure(int rc);

// True for results that report a damaged database file (SQLITE_CORRUPT, SQLITE_NOTADB). The
// writer stops accepting writes after one, so that nothing more is written onto a damaged file.
bool IsDamage(int rc);

// One database connection. Not thread-safe: one thread uses it at a time. Move-only.
class Connection {
 public:
  enum class Mode { kReadWrite, kReadOnly };

  // Opens `path`, creating the file in kReadWrite mode. Sets the busy timeout and turns on
  // extended result codes.
  static Result<Connection> Open(const std::string& path, Mode mode,
                                 std::chrono::milliseconds busy_timeout);

  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  sqlite3* handle() const { return db_; }

  // Runs `sql`, which returns no rows; the error names `action`.
  Status Exec(const char* sql, std::string_view action);

  // Runs `sql` and returns the integer in the first column of its first row.
  Result<std::int64_t> QueryInt(const char* sql, std::string_view action);

  // Returns the error for `rc` with this connection's message, prefixed "storage: <action>".
  Error ErrorFor(int rc, std::string_view action) const;

  // True when no transaction is open, including after SQLite rolled one back on its own.
  bool InAutocommit() const;

  // The SQLite result code of the last failed Exec or QueryInt, or SQLITE_OK.
  int last_result() const { return last_result_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_ = nullptr;
  int last_result_ = 0;
};

// A prepared statement on one Connection, which must outlive it. Move-only.
class Statement {
 public:
  static Result<Statement> Prepare(Connection& connection, std::string_view sql);

  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  // Parameters are 1-based. Text and blobs are copied by SQLite.
  Status BindText(int index, std::string_view text);
  Status BindBlob(int index, ByteSpan bytes);
  Status BindInt(int index, std::int64_t value);

  // Advances to the next row: true when a row is ready, false when done. The error names
  // `action` and carries the SQLite result code in last_result().
  Result<bool> Step(std::string_view action);

  // Column accessors for the current row; the text view is valid until the next Step or Reset.
  std::string_view ColumnText(int column) const;
  Bytes ColumnBytes(int column) const;

  // Ends the current run and clears bindings, which also ends the read snapshot it holds.
  void Reset();

  // The SQLite result code of the last failed Step, or SQLITE_OK.
  int last_result() const { return last_result_; }

 private:
  Statement(Connection* connection, sqlite3_stmt* stmt) : connection_(connection), stmt_(stmt) {}

  Connection* connection_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
  int last_result_ = 0;
};

// Resets a statement when the scope ends, so no read snapshot outlives a query.
class ResetOnExit {
 public:
  explicit ResetOnExit(Statement& statement) : statement_(statement) {}
  ResetOnExit(const ResetOnExit&) = delete;
  ResetOnExit& operator=(const ResetOnExit&) = delete;
  ~ResetOnExit() { statement_.Reset(); }

 private:
  Statement& statement_;
};

}  // namespace kw::storage::sqlite::detail
