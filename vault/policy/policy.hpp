#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.hpp"

// ACL policies with Vault's document forms (HCL and JSON) and capability names.
namespace kw::vault::policy {

// A capability a path rule grants. A rule's capabilities are a bit set of these.
enum Capability : std::uint32_t {
  kDeny = 1,
  kCreate = 2,
  kRead = 4,
  kUpdate = 8,
  kDelete = 16,
  kList = 32,
  kSudo = 64,
  kPatch = 128,
  // Not a rule capability: marks the result of a root ACL, which grants everything.
  kRoot = 256,
};

// Every capability a rule can grant (all but deny).
inline constexpr std::uint32_t kAllCapabilities =
    kCreate | kRead | kUpdate | kDelete | kList | kSudo | kPatch;

// The names of the two built-in policies.
inline constexpr std::string_view kRootPolicyName = "root";
inline constexpr std::string_view kDefaultPolicyName = "default";

// Maximum length of a policy name in bytes.
inline constexpr std::size_t kMaxNameBytes = 128;
// Maximum size of a policy document in bytes.
inline constexpr std::size_t kMaxDocumentBytes = 1 << 20;

// Trims ASCII whitespace, lower-cases, and checks the name: 1 to kMaxNameBytes characters
// from a-z, 0-9, '-', '_' and '.', not "." or "..". invalid_argument naming the rule broken.
Result<std::string> NormalizeName(std::string_view raw);

struct PathRule {
  std::string pattern;  // as written, without a leading '/', with '*' only at the end
  std::uint32_t capabilities = 0;
};

// A parsed policy: its normalised name, the document as submitted, and the document's rules
// in document order (a path written twice appears twice).
struct Policy {
  std::string name;
  std::string document;
  std::vector<PathRule> rules;
};

// Parses `document` as JSON when its first non-space character is '{', else as HCL.
// invalid_argument for an invalid name, a malformed document, an unknown key or capability,
// or a rule parameter keyward does not support. The message names the line (HCL) or the
// rule's path.
Result<Policy> ParsePolicy(std::string_view name, std::string_view document);

// Parses the HCL subset of policy documents: `path "<pattern>" { capabilities = [...] }`
// blocks and #, // and /* */ comments. Messages name the line.
Result<std::vector<PathRule>> ParseHclRules(std::string_view document);

// Parses the JSON form: {"path": {"<pattern>": {"capabilities": [...]}}} (the value of
// "path" may also be an array of such objects).
Result<std::vector<PathRule>> ParseJsonRules(std::string_view document);

// Returns the bit of a capability named as Vault names it ("read", "list", ...).
// invalid_argument naming the unknown capability.
Result<std::uint32_t> ParseCapability(std::string_view name);

// Checks a rule's pattern (leading '/' already removed): not empty, no second leading '/',
// '*' only as the last character and not right after a '+' segment, no control characters.
// invalid_argument naming the pattern.
Status ValidatePattern(std::string_view pattern);

// Returns Vault's names for `capabilities`, sorted: ["root"] when kRoot is set, ["deny"] when
// kDeny is set or nothing is granted.
std::vector<std::string> CapabilityNames(std::uint32_t capabilities);

// Returns the HCL document of the built-in "default" policy, which every token gets unless
// created without it: a token may look up, renew and revoke itself, and query its own
// capabilities.
std::string_view DefaultPolicyDocument();

}  // namespace kw::vault::policy
