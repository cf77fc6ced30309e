#include "api/rate_limit.hpp"

#include <sodium.h>

#include <algorithm>
#include <cmath>
#include <utility>

namespace kw::api {
namespace {

using Seconds = std::chrono::duration<double>;

std::size_t PerShard(std::size_t max_keys) {
  return std::max<std::size_t>(1, max_keys / RateLimiter::kShards);
}

// Rounds a wait up to whole seconds, at least 1, as Retry-After takes it.
std::chrono::seconds WholeSeconds(Seconds wait) {
  const double rounded = std::ceil(wait.count());
  return std::chrono::seconds(std::max<std::int64_t>(1, static_cast<std::int64_t>(rounded)));
}

}  // namespace

RateLimiter::RateLimiter(BucketLimit limit, std::size_t max_keys)
    : limit_(limit),
      capacity_(limit.burst > 0 ? limit.burst : std::max(1.0, std::ceil(limit.rate))),
      max_per_shard_(PerShard(max_keys)) {}

std::size_t RateLimiter::ShardOf(std::string_view key) {
  return std::hash<std::string_view>{}(key) % kShards;
}

double RateLimiter::Refilled(const Bucket& bucket, SteadyTime now) const {
  const double elapsed = std::max(0.0, Seconds(now - bucket.updated).count());
  return std::min(capacity_, bucket.tokens + elapsed * limit_.rate);
}

void RateLimiter::Evict(Shard& shard, SteadyTime now) {
  auto oldest = shard.buckets.end();
  std::size_t dropped = 0;
  for (auto it = shard.buckets.begin(); it != shard.buckets.end();) {
    if (Refilled(it->second, now) >= capacity_) {
      it = shard.buckets.erase(it);
      ++dropped;
      continue;
    }
    if (oldest == shard.buckets.end() || it->second.updated < oldest->second.updated) oldest = it;
    ++it;
  }
  if (dropped == 0 && oldest != shard.buckets.end()) shard.buckets.erase(oldest);
}

RateDecision RateLimiter::Take(std::string_view key, SteadyTime now) {
  if (!enabled()) return {};
  Shard& shard = shards_[ShardOf(key)];
  std::lock_guard<std::mutex> lock(shard.mutex);
  auto it = shard.buckets.find(std::string(key));
  if (it == shard.buckets.end()) {
    if (shard.buckets.size() >= max_per_shard_) Evict(shard, now);
    it = shard.buckets.emplace(std::string(key), Bucket{capacity_, now, false}).first;
  }
  Bucket& bucket = it->second;
  bucket.tokens = Refilled(bucket, now);
  bucket.updated = now;
  if (bucket.tokens >= 1.0) {
    bucket.tokens -= 1.0;
    bucket.rejecting = false;
    return {};
  }
  RateDecision decision;
  decision.allowed = false;
  decision.retry_after = WholeSeconds(Seconds((1.0 - bucket.tokens) / limit_.rate));
  decision.first_rejection = !bucket.rejecting;
  bucket.rejecting = true;
  return decision;
}

std::size_t RateLimiter::TrackedKeys() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    total += shard.buckets.size();
  }
  return total;
}

LoginLockout::LoginLockout(LockoutConfig config, std::size_t max_keys)
    : config_(config), max_per_shard_(PerShard(max_keys)) {
  randombytes_buf(hash_key_.data(), hash_key_.size());
}

std::string LoginLockout::KeyFor(std::string_view role_id, std::string_view address) const {
  crypto_generichash_state state;
  crypto_generichash_init(&state, hash_key_.data(), hash_key_.size(), 16);
  // The length prefix keeps ("ab", "c") and ("a", "bc") apart.
  const std::uint64_t role_id_size = role_id.size();
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(&role_id_size),
                            sizeof(role_id_size));
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(role_id.data()),
                            role_id.size());
  crypto_generichash_update(&state, reinterpret_cast<const unsigned char*>(address.data()),
                            address.size());
  std::string key(16, '\0');
  crypto_generichash_final(&state, reinterpret_cast<unsigned char*>(key.data()), key.size());
  return key;
}

LoginLockout::Shard& LoginLockout::ShardFor(const std::string& key) {
  return shards_[static_cast<unsigned char>(key[0]) % shards_.size()];
}

