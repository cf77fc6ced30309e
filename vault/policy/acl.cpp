#include "vault/policy/acl.hpp"

#include <algorithm>
#include <map>
#include <utility>

namespace kw::vault::policy {
namespace {

Acl::CompiledRule Compile(std::string_view pattern, std::uint32_t capabilities) {
  Acl::CompiledRule rule;
  rule.pattern = std::string(pattern);
  rule.capabilities = capabilities;
  rule.prefix = pattern.ends_with('*');
  std::string_view body = rule.prefix ? pattern.substr(0, pattern.size() - 1) : pattern;

  rule.first_wildcard = std::string_view::npos;
  std::size_t offset = 0;
  while (true) {
    const std::size_t slash = body.find('/', offset);
    const std::string_view segment = body.substr(offset, slash - offset);
    rule.segments.emplace_back(segment);
    if (segment == "+") {
      ++rule.plus_segments;
      rule.first_wildcard = std::min(rule.first_wildcard, offset);
    }
    if (slash == std::string_view::npos) break;
    offset = slash + 1;
  }
  if (rule.prefix) rule.first_wildcard = std::min(rule.first_wildcard, body.size());
  return rule;
}

// Matches `path` (normalised) against the rule's segments. Every full segment must match a
// path segment, where '+' matches any non-empty one. A prefix rule's last, partial segment
// must then start the rest of the path.
bool MatchesNormalized(const Acl::CompiledRule& rule, std::string_view path) {
  const std::size_t full = rule.prefix ? rule.segments.size() - 1 : rule.segments.size();
  std::string_view rest = path;
  for (std::size_t i = 0; i < full; ++i) {
    const std::size_t slash = rest.find('/');
    const std::string_view segment = rest.substr(0, slash);
    const bool last_path_segment = slash == std::string_view::npos;
    if (rule.segments[i] == "+") {
      if (segment.empty()) return false;
    } else if (rule.segments[i] != segment) {
      return false;
    }
    if (!rule.prefix && i + 1 == full) return last_path_segment;
    if (last_path_segment) return false;
    rest = rest.substr(slash + 1);
  }
  return rest.starts_with(rule.segments.back());
}

// Applies the LIST exception too: an exact rule `a/b` matches a LIST of `a/b/`.
bool Matches(const Acl::CompiledRule& rule, std::string_view normalized, bool list) {
  if (MatchesNormalized(rule, normalized)) return true;
  if (!list || rule.prefix || rule.pattern.ends_with('/') || !normalized.ends_with('/')) {
    return false;
  }
  return MatchesNormalized(rule, normalized.substr(0, normalized.size() - 1));
}

}  // namespace

std::string NormalizePath(std::string_view path, bool list) {
  while (path.starts_with('/')) path.remove_prefix(1);
  while (path.ends_with('/')) path.remove_suffix(1);
  std::string normalized(path);
  if (list && !normalized.empty()) normalized.push_back('/');
  return normalized;
}

bool MatchesPattern(std::string_view pattern, std::string_view path, bool list) {
  if (pattern.starts_with('/')) pattern.remove_prefix(1);
  if (!ValidatePattern(pattern)) return false;
  return Matches(Compile(pattern, 0), NormalizePath(path, list), list);
}

bool LowerPriority(const Acl::CompiledRule& a, const Acl::CompiledRule& b) {
  if (a.first_wildcard != b.first_wildcard) return a.first_wildcard < b.first_wildcard;
  if (a.prefix != b.prefix) return a.prefix;
  if (a.plus_segments != b.plus_segments) return a.plus_segments > b.plus_segments;
  if (a.pattern.size() != b.pattern.size()) return a.pattern.size() < b.pattern.size();
  return a.pattern < b.pattern;
}

Acl Acl::FromPolicies(const std::vector<std::shared_ptr<const Policy>>& policies, bool root) {
  Acl acl;
  acl.root_ = root;
  if (root) return acl;

  std::map<std::string, std::uint32_t, std::less<>> merged;
  for (const auto& policy : policies) {
    if (!policy) continue;
    for (const auto& rule : policy->rules) merged[rule.pattern] |= rule.capabilities;
  }
  acl.rules_.reserve(merged.size());
  for (const auto& [pattern, capabilities] : merged) {
    acl.rules_.push_back(Compile(pattern, capabilities));
  }
  std::sort(acl.rules_.begin(), acl.rules_.end(),
            [](const CompiledRule& a, const CompiledRule& b) { return LowerPriority(b, a); });
  return acl;
}

std::uint32_t Acl::Capabilities(std::string_view path, bool list) const {
  if (root_) return kAllCapabilities | kRoot;
  const std::string normalized = NormalizePath(path, list);
  for (const auto& rule : rules_) {
    if (!Matches(rule, normalized, list)) continue;
    // The most specific match decides alone, and a deny in it overrides the rest.
    if ((rule.capabilities & kDeny) != 0) return kDeny;
    return rule.capabilities;
  }
  return 0;
}

}  // namespace kw::vault::policy
