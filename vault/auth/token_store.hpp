#pragma once

#include <cstdint>
#include <functional>
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

namespace kw::vault::auth {

// The stored form of a token: everything but the token itself, of which only the SHA-256 hash
// is kept. Times are Unix seconds; durations are seconds; 0 means "none".
struct TokenEntry {
  std::string accessor;
  std::string hash;  // lower-case hex SHA-256 of the token
  std::vector<std::string> policies;  // normalised, sorted, unique; "root" only for root tokens
  std::map<std::string, std::string> meta;
  std::string display_name;
  std::string path;  // the route that created it: auth/token/create, auth/approle/login, ...
  std::int64_t creation_time = 0;
  std::int64_t creation_ttl = 0;
  std::int64_t expire_time = 0;      // 0: never expires (root tokens only)
  std::int64_t explicit_max_ttl = 0;
  std::int64_t max_expire_time = 0;  // renewals never go past it; 0: no cap
  std::int64_t period = 0;
  bool renewable = false;
  std::int64_t num_uses = 0;  // uses left; 0: unlimited
  std::string parent;         // the parent's accessor; empty for orphans
  // Accessors from the root of the delegation chain down to this token, this token last.
  std::vector<std::string> chain;
  // Path globs the token may touch at most, one list per delegation step that set any: a
  // path must match a glob of every list. Empty: only the policies limit it.
  std::vector<std::vector<std::string>> bound_paths;
  std::vector<std::string> bound_cidrs;  // client addresses the token may be used from
  std::string role;       // the token role it was created against, if any
  std::string entity_id;  // the login method's identity name (role name, SPIFFE ID), if any

  bool root() const;
  bool orphan() const { return parent.empty(); }
  // Returns the token's remaining life at `now` in seconds; 0 for tokens that never expire.
  std::int64_t Ttl(std::int64_t now) const;
};

// The settings a caller requests for a new token. Unset optionals take the defaults.
struct TokenRequest {
  std::vector<std::string> policies;  // as given; normalised by Create
  bool no_default_policy = false;
  std::map<std::string, std::string> meta;
  std::string display_name;
  std::string path = "auth/token/create";
  std::optional<std::int64_t> ttl;
  std::optional<std::int64_t> explicit_max_ttl;
  std::optional<std::int64_t> period;
  std::optional<bool> renewable;
  std::int64_t num_uses = 0;
  bool orphan = false;  // create without a parent
  std::vector<std::string> bound_paths;
  std::vector<std::string> bound_cidrs;
  std::string role;
  std::string entity_id;
  // A caller-chosen token (root tokens and tests only); empty: random.
  std::optional<SecretBuffer> id;
};

// The identity a request acts as, after authentication.
struct Identity {
  std::string accessor;
  std::vector<std::string> policies;
  bool root = false;
  // The full record; null only for requests that carried no valid token.
  std::shared_ptr<const TokenEntry> entry;
};

// A token just created: the only moment its text exists outside the caller.
struct CreatedToken {
  SecretBuffer token;
  std::shared_ptr<const TokenEntry> entry;
};

// System-wide TTL limits, as Vault's default_lease_ttl and max_lease_ttl.
struct TokenLimits {
  std::int64_t default_ttl = 32 * 24 * 3600;
  std::int64_t max_ttl = 32 * 24 * 3600;
};

// Returns a policy name as tokens, roles and auth methods store it: ASCII whitespace trimmed
// and lower-cased, once, before any comparison.
std::string NormalizePolicyName(std::string_view raw);

// Returns invalid_argument when `policies` names `root` in any spelling: auth methods and
// roles check their token_policies with it when they are written, so a role that could
// never log in is refused up front. `field` names the field in the message.
Status CheckAttachablePolicies(const std::vector<std::string>& policies, std::string_view field);

// The token store. Each token is a record at `sys/token/accessor/<accessor>` that contains the
// token's hash, encrypted by the barrier with the accessor in its additional data. A plain
// index at `sys/token/hash/<hash>` finds the accessor of a presented token. Authentication
// then compares the record's hash in constant time, so a row written into the database cannot
// grant anything. `sys/token/children/<parent>/<child>` lists children for tree revocation and
// `sys/token/expiry/<20-digit expire time>/<accessor>` orders tokens for the sweeper.
//
// Methods that change state stage their writes in a WriteBatch that the caller commits
// (with the request's audit record); they read the current state from storage and add
// Expect checks, so a concurrent change aborts the commit instead of being lost.
// Thread-safe; storage, barrier and clock must outlive the store.
class TokenStore {
 public:
  TokenStore(storage::Storage& storage, Barrier& barrier, const Clock& clock,
             TokenLimits limits = {})
      : storage_(storage), barrier_(barrier), clock_(clock), limits_(limits) {}

