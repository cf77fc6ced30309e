#include "vault/kv/kv_engine.hpp"

#include <algorithm>
#include <cstdio>

#include "base/log.hpp"
#include "vault/kv/kv_records.hpp"

namespace kw::vault::kv {
namespace {

// Separates a secret's path from its version number in data keys. Paths never contain
// control characters (the API rejects them), so no path can forge another's data key.
constexpr char kVersionSeparator = '\x1f';

std::string PaddedVersion(std::int64_t version) {
  char buffer[24];
  std::snprintf(buffer, sizeof buffer, "%020lld", static_cast<long long>(version));
  return buffer;
}

std::int64_t EffectiveMaxVersions(const SecretMetadata& metadata, const MountConfig& config) {
  if (metadata.max_versions > 0) return metadata.max_versions;
  if (config.max_versions > 0) return config.max_versions;
  return kDefaultMaxVersions;
}

}  // namespace

std::string KvEngine::MetadataKey(std::string_view path) const {
  return "kv/" + mount_ + "/meta/" + std::string(path);
}

std::string KvEngine::DataKey(std::string_view path, std::int64_t version) const {
  return "kv/" + mount_ + "/data/" + std::string(path) + kVersionSeparator + PaddedVersion(version);
}

std::string KvEngine::MetadataAad(std::string_view path) const {
  return "keyward:kv-metadata:" + mount_ + ":" + std::string(path);
}

std::string KvEngine::DataAad(std::string_view path, std::int64_t version) const {
  return "keyward:kv-data:" + mount_ + ":" + std::string(path) + ":" + std::to_string(version);
}

// The mount config is encrypted like every other record, so that write access to the
// database does not let anyone change max_versions or cas_required behind the API.
Result<MountConfig> KvEngine::ReadConfig() {
  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get("kv/" + mount_ + "/config"));
  if (!stored) return MountConfig{};
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*stored, ConfigAad()));
  return DecodeConfig(plain.RevealText());
}

Status KvEngine::WriteConfig(const MountConfig& config, storage::WriteBatch& batch) {
  const std::string encoded = EncodeConfig(config);
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(encoded), ConfigAad()));
  batch.Put("kv/" + mount_ + "/config", std::move(sealed));
  return OkStatus();
}

std::string KvEngine::ConfigAad() const { return "keyward:kv-config:" + mount_; }

Result<KvEngine::LoadedMetadata> KvEngine::LoadMetadata(std::string_view path) {
  LoadedMetadata loaded;
  KW_ASSIGN_OR_RETURN(loaded.sealed, storage_.Get(MetadataKey(path)));
  if (!loaded.sealed) return loaded;
  const std::string cache_key(path);
  {
    std::lock_guard lock(metadata_cache_mutex_);
    const auto cached = metadata_cache_.find(cache_key);
    if (cached != metadata_cache_.end() && cached->second.sealed == *loaded.sealed) {
      loaded.metadata = cached->second.metadata;
      return loaded;
    }
  }
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*loaded.sealed, MetadataAad(path)));
  KW_ASSIGN_OR_RETURN(loaded.metadata, DecodeMetadata(plain.RevealText()));
  std::lock_guard lock(metadata_cache_mutex_);
  if (metadata_cache_.size() >= kMetadataCacheLimit) metadata_cache_.clear();
  metadata_cache_.insert_or_assign(cache_key, CachedMetadata{*loaded.sealed, *loaded.metadata});
  return loaded;
}

Status KvEngine::StoreMetadata(std::string_view path, const LoadedMetadata& loaded,
                               const SecretMetadata& metadata, storage::WriteBatch& batch) {
  std::string encoded = EncodeMetadata(metadata);
  auto sealed = barrier_.Encrypt(AsBytes(encoded), MetadataAad(path));
  WipeString(encoded);
  if (!sealed) return tl::unexpected(sealed.error());
  batch.Expect(MetadataKey(path), loaded.sealed);
  batch.Put(MetadataKey(path), std::move(*sealed));
  return OkStatus();
}

SecretMetadata KvEngine::MetadataOrNew(const LoadedMetadata& loaded, TimePoint now) {
  if (loaded.metadata) return *loaded.metadata;
  SecretMetadata created;
  created.created_time = now;
  return created;
}

