#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/auth/token_store.hpp"

// Live tokens per auth mount and role, for sys/metrics. One decimal count per mount and role
// is stored at `sys/token/count/<mount>/<role>` (role empty for tokens made without one).
// Each count changes in the finalizer of the batch that creates or removes the token, so it
// moves only when that batch commits, and it is read and written inside the writer's
// transaction: concurrent token creations never abort each other over it.
namespace kw::vault::auth {

inline constexpr std::string_view kTokenCountPrefix = "sys/token/count/";

// Returns the auth mount that made the token, from its creation path: "token", "approle",
// "cert", or "other" for any other path.
std::string_view TokenMountOf(const TokenEntry& entry);

// Returns the role that the token was made for: the token role, the AppRole role name or the
// certificate role name. Empty when there is none. All of them are names an operator chose.
std::string TokenRoleOf(const TokenEntry& entry);

// Stages `delta` (+1 for a new token, -1 for a removed one) on the count of the token's mount
// and role. Changes staged into one batch are summed into one finalizer, whatever their
// number. A count never goes below 0.
void StageTokenCountChange(const TokenEntry& entry, std::int64_t delta,
                           storage::WriteBatch& batch);

struct TokenCount {
  std::string mount;
  std::string role;
  std::int64_t count = 0;
};

// Reads every stored count, one storage row per mount and role, in key order.
// NOTE: tokens stored before these counts existed are not counted. Removing one of them
// lowers its role's count, which stops at 0.
Result<std::vector<TokenCount>> ReadTokenCounts(storage::Storage& storage);

}  // namespace kw::vault::auth
