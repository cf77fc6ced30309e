#include "vault/database/postgres_connection.hpp"

#include <libpq-fe.h>
#include <sodium.h>

#include <cctype>
#include <cstring>
#include <utility>

namespace kw::vault::database {
namespace {

// Connections idle for longer than this are pinged before reuse.
constexpr auto kPingAfterIdle = std::chrono::seconds(1);

std::string TrimmedMessage(const char* text) {
  std::string message = text == nullptr ? "" : text;
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  return message;
}

// A NUL-terminated copy of a secret, in locked memory, for libpq's C strings.
SecretBuffer TerminatedCopy(const SecretBuffer& secret) {
  SecretBuffer copy(secret.size() + 1);
  std::memcpy(copy.Reveal().data(), secret.Reveal().data(), secret.size());
  return copy;
}

}  // namespace

Result<PostgresConnection> PostgresConnection::Open(const ConnectionTarget& target) {
  const std::string timeout = std::to_string(kConnectTimeoutSeconds);
  std::optional<SecretBuffer> password;
  if (target.password != nullptr) password = TerminatedCopy(*target.password);

  // With expand_dbname, the first "dbname" is the URL; later keywords override its parts.
  std::vector<const char*> keys = {"dbname", "connect_timeout", "application_name"};
  std::vector<const char*> values = {target.url.c_str(), timeout.c_str(), "keyward"};
  if (!target.username.empty()) {
    keys.push_back("user");
    values.push_back(target.username.c_str());
  }
  if (password) {
    keys.push_back("password");
    values.push_back(reinterpret_cast<const char*>(password->Reveal().data()));
  }
  if (!target.database.empty()) {
    keys.push_back("dbname");
    values.push_back(target.database.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);

  pg_conn* conn = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) return Unavailable("connect to PostgreSQL: out of memory");
  PostgresConnection connection(conn);
  if (PQstatus(conn) != CONNECTION_OK) {
    std::vector<std::string_view> secrets;
    if (password) secrets.push_back(target.password->RevealText());
    return Unavailable("connect to PostgreSQL: " +
                       RedactSecrets(TrimmedMessage(PQerrorMessage(conn)), secrets));
  }
  return connection;
}

PostgresConnection PostgresConnection::Unconnected() {
  // A Unix socket in a directory that does not exist: the attempt fails at once, locally.
  return PostgresConnection(PQconnectStart("host=/nonexistent/keyward dbname=none"));
}

PostgresConnection::PostgresConnection(PostgresConnection&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)) {}

PostgresConnection& PostgresConnection::operator=(PostgresConnection&& other) noexcept {
  if (this != &other) {
    if (conn_ != nullptr) PQfinish(conn_);
    conn_ = std::exchange(other.conn_, nullptr);
  }
  return *this;
}

PostgresConnection::~PostgresConnection() {
  if (conn_ != nullptr) PQfinish(conn_);
}

bool PostgresConnection::broken() const {
  return conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK;
}

Result<QueryRows> PostgresConnection::Execute(std::string_view sql,
                                              const std::vector<std::string_view>& redact) {
  if (conn_ == nullptr) return Unavailable("PostgreSQL connection is closed");
  const std::string text(sql);
  std::unique_ptr<pg_result, decltype(&PQclear)> result(PQexec(conn_, text.c_str()), &PQclear);
  const ExecStatusType status =
      result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
  if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
    QueryRows rows;
    const int count = PQntuples(result.get());
    const int columns = PQnfields(result.get());
    rows.rows.reserve(static_cast<std::size_t>(count));
    for (int row = 0; row < count; ++row) {
      std::vector<std::string> values;
      for (int column = 0; column < columns; ++column) {
        values.emplace_back(PQgetvalue(result.get(), row, column));
      }
      rows.rows.push_back(std::move(values));
    }
    return rows;
  }

  const char* state = result ? PQresultErrorField(result.get(), PG_DIAG_SQLSTATE) : nullptr;
  const char* primary =
      result ? PQresultErrorField(result.get(), PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  std::string message = primary != nullptr ? TrimmedMessage(primary)
                                           : TrimmedMessage(PQerrorMessage(conn_));
  message = RedactSecrets(std::move(message), redact);
  if (state == nullptr || broken()) {
    return Unavailable("PostgreSQL connection failed: " + message);
  }
  return FailedPrecondition("PostgreSQL error SQLSTATE " + std::string(state) + ": " + message);
}

Result<std::string> PostgresConnection::QuoteIdentifier(std::string_view name) const {
  char* quoted = PQescapeIdentifier(conn_, name.data(), name.size());
  if (quoted == nullptr) return InvalidArgument("invalid identifier: not valid in the encoding");
  std::string out(quoted);
  PQfreemem(quoted);
  return out;
}

Result<std::string> PostgresConnection::QuoteLiteral(std::string_view value) const {
  char* quoted = PQescapeLiteral(conn_, value.data(), value.size());
  if (quoted == nullptr) return InvalidArgument("invalid literal: not valid in the encoding");
  std::string out(quoted);
  // The literal may be a password: wipe libpq's copy.
  sodium_memzero(quoted, out.size());
  PQfreemem(quoted);
  return out;
}