Result<ReadResult> KvEngine::Read(std::string_view path, std::int64_t version) {
  KW_ASSIGN_OR_RETURN(LoadedMetadata loaded, LoadMetadata(path));
  if (!loaded.metadata) return NotFound("no secret at path " + std::string(path));
  const SecretMetadata& metadata = *loaded.metadata;
  const std::int64_t wanted = version == 0 ? metadata.current_version : version;
  const auto it = metadata.versions.find(wanted);
  if (it == metadata.versions.end()) {
    return NotFound("no version " + std::to_string(wanted) + " of secret " + std::string(path));
  }

  ReadResult result;
  result.version = wanted;
  result.metadata = it->second;
  result.custom_metadata = metadata.custom_metadata;
  if (it->second.destroyed || IsDeleted(it->second, clock_.Now())) return result;

  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get(DataKey(path, wanted)));
  if (!stored) {
    // Reads take no lock, so a write may have pruned, destroyed or deleted the version since
    // the metadata was read. Only a version the current metadata still lists is missing data.
    KW_ASSIGN_OR_RETURN(LoadedMetadata reloaded, LoadMetadata(path));
    const auto now_listed = reloaded.metadata
                                ? reloaded.metadata->versions.find(wanted)
                                : std::map<std::int64_t, VersionMetadata>::const_iterator();
    if (!reloaded.metadata || now_listed == reloaded.metadata->versions.end()) {
      return NotFound("no version " + std::to_string(wanted) + " of secret " + std::string(path));
    }
    if (now_listed->second.destroyed || IsDeleted(now_listed->second, clock_.Now())) {
      result.metadata = now_listed->second;
      result.custom_metadata = reloaded.metadata->custom_metadata;
      return result;
    }
    return DataLoss("data of version " + std::to_string(wanted) + " is missing");
  }
  KW_ASSIGN_OR_RETURN(result.data, barrier_.Decrypt(*stored, DataAad(path, wanted)));
  result.readable = true;
  return result;
}

Result<WriteResult> KvEngine::Write(std::string_view path, const SecretBuffer& data_json,
                                    std::optional<std::int64_t> cas,
                                    storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(MountConfig config, ReadConfig());
  KW_ASSIGN_OR_RETURN(LoadedMetadata loaded, LoadMetadata(path));
  const TimePoint now = clock_.Now();
  SecretMetadata metadata = MetadataOrNew(loaded, now);

  // Vault's texts, so clients that match on them keep working.
  if ((config.cas_required || metadata.cas_required) && !cas) {
    return InvalidArgument("check-and-set parameter required for this call");
  }
  if (cas && *cas != metadata.current_version) {
    return InvalidArgument("check-and-set parameter did not match the current version");
  }

  const std::int64_t version = metadata.current_version + 1;
  VersionMetadata entry;
  entry.created_time = now;
  const auto delete_after = metadata.delete_version_after.count() > 0
                                ? metadata.delete_version_after
                                : config.delete_version_after;
  if (delete_after.count() > 0) entry.deletion_time = now + delete_after;
  metadata.versions[version] = entry;
  metadata.current_version = version;
  metadata.updated_time = now;

  const std::int64_t keep = EffectiveMaxVersions(metadata, config);
  while (static_cast<std::int64_t>(metadata.versions.size()) > keep) {
    const std::int64_t oldest = metadata.versions.begin()->first;
    batch.Delete(DataKey(path, oldest));
    metadata.versions.erase(metadata.versions.begin());
  }
  metadata.oldest_version = metadata.versions.begin()->first;

  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(data_json.Reveal(), DataAad(path, version)));
  batch.Put(DataKey(path, version), std::move(sealed));
  KW_RETURN_IF_ERROR(StoreMetadata(path, loaded, metadata, batch));
  return WriteResult{version, entry, metadata.custom_metadata};
}

Result<bool> KvEngine::Exists(std::string_view path) {
  KW_ASSIGN_OR_RETURN(auto sealed, storage_.Get(MetadataKey(path)));
  return sealed.has_value();
}

Result<SecretMetadata> KvEngine::ReadMetadata(std::string_view path) {
  KW_ASSIGN_OR_RETURN(LoadedMetadata loaded, LoadMetadata(path));
  if (!loaded.metadata) return NotFound("no secret at path " + std::string(path));
  return *loaded.metadata;
}

