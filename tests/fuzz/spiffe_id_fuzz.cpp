// Fuzzes the SPIFFE ID parser and the allowed-ID pattern matcher that cert and PKI roles use.
//
// Input: a SPIFFE ID, or a pattern, a newline and a SPIFFE ID to match against it.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tests/fuzz/fuzz_check.hpp"
#include "vault/auth/spiffe_id.hpp"

namespace {

namespace auth = kw::vault::auth;

bool IsPathCharacter(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
}

bool IsTrustDomainCharacter(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

// Checks what ParseSpiffeId promises about an ID it accepted.
void CheckId(std::string_view text, const auth::SpiffeId& id) {
  // Nothing is decoded or normalised, so the ID prints as it was written.
  KW_FUZZ_CHECK(id.str() == text);
  KW_FUZZ_CHECK(!id.trust_domain.empty());
  KW_FUZZ_CHECK(id.trust_domain.size() <= auth::kMaxTrustDomainBytes);
  for (const char c : id.trust_domain) KW_FUZZ_CHECK(IsTrustDomainCharacter(c));
  KW_FUZZ_CHECK(id.root() == id.path.empty());
  if (!id.path.empty()) {
    KW_FUZZ_CHECK(id.path.front() == '/' && id.path.back() != '/');
    std::string_view rest = std::string_view(id.path).substr(1);
    while (true) {
      const std::size_t slash = rest.find('/');
      const std::string_view segment = rest.substr(0, slash);
      KW_FUZZ_CHECK(!segment.empty() && segment != "." && segment != "..");
      for (const char c : segment) KW_FUZZ_CHECK(IsPathCharacter(c));
      if (slash == std::string_view::npos) break;
      rest.remove_prefix(slash + 1);
    }
  }
  // An ID is a valid exact pattern that matches itself, and "<id>/*" matches what is below it.
  KW_FUZZ_CHECK(auth::ValidateSpiffeIdPattern(text).has_value());
  KW_FUZZ_CHECK(auth::SpiffeIdMatches(text, id));
  const std::string below = std::string(text) + "/*";
  KW_FUZZ_CHECK(!auth::SpiffeIdMatches(below, id));
  auto child = auth::ParseSpiffeId(std::string(text) + "/child");
  KW_FUZZ_CHECK(child.has_value());
  KW_FUZZ_CHECK(auth::SpiffeIdMatches(below, *child));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  if (auto id = auth::ParseSpiffeId(input)) CheckId(input, *id);
  (void)auth::ValidateSpiffeIdPattern(input);

  const std::size_t newline = input.find('\n');
  if (newline == std::string_view::npos) return 0;
  const std::string_view pattern = input.substr(0, newline);
  auto id = auth::ParseSpiffeId(input.substr(newline + 1));
  if (!id) return 0;
  if (!auth::SpiffeIdMatches(pattern, *id)) return 0;
  // A match is the ID itself or an ID strictly below the pattern's prefix.
  KW_FUZZ_CHECK(auth::ValidateSpiffeIdPattern(pattern).has_value());
  if (pattern.ends_with("/*")) {
    const std::string_view prefix = pattern.substr(0, pattern.size() - 1);
    KW_FUZZ_CHECK(id->str().size() > prefix.size() && id->str().starts_with(prefix));
  } else {
    KW_FUZZ_CHECK(id->str() == pattern);
  }
  return 0;
}
