#include "vault/core.hpp"

#include <sys/stat.h>

#include <cstdlib>
#include <thread>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "hsm/metered_token.hpp"
#include "vault/audit/audit_record.hpp"
#include "vault/auth/token_format.hpp"

namespace kw::vault {
namespace {

constexpr std::string_view kInitKey = "sys/init";
// The checkpoint key's label, note name (origin) and type, fixed when the key is created.
constexpr std::string_view kCheckpointKeyRecord = "sys/audit/checkpoint-key";

Result<SecretBuffer> ReadPinFile(const std::string& path) {
  // The server checks the file at start too; this check covers a mode changed since then,
  // before an unseal reads the file again.
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0) {
    if ((info.st_mode & (S_IROTH | S_IWOTH | S_IWGRP)) != 0) {
      return PermissionDenied("the HSM PIN file " + path +
                              " is readable or writable by other users, or writable by its "
                              "group: run chmod 600 " + path);
    }
    if ((info.st_mode & S_IRGRP) != 0) {
      log::Warn("the HSM PIN file is readable by its group; run chmod 600 on it",
                {{log::kPath, path}});
    }
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) return InvalidArgument("cannot read the HSM PIN file " + path);
  std::stringstream contents;
  contents << file.rdbuf();
  std::string text = contents.str();
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  SecretBuffer pin = SecretBuffer::CopyFrom(text);
  WipeString(text);
  if (pin.empty()) return InvalidArgument("the HSM PIN file " + path + " is empty");
  return pin;
}

}  // namespace

// Any record at all counts: deleting the init marker must not let anyone initialise again
// and get a root token for the data that is still there.
audit::AuditEntry Core::InternalAuditEntry(std::string_view path, const std::string& accessor) {
  audit::AuditEntry entry;
  entry.request_id = RandomUuid();
  entry.time = clock_.Now();
  entry.accessor = accessor;
  entry.operation = "update";
  entry.method = "PUT";
  entry.path = std::string(path);
  entry.mount = audit::MountOf(path);
  entry.status = 200;
  return entry;
}

Result<InitResult> Core::StageRootToken(UnsealedState& state,
                                        const std::optional<SecretBuffer>& root_token_id,
                                        storage::WriteBatch& batch) {
  InitResult result;
  result.root_token = root_token_id ? SecretBuffer::CopyFrom(root_token_id->Reveal())
                                    : auth::GenerateToken();
  KW_ASSIGN_OR_RETURN(result.root_accessor, state.tokens->StageRootToken(result.root_token, batch));
  return result;
}

Result<bool> Core::IsInitialized() {
  KW_ASSIGN_OR_RETURN(auto marker, storage_.Get(kInitKey));
  if (marker) return true;
  KW_ASSIGN_OR_RETURN(auto any_record, storage_.Last(""));
  return any_record.has_value();
}

Result<SecretBuffer> Core::ResolvePin(const std::optional<SecretBuffer>& pin) const {
  if (pin && !pin->empty()) return SecretBuffer::CopyFrom(pin->Reveal());
  const PinSource& source = config_.pin_source;
  if (!source.pin_file.empty()) return ReadPinFile(source.pin_file);
  if (!source.pin_env.empty()) {
    const char* value = std::getenv(source.pin_env.c_str());
    if (value == nullptr || *value == '\0') {
      return InvalidArgument("the HSM PIN variable " + source.pin_env + " is not set");
    }
    return SecretBuffer::CopyFrom(std::string_view(value));
  }
  if (source.pin) return SecretBuffer::CopyFrom(*source.pin);
  return InvalidArgument(
      "no HSM PIN: configure hsm.pin_file or hsm.pin_env, or send the PIN in the request body");
}

