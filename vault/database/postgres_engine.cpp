#include "vault/database/postgres_engine.hpp"

#include <algorithm>
#include <chrono>

#include "base/bytes.hpp"
#include "base/log.hpp"

namespace kw::vault::database {
namespace {

bool IsUri(std::string_view url) {
  return url.starts_with("postgresql://") || url.starts_with("postgres://");
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' || c == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string ReplaceAll(std::string text, std::string_view from, std::string_view to) {
  for (std::size_t at = text.find(from); at != std::string::npos; at = text.find(from, at)) {
    text.replace(at, from.size(), to);
    at += to.size();
  }
  return text;
}

// Returns the config's URL with {{username}} filled in and {{password}} emptied: the password
// travels as its own libpq keyword, so no connection string contains it.
std::string ExpandUrl(const DatabaseConfig& config) {
  const bool uri = IsUri(config.connection_url);
  std::string url = ReplaceAll(config.connection_url, "{{username}}",
                               uri ? PercentEncode(config.username) : config.username);
  return ReplaceAll(std::move(url), "{{password}}", uri ? "" : "''");
}

std::int64_t NowSeconds(const Clock& clock) {
  return std::chrono::duration_cast<std::chrono::seconds>(clock.Now().time_since_epoch())
      .count();
}

Status CheckStatements(std::string_view field, const std::vector<std::string>& statements) {
  for (const std::string& statement : SplitStatements(statements)) {
    if (auto valid = ValidateTemplate(statement); !valid) {
      return tl::unexpected(valid.error().WithContext("invalid " + std::string(field)));
    }
  }
  return OkStatus();
}

}  // namespace

PostgresEngine::PostgresEngine(storage::Storage& storage, Barrier& barrier, const Clock& clock)
    : storage_(storage),
      barrier_(barrier),
      clock_(clock),
      configs_(storage, barrier, "database/config/"),
      roles_(storage, barrier, "database/role/"),
      static_roles_(storage, barrier, "database/static-role/") {}

PostgresEngine::~PostgresEngine() = default;

Result<std::optional<StoredConfig>> PostgresEngine::LoadConfig(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto loaded, configs_.Get(name));
  if (!loaded) return std::optional<StoredConfig>();
  KW_ASSIGN_OR_RETURN(DatabaseConfig config, DecodeConfig(name, loaded->plain));
  return std::optional<StoredConfig>(StoredConfig{std::move(config), std::move(loaded->raw)});
}

Result<StoredConfig> PostgresEngine::RequireConfig(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto stored, LoadConfig(name));
  if (!stored) {
    return NotFound("database config \"" + std::string(name) + "\" does not exist");
  }
  return std::move(*stored);
}

Status PostgresEngine::StageConfig(const DatabaseConfig& config,
                                   const std::optional<Bytes>& previous,
                                   storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateObjectName("database config", config.name));
  if (config.plugin_name != kPostgresPlugin) {
    return InvalidArgument("unsupported plugin_name \"" + config.plugin_name +
                           "\": keyward supports " + std::string(kPostgresPlugin));
  }
  if (config.connection_url.empty()) {
    return InvalidArgument("missing connection_url: set a PostgreSQL URL such as "
                           "postgresql://{{username}}:{{password}}@host:5432/postgres");
  }
  if (config.max_open_connections < 1 || config.max_open_connections > 1000) {
    return InvalidArgument("invalid max_open_connections: use 1 to 1000");
  }
  KW_RETURN_IF_ERROR(CheckStatements("root_rotation_statements", config.root_rotation_statements));

  if (config.verify_connection) {
    auto connection = PostgresConnection::Open({.url = ExpandUrl(config),
                                                .username = config.username,
                                                .password = &config.password,
                                                .database = ""});
    if (!connection) {
      return tl::unexpected(connection.error().WithContext("verify connection"));
    }
    if (auto ping = connection->Execute("SELECT 1"); !ping) {
      return tl::unexpected(ping.error().WithContext("verify connection"));
    }
  }

  SecretBuffer plain = EncodeConfig(config);
  return configs_.Stage(config.name, plain.Reveal(), previous, batch);
}

