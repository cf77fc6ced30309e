#pragma once

#include <doctest/doctest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "vault/lease/lease_manager.hpp"
#include "vault/vault_test_env.hpp"

namespace kw::testing {

// The lease manager's collaborator: records what it was asked and fails on demand.
class TestLeaseEngine final : public vault::lease::LeaseEngine {
 public:
  Status RevokeCredential(const vault::lease::Lease& lease) override {
    std::lock_guard lock(mutex_);
    ++revoke_calls_;
    if (fail_revoke) return Unavailable("database unreachable: connection refused");
    revoked_.insert(lease.id);
    return OkStatus();
  }
  Status RenewCredential(const vault::lease::Lease& lease, std::int64_t new_expire_time) override {
    std::lock_guard lock(mutex_);
    if (fail_renew) return Unavailable("database unreachable: connection refused");
    renewed_to_[lease.id] = new_expire_time;
    return OkStatus();
  }

  bool Revoked(const std::string& id) const {
    std::lock_guard lock(mutex_);
    return revoked_.contains(id);
  }
  std::size_t revoked_count() const {
    std::lock_guard lock(mutex_);
    return revoked_.size();
  }
  int revoke_calls() const {
    std::lock_guard lock(mutex_);
    return revoke_calls_;
  }
  std::int64_t RenewedTo(const std::string& id) const {
    std::lock_guard lock(mutex_);
    auto found = renewed_to_.find(id);
    return found == renewed_to_.end() ? 0 : found->second;
  }

  std::atomic<bool> fail_revoke{false};
  std::atomic<bool> fail_renew{false};

 private:
  mutable std::mutex mutex_;
  std::set<std::string> revoked_;
  std::map<std::string, std::int64_t> renewed_to_;
  int revoke_calls_ = 0;
};

// A vault test environment with a lease manager on it and a commit function that records
// the audit paths of the manager's own commits.
struct LeaseTestEnv {
  explicit LeaseTestEnv(vault::lease::LeaseLimits limits = {}) : limits(limits) { Reopen(); }

  // Replaces the manager by a new one on the same storage, as a restart does.
  void Reopen() {
    if (manager) manager->Stop();
    manager = std::make_unique<vault::lease::LeaseManager>(*env.store, *env.barrier, env.clock,
                                                           limits);
    manager->RegisterEngine("database", &engine);
  }

  vault::lease::InternalCommit Commit() {
    return [this](storage::WriteBatch batch, std::string path, nlohmann::json) -> Status {
      {
        std::lock_guard lock(mutex);
        paths.push_back(path);
      }
      return env.store->Commit(std::move(batch));
    };
  }

  // Creates and commits a lease of `role` for token `accessor`.
  vault::lease::Lease Create(std::string_view role = "app", std::int64_t ttl = 3600,
                             std::int64_t max_ttl = 7200, std::string_view accessor = "acc1") {
    vault::lease::Lease lease = manager->NewLease("database", role, accessor, ttl, max_ttl);
    lease.engine_data = {{"db_name", "main"}, {"username", "v-app-" + lease.id.substr(22)}};
    storage::WriteBatch batch;
    auto created = manager->StageCreate(lease, batch);
    REQUIRE(created.has_value());
    REQUIRE(env.store->Commit(std::move(batch)).has_value());
    return *created;
  }

  // Runs worker rounds until one leaves nothing due (at most `limit` rounds).
  vault::lease::WorkSummary RunUntilIdle(int limit = 1000) {
    vault::lease::WorkSummary total;
    for (int round = 0; round < limit; ++round) {
      auto summary = manager->RunDueWork(Commit());
      REQUIRE(summary.has_value());
      total.expired += summary->expired;
      total.marked += summary->marked;
      total.revoked += summary->revoked;
      total.failed += summary->failed;
      if (!summary->more) return total;
    }
    FAIL("work still due after the round limit");
    return total;
  }

  std::int64_t Now() const {
    return std::chrono::duration_cast<std::chrono::seconds>(env.clock.Now().time_since_epoch())
        .count();
  }

  VaultTestEnv env;
  vault::lease::LeaseLimits limits;
  TestLeaseEngine engine;
  std::mutex mutex;
  std::vector<std::string> paths;  // guarded by mutex
  // Last, so it stops its worker before what the worker uses is destroyed.
  std::unique_ptr<vault::lease::LeaseManager> manager;
};

}  // namespace kw::testing