Result<std::shared_ptr<UnsealedState>> Core::OpenState(const SecretBuffer& pin,
                                                       bool create_keys) {
  auto state = std::make_shared<UnsealedState>();
  // The token records per-operation counts and latency for sys/metrics.
  KW_ASSIGN_OR_RETURN(state->token, hsm::OpenMeteredToken(config_.token, pin));

  if (create_keys) {
    // Keys already on the token mean a vault used it: initialising over them would hand a new
    // root token the old data, to anyone who can empty the database. Fail closed.
    KW_ASSIGN_OR_RETURN(auto existing, state->token->ListKeyLabels("keyward-"));
    if (!existing.empty()) {
      return FailedPrecondition(
          "the HSM token already holds keyward keys (" + existing.front() +
          "): restore the database that belongs to them, or initialise with a new token");
    }
    if (auto created = Barrier::CreateFirstKey(*state->token); !created) {
      return tl::unexpected(created.error().WithContext("create data key"));
    }
    if (auto created = state->token->GenerateHmacKey(kAuditHmacKeyLabel); !created) {
      return tl::unexpected(created.error().WithContext("create audit HMAC key"));
    }
  }

  KW_ASSIGN_OR_RETURN(state->barrier, Barrier::Load(*state->token));
  KW_ASSIGN_OR_RETURN(hsm::KeyHandle hmac_key, state->token->FindKey(kAuditHmacKeyLabel));
  KW_ASSIGN_OR_RETURN(auto checkpoint_signer, OpenCheckpointSigner(*state->token));
  // An initialised vault recorded its initialisation, so its log is never empty.
  KW_ASSIGN_OR_RETURN(state->audit,
                      audit::AuditLog::Open(storage_, *state->token, hmac_key, clock_,
                                            /*require_head=*/!create_keys,
                                            std::move(checkpoint_signer)));
  state->tokens = std::make_unique<auth::TokenStore>(storage_, *state->barrier, clock_);
  KW_RETURN_IF_ERROR(state->tokens->Load());
  state->secret = std::make_unique<kv::KvEngine>("secret", storage_, *state->barrier, clock_);
  state->token_roles = std::make_unique<auth::TokenRoles>(storage_, *state->barrier);
  state->approle = std::make_unique<auth::AppRole>(storage_, *state->barrier, clock_);
  state->cert = std::make_unique<auth::CertAuth>(storage_, *state->barrier, clock_);
  state->policies = std::make_unique<policy::PolicyStore>(storage_, *state->barrier, clock_);
  state->database = std::make_unique<database::PostgresEngine>(storage_, *state->barrier, clock_);
  state->leases = std::make_unique<lease::LeaseManager>(storage_, *state->barrier, clock_);
  state->leases->RegisterEngine(std::string(database::kMount), state->database.get());
  // Revoking a token revokes the leases it created, in the same batch.
  state->tokens->SetRevocationHook(
      [leases = state->leases.get()](const std::vector<std::string>& accessors,
                                     storage::WriteBatch& batch) -> Status {
        KW_ASSIGN_OR_RETURN(std::size_t queued, leases->StageRevokeForTokens(accessors, batch));
        (void)queued;
        return OkStatus();
      });
  state->pki = std::make_unique<pki::PkiEngine>(storage_, *state->barrier, *state->token, clock_);
  // [wiring: construct] one line per auth method or store, each constructed from
  // (storage_, *state->barrier, clock_).
  return state;
}

