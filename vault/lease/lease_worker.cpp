// The lease manager's background work: expiry, the revocation queue, prefix jobs, tidy.
#include <chrono>

#include "base/log.hpp"
#include "vault/lease/lease_manager.hpp"
#include "vault/lease/lease_records.hpp"

namespace kw::vault::lease {
namespace {

// Attempts at one worker commit that keeps losing Expect races to requests.
constexpr int kMaxWorkerCommitAttempts = 8;
// Queued revocations attempted per round: each one calls the engine over the network.
constexpr std::size_t kQueueBatchSize = 100;
// How long the idle worker sleeps between looks at the schedule; times are whole seconds.
constexpr auto kIdleWait = std::chrono::seconds(1);
constexpr std::size_t kScanPage = 1000;

// Stages into a fresh batch with `stage` (which returns whether there is anything to commit)
// and commits it; reruns both when the commit aborts on an Expect.
template <typename Stage>
Status CommitRetrying(const InternalCommit& commit, const std::string& path, Stage stage) {
  for (int attempt = 1;; ++attempt) {
    storage::WriteBatch batch;
    nlohmann::json response = nlohmann::json::object();
    KW_ASSIGN_OR_RETURN(bool any, stage(batch, response));
    if (!any) return OkStatus();
    Status committed = commit(std::move(batch), path, std::move(response));
    if (committed || committed.error().code() != Code::kAborted ||
        attempt >= kMaxWorkerCommitAttempts) {
      return committed;
    }
  }
}

// Due index entries at the start of `prefix` (expiry or queue), at most `limit`.
struct DueEntries {
  std::vector<std::pair<std::string, ScheduleEntry>> entries;  // key, parsed entry
  std::vector<std::string> malformed;                          // keys to drop
  bool full = false;  // the page was full of due entries: more may be due
};

Result<DueEntries> ScanDue(storage::Storage& storage, std::string_view prefix,
                           std::int64_t now, std::size_t limit) {
  DueEntries due;
  KW_ASSIGN_OR_RETURN(auto page, storage.Scan(prefix, "", limit));
  std::size_t due_count = 0;
  for (const storage::Entry& entry : page) {
    auto parsed = ParseScheduleKey(std::string_view(entry.key).substr(prefix.size()));
    if (!parsed) {
      due.malformed.push_back(entry.key);
      ++due_count;
      continue;
    }
    if (parsed->time > now) break;
    due.entries.emplace_back(entry.key, std::move(*parsed));
    ++due_count;
  }
  due.full = page.size() == limit && due_count == limit;
  return due;
}

}  // namespace

void LeaseManager::ReportUnreadable(std::string_view lease_id, const Error& error) {
  {
    std::lock_guard lock(mutex_);
    if (!unreadable_reported_.emplace(lease_id).second) return;
  }
  log::Error("lease record unreadable; the worker skips it",
             {{log::kLeaseId, std::string(lease_id)}, {log::kError, error.message()}});
}

Result<WorkSummary> LeaseManager::RunDueWork(const InternalCommit& commit) {
  WorkSummary summary;
  KW_RETURN_IF_ERROR(ExpireDue(commit, summary));
  KW_RETURN_IF_ERROR(RunPrefixJob(commit, summary));
  KW_RETURN_IF_ERROR(RunRevocationQueue(commit, summary));
  return summary;
}

Status LeaseManager::ExpireDue(const InternalCommit& commit, WorkSummary& summary) {
  const std::int64_t now = NowSeconds();
  KW_ASSIGN_OR_RETURN(DueEntries due, ScanDue(storage_, kExpiryPrefix, now, kWorkBatchSize));
  std::size_t expired = 0;
  Status committed = CommitRetrying(
      commit, "sys/leases/expire",
      [&](storage::WriteBatch& batch, nlohmann::json& response) -> Result<bool> {
        expired = 0;
        nlohmann::json ids = nlohmann::json::array();
        for (const std::string& key : due.malformed) batch.Delete(key);
        for (const auto& [key, entry] : due.entries) {
          auto current = ReadForUpdate(entry.lease_id, batch);
          if (!current) {
            ReportUnreadable(entry.lease_id, current.error());
            continue;
          }
          if (!*current || ScheduleKey(**current) != key) {
            batch.Delete(key);  // stale: the lease is gone or scheduled elsewhere
            continue;
          }
          Lease queued = **current;
          queued.revoking = true;
          queued.next_attempt = now;
          KW_RETURN_IF_ERROR(StageTransition(&**current, &queued, batch));
          ids.push_back(entry.lease_id);
          ++expired;
        }
        response["expired"] = std::move(ids);
        return !batch.ops().empty();
      });
  KW_RETURN_IF_ERROR(committed);
  expirations_ += expired;
  summary.expired += expired;
  summary.more = summary.more || due.full;
  return OkStatus();
}

Status LeaseManager::RunRevocationQueue(const InternalCommit& commit, WorkSummary& summary) {
  const std::int64_t now = NowSeconds();
  KW_ASSIGN_OR_RETURN(DueEntries due, ScanDue(storage_, kQueuePrefix, now, kQueueBatchSize));

  // Call the engines first, holding no lock and no open batch: they may block on the network.
  std::map<std::string, std::optional<Error>> outcomes;  // by index key; nullopt: revoked
  for (const auto& [key, entry] : due.entries) {
    if (stopping()) break;
    auto stored = ReadCommitted(entry.lease_id);
    if (!stored) {
      ReportUnreadable(entry.lease_id, stored.error());
      continue;
    }
    if (!*stored || ScheduleKey((*stored)->lease) != key) continue;  // dropped when committing
    const Lease& lease = (*stored)->lease;
    LeaseEngine* engine = EngineFor(lease.mount);
    Status revoked = engine ? engine->RevokeCredential(lease)
                            : Unavailable("no lease engine is registered for mount " + lease.mount);
    if (revoked) {
      revocations_ += 1;
      outcomes.emplace(key, std::nullopt);
    } else {
      revocation_failures_ += 1;
      outcomes.emplace(key, revoked.error());
      log::Warn("lease revocation failed; will retry",
                {{log::kLeaseId, lease.id},
                 {"attempts", lease.attempts + 1},
                 {log::kError, revoked.error().message()}});
    }
  }

  std::size_t revoked_count = 0;
  std::size_t failed_count = 0;
  Status committed = CommitRetrying(
      commit, "sys/leases/revoke-queue",
      [&](storage::WriteBatch& batch, nlohmann::json& response) -> Result<bool> {
        revoked_count = failed_count = 0;
        nlohmann::json revoked_ids = nlohmann::json::array();
        nlohmann::json failed_ids = nlohmann::json::array();
        for (const std::string& key : due.malformed) batch.Delete(key);
        for (const auto& [key, entry] : due.entries) {
          auto current = ReadForUpdate(entry.lease_id, batch);
          if (!current) continue;  // reported above
          if (!*current || ScheduleKey(**current) != key) {
            batch.Delete(key);
            continue;
          }
          auto outcome = outcomes.find(key);
          if (outcome == outcomes.end()) continue;  // queued after the attempts: next round
          if (!outcome->second) {
            KW_RETURN_IF_ERROR(StageTransition(&**current, nullptr, batch));
            revoked_ids.push_back(entry.lease_id);
            ++revoked_count;
          } else {
            const Lease queued = AfterFailedAttempt(**current, *outcome->second);
            KW_RETURN_IF_ERROR(StageTransition(&**current, &queued, batch));
            failed_ids.push_back(entry.lease_id);
            ++failed_count;
          }
        }
        response["revoked"] = std::move(revoked_ids);
        response["failed"] = std::move(failed_ids);
        return !batch.ops().empty();
      });
  KW_RETURN_IF_ERROR(committed);
  summary.revoked += revoked_count;
  summary.failed += failed_count;
  summary.more = summary.more || due.full;
  return OkStatus();
}

Status LeaseManager::RunPrefixJob(const InternalCommit& commit, WorkSummary& summary) {
  KW_ASSIGN_OR_RETURN(auto jobs, storage_.Scan(kJobPrefix, "", 2));
  if (jobs.empty()) return OkStatus();
  const storage::Entry& job_entry = jobs.front();
  auto decoded = DecodePrefixJob(AsText(job_entry.value));
  if (!decoded) {
    log::Error("malformed lease prefix job dropped", {{"key", job_entry.key}});
    storage::WriteBatch batch;
    batch.Expect(job_entry.key, job_entry.value);
    batch.Delete(job_entry.key);
    return commit(std::move(batch), "sys/leases/revoke-prefix", {{"dropped", job_entry.key}});
  }
  const PrefixJob job = std::move(*decoded);

  // This batch: the lease named exactly by the prefix (first batch only), then the leases
  // below "<prefix>/" after the cursor, in key order.
  std::vector<std::string> ids;
  if (job.cursor.empty()) {
    KW_ASSIGN_OR_RETURN(auto exact, storage_.Get(RecordKey(job.prefix)));
    if (exact) ids.push_back(job.prefix);
  }
  const std::string below = std::string(kRecordPrefix) + job.prefix + "/";
  const std::string after = job.cursor.empty() || job.cursor == job.prefix
                                ? std::string()
                                : RecordKey(job.cursor);
  KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(below, after, kWorkBatchSize));
  for (const storage::Entry& entry : page) ids.push_back(entry.key.substr(kRecordPrefix.size()));
  const bool last = page.size() < kWorkBatchSize;

