#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"
#include "vault/lease/lease.hpp"

namespace kw::vault::lease {

// Quotas and TTL bounds of every lease. TTLs are seconds.
struct LeaseLimits {
  std::size_t max_leases = 1'000'000;         // stored leases, revoking ones included
  std::size_t max_leases_per_role = 100'000;  // stored leases of one <mount>/creds/<role>
  std::int64_t default_ttl = 32 * 24 * 3600;  // when the engine requests none
  std::int64_t max_ttl = 32 * 24 * 3600;      // no lease lives longer
};

// Commits `batch` together with an audit record at `path` with `response`, for work the server
// does itself (expiry, queued revocations, prefix jobs). The core provides it (audit log
// Attach + storage Commit). aborted when an Expect of the batch failed.
using InternalCommit =
    std::function<Status(storage::WriteBatch batch, std::string path, nlohmann::json response)>;

// Backoff of queued revocations: 1 s after the first failure, doubling up to 10 minutes.
inline constexpr std::int64_t kRetryBaseSeconds = 1;
inline constexpr std::int64_t kRetryCapSeconds = 600;
// Leases handled per commit by expiry, prefix jobs and the revocation queue.
inline constexpr std::size_t kWorkBatchSize = 500;

// Returns the delay before the next revocation attempt after `attempts` failures: the
// exponential backoff d = min(cap, base * 2^(attempts-1)), with jitter drawn uniformly from
// [d/2, d], rounded up to whole seconds. `unit_random` is in [0, 1).
std::int64_t RetryDelaySeconds(std::int32_t attempts, double unit_random);

// Lease counts and revocation counters for sys/metrics.
struct LeaseStats {
  std::uint64_t active = 0;               // stored leases not being revoked
  std::uint64_t revoking = 0;             // leases whose revocation is queued
  std::uint64_t prefix_jobs = 0;          // prefix revocation jobs still running
  std::uint64_t revocations = 0;          // credentials revoked since start-up
  std::uint64_t revocation_failures = 0;  // failed revocation attempts since start-up
  std::uint64_t expirations = 0;          // leases the worker found expired since start-up
};

// The stored leases of one role, revoking ones included, for sys/metrics.
struct RoleLeaseCount {
  std::string mount;  // "database"
  std::string role;
  std::uint64_t count = 0;
};

// Counts of one round of background work.
struct WorkSummary {
  std::size_t expired = 0;       // leases marked revoking because they expired
  std::size_t marked = 0;        // leases marked revoking by prefix jobs
  std::size_t revoked = 0;       // credentials revoked and their leases removed
  std::size_t failed = 0;        // revocation attempts that failed and were rescheduled
  bool more = false;             // due work remains: run another round at once
};

// Owns the leases of dynamic credentials: records, expiry schedule, revocation queue and
// quotas, all in storage (the schedule is the storage index, so a restart loses nothing).
// Every read-modify-write of a lease record carries an Expect on the record, so concurrent
// renew, revoke and the worker never lose an update: a losing request commit aborts and the
// router reruns it; the worker reruns its own. Thread-safe. Storage, barrier, clock and the
// registered engines must outlive the manager.
class LeaseManager {
 public:
  LeaseManager(storage::Storage& storage, Barrier& barrier, const Clock& clock,
               LeaseLimits limits = {});
  ~LeaseManager();
  LeaseManager(const LeaseManager&) = delete;
  LeaseManager& operator=(const LeaseManager&) = delete;

  // Registers the engine that renews and revokes the credentials of leases under `mount`.
  // Register before Load, so start-up revocations find their engine.
  void RegisterEngine(std::string mount, LeaseEngine* engine);

  // Keeps `commit` for the server's own writes, marks every lease that expired while the
  // server was down as revoking, and runs the due revocations once, before the server serves.
  // Revocations that fail stay queued for the worker. Errors only when storage fails.
  Status Load(const InternalCommit& commit);

  // Starts the worker thread (see lease_worker.cpp): it expires due leases, runs queued
  // revocations with backoff, and processes prefix jobs in batches, holding no lock that
  // requests need. Stop joins it; the destructor stops it.
  void Start(InternalCommit commit);
  void Stop();
  // Wakes the worker early, after a commit that queued work.
  void Wake();

  // Runs one round of due work (expiry, one prefix job batch, one revocation queue batch),
  // committing through `commit`. The worker calls it; tests call it to step the worker.
  Result<WorkSummary> RunDueWork(const InternalCommit& commit);

  // Returns a new lease id: "<mount>/creds/<role>/<24 random base62 characters>".
  std::string NewLeaseId(std::string_view mount, std::string_view role) const;

  // Returns a lease issued now with a new id, TTL `ttl` (0: the default TTL) and max TTL
  // `max_ttl` (0: the limit), both capped at LeaseLimits::max_ttl.
  Lease NewLease(std::string_view mount, std::string_view role, std::string_view token_accessor,
                 std::int64_t ttl, std::int64_t max_ttl) const;

  // Checks the global and per-role quotas against committed counts, so an engine can refuse
  // before it creates a credential. resource_exhausted naming the quota when one is reached.
  Status CheckQuota(std::string_view mount, std::string_view role) const;

  // Stages a new lease (record, expiry index, token index, counters) after the quota checks,
  // which hold under concurrent creates because the counters are Expect-ed. Caps expire_time
  // and max_expire_time at issue_time + LeaseLimits::max_ttl. Returns the lease as stored.
  // resource_exhausted naming the quota when one is reached; invalid_argument for a malformed
  // id or a mount without an engine.
  Result<Lease> StageCreate(const Lease& lease, storage::WriteBatch& batch);

