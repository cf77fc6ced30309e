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

// Static roles of the database engine (Vault's database/static-roles): an existing PostgreSQL
// user whose password keyward sets to a new random value every rotation_period. The engine's
// member functions that serve them are defined in static_roles.cpp.
namespace kw::vault::database {

// Shortest rotation_period accepted, in seconds (Vault's minimum too).
inline constexpr std::int64_t kMinRotationPeriod = 5;
// The rotation statement of a static role that names none.
inline constexpr std::string_view kDefaultStaticRotationStatement =
    "ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}'";

// A static role: database/static-roles/<name>. Times and periods are seconds.
struct StaticRole {
  std::string name;
  std::string db_name;
  std::string username;  // the PostgreSQL user; cannot change once the role exists
  std::int64_t rotation_period = 0;
  std::vector<std::string> rotation_statements;  // empty: kDefaultStaticRotationStatement
  SecretBuffer password;                         // returned only by static-creds
  std::int64_t last_vault_rotation = 0;          // Unix time of the last password change

  std::int64_t NextRotation() const { return last_vault_rotation + rotation_period; }
  // Returns the seconds until the next rotation at Unix time `now`, at least 0.
  std::int64_t Ttl(std::int64_t now) const;
  // Returns the static-roles read view (Vault's fields, no password).
  nlohmann::json ToPublicJson(std::int64_t now) const;
  // Returns the static-creds view: username, password, last_vault_rotation, rotation_period,
  // ttl. It contains the password.
  nlohmann::json ToCredsJson(std::int64_t now) const;
};

// A static role with the stored bytes it was read from, for check-and-set writes.
struct StoredStaticRole {
  StaticRole role;
  Bytes raw;
};

// Checks the fields a write may set: name, db_name, username, rotation_period and the
// statement templates. invalid_argument naming the field otherwise.
Status ValidateStaticRole(const StaticRole& role);

// Serialises `role`, password included, for EncryptedRecords. The text is in a SecretBuffer.
SecretBuffer EncodeStaticRole(const StaticRole& role);
Result<StaticRole> DecodeStaticRole(std::string_view name, const SecretBuffer& plain);

}  // namespace kw::vault::database
