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
#include "vault/audit/merkle.hpp"
#include "vault/audit/signed_note.hpp"

namespace kw::vault::audit {

// What the request pipeline knows about one request and its response. Bodies arrive in
// clear; AuditLog replaces every secret value before anything is stored.
struct AuditEntry {
  std::string request_id;
  TimePoint time;
  std::string client_address;
  // The SPIFFE ID in the URI SAN of the client's verified TLS certificate; empty without one.
  std::string client_spiffe_id;
  std::string accessor;   // the token's accessor; empty when no valid token was presented
  // Accessors from the root of the token's delegation chain down to the token itself.
  std::vector<std::string> delegation_chain;
  std::string operation;  // read, create, update, patch, delete, list
  std::string method;     // the HTTP method as received
  std::string path;       // the request path below /v1/, normalised
  std::string mount;      // the mount that served the path, such as "secret/"; empty for none
  int status = 0;         // the HTTP status sent
  std::string error;      // the error messages sent, joined by "; "; empty on success
  nlohmann::json request_body;   // null when there was none
  nlohmann::json response_body;  // null when there was none
};

// Returns the mount that serves `path`, as audit records name it ("secret/", "auth/token/",
// "sys/", …); empty when no mount serves it.
std::string MountOf(std::string_view path);

// The record that an attached entry became, filled in when the batch's finalizer appended it.
// Valid only once the batch committed.
struct AppendedRecord {
  std::uint64_t sequence = 0;
  std::string canonical;  // the stored bytes: the Merkle leaf
};

// A signed checkpoint of the audit tree.
struct CheckpointInfo {
  std::string note;  // the C2SP signed note
  std::uint64_t size = 0;
  merkle::Hash root{};
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
  // The last record that verified, pruned ones included: the size of the Merkle tree checked.
  std::uint64_t tree_size = 0;
  std::string root;  // standard base64 Merkle root of records 1 to tree_size
  std::uint64_t checkpoints_verified = 0;  // stored signed checkpoints whose root matched
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
  // `signer` signs checkpoints; without one MakeCheckpoint fails with failed_precondition.
  static Result<std::unique_ptr<AuditLog>> Open(storage::Storage& storage, hsm::Token& token,
                                                hsm::KeyHandle hmac_key, const Clock& clock,
                                                bool require_head = false,
                                                std::unique_ptr<note::NoteSigner> signer = nullptr);

  virtual ~AuditLog() = default;

  // Redacts `entry` (HSM calls, on the caller's thread) and sets `batch.finalizer` so that
  // the record is chained and written in the batch's transaction. The caller then commits the
  // batch; the record is durable exactly when the batch is. A finalizer already set on the
  // batch runs first, then the audit one. A batch that aborts or rolls back consumes no
  // sequence number. Fails on an HSM error, a body nested deeper than 128 levels, or a log
  // that rejects appends (see Open). The caller must then not commit the batch (fail closed).
  // `appended` receives the record once the finalizer wrote it, so that the caller can hand
  // it to the audit sinks after the commit.
  virtual Status Attach(const AuditEntry& entry, storage::WriteBatch& batch,
                        std::shared_ptr<AppendedRecord>& appended) = 0;
  Status Attach(const AuditEntry& entry, storage::WriteBatch& batch) {
    std::shared_ptr<AppendedRecord> ignored;
    return Attach(entry, batch, ignored);
  }

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

  // Signs a checkpoint of the tree as committed, stores it at sys/audit/checkpoint/<size> and
  // returns it; nullopt when the tree did not grow since the last checkpoint. The signature is
  // made on the storage writer thread, inside the commit, so the checkpoint names exactly the
  // records durable before it. Concurrent calls take turns.
  virtual Result<std::optional<CheckpointInfo>> MakeCheckpoint() = 0;

  // Returns the latest stored checkpoint; nullopt when none was signed yet.
  virtual Result<std::optional<CheckpointInfo>> LatestCheckpoint() = 0;

  // The checkpoint verifier key; null when the log has no signer.
  virtual const note::VerifierKey* checkpoint_key() const = 0;

  // Returns the number of records committed to storage: the largest tree that proofs can be
  // built for.
  virtual Result<std::uint64_t> CommittedSize() = 0;
};

}  // namespace kw::vault::audit