void PostgresEngine::StageConfigDelete(std::string_view name, storage::WriteBatch& batch) {
  configs_.StageDelete(name, batch);
  ResetConnections(name);
}

Result<std::vector<std::string>> PostgresEngine::ListConfigs() const { return configs_.List(); }

void PostgresEngine::ResetConnections(std::string_view name) {
  std::lock_guard lock(pools_mutex_);
  if (auto found = pools_.find(name); found != pools_.end()) pools_.erase(found);
}

Result<std::shared_ptr<ConnectionPool>> PostgresEngine::PoolFor(const StoredConfig& stored) {
  const Bytes fingerprint = Sha256(stored.raw);
  std::lock_guard lock(pools_mutex_);
  auto found = pools_.find(stored.config.name);
  if (found != pools_.end() && found->second.fingerprint == fingerprint) {
    return found->second.pool;
  }
  auto pool = std::make_shared<ConnectionPool>(
      ExpandUrl(stored.config), stored.config.username,
      SecretBuffer::CopyFrom(stored.config.password.Reveal()),
      static_cast<std::size_t>(stored.config.max_open_connections));
  pools_[stored.config.name] = PoolEntry{fingerprint, pool};
  return pool;
}

Status PostgresEngine::RotateRoot(std::string_view name, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(StoredConfig stored, RequireConfig(name));
  if (stored.config.username.empty()) {
    return FailedPrecondition("database config \"" + std::string(name) +
                              "\" has no username: set username to rotate its password");
  }
  KW_ASSIGN_OR_RETURN(auto pool, PoolFor(stored));
  KW_ASSIGN_OR_RETURN(auto connection, pool->Acquire());

  SecretBuffer password = GeneratePassword();
  std::vector<std::string> statements = stored.config.root_rotation_statements;
  if (statements.empty()) statements.emplace_back(kDefaultRotationStatement);
  KW_RETURN_IF_ERROR(RunStatements(*connection, statements,
                                   {.name = stored.config.username,
                                    .password = password.RevealText(),
                                    .expiration = ""}));

  DatabaseConfig rotated = std::move(stored.config);
  rotated.password = std::move(password);
  rotated.root_rotation_time = NowSeconds(clock_);
  SecretBuffer plain = EncodeConfig(rotated);
  KW_RETURN_IF_ERROR(configs_.Stage(rotated.name, plain.Reveal(), stored.raw, batch));
  log::Info("database root credential rotated", {{"config", rotated.name}});
  return OkStatus();
}

Result<std::optional<DynamicRole>> PostgresEngine::LoadRole(std::string_view name) const {
  KW_ASSIGN_OR_RETURN(auto loaded, roles_.Get(name));
  if (!loaded) return std::optional<DynamicRole>();
  KW_ASSIGN_OR_RETURN(DynamicRole role, DecodeRole(name, loaded->plain.RevealText()));
  return std::optional<DynamicRole>(std::move(role));
}

Status PostgresEngine::StageRole(const DynamicRole& role, storage::WriteBatch& batch) {
  KW_RETURN_IF_ERROR(ValidateObjectName("role", role.name));
  if (role.db_name.empty()) return InvalidArgument("missing db_name: name a database config");
  if (role.creation_statements.empty()) {
    return InvalidArgument("missing creation_statements: give the CREATE ROLE statements");
  }
  KW_RETURN_IF_ERROR(CheckStatements("creation_statements", role.creation_statements));
  KW_RETURN_IF_ERROR(CheckStatements("revocation_statements", role.revocation_statements));
  KW_RETURN_IF_ERROR(CheckStatements("renew_statements", role.renew_statements));
  KW_RETURN_IF_ERROR(CheckStatements("rollback_statements", role.rollback_statements));
  if (role.default_ttl < 0 || role.max_ttl < 0) {
    return InvalidArgument("invalid default_ttl or max_ttl: durations must not be negative");
  }
  if (role.max_ttl > 0 && role.default_ttl > role.max_ttl) {
    return InvalidArgument("invalid default_ttl: it exceeds max_ttl");
  }
  if (role.elevated && (role.max_ttl == 0 || role.max_ttl > kMaxElevatedTtl)) {
    return InvalidArgument("invalid max_ttl for an elevated role: set max_ttl to at most 1h");
  }
  KW_ASSIGN_OR_RETURN(auto current, roles_.Get(role.name));
  std::optional<Bytes> previous;
  if (current) previous = std::move(current->raw);
  const std::string text = EncodeRole(role);
  return roles_.Stage(role.name, AsBytes(text), previous, batch);
}

