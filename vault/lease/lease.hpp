#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/result.hpp"
#include "storage/storage.hpp"

// Leases: the life of every dynamic credential. The lease manager owns the records, the
// expiry schedule and the revocation queue. An engine (database/) owns the credential and
// implements LeaseEngine, so that the manager can renew and revoke it.
namespace kw::vault::lease {

// One lease. Times are Unix seconds; 0 means "none".
struct Lease {
  std::string id;              // "<mount>/creds/<role>/<random>", e.g. database/creds/app/Xy..
  std::string mount;           // "database"
  std::string role;            // the engine's role name, for per-role quotas
  std::string token_accessor;  // the token that created it; revoking the token revokes it
  std::int64_t issue_time = 0;
  std::int64_t ttl = 0;               // the TTL granted at issue
  std::int64_t expire_time = 0;
  std::int64_t max_expire_time = 0;   // renewals never go past it
  std::int64_t last_renewal = 0;
  bool renewable = true;
  // Engine data that renewal and revocation need, such as the database config name and the
  // role name the engine created. Stored encrypted with the lease and never returned by
  // lookups. Must not contain the credential's password.
  nlohmann::json engine_data;

  // Revocation state. A lease being revoked stays stored until its credential is gone.
  bool revoking = false;
  std::int32_t attempts = 0;          // failed revocation attempts so far
  std::int64_t next_attempt = 0;      // when the next attempt is due
  std::string last_error;             // the last attempt's error, without secrets
};

// The interface of an engine that issues leased credentials. Calls may block on the network,
// so the manager makes them without holding its locks, from request threads (sync revoke,
// renew) and from its worker thread. Both calls must be idempotent, because after a crash the
// manager retries a revocation whose outcome it never recorded.
class LeaseEngine {
 public:
  virtual ~LeaseEngine() = default;
  // Removes the credential. OK when it is already gone.
  virtual Status RevokeCredential(const Lease& lease) = 0;
  // Extends the credential to `new_expire_time` (PostgreSQL: VALID UNTIL).
  virtual Status RenewCredential(const Lease& lease, std::int64_t new_expire_time) = 0;
};

}  // namespace kw::vault::lease