Result<std::unique_ptr<audit::note::NoteSigner>> Core::OpenCheckpointSigner(hsm::Token& token) {
  using audit::note::KeyType;
  KW_ASSIGN_OR_RETURN(const std::optional<Bytes> stored, storage_.Get(kCheckpointKeyRecord));
  std::string name;
  std::string type_name;
  if (stored) {
    const nlohmann::json record = nlohmann::json::parse(AsText(*stored), nullptr, false);
    if (!record.is_object() || !record.contains("name") || !record["name"].is_string() ||
        !record.contains("type") || !record["type"].is_string()) {
      return DataLoss("the audit checkpoint key record " + std::string(kCheckpointKeyRecord) +
                      " is malformed");
    }
    name = record["name"].get<std::string>();
    type_name = record["type"].get<std::string>();
    if (!config_.audit.origin.empty() && config_.audit.origin != name) {
      log::Warn("audit origin in the config differs from the one fixed when the checkpoint key "
                "was created; the stored one is used",
                {{"configured", config_.audit.origin}, {"stored", name}});
    }
  } else {
    name = config_.audit.origin.empty() ? "keyward.audit/" + ToHex(RandomBytes(8))
                                        : config_.audit.origin;
    type_name = config_.audit.checkpoint_key_type;
  }
  if (type_name != "ed25519" && type_name != "ecdsa-p256") {
    return InvalidArgument("audit checkpoint_key_type \"" + type_name +
                           "\" is not supported: use ed25519 or ecdsa-p256");
  }
  const KeyType type = type_name == "ed25519" ? KeyType::kEd25519 : KeyType::kEcdsaP256;

  if (!stored) {
    // A key left on the token by an earlier start that failed before storing the record is
    // reused: its label is fixed.
    Result<hsm::KeyHandle> created =
        type == KeyType::kEd25519 ? token.GenerateEd25519KeyPair(kAuditCheckpointKeyLabel)
                                  : token.GenerateEcP256KeyPair(kAuditCheckpointKeyLabel);
    if (!created && created.error().code() != Code::kAlreadyExists) {
      return tl::unexpected(created.error().WithContext("create audit checkpoint key"));
    }
    const std::string record =
        nlohmann::json{{"label", kAuditCheckpointKeyLabel}, {"name", name}, {"type", type_name}}
            .dump();
    storage::WriteBatch batch;
    batch.Expect(std::string(kCheckpointKeyRecord), std::nullopt);
    batch.Put(std::string(kCheckpointKeyRecord), Bytes(record.begin(), record.end()));
    KW_RETURN_IF_ERROR(storage_.Commit(std::move(batch)));
    log::Info("audit checkpoint key created", {{"name", name}, {"type", type_name}});
  }
  return audit::note::OpenHsmNoteSigner(token, kAuditCheckpointKeyLabel, name, type);
}

Result<std::optional<audit::CheckpointInfo>> Core::Checkpoint() {
  KW_ASSIGN_OR_RETURN(auto state, Acquire());
  auto signed_checkpoint = state->audit->MakeCheckpoint();
  if (!signed_checkpoint) {
    log::Error("audit checkpoint failed", {{log::kError, signed_checkpoint.error().message()}});
    return signed_checkpoint;
  }
  if (!*signed_checkpoint) return signed_checkpoint;
  const audit::CheckpointInfo& checkpoint = **signed_checkpoint;
  log::Debug("audit checkpoint signed", {{"tree_size", checkpoint.size}});
  // The checkpoint is stored either way: a sink that misses it lacks this line only, and
  // exports from the database still carry it.
  if (audit::SinkSet* sinks = audit_sinks()) {
    if (Status delivered = sinks->DeliverCheckpoint(checkpoint.size, checkpoint.note);
        !delivered) {
      log::Error("audit checkpoint not written to a sink",
                 {{"tree_size", checkpoint.size}, {log::kError, delivered.error().message()}});
    }
  }
  return signed_checkpoint;
}

lease::InternalCommit Core::InternalCommitFor(UnsealedState& state, std::string operation,
                                             std::string method) {
  // The server's own commits carry an audit record like every request's. The state owns the
  // users of this function, and they stop before its audit log goes.
  return [this, audit = state.audit.get(), operation = std::move(operation),
          method = std::move(method)](storage::WriteBatch batch, std::string path,
                                      nlohmann::json response) -> Status {
    audit::AuditEntry entry = InternalAuditEntry(path, "");
    entry.operation = operation;
    entry.method = method;
    entry.response_body = std::move(response);
    KW_RETURN_IF_ERROR(audit->Attach(entry, batch));
    return storage_.Commit(std::move(batch));
  };
}

Status Core::StartLeases(UnsealedState& state) {
  lease::InternalCommit commit = InternalCommitFor(state, "delete", "LEASE");
  KW_RETURN_IF_ERROR(state.leases->Load(commit));
  state.leases->Start(std::move(commit));
  return OkStatus();
}

