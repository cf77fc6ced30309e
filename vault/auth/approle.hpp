#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/clock.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "storage/storage.hpp"
#include "vault/auth/token_store.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::auth {

// An AppRole role. Durations are seconds and 0 means "none" (or "the system default" for
// token_ttl and token_max_ttl); counts of 0 mean unlimited.
struct AppRoleRole {
  std::string name;     // lower-case
  std::string role_id;  // unique across roles
  std::vector<std::string> token_policies;  // lower-case, sorted, unique
  std::int64_t token_ttl = 0;
  std::int64_t token_max_ttl = 0;
  std::int64_t token_num_uses = 0;
  std::int64_t token_period = 0;
  std::vector<std::string> token_bound_cidrs;
  bool token_no_default_policy = false;
  std::int64_t secret_id_ttl = 0;
  std::int64_t secret_id_num_uses = 0;
  bool bind_secret_id = true;
  std::vector<std::string> secret_id_bound_cidrs;
};

// Changes to a role: set fields replace the stored value (or the default for a new role).
struct AppRoleUpdate {
  std::optional<std::vector<std::string>> token_policies;
  std::optional<std::int64_t> token_ttl;
  std::optional<std::int64_t> token_max_ttl;
  std::optional<std::int64_t> token_num_uses;
  std::optional<std::int64_t> token_period;
  std::optional<std::vector<std::string>> token_bound_cidrs;
  std::optional<bool> token_no_default_policy;
  std::optional<std::int64_t> secret_id_ttl;
  std::optional<std::int64_t> secret_id_num_uses;
  std::optional<bool> bind_secret_id;
  std::optional<std::vector<std::string>> secret_id_bound_cidrs;
};

// A request to generate a secret ID. Unset ttl and num_uses take the role's values.
struct SecretIdRequest {
  std::map<std::string, std::string> metadata;
  std::vector<std::string> cidr_list;
  std::vector<std::string> token_bound_cidrs;
  std::optional<std::int64_t> ttl;
  std::optional<std::int64_t> num_uses;
};

// The stored form of a secret ID: everything but the secret ID itself, of which only the
// SHA-256 hash is kept. Times are Unix seconds; 0 means "none".
struct SecretIdEntry {
  std::string accessor;
  std::string hash;  // lower-case hex SHA-256 of the secret ID
  std::string role_name;
  std::int64_t creation_time = 0;
  std::int64_t last_updated_time = 0;
  std::int64_t expiration_time = 0;  // 0: never expires
  std::int64_t ttl = 0;
  std::int64_t num_uses = 0;  // uses left; 0: unlimited
  std::map<std::string, std::string> metadata;
  std::vector<std::string> cidr_list;
  std::vector<std::string> token_bound_cidrs;
};

// A secret ID just generated: the only moment its text exists outside the caller.
struct GeneratedSecretId {
  SecretBuffer secret_id;
  SecretIdEntry entry;
};

// The AppRole auth method, mounted at auth/approle/. Storage layout, all below auth/approle/:
//   role/<name>                 the role, barrier-encrypted with its key as additional data
//   role-id/<sha256 of role_id> the role's name, a plain index; login trusts it only when the
//                               encrypted role record contains the same role_id
//   secret-id/<name>/<hash>     a secret ID (hash = hex SHA-256 of it), barrier-encrypted with
//                               its key as additional data
//   accessor/<name>/<accessor>  the hash of the secret ID with that accessor, a plain index
//                               checked against the record it leads to
// Secret IDs are 256 random bits written as 64 lower-case hex digits (a UUID holds only 122
// random bits); role IDs and accessors are random UUIDs, as in Vault.
//
// Methods that change state stage writes in a WriteBatch that the caller commits; they add
// Expect checks on what they read, so a concurrent change aborts the commit instead of being
// lost. Thread-safe; storage, barrier and clock must outlive the engine.
class AppRole {
 public:
  AppRole(storage::Storage& storage, Barrier& barrier, const Clock& clock)
      : storage_(storage), barrier_(barrier), clock_(clock) {}

  // Returns `name` lower-cased. invalid_argument unless it is 1 to 4095 bytes of letters,
  // digits, '_', '-' and '.', starting and ending with a letter, digit or '_' (Vault's rule).
  static Result<std::string> NormalizeRoleName(std::string_view name);

