#include "vault/auth/token_store.hpp"

#include <sodium.h>

#include <nlohmann/json.hpp>

#include "vault/auth/token_format.hpp"

namespace kw::vault::auth {
namespace {

constexpr std::string_view kRootTokenKey = "sys/token/root";
constexpr std::string_view kRootTokenAad = "keyward:token:root";

}  // namespace

Status TokenStore::Load() {
  KW_ASSIGN_OR_RETURN(auto stored, storage_.Get(kRootTokenKey));
  std::lock_guard lock(mutex_);
  root_hash_.reset();
  root_accessor_.clear();
  if (!stored) return OkStatus();
  KW_ASSIGN_OR_RETURN(SecretBuffer plain, barrier_.Decrypt(*stored, kRootTokenAad));
  try {
    const auto record = nlohmann::json::parse(plain.RevealText());
    auto hash = FromHex(record.at("hash").get<std::string>());
    if (!hash || hash->size() != crypto_hash_sha256_BYTES) {
      return DataLoss("root token record has an invalid hash");
    }
    root_hash_ = std::move(*hash);
    root_accessor_ = record.at("accessor").get<std::string>();
  } catch (const std::exception&) {
    return DataLoss("root token record is malformed");
  }
  return OkStatus();
}

Result<std::string> TokenStore::StageRootToken(const SecretBuffer& token,
                                               storage::WriteBatch& batch) {
  const std::string accessor = GenerateAccessor();
  const nlohmann::json record = {{"hash", HashToken(token.RevealText())},
                                 {"accessor", accessor},
                                 {"policies", {"root"}}};
  KW_ASSIGN_OR_RETURN(Bytes sealed, barrier_.Encrypt(AsBytes(record.dump()), kRootTokenAad));
  batch.Put(std::string(kRootTokenKey), std::move(sealed));
  return accessor;
}

Result<Identity> TokenStore::Authenticate(std::string_view token) const {
  if (token.empty()) return Unauthenticated("missing client token");
  const Bytes presented = Sha256(AsBytes(token));
  std::lock_guard lock(mutex_);
  if (!root_hash_ || sodium_memcmp(presented.data(), root_hash_->data(), presented.size()) != 0) {
    return Unauthenticated("invalid token");
  }
  return Identity{root_accessor_, {"root"}, true};
}

}  // namespace kw::vault::auth