bool LoginLockout::Expired(const Entry& entry, SteadyTime now) const {
  if (entry.locked_until) return *entry.locked_until <= now;
  return now - entry.last_failure >= config_.counter_reset;
}

void LoginLockout::Evict(Shard& shard, SteadyTime now) {
  auto oldest = shard.entries.end();
  std::size_t dropped = 0;
  for (auto it = shard.entries.begin(); it != shard.entries.end();) {
    if (Expired(it->second, now)) {
      it = shard.entries.erase(it);
      ++dropped;
      continue;
    }
    // Unlocked entries go before locked ones: each locked entry cost its caller `threshold`
    // failed logins, so a spray of single failures cannot end a lockout early.
    const auto rank = [](const Entry& entry) {
      return std::make_pair(entry.locked_until.has_value(), entry.last_failure);
    };
    if (oldest == shard.entries.end() || rank(it->second) < rank(oldest->second)) oldest = it;
    ++it;
  }
  if (dropped == 0 && oldest != shard.entries.end()) shard.entries.erase(oldest);
}

std::optional<std::chrono::seconds> LoginLockout::LockedFor(std::string_view role_id,
                                                            std::string_view address,
                                                            SteadyTime now) {
  if (!enabled()) return std::nullopt;
  const std::string key = KeyFor(role_id, address);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mutex);
  const auto it = shard.entries.find(key);
  if (it == shard.entries.end() || !it->second.locked_until) return std::nullopt;
  if (*it->second.locked_until <= now) {
    // The count starts again once a lockout ends.
    shard.entries.erase(it);
    return std::nullopt;
  }
  return WholeSeconds(Seconds(*it->second.locked_until - now));
}

std::optional<std::chrono::seconds> LoginLockout::Begin(std::string_view role_id,
                                                        std::string_view address,
                                                        SteadyTime now) {
  if (!enabled()) return std::nullopt;
  const std::string key = KeyFor(role_id, address);
  Shard& shard = ShardFor(key);
  std::unique_lock<std::mutex> lock(shard.mutex);
  auto it = shard.entries.find(key);
  if (it != shard.entries.end() && it->second.running == 0 && Expired(it->second, now)) {
    shard.entries.erase(it);
    it = shard.entries.end();
  }
  const auto deadline = std::chrono::steady_clock::now() + kLoginSlotWait;
  while (it != shard.entries.end()) {
    const Entry& entry = it->second;
    if (entry.locked_until && *entry.locked_until > now) {
      return WholeSeconds(Seconds(*entry.locked_until - now));
    }
    if (entry.failures + entry.running < config_.threshold) break;
    // Only attempts whose outcome is unknown take places. A correct login gives its place
    // back once the secret ID matched, and a failure that starts a lockout wakes every waiter.
    if (shard.ended.wait_until(lock, deadline) == std::cv_status::timeout) {
      return std::chrono::seconds(1);
    }
    it = shard.entries.find(key);  // the entry may have been erased while this waited
  }
  if (it == shard.entries.end()) {
    if (shard.entries.size() >= max_per_shard_) Evict(shard, now);
    it = shard.entries.emplace(key, Entry{}).first;
  }
  it->second.running += 1;
  it->second.last_failure = now;
  return std::nullopt;
}

void LoginLockout::RecordAbandoned(std::string_view role_id, std::string_view address) {
  if (!enabled()) return;
  const std::string key = KeyFor(role_id, address);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mutex);
  const auto it = shard.entries.find(key);
  if (it != shard.entries.end() && it->second.running > 0) it->second.running -= 1;
  shard.ended.notify_all();
}

bool LoginLockout::RecordFailure(std::string_view role_id, std::string_view address,
                                 SteadyTime now) {
  if (!enabled()) return false;
  const std::string key = KeyFor(role_id, address);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mutex);
  auto it = shard.entries.find(key);
  if (it != shard.entries.end() && Expired(it->second, now)) {
    shard.entries.erase(it);
    it = shard.entries.end();
  }
  if (it == shard.entries.end()) {
    if (shard.entries.size() >= max_per_shard_) Evict(shard, now);
    it = shard.entries.emplace(key, Entry{}).first;
  }
  Entry& entry = it->second;
  if (entry.running > 0) entry.running -= 1;
  shard.ended.notify_all();
  // A login that passed LockedFor before a concurrent one started the lockout fails here
  // without extending it.
  if (entry.locked_until) return false;
  entry.failures += 1;
  entry.last_failure = now;
  if (entry.failures < config_.threshold) return false;
  entry.locked_until = now + config_.duration;
  return true;
}

