// Lease records and the request-side operations: create, lookup, renew, revoke, jobs, tidy.
#include "vault/lease/lease_manager.hpp"

#include <sodium.h>

#include <algorithm>
#include <charconv>
#include <chrono>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "vault/lease/lease_records.hpp"

namespace kw::vault::lease {
namespace {

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr std::size_t kLeaseIdRandomChars = 24;
// Attempts at committing the queued state of a failed sync revocation.
constexpr int kMaxQueueCommitAttempts = 8;
// Index entries read per storage call while scanning.
constexpr std::size_t kScanPage = 1000;

tl::unexpected<Error> InvalidLease() { return InvalidArgument("invalid lease"); }

double UnitRandom() {
  InitSodium();
  return static_cast<double>(randombytes_uniform(1'000'000)) / 1'000'000.0;
}

std::string TrimPrefix(std::string_view prefix) {
  while (prefix.ends_with('/')) prefix.remove_suffix(1);
  return std::string(prefix);
}

}  // namespace

std::int64_t RetryDelaySeconds(std::int32_t attempts, double unit_random) {
  const int exponent = std::clamp(attempts - 1, 0, 30);
  const std::int64_t delay =
      std::min<std::int64_t>(kRetryCapSeconds, kRetryBaseSeconds << exponent);
  const double jittered = delay * (0.5 + 0.5 * std::clamp(unit_random, 0.0, 1.0));
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(jittered)));
}

LeaseManager::LeaseManager(storage::Storage& storage, Barrier& barrier, const Clock& clock,
                           LeaseLimits limits)
    : storage_(storage), barrier_(barrier), clock_(clock), limits_(limits) {}

LeaseManager::~LeaseManager() { Stop(); }

void LeaseManager::RegisterEngine(std::string mount, LeaseEngine* engine) {
  std::lock_guard lock(mutex_);
  engines_[std::move(mount)] = engine;
}

LeaseEngine* LeaseManager::EngineFor(std::string_view mount) const {
  std::lock_guard lock(mutex_);
  auto found = engines_.find(mount);
  return found == engines_.end() ? nullptr : found->second;
}

std::optional<InternalCommit> LeaseManager::commit() const {
  std::lock_guard lock(mutex_);
  return commit_;
}

std::int64_t LeaseManager::NowSeconds() const {
  return std::chrono::duration_cast<std::chrono::seconds>(clock_.Now().time_since_epoch())
      .count();
}

Status LeaseManager::Load(const InternalCommit& commit) {
  {
    std::lock_guard lock(mutex_);
    commit_ = commit;
  }
  // Each round handles at most one batch per kind; a round that leaves nothing due ends
  // start-up. Failed revocations get a future next_attempt, so they stop being due.
  std::size_t revoked = 0;
  std::size_t failed = 0;
  for (;;) {
    KW_ASSIGN_OR_RETURN(WorkSummary summary, RunDueWork(commit));
    revoked += summary.revoked;
    failed += summary.failed;
    if (!summary.more) break;
  }
  if (revoked > 0 || failed > 0) {
    log::Info("leases revoked at start-up", {{"revoked", revoked}, {"failed", failed}});
  }
  return OkStatus();
}

std::string LeaseManager::NewLeaseId(std::string_view mount, std::string_view role) const {
  InitSodium();
  std::string id = std::string(mount) + "/creds/" + std::string(role) + "/";
  for (std::size_t i = 0; i < kLeaseIdRandomChars; ++i) {
    id.push_back(kBase62[randombytes_uniform(static_cast<std::uint32_t>(kBase62.size()))]);
  }
  return id;
}

Lease LeaseManager::NewLease(std::string_view mount, std::string_view role,
                             std::string_view token_accessor, std::int64_t ttl,
                             std::int64_t max_ttl) const {
  Lease lease;
  lease.id = NewLeaseId(mount, role);
  lease.mount = std::string(mount);
  lease.role = std::string(role);
  lease.token_accessor = std::string(token_accessor);
  lease.issue_time = NowSeconds();
  const std::int64_t max = max_ttl > 0 ? std::min(max_ttl, limits_.max_ttl) : limits_.max_ttl;
  lease.ttl = std::min(ttl > 0 ? ttl : limits_.default_ttl, max);
  lease.expire_time = lease.issue_time + lease.ttl;
  lease.max_expire_time = lease.issue_time + max;
  return lease;
}

