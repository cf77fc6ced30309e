// Encoding of KV metadata records and their JSON views.
#include "vault/kv/kv_records.hpp"

#include "base/duration.hpp"

namespace kw::vault::kv {
namespace {

std::int64_t ToNanos(TimePoint time) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(time.time_since_epoch()).count();
}

TimePoint FromNanos(std::int64_t nanos) {
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(std::chrono::nanoseconds(nanos)));
}

}  // namespace

std::string EncodeMetadata(const SecretMetadata& metadata) {
  nlohmann::json record;
  record["current_version"] = metadata.current_version;
  record["oldest_version"] = metadata.oldest_version;
  record["max_versions"] = metadata.max_versions;
  record["cas_required"] = metadata.cas_required;
  record["delete_version_after_s"] = metadata.delete_version_after.count();
  record["custom_metadata"] = metadata.custom_metadata;
  record["created_ns"] = ToNanos(metadata.created_time);
  record["updated_ns"] = ToNanos(metadata.updated_time);
  nlohmann::json versions = nlohmann::json::object();
  for (const auto& [number, version] : metadata.versions) {
    nlohmann::json entry;
    entry["created_ns"] = ToNanos(version.created_time);
    entry["deletion_ns"] = version.deletion_time ? nlohmann::json(ToNanos(*version.deletion_time))
                                                 : nlohmann::json(nullptr);
    entry["destroyed"] = version.destroyed;
    versions[std::to_string(number)] = std::move(entry);
  }
  record["versions"] = std::move(versions);
  return record.dump();
}

Result<SecretMetadata> DecodeMetadata(std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    SecretMetadata metadata;
    metadata.current_version = record.at("current_version").get<std::int64_t>();
    metadata.oldest_version = record.at("oldest_version").get<std::int64_t>();
    metadata.max_versions = record.at("max_versions").get<std::int64_t>();
    metadata.cas_required = record.at("cas_required").get<bool>();
    metadata.delete_version_after =
        std::chrono::seconds(record.at("delete_version_after_s").get<std::int64_t>());
    metadata.custom_metadata =
        record.at("custom_metadata").get<std::map<std::string, std::string>>();
    metadata.created_time = FromNanos(record.at("created_ns").get<std::int64_t>());
    metadata.updated_time = FromNanos(record.at("updated_ns").get<std::int64_t>());
    for (const auto& [number, entry] : record.at("versions").items()) {
      VersionMetadata version;
      version.created_time = FromNanos(entry.at("created_ns").get<std::int64_t>());
      if (!entry.at("deletion_ns").is_null()) {
        version.deletion_time = FromNanos(entry.at("deletion_ns").get<std::int64_t>());
      }
      version.destroyed = entry.at("destroyed").get<bool>();
      metadata.versions[std::stoll(number)] = version;
    }
    return metadata;
  } catch (const std::exception&) {
    return DataLoss("kv metadata record is malformed");
  }
}

bool IsDeleted(const VersionMetadata& version, TimePoint now) {
  return version.deletion_time.has_value() && *version.deletion_time <= now;
}

nlohmann::json VersionToJson(std::int64_t version, const VersionMetadata& metadata,
                             const std::map<std::string, std::string>& custom_metadata) {
  nlohmann::json out;
  out["version"] = version;
  out["created_time"] = FormatRfc3339(metadata.created_time);
  out["deletion_time"] = metadata.deletion_time ? FormatRfc3339(*metadata.deletion_time) : "";
  out["destroyed"] = metadata.destroyed;
  out["custom_metadata"] =
      custom_metadata.empty() ? nlohmann::json(nullptr) : nlohmann::json(custom_metadata);
  return out;
}

nlohmann::json MetadataToJson(const SecretMetadata& metadata) {
  nlohmann::json out;
  out["cas_required"] = metadata.cas_required;
  out["created_time"] = FormatRfc3339(metadata.created_time);
  out["current_version"] = metadata.current_version;
  out["custom_metadata"] = metadata.custom_metadata.empty()
                               ? nlohmann::json(nullptr)
                               : nlohmann::json(metadata.custom_metadata);
  out["delete_version_after"] = FormatDuration(metadata.delete_version_after);
  out["max_versions"] = metadata.max_versions;
  out["oldest_version"] = metadata.oldest_version;
  out["updated_time"] = FormatRfc3339(metadata.updated_time);
  nlohmann::json versions = nlohmann::json::object();
  for (const auto& [number, version] : metadata.versions) {
    versions[std::to_string(number)] = {
        {"created_time", FormatRfc3339(version.created_time)},
        {"deletion_time", version.deletion_time ? FormatRfc3339(*version.deletion_time) : ""},
        {"destroyed", version.destroyed}};
  }
  out["versions"] = std::move(versions);
  return out;
}

std::string EncodeConfig(const MountConfig& config) {
  return nlohmann::json{{"max_versions", config.max_versions},
                        {"cas_required", config.cas_required},
                        {"delete_version_after_s", config.delete_version_after.count()}}
      .dump();
}

Result<MountConfig> DecodeConfig(std::string_view text) {
  try {
    const nlohmann::json record = nlohmann::json::parse(text);
    MountConfig config;
    config.max_versions = record.at("max_versions").get<std::int64_t>();
    config.cas_required = record.at("cas_required").get<bool>();
    config.delete_version_after =
        std::chrono::seconds(record.at("delete_version_after_s").get<std::int64_t>());
    return config;
  } catch (const std::exception&) {
    return DataLoss("kv mount config record is malformed");
  }
}

}  // namespace kw::vault::kv