  // Reads the current root token pointer. Call at unseal.
  Status Load();

  // Adds a root token (`token`, never expiring, policies ["root"]) to `batch`, and revokes the
  // root token a previous StageRootToken made. Returns the new accessor.
  Result<std::string> StageRootToken(const SecretBuffer& token, storage::WriteBatch& batch);

  // Returns the identity of `token` used from `remote_address`. unauthenticated when the token
  // is missing, malformed, unknown, expired, or bound to other addresses. A token with limited
  // uses has one use taken in `batch`, and its last use revokes it there. With `batch` null
  // (checks before a body is read) no use is taken.
  Result<Identity> Authenticate(std::string_view token, std::string_view remote_address,
                                storage::WriteBatch* batch) const;

  // Creates a token as a child of `parent`, or an orphan when request.orphan (the caller
  // decides who may create orphans). Unless the parent is a root token, delegation applies.
  // The policies must be a subset of the parent's. TTL and explicit max TTL are capped at the
  // parent's remaining life and num_uses at its remaining uses. The parent's bounds carry over.
  // permission_denied or invalid_argument name the rule broken.
  Result<CreatedToken> Create(const TokenEntry& parent, TokenRequest request,
                              storage::WriteBatch& batch) const;

  // Creates a token for a login method (AppRole, certificate): an orphan with no parent, so
  // no delegation rules apply, and `default` added unless request.no_default_policy.
  Result<CreatedToken> CreateForLogin(TokenRequest request, storage::WriteBatch& batch) const;

  Result<std::shared_ptr<const TokenEntry>> LookupToken(std::string_view token) const;
  Result<std::shared_ptr<const TokenEntry>> LookupAccessor(std::string_view accessor) const;

  // Extends the token's life by `increment` seconds (0: its creation TTL or period), capped
  // at its max expire time. invalid_argument when it is not renewable.
  Result<std::shared_ptr<const TokenEntry>> Renew(std::string_view accessor,
                                                  std::int64_t increment,
                                                  storage::WriteBatch& batch) const;

  // Revokes the token and, unless `orphan_children`, every descendant; with
  // `orphan_children` its direct children become orphans. Returns the accessors revoked, so
  // that the caller can revoke their leases in the same batch.
  Result<std::vector<std::string>> Revoke(std::string_view accessor, bool orphan_children,
                                          storage::WriteBatch& batch) const;

  // Revokes up to `limit` tokens that expired at or before now, with their descendants.
  // Returns the accessors revoked.
  Result<std::vector<std::string>> SweepExpired(std::size_t limit,
                                                storage::WriteBatch& batch) const;

  // Removes index entries that point to no token (left by crashes of older versions or by
  // manual edits). Returns how many were removed.
  Result<std::size_t> Tidy(storage::WriteBatch& batch) const;

  // Sets what runs, in the same batch, for the accessors of every token revoked (by Revoke,
  // the sweeper, a last use or a root token replacement): the lease manager revokes their
  // leases there. Call before the store is used.
  using RevocationHook =
      std::function<Status(const std::vector<std::string>& accessors, storage::WriteBatch& batch)>;
  void SetRevocationHook(RevocationHook hook) { revocation_hook_ = std::move(hook); }

  const Clock& clock() const { return clock_; }
  const TokenLimits& limits() const { return limits_; }

 private:
  Result<std::shared_ptr<const TokenEntry>> ReadEntry(std::string_view accessor,
                                                      std::optional<Bytes>* raw) const;
  Status StageEntry(const TokenEntry& entry, const std::optional<Bytes>& previous,
                    storage::WriteBatch& batch) const;
  Status StageRemoval(const TokenEntry& entry, storage::WriteBatch& batch) const;
  // Marks that a child was added under `accessor`: a revocation that listed the children
  // before then aborts at commit (RevokeTree expects the generation it read). The marker is
  // random and written without reading it, so creations under one parent never conflict.
  void StageGenerationChange(std::string_view accessor, storage::WriteBatch& batch) const;
  Status RevokeTree(const TokenEntry& top, bool orphan_children,
                    std::vector<std::string>& revoked, storage::WriteBatch& batch) const;
  Status RunRevocationHook(const std::vector<std::string>& revoked,
                           storage::WriteBatch& batch) const;

  // Decrypted records by accessor, each with the stored bytes it came from. A record is used
  // only while storage still contains those exact bytes. Cleared when it reaches kCacheLimit.
  static constexpr std::size_t kCacheLimit = 20'000;

  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;
  const TokenLimits limits_;
  RevocationHook revocation_hook_;
  mutable std::mutex cache_mutex_;
  mutable std::map<std::string, std::pair<Bytes, std::shared_ptr<const TokenEntry>>, std::less<>>
      cache_;  // guarded by cache_mutex_
};

}  // namespace kw::vault::auth