Result<InitResult> Core::Initialize(const std::optional<SecretBuffer>& root_token_id,
                                    const std::optional<SecretBuffer>& pin) {
  std::lock_guard transition(transition_mutex_);
  KW_ASSIGN_OR_RETURN(bool initialized, IsInitialized());
  if (initialized || !sealed()) return AlreadyExists("Vault is already initialized");

  KW_ASSIGN_OR_RETURN(SecretBuffer resolved_pin, ResolvePin(pin));
  KW_ASSIGN_OR_RETURN(auto state, OpenState(resolved_pin, /*create_keys=*/true));

  storage::WriteBatch batch;
  KW_ASSIGN_OR_RETURN(InitResult result, StageRootToken(*state, root_token_id, batch));
  const std::string marker =
      nlohmann::json{{"initialized_time", FormatRfc3339(clock_.Now())}}.dump();
  batch.Expect(std::string(kInitKey), std::nullopt);
  batch.Put(std::string(kInitKey), Bytes(marker.begin(), marker.end()));
  // The first audit record: from here on the log has a head, and an erased log shows.
  KW_RETURN_IF_ERROR(
      state->audit->Attach(InternalAuditEntry("sys/init", result.root_accessor), batch));
  KW_RETURN_IF_ERROR(storage_.Commit(std::move(batch)));
  // The vault is initialised now: a reload failure must not swallow the only copy of the
  // root token, so it is logged and the token still returned.
  if (auto loaded = state->tokens->Load(); !loaded) {
    log::Error("root token stored but not reloaded; restart the server",
               {{log::kError, loaded.error().message()}});
  }
  if (auto started = StartLeases(*state); !started) {
    log::Error("lease manager did not start; restart the server",
               {{log::kError, started.error().message()}});
  }

  {
    std::lock_guard lock(state_mutex_);
    state_ = std::move(state);
  }
  log::Info("vault initialized", {{log::kAccessor, result.root_accessor}});
  return result;
}

Status Core::Unseal(const std::optional<SecretBuffer>& pin) {
  std::lock_guard transition(transition_mutex_);
  if (!sealed()) return OkStatus();
  KW_ASSIGN_OR_RETURN(bool initialized, IsInitialized());
  if (!initialized) return FailedPrecondition("Vault is not initialized");
  // The configured PIN must not let an anonymous caller undo an operator's seal.
  if (operator_sealed_ && (!pin || pin->empty())) {
    return InvalidArgument(
        "the vault was sealed by an operator: send the HSM PIN as \"key\", or restart the server");
  }
  KW_ASSIGN_OR_RETURN(SecretBuffer resolved_pin, ResolvePin(pin));
  // A request from before the seal may still commit an audit record through the old state's
  // log. The new log must load the head after that, because otherwise the head moves under it.
  KW_RETURN_IF_ERROR(WaitForSealedState(std::chrono::seconds(30)));
  KW_ASSIGN_OR_RETURN(auto state, OpenState(resolved_pin, /*create_keys=*/false));
  // Leases that expired while the server was down are revoked here, before any request.
  KW_RETURN_IF_ERROR(StartLeases(*state));
  {
    std::lock_guard lock(state_mutex_);
    state_ = std::move(state);
  }
  operator_sealed_ = false;
  log::Info("vault unsealed", {{"token_label", config_.token.token_label}});
  return OkStatus();
}

void Core::Seal() {
  std::lock_guard transition(transition_mutex_);
  operator_sealed_ = true;
  // The last records before the seal get a checkpoint, so an auditor can hold the server to
  // them across the sealed period. A failure is logged and does not stop the seal.
  (void)Checkpoint();
  std::shared_ptr<UnsealedState> dropped;
  {
    std::lock_guard lock(state_mutex_);
    dropped = std::move(state_);
  }
  sealed_state_ = dropped;
  if (dropped) {
    dropped->leases->Stop();
    log::Info("vault sealed");
  }
}

Status Core::WaitForSealedState(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!sealed_state_.expired()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Unavailable("requests from before the seal are still running; retry the unseal");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return OkStatus();
}