void PostgresEngine::StageRoleDelete(std::string_view name, storage::WriteBatch& batch) {
  roles_.StageDelete(name, batch);
}

Result<std::vector<std::string>> PostgresEngine::ListRoles() const { return roles_.List(); }

nlohmann::json PostgresEngine::LeaseData(const DynamicRole& role, std::string_view username) {
  return {{"config", role.db_name}, {"username", std::string(username)}};
}

Status PostgresEngine::RunStatements(PostgresConnection& connection,
                                     const std::vector<std::string>& statements,
                                     const TemplateValues& values) {
  for (const std::string& statement : SplitStatements(statements)) {
    KW_ASSIGN_OR_RETURN(SecretBuffer sql, RenderTemplate(statement, values, connection));
    KW_RETURN_IF_ERROR(connection.Execute(sql.RevealText(), {values.password}));
  }
  return OkStatus();
}

Result<IssuedCredential> PostgresEngine::CreateCredential(const DynamicRole& role,
                                                          std::string_view display_name,
                                                          std::int64_t expire_time) {
  KW_ASSIGN_OR_RETURN(StoredConfig stored, RequireConfig(role.db_name));
  if (!stored.config.AllowsRole(role.name)) {
    return PermissionDenied("role \"" + role.name + "\" is not in the allowed_roles of "
                            "database config \"" + role.db_name + "\"");
  }
  KW_ASSIGN_OR_RETURN(auto pool, PoolFor(stored));
  KW_ASSIGN_OR_RETURN(auto connection, pool->Acquire());

  IssuedCredential credential{GenerateUsername(display_name, role.name, NowSeconds(clock_)),
                              GeneratePassword()};
  const std::string expiration = FormatExpiration(expire_time);
  const TemplateValues values{.name = credential.username,
                              .password = credential.password.RevealText(),
                              .expiration = expiration};
  KW_RETURN_IF_ERROR(connection->Execute("BEGIN"));
  Status created = RunStatements(*connection, role.creation_statements, values);
  if (created) created = connection->Execute("COMMIT").map([](const QueryRows&) {});
  if (!created) {
    (void)connection->Execute("ROLLBACK");
    if (!role.rollback_statements.empty()) {
      if (auto rolled = RunStatements(*connection, role.rollback_statements, values); !rolled) {
        log::Warn("database rollback statements failed",
                  {{"role", role.name}, {log::kError, rolled.error().message()}});
      }
    }
    return tl::unexpected(created.error().WithContext("create credential"));
  }
  return credential;
}

void PostgresEngine::RememberPending(const std::string& request_id, PendingCredential pending) {
  std::lock_guard lock(pending_mutex_);
  pending_.insert_or_assign(request_id, std::move(pending));
}

std::optional<PostgresEngine::PendingCredential> PostgresEngine::FindPending(
    const std::string& request_id) {
  std::lock_guard lock(pending_mutex_);
  auto found = pending_.find(request_id);
  if (found == pending_.end()) return std::nullopt;
  const PendingCredential& pending = found->second;
  return PendingCredential{pending.username, SecretBuffer::CopyFrom(pending.password.Reveal()),
                           pending.lease, pending.created};
}

void PostgresEngine::ForgetPending(const std::string& request_id) {
  std::lock_guard lock(pending_mutex_);
  pending_.erase(request_id);
}

std::vector<lease::Lease> PostgresEngine::TakeAbandoned(std::chrono::seconds max_age) {
  const auto cutoff = std::chrono::steady_clock::now() - max_age;
  std::vector<lease::Lease> abandoned;
  std::lock_guard lock(pending_mutex_);
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second.created < cutoff) {
      abandoned.push_back(std::move(it->second.lease));
      it = pending_.erase(it);
    } else {
      ++it;
    }
  }
  return abandoned;
}

