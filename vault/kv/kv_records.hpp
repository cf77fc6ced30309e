#pragma once

#include <string>
#include <string_view>

#include "base/result.hpp"
#include "vault/kv/kv_engine.hpp"

// Internal record encodings of the KV engine; stored encrypted by the barrier.
namespace kw::vault::kv {

std::string EncodeMetadata(const SecretMetadata& metadata);
Result<SecretMetadata> DecodeMetadata(std::string_view text);
std::string EncodeConfig(const MountConfig& config);
Result<MountConfig> DecodeConfig(std::string_view text);

}  // namespace kw::vault::kv
