#pragma once

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::auth {

// The identity a request acts as, after authentication.
struct Identity {
  std::string accessor;
  std::vector<std::string> policies;
  bool root = false;
};

// Checks tokens. For now it stores one token, the root token, stored only as a SHA-256 hash
// (with its accessor) at `sys/token/root` and compared in constant time. The record is
// encrypted by the barrier, so whoever can write the database cannot swap in a hash of their
// own. Every request's credential check goes through Authenticate, so full token records and
// policies plug in here. Thread-safe; storage and barrier must outlive the store.
class TokenStore {
 public:
  TokenStore(storage::Storage& storage, Barrier& barrier) : storage_(storage), barrier_(barrier) {}

  // Reads the root token record into memory. Call at unseal.
  Status Load();

  // Replaces the root token with `token` in `batch`; the caller commits, then calls Load.
  // Returns the new accessor.
  Result<std::string> StageRootToken(const SecretBuffer& token, storage::WriteBatch& batch);

  // Returns the identity of `token`. unauthenticated when it is missing or unknown.
  Result<Identity> Authenticate(std::string_view token) const;

 private:
  storage::Storage& storage_;
  Barrier& barrier_;
  mutable std::mutex mutex_;
  std::optional<Bytes> root_hash_;  // guarded by mutex_
  std::string root_accessor_;       // guarded by mutex_
};

}  // namespace kw::vault::auth
