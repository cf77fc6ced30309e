#include <doctest/doctest.h>

#include <chrono>
#include <thread>

#include "vault/lease/lease_manager.hpp"
#include "vault/lease/lease_records.hpp"
#include "vault/lease/lease_test_support.hpp"

namespace {

using kw::Code;
using kw::testing::LeaseTestEnv;
using kw::vault::lease::Lease;

// Polls `done` every 10 ms of wall time, at most `limit` times; returns whether it held.
template <typename Condition>
bool WaitFor(Condition done, int limit = 6000) {
  for (int i = 0; i < limit; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return done();
}

// Creates `count` leases of `role`, committing 500 per batch.
void CreateMany(LeaseTestEnv& t, std::string_view role, int count) {
  for (int done = 0; done < count;) {
    kw::storage::WriteBatch batch;
    for (int i = 0; i < 500 && done < count; ++i, ++done) {
      Lease lease = t.manager->NewLease("database", role, "acc1", 3600, 7200);
      REQUIRE(t.manager->StageCreate(lease, batch).has_value());
    }
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
  }
}

}  // namespace

TEST_SUITE("vault/lease") {
  TEST_CASE("worker thread revokes expired leases") {
    LeaseTestEnv t;
    const Lease lease = t.Create("app", 60, 120);
    t.manager->Start(t.Commit());
    t.env.clock.Advance(std::chrono::seconds(61));
    t.manager->Wake();
    CHECK(WaitFor([&] { return t.engine.Revoked(lease.id); }));
    CHECK(WaitFor([&] {
      auto found = t.manager->Lookup(lease.id);
      return !found && found.error().code() == Code::kNotFound;
    }));
    t.manager->Stop();
  }

  TEST_CASE("worker thread runs a queued revocation when woken") {
    LeaseTestEnv t;
    const Lease lease = t.Create();
    t.manager->Start(t.Commit());
    kw::storage::WriteBatch batch;
    REQUIRE(t.manager->StageRevokeQueued(lease.id, batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    t.manager->Wake();
    CHECK(WaitFor([&] { return !t.manager->Lookup(lease.id).has_value(); }));
    CHECK(t.engine.Revoked(lease.id));
  }

  TEST_CASE("stop joins and start resumes") {
    LeaseTestEnv t;
    t.manager->Start(t.Commit());
    t.manager->Stop();
    t.manager->Stop();
    const Lease lease = t.Create("app", 10, 10);
    t.env.clock.Advance(std::chrono::seconds(11));
    t.manager->Start(t.Commit());
    CHECK(WaitFor([&] { return t.engine.Revoked(lease.id); }));
  }

  TEST_CASE("prefix job of 20000 leases completes in bounded batches") {
    kw::vault::lease::LeaseLimits limits;
    LeaseTestEnv t(limits);
    constexpr int kLeases = 20'000;
    CreateMany(t, "bulk", kLeases);
    const Lease bystander = t.Create("app");

    // Count, per internal commit, the lease records it writes or deletes.
    std::mutex mutex;
    std::size_t max_records_per_commit = 0;
    int commits = 0;
    kw::vault::lease::InternalCommit commit =
        [&](kw::storage::WriteBatch batch, std::string path, nlohmann::json response) {
          std::size_t records = 0;
          for (const auto& op : batch.ops()) {
            if (op.kind != kw::storage::WriteBatch::Op::Kind::kExpect &&
                op.key.starts_with(kw::vault::lease::kRecordPrefix)) {
              ++records;
            }
          }
          {
            std::lock_guard lock(mutex);
            max_records_per_commit = std::max(max_records_per_commit, records);
            ++commits;
          }
          return t.Commit()(std::move(batch), std::move(path), std::move(response));
        };

    kw::storage::WriteBatch batch;
    REQUIRE(t.manager->StagePrefixJob("database/creds/bulk", false, batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    t.manager->Start(commit);
    t.manager->Wake();

    // Lookups keep succeeding while the job runs.
    int lookups = 0;
    int failed_lookups = 0;
    const bool finished = WaitFor(
        [&] {
          ++lookups;
          if (!t.manager->Lookup(bystander.id)) ++failed_lookups;
          return t.engine.revoked_count() == static_cast<std::size_t>(kLeases);
        },
        30'000);
    t.manager->Stop();
    REQUIRE(finished);
    CHECK(failed_lookups == 0);
    CHECK(lookups > 1);
    CHECK(max_records_per_commit <= kw::vault::lease::kWorkBatchSize);
    CHECK(commits >= 2 * kLeases / static_cast<int>(kw::vault::lease::kWorkBatchSize));

    auto stats = t.manager->GetStats();
    REQUIRE(stats.has_value());
    CHECK(stats->active == 1);
    CHECK(stats->revoking == 0);
    CHECK(stats->prefix_jobs == 0);
    auto left = t.manager->List("database/creds/bulk");
    REQUIRE(left.has_value());
    CHECK(left->empty());
    CHECK(t.manager->Lookup(bystander.id).has_value());
  }
}