  // revoke-force revokes at once and removes the records whatever the engine returns.
  std::size_t force_failures = 0;
  if (job.force) {
    for (const std::string& id : ids) {
      auto stored = ReadCommitted(id);
      if (!stored || !*stored) continue;
      LeaseEngine* engine = EngineFor((*stored)->lease.mount);
      if (engine && engine->RevokeCredential((*stored)->lease)) {
        revocations_ += 1;
      } else {
        revocation_failures_ += 1;
        ++force_failures;
      }
    }
    if (force_failures > 0) {
      log::Warn("revoke-force removed leases whose credentials could not be revoked",
                {{"prefix", job.prefix}, {"count", force_failures}});
    }
  }

  std::size_t handled = 0;
  const std::string path =
      std::string(job.force ? "sys/leases/revoke-force/" : "sys/leases/revoke-prefix/") +
      job.prefix;
  Status committed = CommitRetrying(
      commit, path, [&](storage::WriteBatch& batch, nlohmann::json& response) -> Result<bool> {
        handled = 0;
        batch.Expect(job_entry.key, job_entry.value);
        for (const std::string& id : ids) {
          auto current = ReadForUpdate(id, batch);
          if (!current) {
            ReportUnreadable(id, current.error());
            continue;
          }
          if (!*current) continue;
          if (job.force) {
            KW_RETURN_IF_ERROR(StageTransition(&**current, nullptr, batch));
          } else if (!(*current)->revoking) {
            Lease queued = **current;
            queued.revoking = true;
            queued.next_attempt = NowSeconds();
            KW_RETURN_IF_ERROR(StageTransition(&**current, &queued, batch));
          }
          ++handled;
        }
        if (last) {
          batch.Delete(job_entry.key);
        } else {
          PrefixJob next = job;
          next.cursor = ids.back();
          next.processed += static_cast<std::int64_t>(ids.size());
          const std::string text = EncodePrefixJob(next);
          batch.Put(job_entry.key, Bytes(text.begin(), text.end()));
        }
        response = {{"prefix", job.prefix}, {"force", job.force}, {"leases", handled},
                    {"done", last}};
        return true;
      });
  KW_RETURN_IF_ERROR(committed);
  if (job.force) {
    summary.revoked += handled;
  } else {
    summary.marked += handled;
  }
  if (last) log::Info("lease prefix job finished", {{"prefix", job.prefix}, {"force", job.force}});
  summary.more = summary.more || !last || jobs.size() > 1;
  return OkStatus();
}