Status PostgresEngine::RenewCredential(const lease::Lease& lease, std::int64_t new_expire_time) {
  const std::string config_name = lease.engine_data.value("config", "");
  const std::string username = lease.engine_data.value("username", "");
  if (username.empty()) return DataLoss("lease " + lease.id + " names no database username");
  KW_ASSIGN_OR_RETURN(StoredConfig stored, RequireConfig(config_name));
  KW_ASSIGN_OR_RETURN(auto role, LoadRole(lease.role));

  std::vector<std::string> statements;
  if (role) statements = role->renew_statements;
  if (statements.empty()) statements.emplace_back(kDefaultRenewStatement);
  KW_ASSIGN_OR_RETURN(auto pool, PoolFor(stored));
  KW_ASSIGN_OR_RETURN(auto connection, pool->Acquire());
  const std::string expiration = FormatExpiration(new_expire_time);
  return RunStatements(*connection, statements, {.name = username, .password = "", .expiration = expiration});
}

Status PostgresEngine::RevokeCredential(const lease::Lease& lease) {
  const std::string config_name = lease.engine_data.value("config", "");
  const std::string username = lease.engine_data.value("username", "");
  if (username.empty()) return DataLoss("lease " + lease.id + " names no database username");
  KW_ASSIGN_OR_RETURN(StoredConfig stored, RequireConfig(config_name));
  KW_ASSIGN_OR_RETURN(auto role, LoadRole(lease.role));
  KW_ASSIGN_OR_RETURN(auto pool, PoolFor(stored));
  KW_ASSIGN_OR_RETURN(auto connection, pool->Acquire());

  KW_ASSIGN_OR_RETURN(std::string literal, connection->QuoteLiteral(username));
  KW_ASSIGN_OR_RETURN(std::string identifier, connection->QuoteIdentifier(username));
  KW_ASSIGN_OR_RETURN(QueryRows exists,
                      connection->Execute("SELECT 1 FROM pg_roles WHERE rolname = " + literal));
  if (exists.rows.empty()) return OkStatus();

  // Each step commits on its own, so no new login is possible before sessions are killed,
  // and sessions are killed before DROP ROLE orphans them (their usename turns NULL).
  KW_RETURN_IF_ERROR(connection->Execute("ALTER ROLE " + identifier + " NOLOGIN"));
  KW_RETURN_IF_ERROR(connection->Execute(
      "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE usename = " +
      literal));

  if (role && !role->revocation_statements.empty()) {
    return RunStatements(*connection, role->revocation_statements, {.name = username, .password = "", .expiration = ""});
  }
  KW_RETURN_IF_ERROR(DropOwned(*pool, *connection, username));
  return connection->Execute("DROP ROLE IF EXISTS " + identifier).map([](const QueryRows&) {});
}

Status PostgresEngine::DropOwned(ConnectionPool& pool, PostgresConnection& connection,
                                 std::string_view username) {
  KW_ASSIGN_OR_RETURN(std::string literal, connection.QuoteLiteral(username));
  KW_ASSIGN_OR_RETURN(std::string identifier, connection.QuoteIdentifier(username));
  const std::string cleanup =
      "REASSIGN OWNED BY " + identifier + " TO CURRENT_USER; DROP OWNED BY " + identifier;

  // The connection's own database always (it covers privileges on shared objects), and every
  // other database that allows connections and records a dependency on the role in
  // pg_shdepend (ownership, privileges, policies): elsewhere there is nothing to drop.
  for (const std::string& statement : SplitStatements(cleanup)) {
    KW_RETURN_IF_ERROR(connection.Execute(statement));
  }
  KW_ASSIGN_OR_RETURN(
      QueryRows others,
      connection.Execute("SELECT DISTINCT d.datname FROM pg_shdepend s JOIN pg_database d "
                         "ON d.oid = s.dbid JOIN pg_roles r ON r.oid = s.refobjid "
                         "WHERE r.rolname = " + literal +
                         " AND d.datallowconn AND d.datname <> current_database()"));
  for (const auto& row : others.rows) {
    KW_ASSIGN_OR_RETURN(PostgresConnection other, pool.OpenTo(row.at(0)));
    for (const std::string& statement : SplitStatements(cleanup)) {
      KW_RETURN_IF_ERROR(other.Execute(statement));
    }
  }
  return OkStatus();
}

}  // namespace kw::vault::database
