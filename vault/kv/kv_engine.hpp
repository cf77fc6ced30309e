#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

#include "base/clock.hpp"
#include "base/result.hpp"
#include "base/secret_buffer.hpp"
#include "storage/storage.hpp"
#include "vault/barrier/barrier.hpp"

namespace kw::vault::kv {

// Vault's default number of versions kept per secret when neither the secret nor the mount
// sets max_versions.
inline constexpr std::int64_t kDefaultMaxVersions = 10;

struct VersionMetadata {
  TimePoint created_time;
  // Unset unless deleted; set ahead of time by delete_version_after.
  std::optional<TimePoint> deletion_time;
  bool destroyed = false;
};

struct SecretMetadata {
  std::int64_t current_version = 0;
  std::int64_t oldest_version = 0;
  std::int64_t max_versions = 0;  // 0: the mount's setting
  bool cas_required = false;
  std::chrono::seconds delete_version_after{0};
  std::map<std::string, std::string> custom_metadata;
  TimePoint created_time;
  TimePoint updated_time;
  std::map<std::int64_t, VersionMetadata> versions;
};

struct MountConfig {
  std::int64_t max_versions = 0;  // 0: kDefaultMaxVersions
  bool cas_required = false;
  std::chrono::seconds delete_version_after{0};
};

// A version as read. `data` is the secret's JSON object in locked memory. It is empty when
// the version is deleted or destroyed, and then the handler returns 404 with the metadata.
struct ReadResult {
  std::int64_t version = 0;
  VersionMetadata metadata;
  std::map<std::string, std::string> custom_metadata;
  bool readable = false;  // false: deleted or destroyed
  SecretBuffer data;
};

// The version a write created, with what its response shows.
struct WriteResult {
  std::int64_t version = 0;
  VersionMetadata metadata;
  std::map<std::string, std::string> custom_metadata;
};

// Changes to SecretMetadata from a metadata write; unset fields stay as they are.
struct MetadataUpdate {
  std::optional<std::int64_t> max_versions;
  std::optional<bool> cas_required;
  std::optional<std::chrono::seconds> delete_version_after;
  std::optional<std::map<std::string, std::string>> custom_metadata;
};

// Versioned key/value secrets with Vault KV version 2 semantics, for one mount. Reads go
// straight to storage. Writes are added to the caller's WriteBatch, guarded by an Expect on
// the secret's metadata record, so two concurrent writers cannot both win. The loser's commit
// is aborted and the request pipeline reruns it. Every stored record (metadata and each
// version's data) is encrypted by the barrier with AAD naming mount, path and version.
// Thread-safe; the storage, barrier and clock must outlive the engine.
class KvEngine {
 public:
  KvEngine(std::string mount, storage::Storage& storage, Barrier& barrier, const Clock& clock)
      : mount_(std::move(mount)), storage_(storage), barrier_(barrier), clock_(clock) {}

  Result<MountConfig> ReadConfig();
  Status WriteConfig(const MountConfig& config, storage::WriteBatch& batch);

  // Reads `version` of `path` (0: the current version). not_found when the secret or that
  // version does not exist; a deleted or destroyed version is returned with readable false.
  Result<ReadResult> Read(std::string_view path, std::int64_t version);

  // Writes `data_json` (a serialised JSON object) as the next version. `cas`: nullopt for
  // none, 0 to write only if the secret has no version, N to write only if N is current.
  // invalid_argument (with Vault's texts) for a missing or mismatched cas.
  Result<WriteResult> Write(std::string_view path, const SecretBuffer& data_json,
                            std::optional<std::int64_t> cas, storage::WriteBatch& batch);

  // Returns whether the secret exists (has metadata), for the ACL's create-or-update choice.
  Result<bool> Exists(std::string_view path);

  // Reads the secret's metadata. not_found when absent.
  Result<SecretMetadata> ReadMetadata(std::string_view path);

  // Creates or updates the secret's settings.
  Status WriteMetadata(std::string_view path, const MetadataUpdate& update,
                       storage::WriteBatch& batch);

  // Removes every version and the metadata. Succeeds when the secret does not exist, and
  // also when its metadata fails to decrypt (then the versions are found by key prefix).
  Status DeleteMetadata(std::string_view path, storage::WriteBatch& batch);

  // Soft-deletes the given versions (empty: the current one). Unknown versions are ignored.
  Status Delete(std::string_view path, const std::vector<std::int64_t>& versions,
                storage::WriteBatch& batch);
  Status Undelete(std::string_view path, const std::vector<std::int64_t>& versions,
                  storage::WriteBatch& batch);
  // Wipes the data of the given versions; their metadata stays, marked destroyed.
  Status Destroy(std::string_view path, const std::vector<std::int64_t>& versions,
                 storage::WriteBatch& batch);

  // Lists the names below `prefix` ("" or ending in '/'). not_found when there are none.
  Result<std::vector<std::string>> List(std::string_view prefix);

  const std::string& mount() const { return mount_; }

 private:
  struct LoadedMetadata {
    std::optional<Bytes> sealed;  // the stored record, for the commit's Expect
    std::optional<SecretMetadata> metadata;
  };

  Result<LoadedMetadata> LoadMetadata(std::string_view path);
  // Returns the loaded metadata, or fresh metadata created at `now` for a new secret.
  static SecretMetadata MetadataOrNew(const LoadedMetadata& loaded, TimePoint now);
  Status DeleteDamaged(std::string_view path, storage::WriteBatch& batch);
  Status StoreMetadata(std::string_view path, const LoadedMetadata& loaded,
                       const SecretMetadata& metadata, storage::WriteBatch& batch);
  // Soft-deletes, undeletes or destroys: the shared part of the three version operations.
  enum class VersionOp { kDelete, kUndelete, kDestroy };
  Status ChangeVersions(std::string_view path, const std::vector<std::int64_t>& versions,
                        VersionOp op, storage::WriteBatch& batch);

  std::string MetadataKey(std::string_view path) const;
  std::string DataKey(std::string_view path, std::int64_t version) const;
  std::string MetadataAad(std::string_view path) const;
  std::string ConfigAad() const;
  std::string DataAad(std::string_view path, std::int64_t version) const;

  const std::string mount_;
  storage::Storage& storage_;
  Barrier& barrier_;
  const Clock& clock_;

  // Decoded metadata of recently read secrets, by path. An entry is used only while the stored
  // record is byte for byte the one it was decrypted from, so a read of an unchanged secret
  // costs one HSM call instead of two. Metadata contains no secret data.
  struct CachedMetadata {
    Bytes sealed;
    SecretMetadata metadata;
  };
  static constexpr std::size_t kMetadataCacheLimit = 4096;
  std::mutex metadata_cache_mutex_;
  std::unordered_map<std::string, CachedMetadata> metadata_cache_;  // guarded by the mutex
};

// Returns whether `version` reads as deleted at `now` (deletion_time set and not in the future).
bool IsDeleted(const VersionMetadata& version, TimePoint now);

// Serialises metadata as Vault's GET metadata response `data` object.
nlohmann::json MetadataToJson(const SecretMetadata& metadata);

// Serialises one version's metadata as Vault prints it in read and write responses.
nlohmann::json VersionToJson(std::int64_t version, const VersionMetadata& metadata,
                             const std::map<std::string, std::string>& custom_metadata);

}  // namespace kw::vault::kv