Status LeaseManager::CheckQuota(std::string_view mount, std::string_view role) const {
  KW_ASSIGN_OR_RETURN(std::int64_t total, ReadCounter(storage_, kCountAllKey));
  if (static_cast<std::size_t>(total) >= limits_.max_leases) {
    return ResourceExhausted("lease quota reached: " + std::to_string(total) +
                             " leases exist (max_leases " + std::to_string(limits_.max_leases) +
                             "); revoke leases or wait for them to expire");
  }
  KW_ASSIGN_OR_RETURN(std::int64_t of_role, ReadCounter(storage_, RoleCountKey(mount, role)));
  if (static_cast<std::size_t>(of_role) >= limits_.max_leases_per_role) {
    return ResourceExhausted("lease quota reached: role " + std::string(mount) + "/creds/" +
                             std::string(role) + " has " + std::to_string(of_role) +
                             " leases (max_leases_per_role " +
                             std::to_string(limits_.max_leases_per_role) + ")");
  }
  return OkStatus();
}

Result<Lease> LeaseManager::StageCreate(const Lease& requested, storage::WriteBatch& batch) {
  const std::string role_path = requested.mount + "/creds/" + requested.role;
  if (requested.mount.empty() || requested.role.empty() ||
      !requested.id.starts_with(role_path + "/") || requested.id.size() == role_path.size() + 1) {
    return InvalidArgument("create lease: lease id must be <mount>/creds/<role>/<suffix>, got " +
                           requested.id);
  }
  if (EngineFor(requested.mount) == nullptr) {
    return InvalidArgument("create lease: no lease engine is registered for mount " +
                           requested.mount);
  }

  Lease lease = requested;
  lease.revoking = false;
  lease.attempts = 0;
  lease.next_attempt = 0;
  lease.last_error.clear();
  if (lease.issue_time <= 0) lease.issue_time = NowSeconds();
  const std::int64_t limit = lease.issue_time + limits_.max_ttl;
  lease.max_expire_time = lease.max_expire_time > 0 ? std::min(lease.max_expire_time, limit) : limit;
  if (lease.expire_time <= 0) lease.expire_time = lease.issue_time + limits_.default_ttl;
  lease.expire_time = std::min(lease.expire_time, lease.max_expire_time);
  if (lease.ttl <= 0) lease.ttl = lease.expire_time - lease.issue_time;

  KW_ASSIGN_OR_RETURN(std::int64_t total, ReadCounterForUpdate(storage_, kCountAllKey, batch));
  if (static_cast<std::size_t>(total) >= limits_.max_leases) {
    return ResourceExhausted("lease quota reached: " + std::to_string(total) +
                             " leases exist (max_leases " + std::to_string(limits_.max_leases) +
                             "); revoke leases or wait for them to expire");
  }
  const std::string role_key = RoleCountKey(lease.mount, lease.role);
  KW_ASSIGN_OR_RETURN(std::int64_t of_role, ReadCounterForUpdate(storage_, role_key, batch));
  if (static_cast<std::size_t>(of_role) >= limits_.max_leases_per_role) {
    return ResourceExhausted("lease quota reached: role " + role_path + " has " +
                             std::to_string(of_role) + " leases (max_leases_per_role " +
                             std::to_string(limits_.max_leases_per_role) + ")");
  }

  batch.Expect(RecordKey(lease.id), std::nullopt);
  KW_RETURN_IF_ERROR(StageTransition(nullptr, &lease, batch));
  return lease;
}

