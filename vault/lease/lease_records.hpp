#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/bytes.hpp"
#include "base/result.hpp"
#include "storage/storage.hpp"
#include "vault/lease/lease.hpp"

// Stored form of leases: the record, its indexes and counters, and prefix revocation jobs.
//
//   sys/lease/id/<lease id>                  lease record, barrier-encrypted, AAD = the key
//   sys/lease/expiry/<time>/<lease id>       active leases by expire_time
//   sys/lease/queue/<time>/<lease id>        leases being revoked, by next_attempt
//   sys/lease/token/<accessor>/<lease id>    leases created by a token
//   sys/lease/count/all, count/revoking      decimal counts of stored / revoking leases
//   sys/lease/count/role/<mount>/creds/<role>  decimal count of one role's stored leases
//   sys/lease/job/<time>-<random>            a prefix revocation job (JSON, no secrets)
//
// <time> is Unix seconds as 20 zero-padded digits, so key order is time order.
namespace kw::vault::lease {

inline constexpr std::string_view kRecordPrefix = "sys/lease/id/";
inline constexpr std::string_view kExpiryPrefix = "sys/lease/expiry/";
inline constexpr std::string_view kQueuePrefix = "sys/lease/queue/";
inline constexpr std::string_view kTokenPrefix = "sys/lease/token/";
inline constexpr std::string_view kCountAllKey = "sys/lease/count/all";
inline constexpr std::string_view kCountRevokingKey = "sys/lease/count/revoking";
inline constexpr std::string_view kRoleCountPrefix = "sys/lease/count/role/";
inline constexpr std::string_view kJobPrefix = "sys/lease/job/";

std::string RecordKey(std::string_view lease_id);
// The key of the index that schedules `lease`: its expiry entry, or its queue entry when
// the lease is being revoked.
std::string ScheduleKey(const Lease& lease);
std::string TokenIndexKey(std::string_view accessor, std::string_view lease_id);
std::string RoleCountKey(std::string_view mount, std::string_view role);
// Returns the role count key of a lease id "<mount>/creds/<role>/<random>": the id without
// its last segment. nullopt when the id has no '/'.
std::optional<std::string> RoleCountKeyForId(std::string_view lease_id);

// A parsed expiry or queue index entry.
struct ScheduleEntry {
  std::int64_t time = 0;
  std::string lease_id;
};
// Parses the part of an expiry or queue key after its prefix; nullopt when malformed.
std::optional<ScheduleEntry> ParseScheduleKey(std::string_view rest);

std::string EncodeLease(const Lease& lease);
// data_loss when the record is malformed.
Result<Lease> DecodeLease(std::string_view text);

// A durable prefix revocation: the worker marks the leases under `prefix` revoking in
// batches (or, with `force`, revokes and removes them at once), recording its progress.
struct PrefixJob {
  std::string prefix;      // lease id prefix, matched by whole segments, no trailing '/'
  bool force = false;      // revocation failures are ignored and the records removed
  std::string cursor;      // the last lease id handled; "" before the first batch
  std::int64_t created = 0;
  std::int64_t processed = 0;  // leases handled so far
};
std::string EncodePrefixJob(const PrefixJob& job);
Result<PrefixJob> DecodePrefixJob(std::string_view text);

// Returns whether `lease_id` lies under `prefix` by whole path segments: "a/b" covers "a/b"
// and "a/b/c" but not "a/bc". An empty prefix covers every id.
bool CoversLeaseId(std::string_view prefix, std::string_view lease_id);

// Returns the value `batch` already puts at `key`: the outer optional is empty when the batch
// does not write the key, the inner one when the batch deletes it.
std::optional<std::optional<Bytes>> PendingValue(const storage::WriteBatch& batch,
                                                 std::string_view key);

// Reads a decimal counter as `batch` would see it: a pending write if there is one, else the
// committed value, in which case an Expect on that value is added so that the batch aborts if
// the counter changes before it commits. Absent counts as 0.
Result<std::int64_t> ReadCounterForUpdate(storage::Storage& storage, std::string_view key,
                                          storage::WriteBatch& batch);
// Reads a committed decimal counter; absent counts as 0.
Result<std::int64_t> ReadCounter(storage::Storage& storage, std::string_view key);
void StageCounter(std::string_view key, std::int64_t value, storage::WriteBatch& batch);

// Formats Unix seconds as 20 zero-padded digits (negative times as 0).
std::string TimeKey(std::int64_t seconds);

}  // namespace kw::vault::lease
