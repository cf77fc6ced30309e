#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

namespace kw::api {

using SteadyTime = std::chrono::steady_clock::time_point;

// One token bucket per key: `rate` requests per second refill the bucket up to `burst`
// requests. A rate of 0 turns the limit off.
struct BucketLimit {
  double rate = 0;
  std::uint32_t burst = 0;  // 0 takes max(1, ceil(rate))

  bool enabled() const { return rate > 0; }
};

// Settings of the AppRole login lockout per (role_id, client address). The defaults are those
// of Vault's user lockout (developer.hashicorp.com/vault/docs/concepts/user-lockout). A
// threshold of 0 turns the lockout off.
struct LockoutConfig {
  std::uint32_t threshold = 5;
  std::chrono::seconds duration{15 * 60};
  // A failure this long after the previous one starts the count again at 1.
  std::chrono::seconds counter_reset{15 * 60};

  bool enabled() const { return threshold > 0; }
};

// The `rate_limit` section of the config file. docs/OPERATIONS.md documents each key.
struct RateLimitConfig {
  BucketLimit per_address;        // every request except the unauthenticated sys endpoints
  BucketLimit per_accessor;       // every request with a valid token, by its accessor
  BucketLimit login_per_address;  // auth/approle/login and auth/cert/login, by address
  LockoutConfig approle_lockout;
  // Maximum number of keys that each limiter and the lockout track. A full shard evicts
  // entries as RateLimiter and LoginLockout describe.
  std::size_t max_tracked_keys = 100'000;
};

// The outcome of RateLimiter::Take.
struct RateDecision {
  bool allowed = true;
  std::chrono::seconds retry_after{0};  // whole seconds, at least 1 when not allowed
  bool first_rejection = false;  // the key's first rejection since it was last allowed
};

// Token buckets keyed by a string (client address or token accessor), in shards that each
// have their own mutex and hold at most max_keys / kShards buckets. A bucket that has
// refilled completely behaves like a new one, so it is dropped when its shard is full. When
// none has refilled, the least recently used bucket is dropped instead: memory stays bounded
// under a spray of keys, at the cost of a fresh burst for the dropped key. Thread-safe.
class RateLimiter {
 public:
  static constexpr std::size_t kShards = 32;

  RateLimiter(BucketLimit limit, std::size_t max_keys);

  // Takes one request from `key`'s bucket at time `now`.
  RateDecision Take(std::string_view key, SteadyTime now);

  bool enabled() const { return limit_.enabled(); }
  // Returns the number of buckets held, for tests of the memory bound.
  std::size_t TrackedKeys() const;
  // Returns the index of the shard that contains `key`'s bucket, for tests of eviction.
  static std::size_t ShardOf(std::string_view key);

 private:
  struct Bucket {
    double tokens = 0;
    SteadyTime updated;
    bool rejecting = false;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Bucket> buckets;
  };

  double Refilled(const Bucket& bucket, SteadyTime now) const;
  // Drops every full bucket of `shard`, or its least recently used one when none is full.
  void Evict(Shard& shard, SteadyTime now);

  BucketLimit limit_;
  double capacity_;
  std::size_t max_per_shard_;
  std::array<Shard, kShards> shards_;
};

// Counts failed AppRole logins per (role_id, client address) and locks the pair out for
// `duration` after `threshold` failures, like Vault's user lockout. Keying by address as
// well means an attacker's failures never lock out the same role from other addresses, but
// an attacker with many addresses gets `threshold` guesses per address. The keys are keyed
// BLAKE2b hashes, so that a long role_id costs 16 bytes and colliding keys cannot be chosen.
// A full shard drops expired entries, else its oldest unlocked entry, else its oldest locked
// one. Thread-safe.
// How long LoginLockout::Begin waits for a place when correct logins of one pair run at once.
inline constexpr std::chrono::milliseconds kLoginSlotWait{100};

class LoginLockout {
 public:
  LoginLockout(LockoutConfig config, std::size_t max_keys);