Result<InitResult> Core::ResetRootToken(const std::optional<SecretBuffer>& root_token_id) {
  std::lock_guard transition(transition_mutex_);
  KW_ASSIGN_OR_RETURN(auto state, Acquire());
  // The same id as before needs no write, and so no audit record.
  if (root_token_id) {
    if (auto identity = state->tokens->Authenticate(root_token_id->RevealText(), "", nullptr);
        identity && identity->root) {
      return InitResult{SecretBuffer::CopyFrom(root_token_id->Reveal()), identity->accessor};
    }
  }
  storage::WriteBatch batch;
  KW_ASSIGN_OR_RETURN(InitResult result, StageRootToken(*state, root_token_id, batch));
  KW_RETURN_IF_ERROR(state->audit->Attach(
      InternalAuditEntry("sys/token/root", result.root_accessor), batch));
  KW_RETURN_IF_ERROR(storage_.Commit(std::move(batch)));
  KW_RETURN_IF_ERROR(state->tokens->Load());
  log::Info("root token replaced", {{log::kAccessor, result.root_accessor}});
  return result;
}

Result<std::size_t> Core::SweepExpiredTokens() {
  constexpr std::size_t kBatch = 1000;
  std::size_t total = 0;
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto state, Acquire());
    storage::WriteBatch batch;
    KW_ASSIGN_OR_RETURN(auto revoked, state->tokens->SweepExpired(kBatch, batch));
    if (batch.empty()) return total;
    audit::AuditEntry entry = InternalAuditEntry("auth/token/tidy", "");
    entry.operation = "delete";
    entry.method = "SWEEP";
    entry.response_body = {{"expired_tokens_revoked", revoked.size()}};
    KW_RETURN_IF_ERROR(state->audit->Attach(entry, batch));
    KW_RETURN_IF_ERROR(storage_.Commit(std::move(batch)));
    total += revoked.size();
    if (!revoked.empty()) {
      log::Info("expired tokens revoked", {{"count", revoked.size()}});
    }
    if (revoked.size() < kBatch / 2) return total;
  }
}

void Core::StartSweeper(std::chrono::milliseconds interval) {
  StopSweeper();
  {
    std::lock_guard lock(sweeper_mutex_);
    sweeper_stop_ = false;
  }
  StartCheckpointer();
  sweeper_ = std::thread([this, interval] {
    std::unique_lock lock(sweeper_mutex_);
    // Issued-certificate records are tidied every 60th round (10 minutes at the default).
    constexpr int kPkiTidyRounds = 60;
    // Audit records past the retention age are archived every 6th round (1 minute).
    constexpr int kAuditRetentionRounds = 6;
    int round = 0;
    while (!sweeper_wake_.wait_for(lock, interval, [this] { return sweeper_stop_; })) {
      lock.unlock();
      if (!sealed()) {
        ++round;
        if (round % kPkiTidyRounds == 0) TidyPki();
        if (round % kAuditRetentionRounds == 0) PruneAudit();
        if (auto swept = SweepExpiredTokens(); !swept) {
          log::Error("expired token sweep failed", {{log::kError, swept.error().message()}});
        }
        if (auto state = Acquire(); state && (*state)->database) {
          // Failures are logged per role by the engine, and retried at the next round.
          (void)(*state)->database->RotateDueStaticRoles(
              InternalCommitFor(**state, "update", "ROTATE"));
        }
      }
      lock.lock();
    }
  });
}

void Core::StartCheckpointer() {
  const std::chrono::seconds interval =
      std::max(config_.audit.checkpoint_interval, std::chrono::seconds(1));
  checkpointer_ = std::thread([this, interval] {
    std::unique_lock lock(sweeper_mutex_);
    while (!sweeper_wake_.wait_for(lock, interval, [this] { return sweeper_stop_; })) {
      lock.unlock();
      if (!sealed()) (void)Checkpoint();
      lock.lock();
    }
  });
}