Result<std::optional<LeaseManager::Stored>> LeaseManager::ReadCommitted(
    std::string_view id) const {
  const std::string key = RecordKey(id);
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> sealed, storage_.Get(key));
  if (!sealed) return std::optional<Stored>();
  auto plain = barrier_.Decrypt(*sealed, key);
  if (!plain) return tl::unexpected(plain.error().WithContext("lease " + std::string(id)));
  KW_ASSIGN_OR_RETURN(Lease lease, DecodeLease(plain->RevealText()));
  if (lease.id != id) return DataLoss("lease record " + std::string(id) + " names another lease");
  return std::optional<Stored>(Stored{std::move(lease), std::move(*sealed)});
}

Result<std::optional<Lease>> LeaseManager::ReadForUpdate(std::string_view id,
                                                         storage::WriteBatch& batch) {
  const std::string key = RecordKey(id);
  if (auto pending = PendingValue(batch, key)) {
    if (!*pending) return std::optional<Lease>();
    auto plain = barrier_.Decrypt(**pending, key);
    if (!plain) return tl::unexpected(plain.error().WithContext("lease " + std::string(id)));
    KW_ASSIGN_OR_RETURN(Lease lease, DecodeLease(plain->RevealText()));
    return std::optional<Lease>(std::move(lease));
  }
  KW_ASSIGN_OR_RETURN(std::optional<Stored> stored, ReadCommitted(id));
  batch.Expect(key, stored ? std::optional<Bytes>(stored->sealed) : std::nullopt);
  if (!stored) return std::optional<Lease>();
  return std::optional<Lease>(std::move(stored->lease));
}

Status LeaseManager::StageTransition(const Lease* before, const Lease* after,
                                     storage::WriteBatch& batch) {
  const Lease& lease = after ? *after : *before;
  const std::string key = RecordKey(lease.id);
  if (before) batch.Delete(ScheduleKey(*before));
  if (after) {
    const std::string text = EncodeLease(*after);
    KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(text), key));
    batch.Put(key, std::move(sealed));
    batch.Put(ScheduleKey(*after), Bytes());
  } else {
    batch.Delete(key);
  }

  const std::int64_t stored_delta = (after ? 1 : 0) - (before ? 1 : 0);
  const std::int64_t revoking_delta =
      (after && after->revoking ? 1 : 0) - (before && before->revoking ? 1 : 0);
  if (stored_delta != 0 && !lease.token_accessor.empty()) {
    const std::string token_key = TokenIndexKey(lease.token_accessor, lease.id);
    if (stored_delta > 0) {
      batch.Put(token_key, Bytes());
    } else {
      batch.Delete(token_key);
    }
  }
  if (stored_delta != 0) {
    const std::string role_key = RoleCountKey(lease.mount, lease.role);
    for (const std::string_view counter : {std::string_view(kCountAllKey),
                                           std::string_view(role_key)}) {
      KW_ASSIGN_OR_RETURN(std::int64_t count, ReadCounterForUpdate(storage_, counter, batch));
      StageCounter(counter, std::max<std::int64_t>(0, count + stored_delta), batch);
    }
  }
  if (revoking_delta != 0) {
    KW_ASSIGN_OR_RETURN(std::int64_t count,
                        ReadCounterForUpdate(storage_, kCountRevokingKey, batch));
    StageCounter(kCountRevokingKey, std::max<std::int64_t>(0, count + revoking_delta), batch);
  }
  return OkStatus();
}

Result<Lease> LeaseManager::Lookup(std::string_view id) const {
  KW_ASSIGN_OR_RETURN(std::optional<Stored> stored, ReadCommitted(id));
  if (!stored) return NotFound("lease not found: " + std::string(id));
  return std::move(stored->lease);
}

Result<std::vector<std::string>> LeaseManager::List(std::string_view prefix) const {
  const std::string trimmed = TrimPrefix(prefix);
  std::string key = std::string(kRecordPrefix);
  if (!trimmed.empty()) key += trimmed + "/";
  return storage_.List(key);
}