bool PostgresConnection::Ping() {
  if (broken()) return false;
  return Execute("SELECT 1").has_value() && !broken();
}

std::string RedactSecrets(std::string message, const std::vector<std::string_view>& secrets) {
  for (std::string_view secret : secrets) {
    if (secret.empty()) continue;
    for (std::size_t at = message.find(secret); at != std::string::npos;
         at = message.find(secret, at)) {
      message.replace(at, secret.size(), "[redacted]");
      at += std::strlen("[redacted]");
    }
  }
  return message;
}

std::string RedactConnectionUrl(std::string_view connection_url) {
  std::string url(connection_url);
  // URI form: scheme://user:password@host...
  const std::size_t scheme = url.find("://");
  if (scheme != std::string::npos) {
    const std::size_t authority = scheme + 3;
    const std::size_t end = url.find_first_of("/?", authority);
    const std::size_t at = url.rfind('@', end == std::string::npos ? url.size() : end);
    if (at != std::string::npos && at > authority) {
      const std::size_t colon = url.find(':', authority);
      if (colon != std::string::npos && colon < at &&
          url.compare(colon + 1, at - colon - 1, "{{password}}") != 0) {
        url.replace(colon + 1, at - colon - 1, "*****");
      }
    }
  }
  // Key/value form (`password = 'x y'`, spaces around '=' allowed, values quoted or not) and
  // URI query parameters (`password=x&...`).
  constexpr std::string_view kKey = "password";
  for (std::size_t at = url.find(kKey); at != std::string::npos; at = url.find(kKey, at + 1)) {
    if (at > 0 && std::isalnum(static_cast<unsigned char>(url[at - 1])) != 0) continue;
    std::size_t cursor = at + kKey.size();
    while (cursor < url.size() && url[cursor] == ' ') ++cursor;
    if (cursor >= url.size() || url[cursor] != '=') continue;
    ++cursor;
    while (cursor < url.size() && url[cursor] == ' ') ++cursor;
    std::size_t end = cursor;
    if (end < url.size() && url[end] == '\'') {
      // A quoted value ends at the next quote not escaped by a backslash.
      for (++end; end < url.size() && url[end] != '\''; ++end) {
        if (url[end] == '\\') ++end;
      }
      if (end < url.size()) ++end;
    } else {
      end = url.find_first_of(" &", cursor);
      if (end == std::string::npos) end = url.size();
    }
    const std::string_view value = std::string_view(url).substr(cursor, end - cursor);
    if (value == "{{password}}" || value == "'{{password}}'") continue;
    url.replace(cursor, end - cursor, "*****");
  }
  return url;
}

ConnectionPool::ConnectionPool(std::string url, std::string username, SecretBuffer password,
                               std::size_t max_open)
    : url_(std::move(url)),
      username_(std::move(username)),
      password_(std::move(password)),
      max_open_(max_open == 0 ? 1 : max_open) {}

ConnectionPool::~ConnectionPool() = default;

ConnectionPool::Lease::~Lease() {
  if (pool_ != nullptr && connection_) pool_->Release(std::move(connection_));
}

Result<ConnectionPool::Lease> ConnectionPool::Acquire(std::chrono::milliseconds wait) {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + wait;
  while (idle_.empty() && open_ >= max_open_) {
    if (released_.wait_until(lock, deadline) == std::cv_status::timeout &&
        idle_.empty() && open_ >= max_open_) {
      return Unavailable("all " + std::to_string(max_open_) +
                         " PostgreSQL connections are in use: raise max_open_connections");
    }
  }
  while (!idle_.empty()) {
    Idle idle = std::move(idle_.back());
    idle_.pop_back();
    const bool stale = std::chrono::steady_clock::now() - idle.since > kPingAfterIdle;
    lock.unlock();
    if (!idle.connection->broken() && (!stale || idle.connection->Ping())) {
      return Lease(this, std::move(idle.connection));
    }
    idle.connection.reset();
    lock.lock();
    --open_;
  }
  ++open_;
  lock.unlock();

  auto opened = OpenTo("");
  if (!opened) {
    std::lock_guard relock(mutex_);
    --open_;
    released_.notify_one();
    return tl::unexpected(opened.error());
  }
  return Lease(this, std::make_unique<PostgresConnection>(std::move(*opened)));
}

Result<PostgresConnection> ConnectionPool::OpenTo(std::string_view database) const {
  return PostgresConnection::Open(
      {.url = url_, .username = username_, .password = &password_,
       .database = std::string(database)});
}

void ConnectionPool::Release(std::unique_ptr<PostgresConnection> connection) {
  std::lock_guard lock(mutex_);
  if (connection->broken()) {
    --open_;
  } else {
    idle_.push_back({std::move(connection), std::chrono::steady_clock::now()});
  }
  released_.notify_one();
}

}  // namespace kw::vault::database
