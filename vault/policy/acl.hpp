#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "vault/policy/policy.hpp"

namespace kw::vault::policy {

// Returns the form of `path` that rules are matched against, for every operation: trailing
// slashes removed, then one '/' appended for a LIST of a non-empty path (a LIST of folder
// `a/b` checks `a/b/`).
std::string NormalizePath(std::string_view path, bool list);

// Returns whether a rule pattern matches `path` (below /v1/, percent-decoded, no leading
// slash). Patterns use the rule language. A trailing '*' matches any suffix, including an
// empty one. A '+' segment matches exactly one non-empty segment. Anything else matches
// itself, case-sensitively. Without '*' the pattern matches the whole path only, except that
// for a LIST a pattern `a/b` also matches `a/b/`.
bool MatchesPattern(std::string_view pattern, std::string_view path, bool list);

// The effective permissions of a set of policies. Rules with the same pattern are merged by
// unioning their capabilities. For a path, the most specific matching pattern decides alone,
// and a deny in it overrides every capability. Immutable once built, so thread-safe.
class Acl {
 public:
  // Builds the ACL of `policies`. With `root` set, the ACL grants everything on every path.
  static Acl FromPolicies(const std::vector<std::shared_ptr<const Policy>>& policies,
                          bool root);

  // Returns the capabilities granted on `path` (below /v1/, percent-decoded, no leading
  // slash) for a request that is a LIST when `list` is set: kDeny alone when the winning rule
  // denies, 0 when no rule matches, kAllCapabilities | kRoot for a root ACL.
  std::uint32_t Capabilities(std::string_view path, bool list) const;

  bool root() const { return root_; }

  // A pattern split for matching and ranked by specificity.
  struct CompiledRule {
    std::string pattern;
    bool prefix = false;        // ends in '*'
    std::vector<std::string> segments;  // the pattern without '*', split at '/'
    std::size_t first_wildcard = 0;     // offset of the first '+' segment or '*', else npos
    std::size_t plus_segments = 0;
    std::uint32_t capabilities = 0;
  };

 private:
  Acl() = default;

  std::vector<CompiledRule> rules_;  // unique patterns, most specific first
  bool root_ = false;
};

// Returns whether rule `a` has lower priority than rule `b` when both match a path, by
// Vault's order: the one whose first wildcard comes earlier, then the one ending in '*'
// when the other does not, then the one with more '+' segments, then the shorter one, then
// the lexicographically smaller one loses.
bool LowerPriority(const Acl::CompiledRule& a, const Acl::CompiledRule& b);

}  // namespace kw::vault::policy