Result<Lease> LeaseManager::Renew(std::string_view id, std::int64_t increment,
                                  storage::WriteBatch& batch) {
  if (increment < 0) return InvalidArgument("invalid increment: expected seconds >= 0");
  KW_ASSIGN_OR_RETURN(std::optional<Lease> current, ReadForUpdate(id, batch));
  const std::int64_t now = NowSeconds();
  if (!current || current->revoking || current->expire_time <= now) return InvalidLease();
  if (!current->renewable) return InvalidArgument("lease is not renewable");
  LeaseEngine* engine = EngineFor(current->mount);
  if (engine == nullptr) {
    return Unavailable("renew lease: no lease engine is registered for mount " + current->mount);
  }

  Lease renewed = *current;
  const std::int64_t extension = increment > 0 ? increment : current->ttl;
  renewed.expire_time = now + extension;
  if (renewed.max_expire_time > 0) {
    renewed.expire_time = std::min(renewed.expire_time, renewed.max_expire_time);
  }
  renewed.last_renewal = now;
  if (auto extended = engine->RenewCredential(*current, renewed.expire_time); !extended) {
    return tl::unexpected(extended.error().WithContext("renew lease"));
  }
  KW_RETURN_IF_ERROR(StageTransition(&*current, &renewed, batch));
  return renewed;
}

Lease LeaseManager::AfterFailedAttempt(Lease lease, const Error& error) const {
  lease.revoking = true;
  lease.attempts += 1;
  lease.next_attempt = NowSeconds() + RetryDelaySeconds(lease.attempts, UnitRandom());
  lease.last_error = error.message();
  return lease;
}

Status LeaseManager::RevokeSync(std::string_view id, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<Lease> current, ReadForUpdate(id, batch));
  if (!current) return OkStatus();

  LeaseEngine* engine = EngineFor(current->mount);
  Status revoked = engine ? engine->RevokeCredential(*current)
                          : Unavailable("no lease engine is registered for mount " +
                                        current->mount);
  if (revoked) {
    revocations_ += 1;
    return StageTransition(&*current, nullptr, batch);
  }

  revocation_failures_ += 1;
  log::Warn("lease revocation failed; queued for retry",
            {{log::kLeaseId, current->id}, {log::kError, revoked.error().message()}});
  if (commit()) {
    KW_RETURN_IF_ERROR(CommitQueuedFailure(id, revoked.error()));
  } else {
    const Lease queued = AfterFailedAttempt(*current, revoked.error());
    KW_RETURN_IF_ERROR(StageTransition(&*current, &queued, batch));
  }
  return Unavailable("revocation failed and was queued for retry: " + revoked.error().message());
}

Status LeaseManager::CommitQueuedFailure(std::string_view id, const Error& error) {
  const std::optional<InternalCommit> commit_function = commit();
  for (int attempt = 1;; ++attempt) {
    storage::WriteBatch batch;
    KW_ASSIGN_OR_RETURN(std::optional<Lease> current, ReadForUpdate(id, batch));
    if (!current) return OkStatus();
    const Lease queued = AfterFailedAttempt(*current, error);
    KW_RETURN_IF_ERROR(StageTransition(&*current, &queued, batch));
    nlohmann::json response = {{"lease_id", queued.id},
                               {"revocation_attempts", queued.attempts},
                               {"last_error", queued.last_error}};
    Status committed = (*commit_function)(std::move(batch), "sys/leases/revoke", response);
    if (committed || committed.error().code() != Code::kAborted ||
        attempt >= kMaxQueueCommitAttempts) {
      return committed;
    }
  }
}

Status LeaseManager::StageRevokeQueued(std::string_view id, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(std::optional<Lease> current, ReadForUpdate(id, batch));
  if (!current) return OkStatus();
  Lease queued = *current;
  queued.revoking = true;
  queued.next_attempt = NowSeconds();
  return StageTransition(&*current, &queued, batch);
}

