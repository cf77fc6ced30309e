#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::auth {

// A token role (auth/token/roles/<name>): settings that auth/token/create/<name> applies.
struct TokenRole {
  std::string name;
  std::vector<std::string> allowed_policies;     // empty: any subset of the parent's
  std::vector<std::string> disallowed_policies;  // never granted through this role
  bool orphan = false;      // tokens have no parent; allowed_policies then bound them alone
  bool renewable = true;
  std::int64_t token_period = 0;
  std::int64_t token_explicit_max_ttl = 0;
  std::int64_t token_ttl = 0;
  std::int64_t token_num_uses = 0;
  bool token_no_default_policy = false;
  std::vector<std::string> token_bound_cidrs;
  std::string path_suffix;
};

// Stores token roles at `sys/token/role/<name>`, encrypted by the barrier with the name in
// the additional data. Thread-safe; storage and barrier must outlive it.
class TokenRoles {
 public:
  TokenRoles(storage::Storage& storage, Barrier& barrier) : storage_(storage), barrier_(barrier) {}

  // Returns the role. not_found when there is none.
  Result<TokenRole> Get(std::string_view name) const;
  // Stores `role` in `batch`. invalid_argument for a bad name or settings.
  Status StagePut(const TokenRole& role, storage::WriteBatch& batch) const;
  Status StageDelete(std::string_view name, storage::WriteBatch& batch) const;
  // Role names, sorted. not_found when there are none.
  Result<std::vector<std::string>> List() const;

  // Returns whether `name` is a valid role name: 1 to 128 of [a-z0-9._-] after lower-casing.
  static bool ValidName(std::string_view name);

 private:
  storage::Storage& storage_;
  Barrier& barrier_;
};

}  // namespace kw::vault::auth
