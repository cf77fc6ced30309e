#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"
#include "vault/database/database_config.hpp"
#include "vault/database/database_roles.hpp"
#include "vault/database/postgres_connection.hpp"
#include "vault/database/statements.hpp"
#include "vault/database/static_roles.hpp"
#include "vault/lease/lease.hpp"
#include "vault/lease/lease_manager.hpp"

namespace kw::vault::database {

// The mount this engine serves and the lease ids it issues: database/creds/<role>/<random>.
inline constexpr std::string_view kMount = "database";

// A credential just created in PostgreSQL: the only moment its password exists outside the
// database.
struct IssuedCredential {
  std::string username;
  SecretBuffer password;
};

// A config with the stored bytes it was read from, for check-and-set writes.
struct StoredConfig {
  DatabaseConfig config;
  Bytes raw;
};

// The PostgreSQL database secrets engine mounted at database/: connection configs, dynamic
// roles and the credentials they issue. Configs and roles are stored encrypted by the barrier.
// Each config has a bounded pool of libpq connections, rebuilt when the stored config changes.
// Implements LeaseEngine so the lease manager renews and revokes the credentials.
// Thread-safe. Storage, barrier and clock must outlive the engine.
class PostgresEngine final : public lease::LeaseEngine {
 public:
  PostgresEngine(storage::Storage& storage, Barrier& barrier, const Clock& clock);
  ~PostgresEngine() override;

  // Returns the config; nullopt when there is none.
  Result<std::optional<StoredConfig>> LoadConfig(std::string_view name) const;
  // Checks `config` (plugin name, URL, statements) and, when verify_connection is set,
  // connects with it and runs SELECT 1; then stages it, expecting the stored bytes
  // `previous`. invalid_argument for bad fields; unavailable with libpq's message (no password)
  // when verification fails.
  Status StageConfig(const DatabaseConfig& config, const std::optional<Bytes>& previous,
                     storage::WriteBatch& batch);
  void StageConfigDelete(std::string_view name, storage::WriteBatch& batch);
  Result<std::vector<std::string>> ListConfigs() const;
  // Closes the config's pooled connections; the next use opens new ones.
  void ResetConnections(std::string_view name);

  // Sets a new random password for the config's user in PostgreSQL (the config's
  // root_rotation_statements, default ALTER ROLE ... WITH PASSWORD) and, once that committed,
  // stages the config with it. Afterwards only keyward knows the password.
  // NOTE: if the storage commit fails after the ALTER ROLE, the new password is lost and the
  // operator must reset it by hand and write the config again.
  Status RotateRoot(std::string_view name, storage::WriteBatch& batch);

  Result<std::optional<DynamicRole>> LoadRole(std::string_view name) const;
  // Checks `role` (statements parse, TTLs, elevated limits) and stages it.
  Status StageRole(const DynamicRole& role, storage::WriteBatch& batch);
  void StageRoleDelete(std::string_view name, storage::WriteBatch& batch);
  Result<std::vector<std::string>> ListRoles() const;

  // Creates a PostgreSQL role for `role` that expires at `expire_time` (Unix seconds): runs
  // the creation statements in one transaction (rolling back and running
  // rollback_statements on failure). not_found for an unknown role; permission_denied when the
  // config's allowed_roles exclude it; failed_precondition with PostgreSQL's error.
  Result<IssuedCredential> CreateCredential(const DynamicRole& role,
                                            std::string_view display_name,
                                            std::int64_t expire_time);

  // Returns the engine_data a lease needs to renew and revoke a credential of `role`.
  static nlohmann::json LeaseData(const DynamicRole& role, std::string_view username);

  // LeaseEngine. Revocation: ALTER ROLE NOLOGIN, terminate the role's sessions, then the
  // role's revocation_statements or else REASSIGN OWNED + DROP OWNED in each database where
  // the role has dependencies and DROP ROLE; each step committed on its own. A role that no
  // longer exists counts as revoked.
  Status RevokeCredential(const lease::Lease& lease) override;
  Status RenewCredential(const lease::Lease& lease, std::int64_t new_expire_time) override;

