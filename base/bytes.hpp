#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kw {

using Bytes = std::vector<std::uint8_t>;
using ByteSpan = std::span<const std::uint8_t>;

inline ByteSpan AsBytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}
inline std::string_view AsText(ByteSpan bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

// Lower-case hex.
std::string ToHex(ByteSpan bytes);
// Returns nullopt for odd length or a non-hex character.
std::optional<Bytes> FromHex(std::string_view hex);

// Standard base64 with padding (RFC 4648 section 4).
std::string ToBase64(ByteSpan bytes);
std::optional<Bytes> FromBase64(std::string_view text);

// SHA-256 of `bytes` (libsodium).
Bytes Sha256(ByteSpan bytes);

// `size` bytes from libsodium's CSPRNG.
Bytes RandomBytes(std::size_t size);

// A random version-4 UUID string, as Vault uses for request ids.
std::string RandomUuid();

// Initialises libsodium once; every entry point calls it before the first use. Aborts on failure.
void InitSodium();

}  // namespace kw
