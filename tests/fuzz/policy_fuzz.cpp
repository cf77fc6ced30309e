// Fuzzes the policy parser (HCL and JSON documents) and the ACL built from what it accepts.
// The matcher is compared with a second, plain implementation of the rule language, and the
// capabilities the ACL grants with the rules that match.
//
// Input: a policy document, then optionally a NUL byte and request paths, one per line, to
// check against it. Paths derived from the document's own patterns are always checked too.
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/fuzz/fuzz_check.hpp"
#include "vault/policy/acl.hpp"
#include "vault/policy/policy.hpp"

namespace {

namespace policy = kw::vault::policy;

std::vector<std::string_view> Split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  while (true) {
    const std::size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

bool SegmentsMatch(const std::vector<std::string_view>& pattern,
                   const std::vector<std::string_view>& path, std::size_t count) {
  for (std::size_t i = 0; i < count; ++i) {
    if (pattern[i] == "+" ? path[i].empty() : pattern[i] != path[i]) return false;
  }
  return true;
}

// The rule language as documented on MatchesPattern, written out segment by segment.
bool ReferenceMatch(std::string_view pattern, std::string_view path, bool list) {
  if (pattern.starts_with('/')) pattern.remove_prefix(1);
  if (!policy::ValidatePattern(pattern)) return false;
  const std::string normalized = policy::NormalizePath(path, list);
  const std::vector<std::string_view> path_segments = Split(normalized, '/');

  if (pattern.ends_with('*')) {
    // Every segment before the last must match a whole path segment, and the last one (the
    // text before '*') must start the rest of the path.
    const std::vector<std::string_view> segments = Split(pattern.substr(0, pattern.size() - 1), '/');
    const std::size_t full = segments.size() - 1;
    if (path_segments.size() < full + 1) return false;
    if (!SegmentsMatch(segments, path_segments, full)) return false;
    std::string_view rest = normalized;
    for (std::size_t i = 0; i < full; ++i) rest.remove_prefix(path_segments[i].size() + 1);
    return rest.starts_with(segments.back());
  }

  const std::vector<std::string_view> segments = Split(pattern, '/');
  if (segments.size() == path_segments.size() &&
      SegmentsMatch(segments, path_segments, segments.size())) {
    return true;
  }
  // A LIST of `a/b/` is also allowed by an exact rule `a/b`.
  if (list && !pattern.ends_with('/') && normalized.ends_with('/')) {
    const std::vector<std::string_view> folder =
        Split(std::string_view(normalized).substr(0, normalized.size() - 1), '/');
    return segments.size() == folder.size() && SegmentsMatch(segments, folder, segments.size());
  }
  return false;
}

// Paths near a pattern: its text without '*', '+' filled in, and one level deeper.
std::vector<std::string> PathsNear(std::string_view pattern) {
  std::string filled;
  for (const std::string_view segment : Split(pattern, '/')) {
    if (!filled.empty()) filled.push_back('/');
    filled += segment == "+" ? std::string("x") : std::string(segment);
  }
  if (filled.ends_with('*')) filled.pop_back();
  return {std::string(pattern), filled, filled + "/y", filled + "y"};
}

void CheckAcl(const std::vector<policy::PathRule>& rules, const std::vector<std::string>& paths) {
  auto parsed = std::make_shared<const policy::Policy>(policy::Policy{"fuzz", "", rules});
  const policy::Acl acl = policy::Acl::FromPolicies({parsed}, false);
  std::map<std::string, std::uint32_t> merged;
  for (const policy::PathRule& rule : rules) merged[rule.pattern] |= rule.capabilities;

  for (const std::string& path : paths) {
    for (const bool list : {false, true}) {
      bool any_match = false;
      bool winner_found = false;
      const std::uint32_t granted = acl.Capabilities(path, list);
      for (const auto& [pattern, capabilities] : merged) {
        const bool matches = policy::MatchesPattern(pattern, path, list);
        KW_FUZZ_CHECK(matches == ReferenceMatch(pattern, path, list));
        if (!matches) continue;
        any_match = true;
        const std::uint32_t expected =
            (capabilities & policy::kDeny) != 0 ? std::uint32_t{policy::kDeny} : capabilities;
        if (granted == expected) winner_found = true;
      }
      // The grant is that of one matching pattern, and nothing without a match.
      KW_FUZZ_CHECK(any_match ? winner_found : granted == 0);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t nul = input.find('\0');
  const std::string_view document = input.substr(0, nul);

  auto parsed = policy::ParsePolicy("fuzz", document);
  if (!parsed) return 0;
  KW_FUZZ_CHECK(parsed->document == document);

  std::vector<std::string> paths;
  for (const policy::PathRule& rule : parsed->rules) {
    KW_FUZZ_CHECK(policy::ValidatePattern(rule.pattern).has_value());
    KW_FUZZ_CHECK((rule.capabilities & ~(policy::kAllCapabilities | policy::kDeny)) == 0);
    // Every capability name round-trips.
    for (const std::string& name : policy::CapabilityNames(rule.capabilities)) {
      KW_FUZZ_CHECK(policy::ParseCapability(name).has_value());
    }
    if (paths.size() < 64) {
      for (std::string& path : PathsNear(rule.pattern)) paths.push_back(std::move(path));
    }
  }
  if (nul != std::string_view::npos) {
    for (const std::string_view line : Split(input.substr(nul + 1), '\n')) {
      if (paths.size() < 128) paths.emplace_back(line);
    }
  }
  CheckAcl(parsed->rules, paths);
  return 0;
}
