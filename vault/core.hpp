#pragma once

#include <chrono>
#include <condition_variable>
#include <thread>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "hsm/token.hpp"
#include "storage/storage.hpp"
#include "vault/audit/audit_log.hpp"
#include "vault/audit/audit_settings.hpp"
#include "vault/audit/retention.hpp"
#include "vault/audit/sinks.hpp"
#include "vault/auth/token_store.hpp"
#include "vault/barrier/barrier.hpp"
#include "vault/kv/kv_engine.hpp"
#include "vault/auth/token_roles.hpp"
#include "vault/auth/approle.hpp"
#include "vault/auth/cert_auth.hpp"
#include "vault/policy/policy_store.hpp"
#include "vault/database/postgres_engine.hpp"
#include "vault/lease/lease_manager.hpp"
#include "vault/pki/pki_engine.hpp"
// [wiring: includes]

namespace kw::vault {

// Label of the HSM key that computes audit HMACs and authenticates the audit head.
inline constexpr std::string_view kAuditHmacKeyLabel = "keyward-audit-hmac";

// Label of the HSM key pair that signs audit checkpoints.
inline constexpr std::string_view kAuditCheckpointKeyLabel = "keyward-audit-checkpoint";

// Sources of the HSM user PIN, in order of precedence. The command line is never one.
struct PinSource {
  std::string pin_file;  // a file holding the PIN (trailing newline ignored)
  std::string pin_env;   // an environment variable holding the PIN
  std::optional<std::string> pin;  // the PIN in the config file itself (discouraged)
};

struct CoreConfig {
  hsm::TokenConfig token;
  PinSource pin_source;
  audit::AuditSettings audit;
};

// Everything that exists only while unsealed: the logged-in HSM token and what uses it.
// Requests hold a shared_ptr for their duration, so sealing never pulls a session from under
// a running request: the token closes when the last request using it ends.
struct UnsealedState {
  std::unique_ptr<hsm::Token> token;
  std::unique_ptr<Barrier> barrier;
  std::unique_ptr<audit::AuditLog> audit;
  std::unique_ptr<auth::TokenStore> tokens;
  std::unique_ptr<kv::KvEngine> secret;  // the KV v2 engine mounted at secret/
  std::unique_ptr<auth::TokenRoles> token_roles;
  std::unique_ptr<auth::AppRole> approle;  // the AppRole auth method at auth/approle/
  std::unique_ptr<auth::CertAuth> cert;  // the certificate auth method at auth/cert/
  std::unique_ptr<policy::PolicyStore> policies;  // ACL policies, sys/policies/acl/
  std::unique_ptr<database::PostgresEngine> database;  // the engine mounted at database/
  std::unique_ptr<lease::LeaseManager> leases;  // leases of dynamic credentials, sys/leases/
  std::unique_ptr<pki::PkiEngine> pki;  // the SPIFFE CA mounted at pki/
  // [wiring: members] one line per auth method or store.
};

struct InitResult {
  SecretBuffer root_token;
  std::string root_accessor;
};

// The seal state machine: initialise, unseal (log in to the HSM, find the keys, load the
// audit head and root token), seal (drop all of it). Thread-safe. Storage and clock must
// outlive the core.
class Core {
 public:
  Core(CoreConfig config, storage::Storage& storage, const Clock& clock)
      : config_(std::move(config)), storage_(storage), clock_(clock) {}

  // Returns whether the vault was initialised (keys and root token created).
  Result<bool> IsInitialized();

  // Creates the data key, the audit HMAC key and a root token (`root_token_id` when given,
  // else random), and leaves the vault unsealed. already_exists when initialised before.
  Result<InitResult> Initialize(const std::optional<SecretBuffer>& root_token_id,
                                const std::optional<SecretBuffer>& pin);

  // Logs in to the HSM with `pin`, or with the configured PIN source when `pin` is empty and
  // no operator sealed the vault since start-up (after Seal, only `pin` or a restart unseals).
  // Succeeds at once when already unsealed. failed_precondition when not initialised;
  // permission_denied for a wrong PIN; invalid_argument when no PIN is available.
  Status Unseal(const std::optional<SecretBuffer>& pin);

  // Drops every session and cached key handle. Idempotent.
  void Seal();

  // Replaces the root token (dev mode start-up). Requires unsealed.
  Result<InitResult> ResetRootToken(const std::optional<SecretBuffer>& root_token_id);