Result<std::size_t> LeaseManager::StageRevokeForTokens(const std::vector<std::string>& accessors,
                                                       storage::WriteBatch& batch) {
  std::size_t marked = 0;
  for (const std::string& accessor : accessors) {
    if (accessor.empty()) continue;
    const std::string prefix = std::string(kTokenPrefix) + accessor + "/";
    std::string after;
    for (;;) {
      KW_ASSIGN_OR_RETURN(auto entries, storage_.Scan(prefix, after, kScanPage));
      for (const storage::Entry& entry : entries) {
        const std::string id = entry.key.substr(prefix.size());
        KW_ASSIGN_OR_RETURN(std::optional<Lease> current, ReadForUpdate(id, batch));
        if (!current || current->revoking) continue;
        Lease queued = *current;
        queued.revoking = true;
        queued.next_attempt = NowSeconds();
        KW_RETURN_IF_ERROR(StageTransition(&*current, &queued, batch));
        ++marked;
      }
      if (entries.size() < kScanPage) break;
      after = entries.back().key;
    }
  }
  return marked;
}

Result<std::vector<std::string>> LeaseManager::IdsUnderPrefix(std::string_view prefix,
                                                              std::size_t limit) const {
  const std::string trimmed = TrimPrefix(prefix);
  if (trimmed.empty()) {
    return InvalidArgument("missing prefix: name the leases to revoke, such as database/creds/app");
  }
  std::vector<std::string> ids;
  KW_ASSIGN_OR_RETURN(auto exact, storage_.Get(RecordKey(trimmed)));
  if (exact) ids.push_back(trimmed);
  const std::string below = std::string(kRecordPrefix) + trimmed + "/";
  KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(below, "", limit + 1 - ids.size()));
  for (const storage::Entry& entry : page) ids.push_back(entry.key.substr(kRecordPrefix.size()));
  return ids;
}

Status LeaseManager::StagePrefixJob(std::string_view prefix, bool force,
                                    storage::WriteBatch& batch) {
  PrefixJob job;
  job.prefix = TrimPrefix(prefix);
  if (job.prefix.empty()) {
    return InvalidArgument("missing prefix: name the leases to revoke, such as database/creds/app");
  }
  job.force = force;
  job.created = NowSeconds();
  const std::string key = std::string(kJobPrefix) + TimeKey(job.created) + "-" +
                          ToHex(RandomBytes(8));
  const std::string text = EncodePrefixJob(job);
  batch.Expect(key, std::nullopt);
  batch.Put(key, Bytes(text.begin(), text.end()));
  return OkStatus();
}

Result<LeaseStats> LeaseManager::GetStats() const {
  LeaseStats stats;
  KW_ASSIGN_OR_RETURN(std::int64_t total, ReadCounter(storage_, kCountAllKey));
  KW_ASSIGN_OR_RETURN(std::int64_t revoking, ReadCounter(storage_, kCountRevokingKey));
  stats.revoking = static_cast<std::uint64_t>(revoking);
  stats.active = static_cast<std::uint64_t>(std::max<std::int64_t>(0, total - revoking));
  KW_ASSIGN_OR_RETURN(auto jobs, storage_.Scan(kJobPrefix, "", kScanPage));
  stats.prefix_jobs = jobs.size();
  stats.revocations = revocations_.load();
  stats.revocation_failures = revocation_failures_.load();
  stats.expirations = expirations_.load();
  return stats;
}

Result<std::vector<RoleLeaseCount>> LeaseManager::CountByRole() const {
  // Role counter keys are "<kRoleCountPrefix><mount>/creds/<role>" (RoleCountKey).
  constexpr std::string_view kCreds = "/creds/";
  std::vector<RoleLeaseCount> counts;
  std::string after;
  while (true) {
    KW_ASSIGN_OR_RETURN(auto entries, storage_.Scan(kRoleCountPrefix, after, kScanPage));
    for (const storage::Entry& entry : entries) {
      const std::string_view rest = std::string_view(entry.key).substr(kRoleCountPrefix.size());
      const std::size_t creds = rest.find(kCreds);
      if (creds == std::string_view::npos) continue;
      const std::string_view text = AsText(entry.value);
      std::int64_t count = 0;
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
      if (error != std::errc() || end != text.data() + text.size() || count < 0) continue;
      counts.push_back({std::string(rest.substr(0, creds)),
                        std::string(rest.substr(creds + kCreds.size())),
                        static_cast<std::uint64_t>(count)});
    }
    if (entries.size() < kScanPage) return counts;
    after = entries.back().key;
  }
}

}  // namespace kw::vault::lease
