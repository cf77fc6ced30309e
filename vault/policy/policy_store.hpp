#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"
#include "vault/policy/acl.hpp"
#include "vault/policy/policy.hpp"

namespace kw::vault::policy {

// Storage key prefix of ACL policies: one record per policy at `sys/policy/acl/<name>`.
inline constexpr std::string_view kPolicyPrefix = "sys/policy/acl/";

// The ACL policies. Each is a record encrypted by the barrier with its name in the additional
// data, so a record copied to another name fails to decrypt. "root" is built in and never
// stored. "default" is built in until a document is written over it, and cannot be deleted.
//
// Parsed policies and the ACLs of policy sets are cached. Writes are staged in a batch that
// the caller commits; after the commit the caller must call Invalidate. A generation counter
// keeps a reader that loaded a document before the commit from caching it after Invalidate.
// Thread-safe; storage and barrier must outlive the store.
class PolicyStore {
 public:
  PolicyStore(storage::Storage& storage, Barrier& barrier, const Clock& clock)
      : storage_(storage), barrier_(barrier), clock_(clock) {}

  // Returns the policy `name` (normalised first). Errors: not_found when it does not exist,
  // invalid_argument for an invalid name, data_loss when the record fails to decrypt or parse.
  Result<std::shared_ptr<const Policy>> Get(std::string_view name) const;

  // Returns every policy name, sorted, "default" and "root" included.
  Result<std::vector<std::string>> List() const;

  // Adds the write of `policy` to `batch`, after checking that its document parses to the
  // same name. invalid_argument for "root" or an invalid document.
  Status StagePut(const Policy& policy, storage::WriteBatch& batch) const;

  // Adds the removal of policy `name` to `batch`. Removing a policy that does not exist is
  // not an error. invalid_argument for "root" and "default".
  Status StageDelete(std::string_view name, storage::WriteBatch& batch) const;

  // Drops the cached copy of `name` and every cached ACL. Call after the commit of a write
  // or delete of `name` (the router's after_commit).
  void Invalidate(std::string_view name);

  // Returns the ACL of a token's policies, cached per set of names. "root" among them gives
  // the root ACL, and a name that is invalid or has no policy grants nothing. Errors only when a
  // stored policy cannot be read (unavailable, data_loss), so a request fails closed.
  Result<std::shared_ptr<const Acl>> AclFor(const std::vector<std::string>& names) const;

 private:
  // Reads and parses the stored record of `name`, or returns the built-in default when
  // "default" is not stored. not_found when absent.
  Result<std::shared_ptr<const Policy>> Load(const std::string& name) const;

  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;

  mutable std::mutex mutex_;
  // Incremented by every Invalidate. Guarded by mutex_.
  mutable std::uint64_t generation_ = 0;
  // Parsed policies by name, null for a name with no policy. Guarded by mutex_.
  mutable std::map<std::string, std::shared_ptr<const Policy>, std::less<>> policies_;
  // ACLs by their sorted, newline-joined policy names. Guarded by mutex_.
  mutable std::map<std::string, std::shared_ptr<const Acl>, std::less<>> acls_;
};

}  // namespace kw::vault::policy
