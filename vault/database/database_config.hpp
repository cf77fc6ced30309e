#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::database {

// The only plugin keyward implements, under Vault's name.
inline constexpr std::string_view kPostgresPlugin = "postgresql-database-plugin";
// Vault's default for max_open_connections.
inline constexpr std::int64_t kDefaultMaxOpenConnections = 4;

// A database connection: database/config/<name>.
struct DatabaseConfig {
  std::string name;
  std::string plugin_name = std::string(kPostgresPlugin);
  // libpq URI or key=value string; {{username}} and {{password}} stand for the fields below.
  std::string connection_url;
  std::string username;
  SecretBuffer password;  // never returned by reads
  std::vector<std::string> allowed_roles;  // "*" allows every role
  bool verify_connection = true;
  std::int64_t max_open_connections = kDefaultMaxOpenConnections;
  std::vector<std::string> root_rotation_statements;
  std::int64_t root_rotation_time = 0;  // Unix seconds of the last rotate-root; 0: never

  // Returns whether `role` may use this connection.
  bool AllowsRole(std::string_view role) const;
  // Returns the read view: no password, the URL with any literal password redacted.
  nlohmann::json ToPublicJson() const;
};

// Names of configs and roles: 1 to 128 bytes of [A-Za-z0-9_.-]. invalid_argument otherwise.
Status ValidateObjectName(std::string_view kind, std::string_view name);

// Encrypted JSON records under one storage prefix, each sealed by the barrier with
// "keyward:<prefix><name>" as additional data, so a record copied to another name fails to
// decrypt. Thread-safe.
class EncryptedRecords {
 public:
  // `prefix` ends with '/', e.g. "database/config/".
  EncryptedRecords(storage::Storage& storage, Barrier& barrier, std::string prefix)
      : storage_(storage), barrier_(barrier), prefix_(std::move(prefix)) {}

  // A decrypted record and its stored bytes, for check-and-set writes.
  struct Loaded {
    SecretBuffer plain;
    Bytes raw;
  };

  Result<std::optional<Loaded>> Get(std::string_view name) const;
  // Stages `plain` as record `name`, expecting the stored bytes to be `previous` (nullopt:
  // absent), so a concurrent writer makes the commit fail with aborted.
  Status Stage(std::string_view name, std::span<const std::uint8_t> plain,
               const std::optional<Bytes>& previous, storage::WriteBatch& batch) const;
  void StageDelete(std::string_view name, storage::WriteBatch& batch) const;
  // Returns the names, sorted; not_found when there are none (Vault's LIST of nothing).
  Result<std::vector<std::string>> List() const;

 private:
  std::string Key(std::string_view name) const { return prefix_ + std::string(name); }
  std::string Aad(std::string_view name) const { return "keyward:" + prefix_ + std::string(name); }

  storage::Storage& storage_;
  Barrier& barrier_;
  const std::string prefix_;
};

// Serialises `config`, password included, for EncryptedRecords. The text is in a SecretBuffer.
SecretBuffer EncodeConfig(const DatabaseConfig& config);
Result<DatabaseConfig> DecodeConfig(std::string_view name, const SecretBuffer& plain);

}  // namespace kw::vault::database
