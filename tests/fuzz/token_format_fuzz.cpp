// Fuzzes the recognition of keyward service tokens: the "kw." prefix, the base62 body and the
// CRC32 checksum that lets secret scanners find tokens offline.
//
// Input: a token text.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_check.hpp"
#include "vault/auth/token_format.hpp"

namespace {

namespace auth = kw::vault::auth;

constexpr std::string_view kBase62 =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
// "kw." + 43 characters of body + 6 of checksum.
constexpr std::size_t kTokenLength = 52;

bool IsBase62(std::string_view text) {
  return text.find_first_not_of(kBase62) == std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view token(reinterpret_cast<const char*>(data), size);

  const std::string hash = auth::HashToken(token);
  KW_FUZZ_CHECK(hash.size() == 64);
  KW_FUZZ_CHECK(hash.find_first_not_of("0123456789abcdef") == std::string::npos);

  if (!auth::HasValidChecksum(token)) return 0;
  KW_FUZZ_CHECK(token.size() == kTokenLength);
  KW_FUZZ_CHECK(token.starts_with(auth::kTokenPrefix));
  KW_FUZZ_CHECK(IsBase62(token.substr(auth::kTokenPrefix.size())));

  // The checksum has one text form, so changing any one character of it breaks the token.
  std::string changed(token);
  for (std::size_t i = changed.size() - 6; i < changed.size(); ++i) {
    const char original = changed[i];
    changed[i] = kBase62[(kBase62.find(original) + 1) % kBase62.size()];
    KW_FUZZ_CHECK(!auth::HasValidChecksum(changed));
    changed[i] = original;
  }
  return 0;
}
