// Fuzzes the request-target half of routing, the part that runs before any handler: the
// target is parsed and validated (ParseTarget), and the path is checked against an ACL, as the
// router does. Router::Handle needs an unsealed vault with an HSM and the route predicates
// (IsLoginPath, IsPublicPkiPath, ...) link the whole router, so neither is called here.
//
// Input: one request target, such as "/v1/secret/data/app?version=2".
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "api/request_path.hpp"
#include "tests/fuzz/fuzz_check.hpp"
#include "vault/policy/acl.hpp"
#include "vault/policy/policy.hpp"

namespace {

using kw::api::ParsedTarget;
namespace policy = kw::vault::policy;

// Percent-encodes every byte outside RFC 3986's unreserved set, and '/' too unless
// `keep_slash`, so that the result parses back to `text`.
std::string PercentEncode(std::string_view text, bool keep_slash) {
  constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : text) {
    const bool unreserved = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~';
    if (unreserved || (keep_slash && c == '/')) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0f]);
    }
  }
  return out;
}

// Builds the target that a client would send for `parsed`, fully percent-encoded.
std::string EncodeTarget(const ParsedTarget& parsed) {
  std::string target = "/v1/" + PercentEncode(parsed.path, true);
  if (parsed.trailing_slash) target.push_back('/');
  if (!parsed.query.empty()) {
    target.push_back('?');
    for (std::size_t i = 0; i < parsed.query.size(); ++i) {
      if (i > 0) target.push_back('&');
      target += PercentEncode(parsed.query[i].first, false) + "=" +
                PercentEncode(parsed.query[i].second, false);
    }
  }
  return target;
}

void CheckPrintable(std::string_view raw) {
  const std::string printable = kw::api::Printable(raw);
  // At most 256 input bytes, each written as 4 characters at worst, and "..." after a cut.
  KW_FUZZ_CHECK(printable.size() <= 256 * 4 + 3);
  for (const unsigned char c : printable) KW_FUZZ_CHECK(c >= 0x20 && c < 0x7f && c != '"');
}

void CheckParsedPath(const ParsedTarget& parsed) {
  const std::string& path = parsed.path;
  KW_FUZZ_CHECK(!path.empty());
  KW_FUZZ_CHECK(path.front() != '/' && path.back() != '/');
  KW_FUZZ_CHECK(path.find("//") == std::string::npos);
  KW_FUZZ_CHECK(kw::api::IsValidUtf8(path));
  for (const unsigned char c : path) KW_FUZZ_CHECK(c >= 0x20 && c != 0x7f && c != '\\');
  std::string_view rest = path;
  while (true) {
    const std::size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    KW_FUZZ_CHECK(segment != "." && segment != "..");
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
}

// The ACL of the built-in default policy plus rules with each kind of wildcard, so that
// parsed paths reach the matcher's '+', '*' and deny branches.
const policy::Acl& TestAcl() {
  static const policy::Acl acl = [] {
    std::vector<std::shared_ptr<const policy::Policy>> policies;
    auto builtin = policy::ParsePolicy("default", policy::DefaultPolicyDocument());
    KW_FUZZ_CHECK(builtin.has_value());
    policies.push_back(std::make_shared<const policy::Policy>(std::move(*builtin)));
    auto wildcards = policy::ParsePolicy("wildcards", R"(
      path "secret/data/+/config" { capabilities = ["read"] }
      path "secret/data/app/*" { capabilities = ["create", "update", "read"] }
      path "secret/data/app/locked" { capabilities = ["deny"] }
      path "sys/policies/acl/*" { capabilities = ["list", "sudo"] }
    )");
    KW_FUZZ_CHECK(wildcards.has_value());
    policies.push_back(std::make_shared<const policy::Policy>(std::move(*wildcards)));
    return policy::Acl::FromPolicies(policies, false);
  }();
  return acl;
}

void CheckAcl(const ParsedTarget& parsed) {
  const std::string& path = parsed.path;
  for (const bool list : {false, true}) {
    const std::string normalized = policy::NormalizePath(path, list);
    KW_FUZZ_CHECK(normalized.empty() || normalized.front() != '/');
    const std::uint32_t granted = TestAcl().Capabilities(path, list);
    // A deny decides alone, and a non-root ACL never reports root.
    KW_FUZZ_CHECK((granted & policy::kDeny) == 0 || granted == policy::kDeny);
    KW_FUZZ_CHECK((granted & policy::kRoot) == 0);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view target(reinterpret_cast<const char*>(data), size);
  CheckPrintable(target);

  auto parsed = kw::api::ParseTarget(target);
  if (!parsed) return 0;
  CheckParsedPath(*parsed);
  CheckAcl(*parsed);

  // Parsing is a function of the decoded form: encoding it again gives the same result.
  const std::string encoded = EncodeTarget(*parsed);
  auto reparsed = kw::api::ParseTarget(encoded);
  KW_FUZZ_CHECK(reparsed.has_value());
  KW_FUZZ_CHECK(reparsed->path == parsed->path);
  KW_FUZZ_CHECK(reparsed->trailing_slash == parsed->trailing_slash);
  KW_FUZZ_CHECK(reparsed->query == parsed->query);
  return 0;
}
