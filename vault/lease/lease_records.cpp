// Encoding of lease records, index keys, counters and prefix jobs.
#include "vault/lease/lease_records.hpp"

#include <charconv>
#include <cstdio>

namespace kw::vault::lease {
namespace {

constexpr std::size_t kTimeDigits = 20;

Result<std::int64_t> ParseCounter(std::string_view key, const std::optional<Bytes>& value) {
  if (!value) return std::int64_t{0};
  const std::string_view text = AsText(*value);
  std::int64_t count = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), count);
  if (error != std::errc() || end != text.data() + text.size() || count < 0) {
    return DataLoss("lease counter " + std::string(key) + " is malformed");
  }
  return count;
}

}  // namespace

std::string TimeKey(std::int64_t seconds) {
  char text[kTimeDigits + 1];
  std::snprintf(text, sizeof(text), "%020lld", static_cast<long long>(seconds < 0 ? 0 : seconds));
  return text;
}

std::string RecordKey(std::string_view lease_id) {
  return std::string(kRecordPrefix) + std::string(lease_id);
}

std::string ScheduleKey(const Lease& lease) {
  if (lease.revoking) {
    return std::string(kQueuePrefix) + TimeKey(lease.next_attempt) + "/" + lease.id;
  }
  return std::string(kExpiryPrefix) + TimeKey(lease.expire_time) + "/" + lease.id;
}

std::string TokenIndexKey(std::string_view accessor, std::string_view lease_id) {
  return std::string(kTokenPrefix) + std::string(accessor) + "/" + std::string(lease_id);
}

std::string RoleCountKey(std::string_view mount, std::string_view role) {
  return "sys/lease/count/role/" + std::string(mount) + "/creds/" + std::string(role);
}

std::optional<std::string> RoleCountKeyForId(std::string_view lease_id) {
  const std::size_t slash = lease_id.rfind('/');
  if (slash == std::string_view::npos) return std::nullopt;
  return "sys/lease/count/role/" + std::string(lease_id.substr(0, slash));
}

std::optional<ScheduleEntry> ParseScheduleKey(std::string_view rest) {
  if (rest.size() < kTimeDigits + 2 || rest[kTimeDigits] != '/') return std::nullopt;
  ScheduleEntry entry;
  const char* begin = rest.data();
  const auto [end, error] = std::from_chars(begin, begin + kTimeDigits, entry.time);
  if (error != std::errc() || end != begin + kTimeDigits) return std::nullopt;
  entry.lease_id = std::string(rest.substr(kTimeDigits + 1));
  return entry;
}

std::string EncodeLease(const Lease& lease) {
  nlohmann::json record;
  record["id"] = lease.id;
  record["mount"] = lease.mount;
  record["role"] = lease.role;
  record["token_accessor"] = lease.token_accessor;
  record["issue_time"] = lease.issue_time;
  record["ttl"] = lease.ttl;
  record["expire_time"] = lease.expire_time;
  record["max_expire_time"] = lease.max_expire_time;
  record["last_renewal"] = lease.last_renewal;
  record["renewable"] = lease.renewable;
  record["engine_data"] = lease.engine_data;
  record["revoking"] = lease.revoking;
  record["attempts"] = lease.attempts;
  record["next_attempt"] = lease.next_attempt;
  record["last_error"] = lease.last_error;
  return record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<Lease> DecodeLease(std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    Lease lease;
    lease.id = record.at("id").get<std::string>();
    lease.mount = record.at("mount").get<std::string>();
    lease.role = record.at("role").get<std::string>();
    lease.token_accessor = record.at("token_accessor").get<std::string>();
    lease.issue_time = record.at("issue_time").get<std::int64_t>();
    lease.ttl = record.at("ttl").get<std::int64_t>();
    lease.expire_time = record.at("expire_time").get<std::int64_t>();
    lease.max_expire_time = record.at("max_expire_time").get<std::int64_t>();
    lease.last_renewal = record.at("last_renewal").get<std::int64_t>();
    lease.renewable = record.at("renewable").get<bool>();
    lease.engine_data = record.at("engine_data");
    lease.revoking = record.at("revoking").get<bool>();
    lease.attempts = record.at("attempts").get<std::int32_t>();
    lease.next_attempt = record.at("next_attempt").get<std::int64_t>();
    lease.last_error = record.at("last_error").get<std::string>();
    return lease;
  } catch (const std::exception&) {
    return DataLoss("lease record is malformed");
  }
}

std::string EncodePrefixJob(const PrefixJob& job) {
  return nlohmann::json{{"prefix", job.prefix},
                        {"force", job.force},
                        {"cursor", job.cursor},
                        {"created", job.created},
                        {"processed", job.processed}}
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

Result<PrefixJob> DecodePrefixJob(std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    PrefixJob job;
    job.prefix = record.at("prefix").get<std::string>();
    job.force = record.at("force").get<bool>();
    job.cursor = record.at("cursor").get<std::string>();
    job.created = record.at("created").get<std::int64_t>();
    job.processed = record.at("processed").get<std::int64_t>();
    return job;
  } catch (const std::exception&) {
    return DataLoss("lease prefix job record is malformed");
  }
}

bool CoversLeaseId(std::string_view prefix, std::string_view lease_id) {
  if (prefix.empty()) return true;
  if (!lease_id.starts_with(prefix)) return false;
  return lease_id.size() == prefix.size() || lease_id[prefix.size()] == '/';
}

std::optional<std::optional<Bytes>> PendingValue(const storage::WriteBatch& batch,
                                                 std::string_view key) {
  const auto& ops = batch.ops();
  for (auto op = ops.rbegin(); op != ops.rend(); ++op) {
    if (op->key != key) continue;
    if (op->kind == storage::WriteBatch::Op::Kind::kPut) return op->value;
    if (op->kind == storage::WriteBatch::Op::Kind::kDelete) return std::optional<Bytes>();
  }
  return std::nullopt;
}

Result<std::int64_t> ReadCounterForUpdate(storage::Storage& storage, std::string_view key,
                                          storage::WriteBatch& batch) {
  if (auto pending = PendingValue(batch, key)) return ParseCounter(key, *pending);
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> value, storage.Get(key));
  batch.Expect(std::string(key), value);
  return ParseCounter(key, value);
}

Result<std::int64_t> ReadCounter(storage::Storage& storage, std::string_view key) {
  KW_ASSIGN_OR_RETURN(std::optional<Bytes> value, storage.Get(key));
  return ParseCounter(key, value);
}

void StageCounter(std::string_view key, std::int64_t value, storage::WriteBatch& batch) {
  const std::string text = std::to_string(value);
  batch.Put(std::string(key), Bytes(text.begin(), text.end()));
}

}  // namespace kw::vault::lease
