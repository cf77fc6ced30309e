#include "vault/lease/lease_manager.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <thread>

#include "vault/lease/lease_records.hpp"
#include "vault/lease/lease_test_support.hpp"

namespace {

using kw::Code;
using kw::testing::LeaseTestEnv;
using kw::vault::lease::Lease;
using kw::vault::lease::LeaseLimits;
using kw::vault::lease::RetryDelaySeconds;

void Advance(LeaseTestEnv& t, std::int64_t seconds) {
  t.env.clock.Advance(std::chrono::seconds(seconds));
}

}  // namespace

TEST_SUITE("vault/lease") {
  TEST_CASE("create then lookup") {
    LeaseTestEnv t;
    const Lease lease = t.Create("app", 3600, 7200);
    CHECK(lease.id.starts_with("database/creds/app/"));
    CHECK(lease.id.size() == std::string("database/creds/app/").size() + 24);

    auto found = t.manager->Lookup(lease.id);
    REQUIRE(found.has_value());
    CHECK(found->issue_time == t.Now());
    CHECK(found->expire_time == t.Now() + 3600);
    CHECK(found->max_expire_time == t.Now() + 7200);
    CHECK(found->token_accessor == "acc1");
    CHECK(found->engine_data.at("db_name") == "main");
    CHECK_FALSE(found->revoking);

    auto missing = t.manager->Lookup("database/creds/app/nothing");
    REQUIRE_FALSE(missing.has_value());
    CHECK(missing.error().code() == Code::kNotFound);
  }

  TEST_CASE("lease record is encrypted and bound to its id") {
    LeaseTestEnv t;
    const Lease first = t.Create();
    const Lease second = t.Create();
    auto stored = t.env.store->Get(kw::vault::lease::RecordKey(first.id));
    REQUIRE(stored.has_value());
    REQUIRE(stored->has_value());
    const std::string text(kw::AsText(**stored));
    CHECK(text.find("db_name") == std::string::npos);

    // A record copied under another lease's key fails to decrypt.
    kw::storage::WriteBatch batch;
    batch.Put(kw::vault::lease::RecordKey(second.id), **stored);
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    auto moved = t.manager->Lookup(second.id);
    REQUIRE_FALSE(moved.has_value());
    CHECK(moved.error().code() == Code::kDataLoss);
  }

  TEST_CASE("ttl and max ttl are capped at the limits") {
    LeaseLimits limits;
    limits.default_ttl = 600;
    limits.max_ttl = 1000;
    LeaseTestEnv t(limits);
    const Lease defaulted = t.Create("app", 0, 0);
    CHECK(defaulted.expire_time - defaulted.issue_time == 600);
    CHECK(defaulted.max_expire_time - defaulted.issue_time == 1000);
    const Lease capped = t.Create("app", 5000, 9000);
    CHECK(capped.expire_time - capped.issue_time == 1000);
    CHECK(capped.max_expire_time - capped.issue_time == 1000);
  }

  TEST_CASE("renew past max ttl is capped") {
    LeaseTestEnv t;
    const Lease lease = t.Create("app", 3600, 7200);
    Advance(t, 1800);

    kw::storage::WriteBatch batch;
    auto renewed = t.manager->Renew(lease.id, 100'000, batch);
    REQUIRE(renewed.has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    CHECK(renewed->expire_time == lease.issue_time + 7200);
    CHECK(renewed->last_renewal == t.Now());
    CHECK(t.engine.RenewedTo(lease.id) == lease.issue_time + 7200);

    SUBCASE("increment 0 extends by the lease ttl") {
      Advance(t, 100);
      kw::storage::WriteBatch again;
      auto extended = t.manager->Renew(lease.id, 0, again);
      REQUIRE(extended.has_value());
      CHECK(extended->expire_time == t.Now() + 3600);
    }
    SUBCASE("a small increment sets expiry to now plus increment") {
      kw::storage::WriteBatch again;
      auto extended = t.manager->Renew(lease.id, 60, again);
      REQUIRE(extended.has_value());
      CHECK(extended->expire_time == t.Now() + 60);
    }
    auto found = t.manager->Lookup(lease.id);
    REQUIRE(found.has_value());
    CHECK(found->expire_time == lease.issue_time + 7200);
  }

  TEST_CASE("renew failure of the engine stages nothing") {
    LeaseTestEnv t;
    const Lease lease = t.Create();
    t.engine.fail_renew = true;
    kw::storage::WriteBatch batch;
    auto renewed = t.manager->Renew(lease.id, 60, batch);
    REQUIRE_FALSE(renewed.has_value());
    CHECK(renewed.error().code() == Code::kUnavailable);
    auto found = t.manager->Lookup(lease.id);
    REQUIRE(found.has_value());
    CHECK(found->expire_time == lease.expire_time);
  }

  TEST_CASE("renew of expired revoked or unknown lease is invalid") {
    LeaseTestEnv t;
    const Lease expired = t.Create("app", 60, 7200);
    const Lease revoked = t.Create("app", 3600, 7200);

    kw::storage::WriteBatch revoke;
    REQUIRE(t.manager->RevokeSync(revoked.id, revoke).has_value());
    REQUIRE(t.env.store->Commit(std::move(revoke)).has_value());
    Advance(t, 61);

    for (const std::string& id : {expired.id, revoked.id, std::string("database/creds/app/x")}) {
      CAPTURE(id);
      kw::storage::WriteBatch batch;
      auto renewed = t.manager->Renew(id, 60, batch);
      REQUIRE_FALSE(renewed.has_value());
      CHECK(renewed.error().code() == Code::kInvalidArgument);
      CHECK(renewed.error().message() == "invalid lease");
    }
  }

  TEST_CASE("renew of not renewable lease is rejected") {
    LeaseTestEnv t;
    Lease lease = t.manager->NewLease("database", "app", "acc1", 60, 120);
    lease.renewable = false;
    kw::storage::WriteBatch batch;
    REQUIRE(t.manager->StageCreate(lease, batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    kw::storage::WriteBatch renew;
    auto renewed = t.manager->Renew(lease.id, 60, renew);
    REQUIRE_FALSE(renewed.has_value());
    CHECK(renewed.error().code() == Code::kInvalidArgument);
    CHECK(renewed.error().message() == "lease is not renewable");
  }

  TEST_CASE("renew racing a revoke loses its commit") {
    LeaseTestEnv t;
    const Lease lease = t.Create();
    kw::storage::WriteBatch renew;
    REQUIRE(t.manager->Renew(lease.id, 60, renew).has_value());
    kw::storage::WriteBatch revoke;
    REQUIRE(t.manager->RevokeSync(lease.id, revoke).has_value());
    REQUIRE(t.env.store->Commit(std::move(revoke)).has_value());

    auto committed = t.env.store->Commit(std::move(renew));
    REQUIRE_FALSE(committed.has_value());
    CHECK(committed.error().code() == Code::kAborted);
    CHECK(t.manager->Lookup(lease.id).error().code() == Code::kNotFound);
  }

  TEST_CASE("sync revoke success removes lease and indexes") {
    LeaseTestEnv t;
    const Lease lease = t.Create();
    kw::storage::WriteBatch batch;
    REQUIRE(t.manager->RevokeSync(lease.id, batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());

    CHECK(t.engine.Revoked(lease.id));
    CHECK(t.manager->Lookup(lease.id).error().code() == Code::kNotFound);
    auto expiry = t.env.store->Scan(kw::vault::lease::kExpiryPrefix, "", 10);
    REQUIRE(expiry.has_value());
    CHECK(expiry->empty());
    auto tokens = t.env.store->Scan(kw::vault::lease::kTokenPrefix, "", 10);
    REQUIRE(tokens.has_value());
    CHECK(tokens->empty());
    auto stats = t.manager->GetStats();
    REQUIRE(stats.has_value());
    CHECK(stats->active == 0);
    CHECK(stats->revocations == 1);

    SUBCASE("revoking an unknown lease succeeds with nothing staged") {
      kw::storage::WriteBatch again;
      REQUIRE(t.manager->RevokeSync(lease.id, again).has_value());
      CHECK(t.engine.revoke_calls() == 1);
    }
  }

  TEST_CASE("sync revoke failure queues with growing backoff") {
    LeaseTestEnv t;
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    const Lease lease = t.Create();
    t.engine.fail_revoke = true;

    kw::storage::WriteBatch batch;
    auto revoked = t.manager->RevokeSync(lease.id, batch);
    REQUIRE_FALSE(revoked.has_value());
    CHECK(revoked.error().code() == Code::kUnavailable);
    CHECK(revoked.error().message() ==
          "revocation failed and was queued for retry: database unreachable: connection refused");
    CHECK(batch.ops().size() == 1);  // only the Expect: the queued state is committed already

    auto queued = t.manager->Lookup(lease.id);
    REQUIRE(queued.has_value());
    CHECK(queued->revoking);
    CHECK(queued->attempts == 1);
    CHECK(queued->next_attempt == t.Now() + 1);
    CHECK(queued->last_error == "database unreachable: connection refused");

    // Each due attempt fails again; the delay doubles (with jitter in [d/2, d]) up to the cap.
    std::int64_t previous_delay = 1;
    for (int attempt = 2; attempt <= 14; ++attempt) {
      CAPTURE(attempt);
      auto current = t.manager->Lookup(lease.id);
      REQUIRE(current.has_value());
      Advance(t, current->next_attempt - t.Now());
      auto summary = t.manager->RunDueWork(t.Commit());
      REQUIRE(summary.has_value());
      CHECK(summary->failed == 1);
      auto after = t.manager->Lookup(lease.id);
      REQUIRE(after.has_value());
      CHECK(after->attempts == attempt);
      const std::int64_t delay = after->next_attempt - t.Now();
      const std::int64_t full = std::min<std::int64_t>(600, std::int64_t{1} << (attempt - 1));
      CHECK(delay >= full / 2);
      CHECK(delay <= full);
      CHECK(delay >= previous_delay / 2);
      previous_delay = delay;
    }
    CHECK(previous_delay >= 300);

    // Nothing is due before next_attempt.
    auto idle = t.manager->RunDueWork(t.Commit());
    REQUIRE(idle.has_value());
    CHECK(idle->failed == 0);
  }

  TEST_CASE("retry delays are jittered") {
    std::set<std::int64_t> delays;
    for (double random : {0.0, 0.25, 0.5, 0.75, 0.999}) delays.insert(RetryDelaySeconds(6, random));
    CHECK(delays.size() >= 4);
    CHECK(*delays.begin() == 16);
    CHECK(*delays.rbegin() == 32);
    CHECK(RetryDelaySeconds(1, 0.0) == 1);
    CHECK(RetryDelaySeconds(100, 0.999) == 600);
    CHECK(RetryDelaySeconds(100, 0.0) == 300);
  }

  TEST_CASE("queued revocations spread over time") {
    LeaseTestEnv t;
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    t.engine.fail_revoke = true;
    std::vector<Lease> leases;
    for (int i = 0; i < 12; ++i) leases.push_back(t.Create());
    for (const Lease& lease : leases) {
      kw::storage::WriteBatch batch;
      REQUIRE(t.manager->StageRevokeQueued(lease.id, batch).has_value());
      REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    }
    // Fail six rounds, each when every lease is due; then delays lie in [16, 32].
    for (int round = 0; round < 6; ++round) {
      Advance(t, 40);
      t.RunUntilIdle();
    }
    std::set<std::int64_t> next_attempts;
    for (const Lease& lease : leases) {
      auto found = t.manager->Lookup(lease.id);
      REQUIRE(found.has_value());
      CHECK(found->attempts == 6);
      next_attempts.insert(found->next_attempt);
    }
    CHECK(next_attempts.size() > 1);
  }

  TEST_CASE("retry succeeds after the engine recovers") {
    LeaseTestEnv t;
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    const Lease lease = t.Create();
    t.engine.fail_revoke = true;
    kw::storage::WriteBatch batch;
    REQUIRE_FALSE(t.manager->RevokeSync(lease.id, batch).has_value());
    CHECK_FALSE(t.engine.Revoked(lease.id));

    t.engine.fail_revoke = false;
    auto early = t.RunUntilIdle();
    CHECK(early.revoked == 0);  // not due yet
    Advance(t, 1);
    auto summary = t.RunUntilIdle();
    CHECK(summary.revoked == 1);
    CHECK(t.engine.Revoked(lease.id));
    CHECK(t.manager->Lookup(lease.id).error().code() == Code::kNotFound);
    auto stats = t.manager->GetStats();
    REQUIRE(stats.has_value());
    CHECK(stats->revoking == 0);
    CHECK(stats->revocation_failures == 1);
  }

  TEST_CASE("queued revocations survive a restart") {
    LeaseTestEnv t;
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    const Lease lease = t.Create();
    t.engine.fail_revoke = true;
    kw::storage::WriteBatch batch;
    REQUIRE_FALSE(t.manager->RevokeSync(lease.id, batch).has_value());

    t.Reopen();
    auto still = t.manager->Lookup(lease.id);
    REQUIRE(still.has_value());
    CHECK(still->revoking);
    CHECK(still->attempts == 1);

    t.engine.fail_revoke = false;
    Advance(t, 2);
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    CHECK(t.engine.Revoked(lease.id));
    CHECK(t.manager->Lookup(lease.id).error().code() == Code::kNotFound);
  }

  TEST_CASE("leases expired while down are revoked by load") {
    LeaseTestEnv t;
    const Lease short_lived = t.Create("app", 60, 120);
    const Lease long_lived = t.Create("app", 3600, 7200);
    t.manager.reset();
    Advance(t, 61);

    t.Reopen();
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    CHECK(t.engine.Revoked(short_lived.id));
    CHECK(t.manager->Lookup(short_lived.id).error().code() == Code::kNotFound);
    CHECK_FALSE(t.engine.Revoked(long_lived.id));
    CHECK(t.manager->Lookup(long_lived.id).has_value());
    std::lock_guard lock(t.mutex);
    CHECK(std::count(t.paths.begin(), t.paths.end(), "sys/leases/expire") == 1);
  }

  TEST_CASE("expired lease whose revocation fails shows in lookup") {
    LeaseTestEnv t;
    const Lease lease = t.Create("app", 60, 120);
    t.engine.fail_revoke = true;
    Advance(t, 60);
    REQUIRE(t.manager->Load(t.Commit()).has_value());
    auto found = t.manager->Lookup(lease.id);
    REQUIRE(found.has_value());
    CHECK(found->revoking);
    CHECK(found->attempts == 1);
    auto stats = t.manager->GetStats();
    REQUIRE(stats.has_value());
    CHECK(stats->revoking == 1);
    CHECK(stats->active == 0);
    CHECK(stats->expirations == 1);
  }

  TEST_CASE("global quota rejects creates") {
    LeaseLimits limits;
    limits.max_leases = 3;
    LeaseTestEnv t(limits);
    for (int i = 0; i < 3; ++i) t.Create(i % 2 ? "app" : "other");
    Lease lease = t.manager->NewLease("database", "third", "acc1", 60, 60);
    kw::storage::WriteBatch batch;
    auto created = t.manager->StageCreate(lease, batch);
    REQUIRE_FALSE(created.has_value());
    CHECK(created.error().code() == Code::kResourceExhausted);
    CHECK(created.error().message().find("max_leases") != std::string::npos);
    auto checked = t.manager->CheckQuota("database", "third");
    REQUIRE_FALSE(checked.has_value());
    CHECK(checked.error().code() == Code::kResourceExhausted);
  }

  TEST_CASE("per role quota rejects creates of that role only") {
    LeaseLimits limits;
    limits.max_leases_per_role = 2;
    LeaseTestEnv t(limits);
    t.Create("app");
    const Lease second = t.Create("app");
    Lease lease = t.manager->NewLease("database", "app", "acc1", 60, 60);
    kw::storage::WriteBatch batch;
    auto created = t.manager->StageCreate(lease, batch);
    REQUIRE_FALSE(created.has_value());
    CHECK(created.error().code() == Code::kResourceExhausted);
    CHECK(created.error().message().find("database/creds/app") != std::string::npos);
    CHECK(created.error().message().find("max_leases_per_role") != std::string::npos);
    t.Create("app2");

    // A revoked lease frees its slot.
    kw::storage::WriteBatch revoke;
    REQUIRE(t.manager->RevokeSync(second.id, revoke).has_value());
    REQUIRE(t.env.store->Commit(std::move(revoke)).has_value());
    t.Create("app");
  }

  TEST_CASE("quota holds under concurrent creates") {
    LeaseLimits limits;
    limits.max_leases_per_role = 20;
    LeaseTestEnv t(limits);
    std::atomic<int> created{0};
    std::atomic<int> exhausted{0};
    std::atomic<int> other_errors{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
      threads.emplace_back([&] {
        for (int n = 0; n < 5; ++n) {
          // Like the router: restage and recommit when the commit aborts on an Expect.
          for (int attempt = 0; attempt < 200; ++attempt) {
            Lease lease = t.manager->NewLease("database", "app", "acc1", 60, 60);
            kw::storage::WriteBatch batch;
            auto staged = t.manager->StageCreate(lease, batch);
            if (!staged) {
              (staged.error().code() == Code::kResourceExhausted ? exhausted : other_errors)++;
              break;
            }
            auto committed = t.env.store->Commit(std::move(batch));
            if (committed) {
              created++;
              break;
            }
            if (committed.error().code() != Code::kAborted) {
              other_errors++;
              break;
            }
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    CHECK(created == 20);
    CHECK(exhausted == 20);
    CHECK(other_errors == 0);
    auto listed = t.manager->List("database/creds/app");
    REQUIRE(listed.has_value());
    CHECK(listed->size() == 20);
    auto stats = t.manager->GetStats();
    REQUIRE(stats.has_value());
    CHECK(stats->active == 20);
  }

  TEST_CASE("prefixes match whole segments") {
    CHECK(kw::vault::lease::CoversLeaseId("database/creds/app", "database/creds/app/x"));
    CHECK(kw::vault::lease::CoversLeaseId("database/creds/app", "database/creds/app"));
    CHECK_FALSE(kw::vault::lease::CoversLeaseId("database/creds/app", "database/creds/app2/x"));
    CHECK(kw::vault::lease::CoversLeaseId("", "database/creds/app/x"));

    LeaseTestEnv t;
    const Lease app = t.Create("app");
    const Lease app2 = t.Create("app2");

    auto roles = t.manager->List("database/creds/");
    REQUIRE(roles.has_value());
    CHECK(*roles == std::vector<std::string>{"app/", "app2/"});
    auto app_leases = t.manager->List("database/creds/app");
    REQUIRE(app_leases.has_value());
    REQUIRE(app_leases->size() == 1);
    CHECK(app_leases->front() == app.id.substr(std::string("database/creds/app/").size()));

    kw::storage::WriteBatch batch;
    REQUIRE(t.manager->StagePrefixJob("database/creds/app/", /*force=*/false, batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    auto summary = t.RunUntilIdle();
    CHECK(summary.marked == 1);
    CHECK(summary.revoked == 1);
    CHECK(t.engine.Revoked(app.id));
    CHECK_FALSE(t.engine.Revoked(app2.id));
    CHECK(t.manager->Lookup(app2.id).has_value());

    kw::storage::WriteBatch empty;
    auto rejected = t.manager->StagePrefixJob("/", false, empty);
    REQUIRE_FALSE(rejected.has_value());
    CHECK(rejected.error().code() == Code::kInvalidArgument);
  }

  TEST_CASE("revoke force removes leases whose revocation fails") {
    LeaseTestEnv t;
    const Lease app = t.Create("app");
    const Lease other = t.Create("other");
    t.engine.fail_revoke = true;
    kw::storage::WriteBatch batch;
    REQUIRE(t.manager->StagePrefixJob("database/creds/app", /*force=*/true, batch).has_value());
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    t.RunUntilIdle();
    CHECK(t.manager->Lookup(app.id).error().code() == Code::kNotFound);
    CHECK(t.manager->Lookup(other.id).has_value());
    CHECK(t.engine.revoke_calls() == 1);
    std::lock_guard lock(t.mutex);
    CHECK(std::count(t.paths.begin(), t.paths.end(), "sys/leases/revoke-force/database/creds/app") ==
          1);
  }

  TEST_CASE("token accessor revocation revokes its leases") {
    LeaseTestEnv t;
    const Lease first = t.Create("app", 3600, 7200, "acc1");
    const Lease second = t.Create("other", 3600, 7200, "acc1");
    const Lease foreign = t.Create("app", 3600, 7200, "acc2");

    kw::storage::WriteBatch batch;
    auto marked = t.manager->StageRevokeForTokens({"acc1", "unknown"}, batch);
    REQUIRE(marked.has_value());
    CHECK(*marked == 2);
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    auto summary = t.RunUntilIdle();
    CHECK(summary.revoked == 2);
    CHECK(t.engine.Revoked(first.id));
    CHECK(t.engine.Revoked(second.id));
    CHECK_FALSE(t.engine.Revoked(foreign.id));
    CHECK(t.manager->Lookup(foreign.id).has_value());
  }

  TEST_CASE("tidy removes dangling index entries and recounts") {
    LeaseTestEnv t;
    const Lease kept = t.Create();
    const Lease lost = t.Create();
    kw::storage::WriteBatch damage;
    damage.Delete(kw::vault::lease::RecordKey(lost.id));
    REQUIRE(t.env.store->Commit(std::move(damage)).has_value());

    kw::storage::WriteBatch batch;
    auto removed = t.manager->Tidy(batch);
    REQUIRE(removed.has_value());
    CHECK(*removed == 2);  // the expiry and token index entries
    REQUIRE(t.env.store->Commit(std::move(batch)).has_value());
    auto stats = t.manager->GetStats();
    REQUIRE(stats.has_value());
    CHECK(stats->active == 1);
    auto counted = kw::vault::lease::ReadCounter(
        *t.env.store, kw::vault::lease::RoleCountKey("database", "app"));
    REQUIRE(counted.has_value());
    CHECK(*counted == 1);
    CHECK(t.manager->Lookup(kept.id).has_value());
  }
}