void LoginLockout::RecordSuccess(std::string_view role_id, std::string_view address) {
  if (!enabled()) return;
  const std::string key = KeyFor(role_id, address);
  Shard& shard = ShardFor(key);
  std::lock_guard<std::mutex> lock(shard.mutex);
  const auto it = shard.entries.find(key);
  if (it == shard.entries.end()) return;
  if (it->second.running > 1 && !it->second.locked_until) {
    it->second.running -= 1;
    it->second.failures = 0;
  } else {
    shard.entries.erase(it);
  }
  shard.ended.notify_all();
}

std::size_t LoginLockout::TrackedKeys() const {
  std::size_t total = 0;
  for (const Shard& shard : shards_) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    total += shard.entries.size();
  }
  return total;
}

RateLimits::RateLimits(const RateLimitConfig& config, NowFunction now)
    : now_(std::move(now)),
      address_(config.per_address, config.max_tracked_keys),
      accessor_(config.per_accessor, config.max_tracked_keys),
      login_(config.login_per_address, config.max_tracked_keys),
      lockout_(config.approle_lockout, config.max_tracked_keys) {}

RateDecision RateLimits::Count(RateDecision decision, std::atomic<std::uint64_t>& rejections) {
  if (!decision.allowed) rejections.fetch_add(1, std::memory_order_relaxed);
  return decision;
}

RateDecision RateLimits::TakeAddress(std::string_view address) {
  if (!address_.enabled()) return {};
  return Count(address_.Take(address, now_()), address_rejections_);
}

RateDecision RateLimits::TakeAccessor(std::string_view accessor) {
  if (!accessor_.enabled()) return {};
  return Count(accessor_.Take(accessor, now_()), accessor_rejections_);
}

RateDecision RateLimits::TakeLogin(std::string_view address) {
  if (!login_.enabled()) return {};
  return Count(login_.Take(address, now_()), login_rejections_);
}

std::optional<std::chrono::seconds> RateLimits::AppRoleLockedFor(std::string_view role_id,
                                                                 std::string_view address) {
  if (!lockout_.enabled()) return std::nullopt;
  auto locked = lockout_.LockedFor(role_id, address, now_());
  if (locked) lockout_rejections_.fetch_add(1, std::memory_order_relaxed);
  return locked;
}

std::optional<std::chrono::seconds> RateLimits::AppRoleBegin(std::string_view role_id,
                                                             std::string_view address) {
  if (!lockout_.enabled()) return std::nullopt;
  auto refused = lockout_.Begin(role_id, address, now_());
  if (refused) lockout_rejections_.fetch_add(1, std::memory_order_relaxed);
  return refused;
}

void RateLimits::AppRoleAbandoned(std::string_view role_id, std::string_view address) {
  lockout_.RecordAbandoned(role_id, address);
}

bool RateLimits::AppRoleFailed(std::string_view role_id, std::string_view address) {
  const bool started = lockout_.RecordFailure(role_id, address, now_());
  if (started) lockouts_.fetch_add(1, std::memory_order_relaxed);
  return started;
}

void RateLimits::AppRoleSucceeded(std::string_view role_id, std::string_view address) {
  lockout_.RecordSuccess(role_id, address);
}

RateLimitStats RateLimits::Stats() const {
  RateLimitStats stats;
  stats.address_rejections = address_rejections_.load(std::memory_order_relaxed);
  stats.accessor_rejections = accessor_rejections_.load(std::memory_order_relaxed);
  stats.login_rejections = login_rejections_.load(std::memory_order_relaxed);
  stats.lockouts = lockouts_.load(std::memory_order_relaxed);
  stats.lockout_rejections = lockout_rejections_.load(std::memory_order_relaxed);
  return stats;
}

}  // namespace kw::api
