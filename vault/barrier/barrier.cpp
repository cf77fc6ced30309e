#include "vault/barrier/barrier.hpp"

#include <charconv>
#include <mutex>

#include "base/log.hpp"

namespace kw::vault {
namespace {

constexpr std::size_t kVersionSize = 4;

std::string KeyLabel(std::uint32_t version) {
  return std::string(kDataKeyLabelPrefix) + std::to_string(version);
}

std::optional<std::uint32_t> ParseKeyVersion(std::string_view label) {
  if (!label.starts_with(kDataKeyLabelPrefix)) return std::nullopt;
  label.remove_prefix(kDataKeyLabelPrefix.size());
  std::uint32_t version = 0;
  const auto [end, ec] = std::from_chars(label.data(), label.data() + label.size(), version);
  if (ec != std::errc() || end != label.data() + label.size() || version == 0) {
    return std::nullopt;
  }
  return version;
}

}  // namespace

Result<std::unique_ptr<Barrier>> Barrier::Load(hsm::Token& token) {
  KW_ASSIGN_OR_RETURN(auto labels, token.ListKeyLabels(kDataKeyLabelPrefix));
  auto barrier = std::unique_ptr<Barrier>(new Barrier(token));
  for (const std::string& label : labels) {
    const auto version = ParseKeyVersion(label);
    if (!version) continue;
    KW_ASSIGN_OR_RETURN(hsm::KeyHandle handle, token.FindKey(label));
    barrier->keys_[*version] = handle;
  }
  if (barrier->keys_.empty()) {
    return FailedPrecondition("no data key on the HSM token: initialise the vault first");
  }
  return barrier;
}

Status Barrier::CreateFirstKey(hsm::Token& token) {
  KW_ASSIGN_OR_RETURN(auto labels, token.ListKeyLabels(kDataKeyLabelPrefix));
  if (!labels.empty()) return AlreadyExists("a data key already exists on the HSM token");
  KW_ASSIGN_OR_RETURN(hsm::KeyHandle handle, token.GenerateAesKey(KeyLabel(1)));
  (void)handle;
  return OkStatus();
}

Result<Bytes> Barrier::Encrypt(ByteSpan plaintext, std::string_view aad) {
  std::uint32_t version = 0;
  hsm::KeyHandle key;
  {
    std::shared_lock lock(mutex_);
    version = keys_.rbegin()->first;
    key = keys_.rbegin()->second;
  }
  KW_ASSIGN_OR_RETURN(Bytes sealed, token_.EncryptGcm(key, plaintext, AsBytes(aad)));
  Bytes out;
  out.reserve(kVersionSize + sealed.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<std::uint8_t>(version >> shift));
  }
  out.insert(out.end(), sealed.begin(), sealed.end());
  return out;
}

Result<SecretBuffer> Barrier::Decrypt(ByteSpan sealed, std::string_view aad) {
  if (sealed.size() < kVersionSize + hsm::kGcmIvSize + hsm::kGcmTagSize) {
    return DataLoss("stored record is too short to be an encrypted record");
  }
  std::uint32_t version = 0;
  for (std::size_t i = 0; i < kVersionSize; ++i) version = (version << 8) | sealed[i];
  hsm::KeyHandle key;
  {
    std::shared_lock lock(mutex_);
    const auto it = keys_.find(version);
    if (it == keys_.end()) {
      return DataLoss("stored record names unknown data key version " + std::to_string(version));
    }
    key = it->second;
  }
  return token_.DecryptGcm(key, sealed.subspan(kVersionSize), AsBytes(aad));
}

Result<std::uint32_t> Barrier::Rotate() {
  std::unique_lock lock(mutex_);
  const std::uint32_t next = keys_.rbegin()->first + 1;
  KW_ASSIGN_OR_RETURN(hsm::KeyHandle created, token_.GenerateAesKey(KeyLabel(next)));
  (void)created;
  // FindKey returns the handle the token wants callers to use (it may be a session copy).
  KW_ASSIGN_OR_RETURN(hsm::KeyHandle handle, token_.FindKey(KeyLabel(next)));
  keys_[next] = handle;
  log::Info("data key rotated", {{log::kKeyVersion, next}});
  return next;
}

std::uint32_t Barrier::current_version() const {
  std::shared_lock lock(mutex_);
  return keys_.rbegin()->first;
}

}  // namespace kw::vault