Status KvEngine::WriteMetadata(std::string_view path, const MetadataUpdate& update,
                               storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(LoadedMetadata loaded, LoadMetadata(path));
  const TimePoint now = clock_.Now();
  SecretMetadata metadata = MetadataOrNew(loaded, now);
  if (update.max_versions) metadata.max_versions = *update.max_versions;
  if (update.cas_required) metadata.cas_required = *update.cas_required;
  if (update.delete_version_after) metadata.delete_version_after = *update.delete_version_after;
  if (update.custom_metadata) metadata.custom_metadata = *update.custom_metadata;
  metadata.updated_time = now;

  // A lower max_versions applies at once, as in Vault.
  if (metadata.max_versions > 0) {
    while (static_cast<std::int64_t>(metadata.versions.size()) > metadata.max_versions) {
      batch.Delete(DataKey(path, metadata.versions.begin()->first));
      metadata.versions.erase(metadata.versions.begin());
    }
    if (!metadata.versions.empty()) metadata.oldest_version = metadata.versions.begin()->first;
  }
  return StoreMetadata(path, loaded, metadata, batch);
}

Status KvEngine::DeleteMetadata(std::string_view path, storage::WriteBatch& batch) {
  auto loaded_or = LoadMetadata(path);
  if (!loaded_or && loaded_or.error().code() == Code::kDataLoss) {
    return DeleteDamaged(path, batch);
  }
  KW_ASSIGN_OR_RETURN(LoadedMetadata loaded, std::move(loaded_or));
  if (!loaded.metadata) return OkStatus();
  for (const auto& [version, entry] : loaded.metadata->versions) {
    batch.Delete(DataKey(path, version));
  }
  batch.Expect(MetadataKey(path), loaded.sealed);
  batch.Delete(MetadataKey(path));
  return OkStatus();
}

// Removes a secret whose metadata no longer decrypts (tampered or moved), so that an operator
// can clear the path: every stored version is found by key prefix instead of the metadata.
Status KvEngine::DeleteDamaged(std::string_view path, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(auto sealed, storage_.Get(MetadataKey(path)));
  const std::string prefix = "kv/" + mount_ + "/data/" + std::string(path) + kVersionSeparator;
  std::string after;
  for (;;) {
    KW_ASSIGN_OR_RETURN(auto entries, storage_.Scan(prefix, after, 1000));
    for (const auto& entry : entries) batch.Delete(entry.key);
    if (entries.size() < 1000) break;
    after = entries.back().key;
  }
  batch.Expect(MetadataKey(path), sealed);
  batch.Delete(MetadataKey(path));
  log::Warn("deleting a secret whose metadata fails to decrypt",
            {{log::kMount, mount_}, {log::kPath, std::string(path)}});
  return OkStatus();
}

Status KvEngine::Delete(std::string_view path, const std::vector<std::int64_t>& versions,
                        storage::WriteBatch& batch) {
  return ChangeVersions(path, versions, VersionOp::kDelete, batch);
}

Status KvEngine::Undelete(std::string_view path, const std::vector<std::int64_t>& versions,
                          storage::WriteBatch& batch) {
  return ChangeVersions(path, versions, VersionOp::kUndelete, batch);
}

Status KvEngine::Destroy(std::string_view path, const std::vector<std::int64_t>& versions,
                         storage::WriteBatch& batch) {
  return ChangeVersions(path, versions, VersionOp::kDestroy, batch);
}

Status KvEngine::ChangeVersions(std::string_view path, const std::vector<std::int64_t>& versions,
                                VersionOp op, storage::WriteBatch& batch) {
  KW_ASSIGN_OR_RETURN(LoadedMetadata loaded, LoadMetadata(path));
  if (!loaded.metadata) return OkStatus();  // Vault returns 204 for a missing secret too
  SecretMetadata metadata = *loaded.metadata;
  std::vector<std::int64_t> targets = versions;
  if (targets.empty()) targets.push_back(metadata.current_version);

  const TimePoint now = clock_.Now();
  bool changed = false;
  for (std::int64_t number : targets) {
    const auto it = metadata.versions.find(number);
    if (it == metadata.versions.end() || it->second.destroyed) continue;
    VersionMetadata& version = it->second;
    switch (op) {
      case VersionOp::kDelete:
        if (IsDeleted(version, now)) continue;
        version.deletion_time = now;
        break;
      case VersionOp::kUndelete:
        version.deletion_time.reset();
        break;
      case VersionOp::kDestroy:
        version.destroyed = true;
        batch.Delete(DataKey(path, number));
        break;
    }
    changed = true;
  }
  if (!changed) return OkStatus();
  metadata.updated_time = now;
  return StoreMetadata(path, loaded, metadata, batch);
}

Result<std::vector<std::string>> KvEngine::List(std::string_view prefix) {
  KW_ASSIGN_OR_RETURN(auto names, storage_.List("kv/" + mount_ + "/meta/" + std::string(prefix)));
  if (names.empty()) return NotFound("no secrets below " + std::string(prefix));
  return names;
}

}  // namespace kw::vault::kv
