#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "hsm/token.hpp"
#include "storage/storage.hpp"

namespace kw::vault::audit {

// What the request pipeline knows about one request and its response. Bodies arrive in
// clear; AuditLog replaces every secret value before anything is stored.
struct AuditEntry {
  std::string request_id;
  TimePoint time;
  std::string client_address;
  std::string accessor;   // the token's accessor; empty when no valid token was presented
  // Accessors from the root of the token's delegation chain down to the token itself.
  std::vector<std::string> delegation_chain;
  std::string operation;  // read, create, update, patch, delete, list
  std::string method;     // the HTTP method as received
  std::string path;       // the request path below /v1/, normalised
  int status = 0;         // the HTTP status sent
  nlohmann::json request_body;   // null when there was none
  nlohmann::json response_body;  // null when there was none
};

// Outcome of AuditLog::Verify.
struct VerifyReport {
  bool ok = false;
  std::uint64_t records_checked = 0;
  std::uint64_t head_sequence = 0;  // the sequence number the authenticated head names
  // The first sequence number whose record is missing, edited, reordered or after which the
  // log was truncated; nullopt when ok. An edited record N < head is reported as N + 1, whose
  // prev_hash no longer matches, because records carry no MAC of their own. A head that fails
  // its MAC or names a later record reports last record + 1: the tail cannot be vouched for.
  std::optional<std::uint64_t> first_broken_sequence;
  std::string reason;  // empty when ok, otherwise what failed, such as "previous hash mismatch"
};

// The append-only, hash-chained audit log, stored in the same Storage as the data so that a
// data change and its record commit in one transaction. Each record holds its sequence number
// and the SHA-256 of the previous record's canonical bytes; the head (last sequence and hash)
// is authenticated with an HMAC made in the HSM, so truncating the tail is detected too.
// Secret values are replaced by "hmac-sha256:<hex>" computed in the HSM. Thread-safe.
class AuditLog {
 public:
  // Loads the chain head from `storage`. `hmac_key` is the HSM key for value HMACs and the
  // head MAC. With `require_head` (an initialised vault, whose initialisation was recorded),
  // a log without head and records counts as erased: appends are rejected and Verify reports
  // it. All references must outlive the log.
  static Result<std::unique_ptr<AuditLog>> Open(storage::Storage& storage, hsm::Token& token,
                                                hsm::KeyHandle hmac_key, const Clock& clock,
                                                bool require_head = false);

  virtual ~AuditLog() = default;

  // Redacts `entry` (HSM calls, on the caller's thread) and sets `batch.finalizer` so that
  // the record is chained and written in the batch's transaction. The caller then commits the
  // batch; the record is durable exactly when the batch is. A finalizer already set on the
  // batch runs first, then the audit one. A batch that aborts or rolls back consumes no
  // sequence number. Fails on an HSM error, a body nested deeper than 128 levels, or a log
  // that rejects appends (see Open). The caller must then not commit the batch (fail closed).
  virtual Status Attach(const AuditEntry& entry, storage::WriteBatch& batch) = 0;

  // Returns "hmac-sha256:<hex>" of `value` under the audit HMAC key, as stored in records.
  // invalid_argument when `value` starts with byte 0xFF, which is never valid UTF-8 and is
  // reserved for the head MAC.
  virtual Result<std::string> Hash(std::string_view value) = 0;

  // Recomputes the whole chain from storage, 1000 records per read, and checks it against the
  // authenticated head: sequence continuity from 1, each prev_hash, canonical form, then the
  // last record against the head's sequence, hash and MAC. Stops at the first break. Records
  // appended while it runs are left to the next call. Errors only when storage or the HSM
  // fail; a broken chain is a report with ok false.
  virtual Result<VerifyReport> Verify() = 0;
};

}  // namespace kw::vault::audit