  // Returns the time left when the pair is locked out at `now`, else nullopt.
  std::optional<std::chrono::seconds> LockedFor(std::string_view role_id,
                                                std::string_view address, SteadyTime now);
  // Admits one login attempt of the pair, or returns how long to wait. Failures already
  // counted plus the attempts still running may not reach the threshold, so a burst of
  // concurrent guesses gets no more than `threshold` evaluated. An attempt over that bound
  // waits up to kLoginSlotWait for a running one to end, because a correct login keeps its
  // place only until its secret ID is checked. If none ends in time it is refused, to retry in
  // 1 s. Every admitted attempt must end in RecordFailure, RecordSuccess or RecordAbandoned.
  std::optional<std::chrono::seconds> Begin(std::string_view role_id, std::string_view address,
                                            SteadyTime now);
  // Counts a failed login. Returns true when this failure starts a lockout.
  bool RecordFailure(std::string_view role_id, std::string_view address, SteadyTime now);
  // Clears the pair's failure count after a successful login; other running attempts keep
  // their places.
  void RecordSuccess(std::string_view role_id, std::string_view address);
  // Ends an admitted attempt that neither failed nor succeeded (a storage error, say).
  void RecordAbandoned(std::string_view role_id, std::string_view address);

  bool enabled() const { return config_.enabled(); }
  std::size_t TrackedKeys() const;

 private:
  struct Entry {
    std::uint32_t failures = 0;
    std::uint32_t running = 0;  // admitted by Begin, outcome not recorded yet
    SteadyTime last_failure;    // also set by Begin, so a running attempt keeps its entry
    std::optional<SteadyTime> locked_until;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::condition_variable ended;  // an admitted attempt ended
    std::unordered_map<std::string, Entry> entries;
  };

  std::string KeyFor(std::string_view role_id, std::string_view address) const;
  Shard& ShardFor(const std::string& key);
  bool Expired(const Entry& entry, SteadyTime now) const;
  void Evict(Shard& shard, SteadyTime now);

  LockoutConfig config_;
  std::size_t max_per_shard_;
  std::array<unsigned char, 32> hash_key_{};
  std::array<Shard, RateLimiter::kShards> shards_;
};

// Counts of requests refused by the limits since start-up, for sys/metrics.
struct RateLimitStats {
  std::uint64_t address_rejections = 0;
  std::uint64_t accessor_rejections = 0;
  std::uint64_t login_rejections = 0;
  std::uint64_t lockouts = 0;            // lockouts started
  std::uint64_t lockout_rejections = 0;  // logins refused while locked out
};

// Every limit of one server with its clock. The router checks them; the AppRole login
// handler reports failed and successful logins. Thread-safe.
class RateLimits {
 public:
  using NowFunction = std::function<SteadyTime()>;

  explicit RateLimits(const RateLimitConfig& config,
                      NowFunction now = [] { return std::chrono::steady_clock::now(); });

  // Each returns the decision for one request; refusals are counted for Stats.
  RateDecision TakeAddress(std::string_view address);
  RateDecision TakeAccessor(std::string_view accessor);
  RateDecision TakeLogin(std::string_view address);
  std::optional<std::chrono::seconds> AppRoleLockedFor(std::string_view role_id,
                                                       std::string_view address);
  // LoginLockout::Begin, counting refusals; the attempt ends in AppRoleFailed,
  // AppRoleSucceeded or AppRoleAbandoned.
  std::optional<std::chrono::seconds> AppRoleBegin(std::string_view role_id,
                                                   std::string_view address);
  void AppRoleAbandoned(std::string_view role_id, std::string_view address);
  // Returns true when this failure starts a lockout.
  bool AppRoleFailed(std::string_view role_id, std::string_view address);
  void AppRoleSucceeded(std::string_view role_id, std::string_view address);

  bool address_enabled() const { return address_.enabled(); }
  bool accessor_enabled() const { return accessor_.enabled(); }
  bool login_enabled() const { return login_.enabled(); }
  bool lockout_enabled() const { return lockout_.enabled(); }

  RateLimitStats Stats() const;

 private:
  RateDecision Count(RateDecision decision, std::atomic<std::uint64_t>& rejections);

  NowFunction now_;
  RateLimiter address_;
  RateLimiter accessor_;
  RateLimiter login_;
  LoginLockout lockout_;
  std::atomic<std::uint64_t> address_rejections_{0};
  std::atomic<std::uint64_t> accessor_rejections_{0};
  std::atomic<std::uint64_t> login_rejections_{0};
  std::atomic<std::uint64_t> lockouts_{0};
  std::atomic<std::uint64_t> lockout_rejections_{0};
};

}  // namespace kw::api