  // Revokes tokens that expired, with their descendants, in batches, each committed with an
  // audit record. Returns how many were revoked. unavailable when sealed.
  Result<std::size_t> SweepExpiredTokens();

  // Archives and prunes audit records older than `older_than` into the configured
  // archive_dir. An audit record of the prune commits before anything is deleted, and another
  // records the outcome. unavailable when sealed; PruneAuditRecords's errors otherwise.
  Result<audit::PruneReport> PruneAuditLog(std::chrono::seconds older_than);

  // Signs an audit checkpoint when records were added since the last one, and hands it to
  // the audit sinks. Returns the new checkpoint, nullopt when none was needed. Errors are
  // logged too. unavailable when sealed.
  Result<std::optional<audit::CheckpointInfo>> Checkpoint();

  // Starts a thread that calls SweepExpiredTokens every `interval` while unsealed, and one
  // that calls Checkpoint every configured checkpoint interval; stopped by StopSweeper or the
  // destructor.
  void StartSweeper(std::chrono::milliseconds interval);
  void StopSweeper();

  ~Core();

  // Returns the unsealed state for one request. unavailable ("Vault is sealed") when sealed.
  Result<std::shared_ptr<UnsealedState>> Acquire() const;

  bool sealed() const;
  const Clock& clock() const { return clock_; }
  const audit::AuditSettings& audit_settings() const { return config_.audit; }
  storage::Storage& storage() { return storage_; }
  const std::string& token_label() const { return config_.token.token_label; }

  // Sets the sinks that receive every committed audit record. Call before serving requests;
  // the sinks stay across seal and unseal.
  void SetAuditSinks(std::shared_ptr<audit::SinkSet> sinks) { audit_sinks_ = std::move(sinks); }
  // Returns the audit sinks; null when none are configured.
  audit::SinkSet* audit_sinks() const { return audit_sinks_.get(); }

 private:
  Result<SecretBuffer> ResolvePin(const std::optional<SecretBuffer>& pin) const;
  Result<std::shared_ptr<UnsealedState>> OpenState(const SecretBuffer& pin, bool create_keys);
  // Waits until no request still uses the state from before the last seal. unavailable after
  // `timeout`.
  Status WaitForSealedState(std::chrono::milliseconds timeout);
  // Returns a function that commits a batch the server makes itself, with an audit record
  // of `operation` and `method` at the path it is given.
  lease::InternalCommit InternalCommitFor(UnsealedState& state, std::string operation,
                                          std::string method);
  // Returns the signer of audit checkpoints, creating its HSM key pair and storing its
  // origin on first use.
  Result<std::unique_ptr<audit::note::NoteSigner>> OpenCheckpointSigner(hsm::Token& token);
  // Starts checkpointer_; StopSweeper stops it.
  void StartCheckpointer();
  // Archives and prunes audit records older than the configured retention, and records that
  // it did (the sweeper's audit retention).
  void PruneAudit();
  // Removes records of certificates that expired long ago (the sweeper's PKI tidy).
  void TidyPki();
  // Revokes the leases that expired while sealed and starts the lease worker.
  Status StartLeases(UnsealedState& state);
  // Returns the audit entry for a change the server makes itself (initialisation, dev-mode
  // root token) at `path`, under the root token's `accessor`.
  audit::AuditEntry InternalAuditEntry(std::string_view path, const std::string& accessor);
  // Adds a new root token (`root_token_id`, else random) to `batch`.
  Result<InitResult> StageRootToken(UnsealedState& state,
                                    const std::optional<SecretBuffer>& root_token_id,
                                    storage::WriteBatch& batch);

  const CoreConfig config_;
  storage::Storage& storage_;
  const Clock& clock_;
  std::mutex transition_mutex_;  // serialises init, unseal and seal
  bool operator_sealed_ = false;  // guarded by transition_mutex_; set by Seal, cleared by unseal
  mutable std::mutex state_mutex_;
  std::shared_ptr<UnsealedState> state_;  // guarded by state_mutex_; null when sealed
  // The state dropped by the last Seal, alive while requests from before the seal run.
  std::weak_ptr<UnsealedState> sealed_state_;  // guarded by transition_mutex_

  std::mutex sweeper_mutex_;
  std::condition_variable sweeper_wake_;
  bool sweeper_stop_ = false;  // guarded by sweeper_mutex_
  std::thread sweeper_;
  std::thread checkpointer_;  // started and stopped with sweeper_, under the same flag
  std::shared_ptr<audit::SinkSet> audit_sinks_;  // set before serving, then only read
};

}  // namespace kw::vault