  // Returns the role names, sorted. Empty when there is none.
  Result<std::vector<std::string>> ListRoles() const;

  // not_found for an unknown role.
  Result<AppRoleRole> ReadRole(std::string_view name) const;

  // Creates the role (with a random role_id) or updates it. invalid_argument names the field
  // that is wrong; the stored role is untouched on error.
  Result<AppRoleRole> WriteRole(std::string_view name, const AppRoleUpdate& update,
                                storage::WriteBatch& batch) const;

  // Deletes the role with its role_id index and every secret ID. not_found for an unknown
  // role.
  Status DeleteRole(std::string_view name, storage::WriteBatch& batch) const;

  // Replaces the role's role_id. already_exists when another role has it.
  Status SetRoleId(std::string_view name, std::string_view role_id,
                   storage::WriteBatch& batch) const;

  // Generates a secret ID for the role. invalid_argument when the role does not exist, does
  // not bind secret IDs, or the request exceeds what the role allows (ttl, num_uses, or
  // CIDR blocks outside the role's).
  Result<GeneratedSecretId> GenerateSecretId(std::string_view name, const SecretIdRequest& request,
                                             storage::WriteBatch& batch) const;

  // Returns the accessors of the role's secret IDs, sorted. invalid_argument for an unknown
  // role.
  Result<std::vector<std::string>> ListSecretIdAccessors(std::string_view name) const;

  // not_found when the role has no such secret ID or it has expired.
  Result<SecretIdEntry> LookupSecretId(std::string_view name, const SecretBuffer& secret_id) const;
  Result<SecretIdEntry> LookupSecretIdAccessor(std::string_view name,
                                               std::string_view accessor) const;

  // Destroys the secret ID; nothing happens (and no error) when there is none.
  Status DestroySecretId(std::string_view name, const SecretBuffer& secret_id,
                         storage::WriteBatch& batch) const;
  Status DestroySecretIdAccessor(std::string_view name, std::string_view accessor,
                                 storage::WriteBatch& batch) const;

  // Checks a login from `remote_address` and returns the token the caller should create.
  // Takes one use of a secret ID with limited uses in `batch`, expecting the record's current
  // bytes, and deletes the record after its last use. An unknown role_id, a wrong, expired or
  // missing secret ID all give invalid_argument "invalid role ID or secret ID" after the same
  // storage reads and hash computations. invalid_argument naming the address when a CIDR
  // bound excludes it.
  Result<TokenRequest> Login(std::string_view role_id, const SecretBuffer& secret_id,
                             std::string_view remote_address, storage::WriteBatch& batch) const;

  // Deletes the expired secret IDs of every role. Returns how many it deleted.
  Result<std::size_t> TidySecretIds(storage::WriteBatch& batch) const;

  // The number of SHA-256 computations made so far, for tests that check that failed logins
  // do the same work.
  std::uint64_t hashes_computed() const { return hashes_computed_.load(); }

 private:
  struct StoredRole {
    AppRoleRole role;
    Bytes raw;  // the sealed record as read, for Expect
  };
  struct StoredSecretId {
    SecretIdEntry entry;
    Bytes raw;
  };

  std::int64_t Now() const;
  std::string HashHex(ByteSpan bytes) const;
  Result<std::optional<StoredRole>> LoadRole(std::string_view name) const;
  Result<StoredRole> RequireRole(std::string_view name) const;
  Result<std::optional<StoredSecretId>> LoadSecretId(std::string_view name,
                                                     std::string_view hash) const;
  Status StageRole(const AppRoleRole& role, const std::optional<Bytes>& previous,
                   storage::WriteBatch& batch) const;
  Status StageRoleIdIndex(const AppRoleRole& role, storage::WriteBatch& batch) const;
  void StageSecretIdRemoval(const SecretIdEntry& entry, const Bytes& raw,
                            storage::WriteBatch& batch) const;
  Result<Bytes> PlaceholderRole() const;

  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;
  mutable std::atomic<std::uint64_t> hashes_computed_{0};
  mutable std::mutex placeholder_mutex_;
  // A sealed role record that unknown role IDs decrypt, so that they cost what known ones do.
  mutable std::optional<Bytes> placeholder_role_;  // guarded by placeholder_mutex_
};

}  // namespace kw::vault::auth
