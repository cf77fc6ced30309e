#include "storage/sqlite/connection.hpp"

#include <sqlite3.h>

#include <utility>

namespace kw::storage::sqlite::detail {

Code CodeForSqliteResult(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
    case SQLITE_READONLY:
      return Code::kUnavailable;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return Code::kDataLoss;
    case SQLITE_TOOBIG:
      return Code::kResourceExhausted;
    default:
      return Code::kInternal;
  }
}

bool IsIoFailure(int rc) {
  switch (rc & 0xff) {
    case SQLITE_FULL:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_NOMEM:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return true;
    default:
      return false;
  }
}

bool IsDamage(int rc) {
  const int primary = rc & 0xff;
  return primary == SQLITE_CORRUPT || primary == SQLITE_NOTADB;
}

Result<Connection> Connection::Open(const std::string& path, Mode mode,
                                    std::chrono::milliseconds busy_timeout) {
  // NOMUTEX: each connection is used by one thread at a time, which the callers guarantee.
  int flags = SQLITE_OPEN_NOMUTEX;
  flags |= mode == Mode::kReadWrite ? (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)
                                    : SQLITE_OPEN_READONLY;
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(path.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string message = "storage: open " + path + ": ";
    message += db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);  // a no-op for nullptr
    return MakeError(Code::kUnavailable, std::move(message));
  }
  Connection connection(db);
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
  return connection;
}

Connection::Connection(Connection&& other) noexcept
    : db_(std::exchange(other.db_, nullptr)), last_result_(other.last_result_) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
    last_result_ = other.last_result_;
  }
  return *this;
}

Connection::~Connection() {
  // close_v2 defers the close until every statement of this connection is finalized.
  sqlite3_close_v2(db_);
}

Status Connection::Exec(const char* sql, std::string_view action) {
  last_result_ = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  if (last_result_ != SQLITE_OK) return tl::unexpected(ErrorFor(last_result_, action));
  return OkStatus();
}

Result<std::int64_t> Connection::QueryInt(const char* sql, std::string_view action) {
  sqlite3_stmt* stmt = nullptr;
  last_result_ = sqlite3_prepare_v2(db_, sql, -1, &stmt, nullptr);
  if (last_result_ != SQLITE_OK) return tl::unexpected(ErrorFor(last_result_, action));

  last_result_ = sqlite3_step(stmt);
  if (last_result_ != SQLITE_ROW) {
    Error error = last_result_ == SQLITE_DONE
                      ? Error(Code::kInternal, "storage: " + std::string(action) + ": no row")
                      : ErrorFor(last_result_, action);
    sqlite3_finalize(stmt);
    return tl::unexpected(std::move(error));
  }
  const std::int64_t value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  last_result_ = SQLITE_OK;
  return value;
}

Error Connection::ErrorFor(int rc, std::string_view action) const {
  std::string message = "storage: ";
  message += action;
  message += ": ";
  // sqlite3_errmsg describes the latest failure on this connection; fall back to the generic
  // text when the connection's latest call succeeded.
  message += db_ != nullptr && sqlite3_errcode(db_) != SQLITE_OK ? sqlite3_errmsg(db_)
                                                                 : sqlite3_errstr(rc);
  return Error(CodeForSqliteResult(rc), std::move(message));
}

bool Connection::InAutocommit() const { return sqlite3_get_autocommit(db_) != 0; }

Result<Statement> Statement::Prepare(Connection& connection, std::string_view sql) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(connection.handle(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) return tl::unexpected(connection.ErrorFor(rc, "prepare statement"));
  return Statement(&connection, stmt);
}

Statement::Statement(Statement&& other) noexcept
    : connection_(other.connection_),
      stmt_(std::exchange(other.stmt_, nullptr)),
      last_result_(other.last_result_) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    connection_ = other.connection_;
    stmt_ = std::exchange(other.stmt_, nullptr);
    last_result_ = other.last_result_;
  }
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

Status Statement::BindText(int index, std::string_view text) {
  // A non-null pointer keeps an empty string from binding as NULL.
  const char* data = text.data() != nullptr ? text.data() : "";
  const int rc = sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  if (rc != SQLITE_OK) return tl::unexpected(connection_->ErrorFor(rc, "bind key"));
  return OkStatus();
}

Status Statement::BindBlob(int index, ByteSpan bytes) {
  // sqlite3_bind_blob binds NULL for a null pointer, so an empty value becomes a zero-length
  // blob explicitly; the column is NOT NULL.
  const int rc = bytes.empty()
                     ? sqlite3_bind_zeroblob(stmt_, index, 0)
                     : sqlite3_bind_blob64(stmt_, index, bytes.data(), bytes.size(),
                                           SQLITE_TRANSIENT);
  if (rc != SQLITE_OK) return tl::unexpected(connection_->ErrorFor(rc, "bind value"));
  return OkStatus();
}

Status Statement::BindInt(int index, std::int64_t value) {
  const int rc = sqlite3_bind_int64(stmt_, index, value);
  if (rc != SQLITE_OK) return tl::unexpected(connection_->ErrorFor(rc, "bind integer"));
  return OkStatus();
}

Result<bool> Statement::Step(std::string_view action) {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  last_result_ = rc;
  return tl::unexpected(connection_->ErrorFor(rc, action));
}

std::string_view Statement::ColumnText(int column) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
  const int size = sqlite3_column_bytes(stmt_, column);
  if (text == nullptr) return {};
  return {text, static_cast<std::size_t>(size)};
}

Bytes Statement::ColumnBytes(int column) const {
  // column_blob returns nullptr for a zero-length blob; call it before column_bytes as the
  // SQLite documentation advises.
  const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt_, column));
  const int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr || size <= 0) return {};
  return Bytes(data, data + size);
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
  last_result_ = SQLITE_OK;
}

}  // namespace kw::storage::sqlite::detail