  // Returns the committed lease. not_found when there is none (never issued, or revoked).
  Result<Lease> Lookup(std::string_view id) const;

  // Lists the names directly below `prefix` (segment-wise; a trailing '/' is optional), as
  // Vault's LIST sys/leases/lookup/<prefix> does: lease suffixes and "<segment>/" entries.
  Result<std::vector<std::string>> List(std::string_view prefix) const;

  // Extends the lease to now + `increment` seconds (0: the lease's TTL), capped at its
  // max_expire_time, after the engine extended the credential. invalid_argument "invalid
  // lease" when it is unknown, expired or being revoked, and "lease is not renewable"; an
  // engine failure keeps its code. On error nothing is staged.
  Result<Lease> Renew(std::string_view id, std::int64_t increment, storage::WriteBatch& batch);

  // Revokes the credential now. Success stages the lease's removal (an unknown lease is
  // success with nothing staged, as in Vault). On failure the lease is queued for retry
  // (attempts, next_attempt, last_error) and committed at once through the InternalCommit
  // given to Load or Start, because the request's batch is dropped on error (without one,
  // it is staged in `batch`). Then returns unavailable "revocation failed and was queued for
  // retry: <error>".
  Status RevokeSync(std::string_view id, storage::WriteBatch& batch);

  // Stages the lease as revoking with its next attempt due now. Unknown lease: nothing staged.
  // Call Wake after the commit.
  Status StageRevokeQueued(std::string_view id, storage::WriteBatch& batch);

  // Stages every lease created by these token accessors as revoking, due now; returns how
  // many were marked. Call Wake after the commit.
  Result<std::size_t> StageRevokeForTokens(const std::vector<std::string>& accessors,
                                           storage::WriteBatch& batch);

  // Returns the ids of the lease that `prefix` names and of the leases below "<prefix>/"
  // (whole segments, trailing '/' ignored), in key order. At most `limit` + 1 ids are
  // returned, so that a caller can tell whether more than `limit` exist. invalid_argument for
  // an empty prefix.
  Result<std::vector<std::string>> IdsUnderPrefix(std::string_view prefix,
                                                  std::size_t limit) const;

  // Stages a durable prefix job for leases under `prefix` (whole segments; trailing '/'
  // ignored). The worker marks them revoking in batches; with `force` it revokes them and
  // removes their records even when revocation fails (revoke-force). invalid_argument for an
  // empty prefix. Call Wake after the commit.
  Status StagePrefixJob(std::string_view prefix, bool force, storage::WriteBatch& batch);

  // Stages the removal of index entries that point to no lease (or to a lease scheduled
  // elsewhere) and recomputes the counters from the records. Returns the entries removed.
  Result<std::size_t> Tidy(storage::WriteBatch& batch);

  // Returns counts from storage and counters since start-up.
  Result<LeaseStats> GetStats() const;

  // Returns the stored lease count of every role that ever had a lease, read from the per-role
  // counters: one storage row per role, whatever the number of leases.
  Result<std::vector<RoleLeaseCount>> CountByRole() const;

 private:
  struct Stored {
    Lease lease;
    Bytes sealed;  // the stored ciphertext
  };

  std::int64_t NowSeconds() const;
  LeaseEngine* EngineFor(std::string_view mount) const;
  // Reads the committed lease; nullopt when absent.
  Result<std::optional<Stored>> ReadCommitted(std::string_view id) const;
  // Reads the lease as `batch` would see it, adding an Expect on the committed record.
  Result<std::optional<Lease>> ReadForUpdate(std::string_view id, storage::WriteBatch& batch);
  // Stages the change from `before` to `after` (nullptr: absent): record, indexes, counters.
  Status StageTransition(const Lease* before, const Lease* after, storage::WriteBatch& batch);
  // Returns `lease` after a failed revocation attempt with `error`.
  Lease AfterFailedAttempt(Lease lease, const Error& error) const;
  // Commits the queued state of a failed sync revocation in a batch of its own.
  Status CommitQueuedFailure(std::string_view id, const Error& error);
  std::optional<InternalCommit> commit() const;

  // Worker steps (lease_worker.cpp).
  Status ExpireDue(const InternalCommit& commit, WorkSummary& summary);
  Status RunPrefixJob(const InternalCommit& commit, WorkSummary& summary);
  Status RunRevocationQueue(const InternalCommit& commit, WorkSummary& summary);
  // Logs, once per lease, a record the worker cannot read and so skips: one damaged record
  // must not stop the worker.
  void ReportUnreadable(std::string_view lease_id, const Error& error);
  void WorkerLoop(InternalCommit commit);
  bool stopping();

  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;
  const LeaseLimits limits_;

  mutable std::mutex mutex_;
  std::map<std::string, LeaseEngine*, std::less<>> engines_;  // guarded by mutex_
  std::optional<InternalCommit> commit_;                      // guarded by mutex_

  std::mutex worker_mutex_;
  std::condition_variable worker_wake_;
  bool worker_stop_ = false;  // guarded by worker_mutex_
  bool worker_woken_ = false;  // guarded by worker_mutex_
  std::thread worker_;

  std::set<std::string> unreadable_reported_;  // guarded by mutex_

  std::atomic<std::uint64_t> revocations_{0};
  std::atomic<std::uint64_t> revocation_failures_{0};
  std::atomic<std::uint64_t> expirations_{0};
};

}  // namespace kw::vault::lease