  // A credential created for a request whose lease is not committed yet. The router reruns a
  // handler whose commit lost a race, and the rerun reuses the credential instead of creating
  // another PostgreSQL role. A request that never commits leaves it here to be dropped.
  struct PendingCredential {
    std::string username;
    SecretBuffer password;
    lease::Lease lease;
    std::chrono::steady_clock::time_point created;
  };
  // Remembers `pending` under `request_id`, replacing any earlier entry.
  void RememberPending(const std::string& request_id, PendingCredential pending);
  // Returns a copy of the credential remembered for `request_id`, if any.
  std::optional<PendingCredential> FindPending(const std::string& request_id);
  void ForgetPending(const std::string& request_id);
  // Removes and returns the entries older than `max_age`: their requests never committed, or
  // committed and forgot to say so (the caller checks whether the lease exists).
  std::vector<lease::Lease> TakeAbandoned(std::chrono::seconds max_age);

  // Static roles (defined in static_roles.cpp).
  Result<std::optional<StoredStaticRole>> LoadStaticRole(std::string_view name) const;
  Result<std::vector<std::string>> ListStaticRoles() const;
  // Checks `role` and stages it, expecting the stored bytes `previous` (nullopt: a new role).
  // A new role must name a PostgreSQL user that exists and is not the config's own user, and
  // its password is rotated at once, so that afterwards only keyward knows it. An update
  // keeps the password and may not change db_name or username (invalid_argument).
  Status StageStaticRole(StaticRole role, const std::optional<Bytes>& previous,
                         storage::WriteBatch& batch);
  void StageStaticRoleDelete(std::string_view name, storage::WriteBatch& batch);
  // Sets a new random password for the static role's user in PostgreSQL and, once that
  // committed there, stages the role with it. not_found for an unknown role.
  // NOTE: if the storage commit fails after the ALTER ROLE, PostgreSQL has a password that
  // keyward did not store; rotating the role again repairs it.
  Status RotateStaticRole(std::string_view name, storage::WriteBatch& batch);
  // Rotates every static role whose rotation_period has elapsed by the engine's clock, each
  // in its own commit through `commit` (audit path database/rotate-role/<name>). A commit
  // that aborts on a concurrent write rotates that role again. Returns the first error after
  // trying every due role; each failure is logged.
  Status RotateDueStaticRoles(const lease::InternalCommit& commit);

  // Returns the pool of config `name`; exposed for the static-role rotation.
  Result<std::shared_ptr<ConnectionPool>> PoolFor(const StoredConfig& stored);

  storage::Storage& storage() { return storage_; }
  Barrier& barrier() { return barrier_; }
  const Clock& clock() const { return clock_; }

 private:
  struct PoolEntry {
    Bytes fingerprint;  // SHA-256 of the stored config record the pool was built from
    std::shared_ptr<ConnectionPool> pool;
  };

  Result<StoredConfig> RequireConfig(std::string_view name) const;
  // Runs `role`'s rotation statements with a new password in one transaction and returns
  // the role with that password and the current time as last_vault_rotation.
  Result<StaticRole> ChangeStaticPassword(StaticRole role);
  // Rotates one due role and commits it; reruns on aborted commits.
  Status RotateOneDue(std::string_view name, const lease::InternalCommit& commit);
  Status RunStatements(PostgresConnection& connection, const std::vector<std::string>& statements,
                       const TemplateValues& values);
  // Runs REASSIGN OWNED and DROP OWNED in every database where `username` has dependencies.
  Status DropOwned(ConnectionPool& pool, PostgresConnection& connection,
                   std::string_view username);

  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;
  EncryptedRecords configs_;
  EncryptedRecords roles_;
  EncryptedRecords static_roles_;

  std::mutex pending_mutex_;
  std::map<std::string, PendingCredential> pending_;  // guarded by pending_mutex_

  std::mutex pools_mutex_;
  std::map<std::string, PoolEntry, std::less<>> pools_;  // guarded by pools_mutex_
};

}  // namespace kw::vault::database
