#include "vault/auth/token_format.hpp"

#include <sodium.h>
#include <zlib.h>

#include <array>
#include <cstdint>

#include "base/bytes.hpp"

namespace kw::vault::auth {
namespace {

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr std::size_t kBodyLength = 43;  // 62^43 > 2^256
constexpr std::size_t kChecksumLength = 6;  // 62^6 > 2^32

// Appends `count` uniformly random base62 characters.
void AppendRandomBase62(std::string& out, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) out.push_back(kBase62[randombytes_uniform(62)]);
}

std::string ChecksumText(std::string_view body) {
  std::uint32_t crc = static_cast<std::uint32_t>(
      crc32(0L, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size())));
  std::string text(kChecksumLength, '0');
  for (std::size_t i = kChecksumLength; i-- > 0;) {
    text[i] = kBase62[crc % 62];
    crc /= 62;
  }
  return text;
}

}  // namespace

SecretBuffer GenerateToken() {
  std::string text(kTokenPrefix);
  text.reserve(kTokenPrefix.size() + kBodyLength + kChecksumLength);
  AppendRandomBase62(text, kBodyLength);
  text += ChecksumText(std::string_view(text).substr(kTokenPrefix.size()));
  SecretBuffer token = SecretBuffer::CopyFrom(text);
  WipeString(text);
  return token;
}

bool HasValidChecksum(std::string_view token) {
  if (!token.starts_with(kTokenPrefix)) return false;
  token.remove_prefix(kTokenPrefix.size());
  if (token.size() != kBodyLength + kChecksumLength) return false;
  for (char c : token) {
    if (kBase62.find(c) == std::string_view::npos) return false;
  }
  const std::string expected = ChecksumText(token.substr(0, kBodyLength));
  return sodium_memcmp(expected.data(), token.data() + kBodyLength, kChecksumLength) == 0;
}

std::string GenerateAccessor() {
  std::string accessor;
  AppendRandomBase62(accessor, 24);
  return accessor;
}

std::string HashToken(std::string_view token) { return ToHex(Sha256(AsBytes(token))); }

}  // namespace kw::vault::auth