Result<std::size_t> LeaseManager::Tidy(storage::WriteBatch& batch) {
  std::size_t removed = 0;
  std::int64_t revoking = 0;
  // Expiry and queue entries must name a lease scheduled at exactly that key.
  for (const std::string_view prefix : {kExpiryPrefix, kQueuePrefix}) {
    std::string after;
    for (;;) {
      KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(prefix, after, kScanPage));
      for (const storage::Entry& entry : page) {
        auto parsed = ParseScheduleKey(std::string_view(entry.key).substr(prefix.size()));
        std::optional<Lease> lease;
        if (parsed) {
          KW_ASSIGN_OR_RETURN(lease, ReadForUpdate(parsed->lease_id, batch));
        }
        if (!lease || ScheduleKey(*lease) != entry.key) {
          batch.Delete(entry.key);
          ++removed;
        } else if (lease->revoking) {
          ++revoking;
        }
      }
      if (page.size() < kScanPage) break;
      after = page.back().key;
    }
  }

  // Token index entries must name a stored lease.
  std::string after;
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(kTokenPrefix, after, kScanPage));
    for (const storage::Entry& entry : page) {
      const std::string_view rest = std::string_view(entry.key).substr(kTokenPrefix.size());
      const std::size_t slash = rest.find('/');
      bool exists = false;
      if (slash != std::string_view::npos) {
        KW_ASSIGN_OR_RETURN(auto record, storage_.Get(RecordKey(rest.substr(slash + 1))));
        exists = record.has_value();
      }
      if (!exists) {
        batch.Delete(entry.key);
        ++removed;
      }
    }
    if (page.size() < kScanPage) break;
    after = page.back().key;
  }

  // Recount the records; a counter that disagrees is rewritten (with an Expect on it).
  std::map<std::string, std::int64_t> counts;
  counts[std::string(kCountAllKey)] = 0;
  counts[std::string(kCountRevokingKey)] = revoking;
  after.clear();
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto page, storage_.Scan("sys/lease/count/role/", after, kScanPage));
    for (const storage::Entry& entry : page) counts[entry.key] = 0;
    if (page.size() < kScanPage) break;
    after = page.back().key;
  }
  after.clear();
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto page, storage_.Scan(kRecordPrefix, after, kScanPage));
    for (const storage::Entry& entry : page) {
      ++counts[std::string(kCountAllKey)];
      if (auto role_key = RoleCountKeyForId(entry.key.substr(kRecordPrefix.size()))) {
        ++counts[*role_key];
      }
    }
    if (page.size() < kScanPage) break;
    after = page.back().key;
  }
  for (const auto& [key, count] : counts) {
    KW_ASSIGN_OR_RETURN(std::int64_t stored, ReadCounterForUpdate(storage_, key, batch));
    if (stored != count) StageCounter(key, count, batch);
  }
  return removed;
}

