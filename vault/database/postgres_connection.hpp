#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"

struct pg_conn;
struct pg_result;

// libpq connections for the database secrets engine: one owner per handle, errors as kw::Error
// carrying PostgreSQL's SQLSTATE and message but never a password or a connection string.
namespace kw::vault::database {

// Seconds libpq waits for a TCP connection and the start-up handshake.
inline constexpr int kConnectTimeoutSeconds = 5;

// A connection's server and login. `url` is a libpq connection URI or key=value string without
// the password; `username` and `password`, when set, override what the URL names.
struct ConnectionTarget {
  std::string url;
  std::string username;
  const SecretBuffer* password = nullptr;  // borrowed for the call; may be null
  std::string database;  // overrides the URL's database when not empty
};

// The rows of a query, as text (NULL reads as an empty string).
struct QueryRows {
  std::vector<std::vector<std::string>> rows;
};

// One libpq connection. Move-only; closed by the destructor. One thread at a time.
class PostgresConnection {
 public:
  // Connects and checks the connection. unavailable when the server cannot be reached or
  // rejects the login (the message is libpq's, which names host and user, not the password).
  static Result<PostgresConnection> Open(const ConnectionTarget& target);

  // Returns a handle that never connects, for quoting alone: libpq then assumes SQL_ASCII
  // and standard_conforming_strings off, so literals with a backslash come out as E'...'.
  static PostgresConnection Unconnected();

  PostgresConnection(PostgresConnection&& other) noexcept;
  PostgresConnection& operator=(PostgresConnection&& other) noexcept;
  PostgresConnection(const PostgresConnection&) = delete;
  PostgresConnection& operator=(const PostgresConnection&) = delete;
  ~PostgresConnection();

  // Runs `sql` as its own transaction (autocommit) and returns its rows. An error carries
  // "SQLSTATE <code>: <message>": failed_precondition for errors PostgreSQL reports about the
  // statement, unavailable when the connection broke. Every text in `redact` is replaced by
  // "[redacted]" in the message, for statements that contain a password.
  Result<QueryRows> Execute(std::string_view sql,
                            const std::vector<std::string_view>& redact = {});

  // Returns `name` quoted as an identifier by PQescapeIdentifier ("a""b").
  Result<std::string> QuoteIdentifier(std::string_view name) const;
  // Returns `value` quoted as a string literal by PQescapeLiteral ('x''y').
  Result<std::string> QuoteLiteral(std::string_view value) const;

  // Returns whether the connection is usable: status OK and `SELECT 1` succeeds.
  bool Ping();
  bool broken() const;

  pg_conn* raw() const { return conn_; }

 private:
  explicit PostgresConnection(pg_conn* conn) : conn_(conn) {}

  pg_conn* conn_ = nullptr;
};

// Returns `connection_url` with any password it contains replaced by "*****", for replies.
std::string RedactConnectionUrl(std::string_view connection_url);

// Replaces every occurrence of each non-empty text in `secrets` by "[redacted]".
std::string RedactSecrets(std::string message, const std::vector<std::string_view>& secrets);

// A bounded pool of connections to one target, for one database config. Connections idle for
// a while are checked with Ping before reuse, and broken ones are dropped. Thread-safe.
class ConnectionPool {
 public:
  // Holds the target's password in its own copy.
  ConnectionPool(std::string url, std::string username, SecretBuffer password,
                 std::size_t max_open);
  ~ConnectionPool();

  // A connection taken from the pool; returned to it when destroyed (dropped if broken).
  class Lease {
   public:
    Lease(ConnectionPool* pool, std::unique_ptr<PostgresConnection> connection)
        : pool_(pool), connection_(std::move(connection)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease();
    PostgresConnection& operator*() { return *connection_; }
    PostgresConnection* operator->() { return connection_.get(); }

   private:
    ConnectionPool* pool_;
    std::unique_ptr<PostgresConnection> connection_;
  };

  // Returns an idle connection or opens one; waits up to `wait` when max_open are in use
  // (then unavailable).
  Result<Lease> Acquire(std::chrono::milliseconds wait = std::chrono::seconds(10));

  // Opens a connection outside the pool to `database` (for per-database revocation steps).
  Result<PostgresConnection> OpenTo(std::string_view database) const;

 private:
  struct Idle {
    std::unique_ptr<PostgresConnection> connection;
    std::chrono::steady_clock::time_point since;
  };
  void Release(std::unique_ptr<PostgresConnection> connection);

  const std::string url_;
  const std::string username_;
  const SecretBuffer password_;
  const std::size_t max_open_;
  std::mutex mutex_;
  std::condition_variable released_;
  std::vector<Idle> idle_;  // guarded by mutex_
  std::size_t open_ = 0;    // guarded by mutex_: idle plus leased
};

}  // namespace kw::vault::database