Result<audit::PruneReport> Core::PruneAuditLog(std::chrono::seconds older_than) {
  KW_ASSIGN_OR_RETURN(auto state, Acquire());
  // Nothing to do while the oldest stored record is younger than the age: no records then, so
  // the sweeper's calls do not grow the log. PruneAuditRecords checks every record again.
  KW_ASSIGN_OR_RETURN(const std::vector<storage::Entry> oldest,
                      storage_.Scan(audit::detail::kLogPrefix, "", 1));
  if (!oldest.empty() && !audit::detail::NestsDeeperThan(AsText(oldest.front().value),
                                                         audit::detail::kMaxRecordDepth)) {
    const nlohmann::json record =
        nlohmann::json::parse(AsText(oldest.front().value), nullptr, /*allow_exceptions=*/false);
    const std::optional<TimePoint> time =
        record.is_object() && record.contains("time") && record["time"].is_string()
            ? audit::ParseRfc3339(record["time"].get<std::string>())
            : std::nullopt;
    if (time && *time >= clock_.Now() - older_than) return audit::PruneReport{};
  }

  KW_ASSIGN_OR_RETURN(const hsm::KeyHandle hmac_key, state->token->FindKey(kAuditHmacKeyLabel));
  auto commit = InternalCommitFor(*state, "update", "PRUNE");
  // Recorded first: a crash in the middle of the deletions must not leave them unexplained.
  const nlohmann::json started = {{"phase", "started"},
                                  {"older_than_seconds", older_than.count()},
                                  {"archive_dir", config_.audit.archive_dir}};
  KW_RETURN_IF_ERROR(commit(storage::WriteBatch(), "sys/audit/prune", started));

  auto report = audit::PruneAuditRecords(storage_, *state->token, hmac_key, clock_, older_than,
                                         config_.audit.archive_dir);
  nlohmann::json outcome = {{"phase", "finished"}};
  if (report) {
    outcome["pruned"] = report->pruned;
    outcome["first_seq"] = report->first_seq;
    outcome["last_seq"] = report->last_seq;
    outcome["archive"] = report->archive;
  } else {
    outcome["errors"] = {report.error().message()};
  }
  if (Status recorded = commit(storage::WriteBatch(), "sys/audit/prune", outcome); !recorded) {
    log::Error("audit prune outcome not recorded", {{log::kError, recorded.error().message()}});
  }
  if (report && report->pruned > 0) {
    log::Info("audit records archived and pruned", {{"records", report->pruned},
                                                    {"first_seq", report->first_seq},
                                                    {"last_seq", report->last_seq},
                                                    {log::kPath, report->archive}});
  }
  return report;
}

void Core::PruneAudit() {
  if (config_.audit.retention.count() <= 0) return;
  if (auto report = PruneAuditLog(config_.audit.retention); !report) {
    log::Error("audit retention failed", {{log::kError, report.error().message()}});
  }
}

void Core::TidyPki() {
  auto state = Acquire();
  if (!state || !(*state)->pki) return;
  // Records of certificates expired for more than 72 hours, as Vault's tidy default.
  storage::WriteBatch batch;
  auto tidied = (*state)->pki->Tidy(std::chrono::hours(72), batch);
  if (!tidied) {
    log::Error("PKI tidy failed", {{log::kError, tidied.error().message()}});
    return;
  }
  if (tidied->certificates_removed == 0) return;
  nlohmann::json response = {{"certificates_removed", tidied->certificates_removed}};
  auto commit = InternalCommitFor(**state, "update", "POST");
  if (Status committed = commit(std::move(batch), "pki/tidy", response); !committed) {
    log::Error("PKI tidy failed", {{log::kError, committed.error().message()}});
  }
}

void Core::StopSweeper() {
  {
    std::lock_guard lock(sweeper_mutex_);
    sweeper_stop_ = true;
  }
  sweeper_wake_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
}

Core::~Core() { StopSweeper(); }

Result<std::shared_ptr<UnsealedState>> Core::Acquire() const {
  std::lock_guard lock(state_mutex_);
  if (!state_) return Unavailable("Vault is sealed");
  return state_;
}

bool Core::sealed() const {
  std::lock_guard lock(state_mutex_);
  return state_ == nullptr;
}

}  // namespace kw::vault
