#include "vault/policy/policy.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <string>
#include <vector>
#include <utility>

#include <nlohmann/json.hpp>

#include "vault/policy/rule_keys.hpp"

namespace kw::vault::policy {
namespace {

struct CapabilityName {
  std::string_view name;
  Capability bit;
};

// Sorted by name, the order CapabilityNames returns.
constexpr std::array<CapabilityName, 8> kCapabilityNames = {{
    {"create", kCreate},
    {"delete", kDelete},
    {"deny", kDeny},
    {"list", kList},
    {"patch", kPatch},
    {"read", kRead},
    {"sudo", kSudo},
    {"update", kUpdate},
}};

constexpr std::string_view kDefaultPolicy = R"(# Built-in policy that every token gets unless it was created with no_default_policy.

# A token may look up, renew and revoke itself.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
path "auth/token/revoke-self" {
  capabilities = ["update"]
}

# A token may look up and renew a lease whose id it holds, as with Vault's default policy.
path "sys/leases/lookup" {
  capabilities = ["update"]
}
path "sys/leases/renew" {
  capabilities = ["update"]
}
path "sys/renew" {
  capabilities = ["update"]
}
path "sys/renew/*" {
  capabilities = ["update"]
}

# A token may ask which capabilities it has on given paths.
path "sys/capabilities-self" {
  capabilities = ["update"]
}

# The Vault CLI asks for the mount of a path before KV calls.
path "sys/internal/ui/mounts" {
  capabilities = ["read"]
}
path "sys/internal/ui/mounts/*" {
  capabilities = ["read"]
}
)";

bool IsNameCharacter(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
         ch == '.';
}

bool IsSpace(char ch) { return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n'; }

std::size_t LineOfOffset(std::string_view text, std::size_t offset) {
  offset = std::min(offset, text.size());
  return 1 + static_cast<std::size_t>(std::count(text.begin(), text.begin() + offset, '\n'));
}

Result<std::uint32_t> ParseJsonCapabilities(const nlohmann::json& value,
                                            std::string_view pattern) {
  const std::string where = "path \"" + std::string(pattern) + "\"";
  if (!value.is_array()) {
    return InvalidArgument(where + ": \"capabilities\" must be a list of strings");
  }
  std::uint32_t capabilities = 0;
  for (const auto& item : value) {
    if (!item.is_string()) {
      return InvalidArgument(where + ": \"capabilities\" must be a list of strings");
    }
    auto bit = ParseCapability(item.get<std::string>());
    if (!bit) return tl::unexpected(bit.error().WithContext(where));
    capabilities |= *bit;
  }
  return capabilities;
}

// Adds the rules of one {"<pattern>": {"capabilities": [...]}} object to `rules`.
Status AddJsonRules(const nlohmann::json& paths, std::vector<PathRule>& rules) {
  if (!paths.is_object()) {
    return InvalidArgument("\"path\" must be an object mapping each path to its rule");
  }
  for (const auto& [raw_pattern, body] : paths.items()) {
    std::string_view pattern = raw_pattern;
    if (pattern.starts_with('/')) pattern.remove_prefix(1);
    KW_RETURN_IF_ERROR(ValidatePattern(pattern));
    const std::string where = "path \"" + std::string(pattern) + "\"";
    if (!body.is_object()) return InvalidArgument(where + ": the rule must be an object");
    if (!body.contains("capabilities")) {
      return InvalidArgument(where + ": missing \"capabilities\"");
    }
    for (const auto& [key, ignored] : body.items()) {
      KW_RETURN_IF_ERROR(detail::CheckRuleKey(key, where));
    }
    KW_ASSIGN_OR_RETURN(std::uint32_t capabilities,
                        ParseJsonCapabilities(body["capabilities"], pattern));
    rules.push_back(PathRule{std::string(pattern), capabilities});
  }
  return OkStatus();
}

}  // namespace

Result<std::string> NormalizeName(std::string_view raw) {
  while (!raw.empty() && IsSpace(raw.front())) raw.remove_prefix(1);
  while (!raw.empty() && IsSpace(raw.back())) raw.remove_suffix(1);
  if (raw.empty()) return InvalidArgument("missing policy name");
  if (raw.size() > kMaxNameBytes) {
    return InvalidArgument("policy name is longer than 128 characters");
  }
  std::string name(raw);
  for (char& ch : name) {
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
    if (!IsNameCharacter(ch)) {
      return InvalidArgument("invalid policy name: use only letters, digits, '-', '_' and '.'");
    }
  }
  if (name == "." || name == "..") return InvalidArgument("invalid policy name \"" + name + "\"");
  return name;
}

Result<std::uint32_t> ParseCapability(std::string_view name) {
  for (const auto& entry : kCapabilityNames) {
    if (entry.name == name) return static_cast<std::uint32_t>(entry.bit);
  }
  std::string printable;
  for (char ch : name.substr(0, 64)) printable.push_back(ch >= 0x20 && ch < 0x7f ? ch : '?');
  return InvalidArgument("unknown capability \"" + printable +
                         "\": use create, read, update, patch, delete, list, sudo or deny");
}

Status ValidatePattern(std::string_view pattern) {
  std::string printable;
  for (char ch : pattern.substr(0, 256)) {
    printable.push_back(static_cast<unsigned char>(ch) >= 0x20 && ch != 0x7f ? ch : '?');
  }
  if (pattern.empty()) return InvalidArgument("empty path in policy: name a path or use \"*\"");
  // Request paths below /v1/ never start with '/', so such a rule could never match.
  if (pattern.starts_with('/')) {
    return InvalidArgument("path \"" + printable +
                           "\" starts with '/' after the one leading '/' that is allowed, so it "
                           "would match no request: remove the extra '/'");
  }
  for (char ch : pattern) {
    if (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) {
      return InvalidArgument("path \"" + printable + "\" contains a control character");
    }
  }
  const std::size_t star = pattern.find('*');
  if (star != std::string_view::npos && star + 1 != pattern.size()) {
    return InvalidArgument("path \"" + printable +
                           "\": '*' is only allowed as the last character; use '+' to match "
                           "one segment");
  }
  // A '+' segment directly before the '*' would have no clear meaning.
  if (pattern == "+*" || pattern.ends_with("/+*")) {
    return InvalidArgument("path \"" + printable +
                           "\": \"+*\" is ambiguous; use \"+/*\" or \"*\"");
  }
  return OkStatus();
}

namespace {

// Thrown by the JSON policy parse callback to stop at a limit.
struct PolicyJsonLimit {
  std::string message;
};

// Maximum nesting depth of a JSON policy document; a valid one needs five levels at most.
constexpr int kMaxPolicyJsonDepth = 16;

}  // namespace

Result<std::vector<PathRule>> ParseJsonRules(std::string_view document) {
  nlohmann::json parsed;
  // The keys seen so far in each object being parsed, innermost last. nlohmann::json keeps the
  // last of duplicate keys, so a second "path" key would silently drop the first one's rules.
  std::vector<std::set<std::string>> object_keys;
  const auto limits = [&object_keys](int depth, nlohmann::json::parse_event_t event,
                                     nlohmann::json& value) {
    using Event = nlohmann::json::parse_event_t;
    if (depth > kMaxPolicyJsonDepth) {
      throw PolicyJsonLimit{"nesting deeper than " + std::to_string(kMaxPolicyJsonDepth) +
                            " levels"};
    }
    if (event == Event::object_start) object_keys.emplace_back();
    if (event == Event::object_end) object_keys.pop_back();
    if (event == Event::key && !object_keys.empty()) {
      const std::string& key = value.get_ref<const std::string&>();
      if (!object_keys.back().insert(key).second) {
        throw PolicyJsonLimit{"duplicate key \"" + key.substr(0, 64) + "\""};
      }
    }
    return true;
  };
  try {
    parsed = nlohmann::json::parse(document, limits);
  } catch (const PolicyJsonLimit& limit) {
    return InvalidArgument("malformed JSON: " + limit.message);
  } catch (const nlohmann::json::parse_error& error) {
    return InvalidArgument("malformed JSON at line " +
                           std::to_string(LineOfOffset(document, error.byte)));
  } catch (const nlohmann::json::out_of_range&) {
    // nlohmann reports a number too large for a double this way, not as a parse_error.
    return InvalidArgument("malformed JSON: a number is out of range");
  }
  if (!parsed.is_object()) return InvalidArgument("the JSON policy must be an object");
  std::vector<PathRule> rules;
  for (const auto& [key, value] : parsed.items()) {
    if (key != "path") {
      return InvalidArgument("unknown top-level key \"" + key.substr(0, 64) +
                             "\": a policy contains only \"path\" rules");
    }
    if (value.is_array()) {
      for (const auto& paths : value) KW_RETURN_IF_ERROR(AddJsonRules(paths, rules));
    } else {
      KW_RETURN_IF_ERROR(AddJsonRules(value, rules));
    }
  }
  return rules;
}

Result<Policy> ParsePolicy(std::string_view name, std::string_view document) {
  KW_ASSIGN_OR_RETURN(std::string normalized, NormalizeName(name));
  if (document.size() > kMaxDocumentBytes) {
    return InvalidArgument("policy \"" + normalized + "\" is larger than 1 MiB");
  }
  const auto first = std::find_if_not(document.begin(), document.end(), IsSpace);
  const bool json = first != document.end() && *first == '{';
  auto rules = json ? ParseJsonRules(document) : ParseHclRules(document);
  if (!rules) {
    return tl::unexpected(rules.error().WithContext("invalid policy \"" + normalized + "\""));
  }
  return Policy{std::move(normalized), std::string(document), std::move(*rules)};
}

std::vector<std::string> CapabilityNames(std::uint32_t capabilities) {
  if ((capabilities & kRoot) != 0) return {"root"};
  if ((capabilities & kDeny) != 0 || (capabilities & kAllCapabilities) == 0) return {"deny"};
  std::vector<std::string> names;
  for (const auto& entry : kCapabilityNames) {
    if (entry.bit != kDeny && (capabilities & entry.bit) != 0) {
      names.emplace_back(entry.name);
    }
  }
  return names;
}

std::string_view DefaultPolicyDocument() { return kDefaultPolicy; }

namespace detail {

Status CheckRuleKey(std::string_view key, std::string_view where) {
  static constexpr std::array<std::string_view, 8> kUnsupported = {
      "allowed_parameters", "denied_parameters", "required_parameters", "min_wrapping_ttl",
      "max_wrapping_ttl",   "control_group",     "mfa_methods",         "policy"};
  if (key == "capabilities") return OkStatus();
  const std::string shown(key.substr(0, 64));
  if (std::find(kUnsupported.begin(), kUnsupported.end(), key) != kUnsupported.end()) {
    return InvalidArgument(std::string(where) + ": \"" + shown +
                           "\" is not supported by keyward; a rule contains only "
                           "\"capabilities\"");
  }
  return InvalidArgument(std::string(where) + ": unknown key \"" + shown +
                         "\"; a rule contains only \"capabilities\"");
}

}  // namespace detail
}  // namespace kw::vault::policy
