#include "api/rate_limit.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/server_config.hpp"

namespace {

using kw::api::BucketLimit;
using kw::api::LockoutConfig;
using kw::api::LoginLockout;
using kw::api::RateLimiter;
using kw::api::SteadyTime;
using std::chrono::milliseconds;
using std::chrono::seconds;

const SteadyTime kStart = SteadyTime() + std::chrono::hours(1);

// Returns `count` distinct keys that RateLimiter keeps in the same shard as `key`.
std::vector<std::string> KeysInShardOf(const std::string& key, std::size_t count) {
  std::vector<std::string> keys;
  for (int i = 0; keys.size() < count; ++i) {
    const std::string candidate = "10.0.0." + std::to_string(i);
    if (candidate != key && RateLimiter::ShardOf(candidate) == RateLimiter::ShardOf(key)) {
      keys.push_back(candidate);
    }
  }
  return keys;
}

LockoutConfig Lockout(std::uint32_t threshold) {
  LockoutConfig config;
  config.threshold = threshold;
  config.duration = seconds(900);
  config.counter_reset = seconds(600);
  return config;
}

}  // namespace

TEST_SUITE("api/rate_limit") {
  TEST_CASE("burst then refusal") {
    RateLimiter limiter(BucketLimit{1, 3}, 1000);
    for (int i = 0; i < 3; ++i) CHECK(limiter.Take("127.0.0.1", kStart).allowed);
    const auto refused = limiter.Take("127.0.0.1", kStart);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.retry_after == seconds(1));
  }

  TEST_CASE("bucket refills at the rate") {
    RateLimiter limiter(BucketLimit{0.5, 1}, 1000);
    CHECK(limiter.Take("a", kStart).allowed);
    const auto refused = limiter.Take("a", kStart);
    CHECK_FALSE(refused.allowed);
    CHECK(refused.retry_after == seconds(2));
    CHECK_FALSE(limiter.Take("a", kStart + milliseconds(1500)).allowed);
    CHECK(limiter.Take("a", kStart + milliseconds(2000)).allowed);
    CHECK_FALSE(limiter.Take("a", kStart + milliseconds(2000)).allowed);
  }

  TEST_CASE("refill stops at burst") {
    RateLimiter limiter(BucketLimit{10, 2}, 1000);
    CHECK(limiter.Take("a", kStart).allowed);
    // An hour idle refills two requests, not 36,000.
    const SteadyTime later = kStart + std::chrono::hours(1);
    CHECK(limiter.Take("a", later).allowed);
    CHECK(limiter.Take("a", later).allowed);
    CHECK_FALSE(limiter.Take("a", later).allowed);
  }

  TEST_CASE("retry after rounds up") {
    RateLimiter slow(BucketLimit{0.25, 1}, 1000);
    CHECK(slow.Take("a", kStart).allowed);
    CHECK(slow.Take("a", kStart).retry_after == seconds(4));
    CHECK(slow.Take("a", kStart + milliseconds(1100)).retry_after == seconds(3));

    // Waits below one second are sent as 1, the smallest Retry-After that means "wait".
    RateLimiter fast(BucketLimit{100, 1}, 1000);
    CHECK(fast.Take("a", kStart).allowed);
    CHECK(fast.Take("a", kStart).retry_after == seconds(1));
  }

  TEST_CASE("default burst follows the rate") {
    RateLimiter limiter(BucketLimit{2.5, 0}, 1000);
    for (int i = 0; i < 3; ++i) CHECK(limiter.Take("a", kStart).allowed);
    CHECK_FALSE(limiter.Take("a", kStart).allowed);
  }

  TEST_CASE("keys have separate buckets") {
    RateLimiter limiter(BucketLimit{1, 1}, 1000);
    CHECK(limiter.Take("127.0.0.1", kStart).allowed);
    CHECK_FALSE(limiter.Take("127.0.0.1", kStart).allowed);
    CHECK(limiter.Take("127.0.0.2", kStart).allowed);
  }

  TEST_CASE("first rejection flagged once") {
    RateLimiter limiter(BucketLimit{1, 1}, 1000);
    CHECK(limiter.Take("a", kStart).allowed);
    CHECK(limiter.Take("a", kStart).first_rejection);
    CHECK_FALSE(limiter.Take("a", kStart).first_rejection);
    CHECK(limiter.Take("a", kStart + seconds(1)).allowed);
    CHECK(limiter.Take("a", kStart + seconds(1)).first_rejection);
  }

  TEST_CASE("disabled limiter tracks nothing") {
    RateLimiter limiter(BucketLimit{}, 1000);
    for (int i = 0; i < 100; ++i) CHECK(limiter.Take("a", kStart).allowed);
    CHECK(limiter.TrackedKeys() == 0);
  }

  TEST_CASE("address spray stays bounded") {
    constexpr std::size_t kMaxKeys = RateLimiter::kShards * 16;
    RateLimiter limiter(BucketLimit{1, 1}, kMaxKeys);
    for (int i = 0; i < 100'000; ++i) {
      const std::string address =
          "10." + std::to_string(i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
          std::to_string(i % 256);
      CHECK(limiter.Take(address, kStart + milliseconds(i)).allowed);
    }
    CHECK(limiter.TrackedKeys() <= kMaxKeys);
    CHECK(limiter.TrackedKeys() >= kMaxKeys / 2);
  }

  TEST_CASE("refilled buckets evicted first") {
    // Four buckets per shard. B, C and D are older than A but still short of tokens, and A
    // has refilled: a new key in their shard must drop A and keep the others.
    RateLimiter limiter(BucketLimit{1, 2}, RateLimiter::kShards * 4);
    const std::string a = "127.0.0.1";
    const std::vector<std::string> others = KeysInShardOf(a, 4);
    for (int i = 0; i < 3; ++i) {
      CHECK(limiter.Take(others[i], kStart).allowed);
      CHECK(limiter.Take(others[i], kStart).allowed);
    }
    CHECK(limiter.Take(a, kStart + milliseconds(500)).allowed);

    const SteadyTime later = kStart + milliseconds(1600);
    CHECK(limiter.Take(others[3], later).allowed);
    CHECK(limiter.TrackedKeys() == 4);
    // B, C and D kept their buckets: 1.6 tokens refilled, so one request passes and the next
    // does not. A new bucket would pass two.
    for (int i = 0; i < 3; ++i) {
      CAPTURE(others[i]);
      CHECK(limiter.Take(others[i], later).allowed);
      CHECK_FALSE(limiter.Take(others[i], later).allowed);
    }
  }

  TEST_CASE("least recently used evicted when none refilled") {
    RateLimiter limiter(BucketLimit{1, 1}, RateLimiter::kShards * 2);
    const std::string a = "127.0.0.1";
    const std::vector<std::string> others = KeysInShardOf(a, 2);
    CHECK(limiter.Take(a, kStart).allowed);
    CHECK(limiter.Take(others[0], kStart + milliseconds(100)).allowed);
    CHECK(limiter.Take(others[1], kStart + milliseconds(200)).allowed);
    CHECK(limiter.TrackedKeys() == 2);
    // others[0] kept its empty bucket; A lost its bucket and starts full again.
    CHECK_FALSE(limiter.Take(others[0], kStart + milliseconds(200)).allowed);
    CHECK(limiter.Take(a, kStart + milliseconds(200)).allowed);
  }

  TEST_CASE("lockout after threshold failures") {
    LoginLockout lockout(Lockout(3), 1000);
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart + seconds(1)));
    CHECK_FALSE(lockout.LockedFor("role", "127.0.0.1", kStart + seconds(1)).has_value());
    CHECK(lockout.RecordFailure("role", "127.0.0.1", kStart + seconds(2)));
    const auto locked = lockout.LockedFor("role", "127.0.0.1", kStart + seconds(2));
    REQUIRE(locked.has_value());
    CHECK(*locked == seconds(900));
    CHECK(lockout.LockedFor("role", "127.0.0.1", kStart + milliseconds(901'500)) == seconds(1));
  }

  TEST_CASE("concurrent attempts never evaluate more than the threshold") {
    // A burst of logins that all arrive before any has failed: only `threshold` are let
    // through to be evaluated. The rest wait for a place, find none and get a 1 s retry delay.
    LoginLockout lockout(Lockout(3), 1000);
    int admitted = 0;
    for (int i = 0; i < 40; ++i) {
      const auto refused = lockout.Begin("role", "127.0.0.1", kStart);
      if (!refused) {
        ++admitted;
      } else {
        CHECK(*refused == seconds(1));
      }
    }
    CHECK(admitted == 3);
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK(lockout.Begin("role", "127.0.0.1", kStart + seconds(1)) == seconds(899));
    CHECK(lockout.Begin("role", "127.0.0.2", kStart + seconds(1)) == std::nullopt);
  }

  TEST_CASE("a waiting attempt takes a freed place") {
    // With failures counted, as without, an attempt over the bound waits for a running one to
    // end instead of being refused.
    LoginLockout lockout(Lockout(2), 1000);
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK_FALSE(lockout.Begin("role", "127.0.0.1", kStart).has_value());
    std::optional<std::chrono::seconds> waited = seconds(-1);
    std::thread waiter([&] { waited = lockout.Begin("role", "127.0.0.1", kStart); });
    std::this_thread::sleep_for(milliseconds(20));
    lockout.RecordSuccess("role", "127.0.0.1");
    waiter.join();
    CHECK_FALSE(waited.has_value());
  }

  TEST_CASE("abandoned and successful attempts free their place") {
    LoginLockout lockout(Lockout(2), 1000);
    CHECK_FALSE(lockout.Begin("role", "127.0.0.1", kStart).has_value());
    CHECK_FALSE(lockout.Begin("role", "127.0.0.1", kStart).has_value());
    CHECK(lockout.Begin("role", "127.0.0.1", kStart).has_value());
    lockout.RecordAbandoned("role", "127.0.0.1");
    CHECK_FALSE(lockout.Begin("role", "127.0.0.1", kStart).has_value());
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    lockout.RecordSuccess("role", "127.0.0.1");
    CHECK_FALSE(lockout.Begin("role", "127.0.0.1", kStart).has_value());
    CHECK_FALSE(lockout.Begin("role", "127.0.0.1", kStart).has_value());
  }

  TEST_CASE("lockout ends and count restarts") {
    LoginLockout lockout(Lockout(2), 1000);
    lockout.RecordFailure("role", "127.0.0.1", kStart);
    CHECK(lockout.RecordFailure("role", "127.0.0.1", kStart));
    const SteadyTime ended = kStart + seconds(900);
    CHECK_FALSE(lockout.LockedFor("role", "127.0.0.1", ended).has_value());
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", ended));
    CHECK_FALSE(lockout.LockedFor("role", "127.0.0.1", ended).has_value());
    CHECK(lockout.RecordFailure("role", "127.0.0.1", ended));
  }

  TEST_CASE("failures during lockout do not extend it") {
    LoginLockout lockout(Lockout(1), 1000);
    CHECK(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart + seconds(600)));
    CHECK(lockout.LockedFor("role", "127.0.0.1", kStart + seconds(600)) == seconds(300));
  }

  TEST_CASE("lockout keyed by role and address") {
    LoginLockout lockout(Lockout(1), 1000);
    CHECK(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK(lockout.LockedFor("role", "127.0.0.1", kStart).has_value());
    CHECK_FALSE(lockout.LockedFor("role", "127.0.0.2", kStart).has_value());
    CHECK_FALSE(lockout.LockedFor("other", "127.0.0.1", kStart).has_value());
    // The length prefix keeps a shifted boundary apart.
    CHECK_FALSE(lockout.LockedFor("role1", "27.0.0.1", kStart).has_value());
  }

  TEST_CASE("counter resets after quiet period") {
    LoginLockout lockout(Lockout(3), 1000);
    lockout.RecordFailure("role", "127.0.0.1", kStart);
    lockout.RecordFailure("role", "127.0.0.1", kStart);
    const SteadyTime quiet = kStart + seconds(600);
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", quiet));
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", quiet));
    CHECK(lockout.RecordFailure("role", "127.0.0.1", quiet));
  }

  TEST_CASE("success clears the count") {
    LoginLockout lockout(Lockout(2), 1000);
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    lockout.RecordSuccess("role", "127.0.0.1");
    CHECK_FALSE(lockout.RecordFailure("role", "127.0.0.1", kStart));
    CHECK(lockout.RecordFailure("role", "127.0.0.1", kStart));
  }

  TEST_CASE("disabled lockout never locks") {
    LoginLockout lockout(Lockout(0), 1000);
    for (int i = 0; i < 20; ++i) CHECK_FALSE(lockout.RecordFailure("role", "a", kStart));
    CHECK_FALSE(lockout.LockedFor("role", "a", kStart).has_value());
    CHECK(lockout.TrackedKeys() == 0);
  }

  TEST_CASE("role id spray keeps lockouts") {
    constexpr std::size_t kMaxKeys = RateLimiter::kShards * 8;
    LoginLockout lockout(Lockout(3), kMaxKeys);
    for (int i = 0; i < 3; ++i) lockout.RecordFailure("victim-role", "127.0.0.1", kStart);
    // Single failures with fresh role IDs fill every shard. They are evicted before the lock.
    for (int i = 0; i < 50'000; ++i) {
      lockout.RecordFailure("guess-" + std::to_string(i), "127.0.0.1", kStart + seconds(1));
    }
    CHECK(lockout.TrackedKeys() <= kMaxKeys);
    CHECK(lockout.LockedFor("victim-role", "127.0.0.1", kStart + seconds(1)).has_value());
  }

  TEST_CASE("rate limits count refusals") {
    SteadyTime now = kStart;
    kw::api::RateLimitConfig config;
    config.per_address = BucketLimit{1, 1};
    config.per_accessor = BucketLimit{1, 2};
    config.login_per_address = BucketLimit{1, 1};
    config.approle_lockout = Lockout(1);
    kw::api::RateLimits limits(config, [&now] { return now; });

    CHECK(limits.TakeAddress("127.0.0.1").allowed);
    CHECK_FALSE(limits.TakeAddress("127.0.0.1").allowed);
    CHECK(limits.TakeAccessor("acc").allowed);
    CHECK(limits.TakeAccessor("acc").allowed);
    CHECK_FALSE(limits.TakeAccessor("acc").allowed);
    CHECK(limits.TakeLogin("127.0.0.1").allowed);
    CHECK_FALSE(limits.TakeLogin("127.0.0.1").allowed);
    CHECK(limits.AppRoleFailed("role", "127.0.0.1"));
    CHECK(limits.AppRoleLockedFor("role", "127.0.0.1") == seconds(900));

    const kw::api::RateLimitStats stats = limits.Stats();
    CHECK(stats.address_rejections == 1);
    CHECK(stats.accessor_rejections == 1);
    CHECK(stats.login_rejections == 1);
    CHECK(stats.lockouts == 1);
    CHECK(stats.lockout_rejections == 1);

    // The injected clock drives every limiter.
    now += seconds(1);
    CHECK(limits.TakeAddress("127.0.0.1").allowed);
    CHECK(limits.TakeLogin("127.0.0.1").allowed);
  }

  TEST_CASE("config defaults") {
    auto config = kw::api::ParseServerConfig(
        R"({"storage": {"path": "x"}, "hsm": {"token_label": "t"}})");
    REQUIRE(config.has_value());
    const kw::api::RateLimitConfig& limits = config->rate_limit;
    CHECK_FALSE(limits.per_address.enabled());
    CHECK_FALSE(limits.per_accessor.enabled());
    CHECK_FALSE(limits.login_per_address.enabled());
    CHECK(limits.approle_lockout.threshold == 5);
    CHECK(limits.approle_lockout.duration == seconds(900));
    CHECK(limits.approle_lockout.counter_reset == seconds(900));
  }

  TEST_CASE("config section parses") {
    auto config = kw::api::ParseServerConfig(R"({
      "storage": {"path": "x"}, "hsm": {"token_label": "t"},
      "rate_limit": {
        "per_address": {"rate": 200, "burst": 400},
        "per_accessor": {"rate": 0.5},
        "login_per_address": {"rate": 2, "burst": 5},
        "max_tracked_keys": 5000,
        "approle_lockout": {"lockout_threshold": 3, "lockout_duration": "1m",
                            "lockout_counter_reset": 30}}})");
    REQUIRE_MESSAGE(config.has_value(), config.error().message());
    const kw::api::RateLimitConfig& limits = config->rate_limit;
    CHECK(limits.per_address.rate == 200);
    CHECK(limits.per_address.burst == 400);
    CHECK(limits.per_accessor.rate == 0.5);
    CHECK(limits.per_accessor.burst == 0);
    CHECK(limits.login_per_address.rate == 2);
    CHECK(limits.login_per_address.burst == 5);
    CHECK(limits.max_tracked_keys == 5000);
    CHECK(limits.approle_lockout.threshold == 3);
    CHECK(limits.approle_lockout.duration == seconds(60));
    CHECK(limits.approle_lockout.counter_reset == seconds(30));

    auto disabled = kw::api::ParseServerConfig(
        R"({"storage": {"path": "x"}, "hsm": {"token_label": "t"},
            "rate_limit": {"approle_lockout": {"disable_lockout": true}}})");
    REQUIRE(disabled.has_value());
    CHECK_FALSE(disabled->rate_limit.approle_lockout.enabled());
  }

  TEST_CASE("config errors name the key") {
    struct Case {
      std::string section;
      std::string key;
    };
    const std::vector<Case> cases = {
        {R"({"per_address": {"rate": -1}})", "rate_limit.per_address.rate"},
        {R"({"per_address": {"rate": "10"}})", "rate_limit.per_address.rate"},
        {R"({"per_accessor": {"burst": 0}})", "rate_limit.per_accessor.burst"},
        {R"({"login_per_address": {"rate": 1, "bucket": 2}})",
         "rate_limit.login_per_address.bucket"},
        {R"({"per_address": 5})", "rate_limit.per_address"},
        {R"({"max_tracked_keys": 0})", "rate_limit.max_tracked_keys"},
        {R"({"approle_lockout": {"lockout_threshold": 0}})",
         "rate_limit.approle_lockout.lockout_threshold"},
        {R"({"approle_lockout": {"lockout_duration": "0s"}})",
         "rate_limit.approle_lockout.lockout_duration"},
        {R"({"approle_lockout": {"disable_lockout": "yes"}})",
         "rate_limit.approle_lockout.disable_lockout"},
        {R"({"approle_lockout": []})", "rate_limit.approle_lockout"},
        {R"({"per_token": {}})", "rate_limit.per_token"},
    };
    for (const Case& item : cases) {
      CAPTURE(item.section);
      auto config = kw::api::ParseServerConfig(
          R"({"storage": {"path": "x"}, "hsm": {"token_label": "t"}, "rate_limit": )" +
          item.section + "}");
      REQUIRE_FALSE(config.has_value());
      CHECK(config.error().message().find("\"" + item.key + "\"") != std::string::npos);
    }
  }
}