void LeaseManager::Start(InternalCommit commit) {
  {
    std::lock_guard lock(mutex_);
    commit_ = commit;
  }
  std::lock_guard lock(worker_mutex_);
  if (worker_.joinable()) return;
  worker_stop_ = false;
  worker_ = std::thread([this, commit = std::move(commit)] { WorkerLoop(commit); });
}

void LeaseManager::Stop() {
  {
    std::lock_guard lock(worker_mutex_);
    if (!worker_.joinable()) return;
    worker_stop_ = true;
  }
  worker_wake_.notify_all();
  worker_.join();
}

void LeaseManager::Wake() {
  {
    std::lock_guard lock(worker_mutex_);
    worker_woken_ = true;
  }
  worker_wake_.notify_all();
}

bool LeaseManager::stopping() {
  std::lock_guard lock(worker_mutex_);
  return worker_stop_;
}

void LeaseManager::WorkerLoop(InternalCommit commit) {
  std::uint64_t failed_rounds = 0;
  while (!stopping()) {
    auto summary = RunDueWork(commit);
    if (!summary) {
      // Repeated failures (storage down) log the first, then every 100th with the count.
      if (failed_rounds++ % 100 == 0) {
        log::Error("lease worker round failed",
                   {{log::kError, summary.error().message()}, {"failed_rounds", failed_rounds}});
      }
    } else {
      failed_rounds = 0;
      if (summary->more) continue;
    }
    std::unique_lock lock(worker_mutex_);
    worker_wake_.wait_for(lock, kIdleWait, [this] { return worker_stop_ || worker_woken_; });
    worker_woken_ = false;
  }
}

}  // namespace kw::vault::lease
