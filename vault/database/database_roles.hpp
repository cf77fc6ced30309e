#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"

namespace kw::vault::database {

// Longest PostgreSQL identifier (NAMEDATALEN - 1); longer names are silently truncated.
inline constexpr std::size_t kMaxRoleNameBytes = 63;
// Length of generated passwords, drawn from [A-Za-z0-9].
inline constexpr std::size_t kPasswordLength = 32;
// Elevated roles may not grant credentials for longer than this (seconds).
inline constexpr std::int64_t kMaxElevatedTtl = 3600;

// Vault's default creation statement shape is operator-supplied; these are keyward's defaults
// for the other statement kinds.
inline constexpr std::string_view kDefaultRenewStatement =
    "ALTER ROLE {{name}} VALID UNTIL {{expiration}}";
inline constexpr std::string_view kDefaultRotationStatement =
    "ALTER ROLE {{name}} WITH PASSWORD {{password}}";

// A dynamic role: database/roles/<name>. TTLs are seconds; 0 means the system default.
struct DynamicRole {
  std::string name;
  std::string db_name;
  std::vector<std::string> creation_statements;
  // Empty: the default revocation (NOLOGIN, terminate sessions, REASSIGN/DROP OWNED in each
  // database, DROP ROLE). Custom statements replace the last two steps only.
  std::vector<std::string> revocation_statements;
  std::vector<std::string> renew_statements;  // empty: kDefaultRenewStatement
  std::vector<std::string> rollback_statements;
  std::int64_t default_ttl = 0;
  std::int64_t max_ttl = 0;
  // Elevated roles need max_ttl <= kMaxElevatedTtl, and their credentials name the requester.
  bool elevated = false;

  nlohmann::json ToJson() const;
};

std::string EncodeRole(const DynamicRole& role);
Result<DynamicRole> DecodeRole(std::string_view name, std::string_view text);

// Returns a new PostgreSQL role name `v-<display>-<role>-<random>-<unix time>`, with display
// name and role name cut to 8 characters, everything outside [a-z0-9_] replaced by '_', and at
// most kMaxRoleNameBytes bytes.
std::string GenerateUsername(std::string_view display_name, std::string_view role_name,
                             std::int64_t now);

// Returns a new password of kPasswordLength characters from [A-Za-z0-9] (libsodium CSPRNG).
SecretBuffer GeneratePassword();

}  // namespace kw::vault::database
