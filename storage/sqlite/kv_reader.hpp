#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "storage/sqlite/connection.hpp"
#include "storage/storage.hpp"

namespace kw::storage::sqlite::detail {

// The one table. Keys compare with SQLite's BINARY collation (memcmp), so key order is
// byte order and ranges below are exact byte-wise prefixes.
inline constexpr const char* kCreateKvTable =
    "CREATE TABLE kv(key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID";

// invalid_argument unless `key` is non-empty and free of NUL bytes.
Status ValidateKey(std::string_view key);

// Returns the least string greater than every string that starts with `prefix`, or nullopt
// when there is none (an empty prefix or one made only of 0xff bytes).
std::optional<std::string> PrefixSuccessor(std::string_view prefix);

// Returns `key` quoted for an error message, with bytes outside printable ASCII as \xNN.
std::string QuoteKey(std::string_view key);

// Runs a prepared "SELECT value FROM kv WHERE key = ?1" for `key`.
Result<std::optional<Bytes>> RunGet(Statement& get, std::string_view key);

// The read queries on one read-only connection, which it owns. One thread at a time.
class KvReader {
 public:
  static Result<std::unique_ptr<KvReader>> Open(const std::string& path,
                                                std::chrono::milliseconds busy_timeout);

  Result<std::optional<Bytes>> Get(std::string_view key);
  Result<std::vector<std::string>> List(std::string_view prefix);
  Result<std::vector<Entry>> Scan(std::string_view prefix, std::string_view start_after,
                                  std::size_t limit);
  Result<std::optional<Entry>> Last(std::string_view prefix);

 private:
  explicit KvReader(std::unique_ptr<Connection> connection)
      : connection_(std::move(connection)) {}
  Status PrepareStatements();

  // Declared first so the statements are finalized before the connection closes.
  std::unique_ptr<Connection> connection_;
  std::optional<Statement> get_;
  std::optional<Statement> keys_from_;       // keys >= ?1 in order
  std::optional<Statement> entries_from_;    // entries with key >= ?1 in order
  std::optional<Statement> entries_after_;   // entries with key > ?1 in order
  std::optional<Statement> last_below_;      // greatest entry with ?1 <= key < ?2
  std::optional<Statement> last_from_;       // greatest entry with key >= ?1
};

}  // namespace kw::storage::sqlite::detail
